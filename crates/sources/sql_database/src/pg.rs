//! Postgres through sqlx: connection (sqlx's rustls TLS, libpq's `sslmode`), reflection from
//! the catalogs, and reading with `COPY (SELECT …) TO STDOUT (FORMAT binary)` decoded straight
//! from the socket's messages into Arrow builders.
//!
//! Like the other sqlx readers, each reader thread drives the connection on the shared runtime
//! with [`block_on`], one batch per trip, and hands the finished batch to the pipeline outside
//! the async code.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use dlt_core::error::{Error, Result};
use dlt_core::runtime::block_on;
use dlt_postgres_conn::ConnParams;
use dlt_postgres_conn::tls::{self, SslMode};
use futures_util::{Stream, TryStreamExt};
use sqlx::postgres::{PgConnection, PgRow, PgTypeInfo, PgTypeKind};
// every statement is built here from quoted identifiers and escaped literals
use sqlx::{AssertSqlSafe, Column, Connection, Executor, Row, SqlSafeStr, Statement};

use crate::batch::{BatchBuilder, ColBuilder, fits, pow10};
use crate::credentials::Credentials;
use crate::query::{self, quote_ident};
use crate::table::{SqlColumn, TableSchema};
use crate::types::{self, DEFAULT_DECIMAL, Mapped, ValueKind};
use crate::{ReadJob, source_error};

/// Microseconds from 1970-01-01 to 2000-01-01 (Postgres' epoch).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

fn classify(e: sqlx::Error, what: &str) -> Error {
    let c = dlt_postgres_conn::classify_sqlx(&e, what);
    source_error(c.message, c.transient)
}

/// The URL options a Postgres connection takes (libpq's names).
const OPTIONS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "host",
    "port",
    "user",
    "password",
    "dbname",
    "application_name",
    "options",
    "connect_timeout",
];

/// The connection settings, TLS mode, CA file and connect timeout of credentials: the URL's
/// parts, overridden by libpq options in its query (`?host=/var/run/postgresql` for a socket).
fn settings(c: &Credentials) -> Result<(ConnParams, SslMode, Option<PathBuf>, Duration)> {
    let mut p = ConnParams {
        host: c.host.clone(),
        port: c.port,
        user: c.username.clone(),
        password: c.password.as_ref().map(|s| s.expose().to_string()),
        dbname: c.database.clone(),
        application_name: Some("dlt-rs sql_database".into()),
        options: None,
    };
    let (mut mode, mut root, mut timeout) = (SslMode::default(), None, Duration::from_secs(10));
    let bad = |k: &str, v: &str, want: &str| {
        Error::Config(format!("sql_database: postgres option {k}={v} in {} is not {want}", c.display()))
    };
    for (k, v) in &c.query {
        match k.as_str() {
            "sslmode" => mode = tls::parse_mode(v)?,
            "sslrootcert" => root = Some(PathBuf::from(v)),
            "host" => p.host = Some(v.clone()),
            "port" => p.port = Some(v.parse().map_err(|_| bad(k, v, "a port number"))?),
            "user" => p.user = Some(v.clone()),
            "password" => p.password = Some(v.clone()),
            "dbname" => p.dbname = Some(v.clone()),
            "application_name" => p.application_name = Some(v.clone()),
            "options" => p.options = Some(v.clone()),
            "connect_timeout" => {
                let secs: u64 = v.parse().map_err(|_| bad(k, v, "a number of seconds"))?;
                timeout = Duration::from_secs(secs.max(1));
            }
            other => {
                return Err(Error::Config(format!(
                    "sql_database: postgres option `{other}` in {} is not supported; the options are {}",
                    c.display(),
                    OPTIONS.join(", ")
                )));
            }
        }
    }
    Ok((p, mode, root, timeout))
}

/// Open a connection (session in UTC, intervals in ISO 8601).
async fn connect(c: &Credentials) -> Result<PgConnection> {
    let (params, mode, root, timeout) = settings(c)?;
    let options = dlt_postgres_conn::connect_options(&params, &mode, root.as_deref())
        .options([("TimeZone", "UTC"), ("intervalstyle", "iso_8601")]);
    dlt_postgres_conn::connect(&options, timeout, &format!("cannot connect to {}", c.display()))
        .await
        .map_err(|(c, _)| source_error(c.message, c.transient))
}

async fn execute(conn: &mut PgConnection, sql: &str, what: &str) -> Result<()> {
    conn.execute(sqlx::raw_sql(AssertSqlSafe(sql.to_string()))).await.map(|_| ()).map_err(|e| classify(e, what))
}

const REFLECT_SQL: &str = "\
SELECT c.relname::text, c.relkind::text, a.attname::text, format_type(a.atttypid, a.atttypmod), \
       bt.typname::text, bt.typtype::text, bt.typcategory::text, \
       (CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END)::int4, \
       (a.attnotnull OR (t.typtype = 'd' AND t.typnotnull)), \
       (SELECT max(length(e.enumlabel)) FROM pg_enum e WHERE e.enumtypid = bt.oid)::int4 \
FROM pg_class c \
JOIN pg_namespace n ON n.oid = c.relnamespace \
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
JOIN pg_type t ON t.oid = a.atttypid \
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'f', 'v', 'm') AND NOT c.relispartition \
ORDER BY c.relname, a.attnum";

const PK_SQL: &str = "\
SELECT c.relname::text, a.attname::text \
FROM pg_index i \
JOIN pg_class c ON c.oid = i.indrelid \
JOIN pg_namespace n ON n.oid = c.relnamespace \
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
WHERE i.indisprimary AND n.nspname = $1 \
ORDER BY c.relname, k.ord";

