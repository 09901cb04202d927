//! Interop with Python dlt 1.31: both tools run the same incremental merge pipeline on one
//! dataset, taking turns, and every run must leave the dataset dlt alone would leave.
//!
//! Each test runs four steps of one scenario (see [`steps`]) alternating Python dlt
//! (`tests/interop/dlt_side.py`, the interpreter from `DLT_TEST_DLT_PYTHON`, else the virtualenv
//! `cargo xtask test` installs into `<cache>/oracle`) and the `dlt` binary with the same pipeline
//! (name, dataset, resource, primary key, merge, incremental cursor and initial value), in one
//! order or the other, on Postgres (a fresh database per test) or DuckDB (a fresh file per test).
//! Each tool has its own working dir, which is either deleted before each of its runs (`fresh`:
//! the state must come back from the destination) or kept (`stale`: the destination is newer
//! than the tool's own state by then).
//!
//! After every run an independent reader (the `postgres` / `duckdb` crates) checks: the table's
//! rows exactly (computed here from the inputs with dlt's incremental rules), one
//! `_dlt_pipeline_state` row per state version with versions rising in load order, the stored
//! cursor (`last_value` as dlt encodes it, the number of boundary hashes), the tool's local
//! state equal to the newest stored one, `_dlt_loads` only for runs that loaded rows, and
//! `_dlt_version` untouched after the first run (every run has the same data shape, so no tool
//! may store a new schema version, nor a lower or conflicting one).
//!
//! Without Python dlt (or without PostgreSQL) the tests skip with a message; under `CI=true`
//! they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use base64::Engine;
use serde_json::{Value, json};

const PIPELINE_DATASET: &str = "interop";
const RESOURCE: &str = "items";
const CURSOR: &str = "updated";
/// Cursor step `n` is this many seconds (timestamps) or days (dates) after 2024-01-01.
const TS_STEP_SECS: i64 = 200;

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A prerequisite is missing: skip (return false) with a message, or fail under CI.
fn missing(what: &str) -> bool {
    if is_ci() {
        panic!("{what}; CI=true, so this fails (`cargo xtask test` installs and starts what the interop tests need)");
    }
    eprintln!("SKIP: {what}; run `cargo xtask test`");
    false
}

/// Python with dlt 1.31: `$DLT_TEST_DLT_PYTHON`, else `<cache>/oracle/bin/python`.
fn dlt_python() -> Option<PathBuf> {
    let p = match std::env::var_os("DLT_TEST_DLT_PYTHON").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = std::env::var_os("DLT_RS_CACHE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/dlt-rs")))?;
            cache.join("oracle/bin/python")
        }
    };
    if p.exists() {
        Some(p)
    } else {
        missing(&format!("Python dlt 1.31 not found at {} (DLT_TEST_DLT_PYTHON)", p.display()));
        None
    }
}

// ---------------------------------------------------------------------------------------------
// cursor kinds and input files

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// `"c00042"` strings in JSON lines.
    Str,
    /// integers in JSON lines.
    Int,
    /// ISO timestamp strings in JSON lines (stored as plain strings in the state).
    TsJson,
    /// `timestamp[us, UTC]` in parquet (dlt's Arrow path: a datetime in the state).
    TsParquet,
    /// `date32` in parquet (a date in the state).
    Date,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Str => "string",
            Kind::Int => "integer",
            Kind::TsJson => "ts_json",
            Kind::TsParquet => "ts_parquet",
            Kind::Date => "date",
        }
    }
    fn parquet(self) -> bool {
        matches!(self, Kind::TsParquet | Kind::Date)
    }
    fn timestamp(n: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(base_epoch() + n * TS_STEP_SECS, 0).expect("in range")
    }
    fn date(n: i64) -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("valid") + chrono::Days::new(n as u64)
    }
    /// The cursor of step `n` in a JSON line.
    fn json(self, n: i64) -> Value {
        match self {
            Kind::Str => json!(format!("c{n:05}")),
            Kind::Int => json!(n),
            Kind::TsJson => json!(Self::timestamp(n).format("%Y-%m-%dT%H:%M:%S+00:00").to_string()),
            Kind::TsParquet | Kind::Date => unreachable!("parquet kinds are written as Arrow"),
        }
    }
    /// The cursor column as the reader's SQL renders it (same text on Postgres and DuckDB).
    fn sql(self) -> String {
        match self {
            Kind::Str => CURSOR.to_string(),
            Kind::Int | Kind::Date => format!("CAST({CURSOR} AS TEXT)"),
            Kind::TsJson | Kind::TsParquet => format!("CAST(CAST(EXTRACT(EPOCH FROM {CURSOR}) AS BIGINT) AS TEXT)"),
        }
    }
    /// What [`Kind::sql`] gives for step `n`.
    fn sql_text(self, n: i64) -> String {
        match self {
            Kind::Str => format!("c{n:05}"),
            Kind::Int => n.to_string(),
            Kind::TsJson | Kind::TsParquet => (base_epoch() + n * TS_STEP_SECS).to_string(),
            Kind::Date => Self::date(n).format("%Y-%m-%d").to_string(),
        }
    }
    /// `last_value` of step `n` as dlt stores it in the state JSON: str and int values as they
    /// are, datetimes and dates (Arrow cursors) with dlt's type tags U+F027 / U+F028.
    fn state_value(self, n: i64) -> Value {
        match self {
            Kind::Str | Kind::Int | Kind::TsJson => self.json(n),
            Kind::TsParquet => json!(format!("\u{f027}{}", Self::timestamp(n).format("%Y-%m-%dT%H:%M:%S+00:00"))),
            Kind::Date => json!(format!("\u{f028}{}", Self::date(n).format("%Y-%m-%d"))),
        }
    }
    /// `initial_value` (step 0) in the dlt-rs pipeline file: a TOML string, integer, offset
    /// date-time or local date, as a dlt user would write `str`, `int`, `datetime` or `date`.
    fn toml_initial(self) -> String {
        match self {
            Kind::Str | Kind::TsJson => format!("\"{}\"", self.json(0).as_str().expect("str")),
            Kind::Int => "0".into(),
            Kind::TsParquet => Self::timestamp(0).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            Kind::Date => Self::date(0).format("%Y-%m-%d").to_string(),
        }
    }
    /// `initial_value` (step 0) for the Python side: (value, Python type).
    fn py_initial(self) -> (Value, &'static str) {
        match self {
            Kind::Str | Kind::TsJson => (self.json(0), "str"),
            Kind::Int => (json!(0), "int"),
            Kind::TsParquet => (json!(Self::timestamp(0).format("%Y-%m-%dT%H:%M:%S+00:00").to_string()), "datetime"),
            Kind::Date => (json!(Self::date(0).format("%Y-%m-%d").to_string()), "date"),
        }
    }
}

