//! Credentials go only to the configured origin; response bodies are read up to a limit, and a
//! large list is parsed one record at a time.
//!
//! A hostile API is a protocol path no real server plays, so both origins here are the test's
//! own recording server (`support::FaultServer`): the API names a next page (JSON link, `Link`
//! header) or redirects to a second server on another port, and the test reads what that second
//! server received.

mod support;

use std::io::Write;

use dlt_core::config::Config;
use dlt_core::{Error, Item};
use dlt_rest_api::{RestApiConfig, rest_api_resources};
use serde_json::{Value, json};
use support::{FaultServer, Reply, Seen};

const TOKEN: &str = "s3cr3t-token-value";

fn providers() -> Config {
    Config::from_parts(vec![], None, None)
}

/// Every auth kind, configured with the secret `TOKEN` (OAuth2's token endpoint is on the API's
/// own server and hands out `TOKEN`).
fn auth_kinds(api: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("bearer", json!({"type": "bearer", "token": TOKEN})),
        ("api_key header", json!({"type": "api_key", "name": "X-API-Key", "api_key": TOKEN})),
        ("api_key query", json!({"type": "api_key", "name": "api_key", "api_key": TOKEN, "location": "query"})),
        ("api_key cookie", json!({"type": "api_key", "name": "session", "api_key": TOKEN, "location": "cookie"})),
        ("http_basic", json!({"type": "http_basic", "username": "user", "password": TOKEN})),
        (
            "oauth2",
            json!({"type": "oauth2_client_credentials", "access_token_url": format!("{api}/token"),
                   "client_id": "id", "client_secret": TOKEN}),
        ),
    ]
}

/// Whether a request carries the secret anywhere (headers, target, body), in clear or as the
/// base64 of HTTP basic auth.
fn carries_secret(s: &Seen) -> bool {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("user:{TOKEN}"));
    let text = format!("{} {:?} {}", s.target, s.headers, s.body);
    text.contains(TOKEN) || text.contains(&basic)
}

fn config(api: &str, auth: &Value, paginator: Value, extra: Value) -> RestApiConfig {
    let mut client = json!({
        "base_url": api,
        "auth": auth,
        "headers": {"X-Custom": TOKEN},
        "session": {"timeout": 2.0, "max_attempts": 1},
    });
    for (k, v) in extra.as_object().unwrap() {
        client[k] = v.clone();
    }
    RestApiConfig::from_json(json!({
        "client": client,
        "resources": [{"name": "items", "endpoint": {"path": "items", "paginator": paginator}}]
    }))
    .unwrap()
}

