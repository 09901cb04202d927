//! What the warehouse tests of the `dlt` binary share (Snowflake on fakesnow, BigQuery on
//! bqemulator): a project folder with the destination's settings in the environment, the
//! quickstart and the pipeline files of the `rest_api`, `sql_database` and incremental runs, and
//! the kill-and-rerun loop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// A project folder; every `dlt` command runs in it with `env`.
pub struct Project {
    _dir: tempfile::TempDir,
    /// The folder.
    pub root: PathBuf,
    env: Vec<(String, String)>,
}

impl Project {
    /// An empty project whose commands get `env` (the destination's settings).
    pub fn new(env: &[(&str, String)]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("project");
        std::fs::create_dir_all(&root).unwrap();
        Project { _dir: dir, root, env: env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() }
    }

    /// `dlt` in the project, not yet run.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dlt"));
        c.current_dir(&self.root).env("DLT_DATA_DIR", self.root.join("dlt-data")).env_remove("DLT_FAULT");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Run `dlt ARGS`.
    pub fn dlt(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Write a file of the project.
    pub fn write(&self, rel: &str, body: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
}

/// Stdout of a command that must have succeeded.
pub fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "failed: {}\nstdout: {out}\nstderr: {}", o.status, String::from_utf8_lossy(&o.stderr));
    out
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

/// The rows the quickstart's input files hold, counted from the files themselves.
#[derive(Debug)]
pub struct QuickstartCounts {
    /// `issues`.
    pub issues: i64,
    /// `issues__labels`.
    pub labels: i64,
    /// `issues__assignees`.
    pub assignees: i64,
    /// `users`.
    pub users: i64,
}

/// Copy `examples/quickstart` into the project with `destination`; the counts of its input.
pub fn quickstart(p: &Project, destination: &str) -> QuickstartCounts {
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart"), &p.root);
    let toml = std::fs::read_to_string(p.root.join("pipeline.toml")).unwrap();
    assert!(toml.contains("destination = \"duckdb\""));
    p.write("pipeline.toml", &toml.replace("destination = \"duckdb\"", &format!("destination = \"{destination}\"")));
    let issues: Vec<Value> = std::fs::read_to_string(p.root.join("data/issues.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let nested = |key: &str| issues.iter().map(|i| i[key].as_array().map_or(0, Vec::len)).sum::<usize>() as i64;
    QuickstartCounts {
        issues: issues.len() as i64,
        labels: nested("labels"),
        assignees: nested("assignees"),
        users: std::fs::read_to_string(p.root.join("data/users.csv")).unwrap().lines().count() as i64 - 1,
    }
}

/// The json-server data of the `rest_api` runs: 23 posts with two tags each.
pub fn posts_db(dir: &Path) -> PathBuf {
    let posts: Vec<Value> = (1..=23)
        .map(|i| serde_json::json!({"id": i, "title": format!("post {i}"), "tags": ["a", format!("t{}", i % 4)]}))
        .collect();
    let db_file = dir.join("db.json");
    std::fs::write(&db_file, serde_json::json!({ "posts": posts }).to_string()).unwrap();
    db_file
}

/// A `rest_api` pipeline file: the posts of `api_url`, five per page (header links).
pub fn rest_api_pipeline(name: &str, destination: &str, api_url: &str) -> String {
    format!(
        "[pipeline]\nname = \"{name}\"\ndestination = \"{destination}\"\ndataset_name = \"api\"\n\n[source]\ntype = \"rest_api\"\n\n\
         [source.client]\nbase_url = \"{api_url}\"\npaginator = {{ type = \"header_link\" }}\n\n\
         [[source.resources]]\nname = \"posts\"\nendpoint = {{ path = \"posts\", params = {{ _page = 1, _limit = 5 }} }}\n"
    )
}

/// A `sql_database` pipeline file: table `orders` of `schema` at `url`, merged on `id`.
pub fn sql_database_pipeline(name: &str, destination: &str, url: &str, schema: &str) -> String {
    format!(
        "[pipeline]\nname = \"{name}\"\ndestination = \"{destination}\"\ndataset_name = \"shop\"\n\n[source]\ntype = \"sql_database\"\n\
         credentials = \"{url}\"\nschema = \"{schema}\"\n\n[source.tables.orders]\nwrite_disposition = \"merge\"\nprimary_key = \"id\"\n"
    )
}

/// Create `schema.orders` (500 rows) in the Postgres at `pg`.
pub fn orders_table(pg: &mut postgres::Client, schema: &str) {
    pg.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE TABLE {schema}.orders (id bigint PRIMARY KEY, customer text, amount numeric(10,2));
         INSERT INTO {schema}.orders SELECT g, 'c' || g, g * 1.25 FROM generate_series(1, 500) g;"
    ))
    .unwrap();
}

/// Rounds of incremental appends (`issues` with one label each) into dataset `ds`, each run
/// SIGKILLed at one of `points` (a `DLT_FAULT` point) and run again; after each round `check`
/// gets the number of source rows so far and asserts the destination holds each once.
pub fn kill_and_rerun(p: &Project, name: &str, destination: &str, points: &[&str], check: impl Fn(u64, &str)) {
    p.write("data/issues.jsonl", "");
    p.write(
        "pipeline.toml",
        &format!(
            "[pipeline]\nname = \"{name}\"\ndestination = \"{destination}\"\ndataset_name = \"ds\"\n\n[source]\ntype = \"files\"\n\n\
             [[source.resources]]\nname = \"issues\"\npath = \"data/*.jsonl\"\nwrite_disposition = \"append\"\n\n\
             [source.resources.incremental]\ncursor_path = \"id\"\n"
        ),
    );
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
        check(total, point);
    }
    let info = ok(&p.dlt(&["pipeline", name, "info"]));
    assert!(!info.contains("pending"), "{info}");
}
