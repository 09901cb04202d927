//! Parity with Python dlt 1.31: the endpoints of tests/oracle/scenario.json (header_link and
//! offset paging, a parent/child pair with include_from_parent, nested JSON, an incremental
//! param with merge, two runs with API changes in between) are loaded by dlt-rs from a real
//! json-server into DuckDB and dumped canonically after every run (crates/conformance); the
//! result must equal tests/oracle/expected.json, which dlt's own `rest_api_source` produced
//! from the same scenario (tests/oracle/make_expected.py; see tests/oracle/README.md).

mod support;

use std::path::{Path, PathBuf};

use dlt_conformance::{CompareOptions, format_report, to_pretty_json, try_compare};
use dlt_core::config::Config;
use dlt_rest_api::{RestApiConfig, rest_api_source};
use serde_json::{Map, Value, json};
use support::{JsonServer, Project, fixture_db};

fn oracle_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle").join(name)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `{base_url}` in any string of the config becomes the server's URL (as make_expected.py does).
fn substitute(v: &Value, base_url: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("{base_url}", base_url)),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, base_url)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), substitute(x, base_url))).collect()),
        other => other.clone(),
    }
}

/// One API change of the scenario (`{"method", "path", "json"}`), sent to json-server.
fn api_change(http: &reqwest::blocking::Client, base_url: &str, change: &Value) {
    let method = change["method"].as_str().unwrap();
    let path = change["path"].as_str().unwrap();
    let resp = http
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{base_url}/{path}"))
        .json(&change["json"])
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "{method} {path}: {}", resp.status());
}

#[test]
fn same_canonical_dump_as_python_dlt() {
    let scenario = read_json(&oracle_file("scenario.json"));
    let expected = read_json(&oracle_file("expected.json"));
    let Some(srv) = JsonServer::start(&fixture_db(), &[]) else { return };
    let pipeline_name = scenario["pipeline_name"].as_str().unwrap();
    let dataset = scenario["dataset_name"].as_str().unwrap().to_string();
    let config = RestApiConfig::from_json(substitute(&scenario["config"], &srv.url)).unwrap();
    let http = reqwest::blocking::Client::new();
    let proj = Project::new();
    let mut runs = vec![];
    for (i, run) in scenario["runs"].as_array().unwrap().iter().enumerate() {
        for change in run["before"].as_array().unwrap() {
            api_change(&http, &srv.url, change);
        }
        let info = {
            let mut p = proj.pipeline(pipeline_name, &dataset);
            let source = rest_api_source(&config, &Config::from_parts(vec![], None, None)).unwrap();
            p.run(source).unwrap_or_else(|e| panic!("run {i}: {e}"))
        };
        let counts: Map<String, Value> = {
            let mut c: Vec<_> = info.row_counts.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            c.sort_by(|a, b| a.0.cmp(&b.0));
            c.into_iter().collect()
        };
        let dump = dlt_conformance::dump(&proj.db(), std::slice::from_ref(&dataset), None).unwrap();
        runs.push(json!({"index": i, "outcome": {"status": "ok", "normalized_row_counts": counts}, "dump": dump}));
    }
    let actual = json!({
        "result_format_version": 1,
        "case": "rest_api_parity",
        "oracle": {"dlt-rs": env!("CARGO_PKG_VERSION")},
        "runs": runs,
    });
    let diffs = try_compare(&expected, &actual, &CompareOptions::default()).unwrap();
    if !diffs.is_empty() {
        let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rest_api_parity_actual.json");
        std::fs::write(&kept, to_pretty_json(&actual) + "\n").unwrap();
        panic!(
            "dlt-rs differs from Python dlt (expected: {}, dlt-rs: {}):\n{}",
            oracle_file("expected.json").display(),
            kept.display(),
            format_report(&diffs)
        );
    }
}
