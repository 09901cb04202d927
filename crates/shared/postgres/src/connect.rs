//! Connecting with sqlx, the design's Postgres driver: libpq-style settings (a parsed
//! connection string or its fields) and a TLS mode into sqlx's options, and sqlx's errors into
//! [`Classified`] by SQLSTATE and I/O kind.

use std::path::Path;
use std::time::Duration;

use dlt_core::error::{Error, Result};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};

use crate::Classified;
use crate::tls::SslMode;

/// sqlx options from a parsed connection string (host, port, user, password, database,
/// application name, `-c` options) and the TLS mode. Statement logging is off: dlt-rs logs
/// its SQL itself (target `dlt::sql`).
pub fn connect_options(config: &postgres::Config, mode: &SslMode, root: Option<&Path>) -> Result<PgConnectOptions> {
    let mut o = PgConnectOptions::new_without_pgpass();
    match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => o = o.host(h),
        Some(postgres::config::Host::Unix(p)) => o = o.socket(p),
        None => {}
    }
    if let Some(p) = config.get_ports().first() {
        o = o.port(*p);
    }
    if let Some(u) = config.get_user() {
        o = o.username(u);
    }
    if let Some(p) = config.get_password() {
        let p = std::str::from_utf8(p).map_err(|_| Error::Config("postgres password is not UTF-8".into()))?;
        o = o.password(p);
    }
    if let Some(d) = config.get_dbname() {
        o = o.database(d);
    }
    if let Some(a) = config.get_application_name() {
        o = o.application_name(a);
    }
    if let Some(opts) = config.get_options() {
        // libpq's `options`: `-c key=value` pairs
        let pairs: Vec<(String, String)> = opts
            .split_whitespace()
            .filter(|s| *s != "-c")
            .map(|s| s.trim_start_matches("-c"))
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        o = o.options(pairs);
    }
    o = o.ssl_mode(match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require => PgSslMode::Require,
        SslMode::VerifyCa => PgSslMode::VerifyCa,
        SslMode::VerifyFull => PgSslMode::VerifyFull,
    });
    if let Some(r) = root {
        o = o.ssl_root_cert(r);
    }
    Ok(o.disable_statement_logging())
}

/// Connect within `timeout` (a connection that takes longer is a transient error).
pub async fn connect(
    options: &PgConnectOptions,
    timeout: Duration,
    what: &str,
) -> std::result::Result<PgConnection, (Classified, Option<sqlx::Error>)> {
    match tokio::time::timeout(timeout, options.connect()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err((classify_sqlx(&e, what), Some(e))),
        Err(_) => Err((
            Classified { message: format!("{what}: no connection within {}s", timeout.as_secs()), transient: true },
            None,
        )),
    }
}

/// Classify a sqlx error raised while doing `what`, from its SQLSTATE or I/O kind: the same
/// classes as [`crate::classify`].
pub fn classify_sqlx(e: &sqlx::Error, what: &str) -> Classified {
    let transient = match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|c| crate::transient_sqlstate(&c)),
        sqlx::Error::Io(io) => crate::retryable_io(io.kind()),
        sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        _ => false,
    } && !dlt_core::error::is_certificate_failure(e);
    let message = match e {
        sqlx::Error::Database(db) => {
            format!("{what}: {} ({})", db.message(), db.code().unwrap_or_default())
        }
        _ => {
            let mut m = format!("{what}: {e}");
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                let t = s.to_string();
                if !m.contains(&t) {
                    m.push_str(&format!(": {t}"));
                }
                src = s.source();
            }
            m
        }
    };
    Classified { message, transient }
}
