//! The Postgres connection that the Postgres destination and the sql_database source share, so
//! that neither connector depends on the other: TLS as libpq's `sslmode` / `sslrootcert` name it
//! ([`tls`]), the sqlx options ([`connect`]), and which errors a retry may fix ([`classify_sqlx`]).
#![warn(missing_docs)]

pub mod connect;
pub mod tls;

pub use connect::{ConnParams, classify_sqlx, connect, connect_options};

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

/// SQLSTATEs a retry may pass: class 08 (connection exceptions), 40001 (serialization
/// failure), 40P01 (deadlock), 57P03 (cannot connect now), 53300 (too many connections).
pub fn transient_sqlstate(s: &str) -> bool {
    s.starts_with("08") || s == "40001" || s == "40P01" || s == "57P03" || s == "53300"
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

    fn connect(host: &str, port: u16) -> sqlx::Error {
        let params = ConnParams {
            host: Some(host.into()),
            port: Some(port),
            user: Some("u".into()),
            dbname: Some("d".into()),
            ..Default::default()
        };
        let options = connect_options(&params, &tls::SslMode::Disable, None);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        match rt.block_on(sqlx::ConnectOptions::connect(&options)) {
            Ok(_) => panic!("connected to {host}:{port}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_refused_connection_is_transient_an_unknown_host_is_not() {
        let c = classify_sqlx(&connect("127.0.0.1", 1), "connecting");
        assert!(c.transient, "{c:?}");
        assert!(c.message.starts_with("connecting: "), "{c:?}");
        let c = classify_sqlx(&connect("no-such-host.invalid", 5432), "connecting");
        assert!(!c.transient, "{c:?}");
    }
}
