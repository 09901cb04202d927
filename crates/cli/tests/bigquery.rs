//! The `dlt` binary into BigQuery (a bqemulator server; the tests build the binary with the
//! experimental `bigquery` feature): the quickstart, a `rest_api` pipeline from json-server and a
//! `sql_database` pipeline from PostgreSQL, each from a pipeline file with the project and
//! endpoint in the environment as dlt names them; then `kill -9` at every step of repeated
//! incremental runs. Everything is read back through the emulator's REST API by the test's own
//! HTTP requests. Under `CI=true` a missing bqemulator, json-server or PostgreSQL fails the test.

mod warehouse;

use dlt_testkit::services::{BqEmulator, bqemulator, json_server, postgres_url, skip_or_fail};
use serde_json::json;
use warehouse::{Project, ok};

fn project(server: &BqEmulator) -> Project {
    Project::new(&[
        ("DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID", server.project.clone()),
        ("DESTINATION__BIGQUERY__API_ENDPOINT", server.url.clone()),
    ])
}

fn count(server: &BqEmulator, table: &str) -> i64 {
    let r = server.query(&format!("SELECT count(*) FROM `p1.{table}`"));
    r[0][0].as_str().unwrap().parse().unwrap()
}

#[test]
fn the_quickstart_runs_into_bigquery() {
    let Some(server) = bqemulator() else { return };
    let p = project(&server);
    let want = warehouse::quickstart(&p, "bigquery");
    let out = ok(&p.dlt(&["run", "pipeline.toml"]));
    assert!(out.contains("destination bigquery"), "{out}");
    assert_eq!(count(&server, "github_data.issues"), want.issues);
    assert_eq!(count(&server, "github_data.issues__labels"), want.labels);
    assert_eq!(count(&server, "github_data.issues__assignees"), want.assignees);
    assert_eq!(count(&server, "github_data.users"), want.users);
    let orphans = server.query(
        "SELECT count(*) FROM `p1.github_data.issues__labels` l LEFT JOIN `p1.github_data.issues` i \
         ON l._dlt_parent_id = i._dlt_id WHERE i._dlt_id IS NULL",
    );
    assert_eq!(orphans, vec![vec![json!("0")]]);
    let loads = server.query("SELECT schema_name, status FROM `p1.github_data._dlt_loads`");
    assert_eq!(loads, vec![vec![json!("quickstart"), json!("0")]]);
    // a second run replaces: the same counts, two loads
    ok(&p.dlt(&["run", "pipeline.toml"]));
    assert_eq!(count(&server, "github_data.issues"), want.issues);
    assert_eq!(count(&server, "github_data._dlt_loads"), 2);
    let info = ok(&p.dlt(&["pipeline", "quickstart", "info"]));
    assert!(info.contains("BigQuery project: p1") && info.contains("Location: US"), "{info}");
}

#[test]
fn a_rest_api_pipeline_runs_into_bigquery() {
    let dir = tempfile::tempdir().unwrap();
    let Some(api) = json_server(&warehouse::posts_db(dir.path())) else { return };
    let Some(server) = bqemulator() else { return };
    let p = project(&server);
    p.write("p.toml", &warehouse::rest_api_pipeline("rest_bq", "bigquery", &api.url));
    let out = ok(&p.dlt(&["run", "p.toml"]));
    assert!(out.contains("- posts: 23 row(s)"), "{out}");
    assert_eq!(count(&server, "api.posts"), 23);
    assert_eq!(count(&server, "api.posts__tags"), 46);
    assert_eq!(server.query("SELECT title FROM `p1.api.posts` WHERE id = 17"), vec![vec![json!("post 17")]]);
}

#[test]
fn a_sql_database_pipeline_runs_into_bigquery() {
    let url = postgres_url();
    let mut pg = match postgres::Client::connect(&url, postgres::NoTls) {
        Ok(c) => c,
        Err(e) => return skip_or_fail("PostgreSQL", e),
    };
    let Some(server) = bqemulator() else { return };
    let schema = format!("cli_bq_{}", std::process::id());
    warehouse::orders_table(&mut pg, &schema);
    let p = project(&server);
    p.write("p.toml", &warehouse::sql_database_pipeline("sql_bq", "bigquery", &url, &schema));
    let out = ok(&p.dlt(&["run", "p.toml"]));
    assert!(out.contains("- orders: 500 row(s)"), "{out}");
    // merged again: still one row per key
    ok(&p.dlt(&["run", "p.toml"]));
    let got =
        server.query("SELECT count(*), count(DISTINCT id), max(id), CAST(sum(amount) AS STRING) FROM `p1.shop.orders`");
    let pg_row =
        pg.query_one(&format!("SELECT count(*), max(id), sum(amount)::text FROM {schema}.orders"), &[]).unwrap();
    assert_eq!(got[0][0], json!(pg_row.get::<_, i64>(0).to_string()));
    assert_eq!(got[0][1], json!(pg_row.get::<_, i64>(0).to_string()));
    assert_eq!(got[0][2], json!(pg_row.get::<_, i64>(1).to_string()));
    let bq_sum: f64 = got[0][3].as_str().unwrap().parse().unwrap();
    assert_eq!(bq_sum, pg_row.get::<_, String>(2).parse::<f64>().unwrap());
    pg.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).unwrap();
}

/// Incremental appends with a nested table, each run SIGKILLed at one step (after extract,
/// before the normalized package is published, between load jobs, before and after
/// `_dlt_loads`, mid-extract) and run again: every source row is in BigQuery exactly once.
/// BigQuery has no transaction across jobs, so this is the loader's idempotent protocol: jobs
/// recorded as done are not loaded again, `_dlt_loads` is written last.
#[test]
fn exactly_once_under_kills_bigquery() {
    let Some(server) = bqemulator() else { return };
    let p = project(&server);
    let points = [
        "extract.items_written",
        "normalize.before_publish",
        "load.after_job.1",
        "load.in_transaction",
        "load.after_commit",
        "extract.item.3",
    ];
    warehouse::kill_and_rerun(&p, "eo_bq", "bigquery", &points, |total, point| {
        let got = server.query("SELECT count(*), count(DISTINCT id) FROM `p1.ds.issues`");
        assert_eq!(got, vec![vec![json!(total.to_string()), json!(total.to_string())]], "{point}: every row once");
        assert_eq!(count(&server, "ds.issues__labels"), total as i64, "{point}");
    });
}
