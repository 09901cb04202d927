//! The Postgres destination: a dataset is a schema; job files are loaded with binary `COPY`
//! from Arrow; a package's data, its state row and its `_dlt_loads` row commit in one transaction.
#![warn(missing_docs)]

mod pgvalue;
pub use dlt_postgres_conn::tls;

use std::collections::HashMap;
use std::fs::File;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::{Field, Schema as ArrowSchema};
use arrow::record_batch::RecordBatch;
use dlt_core::config::{Config, ConfigValue, mask_url};
use dlt_core::destination::{
    Capabilities, Destination, DestinationClient, FileFormat, PackageToLoad, ReplaceStrategy, SqlClient, StoredState,
};
use dlt_core::error::{Error, Result};
use dlt_core::registry::{DestinationContext, DestinationFactory};
use dlt_core::resource::MergeStrategy;
use dlt_core::schema::{Column, DataType, LOADS_TABLE, STATE_TABLE, Schema, VERSION_TABLE};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

pub use pgvalue::{PgValue, write_numeric};

const NAME: &str = "postgres";

/// Postgres' capabilities.
pub fn capabilities() -> Capabilities {
    Capabilities::default()
        .with_preferred_file_format(FileFormat::Parquet)
        .with_supported_file_formats(vec![FileFormat::Parquet])
        .with_max_identifier_length(63)
        .with_max_column_identifier_length(63)
        .with_supports_transactions(true)
        .with_merge_strategies(vec![
            MergeStrategy::DeleteInsert,
            MergeStrategy::Upsert,
            MergeStrategy::Scd2,
            MergeStrategy::InsertOnly,
        ])
        .with_replace_strategies(vec![
            ReplaceStrategy::TruncateAndInsert,
            ReplaceStrategy::InsertFromStaging,
            ReplaceStrategy::StagingOptimized,
        ])
        .with_timestamp_precision(6)
        .with_decimal_precision((38, 9))
        .with_type_map(vec![
            (DataType::Text, "varchar"),
            (DataType::Double, "double precision"),
            (DataType::Bool, "boolean"),
            (DataType::Timestamp, "timestamp with time zone"),
            (DataType::Bigint, "bigint"),
            (DataType::Binary, "bytea"),
            (DataType::Json, "jsonb"),
            (DataType::Decimal, "numeric(38,9)"),
            (DataType::Wei, "numeric(156,78)"),
            (DataType::Date, "date"),
            (DataType::Time, "time without time zone"),
        ])
}

/// The Postgres type of a dlt column (dlt's mapping with precision and timezone hints).
pub fn column_type(c: &Column) -> String {
    match c.data_type.unwrap_or(DataType::Text) {
        DataType::Text => match c.precision {
            Some(p) => format!("varchar({p})"),
            None => "varchar".into(),
        },
        DataType::Double => "double precision".into(),
        DataType::Bool => "boolean".into(),
        DataType::Bigint => match c.precision {
            Some(p) if p <= 16 => "smallint".into(),
            Some(p) if p <= 32 => "integer".into(),
            Some(p) if p > 64 => "numeric(39,0)".into(),
            _ => "bigint".into(),
        },
        DataType::Timestamp => {
            let tz = if c.timezone.unwrap_or(true) { "with" } else { "without" };
            match c.precision {
                Some(p) if p < 6 => format!("timestamp ({p}) {tz} time zone"),
                _ => format!("timestamp {tz} time zone"),
            }
        }
        DataType::Date => "date".into(),
        DataType::Time => "time without time zone".into(),
        DataType::Binary => "bytea".into(),
        DataType::Json => "jsonb".into(),
        DataType::Decimal => format!("numeric({},{})", c.precision.unwrap_or(38), c.scale.unwrap_or(9)),
        DataType::Wei => "numeric(156,78)".into(),
    }
}

fn pg_type(c: &Column) -> Type {
    match c.data_type.unwrap_or(DataType::Text) {
        DataType::Text => Type::VARCHAR,
        DataType::Double => Type::FLOAT8,
        DataType::Bool => Type::BOOL,
        DataType::Bigint => match c.precision {
            Some(p) if p <= 16 => Type::INT2,
            Some(p) if p <= 32 => Type::INT4,
            Some(p) if p > 64 => Type::NUMERIC,
            _ => Type::INT8,
        },
        DataType::Timestamp => {
            if c.timezone.unwrap_or(true) {
                Type::TIMESTAMPTZ
            } else {
                Type::TIMESTAMP
            }
        }
        DataType::Date => Type::DATE,
        DataType::Time => Type::TIME,
        DataType::Binary => Type::BYTEA,
        DataType::Json => Type::JSONB,
        DataType::Decimal | DataType::Wei => Type::NUMERIC,
    }
}

