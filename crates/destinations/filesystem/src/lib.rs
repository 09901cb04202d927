//! The `filesystem` destination: datasets as folders of files in a local folder or an object
//! store (S3 and S3-compatible servers, Azure Blob / ADLS Gen2, GCS, `memory://`), laid out as
//! dlt lays them out: `<bucket_url>/<dataset_name>/<layout>` with the default layout
//! `{table_name}/{load_id}.{file_id}.{ext}`, and dlt's `_dlt_loads`, `_dlt_version` and
//! `_dlt_pipeline_state` files, so `dlt pipeline NAME sync` restores state from the bucket.
//!
//! A package commits in this order (see `docs/filesystem.md`): journal → new data files →
//! state file → `_dlt_loads` file (the commit point) → deletion of the replaced tables' old
//! files → journal removed. A crash at any point leaves the old files or the new ones for a
//! journal-aware reader (this crate's SQL client), and the next run finishes or redoes the work.
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod convert;
#[cfg(feature = "delta")]
pub mod delta;
#[cfg(feature = "delta")]
pub mod delta_merge;
pub mod error;
pub mod layout;
#[cfg(feature = "sql")]
mod sql;
pub mod staging;
pub mod storage;

use std::path::Path;
use std::sync::Arc;

use dlt_core::destination::{Capabilities, Destination, DestinationClient, FileFormat, ReplaceStrategy};
use dlt_core::error::Result;
use dlt_core::registry::{DestinationContext, DestinationFactory};
use dlt_core::resource::MergeStrategy;
use dlt_core::schema::DataType;

pub use client::{FilesystemClient, StoredTable};
pub use config::FilesystemConfig;
pub use convert::OutputFormat;
pub use dlt_core::destination::{StagedFile, Staging};
pub use error::{FsError, NAME};
pub use layout::{DEFAULT_LAYOUT, Layout};
pub use storage::{Credentials, Protocol, Store};

/// The error for Delta tables in a build without the `delta` feature.
pub const DELTA_NOT_BUILT: &str = "table_format `delta` needs dlt-rs built with Delta support \
     (the `delta` feature of the dlt facade or of dlt-filesystem); this build writes plain parquet, jsonl or csv files only";

/// The filesystem destination's capabilities. Job files are parquet (what the normalizer
/// writes); jsonl and csv output is converted from them at load time.
pub fn capabilities() -> Capabilities {
    Capabilities::default()
        .with_preferred_file_format(FileFormat::Parquet)
        .with_supported_file_formats(vec![FileFormat::Parquet])
        .with_max_identifier_length(65536)
        .with_max_column_identifier_length(65536)
        .with_supports_transactions(false)
        // Delta tables only (plain files refuse merge); dlt declares upsert for Delta tables, and
        // dlt-rs also merges with delete-insert (what it records when no strategy is given) and
        // insert-only
        .with_merge_strategies(if cfg!(feature = "delta") {
            vec![MergeStrategy::Upsert, MergeStrategy::DeleteInsert, MergeStrategy::InsertOnly]
        } else {
            vec![]
        })
        // plain files do not merge: only Delta tables (all of them when the configuration's
        // `table_format` is delta)
        .with_merge_table_formats(vec!["delta"])
        .with_replace_strategies(vec![ReplaceStrategy::TruncateAndInsert])
        .with_timestamp_precision(6)
        .with_decimal_precision((38, 9))
        .with_type_map(vec![
            (DataType::Text, "string"),
            (DataType::Double, "double"),
            (DataType::Bool, "bool"),
            (DataType::Timestamp, "timestamp[us, tz=UTC]"),
            (DataType::Bigint, "int64"),
            (DataType::Binary, "binary"),
            (DataType::Json, "string"),
            (DataType::Decimal, "decimal128(38, 9)"),
            (DataType::Wei, "decimal128(38, 0)"),
            (DataType::Date, "date32"),
            (DataType::Time, "time64[us]"),
        ])
}

/// What every client of one destination shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) layout: Layout,
    pub(crate) output: OutputFormat,
    pub(crate) max_state_files: i64,
    pub(crate) current_datetime: Option<chrono::DateTime<chrono::Utc>>,
    /// `table_format` of the configuration: the format of tables whose root sets none.
    pub(crate) table_format: Option<TableFormat>,
}

/// A table format of the filesystem destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// Delta Lake (needs the `delta` feature to be written).
    Delta,
}

impl TableFormat {
    /// Parse `delta` (case-insensitive); other formats (dlt's `iceberg`, …) are an error.
    pub fn parse(s: &str) -> std::result::Result<TableFormat, FsError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "delta" => Ok(TableFormat::Delta),
            other => Err(FsError::Config(format!(
                "table_format `{other}` is not supported by dlt-rs' filesystem destination (only `delta`)"
            ))),
        }
    }
}

