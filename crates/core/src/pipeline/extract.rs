//! The extract step: a source's items into an extracted load package (hints, contracts, cursors).

use super::*;

impl Pipeline {
    pub(super) fn extract_inner(&mut self, source: Source) -> Result<String> {
        let refresh_truncate = match self.refresh {
            Some(mode) => self.apply_refresh(mode, &source).map_err(|e| step_err(Step::Extract, None, e))?,
            None => vec![],
        };
        self.refresh_truncate = refresh_truncate;
        let load_id = new_load_id(self.last_load_id()?.as_deref());
        let r = self.extract_package(source, &load_id);
        if r.is_err() {
            let tmp = self.working_dir.join("normalize").join("new").join(&load_id);
            let _ = fs::remove_dir_all(tmp);
        }
        r.map_err(|e| step_err(Step::Extract, Some(&load_id), e))?;
        Ok(load_id)
    }

    pub(super) fn extract_package(&mut self, source: Source, load_id: &str) -> Result<()> {
        let dir = self.storage.new_extract(load_id)?;
        let jobs_dir = dir.join(NEW_JOBS);
        let schema = match self.schema(&source.name)? {
            Some(s) => s,
            None => source.schema.clone().unwrap_or_else(|| {
                let mut s = Schema::new(&source.name);
                if self.naming.name() != "snake_case" {
                    // created with the configured naming, as dlt's fresh schema is
                    s.normalizers["names"] = json!(self.naming.name());
                    s.version_hash = s.compute_hash();
                }
                s
            }),
        };
        let mut schema = self.import_schema(schema)?;
        // the hash the pipeline stored last (none for a new schema)
        let stored_hash = (!schema.is_new()).then(|| schema.version_hash.clone());
        schema.refresh_root_key_propagation();
        if let Some(c) = &source.schema_contract {
            schema.settings.schema_contract = Some(c.clone());
        }
        let mut pstate = PackageState {
            refresh_truncate: std::mem::take(&mut self.refresh_truncate),
            load_id: load_id.to_string(),
            schema_name: schema.name.clone(),
            created_at: load_id_time(load_id).unwrap_or_else(Utc::now).to_rfc3339_opts(SecondsFormat::Micros, true),
            ..Default::default()
        };
        self.report(|p| p.step_started(Step::Extract, &source.name));
        let mut writers = ExtractWriters::new(jobs_dir);
        // the state this package commits (incremental cursors advance into it)
        let mut new_state = self.state.clone();
        let mut total: u64 = 0;
        // tables whose hints and contract a resource applied in this extraction
        let mut decided_tables: HashMap<String, ContractMode> = HashMap::new();
        // hints the destination cannot carry out are refused before anything is read
        let caps = self.destination.capabilities().clone();
        // a replace strategy the destination lacks is refused now, not when loading
        self.replace_strategy()?;
        for r in &source.resources {
            crate::validate::resource_hints(&r.name, &r.hints, &caps, self.destination.name())?;
        }
        for resource in source.resources {
            let (name, hints, items) = resource.into_parts();
            let mut tables_seen: Vec<String> = vec![];
            // tables that a `tables` contract keeps out (discard) or that await their first item
            // before the contract decides (a new table with a non-evolve contract)
            let mut filtered: std::collections::HashSet<String> = Default::default();
            let mut pending_contract: Option<String> = None;
            let static_table = match &hints.table_name {
                Some(TableName::Static(t)) => Some(self.naming.normalize_table_identifier(t)),
                None => Some(self.naming.normalize_table_identifier(&name)),
                Some(TableName::Dynamic(_)) => None,
            };
            if let Some(t) = &static_table {
                // as dlt, the table joins the schema with the resource's first item (a resource
                // without items adds no table); the contract decides then
                pending_contract = Some(t.clone());
                tables_seen.push(t.clone());
            }
            let mut cursor = match &hints.incremental {
                Some(cfg) => {
                    let stored = new_state
                        .source_state_mut(&schema.name)
                        .get("resources")
                        .and_then(|r| r.get(&name))
                        .and_then(|r| r.get("incremental"))
                        .and_then(|i| i.get(&cfg.cursor_path))
                        .and_then(Value::as_object)
                        .cloned();
                    let pk: Vec<String> = hints.primary_key.as_ref().map(|k| k.0.clone()).unwrap_or_default();
                    Some(crate::incremental::Cursor::new(cfg.clone(), stored.as_ref(), &pk)?)
                }
                None => None,
            };
            // the resource's own state, handed to deferred resources and committed with the load
            let res_state: serde_json::Map<String, Value> = new_state
                .get("sources")
                .and_then(|s| s.get(&schema.name))
                .and_then(|s| s.get("resources"))
                .and_then(|r| r.get(&name))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let res_state = Arc::new(std::sync::Mutex::new(res_state));
            let items: crate::resource::ItemIter = match items {
                crate::resource::Items::Ready(it) => it,
                crate::resource::Items::Deferred(build) => build(crate::resource::ResourceContext::new(
                    cursor.as_ref().and_then(|c| c.public_start_value()),
                    hints
                        .incremental
                        .as_ref()
                        .and_then(|c| c.end_value.as_ref())
                        .map(|v| crate::tagged::plain(v).into_owned()),
                    res_state.clone(),
                )),
            };
            // blocks of JSON lines are written whole only when no row needs a look of its own:
            // a dynamic table name or a cursor sees each line as its own item
            let per_row = cursor.is_some() || matches!(hints.table_name, Some(TableName::Dynamic(_)));
            let items = if per_row { crate::resource::split_raw_lines(items) } else { items };
            let mut table_cache: HashMap<String, String> = HashMap::new();
            // items (rows of a JSON lines block counted one by one) seen so far
            let mut next_idx: u64 = 0;
            for item in items {
                let idx = next_idx;
                next_idx += match &item {
                    Ok(Item::RawJsonLines { lines, .. }) => *lines as u64,
                    _ => 1,
                };
                let item = item.map_err(|e| match e {
                    e @ (Error::BadInput { .. } | Error::Source { .. }) => e,
                    // a source's connection failing while this resource runs: this resource failed
                    Error::SourceSetup { message, transient, .. } => {
                        Error::Source { resource: name.clone(), message, transient }
                    }
                    e => Error::Source {
                        resource: name.clone(),
                        message: format!("item #{idx}: {e}"),
                        transient: e.is_transient(),
                    },
                })?;
                let table = match &hints.table_name {
                    Some(TableName::Static(_)) | None => tables_seen[0].clone(),
                    Some(TableName::Dynamic(f)) => {
                        let raw = match &item {
                            Item::Json(v) => f(v),
                            Item::RawJson(s) => serde_json::from_str::<Value>(s).ok().and_then(|v| f(&v)),
                            Item::Arrow(_) => None,
                            Item::RawJsonLines { .. } => unreachable!("split into lines above"),
                        }
                        .unwrap_or_else(|| name.clone());
                        if let Some(t) = table_cache.get(&raw) {
                            t.clone()
                        } else {
                            let t = self.naming.normalize_table_identifier(&raw);
                            if !tables_seen.contains(&t) && !filtered.contains(&t) {
                                pending_contract = Some(t.clone());
                            }
                            table_cache.insert(raw, t.clone());
                            t
                        }
                    }
                };
                if pending_contract.as_deref() == Some(table.as_str()) {
                    pending_contract = None;
                    // as dlt, the first resource that writes to a table in this extraction
                    // decides it (hints, contract); later ones write to it as it is
                    let mode = match decided_tables.get(&table) {
                        Some(mode) => *mode,
                        None => tables_contract(&schema, &table, &hints)?,
                    };
                    match mode {
                        ContractMode::Evolve => {
                            if !decided_tables.contains_key(&table) {
                                apply_hints(
                                    &mut schema,
                                    &table,
                                    &name,
                                    &hints,
                                    source.max_table_nesting,
                                    self.naming.as_ref(),
                                );
                            }
                            if !tables_seen.contains(&table) {
                                tables_seen.push(table.clone());
                            }
                        }
                        ContractMode::Freeze => return Err(violation("tables", &table, None, None)),
                        ContractMode::DiscardRow | ContractMode::DiscardValue => {
                            tables_seen.retain(|t| t != &table);
                            filtered.insert(table.clone());
                        }
                    }
                    decided_tables.insert(table.clone(), mode);
                }
                if filtered.contains(&table) {
                    continue;
                }
                // `stop_after`: the cursor passed the window (row_order); write what was kept, then stop
                let mut stop_after = false;
                let item = match (&mut cursor, item) {
                    (None, item) => item,
                    (Some(c), Item::Arrow(batch)) => {
                        let (kept, stop) = c.check_batch(&batch).map_err(|e| Error::Source {
                            resource: name.clone(),
                            message: format!("batch #{idx}: {e}"),
                            transient: false,
                        })?;
                        stop_after = stop;
                        match kept {
                            Some(b) => Item::Arrow(b),
                            None if stop => break,
                            None => continue,
                        }
                    }
                    (Some(c), item) => {
                        let v = match item {
                            Item::Json(v) => v,
                            Item::RawJson(s) => serde_json::from_str(&s)?,
                            Item::Arrow(_) => unreachable!("handled above"),
                            Item::RawJsonLines { .. } => unreachable!("split into lines above"),
                        };
                        match c.check(&v).map_err(|e| Error::Source {
                            resource: name.clone(),
                            message: format!("item #{idx}: {e}"),
                            transient: false,
                        })? {
                            crate::incremental::Decision::Keep => Item::Json(v),
                            crate::incremental::Decision::Skip => continue,
                            crate::incremental::Decision::Stop => break,
                        }
                    }
                };
                if let Item::RawJsonLines { lines, .. } = &item {
                    crate::fault::hit_nth_in("extract.item", total, *lines as u64);
                } else {
                    crate::fault::hit_nth("extract.item", total);
                }
                let n = writers.write(&table, item)?;
                *pstate.extracted_items.entry(table).or_default() += n;
                let before = total;
                total += n;
                // progress every 10,000 items, also when a block of lines passes several marks
                for mark in (before / 10_000 + 1)..=(total / 10_000) {
                    self.report(|p| p.items(Step::Extract, mark * 10_000));
                }
                if stop_after {
                    break;
                }
            }
            {
                let st = res_state.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let st: serde_json::Map<String, Value> = st.into_iter().filter(|(k, _)| k != "incremental").collect();
                if !st.is_empty() {
                    let src = new_state.source_state_mut(&schema.name);
                    let resources = src.entry("resources").or_insert_with(|| json!({}));
                    let res =
                        resources.as_object_mut().expect("object").entry(name.clone()).or_insert_with(|| json!({}));
                    let res = res.as_object_mut().expect("object");
                    for (k, v) in st {
                        res.insert(k, v);
                    }
                }
            }
            if let (Some(c), Some(cfg)) = (cursor, &hints.incremental)
                && let Some(st) = c.into_state()
            {
                let src = new_state.source_state_mut(&schema.name);
                let resources = src.entry("resources").or_insert_with(|| json!({}));
                let res = resources.as_object_mut().expect("object").entry(name.clone()).or_insert_with(|| json!({}));
                let inc = res.as_object_mut().expect("object").entry("incremental").or_insert_with(|| json!({}));
                inc.as_object_mut().expect("object").insert(cfg.cursor_path.clone(), st);
            }
            if hints.disposition() == WriteDisposition::Replace {
                // as dlt: replacing touches the source's state section
                new_state.source_state_mut(&schema.name);
            }
            pstate.resources.insert(name, tables_seen);
        }
        writers.finish()?;
        crate::fault::hit("extract.items_written");
        self.report(|p| p.items(Step::Extract, total));
        self.report(|p| p.step_finished(Step::Extract));

        new_state.set("pipeline_name", json!(self.name));
        new_state.set("dataset_name", json!(self.dataset_name));
        if new_state.get("default_schema_name").and_then(Value::as_str).is_none() {
            new_state.set("default_schema_name", json!(schema.name));
        }
        let mut names: Vec<Value> =
            new_state.get("schema_names").and_then(Value::as_array).cloned().unwrap_or_default();
        if !names.iter().any(|n| n.as_str() == Some(&schema.name)) {
            names.push(json!(schema.name));
        }
        new_state.set("schema_names", Value::Array(names));
        new_state.set("destination_type", json!(self.destination.destination_type()));
        // dlt records a destination name only when the user named the destination
        new_state.set("destination_name", Value::Null);
        {
            let local = new_state.local_mut();
            local.insert("_last_extracted_at".into(), json!(pstate.created_at));
        }
        if new_state.bump_version() {
            pstate.pipeline_state = Some(new_state.0.clone());
            if !schema.tables.contains_key(STATE_TABLE) {
                add_state_table(&mut schema, stored_hash.as_deref());
            }
        }
        schema.bump_version();
        write_atomic(&dir.join(SCHEMA_FILE), schema.to_json().as_bytes())?;
        write_package_state(&dir, &pstate)?;
        self.save_schema(&schema)?;
        self.storage.commit_extract(load_id)?;
        Ok(())
    }
}

