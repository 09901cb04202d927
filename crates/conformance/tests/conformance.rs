//! Checks the Rust dump / compare / pretty-printer against outputs of the Python reference
//! scripts (dump.py, compare.py, jsonfmt.py) stored under `tests/fixtures/`.
//!
//! * `*.sql` build DuckDB files; `*.expected.json` are what `dump.py` printed for the same
//!   data. Deliberate difference: dump.py on Python < 3.13 prints years below 1000 unpadded
//!   (`1-01-01T...`, from glibc `strftime("%Y")`); the fixtures (and this crate) use the
//!   README's `YYYY` form (`0001-01-01T...`).
//! * `cases/*.json` are public `expected.json` files (written by jsonfmt.py);
//!   `compare_cases.json` holds perturbed result files with compare.py's stdout / exit code.
//!
//! Set `CONFORMANCE_CASES_DIR=/path/to/conformance/cases/public` to also run the
//! self-comparison and pretty-printer checks over every public case.

use dlt_conformance::{CompareOptions, compare, dump, format_report, to_pretty_json, try_compare};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("valid JSON")
}

/// Builds a DuckDB file from a SQL fixture.
fn build_db(dir: &Path, sql_fixture: &str) -> PathBuf {
    let db = dir.join(format!("{sql_fixture}.duckdb"));
    let conn = duckdb::Connection::open(&db).unwrap();
    conn.execute_batch(&read(&fixtures().join(sql_fixture))).unwrap();
    conn.close().unwrap();
    db
}

fn check_dump(db: &Path, datasets: &[&str], time_cols: Option<&[&str]>, expected_fixture: &str) {
    let datasets: Vec<String> = datasets.iter().map(|s| s.to_string()).collect();
    let time_cols: Option<Vec<String>> = time_cols.map(|c| c.iter().map(|s| s.to_string()).collect());
    let got = dump(db, &datasets, time_cols.as_deref()).unwrap();
    let want_text = read(&fixtures().join(expected_fixture));
    let got_text = to_pretty_json(&got) + "\n";
    if got_text != want_text {
        let diff: Vec<String> = want_text
            .lines()
            .zip(got_text.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(10)
            .map(|(i, (a, b))| format!("line {}:\n  want {a}\n  got  {b}", i + 1))
            .collect();
        panic!("{expected_fixture} differs:\n{}", diff.join("\n"));
    }
    assert_eq!(got, parse(&want_text));
    // the dump compares equal to itself through compare()
    assert!(compare(&got, &parse(&want_text), &CompareOptions::default()).is_empty());
}

#[test]
fn dump_all_value_types() {
    let dir = tempfile::tempdir().unwrap();
    let db = build_db(dir.path(), "types.sql");
    check_dump(&db, &["ds", "nope"], None, "types.expected.json");
}

#[test]
fn dump_floats_and_decimals() {
    let dir = tempfile::tempdir().unwrap();
    let db = build_db(dir.path(), "floats.sql");
    check_dump(&db, &["ds"], None, "floats.expected.json");
}

#[test]
fn dump_linkage_tokens_and_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let db = build_db(dir.path(), "linkage.sql");
    check_dump(&db, &["ds", "ds2", "bare", "nope", "ds_staging"], None, "linkage.expected.json");
    check_dump(&db, &["ds", "bare"], Some(&[]), "linkage.no_time_tokens.expected.json");
    check_dump(
        &db,
        &["bare", "ds2"],
        Some(&["x", "_dlt_valid_to", "_dlt_load_id"]),
        "linkage.custom_time_tokens.expected.json",
    );
}

#[test]
fn dump_of_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(dump(&dir.path().join("absent.duckdb"), &["ds".to_string()], None).is_err());
}

fn fixture_cases() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(fixtures().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), read(&p)))
        .collect();
    out.sort();
    out
}

fn check_case_file(name: &str, text: &str) {
    let v = parse(text);
    assert_eq!(to_pretty_json(&v) + "\n", text, "jsonfmt layout of {name}");
    assert_eq!(compare(&v, &v, &CompareOptions::default()), Vec::<String>::new(), "{name} vs itself");
    // every run's dump also compares equal as a bare dump
    for run in v["runs"].as_array().unwrap() {
        assert!(compare(&run["dump"], &run["dump"], &CompareOptions::default()).is_empty());
    }
}

