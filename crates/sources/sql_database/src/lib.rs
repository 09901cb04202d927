//! The `sql_database` source: every table of a schema (or the ones named) of a PostgreSQL,
//! MySQL/MariaDB or SQLite database as a resource, read straight into Arrow record batches.
//!
//! - Postgres tables are read with `COPY (SELECT …) TO STDOUT (FORMAT binary)`, decoded
//!   directly into Arrow builders; MySQL/MariaDB with the text protocol and SQLite with its C
//!   library, row by row from the connection into the builders. No per-row JSON.
//! - Column types, nullability, precision/scale and primary keys come from reflection
//!   ([`ReflectionLevel`]); the one mapping table is in [`types`].
//! - An incremental cursor on a column is pushed into the SQL (see [`query`]); the pipeline
//!   still filters, deduplicates and keeps the cursor state.
//! - Tables are read on background threads, a few at a time ([`SqlDatabase::parallelism`]),
//!   each with its own connection and a bounded hand-off of one batch. One large table can be
//!   split into key ranges read concurrently ([`TableOptions::partitions`]).
//! - On Postgres, [`TableOptions::safe_watermark`] keeps an incremental load from skipping rows
//!   that long transactions commit late.
//!
//! ```no_run
//! use dlt_sql_database::{SqlDatabase, TableOptions};
//! use dlt_core::incremental::IncrementalConfig;
//!
//! let source = SqlDatabase::from_url("postgresql://loader@127.0.0.1:5432/shop")?
//!     .schema("public")
//!     .table_names(["orders", "customers"])
//!     .table("orders", TableOptions { incremental: Some(IncrementalConfig::new("updated_at")), ..Default::default() })
//!     .into_source()?;
//! # Ok::<(), dlt_core::Error>(())
//! ```
#![warn(missing_docs)]

mod batch;
pub mod credentials;
mod factory;
mod mysql;
mod pg;
pub mod query;
mod sqlite;
mod stream;
pub mod table;
pub mod types;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;
use dlt_core::error::{Error, Result};
use dlt_core::incremental::IncrementalConfig;
use dlt_core::resource::{
    Item, KeyHint, Resource, ResourceContext, ResourceHints, Source, TableName, WriteDispositionConfig,
};
use dlt_core::schema::Column;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

pub use credentials::{Credentials, Dialect};
pub use factory::SqlDatabaseFactory;
pub use query::{KeyRange, Window};
pub use table::{SqlColumn, TableSchema};
pub use types::{ReflectionLevel, ValueKind};

/// dlt's default rows per batch.
pub const DEFAULT_CHUNK_SIZE: usize = 50_000;

/// `schema` names nothing in the database: a configuration error listing what is there.
pub(crate) fn no_such_schema(schema: &str, existing: &[String]) -> Error {
    let list = if existing.is_empty() { "none".to_string() } else { existing.join(", ") };
    Error::Config(format!(
        "sql_database: schema `{schema}` does not exist (Postgres: a schema; MySQL/MariaDB: a database); \
         set `schema` in [source] to one of: {list}"
    ))
}

pub(crate) fn source_error(message: String, transient: bool) -> Error {
    Error::SourceSetup { source_name: "sql_database".into(), message, transient }
}

/// An error of the reader of `resource`, named after it.
fn resource_error(resource: &str, e: Error) -> Error {
    match e {
        Error::Source { message, transient, .. } | Error::SourceSetup { message, transient, .. } => {
            Error::Source { resource: resource.to_string(), message, transient }
        }
        e => e,
    }
}

/// How rows reach the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Arrow batches, as dlt's `pyarrow`/`connectorx` backends: no per-row work, no
    /// `_dlt_id`/`_dlt_load_id` columns.
    #[default]
    Arrow,
    /// JSON rows through dlt's relational normalizer, as dlt's `sqlalchemy` backend (adds
    /// `_dlt_id` and `_dlt_load_id`).
    Rows,
}

