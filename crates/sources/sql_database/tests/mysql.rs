//! The sql_database source on the real MariaDB/MySQL server, loaded through the pipeline into
//! DuckDB and compared value by value with what the server itself renders.

mod common;

use std::sync::{Arc, Mutex};

use common::{Dest, MyDb, col, float_eq, json_eq};
use dlt_core::incremental::IncrementalConfig;
use dlt_sql_database::{SqlDatabase, TableOptions};

const ALL_TYPES: &str = include_str!("fixtures/mysql_all_types.sql");

/// (column, server expression, DuckDB expression, DuckDB type)
const COLUMNS: &[(&str, &str, &str, &str)] = &[
    ("id", "CAST(id AS CHAR)", "id::VARCHAR", "BIGINT"),
    ("c_tinyint", "CAST(c_tinyint AS CHAR)", "c_tinyint::VARCHAR", "BIGINT"),
    ("c_bool", "CAST(c_bool AS CHAR)", "c_bool::VARCHAR", "BIGINT"),
    ("c_smallint", "CAST(c_smallint AS CHAR)", "c_smallint::VARCHAR", "BIGINT"),
    ("c_mediumint", "CAST(c_mediumint AS CHAR)", "c_mediumint::VARCHAR", "BIGINT"),
    ("c_int", "CAST(c_int AS CHAR)", "c_int::VARCHAR", "BIGINT"),
    ("c_bigint", "CAST(c_bigint AS CHAR)", "c_bigint::VARCHAR", "BIGINT"),
    ("c_ubigint", "CAST(c_ubigint AS CHAR)", "c_ubigint::VARCHAR", "BIGINT"),
    ("c_dec", "CAST(c_dec AS CHAR)", "c_dec::VARCHAR", "DECIMAL(38,9)"),
    ("c_dec_small", "CAST(c_dec_small AS CHAR)", "c_dec_small::VARCHAR", "DECIMAL(10,3)"),
    ("c_float", "c_float", "c_float::VARCHAR", "DOUBLE"),
    ("c_double", "c_double", "c_double::VARCHAR", "DOUBLE"),
    ("c_char", "c_char", "c_char", "VARCHAR"),
    ("c_varchar", "c_varchar", "c_varchar", "VARCHAR"),
    ("c_text", "c_text", "c_text", "VARCHAR"),
    ("c_enum", "c_enum", "c_enum", "VARCHAR"),
    ("c_set", "c_set", "c_set", "VARCHAR"),
    ("c_json", "c_json", "c_json::VARCHAR", "VARCHAR"),
    ("c_binary", "HEX(c_binary)", "upper(hex(c_binary))", "BLOB"),
    ("c_varbinary", "HEX(c_varbinary)", "upper(hex(c_varbinary))", "BLOB"),
    ("c_blob", "HEX(c_blob)", "upper(hex(c_blob))", "BLOB"),
    ("c_date", "CAST(c_date AS CHAR)", "c_date::VARCHAR", "DATE"),
    (
        "c_datetime",
        "DATE_FORMAT(c_datetime, '%Y-%m-%d %H:%i:%s.%f')",
        "strftime(c_datetime, '%Y-%m-%d %H:%M:%S.%f')",
        "TIMESTAMP",
    ),
    (
        "c_timestamp",
        "DATE_FORMAT(c_timestamp, '%Y-%m-%d %H:%i:%s.%f')",
        "strftime(c_timestamp, '%Y-%m-%d %H:%M:%S.%f')",
        "TIMESTAMP",
    ),
    (
        "c_time",
        "CAST((HOUR(c_time) * 3600 + MINUTE(c_time) * 60 + SECOND(c_time)) * 1000000 + MICROSECOND(c_time) AS CHAR)",
        "((hour(c_time) * 3600 + minute(c_time) * 60)::BIGINT * 1000000 + microsecond(c_time))::VARCHAR",
        "TIME",
    ),
    ("c_year", "CAST(c_year AS CHAR)", "c_year::VARCHAR", "BIGINT"),
    ("c_bit", "CAST(c_bit + 0 AS CHAR)", "c_bit::VARCHAR", "BIGINT"),
    ("c_uint", "CAST(c_uint AS CHAR)", "c_uint::VARCHAR", "BIGINT"),
    ("c_dec_wide", "CAST(c_dec_wide AS CHAR)", "c_dec_wide", "VARCHAR"),
    ("c_dec_default", "CAST(c_dec_default AS CHAR)", "c_dec_default::VARCHAR", "DECIMAL(10,0)"),
    ("c_tinytext", "c_tinytext", "c_tinytext", "VARCHAR"),
    ("c_mediumtext", "c_mediumtext", "c_mediumtext", "VARCHAR"),
    ("c_longtext", "c_longtext", "c_longtext", "VARCHAR"),
    ("c_mediumblob", "HEX(c_mediumblob)", "upper(hex(c_mediumblob))", "BLOB"),
    ("c_longblob", "HEX(c_longblob)", "upper(hex(c_longblob))", "BLOB"),
    ("c_point", "HEX(c_point)", "upper(hex(c_point))", "BLOB"),
    ("c_uuid", "CAST(c_uuid AS CHAR)", "c_uuid", "VARCHAR"),
    ("c_inet6", "CAST(c_inet6 AS CHAR)", "c_inet6", "VARCHAR"),
];

