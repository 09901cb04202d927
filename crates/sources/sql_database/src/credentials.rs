//! Connection credentials: a SQLAlchemy-style URL (`postgresql://…`, `mysql://…`,
//! `mariadb://…`, `sqlite:///path`) or dlt's credential fields (`drivername`, `host`, `port`,
//! `username`, `password`, `database`, `query`). The password is a [`Secret`]: `Debug` and
//! [`Credentials::display`] mask it.

use std::path::{Path, PathBuf};

use dlt_core::config::Secret;
use dlt_core::error::{Error, Result};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The database family a connection speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL (read with binary `COPY`).
    Postgres,
    /// MySQL or MariaDB (text protocol).
    Mysql,
    /// SQLite (embedded).
    Sqlite,
}

impl Dialect {
    /// The dialect of a URL scheme or dlt `drivername` (`postgresql+psycopg2` → Postgres).
    pub fn from_driver(name: &str) -> Option<Dialect> {
        let base = name.split('+').next().unwrap_or(name).to_ascii_lowercase();
        Some(match base.as_str() {
            "postgresql" | "postgres" | "pgsql" => Dialect::Postgres,
            "mysql" | "mariadb" => Dialect::Mysql,
            "sqlite" => Dialect::Sqlite,
            _ => return None,
        })
    }

    /// Short name (`postgres`, `mysql`, `sqlite`).
    pub fn name(&self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }
}

/// Where and how to connect. Build with [`Credentials::parse`] or fill the fields.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Database family.
    pub dialect: Dialect,
    /// The scheme as written (`postgresql`, `mariadb`, `mysql+pymysql`, …).
    pub drivername: String,
    /// Host name or address.
    pub host: Option<String>,
    /// TCP port.
    pub port: Option<u16>,
    /// User name.
    pub username: Option<String>,
    /// Password (never shown).
    pub password: Option<Secret>,
    /// Database name; for SQLite the file path as written (relative paths resolve against the
    /// run directory), `None` or `:memory:` for an in-memory database.
    pub database: Option<String>,
    /// Extra options from the URL query (`sslmode`, `sslrootcert`, `ssl_mode`, …).
    pub query: Vec<(String, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("url", &self.display()).finish_non_exhaustive()
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// What URL parts escape: everything but RFC 3986's unreserved characters (`verify-full`,
/// `/path/ca.pem`'s dots stay readable for the clients that compare them as text).
const ESCAPED: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A query value may also hold `/` and `:` as they are (RFC 3986's query), so a file path in
/// `sslrootcert` reaches the client as written.
const ESCAPED_IN_QUERY: &percent_encoding::AsciiSet = &ESCAPED.remove(b'/').remove(b':');

fn encode_query_value(s: &str) -> String {
    utf8_percent_encode(s, ESCAPED_IN_QUERY).to_string()
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, ESCAPED).to_string()
}

fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.contains("key") || k.contains("token")
}

impl Credentials {
    /// Credentials of a dialect with nothing else set.
    pub fn new(dialect: Dialect) -> Credentials {
        Credentials {
            dialect,
            drivername: match dialect {
                Dialect::Postgres => "postgresql".into(),
                Dialect::Mysql => "mysql".into(),
                Dialect::Sqlite => "sqlite".into(),
            },
            host: None,
            port: None,
            username: None,
            password: None,
            database: None,
            query: vec![],
        }
    }

