//! The `run` and `pipeline` commands.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use dlt::dlt_core::package::{
    COMPLETED_JOBS, FAILED_JOBS, NEW_JOBS, PackageStage, list_files, list_jobs, read_package_state,
};
use dlt::dlt_core::pipeline::default_pipelines_dir;
use dlt::{Config, DestinationContext, Pipeline, PipelineFile, Progress};
use serde_json::{Value, json};

use crate::exit::{self, Failure};

/// `dlt run FILE`; a failure that leaves a load package pending carries the commands that
/// recover from it.
pub fn run(file: &Path, json_out: bool, no_progress: bool, refresh: Option<&str>, force: bool) -> Result<(), Failure> {
    let mut opened = None;
    run_file(file, json_out, no_progress, refresh, force, &mut opened).map_err(|error| {
        // only a package that is still there needs a way out (a hint mistake drops its package)
        let pending = exit::pending_package(&error).filter(|(_, id)| {
            opened.as_ref().is_some_and(|(_, wd): &(String, PathBuf)| {
                [PackageStage::Extracted, PackageStage::Normalized]
                    .into_iter()
                    .any(|st| stage_dir(wd, st).join(id).is_dir())
            })
        });
        let name = opened.as_ref().map(|(n, _)| n.clone());
        let recovery = match (&name, pending) {
            (Some(name), Some((_, _))) if exit::code(&error) != exit::TRANSIENT => {
                let f = file.display();
                vec![
                    format!("dlt pipeline {name} failed-jobs"),
                    format!("dlt pipeline {name} drop-pending-packages"),
                    format!("dlt run {f} --refresh drop_resources"),
                ]
            }
            (Some(_), Some(_)) => vec![format!("dlt run {}", file.display())],
            _ => vec![],
        };
        Failure { error, recovery }
    })
}

/// What `recovery` commands mean, printed after the error line.
pub fn explain_recovery(f: &Failure) {
    let Some((step, id)) = exit::pending_package(&f.error) else { return };
    if f.recovery.is_empty() {
        return;
    }
    if exit::code(&f.error) == exit::TRANSIENT {
        eprintln!(
            "The load package {id} is kept; the next run finishes it first. Run again when the server is reachable:"
        );
        eprintln!("  {}", f.recovery[0]);
        return;
    }
    eprintln!(
        "The load package {id} failed in the {step} step and stays pending: every run retries it before extracting anything new. To get out:"
    );
    let why = [
        "see which job failed and why",
        "or discard the package (its rows are not loaded), fix the cause, and run again",
        "if the fix changes a table's keys or types, start those tables over",
    ];
    for (cmd, why) in f.recovery.iter().zip(why) {
        eprintln!("  {cmd:<60} # {why}");
    }
}

fn run_file(
    file: &Path,
    json_out: bool,
    no_progress: bool,
    refresh: Option<&str>,
    force: bool,
    opened: &mut Option<(String, PathBuf)>,
) -> Result<()> {
    let refresh = match refresh {
        Some(r) => Some(
            dlt::Refresh::parse(r)
                .ok_or_else(|| anyhow!("unknown refresh mode `{r}` (drop_sources, drop_resources, drop_data)"))?,
        ),
        None => None,
    };
    let pf = PipelineFile::load(file)?;
    let registry = crate::registry();
    let progress: Option<Arc<dyn Progress>> = if !no_progress && !json_out && std::io::stderr().is_terminal() {
        Some(Arc::new(crate::progress::Bars::new()))
    } else {
        None
    };
    let mut pipeline = pf.pipeline(registry, progress)?;
    *opened = Some((pf.name.clone(), pipeline.working_dir().to_path_buf()));
    check_identity(&pipeline, &pf, file, force)?;
    remember_pipeline_file(&pipeline, file);
    // a source sets itself up (connects, reflects) as the extract step starts
    // a source sets itself up (connects, reflects) as the extract step starts; a configuration
    // mistake stays one
    let source = pf.source(registry, pipeline.config()).map_err(|e| match e {
        e @ dlt::Error::Config(_) => e,
        e => dlt::Error::StepFailed { step: dlt::Step::Extract, load_id: None, source: Box::new(e) },
    })?;
    let info = pipeline.run_with_refresh(source, refresh)?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print!("{info}");
        let total: u64 = info.row_counts.values().sum();
        println!("Normalized {total} row(s) in {} table(s):", info.row_counts.len());
        for (t, n) in &info.row_counts {
            println!("- {t}: {n} row(s)");
        }
    }
    Ok(())
}