impl Backend {
    /// Parse a backend name (dlt's `pyarrow`, `connectorx`, `pandas` → Arrow; `sqlalchemy` →
    /// rows; or `arrow` / `rows`).
    pub fn parse(s: &str) -> Option<Backend> {
        Some(match s {
            "arrow" | "pyarrow" | "connectorx" | "pandas" => Backend::Arrow,
            "rows" | "sqlalchemy" => Backend::Rows,
            _ => return None,
        })
    }
}

/// Per-table settings (a `[source.tables.<name>]` table of a pipeline file).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableOptions {
    /// Incremental cursor on a column (pushed into the WHERE clause).
    #[serde(default)]
    pub incremental: Option<IncrementalConfig>,
    /// Write disposition (default: the source's, else append).
    #[serde(default)]
    pub write_disposition: Option<WriteDispositionConfig>,
    /// Primary key (default: the reflected one).
    #[serde(default)]
    pub primary_key: Option<KeyHint>,
    /// Merge key.
    #[serde(default)]
    pub merge_key: Option<KeyHint>,
    /// Read only these columns.
    #[serde(default)]
    pub included_columns: Option<Vec<String>>,
    /// Do not read these columns.
    #[serde(default)]
    pub excluded_columns: Option<Vec<String>>,
    /// Destination table name (default: the table's name).
    #[serde(default)]
    pub table_name: Option<String>,
    /// Column hints merged over the reflected ones (a different `data_type` also changes how
    /// the column is read).
    #[serde(default)]
    pub columns: IndexMap<String, Column>,
    /// Postgres, timestamp cursors: read only rows whose cursor is below a watermark that no
    /// open transaction can still write under (see [`SafeWatermark`]).
    #[serde(default)]
    pub safe_watermark: Option<SafeWatermark>,
    /// Seconds: when other users' sessions are hidden from `pg_stat_activity` (no
    /// `pg_read_all_stats`), the watermark is at most `now()` minus this; without it such a read
    /// is an error.
    #[serde(default)]
    pub safe_watermark_fallback_lag: Option<f64>,
    /// Split the table into this many key ranges, read concurrently (up to the source's
    /// `parallelism` at once) into the same resource. Row order across ranges is not kept.
    #[serde(default)]
    pub partitions: Option<usize>,
    /// The integer column the key ranges split (default: the single-column integer primary key).
    #[serde(default)]
    pub partition_column: Option<String>,
}

/// Where a safe watermark comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SafeWatermark {
    /// The start (`xact_start`) of the oldest transaction open in the database other than the
    /// reader's own, from `pg_stat_activity`, else the server's `now()`, one second earlier. A
    /// row whose cursor is `now()` (or `transaction_timestamp()`) of its transaction and lies
    /// below it was written by a transaction that has ended, so it is visible; rows at or past it
    /// are read by the next run. Not covered: cursors set from `clock_timestamp()` or by the
    /// client's clock.
    XactStart,
}

/// What a query adapter sees.
#[derive(Debug)]
pub struct QueryContext<'a> {
    /// The table after reflection, column selection and the table adapter.
    pub table: &'a TableSchema,
    /// The database family.
    pub dialect: Dialect,
    /// The SELECT that would run (SQLite: with `?` placeholders for the window values).
    pub select: &'a str,
    /// The incremental window of this run, if the table has a cursor.
    pub window: Option<&'a Window>,
}

