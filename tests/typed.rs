//! Typed columns from Rust types: `#[derive(dlt::Table)]` structs loaded into a real DuckDB
//! file, read back with an independent DuckDB connection.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use dlt::{DataType, TypedTable, typed};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

mod common;
use common::{Env, columns, query};

/// A nested struct: one json column of its parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, dlt::Table)]
struct Address {
    city: String,
    zip: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, dlt::Table)]
#[dlt(table_name = "Customers")]
struct Customer {
    #[dlt(primary_key)]
    id: i64,
    #[serde(rename = "FullName")]
    name: String,
    age: Option<i32>,
    small: i8,
    tiny: u8,
    score: f64,
    active: bool,
    created_at: DateTime<Utc>,
    local_at: NaiveDateTime,
    offset_at: Option<DateTime<FixedOffset>>,
    birthday: NaiveDate,
    wake_up: NaiveTime,
    avatar: Vec<u8>,
    address: Address,
    tags: Vec<String>,
    attrs: BTreeMap<String, i64>,
    extra: Value,
    big: u64,
    never_set: Option<String>,
    #[dlt(data_type = "decimal", precision = 10, scale = 2)]
    balance: String,
    #[dlt(name = "Updated By")]
    updated_by: Option<String>,
    #[serde(skip)]
    cache: u32,
    #[dlt(skip)]
    internal: String,
}

fn customer(id: i64) -> Customer {
    Customer {
        id,
        name: format!("Customer {id}"),
        age: if id % 2 == 0 { Some(30 + id as i32) } else { None },
        small: -3,
        tiny: 200,
        score: 1.5 * id as f64,
        active: id % 2 == 1,
        created_at: Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap(),
        local_at: NaiveDate::from_ymd_opt(2024, 5, 6).unwrap().and_hms_opt(7, 8, 9).unwrap(),
        offset_at: Some(FixedOffset::east_opt(2 * 3600).unwrap().with_ymd_and_hms(2024, 1, 2, 5, 0, 0).unwrap()),
        birthday: NaiveDate::from_ymd_opt(1990, 12, 31).unwrap(),
        wake_up: NaiveTime::from_hms_opt(6, 30, 0).unwrap(),
        avatar: vec![0, 1, 2, 255],
        address: Address { city: "Berlin".into(), zip: if id == 1 { Some("10115".into()) } else { None } },
        tags: vec!["a".into(), "b".into()],
        attrs: BTreeMap::from([("x".to_string(), id)]),
        extra: json!({"k": [1, 2]}),
        big: 9_007_199_254_740_993 + id as u64,
        never_set: None,
        balance: format!("{id}.25"),
        updated_by: Some("admin".into()),
        cache: 42,
        internal: "not loaded".into(),
    }
}

#[test]
fn derived_columns() {
    let cols = Customer::columns();
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "full_name",
            "age",
            "small",
            "tiny",
            "score",
            "active",
            "created_at",
            "local_at",
            "offset_at",
            "birthday",
            "wake_up",
            "avatar",
            "address",
            "tags",
            "attrs",
            "extra",
            "big",
            "never_set",
            "balance",
            "updated_by"
        ]
    );
    let by = |n: &str| cols.iter().find(|c| c.name == n).unwrap().clone();
    assert!(by("id").primary_key && !by("id").is_nullable());
    assert_eq!(by("small").precision, Some(8));
    assert_eq!(by("age").precision, Some(32));
    assert!(by("age").is_nullable());
    assert_eq!(by("local_at").timezone, Some(false));
    assert_eq!(by("address").data_type, Some(DataType::Json));
    assert_eq!(by("balance").data_type, Some(DataType::Decimal));
    assert_eq!((by("balance").precision, by("balance").scale), (Some(10), Some(2)));
    assert!(!by("balance").is_nullable());
    assert_eq!(Customer::table_name(), Some("Customers"));
    assert_eq!(Customer::serde_keys()[1], "FullName");
    assert_eq!(Customer::serde_keys()[20], "updated_by");
    assert_eq!(Customer::skipped_keys(), ["internal"]);
    // a nested Table is a json column wherever it is used
    assert_eq!(<Address as dlt::ColumnType>::DATA_TYPE, DataType::Json);
    let h = typed::hints::<Customer>();
    assert_eq!(h.primary_key.unwrap().0, ["id"]);
    assert_eq!(h.columns.len(), 21);
}