/// Two projects that use one pipeline name share its state, schema and tables. A different
/// pipeline file that runs the pipeline with another source or destination is refused unless
/// `--force`; the same source and destination from another path (a moved project) is a note.
fn check_identity(pipeline: &Pipeline, pf: &PipelineFile, file: &Path, force: bool) -> Result<()> {
    let wd = pipeline.working_dir();
    let Ok(prev) = std::fs::read_to_string(wd.join("pipeline_file")) else { return Ok(()) };
    let prev = PathBuf::from(prev.trim());
    let cur = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    if prev == cur {
        return Ok(());
    }
    let source_type = |t: &toml::Table| t.get("type").and_then(|v| v.as_str()).unwrap_or("?").to_string();
    let (prev_dest, prev_source) = match PipelineFile::load(&prev) {
        Ok(p) => (Some(p.destination.clone()), Some(source_type(&p.source))),
        Err(_) => {
            let state = read_json(&wd.join("state.json")).unwrap_or(json!({}));
            (state.get("destination_name").and_then(Value::as_str).map(str::to_string), None)
        }
    };
    let (cur_dest, cur_source) = (pf.destination.clone(), source_type(&pf.source));
    let differs =
        prev_dest.as_ref().is_some_and(|d| *d != cur_dest) || prev_source.as_ref().is_some_and(|s| *s != cur_source);
    let name = &pf.name;
    let was = format!("{} -> {}", prev_source.as_deref().unwrap_or("?"), prev_dest.as_deref().unwrap_or("?"));
    if !differs {
        eprintln!("note: pipeline `{name}` was last run from {}; now from {}", prev.display(), cur.display());
        return Ok(());
    }
    if force {
        eprintln!(
            "WARNING: pipeline `{name}` was last run by {} ({was}); --force: {} ({cur_source} -> {cur_dest}) takes it over, with its state",
            prev.display(),
            cur.display()
        );
        return Ok(());
    }
    bail!(
        "pipeline `{name}` was last run by {} ({was}), and {} runs it with {cur_source} -> {cur_dest}: the two \
         would share one state and schema. Give this pipeline its own `name` in [pipeline], or pass --force to \
         take the pipeline over",
        prev.display(),
        cur.display()
    )
}

/// Keep the pipeline file's path so `dlt pipeline <name> drop|sync` can reopen the destination.
fn remember_pipeline_file(p: &Pipeline, file: &Path) {
    let abs = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let _ = std::fs::write(p.working_dir().join("pipeline_file"), abs.to_string_lossy().as_bytes());
}

#[derive(Args)]
pub struct PipelineArgs {
    /// List the pipelines in the pipelines dir.
    #[arg(short = 'l', long = "list-pipelines", visible_alias = "list")]
    list: bool,
    /// The pipelines dir (default: $DLT_DATA_DIR/pipelines).
    #[arg(long)]
    pipelines_dir: Option<PathBuf>,
    /// Pipeline name.
    name: Option<String>,
    #[command(subcommand)]
    op: Option<PipelineOp>,
}