/// Edits a reflected table: drop or rename columns ([`SqlColumn::output_name`]), change how
/// a column is read ([`SqlColumn::set_kind`]) or its dlt hint.
pub type TableAdapter = Arc<dyn Fn(&mut TableSchema) -> Result<()> + Send + Sync>;
/// Replaces the SELECT of a table (return `None` to keep it). The result's columns are matched
/// to the table's by name; others are typed from the result.
pub type QueryAdapter = Arc<dyn Fn(&QueryContext<'_>) -> Option<String> + Send + Sync>;

/// The `sql_database` source, configured with builder methods.
#[derive(Clone)]
pub struct SqlDatabase {
    credentials: Credentials,
    base_dir: PathBuf,
    name: String,
    schema: Option<String>,
    table_names: Option<Vec<String>>,
    chunk_size: usize,
    reflection_level: ReflectionLevel,
    include_views: bool,
    backend: Backend,
    parallelism: usize,
    write_disposition: Option<WriteDispositionConfig>,
    tables: BTreeMap<String, TableOptions>,
    table_adapter: Option<TableAdapter>,
    query_adapter: Option<QueryAdapter>,
}

impl std::fmt::Debug for SqlDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlDatabase")
            .field("credentials", &self.credentials)
            .field("schema", &self.schema)
            .field("table_names", &self.table_names)
            .field("chunk_size", &self.chunk_size)
            .field("reflection_level", &self.reflection_level)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl SqlDatabase {
    /// A source over a database, with dlt's defaults (all tables, full reflection, chunks of
    /// 50,000 rows, append).
    pub fn new(credentials: Credentials) -> Self {
        SqlDatabase {
            credentials,
            base_dir: std::env::current_dir().unwrap_or_default(),
            name: "sql_database".into(),
            schema: None,
            table_names: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            reflection_level: ReflectionLevel::Full,
            include_views: false,
            backend: Backend::Arrow,
            parallelism: 2,
            write_disposition: None,
            tables: BTreeMap::new(),
            table_adapter: None,
            query_adapter: None,
        }
    }

    /// From a connection URL.
    pub fn from_url(url: &str) -> Result<Self> {
        Ok(Self::new(Credentials::parse(url)?))
    }

    /// Source (and schema) name; default `sql_database`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Folder relative SQLite paths resolve against (default: the current directory).
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = dir.into();
        self
    }

    /// Database schema (Postgres schema, MySQL database, SQLite attached database).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Read only these tables (in this order).
    pub fn table_names<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.table_names = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Rows per Arrow batch.
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.chunk_size = n.max(1);
        self
    }

    /// How much of the column types is declared.
    pub fn reflection_level(mut self, level: ReflectionLevel) -> Self {
        self.reflection_level = level;
        self
    }

    /// Also read views (when no `table_names` are given).
    pub fn include_views(mut self, yes: bool) -> Self {
        self.include_views = yes;
        self
    }

    /// Arrow batches (default) or JSON rows.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// How many tables are read at once (default 2; 1 reads one table after the other, each
    /// still on a reader thread that overlaps with extraction).
    pub fn parallelism(mut self, n: usize) -> Self {
        self.parallelism = n.max(1);
        self
    }

    /// Write disposition of every table without its own.
    pub fn write_disposition(mut self, wd: impl Into<WriteDispositionConfig>) -> Self {
        self.write_disposition = Some(wd.into());
        self
    }

    /// Settings of one table.
    pub fn table(mut self, name: impl Into<String>, options: TableOptions) -> Self {
        self.tables.insert(name.into(), options);
        self
    }

    /// Edit each reflected table.
    pub fn table_adapter(mut self, f: impl Fn(&mut TableSchema) -> Result<()> + Send + Sync + 'static) -> Self {
        self.table_adapter = Some(Arc::new(f));
        self
    }

    /// Replace the SELECT of tables.
    pub fn query_adapter(mut self, f: impl Fn(&QueryContext<'_>) -> Option<String> + Send + Sync + 'static) -> Self {
        self.query_adapter = Some(Arc::new(f));
        self
    }

    /// The credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Reflect the tables that will be read: selection by name, views, included/excluded
    /// columns and the table adapter applied.
    pub fn reflect(&self) -> Result<Vec<TableSchema>> {
        let schema = self.schema.as_deref();
        let (schema_name, all) = match self.credentials.dialect {
            Dialect::Postgres => pg::reflect(&self.credentials, schema)?,
            Dialect::Mysql => mysql::reflect(&self.credentials, schema)?,
            Dialect::Sqlite => sqlite::reflect(&self.credentials, &self.base_dir, schema)?,
        };
        let mut tables = match &self.table_names {
            Some(names) => {
                let mut out = vec![];
                for n in names {
                    let t = all.iter().find(|t| &t.name == n).ok_or_else(|| {
                        let known: Vec<&str> = all.iter().take(30).map(|t| t.name.as_str()).collect();
                        Error::Config(format!(
                            "sql_database: table `{n}` not found in schema `{schema_name}` of {} (tables: {})",
                            self.credentials.display(),
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ))
                    })?;
                    out.push(t.clone());
                }
                out
            }
            None => all.into_iter().filter(|t| self.include_views || !t.is_view).collect(),
        };
        for name in self.tables.keys() {
            if !tables.iter().any(|t| &t.name == name) {
                return Err(Error::Config(format!(
                    "sql_database: settings for table `{name}`, which is not read from schema `{schema_name}`"
                )));
            }
        }
        for t in &mut tables {
            if let Some(opts) = self.tables.get(&t.name) {
                select_columns(t, opts)?;
                for (cname, hint) in &opts.columns {
                    let col = t.columns.iter_mut().find(|c| &c.output_name == cname).ok_or_else(|| {
                        Error::Config(format!("sql_database: table `{}` has no column `{cname}` to hint", t.name))
                    })?;
                    let mut merged = col.dlt_column(self.reflection_level);
                    let decimal = dlt_core::schema::DataType::Decimal;
                    // another data_type changes how values are read; so do a decimal's precision
                    // and scale (which is also how a user chooses rounding)
                    let read_as = match hint.data_type {
                        Some(dt) if Some(dt) != merged.data_type => {
                            Some(ValueKind::from_data_type(dt, hint.precision, hint.scale, hint.timezone))
                        }
                        _ if hint.data_type.or(merged.data_type) == Some(decimal)
                            && (hint.precision.is_some() || hint.scale.is_some()) =>
                        {
                            let (p, s) = (hint.precision.or(Some(38)), hint.scale.or(Some(9)));
                            Some(ValueKind::from_data_type(decimal, p, s, None))
                        }
                        _ => None,
                    };
                    if let Some(kind) = read_as {
                        col.set_kind(kind);
                        merged = col.dlt_column(ReflectionLevel::Full);
                    }
                    merged.merge_hints(hint);
                    col.hint = Some(merged);
                }
            }
            if let Some(f) = &self.table_adapter {
                f(t)?;
            }
            if t.columns.is_empty() {
                return Err(Error::Config(format!("sql_database: table `{}` has no columns to read", t.name)));
            }
        }
        Ok(tables)
    }

    /// Reflect and build the source: one deferred resource per table.
    pub fn into_source(self) -> Result<Source> {
        let tables = self.reflect()?;
        let credentials = Arc::new(self.credentials.clone());
        let mut templates = vec![];
        let mut resources = vec![];
        for t in tables {
            let opts = self.tables.get(&t.name).cloned().unwrap_or_default();
            let incremental = opts.incremental.clone();
            let cursor = match &incremental {
                Some(cfg) => Some(
                    t.columns
                        .iter()
                        .find(|c| c.output_name == cfg.cursor_path || c.name == cfg.cursor_path)
                        .cloned()
                        .ok_or_else(|| {
                        Error::Config(format!(
                            "sql_database: incremental cursor `{}` is not a column of table `{}`",
                            cfg.cursor_path, t.name
                        ))
                    })?,
                ),
                None => None,
            };
            let watermark = match opts.safe_watermark {
                Some(SafeWatermark::XactStart) => {
                    let (col, cfg) = match (&cursor, &incremental) {
                        (Some(c), Some(cfg)) => (c, cfg),
                        _ => {
                            return Err(Error::Config(format!(
                                "sql_database: safe_watermark on table `{}` needs an incremental cursor",
                                t.name
                            )));
                        }
                    };
                    if self.credentials.dialect != Dialect::Postgres {
                        return Err(Error::Config(format!(
                            "sql_database: safe_watermark on table `{}` works on Postgres only (it reads pg_stat_activity)",
                            t.name
                        )));
                    }
                    let ValueKind::Timestamp { tz } = col.kind() else {
                        return Err(Error::Config(format!(
                            "sql_database: safe_watermark on table `{}` needs a timestamp cursor; `{}` is {}",
                            t.name, col.name, col.native_type
                        )));
                    };
                    if cfg.last_value_func.as_deref().unwrap_or("max") != "max" || cfg.last_value_fn.is_some() {
                        return Err(Error::Config(format!(
                            "sql_database: safe_watermark on table `{}` needs last_value_func = \"max\"",
                            t.name
                        )));
                    }
                    if let Some(l) = opts.safe_watermark_fallback_lag
                        && !(l.is_finite() && l >= 0.0)
                    {
                        return Err(Error::Config(format!(
                            "sql_database: safe_watermark_fallback_lag on table `{}` must be a number of seconds >= 0",
                            t.name
                        )));
                    }
                    Some(WatermarkSpec { tz, fallback_lag: opts.safe_watermark_fallback_lag })
                }
                None if opts.safe_watermark_fallback_lag.is_some() => {
                    return Err(Error::Config(format!(
                        "sql_database: safe_watermark_fallback_lag on table `{}` without safe_watermark",
                        t.name
                    )));
                }
                None => None,
            };
            let partitioning = partitioning(&t, &opts, incremental.as_ref(), self.parallelism)?;
            let mut hints = ResourceHints::default();
            for c in &t.columns {
                let col = c.dlt_column(self.reflection_level);
                hints.columns.insert(c.output_name.clone(), col);
            }
            // keys must name columns that are read: found now, not as a failed merge at load
            for (what, keys) in [("primary_key", &opts.primary_key), ("merge_key", &opts.merge_key)] {
                for k in keys.iter().flat_map(|k| &k.0) {
                    if !t.columns.iter().any(|c| &c.output_name == k || &c.name == k) {
                        let cols: Vec<&str> = t.columns.iter().map(|c| c.output_name.as_str()).collect();
                        return Err(Error::Config(format!(
                            "sql_database: table `{}`: {what} `{k}` is not one of its columns ({}); fix `{what}` \
                             in [source.tables.{}]",
                            t.name,
                            cols.join(", "),
                            t.name
                        )));
                    }
                }
            }
            let pk = t.primary_key_output();
            hints.primary_key = opts.primary_key.clone().or((!pk.is_empty()).then_some(KeyHint(pk)));
            hints.merge_key = opts.merge_key.clone();
            hints.write_disposition = opts.write_disposition.clone().or(self.write_disposition.clone());
            hints.table_name = opts.table_name.clone().map(TableName::Static);
            hints.incremental = incremental.clone();
            // the pipeline's cursor checks Arrow batches row by row (window, boundary dedup, state)
            let backend = self.backend;
            templates.push(Template {
                resource: t.name.clone(),
                table: t,
                cursor: cursor.map(|c| (c, incremental.clone().expect("cursor has a config"))),
                backend,
                watermark,
                partitioning,
            });
            resources.push(hints);
        }
        let sched = Arc::new(Scheduler {
            credentials,
            base_dir: self.base_dir.clone(),
            chunk_size: self.chunk_size,
            parallelism: self.parallelism,
            query_adapter: self.query_adapter.clone(),
            templates,
            started: Mutex::new(HashMap::new()),
        });
        let resources = resources
            .into_iter()
            .enumerate()
            .map(|(i, hints)| {
                let s = sched.clone();
                let name = s.templates[i].resource.clone();
                Resource::deferred(name, move |ctx: ResourceContext| s.items(i, &ctx)).with_hints(hints)
            })
            .collect();
        Ok(Source::new(self.name, resources))
    }
}

