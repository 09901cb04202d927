//! MySQL / MariaDB: connection (optional rustls TLS), reflection from `information_schema`, and
//! reading with the text protocol, row by row from the socket into Arrow builders.

use dlt_core::error::{Error, Result};
use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, SslOpts, Value};

use crate::batch::BatchBuilder;
use crate::credentials::{Credentials, Dialect};
use crate::query::{self, quote_ident};
use crate::table::{SqlColumn, TableSchema};
use crate::types::{self, ValueKind};
use crate::{ReadJob, source_error};

fn classify(e: mysql::Error, what: &str) -> Error {
    let transient = match &e {
        mysql::Error::IoError(_) | mysql::Error::DriverError(_) => true,
        // 1040 too many connections, 1205 lock wait timeout, 1213 deadlock, 2002/2003/2006/2013 connection
        mysql::Error::MySqlError(m) => matches!(m.code, 1040 | 1205 | 1213 | 2002 | 2003 | 2006 | 2013),
        _ => false,
    } && !dlt_core::error::is_certificate_failure(&e);
    source_error(format!("{what}: {e}"), transient)
}

/// Open a connection (session time zone UTC, utf8mb4).
pub(crate) fn connect(c: &Credentials) -> Result<Conn> {
    let mode = c.option("ssl_mode").or(c.option("sslmode")).unwrap_or("disabled").to_ascii_lowercase();
    let root = c.option("ssl_ca").or(c.option("sslrootcert")).map(|p| std::path::PathBuf::from(p.to_string()));
    let ssl = match mode.as_str() {
        "disabled" | "disable" | "preferred" | "prefer" => None,
        "required" | "require" => {
            Some(SslOpts::default().with_danger_accept_invalid_certs(true).with_danger_skip_domain_validation(true))
        }
        "verify_ca" | "verify-ca" => Some(SslOpts::default().with_danger_skip_domain_validation(true)),
        "verify_identity" | "verify-full" => Some(SslOpts::default()),
        other => return Err(Error::Config(format!("mysql: unknown ssl_mode `{other}`"))),
    }
    .map(|s| s.with_root_cert_path(root));
    // `unix_socket` (as in dlt's `mysql+pymysql://…?unix_socket=/run/mysqld/mysqld.sock`): the
    // connection goes through the socket, never silently over TCP
    let socket = c.option("unix_socket").map(str::to_string);
    if let Some(s) = &socket
        && !std::path::Path::new(s).exists()
    {
        return Err(Error::Config(format!(
            "mysql: unix_socket {s} does not exist; give the server's socket (`SELECT @@socket` on the \
             server tells it, e.g. /run/mysqld/mysqld.sock) or remove unix_socket to connect over TCP"
        )));
    }
    let opts = OptsBuilder::new()
        .socket(socket)
        .ip_or_hostname(Some(c.host.clone().unwrap_or_else(|| "localhost".into())))
        .tcp_port(c.port.unwrap_or(3306))
        .user(c.username.clone())
        .pass(c.password.as_ref().map(|p| p.expose().to_string()))
        .db_name(c.database.clone())
        .tcp_connect_timeout(Some(std::time::Duration::from_secs(10)))
        .init(vec!["SET time_zone = '+00:00'", "SET NAMES utf8mb4"])
        .ssl_opts(ssl);
    Conn::new(opts).map_err(|e| classify(e, &format!("cannot connect to {}", c.display())))
}