#[test]
fn every_type_round_trips() {
    let Some(db) = MyDb::new() else { return };
    db.exec(ALL_TYPES);
    let dest = Dest::new();
    let src = SqlDatabase::from_url(&db.url).unwrap().chunk_size(2).into_source().unwrap();
    let info = dest.pipeline("my_types", "my_types").run(src).unwrap();
    assert_eq!(info.row_counts.get("all_types").copied(), Some(3), "{info}");
    let want = db.strings(&format!(
        "SELECT {} FROM all_types ORDER BY id",
        COLUMNS.iter().map(|c| c.1).collect::<Vec<_>>().join(", ")
    ));
    let got = dest.strings(&format!(
        "SELECT {} FROM my_types.all_types ORDER BY id",
        COLUMNS.iter().map(|c| c.2).collect::<Vec<_>>().join(", ")
    ));
    for (i, (name, ..)) in COLUMNS.iter().enumerate() {
        let (w, g) = (col(&want, i), col(&got, i));
        let same = match *name {
            "c_json" => json_eq(&w, &g),
            "c_float" | "c_double" => float_eq(&w, &g),
            _ => w == g,
        };
        assert!(same, "column {name}: server {w:?} != duckdb {g:?}");
    }
    assert!(got[2][1..].iter().all(Option::is_none), "{:?}", got[2]);
    let at = |row: usize, name: &str| got[row][COLUMNS.iter().position(|c| c.0 == name).unwrap()].clone().unwrap();
    assert_eq!(at(0, "c_bigint"), "-9223372036854775808");
    assert_eq!(at(0, "c_ubigint"), "9223372036854775807");
    assert_eq!(at(1, "c_dec"), "99999999999999999999999999999.999999999");
    assert_eq!(at(0, "c_text"), "héllo 🎉 中文 \\ \"q\" 's'");
    assert_eq!(at(0, "c_float"), "3.14");
    assert_eq!(at(0, "c_timestamp"), "2024-03-10 12:34:56.123456");
    assert_eq!(at(0, "c_bit"), "170");
    assert_eq!(at(0, "c_dec_wide"), "12345678901234567890123456789012345.123456789012345678901234567890");
    assert_eq!(at(1, "c_inet6"), "::ffff:192.168.0.1");
    let cols = dest.columns("my_types", "all_types");
    assert_eq!(cols.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), COLUMNS.iter().map(|c| c.0).collect::<Vec<_>>());
    for ((name, ty, nullable), (_, _, _, want)) in cols.iter().zip(COLUMNS) {
        assert_eq!(ty, want, "type of {name}");
        assert_eq!(*nullable, name != "id", "nullability of {name}");
    }
}

