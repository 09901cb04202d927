//! Runs conformance cases through the dlt-rs engine into DuckDB (or a real PostgreSQL server, or
//! the filesystem destination; see [`Target`]) and writes result files.

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// Default server of `--destination postgres` (overridden by `DLT_TEST_POSTGRES_URL`).
pub const DEFAULT_POSTGRES_URL: &str = "postgresql://postgres@127.0.0.1:5432/test";

/// The destination the cases' runs load into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A fresh DuckDB file per case (`OUT/<case>/dest.duckdb`), dumped directly.
    DuckDb,
    /// A fresh database per case on the Postgres server of `server_url` (any database of it;
    /// used to create and drop the case databases). After every run the case's datasets are
    /// mirrored into `OUT/<case>/mirror.duckdb` (see [`crate::pg_mirror`]) and dumped from there.
    Postgres {
        /// Connection string of the server (e.g. [`DEFAULT_POSTGRES_URL`]).
        server_url: String,
        /// Keep each case's database instead of dropping it at the end.
        keep_db: bool,
    },
    /// The filesystem destination writing parquet files into a fresh local bucket folder per case
    /// (`OUT/<case>/bucket`). After every run the case's datasets are mirrored into
    /// `OUT/<case>/mirror.duckdb` with DuckDB's parquet reader (see [`crate::fs_mirror`]) and
    /// dumped from there.
    Filesystem,
    /// A fresh database per case on a fakesnow server (Snowflake's protocol on DuckDB) at
    /// `127.0.0.1:port`, loaded with the loader's idempotent protocol (fakesnow cannot `MERGE`
    /// or create a temporary table inside a transaction). After every run the case's datasets
    /// are read by Snowflake's Python connector (`python`), mirrored into
    /// `OUT/<case>/mirror.duckdb` (see [`crate::sf_mirror`]) and dumped from there.
    Snowflake {
        /// The fakesnow server's port.
        port: u16,
        /// The Python interpreter that has `snowflake.connector`.
        python: PathBuf,
    },
    /// A fresh bqemulator server per case (project `p1`). After every run the case's datasets
    /// are read through the emulator's REST API, mirrored into `OUT/<case>/mirror.duckdb` (see
    /// [`crate::bq_mirror`]) and dumped from there.
    BigQuery,
}

impl Target {
    /// `duckdb` or `postgres`.
    pub fn name(&self) -> &'static str {
        match self {
            Target::DuckDb => "duckdb",
            Target::Postgres { .. } => "postgres",
            Target::Filesystem => "filesystem",
            Target::Snowflake { .. } => "snowflake",
            Target::BigQuery => "bigquery",
        }
    }

    /// Postgres against `DLT_TEST_POSTGRES_URL` (default [`DEFAULT_POSTGRES_URL`]).
    pub fn postgres_from_env(keep_db: bool) -> Target {
        let server_url = std::env::var("DLT_TEST_POSTGRES_URL")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_string());
        Target::Postgres { server_url, keep_db }
    }
}

