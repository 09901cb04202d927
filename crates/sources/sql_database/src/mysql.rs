//! MySQL / MariaDB through sqlx: connection (optional rustls TLS, or a Unix socket), reflection
//! from `information_schema`, and reading with the text protocol, rows streamed from the socket
//! into Arrow builders.
//!
//! Like the SQLite reader, each reader thread drives sqlx on the shared runtime with
//! [`block_on`], one batch per trip, and hands the finished batch to the pipeline outside the
//! async code.

use arrow::record_batch::RecordBatch;
use dlt_core::error::{Error, Result};
use dlt_core::runtime::block_on;
use futures_util::TryStreamExt;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlRow, MySqlSslMode};
// every statement is built here from quoted identifiers and hex literals
use sqlx::{AssertSqlSafe, ConnectOptions, Decode, Row, ValueRef};

use crate::batch::{BatchBuilder, ColBuilder};
use crate::credentials::{Credentials, Dialect};
use crate::query::{self, quote_ident};
use crate::table::{SqlColumn, TableSchema};
use crate::types::{self, ValueKind};
use crate::{ReadJob, source_error};

fn classify(e: sqlx::Error, what: &str) -> Error {
    let transient = match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        // 1040 too many connections, 1205 lock wait timeout, 1213 deadlock
        sqlx::Error::Database(d) => {
            d.try_downcast_ref::<MySqlDatabaseError>().is_some_and(|m| matches!(m.number(), 1040 | 1205 | 1213))
        }
        _ => false,
    } && !dlt_core::error::is_certificate_failure(&e);
    source_error(format!("{what}: {e}"), transient)
}

/// Open a connection (session time zone UTC, utf8mb4).
async fn connect(c: &Credentials) -> Result<MySqlConnection> {
    let mode = c.option("ssl_mode").or(c.option("sslmode")).unwrap_or("disabled").to_ascii_lowercase();
    let ssl = match mode.as_str() {
        "disabled" | "disable" => MySqlSslMode::Disabled,
        "preferred" | "prefer" => MySqlSslMode::Preferred,
        "required" | "require" => MySqlSslMode::Required,
        "verify_ca" | "verify-ca" => MySqlSslMode::VerifyCa,
        "verify_identity" | "verify-full" => MySqlSslMode::VerifyIdentity,
        other => return Err(Error::Config(format!("mysql: unknown ssl_mode `{other}`"))),
    };
    let mut opts = MySqlConnectOptions::new()
        .host(c.host.as_deref().unwrap_or("localhost"))
        .port(c.port.unwrap_or(3306))
        .ssl_mode(ssl)
        .timezone(Some("+00:00".to_string()))
        .charset("utf8mb4")
        // the server's own sql_mode, as dlt's pymysql connection has it
        .pipes_as_concat(false)
        .no_engine_substitution(false);
    if let Some(u) = &c.username {
        opts = opts.username(u);
    }
    if let Some(p) = &c.password {
        opts = opts.password(p.expose());
    }
    if let Some(d) = &c.database {
        opts = opts.database(d);
    }
    if let Some(ca) = c.option("ssl_ca").or(c.option("sslrootcert")) {
        opts = opts.ssl_ca(ca);
    }
    // `unix_socket` (as in dlt's `mysql+pymysql://…?unix_socket=/run/mysqld/mysqld.sock`): the
    // connection goes through the socket, never silently over TCP
    if let Some(s) = c.option("unix_socket") {
        if !std::path::Path::new(s).exists() {
            return Err(Error::Config(format!(
                "mysql: unix_socket {s} does not exist; give the server's socket (`SELECT @@socket` on the \
                 server tells it, e.g. /run/mysqld/mysqld.sock) or remove unix_socket to connect over TCP"
            )));
        }
        opts = opts.socket(s);
    }
    let what = format!("cannot connect to {}", c.display());
    match tokio::time::timeout(std::time::Duration::from_secs(10), opts.connect()).await {
        Ok(r) => r.map_err(|e| classify(e, &what)),
        Err(_) => Err(source_error(format!("{what}: no answer within 10 s"), true)),
    }
}

