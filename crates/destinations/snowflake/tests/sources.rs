//! The sources into Snowflake (fakesnow): a `sql_database` table from the Postgres the tests use,
//! and a `rest_api` resource from json-server, each read back by Snowflake's Python connector.
//!
//! Under `CI=true` a missing Postgres, json-server or fakesnow fails the test.

use std::sync::Arc;

use dlt::sources::rest_api::{RestApiConfig, rest_api_source};
use dlt::sources::sql_database::SqlDatabase;
use dlt_snowflake::Snowflake;
use serde_json::json;

fn pipeline(port: u16, dir: &std::path::Path, name: &str, dataset: &str) -> dlt::Pipeline {
    let url = format!("snowflake://loader:pw@testacct/DLT_DATA?host=127.0.0.1&port={port}&protocol=http");
    dlt::pipeline(name)
        .destination(Arc::new(Snowflake::from_url(&url).unwrap()))
        .dataset_name(dataset)
        .pipelines_dir(dir.join("pipelines"))
        .config(dlt::Config::from_parts(vec![], None, None))
        .build()
        .unwrap()
}

#[test]
fn a_postgres_table_loads_into_snowflake() {
    let url = dlt_testkit::services::postgres_url();
    let mut pg = match postgres::Client::connect(&url, postgres::NoTls) {
        Ok(c) => c,
        Err(e) => return dlt_testkit::services::skip_or_fail("PostgreSQL", e),
    };
    let Some(server) = dlt_testkit::services::fakesnow() else { return };
    let schema = format!("sf_src_{}", std::process::id());
    pg.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE TABLE {schema}.orders (id bigint PRIMARY KEY, customer text, amount numeric(10,2), paid boolean,
                                        placed_at timestamptz);
         INSERT INTO {schema}.orders VALUES (1, 'ä', 12.50, true, '2024-01-02 03:04:05+00'),
                                            (2, NULL, 0.01, false, NULL);"
    ))
    .unwrap();
    let dir = std::env::temp_dir().join(format!("dlt-snowflake-sql-{}", std::process::id()));
    let src = SqlDatabase::from_url(&url).unwrap().schema(&schema).into_source().unwrap();
    let info = pipeline(server.port, &dir, "sf_sql", "shop").run(src).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.row_counts.get("orders"), Some(&2), "{info:?}");
    // fakesnow reads a NULL timestamp back as the epoch: NULLs are checked with IS NULL
    let rows = server.query(
        "DLT_DATA",
        "SELECT ID, CUSTOMER, AMOUNT::VARCHAR, PAID, PLACED_AT IS NULL FROM SHOP.ORDERS ORDER BY ID",
    );
    assert_eq!(
        rows,
        vec![
            vec![json!(1), json!("ä"), json!("12.50"), json!(true), json!(false)],
            vec![json!(2), json!(null), json!("0.01"), json!(false), json!(true)],
        ]
    );
    let ts = server.query("DLT_DATA", "SELECT PLACED_AT FROM SHOP.ORDERS WHERE ID = 1");
    assert_eq!(ts, vec![vec![json!("2024-01-02 03:04:05+00:00")]]);
    pg.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_rest_api_resource_loads_into_snowflake() {
    let dir = std::env::temp_dir().join(format!("dlt-snowflake-rest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("db.json");
    let posts: Vec<serde_json::Value> =
        (1..=25).map(|i| json!({"id": i, "title": format!("post {i}"), "tags": ["a", "b"]})).collect();
    std::fs::write(&db, json!({ "posts": posts }).to_string()).unwrap();
    let Some(api) = dlt_testkit::services::json_server(&db) else { return };
    let Some(server) = dlt_testkit::services::fakesnow() else { return };
    let cfg = RestApiConfig::from_json(json!({
        "client": {"base_url": api.url, "paginator": {"type": "header_link"}},
        "resources": [{"name": "posts", "endpoint": {"path": "posts", "params": {"_page": 1, "_limit": 10}}}]
    }))
    .unwrap();
    let src = rest_api_source(&cfg, &dlt::Config::from_parts(vec![], None, None)).unwrap();
    let info = pipeline(server.port, &dir, "sf_rest", "blog").run(src).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.row_counts.get("posts"), Some(&25), "{info:?}");
    let counts = server.query(
        "DLT_DATA",
        "SELECT (SELECT count(*) FROM BLOG.POSTS), (SELECT count(*) FROM BLOG.POSTS__TAGS), \
         (SELECT max(TITLE) FROM BLOG.POSTS WHERE ID = 25)",
    );
    assert_eq!(counts, vec![vec![json!(25), json!(50), json!("post 25")]]);
    let _ = std::fs::remove_dir_all(&dir);
}
