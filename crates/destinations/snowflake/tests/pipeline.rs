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

fn pipeline(server: &dlt_testkit::services::FakeSnow, dir: &std::path::Path, name: &str) -> dlt::Pipeline {
    let dest = Snowflake::from_url(&format!(
        "snowflake://loader:pw@testacct/DLT_DATA?host=127.0.0.1&port={}&protocol=http",
        server.port
    ))
    .unwrap();
    dlt::pipeline(name)
        .destination(Arc::new(dest))
        .dataset_name("sf_data")
        .pipelines_dir(dir.join("pipelines"))
        .config(dlt::Config::from_parts(vec![], None, None))
        .build()
        .unwrap()
}

fn resource(rows: Vec<serde_json::Value>, hints: serde_json::Value) -> Source {
    let r =
        Resource::from_values("items", rows).with_hints(dlt_core::resource::ResourceHints::from_json(&hints).unwrap());
    Source::new("src", vec![r])
}

/// Replace (truncate-and-insert) with a nested table, run twice: only the second run's rows are
/// left, in the root and the nested table. (Merge is not run here: its follow-up creates a
/// temporary table inside the load's transaction, which fakesnow 0.12 cannot do — a write to a
/// second DuckDB database in one transaction; see docs/snowflake.md.)
#[test]
fn replace_runs_leave_only_the_last_rows_in_root_and_nested_tables() {
    let Some(server) = dlt_testkit::services::fakesnow() else { return };
    let dir = std::env::temp_dir().join(format!("dlt-snowflake-replace-{}", std::process::id()));
    let mut p = pipeline(&server, &dir, "sf_replace");
    let replace = json!({"write_disposition": "replace"});
    p.run(resource(vec![json!({"id": 1, "v": "a", "tags": ["x", "y"]}), json!({"id": 2, "v": "b"})], replace.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    p.run(resource(vec![json!({"id": 2, "v": "B", "tags": ["z"]}), json!({"id": 3, "v": "c"})], replace))
        .unwrap_or_else(|e| panic!("{e}"));
    let got = server.query("DLT_DATA", "SELECT ID, V FROM SF_DATA.ITEMS ORDER BY ID");
    assert_eq!(got, vec![vec![json!(2), json!("B")], vec![json!(3), json!("c")]]);
    let tags = server.query(
        "DLT_DATA",
        "SELECT i.ID, t.VALUE FROM SF_DATA.ITEMS__TAGS t JOIN SF_DATA.ITEMS i ON t._DLT_PARENT_ID = i._DLT_ID \
         ORDER BY i.ID, t._DLT_LIST_IDX",
    );
    assert_eq!(tags, vec![vec![json!(2), json!("z")]]);
    let loads = server.query("DLT_DATA", "SELECT count(*) FROM SF_DATA._DLT_LOADS WHERE STATUS = 0");
    assert_eq!(loads, vec![vec![json!(2)]]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every dlt type through a whole run, read back by the Python connector: values, the JSON
/// document as a VARIANT object (on fakesnow, which parses the parquet string it copies into a
/// VARIANT column; see docs/snowflake.md), and the column types.
#[test]
fn every_type_round_trips() {
    let Some(server) = dlt_testkit::services::fakesnow() else { return };
    let dir = std::env::temp_dir().join(format!("dlt-snowflake-types-{}", std::process::id()));
    let mut p = pipeline(&server, &dir, "sf_types");
    let hints = json!({"columns": {
        "dec": {"data_type": "decimal", "precision": 10, "scale": 2},
        "doc": {"data_type": "json"},
        "day": {"data_type": "date"},
        "at_ntz": {"data_type": "timestamp", "timezone": false}
    }});
    let rows = vec![json!({
        "i": 42, "f": 1.25, "s": "ü", "b": true, "dec": "12.34",
        "doc": {"a": [1, 2]}, "day": "2024-02-29", "at": "2024-01-02T03:04:05.123456Z",
        "at_ntz": "2024-01-02T03:04:05"
    })];
    p.run(resource(rows, hints)).unwrap_or_else(|e| panic!("{e}"));
    let got = server.query(
        "DLT_DATA",
        "SELECT \"I\", \"F\", \"S\", \"B\", \"DEC\"::VARCHAR, \"DOC\", \"DAY\"::VARCHAR, \"AT\", \"AT_NTZ\" FROM SF_DATA.ITEMS",
    );
    assert_eq!(
        got,
        vec![vec![
            json!(42),
            json!(1.25),
            json!("ü"),
            json!(true),
            json!("12.34"),
            json!("{\"a\":[1,2]}"),
            json!("2024-02-29"),
            json!("2024-01-02 03:04:05.123456+00:00"),
            json!("2024-01-02 03:04:05"),
        ]]
    );
    // the JSON document is a VARIANT object, not a string in one
    let doc = server.query("DLT_DATA", "SELECT \"DOC\":a[1]::INT FROM SF_DATA.ITEMS");
    assert_eq!(doc, vec![vec![json!(2)]]);
    let types = server.query(
        "DLT_DATA",
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'SF_DATA' \
         AND table_name = 'ITEMS' ORDER BY ordinal_position",
    );
    let types: Vec<String> =
        types.iter().map(|r| format!("{}:{}", r[0].as_str().unwrap(), r[1].as_str().unwrap())).collect();
    assert_eq!(
        types,
        [
            "DEC:NUMBER",
            "DOC:VARIANT",
            "DAY:DATE",
            "AT_NTZ:TIMESTAMP_NTZ",
            "I:NUMBER",
            "F:FLOAT",
            "S:TEXT",
            "B:BOOLEAN",
            // fakesnow reports TIMESTAMP_LTZ as TIMESTAMP_TZ
            "AT:TIMESTAMP_TZ",
            "_DLT_LOAD_ID:TEXT",
            "_DLT_ID:TEXT"
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The testkit's conformance suite on fakesnow, read back by the Python connector; `.0`: each
/// package in one transaction (the destination as it is), or with the loader's idempotent
/// protocol instead.
struct SnowflakeTarget(bool);

struct Place(dlt_testkit::services::FakeSnow, bool);

impl dlt_testkit::suite::Target for SnowflakeTarget {
    fn fresh(&self) -> Box<dyn dlt_testkit::suite::Place> {
        Box::new(Place(dlt_testkit::services::fakesnow().expect("fakesnow is installed"), self.0))
    }
}

impl dlt_testkit::suite::Place for Place {
    fn destination(&self) -> Arc<dyn dlt_core::destination::Destination> {
        let d = Snowflake::from_url(&format!(
            "snowflake://loader:pw@testacct/DLT_DATA?host=127.0.0.1&port={}&protocol=http",
            self.0.port
        ))
        .unwrap();
        Arc::new(if self.1 { d } else { d.without_transactions() })
    }

    fn rows(&self, dataset: &str, table: &str, columns: &[&str]) -> Option<dlt_testkit::suite::Rows> {
        let lit = |s: &str| format!("'{}'", s.to_uppercase().replace('\'', "''"));
        let q = |s: &str| format!("\"{}\"", s.to_uppercase().replace('"', "\"\""));
        let exists = self.0.query(
            "DLT_DATA",
            &format!(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = {} AND table_name = {}",
                lit(dataset),
                lit(table)
            ),
        );
        if exists[0][0] == json!(0) {
            return None;
        }
        let cols: Vec<String> = columns.iter().map(|c| format!("TO_VARCHAR({})", q(c))).collect();
        let rows = self.0.query("DLT_DATA", &format!("SELECT {} FROM {}.{}", cols.join(", "), q(dataset), q(table)));
        Some(rows.into_iter().map(|r| r.into_iter().map(|v| v.as_str().map(str::to_string)).collect()).collect())
    }
}

#[test]
fn conformance_suite_on_fakesnow() {
    if dlt_testkit::services::fakesnow().is_none() {
        return;
    }
    // fakesnow 0.12 runs SQL on DuckDB, which cannot write to a second database (its temp
    // catalog) in one transaction: the temporary tables of delete-insert and insert-only and a
    // MERGE inside the load's transaction fail there (HTTP 500), not on Snowflake
    const FAKESNOW: &str = "fakesnow cannot create a temporary table or MERGE inside a transaction";
    let known = [("merge_delete_insert", FAKESNOW), ("merge_upsert", FAKESNOW), ("merge_insert_only", FAKESNOW)];
    let (ran, skipped) = dlt_testkit::suite::run_with_known_failures(&SnowflakeTarget(true), &known);
    assert!(skipped.is_empty(), "Snowflake declares every strategy: {skipped:?}");
    assert_eq!(ran.len() + known.len(), dlt_testkit::suite::cases().len());
}

/// The same suite with the loader's idempotent protocol (no transaction around a package), which
/// fakesnow can run whole: the merge strategies' Snowflake SQL (temporary tables, `MERGE`) runs
/// and is checked here, each statement committed on its own.
#[test]
fn conformance_suite_on_fakesnow_without_transactions() {
    if dlt_testkit::services::fakesnow().is_none() {
        return;
    }
    let (ran, skipped) = dlt_testkit::suite::run(&SnowflakeTarget(false));
    assert!(skipped.is_empty(), "Snowflake declares every strategy: {skipped:?}");
    assert_eq!(ran.len(), dlt_testkit::suite::cases().len());
}