fn text(r: &PgRow, i: usize) -> Result<String> {
    r.try_get(i).map_err(|e| source_error(format!("reading the catalog: {e}"), false))
}

/// All tables (and views) of a schema (`None` = `current_schema()`).
pub(crate) fn reflect(c: &Credentials, schema: Option<&str>) -> Result<(String, Vec<TableSchema>)> {
    block_on(async {
        let mut conn = connect(c).await?;
        let schema = match schema {
            Some(s) => s.to_string(),
            None => sqlx::query_scalar::<_, Option<String>>("SELECT current_schema()::text")
                .fetch_one(&mut conn)
                .await
                .map_err(|e| classify(e, "reading the current schema"))?
                .unwrap_or_else(|| "public".into()),
        };
        let rows = sqlx::query(REFLECT_SQL)
            .bind(&schema)
            .fetch_all(&mut conn)
            .await
            .map_err(|e| classify(e, "reflecting tables"))?;
        if rows.is_empty() {
            let schemas: Vec<String> = sqlx::query_scalar(
                "SELECT nspname::text FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' \
                 AND nspname <> 'information_schema' ORDER BY 1",
            )
            .fetch_all(&mut conn)
            .await
            .map_err(|e| classify(e, "listing schemas"))?;
            if !schemas.contains(&schema) {
                return Err(crate::no_such_schema(&schema, &schemas));
            }
        }
        let mut tables: Vec<TableSchema> = vec![];
        for r in &rows {
            let tname = text(r, 0)?;
            let relkind = text(r, 1)?;
            let typmod: i32 = r.try_get(7).map_err(|e| classify(e, "reflecting tables"))?;
            let enum_len: Option<i32> = r.try_get(9).map_err(|e| classify(e, "reflecting tables"))?;
            let not_null: bool = r.try_get(8).map_err(|e| classify(e, "reflecting tables"))?;
            let mapped: Mapped = types::postgres(&text(r, 4)?, &text(r, 5)?, &text(r, 6)?, typmod, enum_len);
            let col = SqlColumn::new(text(r, 2)?, text(r, 3)?, mapped, !not_null);
            match tables.last_mut() {
                Some(t) if t.name == tname => t.columns.push(col),
                _ => tables.push(TableSchema {
                    schema: Some(schema.clone()),
                    name: tname,
                    is_view: matches!(relkind.as_str(), "v" | "m"),
                    columns: vec![col],
                    primary_key: vec![],
                }),
            }
        }
        let keys = sqlx::query(PK_SQL)
            .bind(&schema)
            .fetch_all(&mut conn)
            .await
            .map_err(|e| classify(e, "reflecting primary keys"))?;
        for r in &keys {
            let (t, c) = (text(r, 0)?, text(r, 1)?);
            if let Some(t) = tables.iter_mut().find(|x| x.name == t) {
                t.add_primary_key(c);
            }
        }
        let _ = conn.close().await;
        Ok((schema, tables))
    })
}

/// What a result column's type is, as far as decoding goes (by the OIDs of the built-in types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PgType {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    /// `text`, `varchar`, `bpchar`, `name` and enums: UTF-8 text on the wire.
    TextLike,
    Json,
    Jsonb,
    Uuid,
    Bytea,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Inet,
    /// Arrays and composite types (read as JSON).
    Structured,
    Other,
}

impl PgType {
    fn of(t: &PgTypeInfo) -> PgType {
        match t.kind() {
            PgTypeKind::Enum(_) => return PgType::TextLike,
            PgTypeKind::Array(_) | PgTypeKind::Composite(_) => return PgType::Structured,
            _ => {}
        }
        match t.oid().map(|o| o.0) {
            Some(16) => PgType::Bool,
            Some(21) => PgType::Int2,
            Some(23) => PgType::Int4,
            Some(20) => PgType::Int8,
            Some(26) => PgType::Oid,
            Some(700) => PgType::Float4,
            Some(701) => PgType::Float8,
            Some(1700) => PgType::Numeric,
            Some(25 | 1043 | 1042 | 19) => PgType::TextLike,
            Some(114) => PgType::Json,
            Some(3802) => PgType::Jsonb,
            Some(2950) => PgType::Uuid,
            Some(17) => PgType::Bytea,
            Some(1082) => PgType::Date,
            Some(1083) => PgType::Time,
            Some(1266) => PgType::TimeTz,
            Some(1114) => PgType::Timestamp,
            Some(1184) => PgType::TimestampTz,
            Some(869) => PgType::Inet,
            _ => PgType::Other,
        }
    }
}

/// How a value arrives in the binary COPY stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    /// An unbounded `numeric` read into dlt's default decimal(38, 9) without a hint: a value
    /// that does not fit exactly is an error, never rounded silently.
    NumericExact,
    Text,
    Jsonb,
    Uuid,
    Bytea,
    Date,
    Time,
    Timestamp,
}

