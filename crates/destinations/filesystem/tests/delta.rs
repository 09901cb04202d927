//! Delta tables written by the filesystem destination (`table_format = "delta"`), read back with
//! an independent reader: Python `deltalake==1.6.6` (delta-rs' Python package) with pyarrow, from
//! the virtualenv `cargo xtask test` installs (`DLT_TEST_DELTALAKE_PYTHON`, else
//! `$DLT_RS_CACHE/delta/bin/python`). Without it the tests skip, except under `CI=true`.
//!
//! Checked: create, append, replace (overwrite), schema evolution (a new column), partitioning by
//! a `partition` column hint, nested tables, exact values and Delta/Arrow types, the commit
//! history, a per-table `table_format` from an imported schema, the idempotent retry of a
//! package, the clear error for `merge` into plain files, and merges into Delta tables (upsert,
//! delete-insert, insert-only; nested tables, hard deletes, duplicate keys, partitions, S3).
#![cfg(feature = "delta")]

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::{create_s3_bucket, deltalake_python, start_moto};
use dlt::{Resource, ResourceHints};
use serde_json::{Value, json};

const READER: &str = r#"
import datetime, decimal, json, os, sys
import deltalake
dt = deltalake.DeltaTable(sys.argv[1], storage_options=json.loads(sys.argv[2]) or None)
t = dt.to_pyarrow_table()
def conv(v):
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return {"$decimal": str(v)}
    if isinstance(v, bytes):
        return {"$bytes": v.hex()}
    return v
rows = [{k: conv(v) for k, v in r.items()} for r in t.to_pylist()]
rows.sort(key=lambda r: json.dumps(r, sort_keys=True))
fields = json.loads(dt.schema().to_json())["fields"]
print(json.dumps({
    "version": dt.version(),
    "schema": [[f["name"], f["type"], f["nullable"]] for f in fields],
    "arrow": {f.name: str(f.type) for f in t.schema},
    "partition_columns": list(dt.metadata().partition_columns),
    "rows": rows,
    "files": sorted(u.split("/" + sys.argv[3] + "/", 1)[-1] for u in dt.file_uris()),
    "history": [[h.get("operation"), (h.get("operationParameters") or {}).get("mode"), h.get("dlt_load_id")]
                for h in reversed(dt.history())],
    "txn": dt.transaction_version("dlt-rs"),
}))
# skip the interpreter's teardown: pyarrow's and delta-rs' thread pools sometimes abort there
# ("terminate called without an active exception") after everything was printed
sys.stdout.flush()
os._exit(0)
"#;