#[test]
fn incremental_columns_and_errors() {
    let Some(db) = MyDb::new() else { return };
    db.exec(
        "CREATE TABLE events (id INT PRIMARY KEY, updated_at DATETIME(6), secret VARCHAR(10), t TIME);
         INSERT INTO events VALUES (1, '2024-01-01 00:00:00', 's', '01:00:00'), (2, '2024-01-02 00:00:00', 's', '01:00:00'),
                                   (3, '2024-01-03 00:00:00', 's', '01:00:00')",
    );
    let dest = Dest::new();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let run = |seen: Arc<Mutex<Vec<String>>>| {
        let src = SqlDatabase::from_url(&db.url)
            .unwrap()
            .table(
                "events",
                TableOptions {
                    incremental: Some(IncrementalConfig::new("updated_at")),
                    excluded_columns: Some(vec!["secret".into()]),
                    ..Default::default()
                },
            )
            .query_adapter(move |ctx| {
                seen.lock().unwrap().push(ctx.select.to_string());
                None
            })
            .into_source()
            .unwrap();
        dest.pipeline("my_inc", "my_inc").run(src).unwrap()
    };
    run(seen.clone());
    // new rows and an old one with a TIME no column can hold: only the WHERE keeps it out
    db.exec(
        "INSERT INTO events VALUES (4, '2024-01-04 00:00:00', 's', '01:00:00'), (99, '2000-01-01 00:00:00', 's', '-01:00:00')",
    );
    run(seen.clone());
    let sql = seen.lock().unwrap()[1].clone();
    assert!(sql.contains("WHERE `updated_at` >= _utf8mb4 X'"), "{sql}");
    assert_eq!(
        dest.strings("SELECT id::VARCHAR FROM my_inc.events ORDER BY id"),
        [1, 2, 3, 4].map(|i| vec![Some(i.to_string())]).to_vec()
    );
    assert!(!dest.columns("my_inc", "events").iter().any(|c| c.0 == "secret"));
    // reading the poison row names table and column
    let err = dest
        .pipeline("my_bad", "my_bad")
        .run(SqlDatabase::from_url(&db.url).unwrap().table_names(["events"]).into_source().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("`events`") && err.contains("`t`"), "{err}");
    let err = SqlDatabase::from_url(&db.url).unwrap().table_names(["nope"]).into_source().unwrap_err().to_string();
    assert!(err.contains("`nope`") && err.contains(&db.name), "{err}");
    let err = SqlDatabase::from_url("mysql://root:hunter2@127.0.0.1:1/x").unwrap().into_source().unwrap_err();
    assert!(err.is_transient() && !err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn a_unix_socket_in_the_url_is_used_and_a_missing_one_is_an_error() {
    let Some(db) = MyDb::new() else { return };
    db.exec("CREATE TABLE t (id INT PRIMARY KEY);\nINSERT INTO t VALUES (1), (2)");
    let socket = db.strings("SELECT @@socket")[0][0].clone().unwrap_or_default();
    if !std::path::Path::new(&socket).exists() {
        return dlt_testkit::services::skip_or_fail("the MySQL/MariaDB socket", format!("{socket} is not here"));
    }
    // a host that does not resolve: only the socket reaches the server
    let (base, _) = db.url.split_once("//").unwrap();
    let rest = db.url.split_once("//").unwrap().1;
    let (auth, _) = rest.split_once('@').unwrap_or(("root", rest));
    let url = format!("{base}//{auth}@no-such-host.invalid/{}?unix_socket={socket}", db.name);
    let dest = Dest::new();
    let src = SqlDatabase::from_url(&url).unwrap().table_names(["t"]).into_source().unwrap();
    dest.pipeline("my_sock", "my_sock").run(src).unwrap();
    assert_eq!(
        dest.strings("SELECT id::VARCHAR FROM my_sock.t ORDER BY id"),
        [1, 2].map(|i| vec![Some(i.to_string())]).to_vec()
    );
    // a socket that is not there is an error naming it, not a TCP connection
    let bad = format!("{base}//{auth}@127.0.0.1/{}?unix_socket=/nonexistent/mysqld.sock", db.name);
    let err = SqlDatabase::from_url(&bad).unwrap().table_names(["t"]).into_source().unwrap_err().to_string();
    assert!(err.contains("/nonexistent/mysqld.sock") && err.contains("unix_socket"), "{err}");
}

/// (column, data_type, precision and scale)
type Hint<'a> = (&'a str, &'a str, Option<(u32, u32)>);

#[test]
fn values_beyond_the_reflected_type_name_the_hint_that_loads_them() {
    let Some(db) = MyDb::new() else { return };
    db.exec(
        "CREATE TABLE wide (id INT PRIMARY KEY, u BIGINT UNSIGNED, d TIME);
         INSERT INTO wide VALUES (1, 18446744073709551615, '100:00:00'), (2, 7, '-01:30:00'), (3, 9223372036854775808, '12:00:00')",
    );
    let dest = Dest::new();
    let source = |hints: &[Hint]| {
        let mut columns = indexmap::IndexMap::new();
        for (name, ty, prec) in hints {
            let mut c = dlt_core::schema::Column::new(*name, dlt_core::schema::DataType::parse(ty).unwrap());
            if let Some((p, s)) = prec {
                c.precision = Some(*p);
                c.scale = Some(*s);
            }
            columns.insert(name.to_string(), c);
        }
        SqlDatabase::from_url(&db.url)
            .unwrap()
            .table("wide", TableOptions { columns, ..Default::default() })
            .into_source()
            .unwrap()
    };
    // an unsigned BIGINT beyond 2^63 - 1: the error names table, column, value and the hint
    let err = dest.pipeline("my_wide", "my_wide").run(source(&[("d", "text", None)])).unwrap_err().to_string();
    assert!(err.contains("`wide`") && err.contains("`u`") && err.contains("18446744073709551615"), "{err}");
    assert!(err.contains("data_type = \"decimal\", precision = 20, scale = 0"), "{err}");
    assert!(err.contains("pipeline step extract"), "{err}");
    // a TIME beyond a day: the same, with the text hint
    let err =
        dest.pipeline("my_wide2", "my_wide2").run(source(&[("u", "decimal", Some((20, 0)))])).unwrap_err().to_string();
    assert!(err.contains("`d`") && err.contains("100:00:00") && err.contains("data_type = \"text\""), "{err}");
    // with both hints every value loads as the server has it
    dest.pipeline("my_wide3", "my_wide3").run(source(&[("u", "decimal", Some((20, 0))), ("d", "text", None)])).unwrap();
    let got = dest.strings("SELECT u::VARCHAR, d FROM my_wide3.wide ORDER BY id");
    let want = db.strings("SELECT CAST(u AS CHAR), CAST(d AS CHAR) FROM wide ORDER BY id");
    assert_eq!(got, want);
    assert_eq!(got[0][0].as_deref(), Some("18446744073709551615"));
}
