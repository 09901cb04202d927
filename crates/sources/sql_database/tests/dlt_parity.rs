//! Parity with Python dlt 1.31: the every-type fixture tables (tests/fixtures/*_all_types.sql)
//! are created in a Postgres schema and a MariaDB/MySQL database of their own, loaded by dlt-rs's
//! sql_database (Arrow backend, reflection level `full`, the defaults) into DuckDB and dumped
//! canonically (crates/conformance). The dumps must equal tests/oracle/expected.json, which dlt's
//! own `sql_database(backend="pyarrow", reflection_level="full")` produced from the same fixtures
//! (tests/oracle/make_expected.py; see tests/oracle/README.md) — after exactly the adjustments of
//! [`deviations`], each one a column where dlt's mapping is a mistake and dlt-rs deliberately
//! differs, explained in tests/oracle/DEVIATIONS.md. An adjustment first checks that dlt's dump
//! holds exactly the documented dlt values, then puts in the documented dlt-rs values; any other
//! difference fails the test.
//!
//! The rows backend (dlt's default `sqlalchemy`) has its own oracle, tests/oracle/expected_rows.json
//! (`make_expected.py --backend sqlalchemy`), and its own list of differences,
//! [`rows_deviations`] and [`MOVED_BY_DLT`], explained in DEVIATIONS.md's second part.
//!
//! Under `CI=true` a missing database server fails the test (tests/common).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{Dest, MyDb, PgSchema};
use dlt_conformance::compare::py_eq;
use dlt_conformance::{CompareOptions, format_report, to_pretty_json, try_compare};
use dlt_core::resource::Source;
use dlt_sql_database::{Backend, SqlDatabase, TableOptions};
use serde_json::{Map, Value, json};

const TABLE: &str = "all_types";

fn oracle_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle").join(name)
}

