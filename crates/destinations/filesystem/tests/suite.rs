//! The testkit's destination conformance suite on the filesystem destination (a local folder,
//! parquet job files), each case in a folder of its own, read back with DuckDB's own
//! `read_parquet` / `read_json` over the files. Merge needs Delta tables, so the merge cases
//! are skipped (the capabilities say so).

use std::path::PathBuf;
use std::sync::Arc;

use dlt::Destination;
use dlt::destinations::filesystem_impl::{Filesystem, FilesystemConfig};
use dlt_testkit::suite::{Place, Rows, Target};

struct FsTarget;

struct FsPlace {
    _dir: tempfile::TempDir,
    bucket: PathBuf,
}

impl Target for FsTarget {
    fn fresh(&self) -> Box<dyn Place> {
        let dir = tempfile::tempdir().unwrap();
        let bucket = dir.path().join("bucket");
        Box::new(FsPlace { _dir: dir, bucket })
    }
}

impl Place for FsPlace {
    fn destination(&self) -> Arc<dyn Destination> {
        Arc::new(Filesystem::new(FilesystemConfig::new(self.bucket.display().to_string())).unwrap())
    }

    fn rows(&self, dataset: &str, table: &str, columns: &[&str]) -> Option<Rows> {
        let dir = self.bucket.join(dataset).join(table);
        if !dir.is_dir() {
            return None;
        }
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .filter(|p| p.ends_with(".parquet") || p.ends_with(".jsonl") || p.ends_with(".jsonl.gz"))
            .collect();
        if files.is_empty() {
            return Some(vec![]);
        }
        files.sort();
        let list = files.iter().map(|f| format!("'{}'", f.replace('\'', "''"))).collect::<Vec<_>>().join(", ");
        let from = if files[0].ends_with(".parquet") {
            format!("read_parquet([{list}], union_by_name = true)")
        } else {
            format!("read_json_auto([{list}], union_by_name = true)")
        };
        let cols: Vec<String> =
            columns.iter().map(|c| format!("CAST(\"{}\" AS VARCHAR)", c.replace('"', "\"\""))).collect();
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare(&format!("SELECT {} FROM {from}", cols.join(", "))).unwrap();
        let rows = stmt
            .query_map([], |r| (0..columns.len()).map(|i| r.get::<_, Option<String>>(i)).collect::<Result<Vec<_>, _>>())
            .unwrap();
        Some(rows.map(|r| r.unwrap()).collect())
    }
}

#[test]
fn conformance_suite() {
    let (ran, skipped) = dlt_testkit::suite::run(&FsTarget);
    // merge needs Delta tables; replace is truncate-and-insert only
    assert!(skipped.iter().all(|s| s.starts_with("merge_") || s.starts_with("replace_")), "{skipped:?}");
    assert!(ran.contains(&"replace_truncate_and_insert"), "{ran:?}");
    assert!(ran.contains(&"state_restore") && ran.contains(&"a_lost_acknowledgement_loads_once"), "{ran:?}");
}
