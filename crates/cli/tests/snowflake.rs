//! The `dlt` binary into Snowflake (a fakesnow server): the quickstart, a `rest_api` pipeline
//! from json-server and a `sql_database` pipeline from PostgreSQL, each from a pipeline file
//! with the credentials in the environment as dlt names them; then `kill -9` at every step of
//! repeated incremental runs. Everything is read back by Snowflake's own Python connector
//! (`FakeSnow::query`), an independent client of the same server. Under `CI=true` a missing
//! fakesnow, json-server or PostgreSQL fails the test.
#![cfg(feature = "snowflake")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use dlt_testkit::services::{FakeSnow, fakesnow, json_server, postgres_url, skip_or_fail};
use serde_json::{Value, json};

struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
    credentials: String,
}

impl Project {
    fn new(server: &FakeSnow, database: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("project");
        std::fs::create_dir_all(&root).unwrap();
        let credentials = format!(
            "snowflake://loader:s3cr3t-pw@testacct/{database}?warehouse=COMPUTE_WH&host=127.0.0.1&port={}&protocol=http",
            server.port
        );
        Project { _dir: dir, root, credentials }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dlt"));
        c.current_dir(&self.root)
            .env("DLT_DATA_DIR", self.root.join("dlt-data"))
            .env("DESTINATION__SNOWFLAKE__CREDENTIALS", &self.credentials)
            .env_remove("DLT_FAULT");
        c
    }

    fn dlt(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "failed: {}\nstdout: {out}\nstderr: {}", o.status, String::from_utf8_lossy(&o.stderr));
    out
}

