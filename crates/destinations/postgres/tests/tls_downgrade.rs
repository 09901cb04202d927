//! TLS is never weaker than asked: every way to set `sslmode` (connection string, the `sslmode`
//! credentials field from the environment or `.dlt/secrets.toml`) fails closed against a proxy
//! that refuses TLS, and two settings that differ are an error.
//!
//! The proxy (`dlt_testkit::strip_tls`) stands for a network attacker in front of the real
//! server on 127.0.0.1 (DLT_TEST_POSTGRES_URL), which no real peer plays. It answers the client's
//! SSLRequest with `N` ("no TLS") and then relays the plaintext session, recording whether any
//! plaintext startup message went through.

use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dlt::dlt_core::config::Config;
use dlt::dlt_core::registry::{DestinationContext, DestinationFactory};
use dlt::{Resource, dlt_core};
use dlt_postgres::PostgresFactory;
use serde_json::json;

use dlt_testkit::strip_tls;

fn admin_url() -> String {
    std::env::var("DLT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into())
}

fn server_addr() -> Option<String> {
    let url = admin_url();
    let rest = url.split_once("://")?.1;
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h).split('/').next()?;
    let hp = if host_port.contains(':') { host_port.to_string() } else { format!("{host_port}:5432") };
    match TcpStream::connect_timeout(&hp.parse().ok()?, Duration::from_secs(2)) {
        Ok(_) => Some(hp),
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PostgreSQL is not reachable at {hp}: {e}");
            }
            eprintln!("skipping: PostgreSQL is not reachable at {hp}: {e}");
            None
        }
    }
}

fn run_through(
    env: Vec<(&str, String)>,
    secrets: Option<&str>,
    dir: &Path,
    name: &str,
) -> std::result::Result<(), String> {
    let env = env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let secrets = secrets.map(|s| toml::from_str::<toml::Table>(s).unwrap());
    let config = Config::from_parts(env, secrets, None);
    let dest = PostgresFactory
        .build(&DestinationContext { pipeline_name: name, config: &config, run_dir: dir, explicit: None })
        .map_err(|e| format!("config: {e}"))?;
    let mut p = dlt::pipeline(name)
        .destination(dest)
        .pipelines_dir(dir.join("pipelines"))
        .config(Config::from_parts(vec![], None, None))
        .build()
        .unwrap();
    p.run(Resource::from_values("t", vec![json!({"a": 1})])).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn every_sslmode_form_fails_closed_through_a_proxy_that_refuses_tls() {
    let Some(server) = server_addr() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = admin_url().rsplit('/').next().unwrap_or("test").split('?').next().unwrap_or("test").to_string();
    let url = |addr: &str, q: &str| format!("postgresql://postgres:x@{addr}/{db}{q}");
    for mode in ["require", "verify-ca", "verify-full"] {
        // (form, extra environment, secrets.toml)
        type Form<'a> = (&'a str, Vec<(&'a str, String)>, Option<String>);
        let forms: Vec<Form> = vec![
            ("url", vec![], None),
            ("env field", vec![("DESTINATION__POSTGRES__CREDENTIALS__SSLMODE", mode.to_string())], None),
            ("secrets.toml field", vec![], Some(format!("[destination.postgres.credentials]\nsslmode = \"{mode}\"\n"))),
        ];
        for (form, env, secrets) in forms {
            let (addr, plaintext) = strip_tls::postgres(server.clone());
            let q = if form == "url" { format!("?sslmode={mode}") } else { String::new() };
            let mut env = env;
            env.push(("DESTINATION__POSTGRES__CREDENTIALS", url(&addr, &q)));
            let r = run_through(env, secrets.as_deref(), dir.path(), &format!("tls_{}", form.replace([' ', '.'], "_")));
            let err = r.expect_err(&format!("sslmode={mode} as {form}: ran through a proxy that refuses TLS"));
            assert!(!plaintext.load(Ordering::SeqCst), "sslmode={mode} as {form}: a plaintext session was sent: {err}");
            assert!(err.to_lowercase().contains("tls") || err.to_lowercase().contains("ssl"), "{mode}/{form}: {err}");
        }
    }
    // prefer (libpq's default) does fall back, as libpq does: the proxy sees a plaintext session
    let (addr, plaintext) = strip_tls::postgres(server.clone());
    let r = run_through(
        vec![("DESTINATION__POSTGRES__CREDENTIALS", url(&addr, "?sslmode=prefer"))],
        None,
        dir.path(),
        "tls_prefer",
    );
    assert!(r.is_ok(), "{r:?}");
    assert!(plaintext.load(Ordering::SeqCst), "the control: prefer went through in plaintext");
    let mut c = postgres::Client::connect(&admin_url(), postgres::NoTls).unwrap();
    c.batch_execute("DROP SCHEMA IF EXISTS tls_prefer_dataset CASCADE").unwrap();
}

#[test]
fn conflicting_sslmodes_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_parts(
        vec![
            (
                "DESTINATION__POSTGRES__CREDENTIALS".into(),
                "postgresql://u:s3cret@127.0.0.1:1/db?sslmode=disable".into(),
            ),
            ("DESTINATION__POSTGRES__CREDENTIALS__SSLMODE".into(), "verify-full".into()),
        ],
        None,
        None,
    );
    let err = PostgresFactory
        .build(&DestinationContext { pipeline_name: "c", config: &config, run_dir: dir.path(), explicit: None })
        .unwrap_err()
        .to_string();
    assert!(err.contains("sslmode=disable") && err.contains("verify-full"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    // the same mode twice is fine
    let config = Config::from_parts(
        vec![
            ("DESTINATION__POSTGRES__CREDENTIALS".into(), "postgresql://u:p@127.0.0.1:1/db?sslmode=require".into()),
            ("DESTINATION__POSTGRES__CREDENTIALS__SSLMODE".into(), "require".into()),
        ],
        None,
        None,
    );
    let _: Arc<dyn dlt_core::destination::Destination> = PostgresFactory
        .build(&DestinationContext { pipeline_name: "c", config: &config, run_dir: dir.path(), explicit: None })
        .unwrap();
}
