//! Key-range partitioned reads (`partitions = 3`) on Postgres, MariaDB and SQLite: a few
//! thousand rows, NULL keys, an incremental cursor in the same SQL; the loaded rows are read back
//! with an independent DuckDB connection and compared exactly with what was inserted.

mod common;

use common::{Dest, MyDb, PgSchema};
use dlt_core::incremental::IncrementalConfig;
use dlt_sql_database::{SqlDatabase, TableOptions};
use serde_json::json;

const N: i64 = 3000;

/// The partition key of row `id`: NULL for every 7th row, else spread over negative and
/// positive values with duplicates, and one far outlier (uneven ranges).
fn key(id: i64) -> Option<i64> {
    match id {
        _ if id % 7 == 0 => None,
        2999 => Some(1_000_000),
        _ => Some(id * 37 % 1000 - 500),
    }
}

fn opt(v: Option<i64>) -> String {
    v.map_or("NULL".into(), |v| v.to_string())
}

/// DDL and rows, every statement ending in `;\n`; `{t}` is the table prefix (schema).
fn setup_sql(prefix: &str, int_pk: &str) -> String {
    let mut sql = format!(
        "CREATE TABLE {prefix}by_pk (id {int_pk} PRIMARY KEY, v text);\n\
         CREATE TABLE {prefix}by_k (id {int_pk} PRIMARY KEY, k bigint, v text);\n\
         CREATE TABLE {prefix}inc (id {int_pk} PRIMARY KEY, upd bigint NOT NULL, v text);\n"
    );
    let vals =
        |f: &dyn Fn(i64) -> String, range: std::ops::RangeInclusive<i64>| range.map(f).collect::<Vec<_>>().join(", ");
    sql += &format!("INSERT INTO {prefix}by_pk (id, v) VALUES {};\n", vals(&|i| format!("({i}, 'v{i}')"), 1..=N));
    sql += &format!(
        "INSERT INTO {prefix}by_k (id, k, v) VALUES {};\n",
        vals(&|i| format!("({i}, {}, 'k{i}')", opt(key(i))), 1..=N)
    );
    sql += &inc_rows(prefix, 1..=1000);
    sql
}

fn inc_rows(prefix: &str, ids: std::ops::RangeInclusive<i64>) -> String {
    let v: Vec<String> = ids.map(|i| format!("({i}, {i}, 'i{i}')")).collect();
    format!("INSERT INTO {prefix}inc (id, upd, v) VALUES {};\n", v.join(", "))
}

fn source(url: &str, schema: Option<&str>) -> SqlDatabase {
    let mut inc = IncrementalConfig::new("upd");
    inc.initial_value = Some(json!(100));
    let parts = TableOptions { partitions: Some(3), ..Default::default() };
    let mut db = SqlDatabase::from_url(url)
        .unwrap()
        .chunk_size(128)
        .parallelism(2)
        .table("by_pk", parts.clone())
        .table("by_k", TableOptions { partition_column: Some("k".into()), ..parts.clone() })
        .table("inc", TableOptions { incremental: Some(inc), ..parts });
    if let Some(s) = schema {
        db = db.schema(s);
    }
    db
}

fn rows(dest: &Dest, sql: &str) -> Vec<Vec<Option<String>>> {
    dest.strings(sql)
}

fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