#[test]
fn typed_rows_load_with_declared_types() {
    let env = Env::new();
    let mut p = env.pipeline("typed", "typed_data");
    let info = p.run(typed::resource("customers", vec![customer(1), customer(2)])).unwrap();
    assert_eq!(info.row_counts["customers"], 2);
    assert!(!info.has_failed_jobs());
    // nested values stay in json columns: no child tables
    assert!(info.row_counts.keys().all(|t| !t.starts_with("customers__")), "{:?}", info.row_counts);
    let db = env.db();
    let cols = columns(&db, "typed_data", "customers");
    let expect: Vec<(&str, &str, &str)> = vec![
        ("id", "BIGINT", "NO"),
        ("full_name", "VARCHAR", "NO"),
        ("age", "INTEGER", "YES"),
        ("small", "TINYINT", "NO"),
        ("tiny", "SMALLINT", "NO"),
        ("score", "DOUBLE", "NO"),
        ("active", "BOOLEAN", "NO"),
        ("created_at", "TIMESTAMP WITH TIME ZONE", "NO"),
        ("local_at", "TIMESTAMP", "NO"),
        ("offset_at", "TIMESTAMP WITH TIME ZONE", "YES"),
        ("birthday", "DATE", "NO"),
        ("wake_up", "TIME", "NO"),
        ("avatar", "BLOB", "NO"),
        ("address", "JSON", "NO"),
        ("tags", "JSON", "NO"),
        ("attrs", "JSON", "NO"),
        ("extra", "JSON", "YES"),
        ("big", "BIGINT", "NO"),
        ("never_set", "VARCHAR", "YES"),
        ("balance", "DECIMAL(10,2)", "NO"),
        ("updated_by", "VARCHAR", "YES"),
        ("_dlt_load_id", "VARCHAR", "NO"),
        ("_dlt_id", "VARCHAR", "NO"),
    ];
    let got: Vec<(&str, &str, &str)> = cols.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    assert_eq!(got, expect);

    let rows = query(
        &db,
        "SELECT id, full_name, age, small, tiny, score, active, \
         strftime(created_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S'), CAST(local_at AS VARCHAR), \
         strftime(offset_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S'), CAST(birthday AS VARCHAR), \
         CAST(wake_up AS VARCHAR), hex(avatar), CAST(address AS VARCHAR), CAST(tags AS VARCHAR), \
         CAST(attrs AS VARCHAR), CAST(extra AS VARCHAR), CAST(big AS VARCHAR), never_set, \
         CAST(balance AS VARCHAR), updated_by FROM typed_data.customers ORDER BY id",
    );
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows[0],
        vec![
            s("1"),
            s("Customer 1"),
            None,
            s("-3"),
            s("200"),
            s("1.5"),
            s("true"),
            s("2024-01-02 03:04:05"),
            s("2024-05-06 07:08:09"),
            s("2024-01-02 03:00:00"),
            s("1990-12-31"),
            s("06:30:00"),
            s("000102FF"),
            s(r#"{"city":"Berlin","zip":"10115"}"#),
            s(r#"["a","b"]"#),
            s(r#"{"x":1}"#),
            s(r#"{"k":[1,2]}"#),
            s("9007199254740994"),
            None,
            s("1.25"),
            s("admin"),
        ]
    );
    assert_eq!(rows[1][2], s("32"));
    assert_eq!(rows[1][13], s(r#"{"city":"Berlin","zip":null}"#));

    // the declared schema: the never-set column is complete and nullable; keys are hinted
    let schema = p.default_schema().unwrap().unwrap();
    let t = &schema.tables["customers"];
    assert_eq!(t.columns["never_set"].data_type, Some(DataType::Text));
    assert!(t.columns["id"].primary_key);
    assert!(!t.columns.contains_key("internal") && !t.columns.contains_key("cache"));
    assert_eq!(customer(1).cache, 42, "serde(skip) fields are neither columns nor loaded");
}

/// Keys, hints and attributes beyond the basics; a table name and disposition from the struct.
#[derive(Debug, Serialize, Deserialize, dlt::Table)]
#[dlt(table_name = "events", write_disposition = "replace")]
#[serde(rename_all = "camelCase")]
struct Event {
    #[dlt(primary_key)]
    event_id: u32,
    #[dlt(merge_key)]
    day: NaiveDate,
    #[dlt(hard_delete)]
    deleted: Option<bool>,
    #[dlt(dedup_sort = "desc", timezone = false)]
    seen_at: DateTime<Utc>,
    r#type: String,
    #[serde(flatten)]
    source: Origin,
}

#[derive(Debug, Serialize, Deserialize, dlt::Table)]
struct Origin {
    #[serde(rename = "originHost")]
    origin_host: String,
    origin_port: u16,
}

#[test]
fn keys_attributes_and_flatten() {
    let cols = Event::columns();
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["event_id", "day", "deleted", "seen_at", "type", "origin_host", "origin_port"]);
    assert!(cols[1].merge_key);
    assert!(cols[2].hard_delete && cols[2].is_nullable());
    assert_eq!(cols[3].dedup_sort, Some(dlt::dlt_core::schema::SortOrder::Desc));
    assert_eq!(cols[3].timezone, Some(false));
    assert_eq!(cols[6].precision, Some(32));
    assert_eq!(Event::serde_keys(), ["eventId", "day", "deleted", "seenAt", "type", "originHost", "origin_port"]);
    assert_eq!(Event::write_disposition(), Some(dlt::WriteDisposition::Replace));
    let h = typed::hints::<Event>();
    assert_eq!(h.primary_key.unwrap().0, ["event_id"]);
    assert_eq!(h.merge_key.unwrap().0, ["day"]);

    let env = Env::new();
    let mut p = env.pipeline("ev", "ev_data");
    let ev = |id: u32| Event {
        event_id: id,
        day: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
        deleted: None,
        seen_at: Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap(),
        r#type: "click".into(),
        source: Origin { origin_host: "example.org".into(), origin_port: 443 },
    };
    p.run(typed::resource("raw_events", vec![ev(1), ev(2)])).unwrap();
    p.run(typed::resource("raw_events", vec![ev(3)])).unwrap();
    let db = env.db();
    // replace: only the last run's row
    assert_eq!(
        query(
            &db,
            r#"SELECT event_id, "type", origin_host, origin_port, CAST(seen_at AS VARCHAR) FROM ev_data.events"#
        ),
        vec![vec![
            Some("3".into()),
            Some("click".into()),
            Some("example.org".into()),
            Some("443".into()),
            Some("2024-03-01 12:00:00".into())
        ]]
    );
    let cols = columns(&db, "ev_data", "events");
    assert_eq!(cols[0], ("event_id".into(), "BIGINT".into(), "NO".into()));
    assert_eq!(cols[1], ("day".into(), "DATE".into(), "NO".into()));
    assert_eq!(cols[3], ("seen_at".into(), "TIMESTAMP".into(), "NO".into()));
    assert_eq!(cols[6], ("origin_port".into(), "INTEGER".into(), "NO".into()));
}

#[test]
fn validate_loads_fitting_rows_and_rejects_a_bad_one() {
    let env = Env::new();
    let mut p = env.pipeline("val", "val_data");
    let good = vec![json!({"city": "Paris", "zip": "75001", "unknown": 1}), json!({"city": "Rome"})];
    let info = p.run(typed::validate::<Address, _>("addresses", good)).unwrap();
    assert_eq!(info.row_counts["addresses"], 2);
    let db = env.db();
    // unknown fields are dropped (pydantic's default `extra = "ignore"`), missing options are null
    assert_eq!(
        columns(&db, "val_data", "addresses"),
        vec![
            ("city".into(), "VARCHAR".into(), "NO".into()),
            ("zip".into(), "VARCHAR".into(), "YES".into()),
            ("_dlt_load_id".into(), "VARCHAR".into(), "NO".into()),
            ("_dlt_id".into(), "VARCHAR".into(), "NO".into()),
        ]
    );
    assert_eq!(
        query(&db, "SELECT city, zip FROM val_data.addresses ORDER BY city"),
        vec![vec![Some("Paris".into()), Some("75001".into())], vec![Some("Rome".into()), None]]
    );

    let bad = vec![json!({"city": "Oslo"}), json!({"city": "Bergen", "zip": 5020}), json!({"zip": "x"})];
    let err = p.run(typed::validate::<Address, _>("addresses", bad)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("addresses item #1"), "{msg}");
    assert!(msg.contains("field `zip`: invalid type: integer `5020`, expected a string"), "{msg}");
    match &err {
        dlt::Error::StepFailed { step: dlt::Step::Extract, source, .. } => match &**source {
            dlt::Error::BadInput { location, message } => {
                assert_eq!(location, "addresses item #1");
                assert_eq!(message, "field `zip`: invalid type: integer `5020`, expected a string");
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    // nothing of the failed run reached the destination
    assert_eq!(query(&db, "SELECT count(*) FROM val_data.addresses")[0][0].as_deref(), Some("2"));

    let missing = p.run(typed::validate::<Address, _>("addresses", vec![json!({"zip": "x"})])).unwrap_err();
    assert!(missing.to_string().contains("addresses item #0: missing field `city`"), "{missing}");
}

#[test]
fn u64_beyond_i64_fails_with_the_row_and_column() {
    #[derive(Serialize, dlt::Table)]
    struct Counter {
        id: i32,
        n: Option<u64>,
    }
    let env = Env::new();
    let mut p = env.pipeline("big", "big_data");
    let rows = vec![Counter { id: 1, n: Some(i64::MAX as u64) }, Counter { id: 2, n: None }];
    p.run(typed::resource("counters", rows)).unwrap();
    let db = env.db();
    assert_eq!(
        query(&db, "SELECT id, n FROM big_data.counters ORDER BY id"),
        vec![vec![Some("1".into()), Some(i64::MAX.to_string())], vec![Some("2".into()), None]]
    );
    let err = p.run(typed::resource("counters", vec![Counter { id: 3, n: Some(1 << 63) }])).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("counters item #0: column `n`: 9223372036854775808 does not fit a bigint (signed 64-bit) column"),
        "{msg}"
    );
    assert_eq!(query(&db, "SELECT count(*) FROM big_data.counters")[0][0].as_deref(), Some("2"));
}
