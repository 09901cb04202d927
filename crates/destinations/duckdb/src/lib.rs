//! The DuckDB destination: an embedded database file; a dataset is a DuckDB schema.
//! Job files are parquet, inserted with DuckDB's own reader; a package's data, its state row and
//! its `_dlt_loads` row commit in one transaction.
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod arrow_compat;
mod memory;

pub use memory::{DEFAULT_MEMORY_LIMIT, INITIAL_COLUMN_SEGMENT_SIZE};

use arrow::record_batch::RecordBatch;
use dlt_core::config::ConfigValue;
use dlt_core::destination::{
    Capabilities, Destination, DestinationClient, FileFormat, PackageToLoad, ReplaceStrategy, SqlClient, StoredState,
};
use dlt_core::error::{Error, Result};
use dlt_core::registry::{DestinationContext, DestinationFactory};
use dlt_core::resource::MergeStrategy;
use dlt_core::schema::{Column, DataType, LOADS_TABLE, Schema, VERSION_TABLE};

const NAME: &str = "duckdb";

/// DuckDB's capabilities.
pub fn capabilities() -> Capabilities {
    Capabilities::default()
        .with_preferred_file_format(FileFormat::Parquet)
        .with_supported_file_formats(vec![FileFormat::Parquet])
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

fn classify(e: duckdb::Error, what: &str) -> Error {
    let msg = e.to_string();
    let transient =
        msg.contains("Could not set lock") || msg.contains("Conflicting lock") || msg.contains("database is locked");
    Error::Destination { destination: NAME.into(), message: format!("{what}: {msg}"), transient }
}

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
    fn client(&self, dataset_name: &str) -> Result<Box<dyn DestinationClient>> {
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
        let conn = duckdb::Connection::open(&self.path)
            .map_err(|e| classify(e, &format!("cannot open DuckDB database {}", self.path.display())))?;
        let settings = memory::load_settings(self.memory_limit.as_deref(), self.threads);
        conn.execute_batch(&settings).map_err(|e| classify(e, "applying DuckDB settings (memory_limit, threads)"))?;
        Ok(Box::new(DuckDbClient {
            conn,
            dataset: dataset_name.to_string(),
            search_path_set: false,
            memory_limit: self.memory_limit.clone(),
            pipeline_name: self.pipeline_name.clone(),
        }))
    }
}

/// A connection to one dataset of a DuckDB file.
pub struct DuckDbClient {
    conn: duckdb::Connection,
    dataset: String,
    search_path_set: bool,
    memory_limit: Option<String>,
    pipeline_name: Option<String>,
}

impl DuckDbClient {
    fn q(&self, table: &str) -> String {
        format!("{}.{}", quote(&self.dataset), quote(table))
    }

    fn exec(&self, sql: &str) -> Result<()> {
        tracing::info!(target: "dlt::sql", destination = NAME, "{sql}");
        self.conn.execute_batch(sql).map_err(|e| classify(e, &format!("SQL failed: {}", first_line(sql))))
    }

    fn dataset_exists(&self) -> Result<bool> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?", [&self.dataset], |r| {
                r.get(0)
            })
            .map_err(|e| classify(e, "reading information_schema"))?;
        Ok(n > 0)
    }

    fn table_columns(&self) -> Result<std::collections::HashMap<String, Vec<String>>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = ? ORDER BY table_name, ordinal_position",
            )
            .map_err(|e| classify(e, "reading information_schema"))?;
        let rows = stmt
            .query_map([&self.dataset], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| classify(e, "reading information_schema"))?;
        let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
        for r in rows {
            let (t, c) = r.map_err(|e| classify(e, "reading information_schema"))?;
            out.entry(t).or_default().push(c);
        }
        Ok(out)
    }

    /// Run `f` in one transaction; an out-of-memory error comes back with the setting that
    /// changes the limit and how to go on.
    fn in_transaction(&self, f: impl FnOnce(&Self) -> Result<()>) -> Result<()> {
        let result = self.exec("BEGIN TRANSACTION").and_then(|()| match f(self) {
            Ok(()) => self.exec("COMMIT"),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        });
        result
            .map_err(|e| memory::explain_out_of_memory(e, self.memory_limit.as_deref(), self.pipeline_name.as_deref()))
    }
}

fn first_line(sql: &str) -> String {
    let l = sql.trim().lines().next().unwrap_or_default();
    if l.len() > 200 {
        format!("{}…", &l[..l.char_indices().nth(200).map(|(i, _)| i).unwrap_or(l.len())])
    } else {
        l.to_string()
    }
}

impl SqlClient for DuckDbClient {
    fn execute(&mut self, sql: &str) -> Result<()> {
        self.set_search_path();
        self.exec(sql)
    }

    fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.set_search_path();
        let mut stmt =
            self.conn.prepare(sql).map_err(|e| classify(e, &format!("query failed: {}", first_line(sql))))?;
        let batches = stmt.query_arrow([]).map_err(|e| classify(e, &format!("query failed: {}", first_line(sql))))?;
        arrow_compat::collect_batches(batches).map_err(|e| Error::Destination {
            destination: NAME.into(),
            message: format!("reading the result of {}: {e}", first_line(sql)),
            transient: false,
        })
    }
}

