//! The destination traits: capabilities as data, and a small client interface.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::naming::{NamingConvention, SnakeCase};
use crate::resource::MergeStrategy;
use crate::schema::{DataType, Schema};

/// Job file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// Apache Parquet (the default job file).
    Parquet,
    /// JSON lines.
    Jsonl,
    /// CSV.
    Csv,
}

impl FileFormat {
    /// File extension.
    pub fn extension(&self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::Jsonl => "jsonl",
            FileFormat::Csv => "csv",
        }
    }

    /// From a file extension.
    pub fn from_extension(ext: &str) -> Option<FileFormat> {
        Some(match ext {
            "parquet" => FileFormat::Parquet,
            "jsonl" => FileFormat::Jsonl,
            "csv" => FileFormat::Csv,
            _ => return None,
        })
    }
}

/// Replace strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplaceStrategy {
    /// Truncate the chain, then insert (default).
    #[default]
    TruncateAndInsert,
    /// Load into staging, then copy.
    InsertFromStaging,
    /// Swap staging tables in.
    StagingOptimized,
}

impl ReplaceStrategy {
    /// Parse dlt's name.
    pub fn parse(s: &str) -> Option<ReplaceStrategy> {
        Some(match s {
            "truncate-and-insert" => ReplaceStrategy::TruncateAndInsert,
            "insert-from-staging" => ReplaceStrategy::InsertFromStaging,
            "staging-optimized" => ReplaceStrategy::StagingOptimized,
            _ => return None,
        })
    }
    /// dlt's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReplaceStrategy::TruncateAndInsert => "truncate-and-insert",
            ReplaceStrategy::InsertFromStaging => "insert-from-staging",
            ReplaceStrategy::StagingOptimized => "staging-optimized",
        }
    }
}

/// What a destination can do, declared as data. Built from [`Capabilities::default`] with the
/// `with_*` setters, so a field added later does not break a connector crate:
///
/// ```
/// use dlt_core::destination::{Capabilities, FileFormat};
/// let caps = Capabilities::default().with_supports_transactions(true).with_max_identifier_length(63);
/// assert_eq!(caps.preferred_file_format, FileFormat::Parquet);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Capabilities {
    /// Preferred job file format.
    pub preferred_file_format: FileFormat,
    /// Job file formats it can load.
    pub supported_file_formats: Vec<FileFormat>,
    /// Formats it loads from files staged by a staging destination (dlt's
    /// `supported_staging_file_formats`); empty: it does not load from staged files.
    pub supported_staging_file_formats: Vec<FileFormat>,
    /// Maximum table identifier length.
    pub max_identifier_length: usize,
    /// Maximum column identifier length.
    pub max_column_identifier_length: usize,
    /// Whether a package can be committed atomically (data + state + `_dlt_loads`).
    pub supports_transactions: bool,
    /// Merge strategies supported.
    pub merge_strategies: Vec<MergeStrategy>,
    /// Table formats a merged table needs (`delta` on the filesystem destination); empty: any
    /// table merges.
    pub merge_table_formats: Vec<&'static str>,
    /// Replace strategies supported.
    pub replace_strategies: Vec<ReplaceStrategy>,
    /// Default timestamp precision (fractional digits).
    pub timestamp_precision: u32,
    /// Default decimal precision and scale.
    pub decimal_precision: (u32, u32),
    /// Native type of each dlt type (defaults, without precision hints).
    pub type_map: Vec<(DataType, &'static str)>,
}

impl Default for Capabilities {
    /// Parquet job files, no identifier limit, no transactions, no merge strategies, replace by
    /// truncate-and-insert, microsecond timestamps, `decimal(38, 9)`.
    fn default() -> Self {
        Capabilities {
            preferred_file_format: FileFormat::Parquet,
            supported_file_formats: vec![FileFormat::Parquet],
            supported_staging_file_formats: vec![],
            max_identifier_length: 65536,
            max_column_identifier_length: 65536,
            supports_transactions: false,
            merge_strategies: vec![],
            merge_table_formats: vec![],
            replace_strategies: vec![ReplaceStrategy::TruncateAndInsert],
            timestamp_precision: 6,
            decimal_precision: (38, 9),
            type_map: vec![],
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty => $name:ident;)*) => {
        impl Capabilities {
            $($(#[$doc])* pub fn $name(mut self, v: $ty) -> Self {
                self.$field = v;
                self
            })*
        }
    };
}

