//! `dlt run` into the filesystem destination and `dlt pipeline NAME sync` from the bucket, with
//! the `dlt` binary as a subprocess; files read back with DuckDB's `read_parquet`.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "failed: {}\nstdout: {out}\nstderr: {}", o.status, String::from_utf8_lossy(&o.stderr));
    out
}

struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("data")).unwrap();
        let lines: String = (0..5).map(|i| format!("{{\"id\": {i}, \"tags\": [\"a\", \"b{i}\"]}}\n")).collect();
        std::fs::write(root.join("data/issues.jsonl"), lines).unwrap();
        std::fs::write(
            root.join("pipeline.toml"),
            "[pipeline]\nname = \"fs_cli\"\ndestination = \"filesystem\"\ndataset_name = \"ds\"\n\n\
             [destination]\nbucket_url = \"bucket\"\n\n\
             [source]\ntype = \"files\"\n\n[[source.resources]]\nname = \"issues\"\npath = \"data/*.jsonl\"\n\
             [source.resources.incremental]\ncursor_path = \"id\"\n",
        )
        .unwrap();
        Project { _dir: dir, root }
    }

    fn dlt(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_dlt"))
            .current_dir(&self.root)
            .env("DLT_DATA_DIR", self.root.join("dlt-data"))
            .env_remove("DLT_FAULT")
            .args(args)
            .output()
            .unwrap()
    }

    fn dlt_with_fault(&self, fault: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_dlt"))
            .current_dir(&self.root)
            .env("DLT_DATA_DIR", self.root.join("dlt-data"))
            .env("DLT_FAULT", fault)
            .args(args)
            .output()
            .unwrap()
    }

    fn count(&self, table: &str) -> i64 {
        let c = duckdb::Connection::open_in_memory().unwrap();
        let glob = self.root.join(format!("bucket/ds/{table}/*.parquet"));
        c.query_row(&format!("SELECT count(*) FROM read_parquet('{}')", glob.display()), [], |r| r.get(0)).unwrap()
    }
}

#[test]
fn run_into_files_and_sync_state_from_the_bucket() {
    let p = Project::new();
    let out = ok(&p.dlt(&["run", "pipeline.toml"]));
    assert!(out.contains("destination filesystem"), "{out}");
    assert_eq!(p.count("issues"), 5);
    assert_eq!(p.count("issues__tags"), 10);
    assert!(p.root.join("bucket/ds/init").exists());
    assert_eq!(std::fs::read_dir(p.root.join("bucket/ds/_dlt_loads")).unwrap().count(), 1);

    let wd = p.root.join("dlt-data/pipelines/fs_cli");
    let before: Value = serde_json::from_str(&std::fs::read_to_string(wd.join("state.json")).unwrap()).unwrap();
    std::fs::remove_file(wd.join("state.json")).unwrap();
    std::fs::remove_dir_all(wd.join("schemas")).unwrap();
    let out = ok(&p.dlt(&["-y", "pipeline", "fs_cli", "sync"]));
    assert!(out.contains("Restoring from destination"), "{out}");
    let after: Value = serde_json::from_str(&std::fs::read_to_string(wd.join("state.json")).unwrap()).unwrap();
    assert_eq!(after["_version_hash"], before["_version_hash"]);
    assert_eq!(
        after["sources"]["fs_cli"]["resources"]["issues"]["incremental"]["id"]["last_value"],
        serde_json::json!(4)
    );
    assert!(wd.join("schemas/fs_cli.schema.json").exists());

    // the restored cursor: the same file loads nothing new
    let json: Value = serde_json::from_slice(&p.dlt(&["run", "pipeline.toml", "--json"]).stdout).unwrap();
    assert!(json["row_counts"].get("issues").is_none(), "{json}");
    // a fresh machine without the working dir: `run` restores from the bucket before extracting
    std::fs::remove_dir_all(&wd).unwrap();
    let json: Value = serde_json::from_slice(&p.dlt(&["run", "pipeline.toml", "--json"]).stdout).unwrap();
    assert!(json["row_counts"].get("issues").is_none(), "{json}");
    assert_eq!(p.count("issues"), 5);
}