/// Reads the Delta table `<bucket>/<dataset>/<table>` with Python deltalake.
fn read_delta(py: &Path, uri: &str, table: &str, storage_options: Value) -> Value {
    let out = Command::new(py).args(["-c", READER, uri, &storage_options.to_string(), table]).output().unwrap();
    assert!(out.status.success(), "python deltalake failed on {uri}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn pipeline(bucket: &Path, dir: &Path, table_format: Option<&str>) -> dlt::Pipeline {
    let mut c = dlt_filesystem::FilesystemConfig::new(bucket.to_string_lossy());
    c.table_format = table_format.map(str::to_string);
    let dest = std::sync::Arc::new(dlt_filesystem::Filesystem::new(c).unwrap());
    pipeline_to(dest, dir, None)
}

fn pipeline_to(dest: std::sync::Arc<dyn dlt::Destination>, dir: &Path, import: Option<&Path>) -> dlt::Pipeline {
    let mut b = dlt::pipeline("dp")
        .destination(dest)
        .dataset_name("lake")
        .pipelines_dir(dir.join("pipelines"))
        .config(dlt::Config::from_parts(vec![], None, None));
    if let Some(i) = import {
        b = b.import_schema_path(i);
    }
    b.build().unwrap()
}

fn resource(name: &str, rows: Vec<Value>, hints: Value) -> Resource {
    Resource::from_values(name, rows).with_hints(ResourceHints::from_json(&hints).unwrap())
}

fn uri(bucket: &Path, table: &str) -> String {
    bucket.join("lake").join(table).to_string_lossy().to_string()
}

fn events_hints(wd: &str) -> Value {
    json!({
        "write_disposition": wd,
        "columns": {
            "id": {"data_type": "bigint", "nullable": false},
            "amount": {"data_type": "decimal", "precision": 10, "scale": 2},
            "doc": {"data_type": "json"},
            "at_local": {"data_type": "timestamp", "timezone": false},
            "clock": {"data_type": "time"},
            "day": {"data_type": "date"},
        }
    })
}

#[test]
fn create_append_evolve_replace() {
    let Some(py) = deltalake_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    let mut p = pipeline(&bucket, dir.path(), Some("delta"));

    // 1. create: a new table with every type, and a nested table
    let rows = vec![
        json!({"id": 1, "name": "a", "score": 1.5, "ok": true, "at": "2024-01-02T03:04:05.123456Z",
               "at_local": "2024-01-02T03:04:05", "clock": "12:30:00.5", "day": "2024-02-29",
               "amount": "12.34", "doc": {"k": [1, 2]}, "tags": ["x", "y"]}),
        json!({"id": 2, "name": null, "score": -0.25, "ok": false, "at": "2024-01-02T05:04:05+02:00",
               "at_local": null, "clock": null, "day": "1999-12-31", "amount": 0.5, "doc": null, "tags": []}),
    ];
    p.run(vec![resource("events", rows, events_hints("append"))]).unwrap();
    let r = read_delta(&py, &uri(&bucket, "events"), "events", json!({}));
    assert_eq!(
        r["schema"],
        json!([
            ["id", "long", false],
            ["amount", "decimal(10,2)", true],
            ["doc", "string", true],
            ["at_local", "timestamp_ntz", true],
            ["clock", "string", true],
            ["day", "date", true],
            ["name", "string", true],
            ["score", "double", true],
            ["ok", "boolean", true],
            ["at", "timestamp", true],
            ["_dlt_load_id", "string", false],
            ["_dlt_id", "string", false]
        ]),
        "{r}"
    );
    assert_eq!(r["arrow"]["at"], json!("timestamp[us, tz=UTC]"));
    assert_eq!(r["arrow"]["at_local"], json!("timestamp[us]"));
    assert_eq!(r["arrow"]["amount"], json!("decimal128(10, 2)"));
    let mut data: Vec<Value> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let mut o = row.as_object().unwrap().clone();
            assert!(o.remove("_dlt_id").unwrap().as_str().is_some_and(|s| !s.is_empty()));
            assert!(o.remove("_dlt_load_id").unwrap().as_str().is_some());
            Value::Object(o)
        })
        .collect();
    data.sort_by_key(|r| r["id"].as_i64());
    assert_eq!(
        data,
        vec![
            json!({"id": 1, "amount": {"$decimal": "12.34"}, "doc": "{\"k\":[1,2]}", "at_local": "2024-01-02T03:04:05",
                   "clock": "12:30:00.500000", "day": "2024-02-29", "name": "a", "score": 1.5, "ok": true,
                   "at": "2024-01-02T03:04:05.123456+00:00"}),
            json!({"id": 2, "amount": {"$decimal": "0.50"}, "doc": null, "at_local": null, "clock": null,
                   "day": "1999-12-31", "name": null, "score": -0.25, "ok": false, "at": "2024-01-02T03:04:05+00:00"}),
        ]
    );
    assert_eq!(
        r["history"].as_array().unwrap().iter().map(|h| h[0].clone()).collect::<Vec<_>>(),
        vec![json!("CREATE TABLE"), json!("WRITE")]
    );
    let load1 = r["history"][1][2].as_str().unwrap().to_string();
    assert!(r["txn"].as_i64().is_some(), "the data commit carries dlt-rs' application transaction: {r}");
    let tags = read_delta(&py, &uri(&bucket, "events__tags"), "events__tags", json!({}));
    let mut values: Vec<(i64, String)> = tags["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["_dlt_list_idx"].as_i64().unwrap(), r["value"].as_str().unwrap().to_string()))
        .collect();
    values.sort();
    assert_eq!(values, vec![(0, "x".to_string()), (1, "y".to_string())]);
    assert_eq!(tags["schema"][0], json!(["value", "string", true]));

    // 2. append with a new column: the column is added, old rows read it as null
    p.run(vec![resource(
        "events",
        vec![json!({"id": 3, "name": "c", "extra": 7, "day": "2024-03-01"})],
        events_hints("append"),
    )])
    .unwrap();
    let r = read_delta(&py, &uri(&bucket, "events"), "events", json!({}));
    assert_eq!(r["schema"].as_array().unwrap().last().unwrap(), &json!(["extra", "long", true]));
    let ids_extra: Vec<(i64, Value)> =
        r["rows"].as_array().unwrap().iter().map(|r| (r["id"].as_i64().unwrap(), r["extra"].clone())).collect();
    let mut ids_extra = ids_extra;
    ids_extra.sort_by_key(|x| x.0);
    assert_eq!(ids_extra, vec![(1, Value::Null), (2, Value::Null), (3, json!(7))]);
    let ops: Vec<Value> = r["history"].as_array().unwrap().iter().map(|h| h[0].clone()).collect();
    assert_eq!(ops, vec![json!("CREATE TABLE"), json!("WRITE"), json!("ADD COLUMN"), json!("WRITE")]);

    // 3. replace: one overwrite commit, only the new rows remain (nested table too)
    p.run(vec![resource("events", vec![json!({"id": 9, "name": "z", "tags": ["q"]})], events_hints("replace"))])
        .unwrap();
    let r = read_delta(&py, &uri(&bucket, "events"), "events", json!({}));
    assert_eq!(r["rows"].as_array().unwrap().len(), 1);
    assert_eq!(r["rows"][0]["id"], json!(9));
    assert_eq!(r["rows"][0]["extra"], Value::Null);
    let last = r["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last[0], json!("WRITE"));
    assert_eq!(last[1], json!("Overwrite"));
    assert_ne!(last[2], json!(load1));
    let tags = read_delta(&py, &uri(&bucket, "events__tags"), "events__tags", json!({}));
    assert_eq!(tags["rows"].as_array().unwrap().len(), 1);
    assert_eq!(tags["rows"][0]["value"], json!("q"));

    // 4. a replace without rows empties the tables
    p.run(vec![resource("events", vec![], events_hints("replace"))]).unwrap();
    let r = read_delta(&py, &uri(&bucket, "events"), "events", json!({}));
    assert_eq!(r["rows"], json!([]));
    assert_eq!(r["files"], json!([]));

    // dlt-rs' own reader sees the Delta tables' current files only
    p.run(vec![resource("events", vec![json!({"id": 10, "name": "n"})], events_hints("append"))]).unwrap();
    let batches = p.read_table("events").unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
}

#[test]
fn partitioned_table() {
    let Some(py) = deltalake_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    let mut p = pipeline(&bucket, dir.path(), Some("delta"));
    let hints = json!({"columns": {"region": {"data_type": "text", "partition": true}}});
    let rows = vec![
        json!({"id": 1, "region": "eu"}),
        json!({"id": 2, "region": "us"}),
        json!({"id": 3, "region": "eu"}),
        json!({"id": 4, "region": null}),
    ];
    p.run(vec![resource("sales", rows, hints.clone())]).unwrap();
    p.run(vec![resource(
        "sales",
        vec![json!({"id": 5, "region": "us"}), json!({"id": 6, "region": "north america/1"})],
        hints,
    )])
    .unwrap();
    let r = read_delta(&py, &uri(&bucket, "sales"), "sales", json!({}));
    assert_eq!(r["partition_columns"], json!(["region"]));
    let files: Vec<String> = r["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
    assert_eq!(files.len(), 5, "{files:?}");
    assert_eq!(files.iter().filter(|f| f.starts_with("region=eu/")).count(), 1, "{files:?}");
    assert_eq!(files.iter().filter(|f| f.starts_with("region=us/")).count(), 2, "{files:?}");
    assert_eq!(files.iter().filter(|f| f.starts_with("region=__HIVE_DEFAULT_PARTITION__/")).count(), 1, "{files:?}");
    let mut got: Vec<(i64, Value)> =
        r["rows"].as_array().unwrap().iter().map(|r| (r["id"].as_i64().unwrap(), r["region"].clone())).collect();
    got.sort_by_key(|x| x.0);
    assert_eq!(
        got,
        vec![
            (1, json!("eu")),
            (2, json!("us")),
            (3, json!("eu")),
            (4, Value::Null),
            (5, json!("us")),
            (6, json!("north america/1"))
        ]
    );
    // dlt-rs' reader gets the partition column from the folders
    let batches = p.read_table("sales").unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 6);
    let mut c = p.sql_client().unwrap();
    let b =
        c.query("SELECT string_agg(coalesce(CAST(region AS VARCHAR), 'NULL'), '|' ORDER BY id) FROM sales").unwrap();
    let got = arrow::util::display::array_value_to_string(b[0].column(0), 0).unwrap();
    assert_eq!(got, "eu|us|eu|NULL|us|north america/1");
}

#[test]
fn table_format_from_the_schema_and_plain_merge_error() {
    let Some(py) = deltalake_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    // no table_format in the configuration: only the table the imported schema marks is Delta
    let import = dir.path().join("import");
    std::fs::create_dir_all(&import).unwrap();
    let mut schema = dlt::Schema::new("dp");
    let mut t = dlt::Table::new("lakey");
    t.table_format = Some("delta".into());
    schema.tables.insert("lakey".into(), t);
    std::fs::write(import.join("dp.schema.yaml"), schema.to_pretty_yaml()).unwrap();
    let dest = std::sync::Arc::new(dlt_filesystem::Filesystem::at(bucket.to_string_lossy()).unwrap());
    let mut p = pipeline_to(dest, dir.path(), Some(&import));
    p.run(vec![
        resource("lakey", vec![json!({"id": 1})], json!({})),
        resource("plain", vec![json!({"id": 2})], json!({})),
    ])
    .unwrap();
    let r = read_delta(&py, &uri(&bucket, "lakey"), "lakey", json!({}));
    assert_eq!(r["rows"].as_array().unwrap().len(), 1);
    let plain: Vec<_> = std::fs::read_dir(bucket.join("lake/plain")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(plain.iter().all(|n| n.to_string_lossy().ends_with(".parquet")), "{plain:?}");

    // merge into a plain-file table: a clear error, nothing written (not even to the Delta table)
    let before = read_delta(&py, &uri(&bucket, "lakey"), "lakey", json!({}))["version"].clone();
    let e = p
        .run(vec![
            resource("lakey", vec![json!({"id": 1})], json!({})),
            resource("plain", vec![json!({"id": 2})], json!({"write_disposition": "merge", "primary_key": "id"})),
        ])
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("resource `plain` has write_disposition `merge`, which the filesystem destination does only for table_format delta"),
        "{msg}"
    );
    // found before loading: the package is gone, the next run is not blocked
    assert!(!e.is_transient() && !p.has_pending_packages().unwrap(), "{msg}");
    assert_eq!(read_delta(&py, &uri(&bucket, "lakey"), "lakey", json!({}))["version"], before);
}

#[test]
fn table_format_as_a_resource_hint() {
    let Some(py) = deltalake_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    // no table_format in the configuration: the resource's hint makes its table Delta
    let dest = std::sync::Arc::new(dlt_filesystem::Filesystem::at(bucket.to_string_lossy()).unwrap());
    let mut p = pipeline_to(dest, dir.path(), None);
    p.run(vec![
        resource("hinted", vec![json!({"id": 1}), json!({"id": 2})], json!({"table_format": "delta"})),
        resource("plain", vec![json!({"id": 3})], json!({})),
    ])
    .unwrap();
    let r = read_delta(&py, &uri(&bucket, "hinted"), "hinted", json!({}));
    assert_eq!(r["rows"].as_array().unwrap().len(), 2, "{r}");
    assert!(bucket.join("lake/hinted/_delta_log").is_dir());
    let plain: Vec<_> = std::fs::read_dir(bucket.join("lake/plain")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(plain.iter().all(|n| n.to_string_lossy().ends_with(".parquet")), "{plain:?}");
}

#[test]
fn unknown_table_format_is_a_config_error() {
    let mut c = dlt_filesystem::FilesystemConfig::new("/tmp/unused-bucket-dlt-rs");
    c.table_format = Some("iceberg".into());
    let e = dlt_filesystem::Filesystem::new(c).unwrap_err();
    assert!(e.to_string().contains("table_format `iceberg` is not supported"), "{e}");
}

const CHILD_ENV: &str = "DLT_DELTA_TEST_CHILD_ROOT";

/// Runs only as the subprocess of the retry test: appends to the Delta table and dies at
/// `DLT_FAULT` (after the Delta commit, before the package commits).
#[test]
fn crash_child() {
    let Some(root) = std::env::var_os(CHILD_ENV) else { return };
    let root = PathBuf::from(root);
    let mut p = pipeline(&root.join("bucket"), &root, Some("delta"));
    p.run(vec![resource("events", vec![json!({"id": 2}), json!({"id": 3})], json!({}))]).unwrap();
    unreachable!("DLT_FAULT should have stopped the process");
}

#[test]
fn retried_package_writes_once() {
    let Some(py) = deltalake_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    pipeline(&bucket, dir.path(), Some("delta"))
        .run(vec![resource("events", vec![json!({"id": 1})], json!({}))])
        .unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .env("DLT_FAULT", "load.in_transaction")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("DLT_FAULT: aborting at load.in_transaction"), "{stderr}");
    // the Delta commit happened, the package did not commit (no _dlt_loads file for it)
    let r = read_delta(&py, &uri(&bucket, "events"), "events", json!({}));
    assert_eq!(r["rows"].as_array().unwrap().len(), 3);
    assert_eq!(std::fs::read_dir(bucket.join("lake/_dlt_loads")).unwrap().count(), 1);
    // the retry commits the package without writing the rows again
    let mut p = pipeline(&bucket, dir.path(), Some("delta"));
    assert!(p.has_pending_packages().unwrap());
    p.load().unwrap();
    assert!(!p.has_pending_packages().unwrap());
    let r = read_delta(&py, &uri(&bucket, "events"), "events", json!({}));
    let mut ids: Vec<i64> = r["rows"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(std::fs::read_dir(bucket.join("lake/_dlt_loads")).unwrap().count(), 2);
    let writes = r["history"].as_array().unwrap().iter().filter(|h| h[0] == "WRITE").count();
    assert_eq!(writes, 2, "{}", r["history"]);
}

/// A Delta-table filesystem destination on the moto bucket `lakehouse` at `endpoint`.
fn s3_delta_config(endpoint: &str, extra: &[(&str, &str)]) -> dlt::Config {
    let env: Vec<(String, String)> = [
        ("DESTINATION__FILESYSTEM__BUCKET_URL", "s3://lakehouse/base"),
        ("DESTINATION__FILESYSTEM__TABLE_FORMAT", "delta"),
        ("DESTINATION__FILESYSTEM__CREDENTIALS__AWS_ACCESS_KEY_ID", "AKIAMOTOKEY"),
        ("DESTINATION__FILESYSTEM__CREDENTIALS__AWS_SECRET_ACCESS_KEY", "moto-secret"),
        ("DESTINATION__FILESYSTEM__CREDENTIALS__ENDPOINT_URL", endpoint),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    dlt::Config::from_parts(env, None, None)
}

fn build_destination(cfg: &dlt::Config, run_dir: &Path) -> std::sync::Arc<dyn dlt::Destination> {
    dlt::registry()
        .destination("filesystem")
        .unwrap()
        .build(&dlt::DestinationContext { pipeline_name: "dp", config: cfg, run_dir, explicit: None })
        .unwrap()
}

#[test]
fn delta_on_s3() {
    let Some(py) = deltalake_python() else { return };
    let Some(moto) = start_moto() else { return };
    create_s3_bucket(moto.port, "lakehouse");
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let cfg = s3_delta_config(&endpoint, &[("DESTINATION__FILESYSTEM__CREDENTIALS__REGION_NAME", "eu-central-1")]);
    let dest = build_destination(&cfg, dir.path());
    let mut p = pipeline_to(dest, dir.path(), None);
    let hints = json!({"columns": {"day": {"data_type": "date", "partition": true}}});
    p.run(vec![resource(
        "orders",
        vec![json!({"id": 1, "day": "2024-01-01"}), json!({"id": 2, "day": "2024-01-02"})],
        hints.clone(),
    )])
    .unwrap();
    p.run(vec![resource("orders", vec![json!({"id": 3, "day": "2024-01-01", "note": "n"})], hints)]).unwrap();
    let opts = json!({
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "AKIAMOTOKEY",
        "AWS_SECRET_ACCESS_KEY": "moto-secret",
        "AWS_REGION": "eu-central-1",
        "AWS_ALLOW_HTTP": "true",
    });
    let r = read_delta(&py, "s3://lakehouse/base/lake/orders", "orders", opts);
    assert_eq!(r["partition_columns"], json!(["day"]));
    let mut got: Vec<(i64, Value, Value)> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_i64().unwrap(), r["day"].clone(), r["note"].clone()))
        .collect();
    got.sort_by_key(|x| x.0);
    assert_eq!(
        got,
        vec![
            (1, json!("2024-01-01"), Value::Null),
            (2, json!("2024-01-02"), Value::Null),
            (3, json!("2024-01-01"), json!("n"))
        ]
    );
    assert_eq!(r["schema"][0], json!(["day", "date", true]));
    // the partition column is in the folder names, not in the files
    assert!(r["files"].as_array().unwrap().iter().all(|f| f.as_str().unwrap().starts_with("day=2024-01-0")), "{r}");
    // state restore still works from the bucket next to the Delta tables
    let dir2 = tempfile::tempdir().unwrap();
    let dest = build_destination(&cfg, dir2.path());
    let mut p2 = pipeline_to(dest, dir2.path(), None);
    assert!(p2.sync_destination().unwrap());
    assert_eq!(p2.read_table("orders").unwrap().iter().map(|b| b.num_rows()).sum::<usize>(), 3);
}

/// The rows of a Delta table as (id, name) plus the nested `tags` values per root id.
type Users = Vec<(i64, Value)>;
type Tags = Vec<(i64, i64, String)>;

fn users_and_tags(py: &Path, bucket: &Path) -> (Users, Tags, Value) {
    let r = read_delta(py, &uri(bucket, "users"), "users", json!({}));
    let mut users: Vec<(i64, Value)> =
        r["rows"].as_array().unwrap().iter().map(|u| (u["id"].as_i64().unwrap(), u["name"].clone())).collect();
    users.sort_by_key(|u| u.0);
    let id_of: std::collections::HashMap<String, i64> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["_dlt_id"].as_str().unwrap().to_string(), u["id"].as_i64().unwrap()))
        .collect();
    let t = read_delta(py, &uri(bucket, "users__tags"), "users__tags", json!({}));
    let mut tags: Vec<(i64, i64, String)> = t["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let root = row["_dlt_root_id"].as_str().unwrap();
            assert_eq!(row["_dlt_parent_id"], row["_dlt_root_id"], "{row}");
            let id = *id_of.get(root).unwrap_or_else(|| panic!("nested row of a missing root: {row}"));
            (id, row["_dlt_list_idx"].as_i64().unwrap(), row["value"].as_str().unwrap().to_string())
        })
        .collect();
    tags.sort();
    (users, tags, r)
}

