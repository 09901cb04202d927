//! The step the database mirrors share: rows read from another database as text are staged in
//! an all-`VARCHAR` DuckDB table and cast into the mirrored table, in the order they were read.

use anyhow::Context as _;
use duckdb::Connection;

/// Name of the all-VARCHAR table (in DuckDB's `main` schema) rows are staged in.
const STAGE: &str = "__dlt_mirror_stage";

/// A DuckDB identifier.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// One mirrored column: its name, its DuckDB type, NOT NULL, and the DuckDB expression that
/// turns the staged text column `c{i}` into its value (`cast("c3")`).
pub struct MirrorColumn<'a> {
    /// Column name in DuckDB.
    pub name: String,
    /// Its DuckDB type.
    pub duck_type: String,
    /// Whether it is NOT NULL.
    pub not_null: bool,
    /// The value's expression over the staged text column's name.
    pub cast: Box<dyn Fn(&str) -> String + 'a>,
}

/// Creates `schema.table` in DuckDB with `cols` and fills it with `rows` (one text or NULL per
/// column), cast column by column, in the order given.
pub fn create_and_fill(
    duck: &Connection,
    schema: &str,
    table: &str,
    cols: &[MirrorColumn<'_>],
    rows: impl IntoIterator<Item = Vec<Option<String>>>,
) -> anyhow::Result<()> {
    let target = format!("{}.{}", ident(schema), ident(table));
    let defs: Vec<String> = cols
        .iter()
        .map(|c| format!("{} {}{}", ident(&c.name), c.duck_type, if c.not_null { " NOT NULL" } else { "" }))
        .collect();
    duck.execute_batch(&format!("CREATE TABLE {target} ({})", defs.join(", ")))
        .with_context(|| format!("creating the mirror of {schema}.{table}"))?;
    if cols.is_empty() {
        return Ok(());
    }
    let stage_cols: Vec<String> = (0..cols.len()).map(|i| format!("c{i} VARCHAR")).collect();
    duck.execute_batch(&format!(
        "DROP TABLE IF EXISTS main.{STAGE}; CREATE TABLE main.{STAGE} ({})",
        stage_cols.join(", ")
    ))?;
    let mut any = false;
    {
        let mut app = duck.appender_to_db(STAGE, "main")?;
        for r in rows {
            any = true;
            app.append_row(duckdb::appender_params_from_iter(r))?;
        }
        app.flush()?;
    }
    if any {
        let casts: Vec<String> = cols.iter().enumerate().map(|(i, c)| (c.cast)(&format!("c{i}"))).collect();
        let names: Vec<String> = cols.iter().map(|c| ident(&c.name)).collect();
        // rowid order = the order read
        duck.execute_batch(&format!(
            "INSERT INTO {target} ({}) SELECT {} FROM main.{STAGE} ORDER BY rowid",
            names.join(", "),
            casts.join(", ")
        ))
        .with_context(|| format!("copying the rows of {schema}.{table} into DuckDB"))?;
    }
    duck.execute_batch(&format!("DROP TABLE main.{STAGE}"))?;
    Ok(())
}
