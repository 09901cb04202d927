//! Test support: a real json-server (0.17.4, installed by `cargo xtask test`) started per test
//! on a free port with a copy of the fixture, a small fault-injecting HTTP server, a DuckDB
//! pipeline, and an independent DuckDB reader.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dlt_core::config::Config;
use serde_json::Value;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn fixture_db() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("db.json")).unwrap()).unwrap()
}

/// Where json-server is: `DLT_TEST_JSON_SERVER`, else the cache `cargo xtask test` installs to.
fn json_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DLT_TEST_JSON_SERVER").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("DLT_RS_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/dlt-rs"));
    cache.join("node/node_modules/.bin/json-server")
}

/// The resource a test's json-server serves its own token under.
const SERVER_ID: &str = "__dlt_test_server";

/// A json-server process serving a copy of a db.json; killed when dropped.
pub struct JsonServer {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl JsonServer {
    /// Start json-server with `db` and the test middleware (its behaviour set by `env`).
    /// `None` (with a message) when json-server is not installed, except under `CI=true`,
    /// where that is a failure.
    pub fn start(db: &Value, env: &[(&str, &str)]) -> Option<JsonServer> {
        let bin = json_server_bin();
        if !bin.exists() {
            let msg = format!(
                "json-server not found at {} (set DLT_TEST_JSON_SERVER, or run `cargo xtask test`, which installs it)",
                bin.display()
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            return None;
        }
        // a token only this server serves: a free port can be taken by another test's server
        // between asking for it and binding it, and then that server must not be mistaken
        // for ours
        let token = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        );
        let mut db = db.clone();
        if let Some(m) = db.as_object_mut() {
            m.insert(SERVER_ID.into(), serde_json::json!({ "token": token }));
        }
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let db_path = dir.path().join("db.json");
            std::fs::write(&db_path, serde_json::to_string_pretty(&db).unwrap()).unwrap();
            let log = dir.path().join("requests.log");
            std::fs::write(&log, "").unwrap();
            let port = free_port();
            let out = std::fs::File::create(dir.path().join("server.out")).unwrap();
            let mut cmd = Command::new(&bin);
            cmd.arg("-q")
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .arg(&db_path)
                .arg("--middlewares")
                .arg(fixture("middleware.js"))
                .env("REQUEST_LOG", &log)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            for (k, v) in env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut srv = JsonServer { child, url: format!("http://127.0.0.1:{port}"), dir, log };
            if srv.wait_ready(&token) {
                return Some(srv);
            }
            eprintln!("json-server: port {port} was taken by another server; trying another port");
        }
        panic!("json-server: no free port after 5 tries");
    }

    /// Wait until this server answers with its token; `false` when its port was taken.
    fn wait_ready(&mut self, token: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                let out = std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default();
                if out.contains("EADDRINUSE") || out.contains("already in use") {
                    return false;
                }
                panic!("json-server exited ({st}) before answering; its output:\n{out}");
            }
            let ours = client
                .get(format!("{}/{SERVER_ID}", self.url))
                .send()
                .ok()
                .and_then(|r| r.text().ok())
                .is_some_and(|body| body.contains(token));
            if ours {
                std::fs::write(&self.log, "").unwrap();
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default();
        panic!("json-server did not answer on {} within 30 s; its output:\n{out}", self.url);
    }

    /// The requests logged by the middleware since the last call.
    pub fn take_requests(&self) -> Vec<String> {
        let s = std::fs::read_to_string(&self.log).unwrap();
        std::fs::write(&self.log, "").unwrap();
        s.lines().map(str::to_string).collect()
    }
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A test project: a DuckDB file and a pipelines dir.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        Project { dir: tempfile::tempdir().unwrap() }
    }
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("dest.duckdb")
    }
    pub fn pipeline(&self, name: &str, dataset: &str) -> dlt_core::Pipeline {
        dlt_core::PipelineBuilder::new(name)
            .normalizer(Arc::new(dlt_normalize::RelationalNormalizer))
            .destination(Arc::new(dlt_duckdb::DuckDb::new(self.db())))
            .dataset_name(dataset)
            .pipelines_dir(self.dir.path().join("pipelines"))
            .config(Config::from_parts(vec![], None, None))
            .build()
            .unwrap()
    }
}

/// Independent reader: every column must be cast to VARCHAR by the query.
pub fn rows(db: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let conn = duckdb::Connection::open(db).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut out = vec![];
    while let Some(r) = rows.next().unwrap() {
        let n = r.as_ref().column_count();
        out.push((0..n).map(|i| r.get::<_, Option<String>>(i).unwrap()).collect());
    }
    out
}

pub fn scalar(db: &Path, sql: &str) -> String {
    rows(db, sql)[0][0].clone().unwrap_or_default()
}

pub fn table_exists(db: &Path, schema: &str, table: &str) -> bool {
    scalar(
        db,
        &format!(
            "SELECT count(*)::VARCHAR FROM information_schema.tables WHERE table_schema = '{schema}' AND table_name = '{table}'"
        ),
    ) != "0"
}

// ---------------------------------------------------------------------------------------------
// fault-injecting server

/// One request as the fault server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What the fault server answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (a timeout for the client).
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Reply {
        Reply { status, headers: vec![], body: body.to_string(), delay: Duration::ZERO }
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A small HTTP/1.1 server on 127.0.0.1 that answers from a handler given the request and its
/// number (0-based). It stops when dropped (and on its own after 120 s).
pub struct FaultServer {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultServer {
    pub fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let count = Arc::new(AtomicUsize::new(0));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            while !stop2.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (h, s, c) = (handler.clone(), seen2.clone(), count.clone());
                        std::thread::spawn(move || serve(stream, &*h, &s, &c));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        FaultServer { url, seen, stop, thread: Some(thread) }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<Seen>>, count: &AtomicUsize) {
    stream.set_nonblocking(false).ok();
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = vec![];
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = reader.read_exact(&mut body);
    let req = Seen { method, target, headers, body: String::from_utf8_lossy(&body).to_string() };
    let n = count.fetch_add(1, Ordering::SeqCst);
    seen.lock().unwrap().push(req.clone());
    let reply = handler(&req, n);
    if !reply.delay.is_zero() {
        std::thread::sleep(reply.delay);
    }
    let mut out = format!("HTTP/1.1 {} X\r\nContent-Type: application/json\r\nConnection: close\r\n", reply.status);
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{}", reply.body.len(), reply.body));
    let mut s = stream;
    let _ = s.write_all(out.as_bytes());
    let _ = s.flush();
}