/// The `tables` contract for a table at extract: only a new table is subject to it.
pub(super) fn tables_contract(schema: &Schema, table: &str, hints: &ResourceHints) -> Result<ContractMode> {
    let existing = schema.tables.get(table);
    if existing.is_some_and(|t| t.has_complete_columns() || t.seen_data()) {
        return Ok(ContractMode::Evolve);
    }
    let v = hints
        .schema_contract
        .as_ref()
        .or(existing.and_then(|t| t.schema_contract.as_ref()))
        .or(schema.settings.schema_contract.as_ref());
    Ok(match v {
        Some(v) => SchemaContract::parse(v)?.tables,
        None => ContractMode::Evolve,
    })
}

/// The state table joins the schema when extract writes the first state row. dlt extracts the
/// state as a second step after the data, and each step's schema replaces the one before it,
/// linked by hash: the history gets the stored hash (if the data changed the schema) and the
/// hash of the schema between the two steps.
pub(super) fn add_state_table(schema: &mut Schema, stored_hash: Option<&str>) {
    let after_data = schema.compute_hash();
    if let Some(stored) = stored_hash
        && stored != after_data
    {
        schema.link_previous_hash(stored.to_string());
    }
    schema.tables.insert(STATE_TABLE.to_string(), state_table());
    schema.link_previous_hash(after_data);
}