fn scalar(server: &FakeSnow, database: &str, sql: &str) -> i64 {
    server.query(database, sql)[0][0].as_i64().unwrap_or_else(|| panic!("{sql}: not a number"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn the_quickstart_runs_into_snowflake() {
    let Some(server) = fakesnow() else { return };
    let p = Project::new(&server, "QUICKSTART_DB");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart"), &p.root);
    let toml = std::fs::read_to_string(p.root.join("pipeline.toml")).unwrap();
    assert!(toml.contains("destination = \"duckdb\""));
    std::fs::write(
        p.root.join("pipeline.toml"),
        toml.replace("destination = \"duckdb\"", "destination = \"snowflake\""),
    )
    .unwrap();
    let out = ok(&p.dlt(&["run", "pipeline.toml"]));
    assert!(out.contains("destination snowflake"), "{out}");
    assert!(!out.contains("s3cr3t-pw"), "{out}");
    // the expected counts, computed from the input files
    let issues: Vec<Value> = std::fs::read_to_string(p.root.join("data/issues.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let nested = |key: &str| issues.iter().map(|i| i[key].as_array().map_or(0, Vec::len)).sum::<usize>() as i64;
    let users = std::fs::read_to_string(p.root.join("data/users.csv")).unwrap().lines().count() as i64 - 1;
    let db = "QUICKSTART_DB";
    assert_eq!(scalar(&server, db, "SELECT count(*) FROM GITHUB_DATA.ISSUES"), issues.len() as i64);
    assert_eq!(scalar(&server, db, "SELECT count(*) FROM GITHUB_DATA.ISSUES__LABELS"), nested("labels"));
    assert_eq!(scalar(&server, db, "SELECT count(*) FROM GITHUB_DATA.ISSUES__ASSIGNEES"), nested("assignees"));
    assert_eq!(scalar(&server, db, "SELECT count(*) FROM GITHUB_DATA.USERS"), users);
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
    assert_eq!(scalar(&server, db, "SELECT count(*) FROM GITHUB_DATA.ISSUES"), issues.len() as i64);
    assert_eq!(scalar(&server, db, "SELECT count(*) FROM GITHUB_DATA._DLT_LOADS"), 2);
    // info names the account, database and warehouse, never the password
    let info = ok(&p.dlt(&["pipeline", "quickstart", "info"]));
    assert!(info.contains("testacct") && info.contains("QUICKSTART_DB") && info.contains("COMPUTE_WH"), "{info}");
    assert!(!info.contains("s3cr3t-pw"), "{info}");
}

#[test]
fn a_rest_api_pipeline_runs_into_snowflake() {
    let dir = tempfile::tempdir().unwrap();
    let posts: Vec<Value> = (1..=23)
        .map(|i| json!({"id": i, "title": format!("post {i}"), "tags": ["a", format!("t{}", i % 4)]}))
        .collect();
    let db_file = dir.path().join("db.json");
    std::fs::write(&db_file, json!({ "posts": posts }).to_string()).unwrap();
    let Some(api) = json_server(&db_file) else { return };
    let Some(server) = fakesnow() else { return };
    let p = Project::new(&server, "REST_DB");
    std::fs::write(
        p.root.join("p.toml"),
        format!(
            "[pipeline]\nname = \"rest_sf\"\ndestination = \"snowflake\"\ndataset_name = \"api\"\n\n[source]\ntype = \"rest_api\"\n\n\
             [source.client]\nbase_url = \"{}\"\npaginator = {{ type = \"header_link\" }}\n\n\
             [[source.resources]]\nname = \"posts\"\nendpoint = {{ path = \"posts\", params = {{ _page = 1, _limit = 5 }} }}\n",
            api.url
        ),
    )
    .unwrap();
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
    pg.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE TABLE {schema}.orders (id bigint PRIMARY KEY, customer text, amount numeric(10,2));
         INSERT INTO {schema}.orders SELECT g, 'c' || g, g * 1.25 FROM generate_series(1, 500) g;"
    ))
    .unwrap();
    let p = Project::new(&server, "SQL_DB");
    std::fs::write(
        p.root.join("p.toml"),
        format!(
            "[pipeline]\nname = \"sql_sf\"\ndestination = \"snowflake\"\ndataset_name = \"shop\"\n\n[source]\ntype = \"sql_database\"\n\
             credentials = \"{url}\"\nschema = \"{schema}\"\n\n[source.tables.orders]\nwrite_disposition = \"merge\"\nprimary_key = \"id\"\n"
        ),
    )
    .unwrap();
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
    let p = Project::new(&server, db);
    std::fs::create_dir_all(p.root.join("data")).unwrap();
    std::fs::write(p.root.join("data/issues.jsonl"), "").unwrap();
    std::fs::write(
        p.root.join("pipeline.toml"),
        "[pipeline]\nname = \"eo_sf\"\ndestination = \"snowflake\"\ndataset_name = \"ds\"\n\n[source]\ntype = \"files\"\n\n\
         [[source.resources]]\nname = \"issues\"\npath = \"data/*.jsonl\"\nwrite_disposition = \"append\"\n\n\
         [source.resources.incremental]\ncursor_path = \"id\"\n",
    )
    .unwrap();
    let points = [
        "extract.items_written",
        "normalize.before_publish",
        "load.in_transaction",
        "load.after_commit",
        "extract.item.3",
    ];
    let mut total = 0u64;
    for (round, point) in points.iter().enumerate() {
        let new_rows = 30 + 17 * round as u64;
        let mut lines = String::new();
        for i in total..total + new_rows {
            lines.push_str(&format!("{{\"id\": {i}, \"title\": \"t{i}\", \"labels\": [{{\"name\": \"a\"}}]}}\n"));
        }
        total += new_rows;
        let mut f = std::fs::OpenOptions::new().append(true).open(p.root.join("data/issues.jsonl")).unwrap();
        std::io::Write::write_all(&mut f, lines.as_bytes()).unwrap();
        let mut child = p
            .cmd()
            .args(["run", "pipeline.toml"])
            .env("DLT_FAULT", format!("{point}:sleep=60000"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let reached =
            BufReader::new(stderr).lines().any(|l| l.map(|l| l.contains("DLT_FAULT: sleeping")).unwrap_or(false));
        assert!(reached, "round {round}: never reached {point}");
        child.kill().unwrap();
        child.wait().unwrap();
        ok(&p.dlt(&["run", "pipeline.toml"]));
        let got = server.query(db, "SELECT count(*), count(DISTINCT ID) FROM DS.ISSUES");
        assert_eq!(got, vec![vec![json!(total), json!(total)]], "round {round} ({point}): every row once");
        assert_eq!(scalar(&server, db, "SELECT count(*) FROM DS.ISSUES__LABELS"), total as i64, "round {round}");
    }
    let info = ok(&p.dlt(&["pipeline", "eo_sf", "info"]));
    assert!(!info.contains("pending"), "{info}");
}
