//! The DuckDB destination: an embedded database file; a dataset is a DuckDB schema.
//! Job files are parquet, inserted with DuckDB's own reader; a package's data, its state row and
//! its `_dlt_loads` row commit in one transaction.
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use dlt_duckdb_arrow as arrow_compat;
mod memory;

pub use memory::{DEFAULT_MEMORY_LIMIT, INITIAL_COLUMN_SEGMENT_SIZE};

use arrow::record_batch::RecordBatch;
use dlt_core::config::ConfigValue;
use dlt_core::destination::{
    Capabilities, Destination, DestinationClient, FileFormat, JobFile, ReplaceStrategy, StagedFile,
};
use dlt_core::error::{Error, Result};
use dlt_core::registry::{DestinationContext, DestinationFactory};
use dlt_core::resource::MergeStrategy;
use dlt_core::runtime::blocking;
use dlt_core::schema::{Column, DataType, Table};
use dlt_sql::{SqlConnection, SqlLoader, first_line};

const NAME: &str = "duckdb";

/// DuckDB's capabilities.
pub fn capabilities() -> Capabilities {
    Capabilities::default()
        .with_preferred_file_format(FileFormat::Parquet)
        .with_supported_file_formats(vec![FileFormat::Parquet])
        // staged parquet in a local folder (`file://`): DuckDB reads it in place
        .with_supported_staging_file_formats(vec![FileFormat::Parquet])
        .with_max_identifier_length(65536)
        .with_max_column_identifier_length(65536)
        .with_supports_transactions(true)
        .with_merge_strategies(vec![
            MergeStrategy::DeleteInsert,
            MergeStrategy::Upsert,
            MergeStrategy::Scd2,
            MergeStrategy::InsertOnly,
        ])
        .with_replace_strategies(vec![ReplaceStrategy::TruncateAndInsert, ReplaceStrategy::InsertFromStaging])
        .with_timestamp_precision(6)
        .with_decimal_precision((38, 9))
        .with_type_map(vec![
            (DataType::Text, "VARCHAR"),
            (DataType::Double, "DOUBLE"),
            (DataType::Bool, "BOOLEAN"),
            (DataType::Timestamp, "TIMESTAMP WITH TIME ZONE"),
            (DataType::Bigint, "BIGINT"),
            (DataType::Binary, "BLOB"),
            (DataType::Json, "JSON"),
            (DataType::Decimal, "DECIMAL(38,9)"),
            (DataType::Wei, "DECIMAL(38,0)"),
            (DataType::Date, "DATE"),
            (DataType::Time, "TIME"),
        ])
}

/// The DuckDB type of a dlt column (dlt's mapping, with precision and timezone hints).
pub fn column_type(c: &Column) -> String {
    match c.data_type.unwrap_or(DataType::Text) {
        DataType::Text => "VARCHAR".into(),
        DataType::Double => "DOUBLE".into(),
        DataType::Bool => "BOOLEAN".into(),
        DataType::Bigint => match c.precision {
            Some(p) if p <= 8 => "TINYINT".into(),
            Some(p) if p <= 16 => "SMALLINT".into(),
            Some(p) if p <= 32 => "INTEGER".into(),
            Some(p) if p > 64 => "HUGEINT".into(),
            _ => "BIGINT".into(),
        },
        DataType::Timestamp => {
            if c.timezone.unwrap_or(true) {
                "TIMESTAMP WITH TIME ZONE".into()
            } else {
                match c.precision {
                    Some(0) => "TIMESTAMP_S".into(),
                    Some(p) if p <= 3 => "TIMESTAMP_MS".into(),
                    Some(p) if p > 6 => "TIMESTAMP_NS".into(),
                    _ => "TIMESTAMP".into(),
                }
            }
        }
        DataType::Date => "DATE".into(),
        DataType::Time => "TIME".into(),
        DataType::Binary => "BLOB".into(),
        DataType::Json => "JSON".into(),
        DataType::Decimal => format!("DECIMAL({},{})", c.precision.unwrap_or(38), c.scale.unwrap_or(9)),
        DataType::Wei => "DECIMAL(38,0)".into(),
    }
}

/// DuckDB's flavour of the shared SQL generation.
#[derive(Debug, Default, Clone, Copy)]
pub struct DuckDbDialect;

