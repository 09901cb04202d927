//! Errors of the filesystem destination, classified as terminal or transient.

/// The destination's name in error messages.
pub const NAME: &str = "filesystem";

/// What went wrong in the filesystem destination.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// Invalid or missing configuration (bucket URL, layout, credentials, format).
    #[error("{0}")]
    Config(String),
    /// A table, dataset or placeholder value that would leave the dataset folder or is not a
    /// valid path segment.
    #[error("unsafe path: {0}")]
    UnsafePath(String),
    /// The storage refused the credentials (401/403).
    #[error(
        "access to {bucket} was denied while trying to {op}: check the credentials (DESTINATION__FILESYSTEM__CREDENTIALS__*): {message}"
    )]
    AccessDenied {
        /// Bucket or container URL (never with secrets).
        bucket: String,
        /// The operation.
        op: String,
        /// The storage's message, with configured secrets masked.
        message: String,
    },
    /// The bucket or container does not exist.
    #[error("bucket {bucket} does not exist or is not reachable as configured (while trying to {op}): {message}")]
    NoBucket {
        /// Bucket or container URL.
        bucket: String,
        /// The operation.
        op: String,
        /// The storage's message, with configured secrets masked.
        message: String,
    },
    /// Any other storage error; `transient` says whether a retry may help.
    #[error("{op} on {bucket} failed: {message}")]
    Storage {
        /// Bucket or container URL.
        bucket: String,
        /// The operation.
        op: String,
        /// The storage's message, with configured secrets masked.
        message: String,
        /// Whether a retry may help (connection errors, timeouts, 5xx).
        transient: bool,
    },
    /// A write disposition this destination cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// Reading or converting a job file failed.
    #[error("job file {path}: {message}")]
    Job {
        /// The job file.
        path: String,
        /// What happened.
        message: String,
    },
    /// Reading or writing a Delta table failed; `transient` says whether a retry may help.
    #[error("{message}")]
    Delta {
        /// What happened (configured secrets masked).
        message: String,
        /// Whether a retry may help (a concurrent commit, connection errors).
        transient: bool,
    },
    /// A stored system file (`_dlt_loads`, `_dlt_version`, `_dlt_pipeline_state`, journal) is
    /// not what dlt writes.
    #[error("corrupt stored file {path}: {message}")]
    Corrupt {
        /// The file (relative to the bucket URL).
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl FsError {
    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, FsError::Storage { transient: true, .. } | FsError::Delta { transient: true, .. })
    }
}

impl From<FsError> for dlt_core::Error {
    fn from(e: FsError) -> Self {
        match e {
            FsError::Config(m) => dlt_core::Error::Config(format!("destination {NAME}: {m}")),
            e => {
                let transient = e.is_transient();
                dlt_core::Error::Destination { destination: NAME.into(), message: e.to_string(), transient }
            }
        }
    }
}

/// Result alias of this crate.
pub type FsResult<T> = std::result::Result<T, FsError>;
