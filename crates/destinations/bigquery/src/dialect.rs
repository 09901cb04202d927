//! BigQuery's SQL for the shared loader (`dlt-sql`): backtick-quoted, case-sensitive
//! identifiers, BigQuery's string literals, the type map, and where BigQuery's statements differ.
//!
//! The facts are dlt 1.31's for its BigQuery destination (its capabilities and type mapper, read
//! from dlt itself): `text` → `STRING` (`STRING(n)` with a precision), `json` → `JSON`, `double`
//! → `FLOAT64`, `bool` → `BOOL`, `date` → `DATE`, `timestamp` → `TIMESTAMP` (no precision,
//! with or without time zone), `bigint` → `INT64`, `binary` → `BYTES` (`BYTES(n)`), `time` →
//! `TIME`, `wei` → `BIGNUMERIC`, `decimal` → `NUMERIC(p,s)`, or `BIGNUMERIC(p,s)` when the
//! scale is 0 and the precision over 29, or the precision over 38 or the scale over 9.
//!
//! BigQuery has no transaction across jobs and no search path: names are always qualified, DDL
//! commits on its own, and the loader uses its idempotent protocol. A follow-up job (merge,
//! replace from staging) runs as one script, where its temporary tables live.

use dlt_core::schema::{Column, DataType};
use dlt_sql::Dialect;

/// The BigQuery dialect, for datasets in `location` (the region qualifier of the project-wide
/// `INFORMATION_SCHEMA` views).
#[derive(Debug, Clone)]
pub struct BigQueryDialect {
    /// `US`, `EU`, `europe-west3`, …
    pub location: String,
}

impl BigQueryDialect {
    /// The dialect for datasets in `location`.
    pub fn new(location: &str) -> Self {
        BigQueryDialect { location: location.to_string() }
    }
}