/// One column that dlt-rs deliberately loads differently from dlt (see DEVIATIONS.md, whose
/// section is headed `` `<database>.all_types.<column>` ``).
struct Deviation {
    /// `postgres` or `mysql` (the run of expected.json)
    database: &'static str,
    column: &'static str,
    /// dlt's DuckDB type and values by id (1, 2, …); `None`: dlt cannot load the column at all
    /// (make_expected.py leaves it out and records dlt's error under `dlt_cannot_load`)
    dlt: Option<(&'static str, Vec<Value>)>,
    /// dlt-rs's DuckDB type and values by id
    dlt_rs: (&'static str, Vec<Value>),
    /// the column before it (in both dumps; where it is inserted when dlt lacks it)
    after: &'static str,
}

/// A value as the canonical dump writes it.
fn dec(s: &str) -> Value {
    json!({ "$decimal": s })
}
fn js(v: Value) -> Value {
    json!({ "$json": v })
}

/// `-1.7976931348623157e308` as dlt writes a MySQL DOUBLE: a decimal with 10 places, as text.
const DLT_MYSQL_DOUBLE_MIN: &str = "-179769313486231570814527423731704356798070567525844996598917476803157260780028538760589558632766878171540458953514382464234321326889464182768467546703537516986049910576551282076245490090389328944075868508455133942304583236903222948165808559332123348274797826204144723168738177180919299881250404026184124858368.0000000000";

/// The documented differences, in DEVIATIONS.md's order. Postgres rows are ids 1–4, MySQL rows
/// ids 1–3; id 3 is NULL in every column.
fn deviations() -> Vec<Deviation> {
    let n = Value::Null;
    vec![
        Deviation {
            database: "postgres",
            column: "c_num_unbounded",
            dlt: None,
            dlt_rs: ("DECIMAL(38,9)", vec![dec("12345.678901235"), dec("-1E-9"), n.clone(), dec("0E-9")]),
            after: "c_num_small",
        },
        Deviation {
            database: "postgres",
            column: "c_timetz",
            dlt: Some((
                "TIME",
                vec![json!("23:59:59.999999"), json!("00:00:00.000000"), n.clone(), json!("12:00:00.000000")],
            )),
            dlt_rs: (
                "TIME",
                vec![json!("18:29:59.999999"), json!("00:00:00.000000"), n.clone(), json!("20:00:00.000000")],
            ),
            after: "c_time",
        },
        Deviation {
            database: "postgres",
            column: "c_interval",
            dlt: None,
            dlt_rs: ("VARCHAR", vec![json!("P1Y2M3DT4H5M6.789S"), json!("P-1DT-1S"), n.clone(), json!("PT0S")]),
            after: "c_tstz",
        },
        Deviation {
            database: "postgres",
            column: "c_jsonb",
            dlt: Some(("JSON", vec![js(json!({"a": "ü", "b": 1})), n.clone(), n.clone(), js(json!(42))])),
            dlt_rs: ("JSON", vec![js(json!({"a": "ü", "b": 1})), js(n.clone()), n.clone(), js(json!(42))]),
            after: "c_json",
        },
        Deviation {
            database: "postgres",
            column: "c_num_wide",
            dlt: None,
            dlt_rs: (
                "VARCHAR",
                vec![
                    json!("123456789012345678901234567890123456789012345678.91"),
                    json!("-0.01"),
                    n.clone(),
                    json!("0.00"),
                ],
            ),
            after: "c_domain",
        },
        Deviation {
            database: "postgres",
            column: "c_range",
            dlt: Some((
                "JSON",
                vec![
                    js(json!({"lower": 1, "upper": 10, "bounds": "[)", "empty": false})),
                    js(json!({"lower": null, "upper": null, "bounds": "[)", "empty": true})),
                    n.clone(),
                    js(json!({"lower": null, "upper": null, "bounds": "()", "empty": false})),
                ],
            )),
            dlt_rs: ("VARCHAR", vec![json!("[1,10)"), json!("empty"), n.clone(), json!("(,)")]),
            after: "c_tsvector",
        },
        Deviation {
            database: "postgres",
            column: "c_pair",
            dlt: Some(("VARCHAR", vec![json!("(1,ü)"), json!("(,)"), n.clone(), json!("(-5,\"\")")])),
            dlt_rs: (
                "JSON",
                vec![
                    js(json!({"a": 1, "b": "ü"})),
                    js(json!({"a": null, "b": null})),
                    n.clone(),
                    js(json!({"a": -5, "b": ""})),
                ],
            ),
            after: "c_point",
        },
        Deviation {
            database: "mysql",
            column: "c_double",
            dlt: Some(("VARCHAR", vec![json!(DLT_MYSQL_DOUBLE_MIN), json!("0E-10"), n.clone()])),
            dlt_rs: ("DOUBLE", vec![json!(-1.7976931348623157e308), json!(2.2250738585072014e-308), n.clone()]),
            after: "c_float",
        },
        Deviation {
            database: "mysql",
            column: "c_set",
            dlt: Some(("VARCHAR", vec![json!("[\"y\",\"x\"]"), json!("[]"), n.clone()])),
            dlt_rs: ("VARCHAR", vec![json!("x,y"), json!(""), n.clone()]),
            after: "c_enum",
        },
        Deviation {
            database: "mysql",
            column: "c_dec_wide",
            dlt: None,
            dlt_rs: (
                "VARCHAR",
                vec![
                    json!("12345678901234567890123456789012345.123456789012345678901234567890"),
                    json!("-0.000000000000000000000000000001"),
                    n,
                ],
            ),
            after: "c_uint",
        },
    ]
}

fn values_eq(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| py_eq(x, y))
}

/// The fixture table of one run's dump (mutable).
fn table_of<'a>(run: &'a mut Value, database: &str) -> &'a mut Map<String, Value> {
    assert_eq!(run["database"], database, "runs of expected.json: postgres, then mysql");
    let datasets = run["dump"]["datasets"].as_object_mut().unwrap();
    assert_eq!(datasets.len(), 1);
    let ds = datasets.values_mut().next().unwrap();
    let tables = ds["tables"].as_array_mut().unwrap();
    let t = tables.iter_mut().find(|t| t["name"] == TABLE).unwrap_or_else(|| panic!("no {TABLE} in {database}"));
    t.as_object_mut().unwrap()
}

