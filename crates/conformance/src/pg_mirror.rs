//! Mirror of Postgres schemas (dlt datasets) into a DuckDB database, so that the canonical
//! [`dump_connection`](crate::dump_connection) reads a Postgres destination exactly as it reads
//! a DuckDB one and the conformance cases' `expected.json` files apply unchanged.
//!
//! For each requested schema that exists in Postgres, the mirror creates the schema in DuckDB
//! and, for each of its BASE TABLEs (`information_schema.tables`), a DuckDB table whose columns
//! come from `information_schema.columns` in ordinal order, with the type of [`TYPE_MAP`] and the
//! column's NOT NULL flag. The rows are then copied **exactly**: every value is read from
//! Postgres as text (its own output function, in a session with `TimeZone = 'UTC'`,
//! `DateStyle = 'ISO, YMD'`, `extra_float_digits = 1`, i.e. shortest round-trip floats) and
//! cast by DuckDB to the column's type; `bytea` travels as hex (`encode(v, 'hex')` →
//! `from_hex`). dlt's system tables (`_dlt_loads`, `_dlt_version`, `_dlt_pipeline_state`) are
//! ordinary tables of the schema and are mirrored the same way.
//!
//! # Type mapping
//!
//! | Postgres (`information_schema.columns.data_type`)        | DuckDB                     |
//! |----------------------------------------------------------|----------------------------|
//! | `character varying` (`varchar`, `varchar(n)`), `text`    | `VARCHAR`                  |
//! | `bigint`                                                 | `BIGINT`                   |
//! | `integer`                                                | `INTEGER`                  |
//! | `smallint`                                               | `SMALLINT`                 |
//! | `double precision`                                       | `DOUBLE` (NaN, ±Infinity kept) |
//! | `real`                                                   | `FLOAT`                    |
//! | `boolean`                                                | `BOOLEAN`                  |
//! | `timestamp with time zone` (any precision)               | `TIMESTAMP WITH TIME ZONE` |
//! | `timestamp without time zone` (any precision)            | `TIMESTAMP`                |
//! | `date`                                                   | `DATE`                     |
//! | `time without time zone` (any precision)                 | `TIME`                     |
//! | `numeric(p,s)` with p ≤ 38                               | `DECIMAL(p,s)`             |
//! | `numeric(p,s)` with p > 38, unconstrained `numeric`      | `VARCHAR` (1)              |
//! | `jsonb`, `json`                                          | `JSON`                     |
//! | `bytea`                                                  | `BLOB`                     |
//! | `uuid`                                                   | `UUID`                     |
//! | anything else                                            | `VARCHAR` (2)              |
//!
//! (1) DuckDB's DECIMAL holds at most 38 digits, so wider numerics (dlt's `wei` is
//! `numeric(156,78)`) keep Postgres' exact text and dump as strings, not `{"$decimal": …}`.
//! (2) dlt-rs' Postgres destination creates no other types; an unexpected one keeps Postgres'
//! text rendering rather than failing the dump.
//!
//! Precision modifiers that DuckDB has no equivalent for (`varchar(n)`, `timestamp(3)`,
//! `time(3)`) are dropped: the values are whatever Postgres stored (e.g. rounded to
//! milliseconds), the DuckDB type is the unconstrained one.

use crate::text_copy::{MirrorColumn, create_and_fill, ident};
use anyhow::Context as _;
use duckdb::Connection;
use std::path::Path;

/// Postgres `information_schema.columns.data_type` → DuckDB type (see the module docs;
/// `numeric` is resolved by [`duckdb_type`] from the column's precision and scale).
pub const TYPE_MAP: &[(&str, &str)] = &[
    ("character varying", "VARCHAR"),
    ("text", "VARCHAR"),
    ("bigint", "BIGINT"),
    ("integer", "INTEGER"),
    ("smallint", "SMALLINT"),
    ("double precision", "DOUBLE"),
    ("real", "FLOAT"),
    ("boolean", "BOOLEAN"),
    ("timestamp with time zone", "TIMESTAMP WITH TIME ZONE"),
    ("timestamp without time zone", "TIMESTAMP"),
    ("date", "DATE"),
    ("time without time zone", "TIME"),
    ("numeric", "DECIMAL(p,s)"),
    ("jsonb", "JSON"),
    ("json", "JSON"),
    ("bytea", "BLOB"),
    ("uuid", "UUID"),
];