    /// Parse a connection URL. Errors never contain the password.
    ///
    /// SQLite follows SQLAlchemy: `sqlite:///rel/path.db` (three slashes) is relative,
    /// `sqlite:////abs/path.db` (four) absolute, `sqlite://` or `sqlite:///:memory:` in memory.
    pub fn parse(url: &str) -> Result<Credentials> {
        let url = url.trim();
        let masked = dlt_core::config::mask_url(url);
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            Error::Config("sql_database: the credentials are not a connection URL (scheme://…)".into())
        })?;
        let dialect = Dialect::from_driver(scheme).ok_or_else(|| {
            Error::Config(format!(
                "sql_database: unsupported database `{scheme}` in `{masked}` (postgresql, mysql, mariadb, sqlite)"
            ))
        })?;
        let mut c = Credentials::new(dialect);
        c.drivername = scheme.to_string();
        if dialect == Dialect::Sqlite {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            let path = path.strip_prefix('/').unwrap_or(path);
            c.database = if path.is_empty() { None } else { Some(decode(path)) };
            c.query = parse_query(query);
            return Ok(c);
        }
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::Config(format!("sql_database: invalid connection URL `{masked}`: {e}")))?;
        if !parsed.username().is_empty() {
            c.username = Some(decode(parsed.username()));
        }
        c.password = parsed.password().map(|p| Secret::new(decode(p)));
        c.host = parsed.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string());
        c.port = parsed.port();
        let db = parsed.path().trim_start_matches('/');
        if !db.is_empty() {
            c.database = Some(decode(db));
        }
        c.query = parsed.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        Ok(c)
    }

    /// The URL with the password (and secret-looking query values) masked, for messages: parts
    /// as written, not percent-encoded.
    pub fn display(&self) -> String {
        self.url_with(false)
    }

    /// The full URL, password included (the round-trip tests compare it).
    #[cfg(test)]
    pub(crate) fn url(&self) -> String {
        self.url_with(true)
    }

    fn url_with(&self, reveal: bool) -> String {
        let mut s = format!("{}://", self.drivername);
        if self.dialect == Dialect::Sqlite {
            if let Some(d) = &self.database {
                s.push('/');
                s.push_str(d);
            }
        } else {
            if let Some(u) = &self.username {
                s.push_str(&if reveal { encode(u) } else { u.clone() });
                if let Some(p) = &self.password {
                    s.push(':');
                    s.push_str(&if reveal { encode(p.expose()) } else { "***".to_string() });
                }
                s.push('@');
            }
            match &self.host {
                Some(h) if h.contains(':') => s.push_str(&format!("[{h}]")),
                Some(h) => s.push_str(h),
                None => s.push_str("localhost"),
            }
            if let Some(p) = self.port {
                s.push_str(&format!(":{p}"));
            }
            if let Some(d) = &self.database {
                s.push('/');
                s.push_str(&if reveal { encode(d) } else { d.clone() });
            }
        }
        if !self.query.is_empty() {
            let q: Vec<String> = self
                .query
                .iter()
                .map(|(k, v)| {
                    if !reveal {
                        // for people: as written, secrets masked
                        return format!("{k}={}", if is_secret_key(k) { "***" } else { v });
                    }
                    format!("{}={}", encode(k), encode_query_value(v))
                })
                .collect();
            s.push('?');
            s.push_str(&q.join("&"));
        }
        s
    }

    /// A URL query option.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.query.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The SQLite file (`None` = in memory), relative paths resolved against `base`.
    pub fn sqlite_path(&self, base: &Path) -> Option<PathBuf> {
        match self.database.as_deref() {
            None | Some("") | Some(":memory:") => None,
            Some(p) => {
                let p = Path::new(p);
                Some(if p.is_absolute() { p.to_path_buf() } else { base.join(p) })
            }
        }
    }
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_masking() {
        let c =
            Credentials::parse("postgresql+psycopg2://loader:p%40ss%3Aw@db.example:5433/shop?sslmode=require").unwrap();
        assert_eq!(c.dialect, Dialect::Postgres);
        assert_eq!(c.username.as_deref(), Some("loader"));
        assert_eq!(c.password.as_ref().unwrap().expose(), "p@ss:w");
        assert_eq!(c.host.as_deref(), Some("db.example"));
        assert_eq!(c.port, Some(5433));
        assert_eq!(c.database.as_deref(), Some("shop"));
        assert_eq!(c.option("sslmode"), Some("require"));
        let shown = format!("{c:?} {}", c.display());
        assert!(!shown.contains("p@ss") && !shown.contains("p%40ss") && shown.contains("***"), "{shown}");
        assert!(c.url().contains("p%40ss%3Aw"));
        assert_eq!(Credentials::parse(&c.url()).unwrap(), c);

        let m = Credentials::parse("mariadb://root@127.0.0.1:3306/test").unwrap();
        assert_eq!((m.dialect, m.password.is_none()), (Dialect::Mysql, true));
        let s = Credentials::parse("sqlite:///data/x.db").unwrap();
        assert_eq!(s.sqlite_path(Path::new("/base")), Some(PathBuf::from("/base/data/x.db")));
        let s = Credentials::parse("sqlite:////abs/x.db").unwrap();
        assert_eq!(s.sqlite_path(Path::new("/base")), Some(PathBuf::from("/abs/x.db")));
        assert_eq!(Credentials::parse("sqlite://").unwrap().sqlite_path(Path::new("/b")), None);

        let err = Credentials::parse("oracle://u:hunter2@h/db").unwrap_err().to_string();
        assert!(err.contains("oracle") && !err.contains("hunter2"), "{err}");
        let err = Credentials::parse("postgresql//u:hunter2@h").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let q = Credentials::parse("postgresql://u@h/db?password=hunter2").unwrap();
        assert!(!q.display().contains("hunter2"));
        // messages show the URL as written (not percent-encoded), the password masked
        let m =
            Credentials::parse("mysql+pymysql://root:x@localhost/h_src?unix_socket=/run/mysqld/mysqld.sock").unwrap();
        assert_eq!(m.display(), "mysql+pymysql://root:***@localhost/h_src?unix_socket=/run/mysqld/mysqld.sock");
        let odd = Credentials::parse("postgresql://us%40er@h/my%20db?application_name=a%20b").unwrap();
        assert_eq!(odd.display(), "postgresql://us@er@h/my db?application_name=a b");
        assert_eq!(Credentials::parse(&odd.url()).unwrap(), odd);
    }
}