impl dlt_sql::Dialect for DuckDbDialect {
    fn row_order(&self) -> Option<&'static str> {
        Some("rowid")
    }
    fn column_type(&self, col: &Column) -> String {
        column_type(col)
    }
    fn set_not_null_after_update(&self) -> bool {
        false
    }
    fn set_search_path(&self, dataset: &str) -> String {
        format!("SET schema = {};", lit(dataset))
    }
    fn keep_insertion_order(&self, on: bool) -> Option<String> {
        // off for every other load (memory::load_settings): DuckDB then streams inserts
        Some(format!("SET preserve_insertion_order = {on};"))
    }
}

/// Quote an identifier.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A DuckDB database file.
#[derive(Debug, Clone)]
pub struct DuckDb {
    path: PathBuf,
    caps: Capabilities,
    memory_limit: Option<String>,
    threads: Option<u32>,
    pipeline_name: Option<String>,
}

impl DuckDb {
    /// A destination writing to the database file at `path` (created if missing).
    pub fn new(path: impl AsRef<Path>) -> Self {
        let p = path.as_ref();
        let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(p) };
        DuckDb {
            path: abs,
            caps: capabilities(),
            memory_limit: Some(DEFAULT_MEMORY_LIMIT.into()),
            threads: None,
            pipeline_name: None,
        }
    }

    /// The pipeline loading here, named in errors that tell how to go on (e.g. out of memory).
    pub fn with_pipeline_name(mut self, name: impl Into<String>) -> Self {
        self.pipeline_name = Some(name.into());
        self
    }

    /// DuckDB's `memory_limit` during loads (`None` = DuckDB's default, 80% of RAM).
    pub fn with_memory_limit(mut self, limit: Option<String>) -> Self {
        self.memory_limit = limit;
        self
    }

    /// DuckDB's `threads` during loads.
    pub fn with_threads(mut self, threads: Option<u32>) -> Self {
        self.threads = threads;
        self
    }

    /// Parse dlt's credentials: `duckdb:///abs/path.duckdb`, `duckdb:///rel.duckdb` or a bare path.
    pub fn from_credentials(credentials: &str, base: &Path) -> Result<Self> {
        let c = credentials.trim();
        if c.is_empty() {
            return Err(Error::Config("duckdb credentials are empty".into()));
        }
        if c == ":memory:" || c == "duckdb:///:memory:" {
            return Err(Error::Config(
                "duckdb :memory: databases are not supported by dlt-rs: each load opens the database again, use a file path".into(),
            ));
        }
        let path = if let Some(rest) = c.strip_prefix("duckdb:///") {
            rest.to_string()
        } else if let Some(rest) = c.strip_prefix("duckdb://") {
            rest.to_string()
        } else if c.contains("://") {
            return Err(Error::Config(format!(
                "duckdb credentials must be a path or duckdb:///path, got a URL with another scheme: {}",
                dlt_core::config::mask_url(c)
            )));
        } else {
            c.to_string()
        };
        let p = PathBuf::from(&path);
        let p = if p.is_absolute() { p } else { base.join(p) };
        Ok(DuckDb::new(p))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A DuckDB error, its cause kept. Transient: another process holds the database file's lock
/// (DuckDB reports it as an I/O error whose only distinguishing mark is its text).
fn classify(e: duckdb::Error, what: &str) -> Error {
    let msg = e.to_string();
    let transient =
        msg.contains("Could not set lock") || msg.contains("Conflicting lock") || msg.contains("database is locked");
    Error::driver(NAME, format!("{what}: {msg}"), transient, e)
}

#[async_trait::async_trait]
impl Destination for DuckDb {
    fn name(&self) -> &str {
        NAME
    }
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }
    fn display_location(&self) -> String {
        format!("duckdb:///{}", self.path.display())
    }
    async fn client(&self, dataset_name: &str) -> Result<Box<dyn DestinationClient>> {
        // DuckDB names the database after its file: a schema of the same name makes every
        // `name.table` ambiguous (a Binder Error at load); refuse it before anything is written
        if let Some(stem) = self.path.file_stem().and_then(|s| s.to_str())
            && stem.eq_ignore_ascii_case(dataset_name)
        {
            return Err(Error::Config(format!(
                "dataset_name `{dataset_name}` is also the name of the DuckDB database ({}); DuckDB cannot \
                 tell a schema from a database of the same name. Set another `dataset_name` (e.g. \
                 `{dataset_name}_data`) in the pipeline file's [pipeline] section, or another database file",
                self.path.display()
            )));
        }
        if let Some(parent) = self.path.parent()
            && !parent.as_os_str().is_empty()
            && !parent.is_dir()
        {
            return Err(Error::Destination {
                destination: NAME.into(),
                message: format!(
                    "cannot open DuckDB database {}: the folder {} does not exist",
                    self.path.display(),
                    parent.display()
                ),
                transient: false,
            });
        }
        let path = self.path.clone();
        let settings = memory::load_settings(self.memory_limit.as_deref(), self.threads);
        let conn = blocking(move || {
            let conn = duckdb::Connection::open(&path)
                .map_err(|e| classify(e, &format!("cannot open DuckDB database {}", path.display())))?;
            conn.execute_batch(&settings)
                .map_err(|e| classify(e, "applying DuckDB settings (memory_limit, threads)"))?;
            Ok::<_, Error>(conn)
        })
        .await?;
        let conn = DuckDbConnection {
            conn: Arc::new(Mutex::new(conn)),
            memory_limit: self.memory_limit.clone(),
            pipeline_name: self.pipeline_name.clone(),
        };
        Ok(Box::new(
            SqlLoader::new(NAME, DuckDbDialect, conn, dataset_name).with_transactions(self.caps.supports_transactions),
        ))
    }
}

