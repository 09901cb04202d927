//! The filesystem destination through the `dlt` facade on local disk: files in dlt's layout,
//! read back independently (DuckDB's `read_parquet`, flate2 + serde_json, plain text), replace,
//! hostile table names, crashes in the middle of a replace (the test re-runs itself as a
//! subprocess that dies at a `DLT_FAULT` point), and state restore from the bucket.
#![cfg(feature = "filesystem")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dlt::destinations::filesystem_impl::{Filesystem, FilesystemConfig};
use dlt::{Destination, Resource, WriteDisposition};
use serde_json::{Value, json};

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        Env { _dir: dir, root }
    }
    fn at(root: PathBuf) -> Env {
        Env { _dir: tempfile::tempdir().unwrap(), root }
    }
    fn bucket(&self) -> PathBuf {
        self.root.join("bucket")
    }
    fn dest(&self, f: impl FnOnce(&mut FilesystemConfig)) -> Arc<dyn Destination> {
        let mut c = FilesystemConfig::new(self.bucket().display().to_string());
        f(&mut c);
        Arc::new(Filesystem::new(c).unwrap())
    }
    fn pipeline_with(
        &self,
        name: &str,
        dataset: &str,
        dest: Arc<dyn Destination>,
        env: Vec<(String, String)>,
    ) -> dlt::Pipeline {
        dlt::pipeline(name)
            .destination(dest)
            .dataset_name(dataset)
            .pipelines_dir(self.root.join("pipelines"))
            .config(dlt::Config::from_parts(env, None, None))
            .build()
            .unwrap()
    }
    fn pipeline(&self, name: &str, dataset: &str) -> dlt::Pipeline {
        self.pipeline_with(name, dataset, self.dest(|_| {}), vec![])
    }
}

/// Every file below `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = vec![];
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Independent reader: a plain in-memory DuckDB, values cast to text by DuckDB.
fn duck(sql: &str) -> Vec<Vec<Option<String>>> {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut out = vec![];
    while let Some(r) = rows.next().unwrap() {
        let n = r.as_ref().column_count();
        out.push(
            (0..n)
                .map(|i| match r.get::<_, duckdb::types::Value>(i).unwrap() {
                    duckdb::types::Value::Null => None,
                    duckdb::types::Value::Text(s) => Some(s),
                    duckdb::types::Value::BigInt(v) => Some(v.to_string()),
                    duckdb::types::Value::HugeInt(v) => Some(v.to_string()),
                    duckdb::types::Value::Int(v) => Some(v.to_string()),
                    duckdb::types::Value::Double(v) => Some(format!("{v:?}")),
                    duckdb::types::Value::Boolean(v) => Some(v.to_string()),
                    other => Some(format!("{other:?}")),
                })
                .collect(),
        );
    }
    out
}

fn parquet_sql(path: &Path) -> String {
    format!("read_parquet('{}')", path.display())
}

