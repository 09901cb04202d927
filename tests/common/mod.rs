//! Helpers shared by the end-to-end tests: a temp project with a DuckDB file, and an independent
//! reader (a plain DuckDB connection, not dlt-rs) for the results.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use dlt::destinations;

pub struct Env {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        Env { _dir: dir, root }
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("dest.duckdb")
    }
    pub fn pipeline(&self, name: &str, dataset: &str) -> dlt::Pipeline {
        dlt::pipeline(name)
            .destination(destinations::duckdb(self.db()))
            .dataset_name(dataset)
            .pipelines_dir(self.root.join("pipelines"))
            .config(dlt::Config::from_parts(vec![], None, None))
            .build()
            .unwrap()
    }
}

/// Independent reader: a plain DuckDB connection, values cast to text by DuckDB itself.
pub fn query(db: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let conn = duckdb::Connection::open(db).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut out = vec![];
    while let Some(r) = rows.next().unwrap() {
        let n = r.as_ref().column_count();
        let mut row = vec![];
        for i in 0..n {
            let v: duckdb::types::Value = r.get(i).unwrap();
            row.push(match v {
                duckdb::types::Value::Null => None,
                duckdb::types::Value::Text(s) => Some(s),
                duckdb::types::Value::BigInt(i) => Some(i.to_string()),
                duckdb::types::Value::Int(i) => Some(i.to_string()),
                duckdb::types::Value::SmallInt(i) => Some(i.to_string()),
                duckdb::types::Value::TinyInt(i) => Some(i.to_string()),
                duckdb::types::Value::HugeInt(i) => Some(i.to_string()),
                duckdb::types::Value::Boolean(b) => Some(b.to_string()),
                duckdb::types::Value::Double(f) => Some(f.to_string()),
                other => Some(format!("{other:?}")),
            });
        }
        out.push(row);
    }
    out
}

/// (column, DuckDB type, is_nullable) in table order.
pub fn columns(db: &Path, schema: &str, table: &str) -> Vec<(String, String, String)> {
    query(
        db,
        &format!(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
             WHERE table_schema = '{schema}' AND table_name = '{table}' ORDER BY ordinal_position"
        ),
    )
    .into_iter()
    .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap(), r[2].clone().unwrap()))
    .collect()
}

/// The first value of the first row, as text.
pub fn scalar(db: &Path, sql: &str) -> String {
    query(db, sql)[0][0].clone().unwrap_or_default()
}