/// The widest DECIMAL DuckDB has.
pub const MAX_DECIMAL_PRECISION: i32 = 38;

/// A column of a Postgres table, as `information_schema.columns` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PgColumn {
    /// Column name.
    pub name: String,
    /// `data_type` (e.g. `character varying`, `numeric`, `timestamp with time zone`).
    pub data_type: String,
    /// `numeric_precision` (numeric columns).
    pub numeric_precision: Option<i32>,
    /// `numeric_scale` (numeric columns).
    pub numeric_scale: Option<i32>,
    /// `is_nullable = 'YES'`.
    pub nullable: bool,
}

/// The DuckDB type a Postgres column is mirrored as ([`TYPE_MAP`]).
pub fn duckdb_type(c: &PgColumn) -> String {
    if c.data_type == "numeric" {
        return match (c.numeric_precision, c.numeric_scale) {
            (Some(p), s) if (1..=MAX_DECIMAL_PRECISION).contains(&p) => format!("DECIMAL({p},{})", s.unwrap_or(0)),
            _ => "VARCHAR".to_string(),
        };
    }
    TYPE_MAP.iter().find(|(pg, _)| *pg == c.data_type).map(|(_, d)| d.to_string()).unwrap_or_else(|| "VARCHAR".into())
}

/// Postgres expression reading column `ident` as text.
fn pg_select(c: &PgColumn, ident: &str) -> String {
    match c.data_type.as_str() {
        "bytea" => format!("encode({ident}, 'hex')"),
        _ => format!("{ident}::text"),
    }
}

/// DuckDB expression turning the staged text `ident` into the column's value.
fn duck_cast(c: &PgColumn, ident: &str) -> String {
    let ty = duckdb_type(c);
    match (c.data_type.as_str(), ty.as_str()) {
        ("bytea", _) => format!("from_hex({ident})"),
        (_, "VARCHAR") => ident.to_string(),
        _ => format!("CAST({ident} AS {ty})"),
    }
}

/// Makes the Postgres session render values as the mirror expects (UTC ISO timestamps,
/// shortest round-trip floats).
pub fn prepare_session(pg: &mut postgres::Client) -> anyhow::Result<()> {
    pg.batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 1")
        .context("setting up the Postgres session for mirroring")
}