/// A text-protocol value as UTF-8 text.
fn text(row: &MySqlRow, i: usize) -> Option<String> {
    let v = row.try_get_raw(i).ok()?;
    if v.is_null() {
        return None;
    }
    <&[u8] as Decode<sqlx::MySql>>::decode(v).ok().map(|b| String::from_utf8_lossy(b).into_owned())
}

async fn rows(conn: &mut MySqlConnection, sql: &str, what: &str) -> Result<Vec<MySqlRow>> {
    sqlx::raw_sql(AssertSqlSafe(sql)).fetch_all(conn).await.map_err(|e| classify(e, what))
}

fn lit(s: &str) -> String {
    format!("_utf8mb4 X'{}'", s.bytes().map(|b| format!("{b:02X}")).collect::<String>())
}

/// All tables (and views) of a database (`None` = the connection's database).
pub(crate) fn reflect(c: &Credentials, schema: Option<&str>) -> Result<(String, Vec<TableSchema>)> {
    block_on(async {
        let mut conn = connect(c).await?;
        let schema = match schema {
            Some(s) => s.to_string(),
            None => rows(&mut conn, "SELECT DATABASE()", "reading the current database")
                .await?
                .first()
                .and_then(|r| text(r, 0))
                .ok_or_else(|| {
                    Error::Config("sql_database: no MySQL database: put it in the URL or set `schema`".into())
                })?,
        };
        let sql = format!(
            "SELECT c.TABLE_NAME, t.TABLE_TYPE, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.IS_NULLABLE, \
             c.NUMERIC_PRECISION, c.NUMERIC_SCALE, c.CHARACTER_MAXIMUM_LENGTH \
             FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
             ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
             WHERE c.TABLE_SCHEMA = {} ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
            lit(&schema)
        );
        let cols = rows(&mut conn, &sql, "reflecting tables").await?;
        if cols.is_empty() {
            let schemas: Vec<String> = rows(
                &mut conn,
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN \
                 ('information_schema', 'mysql', 'performance_schema', 'sys') ORDER BY 1",
                "listing databases",
            )
            .await?
            .iter()
            .filter_map(|r| text(r, 0))
            .collect();
            if !schemas.contains(&schema) {
                return Err(crate::no_such_schema(&schema, &schemas));
            }
        }
        let mut tables: Vec<TableSchema> = vec![];
        for r in &cols {
            let s = |i: usize| text(r, i).unwrap_or_default();
            let n = |i: usize| text(r, i).and_then(|x| x.parse::<u64>().ok()).map(|x| x.min(u32::MAX as u64) as u32);
            let (tname, ttype) = (s(0), s(1));
            let mapped = types::mysql(&s(3), n(6), n(7), n(8));
            let col = SqlColumn::new(s(2), s(4), mapped, s(5) == "YES");
            match tables.last_mut() {
                Some(t) if t.name == tname => t.columns.push(col),
                _ => tables.push(TableSchema {
                    schema: Some(schema.clone()),
                    name: tname,
                    is_view: ttype == "VIEW",
                    columns: vec![col],
                    primary_key: vec![],
                }),
            }
        }
        let sql = format!(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = {} AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY TABLE_NAME, ORDINAL_POSITION",
            lit(&schema)
        );
        for r in rows(&mut conn, &sql, "reflecting primary keys").await? {
            let (t, c) = (text(&r, 0).unwrap_or_default(), text(&r, 1).unwrap_or_default());
            if let Some(t) = tables.iter_mut().find(|x| x.name == t) {
                t.add_primary_key(c);
            }
        }
        Ok((schema, tables))
    })
}

/// The expression that reads a column: `bit(n)` as its unsigned value, everything else as is.
fn expr(c: &SqlColumn) -> String {
    let q = quote_ident(Dialect::Mysql, &c.name);
    if c.native_type.to_ascii_lowercase().starts_with("bit") && c.kind() != ValueKind::Binary {
        format!("CAST({q} AS UNSIGNED)")
    } else {
        q
    }
}

