//! The pipeline runner: extract → normalize → load through load packages on disk.

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
use crate::schema::{
    C_DLT_ID, STATE_TABLE, Schema, WriteDisposition, state_row_id_column, state_table, state_table_with_row_id,
};
use crate::state::{PipelineState, STATE_ENGINE_VERSION};

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

/// Builds a [`Pipeline`].
pub struct PipelineBuilder {
    name: String,
    destination: Option<Arc<dyn Destination>>,
    dataset_name: Option<String>,
    pipelines_dir: Option<PathBuf>,
    dev_mode: bool,
    normalizer: Option<Arc<dyn Normalizer>>,
    progress: Option<Arc<dyn Progress>>,
    config: Option<Config>,
    import_schema_path: Option<PathBuf>,
    export_schema_path: Option<PathBuf>,
}

impl PipelineBuilder {
    /// Start building a pipeline named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        PipelineBuilder {
            name: name.into(),
            destination: None,
            dataset_name: None,
            pipelines_dir: None,
            dev_mode: false,
            normalizer: None,
            progress: None,
            config: None,
            import_schema_path: None,
            export_schema_path: None,
        }
    }
    /// A folder of `<schema>.schema.yaml` files the user edits: read before each extract; a
    /// changed file is the base of the pipeline's schema (what was inferred since is kept on top).
    /// A missing file is written there on the first run.
    pub fn import_schema_path(mut self, p: impl Into<PathBuf>) -> Self {
        self.import_schema_path = Some(p.into());
        self
    }
    /// A folder where `<schema>.schema.yaml` is written after every normalize.
    pub fn export_schema_path(mut self, p: impl Into<PathBuf>) -> Self {
        self.export_schema_path = Some(p.into());
        self
    }
    /// The destination.
    pub fn destination(mut self, d: Arc<dyn Destination>) -> Self {
        self.destination = Some(d);
        self
    }
    /// Dataset name (default `<name>_dataset`).
    pub fn dataset_name(mut self, d: impl Into<String>) -> Self {
        self.dataset_name = Some(d.into());
        self
    }
    /// Folder holding pipeline working dirs (default `$DLT_DATA_DIR/pipelines`).
    pub fn pipelines_dir(mut self, d: impl Into<PathBuf>) -> Self {
        self.pipelines_dir = Some(d.into());
        self
    }
    /// A fresh, time-suffixed dataset and a reset working dir.
    pub fn dev_mode(mut self, on: bool) -> Self {
        self.dev_mode = on;
        self
    }
    /// The normalizer (the facade sets the relational one).
    pub fn normalizer(mut self, n: Arc<dyn Normalizer>) -> Self {
        self.normalizer = Some(n);
        self
    }
    /// Progress reporting.
    pub fn progress(mut self, p: Arc<dyn Progress>) -> Self {
        self.progress = Some(p);
        self
    }
    /// Config providers (default: environment and `./.dlt`).
    pub fn config(mut self, c: Config) -> Self {
        self.config = Some(c);
        self
    }

    /// Open (or create) the pipeline's working directory.
    pub fn build(self) -> Result<Pipeline> {
        if self.name.trim().is_empty() {
            return Err(Error::Config("pipeline name must not be empty".into()));
        }
        if self.name.contains(['/', '\\']) || self.name == "." || self.name == ".." {
            return Err(Error::Config(format!("pipeline name `{}` may not contain path separators", self.name)));
        }
        let destination =
            self.destination.ok_or_else(|| Error::Config(format!("pipeline `{}` has no destination", self.name)))?;
        let normalizer = self
            .normalizer
            .ok_or_else(|| Error::Config("no normalizer configured (use dlt::pipeline() from the facade)".into()))?;
        let pipelines_dir = self.pipelines_dir.unwrap_or_else(default_pipelines_dir);
        let working_dir = pipelines_dir.join(&self.name);
        if self.dev_mode && working_dir.exists() {
            fs::remove_dir_all(&working_dir).at(&working_dir)?;
        }
        fs::create_dir_all(working_dir.join("schemas")).at(&working_dir)?;
        let storage = PackageStorage::open(&working_dir)?;
        storage.cleanup_partial()?;
        let config = match self.config {
            Some(c) => c,
            None => Config::load(&std::env::current_dir().unwrap_or_default(), None)?,
        }
        .with_pipeline(&self.name);
        // the naming convention: `schema.naming` in config (dlt's SCHEMA__NAMING), else snake_case
        let naming_name = config.get(&["schema"], "naming").map(|v| v.as_string()).unwrap_or("snake_case".into());
        let naming = destination.capabilities().naming_convention(&naming_name).ok_or_else(|| {
            Error::Config(format!(
                "unknown naming convention `{naming_name}` (snake_case, duck_case, direct, sql_cs_v1, sql_ci_v1)"
            ))
        })?;
        let mut state = match fs::read_to_string(working_dir.join("state.json")) {
            Ok(s) => PipelineState::from_json(&s)?,
            Err(_) => PipelineState::new(&self.name),
        };
        let dataset_raw = match (&self.dataset_name, state.get("dataset_name").and_then(Value::as_str)) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) if !self.dev_mode => d.to_string(),
            (None, _) => format!("{}_dataset", self.name),
        };
        let mut dataset_name = naming.normalize_identifier(&dataset_raw);
        if self.dev_mode {
            let suffix = chrono::Local::now().format("%Y%m%d%I%M%S").to_string();
            if dataset_name.ends_with('_') {
                dataset_name = format!("{dataset_name}{suffix}");
            } else {
                dataset_name = format!("{dataset_name}_{suffix}");
            }
            state.local_mut().insert("_dev_mode".into(), json!(true));
        }
        Ok(Pipeline {
            name: self.name,
            destination,
            dataset_name,
            working_dir,
            pipelines_dir,
            normalizer,
            progress: self.progress,
            storage,
            state,
            naming,
            config,
            dev_mode: self.dev_mode,
            import_schema_path: self.import_schema_path,
            export_schema_path: self.export_schema_path,
            refresh: None,
            refresh_truncate: vec![],
        })
    }
}

