//! The `dlt` binary as a subprocess, against a real DuckDB file read back independently.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Project {
    /// A project folder with a pipeline file loading `records` JSONL lines (nested).
    fn new(name: &str, records: usize, disposition: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("data")).unwrap();
        let mut lines = String::new();
        for i in 0..records {
            lines.push_str(&format!(
                "{{\"id\": {i}, \"title\": \"t{i}\", \"user\": {{\"login\": \"u{}\"}}, \"labels\": [{{\"name\": \"a\"}}, {{\"name\": \"b{}\"}}]}}\n",
                i % 13,
                i % 3
            ));
        }
        std::fs::write(root.join("data/issues.jsonl"), lines).unwrap();
        std::fs::write(
            root.join("pipeline.toml"),
            format!(
                "[pipeline]\nname = \"{name}\"\ndestination = \"duckdb\"\ndataset_name = \"ds\"\n\n[source]\ntype = \"files\"\n\n[[source.resources]]\nname = \"issues\"\npath = \"data/*.jsonl\"\nwrite_disposition = \"{disposition}\"\n"
            ),
        )
        .unwrap();
        Project { _dir: dir, root }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dlt"));
        c.current_dir(&self.root).env("DLT_DATA_DIR", self.root.join("dlt-data")).env_remove("DLT_FAULT");
        c
    }

    fn dlt(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn db(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.duckdb"))
    }
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "failed: {}\nstdout: {out}\nstderr: {}", o.status, String::from_utf8_lossy(&o.stderr));
    out
}

fn count(db: &Path, sql: &str) -> i64 {
    let c = duckdb::Connection::open(db).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn run_and_inspect() {
    let p = Project::new("cli_p", 50, "append");
    let out = ok(&p.dlt(&["run", "pipeline.toml"]));
    assert!(out.contains("1 load package(s) were loaded to destination duckdb and into dataset ds"), "{out}");
    assert!(out.contains("- issues: 50 row(s)"), "{out}");
    assert_eq!(count(&p.db("cli_p"), "SELECT count(*) FROM ds.issues"), 50);
    assert_eq!(count(&p.db("cli_p"), "SELECT count(*) FROM ds.issues__labels"), 100);

    let json: Value = serde_json::from_slice(&p.dlt(&["run", "pipeline.toml", "--json"]).stdout).unwrap();
    assert_eq!(json["row_counts"]["issues"], 50);
    assert_eq!(json["dataset_name"], "ds");
    let load_id = json["load_ids"][0].as_str().unwrap().to_string();
    assert_eq!(count(&p.db("cli_p"), "SELECT count(*) FROM ds.issues"), 100);

    let list = ok(&p.dlt(&["pipeline", "--list"]));
    assert!(list.contains("1 pipelines found") && list.contains("cli_p"), "{list}");
    let info = ok(&p.dlt(&["pipeline", "cli_p", "info"]));
    assert!(info.contains("dataset_name: \"ds\"") && info.contains(&load_id), "{info}");
    assert!(info.contains("issues with 2 table(s)"), "{info}");
    let o = p.dlt(&["pipeline", "cli_p", "schema"]);
    let schema = ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("Found schema with name cli_p"));
    assert!(schema.contains("issues__labels:"), "{schema}");
    let schema_json = ok(&p.dlt(&["pipeline", "cli_p", "schema", "--format", "json"]));
    let doc: Value = serde_json::from_str(&schema_json).unwrap();
    assert_eq!(doc["tables"]["issues__labels"]["parent"], "issues");
    let trace = ok(&p.dlt(&["pipeline", "cli_p", "trace"]));
    assert!(trace.contains("COMPLETED") && trace.contains("Step load COMPLETED"), "{trace}");
    let pkg = ok(&p.dlt(&["pipeline", "cli_p", "load-package"]));
    assert!(pkg.contains(&load_id) && pkg.contains("LOADED") && pkg.contains("issues__labels."), "{pkg}");
    let failed = ok(&p.dlt(&["pipeline", "cli_p", "failed-jobs"]));
    assert!(failed.contains("No failed jobs found"), "{failed}");

    // drop a resource: tables gone in the destination, new load recorded
    let drop = ok(&p.dlt(&["-y", "pipeline", "cli_p", "drop", "issues"]));
    assert!(drop.contains("issues__labels"), "{drop}");
    assert_eq!(
        count(
            &p.db("cli_p"),
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'ds' AND table_name LIKE 'issues%'"
        ),
        0
    );
    assert_eq!(count(&p.db("cli_p"), "SELECT count(*) FROM ds._dlt_loads"), 3);
    // and the next run recreates them
    ok(&p.dlt(&["run", "pipeline.toml"]));
    assert_eq!(count(&p.db("cli_p"), "SELECT count(*) FROM ds.issues"), 50);
}

