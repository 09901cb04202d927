//! Building a pipeline: its name, destination, dataset, folders and config.

use super::*;

/// Builds a [`Pipeline`].
pub struct PipelineBuilder {
    name: String,
    destination: Option<Arc<dyn Destination>>,
    staging: Option<Arc<dyn Destination>>,
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
            staging: None,
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
    /// A staging destination (dlt's `staging=`): job files are uploaded there first and the
    /// destination loads them from it. It must be able to stage ([`Destination::as_staging`],
    /// the filesystem destination) and the destination must load staged files
    /// (`Capabilities::supported_staging_file_formats`).
    pub fn staging(mut self, d: Arc<dyn Destination>) -> Self {
        self.staging = Some(d);
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
        if let Some(st) = &self.staging {
            if st.as_staging().is_none() {
                return Err(Error::Config(format!(
                    "pipeline `{}`: the {} destination cannot stage files for another destination (the \
                     filesystem destination can)",
                    self.name,
                    st.name()
                )));
            }
            if destination.capabilities().supported_staging_file_formats.is_empty() {
                return Err(Error::Config(format!(
                    "pipeline `{}`: the {} destination does not load from staged files; remove the staging \
                     destination",
                    self.name,
                    destination.name()
                )));
            }
        }
        // job file formats from the capabilities: a mismatch fails before anything is extracted
        let staged =
            self.staging.as_ref().and_then(|st| st.as_staging().map(|s| (st.name().to_string(), s.staged_format())));
        crate::destination::negotiate_job_format(
            destination.name(),
            destination.capabilities(),
            staged.as_ref().map(|(n, f)| (n.as_str(), *f)),
        )?;
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
            staging: self.staging,
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
