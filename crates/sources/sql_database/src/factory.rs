//! The `sql_database` source in pipeline files (`[source] type = "sql_database"`).
//!
//! Every setting is resolved as dlt resolves the source's arguments: environment
//! (`SOURCES__SQL_DATABASE__CREDENTIALS`, `SOURCES__SQL_DATABASE__SCHEMA`, …) over
//! `.dlt/secrets.toml` over `.dlt/config.toml` (`[sources.sql_database]`) over the pipeline
//! file's `[source]` table.
//!
//! ```toml
//! [source]
//! type = "sql_database"
//! credentials = "postgresql://loader@127.0.0.1:5432/shop"   # better: in secrets or env
//! schema = "public"
//! table_names = ["orders", "customers"]
//! chunk_size = 50000
//! reflection_level = "full"            # minimal | full | full_with_precision
//! write_disposition = "append"         # default of every table
//!
//! [source.tables.orders]
//! write_disposition = "merge"
//! primary_key = "id"
//! excluded_columns = ["internal_note"]
//! safe_watermark = "xact_start"       # Postgres: skip no rows of long transactions
//! # partitions = 4                     # read key ranges of one large table concurrently
//! [source.tables.orders.incremental]
//! cursor_path = "updated_at"
//! initial_value = "2024-01-01T00:00:00Z"
//! ```

use dlt_core::config::{Config, ConfigValue, Secret};
use dlt_core::error::{Error, Result};
use dlt_core::registry::{SourceContext, SourceFactory};
use dlt_core::resource::{Source, WriteDispositionConfig};

use crate::credentials::{Credentials, Dialect};
use crate::types::ReflectionLevel;
use crate::{Backend, SqlDatabase, TableOptions};

const SECTIONS: [&str; 2] = ["sources", "sql_database"];
const KEYS: [&str; 12] = [
    "type",
    "name",
    "credentials",
    "schema",
    "table_names",
    "chunk_size",
    "reflection_level",
    "include_views",
    "backend",
    "parallelism",
    "write_disposition",
    "tables",
];

/// Registers the `sql_database` source for pipeline files.
#[derive(Debug, Default)]
pub struct SqlDatabaseFactory;