/// Postgres database name for a case: `dlt_conf_<sanitized case>_<random>` (≤ 63 bytes).
pub fn case_database_name(case: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut sanitized: String =
        case.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).take(40).collect();
    if sanitized.is_empty() {
        sanitized.push('x');
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    format!("dlt_conf_{sanitized}_{:08x}", h.finish() as u32)
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A case's Postgres database: created on construction, dropped on drop (unless kept).
struct CaseDatabase {
    admin: postgres::Client,
    config: postgres::Config,
    name: String,
    keep: bool,
}

impl CaseDatabase {
    fn create(server_url: &str, case: &str, keep: bool) -> Result<CaseDatabase> {
        let mut server = postgres::Config::from_str(server_url.trim())
            .with_context(|| format!("invalid Postgres URL {}", dlt::dlt_core::config::mask_url(server_url)))?;
        if server.get_connect_timeout().is_none() {
            server.connect_timeout(std::time::Duration::from_secs(10));
        }
        let mut admin = server.connect(postgres::NoTls).with_context(|| {
            format!("cannot connect to the Postgres server {}", dlt::dlt_core::config::mask_url(server_url))
        })?;
        let name = case_database_name(case);
        admin
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .with_context(|| format!("creating database {name}"))?;
        let mut config = server.clone();
        config.dbname(&name);
        Ok(CaseDatabase { admin, config, name, keep })
    }

    fn connect(&self) -> Result<postgres::Client> {
        self.config.connect(postgres::NoTls).with_context(|| format!("cannot connect to database {}", self.name))
    }
}

impl Drop for CaseDatabase {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("conformance: kept Postgres database {}", self.name);
            return;
        }
        if let Err(e) =
            self.admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&self.name)))
        {
            eprintln!("conformance: cannot drop Postgres database {}: {e}", self.name);
        }
    }
}

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
        dlt::Error::Destination { .. } | dlt::Error::DestinationDriver { .. } => "Destination",
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

/// Run one case into DuckDB in `out_dir` (wiped first); returns the result document.
pub fn run_case(case_dir: &Path, out_dir: &Path) -> Result<Value> {
    run_case_on(case_dir, out_dir, &Target::DuckDb)
}