/// A session on a DuckDB database file. DuckDB's API blocks: every call runs on the blocking
/// pool through [`dlt_core::runtime::blocking`].
pub struct DuckDbConnection {
    conn: Arc<Mutex<duckdb::Connection>>,
    memory_limit: Option<String>,
    pipeline_name: Option<String>,
}

impl DuckDbConnection {
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&duckdb::Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        blocking(move || f(&conn.lock().unwrap_or_else(|p| p.into_inner()))).await
    }

    /// The load step: the rows of a local parquet file appended to `target` by column name
    /// (`what` names the file and table in an error).
    async fn insert_parquet(&self, target: &str, path: &str, what: String) -> Result<()> {
        let sql = format!("INSERT INTO {target} BY NAME SELECT * FROM read_parquet({});", lit(path));
        let r = self.run(move |c| c.execute_batch(&sql).map_err(|e| classify(e, &what))).await;
        r.map_err(|e| self.explain(e))
    }

    /// An out-of-memory error comes back with the setting that changes the limit and how to
    /// go on.
    fn explain(&self, e: Error) -> Error {
        memory::explain_out_of_memory(e, self.memory_limit.as_deref(), self.pipeline_name.as_deref())
    }
}

#[async_trait::async_trait]
impl SqlConnection for DuckDbConnection {
    async fn execute(&mut self, sql: &str) -> Result<()> {
        let sql = sql.to_string();
        let r = self
            .run(move |c| c.execute_batch(&sql).map_err(|e| classify(e, &format!("SQL failed: {}", first_line(&sql)))))
            .await;
        r.map_err(|e| self.explain(e))
    }

    async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        let sql = sql.to_string();
        self.run(move |c| {
            let what = || format!("query failed: {}", first_line(&sql));
            let mut stmt = c.prepare(&sql).map_err(|e| classify(e, &what()))?;
            let batches = stmt.query_arrow([]).map_err(|e| classify(e, &what()))?;
            arrow_compat::collect_batches(batches)
                .map_err(|e| Error::driver(NAME, format!("reading the result of {}: {e}", first_line(&sql)), false, e))
        })
        .await
    }

    async fn load_job(&mut self, target: &str, table: &Table, job: &JobFile) -> Result<()> {
        if job.format != FileFormat::Parquet {
            return Err(Error::Destination {
                destination: NAME.into(),
                message: format!("job {} is {:?}; DuckDB loads parquet job files", job.path.display(), job.format),
                transient: false,
            });
        }
        let what = format!("loading job {} into table {}", job.path.display(), table.name);
        self.insert_parquet(target, &job.path.to_string_lossy(), what).await
    }

    async fn load_staged(&mut self, target: &str, table: &Table, file: &StagedFile) -> Result<()> {
        let path = match file.url.strip_prefix("file://") {
            Some(p) if file.format == FileFormat::Parquet && !file.gzip => p.to_string(),
            _ => {
                return Err(Error::Config(format!(
                    "DuckDB loads staged parquet files from a local folder (file://), not {}; use a local \
                     bucket_url and loader_file_format = \"parquet\" for the staging destination",
                    file.url
                )));
            }
        };
        let what = format!("loading staged file {} into table {}", file.url, table.name);
        self.insert_parquet(target, &path, what).await
    }
}