fn base_epoch() -> i64 {
    chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
        .expect("valid")
        .and_hms_opt(0, 0, 0)
        .expect("valid")
        .and_utc()
        .timestamp()
}

#[derive(Clone, Debug, PartialEq)]
struct Row {
    id: i64,
    payload: String,
    /// cursor step
    n: i64,
}

fn row(id: i64, payload: impl Into<String>, n: i64) -> Row {
    Row { id, payload: payload.into(), n }
}

/// The scenario's four inputs:
/// 1. rows 1..=60;
/// 2. rows 40..=59 changed with newer cursors and 61..=100 new; also rows 30..=39 with changed
///    payloads but their old cursors (below the stored cursor: must be skipped) and row 60 at the
///    stored cursor (a boundary duplicate: must be skipped);
/// 3. the same file again: nothing new (an empty run);
/// 4. rows 95..=110 with newer cursors, row 59 at the stored cursor (a boundary duplicate) and
///    row 111 at the stored cursor but not seen before (must be loaded).
fn steps() -> [Vec<Row>; 4] {
    let run1: Vec<Row> = (1..=60).map(|i| row(i, format!("a{i}"), i)).collect();
    let mut run2: Vec<Row> = (30..=39).map(|i| row(i, format!("stale{i}"), i)).collect();
    run2.extend((40..=59).map(|i| row(i, format!("b{i}"), 100 + i)));
    run2.push(row(60, "stale60", 60));
    run2.extend((61..=100).map(|i| row(i, format!("b{i}"), i)));
    let run3 = run2.clone();
    let mut run4: Vec<Row> = vec![row(59, "stale59", 159)];
    run4.extend((95..=110).map(|i| row(i, format!("d{i}"), 200 + i)));
    run4.push(row(111, "d111", 159));
    [run1, run2, run3, run4]
}