#[test]
fn public_cases_equal_themselves_and_keep_their_layout() {
    for (name, text) in fixture_cases() {
        check_case_file(&name, &text);
    }
}

#[test]
fn all_repo_cases_equal_themselves() {
    // the cases shipped in the repo (public and extra); CONFORMANCE_CASES_DIR points elsewhere
    let dir = std::env::var("CONFORMANCE_CASES_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/conformance/cases").to_string());
    let mut n = 0;
    for case in dlt_conformance::runner::find_cases(std::path::Path::new(&dir)).unwrap() {
        let p = case.join("expected.json");
        check_case_file(&p.display().to_string(), &read(&p));
        n += 1;
    }
    assert!(n >= 45, "expected at least the 45 public cases under {dir}, found {n}");
}

fn options(flags: &[Value]) -> CompareOptions {
    let mut o = CompareOptions::default();
    let flags: Vec<&str> = flags.iter().map(|f| f.as_str().unwrap()).collect();
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        match *f {
            "--strict-errors" => o.strict_errors = true,
            "--ignore-row-counts" => o.ignore_row_counts = true,
            "--ignore-system-columns" => o.ignore_system_columns = true,
            "--rel-tol" => o.rel_tol = it.next().unwrap().parse().unwrap(),
            "--abs-tol" => o.abs_tol = it.next().unwrap().parse().unwrap(),
            "--max-rows" => o.max_rows = it.next().unwrap().parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    o
}

#[test]
fn compare_matches_compare_py() {
    let cases = parse(&read(&fixtures().join("compare_cases.json")));
    let bases: std::collections::HashMap<String, Value> =
        fixture_cases().into_iter().map(|(n, t)| (n, parse(&t))).collect();
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (e, a) = match case["base"].as_str() {
            Some(base) => {
                let b = bases[base].clone();
                if case["base_side"] == "expected" { (b, case["other"].clone()) } else { (case["other"].clone(), b) }
            }
            None => (case["expected"].clone(), case["actual"].clone()),
        };
        let opts = options(case["flags"].as_array().unwrap());
        let rc = case["rc"].as_i64().unwrap();
        match try_compare(&e, &a, &opts) {
            Ok(diffs) => {
                assert_eq!(format_report(&diffs), case["stdout"].as_str().unwrap(), "case {name}");
                assert_eq!(rc, if diffs.is_empty() { 0 } else { 1 }, "case {name}");
            }
            Err(err) => assert_eq!(rc, 2, "case {name}: unexpected error {err}"),
        }
    }
}

#[test]
fn compare_handcrafted() {
    let opts = CompareOptions::default();
    let dump = |rows: Value, cols: Value| {
        serde_json::json!({"dump_format_version": 1, "datasets": {"ds": {"exists": true,
            "tables": [{"name": "t", "columns": cols, "row_count": rows.as_array().unwrap().len(), "rows": rows}],
            "system": {"_dlt_loads": {"exists": false}}}}})
    };
    let cols = serde_json::json!([
        {"name": "a", "data_type": "DOUBLE", "nullable": true},
        {"name": "d", "data_type": "DECIMAL(38,9)", "nullable": true}
    ]);
    let e = dump(parse(r#"[[1.0, {"$decimal": "1.50"}], [2, {"$decimal": "0E-9"}]]"#), cols.clone());
    let a = dump(parse(r#"[[1, {"$decimal": "1.5"}], [2.0000000000001, {"$decimal": "0"}]]"#), cols.clone());
    assert!(compare(&e, &a, &opts).is_empty());
    let a = dump(parse(r#"[[true, {"$decimal": "1.5"}], [2, {"$decimal": "0"}]]"#), cols.clone());
    assert_eq!(compare(&e, &a, &opts), vec!["ds.t: row 0 differs: a: expected 1.0, got true".to_string()]);
    let a = dump(parse(r#"[[2, {"$decimal": "0.0"}], [1.0, {"$decimal": "1.500"}]]"#), cols);
    assert_eq!(
        compare(&e, &a, &opts),
        vec!["ds.t: same rows, different canonical order (check sorting/id tokens)".to_string()]
    );
    // result file vs bare dump is bad input
    let r = serde_json::json!({"runs": []});
    assert!(try_compare(&r, &e, &opts).is_err());
    assert_eq!(compare(&r, &e, &opts).len(), 1);
    assert_eq!(format_report(&[]), "EQUAL\n");
}
