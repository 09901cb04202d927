//! The sql_database source on the real PostgreSQL server, loaded through the pipeline into
//! DuckDB and compared value by value with what Postgres itself renders.

mod common;

use std::sync::{Arc, Mutex};

use common::{Dest, PgSchema, col, float_eq, json_eq};
use dlt_core::incremental::IncrementalConfig;
use dlt_sql_database::{Backend, ReflectionLevel, SqlDatabase, TableOptions, ValueKind};
use serde_json::json;

const ALL_TYPES: &str = include_str!("fixtures/postgres_all_types.sql");

/// (column, Postgres expression as text, DuckDB expression as text, DuckDB type)
const COLUMNS: &[(&str, &str, &str, &str)] = &[
    ("id", "id::text", "id::VARCHAR", "BIGINT"),
    ("c_smallint", "c_smallint::text", "c_smallint::VARCHAR", "BIGINT"),
    ("c_int", "c_int::text", "c_int::VARCHAR", "BIGINT"),
    ("c_bigint", "c_bigint::text", "c_bigint::VARCHAR", "BIGINT"),
    ("c_num", "c_num::text", "c_num::VARCHAR", "DECIMAL(38,9)"),
    ("c_num_small", "c_num_small::text", "c_num_small::VARCHAR", "DECIMAL(10,3)"),
    ("c_num_unbounded", "round(c_num_unbounded, 9)::text", "c_num_unbounded::VARCHAR", "DECIMAL(38,9)"),
    // a real reads as its shortest decimal text (3.14), not the exact widening (3.140000104904175)
    ("c_real", "c_real::text", "c_real::VARCHAR", "DOUBLE"),
    ("c_double", "c_double::text", "c_double::VARCHAR", "DOUBLE"),
    ("c_text", "c_text", "c_text", "VARCHAR"),
    ("c_varchar", "c_varchar::text", "c_varchar", "VARCHAR"),
    ("c_char", "rpad(c_char::text, 5)", "c_char", "VARCHAR"),
    ("c_bytea", "encode(c_bytea, 'hex')", "lower(hex(c_bytea))", "BLOB"),
    ("c_bool", "c_bool::text", "c_bool::VARCHAR", "BOOLEAN"),
    ("c_date", "c_date::text", "c_date::VARCHAR", "DATE"),
    (
        "c_time",
        "(extract(epoch FROM c_time) * 1000000)::bigint::text",
        "((hour(c_time) * 3600 + minute(c_time) * 60)::BIGINT * 1000000 + microsecond(c_time))::VARCHAR",
        "TIME",
    ),
    (
        "c_timetz",
        "(extract(epoch FROM (c_timetz AT TIME ZONE 'UTC')::time) * 1000000)::bigint::text",
        "((hour(c_timetz) * 3600 + minute(c_timetz) * 60)::BIGINT * 1000000 + microsecond(c_timetz))::VARCHAR",
        "TIME",
    ),
    ("c_ts", "(extract(epoch FROM c_ts) * 1000000)::bigint::text", "epoch_us(c_ts)::VARCHAR", "TIMESTAMP"),
    (
        "c_tstz",
        "(extract(epoch FROM c_tstz) * 1000000)::bigint::text",
        "epoch_us(c_tstz)::VARCHAR",
        "TIMESTAMP WITH TIME ZONE",
    ),
    ("c_interval", "c_interval::text", "c_interval", "VARCHAR"),
    ("c_uuid", "c_uuid::text", "c_uuid", "VARCHAR"),
    ("c_json", "c_json::text", "c_json::VARCHAR", "JSON"),
    ("c_jsonb", "c_jsonb::text", "c_jsonb::VARCHAR", "JSON"),
    ("c_int_arr", "to_json(c_int_arr)::text", "c_int_arr::VARCHAR", "JSON"),
    ("c_text_arr", "to_json(c_text_arr)::text", "c_text_arr::VARCHAR", "JSON"),
    ("c_mood", "c_mood::text", "c_mood", "VARCHAR"),
    ("c_domain", "c_domain::text", "c_domain::VARCHAR", "BIGINT"),
    ("c_num_wide", "c_num_wide::text", "c_num_wide", "VARCHAR"),
    ("c_oid", "c_oid::text", "c_oid::VARCHAR", "BIGINT"),
    ("c_name", "c_name::text", "c_name", "VARCHAR"),
    ("c_char1", "c_char1::text", "c_char1", "VARCHAR"),
    ("c_money", "c_money::text", "c_money", "VARCHAR"),
    // inet's output text (`::text` would add `/32`)
    ("c_inet", "nullif(format('%s', c_inet), '')", "c_inet", "VARCHAR"),
    ("c_cidr", "c_cidr::text", "c_cidr", "VARCHAR"),
    ("c_macaddr", "c_macaddr::text", "c_macaddr", "VARCHAR"),
    ("c_bit", "c_bit::text", "c_bit", "VARCHAR"),
    ("c_varbit", "c_varbit::text", "c_varbit", "VARCHAR"),
    ("c_xml", "c_xml::text", "c_xml", "VARCHAR"),
    ("c_tsvector", "c_tsvector::text", "c_tsvector", "VARCHAR"),
    ("c_range", "c_range::text", "c_range", "VARCHAR"),
    ("c_point", "c_point::text", "c_point", "VARCHAR"),
    ("c_pair", "to_json(c_pair)::text", "c_pair::VARCHAR", "JSON"),
];

