//! libpq's TLS settings for Postgres connections, which sqlx applies with rustls: `sslmode`
//! `disable` (plain), `prefer` (TLS when the server offers it, the default) and `require` (TLS,
//! certificate not checked — as libpq), `verify-ca` (chain checked) and `verify-full` (chain and
//! host name checked) against the webpki roots plus `sslrootcert` (a PEM file).

use std::path::PathBuf;

use dlt_core::error::{Error, Result};

/// How to secure the connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain connection.
    Disable,
    /// TLS if the server offers it, unchecked certificate.
    #[default]
    Prefer,
    /// TLS, unchecked certificate.
    Require,
    /// TLS, certificate chain checked.
    VerifyCa,
    /// TLS, certificate chain and host name checked.
    VerifyFull,
}

/// libpq's name of a mode.
pub fn mode_name(m: &SslMode) -> &'static str {
    match m {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}

/// A libpq `sslmode` value (`allow` is taken as `disable`, as it connects in plain text first).
pub fn parse_mode(v: &str) -> Result<SslMode> {
    Ok(match v {
        "disable" | "allow" => SslMode::Disable,
        "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        other => {
            return Err(Error::Config(format!(
                "postgres: unknown sslmode `{other}` (disable, allow, prefer, require, verify-ca, verify-full)"
            )));
        }
    })
}

/// Split libpq TLS options off a connection string: returns the string for the client (with
/// `sslmode` reduced to what it understands), the mode and `sslrootcert`.
pub fn split_tls_options(url: &str) -> Result<(String, SslMode, Option<PathBuf>)> {
    let mut mode = SslMode::default();
    let mut root = None;
    let Some(q) = url.find('?') else { return Ok((url.to_string(), mode, root)) };
    let (base, query) = (&url[..q], &url[q + 1..]);
    let mut keep = vec![];
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "sslmode" => {
                mode = parse_mode(v)?;
                let client_mode = match mode {
                    SslMode::Disable => "disable",
                    SslMode::Prefer => "prefer",
                    _ => "require",
                };
                keep.push(format!("sslmode={client_mode}"));
            }
            "sslrootcert" => root = Some(PathBuf::from(v)),
            _ => keep.push(kv.to_string()),
        }
    }
    let url = if keep.is_empty() { base.to_string() } else { format!("{base}?{}", keep.join("&")) };
    Ok((url, mode, root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let (u, m, r) =
            split_tls_options("postgresql://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x")
                .unwrap();
        assert_eq!(u, "postgresql://u@h/db?sslmode=require&application_name=x");
        assert_eq!(m, SslMode::VerifyFull);
        assert_eq!(r, Some(PathBuf::from("/ca.pem")));
        assert_eq!(split_tls_options("postgresql://u@h/db").unwrap().1, SslMode::Prefer);
        assert!(split_tls_options("postgresql://u@h/db?sslmode=bogus").is_err());
    }
}