/// Read a table (or a replacement query) as Arrow batches.
pub(crate) fn read(job: &ReadJob, emit: &mut dyn FnMut(RecordBatch) -> bool) -> Result<()> {
    let t = &job.table;
    let sql = match &job.query {
        Some(q) => q.clone(),
        None => {
            let exprs: Vec<String> = t.columns.iter().map(expr).collect();
            query::select_range(Dialect::Mysql, t, &exprs, job.window.as_ref(), job.range.as_ref())?.sql
        }
    };
    tracing::debug!(table = %t.name, %sql, "sql_database: reading");
    let table = t.name.clone();
    tracing::info!(target: "dlt::sql", source = "sql_database", "{}", sql);
    let reading = |e: sqlx::Error| classify(e, &format!("reading table `{table}`"));
    let mut conn = block_on(connect(&job.credentials))?;
    let mut stream = sqlx::raw_sql(AssertSqlSafe(sql.as_str())).fetch(&mut conn);
    // a query adapter's SQL: its columns are those of the first row (none: nothing to read)
    let first = match &job.query {
        Some(_) => match block_on(stream.try_next()).map_err(reading)? {
            Some(r) => Some(r),
            None => return Ok(()),
        },
        None => None,
    };
    let (names, kinds) = crate::stream::columns(t, first.as_ref(), natural_kind);
    let mut bb = BatchBuilder::new(&names, &kinds, job.chunk_size.min(65_536));
    let put_row = |row: &MySqlRow, cols: &mut [ColBuilder], row_no: u64| -> Result<()> {
        for (i, col) in cols.iter_mut().enumerate() {
            let err =
                |m: String| source_error(format!("table `{table}`, column `{}`, row {row_no}: {m}", names[i]), false);
            let v = row.try_get_raw(i).map_err(reading)?;
            if v.is_null() {
                col.append_null();
                continue;
            }
            let b = <&[u8] as Decode<sqlx::MySql>>::decode(v).map_err(|e| err(e.to_string()))?;
            match (kinds[i], col) {
                (ValueKind::Binary, ColBuilder::Binary(bin)) => bin.append_value(b),
                (kind, col) => {
                    let s = std::str::from_utf8(b).map_err(|e| err(e.to_string()))?;
                    let zero_date =
                        matches!(kind, ValueKind::Date | ValueKind::Timestamp { .. }) && s.starts_with("0000-00-00");
                    if zero_date {
                        col.append_null();
                    } else {
                        col.append_text(s).map_err(err)?;
                    }
                }
            }
        }
        Ok(())
    };
    crate::stream::drain(stream, first, &mut bb, job.chunk_size, &put_row, &reading, emit)
}

/// The smallest and largest key of a partitioned table (within its incremental window).
pub(crate) fn key_bounds(job: &ReadJob, column: &str) -> Result<Option<(i64, i64)>> {
    let k = quote_ident(Dialect::Mysql, column);
    let name = &job.table.name;
    let sql =
        query::select(Dialect::Mysql, &job.table, &[format!("MIN({k})"), format!("MAX({k})")], job.window.as_ref())?
            .sql;
    let row = block_on(async {
        let mut conn = connect(&job.credentials).await?;
        rows(&mut conn, &sql, &format!("reading the key range of `{name}`")).await
    })?;
    let int = |i: usize| -> Result<Option<i64>> {
        match row.first().and_then(|r| text(r, i)) {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| {
                source_error(
                    format!("table `{name}`: partition key `{column}` value {s} is not a 64-bit integer"),
                    false,
                )
            }),
        }
    };
    Ok(match (int(0)?, int(1)?) {
        (Some(lo), Some(hi)) => Some((lo, hi)),
        _ => None,
    })
}

/// The kind of a result column a query adapter added, from the type the server reports.
fn natural_kind(type_name: &str) -> ValueKind {
    let t = type_name.to_ascii_uppercase();
    let base = t.split_whitespace().next().unwrap_or("");
    match base {
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => ValueKind::Int,
        "FLOAT" | "DOUBLE" => ValueKind::Double,
        "DECIMAL" | "NUMERIC" => types::DEFAULT_DECIMAL,
        "DATE" => ValueKind::Date,
        "DATETIME" | "TIMESTAMP" => ValueKind::Timestamp { tz: false },
        "TIME" => ValueKind::Time,
        "JSON" => ValueKind::Json,
        _ => ValueKind::Text,
    }
}