#[derive(Subcommand)]
enum PipelineOp {
    /// State, schemas and packages of the pipeline.
    #[command(override_usage = "dlt pipeline <NAME> info")]
    Info,
    /// Print the default schema (YAML or JSON).
    #[command(override_usage = "dlt pipeline <NAME> schema [--format yaml|json]")]
    Schema {
        /// yaml or json.
        #[arg(long, default_value = "yaml")]
        format: String,
    },
    /// The last run's trace.
    #[command(override_usage = "dlt pipeline <NAME> trace")]
    Trace,
    /// Drop resources' tables and state.
    #[command(
        override_usage = "dlt pipeline <NAME> drop [RESOURCES]... [--drop-all] [--state-only] [--state-paths PATH...]"
    )]
    Drop {
        /// Resources to drop.
        resources: Vec<String>,
        /// Drop every resource.
        #[arg(long)]
        drop_all: bool,
        /// Reset the resources' state only; keep their tables.
        #[arg(long)]
        state_only: bool,
        /// Also remove these paths from the source state (dotted, e.g. resources.issues.incremental).
        #[arg(long, num_args = 1..)]
        state_paths: Vec<String>,
    },
    /// A load package's jobs (default: the newest).
    #[command(override_usage = "dlt pipeline <NAME> load-package [LOAD_ID]")]
    LoadPackage {
        /// Load id.
        load_id: Option<String>,
    },
    /// Jobs that failed in pending packages.
    #[command(override_usage = "dlt pipeline <NAME> failed-jobs")]
    FailedJobs,
    /// Drop the local state and restore it from the destination (also for a pipeline that
    /// has no working dir here: name its destination and dataset).
    #[command(override_usage = "dlt pipeline <NAME> sync [--destination DESTINATION] [--dataset-name DATASET]")]
    Sync {
        /// The destination to restore from (e.g. duckdb, postgres); default: the pipeline's.
        #[arg(long)]
        destination: Option<String>,
        /// The dataset to restore from; default: the pipeline's.
        #[arg(long)]
        dataset_name: Option<String>,
    },
    /// Python dlt's dashboard; not in dlt-rs yet (says what to use instead).
    #[command(hide = true)]
    Show,
    /// Delete packages that were not loaded (local: needs no destination credentials).
    #[command(override_usage = "dlt pipeline <NAME> drop-pending-packages")]
    DropPendingPackages,
}

fn pipelines_dir(args: &PipelineArgs) -> PathBuf {
    args.pipelines_dir.clone().unwrap_or_else(default_pipelines_dir)
}

pub fn pipeline(args: PipelineArgs, yes: bool, verbose: bool) -> Result<()> {
    let dir = pipelines_dir(&args);
    if args.list || args.name.is_none() {
        return list(&dir);
    }
    let name = args.name.clone().expect("checked");
    let wd = dir.join(&name);
    if let Some(PipelineOp::Sync { destination: Some(_), .. }) = &args.op {
        // restoring a pipeline that ran elsewhere: its working dir is made here
        std::fs::create_dir_all(&wd).with_context(|| format!("creating {}", wd.display()))?;
    } else if !wd.is_dir() {
        bail!(
            "pipeline `{name}` not found in {}; to restore it from its destination, run \
             `dlt pipeline {name} sync --destination DESTINATION --dataset-name DATASET`",
            dir.display()
        );
    }
    match args.op.unwrap_or(PipelineOp::Info) {
        PipelineOp::Info => info(&name, &wd, verbose),
        PipelineOp::Schema { format } => schema(&wd, &format),
        PipelineOp::Trace => trace(&wd),
        PipelineOp::LoadPackage { load_id } => load_package(&wd, load_id),
        PipelineOp::FailedJobs => failed_jobs(&wd),
        PipelineOp::Drop { resources, drop_all, state_only, state_paths } => {
            drop(&name, &dir, &wd, resources, drop_all, yes, dlt::DropOptions { state_only, state_paths })
        }
        PipelineOp::Sync { destination, dataset_name } => {
            sync(&name, &dir, &wd, yes, destination.as_deref(), dataset_name.as_deref())
        }
        PipelineOp::DropPendingPackages => {
            // local only: the destination is not needed (nor its credentials)
            let dropped = dlt::dlt_core::package::PackageStorage::open(&wd)?.drop_pending()?;
            println!("Dropped {} pending package(s)", dropped.len());
            Ok(())
        }
        PipelineOp::Show => bail!(
            "dlt-rs has no dashboard yet; use `dlt pipeline {name} info`, `dlt pipeline {name} schema`, \
             `dlt pipeline {name} trace` or `dlt pipeline {name} load-package`"
        ),
    }
}

fn read_json(p: &Path) -> Result<Value> {
    let s = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(serde_json::from_str(&s)?)
}

