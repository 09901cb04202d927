//! DDL: table definitions from the schema, new tables and columns, and the system tables.

use std::collections::HashMap;

use dlt_core::schema::{C_DLT_ID, C_DLT_PARENT_ID, C_DLT_ROOT_ID, Column, Schema};

use crate::Dialect;

/// A column definition for CREATE / ALTER: `"name" type [UNIQUE] [NOT NULL]`.
pub fn column_def(dialect: &dyn Dialect, c: &Column) -> String {
    let mut s = format!("{} {}", dialect.quote(&c.name), dialect.column_type(c));
    if c.is_unique() && dialect.unique_constraints() {
        s.push_str(" UNIQUE");
    }
    if !c.is_nullable() {
        s.push_str(" NOT NULL");
    }
    s
}

/// DDL bringing `tables` of `schema` up to date in `dataset`, given the columns that exist
/// (`existing`: table → column names): CREATE TABLE for new tables, ADD COLUMN for new columns.
/// Columns are never dropped or retyped; tables without typed columns are not created.
///
/// A NOT NULL column added to an existing table (which may hold rows) is added nullable, filled
/// where its value is known, then made NOT NULL. `_dlt_root_id` is known: a nested table gets
/// it when its root table turns to `merge`, and the rows already there take their root's
/// `_dlt_id` through the parent chain (parents first). Other columns fill nothing, so NOT NULL
/// holds only on a table without rows, as the destination's own error then says.
pub fn schema_update_sql(
    dialect: &dyn Dialect,
    dataset: &str,
    schema: &Schema,
    tables: &[String],
    existing: &HashMap<String, Vec<String>>,
) -> Vec<String> {
    let mut stmts = vec![];
    // (depth, statements) run after every ADD COLUMN, parents before children
    let mut fill: Vec<(usize, Vec<String>)> = vec![];
    for name in tables {
        let Some(t) = schema.tables.get(name) else { continue };
        if name == dlt_core::schema::VERSION_TABLE || name == dlt_core::schema::LOADS_TABLE || !t.has_complete_columns()
        {
            continue;
        }
        let qn = format!("{}.{}", dialect.quote(dataset), dialect.quote(name));
        match existing.get(name) {
            None => {
                let cols: Vec<String> = t.complete_columns().map(|c| column_def(dialect, c)).collect();
                stmts.push(format!("CREATE TABLE {qn} (\n{}\n);", cols.join(",\n")));
            }
            Some(have) => {
                let mut add: Vec<String> = vec![];
                for c in t.complete_columns().filter(|c| !have.contains(&c.name)) {
                    if c.is_nullable() {
                        add.push(format!("ADD COLUMN {}", column_def(dialect, c)));
                        continue;
                    }
                    let mut nullable = c.clone();
                    nullable.nullable = Some(true);
                    add.push(format!("ADD COLUMN {}", column_def(dialect, &nullable)));
                    let col = dialect.quote(&c.name);
                    let mut then = vec![];
                    let mut filled = false;
                    if c.name == C_DLT_ROOT_ID
                        && let Some(parent) = &t.parent
                    {
                        filled = true;
                        let parent_is_root = schema.tables.get(parent).is_some_and(|p| p.parent.is_none());
                        let from = if parent_is_root { C_DLT_ID } else { C_DLT_ROOT_ID };
                        then.push(format!(
                            "UPDATE {qn} SET {col} = p.{} FROM {}.{} AS p WHERE {qn}.{} = p.{} AND {qn}.{col} IS NULL;",
                            dialect.quote(from),
                            dialect.quote(dataset),
                            dialect.quote(parent),
                            dialect.quote(C_DLT_PARENT_ID),
                            dialect.quote(C_DLT_ID),
                        ));
                    }
                    if !filled || dialect.set_not_null_after_update() {
                        then.push(format!("ALTER TABLE {qn} ALTER COLUMN {col} SET NOT NULL;"));
                    }
                    fill.push((schema.table_chain_depth(name), then));
                }
                if add.is_empty() {
                    continue;
                }
                if dialect.combine_add_columns() {
                    stmts.push(format!("ALTER TABLE {qn}\n{};", add.join(",\n")));
                } else {
                    for a in add {
                        stmts.push(format!("ALTER TABLE {qn} {a};"));
                    }
                }
            }
        }
    }
    fill.sort_by_key(|(depth, _)| *depth);
    stmts.extend(fill.into_iter().flat_map(|(_, s)| s));
    stmts
}

/// `CREATE SCHEMA` for `dataset` and `CREATE TABLE IF NOT EXISTS` for dlt's `_dlt_loads` and
/// `_dlt_version`, from the schema's own definitions of them.
pub fn system_tables_sql(dialect: &dyn Dialect, dataset: &str) -> Vec<String> {
    let mut out = vec![format!("CREATE SCHEMA IF NOT EXISTS {};", dialect.quote(dataset))];
    for t in [dlt_core::schema::loads_table(), dlt_core::schema::version_table()] {
        let cols: Vec<String> = t.columns.values().map(|c| column_def(dialect, c)).collect();
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {}.{} ({});",
            dialect.quote(dataset),
            dialect.quote(&t.name),
            cols.join(", ")
        ));
    }
    out
}
