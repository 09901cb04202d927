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
pub use pipeline_file::PipelineFile;

mod pipeline_file;

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

    /// A Snowflake database (`snowflake://user:password@account/database?warehouse=…&role=…`).
    /// Job files are `PUT` into the table's stage and copied in (docs/snowflake.md).
    #[cfg(feature = "snowflake")]
    pub fn snowflake(url: &str) -> Result<Arc<dyn Destination>> {
        Ok(Arc::new(dlt_snowflake::Snowflake::from_url(url)?))
    }

    #[cfg(feature = "snowflake")]
    pub use dlt_snowflake as snowflake_impl;

    #[cfg(feature = "bigquery")]
    pub use dlt_bigquery as bigquery_impl;
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
    #[cfg(feature = "snowflake")]
    r.register_destination(Arc::new(dlt_snowflake::SnowflakeFactory));
    #[cfg(feature = "bigquery")]
    r.register_destination(Arc::new(dlt_bigquery::BigQueryFactory));
    #[cfg(feature = "files")]
    r.register_source(Arc::new(dlt_files::FilesFactory));
    #[cfg(feature = "rest_api")]
    r.register_source(Arc::new(dlt_rest_api::RestApiFactory));
    #[cfg(feature = "sql_database")]
    r.register_source(Arc::new(dlt_sql_database::SqlDatabaseFactory));
    r
}
