//! HTTPS APIs behind a private CA: trusted through `client.ca_bundle`, `REQUESTS_CA_BUNDLE` or
//! `SSL_CERT_FILE`; refused — once, without retries — when the CA is not trusted.
//!
//! The server is the test's own HTTPS server (rustls over a std socket) with a certificate for
//! 127.0.0.1 signed by a CA the test makes; no public server can present such a chain.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dlt_core::config::Config;
use dlt_core::{Error, Item};
use dlt_rest_api::{RestApiConfig, rest_api_resources};
use serde_json::{Value, json};

/// A CA (its PEM written to a file) and an HTTPS server presenting a leaf it signed.
struct PrivateApi {
    url: String,
    ca_pem: tempfile::NamedTempFile,
    /// Connections accepted (handshakes tried).
    connections: Arc<AtomicUsize>,
}

fn private_api() -> PrivateApi {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "dlt-rs test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let mut ca_pem = tempfile::NamedTempFile::new().unwrap();
    ca_pem.write_all(ca.pem().as_bytes()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let server = Arc::new(server);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let server = server.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(server).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut req = vec![];
                let mut b = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut b) {
                        Ok(0) | Err(_) => return, // the client refused the certificate
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                let body = r#"[{"id": 1, "name": "alpha"}, {"id": 2, "name": "beta"}]"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes());
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    PrivateApi { url, ca_pem, connections }
}

fn config(url: &str, extra: Value) -> RestApiConfig {
    let mut client = json!({
        "base_url": url,
        // retried errors would take minutes: a refused certificate must not be one
        "session": {"timeout": 10.0, "max_attempts": 5, "backoff_factor": 30.0},
    });
    for (k, v) in extra.as_object().unwrap() {
        client[k] = v.clone();
    }
    RestApiConfig::from_json(json!({
        "client": client,
        "resources": [{"name": "items", "endpoint": {"path": "items", "paginator": "single_page"}}]
    }))
    .unwrap()
}

fn collect(c: &RestApiConfig) -> Result<Vec<Value>, Error> {
    let r = rest_api_resources(c, &Config::from_parts(vec![], None, None))?.into_iter().next().unwrap();
    let (_, _, items) = r.into_parts();
    items
        .map(|i| match i? {
            Item::Json(v) => Ok(v),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn expected() -> Vec<Value> {
    vec![json!({"id": 1, "name": "alpha"}), json!({"id": 2, "name": "beta"})]
}

#[test]
fn an_untrusted_certificate_fails_once_and_terminally() {
    let api = private_api();
    let started = Instant::now();
    let err = collect(&config(&api.url, json!({}))).expect_err("the CA is not trusted");
    let msg = err.to_string();
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");
    assert!(!err.is_transient(), "a refused certificate is terminal: {err:?}");
    assert!(!msg.contains("gave up after"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(20), "retried: {:?}", started.elapsed());
    assert_eq!(api.connections.load(Ordering::SeqCst), 1, "one handshake, no retries");
}

#[test]
fn client_ca_bundle_trusts_a_private_ca() {
    let api = private_api();
    let path = api.ca_pem.path().to_str().unwrap();
    assert_eq!(collect(&config(&api.url, json!({"ca_bundle": path}))).unwrap(), expected());
}

#[test]
fn requests_ca_bundle_and_ssl_cert_file_are_read() {
    let api = private_api();
    let path = api.ca_pem.path().to_str().unwrap().to_string();
    // SAFETY: this test is its own process under nextest; nothing else reads the environment
    unsafe { std::env::set_var("SSL_CERT_FILE", &path) };
    assert_eq!(collect(&config(&api.url, json!({}))).unwrap(), expected());
    // REQUESTS_CA_BUNDLE wins over SSL_CERT_FILE, as in Python's requests
    unsafe { std::env::set_var("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem") };
    let err = collect(&config(&api.url, json!({}))).expect_err("a bundle that is not there");
    let msg = err.to_string();
    assert!(msg.contains("REQUESTS_CA_BUNDLE") && msg.contains("/nonexistent/bundle.pem"), "{msg}");
    unsafe { std::env::remove_var("REQUESTS_CA_BUNDLE") };
    unsafe { std::env::remove_var("SSL_CERT_FILE") };
}

#[test]
fn a_bundle_without_certificates_is_a_configuration_error() {
    let api = private_api();
    let mut junk = tempfile::NamedTempFile::new().unwrap();
    junk.write_all(b"not a certificate\n").unwrap();
    let err = collect(&config(&api.url, json!({"ca_bundle": junk.path().to_str().unwrap()})))
        .expect_err("no certificate in the bundle");
    let msg = err.to_string();
    assert!(msg.contains("client.ca_bundle") && msg.contains("PEM"), "{msg}");
    assert_eq!(api.connections.load(Ordering::SeqCst), 0, "refused before any request");
}
