//! SQL over a dataset's files with an in-memory DuckDB: one view per table over its visible
//! files (local files are read in place; remote ones are downloaded to a temporary folder).

use arrow::record_batch::RecordBatch;
use dlt_core::error::{Error, Result};

use crate::client::FilesystemClient;
use crate::error::NAME;

pub(crate) struct SqlState {
    conn: duckdb::Connection,
    _tmp: Option<tempfile::TempDir>,
}

fn err(e: duckdb::Error, what: &str) -> Error {
    Error::Destination { destination: NAME.into(), message: format!("{what}: {e}"), transient: false }
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl SqlState {
    pub(crate) fn open(client: &FilesystemClient) -> Result<SqlState> {
        let conn = duckdb::Connection::open_in_memory().map_err(|e| err(e, "opening DuckDB"))?;
        let store = client.shared_store();
        let mut tmp: Option<tempfile::TempDir> = None;
        for (schema_name, table) in client.tables_with_files()? {
            let files = client.table_files(&schema_name, &table)?;
            let mut local = vec![];
            for (i, f) in files.iter().enumerate() {
                let bucket_rel = client.bucket_rel(f);
                match store.local_path(&bucket_rel) {
                    Some(p) => local.push(p),
                    None => {
                        if tmp.is_none() {
                            tmp = Some(tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?);
                        }
                        let name = f.rsplit('/').next().unwrap_or("file");
                        let p = tmp.as_ref().expect("set").path().join(format!("{i}-{table}-{name}"));
                        store.get_to_file(&bucket_rel, &p)?;
                        local.push(p);
                    }
                }
            }
            let list = local.iter().map(|p| lit(&p.to_string_lossy())).collect::<Vec<_>>().join(", ");
            let first = files.first().map(String::as_str).unwrap_or_default();
            let reader = if first.ends_with(".parquet") {
                format!("read_parquet([{list}], union_by_name = true)")
            } else if first.ends_with(".csv") || first.ends_with(".csv.gz") {
                format!("read_csv([{list}], union_by_name = true, header = true)")
            } else {
                format!("read_json([{list}], format = 'newline_delimited', union_by_name = true)")
            };
            conn.execute_batch(&format!("CREATE VIEW {} AS SELECT * FROM {reader};", quote(&table)))
                .map_err(|e| err(e, &format!("creating a view of table {table}")))?;
        }
        Ok(SqlState { conn, _tmp: tmp })
    }

    pub(crate) fn execute(&mut self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql).map_err(|e| err(e, "SQL failed"))
    }

    pub(crate) fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| err(e, "query failed"))?;
        let batches: Vec<RecordBatch> = stmt.query_arrow([]).map_err(|e| err(e, "query failed"))?.collect();
        Ok(batches)
    }
}