fn list(dir: &Path) -> Result<()> {
    let mut names = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().join("state.json").exists() || e.path().join("schemas").is_dir() {
                let mtime = e.path().join("state.json").metadata().and_then(|m| m.modified()).ok();
                names.push((e.file_name().to_string_lossy().to_string(), mtime));
            }
        }
    }
    names.sort();
    println!("{} pipelines found in {}", names.len(), dir.display());
    for (n, m) in names {
        match m {
            Some(t) => {
                let dt: chrono::DateTime<chrono::Local> = t.into();
                println!("{n} (last run: {})", dt.format("%Y-%m-%d %H:%M:%S"));
            }
            None => println!("{n}"),
        }
    }
    Ok(())
}

fn stage_dir(wd: &Path, st: PackageStage) -> PathBuf {
    match st {
        PackageStage::Extracted => wd.join("normalize/extracted"),
        PackageStage::Normalized => wd.join("load/normalized"),
        PackageStage::Loaded => wd.join("load/loaded"),
    }
}

fn package_ids(wd: &Path, st: PackageStage) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(stage_dir(wd, st))
        .map(|rd| {
            rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().to_string()).collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| dlt::dlt_core::package::cmp_load_ids(a, b));
    v
}

fn info(name: &str, wd: &Path, verbose: bool) -> Result<()> {
    println!("Found pipeline {name} in {}", wd.parent().unwrap_or(wd).display());
    let state = read_json(&wd.join("state.json")).unwrap_or(json!({}));
    println!("Synchronized state:");
    if let Value::Object(m) = &state {
        for (k, v) in m {
            if k == "_local" || k == "sources" {
                continue;
            }
            println!("{k}: {}", v);
        }
        if verbose {
            println!("sources: {}", serde_json::to_string_pretty(m.get("sources").unwrap_or(&json!({})))?);
        } else {
            println!("sources:\nAdd -v option to see sources state. Note that it could be large.");
        }
        println!("\nLocal state:");
        if let Some(Value::Object(l)) = m.get("_local") {
            for (k, v) in l {
                println!("{k}: {v}");
            }
        }
    }
    let schemas_dir = wd.join("schemas");
    if let Ok(rd) = std::fs::read_dir(&schemas_dir) {
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let s = dlt::Schema::from_str_any(&std::fs::read_to_string(&f)?)?;
            println!("\nResources in schema: {}", s.name);
            let mut resources: Vec<String> = s.tables.values().filter_map(|t| t.resource.clone()).collect();
            resources.dedup();
            for r in resources {
                if r.starts_with("_dlt") {
                    continue;
                }
                let tables = s.resource_tables(&r);
                println!("{r} with {} table(s)", tables.len());
                for t in tables {
                    let cols = s.tables.get(&t).map(|x| x.complete_columns().count()).unwrap_or(0);
                    println!("  - {t} ({cols} columns)");
                }
            }
        }
    }
    println!("\nWorking dir content:");
    for (st, label) in [
        (PackageStage::Extracted, "extracted (pending normalize)"),
        (PackageStage::Normalized, "normalized (pending load)"),
        (PackageStage::Loaded, "completed"),
    ] {
        let ids = package_ids(wd, st);
        if ids.is_empty() {
            continue;
        }
        println!("Has {} {label} load packages with following load ids:", ids.len());
        for id in ids {
            let dir = stage_dir(wd, st).join(&id);
            match read_package_state(&dir) {
                Ok(ps) if !ps.row_counts.is_empty() => {
                    let rows: Vec<String> = ps.row_counts.iter().map(|(t, n)| format!("{t}: {n}")).collect();
                    println!("{id} ({})", rows.join(", "));
                }
                _ => println!("{id}"),
            }
        }
    }
    if let Ok(p) = std::fs::read_to_string(wd.join("pipeline_file")) {
        println!("\nPipeline file: {p}");
    }
    destination_info(name, wd, &state);
    Ok(())
}

/// What the destination says about the dataset (a filesystem destination: the files a reader
/// sees, their size, Delta table versions). A destination that cannot be built or read is
/// reported, not an error of `info`.
fn destination_info(name: &str, wd: &Path, state: &Value) {
    let Some(dataset) = state.get("dataset_name").and_then(Value::as_str) else { return };
    let Some(dir) = wd.parent() else { return };
    let Ok(p) = open(name, dir, wd) else { return };
    match dlt::dlt_core::runtime::block_on(p.destination().dataset_info(dataset)) {
        Ok(lines) if lines.is_empty() => {}
        Ok(lines) => println!("\n{}", lines.join("\n")),
        Err(e) => println!("\nDataset {dataset}: could not read the destination: {e}"),
    }
}

