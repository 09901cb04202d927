//! The Postgres destination against the real server on 127.0.0.1 (DLT_TEST_POSTGRES_URL),
//! each test in a database of its own, results read back with a plain Postgres client.

use std::sync::Arc;

use dlt::{Resource, WriteDisposition, WriteDispositionConfig};
use serde_json::{Value, json};

fn admin_url() -> String {
    std::env::var("DLT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into())
}

/// A fresh database, dropped at the end.
struct Db {
    name: String,
    url: String,
    dir: tempfile::TempDir,
}

impl Db {
    fn new() -> Option<Db> {
        let mut admin = match postgres::Client::connect(&admin_url(), postgres::NoTls) {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("PostgreSQL is not reachable at {}: {e}", admin_url());
                }
                eprintln!("skipping: PostgreSQL is not reachable at {}: {e}", admin_url());
                return None;
            }
        };
        let name = format!("dlt_test_{:016x}", rand_u64());
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let base = admin_url();
        let url = match base.rfind('/') {
            Some(i) => format!("{}/{name}", &base[..i]),
            None => base,
        };
        Some(Db { name, url, dir: tempfile::tempdir().unwrap() })
    }

    fn pipeline(&self, name: &str, dataset: &str) -> dlt::Pipeline {
        dlt::pipeline(name)
            .destination(dlt::destinations::postgres(&self.url).unwrap())
            .dataset_name(dataset)
            .pipelines_dir(self.dir.path().join("pipelines"))
            .config(dlt::Config::from_parts(vec![], None, None))
            .build()
            .unwrap()
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }

    fn strings(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let mut c = self.client();
        c.batch_execute("SET TimeZone = 'UTC'").unwrap();
        let rows = c.query(sql, &[]).unwrap();
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.try_get::<_, Option<String>>(i)
                            .or_else(|_| r.try_get::<_, Option<i64>>(i).map(|v| v.map(|x| x.to_string())))
                            .or_else(|_| r.try_get::<_, Option<i32>>(i).map(|v| v.map(|x| x.to_string())))
                            .or_else(|_| r.try_get::<_, Option<bool>>(i).map(|v| v.map(|x| x.to_string())))
                            .or_else(|_| r.try_get::<_, Option<f64>>(i).map(|v| v.map(|x| x.to_string())))
                            .expect("a text, integer, bool or float column")
                    })
                    .collect()
            })
            .collect()
    }

    fn scalar(&self, sql: &str) -> String {
        self.strings(sql)[0][0].clone().unwrap_or_default()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&admin_url(), postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    h.finish()
}