/// Schemas of `wanted` that exist in Postgres.
pub fn existing_schemas(pg: &mut postgres::Client, wanted: &[String]) -> anyhow::Result<Vec<String>> {
    let rows =
        pg.query("SELECT nspname::text FROM pg_catalog.pg_namespace", &[]).context("listing Postgres schemas")?;
    let have: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut out: Vec<String> = wanted.iter().filter(|s| have.contains(s)).cloned().collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// BASE TABLEs of a Postgres schema, sorted by name.
pub fn base_tables(pg: &mut postgres::Client, schema: &str) -> anyhow::Result<Vec<String>> {
    let rows = pg
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name",
            &[&schema],
        )
        .with_context(|| format!("listing the tables of Postgres schema {schema}"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Columns of a Postgres table in ordinal order.
pub fn columns(pg: &mut postgres::Client, schema: &str, table: &str) -> anyhow::Result<Vec<PgColumn>> {
    let rows = pg
        .query(
            "SELECT column_name::text, data_type::text, numeric_precision::int4, numeric_scale::int4, is_nullable::text \
             FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            &[&schema, &table],
        )
        .with_context(|| format!("reading the columns of {schema}.{table}"))?;
    Ok(rows
        .iter()
        .map(|r| PgColumn {
            name: r.get(0),
            data_type: r.get(1),
            numeric_precision: r.get(2),
            numeric_scale: r.get(3),
            nullable: r.get::<_, String>(4) == "YES",
        })
        .collect())
}

/// Mirrors one Postgres table into DuckDB (`schema` must exist there).
pub fn mirror_table(pg: &mut postgres::Client, duck: &Connection, schema: &str, table: &str) -> anyhow::Result<()> {
    let cols = columns(pg, schema, table)?;
    let rows = if cols.is_empty() {
        vec![]
    } else {
        let sel: Vec<String> = cols.iter().map(|c| pg_select(c, &ident(&c.name))).collect();
        let sql = format!("SELECT {} FROM {}.{}", sel.join(", "), ident(schema), ident(table));
        pg.query(&sql, &[]).with_context(|| format!("reading Postgres table {schema}.{table}"))?
    };
    let mirror: Vec<MirrorColumn<'_>> = cols
        .iter()
        .map(|c| MirrorColumn {
            name: c.name.clone(),
            duck_type: duckdb_type(c),
            not_null: !c.nullable,
            cast: Box::new(move |staged: &str| duck_cast(c, staged)),
        })
        .collect();
    let texts = rows.iter().map(|r| (0..cols.len()).map(|i| r.get::<_, Option<String>>(i)).collect());
    create_and_fill(duck, schema, table, &mirror, texts)
}

/// Mirrors the Postgres schemas named in `datasets` (those that exist) into `duck`.
pub fn mirror(pg: &mut postgres::Client, duck: &Connection, datasets: &[String]) -> anyhow::Result<()> {
    prepare_session(pg)?;
    for schema in existing_schemas(pg, datasets)? {
        duck.execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {}", ident(&schema)))?;
        for table in base_tables(pg, &schema)? {
            mirror_table(pg, duck, &schema, &table)?;
        }
    }
    Ok(())
}

/// Mirrors `datasets` into a fresh DuckDB database (the file `mirror_file`, replaced if it
/// exists, or an in-memory one) and dumps them with [`dump_connection`](crate::dump_connection).
pub fn dump_postgres(
    pg: &mut postgres::Client,
    datasets: &[String],
    time_token_columns: Option<&[String]>,
    mirror_file: Option<&Path>,
) -> anyhow::Result<serde_json::Value> {
    let duck = match mirror_file {
        Some(f) => {
            if f.exists() {
                std::fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
            }
            let wal = f.with_extension("duckdb.wal");
            if wal.exists() {
                let _ = std::fs::remove_file(wal);
            }
            Connection::open(f).with_context(|| format!("creating {}", f.display()))?
        }
        None => Connection::open_in_memory()?,
    };
    mirror(pg, &duck, datasets)?;
    crate::dump_connection(&duck, datasets, time_token_columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(t: &str, p: Option<i32>, s: Option<i32>) -> PgColumn {
        PgColumn { name: "c".into(), data_type: t.into(), numeric_precision: p, numeric_scale: s, nullable: true }
    }

    #[test]
    fn type_mapping() {
        assert_eq!(duckdb_type(&col("character varying", None, None)), "VARCHAR");
        assert_eq!(duckdb_type(&col("timestamp with time zone", None, None)), "TIMESTAMP WITH TIME ZONE");
        assert_eq!(duckdb_type(&col("numeric", Some(38), Some(9))), "DECIMAL(38,9)");
        assert_eq!(duckdb_type(&col("numeric", Some(156), Some(78))), "VARCHAR");
        assert_eq!(duckdb_type(&col("numeric", None, None)), "VARCHAR");
        assert_eq!(duckdb_type(&col("jsonb", None, None)), "JSON");
        assert_eq!(duckdb_type(&col("interval", None, None)), "VARCHAR");
        assert_eq!(duck_cast(&col("bytea", None, None), "c0"), "from_hex(c0)");
        assert_eq!(duck_cast(&col("text", None, None), "c0"), "c0");
    }
}