/// The partitioning of a table with `partitions > 1`: its integer key column and the number of
/// concurrent readers.
fn partitioning(
    t: &TableSchema,
    opts: &TableOptions,
    incremental: Option<&IncrementalConfig>,
    parallelism: usize,
) -> Result<Option<Partitioning>> {
    let n = match opts.partitions {
        None if opts.partition_column.is_some() => {
            return Err(Error::Config(format!(
                "sql_database: partition_column on table `{}` without partitions",
                t.name
            )));
        }
        None | Some(1) => return Ok(None),
        Some(0) => return Err(Error::Config(format!("sql_database: partitions on table `{}` must be >= 1", t.name))),
        Some(n) => n,
    };
    if let Some(order) = incremental.and_then(|c| c.row_order.as_deref()) {
        return Err(Error::Config(format!(
            "sql_database: table `{}` has partitions and an incremental row_order = \"{order}\"; the ranges are read \
             concurrently, so rows do not arrive in cursor order (drop row_order or partitions)",
            t.name
        )));
    }
    let col = match &opts.partition_column {
        Some(name) => t.columns.iter().find(|c| &c.name == name || &c.output_name == name).ok_or_else(|| {
            Error::Config(format!("sql_database: partition_column `{name}` is not a column of table `{}`", t.name))
        })?,
        None => match t.primary_key.as_slice() {
            [pk] => t.column(pk).ok_or_else(|| {
                Error::Config(format!(
                    "sql_database: table `{}` does not read its primary key `{pk}` to partition on",
                    t.name
                ))
            })?,
            _ => {
                return Err(Error::Config(format!(
                    "sql_database: partitions on table `{}` need partition_column (no single-column primary key)",
                    t.name
                )));
            }
        },
    };
    if col.kind() != ValueKind::Int {
        return Err(Error::Config(format!(
            "sql_database: table `{}` is partitioned on `{}` ({}), which is not an integer column",
            t.name, col.name, col.native_type
        )));
    }
    Ok(Some(Partitioning { column: col.name.clone(), count: n, workers: n.min(parallelism).max(1) }))
}

