//! The normalize step: an extracted package into job files per table, checked before it is loaded.

use super::*;

impl Pipeline {
    pub(super) fn normalize_inner(&mut self, info: &mut LoadInfo) -> Result<()> {
        for load_id in self.storage.list(PackageStage::Extracted)? {
            self.normalize_package(&load_id, info).map_err(|e| step_err(Step::Normalize, Some(&load_id), e))?;
        }
        Ok(())
    }

    pub(super) fn normalize_package(&mut self, load_id: &str, info: &mut LoadInfo) -> Result<()> {
        let ex_dir = self.storage.extracted_dir().join(load_id);
        let mut pstate = read_package_state(&ex_dir)?;
        let schema_doc = fs::read_to_string(ex_dir.join(SCHEMA_FILE)).at(ex_dir.join(SCHEMA_FILE))?;
        let mut schema = Schema::from_str_any(&schema_doc)?;
        // the local schema may have evolved since (another package); start from the newest
        if let Some(local) = self.schema(&schema.name)?
            && local.version >= schema.version
        {
            schema = local;
        }
        let files = list_jobs(&ex_dir, NEW_JOBS)?;
        if files.is_empty() && is_empty_package(&pstate, &schema) {
            // as dlt: a package with no data, no state change and nothing to empty is dropped
            // here and never reaches the destination (no `_dlt_loads` row, "0 load packages")
            self.storage.drop_extracted(load_id)?;
            tracing::info!("package {load_id} has nothing to load and was dropped");
            return Ok(());
        }
        let out_dir = self.storage.new_normalize(load_id)?;
        let jobs_dir = out_dir.join(NEW_JOBS);
        self.report(|p| p.step_started(Step::Normalize, load_id));
        let progress = self.progress.clone();
        let on_progress = move |n: u64| {
            if let Some(p) = &progress {
                p.items(Step::Normalize, n)
            }
        };
        let caps = self.destination.capabilities().clone();
        let result = self.normalizer.normalize(NormalizeRequest {
            load_id,
            files: &files,
            output_dir: &jobs_dir,
            schema: &mut schema,
            capabilities: &caps,
            config: &self.config,
            on_progress: &on_progress,
        });
        self.report(|p| p.step_finished(Step::Normalize));
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = fs::remove_dir_all(&out_dir);
                return Err(e);
            }
        };
        let tables: Vec<String> = result.row_counts.keys().cloned().collect();
        if let Err(e) = crate::validate::package(&schema, &tables, &caps, self.destination.name()) {
            // a mistake in the hints, not in the data: the package would fail at every load, so
            // it goes; nothing of it was loaded and the state commits only with a load
            let _ = fs::remove_dir_all(&out_dir);
            self.storage.drop_extracted(load_id)?;
            return Err(e);
        }
        let mut row_counts = result.row_counts;
        if let Some(st) = &pstate.pipeline_state {
            let st = PipelineState(st.clone());
            write_state_job(&jobs_dir, &st, &self.name, load_id, &pstate.created_at)?;
            let t = schema.tables.entry(STATE_TABLE.to_string()).or_insert_with(state_table);
            // the row id column comes with the first normalized state row
            if !t.columns.contains_key(C_DLT_ID) {
                t.columns.insert(C_DLT_ID.to_string(), state_row_id_column());
            }
            t.set_seen_data();
            *row_counts.entry(STATE_TABLE.to_string()).or_default() += 1;
        }
        // replace: every table of the chain of each replaced root table is emptied first
        let mut truncate = vec![];
        for tables in pstate.resources.values() {
            for t in tables {
                if schema.tables.get(t).and_then(|t| t.write_disposition) == Some(WriteDisposition::Replace) {
                    let mut chain = schema.table_chain(t);
                    chain.reverse();
                    for c in chain {
                        if !truncate.contains(&c) {
                            truncate.push(c);
                        }
                    }
                }
            }
        }
        for t in &pstate.refresh_truncate {
            if !truncate.contains(t) {
                truncate.push(t.clone());
            }
        }
        pstate.truncate_tables = truncate;
        // a replaced table that got no rows still reports them (dlt: `table: 0`)
        for tables in pstate.resources.values() {
            for t in tables {
                if schema
                    .tables
                    .get(t)
                    .is_some_and(|x| x.write_disposition == Some(WriteDisposition::Replace) && x.seen_data())
                {
                    row_counts.entry(t.clone()).or_insert(0);
                }
            }
        }
        let mut with_jobs: Vec<String> = vec![];
        for j in list_jobs(&out_dir, NEW_JOBS)? {
            if !with_jobs.contains(&j.table) {
                with_jobs.push(j.table);
            }
        }
        pstate.tables_with_jobs = with_jobs;
        pstate.row_counts = row_counts.clone();
        schema.bump_version();
        write_atomic(&out_dir.join(SCHEMA_FILE), schema.to_json().as_bytes())?;
        write_atomic(&out_dir.join("schema_updates.json"), b"[]")?;
        write_package_state(&out_dir, &pstate)?;
        self.save_schema(&schema)?;
        self.export_schema(&schema)?;
        crate::fault::hit("normalize.before_publish");
        self.storage.commit_normalize(load_id)?;
        for (t, n) in row_counts {
            *info.row_counts.entry(t).or_default() += n;
        }
        Ok(())
    }
}

