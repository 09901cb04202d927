//! The real servers tests use: where they are, whether they answer, and what a test does when
//! one is missing (skip with a note; under `CI=true`, fail).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether this is a CI run (`CI=true`), where a missing service fails the test.
pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// A service the test needs is missing: panic under CI, else print a note (the caller returns).
#[track_caller]
pub fn skip_or_fail(what: &str, why: impl std::fmt::Display) {
    assert!(!ci(), "{what} is not available: {why}");
    eprintln!("SKIPPED: {what} is not available: {why}");
}

/// Whether `addr` (`host:port`) accepts a TCP connection within 2 s; when it does not, the test
/// is skipped (or fails under CI) with `what` named.
#[track_caller]
pub fn reachable(what: &str, addr: &str) -> bool {
    let parsed = match addr.parse() {
        Ok(a) => a,
        Err(e) => panic!("{addr} is not a socket address: {e}"),
    };
    match TcpStream::connect_timeout(&parsed, Duration::from_secs(2)) {
        Ok(_) => true,
        Err(e) => {
            skip_or_fail(&format!("{what} at {addr}"), e);
            false
        }
    }
}

/// The PostgreSQL the tests use: `DLT_TEST_POSTGRES_URL`, default
/// `postgresql://postgres@127.0.0.1:5432/test`.
pub fn postgres_url() -> String {
    std::env::var("DLT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into())
}

/// The MySQL/MariaDB the tests use: `DLT_TEST_MYSQL_URL`, default
/// `mysql://root@127.0.0.1:3306/test`.
pub fn mysql_url() -> String {
    std::env::var("DLT_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The cache `cargo xtask test` installs into: `DLT_RS_CACHE`, default `~/.cache/dlt-rs`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("DLT_RS_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/dlt-rs"))
}

/// A tool `cargo xtask test` installs: the path in the environment variable `env`, else
/// `<cache>/<rel>` (it may not exist; check before use).
pub fn installed(env: &str, rel: &str) -> Option<PathBuf> {
    match std::env::var_os(env).filter(|v| !v.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => Some(cache_dir().join(rel)),
    }
}

/// A json-server child process serving one `db.json`; stopped on drop.
#[derive(Debug)]
pub struct JsonServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// json-server 0.17 (`DLT_TEST_JSON_SERVER`, else the one `cargo xtask test` installs) serving
/// `db` on a free port, or `None` when it is not installed (a failure under CI).
#[track_caller]
pub fn json_server(db: &Path) -> Option<JsonServer> {
    let bin = installed("DLT_TEST_JSON_SERVER", "node/node_modules/.bin/json-server").unwrap_or_default();
    if !bin.exists() {
        skip_or_fail("json-server", format!("not found at {} (run `cargo xtask test`)", bin.display()));
        return None;
    }
    let port = free_port();
    let child = Command::new(&bin)
        .args(["-q", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg(db)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let server = JsonServer { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "json-server did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(server)
}

/// A fakesnow server (`fakesnow -s`) child process; stopped on drop. Its sessions share one
/// in-memory database, so [`FakeSnow::query`] (Snowflake's own Python connector, an
/// independent client) sees what dlt-rs loaded.
#[derive(Debug)]
pub struct FakeSnow {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The port.
    pub port: u16,
    python: PathBuf,
}

impl FakeSnow {
    /// Run `sql` with snowflake-connector-python (installed beside fakesnow) as `user` on
    /// `database` and return the rows, each value as JSON (`str()` of what the connector
    /// returns for other than None, bool, int, float and str).
    #[track_caller]
    pub fn query(&self, database: &str, sql: &str) -> Vec<Vec<serde_json::Value>> {
        let script = r#"
import json, sys
import snowflake.connector
port, database, sql = int(sys.argv[1]), sys.argv[2], sys.argv[3]
con = snowflake.connector.connect(user="reader", password="x", account="testacct", database=database,
                                  host="127.0.0.1", port=port, protocol="http")
cur = con.cursor()
cur.execute(sql)
def cell(v):
    return v if v is None or isinstance(v, (bool, int, float, str)) else str(v)
print(json.dumps([[cell(v) for v in row] for row in cur.fetchall()]))
"#;
        let out = Command::new(&self.python)
            .args(["-c", script, &self.port.to_string(), database, sql])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.python.display()));
        assert!(out.status.success(), "the Python connector failed on {sql}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }
}

impl Drop for FakeSnow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// fakesnow 0.12 (`DLT_TEST_FAKESNOW`, else the one `cargo xtask test` installs) on a free port,
/// or `None` when it is not installed (a failure under CI).
#[track_caller]
pub fn fakesnow() -> Option<FakeSnow> {
    let bin = installed("DLT_TEST_FAKESNOW", "fakesnow/bin/fakesnow").unwrap_or_default();
    if !bin.exists() {
        skip_or_fail("fakesnow", format!("not found at {} (run `cargo xtask test`)", bin.display()));
        return None;
    }
    let port = free_port();
    let python = bin.with_file_name("python");
    let child = Command::new(&bin)
        .args(["-s", "--host", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let server = FakeSnow { child, url: format!("http://127.0.0.1:{port}"), port, python };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "fakesnow did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(server)
}
