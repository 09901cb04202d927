//! Staging in the contract: job files go to a staging destination (the filesystem destination
//! on a local folder) first, and the destination (DuckDB) loads them from there. Read back with
//! the DuckDB library and by listing the staging folder.
#![cfg(feature = "filesystem")]

use std::sync::Arc;

use dlt::destinations::filesystem_impl::{Filesystem, FilesystemConfig};
use dlt::{Destination, Resource, WriteDisposition, WriteDispositionConfig};
use serde_json::json;

fn staged_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = vec![];
    for t in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(t.path()).into_iter().flatten().flatten() {
            out.push(format!("{}/{}", t.file_name().to_string_lossy(), f.file_name().to_string_lossy()));
        }
    }
    out.sort();
    out
}

fn rows(db: &std::path::Path, sql: &str) -> Vec<String> {
    let conn = duckdb::Connection::open(db).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let r = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
    r.map(|x| x.unwrap()).collect()
}

#[test]
fn duckdb_loads_the_files_a_filesystem_staging_destination_holds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("warehouse.duckdb");
    let bucket = dir.path().join("stage");
    let staging: Arc<dyn Destination> =
        Arc::new(Filesystem::new(FilesystemConfig::new(bucket.display().to_string())).unwrap());
    let pipeline = || {
        dlt::pipeline("staged")
            .destination(Arc::new(dlt::destinations::duckdb_impl::DuckDb::new(&db)))
            .staging(staging.clone())
            .dataset_name("wh")
            .pipelines_dir(dir.path().join("pipelines"))
            .config(dlt::Config::from_parts(vec![], None, None))
            .build()
            .unwrap()
    };
    let mut p = pipeline();
    let merge = |rows| {
        Resource::from_values("items", rows)
            .write_disposition(WriteDispositionConfig { disposition: WriteDisposition::Merge, ..Default::default() })
            .primary_key(["id"])
    };
    let info = p.run(merge(vec![json!({"id": 1, "v": "a", "tags": ["x"]}), json!({"id": 2, "v": "b"})])).unwrap();
    let first = info.load_ids[0].clone();
    p.run(merge(vec![json!({"id": 2, "v": "b2"}), json!({"id": 3, "v": "c"})])).unwrap();
    assert_eq!(rows(&db, "SELECT id || v FROM wh.items ORDER BY id"), ["1a", "2b2", "3c"]);
    assert_eq!(rows(&db, "SELECT value FROM wh.items__tags"), ["x"]);
    // the data went through the staging folder: one file per job and load, no dlt files there
    let files = staged_files(&bucket.join("wh"));
    assert_eq!(files.iter().filter(|f| f.starts_with("items/")).count(), 2, "{files:?}");
    assert!(files.iter().any(|f| f.starts_with(&format!("items__tags/{first}."))), "{files:?}");
    assert!(files.iter().all(|f| !f.starts_with("_dlt")), "{files:?}");
    // the state row is loaded from the local job, and comes back on a fresh working dir
    let wd = p.working_dir().to_path_buf();
    drop(p);
    std::fs::remove_dir_all(wd).unwrap();
    let mut p = pipeline();
    assert!(p.sync_destination().unwrap());
}

#[test]
fn a_staging_pair_that_cannot_work_is_refused_when_the_pipeline_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let duck = || -> Arc<dyn Destination> {
        Arc::new(dlt::destinations::duckdb_impl::DuckDb::new(dir.path().join("x.duckdb")))
    };
    let err = dlt::pipeline("bad_staging")
        .destination(duck())
        .staging(duck())
        .pipelines_dir(dir.path().join("pipelines"))
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cannot stage files") && err.contains("duckdb"), "{err}");
    let fs: Arc<dyn Destination> =
        Arc::new(Filesystem::new(FilesystemConfig::new(dir.path().join("b").display().to_string())).unwrap());
    let err = dlt::pipeline("bad_staging")
        .destination(fs.clone())
        .staging(fs)
        .pipelines_dir(dir.path().join("pipelines"))
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("does not load from staged files"), "{err}");
}

#[test]
fn a_pipeline_file_names_its_staging_destination() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.jsonl"), "{\"id\": 1}\n{\"id\": 2}\n").unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        "[pipeline]\nname = \"pf_staged\"\ndestination = \"duckdb\"\nstaging = \"filesystem\"\ndataset_name = \"wh\"\n\
         pipelines_dir = \"pipelines\"\n\n[staging]\nbucket_url = \"stage\"\n\n[source]\ntype = \"files\"\n\n\
         [[source.resources]]\nname = \"events\"\npath = \"events.jsonl\"\n",
    )
    .unwrap();
    let pf = dlt::PipelineFile::load(&file).unwrap();
    let registry = dlt::registry();
    let mut p = pf.pipeline(&registry, None).unwrap();
    let source = pf.source(&registry, p.config()).unwrap();
    p.run(source).unwrap();
    assert_eq!(
        rows(&dir.path().join("pf_staged.duckdb"), "SELECT CAST(id AS VARCHAR) FROM wh.events ORDER BY id"),
        ["1", "2"]
    );
    assert_eq!(staged_files(&dir.path().join("stage/wh")).len(), 1);
}
