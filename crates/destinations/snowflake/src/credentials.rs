//! Snowflake credentials as dlt names them: a URL
//! `snowflake://user:password@account/database?warehouse=…&role=…` or the fields `database`,
//! `username`, `password`, `host` (the account identifier), `warehouse`, `role`,
//! `authenticator`, `token`, `private_key` (PEM), `private_key_passphrase`. Other query
//! parameters are connection settings, as dlt hands them to the Python connector; `host`,
//! `port` and `protocol` there point the client at another endpoint than
//! `https://<account>.snowflakecomputing.com` (a proxy, a private link, or a test server).
//!
//! Secrets (`password`, `token`, `private_key`, `private_key_passphrase`) are [`Secret`]s:
//! `Debug` and [`Credentials::display`] never show them.

use dlt_core::config::Secret;
use dlt_core::error::{Error, Result};
use percent_encoding::percent_decode_str;

/// How the client proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authenticator {
    /// User name and password (`authenticator` unset or `snowflake`).
    Password(Secret),
    /// Key-pair authentication: a JWT signed with the user's RSA key (`SNOWFLAKE_JWT`).
    KeyPair {
        /// The PEM private key (PKCS#8, possibly encrypted).
        private_key: Secret,
        /// Its passphrase, when encrypted.
        passphrase: Option<Secret>,
    },
    /// An OAuth access token (`authenticator = "oauth"`, `token`).
    OAuth(Secret),
}

/// Where and as whom to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The account identifier (`orgname-account` or a locator such as `xy12345.eu-central-1`).
    pub account: String,
    /// The login name.
    pub username: String,
    /// How to authenticate.
    pub authenticator: Authenticator,
    /// The database the dataset (a schema) lives in.
    pub database: String,
    /// The warehouse that runs the statements (the user's default when unset).
    pub warehouse: Option<String>,
    /// The role (the user's default when unset).
    pub role: Option<String>,
    /// The endpoint's host (default `<account>.snowflakecomputing.com`).
    pub host: Option<String>,
    /// The endpoint's port (default 443, or 80 over `http`).
    pub port: Option<u16>,
    /// `https` (default) or `http` (test servers only).
    pub protocol: String,
    /// Further query parameters, kept for the session (`application`, `timezone`, …).
    pub options: Vec<(String, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("url", &self.display()).finish_non_exhaustive()
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The fields of a `[destination.snowflake.credentials]` table or of the environment.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    /// `database`.
    pub database: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `password`.
    pub password: Option<Secret>,
    /// `host`: the account identifier.
    pub host: Option<String>,
    /// `warehouse`.
    pub warehouse: Option<String>,
    /// `role`.
    pub role: Option<String>,
    /// `authenticator`: `snowflake` (password), `snowflake_jwt` (key pair), `oauth`.
    pub authenticator: Option<String>,
    /// `token` (OAuth).
    pub token: Option<Secret>,
    /// `private_key` (PEM).
    pub private_key: Option<Secret>,
    /// `private_key_passphrase`.
    pub private_key_passphrase: Option<Secret>,
}

