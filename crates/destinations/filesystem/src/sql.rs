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

fn err(e: impl std::fmt::Display, what: &str) -> Error {
    Error::Destination { destination: NAME.into(), message: format!("{what}: {e}"), transient: false }
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The current files of a Delta table (bucket-relative) and whether it is partitioned; `None`
/// for plain tables.
#[cfg(feature = "delta")]
fn delta_files(client: &FilesystemClient, schema_name: &str, table: &str) -> Result<Option<(Vec<String>, bool)>> {
    let prefix = client.table_prefix(schema_name, table)?;
    let Some(dir) = prefix.strip_suffix('/').filter(|d| !d.is_empty()) else { return Ok(None) };
    let rel = client.bucket_rel(dir);
    if !crate::delta::is_delta_table(client.shared_store(), &rel)? {
        return Ok(None);
    }
    let files = crate::delta::current_files(client.shared_store(), &rel, table)?;
    let partitioned = files.iter().any(|(_, pv)| !pv.is_empty());
    Ok(Some((files.into_iter().map(|(f, _)| f).collect(), partitioned)))
}

#[cfg(not(feature = "delta"))]
fn delta_files(_: &FilesystemClient, _: &str, _: &str) -> Result<Option<(Vec<String>, bool)>> {
    Ok(None)
}

impl SqlState {
    pub(crate) fn open(client: &FilesystemClient) -> Result<SqlState> {
        let conn = duckdb::Connection::open_in_memory().map_err(|e| err(e, "opening DuckDB"))?;
        let store = client.shared_store();
        let mut tmp: Option<tempfile::TempDir> = None;
        for (schema_name, table) in client.tables_with_files()? {
            // bucket-relative paths of the visible files; Delta tables: the current version's files
            let (files, hive) = match delta_files(client, &schema_name, &table)? {
                Some((files, partitioned)) => (files, partitioned),
                None => {
                    (client.table_files(&schema_name, &table)?.iter().map(|f| client.bucket_rel(f)).collect(), false)
                }
            };
            if files.is_empty() {
                continue;
            }
            let mut local = vec![];
            for (i, bucket_rel) in files.iter().enumerate() {
                let f = bucket_rel;
                match store.local_path(bucket_rel) {
                    Some(p) => local.push(p),
                    None => {
                        if tmp.is_none() {
                            tmp = Some(tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?);
                        }
                        let name = f.rsplit('/').next().unwrap_or("file");
                        let p = tmp.as_ref().expect("set").path().join(format!("{i}-{table}-{name}"));
                        // keep a Delta table's partition folders (`col=value/`) for hive partitioning
                        let p = if hive {
                            let sub = f.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                            let dir = tmp.as_ref().expect("set").path().join(format!("{i}-{table}")).join(
                                sub.rsplit('/')
                                    .take_while(|s| s.contains('='))
                                    .collect::<Vec<_>>()
                                    .iter()
                                    .rev()
                                    .collect::<std::path::PathBuf>(),
                            );
                            std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.clone(), e))?;
                            dir.join(name)
                        } else {
                            p
                        };
                        store.get_to_file(bucket_rel, &p)?;
                        local.push(p);
                    }
                }
            }
            // one reader per file kind (a table may hold files of several formats over time)
            let mut kinds: Vec<(&str, Vec<String>)> = vec![];
            for (f, p) in files.iter().zip(&local) {
                let kind = if f.ends_with(".parquet") {
                    "parquet"
                } else if f.ends_with(".csv") || f.ends_with(".csv.gz") {
                    "csv"
                } else {
                    "json"
                };
                let path = lit(&p.to_string_lossy());
                match kinds.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, v)) => v.push(path),
                    None => kinds.push((kind, vec![path])),
                }
            }
            let reader = kinds
                .iter()
                .map(|(kind, paths)| {
                    let list = paths.join(", ");
                    match *kind {
                        "parquet" => format!(
                            "SELECT * FROM read_parquet([{list}], union_by_name = true{})",
                            if hive { ", hive_partitioning = true" } else { "" }
                        ),
                        "csv" => format!("SELECT * FROM read_csv([{list}], union_by_name = true, header = true)"),
                        _ => format!(
                            "SELECT * FROM read_json([{list}], format = 'newline_delimited', union_by_name = true)"
                        ),
                    }
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL BY NAME ");
            conn.execute_batch(&format!("CREATE VIEW {} AS {reader};", quote(&table)))
                .map_err(|e| err(e, &format!("creating a view of table {table}")))?;
        }
        Ok(SqlState { conn, _tmp: tmp })
    }

    pub(crate) fn execute(&mut self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql).map_err(|e| err(e, "SQL failed"))
    }

    pub(crate) fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| err(e, "query failed"))?;
        let batches = stmt.query_arrow([]).map_err(|e| err(e, "query failed"))?;
        dlt_duckdb_arrow::collect_batches(batches).map_err(|e| err(e, "reading a query result"))
    }
}
