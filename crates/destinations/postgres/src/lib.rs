//! The Postgres destination on sqlx: a dataset is a schema; job files are loaded with binary
//! `COPY` from Arrow; a package's data, its state row and its `_dlt_loads` row commit in one
//! transaction. The load sequence is `dlt-sql`'s; this crate is a dialect, a connection and
//! the load step.
#![warn(missing_docs)]

mod copy;
mod pgvalue;
mod query;
pub use dlt_postgres_conn::tls;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use dlt_core::config::{Config, mask_url};
use dlt_core::destination::{Capabilities, Destination, DestinationClient, FileFormat, JobFile, ReplaceStrategy};
use dlt_core::error::{Error, Result};
use dlt_core::registry::{DestinationContext, DestinationFactory};
use dlt_core::resource::MergeStrategy;
use dlt_core::schema::{Column, DataType, Table};
use dlt_sql::{SqlConnection, SqlLoader, first_line};
use sqlx::AssertSqlSafe;

pub use copy::pg_kind;
pub use pgvalue::{PgKind, PgValue, write_numeric};

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
    fn literal(&self, s: &str) -> String {
        // an escape string when there are backslashes, so the value does not depend on the
        // server's standard_conforming_strings
        if s.contains('\\') {
            format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
        } else {
            dlt_sql::literal(s)
        }
    }
    fn begin(&self) -> &'static str {
        "BEGIN;"
    }
    fn set_search_path(&self, dataset: &str) -> String {
        format!("SET search_path TO {}, public;", quote(dataset))
    }
    fn lock_dataset(&self, dataset: &str) -> Option<String> {
        // concurrent pipelines may create and migrate the same dataset at once
        Some(format!("SELECT pg_advisory_xact_lock(hashtext({}));", self.literal(&format!("dlt:{dataset}"))))
    }
    fn create_staging_table(&self, staging: &str, table: &str, keep_constraints: bool) -> String {
        let including = if keep_constraints { " INCLUDING ALL" } else { "" };
        format!("DROP TABLE IF EXISTS {staging}; CREATE TABLE {staging} (LIKE {table}{including});")
    }
    fn swap_table(&self, staging: &str, table: &str, dataset: &str) -> Option<String> {
        Some(format!("DROP TABLE IF EXISTS {table}; ALTER TABLE {staging} SET SCHEMA {dataset};"))
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

/// The connection settings of a parsed client config (its first host and port).
fn conn_params(config: &postgres::Config) -> Result<dlt_postgres_conn::ConnParams> {
    let password = match config.get_password() {
        Some(p) => {
            Some(String::from_utf8(p.to_vec()).map_err(|_| Error::Config("postgres password is not UTF-8".into()))?)
        }
        None => None,
    };
    Ok(dlt_postgres_conn::ConnParams {
        host: config.get_hosts().first().map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        }),
        port: config.get_ports().first().copied(),
        user: config.get_user().map(str::to_string),
        password,
        dbname: config.get_dbname().map(str::to_string),
        application_name: config.get_application_name().map(str::to_string),
        options: config.get_options().map(str::to_string),
    })
}

/// A sqlx error as the destination's error, its cause kept, transient by SQLSTATE / I/O kind.
fn classify(e: sqlx::Error, what: &str) -> Error {
    let c = dlt_postgres_conn::classify_sqlx(&e, what);
    Error::driver(NAME, c.message, c.transient, e)
}

#[async_trait::async_trait]
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
    async fn client(&self, dataset_name: &str) -> Result<Box<dyn DestinationClient>> {
        let options = dlt_postgres_conn::connect_options(
            &conn_params(&self.config)?,
            &self.ssl_mode,
            self.ssl_root_cert.as_deref(),
        );
        let timeout = self.config.get_connect_timeout().copied().unwrap_or(Duration::from_secs(10));
        let conn = dlt_postgres_conn::connect(&options, timeout, &format!("cannot connect to {}", self.display))
            .await
            .map_err(|(c, e)| match e {
                Some(e) => Error::driver(NAME, c.message, c.transient, e),
                None => Error::Destination { destination: NAME.into(), message: c.message, transient: c.transient },
            })?;
        Ok(Box::new(
            SqlLoader::new(NAME, PgDialect, PgConnection { conn }, dataset_name)
                .with_transactions(self.caps.supports_transactions),
        ))
    }
}

/// A session on a Postgres database (one sqlx connection).
pub struct PgConnection {
    conn: sqlx::postgres::PgConnection,
}

#[async_trait::async_trait]
impl SqlConnection for PgConnection {
    async fn execute(&mut self, sql: &str) -> Result<()> {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut self.conn)
            .await
            .map_err(|e| classify(e, &format!("SQL failed: {}", first_line(sql))))?;
        Ok(())
    }

    async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        let rows = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| classify(e, &format!("query failed: {}", first_line(sql))))?;
        query::to_batch(&rows)
    }

    async fn load_job(&mut self, target: &str, table: &Table, job: &JobFile) -> Result<()> {
        if job.format != FileFormat::Parquet {
            return Err(Error::Destination {
                destination: NAME.into(),
                message: format!("job {} is {:?}; Postgres loads parquet job files", job.path.display(), job.format),
                transient: false,
            });
        }
        copy::copy_job(&mut self.conn, target, table, job).await
    }
}

/// Builds Postgres destinations from configuration, as dlt resolves them:
/// `DESTINATION__POSTGRES__CREDENTIALS` (a connection string) or its fields
/// (`…__CREDENTIALS__HOST`, `__PORT`, `__DATABASE`, `__USERNAME`, `__PASSWORD`), from the
/// environment, `.dlt/secrets.toml`, `.dlt/config.toml`, or the pipeline file's `[destination]`.
#[derive(Debug, Default)]
pub struct PostgresFactory;

impl DestinationFactory for PostgresFactory {
    fn init_template(&self) -> Option<dlt_core::registry::InitTemplate> {
        Some(dlt_core::registry::InitTemplate { secrets: include_str!("init/secrets.toml"), ..Default::default() })
    }
    fn name(&self) -> &'static str {
        NAME
    }
    fn build(&self, ctx: &DestinationContext<'_>) -> Result<Arc<dyn Destination>> {
        let field = |key: &str| ctx.credentials_field(NAME, key);
        let url = ctx.credentials_url(NAME);
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
