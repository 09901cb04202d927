//! A whole pipeline run into fakesnow: extract, normalize and the shared loader with the
//! Snowflake dialect and connection; the dataset is read back by Snowflake's Python connector.

use std::sync::Arc;

use dlt_core::resource::{Resource, Source};
use dlt_snowflake::Snowflake;
use serde_json::json;

#[test]
fn an_append_run_loads_rows_and_dlts_system_tables() {
    let Some(server) = dlt_testkit::services::fakesnow() else { return };
    let dir = std::env::temp_dir().join(format!("dlt-snowflake-pipeline-{}", std::process::id()));
    let dest = Snowflake::from_url(&format!(
        "snowflake://loader:pw@testacct/DLT_DATA?host=127.0.0.1&port={}&protocol=http",
        server.port
    ))
    .unwrap();
    let mut p = dlt::pipeline("sf_append")
        .destination(Arc::new(dest))
        .dataset_name("sf_data")
        .pipelines_dir(dir.join("pipelines"))
        .config(dlt::Config::from_parts(vec![], None, None))
        .build()
        .unwrap();
    let rows = vec![json!({"id": 1, "name": "ä", "score": 1.5}), json!({"id": 2, "name": null, "score": 2.0})];
    let src = Source::new("src", vec![Resource::from_values("items", rows)]);
    let info = p.run(src).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.row_counts.get("items"), Some(&2), "{info:?}");
    let got = server.query("DLT_DATA", "SELECT ID, NAME, SCORE FROM SF_DATA.ITEMS ORDER BY ID");
    assert_eq!(got, vec![vec![json!(1), json!("ä"), json!(1.5)], vec![json!(2), json!(null), json!(2.0)]]);
    let loads = server.query("DLT_DATA", "SELECT SCHEMA_NAME, STATUS FROM SF_DATA._DLT_LOADS");
    assert_eq!(loads, vec![vec![json!("src"), json!(0)]]);
    let versions = server.query("DLT_DATA", "SELECT count(*) FROM SF_DATA._DLT_VERSION");
    assert_eq!(versions, vec![vec![json!(1)]]);
    let _ = std::fs::remove_dir_all(&dir);
}
