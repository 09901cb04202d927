//! The filesystem → DuckDB mirror of `--destination filesystem` (`dlt_conformance::fs_mirror`):
//! a pipeline loads typed, nested data into a local bucket folder; the mirror's dump must show
//! the DuckDB types of dlt's mapping, the exact values read from the parquet files, the system
//! tables from dlt's files, and must refuse files whose types differ from what the destination
//! writes and leave out files that journals hide.

use dlt_conformance::fs_mirror::dump_filesystem;
use serde_json::{Value, json};
use std::path::Path;

fn load(bucket: &Path, pipelines: &Path, rows: Vec<Value>, wd: &str) {
    let dest = dlt::destinations::filesystem(&bucket.to_string_lossy()).unwrap();
    let mut p = dlt::pipeline("p")
        .destination(dest)
        .dataset_name("ds")
        .pipelines_dir(pipelines)
        .config(dlt::Config::from_parts(vec![], None, None))
        .build()
        .unwrap();
    let hints = dlt::ResourceHints::from_json(&json!({
        "write_disposition": wd,
        "columns": {
            "doc": {"data_type": "json"},
            "amount": {"data_type": "decimal", "precision": 10, "scale": 2},
            "id": {"nullable": false},
        }
    }))
    .unwrap();
    p.run(vec![dlt::Resource::from_values("things", rows).with_hints(hints)]).unwrap();
}

fn table<'a>(dump: &'a Value, name: &str) -> &'a Value {
    dump["datasets"]["ds"]["tables"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap()
}

fn columns(t: &Value) -> Vec<(String, String, bool)> {
    t["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().into(),
                c["data_type"].as_str().unwrap().into(),
                c["nullable"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn parquet_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    v.sort();
    v
}

#[test]
fn types_values_and_system_tables() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    let pipelines = dir.path().join("pipelines");
    load(
        &bucket,
        &pipelines,
        vec![
            json!({"id": 1, "name": "a", "score": 1.5, "ok": true, "at": "2024-01-02T03:04:05.123456Z",
                   "day": "2024-02-29", "amount": "12.34", "doc": {"k": [1, 2]}, "tags": ["x", "y"]}),
            json!({"id": 2, "name": null, "score": -0.0, "ok": false, "at": "2024-01-02T05:04:05+02:00",
                   "day": "1999-12-31", "amount": 0.5, "doc": null, "tags": []}),
        ],
        "append",
    );
    let dump = dump_filesystem(&bucket, &["ds".into(), "absent".into()], None, None).unwrap();
    assert_eq!(dump["datasets"]["absent"], json!({"exists": false}));
    let t = table(&dump, "things");
    let s = |n: &str, ty: &str, nullable: bool| (n.to_string(), ty.to_string(), nullable);
    assert_eq!(
        columns(t),
        vec![
            // hinted columns first, in the order of the hints
            s("doc", "JSON", true),
            s("amount", "DECIMAL(10,2)", true),
            s("id", "BIGINT", false),
            s("name", "VARCHAR", true),
            s("score", "DOUBLE", true),
            s("ok", "BOOLEAN", true),
            s("at", "TIMESTAMP WITH TIME ZONE", true),
            s("day", "VARCHAR", true),
            s("_dlt_load_id", "VARCHAR", false),
            s("_dlt_id", "VARCHAR", false),
        ]
    );
    assert_eq!(
        t["rows"],
        json!([
            // the dump's canonical row order; the +02:00 time in UTC
            [null, {"$decimal": "0.50"}, 2, null, -0.0, false, "2024-01-02T03:04:05.000000Z", "1999-12-31", "L1", "R1"],
            [{"$json": {"k": [1, 2]}}, {"$decimal": "12.34"}, 1, "a", 1.5, true, "2024-01-02T03:04:05.123456Z", "2024-02-29", "L1", "R2"]
        ])
    );
    let tags = table(&dump, "things__tags");
    assert_eq!(tags["rows"], json!([["x", "R2", 0, "R2.0"], ["y", "R2", 1, "R2.1"]]));
    let sys = &dump["datasets"]["ds"]["system"];
    assert_eq!(sys["_dlt_loads"]["loads"], json!([{"load": "L1", "schema_name": "p", "status": 0}]));
    assert_eq!(sys["_dlt_version"]["count"], json!(1));
    assert_eq!(sys["_dlt_pipeline_state"]["count"], json!(1));
    assert_eq!(
        sys["_dlt_loads"]["columns"][3],
        json!({"name": "inserted_at", "data_type": "TIMESTAMP WITH TIME ZONE", "nullable": false})
    );

    // a second load that replaces the table: old files gone, one more load and state row
    load(&bucket, &pipelines, vec![json!({"id": 3, "name": "c", "extra": 7})], "replace");
    let dump = dump_filesystem(&bucket, &["ds".into()], None, None).unwrap();
    let t = table(&dump, "things");
    assert_eq!(columns(t).last().unwrap().0, "extra", "a new column comes last, as ALTER TABLE adds it");
    let rows = t["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][2], json!(3));
    assert_eq!(rows[0][rows[0].as_array().unwrap().len() - 1], json!(7));
    assert_eq!(table(&dump, "things__tags")["row_count"], json!(0), "the replaced child table is empty");
    let sys = &dump["datasets"]["ds"]["system"];
    assert_eq!(sys["_dlt_loads"]["count"], json!(2));
    let state_files = std::fs::read_dir(bucket.join("ds/_dlt_pipeline_state")).unwrap().count();
    assert_eq!(sys["_dlt_pipeline_state"]["count"], json!(state_files), "a row per state file");
}

#[test]
fn wrong_parquet_type_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    load(&bucket, &dir.path().join("pipelines"), vec![json!({"id": 1, "name": "a"})], "append");
    let file = parquet_files(&bucket.join("ds/things")).remove(0);
    // the same file with `id` as text
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let f = file.to_string_lossy().to_string();
    let tmp = format!("{f}.tmp");
    conn.execute_batch(&format!(
        "COPY (SELECT CAST(id AS VARCHAR) AS id, * EXCLUDE (id) FROM read_parquet('{f}')) TO '{tmp}' (FORMAT parquet)"
    ))
    .unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let e = dump_filesystem(&bucket, &["ds".into()], None, None).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("column id is VARCHAR, but the filesystem destination writes dlt type bigint as BIGINT"),
        "{msg}"
    );
}

