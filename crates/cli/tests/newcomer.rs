//! A newcomer's mistakes, made through the `dlt` binary against real DuckDB, PostgreSQL,
//! MariaDB and json-server: each ends in a message that says how to fix it, an exit code that
//! says what kind of failure it was, and a pipeline that the corrected run loads without any
//! cleanup beyond what the message says.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use dlt_testkit::services::{json_server, postgres_url, skip_or_fail};
use serde_json::Value;

struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("project");
        std::fs::create_dir_all(&root).unwrap();
        let data = dir.path().join("dlt-data");
        Project { _dir: dir, root, data }
    }

    fn write(&self, rel: &str, body: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dlt"));
        c.current_dir(&self.root).env("DLT_DATA_DIR", &self.data).env_remove("DLT_FAULT").env_remove("NO_COLOR");
        c
    }

    fn dlt(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn dlt_env(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        let mut c = self.cmd();
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(args).output().unwrap()
    }

    fn db(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.duckdb"))
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}\nstdout: {}\nstderr: {}", o.status, out(o), err(o));
    out(o)
}

#[track_caller]
fn exit(o: &Output, code: i32) -> String {
    assert_eq!(o.status.code(), Some(code), "stdout: {}\nstderr: {}", out(o), err(o));
    err(o)
}

fn duck(db: &Path, sql: &str) -> i64 {
    duckdb::Connection::open(db).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
}

fn duck_strings(db: &Path, sql: &str) -> Vec<String> {
    let c = duckdb::Connection::open(db).unwrap();
    let mut st = c.prepare(sql).unwrap();
    st.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
}

/// A fresh Postgres database (dropped at the end), or `None` outside CI without a server.
struct PgDb {
    name: String,
    url: String,
}

impl PgDb {
    fn new(tag: &str) -> Option<PgDb> {
        let mut admin = match postgres::Client::connect(&postgres_url(), postgres::NoTls) {
            Ok(c) => c,
            Err(e) => {
                skip_or_fail("PostgreSQL", e);
                return None;
            }
        };
        let name = format!("dlt_newcomer_{tag}_{}", std::process::id());
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let base = postgres_url();
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        Some(PgDb { name, url })
    }

    fn exec(&self, sql: &str) {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap().batch_execute(sql).unwrap();
    }

