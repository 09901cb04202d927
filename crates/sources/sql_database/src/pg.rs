//! Postgres: connection (rustls TLS from the Postgres destination), reflection from the
//! catalogs, and reading with `COPY (SELECT …) TO STDOUT (FORMAT binary)` decoded straight into
//! Arrow builders.

use std::fmt::Write as _;
use std::io::Read;
use std::str::FromStr;

use dlt_core::error::{Error, Result};
use postgres::types::{Kind, Type};

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

pub(crate) fn classify(e: postgres::Error, what: &str) -> Error {
    let c = dlt_postgres_conn::classify(&e, what);
    source_error(c.message, c.transient)
}

/// Open a connection (session in UTC, intervals in ISO 8601).
pub(crate) fn connect(c: &Credentials) -> Result<postgres::Client> {
    let mut plain = c.clone();
    plain.drivername = "postgresql".into();
    let (client_url, mode, root) = dlt_postgres_conn::tls::split_tls_options(&plain.url())?;
    let mut cfg = postgres::Config::from_str(&client_url)
        .map_err(|e| Error::Config(format!("invalid postgres credentials {}: {e}", c.display())))?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(std::time::Duration::from_secs(10));
    }
    cfg.application_name("dlt-rs sql_database");
    let mut client = match dlt_postgres_conn::tls::connector(&mode, root.as_ref())? {
        None => cfg.connect(postgres::NoTls),
        Some(t) => cfg.connect(t),
    }
    .map_err(|e| classify(e, &format!("cannot connect to {}", c.display())))?;
    client
        .batch_execute("SET TimeZone = 'UTC'; SET intervalstyle = 'iso_8601'")
        .map_err(|e| classify(e, "setting up the session"))?;
    Ok(client)
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

