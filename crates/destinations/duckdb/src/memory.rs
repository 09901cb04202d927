//! Memory of a DuckDB load: the settings every load connection gets, and what an out-of-memory
//! error tells the user.
//!
//! A load package commits in one transaction (its data, its `_dlt_pipeline_state` row and its
//! `_dlt_loads` row), so DuckDB keeps everything the package appends until the commit, and the
//! appended rows stay in memory until the next checkpoint (when the database is closed after the
//! package). Large appends do not count against that: DuckDB writes full row groups to the file
//! before the commit and spills other full-size buffers to its temp directory under
//! `memory_limit`. What it cannot spill are the small first segments of each appended column —
//! `initial_column_segment_size`, 2 KiB by default in DuckDB 2.0 (32 KiB blocks in 1.5) — so a
//! package of many small tables used to need memory in proportion to its columns: about 4 KiB
//! per column (6,000 columns ≈ 24 MiB; in DuckDB 1.5, 3,000 columns exceeded 152 MiB). Load
//! connections therefore start column segments at [`INITIAL_COLUMN_SEGMENT_SIZE`] bytes: that
//! fits the few rows such tables have, and a column that grows gets the usual doubling
//! segments, which spill. Measured with DuckDB 2.0.1 (100 tables × 60 columns, 1–10 rows each):
//! 23.3 MiB of unspillable segments at 2 KiB, 2.9 MiB at 256 bytes; through `dlt run` the
//! package loads with `memory_limit` 8MB (it needed between 20 and 40MB before); a bulk insert
//! of 2M rows takes the same time and memory either way.

use dlt_core::error::Error;

use crate::lit;

/// DuckDB's memory limit while loading, unless configured: a load's memory stays flat however
/// many rows it has (DuckDB spills to disk beyond it), and a package's width costs about 1 KiB
/// per column on top (see the module docs).
pub const DEFAULT_MEMORY_LIMIT: &str = "160MB";

/// `initial_column_segment_size` of load connections (DuckDB's default: 2048).
pub const INITIAL_COLUMN_SEGMENT_SIZE: u32 = 256;

/// The `SET` statements every load connection runs first.
pub(crate) fn load_settings(memory_limit: Option<&str>, threads: Option<u32>) -> String {
    let mut settings = format!(
        "SET preserve_insertion_order = false; SET initial_column_segment_size = {INITIAL_COLUMN_SEGMENT_SIZE};"
    );
    if let Some(m) = memory_limit {
        settings.push_str(&format!(" SET memory_limit = {};", lit(m)));
    }
    if let Some(t) = threads {
        settings.push_str(&format!(" SET threads = {t};"));
    }
    settings
}

const OOM: &str = "Out of Memory Error";

/// Is this DuckDB's out-of-memory error?
pub(crate) fn is_out_of_memory(message: &str) -> bool {
    message.contains(OOM)
}

/// An out-of-memory error of a load, told with the setting that changes the limit, its value,
/// and how to go on. DuckDB's own advice (SQL `SET`s, which a dlt user cannot run) is dropped;
/// its first line (what it could not allocate, how much was used) is kept. Other errors pass
/// through unchanged.
pub(crate) fn explain_out_of_memory(err: Error, memory_limit: Option<&str>, pipeline_name: Option<&str>) -> Error {
    let message = match &err {
        Error::Destination { message, .. } | Error::DestinationDriver { message, .. } => message,
        _ => return err,
    };
    if !is_out_of_memory(message) {
        return err;
    }
    let duckdb_part = message.split("\n\n").next().unwrap_or(message).trim_end();
    let limit = match memory_limit {
        Some(m) if m == DEFAULT_MEMORY_LIMIT => format!("memory_limit is {m} (the default)"),
        Some(m) => format!("memory_limit is {m}"),
        None => "memory_limit is DuckDB's default (80% of RAM)".to_string(),
    };
    let drop = match pipeline_name {
        Some(name) => format!("`dlt pipeline {name} drop-pending-packages`"),
        None => {
            "`dlt pipeline <pipeline name> drop-pending-packages` (Pipeline::drop_pending_packages in Rust)".to_string()
        }
    };
    let message = format!(
        "{duckdb_part}. DuckDB's {limit}: raise it with DESTINATION__DUCKDB__MEMORY_LIMIT (e.g. \
         DESTINATION__DUCKDB__MEMORY_LIMIT=1GB) or `memory_limit` in [destination.duckdb] of \
         .dlt/config.toml. No row of this load package was committed (its data, state and \
         _dlt_loads rows commit together) and it stays pending: the next run after raising the \
         limit loads it before extracting anything new; to discard it instead, run {drop}."
    );
    match err {
        Error::DestinationDriver { destination, source, .. } => {
            Error::DestinationDriver { destination, message, transient: false, source }
        }
        Error::Destination { destination, .. } => Error::Destination { destination, message, transient: false },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oom() -> Error {
        Error::Destination {
            destination: "duckdb".into(),
            message: "loading job a.parquet into table t: Out of Memory Error: could not allocate block of size \
                      1.9 KiB (7.6 MiB/7.6 MiB used)\n\nPossible solutions:\n* Increasing the memory limit \
                      (SET memory_limit='...GB')\nSee also https://duckdb.org/docs"
                .into(),
            transient: false,
        }
    }

    #[test]
    fn out_of_memory_names_the_setting_its_value_and_the_way_out() {
        let e = explain_out_of_memory(oom(), Some("8MB"), Some("wide")).to_string();
        assert!(e.starts_with("destination duckdb: loading job a.parquet into table t: Out of Memory Error"), "{e}");
        assert!(e.contains("(7.6 MiB/7.6 MiB used). DuckDB's memory_limit is 8MB: raise it"), "{e}");
        assert!(e.contains("DESTINATION__DUCKDB__MEMORY_LIMIT") && e.contains("[destination.duckdb]"), "{e}");
        assert!(e.contains("stays pending") && e.contains("`dlt pipeline wide drop-pending-packages`"), "{e}");
        assert!(!e.contains("SET memory_limit") && !e.contains("Possible solutions"), "{e}");
        let e = explain_out_of_memory(oom(), None, None).to_string();
        assert!(e.contains("DuckDB's default (80% of RAM)") && e.contains("<pipeline name>"), "{e}");
        let e = explain_out_of_memory(oom(), Some(DEFAULT_MEMORY_LIMIT), None).to_string();
        assert!(e.contains("memory_limit is 160MB (the default)"), "{e}");
    }

    #[test]
    fn other_errors_pass_through() {
        let e =
            Error::Destination { destination: "duckdb".into(), message: "Conflicting lock".into(), transient: true };
        let out = explain_out_of_memory(e, Some("8MB"), None);
        assert!(out.is_transient());
        assert_eq!(out.to_string(), "destination duckdb: Conflicting lock");
    }
}
