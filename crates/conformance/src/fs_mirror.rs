//! Mirror of dlt datasets written by the `filesystem` destination (a local bucket folder) into
//! a DuckDB database, so that the canonical [`dump_connection`](crate::dump_connection) reads a
//! filesystem dataset as it reads a DuckDB one and the cases' `expected.json` files apply.
//!
//! The data rows come from the files: DuckDB's `read_parquet` over the visible parquet files of
//! each table folder (`<bucket>/<dataset>/<table>/*.parquet`, dlt's default layout), in file-name
//! order (= load id order). What a parquet file cannot say — NOT NULL, the `json` type (a string
//! in parquet), integer precision hints — comes from the dataset's stored dlt schema (the newest
//! `_dlt_version` file of every schema name), as a DuckDB destination would create the tables:
//!
//! - **Tables**: the tables of the newest stored schemas that have at least one complete (typed)
//!   column, with those columns (`CREATE TABLE` as dlt's DuckDB destination would issue it; a
//!   table without files mirrors as an empty table, as DuckDB creates the table before loading).
//!   Column order follows the schema versions stored in the dataset, oldest first: a table gets
//!   the columns of the first version that has it, later versions append their new columns — the
//!   order a database reaches with `ALTER TABLE … ADD COLUMN` (it differs from the newest
//!   schema's order when a column was added by a load into another dataset).
//! - **Types**: every column of every file is checked against the type the filesystem destination
//!   writes for the column's dlt type ([`parquet_type`]: `bigint` → `BIGINT`, `json`/`text` →
//!   `VARCHAR`, `timestamp` → `TIMESTAMP WITH TIME ZONE`, `decimal(p,s)` → `DECIMAL(p,s)`, …); a
//!   column that is not in the stored schema, or has another type, fails the mirror. The values
//!   are then cast to dlt's DuckDB type of the column ([`duckdb_type`]: `json` → `JSON`,
//!   `bigint` with precision 8 → `TINYINT`, …).
//! - **Visibility**: files of packages that are not committed (a `_dlt_journal` entry without a
//!   `_dlt_loads` file) and files a committed replace has yet to delete are left out, as a
//!   journal-aware reader does (DuckDB rolls a failed package back).
//!
//! dlt's system tables are mapped to the DuckDB shape (columns of dlt's table definitions):
//!
//! - `_dlt_loads`: one row per `_dlt_loads/<schema>__<load_id>.jsonl` file (`load_id`,
//!   `schema_name`, `status`, `inserted_at`, `schema_version_hash` from the document).
//! - `_dlt_version`: one row per `_dlt_version/<schema>__<time>__<hash>.jsonl` file.
//! - `_dlt_pipeline_state`: one row per `_dlt_pipeline_state/<pipeline>__<load_id>__<hash>.jsonl`
//!   file whose load is committed. The file has every column but `_dlt_id` (dlt does not store it
//!   on a filesystem); the mirror fills it with the file name. The dump only counts these rows.
//!
//! Where filesystem semantics differ from a database's (no NOT NULL enforcement, `merge`), the
//! cases are left out of `tests/conformance/must_pass_filesystem.txt` (see its comment).

use anyhow::{Context as _, bail};
use dlt::dlt_core::schema::{
    Column, DataType, LOADS_TABLE, STATE_TABLE, Schema, Table, VERSION_TABLE, loads_table, version_table,
};
use duckdb::Connection;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// The file marking an initialized dataset folder.
const INIT_FILE: &str = "init";
/// dlt-rs' commit journals.
const JOURNAL_DIR: &str = "_dlt_journal";

/// dlt's DuckDB type of a column (dlt's `duckdb` type mapper: precision picks the integer width
/// and, for naive timestamps, the unit; timezone-aware timestamps ignore precision).
pub fn duckdb_type(c: &Column) -> String {
    // the DuckDB destination's own mapping: the mirror must type columns exactly as it does
    dlt::destinations::duckdb_impl::column_type(c)
}