/// Quote an identifier.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Postgres' flavour of the shared SQL generation.
#[derive(Debug, Default, Clone, Copy)]
pub struct PgDialect;
impl dlt_sql::Dialect for PgDialect {
    fn column_type(&self, col: &Column) -> String {
        column_type(col)
    }
    fn unique_constraints(&self) -> bool {
        true
    }
    fn combine_add_columns(&self) -> bool {
        true
    }
    fn row_order(&self) -> Option<&'static str> {
        // staging tables are created fresh and filled by one COPY: ctid follows file order
        Some("ctid")
    }
}

/// A Postgres database.
#[derive(Clone)]
pub struct Postgres {
    config: postgres::Config,
    display: String,
    caps: Capabilities,
    ssl_mode: tls::SslMode,
    ssl_root_cert: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").field("location", &self.display).finish()
    }
}

impl Postgres {
    /// From a connection string: `postgresql://user:password@host:port/database?sslmode=…`
    /// (or libpq's `key=value` form).
    pub fn from_url(url: &str) -> Result<Self> {
        let (client_url, mode, root) = tls::split_tls_options(url.trim())?;
        let config = postgres::Config::from_str(&client_url)
            .map_err(|e| Error::Config(format!("invalid postgres credentials {}: {e}", mask_url(url))))?;
        Ok(Self::from_config(config)?.with_tls(mode, root))
    }

    /// Set the TLS mode and CA bundle. The client config gets the matching requirement, so a
    /// mode that asks for TLS never falls back to plaintext when the server (or a proxy in
    /// between) refuses TLS.
    pub fn with_tls(mut self, mode: tls::SslMode, root: Option<std::path::PathBuf>) -> Self {
        self.config.ssl_mode(match mode {
            tls::SslMode::Disable => postgres::config::SslMode::Disable,
            tls::SslMode::Prefer => postgres::config::SslMode::Prefer,
            tls::SslMode::Require | tls::SslMode::VerifyCa | tls::SslMode::VerifyFull => {
                postgres::config::SslMode::Require
            }
        });
        self.ssl_mode = mode;
        self.ssl_root_cert = root;
        self
    }

    /// From a parsed client config.
    pub fn from_config(config: postgres::Config) -> Result<Self> {
        let ssl_mode = match config.get_ssl_mode() {
            postgres::config::SslMode::Disable => tls::SslMode::Disable,
            postgres::config::SslMode::Require => tls::SslMode::Require,
            _ => tls::SslMode::Prefer,
        };
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                postgres::config::Host::Tcp(s) => s.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("");
        let pass = if config.get_password().is_some() { ":***" } else { "" };
        let db = config.get_dbname().unwrap_or("");
        let display = format!("postgresql://{user}{pass}@{host}:{port}/{db}");
        Ok(Postgres { config, display, caps: capabilities(), ssl_mode, ssl_root_cert: None })
    }
}

fn classify(e: postgres::Error, what: &str) -> Error {
    let c = dlt_postgres_conn::classify(&e, what);
    Error::Destination { destination: NAME.into(), message: c.message, transient: c.transient }
}

impl Destination for Postgres {
    fn name(&self) -> &str {
        NAME
    }
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }
    fn display_location(&self) -> String {
        self.display.clone()
    }
    fn client(&self, dataset_name: &str) -> Result<Box<dyn DestinationClient>> {
        let mut cfg = self.config.clone();
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(std::time::Duration::from_secs(10));
        }
        let client = match tls::connector(&self.ssl_mode, self.ssl_root_cert.as_ref())? {
            None => cfg.connect(postgres::NoTls),
            Some(c) => cfg.connect(c),
        }
        .map_err(|e| classify(e, &format!("cannot connect to {}", self.display)))?;
        Ok(Box::new(PgClient { client, dataset: dataset_name.to_string() }))
    }
}

/// A connection to one dataset of a Postgres database.
pub struct PgClient {
    client: postgres::Client,
    dataset: String,
}

fn first_line(sql: &str) -> String {
    let l = sql.trim().lines().next().unwrap_or_default();
    l.chars().take(200).collect()
}

