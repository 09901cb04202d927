//! The load step: normalized packages into the destination, with retries, committed once.

use super::*;

impl Pipeline {
    pub(super) fn load_inner(&mut self, info: &mut LoadInfo) -> Result<()> {
        for load_id in self.storage.list(PackageStage::Normalized)? {
            self.report(|p| p.step_started(Step::Load, &load_id));
            let r = self.load_package(&load_id, info);
            self.report(|p| p.step_finished(Step::Load));
            r.map_err(|e| step_err(Step::Load, Some(&load_id), e))?;
        }
        Ok(())
    }

    pub(super) fn load_package(&mut self, load_id: &str, info: &mut LoadInfo) -> Result<()> {
        let dir = self.storage.normalized_dir().join(load_id);
        let pstate = read_package_state(&dir)?;
        let schema = Schema::from_str_any(&fs::read_to_string(dir.join(SCHEMA_FILE)).at(dir.join(SCHEMA_FILE))?)?;
        let jobs = list_jobs(&dir, NEW_JOBS)?;
        // transient errors (connection lost, lock timeouts) are retried with exponential backoff;
        // terminal ones leave the package pending with the reason in failed_jobs/
        let (max_retries, backoff_ms) = self.retry_settings();
        let replace_strategy = self.replace_strategy()?;
        let mut attempt = 0u32;
        loop {
            let r = block_on(async {
                // staged first (uploads are idempotent: a retry writes the same files)
                let staged = match self.staging.as_ref().and_then(|s| s.as_staging()) {
                    Some(st) => st.upload_jobs(&self.dataset_name, &schema.name, load_id, &jobs).await?,
                    None => vec![],
                };
                let mut client = self.destination.client(&self.dataset_name).await?;
                let package = PackageToLoad {
                    load_id,
                    schema: &schema,
                    jobs: &jobs,
                    truncate_tables: &pstate.truncate_tables,
                    replace_strategy,
                    staged: &staged,
                };
                try_commit(client.as_mut(), &package, &pstate).await
            });
            match r {
                Ok(()) => break,
                Err(e) if e.is_transient() && attempt < max_retries => {
                    attempt += 1;
                    tracing::warn!(
                        "load of package {load_id} failed with a transient error, retry {attempt}/{max_retries}: {e}"
                    );
                    backoff(backoff_ms, attempt);
                }
                Err(e) => {
                    let failed = dir.join(FAILED_JOBS);
                    let _ = fs::create_dir_all(&failed);
                    let note = if e.is_transient() { format!(" (after {attempt} retries)") } else { String::new() };
                    let _ = fs::write(failed.join("package.exception"), format!("{e}{note}\n"));
                    return Err(e);
                }
            }
        }
        crate::fault::hit("load.after_commit");
        for j in &jobs {
            info.jobs.push(JobInfo {
                load_id: load_id.to_string(),
                table: j.table.clone(),
                file: j.path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string(),
                size: fs::metadata(&j.path).map(|m| m.len()).unwrap_or(0),
                error: None,
            });
        }
        let done = self.storage.complete_load(load_id)?;
        let mut pstate = pstate;
        pstate.loaded_at = Some(Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true));
        write_package_state(&done, &pstate)?;
        // local state advances only after the destination committed
        if let Some(st) = pstate.pipeline_state {
            let mut st = PipelineState(st);
            st.local_mut().insert("first_run".into(), json!(false));
            self.state = st;
        } else {
            self.state.local_mut().insert("first_run".into(), json!(false));
        }
        self.save_state()?;
        info.load_ids.push(load_id.to_string());
        Ok(())
    }

    /// `destination.replace_strategy` (dlt's `DESTINATION__REPLACE_STRATEGY`), checked against
    /// what the destination supports.
    pub(super) fn replace_strategy(&self) -> Result<crate::destination::ReplaceStrategy> {
        let Some(v) = self.config.get(&["destination"], "replace_strategy") else {
            return Ok(Default::default());
        };
        let name = v.as_string();
        let s = crate::destination::ReplaceStrategy::parse(&name).ok_or_else(|| {
            Error::Config(format!(
                "unknown replace strategy `{name}` (truncate-and-insert, insert-from-staging, staging-optimized)"
            ))
        })?;
        let caps = self.destination.capabilities();
        if !caps.replace_strategies.contains(&s) {
            return Err(Error::Config(format!(
                "destination {} does not support the replace strategy `{name}` (it supports: {})",
                self.destination.name(),
                caps.replace_strategies.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(s)
    }
}

/// Open storage, skip a package that is already committed, migrate the schema, commit.
async fn try_commit(
    client: &mut dyn DestinationClient,
    package: &PackageToLoad<'_>,
    pstate: &PackageState,
) -> Result<()> {
    let (schema, load_id) = (package.schema, package.load_id);
    client.initialize_storage().await?;
    if client.is_loaded(load_id).await? {
        return Ok(());
    }
    let mut ddl_tables: Vec<String> = vec![];
    for t in pstate.tables_with_jobs.iter().chain(pstate.truncate_tables.iter()) {
        let root_chain = {
            let mut chain = vec![t.clone()];
            let mut cur = t.as_str();
            while let Some(p) = schema.tables.get(cur).and_then(|x| x.parent.as_deref()) {
                chain.push(p.to_string());
                cur = p;
            }
            chain
        };
        for c in root_chain.into_iter().rev() {
            if !ddl_tables.contains(&c) {
                ddl_tables.push(c);
            }
        }
    }
    client.update_stored_schema(schema, &ddl_tables).await?;
    client.commit_package(package).await
}
