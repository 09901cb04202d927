//! Tiny CLI around the library:
//!
//! ```text
//! dlt-conformance --cases DIR --keep OUT [--must-pass FILE] [--filter S] [-v]
//!                 [--destination duckdb|postgres|filesystem|snowflake|bigquery] [--keep-db]          run cases through dlt-rs
//! dlt-conformance dump DB_FILE DATASET [DATASET ...] [--out FILE] [--time-token-columns a,b]
//! dlt-conformance compare EXPECTED ACTUAL [--strict-errors] [--ignore-row-counts]
//!                 [--ignore-system-columns] [--rel-tol X] [--abs-tol X] [--max-rows N] [--quiet]
//! dlt-conformance compare-schemas EXPECTED_SCHEMAS ACTUAL_SCHEMAS [--deviations DEVIATIONS.md]
//! ```
//! `compare` exits 0 (equal), 1 (different) or 2 (bad input), like compare.py; so does
//! `compare-schemas`, which prints every difference between dlt's stored schema documents of a
//! case (`expected_schemas.json`) and dlt-rs's (`OUT/<case>/schemas.json`), see `schema_docs`.
//!
//! `--destination postgres` runs every case in a fresh database of the PostgreSQL server of
//! `DLT_TEST_POSTGRES_URL` (default `postgresql://postgres@127.0.0.1:5432/test`), mirrors the
//! datasets into DuckDB after every run and dumps them from there (see `pg_mirror`); the
//! database is dropped at the end of the case unless `--keep-db` is given.
//!
//! `--destination filesystem` runs every case into a local bucket folder (`OUT/<case>/bucket`,
//! parquet files in dlt's layout), mirrors the datasets' files into DuckDB after every run with
//! DuckDB's parquet reader and dumps them from there (see `fs_mirror`).
//!
//! `--destination snowflake` starts a fakesnow server (installed by `cargo xtask test`), runs
//! every case in a fresh database of it, reads the datasets back with Snowflake's Python
//! connector after every run, mirrors them into DuckDB and dumps them from there (see
//! `sf_mirror`).

use dlt_conformance::runner::Target;
use dlt_conformance::{CompareOptions, dump, format_report, to_pretty_json, try_compare};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  dlt-conformance --cases DIR --keep OUT [--must-pass FILE] [--filter S] [-v] \
         [--destination duckdb|postgres|filesystem|snowflake|bigquery] [--keep-db]\n  dlt-conformance dump DB_FILE DATASET [DATASET ...] [--out FILE] [--time-token-columns a,b]\n  \
         dlt-conformance compare EXPECTED ACTUAL [--strict-errors] [--ignore-row-counts] \
         [--ignore-system-columns] [--rel-tol X] [--abs-tol X] [--max-rows N] [--quiet]\n  \
         dlt-conformance compare-schemas EXPECTED_SCHEMAS ACTUAL_SCHEMAS [--deviations DEVIATIONS.md]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dump") => run_dump(&args[1..]),
        Some("compare") => run_compare(&args[1..]),
        Some("compare-schemas") => run_compare_schemas(&args[1..]),
        Some(a) if a.starts_with("--") => run_cases(&args),
        _ => usage(),
    }
}

