//! What a SQL destination's driver provides to the loader.

use dlt_core::destination::{JobFile, StagedFile};
use dlt_core::error::{Error, Result};
use dlt_core::schema::Table;

use arrow::record_batch::RecordBatch;

/// A session on a SQL destination. Errors carry the driver's error as their source and say
/// whether a retry may help (from the driver's codes, not its wording).
///
/// The loader runs transactions with [`Dialect::begin`](crate::Dialect::begin), `COMMIT` and
/// `ROLLBACK` through [`SqlConnection::execute`], so a connection must keep one session (one
/// physical connection) for its lifetime.
#[async_trait::async_trait]
pub trait SqlConnection: Send {
    /// Run one or more statements that return nothing.
    async fn execute(&mut self, sql: &str) -> Result<()>;
    /// Run a query and collect its result as Arrow batches.
    async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>>;
    /// The load step: append the rows of one job file to `target` (a qualified, quoted table
    /// name) whose columns `table` describes. An error names the job file and the target.
    async fn load_job(&mut self, target: &str, table: &Table, job: &JobFile) -> Result<()>;
    /// The load step from a staging destination: append the rows of a staged file (a URL) to
    /// `target`. Only destinations that declare `supported_staging_file_formats` get called.
    async fn load_staged(&mut self, target: &str, table: &Table, file: &StagedFile) -> Result<()> {
        let _ = (target, table);
        Err(Error::Config(format!("this destination does not load staged files ({})", file.url)))
    }
}
