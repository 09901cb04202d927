//! The normalize step's interface. The relational JSON normalizer lives in `dlt-normalize`;
//! the pipeline runner only knows this trait.

use std::path::Path;

use indexmap::IndexMap;

use crate::destination::{Capabilities, JobFile};
use crate::error::Result;
use crate::schema::Schema;

/// One package to normalize.
pub struct NormalizeRequest<'a> {
    /// Load id (goes into `_dlt_load_id`).
    pub load_id: &'a str,
    /// Extracted files (JSONL items or Arrow parquet), one table each.
    pub files: &'a [JobFile],
    /// Folder to write job files into (named with [`JobFile::file_name`]).
    pub output_dir: &'a Path,
    /// The schema; the normalizer adds tables, columns and variants to it.
    pub schema: &'a mut Schema,
    /// Destination capabilities (identifier limits, file formats).
    pub capabilities: &'a Capabilities,
    /// Called with the number of items processed so far, for progress display.
    pub on_progress: &'a (dyn Fn(u64) + Sync),
    /// Configuration (e.g. `normalize.parquet_normalizer.add_dlt_load_id`).
    pub config: &'a crate::config::Config,
}

/// What a normalize produced.
#[derive(Debug, Default, Clone)]
pub struct NormalizeResult {
    /// Rows written per table.
    pub row_counts: IndexMap<String, u64>,
}

/// Turns extracted items into per-table job files.
pub trait Normalizer: Send + Sync {
    /// Normalize one package.
    fn normalize(&self, request: NormalizeRequest<'_>) -> Result<NormalizeResult>;
}