pub(super) struct ExtractWriters {
    dir: PathBuf,
    json: HashMap<String, (BufWriter<fs::File>, PathBuf)>,
    arrow: HashMap<String, (ArrowWriter<fs::File>, arrow::datatypes::SchemaRef)>,
    line: Vec<u8>,
}

pub(super) fn new_file_id() -> String {
    let b: [u8; 5] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl ExtractWriters {
    fn new(dir: PathBuf) -> Self {
        ExtractWriters { dir, json: HashMap::new(), arrow: HashMap::new(), line: Vec::with_capacity(4096) }
    }

    fn json_writer(&mut self, table: &str) -> Result<&mut (BufWriter<fs::File>, PathBuf)> {
        if !self.json.contains_key(table) {
            let p = self.dir.join(JobFile::file_name(table, &new_file_id(), 0, FileFormat::Jsonl));
            let f = fs::File::create(&p).at(&p)?;
            self.json.insert(table.to_string(), (BufWriter::with_capacity(1 << 20, f), p));
        }
        Ok(self.json.get_mut(table).expect("inserted"))
    }

    fn write(&mut self, table: &str, item: Item) -> Result<u64> {
        match item {
            Item::Json(Value::Array(values)) => {
                let mut n = 0;
                for v in values {
                    n += self.write(table, Item::Json(v))?;
                }
                Ok(n)
            }
            Item::RawJson(s) => {
                let t = s.trim();
                if t.starts_with('[') || t.contains('\n') {
                    // a list of items, or a document spread over lines: go through a value
                    return self.write(table, Item::Json(serde_json::from_str(t)?));
                }
                let (w, p) = self.json_writer(table)?;
                w.write_all(t.as_bytes()).at(p.clone())?;
                w.write_all(b"\n").at(p.clone())?;
                Ok(1)
            }
            Item::RawJsonLines { text, lines } => {
                debug_assert!(text.is_empty() || text.ends_with('\n'), "a block of lines ends in a newline");
                let (w, p) = self.json_writer(table)?;
                // through the writer's buffer in pieces smaller than it: the kernel then copies
                // from one buffer that stays in the cache, not from each block's fresh memory
                for piece in text.as_bytes().chunks(256 << 10) {
                    w.write_all(piece).at(p.clone())?;
                }
                Ok(lines as u64)
            }
            Item::Json(v) => {
                self.line.clear();
                serde_json::to_writer(&mut self.line, &v)?;
                self.line.push(b'\n');
                let line = std::mem::take(&mut self.line);
                let (w, p) = self.json_writer(table)?;
                let r = w.write_all(&line).at(p.clone());
                self.line = line;
                r?;
                Ok(1)
            }
            Item::Arrow(batch) => {
                let rows = batch.num_rows() as u64;
                let schema_changed = self.arrow.get(table).map(|(_, s)| s != &batch.schema()).unwrap_or(false);
                if schema_changed && let Some((w, _)) = self.arrow.remove(table) {
                    w.close()?;
                }
                if !self.arrow.contains_key(table) {
                    let p = self.dir.join(JobFile::file_name(table, &new_file_id(), 0, FileFormat::Parquet));
                    let f = fs::File::create(&p).at(&p)?;
                    // row groups of ~100k rows: loaders (DuckDB's parquet reader) hold a whole
                    // column chunk per reading thread, so group size is their memory per thread
                    let props = parquet::file::properties::WriterProperties::builder()
                        .set_max_row_group_row_count(Some(100_000))
                        .build();
                    let w = ArrowWriter::try_new(f, batch.schema(), Some(props))?;
                    self.arrow.insert(table.to_string(), (w, batch.schema()));
                }
                let (w, _) = self.arrow.get_mut(table).expect("inserted");
                w.write(&batch)?;
                Ok(rows)
            }
        }
    }

    fn finish(self) -> Result<()> {
        for (_, (mut w, p)) in self.json {
            w.flush().at(&p)?;
            w.get_ref().sync_all().at(&p)?;
        }
        for (_, (w, _)) in self.arrow {
            w.close()?;
        }
        Ok(())
    }
}