/// Run one case against `target`, keeping files in `out_dir` (wiped first); returns the
/// result document.
pub fn run_case_on(case_dir: &Path, out_dir: &Path, target: &Target) -> Result<Value> {
    let case: Value = serde_json::from_str(&fs::read_to_string(case_dir.join("case.json"))?)?;
    let name = case["name"].as_str().unwrap_or_default().to_string();
    if out_dir.exists() {
        fs::remove_dir_all(out_dir)?;
    }
    fs::create_dir_all(out_dir)?;
    let db = out_dir.join("dest.duckdb");
    let bucket = out_dir.join("bucket");
    let mut pg_db = None;
    let mut sf_db = None;
    let mut bq_server = None;
    let destination: Arc<dyn dlt::Destination> = match target {
        Target::DuckDb => {
            // the oracle starts every case from an empty database file
            drop(duckdb::Connection::open(&db)?);
            dlt::destinations::duckdb(&db)
        }
        Target::Postgres { server_url, keep_db } => {
            let cdb = CaseDatabase::create(server_url, &name, *keep_db)?;
            let dest = dlt::destinations::postgres_impl::Postgres::from_config(cdb.config.clone())?;
            pg_db = Some(cdb);
            Arc::new(dest)
        }
        Target::Filesystem => {
            fs::create_dir_all(&bucket)?;
            dlt::destinations::filesystem(&bucket.to_string_lossy())?
        }
        Target::Snowflake { port, .. } => {
            // fakesnow creates the database on login; the name is Snowflake's fold of ours
            let database = case_database_name(&name).to_uppercase();
            let url = format!("snowflake://loader:pw@testacct/{database}?host=127.0.0.1&port={port}&protocol=http");
            sf_db = Some(database);
            Arc::new(dlt::destinations::snowflake_impl::Snowflake::from_url(&url)?.without_transactions())
        }
        Target::BigQuery => {
            let server = dlt_testkit::services::bqemulator().context("bqemulator is not installed")?;
            let c =
                dlt::destinations::bigquery_impl::Credentials::from_fields(dlt::destinations::bigquery_impl::Fields {
                    project_id: Some(server.project.clone()),
                    api_endpoint: Some(server.url.clone()),
                    ..Default::default()
                })?;
            bq_server = Some(server);
            Arc::new(dlt::destinations::bigquery_impl::BigQuery::new(c))
        }
    };
    let mut pg_reader = match &pg_db {
        Some(cdb) => Some(cdb.connect()?),
        None => None,
    };
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
    let mut pipeline_names: Vec<String> =
        runs.iter().filter_map(|r| r["pipeline_name"].as_str().map(str::to_string)).collect();
    pipeline_names.sort();
    pipeline_names.dedup();
    // the stored schema documents after every run (DuckDB only: dlt's are from DuckDB)
    let mut schema_docs = crate::schema_docs::Documents::default();
    let mut schema_runs = vec![];
    let mut results = vec![];
    for (i, run) in runs.iter().enumerate() {
        let outcome = match run_one(case_dir, run, &destination, &pipelines) {
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
                    // like run_dlt.py: the last 300 characters of a longer message
                    "message_tail": if msg.chars().count() > 300 {
                        let n = msg.chars().count();
                        msg.chars().skip(n - 300).collect::<String>()
                    } else {
                        String::new()
                    },
                })
            }
        };
        if *target == Target::DuckDb {
            let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly)?;
            let conn = duckdb::Connection::open_with_flags(&db, config)
                .with_context(|| format!("cannot open DuckDB file {}", db.display()))?;
            let mut snap =
                crate::schema_docs::snapshot(&conn, &datasets, &pipelines, &pipeline_names, &mut schema_docs)
                    .with_context(|| format!("reading the stored schema documents after run {i}"))?;
            snap["index"] = json!(i);
            snap["status"] = outcome["status"].clone();
            schema_runs.push(snap);
        }
        let dump = match &mut pg_reader {
            None if let Some(server) = &bq_server => crate::bq_mirror::dump_bigquery(
                server,
                &datasets,
                time_tokens.as_deref(),
                &out_dir.join("mirror.duckdb"),
            )
            .with_context(|| format!("dumping run {i} from BigQuery"))?,
            None if let (Target::Snowflake { port, python }, Some(database)) = (target, &sf_db) => {
                let reader = crate::sf_mirror::Reader { python: python.clone(), port: *port };
                crate::sf_mirror::dump_snowflake(
                    &reader,
                    database,
                    &datasets,
                    time_tokens.as_deref(),
                    &out_dir.join("mirror.duckdb"),
                )
                .with_context(|| format!("dumping run {i} from Snowflake"))?
            }
            None if *target == Target::Filesystem => crate::fs_mirror::dump_filesystem(
                &bucket,
                &datasets,
                time_tokens.as_deref(),
                Some(&out_dir.join("mirror.duckdb")),
            )
            .with_context(|| format!("dumping run {i} from the bucket folder"))?,
            None => crate::dump(&db, &datasets, time_tokens.as_deref())?,
            Some(pg) => crate::pg_mirror::dump_postgres(
                pg,
                &datasets,
                time_tokens.as_deref(),
                Some(&out_dir.join("mirror.duckdb")),
            )
            .with_context(|| format!("dumping run {i} from Postgres"))?,
        };
        results.push(json!({"index": i, "outcome": outcome, "dump": dump}));
    }
    let mut oracle = json!({"dlt-rs": env!("CARGO_PKG_VERSION")});
    if let Some(cdb) = &pg_db {
        oracle["destination"] = json!("postgres");
        oracle["database"] = json!(cdb.name);
    }
    if *target == Target::Filesystem {
        oracle["destination"] = json!("filesystem");
    }
    if bq_server.is_some() {
        oracle["destination"] = json!("bigquery");
    }
    if let Some(database) = &sf_db {
        oracle["destination"] = json!("snowflake");
        oracle["database"] = json!(database);
    }
    drop(pg_reader);
    drop(pg_db);
    if *target == Target::DuckDb {
        let docs = json!({
            "schema_docs_format_version": crate::schema_docs::FORMAT_VERSION,
            "case": name,
            "oracle": {"dlt-rs": env!("CARGO_PKG_VERSION")},
            "runs": schema_runs,
            "documents": schema_docs.into_value(),
        });
        fs::write(out_dir.join(crate::schema_docs::ACTUAL_FILE), crate::to_pretty_json(&docs) + "\n")?;
    }
    Ok(json!({
        "result_format_version": 1,
        "case": name,
        "oracle": oracle,
        "runs": results,
    }))
}