setters! {
    /// Set [`Capabilities::preferred_file_format`].
    preferred_file_format: FileFormat => with_preferred_file_format;
    /// Set [`Capabilities::supported_file_formats`].
    supported_file_formats: Vec<FileFormat> => with_supported_file_formats;
    /// Set [`Capabilities::supported_staging_file_formats`].
    supported_staging_file_formats: Vec<FileFormat> => with_supported_staging_file_formats;
    /// Set [`Capabilities::max_identifier_length`].
    max_identifier_length: usize => with_max_identifier_length;
    /// Set [`Capabilities::max_column_identifier_length`].
    max_column_identifier_length: usize => with_max_column_identifier_length;
    /// Set [`Capabilities::supports_transactions`].
    supports_transactions: bool => with_supports_transactions;
    /// Set [`Capabilities::merge_strategies`].
    merge_strategies: Vec<MergeStrategy> => with_merge_strategies;
    /// Set [`Capabilities::merge_table_formats`].
    merge_table_formats: Vec<&'static str> => with_merge_table_formats;
    /// Set [`Capabilities::replace_strategies`].
    replace_strategies: Vec<ReplaceStrategy> => with_replace_strategies;
    /// Set [`Capabilities::timestamp_precision`].
    timestamp_precision: u32 => with_timestamp_precision;
    /// Set [`Capabilities::decimal_precision`].
    decimal_precision: (u32, u32) => with_decimal_precision;
    /// Set [`Capabilities::type_map`].
    type_map: Vec<(DataType, &'static str)> => with_type_map;
}

impl Capabilities {
    /// The naming convention sized for this destination.
    pub fn naming(&self) -> Arc<dyn NamingConvention> {
        self.naming_convention("snake_case").expect("snake_case exists")
    }

    /// A naming convention by dlt's name (`snake_case`, `duck_case`, `direct`, `sql_cs_v1`,
    /// `sql_ci_v1`), sized for this destination's identifier limit.
    pub fn naming_convention(&self, name: &str) -> Option<Arc<dyn NamingConvention>> {
        let max = if self.max_identifier_length >= 65536 { None } else { Some(self.max_identifier_length) };
        if name == "snake_case" {
            return Some(Arc::new(SnakeCase::with_max_length(max)));
        }
        crate::naming::convention_by_name(name, max).map(Arc::from)
    }
}

/// One job file of a package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobFile {
    /// Table the rows go to.
    pub table: String,
    /// Unique file id.
    pub file_id: String,
    /// Retry count.
    pub retry: u32,
    /// File format.
    pub format: FileFormat,
    /// Full path.
    pub path: PathBuf,
}

impl JobFile {
    /// dlt's job file name: `<table>.<file_id>.<retry>.<ext>`.
    pub fn file_name(table: &str, file_id: &str, retry: u32, format: FileFormat) -> String {
        // a table name is data (e.g. with the `direct` naming convention): path separators in it
        // are escaped so a job file can never land outside its package folder
        let mut t = String::with_capacity(table.len());
        for c in table.chars() {
            match c {
                '%' => t.push_str("%25"),
                '/' => t.push_str("%2F"),
                '\\' => t.push_str("%5C"),
                '\0' => t.push_str("%00"),
                c => t.push(c),
            }
        }
        format!("{t}.{file_id}.{retry}.{}", format.extension())
    }

