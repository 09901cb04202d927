//! `PUT` to a stage that encrypts on the client, as the internal stages of real Snowflake accounts
//! do. No server here runs that path (fakesnow's stages do not encrypt), so a small recording
//! server written here plays the Snowflake side: it answers the login and the `PUT` with a stage
//! (GCS with a presigned URL on itself, or S3 on moto, a real S3 server) and encryption material.
//! The upload is then decrypted by Snowflake's own Python connector
//! (`SnowflakeEncryptionUtil.decrypt_stream`) from the metadata we sent: an independent
//! implementation of the same scheme.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use dlt_core::runtime::block_on;
use dlt_snowflake::{Client, Credentials};

/// Answer requests on a free port: logins, queries with `answer(host)` (the `host:port` the
/// request was sent to), uploads recorded. Returns the port and the requests seen.
fn serve(answer: impl Fn(&str) -> serde_json::Value + Send + 'static) -> (u16, dlt_testkit::recorder::Seen) {
    let (url, seen) = dlt_testkit::recorder::serve(move |r| {
        let reply = if r.path.starts_with("/session/v1/login-request") {
            serde_json::json!({"data": {"token": "t0k"}, "success": true}).to_string()
        } else if r.path.starts_with("/queries/v1/query-request") {
            answer(r.header("host").unwrap_or_default()).to_string()
        } else {
            String::new()
        };
        ("200 OK".into(), reply)
    });
    (url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("the server's port"), seen)
}

#[test]
fn an_encrypted_upload_decrypts_with_snowflakes_own_connector() {
    let bin = dlt_testkit::services::installed("DLT_TEST_FAKESNOW", "fakesnow/bin/fakesnow").unwrap_or_default();
    let py = bin.with_file_name("python");
    if !py.exists() {
        return dlt_testkit::services::skip_or_fail("snowflake-connector-python", format!("no {}", py.display()));
    }
    let master = base64::engine::general_purpose::STANDARD.encode((0u8..32).collect::<Vec<_>>());
    let m = master.clone();
    let (port, seen) = serve(move |host| {
        serde_json::json!({"success": true, "data": {
            "command": "UPLOAD",
            "src_locations": ["/tmp/job.parquet"],
            "stageInfo": {"locationType": "GCS", "location": "bucket/stage/", "creds": {},
                          "presignedUrl": format!("http://{host}/upload/job.parquet")},
            "encryptionMaterial": {"queryStageMasterKey": m, "queryId": "01b2-q", "smkId": 4242}
        }})
    });
    let dir = std::env::temp_dir().join(format!("dlt-snowflake-encrypted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 100 bytes: not a whole number of AES blocks
    let original: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37)).collect();
    let file = dir.join("job.parquet");
    std::fs::write(&file, &original).unwrap();
    let c = Credentials::parse(&format!("snowflake://u:pw@acct/DB?host=127.0.0.1&port={port}&protocol=http")).unwrap();
    block_on(async {
        let client = Client::login(&c, None, Duration::from_secs(30)).await.unwrap();
        client.put(&file, "@\"DS\".\"%T\"").await.unwrap();
    });
    let seen = seen.lock().unwrap().clone();
    let upload = seen.iter().find(|r| r.method == "PUT" && r.path == "/upload/job.parquet").unwrap();
    let body = &upload.body;
    assert_ne!(body, &original, "the upload is encrypted");
    let h = |k: &str| upload.header(k).map(str::to_string).unwrap();
    let data: serde_json::Value = serde_json::from_str(&h("x-goog-meta-encryptiondata")).unwrap();
    let matdesc = h("x-goog-meta-matdesc");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&matdesc).unwrap()["smkId"], "4242");
    std::fs::write(dir.join("upload.enc"), body).unwrap();
    let plain = decrypt_with_connector(
        &py,
        data["WrappedContentKey"]["EncryptedKey"].as_str().unwrap(),
        data["ContentEncryptionIV"].as_str().unwrap(),
        &matdesc,
        &master,
        &dir.join("upload.enc"),
    );
    let hex: String = original.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(plain, hex);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Decrypt with Snowflake's own connector; returns the plain bytes as hex.
