//! A reflected table: what the table adapter edits and the readers read.

use dlt_core::schema::Column;

use crate::types::{Mapped, ReflectionLevel, ValueKind, dlt_column};

/// One column of a reflected table.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlColumn {
    /// The column's name in the database.
    pub name: String,
    /// The name in the batches and the destination (before dlt's naming convention); a table
    /// adapter renames a column by changing it.
    pub output_name: String,
    /// The database type as reflected (`numeric(10,3)`, `varchar(20)`, `bit(8)`).
    pub native_type: String,
    /// How values are read and typed.
    pub mapped: Mapped,
    /// Whether the column accepts NULL.
    pub nullable: bool,
    /// Part of the primary key.
    pub primary_key: bool,
    /// A dlt column hint that replaces the one derived from `mapped` (name is taken from
    /// `output_name`).
    pub hint: Option<Column>,
}

impl SqlColumn {
    /// A column read as `kind`.
    pub fn new(name: impl Into<String>, native_type: impl Into<String>, mapped: Mapped, nullable: bool) -> Self {
        let name = name.into();
        SqlColumn {
            output_name: name.clone(),
            name,
            native_type: native_type.into(),
            mapped,
            nullable,
            primary_key: false,
            hint: None,
        }
    }

    /// How values are read.
    pub fn kind(&self) -> ValueKind {
        self.mapped.kind
    }

    /// Read the column as another kind (the readers convert or cast in SQL) and declare the
    /// matching dlt type.
    pub fn set_kind(&mut self, kind: ValueKind) {
        self.mapped = Mapped { kind, precision: None, default_decimal: false };
        self.hint = None;
    }

    /// The dlt column hint at a reflection level.
    pub fn dlt_column(&self, level: ReflectionLevel) -> Column {
        match &self.hint {
            Some(h) => {
                let mut h = h.clone();
                h.name = self.output_name.clone();
                h
            }
            None => dlt_column(&self.output_name, &self.mapped, self.nullable, self.primary_key, level),
        }
    }
}

/// A table (or view) with its columns in database order.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// The schema (Postgres schema, MySQL database, SQLite attached database); `None` = the
    /// connection's default.
    pub schema: Option<String>,
    /// Table name in the database.
    pub name: String,
    /// A view (reflected only with `include_views`).
    pub is_view: bool,
    /// Columns, in order.
    pub columns: Vec<SqlColumn>,
    /// Database names of the primary-key columns, in key order.
    pub primary_key: Vec<String>,
}

impl TableSchema {
    /// A column by database name.
    pub fn column(&self, name: &str) -> Option<&SqlColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// A column by database name, to edit.
    pub fn column_mut(&mut self, name: &str) -> Option<&mut SqlColumn> {
        self.columns.iter_mut().find(|c| c.name == name)
    }

    /// Drop a column; `false` if there is none of that name.
    pub fn remove_column(&mut self, name: &str) -> bool {
        let n = self.columns.len();
        self.columns.retain(|c| c.name != name);
        self.columns.len() != n
    }

    /// Append `column` to the primary key (the next key column in order); the column, if
    /// reflected, becomes a non-nullable key column.
    pub fn add_primary_key(&mut self, column: String) {
        if let Some(col) = self.column_mut(&column) {
            col.primary_key = true;
            col.nullable = false;
        }
        self.primary_key.push(column);
    }

    /// Output names of the primary-key columns that are read, in key order.
    pub fn primary_key_output(&self) -> Vec<String> {
        self.primary_key.iter().filter_map(|k| self.column(k)).map(|c| c.output_name.clone()).collect()
    }
}
