//! The protocol client against fakesnow (a Snowflake-protocol server on DuckDB): login, DDL and
//! DML answers, Arrow results, errors with Snowflake's codes, and what lands in the database,
//! read back by Snowflake's own Python connector.
//!
//! Under `CI=true` a missing fakesnow fails the tests (`cargo xtask test` installs it).

use std::time::Duration;

use arrow::array::{Array, AsArray};
use dlt_core::runtime::block_on;
use dlt_snowflake::{Client, Credentials};

fn credentials(url: &str, password: &str) -> Credentials {
    let port = url.rsplit(':').next().unwrap();
    Credentials::parse(&format!(
        "snowflake://loader:{password}@testacct/DLT_DATA?warehouse=WH&role=R&host=127.0.0.1&port={port}&protocol=http"
    ))
    .unwrap()
}

#[test]
fn statements_run_and_results_come_back_as_arrow() {
    let Some(server) = dlt_testkit::services::fakesnow() else { return };
    let c = credentials(&server.url, "s3cret");
    block_on(async {
        let client = Client::login(&c, Some("DS"), Duration::from_secs(30)).await.unwrap();
        client.query("CREATE SCHEMA IF NOT EXISTS DLT_DATA.DS").await.unwrap();
        client.query("CREATE TABLE DLT_DATA.DS.T (ID NUMBER(19,0), NAME VARCHAR, SEEN BOOLEAN)").await.unwrap();
        let inserted = client
            .query("INSERT INTO DLT_DATA.DS.T VALUES (1, 'ä', TRUE), (2, NULL, FALSE), (3, 'c', NULL)")
            .await
            .unwrap();
        // DML answers with the affected rows as JSON
        assert_eq!(inserted.rows, vec![vec![Some("3".to_string())]], "{inserted:?}");
        let r = client.query("SELECT ID, NAME, SEEN FROM DLT_DATA.DS.T ORDER BY ID").await.unwrap();
        assert!(!r.query_id.is_empty());
        let names: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ID", "NAME", "SEEN"]);
        assert_eq!(r.columns[1].type_name, "text");
        assert_eq!(r.num_rows(), 3);
        let b = &r.batches[0];
        let name = b.column(1).as_string::<i32>();
        assert_eq!((name.value(0), name.is_null(1), name.value(2)), ("ä", true, "c"));
        let seen = b.column(2).as_boolean();
        assert!(seen.value(0) && !seen.value(1) && seen.is_null(2));
        client.close().await;
    });
    // what the server holds, read by Snowflake's own Python connector
    let rows = server.query("DLT_DATA", "SELECT ID, NAME, SEEN FROM DS.T ORDER BY ID");
    assert_eq!(
        rows,
        vec![
            vec![serde_json::json!(1), serde_json::json!("ä"), serde_json::json!(true)],
            vec![serde_json::json!(2), serde_json::Value::Null, serde_json::json!(false)],
            vec![serde_json::json!(3), serde_json::json!("c"), serde_json::Value::Null],
        ]
    );
}

#[test]
fn errors_carry_snowflake_codes_and_never_a_secret() {
    let Some(server) = dlt_testkit::services::fakesnow() else { return };
    let c = credentials(&server.url, "hunter2");
    block_on(async {
        let client = Client::login(&c, None, Duration::from_secs(30)).await.unwrap();
        let e = client.query("SELECT * FROM DLT_DATA.NOPE.MISSING").await.unwrap_err();
        let m = e.to_string();
        assert!(m.contains("MISSING") && m.contains("code 002003"), "{m}");
        assert!(!e.is_transient(), "{m}");
        assert!(!m.contains("hunter2"), "{m}");
    });
    // nothing listens on port 1 (a free port could be taken by another test's server meanwhile):
    // a transient error naming the account, without the password
    let c = credentials("http://127.0.0.1:1", "hunter2");
    let e = block_on(Client::login(&c, None, Duration::from_secs(5))).unwrap_err();
    let m = e.to_string();
    assert!(e.is_transient() && m.contains("testacct") && !m.contains("hunter2"), "{m}");
}

/// A server that answers every request with `status` and `body` (a login failure is a path
/// fakesnow cannot take: it accepts any credentials). Returns its URL.
fn answering(status: &'static str, body: &'static str) -> String {
    dlt_testkit::recorder::serve(move |_| (status.to_string(), body.to_string())).0
}

#[test]
fn a_wrong_password_or_unknown_account_says_what_to_check_and_never_shows_the_secret() {
    // Snowflake's answer to a wrong password (the login protocol's documented failure)
    let url = answering(
        "200 OK",
        r#"{"data":{"nextAction":null,"authnMethod":"USERNAME_PASSWORD"},"code":"390100","message":"Incorrect username or password was specified.","success":false}"#,
    );
    let e = block_on(Client::login(&credentials(&url, "hunter2-wrong"), None, Duration::from_secs(5))).unwrap_err();
    let m = e.to_string();
    assert!(m.contains("Incorrect username or password") && m.contains("code 390100"), "{m}");
    assert!(m.contains("check the username `loader` and the password"), "{m}");
    assert!(!m.contains("hunter2-wrong") && !e.is_transient(), "{m}");
    // an account a Snowflake endpoint does not know: HTTP 403
    let url = answering("403 Forbidden", "");
    let e = block_on(Client::login(&credentials(&url, "hunter2"), None, Duration::from_secs(5))).unwrap_err();
    let m = e.to_string();
    assert!(m.contains("HTTP 403") && m.contains("check the account identifier `testacct`"), "{m}");
    assert!(!m.contains("hunter2") && !e.is_transient(), "{m}");
    // a host that does not exist: not retried, the account named
    let c = Credentials::parse("snowflake://loader:hunter2@no-such-acct/DB?host=no-such-acct.invalid").unwrap();
    let e = block_on(Client::login(&c, None, Duration::from_secs(5))).unwrap_err();
    let m = e.to_string();
    assert!(m.contains("check the account identifier `no-such-acct`"), "{m}");
    assert!(!m.contains("hunter2") && !e.is_transient(), "{m}");
}