fn read_json_file(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn rows() -> Vec<Value> {
    vec![
        json!({"id": 1, "name": "alpha", "score": 1.5, "active": true, "created_at": "2024-01-02T03:04:05Z",
               "meta": {"k": "v1"}, "tags": ["x", "y"]}),
        json!({"id": 2, "name": "beta", "score": -0.25, "active": false, "created_at": "2024-06-30T23:59:59.123456Z",
               "meta": {"k": null}, "tags": []}),
        json!({"id": 3, "name": null, "score": 10.0, "active": true, "created_at": "2025-12-31T00:00:00Z",
               "meta": {"k": "v3"}, "tags": ["z"]}),
    ]
}

#[test]
fn parquet_files_in_dlt_layout_read_back_exactly() {
    let env = Env::new();
    let mut p = env.pipeline("fs_pipe", "fs_data");
    let info = p.run(Resource::from_values("Items", rows())).unwrap();
    let load_id = info.load_ids[0].clone();
    assert_eq!(info.row_counts["items"], 3);
    assert_eq!(info.row_counts["items__tags"], 3);
    let ds = env.bucket().join("fs_data");
    let all = files(&ds);
    // dlt's layout: <table>/<load_id>.<file_id>.parquet, plus dlt's own files
    let items: Vec<&String> = all.iter().filter(|f| f.starts_with("items/")).collect();
    assert_eq!(items.len(), 1, "{all:?}");
    let name = items[0].strip_prefix("items/").unwrap();
    let parts: Vec<&str> = name.split('.').collect();
    assert_eq!(parts.len(), 4, "{name}");
    assert_eq!(format!("{}.{}", parts[0], parts[1]), load_id);
    assert_eq!(parts[3], "parquet");
    assert!(all.iter().any(|f| f.starts_with("items__tags/") && f.ends_with(".parquet")), "{all:?}");
    assert!(all.contains(&"init".to_string()));
    assert_eq!(read_json_file(&ds.join("init")), json!({"initial_version": 2, "current_version": 2}));
    assert!(all.contains(&format!("_dlt_loads/fs_pipe__{load_id}.jsonl")), "{all:?}");
    assert!(!all.iter().any(|f| f.starts_with("_dlt_journal")), "{all:?}");
    assert!(!all.iter().any(|f| f.starts_with("_dlt_pipeline_state/") && f.ends_with(".parquet")));

    // every data file, read by DuckDB on its own: exact values and types
    let f = ds.join(items[0]);
    let types =
        duck(&format!("SELECT column_name, column_type, \"null\" FROM (DESCRIBE SELECT * FROM {})", parquet_sql(&f)));
    let types: Vec<(String, String)> =
        types.into_iter().map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap())).collect();
    assert_eq!(
        types,
        [
            ("id", "BIGINT"),
            ("name", "VARCHAR"),
            ("score", "DOUBLE"),
            ("active", "BOOLEAN"),
            ("created_at", "TIMESTAMP WITH TIME ZONE"),
            ("meta__k", "VARCHAR"),
            ("_dlt_load_id", "VARCHAR"),
            ("_dlt_id", "VARCHAR"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let got = duck(&format!(
        "SELECT id, name, score, active, strftime(created_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S.%f'), meta__k, \
         _dlt_load_id, length(_dlt_id) FROM {} ORDER BY id",
        parquet_sql(&f)
    ));
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        got,
        vec![
            vec![
                s("1"),
                s("alpha"),
                s("1.5"),
                s("true"),
                s("2024-01-02 03:04:05.000000"),
                s("v1"),
                s(&load_id),
                s("14")
            ],
            vec![
                s("2"),
                s("beta"),
                s("-0.25"),
                s("false"),
                s("2024-06-30 23:59:59.123456"),
                None,
                s(&load_id),
                s("14")
            ],
            vec![s("3"), None, s("10.0"), s("true"), s("2025-12-31 00:00:00.000000"), s("v3"), s(&load_id), s("14")],
        ]
    );
    let tags = ds.join(all.iter().find(|f| f.starts_with("items__tags/")).unwrap());
    let got = duck(&format!(
        "SELECT t.value, t._dlt_list_idx, i.id FROM {} t JOIN {} i ON t._dlt_parent_id = i._dlt_id ORDER BY i.id, t._dlt_list_idx",
        parquet_sql(&tags),
        parquet_sql(&f)
    ));
    assert_eq!(got, vec![vec![s("x"), s("0"), s("1")], vec![s("y"), s("1"), s("1")], vec![s("z"), s("0"), s("3")]]);

    // _dlt_loads, _dlt_version and _dlt_pipeline_state as dlt writes them (one JSON document)
    let loads = read_json_file(&ds.join(format!("_dlt_loads/fs_pipe__{load_id}.jsonl")));
    let keys: Vec<&String> = loads.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["load_id", "schema_name", "status", "inserted_at", "schema_version_hash"]);
    assert_eq!(loads["load_id"], json!(load_id));
    assert_eq!(loads["schema_name"], json!("fs_pipe"));
    assert_eq!(loads["status"], json!(0));
    assert!(loads["inserted_at"].as_str().unwrap().ends_with("+00:00"));
    let schema = p.schema("fs_pipe").unwrap().unwrap();
    assert_eq!(loads["schema_version_hash"], json!(schema.version_hash));
    let versions: Vec<&String> = all.iter().filter(|f| f.starts_with("_dlt_version/")).collect();
    assert_eq!(versions.len(), 1, "{all:?}");
    let vname = versions[0].strip_prefix("_dlt_version/fs_pipe__").unwrap().strip_suffix(".jsonl").unwrap();
    let (_, hash_hex) = vname.rsplit_once("__").unwrap();
    assert_eq!(hash_hex.len(), 64, "{vname}");
    let version = read_json_file(&ds.join(versions[0]));
    assert_eq!(version["schema_name"], json!("fs_pipe"));
    assert_eq!(version["version_hash"], json!(schema.version_hash));
    assert_eq!(version["version"], json!(schema.version));
    let stored: Value = serde_json::from_str(version["schema"].as_str().unwrap()).unwrap();
    assert!(stored["tables"]["items__tags"].is_object());
    let states: Vec<&String> = all.iter().filter(|f| f.starts_with("_dlt_pipeline_state/")).collect();
    assert_eq!(states.len(), 1, "{all:?}");
    assert!(states[0].starts_with(&format!("_dlt_pipeline_state/fs_pipe__{load_id}__")), "{}", states[0]);
    let state = read_json_file(&ds.join(states[0]));
    let keys: Vec<&String> = state.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["version", "engine_version", "pipeline_name", "state", "created_at", "version_hash", "_dlt_load_id"]
    );
    assert_eq!(state["pipeline_name"], json!("fs_pipe"));
    assert_eq!(state["engine_version"], json!(4));
    assert_eq!(state["_dlt_load_id"], json!(load_id));
    assert_eq!(state["version_hash"], json!(p.state().version_hash()));
    assert!(state["state"].as_str().unwrap().starts_with("eNp"));

    // the pipeline's own SQL reader sees the same rows, and the system tables
    let batches = p.read_table("items").unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    let mut c = p.sql_client().unwrap();
    let b = c.query("SELECT count(*) FROM _dlt_loads WHERE status = 0").unwrap();
    assert_eq!(b[0].num_rows(), 1);
    assert_eq!(
        c.existing_tables().unwrap(),
        ["_dlt_loads", "_dlt_pipeline_state", "_dlt_version", "items", "items__tags"]
    );

    // a second run with the same schema adds data files and a loads file, no new schema file
    let info = p.run(Resource::from_values("Items", vec![json!({"id": 4, "name": "d"})])).unwrap();
    let all = files(&ds);
    assert_eq!(all.iter().filter(|f| f.starts_with("items/")).count(), 2);
    assert!(all.contains(&format!("_dlt_loads/fs_pipe__{}.jsonl", info.load_ids[0])));
    assert_eq!(all.iter().filter(|f| f.starts_with("_dlt_version/")).count(), 1);
}

