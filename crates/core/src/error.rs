//! The core error type. Every error says whether retrying may help ([`Error::is_transient`]).

use std::path::PathBuf;

/// Result alias used across dlt-rs library crates.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A pipeline step, as dlt names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Restoring state and schemas from the destination before a run.
    Sync,
    /// Reading resources into an extracted package.
    Extract,
    /// Turning extracted items into per-table job files.
    Normalize,
    /// Loading job files into the destination.
    Load,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Sync => "sync",
            Step::Extract => "extract",
            Step::Normalize => "normalize",
            Step::Load => "load",
        })
    }
}

/// Errors of dlt-rs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// File system error on a named path.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Invalid or missing configuration.
    #[error("configuration error: {0}")]
    Config(String),
    /// A data item could not be read (names file/line or resource/item).
    #[error("bad input in {location}: {message}")]
    BadInput {
        /// Where: `file:line`, or `resource #item`.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A source failed while producing items.
    #[error("resource `{resource}` failed: {message}")]
    Source {
        /// The resource name.
        resource: String,
        /// What happened.
        message: String,
        /// Whether retrying may help.
        transient: bool,
    },
    /// A source could not be set up before any of its resources ran (connecting, reflecting
    /// tables, authenticating).
    #[error("source `{source_name}` failed: {message}")]
    SourceSetup {
        /// The source name.
        source_name: String,
        /// What happened.
        message: String,
        /// Whether retrying may help.
        transient: bool,
    },
    /// The schema rejected data or a change.
    #[error("schema error: {0}")]
    Schema(String),
    /// A destination error; `transient` says whether a retry may help.
    #[error("destination {destination}: {message}")]
    Destination {
        /// Destination name.
        destination: String,
        /// What happened.
        message: String,
        /// Whether retrying may help (connection lost, lock timeout, …).
        transient: bool,
    },
    /// A destination driver's error, with the driver's error kept as the source;
    /// `transient` comes from the driver's codes (SQLSTATE, HTTP status, I/O kind).
    #[error("destination {destination}: {message}")]
    DestinationDriver {
        /// Destination name.
        destination: String,
        /// What was being done, and the driver's message.
        message: String,
        /// Whether retrying may help.
        transient: bool,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A load package is inconsistent or missing.
    #[error("load package error: {0}")]
    Package(String),
    /// Pipeline-level misuse or missing data.
    #[error("pipeline error: {0}")]
    Pipeline(String),
    /// Arrow error.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet error.
    #[error("parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// JSON (de)serialization error.
    #[error("json error: {0}")]
    Json(#[from] serde_json::Error),
    /// A job of a load package failed for good. The package stays pending with the reason in
    /// its `failed_jobs` folder; nothing it loaded before is lost.
    #[error(
        "job {job} failed: {source}. The package stays pending (nothing is lost): fix the cause and \
         run the pipeline again, or give the package up with `dlt pipeline <name> drop-pending-packages`"
    )]
    JobFailed {
        /// The job file (or `<table>.<kind>.followup`).
        job: String,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
    /// A step of a run failed; wraps the cause.
    #[error("pipeline step {step} failed{}: {source}", load_id.as_ref().map(|l| format!(" for load package {l}")).unwrap_or_default())]
    StepFailed {
        /// The failing step.
        step: Step,
        /// The load package, if one was being processed.
        load_id: Option<String>,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// A destination driver's error: `message` says what was being done (and the driver's own
    /// text), `source` keeps the driver's error.
    pub fn driver(
        destination: impl Into<String>,
        message: impl Into<String>,
        transient: bool,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Error {
        Error::DestinationDriver {
            destination: destination.into(),
            message: message.into(),
            transient,
            source: source.into(),
        }
    }

    /// Prefix a destination error's message with what was being done; other errors unchanged.
    pub fn context(self, what: &str) -> Error {
        match self {
            Error::Destination { destination, message, transient } => {
                Error::Destination { destination, message: format!("{what}: {message}"), transient }
            }
            Error::DestinationDriver { destination, message, transient, source } => {
                Error::DestinationDriver { destination, message: format!("{what}: {message}"), transient, source }
            }
            other => other,
        }
    }

    /// Whether a retry of the same operation may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Destination { transient, .. }
            | Error::DestinationDriver { transient, .. }
            | Error::Source { transient, .. }
            | Error::SourceSetup { transient, .. } => *transient,
            Error::StepFailed { source, .. } => source.is_transient(),
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    /// The step this error was raised in, if it is a step failure.
    pub fn step(&self) -> Option<Step> {
        match self {
            Error::StepFailed { step, .. } => Some(*step),
            _ => None,
        }
    }

    /// The innermost cause (unwraps step failures).
    pub fn root(&self) -> &Error {
        match self {
            Error::StepFailed { source, .. } | Error::JobFailed { source, .. } => source.root(),
            e => e,
        }
    }

    /// Build an I/O error naming a path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// Whether an error (or one of its causes) is a TLS certificate that was refused: unknown issuer,
/// wrong name, expired, revoked. Retrying cannot fix that, so drivers treat it as terminal even
/// where the same error kind (a failed connect) is otherwise transient. The check reads the
/// texts of the cause chain, because each driver wraps rustls' error in its own type.
pub fn is_certificate_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        let t = c.to_string().to_ascii_lowercase();
        if t.contains("invalid peer certificate")
            || t.contains("certificate verify failed")
            || t.contains("unknownissuer")
            || t.contains("notvalidforname")
            || t.contains("certificate expired")
            || t.contains("bad certificate")
        {
            return true;
        }
        cur = c.source();
    }
    false
}

/// A statement or response body as an error message quotes it: on one line, cut after 120
/// bytes (with `…`).
pub fn excerpt(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.len() > 120 { format!("{}…", &one[..one.floor_char_boundary(120)]) } else { one }
}

/// `what: error: cause: …`: an error with the texts of its cause chain, each text once (drivers
/// often repeat their source's text in their own).
pub fn with_causes(what: &str, e: &(dyn std::error::Error + 'static)) -> String {
    let mut m = format!("{what}: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !m.contains(&t) {
            m.push_str(&format!(": {t}"));
        }
        src = s.source();
    }
    m
}

/// Attach a path to `std::io::Result`s.
pub trait IoContext<T> {
    /// Map the I/O error to [`Error::Io`] naming `path`.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::is_certificate_failure;

    #[derive(Debug)]
    struct Wrap(&'static str, Option<Box<Wrap>>);
    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Wrap {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|w| w as _)
        }
    }

    #[test]
    fn certificate_failures_are_found_in_the_cause_chain() {
        let deep = Wrap("error sending request", Some(Box::new(Wrap("invalid peer certificate: UnknownIssuer", None))));
        assert!(is_certificate_failure(&deep));
        let refused = Wrap("error trying to connect", Some(Box::new(Wrap("Connection refused (os error 111)", None))));
        assert!(!is_certificate_failure(&refused));
    }
}