fn compare_all_types(pg: &PgSchema, dest: &Dest, dataset: &str) {
    let pg_sql = format!(
        "SELECT {} FROM {{s}}.all_types ORDER BY id",
        COLUMNS.iter().map(|c| c.1).collect::<Vec<_>>().join(", ")
    );
    let duck_sql = format!(
        "SELECT {} FROM {dataset}.all_types ORDER BY id",
        COLUMNS.iter().map(|c| c.2).collect::<Vec<_>>().join(", ")
    );
    let want = pg.strings(&pg_sql);
    let got = dest.strings(&duck_sql);
    assert_eq!(got.len(), 4);
    for (i, (name, ..)) in COLUMNS.iter().enumerate() {
        let (w, g) = (col(&want, i), col(&got, i));
        let same = match *name {
            "c_json" | "c_jsonb" | "c_int_arr" | "c_text_arr" | "c_pair" => json_eq(&w, &g),
            "c_real" | "c_double" => float_eq(&w, &g),
            _ => w == g,
        };
        assert!(same, "column {name}: postgres {w:?} != duckdb {g:?}");
    }
    // NULLs in every column of row 3
    assert!(got[2][1..].iter().all(Option::is_none), "{:?}", got[2]);
    // and the extremes literally
    let at = |row: usize, name: &str| got[row][COLUMNS.iter().position(|c| c.0 == name).unwrap()].clone().unwrap();
    assert_eq!(at(0, "c_bigint"), "-9223372036854775808");
    assert_eq!(at(1, "c_bigint"), "9223372036854775807");
    assert_eq!(at(0, "c_num"), "-99999999999999999999999999999.999999999");
    assert_eq!(at(1, "c_num"), "99999999999999999999999999999.999999999");
    assert_eq!(at(0, "c_num_unbounded"), "12345.678901235");
    assert_eq!(at(0, "c_text"), "héllo wörld 🎉 中文 \"quotes\" \\ backslash 'single'");
    assert_eq!(at(0, "c_tstz"), "1710054296123456");
    assert_eq!(at(0, "c_interval"), "P1Y2M3DT4H5M6.789S");
    assert_eq!(at(1, "c_interval"), "P-1DT-1S");
    assert_eq!(at(0, "c_char"), "ab   ");
    assert_eq!(at(0, "c_bytea"), "00ff10");
    assert_eq!(at(0, "c_mood"), "ünïcode");
    assert_eq!(at(0, "c_num_wide"), "123456789012345678901234567890123456789012345678.91");
    assert_eq!(at(0, "c_money"), "$1,234.56");
    assert_eq!(at(3, "c_range"), "(,)");
    assert_eq!(at(0, "c_real"), "3.14");
    assert_eq!(at(3, "c_inet"), "10.0.0.1");
}

/// The unbounded `numeric` column hinted to dlt's default decimal: rounding chosen by the user.
fn rounded(db: SqlDatabase) -> SqlDatabase {
    let hint: dlt_core::schema::Column = serde_json::from_value(
        serde_json::json!({"name": "c_num_unbounded", "data_type": "decimal", "precision": 38, "scale": 9}),
    )
    .unwrap();
    let columns = [("c_num_unbounded".to_string(), hint)].into_iter().collect();
    db.table("all_types", dlt_sql_database::TableOptions { columns, ..Default::default() })
}

