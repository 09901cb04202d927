//! Tiny CLI around the library:
//!
//! ```text
//! dlt-conformance dump DB_FILE DATASET [DATASET ...] [--out FILE] [--time-token-columns a,b]
//! dlt-conformance compare EXPECTED ACTUAL [--strict-errors] [--ignore-row-counts]
//!                 [--ignore-system-columns] [--rel-tol X] [--abs-tol X] [--max-rows N] [--quiet]
//! ```
//! `compare` exits 0 (equal), 1 (different) or 2 (bad input), like compare.py.

use dlt_conformance::{CompareOptions, dump, format_report, to_pretty_json, try_compare};
use std::path::Path;
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  dlt-conformance dump DB_FILE DATASET [DATASET ...] [--out FILE] [--time-token-columns a,b]\n  \
         dlt-conformance compare EXPECTED ACTUAL [--strict-errors] [--ignore-row-counts] \
         [--ignore-system-columns] [--rel-tol X] [--abs-tol X] [--max-rows N] [--quiet]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dump") => run_dump(&args[1..]),
        Some("compare") => run_compare(&args[1..]),
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