impl Dialect for BigQueryDialect {
    /// BigQuery's literal: backslash escapes (a doubled quote is not an escape there).
    fn literal(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('\'');
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    }
    fn transactional_ddl(&self) -> bool {
        false
    }
    fn now(&self) -> &'static str {
        "CURRENT_TIMESTAMP()"
    }
    /// No search path: every name the loader writes is qualified with the dataset.
    fn set_search_path(&self, _dataset: &str) -> String {
        String::new()
    }
    fn create_staging_table(&self, staging: &str, table: &str, _keep_constraints: bool) -> String {
        format!("CREATE OR REPLACE TABLE {staging} LIKE {table};")
    }
    /// `staging-optimized` as dlt does it on BigQuery: the table is replaced by a clone of the
    /// staging table (dropped first: bqemulator cannot `CREATE OR REPLACE … CLONE`).
    fn swap_table(&self, staging: &str, table: &str, _dataset: &str) -> Option<String> {
        Some(format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} CLONE {staging};"))
    }
    fn columns_query(&self, dataset: &str) -> String {
        format!(
            "SELECT table_name, column_name FROM {}.INFORMATION_SCHEMA.COLUMNS ORDER BY table_name, ordinal_position",
            self.quote(dataset)
        )
    }
    fn dataset_exists_query(&self, dataset: &str) -> String {
        format!(
            "SELECT count(*) FROM `region-{}`.INFORMATION_SCHEMA.SCHEMATA WHERE schema_name = {}",
            self.location.to_lowercase(),
            self.literal(dataset)
        )
    }
    fn quote(&self, ident: &str) -> String {
        format!("`{}`", ident.replace('\\', "\\\\").replace('`', "\\`"))
    }
    fn timestamp_literal(&self, micros: i64) -> String {
        let dt = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
        format!("TIMESTAMP '{}'", dt.format("%Y-%m-%d %H:%M:%S%.6f+00:00"))
    }
    fn column_type(&self, col: &Column) -> String {
        match col.data_type.unwrap_or(DataType::Text) {
            DataType::Text => match col.precision {
                Some(n) => format!("STRING({n})"),
                None => "STRING".into(),
            },
            DataType::Json => "JSON".into(),
            DataType::Double => "FLOAT64".into(),
            DataType::Bool => "BOOL".into(),
            DataType::Date => "DATE".into(),
            DataType::Timestamp => "TIMESTAMP".into(),
            DataType::Bigint => "INT64".into(),
            DataType::Binary => match col.precision {
                Some(n) => format!("BYTES({n})"),
                None => "BYTES".into(),
            },
            DataType::Time => "TIME".into(),
            DataType::Wei => "BIGNUMERIC".into(),
            DataType::Decimal => {
                let (p, s) = (col.precision.unwrap_or(38), col.scale.unwrap_or(9));
                if (s == 0 && p > 29) || p > 38 || s > 9 {
                    format!("BIGNUMERIC({p},{s})")
                } else {
                    format!("NUMERIC({p},{s})")
                }
            }
        }
    }
    fn follow_up_as_script(&self) -> bool {
        true
    }
    fn create_temp_table_as(&self, name: &str, query: &str) -> String {
        format!("CREATE TEMP TABLE {name} AS {query};")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(v: serde_json::Value) -> Column {
        let mut v = v;
        v["name"] = "c".into();
        serde_json::from_value(v).unwrap()
    }

    /// The types dlt 1.31's BigQuery type mapper gives (read from dlt itself).
    #[test]
    fn types_are_dlts() {
        let d = BigQueryDialect::new("US");
        let cases = [
            (serde_json::json!({"data_type": "text"}), "STRING"),
            (serde_json::json!({"data_type": "text", "precision": 20}), "STRING(20)"),
            (serde_json::json!({"data_type": "json"}), "JSON"),
            (serde_json::json!({"data_type": "bigint", "precision": 8}), "INT64"),
            (serde_json::json!({"data_type": "double"}), "FLOAT64"),
            (serde_json::json!({"data_type": "bool"}), "BOOL"),
            (serde_json::json!({"data_type": "timestamp", "precision": 3, "timezone": false}), "TIMESTAMP"),
            (serde_json::json!({"data_type": "date"}), "DATE"),
            (serde_json::json!({"data_type": "time"}), "TIME"),
            (serde_json::json!({"data_type": "binary"}), "BYTES"),
            (serde_json::json!({"data_type": "decimal"}), "NUMERIC(38,9)"),
            (serde_json::json!({"data_type": "decimal", "precision": 10, "scale": 2}), "NUMERIC(10,2)"),
            (serde_json::json!({"data_type": "decimal", "precision": 30, "scale": 0}), "BIGNUMERIC(30,0)"),
            (serde_json::json!({"data_type": "decimal", "precision": 40, "scale": 10}), "BIGNUMERIC(40,10)"),
            (serde_json::json!({"data_type": "wei"}), "BIGNUMERIC"),
        ];
        for (c, want) in cases {
            assert_eq!(d.column_type(&col(c.clone())), want, "{c}");
        }
    }

    #[test]
    fn names_and_literals_are_bigquerys() {
        let d = BigQueryDialect::new("US");
        assert_eq!(d.quote("My_Table"), "`My_Table`");
        assert_eq!(d.quote("a`b"), "`a\\`b`");
        assert_eq!(d.literal("it's a \\ path\n"), "'it\\'s a \\\\ path\\n'");
        assert_eq!(d.timestamp_literal(0), "TIMESTAMP '1970-01-01 00:00:00.000000+00:00'");
        assert!(
            d.columns_query("ds").starts_with("SELECT table_name, column_name FROM `ds`.INFORMATION_SCHEMA.COLUMNS")
        );
        assert!(
            d.dataset_exists_query("ds")
                .contains("FROM `region-us`.INFORMATION_SCHEMA.SCHEMATA WHERE schema_name = 'ds'")
        );
        assert!(!d.transactional_ddl() && d.follow_up_as_script());
    }
}