#[test]
fn journals_hide_uncommitted_and_replaced_files() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    load(&bucket, &dir.path().join("pipelines"), vec![json!({"id": 1, "name": "a"})], "append");
    let tdir = bucket.join("ds/things");
    let committed = parquet_files(&tdir).remove(0);
    let committed_name = committed.file_name().unwrap().to_string_lossy().to_string();
    // a file of a package that never committed (no _dlt_loads file for its load id)
    let stray = tdir.join("1000.abc.parquet");
    std::fs::copy(&committed, &stray).unwrap();
    std::fs::create_dir_all(bucket.join("ds/_dlt_journal")).unwrap();
    std::fs::write(
        bucket.join("ds/_dlt_journal/1000.json"),
        json!({"load_id": "1000", "schema_name": "p", "adds": ["things/1000.abc.parquet"], "deletes": []}).to_string(),
    )
    .unwrap();
    let dump = dump_filesystem(&bucket, &["ds".into()], None, None).unwrap();
    assert_eq!(table(&dump, "things")["row_count"], json!(1));
    // a committed package that replaced the table but has not deleted the old file yet
    let load_id = std::fs::read_dir(bucket.join("ds/_dlt_loads"))
        .unwrap()
        .map(|e| {
            e.unwrap().file_name().to_string_lossy().trim_end_matches(".jsonl").rsplit("__").next().unwrap().to_string()
        })
        .next()
        .unwrap();
    std::fs::write(
        bucket.join(format!("ds/_dlt_journal/{load_id}.json")),
        json!({"load_id": load_id, "schema_name": "p", "adds": [], "deletes": [format!("things/{committed_name}")]})
            .to_string(),
    )
    .unwrap();
    let dump = dump_filesystem(&bucket, &["ds".into()], None, None).unwrap();
    assert_eq!(table(&dump, "things")["row_count"], json!(0));
}
