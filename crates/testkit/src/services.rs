//! The real servers tests use: where they are, whether they answer, and what a test does when
//! one is missing (skip with a note; under `CI=true`, fail).

use std::io::{Read, Write};
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
    /// The Python interpreter installed beside fakesnow, which has Snowflake's own connector
    /// (`snowflake.connector`): for readers that need more than [`FakeSnow::query`].
    pub fn python(&self) -> &std::path::Path {
        &self.python
    }

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

// ---------------------------------------------------------------------------------------------
// bqemulator, the BigQuery emulator

/// A result column as the BigQuery API describes it: `(name, type, mode)`.
pub type BqColumn = (String, String, String);

/// A bqemulator server (REST on `url`, gRPC beside it) child process with project `p1`;
/// stopped on drop.
#[derive(Debug)]
pub struct BqEmulator {
    child: Child,
    /// `http://127.0.0.1:PORT` (the REST API is under `/bigquery/v2`).
    pub url: String,
    /// The project the server holds.
    pub project: String,
}

impl BqEmulator {
    /// `GET` or `POST` (with a JSON body) a REST path under `/bigquery/v2/projects/<project>`,
    /// through plain HTTP (not dlt-rs' client): the tests' independent reader.
    #[track_caller]
    pub fn rest(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> serde_json::Value {
        let target = format!("/bigquery/v2/projects/{}/{}", self.project, path.trim_start_matches('/'));
        let (status, text) = http_json(&self.url, method, &target, body);
        assert!((200..300).contains(&status), "{method} {target}: HTTP {status}: {text}");
        if text.trim().is_empty() { serde_json::Value::Null } else { serde_json::from_str(&text).unwrap() }
    }

    /// Run `sql` with `jobs.query` (standard SQL) and return the rows, each value as the REST
    /// API renders it (strings, or null).
    #[track_caller]
    pub fn query(&self, sql: &str) -> Vec<Vec<serde_json::Value>> {
        self.query_with_schema(sql).1
    }

    /// [`BqEmulator::query`] with the result's columns as the API describes them:
    /// `(name, type, mode)`.
    #[track_caller]
    pub fn query_with_schema(&self, sql: &str) -> (Vec<BqColumn>, Vec<Vec<serde_json::Value>>) {
        let r = self.rest("POST", "queries", Some(&serde_json::json!({"query": sql, "useLegacySql": false})));
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let columns = r["schema"]["fields"]
            .as_array()
            .map(|f| f.iter().map(|f| (s(&f["name"]), s(&f["type"]), s(&f["mode"]))).collect())
            .unwrap_or_default();
        let rows = r["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|row| {
                        row["f"].as_array().map(|f| f.iter().map(|c| c["v"].clone()).collect()).unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        (columns, rows)
    }
}

impl Drop for BqEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 exchange with a JSON body: `(status, body)`.
fn http_json(base: &str, method: &str, target: &str, body: Option<&serde_json::Value>) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot reach {base}: {e}"));
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{payload}",
        payload.len()
    )
    .unwrap();
    let mut raw = vec![];
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { String::from_utf8_lossy(&dechunk(rest.as_bytes())).to_string() } else { rest.to_string() };
    (status, body)
}

/// bqemulator 1.4.0 (`DLT_TEST_BQEMULATOR` with `DLT_TEST_BQEMULATOR_HOME`, else the ones `cargo
/// xtask test` installs) on free ports with project `p1`, or `None` when it is not installed (a
/// failure under CI).
#[track_caller]
pub fn bqemulator() -> Option<BqEmulator> {
    let bin = installed("DLT_TEST_BQEMULATOR", "bqemulator/bin/bqemulator").unwrap_or_default();
    let home = installed("DLT_TEST_BQEMULATOR_HOME", "bqemulator-home").unwrap_or_default();
    if !bin.exists() || !home.exists() {
        skip_or_fail("bqemulator", format!("not found at {} (run `cargo xtask test`)", bin.display()));
        return None;
    }
    let (port, grpc) = (free_port(), free_port());
    let child = Command::new(&bin)
        .args(["start", "--rest-port", &port.to_string(), "--grpc-port", &grpc.to_string(), "--project", "p1"])
        .env("HOME", &home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let server = BqEmulator { child, url: format!("http://127.0.0.1:{port}"), project: "p1".into() };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "bqemulator did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(server)
}

// ---------------------------------------------------------------------------------------------
// moto, the S3 server

/// The body of a `Transfer-Encoding: chunked` response.
pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
    out
}

/// A running moto_server (`DLT_TEST_MOTO_SERVER`, else `<cache>/moto`), killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start moto_server on a free port and wait until it answers HTTP.
pub fn start_moto() -> Option<Moto> {
    let Some(bin) = installed("DLT_TEST_MOTO_SERVER", "moto/bin/moto_server").filter(|p| p.exists()) else {
        skip_or_fail("moto_server", "not found (DLT_TEST_MOTO_SERVER; `cargo xtask test` installs it)");
        return None;
    };
    let port = free_port();
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let m = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((status, _)) = s3_http(port, "GET", "/", b"")
            && status > 0
        {
            return Some(m);
        }
        assert!(Instant::now() < deadline, "moto_server did not answer on port {port} within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A plain HTTP/1.1 request to moto; returns the status and the body. moto denies anonymous
/// object reads, so it carries an Authorization header (moto does not check signatures).
pub fn s3_http(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=AKIAREADER/20240101/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=0\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = vec![];
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut body = raw[(split + 4).min(raw.len())..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((status, body))
}

/// Create an S3 bucket on moto.
pub fn create_s3_bucket(port: u16, bucket: &str) {
    let (status, body) = s3_http(port, "PUT", &format!("/{bucket}"), b"").unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}