/// The wire format of a result column when it can be decoded as `kind` without a cast.
fn direct_wire(t: PgType, kind: ValueKind) -> Option<Wire> {
    use PgType as T;
    Some(match (kind, t) {
        (ValueKind::Bool, T::Bool) => Wire::Bool,
        (ValueKind::Int, T::Int2) => Wire::Int2,
        (ValueKind::Int, T::Int4) => Wire::Int4,
        (ValueKind::Int, T::Int8) => Wire::Int8,
        (ValueKind::Double, T::Float4) => Wire::Float4,
        (ValueKind::Double, T::Float8) => Wire::Float8,
        (ValueKind::Decimal { .. }, T::Numeric) => Wire::Numeric,
        (ValueKind::Text, T::TextLike | T::Json) => Wire::Text,
        (ValueKind::Text, T::Uuid) => Wire::Uuid,
        (ValueKind::Text | ValueKind::Json, T::Jsonb) => Wire::Jsonb,
        (ValueKind::Json, T::Json) => Wire::Text,
        (ValueKind::Binary, T::Bytea) => Wire::Bytea,
        (ValueKind::Date, T::Date) => Wire::Date,
        (ValueKind::Time, T::Time) => Wire::Time,
        (ValueKind::Timestamp { tz: false }, T::Timestamp) => Wire::Timestamp,
        (ValueKind::Timestamp { tz: true }, T::TimestampTz) => Wire::Timestamp,
        _ => return None,
    })
}

/// A cast of `e` (of type `t`) the server does so that the result decodes as `kind`.
fn cast(e: &str, t: PgType, kind: ValueKind) -> (String, Wire) {
    match kind {
        ValueKind::Bool => (format!("({e})::boolean"), Wire::Bool),
        ValueKind::Int => (format!("({e})::int8"), Wire::Int8),
        ValueKind::Double => (format!("({e})::float8"), Wire::Float8),
        ValueKind::Decimal { .. } => (format!("({e})::numeric"), Wire::Numeric),
        // the output function's text: the `inet` → text cast always adds the netmask (`/32`)
        ValueKind::Text if t == PgType::Inet => (format!("textin(inet_out({e}))"), Wire::Text),
        ValueKind::Text => (format!("({e})::text"), Wire::Text),
        ValueKind::Json => (format!("to_json({e})::text"), Wire::Text),
        ValueKind::Binary => (format!("({e})::bytea"), Wire::Bytea),
        ValueKind::Date => (format!("({e})::date"), Wire::Date),
        ValueKind::Time if t == PgType::TimeTz => (format!("(({e}) AT TIME ZONE 'UTC')::time"), Wire::Time),
        ValueKind::Time => (format!("({e})::time"), Wire::Time),
        ValueKind::Timestamp { tz: true } => (format!("({e})::timestamptz"), Wire::Timestamp),
        ValueKind::Timestamp { tz: false } => (format!("({e})::timestamp"), Wire::Timestamp),
    }
}

/// The kind of a query-result column that is not a table column.
fn natural_kind(t: PgType) -> ValueKind {
    use PgType as T;
    match t {
        T::Bool => ValueKind::Bool,
        T::Int2 | T::Int4 | T::Int8 | T::Oid => ValueKind::Int,
        T::Float4 | T::Float8 => ValueKind::Double,
        T::Numeric => DEFAULT_DECIMAL,
        T::Json | T::Jsonb | T::Structured => ValueKind::Json,
        T::Bytea => ValueKind::Binary,
        T::Date => ValueKind::Date,
        T::Time | T::TimeTz => ValueKind::Time,
        T::Timestamp => ValueKind::Timestamp { tz: false },
        T::TimestampTz => ValueKind::Timestamp { tz: true },
        T::TextLike | T::Uuid | T::Inet | T::Other => ValueKind::Text,
    }
}

struct Plan {
    copy_sql: String,
    names: Vec<String>,
    kinds: Vec<ValueKind>,
    wires: Vec<Wire>,
}

async fn plan(conn: &mut PgConnection, job: &ReadJob) -> Result<Plan> {
    let d = crate::credentials::Dialect::Postgres;
    let t = &job.table;
    let (mut names, mut kinds, mut wires, mut exprs) = (vec![], vec![], vec![], vec![]);
    let finish = |exprs: &[String]| -> Result<String> {
        Ok(match &job.query {
            Some(q) => format!("SELECT {} FROM ({q}) AS _dlt_q", exprs.join(", ")),
            None => query::select_range(d, t, exprs, job.window.as_ref(), job.range.as_ref())?.sql,
        })
    };
    let probe = match &job.query {
        Some(q) => format!("SELECT * FROM ({q}) AS _dlt_q"),
        None => finish(&query::plain_exprs(d, t))?,
    };
    let stmt = conn
        .prepare(AssertSqlSafe(probe).into_sql_str())
        .await
        .map_err(|e| classify(e, &format!("preparing the query of `{}`", t.name)))?;
    for (i, c) in stmt.columns().iter().enumerate() {
        let ty = PgType::of(c.type_info());
        let (expr, name, kind) = match &job.query {
            Some(_) => {
                let e = format!("_dlt_q.{}", quote_ident(d, c.name()));
                match t
                    .columns
                    .iter()
                    .find(|x| x.name == c.name())
                    .or_else(|| t.columns.iter().find(|x| x.output_name == c.name()))
                {
                    Some(col) => (e, col.output_name.clone(), col.kind()),
                    None => (e, c.name().to_string(), natural_kind(ty)),
                }
            }
            None => {
                let col = &t.columns[i];
                (quote_ident(d, &col.name), col.output_name.clone(), col.kind())
            }
        };
        let (expr, wire) = match direct_wire(ty, kind) {
            Some(w) => (expr, w),
            None => cast(&expr, ty, kind),
        };
        // rounding an unbounded numeric is chosen by a hint, never silent
        let unhinted_default = match &job.query {
            Some(_) => t.columns.iter().find(|x| x.output_name == name),
            None => t.columns.get(i),
        }
        .is_some_and(|col| col.mapped.default_decimal && col.hint.is_none());
        let wire = if wire == Wire::Numeric && unhinted_default { Wire::NumericExact } else { wire };
        names.push(name);
        kinds.push(kind);
        wires.push(wire);
        exprs.push(expr);
    }
    let sql = finish(&exprs)?;
    Ok(Plan { copy_sql: format!("COPY ({sql}) TO STDOUT (FORMAT binary)"), names, kinds, wires })
}