    fn scalar(&self, sql: &str) -> i64 {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap().query_one(sql, &[]).unwrap().get(0)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&postgres_url(), postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

fn files_pipeline(name: &str, extra: &str) -> String {
    format!(
        "[pipeline]\nname = \"{name}\"\ndataset_name = \"ds\"\n\n[source]\ntype = \"files\"\n\n[[source.resources]]\nname = \"events\"\npath = \"data/*.jsonl\"\n{extra}"
    )
}

/// No load package of the pipeline is pending.
#[track_caller]
fn nothing_pending(p: &Project, name: &str) {
    let info = ok(&p.dlt(&["pipeline", name, "info"]));
    assert!(!info.contains("pending"), "{info}");
}

// 1. a key that names no column

#[test]
fn a_mistaken_primary_key_is_caught_before_load_and_the_fix_just_works() {
    let p = Project::new();
    p.write("data/1.jsonl", "{\"id\": 1, \"v\": \"a\"}\n{\"id\": 2, \"v\": \"b\"}\n");
    p.write("p.toml", &files_pipeline("keys", "write_disposition = \"merge\"\nprimary_key = \"event_id\"\n"));
    let e = exit(&p.dlt(&["run", "p.toml"]), 2);
    assert!(e.contains("primary_key `event_id`") && e.contains("id, v"), "{e}");
    assert!(!e.contains("Binder Error") && !e.contains("drop-pending-packages"), "{e}");
    nothing_pending(&p, "keys");
    // the corrected key replaces the mistaken one; the rows load once
    p.write("p.toml", &files_pipeline("keys", "write_disposition = \"merge\"\nprimary_key = \"id\"\n"));
    ok(&p.dlt(&["run", "p.toml"]));
    ok(&p.dlt(&["run", "p.toml"]));
    assert_eq!(duck(&p.db("keys"), "SELECT count(*) FROM ds.events"), 2);
    let schema = ok(&p.dlt(&["pipeline", "keys", "schema", "--format", "json"]));
    let schema: Value = serde_json::from_str(&schema).expect("schema --format json prints only JSON");
    let cols = schema["tables"]["events"]["columns"].as_object().unwrap();
    assert!(!cols.contains_key("event_id"), "the mistaken key stayed: {cols:?}");
    assert_eq!(cols["id"]["primary_key"], true);
}

#[test]
fn a_sql_database_key_is_checked_against_the_reflected_columns() {
    let Some(db) = PgDb::new("pk") else { return };
    db.exec("CREATE TABLE orders (id int primary key, amount int); INSERT INTO orders VALUES (1, 10), (2, 20);");
    let p = Project::new();
    let pipeline = |key: &str| {
        format!(
            "[pipeline]\nname = \"sqlkeys\"\ndataset_name = \"ds\"\n\n[source]\ntype = \"sql_database\"\ncredentials = \"{}\"\nschema = \"public\"\n\n[source.tables.orders]\nwrite_disposition = \"merge\"\nprimary_key = \"{key}\"\n",
            db.url
        )
    };
    p.write("p.toml", &pipeline("order_id"));
    let e = exit(&p.dlt(&["run", "p.toml"]), 2);
    assert!(e.contains("`order_id`") && e.contains("id, amount") && e.contains("[source.tables.orders]"), "{e}");
    // refused before extracting: no package was made
    assert!(
        !p.data.join("pipelines/sqlkeys/load").exists() || {
            let info = ok(&p.dlt(&["pipeline", "sqlkeys", "info"]));
            !info.contains("pending")
        }
    );
    p.write("p.toml", &pipeline("id"));
    ok(&p.dlt(&["run", "p.toml"]));
    assert_eq!(duck(&p.db("sqlkeys"), "SELECT sum(amount) FROM ds.orders"), 30);
}

#[test]
fn a_load_that_fails_for_good_explains_the_way_out_and_drop_works() {
    let p = Project::new();
    p.write("data/1.jsonl", "{\"id\": 1}\n");
    // a declared NOT NULL column that no record has: DuckDB refuses the rows at load
    p.write(
        "p.toml",
        &files_pipeline("stuck", "[source.resources.columns.must]\ndata_type = \"text\"\nnullable = false\n"),
    );
    let o = p.dlt(&["run", "p.toml", "--json"]);
    let e = exit(&o, 1);
    let j: Value = serde_json::from_str(&out(&o)).expect("--json prints a JSON error");
    assert_eq!(j["error"]["kind"], "failed");
    assert_eq!(j["error"]["step"], "load");
    let id = j["error"]["load_id"].as_str().unwrap().to_string();
    let recovery: Vec<&str> = j["error"]["recovery"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(
        recovery,
        [
            "dlt pipeline stuck failed-jobs",
            "dlt pipeline stuck drop-pending-packages",
            "dlt run p.toml --refresh drop_resources"
        ]
    );
    assert!(
        e.contains(&format!("The load package {id}")) && e.contains("dlt pipeline stuck drop-pending-packages"),
        "{e}"
    );
    // drop works as soon as schema does, and names the command that unblocks it
    ok(&p.dlt(&["pipeline", "stuck", "schema"]));
    let e = exit(&p.dlt(&["pipeline", "stuck", "drop", "events", "-y"]), 1);
    assert!(e.contains("dlt pipeline stuck drop-pending-packages") && !e.contains("has no schema"), "{e}");
    // the way out the message gave: discard the package, fix the hint, start the table over
    // (the NOT NULL column is in the table and the stored schema)
    ok(&p.dlt(&["pipeline", "stuck", "drop-pending-packages"]));
    p.write("p.toml", &files_pipeline("stuck", ""));
    ok(&p.dlt(&["run", "p.toml", "--refresh", "drop_resources"]));
    assert_eq!(duck(&p.db("stuck"), "SELECT count(*) FROM ds.events"), 1);
    ok(&p.dlt(&["pipeline", "stuck", "drop", "events", "-y"]));
}

// 2. append -> merge on a table with nested tables

fn append_then_merge(p: &Project, name: &str, env: &[(&str, String)]) {
    p.write(
        "data/1.jsonl",
        "{\"id\": 1, \"tags\": [{\"t\": \"a\", \"subs\": [1, 2]}, {\"t\": \"b\", \"subs\": [3]}]}\n{\"id\": 2, \"tags\": [{\"t\": \"c\", \"subs\": [5]}]}\n",
    );
    p.write("p.toml", &files_pipeline(name, "write_disposition = \"append\"\n"));
    ok(&p.dlt_env(&["run", "p.toml"], env));
    p.write("p.toml", &files_pipeline(name, "write_disposition = \"merge\"\nprimary_key = \"id\"\n"));
    p.write("data/1.jsonl", "{\"id\": 1, \"tags\": [{\"t\": \"a2\", \"subs\": [9]}]}\n{\"id\": 3, \"tags\": [{\"t\": \"d\", \"subs\": [4]}]}\n");
    ok(&p.dlt_env(&["run", "p.toml"], env));
}

#[test]
fn switching_to_merge_migrates_nested_tables_on_duckdb() {
    let p = Project::new();
    p.write("p.toml", "");
    append_then_merge(&p, "tomerge", &[]);
    let db = p.db("tomerge");
    assert_eq!(duck_strings(&db, "SELECT t FROM ds.events__tags ORDER BY t"), ["a2", "c", "d"]);
    assert_eq!(duck(&db, "SELECT sum(value) FROM ds.events__tags__subs"), 9 + 5 + 4);
    assert_eq!(duck(&db, "SELECT count(*) FROM ds.events__tags__subs WHERE _dlt_root_id IS NULL"), 0);
    nothing_pending(&p, "tomerge");
}

#[test]
fn switching_to_merge_migrates_nested_tables_on_postgres() {
    let Some(db) = PgDb::new("merge") else { return };
    let p = Project::new();
    let env = [("DESTINATION__POSTGRES__CREDENTIALS", db.url.clone())];
    p.write("p.toml", "");
    let with_pg = |s: String| s.replacen("[pipeline]\n", "[pipeline]\ndestination = \"postgres\"\n", 1);
    p.write("data/1.jsonl", "{\"id\": 1, \"tags\": [{\"t\": \"a\", \"subs\": [1, 2]}]}\n{\"id\": 2, \"tags\": [{\"t\": \"c\", \"subs\": [5]}]}\n");
    p.write("p.toml", &with_pg(files_pipeline("tomerge_pg", "write_disposition = \"append\"\n")));
    ok(&p.dlt_env(&["run", "p.toml"], &env));
    p.write("p.toml", &with_pg(files_pipeline("tomerge_pg", "write_disposition = \"merge\"\nprimary_key = \"id\"\n")));
    p.write("data/1.jsonl", "{\"id\": 1, \"tags\": [{\"t\": \"a2\", \"subs\": [9]}]}\n");
    ok(&p.dlt_env(&["run", "p.toml"], &env));
    assert_eq!(db.scalar("SELECT count(*) FROM ds.events__tags"), 2);
    assert_eq!(db.scalar("SELECT sum(value)::bigint FROM ds.events__tags__subs"), 9 + 5);
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'ds' AND column_name = '_dlt_root_id' AND is_nullable = 'NO'"
        ),
        2,
        "the migrated columns are NOT NULL on Postgres"
    );
}

// 3. a sql_database schema that does not exist

#[test]
fn a_wrong_sql_database_schema_lists_the_real_ones() {
    let Some(db) = PgDb::new("schema") else { return };
    db.exec("CREATE SCHEMA shop; CREATE TABLE shop.t (id int);");
    let p = Project::new();
    p.write(
        "p.toml",
        &format!(
            "[pipeline]\nname = \"wrongschema\"\ndataset_name = \"ds\"\n\n[source]\ntype = \"sql_database\"\ncredentials = \"{}\"\nschema = \"nope\"\n",
            db.url
        ),
    );
    let e = exit(&p.dlt(&["run", "p.toml"]), 2);
    assert!(e.contains("schema `nope` does not exist") && e.contains("public, shop"), "{e}");
    // MySQL: `public` (the template's default) is not a database there
    let reachable = std::net::TcpStream::connect_timeout(&"127.0.0.1:3306".parse().unwrap(), Duration::from_secs(2));
    if let Err(e) = reachable {
        skip_or_fail("MariaDB", e);
        return;
    }
    p.write(
        "p.toml",
        "[pipeline]\nname = \"wrongschema_my\"\ndataset_name = \"ds\"\n\n[source]\ntype = \"sql_database\"\ncredentials = \"mysql://root@127.0.0.1:3306/test\"\nschema = \"public\"\n",
    );
    let e = exit(&p.dlt(&["run", "p.toml"]), 2);
    assert!(e.contains("schema `public` does not exist") && e.contains("test"), "{e}");
}

#[test]
fn an_unreachable_database_is_a_source_error_of_the_extract_step_with_the_url_as_written() {
    let p = Project::new();
    // nothing listens on port 1; the URL as a user writes it, with a socket option
    p.write(
        "p.toml",
        "[pipeline]\nname = \"unreachable\"\ndataset_name = \"ds\"\n\n[source]\ntype = \"sql_database\"\n\
         credentials = \"mysql+pymysql://root:hunter2@127.0.0.1:1/h_src?charset=utf8mb4\"\n",
    );
    let e = exit(&p.dlt(&["run", "p.toml"]), 3);
    assert!(e.contains("pipeline step extract failed"), "{e}");
    assert!(e.contains("source `sql_database` failed"), "{e}");
    assert!(e.contains("mysql+pymysql://root:***@127.0.0.1:1/h_src?charset=utf8mb4"), "{e}");
    assert!(!e.contains("hunter2") && !e.contains("%5F"), "{e}");
}

// 4. dataset named like the pipeline on DuckDB

#[test]
fn a_dataset_named_like_the_duckdb_database_is_refused_before_extracting() {
    let p = Project::new();
    p.write("data/1.jsonl", "{\"id\": 1}\n");
    p.write("p.toml", &files_pipeline("same", "").replace("dataset_name = \"ds\"", "dataset_name = \"same\""));
    let e = exit(&p.dlt(&["run", "p.toml"]), 2);
    assert!(e.contains("dataset_name `same`") && e.contains("same_data"), "{e}");
    assert!(!e.contains("Binder Error"), "{e}");
    nothing_pending(&p, "same");
    p.write("p.toml", &files_pipeline("same", "").replace("dataset_name = \"ds\"", "dataset_name = \"same_data\""));
    ok(&p.dlt(&["run", "p.toml"]));
    assert_eq!(duck(&p.db("same"), "SELECT count(*) FROM same_data.events"), 1);
}

// 5. pipeline files in TOML, YAML and JSON

#[test]
fn pipeline_files_in_yaml_and_json_load_the_same_and_errors_give_line_and_column() {
    let p = Project::new();
    p.write("data/1.jsonl", "{\"id\": 1}\n{\"id\": 2}\n");
    p.write(
        "p.yaml",
        "pipeline:\n  name: fmt_yaml\n  dataset_name: ds\nsource:\n  type: files\n  resources:\n    - name: events\n      path: data/*.jsonl\n",
    );
    p.write(
        "p.json",
        r#"{"pipeline": {"name": "fmt_json", "dataset_name": "ds"}, "source": {"type": "files", "resources": [{"name": "events", "path": "data/*.jsonl"}]}}"#,
    );
    ok(&p.dlt(&["run", "p.yaml"]));
    ok(&p.dlt(&["run", "p.json"]));
    assert_eq!(duck(&p.db("fmt_yaml"), "SELECT sum(id) FROM ds.events"), 3);
    assert_eq!(duck(&p.db("fmt_json"), "SELECT sum(id) FROM ds.events"), 3);
    p.write("bad.toml", "[pipeline]\nname = \"x\ndestination = \"duckdb\"\n");
    let e = exit(&p.dlt(&["run", "bad.toml"]), 2);
    assert!(e.contains("bad.toml:2:"), "{e}");
    p.write("bad.yaml", "pipeline:\n  name: x\n bad: [\n");
    let e = exit(&p.dlt(&["run", "bad.yaml"]), 2);
    assert!(e.contains("bad.yaml:3:"), "{e}");
    p.write("bad.json", "{\n  \"pipeline\": {\"name\": \"x\",}\n}\n");
    let e = exit(&p.dlt(&["run", "bad.json"]), 2);
    assert!(e.contains("bad.json:2:"), "{e}");
}

// 6. two projects, one pipeline name

#[test]
fn two_projects_with_one_pipeline_name_do_not_silently_share_state() {
    let a = Project::new();
    let b = Project { data: a.data.clone(), ..Project::new() };
    a.write("data/1.jsonl", "{\"id\": 1}\n");
    a.write("p.toml", &files_pipeline("shared", ""));
    ok(&a.dlt(&["run", "p.toml"]));
    let Some(db) = PgDb::new("ident") else { return };
    b.write("data/1.jsonl", "{\"id\": 2}\n");
    b.write(
        "p.toml",
        &files_pipeline("shared", "").replacen("[pipeline]\n", "[pipeline]\ndestination = \"postgres\"\n", 1),
    );
    let env = [("DESTINATION__POSTGRES__CREDENTIALS", db.url.clone())];
    let e = exit(&b.dlt_env(&["run", "p.toml"], &env), 2);
    assert!(e.contains("files -> duckdb") && e.contains("files -> postgres") && e.contains("--force"), "{e}");
    let e = ok(&b.dlt_env(&["run", "p.toml", "--force"], &env));
    assert!(e.contains("loaded"), "{e}");
    assert_eq!(db.scalar("SELECT count(*) FROM ds.events"), 1);
    // `dlt init` names the pipeline after the project folder
    let c = Project::new();
    ok(&c.dlt(&["init", "files", "duckdb"]));
    let t: toml::Table = std::fs::read_to_string(c.root.join("files_pipeline.toml")).unwrap().parse().unwrap();
    assert_eq!(t["pipeline"]["name"].as_str(), Some("project"));
}

// 7. local-only commands need no destination credentials

#[test]
fn drop_pending_packages_needs_no_credentials_and_sync_leaves_nothing_behind() {
    let Some(db) = PgDb::new("local") else { return };
    let p = Project::new();
    p.write("data/1.jsonl", "{\"id\": 1}\n");
    p.write(
        "p.toml",
        &files_pipeline("local_only", "").replacen("[pipeline]\n", "[pipeline]\ndestination = \"postgres\"\n", 1),
    );
    // the destination is down (a closed port): a transient failure, exit 3
    let down = [("DESTINATION__POSTGRES__CREDENTIALS", "postgresql://postgres@127.0.0.1:1/x".to_string())];
    let e = exit(&p.dlt_env(&["run", "p.toml"], &down), 3);
    assert!(e.contains("127.0.0.1:1"), "{e}");
    // a load that fails for good leaves a package: a NOT NULL column no record has
    let env = [("DESTINATION__POSTGRES__CREDENTIALS", db.url.clone())];
    let with_pg = |s: String| s.replacen("[pipeline]\n", "[pipeline]\ndestination = \"postgres\"\n", 1);
    p.write(
        "p.toml",
        &with_pg(files_pipeline(
            "local_only",
            "[source.resources.columns.must]\ndata_type = \"text\"\nnullable = false\n",
        )),
    );
    exit(&p.dlt_env(&["run", "p.toml"], &env), 1);
    // dropping it needs no credentials at all
    let dropped = ok(&p.dlt(&["pipeline", "local_only", "drop-pending-packages"]));
    assert!(dropped.contains("Dropped 1 pending package(s)"), "{dropped}");
    // sync from a destination that holds nothing for a pipeline that is not here
    let o = p.dlt_env(&["pipeline", "ghost", "sync", "--destination", "postgres", "--dataset-name", "ds", "-y"], &env);
    let s = ok(&o);
    assert!(s.contains("holds no state") && !s.contains("Dropping local state"), "{s}");
    assert!(!p.data.join("pipelines/ghost").exists(), "an empty working dir was left behind");
}

// 8. errors that say what to do

#[test]
fn configuration_mistakes_get_messages_that_say_what_to_write() {
    let p = Project::new();
    p.write("data/1.jsonl", "{\"id\": 1}\n");
    p.write("p.toml", &files_pipeline("msgs", "write_disposition = \"upsert\"\n"));
    let e = exit(&p.dlt(&["run", "p.toml"]), 2);
    assert!(e.contains("strategy = \"upsert\"") && !e.contains("untagged enum"), "{e}");
    assert_eq!(e.matches("configuration error").count(), 1, "{e}");
    p.write("p.toml", &files_pipeline("msgs", ""));
    ok(&p.dlt(&["run", "p.toml"]));
    let e = exit(&p.dlt(&["pipeline", "msgs", "load-package", "123"]), 2);
    assert!(e.contains("`123`") && e.contains("known:"), "{e}");
    // the placeholder `dlt init` writes is not a password
    let q = Project::new();
    ok(&q.dlt(&["init", "files", "postgres"]));
    let e = exit(&q.dlt(&["run", "files_pipeline.toml"]), 2);
    assert!(e.contains("placeholder") && e.contains("[destination.postgres.credentials] password"), "{e}");
    // missing credentials name the secrets.toml section
    q.write(".dlt/secrets.toml", "");
    let e = exit(&q.dlt(&["run", "files_pipeline.toml"]), 2);
    assert!(e.contains("[destination.postgres] in .dlt/secrets.toml"), "{e}");
}

// 9. scripting

#[test]
fn output_scripts_can_rely_on() {
    let p = Project::new();
    p.write("data/1.jsonl", "{\"id\": 1}\n");
    p.write("p.toml", &files_pipeline("scripted", ""));
    let o = p.dlt(&["-v", "run", "p.toml"]);
    ok(&o);
    let e = err(&o);
    assert!(!e.contains('\u{1b}'), "colours on a pipe: {e:?}");
    assert!(e.contains("INSERT INTO") || e.contains("CREATE TABLE"), "-v logs SQL: {e}");
    // a closed pipe ends quietly
    let mut child =
        p.cmd().args(["pipeline", "scripted", "info"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_ne!(o.status.code(), Some(101), "{}", err(&o));
    assert!(!err(&o).contains("panicked"), "{}", err(&o));
    // machine formats are only that
    let s = ok(&p.dlt(&["pipeline", "scripted", "schema", "--format", "json"]));
    serde_json::from_str::<Value>(&s).expect("only JSON");
    // exit codes: 2 configuration, 4 data
    p.write("p.toml", &files_pipeline("scripted", "schema_contract = \"freeze\"\n"));
    p.write("data/2.jsonl", "{\"id\": 2, \"new_column\": 1}\n");
    let o = p.dlt(&["run", "p.toml", "--json"]);
    exit(&o, 4);
    let j: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(j["error"]["kind"], "data");
    let o = p.dlt(&["run", "missing.toml", "--json"]);
    exit(&o, 1);
    assert!(serde_json::from_str::<Value>(&out(&o)).is_ok());
}

#[test]
fn verbose_runs_log_each_request_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let db_json = dir.path().join("db.json");
    let posts: Vec<Value> = (1..=7).map(|i| serde_json::json!({"id": i})).collect();
    std::fs::write(&db_json, serde_json::json!({"posts": posts}).to_string()).unwrap();
    let Some(server) = json_server(&db_json) else { return };
    let url = server.url.clone();
    let p = Project::new();
    // json-server answers `_limit` with X-Total-Count equal to the rows it returns: one page
    p.write(
        "p.toml",
        &format!(
            "[pipeline]\nname = \"rest_one\"\ndataset_name = \"ds\"\n\n[source]\ntype = \"rest_api\"\n\n[source.client]\nbase_url = \"{url}\"\nauth = {{ type = \"api_key\", name = \"api_key\", location = \"query\" }}\n\n[[source.resources]]\nname = \"posts\"\nendpoint = {{ path = \"posts\", params = {{ _limit = 50 }} }}\n"
        ),
    );
    let o = p.dlt_env(&["-v", "run", "p.toml"], &[("SOURCES__REST_API__CREDENTIALS__API_KEY", "k-7731-secret".into())]);
    ok(&o);
    let e = err(&o);
    assert!(e.contains("/posts") && e.contains("_limit=50"), "-v logs the request: {e}");
    assert!(!e.contains("k-7731-secret"), "{e}");
    assert_eq!(duck(&p.db("rest_one"), "SELECT count(*) FROM ds.posts"), 7);
}

// 11. small things

#[test]
fn the_small_things() {
    let p = Project::new();
    let v = ok(&p.dlt(&["--version"]));
    assert!(v.starts_with("dlt-rs "), "{v}");
    let help = ok(&p.dlt(&["pipeline", "x", "drop", "--help"]));
    assert!(help.contains("dlt pipeline <NAME> drop"), "{help}");
    p.write("data/1.jsonl", "{\"id\": 1}\n");
    p.write("p.toml", &files_pipeline("small", ""));
    ok(&p.dlt(&["run", "p.toml"]));
    let trace = ok(&p.dlt(&["pipeline", "small", "trace"]));
    assert_eq!(trace.matches("Step normalize").count(), 1, "{trace}");
    let e = exit(&p.dlt(&["pipeline", "small", "show"]), 2);
    assert!(e.contains("dlt pipeline small info"), "{e}");
    // run from `/` with a relative path: the location printed is a normal absolute path
    let rel = pathdiff(&p.root.join("p.toml"));
    let o = p.cmd().current_dir("/").args(["run", &rel]).output().unwrap();
    let s = ok(&o);
    assert!(s.contains(&format!("duckdb:///{}", p.db("small").canonicalize().unwrap().display())), "{s}");
    assert!(!s.contains("/../"), "{s}");
    // `init files duckdb` needs no credentials and does not ask for them
    let q = Project::new();
    let s = ok(&q.dlt(&["init", "files", "duckdb"]));
    assert!(!s.contains("credentials"), "{s}");
    let config = std::fs::read_to_string(q.root.join(".dlt/config.toml")).unwrap();
    assert!(config.contains("next to the pipeline file"), "{config}");
}

/// `path` relative to `/`.
fn pathdiff(path: &Path) -> String {
    path.to_str().unwrap().trim_start_matches('/').to_string()
}

#[test]
fn a_write_disposition_the_destination_cannot_do_is_refused_before_loading() {
    let p = Project::new();
    p.write("data/1.jsonl", "{\"id\": 1}\n");
    let pipeline = |extra: &str| {
        files_pipeline("fsmerge", extra)
            .replacen("[pipeline]\n", "[pipeline]\ndestination = \"filesystem\"\n", 1)
            .replacen("\n[source]", "\n[destination]\nbucket_url = \"lake\"\n\n[source]", 1)
    };
    p.write("p.toml", &pipeline("write_disposition = \"merge\"\nprimary_key = \"id\"\n"));
    let e = exit(&p.dlt(&["run", "p.toml"]), 2);
    assert!(e.contains("write_disposition `merge`") && e.contains("table_format = \"delta\""), "{e}");
    assert!(e.contains("pipeline step extract failed") && e.contains("Nothing was extracted"), "{e}");
    nothing_pending(&p, "fsmerge");
    p.write("p.toml", &pipeline("write_disposition = \"append\"\n"));
    ok(&p.dlt(&["run", "p.toml"]));
    let files: Vec<_> = std::fs::read_dir(p.root.join("lake/ds/events")).unwrap().collect();
    assert_eq!(files.len(), 1, "{files:?}");
}
