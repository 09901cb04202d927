//! The filesystem destination against a real S3 server: moto 5.2.5 (`moto_server`, installed by
//! `cargo xtask test`; path in `DLT_TEST_MOTO_SERVER`), one server per test on a free port of
//! 127.0.0.1. Files are listed and read back with plain HTTP requests to the server, not through
//! object_store. Without moto the tests skip, except under `CI=true`, where they fail.
//! A fake server answering 403 checks the wrong-credentials error (moto accepts any key).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::{create_s3_bucket as create_bucket, s3_http as http, start_moto};
use dlt::{Destination, Resource, WriteDisposition};
use dlt_filesystem::{Credentials, Filesystem, FilesystemConfig, Store};
use serde_json::json;

const SECRET: &str = "moto-secret-Kf93jd0";
const KEY_ID: &str = "AKIAMOTOTESTKEY";

/// Keys below `prefix`, listed by the server (ListObjectsV2, all pages).
fn list_keys(port: u16, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = vec![];
    let mut token: Option<String> = None;
    loop {
        let mut q = format!("/{bucket}?list-type=2&max-keys=2&prefix={prefix}");
        if let Some(t) = &token {
            q.push_str(&format!(
                "&continuation-token={}",
                t.replace('=', "%3D").replace('+', "%2B").replace('/', "%2F")
            ));
        }
        let (status, body) = http(port, "GET", &q, b"").unwrap();
        let text = String::from_utf8_lossy(&body).to_string();
        assert_eq!(status, 200, "{text}");
        for part in text.split("<Key>").skip(1) {
            keys.push(part.split("</Key>").next().unwrap().to_string());
        }
        token = text.split("<NextContinuationToken>").nth(1).map(|t| t.split('<').next().unwrap().to_string());
        if token.is_none() {
            break;
        }
    }
    keys.sort();
    keys
}

fn get_object(port: u16, bucket: &str, key: &str) -> Vec<u8> {
    let (status, body) = http(port, "GET", &format!("/{bucket}/{key}"), b"").unwrap();
    assert_eq!(status, 200, "{key}: {}", String::from_utf8_lossy(&body));
    body
}

fn env_config(port: u16, bucket_url: &str) -> dlt::Config {
    dlt::Config::from_parts(
        vec![
            ("DESTINATION__FILESYSTEM__BUCKET_URL".into(), bucket_url.into()),
            ("DESTINATION__FILESYSTEM__CREDENTIALS__AWS_ACCESS_KEY_ID".into(), KEY_ID.into()),
            ("DESTINATION__FILESYSTEM__CREDENTIALS__AWS_SECRET_ACCESS_KEY".into(), SECRET.into()),
            ("DESTINATION__FILESYSTEM__CREDENTIALS__ENDPOINT_URL".into(), format!("http://127.0.0.1:{port}")),
            ("DESTINATION__FILESYSTEM__CREDENTIALS__REGION_NAME".into(), "eu-central-1".into()),
        ],
        None,
        None,
    )
}

fn build(cfg: &dlt::Config, run_dir: &std::path::Path) -> dlt::Result<Arc<dyn Destination>> {
    dlt::registry().destination("filesystem").unwrap().build(&dlt::DestinationContext {
        pipeline_name: "s3p",
        config: cfg,
        run_dir,
        explicit: None,
    })
}

fn pipeline(dest: Arc<dyn Destination>, dir: &std::path::Path) -> dlt::Pipeline {
    dlt::pipeline("s3p")
        .destination(dest)
        .dataset_name("s3_data")
        .pipelines_dir(dir.join("pipelines"))
        .config(dlt::Config::from_parts(vec![], None, None))
        .build()
        .unwrap()
}

fn duck_ids(parquet: &[u8], dir: &std::path::Path) -> String {
    let f = dir.join(format!("read-{}.parquet", parquet.len()));
    std::fs::write(&f, parquet).unwrap();
    let c = duckdb::Connection::open_in_memory().unwrap();
    c.query_row(
        &format!(
            "SELECT string_agg(id::VARCHAR || ':' || name || ':' || typeof(id), ',' ORDER BY id) FROM read_parquet('{}')",
            f.display()
        ),
        [],
        |r| r.get::<_, String>(0),
    )
    .unwrap()
}