fn default_schema(wd: &Path) -> Result<dlt::Schema> {
    let state = read_json(&wd.join("state.json")).unwrap_or(json!({}));
    let name = state.get("default_schema_name").and_then(Value::as_str).map(str::to_string);
    let path = match name {
        Some(n) => wd.join("schemas").join(format!("{n}.schema.json")),
        None => std::fs::read_dir(wd.join("schemas"))?
            .flatten()
            .map(|e| e.path())
            .next()
            .ok_or_else(|| anyhow!("the pipeline has no schema yet"))?,
    };
    Ok(dlt::Schema::from_str_any(&std::fs::read_to_string(&path)?)?)
}

fn schema(wd: &Path, format: &str) -> Result<()> {
    let s = default_schema(wd)?;
    // on stderr: stdout holds only the document, for scripts
    eprintln!("Found schema with name {}", s.name);
    match format {
        "json" => println!("{}", s.to_pretty_json()),
        "yaml" => print!("{}", s.to_pretty_yaml()),
        f => bail!("unknown schema format `{f}` (yaml, json)"),
    }
    Ok(())
}

fn trace(wd: &Path) -> Result<()> {
    let t: dlt::Trace =
        serde_json::from_value(read_json(&wd.join("trace.json")).context("no trace: run the pipeline first")?)?;
    let failed = t.steps.iter().any(|s| s.status != "COMPLETED");
    let total: f64 = t.steps.iter().map(|s| s.duration_s).sum();
    println!(
        "Run started at {} and {} in {:.2} seconds with {} steps.",
        t.started_at,
        if failed { "FAILED" } else { "COMPLETED" },
        total,
        t.steps.len()
    );
    for s in &t.steps {
        println!("Step {} {} in {:.2} seconds.", s.step, s.status, s.duration_s);
        if let Some(e) = &s.error {
            println!("  error: {e}");
        }
        if s.step == "normalize"
            && let Value::Object(m) = &s.details
        {
            for (k, v) in m {
                println!("- {k}: {v} row(s)");
            }
        }
    }
    if let Some(load_ids) = t.load_info.get("load_ids").and_then(Value::as_array) {
        for id in load_ids {
            println!("Load package {} is LOADED", id.as_str().unwrap_or_default());
        }
    }
    Ok(())
}

fn load_package(wd: &Path, load_id: Option<String>) -> Result<()> {
    let mut found = None;
    for st in [PackageStage::Loaded, PackageStage::Normalized, PackageStage::Extracted] {
        let ids = package_ids(wd, st);
        let pick = match &load_id {
            Some(id) => ids.into_iter().find(|i| i == id),
            None => ids.into_iter().last(),
        };
        if let Some(id) = pick {
            if found
                .as_ref()
                .map(|(_, f, _): &(PackageStage, String, PathBuf)| dlt::dlt_core::package::cmp_load_ids(&id, f).is_gt())
                .unwrap_or(true)
            {
                found = Some((st, id.clone(), stage_dir(wd, st).join(&id)));
            }
            if load_id.is_some() {
                break;
            }
        }
    }
    let (st, id, dir) = found.ok_or_else(|| {
        let known: Vec<String> = [PackageStage::Loaded, PackageStage::Normalized, PackageStage::Extracted]
            .into_iter()
            .flat_map(|st| package_ids(wd, st))
            .collect();
        let tail = match known.len() {
            0 => "the pipeline has no load packages yet".to_string(),
            n => format!("known: {}", known[n.saturating_sub(5)..].join(", ")),
        };
        match &load_id {
            Some(want) => anyhow!("no load package with id `{want}` ({tail})"),
            None => anyhow!("no load package found ({tail})"),
        }
    })?;
    println!("Package {id} found in {}", dir.display());
    let ps = read_package_state(&dir)?;
    let state = match st {
        PackageStage::Loaded => "LOADED",
        PackageStage::Normalized => "NORMALIZED",
        PackageStage::Extracted => "EXTRACTED",
    };
    println!(
        "The package with load id {id} for schema {} is in {state} state. It has {} table(s).{}",
        ps.schema_name,
        ps.row_counts.len(),
        ps.loaded_at.as_ref().map(|t| format!(" The package was LOADED at {t}.")).unwrap_or_default()
    );
    println!("Jobs details:");
    for folder in [NEW_JOBS, COMPLETED_JOBS] {
        for j in list_jobs(&dir, folder)? {
            let size = std::fs::metadata(&j.path).map(|m| m.len()).unwrap_or(0);
            println!(
                "Job: {}, table: {} in {folder}. File type: {}, size: {size}B.",
                j.path.file_name().and_then(|n| n.to_str()).unwrap_or_default(),
                j.table,
                j.format.extension()
            );
        }
    }
    Ok(())
}

