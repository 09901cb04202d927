//! # dlt-rs
//!
//! A data load tool compatible with Python's [dlt](https://dlthub.com): the same tables, columns,
//! `_dlt_*` system tables and pipeline state, at native speed and in bounded memory.
//!
//! ```no_run
//! use dlt::{Resource, destinations};
//! use serde_json::json;
//!
//! let mut p = dlt::pipeline("quickstart")
//!     .destination(destinations::duckdb("quickstart.duckdb"))
//!     .dataset_name("demo")
//!     .build()?;
//! let users = Resource::from_values("users", vec![json!({"id": 1, "tags": ["a", "b"]})]);
//! let info = p.run(users)?;
//! println!("{info}");
//! # Ok::<(), dlt::Error>(())
//! ```
//!
//! Connectors are chosen with cargo features (`duckdb` and `files` are on by default); the
//! compiled-in ones are registered by name in [`registry()`] for pipeline files (`dlt run`).
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use dlt_core;
pub use dlt_core::config::{Config, Secret};
pub use dlt_core::destination::{Capabilities, Destination, DestinationClient, SqlClient};
pub use dlt_core::registry::{DestinationContext, DestinationFactory, Registry, SourceContext, SourceFactory};
pub use dlt_core::resource::{
    IntoSource, Item, KeyHint, MergeStrategy, Resource, ResourceHints, Source, TableName, WriteDispositionConfig,
};
pub use dlt_core::schema::{Column, DataType, Schema, Table, WriteDisposition};
/// Typed columns from Rust types: `#[derive(dlt::Table)]`, [`typed::resource`], [`typed::validate`].
pub use dlt_core::typed;
/// The trait `#[derive(dlt::Table)]` implements (`dlt::Table` itself is the schema's table
/// struct in the type namespace and the derive macro in the macro namespace).
pub use dlt_core::typed::{ColumnType, Table as TypedTable};
pub use dlt_core::{DropOptions, Error, LoadInfo, Pipeline, PipelineBuilder, Progress, Refresh, Result, Step, Trace};
/// `#[derive(dlt::Table)]`: a resource's columns from a struct's fields (see [`typed`]).
pub use dlt_derive::Table;
pub use dlt_normalize::RelationalNormalizer;

/// Start building a pipeline with dlt's relational normalizer.
pub fn pipeline(name: impl Into<String>) -> PipelineBuilder {
    PipelineBuilder::new(name).normalizer(Arc::new(RelationalNormalizer))
}

/// Destinations compiled into this build.
pub mod destinations {
    #[allow(unused_imports)]
    use super::*;

    /// A DuckDB database file (created if missing).
    #[cfg(feature = "duckdb")]
    pub fn duckdb(path: impl AsRef<std::path::Path>) -> Arc<dyn Destination> {
        Arc::new(dlt_duckdb::DuckDb::new(path))
    }

    #[cfg(feature = "duckdb")]
    pub use dlt_duckdb as duckdb_impl;

    /// A Postgres database from a connection string (`postgresql://user:password@host:port/db`).
    #[cfg(feature = "postgres")]
    pub fn postgres(url: &str) -> Result<Arc<dyn Destination>> {
        Ok(Arc::new(dlt_postgres::Postgres::from_url(url)?))
    }

    #[cfg(feature = "postgres")]
    pub use dlt_postgres as postgres_impl;

    /// Files in a local folder or bucket (`/path`, `file://`, `memory://`, `s3://`, `gs://`,
    /// `az://`) in dlt's layout, parquet by default; relative paths resolve against the current
    /// directory. Credentials and other settings: [`dlt_filesystem::FilesystemConfig`].
    #[cfg(feature = "filesystem")]
    pub fn filesystem(bucket_url: &str) -> Result<Arc<dyn Destination>> {
        dlt_filesystem::destination(bucket_url, &std::env::current_dir().unwrap_or_default())
    }

    #[cfg(feature = "filesystem")]
    pub use dlt_filesystem as filesystem_impl;
}

/// Sources compiled into this build.
pub mod sources {
    #[cfg(feature = "files")]
    pub use dlt_files as files;
    #[cfg(feature = "rest_api")]
    pub use dlt_rest_api as rest_api;
    #[cfg(feature = "sql_database")]
    pub use dlt_sql_database as sql_database;
}

/// The registry of compiled-in sources and destinations.
pub fn registry() -> Registry {
    #[allow(unused_mut)]
    let mut r = Registry::new();
    #[cfg(feature = "duckdb")]
    r.register_destination(Arc::new(dlt_duckdb::DuckDbFactory));
    #[cfg(feature = "postgres")]
    r.register_destination(Arc::new(dlt_postgres::PostgresFactory));
    #[cfg(feature = "filesystem")]
    r.register_destination(Arc::new(dlt_filesystem::FilesystemFactory));
    #[cfg(feature = "files")]
    r.register_source(Arc::new(dlt_files::FilesFactory));
    #[cfg(feature = "rest_api")]
    r.register_source(Arc::new(dlt_rest_api::RestApiFactory));
    #[cfg(feature = "sql_database")]
    r.register_source(Arc::new(dlt_sql_database::SqlDatabaseFactory));
    r
}