/// A read buffer over the messages of a COPY stream (one message is usually one row; a value
/// may still span messages).
struct CopyReader<S> {
    messages: S,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl<S, B> CopyReader<S>
where
    S: Stream<Item = std::result::Result<B, sqlx::Error>> + Unpin + Send,
    B: AsRef<[u8]>,
{
    fn new(messages: S) -> Self {
        CopyReader { messages, buf: vec![0; 256 * 1024], pos: 0, end: 0 }
    }

    /// Whether `n` bytes are buffered (the common case, without touching the stream).
    #[inline]
    fn has(&self, n: usize) -> bool {
        self.end - self.pos >= n
    }

    /// Make at least `n` bytes available; `false` at the end of the stream.
    async fn fill(&mut self, n: usize) -> std::result::Result<bool, sqlx::Error> {
        while !self.has(n) {
            let Some(m) = self.messages.try_next().await? else { return Ok(false) };
            let m = m.as_ref();
            if self.buf.len() - self.end < m.len() {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
                if self.buf.len() - self.end < m.len() {
                    self.buf.resize((self.end + m.len()).next_power_of_two(), 0);
                }
            }
            self.buf[self.end..self.end + m.len()].copy_from_slice(m);
            self.end += m.len();
        }
        Ok(true)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        s
    }

    /// Read the rest of the stream (the server's end of the command).
    async fn drain(&mut self) -> std::result::Result<(), sqlx::Error> {
        while self.messages.try_next().await?.is_some() {}
        Ok(())
    }
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}
fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

/// Decode Postgres' binary `numeric` into an integer scaled by `10^scale`, rounding half away
/// from zero; `None` when it does not fit `precision` digits.
fn numeric(b: &[u8], precision: u8, scale: i8, exact: bool) -> std::result::Result<Option<i128>, String> {
    if b.len() < 8 {
        return Err("truncated numeric".into());
    }
    let (ndigits, weight, sign) = (be_i16(&b[0..]) as usize, be_i16(&b[2..]) as i32, be_i16(&b[4..]) as u16);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err("NaN cannot be stored in a decimal column".into()),
        _ => return Err("Infinity cannot be stored in a decimal column".into()),
    }
    if b.len() < 8 + 2 * ndigits {
        return Err("truncated numeric".into());
    }
    let mut acc: i128 = 0;
    let mut round_up = false;
    let mut lost = false;
    for i in 0..ndigits {
        let d = be_i16(&b[8 + 2 * i..]) as i128;
        // power of ten of this base-10000 digit in the scaled result
        let e = 4 * (weight - i as i32) + scale as i32;
        if e >= 0 {
            let Some(term) = pow10(e as u32).and_then(|p| d.checked_mul(p)) else { return Ok(None) };
            let Some(s) = acc.checked_add(term) else { return Ok(None) };
            acc = s;
        } else if e > -4 {
            let div = pow10((-e) as u32).expect("small");
            acc += d / div;
            round_up = (d % div) * 2 >= div;
            lost = d % div != 0 || (i + 1..ndigits).any(|j| be_i16(&b[8 + 2 * j..]) != 0);
            break;
        } else {
            round_up = d >= 5000;
            lost = (i..ndigits).any(|j| be_i16(&b[8 + 2 * j..]) != 0);
            break;
        }
    }
    if exact && lost {
        return Err(format!(
            "{} has more than {scale} decimal places, and the column is an unbounded `numeric` read as \
             dlt's default decimal({precision},{scale}); to load it, give the column a hint: a wider \
             decimal (`data_type = \"decimal\", precision = 38, scale = 18`), `data_type = \"text\"` or \
             `\"double\"`, or `data_type = \"decimal\", precision = {precision}, scale = {scale}` to round",
            numeric_text(b)
        ));
    }
    if round_up {
        acc += 1;
    }
    if sign == 0x4000 {
        acc = -acc;
    }
    Ok(fits(acc, precision).then_some(acc))
}

/// A binary numeric as decimal text (for messages): base-10000 groups placed at their weight.
fn numeric_text(b: &[u8]) -> String {
    let (n, weight, sign) = (be_i16(&b[0..]) as i32, be_i16(&b[2..]) as i32, be_i16(&b[4..]) as u16);
    let group = |w: i32| -> i16 {
        let i = weight - w;
        if (0..n).contains(&i) { be_i16(&b[8 + 2 * i as usize..]) } else { 0 }
    };
    let mut int = String::new();
    for w in (0..=weight.max(0)).rev() {
        int.push_str(&format!("{:04}", group(w)));
    }
    let mut frac = String::new();
    for w in (weight - n + 1..=-1).rev() {
        frac.push_str(&format!("{:04}", group(w)));
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let frac = frac.trim_end_matches('0');
    let sign = if sign == 0x4000 { "-" } else { "" };
    if frac.is_empty() { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") }
}

fn uuid_text(b: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.clear();
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[(byte >> 4) as usize] as char);
        out.push(HEX[(byte & 15) as usize] as char);
    }
}

