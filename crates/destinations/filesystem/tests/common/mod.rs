//! Helpers shared by the filesystem destination's integration tests: where `cargo xtask test`
//! installs the servers and readers, free ports, and the moto S3 server.
#![allow(dead_code)] // each test binary uses its own part

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An installed tool: `$<env>` if set, else `<cache>/<rel>` (`$DLT_RS_CACHE`, else
/// `~/.cache/dlt-rs`), as `cargo xtask test` installs it.
pub fn installed(env: &str, rel: &str) -> Option<PathBuf> {
    dlt_testkit::services::installed(env, rel)
}

/// A service a test needs is missing: the test is skipped, except under `CI=true`, where it fails.
pub fn missing(what: &str, env: &str) {
    dlt_testkit::services::skip_or_fail(what, format!("not found ({env}; `cargo xtask test` installs it)"));
}

/// Python with deltalake (`DLT_TEST_DELTALAKE_PYTHON`, else `<cache>/delta`).
pub fn deltalake_python() -> Option<PathBuf> {
    let p = installed("DLT_TEST_DELTALAKE_PYTHON", "delta/bin/python").filter(|p| p.exists());
    if p.is_none() {
        missing("Python deltalake", "DLT_TEST_DELTALAKE_PYTHON");
    }
    p
}

pub use dlt_testkit::services::free_port;

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
pub struct Moto {
    child: Child,
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
        missing("moto_server", "DLT_TEST_MOTO_SERVER");
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