impl Credentials {
    /// Parse a `snowflake://` URL. Errors never contain a secret.
    pub fn parse(url: &str) -> Result<Credentials> {
        let shown = mask_url(url);
        let bad = |why: &str| Error::Config(format!("snowflake credentials {shown}: {why}"));
        let rest = url
            .trim()
            .strip_prefix("snowflake://")
            .ok_or_else(|| bad("expected snowflake://user:password@account/database?warehouse=…&role=…"))?;
        let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (auth, hostpath) = main.rsplit_once('@').ok_or_else(|| bad("no user (`user:password@account`)"))?;
        let (user, password) = match auth.split_once(':') {
            Some((u, p)) => (decode(u), Some(Secret::new(decode(p)))),
            None => (decode(auth), None),
        };
        let (account, database) = hostpath.split_once('/').unwrap_or((hostpath, ""));
        let mut f = Fields {
            username: Some(user),
            password,
            host: Some(decode(account)),
            database: (!database.is_empty()).then(|| decode(database.trim_end_matches('/'))),
            ..Default::default()
        };
        let mut options = vec![];
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let (k, v) = (decode(k), decode(v));
            match k.as_str() {
                "warehouse" => f.warehouse = Some(v),
                "role" => f.role = Some(v),
                "authenticator" => f.authenticator = Some(v),
                "token" => f.token = Some(Secret::new(v)),
                "private_key" => f.private_key = Some(Secret::new(v)),
                "private_key_passphrase" => f.private_key_passphrase = Some(Secret::new(v)),
                "database" => f.database = Some(v),
                _ => options.push((k, v)),
            }
        }
        Credentials::from_fields(f, options)
    }

    /// From the fields (and further connection settings).
    pub fn from_fields(f: Fields, options: Vec<(String, String)>) -> Result<Credentials> {
        let missing = |what: &str| {
            Error::Config(format!(
                "snowflake credentials: `{what}` is missing (set it in the URL or as \
                 DESTINATION__SNOWFLAKE__CREDENTIALS__{})",
                what.to_ascii_uppercase()
            ))
        };
        let account = f.host.filter(|s| !s.is_empty()).ok_or_else(|| missing("host"))?;
        let username = f.username.filter(|s| !s.is_empty()).ok_or_else(|| missing("username"))?;
        let database = f.database.filter(|s| !s.is_empty()).ok_or_else(|| missing("database"))?;
        let authenticator = match f.authenticator.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("snowflake") => match (f.private_key, f.password) {
                (Some(k), _) => Authenticator::KeyPair { private_key: k, passphrase: f.private_key_passphrase },
                (None, Some(p)) => Authenticator::Password(p),
                (None, None) => return Err(missing("password")),
            },
            Some("snowflake_jwt") => Authenticator::KeyPair {
                private_key: f.private_key.ok_or_else(|| missing("private_key"))?,
                passphrase: f.private_key_passphrase,
            },
            Some("oauth") => Authenticator::OAuth(f.token.ok_or_else(|| missing("token"))?),
            Some(other) => {
                return Err(Error::Config(format!(
                    "snowflake credentials: authenticator `{other}` is not supported (snowflake, snowflake_jwt, oauth)"
                )));
            }
        };
        let mut c = Credentials {
            account,
            username,
            authenticator,
            database,
            warehouse: f.warehouse.filter(|s| !s.is_empty()),
            role: f.role.filter(|s| !s.is_empty()),
            host: None,
            port: None,
            protocol: "https".into(),
            options: vec![],
        };
        for (k, v) in options {
            match k.as_str() {
                "host" => c.host = Some(v),
                "port" => {
                    c.port = Some(v.parse().map_err(|_| {
                        Error::Config(format!("snowflake credentials: port `{v}` is not a port number"))
                    })?)
                }
                "protocol" => {
                    if v != "https" && v != "http" {
                        return Err(Error::Config(format!(
                            "snowflake credentials: protocol `{v}` (https, or http for a test server)"
                        )));
                    }
                    c.protocol = v;
                }
                _ => c.options.push((k, v)),
            }
        }
        Ok(c)
    }

    /// The base URL of the endpoint: `https://<account>.snowflakecomputing.com`, or what `host`,
    /// `port` and `protocol` say.
    pub fn base_url(&self) -> String {
        let host = self.host.clone().unwrap_or_else(|| format!("{}.snowflakecomputing.com", self.account));
        match self.port {
            Some(p) => format!("{}://{host}:{p}", self.protocol),
            None => format!("{}://{host}", self.protocol),
        }
    }

    /// The credentials as a URL without secrets (`***` for each one given).
    pub fn display(&self) -> String {
        let auth = match &self.authenticator {
            Authenticator::Password(_) => format!("{}:***", self.username),
            Authenticator::KeyPair { .. } => format!("{} (key pair)", self.username),
            Authenticator::OAuth(_) => format!("{} (oauth)", self.username),
        };
        let mut q = vec![];
        if let Some(w) = &self.warehouse {
            q.push(format!("warehouse={w}"));
        }
        if let Some(r) = &self.role {
            q.push(format!("role={r}"));
        }
        let q = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
        format!("snowflake://{auth}@{}/{}{q}", self.account, self.database)
    }
}