#[test]
fn jsonl_and_csv_files_with_compression_options() {
    let env = Env::new();
    // jsonl, gzip (dlt's default): <load_id>.<file_id>.jsonl.gz
    let dest = env.dest(|c| c.loader_file_format = dlt::dlt_core::destination::FileFormat::Jsonl);
    let mut p = env.pipeline_with("js", "js_data", dest, vec![]);
    p.run(Resource::from_values("items", rows())).unwrap();
    let ds = env.bucket().join("js_data");
    let all = files(&ds);
    let f = all.iter().find(|f| f.starts_with("items/")).unwrap();
    assert!(f.ends_with(".jsonl.gz"), "{f}");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(ds.join(f)).unwrap()).read_to_string(&mut text).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["id"], json!(1));
    assert_eq!(lines[0]["name"], json!("alpha"));
    assert_eq!(lines[0]["score"], json!(1.5));
    assert_eq!(lines[0]["active"], json!(true));
    assert_eq!(lines[0]["meta__k"], json!("v1"));
    assert_eq!(lines[1]["created_at"], json!("2024-06-30T23:59:59.123456Z"));
    // nulls are left out, as dlt's jsonl writer does
    assert!(lines[2].get("name").is_none(), "{}", lines[2]);
    assert!(text.lines().all(|l| !l.contains("null")));
    // system files stay plain jsonl
    assert!(all.iter().any(|f| f.starts_with("_dlt_loads/") && f.ends_with(".jsonl")));
    // the SQL reader reads the gzipped jsonl back
    assert_eq!(p.read_table("items").unwrap().iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    // switching the format on the same dataset: the reader unions parquet and jsonl files by name
    drop(p);
    let mut p = env.pipeline_with("js", "js_data", env.dest(|_| {}), vec![]);
    p.run(Resource::from_values("items", vec![json!({"id": 9, "name": "nine"})])).unwrap();
    assert_eq!(p.read_table("items").unwrap().iter().map(|b| b.num_rows()).sum::<usize>(), 4);

    // csv without compression, through the factory and config names dlt uses
    let env2 = Env::new();
    let cfg = dlt::Config::from_parts(
        vec![
            ("DESTINATION__FILESYSTEM__BUCKET_URL".into(), env2.bucket().display().to_string()),
            ("DESTINATION__FILESYSTEM__LOADER_FILE_FORMAT".into(), "csv".into()),
            ("DATA_WRITER__DISABLE_COMPRESSION".into(), "true".into()),
        ],
        None,
        None,
    );
    let dest = dlt::registry()
        .destination("filesystem")
        .unwrap()
        .build(&dlt::DestinationContext { pipeline_name: "cs", config: &cfg, run_dir: &env2.root, explicit: None })
        .unwrap();
    let mut p = env2.pipeline_with("cs", "cs_data", dest, vec![]);
    p.run(Resource::from_values("items", rows())).unwrap();
    let ds = env2.bucket().join("cs_data");
    let all = files(&ds);
    let f = all.iter().find(|f| f.starts_with("items/")).unwrap();
    assert!(f.ends_with(".csv"), "{f}");
    let text = std::fs::read_to_string(ds.join(f)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "id,name,score,active,created_at,meta__k,_dlt_load_id,_dlt_id");
    assert!(lines[1].starts_with("1,alpha,1.5,true,2024-01-02T03:04:05Z,v1,"), "{}", lines[1]);
    assert!(lines[3].starts_with("3,,10.0,true,2025-12-31T00:00:00Z,v3,"), "{}", lines[3]);
    assert_eq!(lines.len(), 4);
    let got = duck(&format!("SELECT count(*), sum(id) FROM read_csv('{}')", ds.join(f).display()));
    assert_eq!(got, vec![vec![Some("3".to_string()), Some("6".to_string())]]);
}