impl PgClient {
    fn q(&self, t: &str) -> String {
        format!("{}.{}", quote(&self.dataset), quote(t))
    }

    fn tx_exec(tx: &mut postgres::Transaction<'_>, sql: &str) -> Result<()> {
        tracing::info!(target: "dlt::sql", destination = NAME, "{sql}");
        tx.batch_execute(sql).map_err(|e| classify(e, &format!("SQL failed: {}", first_line(sql))))
    }

    fn table_columns(&mut self) -> Result<HashMap<String, Vec<String>>> {
        let rows = self
            .client
            .query(
                "SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
                &[&self.dataset],
            )
            .map_err(|e| classify(e, "reading information_schema"))?;
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for r in rows {
            out.entry(r.get(0)).or_default().push(r.get(1));
        }
        Ok(out)
    }

    fn dataset_exists(&mut self) -> Result<bool> {
        let n: i64 = self
            .client
            .query_one("SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", &[&self.dataset])
            .map_err(|e| classify(e, "reading information_schema"))?
            .get(0);
        Ok(n > 0)
    }
}

/// Copy one parquet job file into `target` (`"schema"."table"`).
fn copy_job(
    tx: &mut postgres::Transaction<'_>,
    target: &str,
    table: &dlt_core::schema::Table,
    path: &std::path::Path,
) -> Result<()> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)?.with_batch_size(16_384).build()?;
    let arrow_schema = arrow::record_batch::RecordBatchReader::schema(&reader);
    let mut names = vec![];
    let mut types = vec![];
    let mut json = vec![];
    for field in arrow_schema.fields() {
        let col = table.columns.get(field.name()).ok_or_else(|| Error::Destination {
            destination: NAME.into(),
            message: format!(
                "job {} has column `{}` that table `{}` does not know",
                path.display(),
                field.name(),
                table.name
            ),
            transient: false,
        })?;
        names.push(quote(field.name()));
        types.push(pg_type(col));
        json.push(col.data_type == Some(DataType::Json));
    }
    let sql = format!("COPY {target} ({}) FROM STDIN (FORMAT binary)", names.join(", "));
    tracing::info!(target: "dlt::sql", destination = NAME, "{sql}");
    let sink = tx.copy_in(&sql).map_err(|e| classify(e, &format!("starting COPY into {target}")))?;
    let mut writer = BinaryCopyInWriter::new(sink, &types);
    let mut row_no = 0usize;
    for batch in reader {
        let batch = batch?;
        let cols: Vec<&ArrayRef> = batch.columns().iter().collect();
        for i in 0..batch.num_rows() {
            let vals: Vec<PgValue<'_>> = cols.iter().zip(&json).map(|(c, j)| pgvalue::value_at(c, i, *j)).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = vals.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            writer
                .write(&refs)
                .map_err(|e| classify(e, &format!("copying row {row_no} of {} into {target}", path.display())))?;
            row_no += 1;
        }
    }
    writer.finish().map_err(|e| classify(e, &format!("loading job {} into {target}", path.display())))?;
    Ok(())
}

impl SqlClient for PgClient {
    fn execute(&mut self, sql: &str) -> Result<()> {
        let sql = format!("SET search_path TO {}, public; {sql}", quote(&self.dataset));
        self.client.batch_execute(&sql).map_err(|e| classify(e, &format!("SQL failed: {}", first_line(&sql))))
    }

    fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.client
            .batch_execute(&format!("SET search_path TO {}, public", quote(&self.dataset)))
            .map_err(|e| classify(e, "setting search_path"))?;
        let stmt = self.client.prepare(sql).map_err(|e| classify(e, &format!("query failed: {}", first_line(sql))))?;
        let rows =
            self.client.query(&stmt, &[]).map_err(|e| classify(e, &format!("query failed: {}", first_line(sql))))?;
        let mut fields = vec![];
        let mut arrays: Vec<ArrayRef> = vec![];
        for (i, c) in stmt.columns().iter().enumerate() {
            let t = c.type_();
            let (dt, arr): (arrow::datatypes::DataType, ArrayRef) =
                if *t == Type::INT8 || *t == Type::INT4 || *t == Type::INT2 {
                    let mut b = Int64Builder::new();
                    for r in &rows {
                        let v: Option<i64> = match *t {
                            Type::INT2 => r.get::<_, Option<i16>>(i).map(i64::from),
                            Type::INT4 => r.get::<_, Option<i32>>(i).map(i64::from),
                            _ => r.get(i),
                        };
                        b.append_option(v);
                    }
                    (arrow::datatypes::DataType::Int64, Arc::new(b.finish()))
                } else if *t == Type::FLOAT8 || *t == Type::FLOAT4 {
                    let mut b = Float64Builder::new();
                    for r in &rows {
                        let v: Option<f64> =
                            if *t == Type::FLOAT4 { r.get::<_, Option<f32>>(i).map(f64::from) } else { r.get(i) };
                        b.append_option(v);
                    }
                    (arrow::datatypes::DataType::Float64, Arc::new(b.finish()))
                } else if *t == Type::BOOL {
                    let mut b = BooleanBuilder::new();
                    for r in &rows {
                        b.append_option(r.get::<_, Option<bool>>(i));
                    }
                    (arrow::datatypes::DataType::Boolean, Arc::new(b.finish()))
                } else {
                    // everything else as text, cast by the server
                    let mut b = StringBuilder::new();
                    for r in &rows {
                        let v: Option<String> = match r.try_get::<_, Option<String>>(i) {
                            Ok(v) => v,
                            Err(_) => r
                                .try_get::<_, Option<chrono::DateTime<chrono::Utc>>>(i)
                                .ok()
                                .flatten()
                                .map(|d| d.to_rfc3339())
                                .or_else(|| {
                                    r.try_get::<_, Option<serde_json::Value>>(i).ok().flatten().map(|v| v.to_string())
                                }),
                        };
                        b.append_option(v);
                    }
                    (arrow::datatypes::DataType::Utf8, Arc::new(b.finish()))
                };
            fields.push(Field::new(c.name(), dt, true));
            arrays.push(arr);
        }
        if fields.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), arrays)?])
    }
}