impl DuckDbClient {
    fn set_search_path(&mut self) {
        if !self.search_path_set && self.dataset_exists().unwrap_or(false) {
            let _ = self.conn.execute_batch(&format!("SET schema = {}", lit(&self.dataset)));
            self.search_path_set = true;
        }
    }
}

impl DestinationClient for DuckDbClient {
    fn initialize_storage(&mut self) -> Result<()> {
        let ds = quote(&self.dataset);
        let loads = self.q(LOADS_TABLE);
        let version = self.q(VERSION_TABLE);
        self.exec(&format!(
            "CREATE SCHEMA IF NOT EXISTS {ds};\n\
             CREATE TABLE IF NOT EXISTS {loads} (\"load_id\" VARCHAR NOT NULL, \"schema_name\" VARCHAR, \"status\" BIGINT NOT NULL, \"inserted_at\" TIMESTAMP WITH TIME ZONE NOT NULL, \"schema_version_hash\" VARCHAR);\n\
             CREATE TABLE IF NOT EXISTS {version} (\"version\" BIGINT NOT NULL, \"engine_version\" BIGINT NOT NULL, \"inserted_at\" TIMESTAMP WITH TIME ZONE NOT NULL, \"schema_name\" VARCHAR NOT NULL, \"version_hash\" VARCHAR NOT NULL, \"schema\" VARCHAR NOT NULL);"
        ))
    }

    fn update_stored_schema(&mut self, schema: &Schema, tables: &[String]) -> Result<()> {
        let existing = self.table_columns()?;
        let stmts = dlt_sql::schema_update_sql(&DuckDbDialect, &self.dataset, schema, tables, &existing);
        let known: i64 = self
            .conn
            .query_row(
                &format!("SELECT count(*) FROM {} WHERE version_hash = ?", self.q(VERSION_TABLE)),
                [&schema.version_hash],
                |r| r.get(0),
            )
            .map_err(|e| classify(e, "reading _dlt_version"))?;
        if stmts.is_empty() && known > 0 {
            return Ok(());
        }
        self.in_transaction(|c| {
            for s in &stmts {
                c.exec(s)?;
            }
            if known == 0 {
                c.conn
                    .execute(
                        &format!(
                            "INSERT INTO {} (version, engine_version, inserted_at, schema_name, version_hash, schema) VALUES (?, ?, now(), ?, ?, ?)",
                            c.q(VERSION_TABLE)
                        ),
                        duckdb::params![
                            schema.version as i64,
                            schema.engine_version as i64,
                            schema.name,
                            schema.version_hash,
                            schema.to_json()
                        ],
                    )
                    .map_err(|e| classify(e, "writing _dlt_version"))?;
            }
            Ok(())
        })
    }

    fn is_loaded(&mut self, load_id: &str) -> Result<bool> {
        if !self.dataset_exists()? {
            return Ok(false);
        }
        let n: i64 = self
            .conn
            .query_row(&format!("SELECT count(*) FROM {} WHERE load_id = ?", self.q(LOADS_TABLE)), [load_id], |r| {
                r.get(0)
            })
            .map_err(|e| classify(e, "reading _dlt_loads"))?;
        Ok(n > 0)
    }

    fn commit_package(&mut self, package: &PackageToLoad<'_>) -> Result<()> {
        let existing = self.table_columns()?;
        let schema = package.schema;
        // tables whose root merges: loaded into the staging dataset, then merged by SQL
        let dlt_sql::StagingPlan { staged, merge_roots } =
            dlt_sql::staging_plan(schema, package.jobs, package.replace_strategy);
        let via_staging = package.replace_strategy != ReplaceStrategy::TruncateAndInsert;
        let staging = format!("{}_staging", self.dataset);
        let sq = |t: &str| format!("{}.{}", quote(&staging), quote(t));
        self.in_transaction(|c| {
            if !via_staging {
                for t in package.truncate_tables {
                    if existing.contains_key(t) {
                        c.exec(&format!("DELETE FROM {} WHERE 1=1;", c.q(t)))?;
                    }
                }
            }
            if !staged.is_empty() {
                c.exec(&format!("CREATE SCHEMA IF NOT EXISTS {};", quote(&staging)))?;
                for t in &staged {
                    c.exec(&format!("CREATE OR REPLACE TABLE {} AS SELECT * FROM {} LIMIT 0;", sq(t), c.q(t)))?;
                }
                // staged rows keep their file order: in-load dedup picks the first (or last) row
                c.exec("SET preserve_insertion_order = true;")?;
            }
            for job in package.jobs {
                if job.format != FileFormat::Parquet {
                    return Err(Error::Destination {
                        destination: NAME.into(),
                        message: format!("job {} has an unsupported format", job.path.display()),
                        transient: false,
                    });
                }
                let target = if staged.contains(&job.table) { sq(&job.table) } else { c.q(&job.table) };
                let sql =
                    format!("INSERT INTO {target} BY NAME SELECT * FROM read_parquet({});", lit(&job.path.to_string_lossy()));
                tracing::info!(target: "dlt::sql", destination = NAME, "{sql}");
                c.conn
                    .execute_batch(&sql)
                    .map_err(|e| classify(e, &format!("loading job {} into table {}", job.path.display(), job.table)))?;
            }
            if !staged.is_empty() {
                c.exec("SET preserve_insertion_order = false;")?;
            }
            let mut present: Vec<String> = existing.keys().cloned().collect();
            present.extend(staged.iter().cloned());
            let ctx = dlt_sql::MergeContext {
                dialect: &DuckDbDialect,
                schema,
                dataset: &c.dataset,
                staging: &staging,
                load_id: package.load_id,
                staged: &staged,
                existing: &present,
            };
            if via_staging && !package.truncate_tables.is_empty() {
                // insert-from-staging (staging-optimized is not a DuckDB strategy)
                for stmt in dlt_sql::replace_from_staging(&ctx, package.truncate_tables) {
                    c.exec(&stmt)?;
                }
            }
            for root in &merge_roots {
                for stmt in dlt_sql::merge_statements(&ctx, root)? {
                    tracing::info!(target: "dlt::sql", destination = NAME, "{stmt}");
                    c.conn.execute_batch(&stmt).map_err(|e| classify(e, &format!("merging table {root}: {}", first_line(&stmt))))?;
                }
            }
            c.conn
                .execute(
                    &format!(
                        "INSERT INTO {} (load_id, schema_name, status, inserted_at, schema_version_hash) VALUES (?, ?, 0, now(), ?)",
                        c.q(LOADS_TABLE)
                    ),
                    duckdb::params![package.load_id, package.schema.name, package.schema.version_hash],
                )
                .map_err(|e| classify(e, "writing _dlt_loads"))?;
            dlt_core::fault::hit("load.in_transaction");
            Ok(())
        })
    }

