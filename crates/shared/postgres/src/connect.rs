//! Connecting with sqlx, the design's Postgres driver: libpq-style settings ([`ConnParams`])
//! and a TLS mode into sqlx's options, and sqlx's errors into
//! [`Classified`] by SQLSTATE and I/O kind.

use std::path::Path;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};

use crate::Classified;
use crate::tls::SslMode;

/// Where and as whom to connect, as libpq names the settings (a parsed connection string or
/// its fields): the part of a connection that is not TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnParams {
    /// Host name or address, or the directory of a Unix socket (a path starting with `/`).
    pub host: Option<String>,
    /// Port (also the socket's suffix).
    pub port: Option<u16>,
    /// User name.
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Database name.
    pub dbname: Option<String>,
    /// `application_name`.
    pub application_name: Option<String>,
    /// libpq's `options`: `-c key=value` settings for the session.
    pub options: Option<String>,
}

/// sqlx options from the connection settings and the TLS mode. Statement logging is off:
/// dlt-rs logs its SQL itself (target `dlt::sql`).
pub fn connect_options(params: &ConnParams, mode: &SslMode, root: Option<&Path>) -> PgConnectOptions {
    let mut o = PgConnectOptions::new_without_pgpass();
    match params.host.as_deref() {
        Some(h) if h.starts_with('/') => o = o.socket(h),
        Some(h) => o = o.host(h),
        None => {}
    }
    if let Some(p) = params.port {
        o = o.port(p);
    }
    if let Some(u) = &params.user {
        o = o.username(u);
    }
    if let Some(p) = &params.password {
        o = o.password(p);
    }
    if let Some(d) = &params.dbname {
        o = o.database(d);
    }
    if let Some(a) = &params.application_name {
        o = o.application_name(a);
    }
    if let Some(opts) = &params.options {
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
    o.disable_statement_logging()
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

/// Classify a sqlx error raised while doing `what`, from the driver's own facts, not its wording.
/// Transient: SQLSTATE class 08 (connection exceptions), 40001 (serialization failure), 40P01
/// (deadlock), 57P03 (cannot connect now), 53300 (too many connections); and socket errors a
/// later attempt can pass (refused, reset, aborted, timed out, unreachable). Terminal:
/// everything else, among it a host name that does not resolve and a TLS certificate the
/// client refused.
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
        _ => dlt_core::error::with_causes(what, e),
    };
    Classified { message, transient }
}