fn select_columns(t: &mut TableSchema, opts: &TableOptions) -> Result<()> {
    if let Some(inc) = &opts.included_columns {
        for c in inc {
            if t.column(c).is_none() {
                return Err(Error::Config(format!("sql_database: table `{}` has no column `{c}` to include", t.name)));
            }
        }
        t.columns.retain(|c| inc.contains(&c.name));
    }
    if let Some(exc) = &opts.excluded_columns {
        for c in exc {
            if !t.remove_column(c) {
                return Err(Error::Config(format!("sql_database: table `{}` has no column `{c}` to exclude", t.name)));
            }
        }
    }
    Ok(())
}

/// Everything a reader thread needs to read one table.
#[derive(Debug, Clone)]
pub(crate) struct ReadJob {
    pub(crate) credentials: Arc<Credentials>,
    pub(crate) base_dir: PathBuf,
    pub(crate) table: TableSchema,
    pub(crate) window: Option<Window>,
    pub(crate) query: Option<String>,
    pub(crate) chunk_size: usize,
    /// A partitioned table (the reader splits it into ranges).
    pub(crate) partitioning: Option<Partitioning>,
    /// The key range this read is restricted to.
    pub(crate) range: Option<KeyRange>,
    /// Postgres: a snapshot exported by the partition coordinator that every range reads.
    pub(crate) snapshot: Option<String>,
}

