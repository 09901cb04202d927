//! What differs between SQL destinations: a [`Dialect`] is data and small pieces of SQL text;
//! the statements themselves are written once in this crate.

use dlt_core::schema::{Column, DataType};

/// What differs between SQL destinations for the generated statements.
pub trait Dialect: Send + Sync {
    /// A string literal (standard SQL: single quotes doubled).
    fn literal(&self, s: &str) -> String {
        crate::literal(s)
    }
    /// The statement that opens a transaction.
    fn begin(&self) -> &'static str {
        "BEGIN TRANSACTION;"
    }
    /// Whether DDL (CREATE / ALTER) can run inside a transaction and roll back with it.
    fn transactional_ddl(&self) -> bool {
        true
    }
    /// The current time as a timestamp with time zone.
    fn now(&self) -> &'static str {
        "CURRENT_TIMESTAMP"
    }
    /// A statement making unqualified names resolve in `dataset` for the session.
    fn set_search_path(&self, dataset: &str) -> String {
        format!("SET search_path TO {};", self.quote(dataset))
    }
    /// A statement, run first in a transaction, that serialises concurrent loaders of one
    /// dataset (Postgres: an advisory lock); `None` when the destination locks by itself.
    fn lock_dataset(&self, _dataset: &str) -> Option<String> {
        None
    }
    /// Statements creating the empty staging table `staging` shaped like `table` (both
    /// qualified); `keep_constraints` when the table will be swapped in for the final one.
    fn create_staging_table(&self, staging: &str, table: &str, _keep_constraints: bool) -> String {
        format!("CREATE OR REPLACE TABLE {staging} AS SELECT * FROM {table} LIMIT 0;")
    }
    /// A statement that makes the next inserts keep file order (`on`) or lets the engine
    /// reorder them again (`!on`); `None` when inserts always keep their order.
    fn keep_insertion_order(&self, _on: bool) -> Option<String> {
        None
    }
    /// Statements replacing `table` by `staging` (both qualified, `dataset` quoted) for the
    /// `staging-optimized` replace strategy; `None`: the destination copies instead.
    fn swap_table(&self, _staging: &str, _table: &str, _dataset: &str) -> Option<String> {
        None
    }
    /// The query listing `(table_name, column_name)` of `dataset`, in column order.
    fn columns_query(&self, dataset: &str) -> String {
        format!(
            "SELECT CAST(table_name AS VARCHAR), CAST(column_name AS VARCHAR) FROM information_schema.columns \
             WHERE table_schema = {} ORDER BY table_name, ordinal_position",
            self.literal(dataset)
        )
    }
    /// The query counting schemas named `dataset`.
    fn dataset_exists_query(&self, dataset: &str) -> String {
        format!("SELECT count(*) FROM information_schema.schemata WHERE schema_name = {}", self.literal(dataset))
    }

    /// Quote an identifier.
    fn quote(&self, ident: &str) -> String {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }
    /// A timestamp-with-time-zone literal for UTC microseconds.
    fn timestamp_literal(&self, micros: i64) -> String {
        let dt = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
        format!("'{}'", dt.format("%Y-%m-%d %H:%M:%S%.6f+00:00"))
    }
    /// Whether `MERGE INTO` exists.
    fn supports_merge(&self) -> bool {
        true
    }
    /// A pseudo-column giving the staged rows' insertion order (DuckDB: `rowid`), if any.
    fn row_order(&self) -> Option<&'static str> {
        None
    }
    /// The destination type of a dlt column.
    fn column_type(&self, col: &Column) -> String {
        match col.data_type.unwrap_or(DataType::Text) {
            DataType::Text | DataType::Json => "VARCHAR".into(),
            DataType::Bigint => "BIGINT".into(),
            DataType::Double => "DOUBLE PRECISION".into(),
            DataType::Bool => "BOOLEAN".into(),
            DataType::Timestamp => "TIMESTAMP WITH TIME ZONE".into(),
            DataType::Date => "DATE".into(),
            DataType::Time => "TIME".into(),
            DataType::Binary => "BLOB".into(),
            DataType::Decimal | DataType::Wei => "DECIMAL(38,9)".into(),
        }
    }
    /// Whether `unique` columns get a UNIQUE constraint (dlt does so on Postgres).
    fn unique_constraints(&self) -> bool {
        false
    }
    /// Whether several `ADD COLUMN`s go into one `ALTER TABLE` (Postgres) or one statement each.
    fn combine_add_columns(&self) -> bool {
        false
    }
    /// Whether `SET NOT NULL` may follow an `UPDATE` of the column in one transaction (DuckDB:
    /// no, "Cannot create index with outstanding updates"; the filled column then stays
    /// nullable in the database while every row has a value).
    fn set_not_null_after_update(&self) -> bool {
        true
    }
    /// Whether a follow-up job's statements (merge, replace from staging) go to the destination
    /// as one script instead of one statement each (BigQuery: temporary tables live only within
    /// the script that creates them, and a script runs as one job).
    fn follow_up_as_script(&self) -> bool {
        false
    }
    /// `CREATE TEMPORARY TABLE name AS query`.
    fn create_temp_table_as(&self, name: &str, query: &str) -> String {
        format!("CREATE TEMPORARY TABLE {name} AS {query};")
    }
}

/// The generic dialect (double-quoted identifiers, standard SQL).
#[derive(Debug, Default, Clone, Copy)]
pub struct Generic;
impl Dialect for Generic {}