/// A pipeline file as `dlt run` reads it.
///
/// ```toml
/// [pipeline]
/// name = "quickstart"
/// destination = "duckdb"
/// dataset_name = "github_data"   # optional, default <name>_dataset
///
/// [destination]                  # optional, lowest precedence after env and .dlt/*.toml
/// credentials = "duckdb:///quickstart.duckdb"
///
/// [source]
/// type = "files"
/// [[source.resources]]
/// name = "issues"
/// path = "data/issues.jsonl"
/// write_disposition = "append"
/// ```
#[derive(Debug, Clone)]
pub struct PipelineFile {
    /// Where the file is (relative paths resolve against its folder).
    pub path: PathBuf,
    /// `[pipeline].name`.
    pub name: String,
    /// `[pipeline].destination`.
    pub destination: String,
    /// `[pipeline].dataset_name`.
    pub dataset_name: Option<String>,
    /// `[pipeline].dev_mode`.
    pub dev_mode: bool,
    /// `[pipeline].pipelines_dir`.
    pub pipelines_dir: Option<PathBuf>,
    /// `[pipeline].import_schema_path`.
    pub import_schema_path: Option<PathBuf>,
    /// `[pipeline].export_schema_path`.
    pub export_schema_path: Option<PathBuf>,
    /// `[destination]`.
    pub destination_config: Option<toml::Table>,
    /// `[source]`.
    pub source: toml::Table,
}

impl PipelineFile {
    /// Read and validate a pipeline file.
    pub fn load(path: &Path) -> Result<PipelineFile> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let doc: toml::Table =
            text.parse().map_err(|e: toml::de::Error| Error::Config(format!("{}: {}", path.display(), e.message())))?;
        for k in doc.keys() {
            if !matches!(k.as_str(), "pipeline" | "destination" | "source") {
                return Err(Error::Config(format!("{}: unknown section [{k}]", path.display())));
            }
        }
        let p = doc
            .get("pipeline")
            .and_then(|v| v.as_table())
            .ok_or_else(|| Error::Config(format!("{}: missing [pipeline] section", path.display())))?;
        for k in p.keys() {
            if !matches!(
                k.as_str(),
                "name"
                    | "destination"
                    | "dataset_name"
                    | "dev_mode"
                    | "pipelines_dir"
                    | "import_schema_path"
                    | "export_schema_path"
            ) {
                return Err(Error::Config(format!("{}: unknown key `{k}` in [pipeline]", path.display())));
            }
        }
        let name = p
            .get("name")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::Config(format!("{}: [pipeline] needs `name`", path.display())))?
            .to_string();
        let destination = p.get("destination").and_then(|v| v.as_str()).unwrap_or("duckdb").to_string();
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(PipelineFile {
            path: path.to_path_buf(),
            name,
            destination,
            dataset_name: p.get("dataset_name").and_then(|v| v.as_str()).map(str::to_string),
            dev_mode: p.get("dev_mode").and_then(|v| v.as_bool()).unwrap_or(false),
            pipelines_dir: p.get("pipelines_dir").and_then(|v| v.as_str()).map(|d| base.join(d)),
            import_schema_path: p.get("import_schema_path").and_then(|v| v.as_str()).map(|d| base.join(d)),
            export_schema_path: p.get("export_schema_path").and_then(|v| v.as_str()).map(|d| base.join(d)),
            destination_config: doc.get("destination").and_then(|v| v.as_table()).cloned(),
            source: doc
                .get("source")
                .and_then(|v| v.as_table())
                .cloned()
                .ok_or_else(|| Error::Config(format!("{}: missing [source] section", path.display())))?,
        })
    }

    /// The folder relative paths resolve against.
    pub fn base_dir(&self) -> PathBuf {
        let base = self.path.parent().map(Path::to_path_buf).unwrap_or_default();
        if base.as_os_str().is_empty() { std::env::current_dir().unwrap_or_default() } else { base }
    }

    /// Build the destination named in the file.
    pub fn destination(&self, registry: &Registry, config: &Config, run_dir: &Path) -> Result<Arc<dyn Destination>> {
        let f = registry.destination(&self.destination)?;
        f.build(&DestinationContext {
            pipeline_name: &self.name,
            config,
            run_dir,
            explicit: self.destination_config.as_ref(),
        })
    }

    /// Build the source named in the file.
    pub fn source(&self, registry: &Registry, config: &Config) -> Result<Source> {
        let ty = self
            .source
            .get("type")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::Config(format!("{}: [source] needs `type`", self.path.display())))?;
        let base = self.base_dir();
        registry.source(ty)?.build(&self.source, &SourceContext { pipeline_name: &self.name, config, base_dir: &base })
    }

    /// Build the pipeline (destination from the file; run dir = the file's folder).
    pub fn pipeline(&self, registry: &Registry, progress: Option<Arc<dyn Progress>>) -> Result<Pipeline> {
        let run_dir = self.base_dir();
        let config = Config::load(&run_dir, None)?.with_pipeline(&self.name);
        let dest = self.destination(registry, &config, &run_dir)?;
        let mut b = pipeline(&self.name).destination(dest).dev_mode(self.dev_mode).config(config);
        if let Some(d) = &self.dataset_name {
            b = b.dataset_name(d);
        }
        if let Some(d) = &self.pipelines_dir {
            b = b.pipelines_dir(d);
        }
        if let Some(d) = &self.import_schema_path {
            b = b.import_schema_path(d);
        }
        if let Some(d) = &self.export_schema_path {
            b = b.export_schema_path(d);
        }
        if let Some(p) = progress {
            b = b.progress(p);
        }
        b.build()
    }
}