/// Write one step's input; returns its path.
fn write_input(dir: &Path, step: usize, kind: Kind, rows: &[Row]) -> PathBuf {
    if !kind.parquet() {
        let path = dir.join(format!("step{step}.jsonl"));
        let mut text = String::new();
        for r in rows {
            text.push_str(&json!({"id": r.id, "payload": r.payload, CURSOR: kind.json(r.n)}).to_string());
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        return path;
    }
    let path = dir.join(format!("step{step}.parquet"));
    let (cursor_type, cursor): (DataType, ArrayRef) = match kind {
        Kind::TsParquet => (
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Arc::new(
                TimestampMicrosecondArray::from(
                    rows.iter().map(|r| Kind::timestamp(r.n).timestamp_micros()).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
        ),
        Kind::Date => {
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
            (
                DataType::Date32,
                Arc::new(Date32Array::from(
                    rows.iter().map(|r| (Kind::date(r.n) - epoch).num_days() as i32).collect::<Vec<_>>(),
                )),
            )
        }
        _ => unreachable!(),
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("payload", DataType::Utf8, false),
        Field::new(CURSOR, cursor_type, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(rows.iter().map(|r| r.id).collect::<Vec<_>>())),
            Arc::new(StringArray::from(rows.iter().map(|r| r.payload.as_str()).collect::<Vec<_>>())),
            cursor,
        ],
    )
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// the expected dataset: dlt's incremental (max, closed start, boundary dedup by primary key)
// followed by a delete-insert merge on `id`

#[derive(Default)]
struct Model {
    table: BTreeMap<i64, Row>,
    /// stored cursor step and the ids with exactly that cursor (dlt's `unique_hashes`)
    last: Option<i64>,
    boundary: BTreeSet<i64>,
    loads: usize,
}

impl Model {
    /// Apply one run; returns how many rows it loads.
    fn apply(&mut self, rows: &[Row]) -> usize {
        let passed: Vec<&Row> = rows
            .iter()
            .filter(|r| match self.last {
                // initial_value is step 0: every row is at or after it
                None => r.n >= 0,
                Some(last) => r.n > last || (r.n == last && !self.boundary.contains(&r.id)),
            })
            .collect();
        if passed.is_empty() {
            return 0;
        }
        let max = passed.iter().map(|r| r.n).max().expect("not empty");
        let at_max = passed.iter().filter(|r| r.n == max).map(|r| r.id);
        match self.last {
            Some(last) if last == max => self.boundary.extend(at_max),
            _ => {
                self.last = Some(max);
                self.boundary = at_max.collect();
            }
        }
        for r in &passed {
            self.table.insert(r.id, (*r).clone());
        }
        self.loads += 1;
        passed.len()
    }
}

// ---------------------------------------------------------------------------------------------
// destinations and the independent reader

enum Dest {
    Postgres { db: String, url: String },
    DuckDb { path: PathBuf },
}

fn pg_admin_url() -> String {
    std::env::var("DLT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into())
}

impl Dest {
    /// A fresh Postgres database named after the test; None (skip) without a server under !CI.
    fn postgres(test: &str) -> Option<Dest> {
        let admin = pg_admin_url();
        let mut c = match postgres::Client::connect(&admin, postgres::NoTls) {
            Ok(c) => c,
            Err(e) => {
                missing(&format!("PostgreSQL is not reachable at {admin}: {e}"));
                return None;
            }
        };
        let db = format!("iop_{test}_{}", std::process::id());
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
        let url = format!("{}/{db}", &admin[..admin.rfind('/').expect("a database in the URL")]);
        Some(Dest::Postgres { db, url })
    }

    fn name(&self) -> &'static str {
        match self {
            Dest::Postgres { .. } => "postgres",
            Dest::DuckDb { .. } => "duckdb",
        }
    }

    fn credentials(&self) -> String {
        match self {
            Dest::Postgres { url, .. } => url.clone(),
            Dest::DuckDb { path } => path.display().to_string(),
        }
    }

    /// Rows of `sql` (every column selected as text), or the reader's error.
    fn query(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        match self {
            Dest::Postgres { url, .. } => {
                let mut c = postgres::Client::connect(url, postgres::NoTls).map_err(|e| e.to_string())?;
                let rows = c.query(sql, &[]).map_err(|e| format!("{sql}: {e}"))?;
                Ok(rows.iter().map(|r| (0..r.len()).map(|i| r.get::<_, Option<String>>(i)).collect()).collect())
            }
            Dest::DuckDb { path } => {
                let c = duckdb::Connection::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
                let mut stmt = c.prepare(sql).map_err(|e| format!("{sql}: {e}"))?;
                let rows = stmt
                    .query_map([], |r| {
                        (0..r.as_ref().column_count())
                            .map(|i| r.get::<_, Option<String>>(i))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(|e| format!("{sql}: {e}"))?;
                rows.collect::<Result<Vec<_>, _>>().map_err(|e| format!("{sql}: {e}"))
            }
        }
    }
}

impl Drop for Dest {
    fn drop(&mut self) {
        if let Dest::Postgres { db, .. } = self
            && let Ok(mut a) = postgres::Client::connect(&pg_admin_url(), postgres::NoTls)
        {
            let _ = a.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the two tools

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tool {
    Dlt,
    Rs,
}

impl Tool {
    fn label(self) -> &'static str {
        match self {
            Tool::Dlt => "Python dlt",
            Tool::Rs => "dlt-rs",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum WorkDir {
    /// the tool's working dir is deleted before each of its runs
    Fresh,
    /// the tool keeps its working dir between its runs
    Stale,
}

struct Scenario {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    python: PathBuf,
    dest: Dest,
    kind: Kind,
    pipeline: String,
}

impl Scenario {
    /// A temp root for the tools' dirs and inputs; None (skip) without a destination or dlt.
    fn new(dest: Option<Dest>, kind: Kind) -> Option<Scenario> {
        let dest = dest?;
        let python = dlt_python()?;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        std::fs::create_dir_all(root.join("inputs")).unwrap();
        Some(Scenario { _tmp: tmp, root, python, dest, kind, pipeline: format!("interop_{}", kind.name()) })
    }

    /// Write one step's input file.
    fn input(&self, step: usize, rows: &[Row]) -> PathBuf {
        write_input(&self.root.join("inputs"), step, self.kind, rows)
    }

    /// The `dlt` binary with the destination's credentials, run from dlt-rs' project dir.
    fn rs_command(&self, args: &[&str]) -> Command {
        let project = self.root.join("rs-project");
        std::fs::create_dir_all(&project).unwrap();
        let var = format!("DESTINATION__{}__CREDENTIALS", self.dest.name().to_uppercase());
        let mut c = Command::new(env!("CARGO_BIN_EXE_dlt"));
        c.current_dir(&project)
            .args(args)
            .env("DLT_DATA_DIR", self.rs_data())
            .env(var, self.dest.credentials())
            .env_remove("DLT_FAULT");
        c
    }

    /// dlt-rs' data dir (`DLT_DATA_DIR`; its working dir is `pipelines/<name>` in there).
    fn rs_data(&self) -> PathBuf {
        self.root.join("rs-data")
    }
    /// Python dlt's `pipelines_dir` (its working dir is `<name>` in there).
    fn py_pipelines(&self) -> PathBuf {
        self.root.join("py-pipelines")
    }
    fn local_state_file(&self, tool: Tool) -> PathBuf {
        match tool {
            Tool::Rs => self.rs_data().join("pipelines").join(&self.pipeline).join("state.json"),
            Tool::Dlt => self.py_pipelines().join(&self.pipeline).join("state.json"),
        }
    }

    fn run(&self, tool: Tool, input: &Path, workdir: WorkDir) -> Output {
        let wd = match tool {
            Tool::Rs => self.rs_data(),
            Tool::Dlt => self.py_pipelines(),
        };
        if workdir == WorkDir::Fresh && wd.exists() {
            std::fs::remove_dir_all(&wd).unwrap();
        }
        match tool {
            Tool::Rs => self.run_rs(input),
            Tool::Dlt => self.run_dlt(input),
        }
    }

    fn run_rs(&self, input: &Path) -> Output {
        let project = self.root.join("rs-project");
        std::fs::create_dir_all(&project).unwrap();
        let toml = format!(
            "[pipeline]\nname = \"{name}\"\ndestination = \"{dest}\"\ndataset_name = \"{PIPELINE_DATASET}\"\n\n\
             [source]\ntype = \"files\"\n\n\
             [[source.resources]]\nname = \"{RESOURCE}\"\npath = \"{input}\"\nprimary_key = \"id\"\nwrite_disposition = \"merge\"\n\n\
             [source.resources.incremental]\ncursor_path = \"{CURSOR}\"\ninitial_value = {initial}\n",
            name = self.pipeline,
            dest = self.dest.name(),
            input = input.display(),
            initial = self.kind.toml_initial(),
        );
        std::fs::write(project.join("pipeline.toml"), toml).unwrap();
        self.rs_command(&["run", "pipeline.toml"]).output().unwrap()
    }

    fn run_dlt(&self, input: &Path) -> Output {
        let cwd = self.root.join("py-cwd");
        std::fs::create_dir_all(&cwd).unwrap();
        let (initial, initial_type) = self.kind.py_initial();
        let spec = json!({
            "pipeline_name": self.pipeline,
            "pipelines_dir": self.py_pipelines(),
            "destination": self.dest.name(),
            "credentials": self.dest.credentials(),
            "dataset_name": PIPELINE_DATASET,
            "resource": RESOURCE,
            "primary_key": "id",
            "cursor_path": CURSOR,
            "initial_value": initial,
            "initial_value_type": initial_type,
            "input": input,
        });
        let spec_path = cwd.join("spec.json");
        std::fs::write(&spec_path, spec.to_string()).unwrap();
        let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/dlt_side.py");
        Command::new(&self.python)
            .current_dir(&cwd)
            .arg(driver)
            .arg(&spec_path)
            .env("RUNTIME__DLTHUB_TELEMETRY", "false")
            .env("DLT_DATA_DIR", self.root.join("py-data"))
            .env_remove("DESTINATION__POSTGRES__CREDENTIALS")
            .env_remove("DESTINATION__DUCKDB__CREDENTIALS")
            .output()
            .unwrap()
    }
}

/// The line of a failed run's stderr that names the error: dlt-rs' `ERROR:` (or clap's
/// `error:`) line, the last line of a Python traceback's exception, else the last line.
fn error_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if let Some(l) = lines.iter().find(|l| l.starts_with("ERROR:") || l.starts_with("error:")) {
        return l.to_string();
    }
    // dlt's PipelineStepFailed ends with `<class 'the.Exception'>` and its message
    if let Some(i) = lines.iter().rposition(|l| l.starts_with("<class '")) {
        return lines[i..(i + 2).min(lines.len())].join(" ");
    }
    let exception = |l: &&&str| {
        l.split_once(": ").is_some_and(|(head, _)| {
            !head.contains(' ') && (head.ends_with("Error") || head.ends_with("Exception") || head.ends_with("Failed"))
        })
    };
    lines.iter().rev().find(exception).or(lines.last()).map(|l| l.to_string()).unwrap_or_default()
}

fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `_dlt_pipeline_state.state`: base64(zlib(JSON)).
fn decode_state(s: &str) -> Result<Value, String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s.trim()).map_err(|e| format!("not base64: {e}"))?;
    let mut json = String::new();
    flate2::read::ZlibDecoder::new(&bytes[..]).read_to_string(&mut json).map_err(|e| format!("not zlib: {e}"))?;
    serde_json::from_str(&json).map_err(|e| format!("not JSON: {e}"))
}

/// Run the scenario with `tools[i]` doing run `i + 1`; panics with the first check that fails.
fn scenario(dest: Option<Dest>, kind: Kind, tools: [Tool; 4], workdir: WorkDir) {
    let Some(s) = Scenario::new(dest, kind) else { return };
    let mut model = Model::default();
    let mut schema_after_first = None;
    for (i, rows) in steps().iter().enumerate() {
        let step = i + 1;
        let tool = tools[i];
        let ctx = format!(
            "run {step} ({}, {:?} working dir, {} on {}, order {})",
            tool.label(),
            workdir,
            kind.name(),
            s.dest.name(),
            tools.iter().map(|t| t.label()).collect::<Vec<_>>().join(" → ")
        );
        let input = s.input(step, rows);
        let loaded = model.apply(rows);
        succeeded(&ctx, &s.run(tool, &input, workdir));
        verify(&s, &model, &ctx, tool, loaded, &mut schema_after_first);
    }
}

/// `dlt pipeline NAME sync --destination D --dataset-name DS` with no working dir restores what
/// Python dlt stored (state with its typed values, schema), and dlt-rs carries on from there.
fn sync_restores(dest: Option<Dest>, kind: Kind) {
    let Some(s) = Scenario::new(dest, kind) else { return };
    let steps = steps();
    let mut model = Model::default();
    let mut schema_after_first = None;
    for (i, rows) in steps[..2].iter().enumerate() {
        let ctx = format!("run {} (Python dlt before the sync, {} on {})", i + 1, kind.name(), s.dest.name());
        let loaded = model.apply(rows);
        succeeded(&ctx, &s.run(Tool::Dlt, &s.input(i + 1, rows), WorkDir::Stale));
        verify(&s, &model, &ctx, Tool::Dlt, loaded, &mut schema_after_first);
    }
    let ctx =
        format!("`dlt pipeline {} sync` without a working dir ({} on {})", s.pipeline, kind.name(), s.dest.name());
    let out = s
        .rs_command(&[
            "-y",
            "pipeline",
            &s.pipeline,
            "sync",
            "--destination",
            s.dest.name(),
            "--dataset-name",
            PIPELINE_DATASET,
        ])
        .output()
        .unwrap();
    succeeded(&ctx, &out);
    verify(&s, &model, &ctx, Tool::Rs, 0, &mut schema_after_first);
    for (i, rows) in steps.iter().enumerate().skip(2) {
        let ctx = format!("run {} (dlt-rs after the sync, {} on {})", i + 1, kind.name(), s.dest.name());
        let loaded = model.apply(rows);
        succeeded(&ctx, &s.run(Tool::Rs, &s.input(i + 1, rows), WorkDir::Stale));
        verify(&s, &model, &ctx, Tool::Rs, loaded, &mut schema_after_first);
    }
}

fn succeeded(ctx: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{ctx}: the run failed ({}): {}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        error_line(&out.stderr),
        tail(&out.stdout, 20),
        tail(&out.stderr, 40)
    );
}

type Rows = Vec<Vec<Option<String>>>;

/// `_dlt_version` (version, hash) rows after run 1, and the newest schema document then.
type SchemaSeen = (Vec<(i64, String)>, String);

/// The checks after every run: `model` is the expected dataset, `tool` the one that just ran
/// (its local state is compared), `loaded` how many rows the run should have loaded.
fn verify(
    s: &Scenario,
    model: &Model,
    ctx: &str,
    tool: Tool,
    loaded: usize,
    schema_after_first: &mut Option<SchemaSeen>,
) {
    let kind = s.kind;
    let check = |what: &str, r: Result<Rows, String>| -> Rows {
        r.unwrap_or_else(|e| panic!("{ctx}: cannot read {what}: {e}"))
    };
    let ds = PIPELINE_DATASET;

    // 1. the table, row by row
    let got = check(
        "the table",
        s.dest.query(&format!(
            "SELECT CAST(id AS TEXT) AS id_text, payload, {} AS cursor_text FROM {ds}.{RESOURCE} ORDER BY id",
            kind.sql()
        )),
    );
    let want: Vec<Vec<Option<String>>> = model
        .table
        .values()
        .map(|r| vec![Some(r.id.to_string()), Some(r.payload.clone()), Some(kind.sql_text(r.n))])
        .collect();
    if got != want {
        let first = want
            .iter()
            .zip(&got)
            .find(|(w, g)| w != g)
            .map(|(w, g)| format!("first difference: expected {w:?}, got {g:?}"))
            .unwrap_or_default();
        panic!(
            "{ctx}: {RESOURCE} has {} rows, expected {} (this run should load {loaded}); {first}",
            got.len(),
            want.len()
        );
    }

    // 2. loads: one per run that loaded rows
    let loads = check("_dlt_loads", s.dest.query(&format!("SELECT CAST(count(*) AS TEXT) FROM {ds}._dlt_loads")));
    let loads = loads[0][0].clone().unwrap_or_default();
    assert!(
        loads == model.loads.to_string(),
        "{ctx}: _dlt_loads has {loads} rows, expected {} (this run should load {loaded} rows; an empty run adds none)",
        model.loads
    );

    // 3. pipeline state: one row per version, versions rising in load order, one per load
    let states = check(
            "_dlt_pipeline_state",
            s.dest.query(&format!(
                "SELECT CAST(version AS TEXT) AS version_text, state, version_hash, _dlt_load_id FROM {ds}._dlt_pipeline_state \
                 WHERE pipeline_name = '{}' ORDER BY _dlt_load_id, version",
                s.pipeline
            )),
        );
    let versions: Vec<i64> = states.iter().map(|r| r[0].as_deref().unwrap_or("").parse().unwrap_or(-1)).collect();
    let mut seen = BTreeSet::new();
    let dup = versions.iter().find(|v| !seen.insert(**v));
    assert!(
        dup.is_none(),
        "{ctx}: _dlt_pipeline_state has state version {} more than once: {versions:?}",
        dup.unwrap()
    );
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "{ctx}: _dlt_pipeline_state versions do not rise in load order: {versions:?}"
    );
    assert!(
        states.len() == model.loads,
        "{ctx}: _dlt_pipeline_state has {} rows (versions {versions:?}), expected one per load: {}",
        states.len(),
        model.loads
    );

    // 4. the stored cursor
    let newest = states.iter().max_by_key(|r| r[0].as_deref().unwrap_or("").parse::<i64>().unwrap_or(-1));
    let newest = newest.unwrap_or_else(|| panic!("{ctx}: no _dlt_pipeline_state row"));
    let state = decode_state(newest[1].as_deref().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{ctx}: stored state version {versions:?} cannot be decoded: {e}"));
    let inc = &state["sources"][&s.pipeline]["resources"][RESOURCE]["incremental"][CURSOR];
    let want_last = kind.state_value(model.last.expect("run 1 loads"));
    assert!(
        inc["last_value"] == want_last,
        "{ctx}: stored last_value is {}, expected {want_last} (sources.{}.resources.{RESOURCE}.incremental.{CURSOR} \
             of state version {versions:?}; the whole entry: {inc})",
        inc["last_value"],
        s.pipeline
    );
    let hashes = inc["unique_hashes"].as_array().map(Vec::len);
    assert!(
        hashes == Some(model.boundary.len()),
        "{ctx}: stored unique_hashes has {hashes:?} entries, expected {} (ids {:?} are at the cursor; the whole entry: {inc})",
        model.boundary.len(),
        model.boundary
    );

    // 5. the tool's local state is the newest stored one
    let local_path = s.local_state_file(tool);
    let local = std::fs::read_to_string(&local_path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .unwrap_or_else(|| panic!("{ctx}: no readable local state at {}", local_path.display()));
    let newest_version: i64 = newest[0].as_deref().unwrap_or("").parse().unwrap_or(-1);
    let local_version = (local["_state_version"].as_i64(), local["_version_hash"].as_str());
    assert!(
        local_version == (Some(newest_version), newest[2].as_deref()),
        "{ctx}: the local state (_state_version, _version_hash) is {local_version:?}, the newest stored one is \
             ({newest_version}, {:?})",
        newest[2]
    );

    // 6. schema versions: every run has the same data shape, so after run 1 nobody stores a
    //    new one; in insertion order they never go down, and a version has one hash
    let stored = check(
        "_dlt_version",
        s.dest.query(&format!(
            "SELECT CAST(version AS TEXT) AS version_text, version_hash, schema FROM {ds}._dlt_version \
             WHERE schema_name = '{}' ORDER BY inserted_at, version",
            s.pipeline
        )),
    );
    let schema: Vec<(i64, String)> = stored
        .iter()
        .map(|r| (r[0].as_deref().unwrap_or("").parse().unwrap_or(-1), r[1].clone().unwrap_or_default()))
        .collect();
    let sv: Vec<i64> = schema.iter().map(|(v, _)| *v).collect();
    assert!(sv.windows(2).all(|w| w[0] <= w[1]), "{ctx}: _dlt_version versions go down: {schema:?}");
    let mut by_version: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
    for (v, h) in &schema {
        by_version.entry(*v).or_default().insert(h);
    }
    if let Some((v, hashes)) = by_version.iter().find(|(_, h)| h.len() > 1) {
        panic!("{ctx}: _dlt_version has schema version {v} with different hashes {hashes:?}");
    }
    match schema_after_first {
        None => {
            assert!(!schema.is_empty(), "{ctx}: no _dlt_version row for schema {}", s.pipeline);
            *schema_after_first = Some((schema, stored.last().and_then(|r| r[2].clone()).unwrap_or_default()));
        }
        Some((first, first_doc)) => {
            if &schema != first {
                let parse = |t: &str| serde_json::from_str::<Value>(t).unwrap_or(Value::Null);
                let newest = stored.last().and_then(|r| r[2].as_deref()).unwrap_or("");
                // what changed besides the version bookkeeping
                let content = |t: &str| {
                    let mut v = parse(t);
                    if let Some(m) = v.as_object_mut() {
                        for k in ["version", "version_hash", "previous_hashes"] {
                            m.remove(k);
                        }
                    }
                    v
                };
                let mut diffs = vec![];
                json_diff(&content(first_doc), &content(newest), "$", &mut diffs);
                panic!(
                    "{ctx}: the schema version changed although the data shape did not: _dlt_version (version, hash) \
                     was {first:?} after run 1, now {schema:?}; the newest stored schema differs from run 1's at: {}",
                    diffs.join("; ")
                );
            }
        }
    }
}

/// Where two JSON documents differ (at most 12 places), as `path: a → b`.
fn json_diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    if out.len() >= 12 || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (va, vb) = (x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null));
                json_diff(va, vb, &format!("{path}.{k}"), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                json_diff(va, vb, &format!("{path}[{i}]"), out);
            }
        }
        _ => {
            let short = |v: &Value| {
                let t = v.to_string();
                if t.chars().count() > 80 { format!("{}…", t.chars().take(80).collect::<String>()) } else { t }
            };
            out.push(format!("{path}: {} → {}", short(a), short(b)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the cases: destination × cursor kind × order × working dir

const DLT_FIRST: [Tool; 4] = [Tool::Dlt, Tool::Rs, Tool::Dlt, Tool::Rs];
const RS_FIRST: [Tool; 4] = [Tool::Rs, Tool::Dlt, Tool::Rs, Tool::Dlt];
const DLT_ONLY: [Tool; 4] = [Tool::Dlt; 4];
const RS_ONLY: [Tool; 4] = [Tool::Rs; 4];

fn postgres(test: &str) -> Option<Dest> {
    Dest::postgres(test)
}

/// A DuckDB file in its own temp dir (kept alive by the returned guard).
fn duckdb_file() -> (tempfile::TempDir, Option<Dest>) {
    let dir = tempfile::tempdir().unwrap();
    // not named after the dataset: DuckDB's catalog (the file stem) and a schema of the same
    // name make unqualified references ambiguous
    let path = dir.path().join("dest.duckdb");
    (dir, Some(Dest::DuckDb { path }))
}

macro_rules! cases {
    ($($name:ident: $dest:ident, $kind:ident, $order:ident, $wd:ident;)*) => {$(
        #[test]
        fn $name() {
            match stringify!($dest) {
                "postgres" => scenario(postgres(stringify!($name)), Kind::$kind, $order, WorkDir::$wd),
                _ => {
                    let (_dir, dest) = duckdb_file();
                    scenario(dest, Kind::$kind, $order, WorkDir::$wd)
                }
            }
        }
    )*};
}

cases! {
    // Python dlt alone and dlt-rs alone: the model above is dlt's behaviour, and dlt-rs meets it
    // without the other tool
    control_postgres_string_dlt_only: postgres, Str, DLT_ONLY, Stale;
    control_postgres_integer_dlt_only: postgres, Int, DLT_ONLY, Stale;
    control_postgres_ts_json_dlt_only: postgres, TsJson, DLT_ONLY, Stale;
    control_postgres_ts_parquet_dlt_only: postgres, TsParquet, DLT_ONLY, Stale;
    control_postgres_date_dlt_only: postgres, Date, DLT_ONLY, Stale;
    control_postgres_string_dlt_only_fresh: postgres, Str, DLT_ONLY, Fresh;
    control_postgres_string_rs_only: postgres, Str, RS_ONLY, Stale;
    control_postgres_integer_rs_only: postgres, Int, RS_ONLY, Stale;
    control_postgres_ts_json_rs_only: postgres, TsJson, RS_ONLY, Stale;
    control_postgres_ts_parquet_rs_only: postgres, TsParquet, RS_ONLY, Stale;
    control_postgres_date_rs_only: postgres, Date, RS_ONLY, Stale;
    control_postgres_string_rs_only_fresh: postgres, Str, RS_ONLY, Fresh;

    postgres_string_dlt_first_fresh: postgres, Str, DLT_FIRST, Fresh;
    postgres_string_dlt_first_stale: postgres, Str, DLT_FIRST, Stale;
    postgres_string_rs_first_fresh: postgres, Str, RS_FIRST, Fresh;
    postgres_string_rs_first_stale: postgres, Str, RS_FIRST, Stale;
    postgres_integer_dlt_first_fresh: postgres, Int, DLT_FIRST, Fresh;
    postgres_integer_dlt_first_stale: postgres, Int, DLT_FIRST, Stale;
    postgres_integer_rs_first_fresh: postgres, Int, RS_FIRST, Fresh;
    postgres_integer_rs_first_stale: postgres, Int, RS_FIRST, Stale;
    postgres_ts_json_dlt_first_fresh: postgres, TsJson, DLT_FIRST, Fresh;
    postgres_ts_json_dlt_first_stale: postgres, TsJson, DLT_FIRST, Stale;
    postgres_ts_json_rs_first_fresh: postgres, TsJson, RS_FIRST, Fresh;
    postgres_ts_json_rs_first_stale: postgres, TsJson, RS_FIRST, Stale;
    postgres_ts_parquet_dlt_first_fresh: postgres, TsParquet, DLT_FIRST, Fresh;
    postgres_ts_parquet_dlt_first_stale: postgres, TsParquet, DLT_FIRST, Stale;
    postgres_ts_parquet_rs_first_fresh: postgres, TsParquet, RS_FIRST, Fresh;
    postgres_ts_parquet_rs_first_stale: postgres, TsParquet, RS_FIRST, Stale;
    postgres_date_dlt_first_fresh: postgres, Date, DLT_FIRST, Fresh;
    postgres_date_dlt_first_stale: postgres, Date, DLT_FIRST, Stale;
    postgres_date_rs_first_fresh: postgres, Date, RS_FIRST, Fresh;
    postgres_date_rs_first_stale: postgres, Date, RS_FIRST, Stale;

    duckdb_string_dlt_first_fresh: duckdb, Str, DLT_FIRST, Fresh;
    duckdb_string_dlt_first_stale: duckdb, Str, DLT_FIRST, Stale;
    duckdb_string_rs_first_fresh: duckdb, Str, RS_FIRST, Fresh;
    duckdb_string_rs_first_stale: duckdb, Str, RS_FIRST, Stale;
    duckdb_integer_dlt_first_fresh: duckdb, Int, DLT_FIRST, Fresh;
    duckdb_integer_dlt_first_stale: duckdb, Int, DLT_FIRST, Stale;
    duckdb_integer_rs_first_fresh: duckdb, Int, RS_FIRST, Fresh;
    duckdb_integer_rs_first_stale: duckdb, Int, RS_FIRST, Stale;
    duckdb_ts_json_dlt_first_fresh: duckdb, TsJson, DLT_FIRST, Fresh;
    duckdb_ts_json_dlt_first_stale: duckdb, TsJson, DLT_FIRST, Stale;
    duckdb_ts_json_rs_first_fresh: duckdb, TsJson, RS_FIRST, Fresh;
    duckdb_ts_json_rs_first_stale: duckdb, TsJson, RS_FIRST, Stale;
    duckdb_ts_parquet_dlt_first_fresh: duckdb, TsParquet, DLT_FIRST, Fresh;
    duckdb_ts_parquet_dlt_first_stale: duckdb, TsParquet, DLT_FIRST, Stale;
    duckdb_ts_parquet_rs_first_fresh: duckdb, TsParquet, RS_FIRST, Fresh;
    duckdb_ts_parquet_rs_first_stale: duckdb, TsParquet, RS_FIRST, Stale;
    duckdb_date_dlt_first_fresh: duckdb, Date, DLT_FIRST, Fresh;
    duckdb_date_dlt_first_stale: duckdb, Date, DLT_FIRST, Stale;
    duckdb_date_rs_first_fresh: duckdb, Date, RS_FIRST, Fresh;
    duckdb_date_rs_first_stale: duckdb, Date, RS_FIRST, Stale;
}

#[test]
fn sync_postgres_integer_restores_dlt_state() {
    sync_restores(postgres("sync_postgres_integer"), Kind::Int);
}

#[test]
fn sync_postgres_ts_parquet_restores_dlt_state() {
    sync_restores(postgres("sync_postgres_ts_parquet"), Kind::TsParquet);
}

#[test]
fn sync_duckdb_ts_parquet_restores_dlt_state() {
    let (_dir, dest) = duckdb_file();
    sync_restores(dest, Kind::TsParquet);
}