#[test]
fn failures_exit_non_zero_with_one_line() {
    let p = Project::new("cli_f", 3, "append");
    let o = p.dlt(&["run", "missing.toml"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("ERROR:") && err.contains("missing.toml"), "{err}");

    std::fs::write(p.root.join("data/issues.jsonl"), "{\"id\": 1}\n{oops\n").unwrap();
    let o = p.dlt(&["run", "pipeline.toml"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("issues.jsonl:2"), "{err}");

    let o = p.dlt(&["pipeline", "nope", "info"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("pipeline `nope` not found"));

    std::fs::write(p.root.join("bad.toml"), "[pipeline]\nname = \"x\"\nbogus = 1\n[source]\ntype = \"files\"\n")
        .unwrap();
    let o = p.dlt(&["run", "bad.toml"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown key `bogus` in [pipeline]"));
}

/// Start `dlt run` with a fault hook that parks the process at `point`; SIGKILL it there.
fn kill_at(p: &Project, point: &str) {
    let mut child = p
        .cmd()
        .args(["run", "pipeline.toml"])
        .env("DLT_FAULT", format!("{point}:sleep=60000"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut reached = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains("DLT_FAULT: sleeping") {
            reached = true;
            break;
        }
    }
    assert!(reached, "the run never reached {point}");
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
}

#[test]
fn kill_9_at_every_step_then_rerun_loads_each_row_once() {
    for (i, point) in ["extract.items_written", "normalize.before_publish", "load.in_transaction", "load.after_commit"]
        .iter()
        .enumerate()
    {
        let name = format!("crash{i}");
        let p = Project::new(&name, 2000, "append");
        kill_at(&p, point);
        let db = p.db(&name);
        if db.exists() && *point != "load.after_commit" {
            // nothing of the killed run is visible
            let c = duckdb::Connection::open(&db).unwrap();
            let n: i64 = c
                .query_row("SELECT count(*) FROM information_schema.tables WHERE table_name = 'issues'", [], |r| {
                    r.get(0)
                })
                .unwrap();
            if n > 0 {
                let rows: i64 = c.query_row("SELECT count(*) FROM ds.issues", [], |r| r.get(0)).unwrap();
                assert_eq!(rows, 0, "{point}: rows visible after a kill before commit");
            }
        }
        // the rerun completes the interrupted package (if any) and loads the file again as a new load
        let out = ok(&p.dlt(&["run", "pipeline.toml", "--json"]));
        let json: Value = serde_json::from_str(&out).unwrap();
        let loads = count(&db, "SELECT count(*) FROM ds._dlt_loads");
        let expected_loads: i64 = match *point {
            "extract.items_written" => 1, // the killed extract left nothing
            _ => 2,                       // the killed package, then the new one
        };
        assert_eq!(loads, expected_loads, "{point}: {json}");
        assert_eq!(count(&db, "SELECT count(*) FROM ds.issues"), 2000 * expected_loads, "{point}");
        assert_eq!(count(&db, "SELECT count(*) FROM ds.issues__labels"), 4000 * expected_loads, "{point}");
        // no duplicates within a load, every row belongs to a recorded load
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM (SELECT _dlt_load_id, id FROM ds.issues GROUP BY ALL HAVING count(*) > 1)"
            ),
            0,
            "{point}"
        );
        assert_eq!(
            count(&db, "SELECT count(*) FROM ds.issues WHERE _dlt_load_id NOT IN (SELECT load_id FROM ds._dlt_loads)"),
            0,
            "{point}"
        );
        let info = ok(&p.dlt(&["pipeline", &name, "info"]));
        assert!(!info.contains("pending"), "{point}: {info}");
    }
}

#[test]
fn secrets_never_reach_output_logs_or_trace() {
    let p = Project::new("cli_s", 5, "append");
    std::fs::create_dir_all(p.root.join(".dlt")).unwrap();
    // the destination credentials come from secrets.toml, with a secret field next to the path
    std::fs::write(
        p.root.join(".dlt/secrets.toml"),
        "[destination.duckdb.credentials]\ndatabase = \"from_secrets.duckdb\"\npassword = \"TOPSECRET-7f3a\"\n",
    )
    .unwrap();
    let out = p
        .cmd()
        .args(["-v", "run", "pipeline.toml"])
        .env("RUNTIME__LOG_LEVEL", "trace")
        .env("SOURCES__FILES__API_KEY", "ENVSECRET-91bc")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert_eq!(count(&p.root.join("from_secrets.duckdb"), "SELECT count(*) FROM ds.issues"), 5);
    let trace_path = p.root.join("dlt-data/pipelines/cli_s/trace.json");
    let trace = std::fs::read_to_string(&trace_path).unwrap();
    let t: Value = serde_json::from_str(&trace).unwrap();
    let resolved: Vec<&str> =
        t["resolved_config"].as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert!(resolved.contains(&"destination.duckdb.credentials"), "{trace}");
    let mut everything = text;
    for args in
        [&["pipeline", "cli_s", "info"][..], &["pipeline", "cli_s", "trace"], &["-v", "pipeline", "cli_s", "info"]]
    {
        let o = p.dlt(args);
        everything.push_str(&String::from_utf8_lossy(&o.stdout));
        everything.push_str(&String::from_utf8_lossy(&o.stderr));
    }
    // every file the pipeline wrote
    let mut stack = vec![p.root.join("dlt-data")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                everything.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
            }
        }
    }
    for secret in ["TOPSECRET-7f3a", "ENVSECRET-91bc"] {
        assert!(!everything.contains(secret), "secret {secret} leaked");
    }
    // a failing run does not print it either
    std::fs::write(
        p.root.join(".dlt/secrets.toml"),
        "[destination.duckdb.credentials]\ndatabase = \"no/such/dir/x.duckdb\"\npassword = \"TOPSECRET-7f3a\"\n",
    )
    .unwrap();
    let o = p.dlt(&["-v", "run", "pipeline.toml"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("does not exist") && !err.contains("TOPSECRET"), "{err}");
}

#[test]
fn failed_load_is_shown_by_failed_jobs_and_stays_pending() {
    let p = Project::new("cli_fj", 3, "append");
    // a declared NOT NULL column that no record has: DuckDB rejects the rows at load
    let toml = std::fs::read_to_string(p.root.join("pipeline.toml")).unwrap()
        + "[source.resources.columns.must]\ndata_type = \"text\"\nnullable = false\n";
    std::fs::write(p.root.join("pipeline.toml"), toml).unwrap();
    let o = p.dlt(&["run", "pipeline.toml"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("pipeline step load failed") && err.contains("must"), "{err}");
    let failed = ok(&p.dlt(&["pipeline", "cli_fj", "failed-jobs"]));
    assert!(failed.contains("Checking failed jobs in load id") && failed.contains("NOT NULL"), "{failed}");
    let info = ok(&p.dlt(&["pipeline", "cli_fj", "info"]));
    assert!(info.contains("normalized (pending load)"), "{info}");
    // nothing of the package reached the destination, not even its state row
    let db = p.db("cli_fj");
    assert_eq!(count(&db, "SELECT count(*) FROM ds.issues"), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM ds._dlt_loads"), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM ds._dlt_pipeline_state"), 0);
    // the next run retries the pending package first and fails again without extracting anew
    assert!(!p.dlt(&["run", "pipeline.toml"]).status.success());
    let info = ok(&p.dlt(&["pipeline", "cli_fj", "info"]));
    assert_eq!(info.matches("normalized (pending load)").count(), 1, "{info}");
    let dropped = ok(&p.dlt(&["pipeline", "cli_fj", "drop-pending-packages"]));
    assert!(dropped.contains("Dropped 1 pending package(s)"), "{dropped}");
    let failed = ok(&p.dlt(&["pipeline", "cli_fj", "failed-jobs"]));
    assert!(failed.contains("No failed jobs found"), "{failed}");
}

/// A fresh Postgres database for a CLI test (dropped at the end); None when no server under !CI.
struct PgDb {
    name: String,
    url: String,
}

impl PgDb {
    fn admin() -> String {
        std::env::var("DLT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into())
    }
    fn new() -> Option<PgDb> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut admin = match postgres::Client::connect(&Self::admin(), postgres::NoTls) {
            Ok(c) => c,
            Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
                eprintln!("skipping: no PostgreSQL: {e}");
                return None;
            }
            Err(e) => panic!("PostgreSQL is not reachable: {e}"),
        };
        let name = format!("dlt_cli_{}_{n}", std::process::id());
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let base = Self::admin();
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        Some(PgDb { name, url })
    }
    fn scalar(&self, sql: &str) -> i64 {
        let mut c = postgres::Client::connect(&self.url, postgres::NoTls).unwrap();
        c.query_one(sql, &[]).unwrap().get(0)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(mut a) = postgres::Client::connect(&Self::admin(), postgres::NoTls) {
            let _ = a.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

#[test]
fn postgres_merge_killed_mid_transaction_keeps_old_data_and_completes() {
    let Some(db) = PgDb::new() else { return };
    let p = Project::new("pg_kill", 300, "merge");
    let toml = std::fs::read_to_string(p.root.join("pipeline.toml"))
        .unwrap()
        .replace("destination = \"duckdb\"", "destination = \"postgres\"")
        + "primary_key = \"id\"\n";
    std::fs::write(p.root.join("pipeline.toml"), toml).unwrap();
    // credentials from the environment, as dlt names them
    let run = |fault: Option<&str>| {
        let mut c = p.cmd();
        c.args(["run", "pipeline.toml"]).env("DESTINATION__POSTGRES__CREDENTIALS", &db.url);
        if let Some(f) = fault {
            c.env("DLT_FAULT", f);
        }
        c
    };
    ok(&run(None).output().unwrap());
    assert_eq!(db.scalar("SELECT count(*) FROM ds.issues"), 300);
    // change every title, then kill the merge inside its transaction
    let data = std::fs::read_to_string(p.root.join("data/issues.jsonl"))
        .unwrap()
        .replace("\"title\": \"t", "\"title\": \"new");
    std::fs::write(p.root.join("data/issues.jsonl"), data).unwrap();
    let mut child =
        run(Some("load.in_transaction:sleep=60000")).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    for line in BufReader::new(stderr).lines() {
        if line.unwrap().contains("DLT_FAULT: sleeping") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // the old data is intact
    assert_eq!(db.scalar("SELECT count(*) FROM ds.issues WHERE title LIKE 'new%'"), 0);
    assert_eq!(db.scalar("SELECT count(*) FROM ds._dlt_loads"), 1);
    // the next run completes the merge (then merges the same data again: idempotent by key)
    ok(&run(None).output().unwrap());
    assert_eq!(db.scalar("SELECT count(*) FROM ds.issues"), 300);
    assert_eq!(db.scalar("SELECT count(*) FROM ds.issues WHERE title LIKE 'new%'"), 300);
    assert_eq!(db.scalar("SELECT count(*) FROM ds.issues__labels"), 600);
    assert_eq!(db.scalar("SELECT count(*) FROM ds._dlt_loads"), 3);
    let info = ok(&p.dlt(&["pipeline", "pg_kill", "info"]));
    assert!(info.contains("dlt.destinations.postgres"), "{info}");
}

/// A small deterministic generator (seed from DLT_TEST_SEED, default 7).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Runs an incremental pipeline many times, SIGKILLing it at a point chosen by the seed (every
/// step at least once), reruns it, and checks that each source row is in the destination once.
fn exactly_once_under_kills(p: &Project, name: &str, env: &[(&str, String)], count_rows: &dyn Fn() -> (i64, i64)) {
    let seed = std::env::var("DLT_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7u64);
    let mut rng = Lcg(seed);
    let toml = std::fs::read_to_string(p.root.join("pipeline.toml")).unwrap()
        + "[source.resources.incremental]\ncursor_path = \"id\"\n";
    std::fs::write(p.root.join("pipeline.toml"), toml).unwrap();
    std::fs::write(p.root.join("data/issues.jsonl"), "").unwrap();
    let points = [
        "extract.item",
        "extract.items_written",
        "normalize.before_publish",
        "load.in_transaction",
        "load.after_commit",
    ];
    let mut total = 0u64;
    for round in 0..10 {
        let new_rows = 20 + rng.next() % 200;
        let mut lines = String::new();
        for i in total..total + new_rows {
            lines.push_str(&format!("{{\"id\": {i}, \"title\": \"t{i}\", \"labels\": [{{\"name\": \"a\"}}]}}\n"));
        }
        total += new_rows;
        let mut f = std::fs::OpenOptions::new().append(true).open(p.root.join("data/issues.jsonl")).unwrap();
        std::io::Write::write_all(&mut f, lines.as_bytes()).unwrap();
        let point =
            if round < points.len() { points[round] } else { points[(rng.next() % points.len() as u64) as usize] };
        let fault =
            if point == "extract.item" { format!("extract.item.{}", rng.next() % new_rows) } else { point.to_string() };
        let mut c = p.cmd();
        c.args(["run", "pipeline.toml"]).env("DLT_FAULT", format!("{fault}:sleep=60000"));
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let reached =
            BufReader::new(stderr).lines().any(|l| l.map(|l| l.contains("DLT_FAULT: sleeping")).unwrap_or(false));
        assert!(reached, "seed {seed} round {round}: never reached {fault}");
        child.kill().unwrap();
        child.wait().unwrap();
        // the rerun finishes whatever the kill interrupted, then loads what is new (nothing, or the
        // rows the killed extract never committed)
        let mut c = p.cmd();
        c.args(["run", "pipeline.toml"]);
        for (k, v) in env {
            c.env(k, v);
        }
        ok(&c.output().unwrap());
        let (rows, distinct) = count_rows();
        assert_eq!(rows, total as i64, "seed {seed} round {round} ({fault}): every row once");
        assert_eq!(distinct, total as i64, "seed {seed} round {round} ({fault}): no duplicates");
    }
    let info = ok(&p.dlt(&["pipeline", name, "info"]));
    assert!(!info.contains("pending"), "{info}");
}

#[test]
fn exactly_once_under_kills_duckdb() {
    let p = Project::new("eo_duck", 0, "append");
    let db = p.db("eo_duck");
    exactly_once_under_kills(&p, "eo_duck", &[], &|| {
        let c = duckdb::Connection::open(&db).unwrap();
        c.query_row("SELECT count(*), count(DISTINCT id) FROM ds.issues", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap()
    });
}

#[test]
fn exactly_once_under_kills_postgres() {
    let Some(db) = PgDb::new() else { return };
    let p = Project::new("eo_pg", 0, "append");
    let toml = std::fs::read_to_string(p.root.join("pipeline.toml"))
        .unwrap()
        .replace("destination = \"duckdb\"", "destination = \"postgres\"");
    std::fs::write(p.root.join("pipeline.toml"), toml).unwrap();
    let url = db.url.clone();
    exactly_once_under_kills(&p, "eo_pg", &[("DESTINATION__POSTGRES__CREDENTIALS", url.clone())], &|| {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let r = c.query_one("SELECT count(*), count(DISTINCT id) FROM ds.issues", &[]).unwrap();
        (r.get(0), r.get(1))
    });
}

#[test]
fn sync_restores_state_and_schema_from_the_destination() {
    let p = Project::new("cli_sync", 5, "append");
    let toml = std::fs::read_to_string(p.root.join("pipeline.toml")).unwrap()
        + "[source.resources.incremental]\ncursor_path = \"id\"\n";
    std::fs::write(p.root.join("pipeline.toml"), toml).unwrap();
    ok(&p.dlt(&["run", "pipeline.toml"]));
    let wd = p.root.join("dlt-data/pipelines/cli_sync");
    let before: Value = serde_json::from_str(&std::fs::read_to_string(wd.join("state.json")).unwrap()).unwrap();
    // a fresh machine: the local state is gone; sync brings it back from DuckDB
    std::fs::remove_file(wd.join("state.json")).unwrap();
    std::fs::remove_dir_all(wd.join("schemas")).unwrap();
    let out = ok(&p.dlt(&["-y", "pipeline", "cli_sync", "sync"]));
    assert!(out.contains("Restoring from destination") && out.contains("restored"), "{out}");
    let after: Value = serde_json::from_str(&std::fs::read_to_string(wd.join("state.json")).unwrap()).unwrap();
    assert_eq!(after["_version_hash"], before["_version_hash"]);
    assert_eq!(after["sources"]["cli_sync"]["resources"]["issues"]["incremental"]["id"]["last_value"], json_4());
    assert!(wd.join("schemas/cli_sync.schema.json").exists());
    // the incremental cursor survived: the same file loads nothing new
    let json: Value = serde_json::from_slice(&p.dlt(&["run", "pipeline.toml", "--json"]).stdout).unwrap();
    assert!(json["row_counts"].get("issues").is_none(), "{json}");
    // without the working dir at all, `run` restores before extracting
    std::fs::remove_dir_all(&wd).unwrap();
    let json: Value = serde_json::from_slice(&p.dlt(&["run", "pipeline.toml", "--json"]).stdout).unwrap();
    assert!(json["row_counts"].get("issues").is_none(), "{json}");
    assert_eq!(count(&p.db("cli_sync"), "SELECT count(*) FROM ds.issues"), 5);
}

fn json_4() -> Value {
    serde_json::json!(4)
}
