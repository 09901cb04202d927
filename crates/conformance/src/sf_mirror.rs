//! Mirror of Snowflake schemas (dlt datasets on a fakesnow server) into a DuckDB database, so
//! that the canonical [`dump_connection`](crate::dump_connection) reads a Snowflake destination
//! as it reads a DuckDB one and the cases' `expected.json` files apply unchanged.
//!
//! The rows are read by **Snowflake's own Python connector** (installed beside fakesnow), an
//! independent client of the server: one process per dump lists the BASE TABLEs and columns of
//! each dataset's schema in `information_schema` and fetches every table, rendering each value
//! as exact text (`Decimal` as plain digits, floats by `repr`, timestamps as ISO text in UTC,
//! binary as hex, VARIANT as the JSON text the server returns). The mirror creates each table in
//! DuckDB with the type of [`TYPE_MAP`] and the column's NOT NULL flag, and casts the text in.
//!
//! # Names
//!
//! Snowflake folds unquoted and dlt-rs' quoted identifiers to UPPER case (dlt's
//! `casefold_identifier`). The mirror folds a schema, table or column name back to lower case
//! when it has no lower-case letter, which inverts the fold for every name dlt's `snake_case`
//! naming produces; a name that has lower-case letters was created case-sensitively and is kept.
//!
//! # Type mapping
//!
//! | fakesnow `information_schema.columns.data_type` | DuckDB                      |
//! |-------------------------------------------------|-----------------------------|
//! | `TEXT`                                          | `VARCHAR`                   |
//! | `NUMBER` (19, 0): dlt's `bigint`                | `BIGINT`                    |
//! | `NUMBER` (p, s), other                          | `DECIMAL(p,s)`              |
//! | `FLOAT`                                         | `DOUBLE`                    |
//! | `BOOLEAN`                                       | `BOOLEAN`                   |
//! | `TIMESTAMP_TZ` (fakesnow also reports `TIMESTAMP_LTZ` so) | `TIMESTAMP WITH TIME ZONE` |
//! | `TIMESTAMP_NTZ`                                 | `TIMESTAMP`                 |
//! | `DATE`                                          | `DATE`                      |
//! | `TIME`                                          | `TIME`                      |
//! | `BINARY`                                        | `BLOB`                      |
//! | `VARIANT`, `OBJECT`, `ARRAY`                    | `JSON`                      |
//! | anything else                                   | `VARCHAR`                   |
//!
//! fakesnow's `information_schema` has no timestamp precision, so every timestamp mirrors as
//! DuckDB's microsecond type.
//!
//! # A fakesnow gap the reader works around
//!
//! fakesnow 0.12 sends a NULL timestamp as the epoch in its Arrow results. The reader therefore
//! also selects `col IS NULL` for every timestamp column (evaluated by the server's SQL engine,
//! which has the NULL) and writes NULL where it is true. Nothing of dlt-rs' SQL is changed.

use crate::text_copy::{MirrorColumn, create_and_fill, ident};
use anyhow::{Context as _, bail};
use duckdb::Connection;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// fakesnow `data_type` → DuckDB type (`NUMBER` is resolved by [`duckdb_type`]).
pub const TYPE_MAP: &[(&str, &str)] = &[
    ("TEXT", "VARCHAR"),
    ("FLOAT", "DOUBLE"),
    ("BOOLEAN", "BOOLEAN"),
    ("TIMESTAMP_TZ", "TIMESTAMP WITH TIME ZONE"),
    ("TIMESTAMP_LTZ", "TIMESTAMP WITH TIME ZONE"),
    ("TIMESTAMP_NTZ", "TIMESTAMP"),
    ("DATE", "DATE"),
    ("TIME", "TIME"),
    ("BINARY", "BLOB"),
    ("VARIANT", "JSON"),
    ("OBJECT", "JSON"),
    ("ARRAY", "JSON"),
];

/// A column of a Snowflake table, as `information_schema.columns` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SfColumn {
    /// Column name as stored (usually UPPER).
    pub name: String,
    /// `data_type` (e.g. `TEXT`, `NUMBER`, `TIMESTAMP_TZ`).
    pub data_type: String,
    /// `numeric_precision` (NUMBER columns).
    pub numeric_precision: Option<i64>,
    /// `numeric_scale` (NUMBER columns).
    pub numeric_scale: Option<i64>,
    /// `is_nullable = 'YES'`.
    pub nullable: bool,
}