/// Load, compare, add incremental rows, load again, compare.
fn check(url: &str, schema: Option<&str>, exec: &dyn Fn(&str), prefix: &str, ds: &str) {
    let dest = Dest::new();
    let run = || dest.pipeline(ds, ds).run(source(url, schema).into_source().unwrap()).unwrap();
    let info = run();
    assert_eq!(info.row_counts.get("by_pk").copied(), Some(N as u64), "{info}");
    let got = rows(&dest, &format!("SELECT id::VARCHAR, v FROM {ds}.by_pk ORDER BY id"));
    let want: Vec<_> = (1..=N).map(|i| vec![s(i), s(format!("v{i}"))]).collect();
    assert_eq!(got, want, "by_pk");
    let got = rows(&dest, &format!("SELECT id::VARCHAR, k::VARCHAR, v FROM {ds}.by_k ORDER BY id"));
    let want: Vec<_> = (1..=N).map(|i| vec![s(i), key(i).map(|k| k.to_string()), s(format!("k{i}"))]).collect();
    assert_eq!(got.len(), want.len(), "by_k: every row once, NULL keys included");
    assert_eq!(got, want, "by_k");
    let inc =
        |hi: i64| -> Vec<Vec<Option<String>>> { (100..=hi).map(|i| vec![s(i), s(i), s(format!("i{i}"))]).collect() };
    let inc_sql = format!("SELECT id::VARCHAR, upd::VARCHAR, v FROM {ds}.inc ORDER BY id");
    assert_eq!(rows(&dest, &inc_sql), inc(1000), "inc: the window's rows only");
    exec(&inc_rows(prefix, 1001..=1200));
    run();
    assert_eq!(rows(&dest, &inc_sql), inc(1200), "inc: the new rows once, the boundary row deduplicated");
    assert_eq!(rows(&dest, &format!("SELECT count(*)::VARCHAR FROM {ds}.by_pk")), [[s(2 * N)]], "appended twice");
}

#[test]
fn postgres_partitions() {
    let Some(pg) = PgSchema::new() else { return };
    let prefix = format!("{}.", pg.name);
    pg.exec(&setup_sql(&prefix, "int"));
    check(&pg.url, Some(&pg.name), &|sql| pg.exec(sql), &prefix, "pg_parts");
}

#[test]
fn mariadb_partitions() {
    let Some(my) = MyDb::new() else { return };
    my.exec(&setup_sql("", "int"));
    check(&my.url, None, &|sql| my.exec(sql), "", "my_parts");
}

#[test]
fn sqlite_partitions_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("src.db");
    let c = rusqlite::Connection::open(&file).unwrap();
    c.execute_batch(&setup_sql("", "INTEGER")).unwrap();
    let url = format!("sqlite:///{}", file.display());
    check(&url, None, &|sql| rusqlite::Connection::open(&file).unwrap().execute_batch(sql).unwrap(), "", "lite_parts");

    let err = |opts: TableOptions| {
        SqlDatabase::from_url(&url)
            .unwrap()
            .table_names(["by_k"])
            .table("by_k", opts)
            .into_source()
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let mut ordered = IncrementalConfig::new("id");
    ordered.row_order = Some("asc".into());
    let e = err(TableOptions { partitions: Some(3), incremental: Some(ordered), ..Default::default() });
    assert!(e.contains("row_order") && e.contains("`by_k`"), "{e}");
    let e = err(TableOptions { partitions: Some(3), partition_column: Some("v".into()), ..Default::default() });
    assert!(e.contains("not an integer column"), "{e}");
    let e = err(TableOptions { partition_column: Some("k".into()), ..Default::default() });
    assert!(e.contains("without partitions"), "{e}");
    let e = err(TableOptions {
        partitions: Some(2),
        safe_watermark: Some(dlt_sql_database::SafeWatermark::XactStart),
        incremental: Some(IncrementalConfig::new("id")),
        ..Default::default()
    });
    assert!(e.contains("Postgres only"), "{e}");
    // a query adapter that replaces the SELECT cannot be split
    let src = SqlDatabase::from_url(&url)
        .unwrap()
        .table_names(["by_pk"])
        .table("by_pk", TableOptions { partitions: Some(2), ..Default::default() })
        .query_adapter(|_| Some("SELECT * FROM by_pk".into()))
        .into_source()
        .unwrap();
    let dest = Dest::new();
    let e = dest.pipeline("lite_qa", "lite_qa").run(src).unwrap_err().to_string();
    assert!(e.contains("query adapter"), "{e}");
}
