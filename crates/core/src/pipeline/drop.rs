//! Dropping resources (tables and state), refresh modes, and pending packages.

use super::*;

impl Pipeline {
    /// Delete packages that are extracted or normalized but not loaded.
    pub fn drop_pending_packages(&self) -> Result<Vec<String>> {
        self.storage.drop_pending()
    }

    /// Drop or empty what a refresh mode names; returns tables to empty with the next package.
    pub(super) fn apply_refresh(&mut self, mode: Refresh, source: &Source) -> Result<Vec<String>> {
        let Some(mut schema) = self.schema(&source.name)? else { return Ok(vec![]) };
        let resources: Vec<String> = match mode {
            Refresh::DropSources => schema
                .tables
                .values()
                .filter(|t| t.parent.is_none() && !t.name.starts_with("_dlt"))
                .filter_map(|t| t.resource.clone())
                .collect(),
            _ => source.resources.iter().map(|r| r.name.clone()).collect(),
        };
        let mut tables = vec![];
        for r in &resources {
            for t in schema.resource_tables(r) {
                if !tables.contains(&t) {
                    tables.push(t);
                }
            }
        }
        tables.reverse();
        // the state this run starts from: the source's (drop_sources) or the resources' reset
        let src = self.state.source_state_mut(&source.name);
        if mode == Refresh::DropSources {
            src.clear();
        } else if let Some(res) = src.get_mut("resources").and_then(Value::as_object_mut) {
            for r in &resources {
                res.shift_remove(r);
            }
        }
        if mode == Refresh::DropData {
            return Ok(tables);
        }
        let mut client = block_on(self.destination.client(&self.dataset_name))?;
        block_on(client.initialize_storage())?;
        block_on(client.drop_tables(&tables))?;
        drop(client);
        if mode == Refresh::DropSources {
            let fresh = Schema::new(&source.name);
            let old = schema.clone();
            schema = fresh;
            schema.version = old.version;
            schema.previous_hashes = old.previous_hashes;
            schema.version_hash = old.version_hash;
        } else {
            for t in &tables {
                schema.tables.shift_remove(t);
            }
        }
        schema.bump_version();
        self.save_schema(&schema)?;
        Ok(vec![])
    }

    /// Drop the tables of `resources` in the destination, remove them from the schema, reset the
    /// resources' state, and commit the new schema and state to the destination as a new load.
    /// Returns the dropped tables and the load id.
    pub fn drop_resources(&mut self, schema_name: &str, resources: &[String]) -> Result<(Vec<String>, String)> {
        self.drop_resources_with(schema_name, resources, &DropOptions::default())
    }

    /// [`Pipeline::drop_resources`] with dlt's options: `state_only` resets the resources' state
    /// and keeps their tables; `state_paths` also removes these paths (dotted, relative to the
    /// source's state, e.g. `resources.issues.incremental`) from the state.
    pub fn drop_resources_with(
        &mut self,
        schema_name: &str,
        resources: &[String],
        opts: &DropOptions,
    ) -> Result<(Vec<String>, String)> {
        if self.has_pending_packages()? {
            return Err(Error::Pipeline(format!(
                "pipeline `{0}` has pending load packages; finish them with another run, or discard them with `dlt pipeline {0} drop-pending-packages`, before dropping resources",
                self.name
            )));
        }
        let mut schema =
            self.schema(schema_name)?.ok_or_else(|| Error::Pipeline(format!("schema `{schema_name}` not found")))?;
        let mut tables = vec![];
        for r in resources {
            for t in schema.resource_tables(r) {
                if !tables.contains(&t) {
                    tables.push(t);
                }
            }
        }
        tables.reverse();
        if opts.state_only {
            tables.clear();
        } else {
            let mut client = block_on(self.destination.client(&self.dataset_name))?;
            block_on(client.initialize_storage())?;
            block_on(client.drop_tables(&tables))?;
            // one open client per database at a time: the load below opens its own
            drop(client);
            for t in &tables {
                schema.tables.shift_remove(t);
            }
            schema.bump_version();
        }
        let mut st = self.state.clone();
        let src = st.source_state_mut(schema_name);
        if let Some(res) = src.get_mut("resources").and_then(Value::as_object_mut) {
            for r in resources {
                res.shift_remove(r);
            }
        }
        for path in &opts.state_paths {
            remove_path(src, path);
        }
        st.bump_version();
        // a package holding only the new state row
        let load_id = new_load_id(self.last_load_id()?.as_deref());
        let dir = self.storage.new_normalize(&load_id)?;
        let created_at = load_id_time(&load_id).unwrap_or_else(Utc::now).to_rfc3339_opts(SecondsFormat::Micros, true);
        write_state_job(&dir.join(NEW_JOBS), &st, &self.name, &load_id, &created_at)?;
        if !schema.tables.contains_key(STATE_TABLE) {
            schema.tables.insert(STATE_TABLE.to_string(), state_table_with_row_id());
            schema.bump_version();
        }
        let pstate = PackageState {
            load_id: load_id.clone(),
            schema_name: schema.name.clone(),
            created_at,
            pipeline_state: Some(st.0.clone()),
            tables_with_jobs: vec![STATE_TABLE.to_string()],
            row_counts: [(STATE_TABLE.to_string(), 1u64)].into_iter().collect(),
            ..Default::default()
        };
        write_atomic(&dir.join(SCHEMA_FILE), schema.to_json().as_bytes())?;
        write_package_state(&dir, &pstate)?;
        self.save_schema(&schema)?;
        self.storage.commit_normalize(&load_id)?;
        let mut info = self.empty_info();
        self.load_inner(&mut info)?;
        Ok((tables, load_id))
    }
}

/// Options of [`Pipeline::drop_resources_with`].
#[derive(Debug, Clone, Default)]
pub struct DropOptions {
    /// Reset state only; keep tables and schema.
    pub state_only: bool,
    /// Dotted paths in the source state to remove (`resources.r.incremental`, `$.x.y`).
    pub state_paths: Vec<String>,
}

/// dlt's `refresh` modes of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Drop every table of the source's schema and reset the schema and the source's state.
    DropSources,
    /// Drop the tables of the resources being run and reset their state.
    DropResources,
    /// Empty the tables of the resources being run and reset their state; keep the schema.
    DropData,
}

impl Refresh {
    /// Parse dlt's name.
    pub fn parse(s: &str) -> Option<Refresh> {
        Some(match s {
            "drop_sources" => Refresh::DropSources,
            "drop_resources" => Refresh::DropResources,
            "drop_data" => Refresh::DropData,
            _ => return None,
        })
    }
}

/// Remove a dotted path from a JSON object (missing parts are ignored).
pub(super) fn remove_path(root: &mut serde_json::Map<String, Value>, path: &str) {
    let p = path.strip_prefix("$.").unwrap_or(path);
    let parts: Vec<&str> = p.split('.').filter(|x| !x.is_empty()).collect();
    let Some((last, init)) = parts.split_last() else { return };
    let mut cur = root;
    for part in init {
        match cur.get_mut(*part).and_then(Value::as_object_mut) {
            Some(next) => cur = next,
            None => return,
        }
    }
    cur.shift_remove(*last);
}