/// The DuckDB type a Snowflake column is mirrored as ([`TYPE_MAP`]).
pub fn duckdb_type(c: &SfColumn) -> String {
    if c.data_type == "NUMBER" {
        return match (c.numeric_precision, c.numeric_scale.unwrap_or(0)) {
            (Some(19), 0) => "BIGINT".into(),
            (Some(p), s) if (1..=38).contains(&p) => format!("DECIMAL({p},{s})"),
            _ => "DECIMAL(38,0)".into(),
        };
    }
    TYPE_MAP.iter().find(|(sf, _)| *sf == c.data_type).map(|(_, d)| d.to_string()).unwrap_or_else(|| "VARCHAR".into())
}

/// The name dlt gave an identifier Snowflake folded to UPPER case (see the module docs).
pub fn unfold(name: &str) -> String {
    if name.chars().any(|c| c.is_lowercase()) { name.to_string() } else { name.to_lowercase() }
}

/// The reader: Snowflake's Python connector, run once per dump. Arguments: port, database, a
/// JSON list of schema names as stored. Prints `{schema: [{"name", "columns": [[name, type,
/// precision, scale, nullable]], "rows": [[text or null]]}]}`.
const READER: &str = r#"
import datetime, decimal, json, sys
import snowflake.connector
port, database, schemas = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
con = snowflake.connector.connect(user="reader", password="x", account="testacct", database=database,
                                  host="127.0.0.1", port=port, protocol="http")
cur = con.cursor()
def q(name):
    return '"' + name.replace('"', '""') + '"'
def text(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, decimal.Decimal):
        return format(v, "f")
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
            return v.isoformat(sep=" ") + "+00:00"
        return v.isoformat(sep=" ")
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)
out = {}
cur.execute("SELECT schema_name FROM information_schema.schemata")
present = {r[0] for r in cur.fetchall()}
for schema in schemas:
    if schema not in present:
        continue
    cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_type = 'BASE TABLE' ORDER BY table_name", (schema,))
    tables = []
    for (table,) in cur.fetchall():
        cur.execute("SELECT column_name, data_type, numeric_precision, numeric_scale, is_nullable "
                    "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                    "ORDER BY ordinal_position", (schema, table))
        cols = [[c[0], c[1], c[2], c[3], c[4] == "YES"] for c in cur.fetchall()]
        rows = []
        if cols:
            ts = [i for i, c in enumerate(cols) if c[1].startswith("TIMESTAMP")]
            sel = [q(c[0]) for c in cols] + [q(cols[i][0]) + " IS NULL" for i in ts]
            cur.execute("SELECT " + ", ".join(sel) + " FROM " + q(schema) + "." + q(table))
            for r in cur.fetchall():
                vals = list(r[:len(cols)])
                for k, i in enumerate(ts):
                    if r[len(cols) + k]:
                        vals[i] = None
                rows.append([text(v) for v in vals])
        tables.append({"name": table, "columns": cols, "rows": rows})
    out[schema] = tables
print(json.dumps(out))
"#;

/// Where the reader runs: the Python beside fakesnow and the server's port.
#[derive(Debug, Clone)]
pub struct Reader {
    /// The Python interpreter that has `snowflake.connector`.
    pub python: std::path::PathBuf,
    /// The fakesnow server's port on 127.0.0.1.
    pub port: u16,
}

impl Reader {
    /// Read `schemas` (names as stored) of `database`: see [`READER`].
    fn read(&self, database: &str, schemas: &[String]) -> anyhow::Result<Value> {
        let out = Command::new(&self.python)
            .args(["-c", READER, &self.port.to_string(), database, &serde_json::to_string(schemas)?])
            .output()
            .with_context(|| format!("cannot run {}", self.python.display()))?;
        if !out.status.success() {
            bail!("the Snowflake Python connector failed reading {database}: {}", String::from_utf8_lossy(&out.stderr));
        }
        serde_json::from_slice(&out.stdout).context("the reader's output is not JSON")
    }
}

/// DuckDB expression turning the staged text `ident` into the column's value.
fn duck_cast(c: &SfColumn, ident: &str) -> String {
    match (c.data_type.as_str(), duckdb_type(c).as_str()) {
        ("BINARY", _) => format!("from_hex({ident})"),
        (_, "VARCHAR") => ident.to_string(),
        (_, ty) => format!("CAST({ident} AS {ty})"),
    }
}

fn mirror_table(duck: &Connection, schema: &str, t: &Value) -> anyhow::Result<()> {
    let table = unfold(t["name"].as_str().unwrap_or_default());
    let cols: Vec<SfColumn> = t["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| SfColumn {
            name: c[0].as_str().unwrap_or_default().to_string(),
            data_type: c[1].as_str().unwrap_or_default().to_string(),
            numeric_precision: c[2].as_i64(),
            numeric_scale: c[3].as_i64(),
            nullable: c[4].as_bool().unwrap_or(true),
        })
        .collect();
    let mirror: Vec<MirrorColumn<'_>> = cols
        .iter()
        .map(|c| MirrorColumn {
            name: unfold(&c.name),
            duck_type: duckdb_type(c),
            not_null: !c.nullable,
            cast: Box::new(move |staged: &str| duck_cast(c, staged)),
        })
        .collect();
    let rows = t["rows"].as_array().cloned().unwrap_or_default();
    let texts =
        rows.iter().map(|r| (0..cols.len()).map(|i| r.get(i).and_then(Value::as_str).map(str::to_string)).collect());
    create_and_fill(duck, schema, &table, &mirror, texts)
}