/// How a partitioned table is split.
#[derive(Debug, Clone)]
pub(crate) struct Partitioning {
    /// Database name of the integer key column.
    pub(crate) column: String,
    /// Number of key ranges.
    pub(crate) count: usize,
    /// Ranges read at once.
    pub(crate) workers: usize,
}

/// The smallest and largest key of a partitioned table (`None`: no non-NULL key).
pub(crate) type KeyBounds = Option<(i64, i64)>;

/// The safe-watermark settings of a table.
#[derive(Debug, Clone, Copy)]
struct WatermarkSpec {
    tz: bool,
    fallback_lag: Option<f64>,
}

fn run(job: &ReadJob, emit: &mut dyn FnMut(RecordBatch) -> bool) -> Result<()> {
    match job.credentials.dialect {
        Dialect::Postgres => pg::read(job, emit),
        Dialect::Mysql => mysql::read(job, emit),
        Dialect::Sqlite => sqlite::read(job, emit),
    }
}

/// The smallest and largest key of a partitioned table (within the incremental window); on
/// Postgres also a connection holding an exported snapshot for the ranges to share.
fn key_bounds(job: &ReadJob, column: &str) -> Result<(KeyBounds, Option<pg::SnapshotHolder>)> {
    match job.credentials.dialect {
        Dialect::Postgres => pg::key_bounds(job, column),
        Dialect::Mysql => Ok((mysql::key_bounds(job, column)?, None)),
        Dialect::Sqlite => Ok((sqlite::key_bounds(job, column)?, None)),
    }
}

