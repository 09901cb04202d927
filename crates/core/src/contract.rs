//! Schema contracts: what may change in a schema (`tables`, `columns`, `data_type`) and what
//! happens to data that would change it (`evolve`, `freeze`, `discard_row`, `discard_value`).

use serde_json::Value;

use crate::error::{Error, Result};
use crate::schema::Schema;

/// What happens to data that would change the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContractMode {
    /// Change the schema (default).
    #[default]
    Evolve,
    /// Fail the run.
    Freeze,
    /// Drop the row.
    DiscardRow,
    /// Drop the value.
    DiscardValue,
}

impl ContractMode {
    /// Parse dlt's mode name.
    pub fn parse(s: &str) -> Result<ContractMode> {
        Ok(match s {
            "evolve" => ContractMode::Evolve,
            "freeze" => ContractMode::Freeze,
            "discard_row" => ContractMode::DiscardRow,
            "discard_value" => ContractMode::DiscardValue,
            other => {
                return Err(Error::Config(format!(
                    "unknown schema contract mode `{other}` (evolve, freeze, discard_row, discard_value)"
                )));
            }
        })
    }

    /// dlt's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ContractMode::Evolve => "evolve",
            ContractMode::Freeze => "freeze",
            ContractMode::DiscardRow => "discard_row",
            ContractMode::DiscardValue => "discard_value",
        }
    }
}

/// A contract for the three entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchemaContract {
    /// New tables.
    pub tables: ContractMode,
    /// New columns of existing tables.
    pub columns: ContractMode,
    /// New variant columns (values that do not fit a column's type).
    pub data_type: ContractMode,
}

impl SchemaContract {
    /// Parse a contract: a mode for all entities, or `{"tables": …, "columns": …, "data_type": …}`.
    pub fn parse(v: &Value) -> Result<SchemaContract> {
        match v {
            Value::Null => Ok(SchemaContract::default()),
            Value::String(s) => {
                let m = ContractMode::parse(s)?;
                Ok(SchemaContract { tables: m, columns: m, data_type: m })
            }
            Value::Object(o) => {
                let mut c = SchemaContract::default();
                for (k, v) in o {
                    let m = ContractMode::parse(v.as_str().unwrap_or_default())?;
                    match k.as_str() {
                        "tables" => c.tables = m,
                        "columns" => c.columns = m,
                        "data_type" => c.data_type = m,
                        other => {
                            return Err(Error::Config(format!(
                                "unknown schema contract entity `{other}` (tables, columns, data_type)"
                            )));
                        }
                    }
                }
                Ok(c)
            }
            other => Err(Error::Config(format!("schema_contract must be a mode or an object, got {other}"))),
        }
    }

    /// The contract in force for a table: its root table's, else the schema's, else evolve.
    pub fn for_table(schema: &Schema, table: &str) -> Result<SchemaContract> {
        let root = schema.root_table(table);
        match root.and_then(|t| t.schema_contract.as_ref()).or(schema.settings.schema_contract.as_ref()) {
            Some(v) => SchemaContract::parse(v),
            None => Ok(SchemaContract::default()),
        }
    }
}

/// The error for data that breaks a frozen contract: names the entity, table, column and value.
pub fn violation(entity: &str, table: &str, column: Option<&str>, value: Option<&Value>) -> Error {
    let mut msg = format!("schema contract violated: `{entity}` are frozen, ");
    match column {
        Some(c) => msg.push_str(&format!("cannot add column `{c}` to table `{table}`")),
        None => msg.push_str(&format!("cannot add table `{table}`")),
    }
    if let Some(v) = value {
        let s = v.to_string();
        let s = if s.chars().count() > 80 { format!("{}…", s.chars().take(80).collect::<String>()) } else { s };
        msg.push_str(&format!(" (offending value: {s})"));
    }
    Error::Schema(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse() {
        assert_eq!(SchemaContract::parse(&json!("freeze")).unwrap().columns, ContractMode::Freeze);
        let c = SchemaContract::parse(&json!({"columns": "discard_row"})).unwrap();
        assert_eq!(
            (c.tables, c.columns, c.data_type),
            (ContractMode::Evolve, ContractMode::DiscardRow, ContractMode::Evolve)
        );
        assert!(SchemaContract::parse(&json!("strict")).is_err());
        assert!(SchemaContract::parse(&json!({"rows": "freeze"})).is_err());
        let e = violation("columns", "t", Some("new"), Some(&json!(1))).to_string();
        assert!(
            e.contains("`columns` are frozen") && e.contains("`new`") && e.contains("`t`") && e.contains("1"),
            "{e}"
        );
    }
}
