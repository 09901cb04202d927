//! `cargo xtask bench <W1|W1s>`: time `dlt run` on the nested-JSON workload
//! (bench/README.md) and compare it with Python dlt's reference figures.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::util::{Ctx, TempDir, describe_status, exit_code, run, spawn_error, utc_date};

/// Python dlt 1.31.0 on a quiet 2-core machine (bench/README.md).
struct Reference {
    wall_s: f64,
    cpu_s: f64,
    rows_per_s: f64,
    rss_mb: f64,
}

struct Workload {
    id: &'static str,
    /// Root records in the input (rows/s is records / wall time).
    records: u64,
    /// File name in `<cache>/bench/` and, as `data/<file>`, in bench/SHA256SUMS.
    file: &'static str,
    /// Row counts the load must produce (tables not listed are only printed).
    expected: &'static [(&'static str, u64)],
    reference: Reference,
}

const WORKLOADS: [Workload; 2] = [
    Workload {
        id: "W1",
        records: 1_000_000,
        file: "issues_1m.jsonl",
        expected: &[("issues", 1_000_000), ("issues__labels", 2_497_298), ("issues__assignees", 1_500_697)],
        reference: Reference { wall_s: 269.8, cpu_s: 273.6, rows_per_s: 3_706.0, rss_mb: 919.0 },
    },
    Workload {
        id: "W1s",
        records: 100_000,
        file: "issues_100k.jsonl",
        // Child-table counts follow from the checksummed data (array lengths).
        expected: &[("issues", 100_000), ("issues__labels", 250_110), ("issues__assignees", 150_497)],
        reference: Reference { wall_s: 31.8, cpu_s: 31.0, rows_per_s: 3_142.0, rss_mb: 408.0 },
    },
];

/// The reference figures were taken with load average below this.
const QUIET_LOAD: f64 = 2.5;
const RESULTS_END_MARKER: &str = "<!-- bench-results:end -->";

struct Measurement {
    wall: Duration,
    cpu: Duration,
    peak_rss_kb: u64,
}

struct Run {
    m: Measurement,
    row_counts: Vec<(String, u64)>,
}

pub fn bench(ctx: &Ctx, args: Vec<OsString>) -> Result<i32> {
    let usage = "usage: cargo xtask bench <W1|W1s> [--runs N] [--keep] [--no-record] [--bin DLT]";
    let mut workload = None;
    let mut runs = 1usize;
    let mut keep = false;
    let mut record = true;
    let mut bin: Option<PathBuf> = None;
    let mut it = args.into_iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => {
                let v = it.next().with_context(|| format!("--runs needs a value\n{usage}"))?;
                runs = parse_runs(&v)?;
            }
            a if a.starts_with("--runs=") => runs = parse_runs(&a["--runs=".len()..])?,
            "--keep" => keep = true,
            "--bin" => {
                let v = it.next().with_context(|| format!("--bin needs a value\n{usage}"))?;
                bin = Some(std::path::absolute(&v).context("cannot make --bin absolute")?);
            }
            "--no-record" => record = false,
            a if workload.is_none() && !a.starts_with('-') => {
                workload = Some(
                    WORKLOADS
                        .iter()
                        .find(|w| w.id.eq_ignore_ascii_case(a))
                        .with_context(|| format!("unknown workload {a:?}\n{usage}"))?,
                );
            }
            a => bail!("unexpected argument {a:?}\n{usage}"),
        }
    }
    let w = workload.context(usage)?;

    let data = ensure_data(ctx, w)?;
    crate::duckdb::setup(ctx)?;
    let dlt = match bin {
        // An existing binary (e.g. an older build to compare against).
        Some(bin) => bin,
        None => {
            run(ctx.cargo().args(["build", "--release", "-p", "dlt-cli"]), "")?;
            ctx.release_bin("dlt")
        }
    };
    if !dlt.is_file() {
        bail!("the build did not produce {}", dlt.display());
    }

    let load = load_average();
    if let Some(l) = load.filter(|l| *l >= QUIET_LOAD) {
        eprintln!(
            "xtask: warning: load average is {l:.2} (reference figures need < {QUIET_LOAD}): \
             this result will be pessimistic"
        );
    }

    let mut results = Vec::new();
    for i in 1..=runs {
        eprintln!("xtask: {} run {i}/{runs}", w.id);
        let mut tmp = TempDir::new("dlt-rs-bench")?;
        let (st, r) = run_once(ctx, &dlt, &data, tmp.path())?;
        if keep {
            eprintln!("xtask: kept {}", tmp.keep().display());
        }
        if !st.success() {
            eprintln!("xtask: `dlt run` failed ({})", describe_status(st));
            return Ok(exit_code(st));
        }
        results.push(r);
    }

    // Report the run with the median wall time.
    results.sort_by_key(|r| r.m.wall);
    let median = &results[(results.len() - 1) / 2];

    let mut mismatches = Vec::new();
    println!();
    println!("row counts:");
    for (table, n) in &median.row_counts {
        println!("  {table:<24} {:>12}", thousands(*n));
    }
    for &(table, want) in w.expected {
        match median.row_counts.iter().find(|(t, _)| t == table) {
            Some((_, got)) if *got == want => {}
            Some((_, got)) => {
                mismatches.push(format!("{table}: {} rows, expected {}", thousands(*got), thousands(want)))
            }
            None => mismatches.push(format!("{table}: missing from row_counts, expected {}", thousands(want))),
        }
    }
    for r in &results {
        if r.row_counts != median.row_counts {
            mismatches.push("row counts differ between runs".to_string());
            break;
        }
    }

    println!();
    print_table(w, &results, median);

    if !mismatches.is_empty() {
        bail!("{} loaded wrong row counts (result not recorded):\n  {}", w.id, mismatches.join("\n  "));
    }

    let line = results_line(ctx, w, runs, median, load);
    if record {
        let docs = ctx.repo.join("docs/benchmarks.md");
        append_result(&docs, &line)?;
        println!("\nrecorded in {}:\n{line}", docs.display());
    } else {
        println!("\n{line}");
    }
    Ok(0)
}