fn failed_jobs(wd: &Path) -> Result<()> {
    let mut any = false;
    for st in [PackageStage::Normalized, PackageStage::Loaded] {
        for id in package_ids(wd, st) {
            let dir = stage_dir(wd, st).join(&id).join(FAILED_JOBS);
            let files = list_files(&dir)?;
            if files.is_empty() {
                continue;
            }
            println!("Checking failed jobs in load id '{id}'");
            for f in files {
                any = true;
                println!("JOB: {}", f.file_name().and_then(|n| n.to_str()).unwrap_or_default());
                println!("JOB file path: {}", f.display());
                println!("{}", std::fs::read_to_string(&f).unwrap_or_default().trim_end());
            }
        }
    }
    if !any {
        println!("No failed jobs found");
    }
    Ok(())
}

/// Reopen a pipeline with the destination of its last run.
fn open(name: &str, dir: &Path, wd: &Path) -> Result<Pipeline> {
    open_with(name, dir, wd, None, None)
}

/// Open a pipeline for a command; `destination` and `dataset` override what the pipeline file
/// or the local state say (for `sync` of a pipeline that has no working dir here).
fn open_with(name: &str, dir: &Path, wd: &Path, destination: Option<&str>, dataset: Option<&str>) -> Result<Pipeline> {
    let registry = crate::registry();
    // a named destination overrides the pipeline file; the state then only gives the dataset
    if destination.is_none()
        && let Ok(file) = std::fs::read_to_string(wd.join("pipeline_file"))
    {
        let pf = PipelineFile::load(Path::new(file.trim()))?;
        let run_dir = pf.base_dir();
        let config = Config::load(&run_dir, None)?.with_pipeline(name);
        let dest = pf.destination(registry, &config, &run_dir)?;
        let mut b = dlt::pipeline(name).destination(dest).pipelines_dir(dir).config(config);
        if let Some(d) = dataset.or(pf.dataset_name.as_deref()) {
            b = b.dataset_name(d);
        }
        return Ok(b.build()?);
    }
    let state = read_json(&wd.join("state.json")).unwrap_or(json!({}));
    let dest_name = destination
        .or_else(|| state.get("destination_name").and_then(Value::as_str))
        .or_else(|| state.get("destination_type").and_then(Value::as_str).and_then(|t| t.rsplit('.').next()))
        .unwrap_or("duckdb");
    let run_dir = std::env::current_dir()?;
    let config = Config::load(&run_dir, None)?.with_pipeline(name);
    let dest = registry.destination(dest_name)?.build(&DestinationContext {
        pipeline_name: name,
        config: &config,
        run_dir: &run_dir,
        explicit: None,
    })?;
    let mut b = dlt::pipeline(name).destination(dest).pipelines_dir(dir).config(config);
    if let Some(d) = dataset.or_else(|| state.get("dataset_name").and_then(Value::as_str)) {
        b = b.dataset_name(d);
    }
    Ok(b.build()?)
}

/// Whether a folder holds any file (in any subfolder) besides the storage's `.version` marks.
fn has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        let p = e.path();
        if p.is_dir() { has_files(&p) } else { e.file_name() != ".version" }
    })
}