#[test]
fn nested_types_and_system_tables() {
    let Some(db) = Db::new() else { return };
    let mut p = db.pipeline("pg_e2e", "e2e_data");
    let rows = vec![
        json!({"id": 1, "name": "ä\"'x", "score": 1.5, "ok": true, "at": "2024-01-02T03:04:05+02:00", "meta": {"a": {"b": [1, 2]}}, "tags": ["x", "y"], "price": "10.25", "big": 18446744073709551615u64}),
        json!({"id": 2, "name": null, "score": -0.0, "ok": false, "at": "2024-06-01T00:00:00Z", "tags": []}),
    ];
    let r = Resource::from_values("Things", rows)
        .column(dlt::Column::new("price", dlt::DataType::Decimal))
        .column(dlt::Column::new("meta__a", dlt::DataType::Json));
    let info = p.run(r).unwrap();
    assert_eq!(info.row_counts["things"], 2);
    assert_eq!(info.row_counts["things__tags"], 2);
    let cols = db.strings(
        "SELECT column_name::text, data_type::text, is_nullable::text FROM information_schema.columns WHERE table_schema = 'e2e_data' AND table_name = 'things' ORDER BY ordinal_position",
    );
    let got: Vec<(String, String)> = cols.iter().map(|c| (c[0].clone().unwrap(), c[1].clone().unwrap())).collect();
    let want = [
        ("price", "numeric"),
        ("meta__a", "jsonb"),
        ("id", "bigint"),
        ("name", "character varying"),
        ("score", "double precision"),
        ("ok", "boolean"),
        ("at", "timestamp with time zone"),
        ("big", "numeric"),
        ("_dlt_load_id", "character varying"),
        ("_dlt_id", "character varying"),
    ];
    assert_eq!(got, want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>());
    let r1 = &db.strings("SELECT price::text, meta__a::text, name, score::text, ok::text, to_char(at, 'YYYY-MM-DD HH24:MI:SS'), big::text FROM e2e_data.things WHERE id = 1")[0];
    assert_eq!(r1[0].as_deref(), Some("10.250000000"));
    assert_eq!(r1[1].as_deref(), Some(r#"{"b": [1, 2]}"#));
    assert_eq!(r1[2].as_deref(), Some("ä\"'x"));
    assert_eq!(r1[3].as_deref(), Some("1.5"));
    assert_eq!(r1[4].as_deref(), Some("true"));
    assert_eq!(r1[5].as_deref(), Some("2024-01-02 01:04:05"));
    assert_eq!(r1[6].as_deref(), Some("18446744073709551615"));
    assert_eq!(db.scalar("SELECT string_agg(value, ',' ORDER BY _dlt_list_idx) FROM e2e_data.things__tags"), "x,y");
    // system tables as dlt writes them on Postgres
    assert_eq!(db.scalar("SELECT count(*) FROM e2e_data._dlt_loads WHERE status = 0"), "1");
    assert_eq!(db.scalar("SELECT character_maximum_length::text FROM information_schema.columns WHERE table_schema = 'e2e_data' AND table_name = '_dlt_loads' AND column_name = 'load_id'"), "64");
    assert_eq!(
        db.scalar("SELECT count(*) FROM information_schema.table_constraints WHERE table_schema = 'e2e_data' AND table_name = 'things' AND constraint_type = 'UNIQUE'"),
        "1",
        "UNIQUE on _dlt_id"
    );
    assert!(db.scalar("SELECT state FROM e2e_data._dlt_pipeline_state").starts_with("eNp"));
    // state and schema come back on a fresh working dir
    let wd = p.working_dir().to_path_buf();
    drop(p);
    std::fs::remove_dir_all(wd).unwrap();
    let mut p = db.pipeline("pg_e2e", "e2e_data");
    assert!(p.sync_destination().unwrap());
    assert!(p.schema("pg_e2e").unwrap().unwrap().tables.contains_key("things__tags"));
}

#[test]
fn merge_strategies_on_postgres() {
    let Some(db) = Db::new() else { return };
    let mut p = db.pipeline("pg_merge", "m");
    let di = |rows: Vec<Value>| {
        Resource::from_values("di", rows)
            .write_disposition(WriteDispositionConfig { disposition: WriteDisposition::Merge, ..Default::default() })
            .primary_key(["id"])
    };
    p.run(di(vec![json!({"id": 1, "v": "a", "l": [1, 2]}), json!({"id": 2, "v": "b", "l": [3]})])).unwrap();
    p.run(di(vec![json!({"id": 2, "v": "b2", "l": [4, 5]}), json!({"id": 3, "v": "c"})])).unwrap();
    assert_eq!(db.scalar("SELECT string_agg(id || v, ',' ORDER BY id) FROM m.di"), "1a,2b2,3c");
    assert_eq!(db.scalar("SELECT string_agg(value::text, ',' ORDER BY value) FROM m.di__l"), "1,2,4,5");
    // upsert: a duplicate key inside one load keeps the last row and breaks nothing
    let up = |rows: Vec<Value>| {
        let mut wd = WriteDispositionConfig { disposition: WriteDisposition::Merge, ..Default::default() };
        wd.strategy = Some(dlt::MergeStrategy::Upsert);
        Resource::from_values("up", rows).write_disposition(wd).primary_key(["id"])
    };
    p.run(up(vec![json!({"id": 1, "v": "a", "l": [1]}), json!({"id": 2, "v": "b"})])).unwrap();
    p.run(up(vec![
        json!({"id": 1, "v": "a2", "l": [9]}),
        json!({"id": 1, "v": "a3", "l": [9]}),
        json!({"id": 3, "v": "c"}),
    ]))
    .unwrap();
    assert_eq!(db.scalar("SELECT string_agg(id || v, ',' ORDER BY id) FROM m.up"), "1a3,2b,3c");
    // scd2: changed rows get a new version, absent ones are retired
    let scd = |rows: Vec<Value>| {
        let mut wd = WriteDispositionConfig { disposition: WriteDisposition::Merge, ..Default::default() };
        wd.strategy = Some(dlt::MergeStrategy::Scd2);
        Resource::from_values("dim", rows).write_disposition(wd)
    };
    p.run(scd(vec![json!({"id": 1, "v": "a"}), json!({"id": 2, "v": "b"})])).unwrap();
    p.run(scd(vec![json!({"id": 1, "v": "a2"})])).unwrap();
    assert_eq!(db.scalar("SELECT count(*) FROM m.dim WHERE _dlt_valid_to IS NULL"), "1");
    assert_eq!(db.scalar("SELECT v FROM m.dim WHERE _dlt_valid_to IS NULL"), "a2");
    assert_eq!(db.scalar("SELECT count(*) FROM m.dim"), "3");
}

#[test]
fn long_names_reserved_words_and_quotes() {
    let Some(db) = Db::new() else { return };
    let mut p = db.pipeline("pg_names", "select");
    let long = "very_long_column_name_that_exceeds_the_postgres_limit_of_sixty_three_chars";
    let r = Resource::from_values(
        "order",
        vec![
            json!({"user": 1, "from": "x", "a\"b": "q", long: 5, "children_with_a_rather_long_name_to_make_the_nested_table_name_long": [{"k": 1}]}),
        ],
    );
    p.run(r).unwrap();
    let cols: Vec<String> = db
        .strings("SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'select' AND table_name = 'order' ORDER BY ordinal_position")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert!(cols.contains(&"very_long_column_name_that_exaqjxiqs_limit_of_sixty_three_chars".to_string()), "{cols:?}");
    assert!(
        cols.contains(&"user".to_string()) && cols.contains(&"from".to_string()) && cols.contains(&"a_b".to_string())
    );
    let tables: Vec<String> = db
        .strings("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'select' ORDER BY 1")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert!(tables.iter().all(|t| t.len() <= 63), "{tables:?}");
    assert_eq!(tables.iter().filter(|t| t.starts_with("order__")).count(), 1, "{tables:?}");
    assert_eq!(db.scalar("SELECT \"from\" FROM \"select\".\"order\""), "x");
}

#[test]
fn unreachable_server_and_unknown_role_lose_nothing() {
    let Some(db) = Db::new() else { return };
    // a role that does not exist: terminal, clear, no password in the message
    let bad = db.url.replace("postgres@", "no_such_role:hunter2@");
    let mut p = dlt::pipeline("bad_role")
        .destination(dlt::destinations::postgres(&bad).unwrap())
        .pipelines_dir(db.dir.path().join("pipelines"))
        .config(dlt::Config::from_parts(vec![], None, None))
        .build()
        .unwrap();
    let err = p.run(Resource::from_values("t", vec![json!({"a": 1})])).unwrap_err();
    assert_eq!(err.step(), Some(dlt::Step::Sync), "the state cannot be restored, so nothing is extracted");
    let err = err.to_string();
    assert!(err.contains("no_such_role") && !err.contains("hunter2"), "{err}");
    assert!(!p.has_pending_packages().unwrap());
    // the right destination later: the new data loads
    let mut p = dlt::pipeline("bad_role")
        .destination(dlt::destinations::postgres(&db.url).unwrap())
        .pipelines_dir(db.dir.path().join("pipelines"))
        .config(dlt::Config::from_parts(vec![], None, None))
        .build()
        .unwrap();
    let info = p.run(Resource::from_values("t", vec![json!({"a": 2})])).unwrap();
    assert_eq!(info.load_ids.len(), 1);
    assert_eq!(db.scalar("SELECT string_agg(a::text, ',' ORDER BY a) FROM bad_role_dataset.t"), "2");
    // nothing listens on port 1: a connection error naming the server
    let mut p = dlt::pipeline("pg_down")
        .destination(dlt::destinations::postgres("postgresql://postgres@127.0.0.1:1/x?connect_timeout=2").unwrap())
        .pipelines_dir(db.dir.path().join("pipelines"))
        .config(dlt::Config::from_parts(vec![("LOAD__RETRY_BACKOFF_MS".into(), "1".into())], None, None))
        .build()
        .unwrap();
    let err = p.run(Resource::from_values("t", vec![json!({"a": 1})])).unwrap_err();
    assert!(err.to_string().contains("cannot connect to postgresql://postgres@127.0.0.1:1/x"), "{err}");
    assert!(err.is_transient(), "{err}");
    assert!(!p.has_pending_packages().unwrap());
}

#[test]
fn two_pipelines_into_one_dataset_at_once() {
    let Some(db) = Db::new() else { return };
    let db = Arc::new(db);
    let handles: Vec<_> = (0..2)
        .map(|i| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut p = db.pipeline(&format!("pg_conc_{i}"), "shared");
                for round in 0..3 {
                    let rows: Vec<Value> = (0..200).map(|k| json!({"p": i, "round": round, "k": k})).collect();
                    p.run(Resource::from_values(format!("t{i}"), rows)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(db.scalar("SELECT count(*) FROM shared.t0"), "600");
    assert_eq!(db.scalar("SELECT count(*) FROM shared.t1"), "600");
    assert_eq!(db.scalar("SELECT count(*) FROM shared._dlt_loads"), "6");
    assert_eq!(db.scalar("SELECT count(DISTINCT pipeline_name) FROM shared._dlt_pipeline_state"), "2");
}

#[test]
fn replace_strategies_give_the_same_data() {
    let Some(db) = Db::new() else { return };
    for strategy in ["truncate-and-insert", "insert-from-staging", "staging-optimized"] {
        let ds = strategy.replace('-', "_");
        let mut p = dlt::pipeline(format!("rep_{ds}"))
            .destination(dlt::destinations::postgres(&db.url).unwrap())
            .dataset_name(&ds)
            .pipelines_dir(db.dir.path().join("pipelines"))
            .config(dlt::Config::from_parts(
                vec![("DESTINATION__REPLACE_STRATEGY".into(), strategy.into())],
                None,
                None,
            ))
            .build()
            .unwrap();
        let r = |rows: Vec<Value>| Resource::from_values("r", rows).write_disposition(WriteDisposition::Replace);
        p.run(r(vec![json!({"id": 1, "l": [1, 2]}), json!({"id": 2, "l": [3]})])).unwrap();
        p.run(r(vec![json!({"id": 3, "l": [4]})])).unwrap();
        assert_eq!(db.scalar(&format!("SELECT string_agg(id::text, ',') FROM {ds}.r")), "3", "{strategy}");
        assert_eq!(db.scalar(&format!("SELECT string_agg(value::text, ',') FROM {ds}.r__l")), "4", "{strategy}");
        p.run(r(vec![json!({"id": 5, "l": []})])).unwrap();
        assert_eq!(db.scalar(&format!("SELECT count(*) FROM {ds}.r__l")), "0", "{strategy}");
        assert_eq!(
            db.scalar(&format!(
                "SELECT count(*) FROM information_schema.table_constraints WHERE table_schema = '{ds}' AND table_name = 'r' AND constraint_type = 'UNIQUE'"
            )),
            "1",
            "{strategy}: _dlt_id stays UNIQUE"
        );
    }
    // an unknown strategy is a clear error
    let mut p = dlt::pipeline("rep_bad")
        .destination(dlt::destinations::postgres(&db.url).unwrap())
        .pipelines_dir(db.dir.path().join("pipelines"))
        .config(dlt::Config::from_parts(vec![("DESTINATION__REPLACE_STRATEGY".into(), "swap".into())], None, None))
        .build()
        .unwrap();
    let err = p.run(Resource::from_values("r", vec![json!({"a": 1})])).unwrap_err().to_string();
    assert!(err.contains("unknown replace strategy `swap`"), "{err}");
}

#[test]
fn tls_modes_against_the_local_server() {
    let Some(db) = Db::new() else { return };
    // require: encrypted, certificate not checked (libpq's meaning); the local server has TLS on
    let url = format!("{}?sslmode=require", db.url);
    let mut p = dlt::pipeline("tls_req")
        .destination(dlt::destinations::postgres(&url).unwrap())
        .pipelines_dir(db.dir.path().join("pipelines"))
        .config(dlt::Config::from_parts(vec![], None, None))
        .build()
        .unwrap();
    p.run(Resource::from_values("t", vec![json!({"a": 1})])).unwrap();
    let mut c = p.sql_client().unwrap();
    let b = c.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").unwrap();
    let ssl = b[0].column(0).as_any().downcast_ref::<arrow::array::BooleanArray>().unwrap().value(0);
    assert!(ssl, "the connection is encrypted");
    drop(c);
    // verify-full: the server's self-signed certificate is refused, with a clear error
    let url = format!("{}?sslmode=verify-full", db.url);
    let mut p = dlt::pipeline("tls_full")
        .destination(dlt::destinations::postgres(&url).unwrap())
        .pipelines_dir(db.dir.path().join("pipelines"))
        .config(dlt::Config::from_parts(vec![], None, None))
        .build()
        .unwrap();
    let err = p.run(Resource::from_values("t", vec![json!({"a": 1})])).unwrap_err();
    // a refused certificate is not retried: no later attempt can pass
    assert!(!err.is_transient(), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("cannot connect") && err.to_lowercase().contains("certificate"), "{err}");
}

/// The testkit's destination conformance suite, each case in a database of its own, read back
/// with the plain Postgres client.
struct PgTarget;

impl dlt_testkit::suite::Target for PgTarget {
    fn fresh(&self) -> Box<dyn dlt_testkit::suite::Place> {
        Box::new(Db::new().expect("PostgreSQL is reachable"))
    }
}

impl dlt_testkit::suite::Place for Db {
    fn destination(&self) -> Arc<dyn dlt::Destination> {
        dlt::destinations::postgres(&self.url).unwrap()
    }

    fn rows(&self, dataset: &str, table: &str, columns: &[&str]) -> Option<dlt_testkit::suite::Rows> {
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let name = format!("{}.{}", q(dataset), q(table)).replace('\'', "''");
        if self.scalar(&format!("SELECT (to_regclass('{name}') IS NOT NULL)::text")) != "true" {
            return None;
        }
        let cols: Vec<String> = columns.iter().map(|c| format!("{}::text", q(c))).collect();
        Some(self.strings(&format!("SELECT {} FROM {}.{}", cols.join(", "), q(dataset), q(table))))
    }
}

#[test]
fn conformance_suite() {
    if Db::new().is_none() {
        return;
    }
    let (ran, skipped) = dlt_testkit::suite::run(&PgTarget);
    assert!(skipped.is_empty(), "Postgres declares every strategy: {skipped:?}");
    assert_eq!(ran.len(), dlt_testkit::suite::cases().len());
}