#[test]
fn an_unbounded_numeric_that_does_not_fit_is_an_error_naming_the_value_and_the_hint() {
    let Some(pg) = PgSchema::new() else { return };
    pg.exec(ALL_TYPES);
    let dest = Dest::new();
    let src = SqlDatabase::from_url(&pg.url).unwrap().schema(&pg.name).into_source().unwrap();
    let err = dest.pipeline("pg_exact", "pg_exact").run(src).unwrap_err().to_string();
    for part in ["`all_types`", "`c_num_unbounded`", "12345.6789012345678", "scale = 18", "to round"] {
        assert!(err.contains(part), "{part}: {err}");
    }
    // nothing of the table was loaded
    assert!(dest.columns("pg_exact", "all_types").is_empty());
}

#[test]
fn a_decimal_hint_sets_the_scale_values_are_read_at() {
    let Some(pg) = PgSchema::new() else { return };
    pg.exec("CREATE TABLE {s}.n (id int PRIMARY KEY, v numeric); INSERT INTO {s}.n VALUES (1, 1.000000000000000001), (2, -2.5)");
    let hint: dlt_core::schema::Column =
        serde_json::from_value(serde_json::json!({"name": "v", "precision": 38, "scale": 18})).unwrap();
    let columns = [("v".to_string(), hint)].into_iter().collect();
    let src = SqlDatabase::from_url(&pg.url)
        .unwrap()
        .schema(&pg.name)
        .table("n", dlt_sql_database::TableOptions { columns, ..Default::default() })
        .into_source()
        .unwrap();
    let dest = Dest::new();
    dest.pipeline("pg_scale", "pg_scale").run(src).unwrap();
    assert_eq!(
        dest.strings("SELECT v::VARCHAR FROM pg_scale.n ORDER BY id"),
        [vec![Some("1.000000000000000001".to_string())], vec![Some("-2.500000000000000000".to_string())]]
    );
}

#[test]
fn every_type_round_trips_as_arrow() {
    let Some(pg) = PgSchema::new() else { return };
    pg.exec(ALL_TYPES);
    let dest = Dest::new();
    let src = rounded(SqlDatabase::from_url(&pg.url).unwrap().schema(&pg.name).chunk_size(3)).into_source().unwrap();
    assert_eq!(src.resources.len(), 1);
    let mut p = dest.pipeline("pg_types", "pg_types");
    let info = p.run(src).unwrap();
    assert_eq!(info.row_counts.get("all_types").copied(), Some(4), "{info}");
    compare_all_types(&pg, &dest, "pg_types");
    let cols = dest.columns("pg_types", "all_types");
    let names: Vec<&str> = cols.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, COLUMNS.iter().map(|c| c.0).collect::<Vec<_>>(), "Arrow items add no _dlt columns");
    for ((name, ty, nullable), (_, _, _, want)) in cols.iter().zip(COLUMNS) {
        assert_eq!(ty, want, "type of {name}");
        assert_eq!(*nullable, name != "id", "nullability of {name}");
    }
    // the primary key is a hint of the stored schema
    let schema = p.default_schema().unwrap().unwrap();
    let id = &schema.tables["all_types"].columns["id"];
    assert!(id.primary_key && id.nullable == Some(false));
}

#[test]
fn every_type_round_trips_as_rows() {
    let Some(pg) = PgSchema::new() else { return };
    pg.exec(ALL_TYPES);
    let dest = Dest::new();
    let src =
        rounded(SqlDatabase::from_url(&pg.url).unwrap().schema(&pg.name).backend(Backend::Rows)).into_source().unwrap();
    dest.pipeline("pg_rows", "pg_rows").run(src).unwrap();
    compare_all_types(&pg, &dest, "pg_rows");
    let names: Vec<String> = dest.columns("pg_rows", "all_types").into_iter().map(|c| c.0).collect();
    assert!(names.contains(&"_dlt_id".to_string()) && names.contains(&"_dlt_load_id".to_string()), "{names:?}");
}

