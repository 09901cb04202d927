//! Mirror of BigQuery datasets (on a bqemulator server) into a DuckDB database, so that the
//! canonical [`dump_connection`](crate::dump_connection) reads a BigQuery destination as it reads
//! a DuckDB one and the cases' `expected.json` files apply unchanged.
//!
//! The rows are read through the emulator's REST API (`jobs.query`) by plain HTTP requests of
//! the test kit, not by dlt-rs' client: for each dataset, the BASE TABLEs of its
//! `INFORMATION_SCHEMA.TABLES`, then `SELECT *` of each, whose answer describes the columns
//! (`name`, `type`, `mode`) — the emulator's `INFORMATION_SCHEMA.COLUMNS` and `tables.get` miss
//! columns added by `ALTER TABLE`. Values arrive as the API's text and are cast by DuckDB.
//!
//! | BigQuery (REST type)     | DuckDB                     |
//! |--------------------------|----------------------------|
//! | `STRING`                 | `VARCHAR`                  |
//! | `INTEGER`, `INT64`       | `BIGINT`                   |
//! | `FLOAT`, `FLOAT64`       | `DOUBLE`                   |
//! | `BOOLEAN`, `BOOL`        | `BOOLEAN`                  |
//! | `TIMESTAMP`              | `TIMESTAMP WITH TIME ZONE` (the API's epoch microseconds, or seconds as a float) |
//! | `DATETIME`               | `TIMESTAMP`                |
//! | `DATE` / `TIME`          | `DATE` / `TIME`            |
//! | `NUMERIC`                | `DECIMAL(38,9)` (the API gives no precision) |
//! | `BIGNUMERIC`             | `VARCHAR`                  |
//! | `BYTES`                  | `BLOB` (base64)            |
//! | `JSON`                   | `JSON`                     |
//!
//! `mode = REQUIRED` (from `tables.get`: a query's columns are all `NULLABLE`) is `NOT NULL`.

use crate::text_copy::{MirrorColumn, create_and_fill, ident};
use anyhow::Context as _;
use dlt_testkit::services::BqEmulator;
use duckdb::Connection;
use serde_json::Value;
use std::path::Path;

/// The DuckDB type of a REST column type.
pub fn duckdb_type(bq: &str) -> &'static str {
    match bq {
        "STRING" => "VARCHAR",
        "INTEGER" | "INT64" => "BIGINT",
        "FLOAT" | "FLOAT64" => "DOUBLE",
        "BOOLEAN" | "BOOL" => "BOOLEAN",
        "TIMESTAMP" => "TIMESTAMP WITH TIME ZONE",
        "DATETIME" => "TIMESTAMP",
        "DATE" => "DATE",
        "TIME" => "TIME",
        "NUMERIC" => "DECIMAL(38,9)",
        "BYTES" => "BLOB",
        "JSON" => "JSON",
        _ => "VARCHAR",
    }
}

/// DuckDB expression turning the staged text `c` into a value of the REST type `bq`.
fn duck_cast(bq: &str, c: &str) -> String {
    match bq {
        // epoch microseconds (bqemulator) or seconds with a fraction (BigQuery)
        "TIMESTAMP" => format!(
            "CASE WHEN regexp_matches({c}, '^-?[0-9]+$') THEN make_timestamptz(CAST({c} AS BIGINT)) \
             ELSE make_timestamptz(CAST(round(CAST({c} AS DOUBLE) * 1000000) AS BIGINT)) END"
        ),
        "BYTES" => format!("from_base64({c})"),
        other => match duckdb_type(other) {
            "VARCHAR" => c.to_string(),
            ty => format!("CAST({c} AS {ty})"),
        },
    }
}

fn bq_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "\\`"))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Mirrors one table (`schema` exists in `duck`).
fn mirror_table(server: &BqEmulator, duck: &Connection, dataset: &str, table: &str) -> anyhow::Result<()> {
    let (mut cols, rows) =
        server.query_with_schema(&format!("SELECT * FROM {}.{}", bq_ident(dataset), bq_ident(table)));
    // a query's columns are all NULLABLE: the modes come from the table's own schema (which
    // lacks columns added by ALTER TABLE on the emulator; those are nullable)
    let described = server.rest("GET", &format!("datasets/{dataset}/tables/{table}"), None);
    for (name, _, mode) in cols.iter_mut() {
        let field = described["schema"]["fields"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["name"].as_str() == Some(name.as_str())));
        *mode = field.and_then(|f| f["mode"].as_str()).unwrap_or("NULLABLE").to_string();
    }
    let mirror: Vec<MirrorColumn<'_>> = cols
        .iter()
        .map(|(name, bq_type, mode)| MirrorColumn {
            name: name.clone(),
            duck_type: duckdb_type(bq_type).to_string(),
            not_null: mode == "REQUIRED",
            cast: Box::new(move |staged: &str| duck_cast(bq_type, staged)),
        })
        .collect();
    let texts = rows.iter().map(|r| (0..cols.len()).map(|i| r.get(i).and_then(text)).collect());
    create_and_fill(duck, dataset, table, &mirror, texts)
}

/// Mirrors the datasets of `server` named in `datasets` (those that exist) into `duck`.
pub fn mirror(server: &BqEmulator, duck: &Connection, datasets: &[String]) -> anyhow::Result<()> {
    for dataset in datasets {
        let lit = format!("'{}'", dataset.replace('\\', "\\\\").replace('\'', "\\'"));
        let exists = server
            .query(&format!("SELECT count(*) FROM `region-us`.INFORMATION_SCHEMA.SCHEMATA WHERE schema_name = {lit}"));
        if exists.first().and_then(|r| r.first()).and_then(Value::as_str) == Some("0") {
            continue;
        }
        duck.execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {}", ident(dataset)))?;
        let tables = server.query(&format!(
            "SELECT table_name FROM {}.INFORMATION_SCHEMA.TABLES WHERE table_type = 'BASE TABLE' ORDER BY table_name",
            bq_ident(dataset)
        ));
        for t in tables.iter().filter_map(|r| r.first().and_then(Value::as_str)) {
            mirror_table(server, duck, dataset, t)?;
        }
    }
    Ok(())
}

/// Mirrors `datasets` into a fresh DuckDB database (the file `mirror_file`, replaced if it
/// exists) and dumps them with [`dump_connection`](crate::dump_connection).
pub fn dump_bigquery(
    server: &BqEmulator,
    datasets: &[String],
    time_token_columns: Option<&[String]>,
    mirror_file: &Path,
) -> anyhow::Result<Value> {
    if mirror_file.exists() {
        std::fs::remove_file(mirror_file).with_context(|| format!("removing {}", mirror_file.display()))?;
    }
    let duck = Connection::open(mirror_file).with_context(|| format!("creating {}", mirror_file.display()))?;
    mirror(server, &duck, datasets)?;
    crate::dump_connection(&duck, datasets, time_token_columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_mapping() {
        assert_eq!(duckdb_type("INTEGER"), "BIGINT");
        assert_eq!(duckdb_type("TIMESTAMP"), "TIMESTAMP WITH TIME ZONE");
        assert_eq!(duckdb_type("BIGNUMERIC"), "VARCHAR");
        assert_eq!(duck_cast("BYTES", "c0"), "from_base64(c0)");
        assert_eq!(duck_cast("STRING", "c0"), "c0");
        assert!(duck_cast("TIMESTAMP", "c0").contains("make_timestamptz"));
    }
}