/// Data files of the bucket's tables with their modification times.
fn data_files(root: &std::path::Path) -> Vec<(String, std::time::SystemTime)> {
    let mut out = vec![];
    for t in ["issues", "issues__tags"] {
        for e in std::fs::read_dir(root.join("bucket/ds").join(t)).into_iter().flatten().flatten() {
            out.push((format!("{t}/{}", e.file_name().to_string_lossy()), e.metadata().unwrap().modified().unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_killed_load_resumes_with_the_jobs_left() {
    // the filesystem destination has no transactions: each completed job is recorded in the
    // package, so a load killed between two jobs resumes with the jobs that are left
    let p = Project::new();
    // jobs run in file name order: the state job, issues, issues__tags
    let o = p.dlt_with_fault("load.after_job.2", &["run", "pipeline.toml"]);
    assert!(!o.status.success(), "the fault stops the process");
    let written = data_files(&p.root);
    assert_eq!(written.len(), 1, "one job completed before the kill: {written:?}");
    let loads = p.root.join("bucket/ds/_dlt_loads");
    assert!(std::fs::read_dir(&loads).map(|r| r.count()).unwrap_or(0) == 0, "not committed");
    let pending = p.root.join("dlt-data/pipelines/fs_cli/load/normalized");
    let package = std::fs::read_dir(&pending).unwrap().flatten().next().expect("a pending package").path();
    assert_eq!(std::fs::read_dir(package.join("completed_jobs")).unwrap().count(), 2);

    // the next run loads the pending package first; its cursor then finds nothing new
    ok(&p.dlt(&["run", "pipeline.toml"]));
    let after = data_files(&p.root);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.contains(&written[0]), "the completed job's file is not written again: {after:?} {written:?}");
    assert_eq!(p.count("issues"), 5);
    assert_eq!(p.count("issues__tags"), 10);
    assert_eq!(std::fs::read_dir(p.root.join("bucket/ds/_dlt_loads")).unwrap().count(), 1);
}

#[test]
fn missing_bucket_url_is_a_one_line_error_naming_the_setting() {
    let p = Project::new();
    let toml = std::fs::read_to_string(p.root.join("pipeline.toml")).unwrap().replace("bucket_url = \"bucket\"\n", "");
    std::fs::write(p.root.join("pipeline.toml"), toml).unwrap();
    let o = p.dlt(&["run", "pipeline.toml"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ERROR:") && err.contains("DESTINATION__FILESYSTEM__BUCKET_URL"), "{err}");
}

#[test]
fn table_format_delta_from_the_pipeline_file() {
    let p = Project::new();
    let toml = std::fs::read_to_string(p.root.join("pipeline.toml"))
        .unwrap()
        .replace("bucket_url = \"bucket\"\n", "bucket_url = \"bucket\"\ntable_format = \"delta\"\n");
    std::fs::write(p.root.join("pipeline.toml"), toml).unwrap();
    ok(&p.dlt(&["run", "pipeline.toml"]));
    // a Delta table per table: created (version 0), then written (version 1)
    for t in ["issues", "issues__tags"] {
        let log = p.root.join(format!("bucket/ds/{t}/_delta_log"));
        assert!(log.join("00000000000000000000.json").exists(), "{t}");
        let v1 = std::fs::read_to_string(log.join("00000000000000000001.json")).unwrap();
        assert!(v1.contains("\"add\"") && v1.contains("\"operation\":\"WRITE\""), "{v1}");
    }
    assert_eq!(p.count("issues"), 5);
    assert_eq!(p.count("issues__tags"), 10);

    // `info` lists the Delta tables with their version and the files of that version (the
    // parquet files in the table folder: nothing was removed)
    let out = ok(&p.dlt(&["pipeline", "fs_cli", "info"]));
    for t in ["issues", "issues__tags"] {
        let (n, bytes) = files_and_bytes(&p.root.join(format!("bucket/ds/{t}")), |n| n.ends_with(".parquet"));
        assert_eq!(n, 1, "{t}");
        assert!(
            out.contains(&format!("  - {t}: 1 file(s), {bytes} bytes, Delta table version 1\n")),
            "{t} {bytes}: {out}"
        );
    }
}

/// Files below `dir` (recursive) whose name passes `keep`, and their total size.
fn files_and_bytes(dir: &std::path::Path, keep: impl Fn(&str) -> bool + Copy) -> (usize, u64) {
    let (mut n, mut bytes) = (0, 0);
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        if path.is_dir() {
            let (a, b) = files_and_bytes(&path, keep);
            n += a;
            bytes += b;
        } else if keep(&e.file_name().to_string_lossy()) {
            n += 1;
            bytes += e.metadata().unwrap().len();
        }
    }
    (n, bytes)
}

#[test]
fn info_lists_the_tables_in_the_bucket() {
    let p = Project::new();
    ok(&p.dlt(&["run", "pipeline.toml"]));
    std::fs::write(p.root.join("data/more.jsonl"), "{\"id\": 10, \"tags\": [\"c\"]}\n").unwrap();
    ok(&p.dlt(&["run", "pipeline.toml"]));
    let out = ok(&p.dlt(&["pipeline", "fs_cli", "info"]));
    let ds = p.root.join("bucket/ds");
    let url = std::fs::canonicalize(&ds).unwrap();
    assert!(out.contains(&format!("\nDataset ds at file://{}: 5 table(s) with files\n", url.display())), "{out}");
    // every table with the files and bytes on disk, in name order
    let mut expected = vec![];
    for t in ["_dlt_loads", "_dlt_pipeline_state", "_dlt_version", "issues", "issues__tags"] {
        let (n, bytes) = files_and_bytes(&ds.join(t), |_| true);
        assert!(n >= 1, "{t}");
        expected.push(format!("  - {t}: {n} file(s), {bytes} bytes"));
    }
    assert_eq!(files_and_bytes(&ds.join("issues"), |_| true).0, 2, "two loads, two files");
    assert_eq!(files_and_bytes(&ds.join("_dlt_loads"), |_| true).0, 2);
    let listed: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("Dataset ds at ")).skip(1).collect();
    assert_eq!(listed, expected, "{out}");
}
