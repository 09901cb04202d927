//! Whole pipeline runs into bqemulator: extract, normalize, and the shared loader with the
//! BigQuery dialect and connection (load jobs, no transactions); the dataset is read back
//! through the emulator's REST API by the test's own HTTP requests.

use std::sync::Arc;

use dlt_bigquery::{BigQuery, Credentials, Fields};
use dlt_core::resource::{Resource, ResourceHints, Source};
use serde_json::json;

fn pipeline(server: &dlt_testkit::services::BqEmulator, dir: &std::path::Path, name: &str) -> dlt::Pipeline {
    let c = Credentials::from_fields(Fields {
        project_id: Some(server.project.clone()),
        api_endpoint: Some(server.url.clone()),
        ..Default::default()
    })
    .unwrap();
    dlt::pipeline(name)
        .destination(Arc::new(BigQuery::new(c)))
        .dataset_name("bq_data")
        .pipelines_dir(dir.join("pipelines"))
        .config(dlt::Config::from_parts(vec![], None, None))
        .build()
        .unwrap()
}

#[test]
fn an_append_run_loads_rows_nested_tables_and_dlts_system_tables() {
    let Some(server) = dlt_testkit::services::bqemulator() else { return };
    let dir = std::env::temp_dir().join(format!("dlt-bq-pipeline-{}", std::process::id()));
    let mut p = pipeline(&server, &dir, "bq_append");
    let rows = vec![
        json!({"id": 1, "name": "ä", "score": 1.5, "tags": ["x", "y"]}),
        json!({"id": 2, "name": null, "score": 2.0}),
    ];
    let info = p.run(Source::new("src", vec![Resource::from_values("items", rows)])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.row_counts.get("items"), Some(&2), "{info:?}");
    let got = server.query("SELECT id, name, score FROM `p1.bq_data.items` ORDER BY id");
    assert_eq!(got, vec![vec![json!("1"), json!("ä"), json!("1.5")], vec![json!("2"), json!(null), json!("2.0")]]);
    let tags = server.query(
        "SELECT i.id, t.value FROM `p1.bq_data.items__tags` t JOIN `p1.bq_data.items` i ON t._dlt_parent_id = i._dlt_id \
         ORDER BY i.id, t._dlt_list_idx",
    );
    assert_eq!(tags, vec![vec![json!("1"), json!("x")], vec![json!("1"), json!("y")]]);
    let loads = server.query("SELECT schema_name, status FROM `p1.bq_data._dlt_loads`");
    assert_eq!(loads, vec![vec![json!("src"), json!("0")]]);
    assert_eq!(server.query("SELECT count(*) FROM `p1.bq_data._dlt_version`"), vec![vec![json!("1")]]);
    // a second run appends
    let rows = vec![json!({"id": 3, "name": "c", "score": 3.0})];
    p.run(Source::new("src", vec![Resource::from_values("items", rows)])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.query("SELECT count(*) FROM `p1.bq_data.items`"), vec![vec![json!("3")]]);
    assert_eq!(server.query("SELECT count(*) FROM `p1.bq_data._dlt_loads`"), vec![vec![json!("2")]]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_merge_run_updates_by_primary_key() {
    let Some(server) = dlt_testkit::services::bqemulator() else { return };
    let dir = std::env::temp_dir().join(format!("dlt-bq-merge-{}", std::process::id()));
    let mut p = pipeline(&server, &dir, "bq_merge");
    let hints = ResourceHints::from_json(&json!({"write_disposition": "merge", "primary_key": "id"})).unwrap();
    let run = |p: &mut dlt::Pipeline, rows: Vec<serde_json::Value>| {
        let r = Resource::from_values("items", rows).with_hints(hints.clone());
        p.run(Source::new("src", vec![r])).unwrap_or_else(|e| panic!("{e}"))
    };
    run(&mut p, vec![json!({"id": 1, "v": "a", "tags": ["x"]}), json!({"id": 2, "v": "b", "tags": ["y"]})]);
    run(&mut p, vec![json!({"id": 2, "v": "B", "tags": ["z", "w"]}), json!({"id": 3, "v": "c"})]);
    let got = server.query("SELECT id, v FROM `p1.bq_data.items` ORDER BY id");
    assert_eq!(got, vec![vec![json!("1"), json!("a")], vec![json!("2"), json!("B")], vec![json!("3"), json!("c")]]);
    let tags = server.query(
        "SELECT i.id, t.value FROM `p1.bq_data.items__tags` t JOIN `p1.bq_data.items` i ON t._dlt_root_id = i._dlt_id \
         ORDER BY i.id, t._dlt_list_idx",
    );
    assert_eq!(tags, vec![vec![json!("1"), json!("x")], vec![json!("2"), json!("z")], vec![json!("2"), json!("w")]]);
    let _ = std::fs::remove_dir_all(&dir);
}