impl DestinationClient for PgClient {
    fn initialize_storage(&mut self) -> Result<()> {
        let ds = quote(&self.dataset);
        let loads = self.q(LOADS_TABLE);
        let version = self.q(VERSION_TABLE);
        let sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {ds};\n\
             CREATE TABLE IF NOT EXISTS {loads} (\"load_id\" varchar(64) NOT NULL, \"schema_name\" varchar, \"status\" bigint NOT NULL, \"inserted_at\" timestamp with time zone NOT NULL, \"schema_version_hash\" varchar);\n\
             CREATE TABLE IF NOT EXISTS {version} (\"version\" bigint NOT NULL, \"engine_version\" bigint NOT NULL, \"inserted_at\" timestamp with time zone NOT NULL, \"schema_name\" varchar NOT NULL, \"version_hash\" varchar NOT NULL, \"schema\" varchar NOT NULL);"
        );
        // concurrent pipelines may create the same dataset at once: serialise on a lock per dataset
        let mut tx = self.client.transaction().map_err(|e| classify(e, "starting a transaction"))?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("dlt:{}", self.dataset)])
            .map_err(|e| classify(e, "locking the dataset"))?;
        tx.batch_execute(&sql).map_err(|e| classify(e, "creating the dataset"))?;
        tx.commit().map_err(|e| classify(e, "creating the dataset"))
    }

    fn update_stored_schema(&mut self, schema: &Schema, tables: &[String]) -> Result<()> {
        // DDL of concurrent pipelines on one dataset is serialised; what exists is read under the lock
        let dataset = self.dataset.clone();
        let q = |t: &str| format!("{}.{}", quote(&dataset), quote(t));
        let mut lock = self.client.transaction().map_err(|e| classify(e, "starting a transaction"))?;
        lock.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("dlt:{dataset}")])
            .map_err(|e| classify(e, "locking the dataset"))?;
        let rows = lock
            .query(
                "SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
                &[&dataset],
            )
            .map_err(|e| classify(e, "reading information_schema"))?;
        let mut existing: HashMap<String, Vec<String>> = HashMap::new();
        for r in rows {
            existing.entry(r.get(0)).or_default().push(r.get(1));
        }
        let mut tx = lock;
        let stmts = dlt_sql::schema_update_sql(&PgDialect, &dataset, schema, tables, &existing);
        let known: i64 = tx
            .query_one(
                &format!("SELECT count(*) FROM {} WHERE version_hash = $1", q(VERSION_TABLE)),
                &[&schema.version_hash],
            )
            .map_err(|e| classify(e, "reading _dlt_version"))?
            .get(0);
        if stmts.is_empty() && known > 0 {
            return tx.commit().map_err(|e| classify(e, "releasing the dataset lock"));
        }
        for s in &stmts {
            Self::tx_exec(&mut tx, s)?;
        }
        if known == 0 {
            let sql = format!(
                "INSERT INTO {} (version, engine_version, inserted_at, schema_name, version_hash, schema) VALUES ($1, $2, now(), $3, $4, $5)",
                q(VERSION_TABLE)
            );
            tx.execute(
                &sql,
                &[
                    &(schema.version as i64),
                    &(schema.engine_version as i64),
                    &schema.name,
                    &schema.version_hash,
                    &schema.to_json(),
                ],
            )
            .map_err(|e| classify(e, "writing _dlt_version"))?;
        }
        tx.commit().map_err(|e| classify(e, "committing schema changes"))
    }

    fn is_loaded(&mut self, load_id: &str) -> Result<bool> {
        if !self.dataset_exists()? {
            return Ok(false);
        }
        let n: i64 = self
            .client
            .query_one(&format!("SELECT count(*) FROM {} WHERE load_id = $1", self.q(LOADS_TABLE)), &[&load_id])
            .map_err(|e| classify(e, "reading _dlt_loads"))?
            .get(0);
        Ok(n > 0)
    }

    fn commit_package(&mut self, package: &PackageToLoad<'_>) -> Result<()> {
        let existing = self.table_columns()?;
        let schema = package.schema;
        let dlt_sql::StagingPlan { staged, merge_roots } =
            dlt_sql::staging_plan(schema, package.jobs, package.replace_strategy);
        let via_staging = package.replace_strategy != ReplaceStrategy::TruncateAndInsert;
        let dataset = self.dataset.clone();
        let staging = format!("{dataset}_staging");
        let sq = |t: &str| format!("{}.{}", quote(&staging), quote(t));
        let q = |t: &str| format!("{}.{}", quote(&dataset), quote(t));
        let mut tx = self.client.transaction().map_err(|e| classify(e, "starting a transaction"))?;
        if !via_staging {
            for t in package.truncate_tables {
                if existing.contains_key(t) {
                    Self::tx_exec(&mut tx, &format!("DELETE FROM {};", q(t)))?;
                }
            }
        }
        if !staged.is_empty() {
            Self::tx_exec(&mut tx, &format!("CREATE SCHEMA IF NOT EXISTS {};", quote(&staging)))?;
            for t in &staged {
                // tables swapped in by staging-optimized keep every constraint and index
                let swapped = package.replace_strategy == ReplaceStrategy::StagingOptimized
                    && package.truncate_tables.contains(t);
                let including = if swapped { " INCLUDING ALL" } else { "" };
                Self::tx_exec(
                    &mut tx,
                    &format!("DROP TABLE IF EXISTS {s}; CREATE TABLE {s} (LIKE {f}{including});", s = sq(t), f = q(t)),
                )?;
            }
        }
        for job in package.jobs {
            let table = schema
                .tables
                .get(&job.table)
                .ok_or_else(|| Error::Package(format!("table `{}` not in schema", job.table)))?;
            let target = if staged.contains(&job.table) { sq(&job.table) } else { q(&job.table) };
            copy_job(&mut tx, &target, table, &job.path)?;
        }
        let mut present: Vec<String> = existing.keys().cloned().collect();
        present.extend(staged.iter().cloned());
        let ctx = dlt_sql::MergeContext {
            dialect: &PgDialect,
            schema,
            dataset: &dataset,
            staging: &staging,
            load_id: package.load_id,
            staged: &staged,
            existing: &present,
        };
        if via_staging && !package.truncate_tables.is_empty() {
            if package.replace_strategy == ReplaceStrategy::StagingOptimized {
                // swap the staged tables in; tables without rows in this load are emptied
                for t in package.truncate_tables {
                    if staged.contains(t) {
                        Self::tx_exec(
                            &mut tx,
                            &format!(
                                "DROP TABLE IF EXISTS {}; ALTER TABLE {} SET SCHEMA {};",
                                q(t),
                                sq(t),
                                quote(&dataset)
                            ),
                        )?;
                    } else if existing.contains_key(t) {
                        Self::tx_exec(&mut tx, &format!("DELETE FROM {};", q(t)))?;
                    }
                }
            } else {
                for stmt in dlt_sql::replace_from_staging(&ctx, package.truncate_tables) {
                    Self::tx_exec(&mut tx, &stmt)?;
                }
            }
        }
        for root in &merge_roots {
            for stmt in dlt_sql::merge_statements(&ctx, root)? {
                tracing::info!(target: "dlt::sql", destination = NAME, "{stmt}");
                tx.batch_execute(&stmt)
                    .map_err(|e| classify(e, &format!("merging table {root}: {}", first_line(&stmt))))?;
            }
        }
        tx.execute(
            &format!(
                "INSERT INTO {} (load_id, schema_name, status, inserted_at, schema_version_hash) VALUES ($1, $2, 0, now(), $3)",
                q(LOADS_TABLE)
            ),
            &[&package.load_id, &schema.name, &schema.version_hash],
        )
        .map_err(|e| classify(e, "writing _dlt_loads"))?;
        dlt_core::fault::hit("load.in_transaction");
        tx.commit().map_err(|e| classify(e, "committing the package"))
    }

    fn stored_state(&mut self, pipeline_name: &str) -> Result<Option<StoredState>> {
        if !self.dataset_exists()? || !self.table_columns()?.contains_key(STATE_TABLE) {
            return Ok(None);
        }
        let sql = format!(
            "SELECT s.version, s.engine_version, s.pipeline_name, s.state, s._dlt_load_id FROM {} AS s JOIN {} AS l ON l.load_id = s._dlt_load_id WHERE s.pipeline_name = $1 AND l.status = 0 ORDER BY l.load_id DESC LIMIT 1",
            self.q(STATE_TABLE),
            self.q(LOADS_TABLE)
        );
        let rows = self.client.query(&sql, &[&pipeline_name]).map_err(|e| classify(e, "reading stored state"))?;
        Ok(rows.first().map(|r| StoredState {
            version: r.get(0),
            engine_version: r.get(1),
            pipeline_name: r.get(2),
            state: r.get(3),
            load_id: r.get(4),
        }))
    }

    fn stored_schema(&mut self, schema_name: &str) -> Result<Option<String>> {
        if !self.dataset_exists()? {
            return Ok(None);
        }
        let sql = format!(
            "SELECT schema FROM {} WHERE schema_name = $1 ORDER BY inserted_at DESC LIMIT 1",
            self.q(VERSION_TABLE)
        );
        let rows = self.client.query(&sql, &[&schema_name]).map_err(|e| classify(e, "reading stored schema"))?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn drop_tables(&mut self, tables: &[String]) -> Result<()> {
        let existing = self.table_columns()?;
        let mut tx = self.client.transaction().map_err(|e| classify(e, "starting a transaction"))?;
        for t in tables {
            if existing.contains_key(t) {
                Self::tx_exec(&mut tx, &format!("DROP TABLE {}.{};", quote(&self.dataset), quote(t)))?;
            }
        }
        tx.commit().map_err(|e| classify(e, "committing drops"))
    }

    fn existing_tables(&mut self) -> Result<Vec<String>> {
        let mut v: Vec<String> = self.table_columns()?.into_keys().collect();
        v.sort();
        Ok(v)
    }
}

