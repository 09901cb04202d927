//! The Postgres connection that the Postgres destination and the sql_database source share, so
//! that neither connector depends on the other: TLS as libpq's `sslmode` / `sslrootcert` name it
//! ([`tls`]), and which errors a retry may fix ([`classify`]).
#![warn(missing_docs)]

pub mod connect;
pub mod tls;

pub use connect::{classify_sqlx, connect, connect_options};

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

/// Classify `e`, raised while doing `what`, from the driver's own facts, not its wording.
/// Transient: a closed connection; SQLSTATE class 08 (connection exceptions), 40001
/// (serialization failure), 40P01 (deadlock), 57P03 (cannot connect now), 53300 (too many
/// connections); and socket errors a later attempt can pass (refused, reset, aborted, timed
/// out, unreachable). Terminal: everything else, among it a host name that does not resolve
/// and a TLS certificate the client refused.
pub fn classify(e: &postgres::Error, what: &str) -> Classified {
    let sqlstate = e.code().is_some_and(|c| transient_sqlstate(c.code()));
    let transient = (e.is_closed() || sqlstate || io_kind(e).is_some_and(retryable_io))
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

/// SQLSTATEs a retry may pass: class 08 (connection exceptions), 40001 (serialization
/// failure), 40P01 (deadlock), 57P03 (cannot connect now), 53300 (too many connections).
pub fn transient_sqlstate(s: &str) -> bool {
    s.starts_with("08") || s == "40001" || s == "40P01" || s == "57P03" || s == "53300"
}

/// The kind of the first I/O error in the cause chain.
fn io_kind(e: &postgres::Error) -> Option<std::io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = c.source();
    }
    None
}

pub(crate) fn retryable_io(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | TimedOut
            | BrokenPipe
            | UnexpectedEof
            | Interrupted
            | WouldBlock
            | AddrNotAvailable
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(conn: &str) -> postgres::Error {
        match postgres::Client::connect(conn, postgres::NoTls) {
            Ok(_) => panic!("connected to {conn}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_refused_connection_is_transient_an_unknown_host_is_not() {
        let c = classify(&connect("host=127.0.0.1 port=1 user=u dbname=d connect_timeout=5"), "connecting");
        assert!(c.transient, "{c:?}");
        assert!(c.message.starts_with("connecting: "), "{c:?}");
        let c =
            classify(&connect("host=no-such-host.invalid port=5432 user=u dbname=d connect_timeout=5"), "connecting");
        assert!(!c.transient, "{c:?}");
    }
}