#[test]
fn replace_removes_the_old_files_append_keeps_them() {
    let env = Env::new();
    let mut p = env.pipeline("rp", "rp_data");
    let res = |ids: &[i64], wd| {
        Resource::from_values("users", ids.iter().map(|i| json!({"id": i, "l": [i]})).collect::<Vec<_>>())
            .write_disposition(wd)
    };
    p.run(res(&[1, 2, 3], WriteDisposition::Replace)).unwrap();
    let ds = env.bucket().join("rp_data");
    let first: Vec<String> = files(&ds).into_iter().filter(|f| f.starts_with("users")).collect();
    assert_eq!(first.len(), 2, "{first:?}");
    p.run(res(&[10, 11], WriteDisposition::Replace)).unwrap();
    let second: Vec<String> = files(&ds).into_iter().filter(|f| f.starts_with("users")).collect();
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(first.iter().all(|f| !second.contains(f)), "old files must be gone: {first:?} {second:?}");
    let ids = duck(&format!(
        "SELECT string_agg(id::VARCHAR, ',' ORDER BY id) FROM read_parquet('{}/users/*.parquet')",
        ds.display()
    ));
    assert_eq!(ids[0][0].as_deref(), Some("10,11"));
    let nested = duck(&format!("SELECT count(*) FROM read_parquet('{}/users__l/*.parquet')", ds.display()));
    assert_eq!(nested[0][0].as_deref(), Some("2"));
    // a replace with no rows empties the table
    p.run(res(&[], WriteDisposition::Replace)).unwrap();
    assert!(files(&ds).iter().all(|f| !f.starts_with("users/") && !f.starts_with("users__l/")), "{:?}", files(&ds));
    // append keeps every file
    p.run(res(&[5], WriteDisposition::Append)).unwrap();
    p.run(res(&[6], WriteDisposition::Append)).unwrap();
    assert_eq!(files(&ds).iter().filter(|f| f.starts_with("users/")).count(), 2);
    // merge is a clear error, and nothing is written
    let before = files(&ds);
    let e = p
        .run(
            Resource::from_values("users", vec![json!({"id": 7})])
                .write_disposition(WriteDisposition::Merge)
                .primary_key(["id"]),
        )
        .unwrap_err();
    assert!(e.to_string().contains("merge"), "{e}");
    let after: Vec<String> = files(&ds).into_iter().filter(|f| !f.starts_with("_dlt_version/")).collect();
    assert_eq!(after, before.into_iter().filter(|f| !f.starts_with("_dlt_version/")).collect::<Vec<_>>());
}