    /// Parse a job file path.
    pub fn parse(path: PathBuf) -> Option<JobFile> {
        let name = path.file_name()?.to_str()?.to_string();
        let mut parts = name.rsplitn(4, '.');
        let ext = parts.next()?;
        let retry = parts.next()?.parse().ok()?;
        let file_id = parts.next()?.to_string();
        let raw = parts.next()?;
        let table = if raw.contains('%') {
            raw.replace("%2F", "/").replace("%5C", "\\").replace("%00", "\0").replace("%25", "%")
        } else {
            raw.to_string()
        };
        Some(JobFile { table, file_id, retry, format: FileFormat::from_extension(ext)?, path })
    }
}

/// A normalized package ready to be committed to a destination.
#[derive(Debug, Clone)]
pub struct PackageToLoad<'a> {
    /// Load id.
    pub load_id: &'a str,
    /// The package's schema.
    pub schema: &'a Schema,
    /// Data jobs (including the `_dlt_pipeline_state` row, if any).
    pub jobs: &'a [JobFile],
    /// Tables to empty first (replace), nested tables first.
    pub truncate_tables: &'a [String],
    /// How replaced tables get their new rows.
    pub replace_strategy: ReplaceStrategy,
    /// The package's job files as a staging destination holds them (empty without staging):
    /// a destination that loads from staged files loads these instead of the local jobs.
    pub staged: &'a [StagedFile],
    /// An earlier attempt of a destination without transactions began this package: its
    /// replaced tables are emptied and its staging tables hold the rows of its completed jobs,
    /// so [`DestinationClient::begin_package`] must not empty them again. Never set for a
    /// transactional destination (a failed attempt was rolled back whole).
    pub resumed: bool,
}

impl PackageToLoad<'_> {
    /// The staged copy of a job, if the package was staged.
    pub fn staged_file(&self, job: &JobFile) -> Option<&StagedFile> {
        self.staged.iter().find(|f| f.file_id == job.file_id && f.table == job.table)
    }
}

/// What became of one job ([`DestinationClient::load_job`], [`DestinationClient::run_follow_up`]).
#[derive(Debug)]
pub enum JobStatus {
    /// Its rows are in the destination (or, in a transaction, will be at commit).
    Completed,
    /// It failed for a reason that may pass (a lost connection, a lock, a rate limit): the
    /// loader runs it again after a pause.
    Retry(Error),
    /// It failed for good (bad data, a missing permission): the package stops here, stays
    /// pending, and the reason is written to its `failed_jobs` folder.
    Failed(Error),
}

impl JobStatus {
    /// From a result: an error is a retry when [`Error::is_transient`], else a failure.
    pub fn from_result(r: Result<()>) -> JobStatus {
        match r {
            Ok(()) => JobStatus::Completed,
            Err(e) if e.is_transient() => JobStatus::Retry(e),
            Err(e) => JobStatus::Failed(e),
        }
    }
}

/// Work a destination does after a package's data jobs (dlt's table-chain follow-up jobs):
/// merge SQL for a merged table chain, a copy from staging tables, a Delta commit. The
/// destination names them in [`DestinationClient::follow_up_jobs`]; the loader runs each with
/// [`DestinationClient::run_follow_up`], retries it like a data job, and (without
/// transactions) records the ones that completed, so a resumed package does not run them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUpJob {
    /// The (root) table it works on.
    pub table: String,
    /// What it does (`merge`, `replace`, `delta`), unique per table within a package.
    pub kind: String,
}

impl FollowUpJob {
    /// A follow-up job.
    pub fn new(table: impl Into<String>, kind: impl Into<String>) -> Self {
        FollowUpJob { table: table.into(), kind: kind.into() }
    }
    /// `<table>.<kind>`: how the package state records it.
    pub fn key(&self) -> String {
        format!("{}.{}", self.table, self.kind)
    }
}

/// One job file uploaded by a staging destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    /// The table its rows belong to.
    pub table: String,
    /// The job's file id (which local job it is).
    pub file_id: String,
    /// The full URL (`s3://bucket/dataset/table/<load_id>.<file_id>.parquet`, `file:///…`).
    pub url: String,
    /// The file's format.
    pub format: FileFormat,
    /// Whether it is gzip-compressed.
    pub gzip: bool,
}

