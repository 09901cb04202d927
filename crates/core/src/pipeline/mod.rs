//! The pipeline runner: extract → normalize → load through load packages on disk.
//!
//! One file per stage: [`builder`] (the pipeline's settings), `sync` (state and schemas
//! restored from the destination), `extract`, `normalize`, `load`, `drop` (dropping resources,
//! refresh, pending packages) and [`info`] (load info and trace). This file holds the
//! pipeline itself, its schemas and state on disk, and the run that chains the stages.

use std::collections::HashMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{SecondsFormat, Utc};
use indexmap::IndexMap;
use parquet::arrow::ArrowWriter;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::Config;
use crate::contract::{ContractMode, SchemaContract, violation};
use crate::destination::{Destination, DestinationClient, FileFormat, JobFile, PackageToLoad};
use crate::error::{Error, IoContext, Result, Step};
use crate::hints::apply_hints;
use crate::ids::{load_id_time, new_load_id, random_row_id};
use crate::naming::NamingConvention;
use crate::normalizer::{NormalizeRequest, Normalizer};
use crate::package::{
    FAILED_JOBS, NEW_JOBS, PackageStage, PackageState, PackageStorage, SCHEMA_FILE, list_jobs, read_package_state,
    write_atomic, write_package_state,
};
use crate::resource::{IntoSource, Item, ResourceHints, Source, TableName};
use crate::runtime::block_on;
use crate::schema::{
    C_DLT_ID, STATE_TABLE, Schema, WriteDisposition, state_row_id_column, state_table, state_table_with_row_id,
};
use crate::state::{PipelineState, STATE_ENGINE_VERSION};

pub mod builder;
mod drop;
mod extract;
pub mod info;
mod load;
mod normalize;
mod sync;

// helpers one stage defines and another uses
use extract::new_file_id;
use normalize::write_state_job;
use sync::backoff;

pub use builder::PipelineBuilder;
pub use drop::{DropOptions, Refresh};
pub use info::{JobInfo, LoadInfo, Trace, TraceStep};

/// Receives progress of long steps (the CLI draws bars with it).
pub trait Progress: Send + Sync {
    /// A step starts.
    fn step_started(&self, step: Step, detail: &str);
    /// Items processed in the current step so far.
    fn items(&self, step: Step, count: u64);
    /// The step ended.
    fn step_finished(&self, step: Step);
}

/// dlt's default data dir: `$DLT_DATA_DIR`, `$XDG_DATA_HOME/dlt`, `/var/dlt` for root, `~/.dlt`, `/tmp/dlt`.
pub fn default_data_dir() -> PathBuf {
    if let Ok(d) = std::env::var("DLT_DATA_DIR")
        && !d.is_empty()
    {
        return PathBuf::from(d);
    }
    if let Ok(d) = std::env::var("XDG_DATA_HOME")
        && !d.is_empty()
    {
        return PathBuf::from(d).join("dlt");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false) {
            return PathBuf::from("/var/dlt");
        }
    }
    match std::env::var("HOME") {
        Ok(h) if !h.is_empty() => PathBuf::from(h).join(".dlt"),
        _ => PathBuf::from("/tmp/dlt"),
    }
}

/// Default pipelines dir: `<data_dir>/pipelines`.
pub fn default_pipelines_dir() -> PathBuf {
    default_data_dir().join("pipelines")
}

/// A pipeline: a working directory, a destination and a dataset.
pub struct Pipeline {
    name: String,
    destination: Arc<dyn Destination>,
    staging: Option<Arc<dyn Destination>>,
    dataset_name: String,
    working_dir: PathBuf,
    pipelines_dir: PathBuf,
    normalizer: Arc<dyn Normalizer>,
    progress: Option<Arc<dyn Progress>>,
    storage: PackageStorage,
    state: PipelineState,
    naming: Arc<dyn NamingConvention>,
    config: Config,
    dev_mode: bool,
    import_schema_path: Option<PathBuf>,
    export_schema_path: Option<PathBuf>,
    refresh: Option<Refresh>,
    /// Tables a `drop_data` refresh empties with the next package.
    refresh_truncate: Vec<String>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("destination", &self.destination.display_location())
            .field("dataset_name", &self.dataset_name)
            .field("working_dir", &self.working_dir)
            .finish()
    }
}

