//! The SQL loader every SQL destination shares: DDL from the schema, the system tables, the
//! load sequence (truncate → stage → load → replace / merge → `_dlt_loads`), state and schema
//! restore, written once against a [`Dialect`] (data and small SQL pieces) and a
//! [`SqlConnection`] (run SQL, load one job file). A SQL destination is a dialect, a
//! connection and a load step; [`SqlLoader`] turns them into a
//! [`DestinationClient`](dlt_core::destination::DestinationClient).
#![warn(missing_docs)]

mod cells;
mod connection;
mod ddl;
mod dialect;
mod loader;
mod merge;

pub use cells::{cell_strings, first_line};
pub use connection::SqlConnection;
pub use ddl::{column_def, schema_update_sql, system_tables_sql};
pub use dialect::{Dialect, Generic};
pub use loader::SqlLoader;
pub use merge::{
    MergeContext, StagingPlan, merge_statements, merge_strategy, replace_from_staging, scd2_columns, staging_plan,
};

/// Quote a string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Parse an ISO timestamp or date as UTC microseconds (naive values are UTC).
pub fn parse_ts(s: &str) -> Option<i64> {
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(d.timestamp_micros());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(d.and_utc().timestamp_micros());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_ts("2024-06-01T00:00:00"), parse_ts("2024-06-01"));
        assert_eq!(Generic.timestamp_literal(parse_ts("9999-12-31").unwrap()), "'9999-12-31 00:00:00.000000+00:00'");
    }
}
