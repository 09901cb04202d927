//! The Postgres connection that the Postgres destination and the sql_database source share, so
//! that neither connector depends on the other: TLS as libpq's `sslmode` / `sslrootcert` name it
//! ([`tls`]), and which errors a retry may fix ([`classify`]).
#![warn(missing_docs)]

pub mod tls;

/// A Postgres error as one line (the server's message and SQLSTATE, or the cause chain), and
/// whether a retry may pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// `what: message (SQLSTATE)` or `what: error: cause: …`.
    pub message: String,
    /// A lost or refused connection, a serialization failure or deadlock, a server starting
    /// up or out of connections; never a refused certificate.
    pub transient: bool,
}

/// Classify `e`, raised while doing `what`. Transient: SQLSTATE class 08 (connection
/// exceptions), 40001 (serialization failure), 40P01 (deadlock), 57P03 (cannot connect now),
/// 53300 (too many connections), and connection errors without a server message; a TLS
/// certificate the client refused is terminal.
pub fn classify(e: &postgres::Error, what: &str) -> Classified {
    let transient = (e.is_closed()
        || e.as_db_error().is_none() && e.to_string().contains("connect")
        || e.code().is_some_and(|c| {
            let s = c.code();
            s.starts_with("08") || s == "40001" || s == "40P01" || s == "57P03" || s == "53300"
        }))
        && !dlt_core::error::is_certificate_failure(e);
    let message = match e.as_db_error() {
        Some(db) => format!("{what}: {} ({})", db.message(), db.code().code()),
        None => {
            let mut m = format!("{what}: {e}");
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                m.push_str(&format!(": {s}"));
                src = s.source();
            }
            m
        }
    };
    Classified { message, transient }
}