fn parse_runs(v: &str) -> Result<usize> {
    match v.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => bail!("--runs must be a positive integer, got {v:?}"),
    }
}

/// Generate the workload's input once into `<cache>/bench/`.
fn ensure_data(ctx: &Ctx, w: &Workload) -> Result<PathBuf> {
    let dir = ctx.cache_dir.join("bench");
    let path = dir.join(w.file);
    if fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
        return Ok(path);
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp-{}", w.file, std::process::id()));
    let script = ctx.repo.join("bench/gen_json.py");
    eprintln!("xtask: generating {} ({} records; once, cached)", path.display(), thousands(w.records));
    let result = (|| -> Result<()> {
        run(
            Command::new("python3").arg(&script).arg("issues").arg(w.records.to_string()).arg(&tmp),
            "python3 (standard library only) is needed to generate the benchmark data: \
             install Python 3.",
        )
        .context("generating the benchmark data failed")?;
        verify_checksum(ctx, w, &tmp)?;
        fs::rename(&tmp, &path).with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| path)
}

/// Compare with bench/SHA256SUMS (skipped with a note if `sha256sum` is missing).
fn verify_checksum(ctx: &Ctx, w: &Workload, file: &Path) -> Result<()> {
    let sums = ctx.repo.join("bench/SHA256SUMS");
    let key = format!("data/{}", w.file);
    let text = fs::read_to_string(&sums).with_context(|| format!("cannot read {}", sums.display()))?;
    let Some(want) = text.lines().find_map(|l| {
        let (sum, name) = l.split_once(char::is_whitespace)?;
        (name.trim_start().trim_start_matches('*') == key).then(|| sum.to_string())
    }) else {
        eprintln!("xtask: no checksum for {key} in {}: not verified", sums.display());
        return Ok(());
    };
    let mut cmd = Command::new("sha256sum");
    cmd.arg(file).stderr(Stdio::inherit());
    let out = match cmd.output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => bail!("sha256sum failed ({})", describe_status(o.status)),
        Err(e) => {
            eprintln!("xtask: {:#}; data not verified", spawn_error(e, &cmd, ""));
            return Ok(());
        }
    };
    let got = String::from_utf8_lossy(&out.stdout);
    let got = got.split_whitespace().next().unwrap_or("");
    if got != want {
        bail!(
            "generated data differs from the reference (sha256 {got}, expected {want}): \
             the results would not be comparable. Is python3 unusual?"
        );
    }
    eprintln!("xtask: data checksum ok");
    Ok(())
}