#[test]
fn load_replace_and_restore_state_on_s3() {
    let Some(moto) = start_moto() else { return };
    create_bucket(moto.port, "dlt-test");
    let dir = tempfile::tempdir().unwrap();
    let cfg = env_config(moto.port, "s3://dlt-test/base");
    let dest = build(&cfg, dir.path()).unwrap();
    assert_eq!(dest.display_location(), "s3://dlt-test/base");
    let mut p = pipeline(dest.clone(), dir.path());
    let users = |ids: &[i64]| {
        Resource::from_values(
            "users",
            ids.iter().map(|i| json!({"id": i, "name": format!("u{i}")})).collect::<Vec<_>>(),
        )
        .write_disposition(WriteDisposition::Replace)
    };
    let info = p.run(users(&[1, 2, 3])).unwrap();
    let load1 = info.load_ids[0].clone();
    let keys = list_keys(moto.port, "dlt-test", "base/s3_data/");
    let data: Vec<&String> = keys.iter().filter(|k| k.starts_with("base/s3_data/users/")).collect();
    assert_eq!(data.len(), 1, "{keys:?}");
    assert!(data[0].starts_with(&format!("base/s3_data/users/{load1}.")) && data[0].ends_with(".parquet"));
    assert!(keys.contains(&"base/s3_data/init".to_string()), "{keys:?}");
    assert!(keys.contains(&format!("base/s3_data/_dlt_loads/s3p__{load1}.jsonl")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("base/s3_data/_dlt_version/s3p__")));
    assert!(keys.iter().any(|k| k.starts_with(&format!("base/s3_data/_dlt_pipeline_state/s3p__{load1}__"))));
    assert!(!keys.iter().any(|k| k.contains("_dlt_journal")));
    assert_eq!(
        duck_ids(&get_object(moto.port, "dlt-test", data[0]), dir.path()),
        "1:u1:BIGINT,2:u2:BIGINT,3:u3:BIGINT"
    );
    let loads: serde_json::Value = serde_json::from_slice(&get_object(
        moto.port,
        "dlt-test",
        &format!("base/s3_data/_dlt_loads/s3p__{load1}.jsonl"),
    ))
    .unwrap();
    assert_eq!(loads["load_id"], json!(load1));
    assert_eq!(loads["status"], json!(0));

    // replace: the old object is gone, the new one holds the new rows
    let info = p.run(users(&[7, 8])).unwrap();
    let keys = list_keys(moto.port, "dlt-test", "base/s3_data/users/");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with(&format!("base/s3_data/users/{}.", info.load_ids[0])));
    assert_eq!(duck_ids(&get_object(moto.port, "dlt-test", &keys[0]), dir.path()), "7:u7:BIGINT,8:u8:BIGINT");
    // the SQL reader downloads and reads the bucket's files
    assert_eq!(p.read_table("users").unwrap().iter().map(|b| b.num_rows()).sum::<usize>(), 2);

    // state restore on a fresh machine from the bucket
    let hash = p.state().version_hash().to_string();
    let fresh = tempfile::tempdir().unwrap();
    let mut p2 = pipeline(build(&cfg, fresh.path()).unwrap(), fresh.path());
    assert!(p2.sync_destination().unwrap());
    assert_eq!(p2.state().version_hash(), hash);
    assert!(p2.schema("s3p").unwrap().unwrap().tables.contains_key("users"));
}

#[test]
fn large_files_upload_in_parts_and_missing_bucket_is_terminal() {
    let Some(moto) = start_moto() else { return };
    create_bucket(moto.port, "parts-bucket");
    let dir = tempfile::tempdir().unwrap();
    let creds = Credentials {
        aws_access_key_id: Some(KEY_ID.into()),
        aws_secret_access_key: Some(dlt::Secret::new(SECRET)),
        endpoint_url: Some(format!("http://127.0.0.1:{}", moto.port)),
        ..Default::default()
    };
    // 20 MiB: more than one 8 MiB part (multipart upload)
    let big = dir.path().join("big.bin");
    let data: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&big, &data).unwrap();
    let store = Store::open("s3://parts-bucket/p", &creds, dir.path()).unwrap();
    assert_eq!(store.put_file("x/big.bin", &big).unwrap(), data.len() as u64);
    let back = get_object(moto.port, "parts-bucket", "p/x/big.bin");
    assert_eq!(back.len(), data.len());
    assert!(back == data);
    assert_eq!(store.list("x").unwrap(), ["x/big.bin"]);

    // a bucket that does not exist: a clear, terminal error naming it, no secret in it
    let mut c = FilesystemConfig::new("s3://no-such-bucket-here/x");
    c.credentials = creds.clone();
    let dest: Arc<dyn Destination> = Arc::new(Filesystem::new(c).unwrap());
    let mut p = pipeline(dest, dir.path());
    let e = p.run(Resource::from_values("t", vec![json!({"a": 1})])).unwrap_err();
    let msg = e.to_string();
    eprintln!("missing bucket: {msg}");
    assert!(msg.contains("s3://no-such-bucket-here"), "{msg}");
    assert!(!e.is_transient(), "{msg}");
    assert!(!msg.contains(SECRET), "{msg}");
}

/// Answers every request with S3's 403 for an unknown access key (echoing the key, as S3 does).
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
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access \
                 Key Id you provided does not exist in our records.</Message><AWSAccessKeyId>{KEY_ID}</AWSAccessKeyId>\
                 <Secret>{SECRET}</Secret></Error>"
            );
            let _ = write!(
                s,
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn wrong_credentials_are_a_terminal_error_naming_the_bucket_without_secrets() {
    let port = fake_403_server();
    let dir = tempfile::tempdir().unwrap();
    let dest = build(&env_config(port, "s3://secured-bucket/data"), dir.path()).unwrap();
    let mut p = pipeline(dest, dir.path());
    let e = p.run(Resource::from_values("t", vec![json!({"a": 1})])).unwrap_err();
    let msg = e.to_string();
    eprintln!("wrong credentials: {msg}");
    assert!(msg.contains("s3://secured-bucket/data"), "{msg}");
    assert!(msg.contains("denied") && msg.contains("credentials"), "{msg}");
    assert!(!e.is_transient(), "{msg}");
    assert!(!msg.contains(SECRET) && !msg.contains(KEY_ID), "{msg}");
    assert!(!format!("{e:?}").contains(SECRET));
}
