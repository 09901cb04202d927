//! A BigQuery client as the shared loader's [`SqlConnection`]: a statement or script is one
//! query job, results come back as text columns (what the loader reads), and the load step of a
//! job file is a load job (`crate::load`).

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use dlt_core::destination::{FileFormat, JobFile};
use dlt_core::error::{Error, Result};
use dlt_core::schema::Table;
use dlt_sql::SqlConnection;
use serde_json::Value;

use crate::client::Client;
use crate::load::{SourceFormat, job_id};

/// A connected client.
#[derive(Debug)]
pub struct BigQueryConnection {
    client: Client,
}

impl BigQueryConnection {
    /// A connection over a client.
    pub fn new(client: Client) -> Self {
        BigQueryConnection { client }
    }
}

/// The dataset and table of a qualified, quoted name: `` `ds`.`t` `` → `("ds", "t")`.
pub fn split_target(target: &str) -> Option<(String, String)> {
    let mut parts = vec![];
    let mut cur = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in target.chars() {
        match c {
            _ if escaped => {
                cur.push(c);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '`' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    match &parts[..] {
        [dataset, table] => Some((dataset.clone(), table.clone())),
        _ => None,
    }
}

/// The load id of a job file: the name of the package folder its job folder is in.
fn load_id_of(job: &JobFile) -> String {
    job.path
        .parent()
        .and_then(|jobs| jobs.parent())
        .and_then(|package| package.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl SqlConnection for BigQueryConnection {
    async fn execute(&mut self, sql: &str) -> Result<()> {
        if sql.trim().is_empty() {
            return Ok(());
        }
        self.client.query(sql).await.map(|_| ())
    }

    async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        let rows = self.client.query(sql).await?;
        let n = rows.columns.len();
        if n == 0 {
            return Ok(vec![]);
        }
        let fields: Vec<Field> =
            rows.columns.iter().map(|c| Field::new(c, arrow::datatypes::DataType::Utf8, true)).collect();
        let columns: Vec<ArrayRef> = (0..n)
            .map(|i| {
                let values: Vec<Option<String>> = rows
                    .rows
                    .iter()
                    .map(|r| match r.get(i) {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(other) => Some(other.to_string()),
                    })
                    .collect();
                Arc::new(StringArray::from(values)) as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| Error::Destination {
            destination: "bigquery".into(),
            message: format!("reading the result of {sql}: {e}"),
            transient: false,
        })?;
        Ok(vec![batch])
    }

    async fn load_job(&mut self, target: &str, _table: &Table, job: &JobFile) -> Result<()> {
        let format = match job.format {
            FileFormat::Parquet => SourceFormat::Parquet,
            FileFormat::Jsonl => SourceFormat::Jsonl,
            other => {
                return Err(Error::Config(format!(
                    "bigquery: job file {} is {other:?}; this destination loads parquet and jsonl job files",
                    job.path.display()
                )));
            }
        };
        let (dataset, table) = split_target(target)
            .ok_or_else(|| Error::Config(format!("bigquery: `{target}` is not a dataset-qualified table")))?;
        let name = job.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let id = job_id(&load_id_of(job), &name);
        self.client.load_file(&dataset, &table, &job.path, format, &id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_dataset_and_table() {
        assert_eq!(split_target("`ds`.`t`"), Some(("ds".into(), "t".into())));
        assert_eq!(split_target("`d.s`.`a\\`b`"), Some(("d.s".into(), "a`b".into())));
        assert_eq!(split_target("`t`"), None);
    }
}