/// Row counts and jobs of a completed run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LoadInfo {
    /// Pipeline name.
    pub pipeline_name: String,
    /// Destination name (`duckdb`).
    pub destination_name: String,
    /// Destination type (`dlt.destinations.duckdb`).
    pub destination_type: String,
    /// Where the data went, without secrets.
    pub destination_location: String,
    /// Dataset.
    pub dataset_name: String,
    /// Packages loaded in this run, oldest first.
    pub load_ids: Vec<String>,
    /// Rows normalized per table in this run.
    pub row_counts: IndexMap<String, u64>,
    /// Jobs loaded.
    pub jobs: Vec<JobInfo>,
    /// Jobs that failed.
    pub failed_jobs: Vec<JobInfo>,
    /// Seconds per step.
    pub timings: IndexMap<String, f64>,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339).
    pub finished_at: String,
    /// Whether this was the pipeline's first run.
    pub first_run: bool,
}

/// One job of a load.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    /// Load id.
    pub load_id: String,
    /// Table.
    pub table: String,
    /// Job file name.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// Error text for failed jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl LoadInfo {
    /// Whether any job failed.
    pub fn has_failed_jobs(&self) -> bool {
        !self.failed_jobs.is_empty()
    }
}

impl std::fmt::Display for LoadInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "Pipeline {} load step finished in {:.2} seconds",
            self.pipeline_name,
            self.timings.get("load").copied().unwrap_or(0.0)
        )?;
        writeln!(
            f,
            "{} load package(s) were loaded to destination {} and into dataset {}",
            self.load_ids.len(),
            self.destination_name,
            self.dataset_name
        )?;
        writeln!(
            f,
            "The {} destination used {} location to store data",
            self.destination_name, self.destination_location
        )?;
        for id in &self.load_ids {
            let failed = self.failed_jobs.iter().filter(|j| &j.load_id == id).count();
            if failed == 0 {
                writeln!(f, "Load package {id} is LOADED and contains no failed jobs")?;
            } else {
                writeln!(f, "Load package {id} is LOADED and contains {failed} FAILED job(s)!")?;
            }
        }
        Ok(())
    }
}

/// One step in a trace.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TraceStep {
    /// Step name.
    pub step: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// Seconds.
    pub duration_s: f64,
    /// COMPLETED or FAILED.
    pub status: String,
    /// Error text (never contains secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rows per table (normalize) or load ids (load).
    #[serde(default)]
    pub details: Value,
}

/// The trace of the last run, persisted as `trace.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct Trace {
    /// Pipeline name.
    pub pipeline_name: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339).
    pub finished_at: String,
    /// Steps run.
    pub steps: Vec<TraceStep>,
    /// The load info, when the run got that far.
    #[serde(default)]
    pub load_info: Value,
    /// Config keys resolved for the run, with their providers (never their values).
    #[serde(default)]
    pub resolved_config: Vec<crate::config::Resolved>,
}

/// A pipeline: a working directory, a destination and a dataset.
pub struct Pipeline {
    name: String,
    destination: Arc<dyn Destination>,
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

