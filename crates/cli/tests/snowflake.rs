//! The `dlt` binary into Snowflake (a fakesnow server): the quickstart, a `rest_api` pipeline
//! from json-server and a `sql_database` pipeline from PostgreSQL, each from a pipeline file
//! with the credentials in the environment as dlt names them; then `kill -9` at every step of
//! repeated incremental runs. Everything is read back by Snowflake's own Python connector
//! (`FakeSnow::query`), an independent client of the same server. Under `CI=true` a missing
//! fakesnow, json-server or PostgreSQL fails the test.
#![cfg(feature = "snowflake")]

mod warehouse;

use dlt_testkit::services::{FakeSnow, fakesnow, json_server, postgres_url, skip_or_fail};
use serde_json::json;
use warehouse::{Project, ok};

fn project(server: &FakeSnow, database: &str) -> Project {
    let credentials = format!(
        "snowflake://loader:s3cr3t-pw@testacct/{database}?warehouse=COMPUTE_WH&host=127.0.0.1&port={}&protocol=http",
        server.port
    );
    Project::new(&[("DESTINATION__SNOWFLAKE__CREDENTIALS", credentials)])
}

fn scalar(server: &FakeSnow, database: &str, sql: &str) -> i64 {
    server.query(database, sql)[0][0].as_i64().unwrap_or_else(|| panic!("{sql}: not a number"))
}

#[test]
fn the_quickstart_runs_into_snowflake() {
    let Some(server) = fakesnow() else { return };
    let db = "QUICKSTART_DB";
    let p = project(&server, db);
    let want = warehouse::quickstart(&p, "snowflake");
    let out = ok(&p.dlt(&["run", "pipeline.toml"]));
    assert!(out.contains("destination snowflake"), "{out}");
    assert!(!out.contains("s3cr3t-pw"), "{out}");
    assert_eq!(scalar(&server, db, "SELECT count(*) FROM GITHUB_DATA.ISSUES"), want.issues);
    assert_eq!(scalar(&server, db, "SELECT count(*) FROM GITHUB_DATA.ISSUES__LABELS"), want.labels);
    assert_eq!(scalar(&server, db, "SELECT count(*) FROM GITHUB_DATA.ISSUES__ASSIGNEES"), want.assignees);
    assert_eq!(scalar(&server, db, "SELECT count(*) FROM GITHUB_DATA.USERS"), want.users);
    // every nested row hangs off a loaded issue
    assert_eq!(
        scalar(
            &server,
            db,
            "SELECT count(*) FROM GITHUB_DATA.ISSUES__LABELS l LEFT JOIN GITHUB_DATA.ISSUES i \
             ON l._DLT_PARENT_ID = i._DLT_ID WHERE i._DLT_ID IS NULL"
        ),
        0
    );
    let loads = server.query(db, "SELECT SCHEMA_NAME, STATUS FROM GITHUB_DATA._DLT_LOADS");
    assert_eq!(loads, vec![vec![json!("quickstart"), json!(0)]]);
    assert_eq!(scalar(&server, db, "SELECT count(*) FROM GITHUB_DATA._DLT_PIPELINE_STATE"), 1);
    // a second run replaces: the same counts, two loads
    ok(&p.dlt(&["run", "pipeline.toml"]));
    assert_eq!(scalar(&server, db, "SELECT count(*) FROM GITHUB_DATA.ISSUES"), want.issues);
    assert_eq!(scalar(&server, db, "SELECT count(*) FROM GITHUB_DATA._DLT_LOADS"), 2);
    // info names the account, database and warehouse, never the password
    let info = ok(&p.dlt(&["pipeline", "quickstart", "info"]));
    assert!(info.contains("testacct") && info.contains(db) && info.contains("COMPUTE_WH"), "{info}");
    assert!(!info.contains("s3cr3t-pw"), "{info}");
}

#[test]
fn a_rest_api_pipeline_runs_into_snowflake() {
    let dir = tempfile::tempdir().unwrap();
    let Some(api) = json_server(&warehouse::posts_db(dir.path())) else { return };
    let Some(server) = fakesnow() else { return };
    let p = project(&server, "REST_DB");
    p.write("p.toml", &warehouse::rest_api_pipeline("rest_sf", "snowflake", &api.url));
    let out = ok(&p.dlt(&["run", "p.toml"]));
    assert!(out.contains("- posts: 23 row(s)"), "{out}");
    assert_eq!(scalar(&server, "REST_DB", "SELECT count(*) FROM API.POSTS"), 23);
    assert_eq!(scalar(&server, "REST_DB", "SELECT count(*) FROM API.POSTS__TAGS"), 46);
    let got = server.query("REST_DB", "SELECT TITLE FROM API.POSTS WHERE ID = 17");
    assert_eq!(got, vec![vec![json!("post 17")]]);
}

#[test]
fn a_sql_database_pipeline_runs_into_snowflake() {
    let url = postgres_url();
    let mut pg = match postgres::Client::connect(&url, postgres::NoTls) {
        Ok(c) => c,
        Err(e) => return skip_or_fail("PostgreSQL", e),
    };
    let Some(server) = fakesnow() else { return };
    let schema = format!("cli_sf_{}", std::process::id());
    warehouse::orders_table(&mut pg, &schema);
    let p = project(&server, "SQL_DB");
    p.write("p.toml", &warehouse::sql_database_pipeline("sql_sf", "snowflake", &url, &schema));
    let out = ok(&p.dlt(&["run", "p.toml"]));
    assert!(out.contains("- orders: 500 row(s)"), "{out}");
    let sums = server.query("SQL_DB", "SELECT count(DISTINCT ID), max(ID), sum(AMOUNT)::VARCHAR FROM SHOP.ORDERS");
    let pg_sums = pg
        .query_one(&format!("SELECT count(DISTINCT id), max(id), sum(amount)::text FROM {schema}.orders"), &[])
        .unwrap();
    assert_eq!(sums[0][0], json!(pg_sums.get::<_, i64>(0)));
    assert_eq!(sums[0][1], json!(pg_sums.get::<_, i64>(1)));
    // the servers render the same decimal sum with different trailing zeros
    let sf_sum: f64 = sums[0][2].as_str().unwrap().parse().unwrap();
    assert_eq!(sf_sum, pg_sums.get::<_, String>(2).parse::<f64>().unwrap());
    pg.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).unwrap();
}

/// Incremental appends, each run SIGKILLed at one step (every step at least once, mid-`COPY`
/// inside the load's transaction among them) and run again: every source row is in Snowflake
/// exactly once.
#[test]
fn exactly_once_under_kills_snowflake() {
    let Some(server) = fakesnow() else { return };
    let db = "KILLS_DB";
    let p = project(&server, db);
    let points = [
        "extract.items_written",
        "normalize.before_publish",
        "load.in_transaction",
        "load.after_commit",
        "extract.item.3",
    ];
    warehouse::kill_and_rerun(&p, "eo_sf", "snowflake", &points, |total, point| {
        let got = server.query(db, "SELECT count(*), count(DISTINCT ID) FROM DS.ISSUES");
        assert_eq!(got, vec![vec![json!(total), json!(total)]], "{point}: every row once");
        assert_eq!(scalar(&server, db, "SELECT count(*) FROM DS.ISSUES__LABELS"), total as i64, "{point}");
    });
}