/// Read a partitioned table: the key bounds first, then up to `workers` ranges at once, each on
/// its own thread and connection, every batch into `emit` (shared by the workers). The first
/// error stops the other ranges.
fn run_partitioned(job: &ReadJob, p: &Partitioning, emit: &(dyn Fn(RecordBatch) -> bool + Sync)) -> Result<()> {
    let (bounds, holder) = key_bounds(job, &p.column)?;
    let ranges = match bounds {
        Some((lo, hi)) => query::key_ranges(&p.column, lo, hi, p.count),
        // no keys in the window (or only NULL ones): one read of the whole window
        None => vec![KeyRange { column: p.column.clone(), from: None, to: None }],
    };
    tracing::debug!(table = %job.table.name, ranges = ?ranges, "sql_database: partitioned read");
    let snapshot = holder.as_ref().map(|h| h.id.clone());
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| -> Result<()> {
        for w in 0..p.workers.min(ranges.len()) {
            let (next, stop, first_error, ranges, snapshot) = (&next, &stop, &first_error, &ranges, &snapshot);
            std::thread::Builder::new()
                .name(format!("sql_database:{}#{w}", job.table.name))
                .spawn_scoped(s, move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Some(r) = ranges.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                        let mut j = job.clone();
                        j.range = Some(r.clone());
                        j.snapshot = snapshot.clone();
                        let mut emit_one = |b: RecordBatch| {
                            let more = !stop.load(Ordering::Relaxed) && emit(b);
                            if !more {
                                stop.store(true, Ordering::Relaxed);
                            }
                            more
                        };
                        if let Err(e) = run(&j, &mut emit_one) {
                            stop.store(true, Ordering::Relaxed);
                            first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                            break;
                        }
                    }
                })
                .map_err(|e| Error::io("sql_database partition reader thread", e))?;
        }
        Ok(())
    })?;
    drop(holder);
    match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

enum Chunk {
    Arrow(RecordBatch),
    Rows(Vec<Value>),
}

struct Template {
    resource: String,
    table: TableSchema,
    cursor: Option<(SqlColumn, IncrementalConfig)>,
    backend: Backend,
    watermark: Option<WatermarkSpec>,
    partitioning: Option<Partitioning>,
}

impl Template {
    /// Connections this table reads with at once.
    fn workers(&self) -> usize {
        self.partitioning.as_ref().map_or(1, |p| p.workers)
    }
}

/// Starts table readers when their resources are extracted, and a few tables ahead.
struct Scheduler {
    credentials: Arc<Credentials>,
    base_dir: PathBuf,
    chunk_size: usize,
    parallelism: usize,
    query_adapter: Option<QueryAdapter>,
    templates: Vec<Template>,
    started: Mutex<HashMap<usize, Receiver<Result<Chunk>>>>,
}

impl Scheduler {
    fn job(&self, i: usize, ctx: Option<&ResourceContext>) -> Result<ReadJob> {
        let t = &self.templates[i];
        let watermark = match (&t.watermark, &t.cursor) {
            (Some(spec), Some((col, _))) => {
                Some(pg::safe_watermark(&self.credentials, &t.table, col, spec.tz, spec.fallback_lag)?)
            }
            _ => None,
        };
        let window = t.cursor.as_ref().map(|(col, cfg)| Window {
            column: col.clone(),
            start: ctx.and_then(|c| c.start_value.clone()),
            end: ctx.and_then(|c| c.end_value.clone()),
            watermark: watermark.clone(),
            cfg: cfg.clone(),
        });
        let query = match &self.query_adapter {
            Some(f) => {
                let sel = query::select(
                    self.credentials.dialect,
                    &t.table,
                    &query::plain_exprs(self.credentials.dialect, &t.table),
                    window.as_ref(),
                )?;
                f(&QueryContext {
                    table: &t.table,
                    dialect: self.credentials.dialect,
                    select: &sel.sql,
                    window: window.as_ref(),
                })
            }
            None => None,
        };
        if query.is_some() && t.partitioning.is_some() {
            return Err(Error::Config(format!(
                "sql_database: table `{}` has partitions, but the query adapter replaced its SELECT; partitioned \
                 reads need the generated SELECT",
                t.table.name
            )));
        }
        Ok(ReadJob {
            credentials: self.credentials.clone(),
            base_dir: self.base_dir.clone(),
            table: t.table.clone(),
            window,
            query,
            chunk_size: self.chunk_size,
            partitioning: t.partitioning.clone(),
            range: None,
            snapshot: None,
        })
    }