fn column_names(t: &Map<String, Value>) -> Vec<String> {
    t["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
}

/// Row index by id (the first column).
fn row_ids(t: &Map<String, Value>) -> Vec<usize> {
    t["rows"].as_array().unwrap().iter().map(|r| r[0].as_u64().unwrap() as usize).collect()
}

/// Applies the deviations to dlt's dump (`expected`), checking each against dlt's values first;
/// `actual` only gives the row order afterwards (the dump orders rows by content, so changed
/// values can reorder them; rows are matched by id, and their contents are still compared).
fn adjust(expected: &mut Value, actual: &Value) {
    let devs = deviations();
    // make_expected.py's list of columns dlt cannot load is the list of `dlt: None` deviations
    for database in ["postgres", "mysql"] {
        let recorded: BTreeSet<&str> =
            expected["dlt_cannot_load"][database].as_object().unwrap().keys().map(String::as_str).collect();
        let documented: BTreeSet<&str> =
            devs.iter().filter(|d| d.database == database && d.dlt.is_none()).map(|d| d.column).collect();
        assert_eq!(recorded, documented, "{database}: columns dlt cannot load (expected.json vs deviations())");
    }
    let runs = expected["runs"].as_array_mut().unwrap();
    for d in &devs {
        let run = runs.iter_mut().find(|r| r["database"] == d.database).unwrap();
        let t = table_of(run, d.database);
        let mut ids = row_ids(t);
        ids.sort();
        assert!(ids.iter().enumerate().all(|(i, id)| *id == i + 1), "{}: ids are 1..n", d.database);
        let names = column_names(t);
        let (rs_type, rs_values) = &d.dlt_rs;
        let what = format!("{}.{TABLE}.{}", d.database, d.column);
        assert_eq!(rs_values.len(), ids.len(), "{what}: one dlt-rs value per row");
        let idx = match &d.dlt {
            Some((dlt_type, dlt_values)) => {
                let idx =
                    names.iter().position(|n| n == d.column).unwrap_or_else(|| panic!("{what}: not in dlt's dump"));
                assert_eq!(names[idx - 1], d.after, "{what}: its neighbour in dlt's dump");
                let col = &t["columns"][idx];
                let mut by_id = vec![Value::Null; ids.len()];
                for row in t["rows"].as_array().unwrap() {
                    by_id[row[0].as_u64().unwrap() as usize - 1] = row[idx].clone();
                }
                assert!(
                    col["data_type"] == *dlt_type && values_eq(&by_id, dlt_values),
                    "{what}: dlt's dump no longer holds the documented values: {} {} (documented: {dlt_type} {})",
                    col["data_type"],
                    Value::Array(by_id.clone()),
                    Value::Array(dlt_values.clone())
                );
                assert!(
                    !(dlt_type == rs_type && values_eq(dlt_values, rs_values)),
                    "{what}: the documented dlt and dlt-rs sides are the same: drop the deviation"
                );
                t["columns"][idx]["data_type"] = json!(rs_type);
                idx
            }
            None => {
                assert!(!names.iter().any(|n| n == d.column), "{what}: in dlt's dump although listed as not loadable");
                let idx = names.iter().position(|n| n == d.after).unwrap() + 1;
                let col = json!({"name": d.column, "data_type": rs_type, "nullable": true});
                t.get_mut("columns").unwrap().as_array_mut().unwrap().insert(idx, col);
                for row in t.get_mut("rows").unwrap().as_array_mut().unwrap() {
                    row.as_array_mut().unwrap().insert(idx, Value::Null);
                }
                idx
            }
        };
        for row in t.get_mut("rows").unwrap().as_array_mut().unwrap() {
            let id = row[0].as_u64().unwrap() as usize;
            row[idx] = rs_values[id - 1].clone();
        }
    }
    // dlt-rs's row order (by id)
    for (run, database) in runs.iter_mut().zip(["postgres", "mysql"]) {
        let actual_run = actual["runs"].as_array().unwrap().iter().find(|r| r["database"] == database).unwrap();
        let order: Vec<u64> = {
            let mut a = actual_run.clone();
            row_ids(table_of(&mut a, database)).into_iter().map(|i| i as u64).collect()
        };
        let t = table_of(run, database);
        let rows = t.get_mut("rows").unwrap().as_array_mut().unwrap();
        if rows.len() == order.len() {
            rows.sort_by_key(|r| order.iter().position(|id| r[0].as_u64() == Some(*id)));
        }
    }
}

/// Every deviation has its section in DEVIATIONS.md, and every section its deviation.
fn check_documented() {
    let text = std::fs::read_to_string(oracle_file("DEVIATIONS.md")).unwrap();
    // a heading names one column or several: "## `a`, `b` — why"
    let sections: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter(|l| l.starts_with('`'))
        .flat_map(|l| l.split(" — ").next().unwrap_or_default().split('`').skip(1).step_by(2).map(str::to_string))
        .collect();
    let mut listed: BTreeSet<String> =
        deviations().iter().map(|d| format!("{}.{TABLE}.{}", d.database, d.column)).collect();
    listed.extend(rows_deviations().iter().map(|d| format!("rows:{}.{TABLE}.{}", d.database, d.column)));
    assert_eq!(sections, listed, "the sections of DEVIATIONS.md and deviations() must name the same columns");
}

/// A column where dlt's sqlalchemy backend and dlt-rs's rows backend differ (DEVIATIONS.md,
/// section `` `rows:<database>.all_types.<column>` ``).
struct RowsDeviation {
    database: &'static str,
    column: &'static str,
    /// dlt's DuckDB type and values by id; `None`: dlt has no such column (it cannot load it)
    dlt: Option<(&'static str, Vec<Value>)>,
    /// dlt-rs's; `None`: only dlt makes this column (a variant column of a value it mistyped,
    /// or a column of a value it unnests)
    dlt_rs: Option<(&'static str, Vec<Value>)>,
}

/// Columns dlt's sqlalchemy backend (with SQLAlchemy 2.1) leaves untyped at reflection, which
/// therefore follow all typed columns; dlt-rs keeps the table's order (DEVIATIONS.md, `rows:
/// column order`).
const MOVED_BY_DLT: &[(&str, &[&str])] = &[
    ("postgres", &["c_real", "c_double", "c_domain", "c_oid"]),
    ("mysql", &["c_float", "c_year", "c_bit", "c_point"]),
];

fn hex(s: &str) -> Value {
    json!({ "$hex": s })
}

/// The rows deviations, in DEVIATIONS.md's order.
fn rows_deviations() -> Vec<RowsDeviation> {
    let n = Value::Null;
    let rs = |ty: &'static str, v: Vec<Value>| Some((ty, v));
    let dlt = rs;
    // the columns only dlt has: a variant of a value it mistyped, or an unnested one
    let dlt_only = |database, column, ty, v| RowsDeviation { database, column, dlt: Some((ty, v)), dlt_rs: None };
    // columns dlt does not have: it cannot load them, or it unnested them
    let rs_only = |database, column, ty, v| RowsDeviation { database, column, dlt: None, dlt_rs: Some((ty, v)) };
    // an empty binary value: dlt writes SQL NULL and a marker text into a variant column
    let empty_binary = |database, column, first: &str, marker_at: usize, ids: usize| {
        let mut d = vec![n.clone(); ids];
        d[0] = hex(first);
        let mut r = d.clone();
        r[marker_at] = hex("");
        RowsDeviation { database, column, dlt: Some(("BLOB", d)), dlt_rs: Some(("BLOB", r)) }
    };
    let marker = |database, column, marker_at: usize, ids: usize| {
        let mut v = vec![n.clone(); ids];
        v[marker_at] = json!("\u{f02b}");
        dlt_only(database, column, "VARCHAR", v)
    };
    let mut pg_bytea = empty_binary("postgres", "c_bytea", "00ff10", 1, 4);
    pg_bytea.dlt.as_mut().unwrap().1[3] = hex("00");
    pg_bytea.dlt_rs.as_mut().unwrap().1[3] = hex("00");
    vec![
        rs_only(
            "postgres",
            "c_interval",
            "VARCHAR",
            vec![json!("P1Y2M3DT4H5M6.789S"), json!("P-1DT-1S"), n.clone(), json!("PT0S")],
        ),
        rs_only(
            "postgres",
            "c_num_wide",
            "VARCHAR",
            vec![
                json!("123456789012345678901234567890123456789012345678.91"),
                json!("-0.01"),
                n.clone(),
                json!("0.00"),
            ],
        ),
        pg_bytea,
        marker("postgres", "c_bytea__v_text", 1, 4),
        RowsDeviation {
            database: "postgres",
            column: "c_timetz",
            dlt: dlt(
                "TIME",
                vec![json!("23:59:59.999999"), json!("00:00:00.000000"), n.clone(), json!("12:00:00.000000")],
            ),
            dlt_rs: rs(
                "TIME",
                vec![json!("18:29:59.999999"), json!("00:00:00.000000"), n.clone(), json!("20:00:00.000000")],
            ),
        },
        RowsDeviation {
            database: "postgres",
            column: "c_json",
            dlt: dlt(
                "JSON",
                vec![js(json!({"b": 1, "a": [1, 2, {"x": null}], "u": "ü"})), js(json!([])), n.clone(), n.clone()],
            ),
            dlt_rs: rs(
                "JSON",
                vec![
                    js(json!({"b": 1, "a": [1, 2, {"x": null}], "u": "ü"})),
                    js(json!([])),
                    n.clone(),
                    js(json!("just a string")),
                ],
            ),
        },
        dlt_only(
            "postgres",
            "c_json__v_text",
            "VARCHAR",
            vec![n.clone(), n.clone(), n.clone(), json!("just a string")],
        ),
        RowsDeviation {
            database: "postgres",
            column: "c_jsonb",
            dlt: dlt("JSON", vec![js(json!({"a": "ü", "b": 1})), n.clone(), n.clone(), n.clone()]),
            dlt_rs: rs("JSON", vec![js(json!({"a": "ü", "b": 1})), js(n.clone()), n.clone(), js(json!(42))]),
        },
        dlt_only("postgres", "c_jsonb__v_bigint", "BIGINT", vec![n.clone(), n.clone(), n.clone(), json!(42)]),
        RowsDeviation {
            database: "postgres",
            column: "c_pair",
            dlt: dlt("VARCHAR", vec![json!("(1,ü)"), json!("(,)"), n.clone(), json!("(-5,\"\")")]),
            dlt_rs: rs(
                "JSON",
                vec![
                    js(json!({"a": 1, "b": "ü"})),
                    js(json!({"a": null, "b": null})),
                    n.clone(),
                    js(json!({"a": -5, "b": ""})),
                ],
            ),
        },
        rs_only("postgres", "c_range", "VARCHAR", vec![json!("[1,10)"), json!("empty"), n.clone(), json!("(,)")]),
        dlt_only("postgres", "c_range__lower", "BIGINT", vec![json!(1), n.clone(), n.clone(), n.clone()]),
        dlt_only("postgres", "c_range__upper", "BIGINT", vec![json!(10), n.clone(), n.clone(), n.clone()]),
        dlt_only("postgres", "c_range__bounds", "VARCHAR", vec![json!("[)"), json!("[)"), n.clone(), json!("()")]),
        dlt_only("postgres", "c_range__empty", "BOOLEAN", vec![json!(false), json!(true), n.clone(), json!(false)]),
        rs_only(
            "mysql",
            "c_double",
            "DOUBLE",
            vec![json!(-1.7976931348623157e308), json!(2.2250738585072014e-308), n.clone()],
        ),
        rs_only("mysql", "c_set", "VARCHAR", vec![json!("x,y"), json!(""), n.clone()]),
        rs_only(
            "mysql",
            "c_dec_wide",
            "VARCHAR",
            vec![
                json!("12345678901234567890123456789012345.123456789012345678901234567890"),
                json!("-0.000000000000000000000000000001"),
                n.clone(),
            ],
        ),
        empty_binary("mysql", "c_varbinary", "0102", 1, 3),
        marker("mysql", "c_varbinary__v_text", 1, 3),
        empty_binary("mysql", "c_blob", "deadbeef", 1, 3),
        marker("mysql", "c_blob__v_text", 1, 3),
        empty_binary("mysql", "c_mediumblob", "01", 1, 3),
        marker("mysql", "c_mediumblob__v_text", 1, 3),
        empty_binary("mysql", "c_longblob", "0203", 1, 3),
        marker("mysql", "c_longblob__v_text", 1, 3),
    ]
}

/// The columns of a dump's table, by name, as (type, values by id).
fn column_by_id(t: &Map<String, Value>, column: &str) -> Option<(Value, Vec<Value>)> {
    let idx = column_names(t).iter().position(|n| n == column)?;
    let n = t["rows"].as_array().unwrap().len();
    let mut by_id = vec![Value::Null; n];
    for row in t["rows"].as_array().unwrap() {
        by_id[row[0].as_u64().unwrap() as usize - 1] = row[idx].clone();
    }
    Some((t["columns"][idx]["data_type"].clone(), by_id))
}

fn remove_column(t: &mut Map<String, Value>, idx: usize) {
    t.get_mut("columns").unwrap().as_array_mut().unwrap().remove(idx);
    for row in t.get_mut("rows").unwrap().as_array_mut().unwrap() {
        row.as_array_mut().unwrap().remove(idx);
    }
}

/// Applies the rows deviations to dlt's dump, then puts dlt's columns into dlt-rs's order after
/// checking that the columns out of place are exactly [`MOVED_BY_DLT`], in table order after the
/// typed ones.
fn adjust_rows(expected: &mut Value, actual: &Value) {
    let devs = rows_deviations();
    for database in ["postgres", "mysql"] {
        let recorded: BTreeSet<&str> =
            expected["dlt_cannot_load"][database].as_object().unwrap().keys().map(String::as_str).collect();
        let documented: BTreeSet<&str> =
            devs.iter().filter(|d| d.database == database && d.dlt.is_none()).map(|d| d.column).collect();
        assert!(
            recorded.is_subset(&documented),
            "{database}: columns dlt cannot load (expected_rows.json: {recorded:?}) must be documented as missing in \
             dlt's dump ({documented:?})"
        );
    }
    let runs = expected["runs"].as_array_mut().unwrap();
    for d in &devs {
        let run = runs.iter_mut().find(|r| r["database"] == d.database).unwrap();
        let t = table_of(run, d.database);
        let what = format!("rows:{}.{TABLE}.{}", d.database, d.column);
        let found = column_by_id(t, d.column);
        match (&d.dlt, found) {
            (Some((dlt_type, dlt_values)), Some((ty, values))) => assert!(
                ty == *dlt_type && values_eq(&values, dlt_values),
                "{what}: dlt's dump no longer holds the documented values: {ty} {} (documented: {dlt_type} {})",
                Value::Array(values.clone()),
                Value::Array(dlt_values.clone())
            ),
            (Some(_), None) => panic!("{what}: not in dlt's dump"),
            (None, Some(_)) => panic!("{what}: in dlt's dump although listed as not loadable"),
            (None, None) => {}
        }
        let names = column_names(t);
        let idx = names.iter().position(|n| n == d.column);
        match (&d.dlt_rs, idx) {
            (None, Some(i)) => remove_column(t, i),
            (Some((rs_type, rs_values)), idx) => {
                if let Some((dlt_type, dlt_values)) = &d.dlt {
                    assert!(
                        !(dlt_type == rs_type && values_eq(dlt_values, rs_values)),
                        "{what}: the documented dlt and dlt-rs sides are the same: drop the deviation"
                    );
                }
                let i = match idx {
                    Some(i) => {
                        t["columns"][i]["data_type"] = json!(rs_type);
                        i
                    }
                    None => {
                        let i = names.len();
                        let col = json!({"name": d.column, "data_type": rs_type, "nullable": true});
                        t.get_mut("columns").unwrap().as_array_mut().unwrap().push(col);
                        for row in t.get_mut("rows").unwrap().as_array_mut().unwrap() {
                            row.as_array_mut().unwrap().push(Value::Null);
                        }
                        i
                    }
                };
                for row in t.get_mut("rows").unwrap().as_array_mut().unwrap() {
                    let id = row[0].as_u64().unwrap() as usize;
                    row[i] = rs_values[id - 1].clone();
                }
            }
            (None, None) => {}
        }
    }
    for run in runs.iter_mut() {
        let database = run["database"].as_str().unwrap().to_string();
        let actual_run = actual["runs"].as_array().unwrap().iter().find(|r| r["database"] == database).unwrap();
        let mut a = actual_run.clone();
        let at = table_of(&mut a, &database);
        let rs_order = column_names(at);
        let rs_ids = row_ids(at);
        let t = table_of(run, &database);
        let dlt_order = column_names(t);
        let moved: Vec<&str> = MOVED_BY_DLT.iter().find(|(d, _)| *d == database).unwrap().1.to_vec();
        // without the moved columns, the orders agree; the moved columns follow the others in
        // dlt's order, in the table's order (dlt-rs's)
        // (columns dlt does not have were put at the end of its table above)
        let inserted: Vec<&str> =
            devs.iter().filter(|d| d.database == database && d.dlt.is_none()).map(|d| d.column).collect();
        let strip = |o: &[String]| {
            o.iter()
                .filter(|n| !moved.contains(&n.as_str()) && !inserted.contains(&n.as_str()))
                .cloned()
                .collect::<Vec<_>>()
        };
        let same_set = dlt_order.iter().collect::<BTreeSet<_>>() == rs_order.iter().collect::<BTreeSet<_>>();
        if same_set {
            assert_eq!(strip(&dlt_order), strip(&rs_order), "rows:{database}: column order beyond MOVED_BY_DLT");
            let in_rs: Vec<&str> = rs_order.iter().map(String::as_str).filter(|n| moved.contains(n)).collect();
            let in_dlt: Vec<&str> = dlt_order.iter().map(String::as_str).filter(|n| moved.contains(n)).collect();
            assert_eq!(in_dlt, in_rs, "rows:{database}: dlt keeps the moved columns in table order");
            let perm: Vec<usize> = rs_order.iter().map(|n| dlt_order.iter().position(|x| x == n).unwrap()).collect();
            let cols = t["columns"].as_array().unwrap().clone();
            t["columns"] = Value::Array(perm.iter().map(|&i| cols[i].clone()).collect());
            for row in t.get_mut("rows").unwrap().as_array_mut().unwrap() {
                let r = row.as_array().unwrap().clone();
                *row = Value::Array(perm.iter().map(|&i| r[i].clone()).collect());
            }
        }
        let rows = t.get_mut("rows").unwrap().as_array_mut().unwrap();
        if rows.len() == rs_ids.len() {
            rows.sort_by_key(|r| rs_ids.iter().position(|id| r[0].as_u64() == Some(*id as u64)));
        }
    }
}

fn run(index: usize, database: &str, pipeline: &str, dataset: &str, src: Source) -> Value {
    let dest = Dest::new();
    let info = dest.pipeline(pipeline, dataset).run(src).unwrap_or_else(|e| panic!("{database}: {e}"));
    let mut counts: Vec<(String, Value)> = info.row_counts.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    counts.sort_by(|a, b| a.0.cmp(&b.0));
    let counts: Map<String, Value> = counts.into_iter().collect();
    let dump = dlt_conformance::dump(&dest.db(), &[dataset.to_string()], None).unwrap();
    json!({
        "index": index,
        "database": database,
        "outcome": {"status": "ok", "normalized_row_counts": counts},
        "dump": dump,
    })
}

/// dlt-rs's dumps of both fixtures read with `backend` (the result format of the oracle files),
/// or `None` when a database server is missing (skipped; an error under CI). Also returns the
/// MySQL fixture for more tables.
fn load_fixtures(backend: Backend, case: &str) -> Option<(Value, MyDb)> {
    let pg = PgSchema::new()?;
    let my = MyDb::new()?;
    pg.exec(include_str!("fixtures/postgres_all_types.sql"));
    my.exec(include_str!("fixtures/mysql_all_types.sql"));
    // the names make_expected.py uses
    // dlt-rs refuses to round the unbounded numeric silently: rounding is chosen by a hint
    let round: dlt_core::schema::Column =
        serde_json::from_value(json!({"name": "c_num_unbounded", "data_type": "decimal", "precision": 38, "scale": 9}))
            .unwrap();
    let pg_src = SqlDatabase::from_url(&pg.url)
        .unwrap()
        .schema(&pg.name)
        .backend(backend)
        .table_names([TABLE])
        .table(
            TABLE,
            TableOptions {
                columns: [("c_num_unbounded".to_string(), round)].into_iter().collect(),
                ..Default::default()
            },
        )
        .into_source()
        .unwrap();
    let my_src = SqlDatabase::from_url(&my.url).unwrap().backend(backend).table_names([TABLE]).into_source().unwrap();
    let runs = vec![
        run(0, "postgres", "sql_parity_postgres", "pg_parity", pg_src),
        run(1, "mysql", "sql_parity_mysql", "mysql_parity", my_src),
    ];
    let actual = json!({
        "result_format_version": 1,
        "case": case,
        "oracle": {"dlt-rs": env!("CARGO_PKG_VERSION")},
        "runs": runs,
    });
    Some((actual, my))
}

/// Compare the adjusted oracle with dlt-rs's dumps; on a difference the dumps are kept in
/// `kept` and the report names both files.
fn assert_same(expected: &Value, actual: &Value, oracle: &str, kept: &str) {
    let diffs = try_compare(expected, actual, &CompareOptions::default()).unwrap();
    if !diffs.is_empty() {
        let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join(kept);
        std::fs::write(&kept, to_pretty_json(actual) + "\n").unwrap();
        panic!(
            "dlt-rs differs from Python dlt beyond tests/oracle/DEVIATIONS.md (expected: {}, dlt-rs: {}):\n{}",
            oracle_file(oracle).display(),
            kept.display(),
            format_report(&diffs)
        );
    }
}

#[test]
fn same_columns_and_values_as_python_dlt() {
    check_documented();
    let text = std::fs::read_to_string(oracle_file("expected.json")).unwrap();
    let mut expected: Value = serde_json::from_str(&text).unwrap();
    let Some((actual, my)) = load_fixtures(Backend::Arrow, "sql_database_parity") else { return };
    adjust(&mut expected, &actual);
    assert_same(&expected, &actual, "expected.json", "sql_database_parity_actual.json");

    // an unsigned BIGINT above 2^63 - 1 fails dlt's extract (expected.json `dlt_fails`) and dlt-rs's
    let fails = &expected["dlt_fails"]["mysql.unsigned_overflow"];
    assert_eq!(fails["stage"], "extract", "{fails}");
    my.exec(include_str!("fixtures/mysql_unsigned_overflow.sql"));
    let src = SqlDatabase::from_url(&my.url).unwrap().table_names(["unsigned_overflow"]).into_source().unwrap();
    let err = Dest::new().pipeline("sql_parity_overflow", "overflow").run(src).unwrap_err().to_string();
    assert!(err.contains("`unsigned_overflow`") && err.contains("`c_ubigint`"), "{err}");
}

/// The rows backend against dlt's sqlalchemy backend (tests/oracle/expected_rows.json).
#[test]
fn rows_backend_same_columns_and_values_as_python_dlt_sqlalchemy() {
    check_documented();
    let text = std::fs::read_to_string(oracle_file("expected_rows.json")).unwrap();
    let mut expected: Value = serde_json::from_str(&text).unwrap();
    let Some((actual, _)) = load_fixtures(Backend::Rows, "sql_database_parity_rows") else { return };
    adjust_rows(&mut expected, &actual);
    assert_same(&expected, &actual, "expected_rows.json", "sql_database_parity_rows_actual.json");
}