#[test]
fn hostile_table_names_stay_inside_the_dataset() {
    let env = Env::new();
    let mut p = env.pipeline_with("h", "h_data", env.dest(|_| {}), vec![("SCHEMA__NAMING".into(), "direct".into())]);
    let e = p.run(Resource::from_values("x", vec![json!({"a": 1})]).table_name("..")).unwrap_err();
    assert!(e.to_string().contains("dataset folder"), "{e}");
    assert!(!e.is_transient());
    // nothing was written outside the bucket's dataset folder, and no data file at all
    let outside: Vec<String> = files(&env.root)
        .into_iter()
        .filter(|f| !f.starts_with("pipelines/") && !f.starts_with("bucket/h_data/"))
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
    assert!(files(&env.bucket()).iter().all(|f| !f.ends_with(".parquet")));
    // snake_case (the default) turns path characters into a safe name
    let env = Env::new();
    let mut p = env.pipeline("h2", "h2_data");
    p.run(Resource::from_values("x", vec![json!({"a": 1})]).table_name("../../Escape Me")).unwrap();
    let all = files(&env.root);
    assert!(all.iter().filter(|f| !f.starts_with("pipelines/")).all(|f| f.starts_with("bucket/h2_data/")), "{all:?}");
    assert!(all.iter().any(|f| f.starts_with("bucket/h2_data/_escape_me/") && f.ends_with(".parquet")), "{all:?}");
}

#[test]
fn state_and_schema_restore_from_the_bucket() {
    let env = Env::new();
    let resource = |from: i64| {
        let mut cfg = dlt::dlt_core::incremental::IncrementalConfig::new("id");
        cfg.initial_value = Some(json!(0));
        Resource::from_values("events", (from..from + 5).map(|i| json!({"id": i})).collect::<Vec<_>>()).incremental(cfg)
    };
    let mut p = env.pipeline("st", "st_data");
    p.run(resource(1)).unwrap();
    p.run(resource(3)).unwrap();
    let state = p.state().clone();
    let wd = p.working_dir().to_path_buf();
    drop(p);
    std::fs::remove_dir_all(&wd).unwrap();
    // a fresh machine: no pipelines dir, a new destination object on the same bucket
    let mut p = env.pipeline("st", "st_data");
    assert!(p.sync_destination().unwrap());
    assert_eq!(p.state().version_hash(), state.version_hash());
    assert_eq!(
        p.state().get("sources").unwrap()["st"]["resources"]["events"]["incremental"]["id"]["last_value"],
        json!(7)
    );
    let schema = p.schema("st").unwrap().unwrap();
    assert!(schema.tables.contains_key("events"));
    // the restored cursor keeps working: only ids above 7 load
    let info = p.run(resource(6)).unwrap();
    assert_eq!(info.row_counts["events"], 3);
}

#[test]
fn state_files_are_capped_at_max_state_files() {
    let env = Env::new();
    let dest = env.dest(|c| c.max_state_files = 2);
    let mut p = env.pipeline_with("cap", "cap_data", dest, vec![]);
    for i in 0..4 {
        let mut cfg = dlt::dlt_core::incremental::IncrementalConfig::new("id");
        cfg.initial_value = Some(json!(0));
        p.run(Resource::from_values("e", vec![json!({"id": i + 1})]).incremental(cfg)).unwrap();
    }
    let states =
        files(&env.bucket().join("cap_data")).into_iter().filter(|f| f.starts_with("_dlt_pipeline_state/")).count();
    assert_eq!(states, 2);
}

const CHILD_ENV: &str = "DLT_FS_TEST_CHILD_ROOT";

