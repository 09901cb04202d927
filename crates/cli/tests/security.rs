//! The security promises of `docs/security.md` on the user's path: the `dlt` binary runs a
//! pipeline file against real servers, and the test reads what reached them.
//!
//! - `sslmode` / `ssl_mode` for the sql_database source, in every form, fails closed through a
//!   proxy that refuses TLS (`dlt_testkit::strip_tls`; the proxy stands for a network
//!   attacker in front of the real PostgreSQL and MariaDB on 127.0.0.1).
//! - A rest_api token never reaches a second origin a page names.
//! - A record with a 250-character key holding a list loads, and the next run is clean.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dlt_testkit::services::{postgres_url, reachable};
use dlt_testkit::strip_tls;

const TOKEN: &str = "tok-5f1e9a2b-never-cross";

struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Project {
    fn new(pipeline_toml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("pipeline.toml"), pipeline_toml).unwrap();
        Project { _dir: dir, root }
    }

    fn secrets(&self, toml: &str) {
        std::fs::create_dir_all(self.root.join(".dlt")).unwrap();
        std::fs::write(self.root.join(".dlt/secrets.toml"), toml).unwrap();
    }

    fn run(&self, env: &[(&str, String)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dlt"));
        c.current_dir(&self.root).env("DLT_DATA_DIR", self.root.join("dlt-data")).env_remove("DLT_FAULT");
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(["run", "pipeline.toml"]).output().unwrap()
    }

    fn db(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.duckdb"))
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A run through a TLS-stripping proxy failed, said why (TLS/SSL), and sent no login.
#[track_caller]
fn failed_closed(o: &Output, plaintext: &AtomicBool, what: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "{what}: loaded through a proxy that refuses TLS");
    assert!(!plaintext.load(Ordering::SeqCst), "{what}: a plaintext login was sent: {err}");
    let low = err.to_lowercase();
    assert!(low.contains("tls") || low.contains("ssl"), "{what}: {err}");
}

fn count(db: &Path, sql: &str) -> i64 {
    duckdb::Connection::open(db).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
}

fn sql_pipeline(name: &str) -> String {
    format!(
        "[pipeline]\nname = \"{name}\"\ndestination = \"duckdb\"\ndataset_name = \"ds\"\n\n[source]\ntype = \"sql_database\"\ntable_names = [\"tls_probe\"]\n"
    )
}

#[test]
fn sql_database_postgres_sslmode_fails_closed_in_every_form() {
    if !reachable("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let server = "127.0.0.1:5432".to_string();
    let mut admin = postgres::Client::connect(&postgres_url(), postgres::NoTls).unwrap();
    admin
        .batch_execute(
            "DROP SCHEMA IF EXISTS tls_probe_src CASCADE; CREATE SCHEMA tls_probe_src;
             CREATE TABLE tls_probe_src.tls_probe (id int primary key, name text);
             INSERT INTO tls_probe_src.tls_probe VALUES (1, 'a'), (2, 'b');",
        )
        .unwrap();
    let db = postgres_url().rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
    let url = |addr: &str, q: &str| format!("postgresql://postgres:x@{addr}/{db}{q}");
    for mode in ["require", "verify-ca", "verify-full"] {
        for form in ["url", "env field", "secrets.toml field"] {
            let p = Project::new(&sql_pipeline("tls_pg"));
            let (addr, plaintext) = strip_tls::postgres(server.clone());
            let q = if form == "url" { format!("?sslmode={mode}") } else { String::new() };
            let mut env = vec![
                ("SOURCES__SQL_DATABASE__CREDENTIALS", url(&addr, &q)),
                ("SOURCES__SQL_DATABASE__SCHEMA", "tls_probe_src".to_string()),
            ];
            match form {
                "env field" => env.push(("SOURCES__SQL_DATABASE__CREDENTIALS__SSLMODE", mode.to_string())),
                "secrets.toml field" => {
                    p.secrets(&format!("[sources.sql_database.credentials]\nsslmode = \"{mode}\"\n"))
                }
                _ => {}
            }
            failed_closed(&p.run(&env), &plaintext, &format!("sslmode={mode} as {form}"));
            assert!(
                !p.db("tls_pg").exists()
                    || count(
                        &p.db("tls_pg"),
                        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'tls_probe'"
                    ) == 0
            );
        }
    }
    // the control: prefer falls back to plaintext, as libpq does, and loads
    let p = Project::new(&sql_pipeline("tls_pg_prefer"));
    let (addr, plaintext) = strip_tls::postgres(server.clone());
    let o = p.run(&[
        ("SOURCES__SQL_DATABASE__CREDENTIALS", url(&addr, "?sslmode=prefer")),
        ("SOURCES__SQL_DATABASE__SCHEMA", "tls_probe_src".to_string()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(plaintext.load(Ordering::SeqCst), "the control went through in plaintext");
    assert_eq!(count(&p.db("tls_pg_prefer"), "SELECT count(*) FROM ds.tls_probe"), 2);
    admin.batch_execute("DROP SCHEMA tls_probe_src CASCADE").unwrap();
}

#[test]
fn sql_database_mysql_ssl_mode_fails_closed_in_every_form() {
    if !reachable("MariaDB", "127.0.0.1:3306") {
        return;
    }
    let server = "127.0.0.1:3306".to_string();
    let admin = Command::new("mariadb")
        .args(["-uroot", "-h127.0.0.1", "-e"])
        .arg(
            "CREATE DATABASE IF NOT EXISTS tls_probe_src; DROP TABLE IF EXISTS tls_probe_src.tls_probe;
             CREATE TABLE tls_probe_src.tls_probe (id int primary key, name text);
             INSERT INTO tls_probe_src.tls_probe VALUES (1, 'a'), (2, 'b');",
        )
        .output()
        .expect("the mariadb client");
    assert!(admin.status.success(), "{}", stderr(&admin));
    for mode in ["REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"] {
        for form in ["url", "env field"] {
            let p = Project::new(&sql_pipeline("tls_my"));
            let (addr, plaintext) = strip_tls::mysql(server.clone());
            let q = if form == "url" { format!("?ssl_mode={mode}") } else { String::new() };
            let mut env = vec![("SOURCES__SQL_DATABASE__CREDENTIALS", format!("mysql://root@{addr}/tls_probe_src{q}"))];
            if form == "env field" {
                env.push(("SOURCES__SQL_DATABASE__CREDENTIALS__SSL_MODE", mode.to_string()));
            }
            failed_closed(&p.run(&env), &plaintext, &format!("ssl_mode={mode} as {form}"));
        }
    }
    // the control: without TLS the same proxy carries the load
    let p = Project::new(&sql_pipeline("tls_my_off"));
    let (addr, plaintext) = strip_tls::mysql(server);
    let o = p.run(&[("SOURCES__SQL_DATABASE__CREDENTIALS", format!("mysql://root@{addr}/tls_probe_src"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(plaintext.load(Ordering::SeqCst), "the control went through in plaintext");
    assert_eq!(count(&p.db("tls_my_off"), "SELECT count(*) FROM ds.tls_probe"), 2);
}

/// A one-route HTTP server recording every request's head; answers `body` as JSON.
fn http_server(body: impl Fn(&str) -> String + Send + Sync + 'static) -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(vec![]));
    let log = seen.clone();
    let body = Arc::new(body);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut req = vec![];
            let mut b = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&b[..n]),
                }
            }
            let head = String::from_utf8_lossy(&req).to_string();
            let text = body(&head);
            log.lock().unwrap().push(head);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, seen)
}

fn rest_pipeline(name: &str, api: &str, extra_client: &str) -> String {
    format!(
        r#"[pipeline]
name = "{name}"
destination = "duckdb"
dataset_name = "ds"

[source]
type = "rest_api"

[source.client]
base_url = "{api}"
auth = {{ type = "bearer" }}
{extra_client}

[[source.resources]]
name = "items"
endpoint = {{ path = "items", paginator = {{ type = "json_link", next_url_path = "next" }} }}
"#
    )
}

#[test]
fn a_rest_api_token_never_reaches_another_origin() {
    let (other, other_seen) = http_server(|_| r#"{"data": [{"id": 2}]}"#.to_string());
    let next = format!("{other}/collect");
    let (api, api_seen) = http_server(move |_| format!(r#"{{"data": [{{"id": 1}}], "next": "{next}"}}"#));
    let host = |u: &str| u.trim_start_matches("http://").to_string();

    // by default: an error naming both origins, nothing sent to the other one
    let p = Project::new(&rest_pipeline("xorigin", &api, ""));
    p.secrets(&format!("[sources.rest_api.credentials]\ntoken = \"{TOKEN}\"\n"));
    let o = p.run(&[]);
    let err = stderr(&o);
    assert!(!o.status.success(), "followed a link to another origin");
    assert!(err.contains(&host(&api)) && err.contains(&host(&other)), "{err}");
    assert!(other_seen.lock().unwrap().is_empty(), "the other origin was called");
    assert!(api_seen.lock().unwrap()[0].contains(TOKEN), "the API itself got the token");
    assert!(!err.contains(TOKEN), "{err}");

    // allowed: followed without the token, both pages load
    let p = Project::new(&rest_pipeline("xorigin_ok", &api, "allow_cross_origin = true"));
    p.secrets(&format!("[sources.rest_api.credentials]\ntoken = \"{TOKEN}\"\n"));
    let o = p.run(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let seen = other_seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(!seen[0].contains(TOKEN) && !seen[0].to_lowercase().contains("authorization"), "{}", seen[0]);
    assert_eq!(count(&p.db("xorigin_ok"), "SELECT sum(id) FROM ds.items"), 3);
}

#[test]
fn a_hostile_key_loads_into_a_shortened_table_and_the_next_run_is_clean() {
    let key = "k".repeat(250);
    let p = Project::new(
        "[pipeline]\nname = \"hostile\"\ndestination = \"duckdb\"\ndataset_name = \"ds\"\n\n[source]\ntype = \"files\"\n\n[[source.resources]]\nname = \"events\"\npath = \"data/*.jsonl\"\n",
    );
    std::fs::create_dir_all(p.root.join("data")).unwrap();
    std::fs::write(p.root.join("data/1.jsonl"), format!("{{\"id\": 1, \"{key}\": [{{\"a\": 1}}, {{\"a\": 2}}]}}\n"))
        .unwrap();
    let o = p.run(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(p.root.join("data/2.jsonl"), format!("{{\"id\": 2, \"{key}\": [{{\"a\": 3}}]}}\n")).unwrap();
    let o = p.run(&[]);
    assert!(o.status.success(), "the next run: {}", stderr(&o));
    let db = p.db("hostile");
    let longest = count(&db, "SELECT max(length(table_name)) FROM information_schema.tables WHERE table_schema = 'ds'");
    assert!(longest <= 200, "a table name of {longest} characters");
    let child = count(
        &db,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'ds' AND table_name LIKE 'events__kkk%'",
    );
    assert_eq!(child, 1, "one shortened child table");
    let name: String = duckdb::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'ds' AND table_name LIKE 'events__kkk%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // the files source reads every file again on each run: 1.jsonl twice, 2.jsonl once
    assert_eq!(count(&db, &format!("SELECT sum(a) FROM ds.\"{name}\"")), 1 + 2 + 1 + 2 + 3);
    assert_eq!(count(&db, "SELECT count(*) FROM ds.events"), 3);
    assert_eq!(count(&db, "SELECT count(*) FROM ds._dlt_loads"), 2);
}

#[test]
fn postgres_destination_sslmode_fails_closed_in_every_form() {
    if !reachable("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let server = "127.0.0.1:5432".to_string();
    let db = postgres_url().rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
    let pipeline = |name: &str| {
        format!(
            "[pipeline]\nname = \"{name}\"\ndestination = \"postgres\"\ndataset_name = \"{name}_ds\"\n\n[source]\ntype = \"files\"\n\n[[source.resources]]\nname = \"t\"\npath = \"t.jsonl\"\n"
        )
    };
    for mode in ["require", "verify-ca", "verify-full"] {
        for form in ["url", "env field", "secrets.toml field"] {
            let p = Project::new(&pipeline("tls_dest"));
            std::fs::write(p.root.join("t.jsonl"), "{\"a\": 1}\n").unwrap();
            let (addr, plaintext) = strip_tls::postgres(server.clone());
            let q = if form == "url" { format!("?sslmode={mode}") } else { String::new() };
            let mut env =
                vec![("DESTINATION__POSTGRES__CREDENTIALS", format!("postgresql://postgres:x@{addr}/{db}{q}"))];
            match form {
                "env field" => env.push(("DESTINATION__POSTGRES__CREDENTIALS__SSLMODE", mode.to_string())),
                "secrets.toml field" => {
                    p.secrets(&format!("[destination.postgres.credentials]\nsslmode = \"{mode}\"\n"))
                }
                _ => {}
            }
            failed_closed(&p.run(&env), &plaintext, &format!("sslmode={mode} as {form}"));
        }
    }
}