    /// A client for the destination dataset, to run SQL (as users' tests do with dlt).
    pub fn sql_client(&self) -> Result<Box<dyn DestinationClient>> {
        self.destination.client(&self.dataset_name)
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

    /// Delete packages that are extracted or normalized but not loaded.
    pub fn drop_pending_packages(&self) -> Result<Vec<String>> {
        self.storage.drop_pending()
    }

    /// Whether packages wait to be normalized or loaded.
    pub fn has_pending_packages(&self) -> Result<bool> {
        Ok(!self.storage.list(PackageStage::Extracted)?.is_empty()
            || !self.storage.list(PackageStage::Normalized)?.is_empty())
    }

    /// Restore state and schemas from the destination, as dlt's `sync_destination` does: the
    /// destination's newest state (of a completed load) replaces the local one when its
    /// `_state_version` is at least the local one and its hash differs — so a dataset another
    /// tool (Python dlt, or dlt-rs on another machine) loaded since wins over a stale working
    /// dir — and schemas the state names that are missing locally are fetched. Returns whether
    /// the state was replaced. A destination that cannot be read is an error: extracting on an
    /// empty or stale state would load rows again.
    pub fn sync_destination(&mut self) -> Result<bool> {
        let local_exists = self.working_dir.join("state.json").exists();
        let mut client = self.destination.client(&self.dataset_name)?;
        let stored = client.stored_state(&self.name)?;
        let Some(stored) = stored else {
            let local_dataset = self.state.get("dataset_name").and_then(Value::as_str).unwrap_or_default();
            if local_exists && !local_dataset.is_empty() && local_dataset != self.dataset_name {
                // another dataset than the last run's, without this pipeline's state: it starts
                // from fresh schemas (as dlt does)
                let dir = self.working_dir.join("schemas");
                for f in crate::package::list_files(&dir)? {
                    fs::remove_file(&f).at(&f)?;
                }
            }
            return Ok(false);
        };
        let mut remote = PipelineState::decode_from_destination(&stored.state)?;
        let replace = !local_exists
            || (remote.version() >= self.state.version() && remote.version_hash() != self.state.version_hash());
        let names: Vec<String> = if replace { &remote } else { &self.state }
            .get("schema_names")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let mut schemas = vec![];
        for n in names {
            if !replace && self.schema_path(&n).exists() {
                continue;
            }
            if let Some(doc) = client.stored_schema(&n)? {
                schemas.push(Schema::from_str_any(&doc)?);
            }
        }
        drop(client);
        if replace {
            if local_exists {
                tracing::info!(
                    "the destination holds a newer state of pipeline {} (version {} against the local {}): \
                     restoring it and its schemas",
                    self.name,
                    remote.version(),
                    self.state.version()
                );
                let dir = self.working_dir.join("schemas");
                for f in crate::package::list_files(&dir)? {
                    fs::remove_file(&f).at(&f)?;
                }
            }
            // the local section stays this machine's
            let local = self.state.local_mut().clone();
            *remote.local_mut() = local;
            remote.local_mut().insert("first_run".into(), json!(false));
            self.state = remote;
        }
        for schema in &schemas {
            self.save_schema(schema)?;
        }
        if replace {
            self.save_state()?;
        }
        Ok(replace)
    }

    /// How transient destination errors are retried: `load.raise_on_max_retries` (5) retries,
    /// waits from `load.retry_backoff_ms` (250) doubling per attempt.
    fn retry_settings(&self) -> (u32, u64) {
        let max_retries =
            self.config.get(&["load"], "raise_on_max_retries").and_then(|v| v.as_i64()).unwrap_or(5).max(0) as u32;
        let backoff_ms =
            self.config.get(&["load"], "retry_backoff_ms").and_then(|v| v.as_i64()).unwrap_or(250).max(0) as u64;
        (max_retries, backoff_ms)
    }

    /// [`Pipeline::sync_destination`], with transient errors (a destination that is briefly
    /// unreachable or locked) retried as the load step retries them.
    fn sync_with_retries(&mut self) -> Result<bool> {
        let (max_retries, backoff_ms) = self.retry_settings();
        let mut attempt = 0u32;
        loop {
            match self.sync_destination() {
                Err(e) if e.is_transient() && attempt < max_retries => {
                    attempt += 1;
                    tracing::warn!("restoring state from the destination failed, retry {attempt}/{max_retries}: {e}");
                    backoff(backoff_ms, attempt);
                }
                r => return r,
            }
        }
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

    /// Drop or empty what a refresh mode names; returns tables to empty with the next package.
    fn apply_refresh(&mut self, mode: Refresh, source: &Source) -> Result<Vec<String>> {
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
        let mut client = self.destination.client(&self.dataset_name)?;
        client.initialize_storage()?;
        client.drop_tables(&tables)?;
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

    fn extract_inner(&mut self, source: Source) -> Result<String> {
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

    fn extract_package(&mut self, source: Source, load_id: &str) -> Result<()> {
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

    fn normalize_inner(&mut self, info: &mut LoadInfo) -> Result<()> {
        for load_id in self.storage.list(PackageStage::Extracted)? {
            self.normalize_package(&load_id, info).map_err(|e| step_err(Step::Normalize, Some(&load_id), e))?;
        }
        Ok(())
    }

    fn normalize_package(&mut self, load_id: &str, info: &mut LoadInfo) -> Result<()> {
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

    fn load_inner(&mut self, info: &mut LoadInfo) -> Result<()> {
        for load_id in self.storage.list(PackageStage::Normalized)? {
            self.report(|p| p.step_started(Step::Load, &load_id));
            let r = self.load_package(&load_id, info);
            self.report(|p| p.step_finished(Step::Load));
            r.map_err(|e| step_err(Step::Load, Some(&load_id), e))?;
        }
        Ok(())
    }

    fn load_package(&mut self, load_id: &str, info: &mut LoadInfo) -> Result<()> {
        let dir = self.storage.normalized_dir().join(load_id);
        let pstate = read_package_state(&dir)?;
        let schema = Schema::from_str_any(&fs::read_to_string(dir.join(SCHEMA_FILE)).at(dir.join(SCHEMA_FILE))?)?;
        let jobs = list_jobs(&dir, NEW_JOBS)?;
        // transient errors (connection lost, lock timeouts) are retried with exponential backoff;
        // terminal ones leave the package pending with the reason in failed_jobs/
        let (max_retries, backoff_ms) = self.retry_settings();
        let mut attempt = 0u32;
        loop {
            let r = self
                .destination
                .client(&self.dataset_name)
                .and_then(|mut client| self.try_commit(client.as_mut(), load_id, &schema, &jobs, &pstate));
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
            let mut client = self.destination.client(&self.dataset_name)?;
            client.initialize_storage()?;
            client.drop_tables(&tables)?;
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

    fn try_commit(
        &self,
        client: &mut dyn DestinationClient,
        load_id: &str,
        schema: &Schema,
        jobs: &[JobFile],
        pstate: &PackageState,
    ) -> Result<()> {
        client.initialize_storage()?;
        if client.is_loaded(load_id)? {
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
        client.update_stored_schema(schema, &ddl_tables)?;
        let replace_strategy = self.replace_strategy()?;
        client.commit_package(&PackageToLoad {
            load_id,
            schema,
            jobs,
            truncate_tables: &pstate.truncate_tables,
            replace_strategy,
        })
    }

    /// `destination.replace_strategy` (dlt's `DESTINATION__REPLACE_STRATEGY`), checked against
    /// what the destination supports.
    fn replace_strategy(&self) -> Result<crate::destination::ReplaceStrategy> {
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
fn remove_path(root: &mut serde_json::Map<String, Value>, path: &str) {
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

/// The `tables` contract for a table at extract: only a new table is subject to it.
fn tables_contract(schema: &Schema, table: &str, hints: &ResourceHints) -> Result<ContractMode> {
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
fn add_state_table(schema: &mut Schema, stored_hash: Option<&str>) {
    let after_data = schema.compute_hash();
    if let Some(stored) = stored_hash
        && stored != after_data
    {
        schema.link_previous_hash(stored.to_string());
    }
    schema.tables.insert(STATE_TABLE.to_string(), state_table());
    schema.link_previous_hash(after_data);
}

struct ExtractWriters {
    dir: PathBuf,
    json: HashMap<String, (BufWriter<fs::File>, PathBuf)>,
    arrow: HashMap<String, (ArrowWriter<fs::File>, arrow::datatypes::SchemaRef)>,
    line: Vec<u8>,
}

/// Whether an extracted package without job files has nothing to do in the destination: no
/// state change, no table to empty by a refresh, and no replaced root table that holds data
/// (dlt writes an empty job for such a table, so that the load empties it).
fn is_empty_package(pstate: &PackageState, schema: &Schema) -> bool {
    let replaces_data = pstate.resources.values().flatten().any(|t| {
        schema.tables.get(t).is_some_and(|x| x.write_disposition == Some(WriteDisposition::Replace) && x.seen_data())
    });
    pstate.pipeline_state.is_none() && pstate.refresh_truncate.is_empty() && !replaces_data
}

/// Wait before retry `attempt` (1-based): `backoff_ms` doubled per attempt.
fn backoff(backoff_ms: u64, attempt: u32) {
    std::thread::sleep(std::time::Duration::from_millis(backoff_ms.saturating_mul(1 << attempt.min(10))));
}

fn new_file_id() -> String {
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

/// Write the `_dlt_pipeline_state` row of a package as a parquet job.
fn write_state_job(dir: &Path, state: &PipelineState, pipeline: &str, load_id: &str, created_at: &str) -> Result<()> {
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