/// Whether an extracted package without job files has nothing to do in the destination: no
/// state change, no table to empty by a refresh, and no replaced root table that holds data
/// (dlt writes an empty job for such a table, so that the load empties it).
pub(super) fn is_empty_package(pstate: &PackageState, schema: &Schema) -> bool {
    let replaces_data = pstate.resources.values().flatten().any(|t| {
        schema.tables.get(t).is_some_and(|x| x.write_disposition == Some(WriteDisposition::Replace) && x.seen_data())
    });
    pstate.pipeline_state.is_none() && pstate.refresh_truncate.is_empty() && !replaces_data
}

/// Write the `_dlt_pipeline_state` row of a package as a parquet job.
pub(super) fn write_state_job(
    dir: &Path,
    state: &PipelineState,
    pipeline: &str,
    load_id: &str,
    created_at: &str,
) -> Result<()> {
    let created = chrono::DateTime::parse_from_rfc3339(created_at)
        .map(|d| d.timestamp_micros())
        .unwrap_or_else(|_| Utc::now().timestamp_micros());
    let fields = vec![
        Field::new("version", ArrowType::Int64, false),
        Field::new("engine_version", ArrowType::Int64, false),
        Field::new("pipeline_name", ArrowType::Utf8, false),
        Field::new("state", ArrowType::Utf8, false),
        Field::new("created_at", ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("version_hash", ArrowType::Utf8, true),
        Field::new("_dlt_load_id", ArrowType::Utf8, false),
        Field::new("_dlt_id", ArrowType::Utf8, false),
    ];
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![state.version()])),
        Arc::new(Int64Array::from(vec![STATE_ENGINE_VERSION as i64])),
        Arc::new(StringArray::from(vec![pipeline])),
        Arc::new(StringArray::from(vec![state.encode_for_destination()])),
        Arc::new(TimestampMicrosecondArray::from(vec![created]).with_timezone("UTC")),
        Arc::new(StringArray::from(vec![state.version_hash()])),
        Arc::new(StringArray::from(vec![load_id])),
        Arc::new(StringArray::from(vec![random_row_id()])),
    ];
    let batch = RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), cols)?;
    let p = dir.join(JobFile::file_name(STATE_TABLE, &new_file_id(), 0, FileFormat::Parquet));
    let f = fs::File::create(&p).at(&p)?;
    let mut w = ArrowWriter::try_new(f, batch.schema(), None)?;
    w.write(&batch)?;
    w.close()?;
    Ok(())
}
