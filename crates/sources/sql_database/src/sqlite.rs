//! SQLite (compiled in, through sqlx): a read-only connection, reflection from `sqlite_master`
//! and `PRAGMA table_info`, and reading rows as they stream from the database into Arrow
//! builders, converting SQLite's dynamic values to each column's declared kind.
//!
//! The reader runs on its own thread (one per table or key range); it drives sqlx's
//! connection on the shared runtime with [`block_on`], one batch at a time, and hands each
//! finished batch to the pipeline outside the async code.

use std::str::FromStr;

use arrow::record_batch::RecordBatch;
use dlt_core::error::{Error, Result};
use dlt_core::runtime::block_on;
use futures_util::TryStreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow, SqliteValueRef};
// every statement is built here from quoted identifiers; values are bound parameters
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Decode, Row, TypeInfo, ValueRef};

use crate::batch::{BatchBuilder, ColBuilder, fits, pow10};
use crate::credentials::{Credentials, Dialect};
use crate::query::{self, SqlParam, quote_ident};
use crate::table::{SqlColumn, TableSchema};
use crate::types;
use crate::{ReadJob, source_error};

fn classify(e: sqlx::Error, what: &str) -> Error {
    // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes: another writer
    let transient = match &e {
        sqlx::Error::Database(d) => {
            d.code().and_then(|c| c.parse::<i64>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6))
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => true,
        _ => false,
    };
    source_error(format!("{what}: {e}"), transient)
}

/// Open the database read-only (a missing file is an error, never created).
async fn connect(c: &Credentials, base: &std::path::Path) -> Result<SqliteConnection> {
    let opts = match c.sqlite_path(base) {
        None => SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| classify(e, "opening an in-memory SQLite database"))?,
        Some(p) => {
            if !p.exists() {
                return Err(source_error(format!("cannot open SQLite database {}: no such file", p.display()), false));
            }
            SqliteConnectOptions::new().filename(&p).read_only(true).create_if_missing(false)
        }
    };
    let what = match c.sqlite_path(base) {
        Some(p) => format!("cannot open SQLite database {}", p.display()),
        None => "opening an in-memory SQLite database".to_string(),
    };
    opts.connect().await.map_err(|e| classify(e, &what))
}

fn text(row: &SqliteRow, i: usize) -> Option<String> {
    row.try_get::<Option<String>, _>(i).ok().flatten()
}

/// All tables (and views) of an attached database (`None` = `main`).
pub(crate) fn reflect(
    c: &Credentials,
    base: &std::path::Path,
    schema: Option<&str>,
) -> Result<(String, Vec<TableSchema>)> {
    block_on(async {
        let mut conn = connect(c, base).await?;
        let schema = schema.unwrap_or("main").to_string();
        let qs = quote_ident(Dialect::Sqlite, &schema);
        let sql = format!(
            "SELECT name, type FROM {qs}.sqlite_master WHERE type IN ('table', 'view') \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        );
        let names: Vec<SqliteRow> = sqlx::query(AssertSqlSafe(sql.as_str()))
            .fetch_all(&mut conn)
            .await
            .map_err(|e| classify(e, "reflecting tables"))?;
        let mut tables = vec![];
        for r in names {
            let (name, ty) = (text(&r, 0).unwrap_or_default(), text(&r, 1).unwrap_or_default());
            let sql = format!("PRAGMA {qs}.table_info({})", quote_ident(Dialect::Sqlite, &name));
            let cols: Vec<SqliteRow> = sqlx::query(AssertSqlSafe(sql.as_str()))
                .fetch_all(&mut conn)
                .await
                .map_err(|e| classify(e, &format!("reflecting `{name}`")))?;
            let mut t = TableSchema {
                schema: Some(schema.clone()),
                name,
                is_view: ty == "view",
                columns: vec![],
                primary_key: vec![],
            };
            let mut pk: Vec<(i64, String)> = vec![];
            for r in cols {
                // cid, name, type, notnull, dflt_value, pk
                let cname = text(&r, 1).unwrap_or_default();
                let decl = text(&r, 2).unwrap_or_default();
                let notnull = r.try_get::<i64, _>(3).unwrap_or(0) != 0;
                let pk_pos = r.try_get::<i64, _>(5).unwrap_or(0);
                t.columns.push(SqlColumn::new(cname.clone(), decl.clone(), types::sqlite(&decl), !notnull));
                if pk_pos > 0 {
                    pk.push((pk_pos, cname));
                }
            }
            pk.sort();
            for (_, c) in pk {
                t.add_primary_key(c);
            }
            tables.push(t);
        }
        conn.close().await.ok();
        Ok((schema, tables))
    })
}

/// A value as SQLite stores it (its dynamic type, not the column's declared one).
fn put(col: &mut ColBuilder, v: SqliteValueRef<'_>) -> std::result::Result<(), String> {
    if v.is_null() {
        col.append_null();
        return Ok(());
    }
    let dynamic = v.type_info().name().to_string();
    let bad = |e: sqlx::error::BoxDynError| e.to_string();
    match dynamic.as_str() {
        "INTEGER" | "BOOLEAN" => {
            let i = <i64 as Decode<sqlx::Sqlite>>::decode(v).map_err(bad)?;
            match col {
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
                ColBuilder::Timestamp(b, _) => {
                    b.append_value(i.checked_mul(1_000_000).ok_or("timestamp out of range")?)
                }
                ColBuilder::Date(b) => b.append_value(i.div_euclid(86_400) as i32),
                ColBuilder::Time(b) => b.append_value(i.rem_euclid(86_400) * 1_000_000),
                other => other.append_text(&i.to_string())?,
            }
        }
        "REAL" => {
            let f = <f64 as Decode<sqlx::Sqlite>>::decode(v).map_err(bad)?;
            match col {
                ColBuilder::Double(b) => b.append_value(f),
                ColBuilder::Timestamp(b, _) => b.append_value((f * 1_000_000.0).round() as i64),
                other => other.append_text(&f.to_string())?,
            }
        }
        "BLOB" => {
            let b = <&[u8] as Decode<sqlx::Sqlite>>::decode(v).map_err(bad)?;
            match col {
                ColBuilder::Binary(bin) => bin.append_value(b),
                other => {
                    other.append_text(std::str::from_utf8(b).map_err(|_| "a BLOB value in a non-binary column")?)?
                }
            }
        }
        _ => {
            let s = <&str as Decode<sqlx::Sqlite>>::decode(v).map_err(bad)?;
            col.append_text(s)?
        }
    }
    Ok(())
}

fn bind<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    params: Vec<SqlParam>,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    for p in params {
        q = match p {
            SqlParam::Int(i) => q.bind(i),
            SqlParam::Float(f) => q.bind(f),
            SqlParam::Text(s) => q.bind(s),
        };
    }
    q
}