#[test]
fn reflection_levels() {
    let Some(pg) = PgSchema::new() else { return };
    pg.exec(
        "CREATE TYPE {s}.m AS ENUM ('a', 'longest');
         CREATE TABLE {s}.t (id int PRIMARY KEY, name varchar(20), n numeric(10,3), s smallint, ts timestamp, e {s}.m);
         INSERT INTO {s}.t VALUES (1, 'a', 1.5, 7, '2024-01-01 00:00:00', 'a')",
    );
    let dest = Dest::new();
    for (level, ds) in [(ReflectionLevel::Minimal, "lv_min"), (ReflectionLevel::FullWithPrecision, "lv_fwp")] {
        let src =
            SqlDatabase::from_url(&pg.url).unwrap().schema(&pg.name).reflection_level(level).into_source().unwrap();
        let mut p = dest.pipeline(ds, ds);
        p.run(src).unwrap();
        let schema = p.default_schema().unwrap().unwrap();
        let t = &schema.tables["t"];
        if level == ReflectionLevel::FullWithPrecision {
            assert_eq!(t.columns["name"].precision, Some(20));
            assert_eq!(t.columns["s"].precision, Some(32));
            assert_eq!(t.columns["e"].precision, Some(7), "an enum's length is its longest value's");
            assert_eq!(dest.columns(ds, "t")[3].1, "INTEGER");
        }
        assert_eq!((t.columns["n"].precision, t.columns["n"].scale), (Some(10), Some(3)));
        assert_eq!(t.columns["ts"].timezone, Some(false));
        assert_eq!(
            dest.strings(&format!("SELECT name, n::VARCHAR FROM {ds}.t")),
            vec![vec![Some("a".into()), Some("1.500".into())]]
        );
    }
}

#[test]
fn incremental_pushes_the_window_into_sql() {
    let Some(pg) = PgSchema::new() else { return };
    pg.exec(
        "CREATE TABLE {s}.events (id bigint PRIMARY KEY, updated_at timestamptz, amount numeric(10,2));
         INSERT INTO {s}.events VALUES (1, '2024-01-01 00:00:00+00', 1), (2, '2024-01-02 00:00:00+00', 2),
                                       (3, '2024-01-03 00:00:00+00', 3);",
    );
    let dest = Dest::new();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let run = |seen: Arc<Mutex<Vec<String>>>| {
        let src = SqlDatabase::from_url(&pg.url)
            .unwrap()
            .schema(&pg.name)
            .table(
                "events",
                TableOptions { incremental: Some(IncrementalConfig::new("updated_at")), ..Default::default() },
            )
            .query_adapter(move |ctx| {
                seen.lock().unwrap().push(ctx.select.to_string());
                None
            })
            .into_source()
            .unwrap();
        dest.pipeline("pg_inc", "pg_inc").run(src).unwrap()
    };
    run(seen.clone());
    assert!(!seen.lock().unwrap()[0].contains("WHERE"), "first run without initial value: {:?}", seen.lock().unwrap());
    // new rows, and an old row the reader would fail on (a NaN cannot be a decimal): only a
    // WHERE clause in the SQL keeps it out
    pg.exec(
        "INSERT INTO {s}.events VALUES (4, '2024-01-03 00:00:00+00', 4), (5, '2024-01-05 00:00:00+00', 5),
                                       (99, '2000-01-01 00:00:00+00', 'NaN');",
    );
    run(seen.clone());
    let sql = seen.lock().unwrap()[1].clone();
    assert!(sql.contains("WHERE \"updated_at\" >= E'2024-01-03T00:00:00+00:00'::timestamptz"), "{sql}");
    let ids = dest.strings("SELECT id::VARCHAR FROM pg_inc.events ORDER BY id");
    assert_eq!(ids, [1, 2, 3, 4, 5].map(|i| vec![Some(i.to_string())]).to_vec(), "row 3 deduplicated at the boundary");
}