fn confirm(yes: bool, what: &str) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("{what}: confirmation needed; pass -y/--yes when not running in a terminal");
    }
    eprint!("{what}. Proceed? [y/N] ");
    let mut s = String::new();
    std::io::stdin().read_line(&mut s)?;
    Ok(matches!(s.trim(), "y" | "Y" | "yes"))
}

fn drop(
    name: &str,
    dir: &Path,
    wd: &Path,
    resources: Vec<String>,
    drop_all: bool,
    yes: bool,
    opts: dlt::DropOptions,
) -> Result<()> {
    let mut p = open(name, dir, wd)?;
    let schema = p.default_schema()?.ok_or_else(|| anyhow!("pipeline `{name}` has no schema"))?;
    let all: Vec<String> = schema
        .tables
        .values()
        .filter(|t| t.parent.is_none() && !t.name.starts_with("_dlt"))
        .filter_map(|t| t.resource.clone())
        .collect();
    let selected: Vec<String> = if drop_all {
        all.clone()
    } else {
        for r in &resources {
            if !all.contains(r) {
                bail!("resource `{r}` is not in schema {} (resources: {})", schema.name, all.join(", "));
            }
        }
        resources
    };
    if selected.is_empty() && opts.state_paths.is_empty() {
        bail!("name resources to drop, or pass --drop-all or --state-paths");
    }
    let mut tables = vec![];
    for r in &selected {
        for t in schema.resource_tables(r) {
            if !tables.contains(&t) {
                tables.push(t);
            }
        }
    }
    tables.reverse();
    println!(
        "About to drop the following data in dataset {} in destination {}:",
        p.dataset_name(),
        p.destination().display_location()
    );
    println!("Selected schema:: {}", schema.name);
    println!("Selected resource(s):: {:?}", selected);
    if opts.state_only {
        tables.clear();
    }
    println!("Table(s) to drop:: {:?}", tables);
    println!("Resource(s) state to reset:: {:?}", selected);
    println!("Source state path(s) to reset:: {:?}", opts.state_paths);
    if !confirm(yes, "Drop these tables and reset the resources' state")? {
        println!("Aborted");
        return Ok(());
    }
    let dropped = p.drop_resources_with(&schema.name, &selected, &opts)?;
    println!("Dropped {} table(s); schema and state written to the destination as load {}", dropped.0.len(), dropped.1);
    Ok(())
}

fn sync(name: &str, dir: &Path, wd: &Path, yes: bool, destination: Option<&str>, dataset: Option<&str>) -> Result<()> {
    // the destination must be reachable before anything local is touched
    let p = open_with(name, dir, wd, destination, dataset)?;
    let location = p.destination().display_location();
    std::mem::drop(p);
    if !confirm(yes, "Drop the local state and restore it from the destination")? {
        println!("Aborted");
        return Ok(());
    }
    let had_state = wd.join("state.json").exists();
    if had_state {
        println!("Dropping local state");
    }
    // moved aside, and put back if the restore fails: a failed sync keeps the local state
    let backup = wd.join(".sync-backup");
    let _ = std::fs::remove_dir_all(&backup);
    std::fs::create_dir_all(&backup)?;
    for f in ["state.json", "schemas"] {
        if wd.join(f).exists() {
            std::fs::rename(wd.join(f), backup.join(f))?;
        }
    }
    std::fs::create_dir_all(wd.join("schemas"))?;
    println!("Restoring from destination");
    let restored = open_with(name, dir, wd, destination, dataset).and_then(|mut p| Ok(p.sync_destination()?));
    let restored = match restored {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(wd.join("state.json"));
            let _ = std::fs::remove_dir_all(wd.join("schemas"));
            for f in ["state.json", "schemas"] {
                if backup.join(f).exists() {
                    let _ = std::fs::rename(backup.join(f), wd.join(f));
                }
            }
            let _ = std::fs::remove_dir_all(&backup);
            return Err(e.context("restoring from the destination failed; the local state was kept"));
        }
    };
    let _ = std::fs::remove_dir_all(&backup);
    if restored {
        println!("State and schemas restored from {location}");
    } else {
        println!("The destination holds no state for pipeline {name}");
        if !had_state && !has_files(wd) {
            // nothing was here and nothing came back: leave no empty working dir behind
            let _ = std::fs::remove_dir_all(wd);
        }
    }
    Ok(())
}