fn toml_str(v: &toml::Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

/// A setting: config providers first, then the `[source]` table.
fn setting(cfg: &Config, table: &toml::Table, key: &str) -> Option<ConfigValue> {
    cfg.get(&SECTIONS, key).or_else(|| table.get(key).cloned().map(ConfigValue::Toml))
}

fn list(v: ConfigValue) -> Result<Vec<String>> {
    match v {
        ConfigValue::Toml(toml::Value::Array(a)) => Ok(a.iter().map(toml_str).collect()),
        other => {
            let s = other.as_string();
            let s = s.trim();
            if s.starts_with('[') {
                serde_json::from_str(s).map_err(|e| Error::Config(format!("sql_database: table_names `{s}`: {e}")))
            } else {
                Ok(s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect())
            }
        }
    }
}

/// Credentials from a URL or dlt's fields, in any provider, fields overriding the URL's parts.
pub(crate) fn resolve_credentials(cfg: &Config, explicit: Option<&toml::Value>) -> Result<Credentials> {
    let whole = cfg.resolve(&SECTIONS, &["credentials"]).map(|(v, _)| v);
    let url = match (&whole, explicit) {
        (Some(ConfigValue::Str(s)), _) | (Some(ConfigValue::Toml(toml::Value::String(s))), _) => Some(s.clone()),
        (None, Some(toml::Value::String(s))) => Some(s.clone()),
        _ => None,
    };
    let table = match (&whole, explicit) {
        (Some(ConfigValue::Toml(toml::Value::Table(t))), _) => Some(t.clone()),
        (None, Some(toml::Value::Table(t))) => Some(t.clone()),
        _ => None,
    };
    let field = |key: &str| -> Option<String> {
        cfg.resolve(&SECTIONS, &["credentials", key])
            .map(|(v, _)| v.as_string())
            .or_else(|| table.as_ref().and_then(|t| t.get(key)).map(toml_str))
    };
    let mut c = match (url, field("drivername")) {
        (Some(u), _) => Credentials::parse(&u)?,
        (None, Some(d)) => {
            let dialect = Dialect::from_driver(&d).ok_or_else(|| {
                Error::Config(format!(
                    "sql_database: unsupported drivername `{d}` (postgresql, mysql, mariadb, sqlite)"
                ))
            })?;
            let mut c = Credentials::new(dialect);
            c.drivername = d;
            c
        }
        (None, None) => {
            return Err(Error::Config(format!(
                "sql_database credentials missing: set {} (a connection URL such as postgresql://user:password@host:5432/db) or its fields (drivername, host, port, username, password, database), or {}",
                cfg.tried_env_names(&SECTIONS, &["credentials"]).join(", "),
                Config::secrets_section(&SECTIONS, &["credentials"])
            )));
        }
    };
    if let Some(h) = field("host") {
        c.host = Some(h);
    }
    if let Some(p) = field("port") {
        c.port = Some(p.parse().map_err(|_| Error::Config(format!("sql_database: port `{p}` is not a number")))?);
    }
    if let Some(u) = field("username") {
        c.username = Some(u);
    }
    if let Some(p) = field("password") {
        c.password = Some(Secret::new(p));
    }
    if let Some(d) = field("database") {
        c.database = Some(d);
    }
    if let Some(toml::Value::Table(q)) = table.as_ref().and_then(|t| t.get("query")) {
        for (k, v) in q {
            set_option(&mut c, k, &toml_str(v))?;
        }
    }
    // TLS settings given as credential fields (env, secrets.toml, the pipeline file) go where a
    // URL's query puts them, so every form is enforced the same way
    for key in TLS_FIELDS {
        if let Some(v) = field(key) {
            set_option(&mut c, key, v.trim())?;
        }
    }
    Ok(c)
}

/// Credential fields that set TLS (libpq's names and MySQL's).
const TLS_FIELDS: [&str; 4] = ["sslmode", "sslrootcert", "ssl_mode", "ssl_ca"];

/// Set a connection option; one already set to another value (say by the URL) is an error, so
/// a weaker TLS setting never wins silently.
fn set_option(c: &mut Credentials, key: &str, value: &str) -> Result<()> {
    match c.query.iter().find(|(k, _)| k == key) {
        Some((_, v)) if v != value => Err(Error::Config(format!(
            "sql_database credentials: `{key}` is `{v}` in the connection URL but `{value}` in the `{key}` field; set one \
             of them"
        ))),
        Some(_) => Ok(()),
        None => {
            c.query.push((key.to_string(), value.to_string()));
            Ok(())
        }
    }
}

impl SqlDatabaseFactory {
    /// The configured source without reflecting (reflection connects to the database).
    pub fn configure(&self, config: &toml::Table, ctx: &SourceContext<'_>) -> Result<SqlDatabase> {
        for k in config.keys() {
            if !KEYS.contains(&k.as_str()) {
                return Err(Error::Config(format!(
                    "[source]: unknown key `{k}` for the sql_database source (known: {})",
                    KEYS.join(", ")
                )));
            }
        }
        let creds = resolve_credentials(ctx.config, config.get("credentials"))?;
        let mut db = SqlDatabase::new(creds).base_dir(ctx.base_dir);
        if let Some(n) = config.get("name").and_then(|v| v.as_str()) {
            db = db.name(n);
        }
        if let Some(s) = setting(ctx.config, config, "schema") {
            db = db.schema(s.as_string());
        }
        if let Some(v) = setting(ctx.config, config, "table_names") {
            db = db.table_names(list(v)?);
        }
        if let Some(v) = setting(ctx.config, config, "chunk_size") {
            let n = v.as_i64().filter(|n| *n > 0).ok_or_else(|| {
                Error::Config(format!("sql_database: chunk_size `{}` is not a positive number", v.as_string()))
            })?;
            db = db.chunk_size(n as usize);
        }
        if let Some(v) = setting(ctx.config, config, "reflection_level") {
            let s = v.as_string();
            db = db.reflection_level(ReflectionLevel::parse(&s).ok_or_else(|| {
                Error::Config(format!(
                    "sql_database: reflection_level `{s}` is not minimal, full or full_with_precision"
                ))
            })?);
        }
        if let Some(v) = setting(ctx.config, config, "include_views") {
            db = db.include_views(v.as_bool().ok_or_else(|| {
                Error::Config(format!("sql_database: include_views `{}` is not true or false", v.as_string()))
            })?);
        }
        if let Some(v) = setting(ctx.config, config, "backend") {
            let s = v.as_string();
            db = db.backend(Backend::parse(&s).ok_or_else(|| {
                Error::Config(format!(
                    "sql_database: backend `{s}` is not arrow (pyarrow, connectorx) or rows (sqlalchemy)"
                ))
            })?);
        }
        if let Some(v) = setting(ctx.config, config, "parallelism") {
            let n = v.as_i64().filter(|n| *n > 0).ok_or_else(|| {
                Error::Config(format!("sql_database: parallelism `{}` is not a positive number", v.as_string()))
            })?;
            db = db.parallelism(n as usize);
        }
        if let Some(v) = config.get("write_disposition") {
            let wd: WriteDispositionConfig = serde_json::from_value(serde_json::to_value(v)?)
                .map_err(|e| Error::Config(format!("sql_database: write_disposition: {e}")))?;
            db = db.write_disposition(wd);
        }
        if let Some(t) = config.get("tables") {
            let t = t.as_table().ok_or_else(|| Error::Config("[source.tables] must be a table of tables".into()))?;
            for (name, v) in t {
                let opts: TableOptions = serde_json::from_value(serde_json::to_value(v)?)
                    .map_err(|e| Error::Config(format!("[source.tables.{name}]: {e}")))?;
                db = db.table(name.clone(), opts);
            }
        }
        Ok(db)
    }
}

impl SourceFactory for SqlDatabaseFactory {
    fn init_template(&self) -> Option<dlt_core::registry::InitTemplate> {
        Some(dlt_core::registry::InitTemplate {
            pipeline: include_str!("init/pipeline.toml"),
            secrets: include_str!("init/secrets.toml"),
            ..Default::default()
        })
    }
    fn name(&self) -> &'static str {
        "sql_database"
    }

    fn build(&self, config: &toml::Table, ctx: &SourceContext<'_>) -> Result<Source> {
        self.configure(config, ctx)?.into_source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_fields_join_the_url_and_conflicts_are_errors() {
        let env = |pairs: &[(&str, &str)]| {
            Config::from_parts(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), None, None)
        };
        let cfg = env(&[
            ("SOURCES__SQL_DATABASE__CREDENTIALS", "postgresql://u:hunter2@h/db"),
            ("SOURCES__SQL_DATABASE__CREDENTIALS__SSLMODE", "verify-full"),
            ("SOURCES__SQL_DATABASE__CREDENTIALS__SSLROOTCERT", "/etc/ca.pem"),
        ]);
        let c = resolve_credentials(&cfg, None).unwrap();
        assert_eq!(c.option("sslmode"), Some("verify-full"));
        assert_eq!(c.option("sslrootcert"), Some("/etc/ca.pem"));
        // the client URL keeps the mode readable (it was sent as `verify%2Dfull`)
        assert!(c.url().contains("sslmode=verify-full"), "{}", c.display());
        let (_, mode, root) = dlt_postgres_conn::tls::split_tls_options(&c.url()).unwrap();
        assert_eq!(mode, dlt_postgres_conn::tls::SslMode::VerifyFull);
        assert_eq!(root.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        let cfg = env(&[
            ("SOURCES__SQL_DATABASE__CREDENTIALS", "postgresql://u:hunter2@h/db?sslmode=disable"),
            ("SOURCES__SQL_DATABASE__CREDENTIALS__SSLMODE", "require"),
        ]);
        let err = resolve_credentials(&cfg, None).unwrap_err().to_string();
        assert!(err.contains("disable") && err.contains("require") && !err.contains("hunter2"), "{err}");
        let cfg = env(&[
            ("SOURCES__SQL_DATABASE__CREDENTIALS", "mysql://u@h/db"),
            ("SOURCES__SQL_DATABASE__CREDENTIALS__SSL_MODE", "VERIFY_IDENTITY"),
        ]);
        assert_eq!(resolve_credentials(&cfg, None).unwrap().option("ssl_mode"), Some("VERIFY_IDENTITY"));
    }

    #[test]
    fn credentials_from_providers() {
        let secrets: toml::Table = "[sources.sql_database.credentials]\ndrivername = \"postgresql\"\nhost = \"db\"\nport = 6543\nusername = \"u\"\npassword = \"hunter2\"\ndatabase = \"shop\"\n"
            .parse()
            .unwrap();
        let cfg = Config::from_parts(vec![], Some(secrets), None);
        let c = resolve_credentials(&cfg, None).unwrap();
        assert_eq!(
            (c.dialect, c.port, c.password.as_ref().unwrap().expose()),
            (Dialect::Postgres, Some(6543), "hunter2")
        );
        assert!(!format!("{c:?}").contains("hunter2"));
        // an env URL wins over the pipeline file; a password field overrides the URL's
        let cfg = Config::from_parts(
            vec![
                ("SOURCES__SQL_DATABASE__CREDENTIALS".into(), "mysql://root@127.0.0.1:3306/test".into()),
                ("SOURCES__SQL_DATABASE__CREDENTIALS__PASSWORD".into(), "pw".into()),
            ],
            None,
            None,
        );
        let c = resolve_credentials(&cfg, Some(&toml::Value::String("sqlite:///x.db".into()))).unwrap();
        assert_eq!((c.dialect, c.password.unwrap().expose()), (Dialect::Mysql, "pw"));
        let err = resolve_credentials(&Config::from_parts(vec![], None, None), None).unwrap_err().to_string();
        assert!(err.contains("SOURCES__SQL_DATABASE__CREDENTIALS"), "{err}");
    }

    #[test]
    fn unknown_keys_and_values() {
        let cfg = Config::from_parts(vec![], None, None);
        let ctx = SourceContext { pipeline_name: "p", config: &cfg, base_dir: std::path::Path::new(".") };
        let t: toml::Table =
            "type = \"sql_database\"\ncredentials = \"sqlite:///x.db\"\ntable = \"x\"\n".parse().unwrap();
        assert!(SqlDatabaseFactory.configure(&t, &ctx).unwrap_err().to_string().contains("unknown key `table`"));
        let t: toml::Table =
            "type = \"sql_database\"\ncredentials = \"sqlite:///x.db\"\nreflection_level = \"most\"\n".parse().unwrap();
        assert!(SqlDatabaseFactory.configure(&t, &ctx).unwrap_err().to_string().contains("reflection_level"));
        let t: toml::Table = "type = \"sql_database\"\ncredentials = \"sqlite:///x.db\"\ntable_names = [\"a\", \"b\"]\nchunk_size = 10\n[tables.a]\nprimary_key = \"id\"\nexcluded_columns = [\"x\"]\n[tables.a.incremental]\ncursor_path = \"id\"\n"
            .parse()
            .unwrap();
        let db = SqlDatabaseFactory.configure(&t, &ctx).unwrap();
        assert_eq!(db.table_names.as_deref(), Some(&["a".to_string(), "b".to_string()][..]));
        assert_eq!(db.chunk_size, 10);
        assert_eq!(db.tables["a"].incremental.as_ref().unwrap().cursor_path, "id");
        let t: toml::Table = "type = \"sql_database\"\ncredentials = \"postgresql://u@h/db\"\n[tables.a]\npartitions = 4\npartition_column = \"k\"\nsafe_watermark = \"xact_start\"\nsafe_watermark_fallback_lag = 600\n[tables.a.incremental]\ncursor_path = \"updated_at\"\n"
            .parse()
            .unwrap();
        let a = &SqlDatabaseFactory.configure(&t, &ctx).unwrap().tables["a"];
        assert_eq!((a.partitions, a.partition_column.as_deref()), (Some(4), Some("k")));
        assert_eq!(
            (a.safe_watermark, a.safe_watermark_fallback_lag),
            (Some(crate::SafeWatermark::XactStart), Some(600.0))
        );
        let t: toml::Table =
            "type = \"sql_database\"\ncredentials = \"sqlite:///x.db\"\n[tables.a]\nsafe_watermark = \"clock\"\n"
                .parse()
                .unwrap();
        assert!(SqlDatabaseFactory.configure(&t, &ctx).unwrap_err().to_string().contains("xact_start"));
        let t: toml::Table =
            "type = \"sql_database\"\ncredentials = \"sqlite:///x.db\"\n[tables.a]\nbogus = 1\n".parse().unwrap();
        assert!(SqlDatabaseFactory.configure(&t, &ctx).unwrap_err().to_string().contains("bogus"));
    }
}