/// Builds DuckDB destinations from configuration: `DESTINATION__DUCKDB__CREDENTIALS`
/// (or `[destination.duckdb] credentials` in the toml files, or the pipeline file's
/// `[destination] credentials`), defaulting to `<pipeline_name>.duckdb` in the run directory.
#[derive(Debug, Default)]
pub struct DuckDbFactory;

impl DestinationFactory for DuckDbFactory {
    fn init_template(&self) -> Option<dlt_core::registry::InitTemplate> {
        Some(dlt_core::registry::InitTemplate { config: include_str!("init/config.toml"), ..Default::default() })
    }
    fn name(&self) -> &'static str {
        NAME
    }
    fn build(&self, ctx: &DestinationContext<'_>) -> Result<Arc<dyn Destination>> {
        let from_config =
            ctx.config.resolve(&["destination", NAME], &["credentials"]).map(|(v, _)| v).map(|v| match v {
                ConfigValue::Toml(toml::Value::Table(t)) => {
                    t.get("database").and_then(|d| d.as_str()).map(str::to_string).unwrap_or_default()
                }
                v => v.as_string(),
            });
        let explicit = ctx.explicit.and_then(|t| t.get("credentials")).and_then(|v| v.as_str()).map(str::to_string);
        let mut d = match from_config.or(explicit) {
            Some(c) => DuckDb::from_credentials(&c, ctx.run_dir)?,
            None => DuckDb::new(ctx.run_dir.join(format!("{}.duckdb", ctx.pipeline_name))),
        }
        .with_pipeline_name(ctx.pipeline_name);
        let setting = |key: &str| ctx.setting(NAME, key);
        if let Some(m) = setting("memory_limit") {
            d = d.with_memory_limit(if m.is_empty() || m == "default" { None } else { Some(m) });
        }
        if let Some(t) = setting("threads") {
            let t: u32 = t
                .parse()
                .map_err(|_| Error::Config(format!("destination.duckdb.threads must be a number, got `{t}`")))?;
            d = d.with_threads(Some(t));
        }
        Ok(Arc::new(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_version_matches_crate() {
        let c = duckdb::Connection::open_in_memory().unwrap();
        let v: String = c.query_row("SELECT library_version FROM pragma_version()", [], |r| r.get(0)).unwrap();
        assert_eq!(v, "v2.0.1");
    }

    #[test]
    fn credentials() {
        let base = Path::new("/base");
        assert_eq!(
            DuckDb::from_credentials("duckdb:///x/y.duckdb", base).unwrap().path(),
            Path::new("/base/x/y.duckdb")
        );
        assert_eq!(
            DuckDb::from_credentials("duckdb:////abs/y.duckdb", base).unwrap().path(),
            Path::new("/abs/y.duckdb")
        );
        assert_eq!(DuckDb::from_credentials("/abs/z.duckdb", base).unwrap().path(), Path::new("/abs/z.duckdb"));
        assert!(DuckDb::from_credentials("postgresql://u:secret@h/db", base).unwrap_err().to_string().contains("***"));
    }

    #[test]
    fn types() {
        let mut c = Column::new("a", DataType::Timestamp);
        assert_eq!(column_type(&c), "TIMESTAMP WITH TIME ZONE");
        c.timezone = Some(false);
        c.precision = Some(3);
        assert_eq!(column_type(&c), "TIMESTAMP_MS");
        let mut d = Column::new("d", DataType::Decimal);
        assert_eq!(column_type(&d), "DECIMAL(38,9)");
        d.precision = Some(10);
        d.scale = Some(2);
        assert_eq!(column_type(&d), "DECIMAL(10,2)");
    }
}
