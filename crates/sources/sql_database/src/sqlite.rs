//! SQLite (compiled in): a read-only connection, reflection from `sqlite_master` and
//! `PRAGMA table_info`, and reading row by row into Arrow builders, converting SQLite's dynamic
//! values to each column's declared kind.

use dlt_core::error::{Error, Result};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::batch::{BatchBuilder, ColBuilder, fits, pow10};
use crate::credentials::{Credentials, Dialect};
use crate::query::{self, SqlParam, quote_ident};
use crate::table::{SqlColumn, TableSchema};
use crate::types::{self, ValueKind};
use crate::{ReadJob, source_error};

fn classify(e: rusqlite::Error, what: &str) -> Error {
    let transient =
        matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked));
    source_error(format!("{what}: {e}"), transient)
}

/// Open the database read-only (a missing file is an error, never created).
pub(crate) fn connect(c: &Credentials, base: &std::path::Path) -> Result<Connection> {
    match c.sqlite_path(base) {
        None => Connection::open_in_memory().map_err(|e| classify(e, "opening an in-memory SQLite database")),
        Some(p) => {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
            Connection::open_with_flags(&p, flags)
                .map_err(|e| classify(e, &format!("cannot open SQLite database {}", p.display())))
        }
    }
}

/// All tables (and views) of an attached database (`None` = `main`).
pub(crate) fn reflect(conn: &Connection, schema: Option<&str>) -> Result<(String, Vec<TableSchema>)> {
    let schema = schema.unwrap_or("main").to_string();
    let qs = quote_ident(Dialect::Sqlite, &schema);
    let sql = format!(
        "SELECT name, type FROM {qs}.sqlite_master WHERE type IN ('table', 'view') \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    );
    let mut stmt = conn.prepare(&sql).map_err(|e| classify(e, "reflecting tables"))?;
    let names: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|it| it.collect())
        .map_err(|e| classify(e, "reflecting tables"))?;
    let mut tables = vec![];
    for (name, ty) in names {
        let sql = format!("PRAGMA {qs}.table_info({})", quote_ident(Dialect::Sqlite, &name));
        let mut stmt = conn.prepare(&sql).map_err(|e| classify(e, &format!("reflecting `{name}`")))?;
        let cols: Vec<(String, String, bool, i64)> = stmt
            .query_map([], |r| {
                Ok((r.get(1)?, r.get::<_, Option<String>>(2)?.unwrap_or_default(), r.get(3)?, r.get(5)?))
            })
            .and_then(|it| it.collect())
            .map_err(|e| classify(e, &format!("reflecting `{name}`")))?;
        let mut t = TableSchema {
            schema: Some(schema.clone()),
            name,
            is_view: ty == "view",
            columns: vec![],
            primary_key: vec![],
        };
        let mut pk: Vec<(i64, String)> = vec![];
        for (cname, decl, notnull, pk_pos) in cols {
            let mut c = SqlColumn::new(cname.clone(), decl.clone(), types::sqlite(&decl), !notnull);
            if pk_pos > 0 {
                c.primary_key = true;
                c.nullable = false;
                pk.push((pk_pos, cname));
            }
            t.columns.push(c);
        }
        pk.sort();
        t.primary_key = pk.into_iter().map(|(_, c)| c).collect();
        tables.push(t);
    }
    Ok((schema, tables))
}

fn put(col: &mut ColBuilder, v: ValueRef<'_>) -> std::result::Result<(), String> {
    match v {
        ValueRef::Null => col.append_null(),
        ValueRef::Integer(i) => match col {
            ColBuilder::Int(b) => b.append_value(i),
            ColBuilder::Bool(b) => b.append_value(i != 0),
            ColBuilder::Double(b) => b.append_value(i as f64),
            ColBuilder::Decimal(b, p, s) => {
                let v = if *s >= 0 { pow10(*s as u32).and_then(|m| (i as i128).checked_mul(m)) } else { None }
                    .filter(|v| fits(*v, *p))
                    .ok_or_else(|| format!("{i} does not fit decimal({p},{s})"))?;
                b.append_value(v)
            }
            // integers in date/time columns are unix seconds
            ColBuilder::Timestamp(b, _) => b.append_value(i.checked_mul(1_000_000).ok_or("timestamp out of range")?),
            ColBuilder::Date(b) => b.append_value(i.div_euclid(86_400) as i32),
            ColBuilder::Time(b) => b.append_value(i.rem_euclid(86_400) * 1_000_000),
            other => other.append_text(&i.to_string())?,
        },
        ValueRef::Real(f) => match col {
            ColBuilder::Double(b) => b.append_value(f),
            ColBuilder::Timestamp(b, _) => b.append_value((f * 1_000_000.0).round() as i64),
            other => other.append_text(&f.to_string())?,
        },
        ValueRef::Text(t) => {
            let s = std::str::from_utf8(t).map_err(|e| e.to_string())?;
            col.append_text(s)?
        }
        ValueRef::Blob(b) => match col {
            ColBuilder::Binary(bin) => bin.append_value(b),
            other => other.append_text(std::str::from_utf8(b).map_err(|_| "a BLOB value in a non-binary column")?)?,
        },
    }
    Ok(())
}

