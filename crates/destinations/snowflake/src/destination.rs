//! The Snowflake destination: a dataset is a schema of the credentials' database; the load
//! sequence is the shared loader's (`dlt-sql`) with [`SnowflakeDialect`] and
//! [`SnowflakeConnection`].

use std::time::Duration;

use dlt_core::destination::{Capabilities, Destination, DestinationClient, FileFormat, ReplaceStrategy};
use dlt_core::error::Result;
use dlt_core::resource::MergeStrategy;
use dlt_core::schema::DataType;
use dlt_sql::SqlLoader;

use crate::client::Client;
use crate::connection::SnowflakeConnection;
use crate::copy::StageOptions;
use crate::credentials::Credentials;
use crate::dialect::SnowflakeDialect;

/// The destination's name.
pub const NAME: &str = "snowflake";

/// Snowflake's capabilities (dlt 1.31's, read from dlt: identifiers up to 255 characters,
/// timestamps of 6 digits, decimals 38,9). Job files are parquet, the one format the normalizer
/// writes; dlt prefers jsonl for Snowflake.
pub fn capabilities() -> Capabilities {
    Capabilities::default()
        .with_preferred_file_format(FileFormat::Parquet)
        .with_supported_file_formats(vec![FileFormat::Parquet])
        .with_supported_staging_file_formats(vec![FileFormat::Parquet])
        .with_max_identifier_length(255)
        .with_max_column_identifier_length(255)
        .with_supports_transactions(true)
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
            (DataType::Text, "VARCHAR"),
            (DataType::Double, "FLOAT"),
            (DataType::Bool, "BOOLEAN"),
            (DataType::Timestamp, "TIMESTAMP_LTZ"),
            (DataType::Bigint, "NUMBER(19,0)"),
            (DataType::Binary, "BINARY"),
            (DataType::Json, "VARIANT"),
            (DataType::Decimal, "NUMBER(38,9)"),
            (DataType::Wei, "NUMBER(38,0)"),
            (DataType::Date, "DATE"),
            (DataType::Time, "TIME"),
        ])
}

/// A Snowflake account and database.
#[derive(Debug, Clone)]
pub struct Snowflake {
    credentials: Credentials,
    caps: Capabilities,
    timeout: Duration,
    stage: StageOptions,
}

impl Snowflake {
    /// From credentials.
    pub fn new(credentials: Credentials) -> Self {
        Snowflake {
            credentials,
            caps: capabilities(),
            timeout: Duration::from_secs(600),
            stage: StageOptions::default(),
        }
    }

    /// Where job files go and staged files come from (dlt's `stage_name`, `keep_staged_files`,
    /// and the staging bucket's URL and credentials).
    pub fn with_stage(mut self, stage: StageOptions) -> Self {
        self.stage = stage;
        self
    }

    /// Load each package with the loader's idempotent protocol instead of one transaction (as
    /// for destinations without transactions: jobs re-runnable, `_dlt_loads` written last).
    /// For Snowflake-protocol servers that cannot run a load's statements in one transaction
    /// (fakesnow 0.12 cannot `MERGE` or create a temporary table inside one); Snowflake itself
    /// does not need it.
    pub fn without_transactions(mut self) -> Self {
        self.caps.supports_transactions = false;
        self
    }

    /// From a `snowflake://` URL.
    pub fn from_url(url: &str) -> Result<Self> {
        Ok(Self::new(Credentials::parse(url)?))
    }
}

#[async_trait::async_trait]
impl Destination for Snowflake {
    fn name(&self) -> &str {
        NAME
    }
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }
    fn display_location(&self) -> String {
        self.credentials.display()
    }
    /// Where the dataset is, without logging in (and without a secret).
    async fn dataset_info(&self, dataset_name: &str) -> Result<Vec<String>> {
        let c = &self.credentials;
        let or_default = |v: &Option<String>| v.clone().unwrap_or_else(|| "(the user's default)".into());
        Ok(vec![
            format!("Snowflake account: {}", c.account),
            format!("Database: {} (dataset {dataset_name} is its schema {})", c.database, dataset_name.to_uppercase()),
            format!("Warehouse: {}", or_default(&c.warehouse)),
            format!("Role: {}", or_default(&c.role)),
            format!("User: {}", c.username),
        ])
    }
    async fn client(&self, dataset_name: &str) -> Result<Box<dyn DestinationClient>> {
        let client = Client::login(&self.credentials, None, self.timeout).await?;
        Ok(Box::new(
            SqlLoader::new(
                NAME,
                SnowflakeDialect,
                SnowflakeConnection::new(client).with_stage(self.stage.clone()),
                dataset_name,
            )
            .with_transactions(self.caps.supports_transactions),
        ))
    }
}