#[test]
fn columns_adapters_and_parallel_tables() {
    let Some(pg) = PgSchema::new() else { return };
    pg.exec(
        "CREATE TABLE {s}.a (id int PRIMARY KEY, secret text, keep text, price numeric(10,2), note varchar(5));
         INSERT INTO {s}.a VALUES (1, 'x', 'k1', 1.25, 'n1'), (2, 'y', 'k2', 2.50, 'n2');
         CREATE TABLE {s}.b (id int PRIMARY KEY, v text);
         INSERT INTO {s}.b SELECT g, 'v' || g FROM generate_series(1, 1000) g;
         CREATE TABLE {s}.c (id int PRIMARY KEY, v text);
         INSERT INTO {s}.c VALUES (1, 'lower'), (2, 'case'), (3, 'gone');
         CREATE VIEW {s}.v AS SELECT id FROM {s}.b;",
    );
    let dest = Dest::new();
    let schema_name = pg.name.clone();
    let src = SqlDatabase::from_url(&pg.url)
        .unwrap()
        .schema(&pg.name)
        .chunk_size(100)
        .parallelism(3)
        .table("a", TableOptions { excluded_columns: Some(vec!["secret".into()]), ..Default::default() })
        .table("b", TableOptions { included_columns: Some(vec!["id".into()]), ..Default::default() })
        .table_adapter(|t| {
            if t.name == "a" {
                t.column_mut("note").unwrap().output_name = "renamed".into();
                t.column_mut("price").unwrap().set_kind(ValueKind::Double);
            }
            Ok(())
        })
        .query_adapter(move |ctx| {
            (ctx.table.name == "c").then(|| format!("SELECT id, upper(v) AS v FROM {schema_name}.c WHERE id <= 2"))
        })
        .into_source()
        .unwrap();
    let names: Vec<&str> = src.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"], "views only with include_views");
    dest.pipeline("pg_cols", "pg_cols").run(src).unwrap();
    let cols: Vec<(String, String)> = dest.columns("pg_cols", "a").into_iter().map(|c| (c.0, c.1)).collect();
    assert_eq!(
        cols,
        [("id", "BIGINT"), ("keep", "VARCHAR"), ("price", "DOUBLE"), ("renamed", "VARCHAR")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(
        dest.strings("SELECT price::VARCHAR, renamed FROM pg_cols.a ORDER BY id")[1],
        [Some("2.5".into()), Some("n2".into())]
    );
    assert_eq!(dest.columns("pg_cols", "b").len(), 1);
    assert_eq!(dest.strings("SELECT count(*)::VARCHAR FROM pg_cols.b")[0][0].as_deref(), Some("1000"));
    assert_eq!(
        dest.strings("SELECT v FROM pg_cols.c ORDER BY id"),
        [vec![Some("LOWER".into())], vec![Some("CASE".into())]]
    );
    // views when asked for
    let src = SqlDatabase::from_url(&pg.url).unwrap().schema(&pg.name).include_views(true).into_source().unwrap();
    assert!(src.resources.iter().any(|r| r.name == "v"));
}

#[test]
fn errors_name_the_table_and_hide_the_password() {
    let Some(pg) = PgSchema::new() else { return };
    pg.exec("CREATE TABLE {s}.present (id int)");
    let err = SqlDatabase::from_url(&pg.url)
        .unwrap()
        .schema(&pg.name)
        .table_names(["present", "missing_table"])
        .into_source()
        .unwrap_err()
        .to_string();
    assert!(err.contains("`missing_table`") && err.contains(&pg.name) && err.contains("present"), "{err}");
    let err = SqlDatabase::from_url(&pg.url)
        .unwrap()
        .schema(&pg.name)
        .table("present", TableOptions { excluded_columns: Some(vec!["nope".into()]), ..Default::default() })
        .into_source()
        .unwrap_err()
        .to_string();
    assert!(err.contains("`present`") && err.contains("`nope`"), "{err}");
    let err = SqlDatabase::from_url(&pg.url)
        .unwrap()
        .schema(&pg.name)
        .table("present", TableOptions { incremental: Some(IncrementalConfig::new("ts")), ..Default::default() })
        .into_source()
        .unwrap_err()
        .to_string();
    assert!(err.contains("`ts`") && err.contains("`present`"), "{err}");
    // nothing listens on port 1
    let err = SqlDatabase::from_url("postgresql://loader:hunter2@127.0.0.1:1/db").unwrap().into_source().unwrap_err();
    let msg = err.to_string();
    assert!(err.is_transient() && msg.contains("cannot connect") && !msg.contains("hunter2"), "{msg}");
    let err = SqlDatabase::from_url("oracle://u:hunter2@h/db").unwrap_err().to_string();
    assert!(err.contains("oracle") && !err.contains("hunter2"), "{err}");
    // a failing read names the resource and the column
    pg.exec("CREATE TABLE {s}.bad (id int, n numeric(5,2)); INSERT INTO {s}.bad VALUES (1, 'NaN')");
    let src = SqlDatabase::from_url(&pg.url).unwrap().schema(&pg.name).table_names(["bad"]).into_source().unwrap();
    let dest = Dest::new();
    let err = dest.pipeline("pg_bad", "pg_bad").run(src).unwrap_err().to_string();
    assert!(err.contains("`bad`") && err.contains("`n`") && err.contains("NaN"), "{err}");
    let _ = json!(null);
}

#[test]
fn a_refused_server_certificate_is_terminal() {
    let Some(pg) = PgSchema::new() else { return };
    // the local server's certificate is self-signed: verify-full must refuse it, once
    let sep = if pg.url.contains('?') { '&' } else { '?' };
    let err = SqlDatabase::from_url(&format!("{}{sep}sslmode=verify-full", pg.url))
        .unwrap()
        .schema(&pg.name)
        .into_source()
        .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    assert!(!err.is_transient(), "retrying cannot fix a refused certificate: {err:?}");
}
