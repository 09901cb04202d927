//! `safe_watermark = "xact_start"` on the real PostgreSQL server: a row written by a long
//! transaction that commits after a load (with a cursor value before the rows that load saw) is
//! lost by a plain incremental cursor and loaded exactly once with the watermark.
//!
//! Each test has a database of its own, so that open transactions of other tests (which the
//! watermark rightly waits for) do not move it.

mod common;

use common::{Dest, pg_url, unique};
use dlt_core::incremental::IncrementalConfig;
use dlt_sql_database::{SafeWatermark, SqlDatabase, TableOptions};

/// A database of its own on the Postgres server (dropped with its sessions at the end).
struct PgDb {
    admin: String,
    name: String,
    url: String,
}

impl PgDb {
    fn new() -> Option<PgDb> {
        let admin = pg_url();
        let mut c = match postgres::Client::connect(&admin, postgres::NoTls) {
            Ok(c) => c,
            Err(e) => {
                assert!(std::env::var("CI").as_deref() != Ok("true"), "PostgreSQL is not reachable at {admin}: {e}");
                eprintln!("skipping: PostgreSQL is not reachable at {admin}: {e}");
                return None;
            }
        };
        let name = unique("dlt_wm");
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
        Some(PgDb { url: format!("{base}/{name}"), admin, name })
    }
    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }
    fn url_as(&self, user: &str) -> String {
        let (scheme, rest) = self.url.split_once("://").unwrap();
        let host = rest.split_once('@').map_or(rest, |(_, h)| h);
        format!("{scheme}://{user}@{host}")
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

fn table(watermark: bool) -> TableOptions {
    TableOptions {
        incremental: Some(IncrementalConfig::new("updated_at")),
        safe_watermark: watermark.then_some(SafeWatermark::XactStart),
        ..Default::default()
    }
}

fn ids(dest: &Dest, table: &str) -> Vec<i64> {
    dest.strings(&format!("SELECT id::VARCHAR FROM wm.{table} ORDER BY id"))
        .into_iter()
        .map(|r| r[0].as_deref().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn a_long_transaction_is_loaded_once_with_the_watermark_and_lost_without() {
    let Some(db) = PgDb::new() else { return };
    let mut c = db.client();
    c.batch_execute(
        "CREATE TABLE safe (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now(), note text);
         CREATE TABLE plain (LIKE safe INCLUDING ALL);
         INSERT INTO safe (id, updated_at, note) VALUES (1, '2024-01-01 00:00:00+00', 'old'), (2, '2024-01-02 00:00:00+00', 'old');
         INSERT INTO plain SELECT * FROM safe;",
    )
    .unwrap();
    // a transaction that writes `now()` (its start) and stays open over the first load
    let mut long = db.client();
    long.batch_execute(
        "BEGIN; INSERT INTO safe (id, note) VALUES (100, 'long'); INSERT INTO plain (id, note) VALUES (100, 'long')",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // later rows, committed before the load, with larger cursor values
    c.batch_execute(
        "INSERT INTO safe (id, note) VALUES (101, 'later'), (102, 'later');
         INSERT INTO plain (id, note) VALUES (101, 'later'), (102, 'later');",
    )
    .unwrap();
    let dest = Dest::new();
    let run = || {
        let src = SqlDatabase::from_url(&db.url)
            .unwrap()
            .schema("public")
            .table("safe", table(true))
            .table("plain", table(false))
            .into_source()
            .unwrap();
        let mut p = dest.pipeline("wm", "wm");
        p.run(src).unwrap();
        let last =
            p.state().0["sources"]["sql_database"]["resources"]["safe"]["incremental"]["updated_at"]["last_value"]
                .clone();
        last.as_str().unwrap().to_string()
    };
    // the state advances to the largest cursor value read, not to the watermark; a timestamp
    // column's value is kept as dlt keeps a datetime (tagged)
    assert_eq!(run(), "\u{f027}2024-01-02T00:00:00+00:00");
    // the watermark is before the open transaction: neither its row nor the later rows
    assert_eq!(ids(&dest, "safe"), [1, 2]);
    assert_eq!(ids(&dest, "plain"), [1, 2, 101, 102]);
    long.batch_execute("COMMIT").unwrap();
    // past the watermark's one-second margin
    std::thread::sleep(std::time::Duration::from_millis(1500));
    run();
    assert_eq!(ids(&dest, "safe"), [1, 2, 100, 101, 102], "every row exactly once");
    assert_eq!(ids(&dest, "plain"), [1, 2, 101, 102], "without the watermark the late row is lost");
    // nothing new: the boundary rows are deduplicated
    let last = run();
    assert_eq!(ids(&dest, "safe"), [1, 2, 100, 101, 102]);
    let newest: String = db
        .client()
        .query_one(
            "SELECT to_char(max(updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"') FROM safe",
            &[],
        )
        .unwrap()
        .get(0);
    let instant = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
    let last = last.strip_prefix('\u{f027}').expect("a tagged datetime");
    assert_eq!(instant(last), instant(&newest));
}

#[test]
fn hidden_sessions_need_pg_read_all_stats_or_a_fallback_lag() {
    let Some(db) = PgDb::new() else { return };
    let role = unique("dlt_wm_user");
    let mut c = db.client();
    c.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN;
         CREATE TABLE events (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now());
         GRANT SELECT ON events TO {role};
         INSERT INTO events VALUES (1, '2024-01-01 00:00:00+00');
         INSERT INTO events (id) VALUES (2);"
    ))
    .unwrap();
    // another user's session in the database, its transaction open
    let mut other = db.client();
    other.batch_execute("BEGIN; SELECT 1").unwrap();
    let dest = Dest::new();
    let run = |lag: Option<f64>| {
        let src = SqlDatabase::from_url(&db.url_as(&role))
            .unwrap()
            .schema("public")
            .table("events", TableOptions { safe_watermark_fallback_lag: lag, ..table(true) })
            .into_source()
            .unwrap();
        dest.pipeline("wm_hidden", "wm").run(src)
    };
    let err = run(None).unwrap_err();
    let msg = err.to_string();
    assert!(
        !err.is_transient() && msg.contains("hidden") && msg.contains("pg_read_all_stats") && msg.contains("`events`"),
        "{msg}"
    );
    // with a fallback lag of an hour, only rows older than that are read
    run(Some(3600.0)).unwrap();
    assert_eq!(dest.strings("SELECT id::VARCHAR FROM wm.events"), [[Some("1".to_string())]]);
    other.batch_execute("COMMIT").unwrap();
    drop(other);
    drop(c);
    let admin = db.admin.clone();
    drop(db);
    let mut a = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    a.batch_execute(&format!("DROP ROLE IF EXISTS {role}")).unwrap();
}

#[test]
fn only_postgres_timestamp_max_cursors() {
    let Some(db) = PgDb::new() else { return };
    db.client().batch_execute("CREATE TABLE t (id bigint PRIMARY KEY, n bigint, ts timestamp)").unwrap();
    let build = |opts: TableOptions| {
        SqlDatabase::from_url(&db.url)
            .unwrap()
            .schema("public")
            .table("t", opts)
            .into_source()
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let err = build(TableOptions { incremental: Some(IncrementalConfig::new("n")), ..table(true) });
    assert!(err.contains("timestamp cursor") && err.contains("`n`"), "{err}");
    let err = build(TableOptions { incremental: None, ..table(true) });
    assert!(err.contains("needs an incremental cursor"), "{err}");
    let mut min = IncrementalConfig::new("ts");
    min.last_value_func = Some("min".into());
    let err = build(TableOptions { incremental: Some(min), ..table(true) });
    assert!(err.contains("max"), "{err}");
    let ts = || Some(IncrementalConfig::new("ts"));
    let err = build(TableOptions { incremental: ts(), safe_watermark_fallback_lag: Some(5.0), ..table(false) });
    assert!(err.contains("without safe_watermark"), "{err}");
    // a naive `timestamp` cursor is compared in the server's default time zone, which a `now()`
    // written by a session with the default time zone is in: the fresh row is past the watermark
    db.client()
        .batch_execute(
            "SET TimeZone = DEFAULT; INSERT INTO t VALUES (1, 1, '2024-01-01 00:00:00'), (2, 2, now()::timestamp)",
        )
        .unwrap();
    let src = SqlDatabase::from_url(&db.url)
        .unwrap()
        .schema("public")
        .table("t", TableOptions { incremental: ts(), ..table(true) })
        .into_source()
        .unwrap();
    let dest = Dest::new();
    dest.pipeline("wm_naive", "wm").run(src).unwrap();
    assert_eq!(dest.strings("SELECT id::VARCHAR FROM wm.t"), [[Some("1".to_string())]]);
}
