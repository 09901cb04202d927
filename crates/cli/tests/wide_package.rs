//! A wide load package — 100 tables × ~60 columns, a few rows each, nested child tables — through
//! the `dlt` binary into DuckDB: it loads under the default memory limit and reads back exactly;
//! under a limit too small for it the load fails with an error that names the setting and the
//! way out, the package stays pending, and the next run after the limit is raised loads it once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Map, Value, json};

const RESOURCES: usize = 25;
const CHILD_LISTS: usize = 3; // 25 × (1 root + 3 child tables) = 100 tables
const ROOT_FIELDS: usize = 58; // + id, _dlt_load_id, _dlt_id
const CHILD_FIELDS: usize = 57; // + _dlt_parent_id, _dlt_list_idx, _dlt_id
const ROWS: usize = 3;
const ITEMS: usize = 2; // per child list and root row

fn field(k: usize, seed: usize) -> Value {
    match k % 3 {
        0 => json!(seed * 7 + k),
        1 => json!(format!("v{seed}_{k}")),
        _ => json!((seed + k).is_multiple_of(2)),
    }
}

/// Root rows of resource `r` as the source emits them (with their child lists).
fn records(r: usize) -> Vec<Value> {
    (0..ROWS)
        .map(|i| {
            let mut o = Map::new();
            o.insert("id".into(), json!(i));
            for k in 0..ROOT_FIELDS {
                o.insert(format!("f{k}"), field(k, r * 100 + i));
            }
            for c in 0..CHILD_LISTS {
                let items: Vec<Value> = (0..ITEMS)
                    .map(|j| {
                        Value::Object(
                            (0..CHILD_FIELDS)
                                .map(|k| (format!("g{k}"), field(k, r * 1000 + c * 100 + i * 10 + j)))
                                .collect(),
                        )
                    })
                    .collect();
                o.insert(format!("kids{c}"), Value::Array(items));
            }
            Value::Object(o)
        })
        .collect()
}

struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Project {
    fn new(name: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("data")).unwrap();
        let mut toml = format!(
            "[pipeline]\nname = \"{name}\"\ndestination = \"duckdb\"\ndataset_name = \"wide\"\n\n[source]\ntype = \"files\"\n"
        );
        for r in 0..RESOURCES {
            let lines: String = records(r).iter().map(|v| format!("{v}\n")).collect();
            std::fs::write(root.join(format!("data/r{r}.jsonl")), lines).unwrap();
            toml.push_str(&format!("\n[[source.resources]]\nname = \"r{r}\"\npath = \"data/r{r}.jsonl\"\n"));
        }
        std::fs::write(root.join("pipeline.toml"), toml).unwrap();
        Project { _dir: dir, root }
    }

    fn dlt(&self, args: &[&str], memory_limit: Option<&str>) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dlt"));
        c.current_dir(&self.root)
            .env("DLT_DATA_DIR", self.root.join("dlt-data"))
            .env_remove("DLT_FAULT")
            .env_remove("DESTINATION__DUCKDB__MEMORY_LIMIT")
            // a fixed thread count: DuckDB's per-thread buffers do not depend on the machine
            .env("DESTINATION__DUCKDB__THREADS", "2");
        if let Some(m) = memory_limit {
            c.env("DESTINATION__DUCKDB__MEMORY_LIMIT", m);
        }
        c.args(args).output().unwrap()
    }

    fn db(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.duckdb"))
    }
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "failed: {}\nstdout: {out}\nstderr: {}", o.status, String::from_utf8_lossy(&o.stderr));
    out
}

/// Rows of `sql` (one JSON document per row, made by DuckDB's `to_json`).
fn json_rows(conn: &duckdb::Connection, sql: &str) -> Vec<Value> {
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.map(|r| serde_json::from_str(&r.unwrap()).unwrap()).collect()
}

fn without_dlt_columns(v: Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(o.into_iter().filter(|(k, _)| !k.starts_with("_dlt_")).collect()),
        v => v,
    }
}