fn bind(params: Vec<SqlParam>) -> Vec<rusqlite::types::Value> {
    params
        .into_iter()
        .map(|p| match p {
            SqlParam::Int(i) => rusqlite::types::Value::Integer(i),
            SqlParam::Float(f) => rusqlite::types::Value::Real(f),
            SqlParam::Text(s) => rusqlite::types::Value::Text(s),
        })
        .collect()
}

/// The smallest and largest key of a partitioned table (within its incremental window).
pub(crate) fn key_bounds(job: &ReadJob, column: &str) -> Result<Option<(i64, i64)>> {
    let conn = connect(&job.credentials, &job.base_dir)?;
    let k = quote_ident(Dialect::Sqlite, column);
    let name = &job.table.name;
    let s =
        query::select(Dialect::Sqlite, &job.table, &[format!("min({k})"), format!("max({k})")], job.window.as_ref())?;
    let (lo, hi): (Option<i64>, Option<i64>) = conn
        .query_row(&s.sql, rusqlite::params_from_iter(bind(s.params)), |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(|e| classify(e, &format!("reading the key range of `{name}`")))?;
    Ok(lo.zip(hi))
}

/// Read a table (or a replacement query) as Arrow batches.
pub(crate) fn read(job: &ReadJob, emit: &mut dyn FnMut(arrow::record_batch::RecordBatch) -> bool) -> Result<()> {
    let conn = connect(&job.credentials, &job.base_dir)?;
    let t = &job.table;
    let (sql, params) = match &job.query {
        Some(q) => (q.clone(), vec![]),
        None => {
            let exprs = query::plain_exprs(Dialect::Sqlite, t);
            let s = query::select_range(Dialect::Sqlite, t, &exprs, job.window.as_ref(), job.range.as_ref())?;
            (s.sql, s.params)
        }
    };
    tracing::debug!(table = %t.name, %sql, "sql_database: reading");
    let table = t.name.clone();
    tracing::info!(target: "dlt::sql", source = "sql_database", "{}", sql);
    let mut stmt = conn.prepare(&sql).map_err(|e| classify(e, &format!("reading table `{table}`")))?;
    let (names, kinds): (Vec<String>, Vec<ValueKind>) = match &job.query {
        None => t.columns.iter().map(|c| (c.output_name.clone(), c.kind())).unzip(),
        Some(_) => stmt
            .columns()
            .map(|rc| {
                let n = rc.name().to_string();
                match t.columns.iter().find(|c| c.name == n || c.output_name == n) {
                    Some(c) => (c.output_name.clone(), c.kind()),
                    None => (n, types::sqlite(rc.decl_type().unwrap_or("")).kind),
                }
            })
            .unzip(),
    };
    let bound = bind(params);
    let mut rows =
        stmt.query(rusqlite::params_from_iter(bound)).map_err(|e| classify(e, &format!("reading table `{table}`")))?;
    let mut bb = BatchBuilder::new(&names, &kinds, job.chunk_size.min(65_536));
    let mut row_no: u64 = 0;
    while let Some(row) = rows.next().map_err(|e| classify(e, &format!("reading table `{table}`")))? {
        row_no += 1;
        for (i, col) in bb.cols.iter_mut().enumerate() {
            let v = row.get_ref(i).map_err(|e| classify(e, &format!("reading table `{table}`")))?;
            put(col, v).map_err(|m| {
                source_error(format!("table `{table}`, column `{}`, row {row_no}: {m}", names[i]), false)
            })?;
        }
        bb.rows += 1;
        if bb.rows >= job.chunk_size && !emit(bb.finish()?) {
            return Ok(());
        }
    }
    if bb.rows > 0 {
        emit(bb.finish()?);
    }
    Ok(())
}
