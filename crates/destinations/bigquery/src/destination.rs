//! The BigQuery destination: a dataset is a BigQuery dataset of the credentials' project; the
//! load sequence is the shared loader's (`dlt-sql`) with [`BigQueryDialect`] and
//! [`BigQueryConnection`], without transactions (BigQuery has none across jobs): jobs are
//! re-runnable (load jobs found again by their id, follow-ups recorded when done) and
//! `_dlt_loads` is written last.

use dlt_core::destination::{Capabilities, Destination, DestinationClient, FileFormat, ReplaceStrategy};
use dlt_core::error::Result;
use dlt_core::resource::MergeStrategy;
use dlt_core::schema::DataType;
use dlt_sql::SqlLoader;

use crate::client::Client;
use crate::connection::BigQueryConnection;
use crate::credentials::Credentials;
use crate::dialect::BigQueryDialect;

/// The destination's name.
pub const NAME: &str = "bigquery";

/// BigQuery's capabilities (dlt 1.31's, read from dlt: identifiers up to 1024 characters,
/// columns up to 300, case-sensitive; decimals 38,9; no transactions). Job files are parquet,
/// the one format the normalizer writes; dlt prefers jsonl for BigQuery.
pub fn capabilities() -> Capabilities {
    Capabilities::default()
        .with_preferred_file_format(FileFormat::Parquet)
        .with_supported_file_formats(vec![FileFormat::Parquet])
        .with_max_identifier_length(1024)
        .with_max_column_identifier_length(300)
        .with_supports_transactions(false)
        .with_merge_strategies(vec![
            MergeStrategy::DeleteInsert,
            MergeStrategy::Upsert,
            MergeStrategy::Scd2,
            MergeStrategy::InsertOnly,
        ])
        .with_replace_strategies(vec![
            ReplaceStrategy::TruncateAndInsert,
            ReplaceStrategy::InsertFromStaging,
            ReplaceStrategy::StagingOptimized,
        ])
        .with_timestamp_precision(6)
        .with_decimal_precision((38, 9))
        .with_type_map(vec![
            (DataType::Text, "STRING"),
            (DataType::Double, "FLOAT64"),
            (DataType::Bool, "BOOL"),
            (DataType::Timestamp, "TIMESTAMP"),
            (DataType::Bigint, "INT64"),
            (DataType::Binary, "BYTES"),
            (DataType::Json, "JSON"),
            (DataType::Decimal, "NUMERIC(38,9)"),
            (DataType::Wei, "BIGNUMERIC"),
            (DataType::Date, "DATE"),
            (DataType::Time, "TIME"),
        ])
}

/// A BigQuery project and location.
#[derive(Debug, Clone)]
pub struct BigQuery {
    credentials: Credentials,
    caps: Capabilities,
}

impl BigQuery {
    /// From credentials.
    pub fn new(credentials: Credentials) -> Self {
        BigQuery { credentials, caps: capabilities() }
    }
}

#[async_trait::async_trait]
impl Destination for BigQuery {
    fn name(&self) -> &str {
        NAME
    }
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }
    fn display_location(&self) -> String {
        self.credentials.display()
    }
    async fn dataset_info(&self, dataset_name: &str) -> Result<Vec<String>> {
        let c = &self.credentials;
        Ok(vec![
            format!("BigQuery project: {}", c.project_id),
            format!("Location: {}", c.location),
            format!("Dataset: {dataset_name}"),
        ])
    }
    async fn client(&self, dataset_name: &str) -> Result<Box<dyn DestinationClient>> {
        let client = Client::connect(&self.credentials).await?;
        Ok(Box::new(
            SqlLoader::new(
                NAME,
                BigQueryDialect::new(&self.credentials.location),
                BigQueryConnection::new(client),
                dataset_name,
            )
            .with_transactions(false),
        ))
    }
}