/// Every table of every resource, read back with an independent DuckDB connection, equals the
/// source records; `load_id` restricts the rows to that load, which must be in `_dlt_loads` once
/// (and, with `with_state`, have written the state row).
fn assert_dataset_exact(db: &Path, load_id: &str, with_state: bool) {
    let conn = duckdb::Connection::open(db).unwrap();
    let n_tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'wide' AND table_name NOT LIKE '\\_dlt\\_%' ESCAPE '\\'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n_tables as usize, RESOURCES * (1 + CHILD_LISTS));
    let n_columns: i64 = conn
        .query_row("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'wide'", [], |r| r.get(0))
        .unwrap();
    assert!(n_columns >= 6000, "{n_columns} columns");
    for r in 0..RESOURCES {
        let expected = records(r);
        let roots = json_rows(
            &conn,
            &format!("SELECT to_json(t) FROM wide.r{r} t WHERE _dlt_load_id = '{load_id}' ORDER BY id"),
        );
        let expected_roots: Vec<Value> = expected
            .iter()
            .map(|v| {
                let mut o = v.as_object().unwrap().clone();
                o.retain(|k, _| !k.starts_with("kids"));
                Value::Object(o)
            })
            .collect();
        assert_eq!(roots.into_iter().map(without_dlt_columns).collect::<Vec<_>>(), expected_roots, "table r{r}");
        for c in 0..CHILD_LISTS {
            let kids = json_rows(
                &conn,
                &format!(
                    "SELECT to_json(k) FROM wide.r{r}__kids{c} k JOIN wide.r{r} p ON k._dlt_parent_id = p._dlt_id \
                     WHERE p._dlt_load_id = '{load_id}' ORDER BY p.id, k._dlt_list_idx"
                ),
            );
            let expected_kids: Vec<Value> =
                expected.iter().flat_map(|v| v[format!("kids{c}")].as_array().unwrap().clone()).collect();
            assert_eq!(
                kids.into_iter().map(without_dlt_columns).collect::<Vec<_>>(),
                expected_kids,
                "table r{r}__kids{c}"
            );
        }
    }
    let loads: i64 = conn
        .query_row("SELECT count(*) FROM wide._dlt_loads WHERE load_id = ? AND status = 0", [load_id], |r| r.get(0))
        .unwrap();
    assert_eq!(loads, 1, "load {load_id} in _dlt_loads");
    let states: i64 = conn
        .query_row("SELECT count(*) FROM wide._dlt_pipeline_state WHERE _dlt_load_id = ?", [load_id], |r| r.get(0))
        .unwrap();
    assert_eq!(states, i64::from(with_state), "state rows of load {load_id}");
}

fn load_ids(db: &Path) -> Vec<String> {
    let conn = duckdb::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT load_id FROM wide._dlt_loads ORDER BY load_id").unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
}

#[test]
fn wide_package_loads_under_the_default_memory_limit() {
    let p = Project::new("wide_ok");
    ok(&p.dlt(&["run", "pipeline.toml"], None));
    let ids = load_ids(&p.db("wide_ok"));
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_dataset_exact(&p.db("wide_ok"), &ids[0], true);
}

#[test]
fn out_of_memory_names_the_setting_keeps_the_package_and_loads_it_once_after_raising() {
    let p = Project::new("wide_oom");
    let o = p.dlt(&["run", "pipeline.toml"], Some("4MB"));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err.lines().find(|l| l.starts_with("ERROR:")).unwrap_or_else(|| panic!("no ERROR line in {err}"));
    for needle in [
        "Out of Memory Error",
        "memory_limit is 4MB",
        "DESTINATION__DUCKDB__MEMORY_LIMIT",
        "[destination.duckdb]",
        "stays pending",
        "`dlt pipeline wide_oom drop-pending-packages`",
    ] {
        assert!(line.contains(needle), "`{needle}` missing from: {line}");
    }
    assert!(!line.contains("SET memory_limit"), "DuckDB's SQL advice leaked: {line}");
    let info = ok(&p.dlt(&["pipeline", "wide_oom", "info"], None));
    assert!(info.contains("normalized (pending load)"), "{info}");
    let pending: String = {
        let dir = p.root.join("dlt-data/pipelines/wide_oom/load/normalized");
        let mut ids: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        ids.pop().unwrap()
    };
    // nothing of the package is visible
    let db = p.db("wide_oom");
    if db.exists() {
        assert!(load_ids(&db).is_empty());
    }

    // 16MB is a tenth of the default, and less than the ~25 MB this package needed before load
    // connections got small initial column segments
    ok(&p.dlt(&["run", "pipeline.toml"], Some("16MB")));
    let ids = load_ids(&db);
    assert_eq!(ids.iter().filter(|id| **id == pending).count(), 1, "{ids:?}");
    assert_dataset_exact(&db, &pending, true);
    // the run extracted the files anew after loading the pending package: a second, complete load
    assert_eq!(ids.len(), 2, "{ids:?}");
    let fresh = ids.iter().find(|id| **id != pending).unwrap();
    assert_dataset_exact(&db, fresh, false);
    let info = ok(&p.dlt(&["pipeline", "wide_oom", "info"], None));
    assert!(!info.contains("pending"), "{info}");
}