/// The smallest and largest key of a partitioned table (within its incremental window).
pub(crate) fn key_bounds(job: &ReadJob, column: &str) -> Result<Option<(i64, i64)>> {
    let k = quote_ident(Dialect::Sqlite, column);
    let name = &job.table.name;
    let s =
        query::select(Dialect::Sqlite, &job.table, &[format!("min({k})"), format!("max({k})")], job.window.as_ref())?;
    block_on(async {
        let mut conn = connect(&job.credentials, &job.base_dir).await?;
        let row = bind(sqlx::query(AssertSqlSafe(s.sql.as_str())), s.params)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| classify(e, &format!("reading the key range of `{name}`")))?;
        let lo: Option<i64> = row.try_get(0).map_err(|e| classify(e, &format!("reading the key range of `{name}`")))?;
        let hi: Option<i64> = row.try_get(1).map_err(|e| classify(e, &format!("reading the key range of `{name}`")))?;
        Ok(lo.zip(hi))
    })
}

/// Read a table (or a replacement query) as Arrow batches.
pub(crate) fn read(job: &ReadJob, emit: &mut dyn FnMut(RecordBatch) -> bool) -> Result<()> {
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
    let reading = |e: sqlx::Error| classify(e, &format!("reading table `{table}`"));
    let mut conn = block_on(connect(&job.credentials, &job.base_dir))?;
    let mut rows = bind(sqlx::query(AssertSqlSafe(sql.as_str())), params).fetch(&mut conn);
    // a query adapter's SQL: its columns are those of the first row (none: nothing to read)
    let first = match &job.query {
        Some(_) => match block_on(rows.try_next()).map_err(reading)? {
            Some(r) => Some(r),
            None => return Ok(()),
        },
        None => None,
    };
    let (names, kinds) = crate::stream::columns(t, first.as_ref(), |n| types::sqlite(n).kind);
    let mut bb = BatchBuilder::new(&names, &kinds, job.chunk_size.min(65_536));
    let put_row = |row: &SqliteRow, cols: &mut [ColBuilder], row_no: u64| -> Result<()> {
        for (i, col) in cols.iter_mut().enumerate() {
            let v = row.try_get_raw(i).map_err(reading)?;
            put(col, v).map_err(|m| {
                source_error(format!("table `{table}`, column `{}`, row {row_no}: {m}", names[i]), false)
            })?;
        }
        Ok(())
    };
    crate::stream::drain(rows, first, &mut bb, job.chunk_size, &put_row, &reading, emit)
}
