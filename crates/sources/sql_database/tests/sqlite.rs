//! The sql_database source on SQLite files, in Rust and from a pipeline file.

mod common;

use std::sync::Arc;

use common::{Dest, duck_strings};
use dlt_core::incremental::IncrementalConfig;
use dlt_sql_database::{SqlDatabase, SqlDatabaseFactory, TableOptions};
use serde_json::json;

fn create(path: &std::path::Path, sql: &str) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(sql).unwrap();
}

fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite:///{}", path.display())
}

#[test]
fn every_type_round_trips() {
    let dest = Dest::new();
    let file = dest.root.join("src.db");
    create(
        &file,
        r#"CREATE TABLE all_types (id INTEGER PRIMARY KEY, c_int INTEGER, c_real REAL, c_text TEXT, c_blob BLOB,
             c_num NUMERIC(10, 2), c_bool BOOLEAN, c_date DATE, c_dt DATETIME, c_time TIME, c_vc VARCHAR(10),
             c_json JSON, c_big BIGINT NOT NULL);
           INSERT INTO all_types VALUES
             (1, -9223372036854775808, 1.5, 'héllo 🎉 中文', X'00FF', 12.34, 1, '2024-01-02', '2024-01-02 03:04:05.123456',
              '03:04:05.123456', 'abc', '{"a": [1, "ü"]}', 9223372036854775807),
             (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0),
             (3, 0, -0.25, '', X'', -1.5, 0, '1970-01-01', '1970-01-01 00:00:00', '00:00:00', '', '[]', -1);"#,
    );
    // SQLAlchemy's URL: three slashes and an absolute path give four
    let src = SqlDatabase::from_url(&sqlite_url(&file)).unwrap().chunk_size(1).into_source().unwrap();
    dest.pipeline("lite", "lite").run(src).unwrap();
    let got = dest.strings(
        "SELECT id::VARCHAR, c_int::VARCHAR, c_real::VARCHAR, c_text, lower(hex(c_blob)), c_num::VARCHAR, \
         c_bool::VARCHAR, c_date::VARCHAR, strftime(c_dt, '%Y-%m-%d %H:%M:%S.%f'), c_time::VARCHAR, c_vc, \
         c_json::VARCHAR, c_big::VARCHAR FROM lite.all_types ORDER BY id",
    );
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        got[0],
        vec![
            s("1"),
            s("-9223372036854775808"),
            s("1.5"),
            s("héllo 🎉 中文"),
            s("00ff"),
            s("12.34"),
            s("true"),
            s("2024-01-02"),
            s("2024-01-02 03:04:05.123456"),
            s("03:04:05.123456"),
            s("abc"),
            got[0][11]
                .clone()
                .filter(|j| serde_json::from_str::<serde_json::Value>(j).unwrap() == json!({"a": [1, "ü"]})),
            s("9223372036854775807"),
        ]
    );
    assert!(got[1][1..12].iter().all(Option::is_none), "{:?}", got[1]);
    assert_eq!(got[2][2..8], [s("-0.25"), s(""), s(""), s("-1.50"), s("false"), s("1970-01-01")]);
    let types: Vec<(String, String, bool)> = dest.columns("lite", "all_types");
    let want = [
        ("id", "BIGINT", false),
        ("c_int", "BIGINT", true),
        ("c_real", "DOUBLE", true),
        ("c_text", "VARCHAR", true),
        ("c_blob", "BLOB", true),
        ("c_num", "DECIMAL(10,2)", true),
        ("c_bool", "BOOLEAN", true),
        ("c_date", "DATE", true),
        ("c_dt", "TIMESTAMP", true),
        ("c_time", "TIME", true),
        ("c_vc", "VARCHAR", true),
        ("c_json", "JSON", true),
        ("c_big", "BIGINT", false),
    ];
    assert_eq!(types, want.map(|(a, b, c)| (a.to_string(), b.to_string(), c)));
    // a missing file is an error naming it, never created
    let missing = dest.root.join("missing.db");
    let err = SqlDatabase::from_url(&sqlite_url(&missing)).unwrap().into_source().unwrap_err().to_string();
    assert!(err.contains("missing.db") && !missing.exists(), "{err}");
}