/// One timed `dlt run pipeline.toml --json` in the fresh dir `dir`.
fn run_once(ctx: &Ctx, dlt: &Path, data: &Path, dir: &Path) -> Result<(ExitStatus, Run)> {
    // A symlink keeps the pipeline file free of absolute paths (and of glob
    // characters the cache path might contain).
    std::os::unix::fs::symlink(data, dir.join("issues.jsonl"))
        .with_context(|| format!("cannot link the data into {}", dir.display()))?;
    fs::write(
        dir.join("pipeline.toml"),
        "# written by `cargo xtask bench`\n\
         [pipeline]\n\
         name = \"bench\"\n\
         destination = \"duckdb\"\n\
         dataset_name = \"bench_data\"\n\
         \n\
         [source]\n\
         type = \"files\"\n\
         \n\
         [[source.resources]]\n\
         name = \"issues\"\n\
         path = \"issues.jsonl\"\n\
         write_disposition = \"replace\"\n",
    )
    .context("cannot write pipeline.toml")?;

    let mut cmd = ctx.command(dlt);
    cmd.current_dir(dir)
        .env("DLT_DATA_DIR", dir.join("dlt-data"))
        .args(["run", "pipeline.toml", "--json"])
        .stdin(Stdio::null());
    let (st, m, stdout) = measure(&mut cmd)?;
    fs::write(dir.join("run.json"), &stdout).context("cannot save the --json output")?;
    eprintln!(
        "xtask: wall {:.2} s, CPU {:.2} s, peak RSS {:.0} MB",
        m.wall.as_secs_f64(),
        m.cpu.as_secs_f64(),
        rss_mb(m.peak_rss_kb)
    );
    let row_counts = if st.success() {
        parse_row_counts(&stdout)
            .inspect_err(|_| eprintln!("xtask: `dlt run --json` printed:\n{}", String::from_utf8_lossy(&stdout)))?
    } else {
        Vec::new()
    };
    Ok((st, Run { m, row_counts }))
}

/// Run the child with stdout captured; wall time and its rusage via wait4.
fn measure(cmd: &mut Command) -> Result<(ExitStatus, Measurement, Vec<u8>)> {
    use std::os::unix::process::ExitStatusExt;

    eprintln!("xtask: $ {}", crate::util::describe(cmd));
    cmd.stdout(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| spawn_error(e, cmd, ""))?;
    let mut stdout = child.stdout.take().context("no stdout pipe")?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let pid = child.id() as libc::pid_t;
    let mut raw_status: libc::c_int = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our un-reaped child; the pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut raw_status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("wait4 failed");
        }
    }
    let wall = start.elapsed();
    let stdout = reader
        .join()
        .map_err(|_| anyhow::anyhow!("stdout reader panicked"))?
        .context("cannot read the child's stdout")?;
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    // Linux reports ru_maxrss in KiB (macOS in bytes).
    let maxrss = ru.ru_maxrss as u64;
    let peak_rss_kb = if cfg!(target_os = "macos") { maxrss / 1024 } else { maxrss };
    Ok((
        ExitStatus::from_raw(raw_status),
        Measurement { wall, cpu: tv(ru.ru_utime) + tv(ru.ru_stime), peak_rss_kb },
        stdout,
    ))
}

/// `row_counts` (table → rows) from the CLI's `--json` output, wherever it
/// sits in the object. Accepts one JSON document or JSON lines.
fn parse_row_counts(stdout: &[u8]) -> Result<Vec<(String, u64)>> {
    let text = String::from_utf8_lossy(stdout);
    let docs: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(v) => vec![v],
        Err(_) => text.lines().filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok()).collect(),
    };
    if docs.is_empty() {
        bail!("`dlt run --json` printed no JSON on stdout");
    }
    // The last document wins (a final summary after progress lines).
    let counts =
        docs.iter().rev().find_map(find_row_counts).context("the `--json` output has no `row_counts` object")?;
    let mut out = Vec::new();
    for (table, n) in counts {
        let n = n
            .as_u64()
            .or_else(|| n.as_str().and_then(|s| s.parse().ok()))
            .with_context(|| format!("row_counts.{table} is not a row count: {n}"))?;
        // Tables may be qualified with the dataset name.
        let table = table.rsplit('.').next().unwrap_or(table).to_string();
        out.push((table, n));
    }
    Ok(out)
}

fn find_row_counts(v: &Value) -> Option<&serde_json::Map<String, Value>> {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(counts)) = map.get("row_counts") {
                return Some(counts);
            }
            map.values().find_map(find_row_counts)
        }
        Value::Array(items) => items.iter().find_map(find_row_counts),
        _ => None,
    }
}

fn rss_mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn rows_per_s(w: &Workload, m: &Measurement) -> f64 {
    w.records as f64 / m.wall.as_secs_f64().max(1e-9)
}