/// The type DuckDB's `read_parquet` reports for a column the filesystem destination wrote (its
/// capabilities' type map: `string`, `int64`, `double`, `bool`, `timestamp[us, tz=UTC]`,
/// `date32`, `time64[us]`, `binary`, `decimal128(p, s)`).
pub fn parquet_type(c: &Column) -> String {
    match c.data_type.unwrap_or(DataType::Text) {
        DataType::Text | DataType::Json => "VARCHAR".into(),
        DataType::Double => "DOUBLE".into(),
        DataType::Bool => "BOOLEAN".into(),
        DataType::Bigint => "BIGINT".into(),
        DataType::Timestamp => {
            if c.timezone.unwrap_or(true) {
                "TIMESTAMP WITH TIME ZONE".into()
            } else {
                "TIMESTAMP".into()
            }
        }
        DataType::Date => "DATE".into(),
        DataType::Time => "TIME".into(),
        DataType::Binary => "BLOB".into(),
        DataType::Decimal => {
            format!("DECIMAL({},{})", c.precision.unwrap_or(38).min(38), c.scale.unwrap_or(9))
        }
        DataType::Wei => "DECIMAL(38,0)".into(),
    }
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// File names (not paths) in `dir`, sorted; empty when the folder does not exist.
fn file_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    if !dir.is_dir() {
        return Ok(vec![]);
    }
    let mut out = vec![];
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        if e.file_type()?.is_file()
            && let Some(n) = e.file_name().to_str()
        {
            out.push(n.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// `a__b__c.jsonl` → the `n` parts (split from the right; the first part may contain `__`).
fn name_parts(name: &str, n: usize) -> Option<Vec<String>> {
    let stem = name.strip_suffix(".jsonl")?;
    let mut parts: Vec<String> = stem.rsplitn(n, "__").map(str::to_string).collect();
    if parts.len() != n {
        return None;
    }
    parts.reverse();
    Some(parts)
}

fn read_doc(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(text.trim()).with_context(|| format!("parsing {}", path.display()))
}

/// What the mirror reads from one dataset folder.
struct DatasetFiles {
    dir: PathBuf,
    /// `_dlt_loads` documents, by file name.
    loads: Vec<(String, Value)>,
    /// Load ids with a `_dlt_loads` file.
    committed: HashSet<String>,
    /// Dataset-relative paths hidden by journals.
    hidden: HashSet<String>,
    /// `_dlt_version` documents, by file name.
    versions: Vec<(String, Value)>,
}

impl DatasetFiles {
    fn read(dir: &Path) -> anyhow::Result<DatasetFiles> {
        let mut loads = vec![];
        let mut committed = HashSet::new();
        for n in file_names(&dir.join(LOADS_TABLE))? {
            let parts = name_parts(&n, 2).with_context(|| format!("unexpected file {LOADS_TABLE}/{n}"))?;
            let doc = read_doc(&dir.join(LOADS_TABLE).join(&n))?;
            committed.insert(parts[1].clone());
            loads.push((n, doc));
        }
        let mut hidden = HashSet::new();
        for n in file_names(&dir.join(JOURNAL_DIR))? {
            let j = read_doc(&dir.join(JOURNAL_DIR).join(&n))?;
            let load_id = j["load_id"].as_str().unwrap_or_default();
            let key = if committed.contains(load_id) { "deletes" } else { "adds" };
            for f in j[key].as_array().into_iter().flatten() {
                if let Some(f) = f.as_str() {
                    hidden.insert(f.to_string());
                }
            }
        }
        let mut versions = vec![];
        for n in file_names(&dir.join(VERSION_TABLE))? {
            name_parts(&n, 3).with_context(|| format!("unexpected file {VERSION_TABLE}/{n}"))?;
            versions.push((n.clone(), read_doc(&dir.join(VERSION_TABLE).join(&n))?));
        }
        Ok(DatasetFiles { dir: dir.to_path_buf(), loads, committed, hidden, versions })
    }

    /// The stored schemas, oldest first (by the time in the file name, as dlt orders them).
    fn history(&self) -> anyhow::Result<Vec<Schema>> {
        let mut all: Vec<(f64, &str, &Value)> = vec![];
        for (n, doc) in &self.versions {
            let parts = name_parts(n, 3).expect("checked");
            let t: f64 = parts[1].parse().with_context(|| format!("time part of {VERSION_TABLE}/{n}"))?;
            all.push((t, n, doc));
        }
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        all.into_iter()
            .map(|(_, n, doc)| {
                let s = doc["schema"].as_str().with_context(|| format!("{VERSION_TABLE}/{n} has no schema"))?;
                Schema::from_str_any(s).map_err(|e| anyhow::anyhow!("{VERSION_TABLE}/{n}: {e}"))
            })
            .collect()
    }

    /// Visible parquet files of a table folder (absolute paths, file-name order).
    fn table_files(&self, table: &str) -> anyhow::Result<Vec<PathBuf>> {
        let mut out = vec![];
        for n in file_names(&self.dir.join(table))? {
            if self.hidden.contains(&format!("{table}/{n}")) {
                continue;
            }
            if !n.ends_with(".parquet") {
                bail!("table {table}: file {n} is not parquet (the conformance runner writes parquet only)");
            }
            out.push(self.dir.join(table).join(n));
        }
        Ok(out)
    }
}

/// Creates the mirror of table `t` with its complete columns, ordered as `order` lists them
/// (columns it does not list follow in schema order).
fn create_table(duck: &Connection, schema: &str, t: &Table, order: &[String]) -> anyhow::Result<Vec<Column>> {
    let mut cols: Vec<Column> =
        order.iter().filter_map(|n| t.columns.get(n)).filter(|c| c.is_complete()).cloned().collect();
    cols.extend(t.complete_columns().filter(|c| !order.contains(&c.name)).cloned());
    let defs: Vec<String> = cols
        .iter()
        .map(|c| format!("{} {}{}", ident(&c.name), duckdb_type(c), if c.is_nullable() { "" } else { " NOT NULL" }))
        .collect();
    duck.execute_batch(&format!("CREATE TABLE {}.{} ({})", ident(schema), ident(&t.name), defs.join(", ")))
        .with_context(|| format!("creating the mirror of {schema}.{}", t.name))?;
    Ok(cols)
}

/// Columns (name, DuckDB type) of one parquet file as `read_parquet` sees it.
fn parquet_columns(duck: &Connection, file: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let sql = format!("DESCRIBE SELECT * FROM read_parquet({})", lit(&file.to_string_lossy()));
    let mut stmt = duck.prepare(&sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Mirrors one data table (or `_dlt_pipeline_state`'s data files, never present) from its files.
fn mirror_data_table(
    duck: &Connection,
    ds: &str,
    files: &DatasetFiles,
    t: &Table,
    order: &[String],
) -> anyhow::Result<()> {
    let cols = create_table(duck, ds, t, order)?;
    let paths = files.table_files(&t.name)?;
    if paths.is_empty() {
        return Ok(());
    }
    let mut in_files: HashSet<String> = HashSet::new();
    for p in &paths {
        for (name, ty) in parquet_columns(duck, p)? {
            let Some(c) = cols.iter().find(|c| c.name == name) else {
                bail!("{}: column {name} ({ty}) is not a column of table {} in the stored schema", p.display(), t.name);
            };
            let want = parquet_type(c);
            if ty != want {
                bail!(
                    "{}: column {name} is {ty}, but the filesystem destination writes dlt type {} as {want}",
                    p.display(),
                    c.data_type.map(|d| d.as_str()).unwrap_or("?")
                );
            }
            in_files.insert(name);
        }
    }
    let list: Vec<String> = paths.iter().map(|p| lit(&p.to_string_lossy())).collect();
    let names: Vec<String> = cols.iter().map(|c| ident(&c.name)).collect();
    let sel: Vec<String> = cols
        .iter()
        .map(|c| {
            if in_files.contains(&c.name) {
                format!("CAST({} AS {})", ident(&c.name), duckdb_type(c))
            } else {
                "NULL".to_string()
            }
        })
        .collect();
    duck.execute_batch(&format!(
        "INSERT INTO {}.{} ({}) SELECT {} FROM read_parquet([{}], union_by_name = true)",
        ident(ds),
        ident(&t.name),
        names.join(", "),
        sel.join(", "),
        list.join(", ")
    ))
    .with_context(|| format!("copying the rows of {ds}.{} from {} parquet file(s)", t.name, paths.len()))?;
    Ok(())
}

/// Inserts JSON documents into a created table, a value per column by name (timestamps from
/// ISO text; missing values NULL, `fill` gives values the documents lack).
fn insert_docs(
    duck: &Connection,
    ds: &str,
    table: &str,
    cols: &[Column],
    docs: &[(String, Value)],
    fill: impl Fn(&str, &str) -> Option<String>,
) -> anyhow::Result<()> {
    if docs.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = cols.iter().map(|c| ident(&c.name)).collect();
    let params: Vec<String> = cols.iter().map(|c| format!("CAST(? AS {})", duckdb_type(c))).collect();
    let sql =
        format!("INSERT INTO {}.{} ({}) VALUES ({})", ident(ds), ident(table), names.join(", "), params.join(", "));
    let mut stmt = duck.prepare(&sql)?;
    for (file, doc) in docs {
        let vals: Vec<Option<String>> = cols
            .iter()
            .map(|c| match doc.get(&c.name) {
                None | Some(Value::Null) => fill(&c.name, file),
                Some(Value::String(s)) => Some(s.clone()),
                Some(v) => Some(v.to_string()),
            })
            .collect();
        stmt.execute(duckdb::params_from_iter(vals))
            .with_context(|| format!("mirroring {table}/{file} into DuckDB"))?;
    }
    Ok(())
}

/// Mirrors one dataset folder (with an `init` file) into the DuckDB schema `ds`.
fn mirror_dataset(duck: &Connection, ds: &str, dir: &Path) -> anyhow::Result<()> {
    let files = DatasetFiles::read(dir)?;
    duck.execute_batch(&format!("CREATE SCHEMA {}", ident(ds)))?;
    // dlt's own tables, in their fixed shape
    let lt = loads_table();
    let cols = create_table(duck, ds, &lt, &[])?;
    insert_docs(duck, ds, LOADS_TABLE, &cols, &files.loads, |_, _| None)?;
    let vt = version_table();
    let cols = create_table(duck, ds, &vt, &[])?;
    insert_docs(duck, ds, VERSION_TABLE, &cols, &files.versions, |_, _| None)?;
    // column order: as a database gets it from the schema versions stored in this dataset (a
    // table is created with the complete columns of the first version that has it, later
    // versions add their new columns at the end)
    let history = files.history()?;
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for schema in &history {
        for t in schema.tables.values() {
            let o = order.entry(t.name.clone()).or_default();
            for c in t.complete_columns() {
                if !o.contains(&c.name) {
                    o.push(c.name.clone());
                }
            }
        }
    }
    // the tables of the newest version of every schema name (first definition of a name wins)
    let mut newest: Vec<&Schema> = vec![];
    for s in history.iter().rev() {
        if !newest.iter().any(|n| n.name == s.name) {
            newest.push(s);
        }
    }
    newest.sort_by(|a, b| a.name.cmp(&b.name));
    let mut done: HashSet<String> = [LOADS_TABLE.to_string(), VERSION_TABLE.to_string()].into();
    for schema in newest {
        for t in schema.tables.values() {
            if !t.has_complete_columns() || !done.insert(t.name.clone()) {
                continue;
            }
            let order = order.get(&t.name).map(Vec::as_slice).unwrap_or_default();
            if t.name == STATE_TABLE {
                let cols = create_table(duck, ds, t, order)?;
                let mut docs = vec![];
                for n in file_names(&dir.join(STATE_TABLE))? {
                    let parts = name_parts(&n, 3).with_context(|| format!("unexpected file {STATE_TABLE}/{n}"))?;
                    if files.committed.contains(&parts[1]) {
                        docs.push((n.clone(), read_doc(&dir.join(STATE_TABLE).join(&n))?));
                    }
                }
                insert_docs(duck, ds, STATE_TABLE, &cols, &docs, |col, file| {
                    (col == dlt::dlt_core::schema::C_DLT_ID).then(|| file.to_string())
                })?;
            } else {
                mirror_data_table(duck, ds, &files, t, order)?;
            }
        }
    }
    Ok(())
}

/// Mirrors the datasets of `datasets` that exist in the bucket folder `bucket` (a folder
/// `<bucket>/<dataset>` with an `init` file) into `duck`.
pub fn mirror(bucket: &Path, duck: &Connection, datasets: &[String]) -> anyhow::Result<()> {
    let mut names: Vec<&String> = datasets.iter().collect();
    names.sort();
    names.dedup();
    for ds in names {
        let dir = bucket.join(ds);
        if dir.join(INIT_FILE).is_file() {
            mirror_dataset(duck, ds, &dir).with_context(|| format!("mirroring dataset {}", dir.display()))?;
        }
    }
    Ok(())
}

/// Mirrors `datasets` of the bucket folder into a fresh DuckDB database (the file `mirror_file`,
/// replaced if it exists, or an in-memory one) and dumps them with
/// [`dump_connection`](crate::dump_connection).
pub fn dump_filesystem(
    bucket: &Path,
    datasets: &[String],
    time_token_columns: Option<&[String]>,
    mirror_file: Option<&Path>,
) -> anyhow::Result<Value> {
    let duck = match mirror_file {
        Some(f) => {
            for p in [f.to_path_buf(), f.with_extension("duckdb.wal")] {
                if p.exists() {
                    std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
                }
            }
            Connection::open(f).with_context(|| format!("creating {}", f.display()))?
        }
        None => Connection::open_in_memory()?,
    };
    mirror(bucket, &duck, datasets)?;
    crate::dump_connection(&duck, datasets, time_token_columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(dt: DataType, precision: Option<u32>, timezone: Option<bool>) -> Column {
        Column { name: "c".into(), data_type: Some(dt), precision, timezone, ..Default::default() }
    }

    #[test]
    fn type_mapping() {
        assert_eq!(duckdb_type(&col(DataType::Json, None, None)), "JSON");
        assert_eq!(parquet_type(&col(DataType::Json, None, None)), "VARCHAR");
        assert_eq!(duckdb_type(&col(DataType::Bigint, Some(8), None)), "TINYINT");
        assert_eq!(parquet_type(&col(DataType::Bigint, Some(8), None)), "BIGINT");
        assert_eq!(duckdb_type(&col(DataType::Timestamp, Some(3), Some(false))), "TIMESTAMP_MS");
        assert_eq!(duckdb_type(&col(DataType::Timestamp, Some(3), None)), "TIMESTAMP WITH TIME ZONE");
        assert_eq!(parquet_type(&col(DataType::Timestamp, Some(3), Some(false))), "TIMESTAMP");
        assert_eq!(parquet_type(&col(DataType::Decimal, None, None)), "DECIMAL(38,9)");
        assert_eq!(parquet_type(&col(DataType::Wei, None, None)), "DECIMAL(38,0)");
    }

    #[test]
    fn system_file_names() {
        assert_eq!(name_parts("p__1700000000.5__ab.jsonl", 3).unwrap(), ["p", "1700000000.5", "ab"]);
        assert_eq!(name_parts("my__schema__1700000000.5.jsonl", 2).unwrap(), ["my__schema", "1700000000.5"]);
        assert!(name_parts("init", 2).is_none());
    }
}