/// A `real` as the double its text reads as: the number Postgres prints for it (and psycopg2 /
/// dlt read), so `3.14` stays `3.14` instead of the exact widening `3.140000104904175`.
fn widen_f32(f: f32, scratch: &mut String) -> f64 {
    if !f.is_finite() {
        return f as f64;
    }
    if let Some(v) = float4_integer(f) {
        return v;
    }
    float4_text(f, scratch);
    scratch.parse().unwrap_or(f as f64)
}

/// A `real` of magnitude 2^24 or more (always an integer) as Postgres prints it. Postgres takes
/// the shortest decimal strictly inside the float's rounding interval; Rust's formatting also
/// takes one on its edge, which reads back as the same float by ties-to-even, so 73776096
/// would become 73776100 where Postgres prints 7.3776096e+07. Exact in integers.
fn float4_integer(f: f32) -> Option<f64> {
    let a = f.abs();
    if a < 16_777_216.0 {
        return None;
    }
    let bits = a.to_bits();
    let shift = ((bits >> 23) & 0xff) - 150;
    let exact = u128::from(bits & 0x7f_ffff | 0x80_0000) << shift;
    let half = if shift == 0 { 0 } else { 1u128 << (shift - 1) };
    let digits = exact.ilog10() + 1;
    let mut value = exact;
    for n in 1..=digits {
        let p = 10u128.pow(digits - n);
        let (q, r) = (exact / p, exact % p);
        let d = if r * 2 > p || (r * 2 == p && q % 2 == 1) { q + 1 } else { q };
        // rounding up past u128 (near f32::MAX) is never inside the interval
        let Some(c) = d.checked_mul(p) else { continue };
        if c.abs_diff(exact) < half || c == exact {
            value = c;
            break;
        }
    }
    Some(if f < 0.0 { -(value as f64) } else { value as f64 })
}

/// Postgres' text of a `real` (`float4out`): the shortest decimal that reads back as the same
/// float4. Where two shortest decimals are equally near the value, Postgres takes the one with
/// the even last digit (454631.625 prints as 454631.62); Rust's formatting takes the upper one
/// (454631.63), so such ties are turned to the even digit here.
fn float4_text(f: f32, out: &mut String) {
    out.clear();
    let _ = write!(out, "{f}");
    // a tie: the exact value is a short decimal that ends in 5 one digit past the shortest text
    let mut exact = String::with_capacity(24);
    let _ = write!(exact, "{}", f as f64);
    let frac = |s: &str| s.split_once('.').map_or(0, |(_, b)| b.len());
    if !exact.ends_with('5') || !exact.contains('.') || frac(&exact) != frac(out) + 1 {
        return;
    }
    let down = exact[..exact.len() - 1].trim_end_matches('.').to_string();
    let even = down.bytes().next_back().is_some_and(|d| d.is_ascii_digit() && (d - b'0').is_multiple_of(2));
    let pick = if even { down } else { increment_last_digit(&down) };
    if pick.parse::<f32>().ok() == Some(f) {
        *out = pick;
    }
}

/// A plain decimal (maybe negative) plus one unit in its last digit, with carries.
fn increment_last_digit(s: &str) -> String {
    let mut b = s.as_bytes().to_vec();
    let mut i = b.len();
    loop {
        if i == 0 {
            b.insert(usize::from(b.first() == Some(&b'-')), b'1');
            break;
        }
        i -= 1;
        match b[i] {
            b'9' => b[i] = b'0',
            b'0'..=b'8' => {
                b[i] += 1;
                break;
            }
            _ => {}
        }
    }
    String::from_utf8(b).expect("ASCII digits")
}

fn put(b: &mut ColBuilder, wire: Wire, v: &[u8], scratch: &mut String) -> std::result::Result<(), String> {
    let len_err = || format!("unexpected {} byte value for {wire:?}", v.len());
    match (wire, b) {
        (Wire::Bool, ColBuilder::Bool(b)) => b.append_value(*v.first().ok_or_else(len_err)? != 0),
        (Wire::Int2, ColBuilder::Int(b)) if v.len() == 2 => b.append_value(be_i16(v) as i64),
        (Wire::Int4, ColBuilder::Int(b)) if v.len() == 4 => b.append_value(be_i32(v) as i64),
        (Wire::Int8, ColBuilder::Int(b)) if v.len() == 8 => b.append_value(be_i64(v)),
        (Wire::Float4, ColBuilder::Double(b)) if v.len() == 4 => {
            b.append_value(widen_f32(f32::from_bits(be_i32(v) as u32), scratch))
        }
        (Wire::Float8, ColBuilder::Double(b)) if v.len() == 8 => b.append_value(f64::from_bits(be_i64(v) as u64)),
        (Wire::Numeric | Wire::NumericExact, ColBuilder::Decimal(b, p, s)) => {
            match numeric(v, *p, *s, wire == Wire::NumericExact)? {
                Some(x) => b.append_value(x),
                None => return Err(format!("value does not fit decimal({p},{s})")),
            }
        }
        (Wire::Text, ColBuilder::Text(b)) => b.append_value(std::str::from_utf8(v).map_err(|e| e.to_string())?),
        (Wire::Jsonb, ColBuilder::Text(b)) => {
            let body = v.get(1..).ok_or_else(len_err)?;
            b.append_value(std::str::from_utf8(body).map_err(|e| e.to_string())?)
        }
        (Wire::Uuid, ColBuilder::Text(b)) if v.len() == 16 => {
            uuid_text(v, scratch);
            b.append_value(scratch.as_str())
        }
        (Wire::Bytea, ColBuilder::Binary(b)) => b.append_value(v),
        (Wire::Date, ColBuilder::Date(b)) if v.len() == 4 => {
            let d = be_i32(v);
            if d == i32::MAX || d == i32::MIN {
                return Err("an infinite date cannot be stored".into());
            }
            b.append_value(d.checked_add(PG_EPOCH_DAYS).ok_or("date out of range")?)
        }
        (Wire::Time, ColBuilder::Time(b)) if v.len() == 8 => b.append_value(be_i64(v)),
        (Wire::Timestamp, ColBuilder::Timestamp(b, _)) if v.len() == 8 => {
            let t = be_i64(v);
            if t == i64::MAX || t == i64::MIN {
                return Err("an infinite timestamp cannot be stored".into());
            }
            b.append_value(t.checked_add(PG_EPOCH_MICROS).ok_or("timestamp out of range")?)
        }
        (w, _) => return Err(format!("cannot decode {w:?} ({} bytes)", v.len())),
    }
    Ok(())
}