fn decrypt_with_connector(
    py: &std::path::Path,
    key: &str,
    iv: &str,
    matdesc: &str,
    master: &str,
    path: &std::path::Path,
) -> String {
    let script = r#"
import io, sys
from snowflake.connector.encryption_util import SnowflakeEncryptionUtil
from snowflake.connector.constants import EncryptionMetadata
from snowflake.connector.storage_client import SnowflakeFileEncryptionMaterial
key, iv, matdesc, master, path = sys.argv[1:6]
meta = EncryptionMetadata(key=key, iv=iv, matdesc=matdesc)
mat = SnowflakeFileEncryptionMaterial(query_stage_master_key=master, query_id="q", smk_id=1)
out = io.BytesIO()
with open(path, "rb") as src:
    SnowflakeEncryptionUtil.decrypt_stream(meta, mat, src, out)
sys.stdout.write(out.getvalue().hex())
"#;
    let out = Command::new(py).args(["-c", script, key, iv, matdesc, master]).arg(path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A GET to moto with the response headers (lower-cased names) and body.
fn s3_get(port: u16, path: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAuthorization: AWS4-HMAC-SHA256 \
         Credential=AKIAREADER/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\n\r\n"
    )
    .unwrap();
    let mut raw = vec![];
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect::<Vec<_>>();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = dlt_testkit::services::dechunk(&body);
    }
    (headers, body)
}

#[test]
fn an_upload_to_an_s3_stage_lands_encrypted_with_snowflakes_metadata() {
    let bin = dlt_testkit::services::installed("DLT_TEST_FAKESNOW", "fakesnow/bin/fakesnow").unwrap_or_default();
    let py = bin.with_file_name("python");
    if !py.exists() {
        return dlt_testkit::services::skip_or_fail("snowflake-connector-python", format!("no {}", py.display()));
    }
    let Some(moto) = dlt_testkit::services::start_moto() else { return };
    dlt_testkit::services::create_s3_bucket(moto.port, "sfstage");
    let master = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let (m, moto_port) = (master.clone(), moto.port);
    let (port, _) = serve(move |_| {
        serde_json::json!({"success": true, "data": {
            "command": "UPLOAD",
            "src_locations": ["/tmp/job.parquet"],
            "stageInfo": {"locationType": "S3", "location": "sfstage/tables/123/", "region": "us-east-1",
                          "endPoint": format!("http://127.0.0.1:{moto_port}"),
                          "creds": {"AWS_KEY_ID": "AKIASTAGE", "AWS_SECRET_KEY": "stage-secret", "AWS_TOKEN": "tok"}},
            "encryptionMaterial": [{"queryStageMasterKey": m, "queryId": "q", "smkId": 1}]
        }})
    });
    let dir = std::env::temp_dir().join(format!("dlt-snowflake-s3stage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let original: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = dir.join("items.abc.0.parquet");
    std::fs::write(&file, &original).unwrap();
    let c = Credentials::parse(&format!("snowflake://u:pw@acct/DB?host=127.0.0.1&port={port}&protocol=http")).unwrap();
    block_on(async {
        let client = Client::login(&c, None, Duration::from_secs(30)).await.unwrap();
        client.put(&file, "@\"DS\".\"%ITEMS\"").await.unwrap();
    });
    // the object in the stage's bucket and path, as S3 (moto) keeps it
    let (headers, body) = s3_get(moto.port, "/sfstage/tables/123/items.abc.0.parquet");
    let h = |k: &str| {
        headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("{k}: {headers:?}"))
    };
    assert_ne!(body, original, "stored encrypted");
    std::fs::write(dir.join("stored.enc"), &body).unwrap();
    let hex = decrypt_with_connector(
        &py,
        &h("x-amz-meta-x-amz-key"),
        &h("x-amz-meta-x-amz-iv"),
        &h("x-amz-meta-x-amz-matdesc"),
        &master,
        &dir.join("stored.enc"),
    );
    assert_eq!(hex, original.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let _ = std::fs::remove_dir_all(&dir);
}
