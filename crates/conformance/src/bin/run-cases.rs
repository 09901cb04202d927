//! Runs conformance cases through dlt-rs: `run-cases --cases DIR --keep OUT [--must-pass FILE] [--filter S] [-v]`.
//! Prints one line per case and `conformance: N passed, M failed`; exits non-zero when a case in
//! the must-pass list (or, without a list, any case) differs from its expected result.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut cases = None;
    let mut keep = None;
    let mut must_pass = None;
    let mut filter = None;
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--cases" => cases = args.next().map(PathBuf::from),
            "--keep" => keep = args.next().map(PathBuf::from),
            "--must-pass" => must_pass = args.next().map(PathBuf::from),
            "--filter" => filter = args.next(),
            "-v" | "--verbose" => verbose = true,
            other => {
                eprintln!("unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(cases), Some(keep)) = (cases, keep) else {
        eprintln!("usage: run-cases --cases DIR --keep OUT [--must-pass FILE] [--filter S] [-v]");
        return ExitCode::from(2);
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
    let outcomes = match dlt_conformance::runner::run_all(&cases, &keep, filter.as_deref()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("conformance: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut passed = 0;
    let mut failed = 0;
    let mut required_failed = vec![];
    for o in &outcomes {
        let required = must.as_ref().map(|m| m.contains(&o.name)).unwrap_or(true);
        if o.diffs.is_empty() {
            passed += 1;
            println!("PASS {}", o.name);
        } else {
            failed += 1;
            println!("FAIL {} ({} differences){}", o.name, o.diffs.len(), if required { " [must pass]" } else { "" });
            if verbose || required {
                for d in o.diffs.iter().take(if verbose { 40 } else { 8 }) {
                    println!("    {d}");
                }
            }
            if required {
                required_failed.push(o.name.clone());
            }
        }
    }
    if let Some(m) = &must {
        for name in m {
            if !outcomes.iter().any(|o| &o.name == name) && filter.is_none() {
                println!("MISSING {name} [must pass]");
                required_failed.push(name.clone());
            }
        }
    }
    println!("conformance: {passed} passed, {failed} failed");
    if required_failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