/// Read a table (or a replacement query) as Arrow batches of `job.chunk_size` rows; `emit`
/// returns `false` when nobody wants more.
pub(crate) fn read(job: &ReadJob, emit: &mut dyn FnMut(arrow::record_batch::RecordBatch) -> bool) -> Result<()> {
    let table = job.table.name.clone();
    let (mut conn, p) = block_on(async {
        let mut conn = connect(&job.credentials).await?;
        if let Some(id) = &job.snapshot {
            // the partition coordinator's snapshot: every range sees the same table
            let sql = format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                pg_text_literal(id)
            );
            execute(&mut conn, &sql, &format!("importing the snapshot of the partitions of `{table}`")).await?;
        }
        let p = plan(&mut conn, job).await?;
        Ok::<_, Error>((conn, p))
    })?;
    tracing::debug!(table = %table, sql = %p.copy_sql, "sql_database: reading");
    tracing::info!(target: "dlt::sql", source = "sql_database", "{}", p.copy_sql);
    let what = format!("reading table `{table}`");
    let fetch = |e: sqlx::Error| classify(e, &what);
    let eof = || source_error(format!("{what}: the COPY stream ended early"), true);
    let messages = block_on(conn.copy_out_raw(&p.copy_sql)).map_err(fetch)?;
    let mut s = CopyReader::new(messages);
    // header: signature, flags, extension area
    if !block_on(s.fill(19)).map_err(fetch)? {
        return Err(eof());
    }
    if s.take(11) != b"PGCOPY\n\xff\r\n\0" {
        return Err(source_error(format!("{what}: not a binary COPY stream"), false));
    }
    let _flags = s.take(4);
    let ext = be_i32(s.take(4)) as usize;
    if !block_on(s.fill(ext)).map_err(fetch)? {
        return Err(eof());
    }
    s.take(ext);
    let ncols = p.kinds.len();
    let mut bb = BatchBuilder::new(&p.names, &p.kinds, job.chunk_size.min(65_536));
    let mut scratch = String::with_capacity(36);
    let mut row_no: u64 = 0;
    let mut done = false;
    while !done {
        // one batch per trip into the runtime; the batch goes to `emit` outside it
        block_on(async {
            while bb.rows < job.chunk_size {
                if !s.has(2) && !s.fill(2).await.map_err(fetch)? {
                    return Err(eof());
                }
                let n = be_i16(s.take(2));
                if n == -1 {
                    s.drain().await.map_err(fetch)?;
                    done = true;
                    return Ok(());
                }
                if n as usize != ncols {
                    return Err(source_error(format!("{what}: row with {n} fields, expected {ncols}"), false));
                }
                for (i, col) in bb.cols.iter_mut().enumerate() {
                    if !s.has(4) && !s.fill(4).await.map_err(fetch)? {
                        return Err(eof());
                    }
                    let len = be_i32(s.take(4));
                    if len < 0 {
                        col.append_null();
                        continue;
                    }
                    let len = len as usize;
                    if !s.has(len) && !s.fill(len).await.map_err(fetch)? {
                        return Err(eof());
                    }
                    let v = s.take(len);
                    put(col, p.wires[i], v, &mut scratch).map_err(|m| {
                        source_error(
                            format!("table `{table}`, column `{}`, row {}: {m}", p.names[i], row_no + 1),
                            false,
                        )
                    })?;
                }
                bb.rows += 1;
                row_no += 1;
            }
            Ok::<(), Error>(())
        })?;
        if bb.rows > 0 && !emit(bb.finish()?) {
            return Ok(());
        }
    }
    drop(s);
    block_on(async {
        let _ = conn.close().await;
    });
    Ok(())
}

fn pg_text_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A connection in a `REPEATABLE READ` transaction whose snapshot was exported for the ranges of
/// a partitioned read; the snapshot lives as long as the transaction, so this is dropped (and
/// the transaction ended) only after every range was read.
pub(crate) struct SnapshotHolder {
    pub(crate) id: String,
    conn: Option<PgConnection>,
}

impl Drop for SnapshotHolder {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            block_on(async {
                let _ = c.close().await;
            });
        }
    }
}