/// Builds Postgres destinations from configuration, as dlt resolves them:
/// `DESTINATION__POSTGRES__CREDENTIALS` (a connection string) or its fields
/// (`…__CREDENTIALS__HOST`, `__PORT`, `__DATABASE`, `__USERNAME`, `__PASSWORD`), from the
/// environment, `.dlt/secrets.toml`, `.dlt/config.toml`, or the pipeline file's `[destination]`.
#[derive(Debug, Default)]
pub struct PostgresFactory;

impl DestinationFactory for PostgresFactory {
    fn name(&self) -> &'static str {
        NAME
    }
    fn build(&self, ctx: &DestinationContext<'_>) -> Result<Arc<dyn Destination>> {
        let whole = ctx.config.resolve(&["destination", NAME], &["credentials"]).map(|(v, _)| v);
        let explicit = ctx.explicit.and_then(|t| t.get("credentials")).cloned();
        let field = |key: &str| -> Option<String> {
            ctx.config
                .resolve(&["destination", NAME], &["credentials", key])
                .map(|(v, _)| v.as_string())
                .or_else(|| match (&whole, &explicit) {
                    (Some(ConfigValue::Toml(toml::Value::Table(t))), _) => {
                        t.get(key).map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()))
                    }
                    (_, Some(toml::Value::Table(t))) => {
                        t.get(key).map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()))
                    }
                    _ => None,
                })
                // `<configure me>` from `dlt init` is not a value (as in dlt)
                .filter(|v| !dlt_core::config::is_placeholder(v))
        };
        let url = match (&whole, &explicit) {
            (Some(ConfigValue::Str(s)), _) => Some(s.clone()),
            (Some(ConfigValue::Toml(toml::Value::String(s))), _) => Some(s.clone()),
            (None, Some(toml::Value::String(s))) => Some(s.clone()),
            _ => None,
        };
        let had_url = url.is_some();
        let (mut config, url_mode, root) = match url {
            Some(u) => {
                let (client_url, mode, root) = tls::split_tls_options(u.trim())?;
                let c = postgres::Config::from_str(&client_url)
                    .map_err(|e| Error::Config(format!("invalid postgres credentials {}: {e}", mask_url(&u))))?;
                let explicit =
                    u.split_once('?').is_some_and(|(_, q)| q.split('&').any(|kv| kv.starts_with("sslmode=")));
                (c, explicit.then_some(mode), root)
            }
            None => (postgres::Config::new(), None, None),
        };
        // every way to give the mode (the connection string, the `sslmode` field from the
        // environment, secrets.toml or the pipeline file) ends in one setting; two that differ
        // are an error rather than a silent choice
        let field_mode = match field("sslmode") {
            Some(m) => Some(tls::split_tls_options(&format!("x?sslmode={}", m.trim()))?.1),
            None => None,
        };
        let mode = match (url_mode, field_mode) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::Config(format!(
                    "postgres: the connection string says sslmode={} but the credentials' sslmode field says {}; \
                     set one of them",
                    tls::mode_name(&a),
                    tls::mode_name(&b)
                )));
            }
            (a, b) => b.or(a),
        };
        let root = match (root, field("sslrootcert").map(std::path::PathBuf::from)) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::Config(format!(
                    "postgres: the connection string says sslrootcert={} but the credentials' sslrootcert field \
                     says {}; set one of them",
                    a.display(),
                    b.display()
                )));
            }
            (a, b) => b.or(a),
        };
        if let Some(h) = field("host") {
            config.host(&h);
        }
        if let Some(p) = field("port") {
            config.port(p.parse().map_err(|_| Error::Config(format!("postgres port `{p}` is not a number")))?);
        }
        if let Some(d) = field("database") {
            config.dbname(&d);
        }
        if let Some(u) = field("username") {
            config.user(&u);
        }
        if let Some(p) = field("password") {
            config.password(p);
        }
        if !had_url
            && field("password").is_none()
            && let Some(at) = ctx.config.placeholder(&["destination", NAME], &["credentials", "password"])
        {
            return Err(Error::Config(format!(
                "postgres password missing: {at} is still the placeholder `dlt init` wrote; put the password \
                 there or set DESTINATION__POSTGRES__CREDENTIALS__PASSWORD"
            )));
        }
        if config.get_hosts().is_empty() {
            return Err(Error::Config(format!(
                "postgres credentials missing: set {} (a postgresql:// connection string) or its fields, or {}",
                ctx.config.tried_env_names(&["destination", NAME], &["credentials"])[..].join(", "),
                Config::secrets_section(&["destination", NAME], &["credentials"])
            )));
        }
        let p = Postgres::from_config(config)?;
        let mode = mode.unwrap_or_else(|| p.ssl_mode.clone());
        Ok(Arc::new(p.with_tls(mode, root)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_credentials() {
        let mut c = Column::new("t", DataType::Timestamp);
        assert_eq!(column_type(&c), "timestamp with time zone");
        c.timezone = Some(false);
        c.precision = Some(3);
        assert_eq!(column_type(&c), "timestamp (3) without time zone");
        assert_eq!(column_type(&Column::new("j", DataType::Json)), "jsonb");
        let p = Postgres::from_url("postgresql://loader:s3cret@127.0.0.1:5432/test").unwrap();
        assert_eq!(p.display_location(), "postgresql://loader:***@127.0.0.1:5432/test");
        assert!(!format!("{p:?}").contains("s3cret"));
        let err = Postgres::from_url("postgresql://u:s3cret@h/db?sslmode=sometimes").unwrap_err().to_string();
        assert!(err.contains("sslmode") && !err.contains("s3cret"), "{err}");
    }
}
