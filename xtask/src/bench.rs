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

/// Python dlt 1.31.0 on a quiet 2-core machine (bench/README.md), or measured in this session.
#[derive(Clone, Copy)]
struct Reference {
    wall_s: f64,
    cpu_s: f64,
    rows_per_s: f64,
    rss_mb: f64,
}

/// Where a workload's data comes from.
#[derive(Clone, Copy)]
enum Input {
    /// `bench/gen_json.py issues <records>` into `<cache>/bench/<file>`.
    Jsonl(&'static str),
    /// Records served by json-server in pages of `page` (`_page`/`_limit`, `Link` headers).
    Rest { page: u64 },
    /// The Postgres table `b_src.bench_rows` of `bench/gen_pg.sql` in the database `dlt_bench`.
    Postgres,
    /// The same table in MariaDB (`bench/gen_mysql.sql`, database `b_src` on 127.0.0.1:3306).
    Mariadb,
    /// W4: `gen_json.py merge_base` loaded first (untimed), then the timed merge of
    /// `gen_json.py merge_batch` (primary key `id`).
    Merge { base: &'static str, base_records: u64, batch: &'static str, updated: u64 },
}

struct Workload {
    id: &'static str,
    /// Root records in the input (rows/s is records / wall time).
    records: u64,
    input: Input,
    /// `duckdb` or `filesystem` (local parquet files).
    destination: &'static str,
    /// Row counts the load must produce (tables not listed are only printed).
    expected: &'static [(&'static str, u64)],
    /// Python dlt's figures; `None` = measured in the same session (`--with-dlt`).
    reference: Option<Reference>,
}