/// A destination that can hold a package's job files for another destination to load from
/// (dlt's `staging=`: the filesystem destination on a bucket in front of a warehouse).
///
/// Uploads are idempotent: a job always goes to the same URL, so a retried load uploads over
/// the same files. Staged files are kept after the load (as dlt does by default).
#[async_trait::async_trait]
pub trait Staging: Send + Sync {
    /// Upload the data jobs of a package (not the `_dlt_pipeline_state` job: the destination
    /// loads that itself) and say where they are.
    async fn upload_jobs(
        &self,
        dataset: &str,
        schema_name: &str,
        load_id: &str,
        jobs: &[JobFile],
    ) -> Result<Vec<StagedFile>>;
    /// Remove staged files.
    async fn cleanup(&self, files: &[StagedFile]) -> Result<()>;
    /// The format of the files it stages (a destination must list it in its
    /// `supported_staging_file_formats`); parquet by default.
    fn staged_format(&self) -> FileFormat {
        FileFormat::Parquet
    }
}

/// The job file formats dlt-rs' normalizer writes.
pub const WRITTEN_FORMATS: &[FileFormat] = &[FileFormat::Parquet];

/// Choose the job file format of a pipeline from the destination's capabilities, as dlt
/// does: its preferred format, else the first supported one, that the normalizer writes. With a
/// staging destination, the format it stages must also be one the destination loads from
/// staged files, and the default decimal must be the one job files carry. Called when a
/// pipeline is built, so a mismatch fails before anything is extracted.
pub fn negotiate_job_format(
    destination: &str,
    caps: &Capabilities,
    staging: Option<(&str, FileFormat)>,
) -> Result<FileFormat> {
    let names = |v: &[FileFormat]| v.iter().map(|f| f.extension()).collect::<Vec<_>>().join(", ");
    // job files carry decimals without hints as decimal(38, 9) (dlt's default, and every dlt
    // destination's): a destination with another default would get values at a scale its
    // columns do not have
    if caps.decimal_precision != (38, 9) {
        return Err(Error::Config(format!(
            "the {destination} destination declares decimal({}, {}) as its default decimal; dlt-rs writes \
             decimals without precision hints as decimal(38, 9)",
            caps.decimal_precision.0, caps.decimal_precision.1
        )));
    }
    if let Some((staging_name, staged)) = staging
        && !caps.supported_staging_file_formats.contains(&staged)
    {
        return Err(Error::Config(format!(
            "the {staging_name} staging destination writes {} files, and the {destination} destination loads \
             staged files in {}: set the staging destination's loader_file_format to one of those",
            staged.extension(),
            if caps.supported_staging_file_formats.is_empty() {
                "no format".to_string()
            } else {
                names(&caps.supported_staging_file_formats)
            }
        )));
    }
    std::iter::once(&caps.preferred_file_format)
        .chain(caps.supported_file_formats.iter())
        .find(|f| {
            WRITTEN_FORMATS.contains(f)
                && (caps.supported_file_formats.contains(f) || caps.supported_file_formats.is_empty())
        })
        .copied()
        .ok_or_else(|| {
            Error::Config(format!(
                "the {destination} destination loads job files in {}, and dlt-rs writes job files in {}",
                names(&caps.supported_file_formats),
                names(WRITTEN_FORMATS)
            ))
        })
}

/// The newest state stored in the destination.
#[derive(Debug, Clone)]
pub struct StoredState {
    /// State version.
    pub version: i64,
    /// Engine version.
    pub engine_version: i64,
    /// Pipeline name.
    pub pipeline_name: String,
    /// base64(zlib(JSON)) state.
    pub state: String,
    /// Load that wrote it.
    pub load_id: String,
}