#[test]
fn incremental_on_a_timestamp_across_runs() {
    let dest = Dest::new();
    let file = dest.root.join("inc.db");
    create(
        &file,
        "CREATE TABLE items (id INTEGER PRIMARY KEY, updated_at DATETIME, n INTEGER);
         INSERT INTO items VALUES (1, '2024-01-01 00:00:00.000000', 1), (2, '2024-01-02 00:00:00.000000', 2),
                                  (5, '2024-01-01 12:00:00.500000', 5);",
    );
    let mut cfg = IncrementalConfig::new("updated_at");
    cfg.initial_value = Some(json!("2024-01-01T12:00:00Z"));
    let run = || {
        let src = SqlDatabase::from_url(&sqlite_url(&file))
            .unwrap()
            .table("items", TableOptions { incremental: Some(cfg.clone()), ..Default::default() })
            .into_source()
            .unwrap();
        dest.pipeline("lite_inc", "lite_inc").run(src).unwrap()
    };
    run();
    // a new row, and an old one whose integer column holds text: reading it would fail
    create(
        &file,
        "INSERT INTO items VALUES (3, '2024-01-03 00:00:00.000000', 3), (4, '2023-01-01 00:00:00.000000', 'oops');",
    );
    run();
    assert_eq!(
        dest.strings("SELECT id::VARCHAR, n::VARCHAR FROM lite_inc.items ORDER BY id"),
        [[2, 2], [3, 3], [5, 5]].map(|r| r.map(|x| Some(x.to_string())).to_vec()).to_vec(),
        "half a second after the initial value (written in another ISO form) is inside the window"
    );
}

#[test]
fn pipeline_file_with_merge_and_incremental() {
    let dest = Dest::new();
    let dir = &dest.root;
    create(
        &dir.join("shop.db"),
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT, updated_at DATETIME, note TEXT);
         INSERT INTO orders VALUES (1, 'new', '2024-01-01 00:00:00', 'x'), (2, 'new', '2024-01-02 00:00:00', 'y');
         CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO customers VALUES (1, 'Ada');
         CREATE TABLE ignored (id INTEGER);",
    );
    std::fs::create_dir_all(dir.join(".dlt")).unwrap();
    // credentials from secrets.toml, as dlt resolves sources.sql_database.credentials
    std::fs::write(dir.join(".dlt/secrets.toml"), "[sources.sql_database]\ncredentials = \"sqlite:///shop.db\"\n")
        .unwrap();
    std::fs::write(
        dir.join("pipeline.toml"),
        r#"[pipeline]
name = "shop"
destination = "duckdb"
dataset_name = "shop_data"
pipelines_dir = "pipelines"

[source]
type = "sql_database"
table_names = ["orders", "customers"]
chunk_size = 1
reflection_level = "full_with_precision"
write_disposition = "replace"

[source.tables.orders]
write_disposition = "merge"
primary_key = "id"
excluded_columns = ["note"]
[source.tables.orders.incremental]
cursor_path = "updated_at"
"#,
    )
    .unwrap();
    let run = || {
        let pf = dlt::PipelineFile::load(&dir.join("pipeline.toml")).unwrap();
        let mut registry = dlt::registry();
        registry.register_source(Arc::new(SqlDatabaseFactory));
        let mut p = pf.pipeline(&registry, None).unwrap();
        let config = p.config().clone();
        p.run(pf.source(&registry, &config).unwrap()).unwrap()
    };
    let info = run();
    assert_eq!((info.row_counts["orders"], info.row_counts["customers"]), (2, 1));
    let c = rusqlite::Connection::open(dir.join("shop.db")).unwrap();
    c.execute_batch(
        "UPDATE orders SET status = 'shipped', updated_at = '2024-01-03 00:00:00' WHERE id = 2;
         INSERT INTO orders VALUES (3, 'new', '2024-01-04 00:00:00', 'z');",
    )
    .unwrap();
    let info = run();
    assert_eq!(info.row_counts["orders"], 2, "only the changed and the new order");
    let db = dir.join("shop.duckdb");
    assert_eq!(
        duck_strings(&db, "SELECT id::VARCHAR, status FROM shop_data.orders ORDER BY id"),
        [["1", "new"], ["2", "shipped"], ["3", "new"]].map(|r| r.map(|x| Some(x.to_string())).to_vec()).to_vec()
    );
    assert_eq!(duck_strings(&db, "SELECT count(*)::VARCHAR FROM shop_data.customers")[0][0].as_deref(), Some("1"));
    let tables = duck_strings(
        &db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'shop_data' AND table_name = 'ignored'",
    );
    assert!(tables.is_empty());
    let cols = duck_strings(
        &db,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'shop_data' AND table_name = 'orders'",
    );
    assert!(!cols.iter().any(|c| c[0].as_deref() == Some("note")));
}