    fn stored_state(&mut self, pipeline_name: &str) -> Result<Option<StoredState>> {
        if !self.dataset_exists()? || !self.table_columns()?.contains_key(dlt_core::schema::STATE_TABLE) {
            return Ok(None);
        }
        let sql = format!(
            "SELECT s.version, s.engine_version, s.pipeline_name, s.state, s._dlt_load_id FROM {} AS s JOIN {} AS l ON l.load_id = s._dlt_load_id WHERE s.pipeline_name = ? AND l.status = 0 ORDER BY l.load_id DESC LIMIT 1",
            self.q(dlt_core::schema::STATE_TABLE),
            self.q(LOADS_TABLE)
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| classify(e, "reading stored state"))?;
        let mut rows = stmt.query([pipeline_name]).map_err(|e| classify(e, "reading stored state"))?;
        match rows.next().map_err(|e| classify(e, "reading stored state"))? {
            Some(r) => Ok(Some(StoredState {
                version: r.get(0).map_err(|e| classify(e, "reading stored state"))?,
                engine_version: r.get(1).map_err(|e| classify(e, "reading stored state"))?,
                pipeline_name: r.get(2).map_err(|e| classify(e, "reading stored state"))?,
                state: r.get(3).map_err(|e| classify(e, "reading stored state"))?,
                load_id: r.get(4).map_err(|e| classify(e, "reading stored state"))?,
            })),
            None => Ok(None),
        }
    }

    fn stored_schema(&mut self, schema_name: &str) -> Result<Option<String>> {
        if !self.dataset_exists()? {
            return Ok(None);
        }
        let sql = format!(
            "SELECT schema FROM {} WHERE schema_name = ? ORDER BY inserted_at DESC LIMIT 1",
            self.q(VERSION_TABLE)
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| classify(e, "reading stored schema"))?;
        let mut rows = stmt.query([schema_name]).map_err(|e| classify(e, "reading stored schema"))?;
        match rows.next().map_err(|e| classify(e, "reading stored schema"))? {
            Some(r) => Ok(Some(r.get(0).map_err(|e| classify(e, "reading stored schema"))?)),
            None => Ok(None),
        }
    }

    fn drop_tables(&mut self, tables: &[String]) -> Result<()> {
        let existing = self.table_columns()?;
        self.in_transaction(|c| {
            for t in tables {
                if existing.contains_key(t) {
                    c.exec(&format!("DROP TABLE {};", c.q(t)))?;
                }
            }
            Ok(())
        })
    }

    fn existing_tables(&mut self) -> Result<Vec<String>> {
        let mut v: Vec<String> = self.table_columns()?.into_keys().collect();
        v.sort();
        Ok(v)
    }
}

/// Builds DuckDB destinations from configuration: `DESTINATION__DUCKDB__CREDENTIALS`
/// (or `[destination.duckdb] credentials` in the toml files, or the pipeline file's
/// `[destination] credentials`), defaulting to `<pipeline_name>.duckdb` in the run directory.
#[derive(Debug, Default)]
pub struct DuckDbFactory;

impl DestinationFactory for DuckDbFactory {
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
        let setting = |key: &str| {
            ctx.config.get(&["destination", NAME], key).map(|v| v.as_string()).or_else(|| {
                ctx.explicit.and_then(|t| t.get(key)).map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()))
            })
        };
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
