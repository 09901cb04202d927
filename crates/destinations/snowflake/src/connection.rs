//! A Snowflake session as the shared loader's [`SqlConnection`]: statements one request each,
//! query results as Arrow, and the load step of a parquet job file — `PUT` into the table's
//! stage, then `COPY INTO` the table from exactly that file (`FROM @stage/<file>`). Snowflake's
//! load history skips a file a table has loaded already, so a job that runs again adds nothing.

use arrow::record_batch::RecordBatch;
use dlt_core::destination::{FileFormat, JobFile, StagedFile};
use dlt_core::error::{Error, Result};
use dlt_core::schema::Table;
use dlt_sql::SqlConnection;

use crate::client::Client;
use crate::copy::{StageOptions, copy_from_bucket, copy_from_stage, remove_from_stage};

/// A logged-in session.
#[derive(Debug)]
pub struct SnowflakeConnection {
    client: Client,
    stage: StageOptions,
}

impl SnowflakeConnection {
    /// A connection over a logged-in client, loading through the table stages.
    pub fn new(client: Client) -> Self {
        SnowflakeConnection { client, stage: StageOptions::default() }
    }

    /// Where job files go and staged files come from.
    pub fn with_stage(mut self, stage: StageOptions) -> Self {
        self.stage = stage;
        self
    }
}

/// The stage of a table given by its qualified, quoted name: `"DS"."T"` → `@"DS"."%T"` (a table's
/// files must go through its own stage).
pub fn table_stage(target: &str) -> String {
    match target.rfind(".\"") {
        Some(i) => format!("@{}.\"%{}", &target[..i], &target[i + 2..]),
        None => format!("@%{target}"),
    }
}

/// The statements of a script, split at `;` outside quotes and comments (a request runs one
/// statement; Snowflake takes several only with a statement count).
pub fn split_statements(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let (mut out, mut start, mut i) = (vec![], 0, 0);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        // a doubled quote stays inside
                        if b.get(i + 1) == Some(&q) {
                            i += 1;
                        } else {
                            break;
                        }
                    } else if q == b'\'' && b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b';' => {
                out.push(&sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&sql[start.min(sql.len())..]);
    out.into_iter().map(str::trim).filter(|s| !s.is_empty()).collect()
}

#[async_trait::async_trait]
impl SqlConnection for SnowflakeConnection {
    async fn execute(&mut self, sql: &str) -> Result<()> {
        for s in split_statements(sql) {
            self.client.query(s).await?;
        }
        Ok(())
    }

    async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.client.query(sql).await?.batches)
    }

    async fn load_job(&mut self, target: &str, _table: &Table, job: &JobFile) -> Result<()> {
        if job.format != FileFormat::Parquet {
            return Err(Error::Config(format!(
                "snowflake: job file {} is {:?}; this destination loads parquet job files",
                job.path.display(),
                job.format
            )));
        }
        let name = job.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let stage = match &self.stage.stage_name {
            Some(named) => format!("@{named}"),
            None => table_stage(target),
        };
        self.client.put(&job.path, &stage).await?;
        // the file by its path in the stage (job file names are unique and plain)
        self.client
            .query(&copy_from_stage(target, &stage, &name))
            .await
            .map_err(|e| e.context(&format!("loading {} into {target}", job.path.display())))?;
        if !self.stage.keep_staged_files {
            self.client.query(&remove_from_stage(&stage, &name)).await?;
        }
        Ok(())
    }

    async fn load_staged(&mut self, target: &str, _table: &Table, file: &StagedFile) -> Result<()> {
        if file.format != FileFormat::Parquet || file.gzip {
            return Err(Error::Config(format!(
                "snowflake loads staged parquet files; {} is {}{}: set the staging destination's \
                 loader_file_format to parquet",
                file.url,
                file.format.extension(),
                if file.gzip { " (gzip)" } else { "" }
            )));
        }
        let copy = copy_from_bucket(target, &file.url, &self.stage)?;
        self.client.query(&copy).await.map_err(|e| e.context(&format!("loading {} into {target}", file.url)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tables_stage_is_named_after_it() {
        assert_eq!(table_stage("\"SF_DATA_STAGING\".\"ITEMS\""), "@\"SF_DATA_STAGING\".\"%ITEMS\"");
        assert_eq!(table_stage("\"A.B\".\"C\"\"D\""), "@\"A.B\".\"%C\"\"D\"");
    }

    #[test]
    fn scripts_split_outside_quotes_and_comments() {
        assert_eq!(split_statements("A; B;"), vec!["A", "B"]);
        assert_eq!(split_statements("SELECT 'a;b', \"c;d\" ; X"), vec!["SELECT 'a;b', \"c;d\"", "X"]);
        assert_eq!(split_statements("SELECT 'it''s;'; Y"), vec!["SELECT 'it''s;'", "Y"]);
        assert_eq!(
            split_statements("-- a; comment\nSELECT 1; /* b; */ SELECT 2"),
            vec!["-- a; comment\nSELECT 1", "/* b; */ SELECT 2"]
        );
        assert!(split_statements(" ; ;").is_empty());
    }
}