/// All tables (and views) of a schema (`None` = `current_schema()`).
pub(crate) fn reflect(client: &mut postgres::Client, schema: Option<&str>) -> Result<(String, Vec<TableSchema>)> {
    let schema = match schema {
        Some(s) => s.to_string(),
        None => client
            .query_one("SELECT current_schema()::text", &[])
            .map_err(|e| classify(e, "reading the current schema"))?
            .get::<_, Option<String>>(0)
            .unwrap_or_else(|| "public".into()),
    };
    let rows = client.query(REFLECT_SQL, &[&schema]).map_err(|e| classify(e, "reflecting tables"))?;
    if rows.is_empty() {
        let schemas: Vec<String> = client
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' \
                 AND nspname <> 'information_schema' ORDER BY 1",
                &[],
            )
            .map_err(|e| classify(e, "listing schemas"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !schemas.contains(&schema) {
            return Err(crate::no_such_schema(&schema, &schemas));
        }
    }
    let mut tables: Vec<TableSchema> = vec![];
    for r in rows {
        let tname: String = r.get(0);
        let relkind: String = r.get(1);
        let mapped: Mapped =
            types::postgres(&r.get::<_, String>(4), &r.get::<_, String>(5), &r.get::<_, String>(6), r.get(7), r.get(9));
        let col = SqlColumn::new(r.get::<_, String>(2), r.get::<_, String>(3), mapped, !r.get::<_, bool>(8));
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
    for r in client.query(PK_SQL, &[&schema]).map_err(|e| classify(e, "reflecting primary keys"))? {
        let (t, c): (String, String) = (r.get(0), r.get(1));
        if let Some(t) = tables.iter_mut().find(|x| x.name == t) {
            t.add_primary_key(c);
        }
    }
    Ok((schema, tables))
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
fn direct_wire(t: &Type, kind: ValueKind) -> Option<Wire> {
    let text_like =
        matches!(*t, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME) || matches!(t.kind(), Kind::Enum(_));
    Some(match kind {
        ValueKind::Bool if *t == Type::BOOL => Wire::Bool,
        ValueKind::Int if *t == Type::INT2 => Wire::Int2,
        ValueKind::Int if *t == Type::INT4 => Wire::Int4,
        ValueKind::Int if *t == Type::INT8 => Wire::Int8,
        ValueKind::Double if *t == Type::FLOAT4 => Wire::Float4,
        ValueKind::Double if *t == Type::FLOAT8 => Wire::Float8,
        ValueKind::Decimal { .. } if *t == Type::NUMERIC => Wire::Numeric,
        ValueKind::Text if text_like || *t == Type::JSON => Wire::Text,
        ValueKind::Text if *t == Type::UUID => Wire::Uuid,
        ValueKind::Text | ValueKind::Json if *t == Type::JSONB => Wire::Jsonb,
        ValueKind::Json if *t == Type::JSON => Wire::Text,
        ValueKind::Binary if *t == Type::BYTEA => Wire::Bytea,
        ValueKind::Date if *t == Type::DATE => Wire::Date,
        ValueKind::Time if *t == Type::TIME => Wire::Time,
        ValueKind::Timestamp { tz: false } if *t == Type::TIMESTAMP => Wire::Timestamp,
        ValueKind::Timestamp { tz: true } if *t == Type::TIMESTAMPTZ => Wire::Timestamp,
        _ => return None,
    })
}

/// A cast of `e` (of type `t`) the server does so that the result decodes as `kind`.
fn cast(e: &str, t: &Type, kind: ValueKind) -> (String, Wire) {
    match kind {
        ValueKind::Bool => (format!("({e})::boolean"), Wire::Bool),
        ValueKind::Int => (format!("({e})::int8"), Wire::Int8),
        ValueKind::Double => (format!("({e})::float8"), Wire::Float8),
        ValueKind::Decimal { .. } => (format!("({e})::numeric"), Wire::Numeric),
        // the output function's text: the `inet` → text cast always adds the netmask (`/32`)
        ValueKind::Text if *t == Type::INET => (format!("textin(inet_out({e}))"), Wire::Text),
        ValueKind::Text => (format!("({e})::text"), Wire::Text),
        ValueKind::Json => (format!("to_json({e})::text"), Wire::Text),
        ValueKind::Binary => (format!("({e})::bytea"), Wire::Bytea),
        ValueKind::Date => (format!("({e})::date"), Wire::Date),
        ValueKind::Time if *t == Type::TIMETZ => (format!("(({e}) AT TIME ZONE 'UTC')::time"), Wire::Time),
        ValueKind::Time => (format!("({e})::time"), Wire::Time),
        ValueKind::Timestamp { tz: true } => (format!("({e})::timestamptz"), Wire::Timestamp),
        ValueKind::Timestamp { tz: false } => (format!("({e})::timestamp"), Wire::Timestamp),
    }
}

/// The kind of a query-result column that is not a table column.
fn natural_kind(t: &Type) -> ValueKind {
    match *t {
        Type::BOOL => ValueKind::Bool,
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => ValueKind::Int,
        Type::FLOAT4 | Type::FLOAT8 => ValueKind::Double,
        Type::NUMERIC => DEFAULT_DECIMAL,
        Type::JSON | Type::JSONB => ValueKind::Json,
        Type::BYTEA => ValueKind::Binary,
        Type::DATE => ValueKind::Date,
        Type::TIME | Type::TIMETZ => ValueKind::Time,
        Type::TIMESTAMP => ValueKind::Timestamp { tz: false },
        Type::TIMESTAMPTZ => ValueKind::Timestamp { tz: true },
        _ if matches!(t.kind(), Kind::Array(_) | Kind::Composite(_)) => ValueKind::Json,
        _ => ValueKind::Text,
    }
}

struct Plan {
    copy_sql: String,
    names: Vec<String>,
    kinds: Vec<ValueKind>,
    wires: Vec<Wire>,
}

fn plan(client: &mut postgres::Client, job: &ReadJob) -> Result<Plan> {
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
    let stmt = client.prepare(&probe).map_err(|e| classify(e, &format!("preparing the query of `{}`", t.name)))?;
    for (i, c) in stmt.columns().iter().enumerate() {
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
                    None => (e, c.name().to_string(), natural_kind(c.type_())),
                }
            }
            None => {
                let col = &t.columns[i];
                (quote_ident(d, &col.name), col.output_name.clone(), col.kind())
            }
        };
        let (expr, wire) = match direct_wire(c.type_(), kind) {
            Some(w) => (expr, w),
            None => cast(&expr, c.type_(), kind),
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

/// A read buffer over the COPY stream.
struct Stream<R: Read> {
    r: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl<R: Read> Stream<R> {
    /// Make at least `n` bytes available; `false` at the end of the stream.
    fn ensure(&mut self, n: usize) -> std::io::Result<bool> {
        while self.end - self.pos < n {
            if self.buf.len() - self.pos < n.max(16 * 1024) {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
                if self.buf.len() < n {
                    self.buf.resize(n.next_power_of_two(), 0);
                }
            }
            let k = self.r.read(&mut self.buf[self.end..])?;
            if k == 0 {
                return Ok(false);
            }
            self.end += k;
        }
        Ok(true)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        s
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
    let mut client = connect(&job.credentials)?;
    if let Some(id) = &job.snapshot {
        // the partition coordinator's snapshot: every range sees the same table
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                pg_text_literal(id)
            ))
            .map_err(|e| classify(e, &format!("importing the snapshot of the partitions of `{}`", job.table.name)))?;
    }
    let p = plan(&mut client, job)?;
    tracing::debug!(table = %job.table.name, sql = %p.copy_sql, "sql_database: reading");
    let table = job.table.name.clone();
    tracing::info!(target: "dlt::sql", source = "sql_database", "{}", p.copy_sql);
    let reader = client.copy_out(&p.copy_sql).map_err(|e| classify(e, &format!("reading table `{table}`")))?;
    let mut s = Stream { r: reader, buf: vec![0; 256 * 1024], pos: 0, end: 0 };
    let io = |e: std::io::Error| source_error(format!("reading table `{table}`: {e}"), true);
    let eof = || source_error(format!("reading table `{table}`: the COPY stream ended early"), true);
    // header: signature, flags, extension area
    if !s.ensure(19).map_err(io)? {
        return Err(eof());
    }
    if s.take(11) != b"PGCOPY\n\xff\r\n\0" {
        return Err(source_error(format!("reading table `{table}`: not a binary COPY stream"), false));
    }
    let _flags = s.take(4);
    let ext = be_i32(s.take(4)) as usize;
    if !s.ensure(ext).map_err(io)? {
        return Err(eof());
    }
    s.take(ext);
    let ncols = p.kinds.len();
    let mut bb = BatchBuilder::new(&p.names, &p.kinds, job.chunk_size.min(65_536));
    let mut scratch = String::with_capacity(36);
    let mut row_no: u64 = 0;
    loop {
        if !s.ensure(2).map_err(io)? {
            return Err(eof());
        }
        let n = be_i16(s.take(2));
        if n == -1 {
            break;
        }
        if n as usize != ncols {
            return Err(source_error(format!("reading table `{table}`: row with {n} fields, expected {ncols}"), false));
        }
        for (i, col) in bb.cols.iter_mut().enumerate() {
            if !s.ensure(4).map_err(io)? {
                return Err(eof());
            }
            let len = be_i32(s.take(4));
            if len < 0 {
                col.append_null();
                continue;
            }
            let len = len as usize;
            if !s.ensure(len).map_err(io)? {
                return Err(eof());
            }
            let v = s.take(len);
            put(col, p.wires[i], v, &mut scratch).map_err(|m| {
                source_error(format!("table `{table}`, column `{}`, row {}: {m}", p.names[i], row_no + 1), false)
            })?;
        }
        bb.rows += 1;
        row_no += 1;
        if bb.rows >= job.chunk_size && !emit(bb.finish()?) {
            return Ok(());
        }
    }
    // drain the end of the stream so the command completes
    let mut rest = [0u8; 64];
    while s.r.read(&mut rest).map_err(io)? > 0 {}
    drop(s);
    if bb.rows > 0 {
        emit(bb.finish()?);
    }
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
    _client: postgres::Client,
}

/// The smallest and largest key of a partitioned table (within its incremental window), read in
/// a transaction whose snapshot the ranges import (a standby that cannot export one: no shared
/// snapshot).
pub(crate) fn key_bounds(job: &ReadJob, column: &str) -> Result<(crate::KeyBounds, Option<SnapshotHolder>)> {
    let d = crate::credentials::Dialect::Postgres;
    let mut client = connect(&job.credentials)?;
    let name = &job.table.name;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .map_err(|e| classify(e, &format!("reading the key range of `{name}`")))?;
    let snapshot = match client.query_one("SELECT pg_export_snapshot()", &[]) {
        Ok(r) => Some(r.get::<_, String>(0)),
        Err(e) => {
            tracing::debug!(table = %name, error = %e, "sql_database: no exported snapshot, ranges read on their own");
            client.batch_execute("ROLLBACK; BEGIN").map_err(|e| classify(e, "restarting the transaction"))?;
            None
        }
    };
    let k = quote_ident(d, column);
    let sql =
        query::select(d, &job.table, &[format!("min({k})::int8"), format!("max({k})::int8")], job.window.as_ref())?.sql;
    let row = client.query_one(&sql, &[]).map_err(|e| classify(e, &format!("reading the key range of `{name}`")))?;
    let bounds = match (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1)) {
        (Some(lo), Some(hi)) => Some((lo, hi)),
        _ => None,
    };
    Ok((bounds, snapshot.map(|id| SnapshotHolder { id, _client: client })))
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
    let mut client = connect(c)?;
    let what = format!("reading the safe watermark of `{}` from pg_stat_activity", table.name);
    let row = client.query_one(WATERMARK_SQL, &[&fallback_lag]).map_err(|e| classify(e, &what))?;
    let hidden: i64 = row.get(0);
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
    let v: String = row.get(if tz { 1 } else { 2 });
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
        let url = dlt_testkit::services::postgres_url();
        let mut c = match postgres::Client::connect(&url, postgres::NoTls) {
            Ok(c) => c,
            Err(e) => return dlt_testkit::services::skip_or_fail("PostgreSQL", e),
        };
        let rows = c
            .query(
                "SELECT r, r::text FROM (SELECT (random() * 10 ^ (random() * 44 - 6))::real AS r \
                 FROM generate_series(1, 20000) UNION ALL SELECT unnest(ARRAY[454631.625, -454631.625, \
                 0.5, 1.5, 2.5, 100.375, 3.4028235e38, 1.17549435e-38]::real[])) t",
                &[],
            )
            .unwrap();
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
}
