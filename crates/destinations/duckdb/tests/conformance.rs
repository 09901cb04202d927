//! The testkit's destination conformance suite on DuckDB, each case in a database file of its
//! own, read back with the DuckDB library directly.

use std::path::PathBuf;
use std::sync::Arc;

use dlt_core::destination::Destination;
use dlt_testkit::suite::{Place, Rows, Target};

struct DuckTarget;

struct DuckPlace {
    _dir: tempfile::TempDir,
    db: PathBuf,
}

impl Target for DuckTarget {
    fn fresh(&self) -> Box<dyn Place> {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("suite.duckdb");
        Box::new(DuckPlace { _dir: dir, db })
    }
}

impl Place for DuckPlace {
    fn destination(&self) -> Arc<dyn Destination> {
        Arc::new(dlt_duckdb::DuckDb::new(&self.db))
    }

    fn rows(&self, dataset: &str, table: &str, columns: &[&str]) -> Option<Rows> {
        if !self.db.exists() {
            return None;
        }
        let conn = duckdb::Connection::open(&self.db).unwrap();
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                [dataset, table],
                |r| r.get(0),
            )
            .unwrap();
        if n == 0 {
            return None;
        }
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let cols: Vec<String> = columns.iter().map(|c| format!("CAST({} AS VARCHAR)", q(c))).collect();
        let mut stmt = conn.prepare(&format!("SELECT {} FROM {}.{}", cols.join(", "), q(dataset), q(table))).unwrap();
        let rows = stmt
            .query_map([], |r| (0..columns.len()).map(|i| r.get::<_, Option<String>>(i)).collect::<Result<Vec<_>, _>>())
            .unwrap();
        Some(rows.map(|r| r.unwrap()).collect())
    }
}

#[test]
fn conformance_suite() {
    let (ran, skipped) = dlt_testkit::suite::run(&DuckTarget);
    assert_eq!(skipped, ["replace_staging_optimized"], "DuckDB declares every other strategy");
    assert_eq!(ran.len(), dlt_testkit::suite::cases().len() - 1);
}
