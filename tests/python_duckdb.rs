//! A DuckDB file created by Python's duckdb 2.0.1 (what `pip install duckdb` and Python dlt give)
//! is loaded into by dlt-rs, in the same dataset, and both sides read everything back.
//!
//! The Python interpreter is `$DLT_TEST_DLT_PYTHON`, else the oracle venv
//! `~/.cache/dlt-rs/oracle/bin/python`. Without it the test is skipped with a message, except
//! under `CI=true`, where a missing interpreter fails it.

use std::path::{Path, PathBuf};
use std::process::Command;

use dlt::Resource;
use serde_json::json;

mod common;
use common::{Env, query, scalar};

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"))
}

/// The Python with duckdb, or `None` (after saying why) when the test should be skipped.
fn python() -> Option<PathBuf> {
    let path = match std::env::var_os("DLT_TEST_DLT_PYTHON").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/dlt-rs/oracle/bin/python"),
    };
    if path.is_file() {
        return Some(path);
    }
    let msg = format!(
        "Python with duckdb 2.0.1 not found at {} (set DLT_TEST_DLT_PYTHON, or create the oracle venv \
         with `pip install dlt[duckdb]==1.31`)",
        path.display()
    );
    assert!(!is_ci(), "{msg}");
    eprintln!("SKIPPED: {msg}");
    None
}

/// Run `script` with `args`; its stdout (trimmed). Panics with Python's stderr on failure.
fn run_python(python: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(python).arg("-c").arg(script).args(args).output().expect("cannot start Python");
    assert!(out.status.success(), "Python failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const CREATE: &str = r#"
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE SCHEMA gh_data")
con.execute("CREATE TABLE gh_data.py_notes (id BIGINT, body VARCHAR, noted_at TIMESTAMPTZ)")
con.execute("INSERT INTO gh_data.py_notes SELECT i, 'note ' || i, TIMESTAMPTZ '2024-05-06 07:08:09+00' + INTERVAL (i) HOUR FROM range(5) t(i)")
con.close()
print(duckdb.__version__)
"#;

const READ_BACK: &str = r#"
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
for (t,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'gh_data' ORDER BY table_name").fetchall():
    (n,) = con.execute(f'SELECT count(*) FROM gh_data."{t}"').fetchone()
    print(f"{t}={n}")
"#;

#[test]
fn loads_into_a_database_file_written_by_python_duckdb_2() {
    let Some(python) = python() else { return };
    let env = Env::new();
    let db = env.db();
    let db_arg = db.to_str().unwrap();
    let version = run_python(&python, CREATE, &[db_arg]);
    assert_eq!(version, "2.0.1", "the test needs Python's duckdb 2.0.1, {} has {version}", python.display());

    let issues: Vec<_> = (0..12)
        .map(|i| json!({"id": i, "title": format!("issue {i}"), "labels": (0..i % 3).map(|l| json!({"name": format!("l{l}")})).collect::<Vec<_>>()}))
        .collect();
    let mut p = env.pipeline("py_file", "gh_data");
    let info = p.run(Resource::from_values("issues", issues)).unwrap();
    assert!(!info.has_failed_jobs());
    assert_eq!(info.row_counts["issues"], 12);
    assert_eq!(info.row_counts["issues__labels"], 12); // 0 + 1 + 2 per three issues

    // Python's table is untouched, dlt-rs's tables are beside it in the same schema.
    assert_eq!(
        query(&db, "SELECT id, body, strftime(noted_at AT TIME ZONE 'UTC', '%H:%M') FROM gh_data.py_notes ORDER BY id"),
        (0..5)
            .map(|i| vec![Some(i.to_string()), Some(format!("note {i}")), Some(format!("{:02}:08", 7 + i))])
            .collect::<Vec<_>>()
    );
    assert_eq!(
        scalar(&db, "SELECT string_agg(title, ',' ORDER BY id) FROM gh_data.issues WHERE id < 3"),
        "issue 0,issue 1,issue 2"
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM gh_data.issues__labels c JOIN gh_data.issues p ON c._dlt_parent_id = p._dlt_id"
        ),
        "12"
    );
    assert_eq!(
        query(&db, "SELECT load_id, schema_name, status FROM gh_data._dlt_loads"),
        vec![vec![Some(info.load_ids[0].clone()), Some("py_file".into()), Some("0".into())]]
    );

    // A second run appends; then Python 2.0.1 opens the file dlt-rs wrote and sees every table.
    p.run(Resource::from_values("issues", vec![json!({"id": 100, "title": "late"})])).unwrap();
    let listing = run_python(&python, READ_BACK, &[db_arg]);
    let rust_side: Vec<String> = query(
        &db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'gh_data' ORDER BY table_name",
    )
    .into_iter()
    .map(|r| {
        let t = r[0].clone().unwrap();
        let n = scalar(&db, &format!("SELECT count(*) FROM gh_data.\"{t}\""));
        format!("{t}={n}")
    })
    .collect();
    assert_eq!(listing.lines().collect::<Vec<_>>(), rust_side);
    for expected in ["py_notes=5", "issues=13", "issues__labels=12", "_dlt_loads=2", "_dlt_pipeline_state=1"] {
        assert!(rust_side.iter().any(|l| l == expected), "{expected} missing from {rust_side:?}");
    }
}
