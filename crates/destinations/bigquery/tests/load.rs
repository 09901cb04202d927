//! Load jobs from local files against bqemulator (resumable upload, polling, a failing job's
//! errors), read back through the emulator's REST API by the test's own HTTP requests; and the
//! duplicate-job path, which the emulator cannot take, against a server in the test that answers
//! as BigQuery documents it.
//!
//! Under `CI=true` a missing bqemulator fails the tests (`cargo xtask test` installs it).

use dlt_bigquery::{Client, Credentials, Fields};
use dlt_core::runtime::block_on;
use serde_json::json;

fn credentials(server: &dlt_testkit::services::BqEmulator) -> Credentials {
    Credentials::from_fields(Fields {
        project_id: Some(server.project.clone()),
        api_endpoint: Some(server.url.clone()),
        ..Default::default()
    })
    .unwrap()
}

/// A JSONL job file loaded by a load job (resumable upload, then polling), twice; a job that
/// fails reports BigQuery's error. (bqemulator gives every job an id of its own instead of the
/// one asked for, so a repeated id is a new job there; the duplicate-id path is tested below
/// against a server that answers as BigQuery documents it.)
#[test]
fn load_jobs_upload_a_file_and_report_failures() {
    let Some(server) = dlt_testkit::services::bqemulator() else { return };
    let c = credentials(&server);
    let dir = std::env::temp_dir().join(format!("dlt-bq-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("items.abc.0.jsonl");
    std::fs::write(&file, "{\"id\": 1, \"name\": \"a\"}\n{\"id\": 2, \"name\": null}\n").unwrap();
    block_on(async {
        let client = Client::connect(&c).await.unwrap();
        client.create_dataset_if_missing("ds").await.unwrap();
        client.query("CREATE TABLE `p1.ds.items` (id INT64, name STRING)").await.unwrap();
        let id = dlt_bigquery::job_id("1712.5", "items.abc.0.jsonl");
        client.load_file("ds", "items", &file, dlt_bigquery::SourceFormat::Jsonl, &id).await.unwrap();
        let retried = dlt_bigquery::job_id("1712.5", "items.abc.1.jsonl");
        client.load_file("ds", "items", &file, dlt_bigquery::SourceFormat::Jsonl, &retried).await.unwrap();
        // a job that fails: a row that does not fit the table
        std::fs::write(&file, "{\"id\": \"not a number\"}\n").unwrap();
        let e =
            client.load_file("ds", "items", &file, dlt_bigquery::SourceFormat::Jsonl, "dlt_bad_job").await.unwrap_err();
        assert!(e.to_string().contains("dlt_bad_job") && !e.is_transient(), "{e}");
    });
    let rows = server.query("SELECT id, name FROM `p1.ds.items` ORDER BY id, name");
    assert_eq!(
        rows,
        vec![
            vec![json!("1"), json!("a")],
            vec![json!("1"), json!("a")],
            vec![json!("2"), json!(null)],
            vec![json!("2"), json!(null)],
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server answering BigQuery's way for the duplicate-job path: the upload session's `POST`
/// gets 409 (the job id exists), the job's `GET` says it is done. Returns its URL and the
/// requests it saw.
fn duplicate_job_server() -> (String, dlt_testkit::recorder::Seen) {
    dlt_testkit::recorder::serve(|r| {
        if r.method == "POST" && r.path.starts_with("/upload/") {
            let body = r#"{"error":{"code":409,"message":"Already Exists: Job p1:US.dlt_x","errors":[{"reason":"duplicate"}]}}"#;
            ("409 Conflict".into(), body.into())
        } else {
            let body = r#"{"kind":"bigquery#job","jobReference":{"projectId":"p1","jobId":"dlt_x"},"status":{"state":"DONE"}}"#;
            ("200 OK".into(), body.into())
        }
    })
}

#[test]
fn a_job_id_that_exists_is_waited_for_not_run_again() {
    let (url, seen) = duplicate_job_server();
    let c = Credentials::from_fields(Fields {
        project_id: Some("p1".into()),
        api_endpoint: Some(url),
        ..Default::default()
    })
    .unwrap();
    let file = std::env::temp_dir().join(format!("dlt-bq-dup-{}.jsonl", std::process::id()));
    std::fs::write(&file, "{\"id\": 1}\n").unwrap();
    block_on(async {
        let client = Client::connect(&c).await.unwrap();
        client.load_file("ds", "items", &file, dlt_bigquery::SourceFormat::Jsonl, "dlt_x").await.unwrap();
    });
    let seen: Vec<String> = seen.lock().unwrap().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert!(seen[0].starts_with("POST /upload/bigquery/v2/projects/p1/jobs?uploadType=resumable"), "{seen:?}");
    // no upload of the file: the existing job is read instead
    assert!(seen.iter().all(|l| !l.starts_with("PUT ")), "{seen:?}");
    assert!(seen.iter().any(|l| l.starts_with("GET /bigquery/v2/projects/p1/jobs/dlt_x")), "{seen:?}");
    let _ = std::fs::remove_file(&file);
}