/// A URL as it may be shown: the password and secret query values replaced by `***`.
pub fn mask_url(url: &str) -> String {
    let (main, query) = url.split_once('?').unwrap_or((url, ""));
    let main = match (main.find("://"), main.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &main[s + 3..at];
            match userinfo.split_once(':') {
                Some((u, _)) => format!("{}{u}:***{}", &main[..s + 3], &main[at..]),
                None => main.to_string(),
            }
        }
        _ => main.to_string(),
    };
    if query.is_empty() {
        return main;
    }
    let q: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if ["password", "token", "private_key", "private_key_passphrase"].contains(&k) => {
                format!("{k}=***")
            }
            _ => kv.to_string(),
        })
        .collect();
    format!("{main}?{}", q.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dlt_url_parses_and_never_shows_its_secrets() {
        let c =
            Credentials::parse("snowflake://loader:p%40ss@kgiotue-wn98412/dlt_data?warehouse=COMPUTE_WH&role=LOADER")
                .unwrap();
        assert_eq!(
            (c.account.as_str(), c.username.as_str(), c.database.as_str()),
            ("kgiotue-wn98412", "loader", "dlt_data")
        );
        assert_eq!(c.authenticator, Authenticator::Password(Secret::new("p@ss")));
        assert_eq!((c.warehouse.as_deref(), c.role.as_deref()), (Some("COMPUTE_WH"), Some("LOADER")));
        assert_eq!(c.base_url(), "https://kgiotue-wn98412.snowflakecomputing.com");
        assert_eq!(c.display(), "snowflake://loader:***@kgiotue-wn98412/dlt_data?warehouse=COMPUTE_WH&role=LOADER");
        assert!(!format!("{c:?}").contains("p@ss"));
        // a test server's endpoint
        let c = Credentials::parse("snowflake://u:pw@acct/db?host=127.0.0.1&port=8123&protocol=http").unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:8123");
        // errors name what is missing and never the password
        let e = Credentials::parse("snowflake://u:hunter2@acct").unwrap_err().to_string();
        assert!(e.contains("`database`") && e.contains("DESTINATION__SNOWFLAKE__CREDENTIALS__DATABASE"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = Credentials::parse("postgres://u:hunter2@acct/db").unwrap_err().to_string();
        assert!(e.contains("u:***@acct") && !e.contains("hunter2"), "{e}");
        assert_eq!(mask_url("snowflake://u@a/d?token=abc&role=R"), "snowflake://u@a/d?token=***&role=R");
    }

    #[test]
    fn authenticators_follow_the_fields() {
        let f = |auth: Option<&str>| Fields {
            host: Some("a".into()),
            username: Some("u".into()),
            database: Some("d".into()),
            authenticator: auth.map(str::to_string),
            token: Some(Secret::new("t")),
            private_key: Some(Secret::new("-----BEGIN PRIVATE KEY-----")),
            ..Default::default()
        };
        assert!(matches!(
            Credentials::from_fields(f(None), vec![]).unwrap().authenticator,
            Authenticator::KeyPair { .. }
        ));
        assert!(matches!(
            Credentials::from_fields(f(Some("OAUTH")), vec![]).unwrap().authenticator,
            Authenticator::OAuth(_)
        ));
        let e = Credentials::from_fields(f(Some("externalbrowser")), vec![]).unwrap_err().to_string();
        assert!(e.contains("externalbrowser"), "{e}");
    }
}
