//! The client against bqemulator (BigQuery's REST API on DuckDB): datasets, statements and
//! query results, errors with BigQuery's message; what was written is read back through the
//! emulator's REST API by the test's own HTTP requests (not this client).
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

#[test]
fn datasets_statements_and_results() {
    let Some(server) = dlt_testkit::services::bqemulator() else { return };
    let c = credentials(&server);
    block_on(async {
        let client = Client::connect(&c).await.unwrap();
        assert!(!client.dataset_exists("ds1").await.unwrap());
        client.create_dataset_if_missing("ds1").await.unwrap();
        client.create_dataset_if_missing("ds1").await.unwrap();
        assert!(client.dataset_exists("ds1").await.unwrap());
        client.query("CREATE TABLE `p1.ds1.t` (id INT64, name STRING, seen BOOL)").await.unwrap();
        client.query("INSERT INTO `p1.ds1.t` VALUES (1, 'ä', TRUE), (2, NULL, FALSE), (3, 'c', NULL)").await.unwrap();
        let r = client.query("SELECT id, name, seen FROM `p1.ds1.t` ORDER BY id").await.unwrap();
        assert_eq!(r.columns, ["id", "name", "seen"]);
        assert_eq!(
            r.rows,
            vec![
                vec![json!("1"), json!("ä"), json!("true")],
                vec![json!("2"), json!(null), json!("false")],
                vec![json!("3"), json!("c"), json!(null)],
            ]
        );
    });
    // the emulator's own REST API, through the test's HTTP requests
    let datasets = server.rest("GET", "datasets/ds1", None);
    assert_eq!(datasets["datasetReference"]["datasetId"], "ds1");
    assert_eq!(server.query("SELECT count(*) FROM `p1.ds1.t`"), vec![vec![json!("3")]]);
}

#[test]
fn errors_carry_bigquerys_message_and_say_whether_to_retry() {
    let Some(server) = dlt_testkit::services::bqemulator() else { return };
    let c = credentials(&server);
    block_on(async {
        let client = Client::connect(&c).await.unwrap();
        let e = client.query("SELECT * FROM `p1.nope.missing`").await.unwrap_err();
        let m = e.to_string();
        assert!(m.contains("SELECT * FROM `p1.nope.missing`") && m.contains("bigquery://p1/US"), "{m}");
        assert!(!e.is_transient(), "{m}");
    });
    // nothing listens on port 1: a transient error naming the endpoint
    let c = Credentials::from_fields(Fields {
        project_id: Some("p1".into()),
        api_endpoint: Some("http://127.0.0.1:1".into()),
        ..Default::default()
    })
    .unwrap();
    let e = block_on(async { Client::connect(&c).await.unwrap().query("SELECT 1").await }).unwrap_err();
    assert!(e.is_transient() && e.to_string().contains("127.0.0.1:1"), "{e}");
}