/// A filesystem destination: a bucket URL with its credentials, layout and file format.
#[derive(Debug, Clone)]
pub struct Filesystem {
    shared: Arc<Shared>,
    caps: Capabilities,
}

impl Filesystem {
    /// A destination from a configuration (the store is set up here; nothing is written).
    pub fn new(config: FilesystemConfig) -> std::result::Result<Self, FsError> {
        let table_format = config.table_format.as_deref().map(TableFormat::parse).transpose()?;
        #[cfg(not(feature = "delta"))]
        if table_format == Some(TableFormat::Delta) {
            return Err(FsError::Config(DELTA_NOT_BUILT.into()));
        }
        let layout = Layout::new(&config.layout, config.extra_placeholders.clone())?;
        let unused = layout.unused_extra();
        if !unused.is_empty() {
            tracing::warn!("extra_placeholders {unused:?} are not used by the layout `{}`", layout.template());
        }
        let store = Store::open(&config.bucket_url, &config.credentials, &config.base_dir)?;
        Ok(Filesystem {
            shared: Arc::new(Shared {
                store,
                layout,
                output: OutputFormat { format: config.loader_file_format, gzip: config.compression },
                max_state_files: config.max_state_files,
                current_datetime: config.current_datetime,
                table_format,
            }),
            caps: {
                let mut caps = capabilities();
                if table_format == Some(TableFormat::Delta) {
                    // every table is a Delta table unless it names another format (an error)
                    caps.merge_table_formats.clear();
                }
                caps
            },
        })
    }

    /// A local folder (or any bucket URL without credentials) with dlt's defaults.
    pub fn at(bucket_url: impl AsRef<str>) -> std::result::Result<Self, FsError> {
        Self::new(FilesystemConfig::new(bucket_url.as_ref()))
    }

    /// The storage.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.shared.layout
    }

    /// A typed client for a dataset (the trait object is [`Destination::client`]).
    pub fn filesystem_client(&self, dataset_name: &str) -> std::result::Result<FilesystemClient, FsError> {
        FilesystemClient::new(self.shared.clone(), dataset_name)
    }
}

#[async_trait::async_trait]
impl Destination for Filesystem {
    fn name(&self) -> &str {
        NAME
    }
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }
    fn display_location(&self) -> String {
        self.shared.store.url().to_string()
    }
    async fn client(&self, dataset_name: &str) -> Result<Box<dyn DestinationClient>> {
        Ok(Box::new(self.filesystem_client(dataset_name)?))
    }
    fn as_staging(&self) -> Option<&dyn dlt_core::destination::Staging> {
        Some(self)
    }
    async fn dataset_info(&self, dataset_name: &str) -> Result<Vec<String>> {
        let tables = self.filesystem_client(dataset_name)?.stored_tables()?;
        let mut lines = vec![format!(
            "Dataset {dataset_name} at {}: {} table(s) with files",
            self.store().url_of(dataset_name),
            tables.len()
        )];
        for t in tables {
            let delta = t.delta_version.map(|v| format!(", Delta table version {v}")).unwrap_or_default();
            lines.push(format!("  - {}: {} file(s), {} bytes{delta}", t.table, t.files, t.bytes));
        }
        Ok(lines)
    }
}

/// Builds filesystem destinations from configuration: `DESTINATION__FILESYSTEM__BUCKET_URL`,
/// `…__LAYOUT`, `…__EXTRA_PLACEHOLDERS`, `…__CURRENT_DATETIME`, `…__LOADER_FILE_FORMAT`,
/// `…__COMPRESSION`, `…__MAX_STATE_FILES` and `…__CREDENTIALS__<NAME>` (dlt's names, e.g.
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `ENDPOINT_URL`, `REGION_NAME`), or the same keys
/// in `[destination.filesystem]` of the toml files or the pipeline file's `[destination]`.
#[derive(Debug, Default)]
pub struct FilesystemFactory;

impl DestinationFactory for FilesystemFactory {
    fn init_template(&self) -> Option<dlt_core::registry::InitTemplate> {
        Some(dlt_core::registry::InitTemplate { config: include_str!("init/config.toml"), ..Default::default() })
    }
    fn name(&self) -> &'static str {
        NAME
    }
    fn build(&self, ctx: &DestinationContext<'_>) -> Result<Arc<dyn Destination>> {
        let config = config::resolve(ctx.config, ctx.explicit, ctx.run_dir)?;
        Ok(Arc::new(Filesystem::new(config)?))
    }
}

/// A destination for a local folder or bucket URL with default settings (for the facade's
/// `destinations::filesystem`).
pub fn destination(bucket_url: &str, base_dir: &Path) -> Result<Arc<dyn Destination>> {
    let mut c = FilesystemConfig::new(bucket_url);
    c.base_dir = base_dir.to_path_buf();
    Ok(Arc::new(Filesystem::new(c)?))
}