fn files_of(r: &Value) -> Vec<String> {
    r["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect()
}

#[test]
fn merge_upsert_with_nested_rows_hard_deletes_and_duplicates() {
    let Some(py) = deltalake_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    let mut p = pipeline(&bucket, dir.path(), Some("delta"));
    let hints = json!({
        "write_disposition": {"disposition": "merge", "strategy": "upsert"},
        "primary_key": "id",
        "columns": {"deleted": {"data_type": "bool", "hard_delete": true}},
    });
    // 1. the first merge creates the tables; a row flagged deleted is not inserted
    p.run(vec![resource(
        "users",
        vec![
            json!({"id": 1, "name": "a", "tags": ["x", "y"]}),
            json!({"id": 2, "name": "b", "tags": ["p"]}),
            json!({"id": 3, "name": "c", "tags": []}),
            json!({"id": 9, "name": "gone", "deleted": true, "tags": ["never"]}),
        ],
        hints.clone(),
    )])
    .unwrap();
    let (users, tags, _) = users_and_tags(&py, &bucket);
    assert_eq!(users, vec![(1, json!("a")), (2, json!("b")), (3, json!("c"))]);
    assert_eq!(tags, vec![(1, 0, "x".into()), (1, 1, "y".into()), (2, 0, "p".into())]);

    // 2. an update dropping a nested row, a hard delete, a new key twice (the last row wins)
    p.run(vec![resource(
        "users",
        vec![
            json!({"id": 1, "name": "a2", "tags": ["x"]}),
            json!({"id": 2, "deleted": true}),
            json!({"id": 4, "name": "d", "tags": ["n"]}),
            json!({"id": 4, "name": "d2", "tags": ["m", "k"]}),
        ],
        hints.clone(),
    )])
    .unwrap();
    let (users, tags, r) = users_and_tags(&py, &bucket);
    assert_eq!(users, vec![(1, json!("a2")), (3, json!("c")), (4, json!("d2"))]);
    assert_eq!(tags, vec![(1, 0, "x".into()), (4, 0, "m".into()), (4, 1, "k".into())]);
    let ops: Vec<Value> = r["history"].as_array().unwrap().iter().map(|h| h[0].clone()).collect();
    assert_eq!(ops.last().unwrap(), &json!("MERGE"), "{ops:?}");
    assert!(r["txn"].as_i64().is_some(), "{r}");
    let t = read_delta(&py, &uri(&bucket, "users__tags"), "users__tags", json!({}));
    assert_eq!(t["history"].as_array().unwrap().last().unwrap()[0], json!("MERGE"));

    // 3. only new keys: no existing file is rewritten
    let before = files_of(&r);
    p.run(vec![resource("users", vec![json!({"id": 5, "name": "e", "tags": ["z"]})], hints.clone())]).unwrap();
    let (users, tags, r) = users_and_tags(&py, &bucket);
    assert_eq!(users, vec![(1, json!("a2")), (3, json!("c")), (4, json!("d2")), (5, json!("e"))]);
    assert_eq!(tags.len(), 4);
    let after = files_of(&r);
    assert_eq!(after.len(), before.len() + 1, "{before:?} -> {after:?}");
    assert!(before.iter().all(|f| after.contains(f)), "{before:?} -> {after:?}");

    // 4. an update of id 5 rewrites only the file holding it
    p.run(vec![resource("users", vec![json!({"id": 5, "name": "e2", "tags": []})], hints)]).unwrap();
    let (users, tags, r) = users_and_tags(&py, &bucket);
    assert_eq!(users, vec![(1, json!("a2")), (3, json!("c")), (4, json!("d2")), (5, json!("e2"))]);
    assert_eq!(tags, vec![(1, 0, "x".into()), (4, 0, "m".into()), (4, 1, "k".into())]);
    let last = files_of(&r);
    assert!(before.iter().all(|f| last.contains(f)), "{before:?} -> {last:?}");
    assert!(!last.iter().any(|f| !before.contains(f) && after.contains(f)), "the file with id 5 is replaced");
    // dlt-rs' own reader agrees
    assert_eq!(p.read_table("users").unwrap().iter().map(|b| b.num_rows()).sum::<usize>(), 4);
}

#[test]
fn merge_default_strategy_with_partitions_and_insert_only() {
    let Some(py) = deltalake_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    let mut p = pipeline(&bucket, dir.path(), Some("delta"));
    // no strategy given: dlt-rs records delete-insert; keys match across partitions
    let hints = json!({
        "write_disposition": "merge",
        "primary_key": "id",
        "columns": {"region": {"data_type": "text", "partition": true}},
    });
    p.run(vec![resource(
        "sales",
        vec![
            json!({"id": 1, "region": "eu", "v": 1, "tags": ["k"]}),
            json!({"id": 2, "region": "us", "v": 1, "tags": ["a", "b"]}),
            json!({"id": 3, "region": "eu", "v": 1}),
        ],
        hints.clone(),
    )])
    .unwrap();
    let before = files_of(&read_delta(&py, &uri(&bucket, "sales"), "sales", json!({})));
    // id 2 moves to another partition, id 4 is new
    p.run(vec![resource(
        "sales",
        vec![json!({"id": 2, "region": "eu", "v": 2, "tags": ["c"]}), json!({"id": 4, "region": "us", "v": 2})],
        hints,
    )])
    .unwrap();
    // nested rows of the replaced root row are replaced (delete-insert: through the old root's _dlt_id)
    let ids: std::collections::HashMap<String, i64> =
        read_delta(&py, &uri(&bucket, "sales"), "sales", json!({}))["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["_dlt_id"].as_str().unwrap().to_string(), s["id"].as_i64().unwrap()))
            .collect();
    let t = read_delta(&py, &uri(&bucket, "sales__tags"), "sales__tags", json!({}));
    let mut tags: Vec<(i64, String)> = t["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (ids[row["_dlt_root_id"].as_str().unwrap()], row["value"].as_str().unwrap().to_string()))
        .collect();
    tags.sort();
    assert_eq!(tags, vec![(1, "k".to_string()), (2, "c".to_string())]);
    let r = read_delta(&py, &uri(&bucket, "sales"), "sales", json!({}));
    let mut got: Vec<(i64, Value, i64)> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_i64().unwrap(), s["region"].clone(), s["v"].as_i64().unwrap()))
        .collect();
    got.sort_by_key(|x| x.0);
    assert_eq!(got, vec![(1, json!("eu"), 1), (2, json!("eu"), 2), (3, json!("eu"), 1), (4, json!("us"), 2)]);
    let files = files_of(&r);
    // the eu file of the first load had no matching key: kept as it was
    let eu_old: Vec<&String> = before.iter().filter(|f| f.starts_with("region=eu/")).collect();
    assert_eq!(eu_old.len(), 1);
    assert!(files.contains(eu_old[0]), "{files:?}");
    assert!(!files.iter().any(|f| before.contains(f) && f.starts_with("region=us/")), "{files:?}");

    // insert-only: existing keys stay as they are, new keys are inserted
    p.run(vec![resource(
        "sales",
        vec![json!({"id": 1, "region": "eu", "v": 3}), json!({"id": 5, "region": "us", "v": 3})],
        json!({"write_disposition": {"disposition": "merge", "strategy": "insert-only"}, "primary_key": "id"}),
    )])
    .unwrap();
    let r = read_delta(&py, &uri(&bucket, "sales"), "sales", json!({}));
    let mut got: Vec<(i64, i64)> =
        r["rows"].as_array().unwrap().iter().map(|s| (s["id"].as_i64().unwrap(), s["v"].as_i64().unwrap())).collect();
    got.sort();
    assert_eq!(got, vec![(1, 1), (2, 2), (3, 1), (4, 2), (5, 3)]);

    // scd2 is refused before anything is written
    let version = r["version"].clone();
    let e = p
        .run(vec![resource(
            "sales",
            vec![json!({"id": 1, "region": "eu", "v": 4})],
            json!({"write_disposition": {"disposition": "merge", "strategy": "scd2"}}),
        )])
        .unwrap_err();
    assert!(e.to_string().contains("merge strategy `scd2` is not one the filesystem destination runs"), "{e}");
    assert!(!p.has_pending_packages().unwrap(), "refused before loading: nothing pending");
    assert_eq!(read_delta(&py, &uri(&bucket, "sales"), "sales", json!({}))["version"], version);
}

const MERGE_CHILD_ENV: &str = "DLT_DELTA_TEST_MERGE_CHILD_ROOT";

fn merge_hints() -> Value {
    json!({"write_disposition": {"disposition": "merge", "strategy": "upsert"}, "primary_key": "id"})
}

/// Runs only as the subprocess of the merge retry test: merges and dies at `DLT_FAULT`.
#[test]
fn merge_crash_child() {
    let Some(root) = std::env::var_os(MERGE_CHILD_ENV) else { return };
    let root = PathBuf::from(root);
    let mut p = pipeline(&root.join("bucket"), &root, Some("delta"));
    p.run(vec![resource(
        "users",
        vec![json!({"id": 1, "name": "a2", "tags": ["x2"]}), json!({"id": 3, "name": "c", "tags": ["z"]})],
        merge_hints(),
    )])
    .unwrap();
    unreachable!("DLT_FAULT should have stopped the process");
}

#[test]
fn retried_merge_converges() {
    let Some(py) = deltalake_python() else { return };
    for fault in ["load.filesystem.delta_merge_root", "load.in_transaction"] {
        let dir = tempfile::tempdir().unwrap();
        let bucket = dir.path().join("bucket");
        pipeline(&bucket, dir.path(), Some("delta"))
            .run(vec![resource(
                "users",
                vec![json!({"id": 1, "name": "a", "tags": ["x", "y"]}), json!({"id": 2, "name": "b", "tags": ["p"]})],
                merge_hints(),
            )])
            .unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["merge_crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(MERGE_CHILD_ENV, dir.path())
            .env("DLT_FAULT", fault)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(&format!("DLT_FAULT: aborting at {fault}")), "{stderr}");
        let r = read_delta(&py, &uri(&bucket, "users"), "users", json!({}));
        let mut users: Vec<(i64, Value)> =
            r["rows"].as_array().unwrap().iter().map(|u| (u["id"].as_i64().unwrap(), u["name"].clone())).collect();
        users.sort_by_key(|u| u.0);
        if fault == "load.filesystem.delta_merge_root" {
            // the nested table is merged, the root table is not yet
            assert_eq!(users, vec![(1, json!("a")), (2, json!("b"))]);
        } else {
            assert_eq!(users, vec![(1, json!("a2")), (2, json!("b")), (3, json!("c"))]);
        }
        let mut p = pipeline(&bucket, dir.path(), Some("delta"));
        assert!(p.has_pending_packages().unwrap());
        p.load().unwrap();
        let (users, tags, r) = users_and_tags(&py, &bucket);
        assert_eq!(users, vec![(1, json!("a2")), (2, json!("b")), (3, json!("c"))], "{fault}");
        assert_eq!(tags, vec![(1, 0, "x2".into()), (2, 0, "p".into()), (3, 0, "z".into())], "{fault}");
        let merges = r["history"].as_array().unwrap().iter().filter(|h| h[0] == "MERGE").count();
        assert_eq!(merges, 2, "{fault}: {}", r["history"]);
    }
}

#[test]
fn merge_on_s3() {
    let Some(py) = deltalake_python() else { return };
    let Some(moto) = start_moto() else { return };
    create_s3_bucket(moto.port, "lakehouse");
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let cfg = s3_delta_config(&endpoint, &[]);
    let dest = build_destination(&cfg, dir.path());
    let mut p = pipeline_to(dest, dir.path(), None);
    let hints = json!({"write_disposition": {"disposition": "merge", "strategy": "upsert"}, "primary_key": "id"});
    p.run(vec![resource("items", vec![json!({"id": 1, "n": "a"}), json!({"id": 2, "n": "b"})], hints.clone())])
        .unwrap();
    p.run(vec![resource("items", vec![json!({"id": 2, "n": "b2"}), json!({"id": 3, "n": "c"})], hints)]).unwrap();
    let opts = json!({
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "AKIAMOTOKEY",
        "AWS_SECRET_ACCESS_KEY": "moto-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    });
    let r = read_delta(&py, "s3://lakehouse/base/lake/items", "items", opts);
    let mut got: Vec<(i64, String)> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_i64().unwrap(), s["n"].as_str().unwrap().to_string()))
        .collect();
    got.sort();
    assert_eq!(got, vec![(1, "a".into()), (2, "b2".into()), (3, "c".into())]);
    assert_eq!(r["history"].as_array().unwrap().last().unwrap()[0], json!("MERGE"));
}