    fn spawn(&self, i: usize, job: ReadJob) -> Result<Receiver<Result<Chunk>>> {
        let (tx, rx): (SyncSender<Result<Chunk>>, _) = sync_channel(1);
        let resource = self.templates[i].resource.clone();
        let backend = self.templates[i].backend;
        std::thread::Builder::new()
            .name(format!("sql_database:{resource}"))
            .spawn(move || {
                let emit = |b: RecordBatch| {
                    let chunk = match backend {
                        Backend::Arrow => Chunk::Arrow(b),
                        Backend::Rows => Chunk::Rows(batch::batch_to_rows(&b)),
                    };
                    tx.send(Ok(chunk)).is_ok()
                };
                let result = match &job.partitioning {
                    Some(p) => run_partitioned(&job, p, &emit),
                    None => run(&job, &mut { emit }),
                };
                if let Err(e) = result {
                    let _ = tx.send(Err(resource_error(&resource, e)));
                }
            })
            .map_err(|e| Error::io("sql_database reader thread", e))?;
        Ok(rx)
    }

    /// The items of table `i`: its reader (started now, or earlier as a prefetch), and the next
    /// tables without a cursor started so that up to `parallelism` read at once.
    fn items(&self, i: usize, ctx: &ResourceContext) -> ChunkItems {
        let rx = {
            let pre = self.started.lock().unwrap_or_else(|e| e.into_inner()).remove(&i);
            match pre {
                Some(rx) => Ok(rx),
                None => self
                    .job(i, Some(ctx))
                    .and_then(|job| self.spawn(i, job))
                    .map_err(|e| resource_error(&self.templates[i].resource, e)),
            }
        };
        // connections in use: this table's readers, then the tables started ahead
        let mut busy = self.templates[i].workers();
        for j in i + 1..self.templates.len() {
            if busy >= self.parallelism {
                break;
            }
            if self.templates[j].cursor.is_some() {
                continue;
            }
            if busy + self.templates[j].workers() > self.parallelism {
                break;
            }
            let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
            if let std::collections::hash_map::Entry::Vacant(slot) = started.entry(j) {
                match self.job(j, None).and_then(|job| self.spawn(j, job)) {
                    Ok(rx) => {
                        slot.insert(rx);
                    }
                    // reported when the table's resource is extracted
                    Err(_) => break,
                }
            }
            busy += self.templates[j].workers();
        }
        match rx {
            Ok(rx) => ChunkItems { rx: Some(rx), rows: Vec::new().into_iter(), error: None },
            Err(e) => ChunkItems { rx: None, rows: Vec::new().into_iter(), error: Some(e) },
        }
    }
}

/// The items a table's reader sends.
struct ChunkItems {
    rx: Option<Receiver<Result<Chunk>>>,
    rows: std::vec::IntoIter<Value>,
    error: Option<Error>,
}

impl Iterator for ChunkItems {
    type Item = Result<Item>;
    fn next(&mut self) -> Option<Result<Item>> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        loop {
            if let Some(v) = self.rows.next() {
                return Some(Ok(Item::Json(v)));
            }
            match self.rx.as_ref()?.recv() {
                Ok(Ok(Chunk::Arrow(b))) => return Some(Ok(Item::Arrow(b))),
                Ok(Ok(Chunk::Rows(r))) => self.rows = r.into_iter(),
                Ok(Err(e)) => {
                    self.rx = None;
                    return Some(Err(e));
                }
                Err(_) => {
                    self.rx = None;
                    return None;
                }
            }
        }
    }
}