fn run_dump(args: &[String]) -> ExitCode {
    let mut positional = Vec::new();
    let mut out = None;
    let mut time_cols: Option<Vec<String>> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out = it.next().cloned(),
            "--time-token-columns" => {
                time_cols = it.next().map(|s| s.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect())
            }
            _ => positional.push(a.clone()),
        }
    }
    if positional.len() < 2 {
        return usage();
    }
    let db = Path::new(&positional[0]);
    match dump(db, &positional[1..], time_cols.as_deref()) {
        Ok(v) => {
            let s = to_pretty_json(&v) + "\n";
            match out {
                Some(f) => {
                    if let Err(e) = std::fs::write(&f, s) {
                        eprintln!("dlt-conformance: cannot write {f}: {e}");
                        return ExitCode::from(2);
                    }
                }
                None => print!("{s}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dlt-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_compare(args: &[String]) -> ExitCode {
    let mut opts = CompareOptions::default();
    let mut positional = Vec::new();
    let mut quiet = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Option<f64> {
            let v = it.next().and_then(|s| s.parse::<f64>().ok());
            if v.is_none() {
                eprintln!("dlt-conformance: {name} needs a number");
            }
            v
        };
        match a.as_str() {
            "--strict-errors" => opts.strict_errors = true,
            "--ignore-row-counts" => opts.ignore_row_counts = true,
            "--ignore-system-columns" => opts.ignore_system_columns = true,
            "--quiet" => quiet = true,
            "--rel-tol" => match num("--rel-tol") {
                Some(x) => opts.rel_tol = x,
                None => return ExitCode::from(2),
            },
            "--abs-tol" => match num("--abs-tol") {
                Some(x) => opts.abs_tol = x,
                None => return ExitCode::from(2),
            },
            "--max-rows" => match num("--max-rows") {
                Some(x) if x >= 0.0 => opts.max_rows = x as usize,
                _ => return ExitCode::from(2),
            },
            _ => positional.push(a.clone()),
        }
    }
    if positional.len() != 2 {
        return usage();
    }
    let read =
        |p: &str| -> anyhow::Result<serde_json::Value> { Ok(serde_json::from_str(&std::fs::read_to_string(p)?)?) };
    let res = read(&positional[0])
        .and_then(|e| read(&positional[1]).map(|a| (e, a)))
        .and_then(|(e, a)| try_compare(&e, &a, &opts));
    match res {
        Ok(diffs) => {
            if !quiet {
                print!("{}", format_report(&diffs));
            }
            if diffs.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => {
            eprintln!("compare: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_compare_schemas(args: &[String]) -> ExitCode {
    let mut positional = Vec::new();
    let mut deviations = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--deviations" => deviations = it.next().cloned(),
            _ => positional.push(a.clone()),
        }
    }
    if positional.len() != 2 {
        return usage();
    }
    let res = (|| -> anyhow::Result<Vec<String>> {
        use dlt_conformance::schema_docs;
        let expected = schema_docs::read(Path::new(&positional[0]))?;
        let actual = schema_docs::read(Path::new(&positional[1]))?;
        let deviations = match &deviations {
            Some(f) => schema_docs::parse_deviations(&std::fs::read_to_string(f)?)?,
            None => vec![],
        };
        let case = expected["case"].as_str().unwrap_or_default().to_string();
        Ok(schema_docs::compare(&case, &expected, &actual, &deviations))
    })();
    match res {
        Ok(diffs) => {
            for d in &diffs {
                println!("{d}");
            }
            println!(
                "{}",
                if diffs.is_empty() { "EQUAL".to_string() } else { format!("DIFFERENT ({} differences)", diffs.len()) }
            );
            if diffs.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => {
            eprintln!("compare-schemas: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Run cases through dlt-rs, print one line per case and `conformance: N passed, M failed`; fail when
/// a case of the must-pass list (or, without a list, any case) differs from its expected result.
fn run_cases(argv: &[String]) -> ExitCode {
    let mut cases = None;
    let mut keep = None;
    let mut must_pass = None;
    let mut filter = None;
    let mut verbose = false;
    let mut destination = "duckdb".to_string();
    let mut keep_db = false;
    let mut args = argv.iter().cloned();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--cases" => cases = args.next().map(PathBuf::from),
            "--keep" => keep = args.next().map(PathBuf::from),
            "--must-pass" => must_pass = args.next().map(PathBuf::from),
            "--filter" => filter = args.next(),
            "-v" | "--verbose" => verbose = true,
            "--destination" => match args.next() {
                Some(d) => destination = d,
                None => {
                    eprintln!("--destination needs a value (duckdb, postgres, filesystem, snowflake or bigquery)");
                    return ExitCode::from(2);
                }
            },
            "--keep-db" => keep_db = true,
            other if other.starts_with("--destination=") => destination = other["--destination=".len()..].to_string(),
            other => {
                eprintln!("unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(cases), Some(keep)) = (cases, keep) else {
        eprintln!(
            "usage: dlt-conformance --cases DIR --keep OUT [--must-pass FILE] [--filter S] [-v] \
             [--destination duckdb|postgres|filesystem|snowflake|bigquery] [--keep-db]"
        );
        return ExitCode::from(2);
    };
    // the fakesnow server of `--destination snowflake`, stopped when the run ends
    let mut fakesnow = None;
    let target = match destination.as_str() {
        "snowflake" => match dlt_testkit::services::fakesnow() {
            Some(server) => {
                let target = Target::Snowflake { port: server.port, python: server.python().to_path_buf() };
                fakesnow = Some(server);
                target
            }
            None => {
                eprintln!("--destination snowflake needs fakesnow (`cargo xtask test` installs it)");
                return ExitCode::from(2);
            }
        },
        "bigquery" => Target::BigQuery,
        "duckdb" | "filesystem" => {
            if keep_db {
                eprintln!("--keep-db only applies to --destination postgres");
                return ExitCode::from(2);
            }
            if destination == "filesystem" { Target::Filesystem } else { Target::DuckDb }
        }
        "postgres" | "postgresql" => Target::postgres_from_env(keep_db),
        other => {
            eprintln!("unknown destination {other:?} (expected duckdb, postgres, filesystem, snowflake or bigquery)");
            return ExitCode::from(2);
        }
    };
    let must: Option<Vec<String>> = match must_pass.map(std::fs::read_to_string) {
        Some(Ok(s)) => Some(
            s.lines().map(|l| l.split('#').next().unwrap_or("").trim().to_string()).filter(|l| !l.is_empty()).collect(),
        ),
        Some(Err(e)) => {
            eprintln!("cannot read the must-pass list: {e}");
            return ExitCode::from(2);
        }
        None => None,
    };
    let outcomes = match dlt_conformance::runner::run_all_on(&cases, &keep, filter.as_deref(), &target) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("conformance: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut passed = 0;
    let mut known = 0;
    let mut required_failed = vec![];
    for o in &outcomes {
        let required = must.as_ref().map(|m| m.contains(&o.name)).unwrap_or(true);
        if o.diffs.is_empty() {
            passed += 1;
            println!("PASS {}", o.name);
        } else if required {
            println!("FAIL {} ({} differences)", o.name, o.diffs.len());
            for d in o.diffs.iter().take(if verbose { 40 } else { 8 }) {
                println!("    {d}");
            }
            required_failed.push(o.name.clone());
        } else {
            known += 1;
            println!("DIFF {} ({} differences; not in the must-pass list yet)", o.name, o.diffs.len());
            for d in o.diffs.iter().take(if verbose { 40 } else { 0 }) {
                println!("    {d}");
            }
        }
    }
    if let Some(m) = &must {
        for name in m {
            if !outcomes.iter().any(|o| &o.name == name) && filter.is_none() {
                println!("MISSING {name} (in the must-pass list, but no such case)");
                required_failed.push(name.clone());
            }
        }
    }
    if known > 0 {
        println!("{known} case(s) still differ from dlt and are not required yet (DIFF lines above)");
    }
    if let Target::Postgres { server_url, .. } = &target {
        println!(
            "destination: postgres (server {}, one fresh database per case)",
            dlt::dlt_core::config::mask_url(server_url)
        );
    }
    if fakesnow.is_some() {
        println!("destination: snowflake (fakesnow, one fresh database per case, read back by the Python connector)");
    }
    if target == Target::Filesystem {
        println!("destination: filesystem (a local bucket folder per case, read back with DuckDB's read_parquet)");
    }
    println!("conformance: {passed} passed, {} failed", required_failed.len());
    if required_failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