const WORKLOADS: [Workload; 12] = [
    Workload {
        id: "W1",
        records: 1_000_000,
        input: Input::Jsonl("issues_1m.jsonl"),
        destination: "duckdb",
        expected: &[("issues", 1_000_000), ("issues__labels", 2_497_298), ("issues__assignees", 1_500_697)],
        reference: Some(Reference { wall_s: 269.8, cpu_s: 273.6, rows_per_s: 3_706.0, rss_mb: 919.0 }),
    },
    Workload {
        id: "W1s",
        records: 100_000,
        input: Input::Jsonl("issues_100k.jsonl"),
        destination: "duckdb",
        // Child-table counts follow from the checksummed data (array lengths).
        expected: &[("issues", 100_000), ("issues__labels", 250_110), ("issues__assignees", 150_497)],
        reference: Some(Reference { wall_s: 31.8, cpu_s: 31.0, rows_per_s: 3_142.0, rss_mb: 408.0 }),
    },
    Workload {
        // W1 to local parquet files (the filesystem destination)
        id: "W1fs",
        records: 1_000_000,
        input: Input::Jsonl("issues_1m.jsonl"),
        destination: "filesystem",
        expected: &[("issues", 1_000_000), ("issues__labels", 2_497_298), ("issues__assignees", 1_500_697)],
        reference: None,
    },
    Workload {
        // W1s to local parquet files; compare with `--with-dlt`
        id: "W1sfs",
        records: 100_000,
        input: Input::Jsonl("issues_100k.jsonl"),
        destination: "filesystem",
        expected: &[("issues", 100_000), ("issues__labels", 250_110), ("issues__assignees", 150_497)],
        reference: None,
    },
    Workload {
        // W1 five times over: peak memory must not grow with the input
        id: "W1x5",
        records: 5_000_000,
        input: Input::Jsonl("issues_5m.jsonl"),
        destination: "duckdb",
        expected: &[("issues", 5_000_000)],
        reference: None,
    },
    Workload {
        id: "REST",
        records: 200_000,
        input: Input::Rest { page: 100 },
        destination: "duckdb",
        expected: &[("items", 200_000)],
        reference: None,
    },
    Workload {
        // merge 100,000 changed + 100,000 new records into 1,000,000 (only the merge is timed)
        id: "W4",
        records: 200_000,
        input: Input::Merge {
            base: "merge_base_1m.jsonl",
            base_records: 1_000_000,
            batch: "merge_batch_200k.jsonl",
            updated: 100_000,
        },
        destination: "duckdb",
        expected: &[("orders", 200_000)],
        reference: Some(Reference { wall_s: 19.7, cpu_s: 20.4, rows_per_s: 9_000.0, rss_mb: 434.0 }),
    },
    Workload {
        // W1s into Postgres (binary COPY)
        id: "W5s",
        records: 100_000,
        input: Input::Jsonl("issues_100k.jsonl"),
        destination: "postgres",
        expected: &[("issues", 100_000), ("issues__labels", 250_110), ("issues__assignees", 150_497)],
        // dlt's fastest path into Postgres (csv job files), bench/README.md
        reference: Some(Reference { wall_s: 42.9, cpu_s: 40.4, rows_per_s: 2_330.0, rss_mb: 142.0 }),
    },
    Workload {
        id: "W2",
        records: 5_000_000,
        input: Input::Postgres,
        destination: "duckdb",
        expected: &[("bench_rows", 5_000_000)],
        // dlt sql_database with its fastest backend (connectorx), bench/README.md
        reference: Some(Reference { wall_s: 36.9, cpu_s: 44.1, rows_per_s: 135_500.0, rss_mb: 1_429.0 }),
    },
    Workload {
        // W2's table in MariaDB → DuckDB
        id: "W2m",
        records: 5_000_000,
        input: Input::Mariadb,
        destination: "duckdb",
        expected: &[("bench_rows", 5_000_000)],
        reference: None,
    },
    Workload {
        // W2 with the table read as 2 key ranges at once (`partitions = 2`)
        id: "W2p",
        records: 5_000_000,
        input: Input::Postgres,
        destination: "duckdb",
        expected: &[("bench_rows", 5_000_000)],
        reference: None,
    },
    Workload {
        id: "W3",
        records: 5_000_000,
        input: Input::Postgres,
        destination: "filesystem",
        expected: &[("bench_rows", 5_000_000)],
        reference: Some(Reference { wall_s: 31.6, cpu_s: 31.0, rows_per_s: 158_000.0, rss_mb: 1_389.0 }),
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
    let usage = "usage: cargo xtask bench <W1|W1s|W1fs|W1sfs|W1x5|REST|W4|W5s|W2|W2m|W2p|W3> [--runs N] [--keep] [--no-record] [--bin DLT] \
                 [--with-dlt]";
    let mut workload = None;
    let mut runs = 1usize;
    let mut keep = false;
    let mut record = true;
    let mut bin: Option<PathBuf> = None;
    let mut with_dlt = false;
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
            "--with-dlt" => with_dlt = true,
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

    let prepared = prepare(ctx, w)?;
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
        let (st, r) = run_once(ctx, w, &dlt, &prepared, tmp.path())?;
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
    let reference = if with_dlt {
        let mut tmp = TempDir::new("dlt-py-bench")?;
        let r = measure_python_dlt(ctx, w, &prepared, tmp.path());
        if keep {
            eprintln!("xtask: kept {}", tmp.keep().display());
        }
        Some(r?)
    } else {
        w.reference
    };

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
    print_table(w, reference, &results, median);

    if !mismatches.is_empty() {
        bail!("{} loaded wrong row counts (result not recorded):\n  {}", w.id, mismatches.join("\n  "));
    }

    let line = results_line(ctx, w, reference, runs, median, load);
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

/// What a workload runs against: a data file, a running json-server, or a Postgres URL.
struct Prepared {
    data: Option<PathBuf>,
    /// W4: the table merged into, loaded before the timed run.
    base: Option<PathBuf>,
    server: Option<JsonServer>,
    pg_url: Option<String>,
}

/// A json-server child process, stopped on drop.
struct JsonServer {
    child: std::process::Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prepare(ctx: &Ctx, w: &Workload) -> Result<Prepared> {
    let none = Prepared { data: None, base: None, server: None, pg_url: None };
    match w.input {
        Input::Jsonl(file) => {
            let data = ensure_data(ctx, file, &["issues".into(), w.records.to_string()])?;
            // the Postgres destination loads into the bench database
            let pg_url = if w.destination == "postgres" { Some(bench_database()?) } else { None };
            Ok(Prepared { data: Some(data), pg_url, ..none })
        }
        Input::Rest { .. } => Ok(Prepared { server: Some(start_json_server(ctx, w)?), ..none }),
        Input::Postgres => Ok(Prepared { pg_url: Some(ensure_pg_table(ctx, w)?), ..none }),
        Input::Mariadb => Ok(Prepared { pg_url: Some(ensure_mariadb_table(ctx, w)?), ..none }),
        Input::Merge { base, base_records, batch, updated } => {
            let n = base_records.to_string();
            let base = ensure_data(ctx, base, &["merge_base".into(), n.clone()])?;
            let new = (w.records - updated).to_string();
            let data = ensure_data(ctx, batch, &["merge_batch".into(), n, updated.to_string(), new])?;
            Ok(Prepared { data: Some(data), base: Some(base), ..none })
        }
    }
}

/// 200,000 flat GitHub-issue-like records served by json-server 0.17 from a copy of db.json.
fn start_json_server(ctx: &Ctx, w: &Workload) -> Result<JsonServer> {
    let bin = crate::json_server::install(&ctx.cache_dir.join("node"))?;
    let dir = TempDir::new("dlt-rs-bench-rest")?;
    let mut items = String::with_capacity(w.records as usize * 220);
    items.push_str("{\"items\": [\n");
    for i in 0..w.records {
        if i > 0 {
            items.push_str(",\n");
        }
        // deterministic values, a pure function of i
        let _ = write!(
            items,
            "{{\"id\": {i}, \"number\": {}, \"title\": \"issue {i} about {}\", \"state\": \"{}\", \
             \"comments\": {}, \"score\": {}.{}, \"created_at\": \"20{:02}-{:02}-{:02}T{:02}:{:02}:00Z\", \
             \"user\": {{\"login\": \"user{}\", \"id\": {}}}}}",
            i + 1,
            ["parsing", "memory", "network", "docs"][(i % 4) as usize],
            if i % 3 == 0 { "closed" } else { "open" },
            i % 50,
            i % 1000,
            i % 97,
            15 + i % 10,
            1 + i % 12,
            1 + i % 28,
            i % 24,
            i % 60,
            i % 5000,
            50_000 + i % 5000
        );
    }
    items.push_str("\n]}\n");
    let db = dir.path().join("db.json");
    fs::write(&db, items).context("cannot write db.json")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(&bin)
        .arg(&db)
        .args(["-q", "--ro", "--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let server = JsonServer { child, port, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("json-server did not answer on port {port} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("xtask: json-server on 127.0.0.1:{port} serving {} records", thousands(w.records));
    Ok(server)
}

/// The database `dlt_bench` (created once); its URL.
fn bench_database() -> Result<String> {
    let (base, psql) = pg_base();
    if psql(&format!("{base}/postgres"), "SELECT 1 FROM pg_database WHERE datname = 'dlt_bench'")?.is_empty() {
        psql(&format!("{base}/postgres"), "CREATE DATABASE dlt_bench")?;
    }
    Ok(format!("{base}/dlt_bench"))
}

type Psql = fn(&str, &str) -> Result<String>;

/// The server URL without a database, and a `psql -tAc` runner.
fn pg_base() -> (String, Psql) {
    let base = std::env::var("DLT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432".into());
    let base = base.trim_end_matches('/');
    let base = match base.rfind('/') {
        Some(i) if base[..i].ends_with('/') => base.to_string(), // no database part
        Some(i) => base[..i].to_string(),
        None => base.to_string(),
    };
    fn psql(db_url: &str, sql: &str) -> Result<String> {
        let out = Command::new("psql")
            .args([db_url, "-tAc", sql])
            .stderr(Stdio::piped())
            .output()
            .context("psql (PostgreSQL client) is needed for the Postgres workloads")?;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
    (base, psql)
}

/// dlt's sql_database source with its fastest backend (bench/README.md): SQLAlchemy and
/// connectorx 0.4.6 in the Python dlt venv, installed once.
fn sql_database_extras(python: &Path) -> Result<()> {
    let have = || {
        Command::new(python)
            .args(["-c", "import sqlalchemy, connectorx, psycopg"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !have() {
        eprintln!("xtask: installing dlt[sql-database], connectorx==0.4.6 and psycopg for Python dlt (once)");
        run(
            Command::new(python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args([
                "dlt[sql-database]==1.31.0",
                "connectorx==0.4.6",
                "psycopg[binary]",
            ]),
            "pip must reach PyPI to install dlt's sql_database extras",
        )?;
        if !have() {
            bail!("after pip install, {} still cannot import sqlalchemy and connectorx", python.display());
        }
    }
    Ok(())
}

/// pymysql for Python dlt's MariaDB runs (SQLAlchemy's reflection).
fn mysql_extras(python: &Path) -> Result<()> {
    let have = || {
        Command::new(python).args(["-c", "import pymysql"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    if !have() {
        eprintln!("xtask: installing pymysql for Python dlt (once)");
        run(
            Command::new(python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "pymysql"]),
            "pip must reach PyPI to install pymysql",
        )?;
    }
    Ok(())
}

/// `url` with a placeholder password when it has none (`scheme://user@host` → `user:x@`).
fn with_password(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) if !user.contains(':') => format!("{scheme}://{user}:x@{host}"),
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The W2/W3 table, generated once by bench/gen_pg.sql into the database `dlt_bench`.
fn ensure_pg_table(ctx: &Ctx, w: &Workload) -> Result<String> {
    let url = bench_database()?;
    let (_, psql) = pg_base();
    let n = psql(&url, "SELECT count(*) FROM b_src.bench_rows").unwrap_or_default();
    if n != w.records.to_string() {
        eprintln!("xtask: generating b_src.bench_rows ({} rows; once, kept in dlt_bench)", thousands(w.records));
        run(
            Command::new("psql")
                .args([&url, "-q", "-v", "ON_ERROR_STOP=1", "-v"])
                .arg(format!("nrows={}", w.records))
                .arg("-f")
                .arg(ctx.repo.join("bench/gen_pg.sql")),
            "psql (PostgreSQL client) is needed for the W2/W3 data",
        )?;
    }
    Ok(url)
}

/// The W2m table, generated once by bench/gen_mysql.sql into the MariaDB database `b_src`.
fn ensure_mariadb_table(ctx: &Ctx, w: &Workload) -> Result<String> {
    let client = |sql: &str| {
        Command::new("mariadb")
            .args(["-uroot", "-h127.0.0.1", "-N", "-B", "-e", sql])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if client("SELECT 1").is_none() {
        bail!("MariaDB on 127.0.0.1:3306 (user root, no password) and its `mariadb` client are needed for W2m");
    }
    if client("SELECT count(*) FROM b_src.bench_rows").as_deref() != Some(w.records.to_string().as_str()) {
        eprintln!("xtask: generating MariaDB b_src.bench_rows ({} rows; once, kept)", thousands(w.records));
        let script = fs::read_to_string(ctx.repo.join("bench/gen_mysql.sql"))
            .context("cannot read bench/gen_mysql.sql")?
            .replace("@NROWS@", &w.records.to_string());
        let mut child = Command::new("mariadb")
            .args(["-uroot", "-h127.0.0.1"])
            .stdin(Stdio::piped())
            .spawn()
            .context("the mariadb client is needed for the W2m data")?;
        std::io::Write::write_all(child.stdin.as_mut().context("mariadb stdin")?, script.as_bytes())?;
        drop(child.stdin.take());
        let st = child.wait()?;
        if !st.success() {
            bail!("generating the W2m table failed ({})", describe_status(st));
        }
    }
    Ok("mysql://root@127.0.0.1:3306/b_src".to_string())
}

/// Generate a workload's input once into `<cache>/bench/` (`gen_json.py <args> FILE`).
fn ensure_data(ctx: &Ctx, file: &str, args: &[String]) -> Result<PathBuf> {
    let dir = ctx.cache_dir.join("bench");
    let path = dir.join(file);
    if fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
        return Ok(path);
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".{file}.tmp-{}", std::process::id()));
    let script = ctx.repo.join("bench/gen_json.py");
    eprintln!("xtask: generating {} (gen_json.py {}; once, cached)", path.display(), args.join(" "));
    let result = (|| -> Result<()> {
        run(
            Command::new("python3").arg(&script).args(args).arg(&tmp),
            "python3 (standard library only) is needed to generate the benchmark data: \
             install Python 3.",
        )
        .context("generating the benchmark data failed")?;
        verify_checksum(ctx, file, &tmp)?;
        fs::rename(&tmp, &path).with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| path)
}

/// Compare with bench/SHA256SUMS (skipped with a note if `sha256sum` is missing).
fn verify_checksum(ctx: &Ctx, name: &str, file: &Path) -> Result<()> {
    let sums = ctx.repo.join("bench/SHA256SUMS");
    let key = format!("data/{name}");
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

/// The pipeline file of a workload.
fn pipeline_file(w: &Workload, prepared: &Prepared) -> String {
    let mut f = format!(
        "# written by `cargo xtask bench`\n[pipeline]\nname = \"bench\"\ndestination = \"{}\"\n\
         dataset_name = \"bench_data\"\n\n",
        w.destination
    );
    if w.destination == "filesystem" {
        f.push_str("[destination]\nbucket_url = \"lake\"\n\n");
    }
    match w.input {
        Input::Jsonl(_) => f.push_str(
            "[source]\ntype = \"files\"\n\n[[source.resources]]\nname = \"issues\"\npath = \"issues.jsonl\"\n\
             write_disposition = \"replace\"\n",
        ),
        Input::Merge { .. } => f.push_str(
            "[source]\ntype = \"files\"\n\n[[source.resources]]\nname = \"orders\"\npath = \"orders.jsonl\"\n\
             write_disposition = \"merge\"\nprimary_key = \"id\"\n",
        ),
        Input::Rest { page } => {
            let port = prepared.server.as_ref().map_or(0, |s| s.port);
            let _ = write!(
                f,
                "[source]\ntype = \"rest_api\"\n\n[source.client]\nbase_url = \"http://127.0.0.1:{port}/\"\n\
                 paginator = {{ type = \"header_link\" }}\n\n[[source.resources]]\nname = \"items\"\n\
                 write_disposition = \"replace\"\n\
                 endpoint = {{ path = \"items\", params = {{ _page = 1, _limit = {page} }} }}\n"
            );
        }
        Input::Postgres | Input::Mariadb => {
            let _ = write!(
                f,
                "[source]\ntype = \"sql_database\"\ncredentials = \"{}\"\nschema = \"b_src\"\n\
                 table_names = [\"bench_rows\"]\nwrite_disposition = \"replace\"\n",
                prepared.pg_url.as_deref().unwrap_or_default()
            );
            if w.id == "W2p" {
                f.push_str("\n[source.tables.bench_rows]\npartitions = 2\n");
            }
        }
    }
    f
}

/// One timed `dlt run pipeline.toml --json` in the fresh dir `dir`.
fn run_once(ctx: &Ctx, w: &Workload, dlt: &Path, prepared: &Prepared, dir: &Path) -> Result<(ExitStatus, Run)> {
    let link = |from: &Path, name: &str| {
        // A symlink keeps the pipeline file free of absolute paths (and of glob
        // characters the cache path might contain).
        let to = dir.join(name);
        let _ = fs::remove_file(&to);
        std::os::unix::fs::symlink(from, &to).with_context(|| format!("cannot link the data into {}", dir.display()))
    };
    let data_name = if matches!(w.input, Input::Merge { .. }) { "orders.jsonl" } else { "issues.jsonl" };
    fs::write(dir.join("pipeline.toml"), pipeline_file(w, prepared)).context("cannot write pipeline.toml")?;
    let dlt_cmd = || {
        let mut cmd = ctx.command(dlt);
        cmd.current_dir(dir)
            .env("DLT_DATA_DIR", dir.join("dlt-data"))
            .args(["run", "pipeline.toml", "--json"])
            .stdin(Stdio::null());
        if let Some(url) = prepared.pg_url.as_deref().filter(|_| w.destination == "postgres") {
            cmd.env("DESTINATION__POSTGRES__CREDENTIALS", url);
        }
        cmd
    };
    if w.destination == "postgres" {
        let (_, psql) = pg_base();
        psql(prepared.pg_url.as_deref().context("no bench database")?, "DROP SCHEMA IF EXISTS bench_data CASCADE")?;
    }
    if let Some(base) = &prepared.base {
        // the table merged into: loaded first, untimed
        link(base, data_name)?;
        let out = dlt_cmd().stdout(Stdio::null()).status().context("cannot run dlt for the base table")?;
        if !out.success() {
            bail!("loading the base table failed ({})", describe_status(out));
        }
    }
    if let Some(data) = &prepared.data {
        link(data, data_name)?;
    }

    let mut cmd = dlt_cmd();
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

fn print_table(w: &Workload, reference: Option<Reference>, results: &[Run], median: &Run) {
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
        let (dlt, ratios) = match reference {
            Some(r) => (
                format!("{:>10.1} {:>9.1} {:>9} {:>10.0}", r.wall_s, r.cpu_s, thousands(r.rows_per_s as u64), r.rss_mb),
                format!(
                    "{:>7.1}x {:>7.2}x",
                    r.wall_s / m.wall.as_secs_f64().max(1e-9),
                    rss_mb(m.peak_rss_kb) / r.rss_mb
                ),
            ),
            None => (format!("{:>10} {:>9} {:>9} {:>10}", "-", "-", "-", "-"), format!("{:>8} {:>8}", "-", "-")),
        };
        println!(
            "{:<8} {:>6} {:>9.2} {:>9.2} {:>10} {:>12.0} | {dlt} | {ratios}",
            w.id,
            label,
            m.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            thousands(rows_per_s(w, m).round() as u64),
            rss_mb(m.peak_rss_kb),
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
    if let Input::Rest { page } = w.input {
        let pages = w.records.div_ceil(page) as f64;
        println!("pages/s: {:.0} (dlt-rs, {} pages of {page})", pages / median.m.wall.as_secs_f64().max(1e-9), pages);
        if let Some(r) = reference {
            println!("pages/s: {:.0} (Python dlt)", pages / r.wall_s.max(1e-9));
        }
    }
    println!(
        "(runs sorted by wall time; speed-up = dlt wall / dlt-rs wall, RSS = dlt-rs / dlt peak RSS; \
         re-measure dlt in the same session for a fair ratio: --with-dlt, bench/README.md)"
    );
}

/// A Markdown table row for docs/benchmarks.md's results section.
fn results_line(
    ctx: &Ctx,
    w: &Workload,
    reference: Option<Reference>,
    runs: usize,
    median: &Run,
    load: Option<f64>,
) -> String {
    let m = &median.m;
    let mut line = String::new();
    let (speed, rss) = match reference {
        Some(r) => (
            format!("{:.1}x", r.wall_s / m.wall.as_secs_f64().max(1e-9)),
            format!("{:.2}x", rss_mb(m.peak_rss_kb) / r.rss_mb),
        ),
        None => ("-".to_string(), "-".to_string()),
    };
    let _ = write!(
        line,
        "| {} | {} | {} | {} | {:.2} | {:.2} | {} | {:.0} | {speed} | {rss} | {} |",
        utc_date(),
        git_commit(ctx),
        w.id,
        runs,
        m.wall.as_secs_f64(),
        m.cpu.as_secs_f64(),
        thousands(rows_per_s(w, m).round() as u64),
        rss_mb(m.peak_rss_kb),
        load.map_or("?".to_string(), |l| format!("{l:.2}")),
    );
    line
}

/// Python dlt 1.31 on the same input, timed like dlt-rs (`DLT_PYTHON`, default the oracle venv
/// in the cache, `pip install "dlt[duckdb,sql_database,parquet]==1.31.0" connectorx`).
fn measure_python_dlt(ctx: &Ctx, w: &Workload, prepared: &Prepared, dir: &Path) -> Result<Reference> {
    let python =
        std::env::var_os("DLT_PYTHON").map(PathBuf::from).unwrap_or_else(|| ctx.cache_dir.join("oracle/bin/python"));
    if !python.exists() {
        bail!("--with-dlt needs Python dlt 1.31: set DLT_PYTHON or create {}", python.display());
    }
    let mut cmd = Command::new(&python);
    cmd.current_dir(dir).stdin(Stdio::null());
    let dest = |cmd: &mut Command| {
        if w.destination == "filesystem" {
            cmd.args(["--dest", "filesystem", "--dest-url"]).arg(dir.join("lake"));
        } else {
            cmd.args(["--dest", "duckdb", "--dest-path"]).arg(dir.join("py.duckdb"));
        }
    };
    match w.input {
        Input::Jsonl(_) if w.destination == "postgres" => {
            let url = prepared.pg_url.as_deref().context("no bench database")?;
            let (_, psql) = pg_base();
            psql(url, "DROP SCHEMA IF EXISTS bench_py CASCADE")?;
            // dlt requires a password in Postgres credentials (the local server trusts anyway)
            let url = &with_password(url);
            // dlt's fastest job format into Postgres (bench/README.md)
            cmd.arg(ctx.repo.join("bench/dlt_load.py"))
                .args(["--name", "bench", "--table", "issues", "--format", "csv", "--workdir"])
                .arg(dir.join("pipelines"))
                .arg("--jsonl")
                .arg(prepared.data.as_ref().context("no data file")?)
                .args(["--dest", "postgres", "--dest-url", url, "--dataset", "bench_py"]);
        }
        Input::Jsonl(_) => {
            cmd.arg(ctx.repo.join("bench/dlt_load.py"))
                .args(["--name", "bench", "--table", "issues", "--format", "parquet", "--workdir"])
                .arg(dir.join("pipelines"))
                .arg("--jsonl")
                .arg(prepared.data.as_ref().context("no data file")?);
            dest(&mut cmd);
        }
        Input::Merge { .. } => {
            let merge = |cmd: &mut Command, file: &Path| {
                cmd.arg(ctx.repo.join("bench/dlt_load.py"))
                    .args(["--name", "bench", "--table", "orders", "--format", "parquet"])
                    .args(["--write-disposition", "merge", "--primary-key", "id", "--workdir"])
                    .arg(dir.join("pipelines"))
                    .arg("--jsonl")
                    .arg(file);
                dest(cmd);
            };
            // the table merged into: loaded first, untimed
            let mut first = Command::new(&python);
            first.current_dir(dir).stdin(Stdio::null()).stdout(Stdio::null());
            merge(&mut first, prepared.base.as_ref().context("no base file")?);
            let st = first.status().context("cannot run Python dlt for the base table")?;
            if !st.success() {
                bail!("Python dlt failed on the base table ({})", describe_status(st));
            }
            merge(&mut cmd, prepared.data.as_ref().context("no data file")?);
        }
        Input::Rest { page } => {
            let port = prepared.server.as_ref().context("no server")?.port;
            cmd.arg(ctx.repo.join("bench/dlt_rest.py"))
                .arg("--workdir")
                .arg(dir.join("pipelines"))
                .args(["--base-url", &format!("http://127.0.0.1:{port}/"), "--page", &page.to_string()])
                .arg("--dest-path")
                .arg(dir.join("py.duckdb"));
        }
        Input::Mariadb => {
            let url = prepared.pg_url.as_deref().context("no database")?;
            sql_database_extras(&python)?;
            mysql_extras(&python)?;
            // connectorx reads MySQL URLs; dlt's fastest backend for MariaDB
            cmd.arg(ctx.repo.join("bench/dlt_load.py"))
                .args(["--name", "bench", "--sql-table", "b_src.bench_rows", "--backend", "connectorx"])
                .args(["--sql-url", &url.replace("mysql://", "mysql+pymysql://"), "--format", "parquet", "--workdir"])
                .arg(dir.join("pipelines"));
            dest(&mut cmd);
        }
        Input::Postgres => {
            let url = prepared.pg_url.as_deref().context("no database")?;
            sql_database_extras(&python)?;
            cmd.arg(ctx.repo.join("bench/dlt_load.py"))
                .args(["--name", "bench", "--sql-table", "b_src.bench_rows", "--backend", "connectorx"])
                .args(["--sql-url", url, "--format", "parquet", "--workdir"])
                .arg(dir.join("pipelines"));
            dest(&mut cmd);
        }
    }
    let (st, m, stdout) = measure(&mut cmd)?;
    let text = String::from_utf8_lossy(&stdout);
    if !st.success() {
        bail!("Python dlt failed ({}):\n{text}", describe_status(st));
    }
    let result = text.lines().find_map(|l| l.strip_prefix("BENCH_RESULT ")).unwrap_or("{}");
    eprintln!(
        "xtask: Python dlt: wall {:.2} s, CPU {:.2} s, peak RSS {:.0} MB; {result}",
        m.wall.as_secs_f64(),
        m.cpu.as_secs_f64(),
        rss_mb(m.peak_rss_kb)
    );
    Ok(Reference {
        wall_s: m.wall.as_secs_f64(),
        cpu_s: m.cpu.as_secs_f64(),
        rows_per_s: rows_per_s(w, &m),
        rss_mb: rss_mb(m.peak_rss_kb),
    })
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