/// Mirrors the datasets (dlt names; looked up UPPER-folded) of `database` into `duck`.
pub fn mirror(reader: &Reader, database: &str, duck: &Connection, datasets: &[String]) -> anyhow::Result<()> {
    let stored: Vec<String> = datasets.iter().map(|d| d.to_uppercase()).collect();
    let read = reader.read(database, &stored)?;
    for (schema, tables) in read.as_object().into_iter().flatten() {
        let schema = unfold(schema);
        duck.execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {}", ident(&schema)))?;
        for t in tables.as_array().into_iter().flatten() {
            mirror_table(duck, &schema, t)?;
        }
    }
    Ok(())
}

/// Mirrors `datasets` into a fresh DuckDB database (the file `mirror_file`, replaced if it
/// exists) and dumps them with [`dump_connection`](crate::dump_connection).
pub fn dump_snowflake(
    reader: &Reader,
    database: &str,
    datasets: &[String],
    time_token_columns: Option<&[String]>,
    mirror_file: &Path,
) -> anyhow::Result<Value> {
    if mirror_file.exists() {
        std::fs::remove_file(mirror_file).with_context(|| format!("removing {}", mirror_file.display()))?;
    }
    let duck = Connection::open(mirror_file).with_context(|| format!("creating {}", mirror_file.display()))?;
    mirror(reader, database, &duck, datasets)?;
    crate::dump_connection(&duck, datasets, time_token_columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(t: &str, p: Option<i64>, s: Option<i64>) -> SfColumn {
        SfColumn { name: "C".into(), data_type: t.into(), numeric_precision: p, numeric_scale: s, nullable: true }
    }

    #[test]
    fn type_mapping_and_names() {
        assert_eq!(duckdb_type(&col("NUMBER", Some(19), Some(0))), "BIGINT");
        assert_eq!(duckdb_type(&col("NUMBER", Some(38), Some(9))), "DECIMAL(38,9)");
        assert_eq!(duckdb_type(&col("TIMESTAMP_NTZ", None, None)), "TIMESTAMP");
        assert_eq!(duckdb_type(&col("VARIANT", None, None)), "JSON");
        assert_eq!(duckdb_type(&col("GEOGRAPHY", None, None)), "VARCHAR");
        assert_eq!(duck_cast(&col("BINARY", None, None), "c0"), "from_hex(c0)");
        assert_eq!(unfold("_DLT_LOADS"), "_dlt_loads");
        assert_eq!(unfold("MixedCase"), "MixedCase");
    }
}