/// The smallest and largest key of a partitioned table (within its incremental window), read in
/// a transaction whose snapshot the ranges import (a standby that cannot export one: no shared
/// snapshot).
pub(crate) fn key_bounds(job: &ReadJob, column: &str) -> Result<(crate::KeyBounds, Option<SnapshotHolder>)> {
    let d = crate::credentials::Dialect::Postgres;
    let name = &job.table.name;
    let what = format!("reading the key range of `{name}`");
    block_on(async {
        let mut conn = connect(&job.credentials).await?;
        execute(&mut conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", &what).await?;
        let snapshot = match sqlx::query_scalar::<_, String>("SELECT pg_export_snapshot()").fetch_one(&mut conn).await {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::debug!(table = %name, error = %e, "sql_database: no exported snapshot, ranges read on their own");
                execute(&mut conn, "ROLLBACK; BEGIN", "restarting the transaction").await?;
                None
            }
        };
        let k = quote_ident(d, column);
        let sql =
            query::select(d, &job.table, &[format!("min({k})::int8"), format!("max({k})::int8")], job.window.as_ref())?
                .sql;
        let row = sqlx::query(AssertSqlSafe(sql)).fetch_one(&mut conn).await.map_err(|e| classify(e, &what))?;
        let lo: Option<i64> = row.try_get(0).map_err(|e| classify(e, &what))?;
        let hi: Option<i64> = row.try_get(1).map_err(|e| classify(e, &what))?;
        let bounds = lo.zip(hi);
        Ok((bounds, snapshot.map(|id| SnapshotHolder { id, conn: Some(conn) })))
    })
}

/// The oldest transaction of other sessions in the reader's database (autovacuum never writes
/// rows), how many sessions are hidden from us (no `pg_read_all_stats`: their `backend_type` is
/// NULL), and the watermark — one second before the oldest `xact_start`, else before `now()`,
/// capped by `now() - $1 seconds` when sessions are hidden — as text of the cursor's type
/// (`timestamptz`: UTC with offset; `timestamp`: the wall clock of the server's default time
/// zone, which `now()` defaults store).
const WATERMARK_SQL: &str = "\
WITH a AS ( \
  SELECT min(xact_start) FILTER (WHERE xact_start IS NOT NULL AND state IS DISTINCT FROM 'idle' \
                                 AND backend_type NOT IN ('autovacuum worker', 'autovacuum launcher')) AS oldest, \
         count(*) FILTER (WHERE backend_type IS NULL) AS hidden \
  FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = current_database()), \
w AS ( \
  SELECT hidden, least(oldest, now(), CASE WHEN hidden > 0 THEN now() - make_interval(secs => $1::float8) END) \
                 - interval '1 second' AS w \
  FROM a) \
SELECT hidden::int8, \
       to_char(w, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), \
       to_char(w AT TIME ZONE (SELECT reset_val FROM pg_settings WHERE name = 'TimeZone'), 'YYYY-MM-DD\"T\"HH24:MI:SS.US') \
FROM w";