fn collect(c: &RestApiConfig) -> (Vec<Value>, Option<Error>) {
    let r = rest_api_resources(c, &providers()).unwrap().into_iter().next().unwrap();
    let (_, _, items) = r.into_parts();
    let mut out = vec![];
    for i in items {
        match i {
            Ok(Item::Json(v)) => out.push(v),
            Ok(other) => panic!("{other:?}"),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

/// The API: a token endpoint, and a first page whose next page is `next` (a JSON link, a `Link`
/// header or a redirect, per `how`).
fn api(how: &'static str, next: String) -> FaultServer {
    FaultServer::start(move |req, _| {
        if req.target.starts_with("/token") {
            return Reply::json(200, &format!(r#"{{"access_token": "{TOKEN}", "expires_in": 3600}}"#));
        }
        match how {
            "json_link" => Reply::json(200, &format!(r#"{{"data": [{{"id": 1}}], "next": "{next}"}}"#)),
            "header_link" => Reply::json(200, r#"[{"id": 1}]"#).header("Link", &format!("<{next}>; rel=\"next\"")),
            "redirect" => Reply::json(302, "").header("Location", &next),
            "redirect_307" => Reply::json(307, "").header("Location", &next),
            _ => unreachable!(),
        }
    })
}

fn paginator(how: &str) -> Value {
    match how {
        "json_link" => json!({"type": "json_link", "next_url_path": "next"}),
        "header_link" => json!("header_link"),
        _ => json!("single_page"),
    }
}

#[test]
fn no_credential_reaches_another_origin() {
    for how in ["json_link", "header_link", "redirect", "redirect_307"] {
        let other = FaultServer::start(|_, _| Reply::json(200, r#"{"data": [{"id": 2}]}"#));
        let srv = api(how, format!("{}/steal?page=2", other.url));
        for (kind, auth) in auth_kinds(&srv.url) {
            // default: an error naming both origins, and nothing sent there
            let (items, err) = collect(&config(&srv.url, &auth, paginator(how), json!({})));
            let err = err.unwrap_or_else(|| panic!("{how}/{kind}: the cross-origin link was followed"));
            let msg = err.to_string();
            assert!(msg.contains(&other.url) && msg.contains(&srv.url), "{how}/{kind}: {msg}");
            assert!(msg.contains("allow_cross_origin"), "{how}/{kind}: {msg}");
            assert!(!msg.contains(TOKEN), "{how}/{kind}: {msg}");
            if how.starts_with("redirect") {
                assert!(items.is_empty());
            } else {
                assert_eq!(items, vec![json!({"id": 1})], "{how}/{kind}: the first page's records come first");
            }
            assert!(other.requests().is_empty(), "{how}/{kind}: the other origin was asked");
            // allowed: followed, without any credential
            let (items, err) = collect(&config(&srv.url, &auth, paginator(how), json!({"allow_cross_origin": true})));
            if how.starts_with("redirect") {
                assert!(err.is_none(), "{how}/{kind}: {err:?}");
                assert_eq!(items, vec![json!({"id": 2})], "{how}/{kind}");
            } else {
                assert!(items.contains(&json!({"id": 2})), "{how}/{kind}: {items:?} {err:?}");
            }
            let seen = other.requests();
            assert!(!seen.is_empty(), "{how}/{kind}: the other origin was not asked");
            for s in &seen {
                assert!(!carries_secret(s), "{how}/{kind}: a credential reached the other origin: {s:?}");
            }
            other.seen.lock().unwrap().clear();
            // the API's own origin did get the credential (the check above can fail)
            let own: Vec<Seen> = srv.requests().into_iter().filter(|s| !s.target.starts_with("/token")).collect();
            assert!(own.iter().all(carries_secret), "{how}/{kind}: {own:?}");
            srv.seen.lock().unwrap().clear();
        }
    }
}

#[test]
fn same_origin_redirects_keep_credentials() {
    let srv = FaultServer::start(|req, _| {
        if req.target.starts_with("/items") {
            Reply::json(301, "").header("Location", "/v2/items")
        } else {
            Reply::json(200, r#"[{"id": 7}]"#)
        }
    });
    let auth = json!({"type": "bearer", "token": TOKEN});
    let (items, err) = collect(&config(&srv.url, &auth, json!("single_page"), json!({})));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(items, vec![json!({"id": 7})]);
    let seen = srv.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].target.starts_with("/v2/items") && carries_secret(&seen[1]), "{seen:?}");
}

/// A raw HTTP server on 127.0.0.1 that answers every request with `head` and then `body_len`
/// bytes of `fill` written in 64 KiB pieces (or until the client hangs up), without holding the
/// body in memory.
fn streaming_server(head: String, chunk: Vec<u8>, body_len: u64) -> (String, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let t = std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let mut buf = [0u8; 4096];
        let _ = std::io::Read::read(&mut s, &mut buf);
        if s.write_all(head.as_bytes()).is_err() {
            return;
        }
        let mut sent = 0u64;
        while sent < body_len {
            let n = (chunk.len() as u64).min(body_len - sent) as usize;
            if s.write_all(&chunk[..n]).is_err() {
                return;
            }
            sent += n as u64;
        }
    });
    (url, t)
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap()
}

#[test]
fn response_size_is_bounded_while_streaming_and_decompressing() {
    let limit: u64 = 1 << 20;
    let cfg = |url: &str| {
        RestApiConfig::from_json(json!({
            "client": {"base_url": url, "max_response_bytes": limit, "session": {"timeout": 30.0, "max_attempts": 1}},
            "resources": [{"name": "items", "endpoint": {"path": "items", "paginator": "single_page"}}]
        }))
        .unwrap()
    };
    let before = rss_kib();
    // an endless chunked-like body: 256 MiB of a JSON array, no length given
    let (url, t) = streaming_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n[".into(),
        b"{\"id\": 1},".repeat(6554),
        256 << 20,
    );
    let (_, err) = collect(&cfg(&url));
    let msg = err.expect("over the limit").to_string();
    assert!(msg.contains("max_response_bytes") && msg.contains("/items"), "{msg}");
    t.join().unwrap();
    // a 128 MiB body of spaces sent as 128 KiB of gzip (a decompression bomb in small)
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..128 {
        gz.write_all(&spaces).unwrap();
    }
    let gz = gz.finish().unwrap();
    let (url, t) = streaming_server(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            gz.len()
        ),
        gz.clone(),
        gz.len() as u64,
    );
    let (_, err) = collect(&cfg(&url));
    let msg = err.expect("over the limit after decompression").to_string();
    assert!(msg.contains("max_response_bytes"), "{msg}");
    t.join().unwrap();
    // a declared length over the limit is refused before the body is read
    let (url, t) = streaming_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\nConnection: close\r\n\r\n"
            .into(),
        vec![b' '; 1 << 16],
        1 << 30,
    );
    let (_, err) = collect(&cfg(&url));
    assert!(err.expect("declared too large").to_string().contains("max_response_bytes"));
    t.join().unwrap();
    // memory stayed far below what was sent (256 MiB, 128 MiB inflated, 1 GiB declared)
    let grown_mib = (rss_kib().saturating_sub(before)) / 1024;
    assert!(grown_mib < 32, "peak RSS grew by {grown_mib} MiB");
    // under the limit, the body is read whole
    let (url, t) = streaming_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n".into(),
        b"[{\"id\": 1}]".to_vec(),
        11,
    );
    let (items, err) = collect(&cfg(&url));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(items, vec![json!({"id": 1})]);
    t.join().unwrap();
}

/// A page that is one large list is parsed one record at a time: memory grows by about the
/// body's bytes, not by a tree of values several times their size.
#[test]
fn a_large_list_is_parsed_one_record_at_a_time() {
    const RECORDS: u64 = 800_000;
    // ids of one width, so every record has the same size
    let record = |i: u64| {
        let id = 1_000_000 + i;
        format!(r#"{{"id":{id},"name":"record-{id}","tags":["a","b"],"nested":{{"x":1.5}}}}"#)
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = vec![];
        let mut b = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = std::io::Read::read(&mut s, &mut b).unwrap();
            assert!(n > 0, "the client closed before sending its request");
            req.extend_from_slice(&b[..n]);
        }
        let mut w = std::io::BufWriter::new(s);
        // no length: the client reads to the end, as from a streaming API
        w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n[").unwrap();
        for i in 0..RECORDS {
            if i > 0 {
                w.write_all(b",").unwrap();
            }
            w.write_all(record(i).as_bytes()).unwrap();
        }
        w.write_all(b"]").unwrap();
        w.flush().unwrap();
    });
    let body_mib = (RECORDS * (record(0).len() as u64 + 1)) >> 20;
    let cfg = RestApiConfig::from_json(json!({
        "client": {"base_url": url, "session": {"timeout": 60.0, "max_attempts": 1}},
        "resources": [{"name": "items", "endpoint": {"path": "items", "paginator": "single_page"}}]
    }))
    .unwrap();
    let before = rss_kib();
    let r = rest_api_resources(&cfg, &providers()).unwrap().into_iter().next().unwrap();
    let (_, _, items) = r.into_parts();
    let (mut n, mut id_sum) = (0u64, 0u64);
    let mut last = Value::Null;
    for i in items {
        match i.unwrap() {
            Item::Json(v) => {
                if n == 0 {
                    assert_eq!(v, serde_json::from_str::<Value>(&record(0)).unwrap());
                }
                id_sum += v["id"].as_u64().unwrap();
                n += 1;
                last = v;
            }
            other => panic!("{other:?}"),
        }
    }
    server.join().unwrap();
    assert_eq!(n, RECORDS);
    assert_eq!(id_sum, RECORDS * 1_000_000 + RECORDS * (RECORDS - 1) / 2);
    assert_eq!(last, serde_json::from_str::<Value>(&record(RECORDS - 1)).unwrap());
    // the body buffer (grown by doubling) and 16 bytes per record: about 100 MiB measured; the
    // whole page parsed into a tree and copied, as before, grew it by 2.8 GiB
    let grown_mib = (rss_kib().saturating_sub(before)) / 1024;
    assert!(body_mib > 50, "{body_mib} MiB");
    assert!(grown_mib < 3 * body_mib, "peak RSS grew by {grown_mib} MiB for a {body_mib} MiB page");
}
