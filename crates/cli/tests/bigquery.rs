//! The `dlt` binary into BigQuery (a bqemulator server; the tests build the binary with the
//! experimental `bigquery` feature): the quickstart, a `rest_api` pipeline from json-server and a
//! `sql_database` pipeline from PostgreSQL, each from a pipeline file with the project and
//! endpoint in the environment as dlt names them. Everything is read back through the
//! emulator's REST API by the test's own HTTP requests. Under `CI=true` a missing bqemulator,
//! json-server or PostgreSQL fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dlt_testkit::services::{BqEmulator, bqemulator, json_server, postgres_url, skip_or_fail};
use serde_json::{Value, json};

struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
    endpoint: String,
}

impl Project {
    fn new(server: &BqEmulator) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("project");
        std::fs::create_dir_all(&root).unwrap();
        Project { _dir: dir, root, endpoint: server.url.clone() }
    }

    fn dlt(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_dlt"))
            .current_dir(&self.root)
            .env("DLT_DATA_DIR", self.root.join("dlt-data"))
            .env("DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID", "p1")
            .env("DESTINATION__BIGQUERY__API_ENDPOINT", &self.endpoint)
            .env_remove("DLT_FAULT")
            .args(args)
            .output()
            .unwrap()
    }
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "failed: {}\nstdout: {out}\nstderr: {}", o.status, String::from_utf8_lossy(&o.stderr));
    out
}

fn count(server: &BqEmulator, table: &str) -> i64 {
    let r = server.query(&format!("SELECT count(*) FROM `p1.{table}`"));
    r[0][0].as_str().unwrap().parse().unwrap()
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
fn the_quickstart_runs_into_bigquery() {
    let Some(server) = bqemulator() else { return };
    let p = Project::new(&server);
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart"), &p.root);
    let toml = std::fs::read_to_string(p.root.join("pipeline.toml")).unwrap();
    std::fs::write(
        p.root.join("pipeline.toml"),
        toml.replace("destination = \"duckdb\"", "destination = \"bigquery\""),
    )
    .unwrap();
    let out = ok(&p.dlt(&["run", "pipeline.toml"]));
    assert!(out.contains("destination bigquery"), "{out}");
    let issues: Vec<Value> = std::fs::read_to_string(p.root.join("data/issues.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let nested = |key: &str| issues.iter().map(|i| i[key].as_array().map_or(0, Vec::len)).sum::<usize>() as i64;
    let users = std::fs::read_to_string(p.root.join("data/users.csv")).unwrap().lines().count() as i64 - 1;
    assert_eq!(count(&server, "github_data.issues"), issues.len() as i64);
    assert_eq!(count(&server, "github_data.issues__labels"), nested("labels"));
    assert_eq!(count(&server, "github_data.issues__assignees"), nested("assignees"));
    assert_eq!(count(&server, "github_data.users"), users);
    let orphans = server.query(
        "SELECT count(*) FROM `p1.github_data.issues__labels` l LEFT JOIN `p1.github_data.issues` i \
         ON l._dlt_parent_id = i._dlt_id WHERE i._dlt_id IS NULL",
    );
    assert_eq!(orphans, vec![vec![json!("0")]]);
    assert_eq!(
        server.query("SELECT schema_name, status FROM `p1.github_data._dlt_loads`"),
        vec![vec![json!("quickstart"), json!("0")]]
    );
    // a second run replaces: the same counts, two loads
    ok(&p.dlt(&["run", "pipeline.toml"]));
    assert_eq!(count(&server, "github_data.issues"), issues.len() as i64);
    assert_eq!(count(&server, "github_data._dlt_loads"), 2);
    let info = ok(&p.dlt(&["pipeline", "quickstart", "info"]));
    assert!(info.contains("BigQuery project: p1") && info.contains("Location: US"), "{info}");
}

#[test]
fn a_rest_api_pipeline_runs_into_bigquery() {
    let dir = tempfile::tempdir().unwrap();
    let posts: Vec<Value> = (1..=23)
        .map(|i| json!({"id": i, "title": format!("post {i}"), "tags": ["a", format!("t{}", i % 4)]}))
        .collect();
    let db_file = dir.path().join("db.json");
    std::fs::write(&db_file, json!({ "posts": posts }).to_string()).unwrap();
    let Some(api) = json_server(&db_file) else { return };
    let Some(server) = bqemulator() else { return };
    let p = Project::new(&server);
    std::fs::write(
        p.root.join("p.toml"),
        format!(
            "[pipeline]\nname = \"rest_bq\"\ndestination = \"bigquery\"\ndataset_name = \"api\"\n\n[source]\ntype = \"rest_api\"\n\n\
             [source.client]\nbase_url = \"{}\"\npaginator = {{ type = \"header_link\" }}\n\n\
             [[source.resources]]\nname = \"posts\"\nendpoint = {{ path = \"posts\", params = {{ _page = 1, _limit = 5 }} }}\n",
            api.url
        ),
    )
    .unwrap();
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
    pg.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE TABLE {schema}.orders (id bigint PRIMARY KEY, customer text, amount numeric(10,2));
         INSERT INTO {schema}.orders SELECT g, 'c' || g, g * 1.25 FROM generate_series(1, 500) g;"
    ))
    .unwrap();
    let p = Project::new(&server);
    std::fs::write(
        p.root.join("p.toml"),
        format!(
            "[pipeline]\nname = \"sql_bq\"\ndestination = \"bigquery\"\ndataset_name = \"shop\"\n\n[source]\ntype = \"sql_database\"\n\
             credentials = \"{url}\"\nschema = \"{schema}\"\n\n[source.tables.orders]\nwrite_disposition = \"merge\"\nprimary_key = \"id\"\n"
        ),
    )
    .unwrap();
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
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let Some(server) = bqemulator() else { return };
    let p = Project::new(&server);
    std::fs::create_dir_all(p.root.join("data")).unwrap();
    std::fs::write(p.root.join("data/issues.jsonl"), "").unwrap();
    std::fs::write(
        p.root.join("pipeline.toml"),
        "[pipeline]\nname = \"eo_bq\"\ndestination = \"bigquery\"\ndataset_name = \"ds\"\n\n[source]\ntype = \"files\"\n\n\
         [[source.resources]]\nname = \"issues\"\npath = \"data/*.jsonl\"\nwrite_disposition = \"append\"\n\n\
         [source.resources.incremental]\ncursor_path = \"id\"\n",
    )
    .unwrap();
    let points = [
        "extract.items_written",
        "normalize.before_publish",
        "load.after_job.1",
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_dlt"))
            .current_dir(&p.root)
            .env("DLT_DATA_DIR", p.root.join("dlt-data"))
            .env("DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID", "p1")
            .env("DESTINATION__BIGQUERY__API_ENDPOINT", &p.endpoint)
            .env("DLT_FAULT", format!("{point}:sleep=60000"))
            .args(["run", "pipeline.toml"])
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
        let got = server.query("SELECT count(*), count(DISTINCT id) FROM `p1.ds.issues`");
        assert_eq!(got, vec![vec![json!(total.to_string()), json!(total.to_string())]], "round {round} ({point})");
        assert_eq!(count(&server, "ds.issues__labels"), total as i64, "round {round} ({point})");
    }
    let info = ok(&p.dlt(&["pipeline", "eo_bq", "info"]));
    assert!(!info.contains("pending"), "{info}");
}