fn text(v: &Option<Value>) -> Option<String> {
    match v {
        Some(Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        Some(Value::Int(i)) => Some(i.to_string()),
        Some(Value::UInt(i)) => Some(i.to_string()),
        _ => None,
    }
}

fn lit(s: &str) -> String {
    format!("_utf8mb4 X'{}'", s.bytes().map(|b| format!("{b:02X}")).collect::<String>())
}

/// All tables (and views) of a database (`None` = the connection's database).
pub(crate) fn reflect(conn: &mut Conn, schema: Option<&str>) -> Result<(String, Vec<TableSchema>)> {
    let schema = match schema {
        Some(s) => s.to_string(),
        None => conn
            .query_first::<Option<String>, _>("SELECT DATABASE()")
            .map_err(|e| classify(e, "reading the current database"))?
            .flatten()
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
    let rows: Vec<mysql::Row> = conn.query(sql).map_err(|e| classify(e, "reflecting tables"))?;
    if rows.is_empty() {
        let schemas: Vec<String> = conn
            .query::<String, _>(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN \
                 ('information_schema', 'mysql', 'performance_schema', 'sys') ORDER BY 1",
            )
            .map_err(|e| classify(e, "listing databases"))?;
        if !schemas.contains(&schema) {
            return Err(crate::no_such_schema(&schema, &schemas));
        }
    }
    let mut tables: Vec<TableSchema> = vec![];
    for r in rows {
        let v = r.unwrap_raw();
        let s = |i: usize| text(&v[i]).unwrap_or_default();
        let n = |i: usize| text(&v[i]).and_then(|x| x.parse::<u64>().ok()).map(|x| x.min(u32::MAX as u64) as u32);
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
    let rows: Vec<mysql::Row> = conn.query(sql).map_err(|e| classify(e, "reflecting primary keys"))?;
    for r in rows {
        let v = r.unwrap_raw();
        let (t, c) = (text(&v[0]).unwrap_or_default(), text(&v[1]).unwrap_or_default());
        if let Some(t) = tables.iter_mut().find(|x| x.name == t) {
            if let Some(col) = t.column_mut(&c) {
                col.primary_key = true;
                col.nullable = false;
            }
            t.primary_key.push(c);
        }
    }
    Ok((schema, tables))
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
pub(crate) fn read(job: &ReadJob, emit: &mut dyn FnMut(arrow::record_batch::RecordBatch) -> bool) -> Result<()> {
    let mut conn = connect(&job.credentials)?;
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
    let mut result = conn.query_iter(sql).map_err(|e| classify(e, &format!("reading table `{table}`")))?;
    let (names, kinds): (Vec<String>, Vec<ValueKind>) = match &job.query {
        None => t.columns.iter().map(|c| (c.output_name.clone(), c.kind())).unzip(),
        Some(_) => result
            .columns()
            .as_ref()
            .iter()
            .map(|rc| {
                let n = rc.name_str().to_string();
                match t.columns.iter().find(|c| c.name == n || c.output_name == n) {
                    Some(c) => (c.output_name.clone(), c.kind()),
                    None => (n, natural_kind(rc.column_type())),
                }
            })
            .unzip(),
    };
    let mut bb = BatchBuilder::new(&names, &kinds, job.chunk_size.min(65_536));
    for (row_no, row) in (1u64..).zip(result.by_ref()) {
        let row = row.map_err(|e| classify(e, &format!("reading table `{table}`")))?;
        for (i, v) in row.unwrap_raw().into_iter().enumerate() {
            let Some(col) = bb.cols.get_mut(i) else { break };
            let err =
                |m: String| source_error(format!("table `{table}`, column `{}`, row {row_no}: {m}", names[i]), false);
            match v {
                None | Some(Value::NULL) => col.append_null(),
                Some(Value::Bytes(b)) => match (kinds[i], col) {
                    (ValueKind::Binary, crate::batch::ColBuilder::Binary(bin)) => bin.append_value(&b),
                    (kind, col) => {
                        let s = std::str::from_utf8(&b).map_err(|e| err(e.to_string()))?;
                        let zero_date = matches!(kind, ValueKind::Date | ValueKind::Timestamp { .. })
                            && s.starts_with("0000-00-00");
                        if zero_date {
                            col.append_null();
                        } else {
                            col.append_text(s).map_err(err)?;
                        }
                    }
                },
                Some(other) => col.append_text(other.as_sql(true).trim_matches('\'')).map_err(err)?,
            }
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

/// The smallest and largest key of a partitioned table (within its incremental window).
pub(crate) fn key_bounds(job: &ReadJob, column: &str) -> Result<Option<(i64, i64)>> {
    let mut conn = connect(&job.credentials)?;
    let k = quote_ident(Dialect::Mysql, column);
    let name = &job.table.name;
    let sql =
        query::select(Dialect::Mysql, &job.table, &[format!("MIN({k})"), format!("MAX({k})")], job.window.as_ref())?
            .sql;
    let row: Option<mysql::Row> =
        conn.query_first(sql).map_err(|e| classify(e, &format!("reading the key range of `{name}`")))?;
    let v = row.map(|r| r.unwrap_raw()).unwrap_or_default();
    let int = |i: usize| -> Result<Option<i64>> {
        match text(v.get(i).unwrap_or(&None)) {
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

fn natural_kind(t: mysql::consts::ColumnType) -> ValueKind {
    use mysql::consts::ColumnType::*;
    match t {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_LONGLONG | MYSQL_TYPE_INT24
        | MYSQL_TYPE_YEAR => ValueKind::Int,
        MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => ValueKind::Double,
        MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => types::DEFAULT_DECIMAL,
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => ValueKind::Date,
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_DATETIME2 | MYSQL_TYPE_TIMESTAMP2 => {
            ValueKind::Timestamp { tz: false }
        }
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => ValueKind::Time,
        MYSQL_TYPE_JSON => ValueKind::Json,
        _ => ValueKind::Text,
    }
}