fn print_table(w: &Workload, results: &[Run], median: &Run) {
    let r = &w.reference;
    println!(
        "{:<8} {:>6} {:>9} {:>9} {:>10} {:>12} | {:>10} {:>9} {:>9} {:>10} | {:>8} {:>8}",
        "workload",
        "run",
        "wall s",
        "CPU s",
        "rows/s",
        "peak RSS MB",
        "dlt wall s",
        "dlt CPU s",
        "dlt rows/s",
        "dlt RSS MB",
        "speed-up",
        "RSS"
    );
    let row = |label: &str, m: &Measurement| {
        println!(
            "{:<8} {:>6} {:>9.2} {:>9.2} {:>10} {:>12.0} | {:>10.1} {:>9.1} {:>9} {:>10.0} | {:>7.1}x {:>7.2}x",
            w.id,
            label,
            m.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            thousands(rows_per_s(w, m).round() as u64),
            rss_mb(m.peak_rss_kb),
            r.wall_s,
            r.cpu_s,
            thousands(r.rows_per_s as u64),
            r.rss_mb,
            r.wall_s / m.wall.as_secs_f64().max(1e-9),
            rss_mb(m.peak_rss_kb) / r.rss_mb,
        );
    };
    if results.len() == 1 {
        row("1", &median.m);
    } else {
        for (i, res) in results.iter().enumerate() {
            row(&format!("#{}", i + 1), &res.m);
        }
        row("median", &median.m);
    }
    println!(
        "(runs sorted by wall time; speed-up = dlt wall / dlt-rs wall, RSS = dlt-rs / dlt peak RSS; \
         re-measure dlt in the same session for a fair ratio: bench/README.md)"
    );
}

/// A Markdown table row for docs/benchmarks.md's results section.
fn results_line(ctx: &Ctx, w: &Workload, runs: usize, median: &Run, load: Option<f64>) -> String {
    let m = &median.m;
    let mut line = String::new();
    let _ = write!(
        line,
        "| {} | {} | {} | {} | {:.2} | {:.2} | {} | {:.0} | {:.1}x | {:.2}x | {} |",
        utc_date(),
        git_commit(ctx),
        w.id,
        runs,
        m.wall.as_secs_f64(),
        m.cpu.as_secs_f64(),
        thousands(rows_per_s(w, m).round() as u64),
        rss_mb(m.peak_rss_kb),
        w.reference.wall_s / m.wall.as_secs_f64().max(1e-9),
        rss_mb(m.peak_rss_kb) / w.reference.rss_mb,
        load.map_or("?".to_string(), |l| format!("{l:.2}")),
    );
    line
}

/// Insert `line` before the results end marker (or append if it is missing).
fn append_result(docs: &Path, line: &str) -> Result<()> {
    let text = fs::read_to_string(docs).with_context(|| format!("cannot read {}", docs.display()))?;
    let new = match text.find(RESULTS_END_MARKER) {
        Some(pos) => {
            let (head, tail) = text.split_at(pos);
            let sep = if head.is_empty() || head.ends_with('\n') { "" } else { "\n" };
            format!("{head}{sep}{line}\n{tail}")
        }
        None => {
            let sep = if text.is_empty() || text.ends_with('\n') { "" } else { "\n" };
            format!("{text}{sep}{line}\n")
        }
    };
    fs::write(docs, new).with_context(|| format!("cannot write {}", docs.display()))
}

fn git_commit(ctx: &Ctx) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&ctx.repo)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(c) if !c.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty { format!("{c}+dirty") } else { c }
        }
        _ => "-".to_string(),
    }
}

fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(2_497_298), "2,497,298");
    }

    #[test]
    fn finds_row_counts() {
        let out = br#"{"pipeline":"bench","load":{"row_counts":{"bench_data.issues":3,"issues__labels":"7"}}}"#;
        assert_eq!(parse_row_counts(out).unwrap(), vec![("issues".to_string(), 3), ("issues__labels".to_string(), 7)]);
        let lines = b"{\"progress\":1}\n{\"row_counts\":{\"issues\":5}}\n";
        assert_eq!(parse_row_counts(lines).unwrap(), vec![("issues".to_string(), 5)]);
        assert!(parse_row_counts(b"not json").is_err());
        assert!(parse_row_counts(b"{\"x\":1}").is_err());
    }

    #[test]
    fn inserts_before_marker() {
        let t = TempDir::new("xtask-selftest").unwrap();
        let p = t.path().join("b.md");
        fs::write(&p, format!("# x\n| h |\n{RESULTS_END_MARKER}\nfooter\n")).unwrap();
        append_result(&p, "| a |").unwrap();
        append_result(&p, "| b |").unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            format!("# x\n| h |\n| a |\n| b |\n{RESULTS_END_MARKER}\nfooter\n")
        );
    }

    #[test]
    fn measures_a_child() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo '{\"row_counts\":{\"t\":1}}'; exit 3"]);
        let (st, m, out) = measure(&mut cmd).unwrap();
        assert_eq!(st.code(), Some(3));
        assert!(m.peak_rss_kb > 0);
        assert_eq!(parse_row_counts(&out).unwrap(), vec![("t".to_string(), 1)]);
    }
}