struct StepClock {
    started: Instant,
    started_at: String,
}

impl StepClock {
    fn start() -> Self {
        StepClock { started: Instant::now(), started_at: Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true) }
    }
    fn finish(&self, step: &str, result: &std::result::Result<Value, String>) -> TraceStep {
        TraceStep {
            step: step.to_string(),
            started_at: self.started_at.clone(),
            duration_s: self.started.elapsed().as_secs_f64(),
            status: if result.is_ok() { "COMPLETED".into() } else { "FAILED".into() },
            error: result.as_ref().err().cloned(),
            details: result.as_ref().ok().cloned().unwrap_or(Value::Null),
        }
    }
}

fn step_err(step: Step, load_id: Option<&str>, e: Error) -> Error {
    match e {
        e @ Error::StepFailed { .. } => e,
        e => Error::StepFailed { step, load_id: load_id.map(str::to_string), source: Box::new(e) },
    }
}

impl Pipeline {
    /// Pipeline name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Dataset name (normalized).
    pub fn dataset_name(&self) -> &str {
        &self.dataset_name
    }

    /// The working directory (`<pipelines_dir>/<name>`).
    pub fn working_dir(&self) -> &Path {
        &self.working_dir
    }

    /// The pipelines directory.
    pub fn pipelines_dir(&self) -> &Path {
        &self.pipelines_dir
    }

    /// The destination.
    pub fn destination(&self) -> &Arc<dyn Destination> {
        &self.destination
    }

    /// The committed local state.
    pub fn state(&self) -> &PipelineState {
        &self.state
    }

    /// The resolved configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether dev mode is on.
    pub fn dev_mode(&self) -> bool {
        self.dev_mode
    }

    /// Package storage.
    pub fn packages(&self) -> &PackageStorage {
        &self.storage
    }

    fn schema_path(&self, name: &str) -> PathBuf {
        self.working_dir.join("schemas").join(format!("{name}.schema.json"))
    }

