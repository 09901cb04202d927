//! Test fixtures: a fresh Postgres schema / MariaDB database / SQLite file per test (dropped at
//! the end), pipelines into a temp DuckDB file, and an independent DuckDB reader.
//! `DLT_TEST_POSTGRES_URL` / `DLT_TEST_MYSQL_URL` choose the servers; under `CI=true` an
//! unreachable server fails the test instead of skipping it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mysql::prelude::Queryable;

pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{nanos:x}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub use dlt_testkit::services::{mysql_url, postgres_url as pg_url};

/// A server that cannot be reached: a failure under CI, else a skip with a note.
fn skip_or_fail(what: &str, url: &str, e: impl std::fmt::Display) {
    dlt_testkit::services::skip_or_fail(&format!("{what} at {url}"), e);
}

/// A schema of its own in the test database.
pub struct PgSchema {
    pub name: String,
    pub url: String,
}

impl PgSchema {
    pub fn new() -> Option<PgSchema> {
        let url = pg_url();
        let mut c = match postgres::Client::connect(&url, postgres::NoTls) {
            Ok(c) => c,
            Err(e) => {
                skip_or_fail("PostgreSQL", &url, e);
                return None;
            }
        };
        let name = unique("dlt_sqldb");
        c.batch_execute(&format!("CREATE SCHEMA {name}")).unwrap();
        Some(PgSchema { name, url })
    }
    pub fn client(&self) -> postgres::Client {
        let mut c = postgres::Client::connect(&self.url, postgres::NoTls).unwrap();
        c.batch_execute("SET TimeZone = 'UTC'; SET intervalstyle = 'iso_8601'").unwrap();
        c
    }
    pub fn exec(&self, sql: &str) {
        self.client().batch_execute(&sql.replace("{s}", &self.name)).unwrap();
    }
    /// Every value as Postgres renders it (`None` for NULL).
    pub fn strings(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let rows = self.client().query(&sql.replace("{s}", &self.name), &[]).unwrap();
        rows.iter().map(|r| (0..r.len()).map(|i| r.get::<_, Option<String>>(i)).collect()).collect()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// A database of its own on the MariaDB/MySQL server.
pub struct MyDb {
    pub name: String,
    pub server: String,
    pub url: String,
}

impl MyDb {
    pub fn new() -> Option<MyDb> {
        let server = mysql_url();
        let mut c = match mysql::Conn::new(mysql::Opts::from_url(&server).unwrap()) {
            Ok(c) => c,
            Err(e) => {
                skip_or_fail("MySQL/MariaDB", &server, e);
                return None;
            }
        };
        let name = unique("dlt_sqldb");
        c.query_drop(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4")).unwrap();
        let base = server.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(server.clone());
        Some(MyDb { url: format!("{base}/{name}"), name, server })
    }
    pub fn conn(&self) -> mysql::Conn {
        let mut c = mysql::Conn::new(mysql::Opts::from_url(&self.url).unwrap()).unwrap();
        c.query_drop("SET time_zone = '+00:00'").unwrap();
        c
    }
    pub fn exec(&self, sql: &str) {
        let mut c = self.conn();
        for stmt in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
            c.query_drop(stmt).unwrap_or_else(|e| panic!("{stmt}: {e}"));
        }
    }
    /// Every value as the server renders it in the text protocol.
    pub fn strings(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let rows: Vec<mysql::Row> = self.conn().query(sql).unwrap();
        rows.into_iter()
            .map(|r| {
                r.unwrap_raw()
                    .into_iter()
                    .map(|v| match v {
                        None | Some(mysql::Value::NULL) => None,
                        Some(mysql::Value::Bytes(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
                        Some(other) => Some(other.as_sql(true)),
                    })
                    .collect()
            })
            .collect()
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        if let Ok(mut c) = mysql::Conn::new(mysql::Opts::from_url(&self.server).unwrap()) {
            let _ = c.query_drop(format!("DROP DATABASE IF EXISTS {}", self.name));
        }
    }
}

/// A temp folder with the DuckDB destination file and the pipelines dir.
pub struct Dest {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Dest {
    pub fn new() -> Dest {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        Dest { _dir: dir, root }
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("dest.duckdb")
    }
    pub fn pipeline(&self, name: &str, dataset: &str) -> dlt::Pipeline {
        dlt::pipeline(name)
            .destination(dlt::destinations::duckdb(self.db()))
            .dataset_name(dataset)
            .pipelines_dir(self.root.join("pipelines"))
            .config(dlt::Config::from_parts(vec![], None, None))
            .build()
            .unwrap()
    }
    /// Values as DuckDB renders them (`sql` should cast to VARCHAR).
    pub fn strings(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        duck_strings(&self.db(), sql)
    }
    /// (column, DuckDB type, nullable) in table order.
    pub fn columns(&self, dataset: &str, table: &str) -> Vec<(String, String, bool)> {
        self.strings(&format!(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
             WHERE table_schema = '{dataset}' AND table_name = '{table}' ORDER BY ordinal_position"
        ))
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap(), r[2].as_deref() == Some("YES")))
        .collect()
    }
}

pub fn duck_strings(db: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let conn = duckdb::Connection::open(db).unwrap();
    conn.execute_batch("SET TimeZone = 'UTC'").unwrap();
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = stmt.query([]).unwrap();
    let mut out = vec![];
    while let Some(r) = rows.next().unwrap() {
        let n = r.as_ref().column_count();
        out.push((0..n).map(|i| r.get::<_, Option<String>>(i).unwrap()).collect());
    }
    out
}

/// One column of a result.
pub fn col(rows: &[Vec<Option<String>>], i: usize) -> Vec<Option<String>> {
    rows.iter().map(|r| r[i].clone()).collect()
}

/// Compare JSON documents as values (key order and spacing aside).
pub fn json_eq(a: &[Option<String>], b: &[Option<String>]) -> bool {
    let p = |v: &Option<String>| v.as_ref().map(|s| serde_json::from_str::<serde_json::Value>(s).unwrap());
    a.iter().map(p).collect::<Vec<_>>() == b.iter().map(p).collect::<Vec<_>>()
}

/// Compare floats as numbers.
pub fn float_eq(a: &[Option<String>], b: &[Option<String>]) -> bool {
    let p = |v: &Option<String>| v.as_ref().map(|s| s.parse::<f64>().unwrap().to_bits());
    a.iter().map(p).collect::<Vec<_>>() == b.iter().map(p).collect::<Vec<_>>()
}