/// Runs SQL against a destination's dataset (unqualified names resolve in the dataset). An
/// extension a client offers through [`DestinationClient::sql`], not a supertrait: a
/// destination without SQL (files on a bucket without a query engine) has none.
#[async_trait::async_trait]
pub trait SqlClient: Send {
    /// Run statements that return nothing.
    async fn execute(&mut self, sql: &str) -> Result<()>;
    /// Run a query and collect its result as Arrow batches.
    async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>>;
}

/// A connection to a destination for one dataset: what the pipeline needs to load a package
/// exactly once and to restore state.
///
/// The loader drives a package job by job:
/// [`begin_package`](DestinationClient::begin_package), then
/// [`load_job`](DestinationClient::load_job) for every data job not completed yet, then each of
/// the [`follow_up_jobs`](DestinationClient::follow_up_jobs), then
/// [`complete_package`](DestinationClient::complete_package), which writes the `_dlt_loads` row.
/// A job that returns [`JobStatus::Retry`] is run again after a pause; one that returns
/// [`JobStatus::Failed`] stops the package (it stays pending, nothing loaded is lost).
///
/// The commit protocol follows [`Capabilities::supports_transactions`]:
/// - a transactional destination opens a transaction in `begin_package` and commits data,
///   state row and `_dlt_loads` row together in `complete_package`. When anything fails the
///   loader calls [`abort_package`](DestinationClient::abort_package) and retries the whole
///   package.
/// - a destination without multi-table transactions makes every job re-runnable (a job
///   interrupted between loading and being recorded runs again and must not duplicate rows)
///   and writes the `_dlt_loads` row last. The loader records each completed job in the
///   package on disk, so a retry or a later run resumes with the jobs that are left; replaced
///   tables are emptied once ([`PackageToLoad::resumed`]).
///   [`stored_state`](DestinationClient::stored_state) ignores state rows of loads without a
///   `_dlt_loads` row, so a package interrupted half-way is never counted as loaded.
#[async_trait::async_trait]
pub trait DestinationClient: Send {
    /// Create the dataset and the system tables if missing.
    async fn initialize_storage(&mut self) -> Result<()>;
    /// Bring the stored schema up to date for `tables` (CREATE / ADD COLUMN) and record the
    /// schema version in `_dlt_version`, committed on its own, before data is loaded.
    async fn update_stored_schema(&mut self, schema: &Schema, tables: &[String]) -> Result<()>;
    /// Whether `_dlt_loads` already holds this load id (a commit that finished before a crash).
    async fn is_loaded(&mut self, load_id: &str) -> Result<bool>;
    /// Start loading a package: open the transaction (if any), empty replaced tables and
    /// prepare staging tables (unless [`PackageToLoad::resumed`]).
    async fn begin_package(&mut self, package: &PackageToLoad<'_>) -> Result<()>;
    /// Load one data job (its staged copy where [`PackageToLoad::staged_file`] has one).
    async fn load_job(&mut self, package: &PackageToLoad<'_>, job: &JobFile) -> JobStatus;
    /// The follow-up jobs of a package, asked once its data jobs completed; none by default.
    async fn follow_up_jobs(&mut self, package: &PackageToLoad<'_>) -> Result<Vec<FollowUpJob>> {
        let _ = package;
        Ok(vec![])
    }
    /// Run one follow-up job.
    async fn run_follow_up(&mut self, package: &PackageToLoad<'_>, job: &FollowUpJob) -> JobStatus {
        let _ = package;
        JobStatus::Failed(Error::Package(format!("this destination has no follow-up job `{}`", job.key())))
    }
    /// Finish a package: write its `_dlt_loads` row (last) and commit.
    async fn complete_package(&mut self, package: &PackageToLoad<'_>) -> Result<()>;
    /// Give up the current attempt of a package: roll back an open transaction. Nothing by
    /// default.
    async fn abort_package(&mut self) {}
    /// The newest pipeline state of a completed load.
    async fn stored_state(&mut self, pipeline_name: &str) -> Result<Option<StoredState>>;
    /// The newest stored schema document of a schema name.
    async fn stored_schema(&mut self, schema_name: &str) -> Result<Option<String>>;
    /// Drop tables (and forget their schema versions).
    async fn drop_tables(&mut self, tables: &[String]) -> Result<()>;
    /// Names of the tables that exist in the dataset.
    async fn existing_tables(&mut self) -> Result<Vec<String>>;
    /// SQL access to the dataset, if the destination has it.
    fn sql(&mut self) -> Option<&mut dyn SqlClient> {
        None
    }
}

/// A configured destination.
#[async_trait::async_trait]
pub trait Destination: Send + Sync + std::fmt::Debug {
    /// Short name (`duckdb`).
    fn name(&self) -> &str;
    /// dlt's destination type (`dlt.destinations.duckdb`).
    fn destination_type(&self) -> String {
        format!("dlt.destinations.{}", self.name())
    }
    /// Capabilities.
    fn capabilities(&self) -> &Capabilities;
    /// Where the data goes, without secrets (`duckdb:////abs/file.duckdb`).
    fn display_location(&self) -> String;
    /// Open a client for a dataset.
    async fn client(&self, dataset_name: &str) -> Result<Box<dyn DestinationClient>>;
    /// This destination as a staging area for another one, if it can be one.
    fn as_staging(&self) -> Option<&dyn Staging> {
        None
    }
    /// Lines describing what `dataset_name` holds for `dlt pipeline <name> info` beyond the
    /// schema (files and table versions on a bucket, …); none by default.
    async fn dataset_info(&self, _dataset_name: &str) -> Result<Vec<String>> {
        Ok(vec![])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_formats_are_negotiated() {
        let caps = Capabilities::default()
            .with_preferred_file_format(FileFormat::Jsonl)
            .with_supported_file_formats(vec![FileFormat::Jsonl, FileFormat::Parquet])
            .with_supported_staging_file_formats(vec![FileFormat::Parquet]);
        // the preferred format is skipped when the normalizer does not write it
        assert_eq!(negotiate_job_format("d", &caps, None).unwrap(), FileFormat::Parquet);
        assert_eq!(
            negotiate_job_format("d", &caps, Some(("filesystem", FileFormat::Parquet))).unwrap(),
            FileFormat::Parquet
        );
        let e = negotiate_job_format("d", &caps, Some(("filesystem", FileFormat::Csv))).unwrap_err().to_string();
        assert!(e.contains("writes csv files") && e.contains("staged files in parquet"), "{e}");
        let jsonl_only = Capabilities::default().with_supported_file_formats(vec![FileFormat::Jsonl]);
        let e = negotiate_job_format("d", &jsonl_only, None).unwrap_err().to_string();
        assert!(e.contains("loads job files in jsonl"), "{e}");
        let wide = Capabilities::default().with_decimal_precision((76, 38));
        assert!(negotiate_job_format("d", &wide, None).is_err());
    }

    #[test]
    fn job_file_names() {
        let n = JobFile::file_name("a__b", "0123456789", 0, FileFormat::Parquet);
        assert_eq!(n, "a__b.0123456789.0.parquet");
        let j = JobFile::parse(PathBuf::from(format!("/x/{n}"))).unwrap();
        assert_eq!(j.table, "a__b");
        assert_eq!(j.retry, 0);
        assert_eq!(j.format, FileFormat::Parquet);
    }

    #[test]
    fn table_names_with_path_separators_stay_in_the_folder() {
        for table in ["../../etc/x", "a/b", "a\\b", "100%/2F", "plain"] {
            let name = JobFile::file_name(table, "abc", 1, FileFormat::Parquet);
            assert!(!name.contains('/') && !name.contains('\\'), "{name}");
            let j = JobFile::parse(PathBuf::from("/pkg/new_jobs").join(&name)).unwrap();
            assert_eq!(j.table, table);
            assert_eq!((j.file_id.as_str(), j.retry), ("abc", 1));
        }
    }
}