    /// The stored schema of `name`, if any.
    pub fn schema(&self, name: &str) -> Result<Option<Schema>> {
        let p = self.schema_path(name);
        match fs::read_to_string(&p) {
            Ok(s) => Ok(Some(Schema::from_str_any(&s)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(p, e)),
        }
    }

    /// The default schema (the first one the pipeline loaded).
    pub fn default_schema(&self) -> Result<Option<Schema>> {
        match self.state.get("default_schema_name").and_then(Value::as_str) {
            Some(n) => self.schema(n),
            // no load committed a state yet (e.g. the first package is pending): the schema
            // the extraction saved is the pipeline's
            None => {
                let dir = self.working_dir.join("schemas");
                let mut names: Vec<String> = fs::read_dir(&dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.strip_suffix(".schema.json").map(str::to_string))
                    .collect();
                names.sort();
                match names.first() {
                    Some(n) => self.schema(n),
                    None => Ok(None),
                }
            }
        }
    }

    fn save_schema(&self, schema: &Schema) -> Result<()> {
        write_atomic(&self.schema_path(&schema.name), schema.to_pretty_json().as_bytes())
    }

    /// Apply the import folder's schema, if it changed since the last import (or write it there).
    fn import_schema(&self, mut schema: Schema) -> Result<Schema> {
        let Some(dir) = &self.import_schema_path else { return Ok(schema) };
        let path = dir.join(format!("{}.schema.yaml", schema.name));
        match fs::read_to_string(&path) {
            Ok(text) => {
                let mut imported = Schema::from_str_any(&text)
                    .map_err(|e| Error::Schema(format!("import schema {}: {e}", path.display())))?;
                if imported.name != schema.name {
                    return Err(Error::Schema(format!(
                        "import schema {} is named `{}`, expected `{}`",
                        path.display(),
                        imported.name,
                        schema.name
                    )));
                }
                let hash = imported.compute_hash();
                if schema.imported_version_hash.as_deref() != Some(hash.as_str()) {
                    imported.merge_missing_from(&schema);
                    imported.version = schema.version.max(imported.version);
                    imported.version_hash = schema.version_hash.clone();
                    imported.previous_hashes = schema.previous_hashes.clone();
                    imported.imported_version_hash = Some(hash);
                    schema = imported;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).at(dir)?;
                write_atomic(&path, schema.to_pretty_yaml().as_bytes())?;
                schema.imported_version_hash = Some(Schema::from_str_any(&schema.to_pretty_yaml())?.compute_hash());
            }
            Err(e) => return Err(Error::io(path, e)),
        }
        Ok(schema)
    }

    fn export_schema(&self, schema: &Schema) -> Result<()> {
        if let Some(dir) = &self.export_schema_path {
            fs::create_dir_all(dir).at(dir)?;
            write_atomic(&dir.join(format!("{}.schema.yaml", schema.name)), schema.to_pretty_yaml().as_bytes())?;
        }
        Ok(())
    }

    fn save_state(&self) -> Result<()> {
        write_atomic(&self.working_dir.join("state.json"), self.state.to_json().as_bytes())
    }

    /// A client for the destination dataset, to run SQL (as users' tests do with dlt). An
    /// error names the destination when it has no SQL access.
    pub fn sql_client(&self) -> Result<SqlHandle> {
        let client = block_on(self.destination.client(&self.dataset_name))?;
        SqlHandle::new(client, self.destination.name())
    }

    /// Read a whole table of the dataset as Arrow batches.
    pub fn read_table(&self, table: &str) -> Result<Vec<RecordBatch>> {
        let mut c = self.sql_client()?;
        c.query(&format!("SELECT * FROM \"{}\"", table.replace('"', "\"\"")))
    }

    /// The last run's trace.
    pub fn last_trace(&self) -> Result<Option<Trace>> {
        let p = self.working_dir.join("trace.json");
        match fs::read_to_string(&p) {
            Ok(s) => Ok(Some(serde_json::from_str(&s)?)),
            Err(_) => Ok(None),
        }
    }

    fn report(&self, f: impl FnOnce(&dyn Progress)) {
        if let Some(p) = &self.progress {
            f(p.as_ref())
        }
    }

    /// Whether packages wait to be normalized or loaded.
    pub fn has_pending_packages(&self) -> Result<bool> {
        Ok(!self.storage.list(PackageStage::Extracted)?.is_empty()
            || !self.storage.list(PackageStage::Normalized)?.is_empty())
    }

    /// Run with a dlt `refresh` mode: tables and state of the source (or of the resources being
    /// run) are dropped or emptied before the new data loads.
    pub fn run_with_refresh(&mut self, data: impl IntoSource, refresh: Option<Refresh>) -> Result<LoadInfo> {
        self.refresh = refresh;
        let r = self.run(data);
        self.refresh = None;
        r
    }

    /// Run a source: finish pending packages, then extract, normalize and load.
    pub fn run(&mut self, data: impl IntoSource) -> Result<LoadInfo> {
        let started_at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut trace =
            Trace { pipeline_name: self.name.clone(), started_at: started_at.clone(), ..Default::default() };
        let first_run = self.state.local_mut().get("first_run").and_then(Value::as_bool).unwrap_or(true);
        let result = self.run_inner(data.into_source(&self.name), &mut trace);
        trace.finished_at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        trace.resolved_config = self.config.resolved();
        let result = result.map(|mut info| {
            info.started_at = started_at;
            info.finished_at = trace.finished_at.clone();
            info.first_run = first_run;
            trace.load_info = serde_json::to_value(&info).unwrap_or(Value::Null);
            info
        });
        // the trace is best effort: a run must not fail because its trace could not be written
        let _ = write_atomic(&self.working_dir.join("trace.json"), serde_json::to_string_pretty(&trace)?.as_bytes());
        result
    }

    fn run_inner(&mut self, source: Source, trace: &mut Trace) -> Result<LoadInfo> {
        if !self.dev_mode {
            let clock = StepClock::start();
            let r = self.sync_with_retries();
            trace.steps.push(clock.finish("sync", &r.as_ref().map(|b| json!(b)).map_err(|e| e.to_string())));
            r.map_err(|e| step_err(Step::Sync, None, e))?;
        }
        let mut info = self.empty_info();
        // 1. packages left by an earlier run go first (in the trace only when there were any)
        if !self.storage.list(PackageStage::Extracted)?.is_empty() {
            let clock = StepClock::start();
            let pending = self.normalize_inner(&mut info);
            trace.steps.push(
                clock.finish("normalize", &pending.as_ref().map(|_| json!("pending")).map_err(|e| e.to_string())),
            );
            pending?;
        }
        if !self.storage.list(PackageStage::Normalized)?.is_empty() {
            let clock = StepClock::start();
            let r = self.load_inner(&mut info);
            trace
                .steps
                .push(clock.finish("load", &r.as_ref().map(|_| json!(info.load_ids)).map_err(|e| e.to_string())));
            r?;
        }
        // 2. the new data
        let clock = StepClock::start();
        let r = self.extract_inner(source);
        let t = clock.started.elapsed().as_secs_f64();
        trace.steps.push(clock.finish("extract", &r.as_ref().map(|id| json!(id)).map_err(|e| e.to_string())));
        r?;
        info.timings.insert("extract".into(), t);
        let clock = StepClock::start();
        let r = self.normalize_inner(&mut info);
        info.timings.insert("normalize".into(), clock.started.elapsed().as_secs_f64());
        trace
            .steps
            .push(clock.finish("normalize", &r.as_ref().map(|_| json!(info.row_counts)).map_err(|e| e.to_string())));
        r?;
        let clock = StepClock::start();
        let r = self.load_inner(&mut info);
        info.timings.insert("load".into(), clock.started.elapsed().as_secs_f64());
        trace.steps.push(clock.finish("load", &r.as_ref().map(|_| json!(info.load_ids)).map_err(|e| e.to_string())));
        r?;
        Ok(info)
    }

    fn empty_info(&self) -> LoadInfo {
        LoadInfo {
            pipeline_name: self.name.clone(),
            destination_name: self.destination.name().to_string(),
            destination_type: self.destination.destination_type(),
            destination_location: self.destination.display_location(),
            dataset_name: self.dataset_name.clone(),
            ..Default::default()
        }
    }

    /// Extract a source into a new package; returns its load id.
    pub fn extract(&mut self, data: impl IntoSource) -> Result<String> {
        self.extract_inner(data.into_source(&self.name))
    }

    /// Normalize every extracted package.
    pub fn normalize(&mut self) -> Result<IndexMap<String, u64>> {
        let mut info = self.empty_info();
        self.normalize_inner(&mut info)?;
        Ok(info.row_counts)
    }

    /// Load every normalized package.
    pub fn load(&mut self) -> Result<LoadInfo> {
        let mut info = self.empty_info();
        let t = Instant::now();
        self.load_inner(&mut info)?;
        info.timings.insert("load".into(), t.elapsed().as_secs_f64());
        Ok(info)
    }

    fn last_load_id(&self) -> Result<Option<String>> {
        let mut all = vec![];
        for st in [PackageStage::Extracted, PackageStage::Normalized, PackageStage::Loaded] {
            all.extend(self.storage.list(st)?);
        }
        all.sort_by(|a, b| crate::package::cmp_load_ids(a, b));
        Ok(all.pop())
    }
}

/// SQL on a destination's dataset from synchronous code ([`Pipeline::sql_client`]).
pub struct SqlHandle {
    client: Box<dyn DestinationClient>,
}

impl SqlHandle {
    fn new(mut client: Box<dyn DestinationClient>, destination: &str) -> Result<Self> {
        if client.sql().is_none() {
            return Err(Error::Config(format!(
                "destination {destination} has no SQL access to its dataset (for the filesystem destination, \
                 build dlt-rs with its `sql` feature)"
            )));
        }
        Ok(SqlHandle { client })
    }

    fn sql(&mut self) -> &mut dyn crate::destination::SqlClient {
        self.client.sql().expect("checked in SqlHandle::new")
    }

    /// Run statements that return nothing.
    pub fn execute(&mut self, sql: &str) -> Result<()> {
        block_on(self.sql().execute(sql))
    }

    /// Run a query and collect its result as Arrow batches.
    pub fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        block_on(self.sql().query(sql))
    }

    /// Names of the tables in the dataset.
    pub fn existing_tables(&mut self) -> Result<Vec<String>> {
        block_on(self.client.existing_tables())
    }

    /// The destination client underneath, for async code.
    pub fn into_inner(self) -> Box<dyn DestinationClient> {
        self.client
    }
}