/// Runs only as the subprocess of the crash tests: loads a replace that dies at `DLT_FAULT`.
#[test]
fn crash_child() {
    let Some(root) = std::env::var_os(CHILD_ENV) else { return };
    let env = Env::at(PathBuf::from(root));
    let mut p = env.pipeline("cr", "cr_data");
    p.run(
        Resource::from_values("users", vec![json!({"id": 10}), json!({"id": 11})])
            .write_disposition(WriteDisposition::Replace),
    )
    .unwrap();
    unreachable!("DLT_FAULT should have stopped the process");
}

fn crash_at(point: &str) -> (Env, Vec<String>) {
    let env = Env::new();
    let mut p = env.pipeline("cr", "cr_data");
    p.run(
        Resource::from_values("users", vec![json!({"id": 1}), json!({"id": 2}), json!({"id": 3})])
            .write_disposition(WriteDisposition::Replace),
    )
    .unwrap();
    drop(p);
    let old: Vec<String> =
        files(&env.bucket().join("cr_data")).into_iter().filter(|f| f.starts_with("users/")).collect();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &env.root)
        .env("DLT_FAULT", point)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child should have died at {point}: {stderr}");
    assert!(stderr.contains(&format!("DLT_FAULT: aborting at {point}")), "{stderr}");
    (env, old)
}

fn user_ids(p: &dlt::Pipeline) -> Vec<i64> {
    let mut ids = vec![];
    for b in p.read_table("users").unwrap() {
        let c = b.column_by_name("id").unwrap().as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().clone();
        ids.extend(c.iter().flatten());
    }
    ids.sort();
    ids
}

#[test]
fn crash_after_new_files_before_commit_keeps_the_old_table() {
    let (env, old) = crash_at("load.in_transaction");
    let ds = env.bucket().join("cr_data");
    let users: Vec<String> = files(&ds).into_iter().filter(|f| f.starts_with("users/")).collect();
    // the new file is there, uncommitted; the old one untouched
    assert_eq!(users.len(), 2, "{users:?}");
    assert!(old.iter().all(|f| users.contains(f)));
    assert!(files(&ds).iter().any(|f| f.starts_with("_dlt_journal/")));
    let p = env.pipeline("cr", "cr_data");
    assert_eq!(user_ids(&p), [1, 2, 3], "a reader sees the old table, not a mix");
    // the next run finishes the pending package: only the new rows remain
    let mut p = p;
    p.load().unwrap();
    let users: Vec<String> = files(&ds).into_iter().filter(|f| f.starts_with("users/")).collect();
    assert_eq!(users.len(), 1, "{users:?}");
    assert!(!old.contains(&users[0]));
    assert!(!files(&ds).iter().any(|f| f.starts_with("_dlt_journal/")));
    assert_eq!(user_ids(&p), [10, 11]);
    let got = duck(&format!(
        "SELECT string_agg(id::VARCHAR, ',' ORDER BY id) FROM read_parquet('{}/users/*.parquet')",
        ds.display()
    ));
    assert_eq!(got[0][0].as_deref(), Some("10,11"));
}

#[test]
fn crash_after_commit_before_deletes_shows_the_new_table_and_converges() {
    let (env, old) = crash_at("load.filesystem.before_delete");
    let ds = env.bucket().join("cr_data");
    let users: Vec<String> = files(&ds).into_iter().filter(|f| f.starts_with("users/")).collect();
    assert_eq!(users.len(), 2, "{users:?}");
    assert_eq!(files(&ds).iter().filter(|f| f.starts_with("_dlt_loads/")).count(), 2);
    let mut p = env.pipeline("cr", "cr_data");
    assert_eq!(user_ids(&p), [10, 11], "a reader sees the new table, not a mix");
    // the next run (any client start) finishes the deletes; the package is already loaded
    p.load().unwrap();
    let users: Vec<String> = files(&ds).into_iter().filter(|f| f.starts_with("users/")).collect();
    assert_eq!(users.len(), 1, "{users:?}");
    assert!(!old.contains(&users[0]));
    assert!(!files(&ds).iter().any(|f| f.starts_with("_dlt_journal/")));
    assert_eq!(files(&ds).iter().filter(|f| f.starts_with("_dlt_loads/")).count(), 2);
    assert_eq!(user_ids(&p), [10, 11]);
}
