//! Snowflake's SQL for the shared loader (`dlt-sql`): identifiers folded to upper case, the type
//! map, and where Snowflake's statements differ from standard SQL.
//!
//! The facts are dlt 1.31's for its Snowflake destination (its capabilities and type mapper,
//! read from dlt itself): identifiers are the schema's names folded with `str.upper` and
//! double-quoted; `json` → `VARIANT`, `bigint` → `NUMBER(19,0)` at every precision, `double` →
//! `FLOAT`, `timestamp` → `TIMESTAMP_LTZ` (`TIMESTAMP_NTZ` without time zone; `(p)` when a
//! precision is given), `time` → `TIME[(p)]`, `binary` → `BINARY`, `decimal` → `NUMBER(p,s)`
//! (default 38,9), `wei` → `NUMBER(38,0)`, `text` → `VARCHAR[(n)]`. DDL commits on its own in
//! Snowflake, so it runs outside the load's transaction. Staging tables are emptied clones of
//! their tables; `staging-optimized` drops the table and clones the staging table in its place
//! (dlt's default on Snowflake; its `enable_atomic_swap` variant, `ALTER TABLE … SWAP WITH`, is
//! not offered: fakesnow cannot run it).

use dlt_core::schema::{Column, DataType};
use dlt_sql::Dialect;

/// The Snowflake dialect.
#[derive(Debug, Default, Clone, Copy)]
pub struct SnowflakeDialect;

impl Dialect for SnowflakeDialect {
    fn transactional_ddl(&self) -> bool {
        false
    }
    fn set_search_path(&self, dataset: &str) -> String {
        format!("USE SCHEMA {};", self.quote(dataset))
    }
    /// A zero-copy clone of the table, emptied: the staging table keeps the table's columns and
    /// constraints.
    fn create_staging_table(&self, staging: &str, table: &str, _keep_constraints: bool) -> String {
        format!("DROP TABLE IF EXISTS {staging}; CREATE TABLE {staging} CLONE {table}; TRUNCATE TABLE {staging};")
    }
    /// `staging-optimized`, as dlt does it on Snowflake by default: drop the table and clone the
    /// staging table in its place.
    fn swap_table(&self, staging: &str, table: &str, _dataset: &str) -> Option<String> {
        Some(format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} CLONE {staging};"))
    }
    /// The catalog lists the folded (upper-case) names; the loader compares them with the
    /// schema's, which are folded back here (the default naming makes lower-case names).
    fn columns_query(&self, dataset: &str) -> String {
        format!(
            "SELECT LOWER(table_name), LOWER(column_name) FROM information_schema.columns \
             WHERE table_schema = {} ORDER BY table_name, ordinal_position",
            self.literal(&dataset.to_uppercase())
        )
    }
    fn dataset_exists_query(&self, dataset: &str) -> String {
        format!(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = {}",
            self.literal(&dataset.to_uppercase())
        )
    }
    fn quote(&self, ident: &str) -> String {
        format!("\"{}\"", ident.to_uppercase().replace('"', "\"\""))
    }
    fn column_type(&self, col: &Column) -> String {
        match col.data_type.unwrap_or(DataType::Text) {
            DataType::Text => match col.precision {
                Some(n) => format!("VARCHAR({n})"),
                None => "VARCHAR".into(),
            },
            DataType::Json => "VARIANT".into(),
            DataType::Bigint => "NUMBER(19,0)".into(),
            DataType::Double => "FLOAT".into(),
            DataType::Bool => "BOOLEAN".into(),
            DataType::Timestamp => {
                let kind = if col.timezone.unwrap_or(true) { "TIMESTAMP_LTZ" } else { "TIMESTAMP_NTZ" };
                match col.precision {
                    Some(p) if p <= 9 => format!("{kind}({p})"),
                    _ => kind.into(),
                }
            }
            DataType::Date => "DATE".into(),
            DataType::Time => match col.precision {
                Some(p) if p <= 9 => format!("TIME({p})"),
                _ => "TIME".into(),
            },
            DataType::Binary => "BINARY".into(),
            DataType::Decimal => format!("NUMBER({},{})", col.precision.unwrap_or(38), col.scale.unwrap_or(9)),
            DataType::Wei => "NUMBER(38,0)".into(),
        }
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

    /// The types dlt 1.31's Snowflake type mapper gives (read from dlt itself).
    #[test]
    fn types_are_dlts() {
        let d = SnowflakeDialect;
        let cases = [
            (serde_json::json!({"data_type": "text"}), "VARCHAR"),
            (serde_json::json!({"data_type": "text", "precision": 20}), "VARCHAR(20)"),
            (serde_json::json!({"data_type": "json"}), "VARIANT"),
            (serde_json::json!({"data_type": "bigint"}), "NUMBER(19,0)"),
            (serde_json::json!({"data_type": "bigint", "precision": 8}), "NUMBER(19,0)"),
            (serde_json::json!({"data_type": "double"}), "FLOAT"),
            (serde_json::json!({"data_type": "bool"}), "BOOLEAN"),
            (serde_json::json!({"data_type": "timestamp"}), "TIMESTAMP_LTZ"),
            (serde_json::json!({"data_type": "timestamp", "timezone": false}), "TIMESTAMP_NTZ"),
            (serde_json::json!({"data_type": "timestamp", "precision": 3}), "TIMESTAMP_LTZ(3)"),
            (serde_json::json!({"data_type": "timestamp", "precision": 3, "timezone": false}), "TIMESTAMP_NTZ(3)"),
            (serde_json::json!({"data_type": "date"}), "DATE"),
            (serde_json::json!({"data_type": "time"}), "TIME"),
            (serde_json::json!({"data_type": "time", "precision": 3}), "TIME(3)"),
            (serde_json::json!({"data_type": "binary", "precision": 10}), "BINARY"),
            (serde_json::json!({"data_type": "decimal"}), "NUMBER(38,9)"),
            (serde_json::json!({"data_type": "decimal", "precision": 10, "scale": 2}), "NUMBER(10,2)"),
            (serde_json::json!({"data_type": "wei"}), "NUMBER(38,0)"),
        ];
        for (c, want) in cases {
            assert_eq!(d.column_type(&col(c.clone())), want, "{c}");
        }
    }

    #[test]
    fn identifiers_fold_to_upper_case() {
        let d = SnowflakeDialect;
        assert_eq!(d.quote("my_Table"), "\"MY_TABLE\"");
        assert_eq!(d.quote("a\"b"), "\"A\"\"B\"");
        assert!(d.columns_query("my_data").contains("table_schema = 'MY_DATA'"));
        assert!(!d.transactional_ddl());
    }
}
