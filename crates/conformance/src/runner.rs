//! Runs conformance cases through the dlt-rs engine into DuckDB and writes result files.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// One case run's outcome.
pub struct CaseOutcome {
    /// Case name.
    pub name: String,
    /// Differences against `expected.json` (empty = pass).
    pub diffs: Vec<String>,
    /// Where the result was written.
    pub result_path: PathBuf,
}

/// Case directories (folders holding `case.json`) under `root`, sorted by name.
pub fn find_cases(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.join("case.json").is_file() {
            out.push(d);
            continue;
        }
        for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort_by_key(|p| p.file_name().map(|n| n.to_owned()));
    Ok(out)
}

fn error_class(e: &dlt::Error) -> &'static str {
    match e.root() {
        dlt::Error::Io { .. } => "Io",
        dlt::Error::Config(_) => "Config",
        dlt::Error::BadInput { .. } => "BadInput",
        dlt::Error::Source { .. } => "Source",
        dlt::Error::Schema(_) => "Schema",
        dlt::Error::Destination { .. } => "Destination",
        dlt::Error::Package(_) => "Package",
        dlt::Error::Pipeline(_) => "Pipeline",
        _ => "Other",
    }
}

fn read_jsonl(path: &Path) -> Result<Vec<Value>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), i + 1))?);
    }
    Ok(out)
}

/// Run one case into `out_dir` (wiped first); returns the result document.
pub fn run_case(case_dir: &Path, out_dir: &Path) -> Result<Value> {
    let case: Value = serde_json::from_str(&fs::read_to_string(case_dir.join("case.json"))?)?;
    let name = case["name"].as_str().unwrap_or_default().to_string();
    if out_dir.exists() {
        fs::remove_dir_all(out_dir)?;
    }
    fs::create_dir_all(out_dir)?;
    let db = out_dir.join("dest.duckdb");
    // the oracle starts every case from an empty database file
    drop(duckdb::Connection::open(&db)?);
    let pipelines = out_dir.join("pipelines");
    let runs = case["runs"].as_array().cloned().unwrap_or_default();
    let mut datasets: Vec<String> =
        runs.iter().filter_map(|r| r["dataset_name"].as_str().map(str::to_string)).collect();
    datasets.sort();
    datasets.dedup();
    let time_tokens: Option<Vec<String>> = case
        .get("dump")
        .and_then(|d| d.get("time_token_columns"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect());
    let mut results = vec![];
    for (i, run) in runs.iter().enumerate() {
        let outcome = match run_one(case_dir, run, &db, &pipelines) {
            Ok(info) => json!({"status": "ok", "normalized_row_counts": info.row_counts}),
            Err(e) => {
                let stage = e.step().map(|s| s.to_string()).unwrap_or_else(|| "extract".into());
                let msg = e.to_string();
                json!({
                    "status": "failed",
                    "stage": stage,
                    "error_class": error_class(&e),
                    "root_error_class": error_class(&e),
                    "error_chain": [error_class(&e)],
                    "message_head": msg.chars().take(300).collect::<String>(),
                    "message_tail": "",
                })
            }
        };
        let dump = crate::dump(&db, &datasets, time_tokens.as_deref())?;
        results.push(json!({"index": i, "outcome": outcome, "dump": dump}));
    }
    Ok(json!({
        "result_format_version": 1,
        "case": name,
        "oracle": {"dlt-rs": env!("CARGO_PKG_VERSION")},
        "runs": results,
    }))
}

fn run_one(case_dir: &Path, run: &Value, db: &Path, pipelines: &Path) -> dlt::Result<dlt::LoadInfo> {
    let pname = run["pipeline_name"].as_str().unwrap_or("p");
    let dataset = run["dataset_name"].as_str().unwrap_or("ds");
    let mut p = dlt::pipeline(pname)
        .destination(dlt::destinations::duckdb(db))
        .dataset_name(dataset)
        .pipelines_dir(pipelines)
        .config(dlt::Config::from_parts(vec![], None, None))
        .build()?;
    if run.get("options").and_then(|o| o.get("drop_pending_packages")).and_then(Value::as_bool) == Some(true) {
        p.drop_pending_packages()?;
    }
    let mut resources = vec![];
    for r in run["resources"].as_array().cloned().unwrap_or_default() {
        let rname = r["name"].as_str().unwrap_or_default().to_string();
        let mut items = vec![];
        for f in r["files"].as_array().cloned().unwrap_or_default() {
            let path = case_dir.join(f.as_str().unwrap_or_default());
            items.extend(read_jsonl(&path).map_err(|e| dlt::Error::Config(format!("{e:#}")))?);
        }
        let hints = match r.get("hints") {
            Some(h) => dlt::ResourceHints::from_json(h).map_err(|e| dlt::Error::StepFailed {
                step: dlt::Step::Extract,
                load_id: None,
                source: Box::new(e),
            })?,
            None => dlt::ResourceHints::default(),
        };
        resources.push(dlt::Resource::from_values(rname, items).with_hints(hints));
    }
    p.run(resources)
}

/// Run every case under `cases`, compare, print one line per case and the closing line.
/// Returns the outcomes.
pub fn run_all(cases: &Path, keep: &Path, filter: Option<&str>) -> Result<Vec<CaseOutcome>> {
    let dirs = find_cases(cases)?;
    if dirs.is_empty() {
        bail!("no cases (folders with case.json) under {}", cases.display());
    }
    let mut out = vec![];
    for d in dirs {
        let name = d.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if let Some(f) = filter
            && !name.contains(f)
        {
            continue;
        }
        let case_out = keep.join(&name);
        let result = run_case(&d, &case_out).with_context(|| format!("case {name}"))?;
        let result_path = case_out.join("result.json");
        fs::write(&result_path, crate::to_pretty_json(&result) + "\n")?;
        let expected: Value = serde_json::from_str(&fs::read_to_string(d.join("expected.json"))?)?;
        let diffs = crate::compare(&expected, &result, &crate::CompareOptions::default());
        out.push(CaseOutcome { name, diffs, result_path });
    }
    Ok(out)
}