/// The safe watermark of an incremental read: the start of the oldest transaction open in the
/// database other than ours (`idle in transaction` ones too: a transaction that has not written
/// yet can still write its `now()`), else the server's `now()`, one second earlier (a
/// transaction whose first statement has arrived, its `now()` fixed, may not be listed yet).
/// When other users' sessions are hidden (no `pg_read_all_stats`), `now()` minus
/// `fallback_lag` seconds caps it; without a fallback lag that is an error.
pub(crate) fn safe_watermark(
    c: &Credentials,
    table: &TableSchema,
    cursor: &SqlColumn,
    tz: bool,
    fallback_lag: Option<f64>,
) -> Result<serde_json::Value> {
    let what = format!("reading the safe watermark of `{}` from pg_stat_activity", table.name);
    let row = block_on(async {
        let mut conn = connect(c).await?;
        let row =
            sqlx::query(WATERMARK_SQL).bind(fallback_lag).fetch_one(&mut conn).await.map_err(|e| classify(e, &what));
        let _ = conn.close().await;
        row
    })?;
    let hidden: i64 = row.try_get(0).map_err(|e| classify(e, &what))?;
    if hidden > 0 && fallback_lag.is_none() {
        return Err(source_error(
            format!(
                "safe_watermark on `{}` (cursor `{}`): {hidden} session(s) of other users in database `{}` are hidden \
                 from pg_stat_activity, so their open transactions cannot be seen; grant pg_read_all_stats to the \
                 loading user, or set safe_watermark_fallback_lag (seconds longer than any transaction runs)",
                table.name,
                cursor.name,
                c.database.as_deref().unwrap_or("?"),
            ),
            false,
        ));
    }
    let v: String = row.try_get(if tz { 1 } else { 2 }).map_err(|e| classify(e, &what))?;
    tracing::debug!(table = %table.name, watermark = %v, hidden, "sql_database: safe watermark");
    Ok(serde_json::Value::String(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(ndigits: &[i16], weight: i16, sign: u16, dscale: i16) -> Vec<u8> {
        let mut v = vec![];
        v.extend((ndigits.len() as i16).to_be_bytes());
        v.extend(weight.to_be_bytes());
        v.extend(sign.to_be_bytes());
        v.extend(dscale.to_be_bytes());
        for d in ndigits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numeric_decoding() {
        // 12345.678 = [1, 2345, 6780] weight 1
        let b = num(&[1, 2345, 6780], 1, 0, 3);
        assert_eq!(numeric(&b, 10, 3, false).unwrap(), Some(12_345_678));
        assert_eq!(numeric(&b, 10, 2, false).unwrap(), Some(1_234_568));
        assert_eq!(numeric(&b, 10, 0, false).unwrap(), Some(12_346));
        assert_eq!(numeric(&b, 4, 0, false).unwrap(), None);
        // -0.0005 = [5] weight -1 → rounds to -0.001 at scale 3
        let b = num(&[5], -1, 0x4000, 4);
        assert_eq!(numeric(&b, 5, 3, false).unwrap(), Some(-1));
        assert_eq!(numeric(&b, 5, 4, false).unwrap(), Some(-5));
        assert_eq!(numeric(&num(&[], 0, 0, 0), 5, 2, false).unwrap(), Some(0));
        assert!(numeric(&num(&[], 0, 0xC000, 0), 5, 2, false).is_err());
        // exact: a value that does not fit the scale is an error naming it; one that does, loads
        let tiny = num(&[1], -8, 0x4000, 32); // -1e-32
        let err = numeric(&tiny, 38, 9, true).unwrap_err();
        assert!(err.starts_with("-0.00000000000000000000000000000001 has more than 9 decimal places"), "{err}");
        let b = num(&[1, 0, 5], 0, 0, 8); // 1.00000005: fits 9 places
        assert_eq!(numeric(&b, 38, 9, true).unwrap(), Some(1_000_000_050));
        let b = num(&[1, 0, 0, 5], 0, 0, 12); // 1.000000000005
        assert!(numeric(&b, 38, 9, true).unwrap_err().starts_with("1.000000000005 has more"));
        assert_eq!(numeric_text(&num(&[12, 3400], 1, 0, 0)), "123400");
        assert_eq!(numeric_text(&num(&[5], -1, 0, 4)), "0.0005");
        let mut s = String::new();
        uuid_text(&[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 1, 2, 3, 4, 5, 6, 7], &mut s);
        assert_eq!(s, "12345678-9abc-def0-0001-020304050607");
    }

    #[test]
    fn real_widening() {
        let mut s = String::new();
        assert_eq!(widen_f32(0.3, &mut s), 0.3);
        assert_eq!(widen_f32(-0.1, &mut s), -0.1);
        assert_eq!(widen_f32(f32::MAX, &mut s), 3.4028235e38);
        assert_eq!(widen_f32(1e-45, &mut s), 1e-45);
        assert_eq!(widen_f32(f32::NEG_INFINITY, &mut s), f64::NEG_INFINITY);
        assert!(widen_f32(f32::NAN, &mut s).is_nan());
        // round-trips to the same float4
        for f in [0.3f32, 1.0 / 3.0, 16_777_217.0, f32::MIN_POSITIVE] {
            assert_eq!(widen_f32(f, &mut s) as f32, f);
        }
        // a tie between two shortest decimals goes to the even digit, as Postgres prints it
        let tie = 454_631.625_f64 as f32; // exactly representable; 454631.62 and .63 both read back as it
        assert_eq!(widen_f32(tie, &mut s), 454_631.62);
        assert_eq!(widen_f32(-tie, &mut s), -454_631.62);
        assert_eq!(increment_last_digit("-9.99"), "-10.00");
        assert_eq!(increment_last_digit("199"), "200");
    }

    /// Every `real` reads as the number the server itself prints: random values and the
    /// neighbours of known ties, compared with `real::text` of the real server.
    #[test]
    fn real_values_match_the_text_postgres_prints() {
        let c = Credentials::parse(&dlt_testkit::services::postgres_url()).unwrap();
        let rows = match block_on(async {
            let mut conn = connect(&c).await?;
            sqlx::query(
                "SELECT r, r::text FROM (SELECT (random() * 10 ^ (random() * 44 - 6))::real AS r \
                 FROM generate_series(1, 20000) UNION ALL SELECT unnest(ARRAY[454631.625, -454631.625, \
                 0.5, 1.5, 2.5, 100.375, 3.4028235e38, 1.17549435e-38]::real[])) t",
            )
            .fetch_all(&mut conn)
            .await
            .map_err(|e| classify(e, "query"))
        }) {
            Ok(r) => r,
            Err(e) => return dlt_testkit::services::skip_or_fail("PostgreSQL", e),
        };
        let mut s = String::new();
        let mut wrong = vec![];
        for r in &rows {
            let (f, text): (f32, String) = (r.get(0), r.get(1));
            let want: f64 = text.parse().unwrap();
            if widen_f32(f, &mut s) != want {
                wrong.push(format!("{text} read as {s}"));
            }
        }
        assert!(wrong.is_empty(), "{} of {} differ: {:?}", wrong.len(), rows.len(), &wrong[..wrong.len().min(10)]);
    }

    #[test]
    fn url_options_reach_the_connection_and_unknown_ones_are_refused() {
        let c = Credentials::parse(
            "postgresql://u:pw@h:5433/db?host=/run/postgresql&sslmode=verify-full&connect_timeout=3",
        )
        .unwrap();
        let (p, mode, _, timeout) = settings(&c).unwrap();
        assert_eq!(p.host.as_deref(), Some("/run/postgresql"));
        assert_eq!((p.port, p.dbname.as_deref(), p.password.as_deref()), (Some(5433), Some("db"), Some("pw")));
        assert_eq!((mode, timeout), (SslMode::VerifyFull, Duration::from_secs(3)));
        let c = Credentials::parse("postgresql://u:pw@h/db?target_session_attrs=read-write").unwrap();
        let e = settings(&c).unwrap_err().to_string();
        assert!(e.contains("`target_session_attrs`") && e.contains("sslmode") && !e.contains("pw"), "{e}");
    }
}