fn run_one(
    case_dir: &Path,
    run: &Value,
    destination: &Arc<dyn dlt::Destination>,
    pipelines: &Path,
) -> dlt::Result<dlt::LoadInfo> {
    let pname = run["pipeline_name"].as_str().unwrap_or("p");
    let dataset = run["dataset_name"].as_str().unwrap_or("ds");
    let mut p = dlt::pipeline(pname)
        .destination(destination.clone())
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

/// Run every case under `cases` into DuckDB and compare; returns the outcomes.
pub fn run_all(cases: &Path, keep: &Path, filter: Option<&str>) -> Result<Vec<CaseOutcome>> {
    run_all_on(cases, keep, filter, &Target::DuckDb)
}

/// Run every case under `cases` against `target` and compare; returns the outcomes.
pub fn run_all_on(cases: &Path, keep: &Path, filter: Option<&str>, target: &Target) -> Result<Vec<CaseOutcome>> {
    let dirs = find_cases(cases)?;
    if dirs.is_empty() {
        bail!("no cases (folders with case.json) under {}", cases.display());
    }
    let mut out = vec![];
    let mut deviations: Option<Result<Vec<crate::schema_docs::Deviation>>> = None;
    for d in dirs {
        let name = d.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if let Some(f) = filter
            && !name.contains(f)
        {
            continue;
        }
        let case_out = keep.join(&name);
        let result_path = case_out.join("result.json");
        let result = match run_case_on(&d, &case_out, target) {
            Ok(r) => r,
            // a filesystem case whose files cannot be mirrored (e.g. a NULL in a NOT NULL column)
            // is a failed case, not the end of the run
            Err(e) if matches!(target, Target::Filesystem | Target::Snowflake { .. } | Target::BigQuery) => {
                out.push(CaseOutcome { name, diffs: vec![format!("error: {e:#}")], result_path });
                continue;
            }
            Err(e) => return Err(e.context(format!("case {name}"))),
        };
        fs::write(&result_path, crate::to_pretty_json(&result) + "\n")?;
        let expected: Value = serde_json::from_str(&fs::read_to_string(d.join("expected.json"))?)?;
        let mut diffs = crate::compare(&expected, &result, &crate::CompareOptions::default());
        // the stored schema documents, where dlt's are recorded beside the case
        let expected_docs = d.join(crate::schema_docs::EXPECTED_FILE);
        if *target == Target::DuckDb && expected_docs.is_file() {
            let deviations = deviations.get_or_insert_with(|| load_deviations(cases));
            let deviations = deviations.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
            let expected = crate::schema_docs::read(&expected_docs)?;
            let actual = crate::schema_docs::read(&case_out.join(crate::schema_docs::ACTUAL_FILE))?;
            diffs.extend(crate::schema_docs::compare(&name, &expected, &actual, deviations));
        }
        out.push(CaseOutcome { name, diffs, result_path });
    }
    Ok(out)
}

/// The excused schema-document differences: DEVIATIONS.md in the cases folder or above it.
fn load_deviations(cases: &Path) -> Result<Vec<crate::schema_docs::Deviation>> {
    let cases = cases.canonicalize().with_context(|| format!("{}", cases.display()))?;
    let mut dir = Some(cases.as_path());
    while let Some(d) = dir {
        let f = d.join("DEVIATIONS.md");
        if f.is_file() {
            let text = fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            return crate::schema_docs::parse_deviations(&text).with_context(|| format!("{}", f.display()));
        }
        dir = d.parent();
    }
    bail!(
        "no DEVIATIONS.md in {} or above it (the cases have {} files, whose excused differences it lists)",
        cases.display(),
        crate::schema_docs::EXPECTED_FILE
    )
}
