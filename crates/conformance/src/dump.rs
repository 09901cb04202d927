//! Canonical dump of dlt datasets stored in a DuckDB file, as `dump.py` produces it.
//!
//! dump.py reads every value through the Python `duckdb` client and canonicalizes the
//! resulting Python object; this module gets the same result by letting DuckDB render each
//! value as text (recursively for LIST/STRUCT/MAP/UNION, via `to_json` with text leaves) and
//! converting that text the way the Python client + `canon_value` would (e.g. `str(Decimal)`,
//! `repr(float)`, `datetime.strftime`). Token assignment (load ids, wall-clock columns, row
//! ids) and row ordering follow dump.py step by step, including the order in which row
//! signatures are memoized.

use crate::pyfmt::{
    self, cmp_int_text, decimal_str, float_number, float_repr, is_int_text, json_str, normalize_int_text,
    number_from_text, parse_py_float, parse_py_int, repr_bytes, sk,
};
use anyhow::Context as _;
use duckdb::core::{LogicalTypeHandle, LogicalTypeId};
use duckdb::{AccessMode, Config, Connection};
use serde_json::{Map, Value, json};
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

pub const DUMP_FORMAT_VERSION: i64 = 1;
pub const ID_COLUMNS: [&str; 3] = ["_dlt_id", "_dlt_parent_id", "_dlt_root_id"];
pub const LOAD_ID_COLUMN: &str = "_dlt_load_id";
pub const SYSTEM_TABLES: [&str; 3] = ["_dlt_loads", "_dlt_version", "_dlt_pipeline_state"];
/// Wall-clock dependent columns (scd2 validity) tokenized per table unless a case overrides.
pub const DEFAULT_TIME_TOKEN_COLUMNS: [&str; 2] = ["_dlt_valid_from", "_dlt_valid_to"];
/// Values at/after this year are "far future" sentinels and stay literal.
pub const LITERAL_YEAR_FROM: i128 = 9000;
/// Depth limit of the recursive row signature (as in dump.py).
const MAX_SIGNATURE_DEPTH: usize = 64;

/// Opens `db_path` read-only and dumps `datasets` (`time_token_columns`: `None` = the default
/// `_dlt_valid_from`/`_dlt_valid_to`; `Some(&[])` disables time tokens).
pub fn dump(db_path: &Path, datasets: &[String], time_token_columns: Option<&[String]>) -> anyhow::Result<Value> {
    let config = Config::default().access_mode(AccessMode::ReadOnly)?;
    let conn = Connection::open_with_flags(db_path, config)
        .with_context(|| format!("cannot open DuckDB file {}", db_path.display()))?;
    dump_connection(&conn, datasets, time_token_columns)
}

/// Dumps `datasets` from an open connection (see [`dump`]).
pub fn dump_connection(
    conn: &Connection,
    datasets: &[String],
    time_token_columns: Option<&[String]>,
) -> anyhow::Result<Value> {
    // like dump.py: best effort, values are converted to UTC text below anyway
    let _ = conn.execute_batch("SET TimeZone = 'UTC'");
    let time_cols: HashSet<String> = match time_token_columns {
        Some(cols) => cols.iter().cloned().collect(),
        None => DEFAULT_TIME_TOKEN_COLUMNS.iter().map(|s| s.to_string()).collect(),
    };
    let mut d = Dumper { conn, time_cols, load_tokens: HashMap::new() };
    d.dump(datasets)
}

// ------------------------------------------------------------------------------------------
// DuckDB types and their text rendering

/// The part of a DuckDB logical type that decides how a value is converted.
#[derive(Debug, Clone)]
enum Ty {
    Bool,
    Int,
    Float,
    Double,
    Decimal,
    Timestamp {
        ns: bool,
    },
    TimestampTz,
    Date,
    Time,
    TimeTz,
    Interval,
    /// VARCHAR, JSON, ENUM, UUID, BIT, BIGNUM, ... (the Python client returns `str`)
    Str,
    Blob,
    List(Box<Ty>),
    Struct(Vec<(String, Ty)>),
    Map(Box<Ty>, Box<Ty>),
    Union(Vec<(String, Ty)>),
}

impl Ty {
    fn of(lt: &LogicalTypeHandle) -> Ty {
        use LogicalTypeId as L;
        match lt.id() {
            L::Boolean => Ty::Bool,
            L::Tinyint
            | L::Smallint
            | L::Integer
            | L::Bigint
            | L::UTinyint
            | L::USmallint
            | L::UInteger
            | L::UBigint
            | L::Hugeint
            | L::UHugeint => Ty::Int,
            L::Float => Ty::Float,
            L::Double => Ty::Double,
            L::Decimal => Ty::Decimal,
            L::Timestamp | L::TimestampS | L::TimestampMs => Ty::Timestamp { ns: false },
            L::TimestampNs => Ty::Timestamp { ns: true },
            L::TimestampTZ => Ty::TimestampTz,
            L::Date => Ty::Date,
            L::Time | L::TimeNs => Ty::Time,
            L::TimeTZ => Ty::TimeTz,
            L::Interval => Ty::Interval,
            L::Blob => Ty::Blob,
            L::List | L::Array => Ty::List(Box::new(Ty::of(&lt.child(0)))),
            L::Struct => Ty::Struct((0..lt.num_children()).map(|i| (lt.child_name(i), Ty::of(&lt.child(i)))).collect()),
            L::Map => Ty::Map(Box::new(Ty::of(&lt.child(0))), Box::new(Ty::of(&lt.child(1)))),
            L::Union => Ty::Union((0..lt.num_children()).map(|i| (lt.child_name(i), Ty::of(&lt.child(i)))).collect()),
            _ => Ty::Str,
        }
    }

    fn is_nested(&self) -> bool {
        matches!(self, Ty::List(_) | Ty::Struct(_) | Ty::Map(..) | Ty::Union(_))
    }

    /// SQL rendering `x` as VARCHAR (leaves) or as a nested value whose leaves are VARCHAR.
    fn sql(&self, x: &str, depth: usize) -> String {
        match self {
            Ty::Float => format!("CAST(CAST({x} AS DOUBLE) AS VARCHAR)"),
            Ty::Blob => format!("hex({x})"),
            Ty::Interval => format!(
                "(CAST(CAST(datepart('year', {x}) AS HUGEINT) * 12 + datepart('month', {x}) AS VARCHAR) \
                 || ' ' || CAST(datepart('day', {x}) AS VARCHAR) \
                 || ' ' || CAST(CAST(datepart('hour', {x}) AS HUGEINT) * 3600000000 \
                 + CAST(datepart('minute', {x}) AS HUGEINT) * 60000000 \
                 + datepart('microseconds', {x}) AS VARCHAR))"
            ),
            Ty::List(child) => {
                let v = format!("__dltc_e{depth}");
                format!("list_transform({x}, lambda {v}: {})", child.sql(&v, depth + 1))
            }
            Ty::Struct(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .enumerate()
                    .map(|(i, (_, t))| {
                        format!("f{i} := {}", t.sql(&format!("struct_extract_at({x}, {})", i + 1), depth))
                    })
                    .collect();
                format!("CASE WHEN ({x}) IS NULL THEN NULL ELSE struct_pack({}) END", parts.join(", "))
            }
            Ty::Map(k, v) => {
                let e = format!("__dltc_e{depth}");
                format!(
                    "list_transform(map_entries({x}), lambda {e}: struct_pack(k := {}, v := {}))",
                    k.sql(&format!("struct_extract({e}, 'key')"), depth + 1),
                    v.sql(&format!("struct_extract({e}, 'value')"), depth + 1)
                )
            }
            Ty::Union(members) => {
                let whens: Vec<String> = members
                    .iter()
                    .enumerate()
                    .map(|(i, (name, t))| {
                        let lit = sql_str(name);
                        format!(
                            "WHEN {lit} THEN to_json(struct_pack(t := {i}, v := {}))",
                            t.sql(&format!("union_extract({x}, {lit})"), depth)
                        )
                    })
                    .collect();
                format!("(CASE CAST(union_tag({x}) AS VARCHAR) {} ELSE NULL END)", whens.join(" "))
            }
            _ => format!("CAST({x} AS VARCHAR)"),
        }
    }

    /// Top-level SQL of a column: VARCHAR text (nested values as JSON text).
    fn top_sql(&self, ident: &str) -> String {
        if self.is_nested() { format!("CAST(to_json({}) AS VARCHAR)", self.sql(ident, 0)) } else { self.sql(ident, 0) }
    }
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

// ------------------------------------------------------------------------------------------
// value conversion (text from DuckDB -> canonical JSON, like the Python client + canon_value)

/// A `datetime`/`date` in Python's range.
#[derive(Debug, Clone, Copy)]
struct Dt {
    y: i32,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    s: u32,
    us: u32,
}

impl Dt {
    const MAX: Dt = Dt { y: 9999, mo: 12, d: 31, h: 23, mi: 59, s: 59, us: 999_999 };
    const MIN: Dt = Dt { y: 1, mo: 1, d: 1, h: 0, mi: 0, s: 0, us: 0 };

    /// `strftime("%Y-%m-%dT%H:%M:%S.%f")` (the year zero-padded to 4 digits)
    fn iso_t(&self) -> String {
        format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}", self.y, self.mo, self.d, self.h, self.mi, self.s, self.us)
    }

    /// `str(datetime)`
    fn py_str(&self) -> String {
        let mut s = format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", self.y, self.mo, self.d, self.h, self.mi, self.s);
        if self.us != 0 {
            s.push_str(&format!(".{:06}", self.us));
        }
        s
    }

    fn date_iso(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.y, self.mo, self.d)
    }

    fn from_naive(n: chrono::NaiveDateTime) -> Option<Dt> {
        use chrono::{Datelike, Timelike};
        let y = n.year();
        if !(1..=9999).contains(&y) {
            return None;
        }
        Some(Dt { y, mo: n.month(), d: n.day(), h: n.hour(), mi: n.minute(), s: n.second(), us: n.nanosecond() / 1000 })
    }
}

/// Parses DuckDB's `YYYY-MM-DD`; `None` for BC dates / years outside 1..=9999.
fn parse_date(text: &str) -> Option<(i32, u32, u32)> {
    if text.contains("(BC)") {
        return None;
    }
    let mut it = text.splitn(3, '-');
    let y: i32 = it.next()?.parse().ok()?;
    let mo: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    (1..=9999).contains(&y).then_some((y, mo, d))
}

/// Parses `HH:MM:SS[.fffffffff]` into (h, m, s, nanoseconds).
fn parse_time(text: &str) -> Option<(u32, u32, u32, u32)> {
    let (hms, frac) = match text.split_once('.') {
        Some((a, b)) => (a, b),
        None => (text, ""),
    };
    let mut it = hms.splitn(3, ':');
    let h: u32 = it.next()?.parse().ok()?;
    let mi: u32 = it.next()?.parse().ok()?;
    let s: u32 = it.next()?.parse().ok()?;
    if frac.len() > 9 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let ns: u32 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
    Some((h, mi, s, ns))
}

enum TsConv {
    Dt(Dt),
    /// the Python client returns DuckDB's text for values outside `datetime`'s range
    Raw,
}

/// Naive TIMESTAMP text (`ns`: TIMESTAMP_NS, truncated toward zero like the Python client).
fn conv_timestamp(text: &str, ns: bool) -> TsConv {
    match text {
        "infinity" => return TsConv::Dt(Dt::MAX),
        "-infinity" => return TsConv::Dt(Dt::MIN),
        _ => {}
    }
    let Some((date, time)) = text.split_once(' ') else {
        return TsConv::Raw;
    };
    let (Some((y, mo, d)), Some((h, mi, s, nanos))) = (parse_date(date), parse_time(time)) else {
        return TsConv::Raw;
    };
    if !ns {
        return TsConv::Dt(Dt { y, mo, d, h, mi, s, us: nanos / 1000 });
    }
    let naive = chrono::NaiveDate::from_ymd_opt(y, mo, d).and_then(|dd| dd.and_hms_nano_opt(h, mi, s, nanos));
    let Some(naive) = naive else {
        return TsConv::Raw;
    };
    let Some(epoch_ns) = naive.and_utc().timestamp_nanos_opt() else {
        return TsConv::Raw;
    };
    let micros = epoch_ns / 1000; // truncation toward zero
    match chrono::DateTime::from_timestamp_micros(micros).and_then(|t| Dt::from_naive(t.naive_utc())) {
        Some(dt) => TsConv::Dt(dt),
        None => TsConv::Raw,
    }
}

/// TIMESTAMP WITH TIME ZONE text (`... +HH[:MM[:SS]]`), converted to UTC.
fn conv_timestamptz(text: &str) -> (TsConv, bool) {
    match text {
        // the Python client returns naive datetime.max / datetime.min for +-infinity
        "infinity" => return (TsConv::Dt(Dt::MAX), false),
        "-infinity" => return (TsConv::Dt(Dt::MIN), false),
        _ => {}
    }
    let Some((date, rest)) = text.split_once(' ') else {
        return (TsConv::Raw, true);
    };
    let Some(pos) = rest.rfind(['+', '-']) else {
        return (TsConv::Raw, true);
    };
    let (time, off) = rest.split_at(pos);
    let (Some((y, mo, d)), Some((h, mi, s, nanos)), Some(off_s)) =
        (parse_date(date), parse_time(time), parse_offset(off))
    else {
        return (TsConv::Raw, true);
    };
    if off_s == 0 {
        return (TsConv::Dt(Dt { y, mo, d, h, mi, s, us: nanos / 1000 }), true);
    }
    let naive = chrono::NaiveDate::from_ymd_opt(y, mo, d)
        .and_then(|dd| dd.and_hms_nano_opt(h, mi, s, nanos))
        .and_then(|n| n.checked_sub_signed(chrono::Duration::seconds(off_s)));
    match naive.and_then(Dt::from_naive) {
        Some(dt) => (TsConv::Dt(dt), true),
        None => (TsConv::Raw, true),
    }
}

/// `+HH[:MM[:SS]]` -> seconds east of UTC.
fn parse_offset(off: &str) -> Option<i64> {
    let (sign, body) = match off.as_bytes().first()? {
        b'+' => (1, &off[1..]),
        b'-' => (-1, &off[1..]),
        _ => return None,
    };
    let mut secs = 0i64;
    for (i, part) in body.split(':').enumerate() {
        let v: i64 = part.parse().ok()?;
        secs += v * [3600, 60, 1].get(i)?;
    }
    Some(sign * secs)
}

/// A time value: `time.strftime("%H:%M:%S.%f")`, or the raw text (e.g. `24:00:00`).
fn conv_time(text: &str) -> Option<(u32, u32, u32, u32)> {
    let (h, mi, s, nanos) = parse_time(text)?;
    (h < 24).then_some((h, mi, s, nanos / 1000))
}

/// Splits TIME WITH TIME ZONE text into time and offset.
fn split_timetz(text: &str) -> (&str, &str) {
    match text.find(['+', '-']) {
        Some(pos) => text.split_at(pos),
        None => (text, ""),
    }
}

fn hex_lower(text: &str) -> String {
    text.to_ascii_lowercase()
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len() / 2).filter_map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()).collect()
}

/// INTERVAL text `months days micros` -> total microseconds (months count as 30 days, like
/// the Python client's `timedelta`).
fn interval_micros(text: &str) -> Option<i128> {
    let mut it = text.split(' ');
    let months: i128 = it.next()?.parse().ok()?;
    let days: i128 = it.next()?.parse().ok()?;
    let micros: i128 = it.next()?.parse().ok()?;
    Some((months * 30 + days) * 86_400_000_000 + micros)
}

/// `str(timedelta(microseconds=us))`
fn timedelta_str(us: i128) -> String {
    let day = 86_400_000_000i128;
    let days = us.div_euclid(day);
    let rem = us.rem_euclid(day);
    let secs = rem / 1_000_000;
    let micro = rem % 1_000_000;
    let mut s = String::new();
    if days != 0 {
        s.push_str(&format!("{days} day{}, ", if days.abs() != 1 { "s" } else { "" }));
    }
    s.push_str(&format!("{}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60));
    if micro != 0 {
        s.push_str(&format!(".{micro:06}"));
    }
    s
}

fn float_value(text: &str) -> Value {
    let t = text.trim().to_ascii_lowercase();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(&t)),
    };
    if body == "nan" {
        return json!({"$float": "NaN"});
    }
    if body == "inf" || body == "infinity" {
        return json!({"$float": if neg { "-Infinity" } else { "Infinity" }});
    }
    match t.parse::<f64>() {
        Ok(f) if f.is_nan() => json!({"$float": "NaN"}),
        Ok(f) if f.is_infinite() => json!({"$float": if f > 0.0 { "Infinity" } else { "-Infinity" }}),
        Ok(f) => Value::Number(float_number(f).expect("finite")),
        Err(_) => Value::String(text.to_string()),
    }
}

/// Canonical value of a leaf rendered as text by [`Ty::sql`].
fn conv_leaf(ty: &Ty, text: &str) -> Value {
    match ty {
        Ty::Bool => Value::Bool(text == "true"),
        Ty::Int => number_from_text(text).map(Value::Number).unwrap_or_else(|| Value::String(text.to_string())),
        Ty::Float | Ty::Double => float_value(text),
        Ty::Decimal => json!({"$decimal": decimal_str(text)}),
        Ty::Timestamp { ns } => match conv_timestamp(text, *ns) {
            TsConv::Dt(dt) => Value::String(dt.iso_t()),
            TsConv::Raw => Value::String(text.to_string()),
        },
        Ty::TimestampTz => match conv_timestamptz(text) {
            (TsConv::Dt(dt), true) => Value::String(dt.iso_t() + "Z"),
            (TsConv::Dt(dt), false) => Value::String(dt.iso_t()),
            (TsConv::Raw, _) => Value::String(text.to_string()),
        },
        Ty::Date => match text {
            "infinity" => Value::String(Dt::MAX.date_iso()),
            "-infinity" => Value::String(Dt::MIN.date_iso()),
            _ => match parse_date(text) {
                Some((y, mo, d)) => Value::String(format!("{y:04}-{mo:02}-{d:02}")),
                None => Value::String(text.to_string()),
            },
        },
        Ty::Time => match conv_time(text) {
            Some((h, mi, s, us)) => Value::String(format!("{h:02}:{mi:02}:{s:02}.{us:06}")),
            None => Value::String(text.to_string()),
        },
        Ty::TimeTz => match conv_time(split_timetz(text).0) {
            Some((h, mi, s, us)) => Value::String(format!("{h:02}:{mi:02}:{s:02}.{us:06}")),
            None => Value::String(text.to_string()),
        },
        Ty::Interval => match interval_micros(text).and_then(|us| number_from_text(&us.to_string())) {
            Some(n) => json!({"$interval_us": Value::Number(n)}),
            None => Value::String(text.to_string()),
        },
        Ty::Blob => json!({"$hex": hex_lower(text)}),
        Ty::Str => Value::String(text.to_string()),
        // nested types never reach here as text; keep the text
        Ty::List(_) | Ty::Struct(_) | Ty::Map(..) | Ty::Union(_) => Value::String(text.to_string()),
    }
}

/// Python `str(k)` of a MAP key (the key of the dict the Python client builds).
fn map_key_str(ty: &Ty, j: &Value) -> String {
    let text = match j {
        Value::String(s) => s.as_str(),
        Value::Null => return "None".to_string(),
        other => {
            if let (Ty::Union(members), Some(t)) = (ty, other.get("t").and_then(Value::as_u64))
                && let Some((_, mt)) = members.get(t as usize)
            {
                return map_key_str(mt, &other["v"]);
            }
            return sk(other);
        }
    };
    match ty {
        Ty::Bool => if text == "true" { "True" } else { "False" }.to_string(),
        Ty::Float | Ty::Double => match text.parse::<f64>() {
            Ok(f) => float_repr(f),
            Err(_) => text.to_string(),
        },
        Ty::Decimal => decimal_str(text),
        Ty::Timestamp { ns } => match conv_timestamp(text, *ns) {
            TsConv::Dt(dt) => dt.py_str(),
            TsConv::Raw => text.to_string(),
        },
        Ty::TimestampTz => match conv_timestamptz(text) {
            (TsConv::Dt(dt), true) => dt.py_str() + "+00:00",
            (TsConv::Dt(dt), false) => dt.py_str(),
            (TsConv::Raw, _) => text.to_string(),
        },
        Ty::Time | Ty::TimeTz => {
            let (time, off) = if matches!(ty, Ty::TimeTz) { split_timetz(text) } else { (text, "") };
            match conv_time(time) {
                Some((h, mi, s, us)) => {
                    let mut out = format!("{h:02}:{mi:02}:{s:02}");
                    if us != 0 {
                        out.push_str(&format!(".{us:06}"));
                    }
                    if let Some(secs) = parse_offset(off) {
                        let sign = if secs < 0 { '-' } else { '+' };
                        let a = secs.abs();
                        out.push_str(&format!("{sign}{:02}:{:02}", a / 3600, (a / 60) % 60));
                        if a % 60 != 0 {
                            out.push_str(&format!(":{:02}", a % 60));
                        }
                    }
                    out
                }
                None => text.to_string(),
            }
        }
        Ty::Interval => match interval_micros(text) {
            Some(us) => timedelta_str(us),
            None => text.to_string(),
        },
        Ty::Blob => repr_bytes(&hex_bytes(text)),
        _ => match conv_leaf(ty, text) {
            Value::String(s) => s,
            other => sk(&other),
        },
    }
}

/// Canonical value of a nested value parsed from the `to_json` text.
fn conv_json(ty: &Ty, j: &Value) -> Value {
    if j.is_null() {
        return Value::Null;
    }
    match ty {
        Ty::List(child) => match j {
            Value::Array(items) => Value::Array(items.iter().map(|x| conv_json(child, x)).collect()),
            other => other.clone(),
        },
        Ty::Struct(fields) => {
            let mut m = Map::new();
            for (i, (name, t)) in fields.iter().enumerate() {
                let x = j.get(format!("f{i}")).unwrap_or(&Value::Null);
                m.insert(name.clone(), conv_json(t, x));
            }
            Value::Object(m)
        }
        Ty::Map(kt, vt) => {
            let entries: &[Value] = j.as_array().map(Vec::as_slice).unwrap_or(&[]);
            let null = Value::Null;
            let k_of = |e: &'_ Value| e.get("k").unwrap_or(&null).clone();
            let v_of = |e: &'_ Value| e.get("v").unwrap_or(&null).clone();
            if matches!(**kt, Ty::List(_) | Ty::Struct(_) | Ty::Map(..)) {
                // unhashable keys: the Python client returns {'key': [...], 'value': [...]}
                let keys: Vec<Value> = entries.iter().map(|e| conv_json(kt, &k_of(e))).collect();
                let vals: Vec<Value> = entries.iter().map(|e| conv_json(vt, &v_of(e))).collect();
                json!({"key": keys, "value": vals})
            } else {
                let mut m = Map::new();
                for e in entries {
                    m.insert(map_key_str(kt, &k_of(e)), conv_json(vt, &v_of(e)));
                }
                Value::Object(m)
            }
        }
        Ty::Union(members) => {
            let t = j.get("t").and_then(Value::as_u64);
            match t.and_then(|t| members.get(t as usize)) {
                Some((_, mt)) => conv_json(mt, j.get("v").unwrap_or(&Value::Null)),
                None => j.clone(),
            }
        }
        leaf => match j {
            Value::String(s) => conv_leaf(leaf, s),
            other => other.clone(),
        },
    }
}

/// Python's `json.loads` result re-encoded: ints exact, floats as `repr(float)`.
fn python_json_value(v: Value) -> Option<Value> {
    Some(match v {
        Value::Number(n) => {
            let t = n.to_string();
            if is_int_text(&t) {
                Value::Number(number_from_text(&normalize_int_text(&t))?)
            } else {
                Value::Number(float_number(t.parse::<f64>().ok()?)?)
            }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(python_json_value).collect::<Option<Vec<_>>>()?),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                out.insert(k, python_json_value(x)?);
            }
            Value::Object(out)
        }
        other => other,
    })
}

/// How a column's values are converted.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Conv {
    /// `canon_value(v, data_type)` (JSON columns are parsed)
    Canon,
    /// the raw Python value (used for ids / load ids); JSON stays a string
    Raw,
}

/// Converts one top-level value read as text.
fn conv_top(ty: &Ty, json_column: bool, text: Option<String>) -> anyhow::Result<Value> {
    let Some(text) = text else {
        return Ok(Value::Null);
    };
    if json_column {
        return Ok(match serde_json::from_str::<Value>(&text).ok().and_then(python_json_value) {
            Some(v) => json!({"$json": v}),
            None => json!({"$json_text": text}),
        });
    }
    if ty.is_nested() {
        let j: Value =
            serde_json::from_str(&text).with_context(|| format!("cannot parse DuckDB to_json output {text:?}"))?;
        return Ok(conv_json(ty, &j));
    }
    Ok(conv_leaf(ty, &text))
}

// ------------------------------------------------------------------------------------------
// sort keys of dump.py

/// `_token_key`: "R12.3.0" -> ("R", [12, 3, 0]) with natural ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TokKey {
    prefix: String,
    parts: Vec<TokPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TokPart {
    Num(String),
    Str(String),
}

impl Ord for TokPart {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (TokPart::Num(a), TokPart::Num(b)) => cmp_int_text(a, b),
            (TokPart::Num(_), TokPart::Str(_)) => Ordering::Less,
            (TokPart::Str(_), TokPart::Num(_)) => Ordering::Greater,
            (TokPart::Str(a), TokPart::Str(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for TokPart {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TokKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.prefix.cmp(&other.prefix).then_with(|| self.parts.cmp(&other.parts))
    }
}

impl PartialOrd for TokKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn token_key(tok: &str) -> TokKey {
    let split = tok.char_indices().find(|(_, c)| !c.is_ascii_alphabetic()).map(|(i, _)| i).unwrap_or(tok.len());
    let (prefix, rest) = tok.split_at(split);
    let parts = rest
        .split('.')
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                TokPart::Num(p.to_string())
            } else {
                TokPart::Str(p.to_string())
            }
        })
        .collect();
    TokKey { prefix: prefix.to_string(), parts }
}

/// `("~", [])`, the key of a missing token.
fn missing_token_key() -> TokKey {
    TokKey { prefix: "~".to_string(), parts: Vec::new() }
}

/// `_num_key(load_id)`: numeric load ids first (by value), then the rest as strings.
#[derive(Debug, Clone)]
struct NumKey {
    group: u8,
    num: f64,
    tie: Value,
}

fn num_key(v: &Value) -> NumKey {
    let f = match v {
        Value::String(s) => parse_py_float(s),
        Value::Number(n) => n.to_string().parse::<f64>().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    };
    match f {
        Some(num) => NumKey { group: 0, num, tie: v.clone() },
        None => NumKey {
            group: 1,
            num: 0.0,
            tie: Value::String(match v {
                Value::String(s) => s.clone(),
                Value::Null => "None".to_string(),
                other => pyfmt::py_str(other),
            }),
        },
    }
}

/// Ordering of two canonical values the way Python compares the underlying objects
/// (strings by code point, numbers by value); other combinations fall back to their JSON.
fn py_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => {
            let (tx, ty) = (x.to_string(), y.to_string());
            if is_int_text(&tx) && is_int_text(&ty) {
                cmp_int_text(&tx, &ty)
            } else {
                let fx: f64 = tx.parse().unwrap_or(f64::NAN);
                let fy: f64 = ty.parse().unwrap_or(f64::NAN);
                fx.partial_cmp(&fy).unwrap_or(Ordering::Equal)
            }
        }
        _ => sk(a).cmp(&sk(b)),
    }
}

fn cmp_num_key(a: &NumKey, b: &NumKey) -> Ordering {
    a.group.cmp(&b.group).then_with(|| {
        match a.num.partial_cmp(&b.num) {
            // Python's tuple comparison stops at the NaN element: neither side is smaller
            None => Ordering::Equal,
            Some(Ordering::Equal) => py_cmp(&a.tie, &b.tie),
            Some(o) => o,
        }
    })
}

/// `_is_literal_time`: year >= 9000 or not a year at all.
fn is_literal_time(v: &str) -> bool {
    let head: String = v.chars().take(4).collect();
    match parse_py_int(&head) {
        Some(y) => y >= LITERAL_YEAR_FROM,
        None => true,
    }
}

// ------------------------------------------------------------------------------------------
// the dumper

#[derive(Debug, Clone)]
struct ColInfo {
    name: String,
    data_type: String,
    nullable: bool,
}

impl ColInfo {
    fn to_json(&self) -> Value {
        json!({"name": self.name, "data_type": self.data_type, "nullable": self.nullable})
    }
}

fn columns_json(cols: &[ColInfo]) -> Value {
    Value::Array(cols.iter().map(ColInfo::to_json).collect())
}

struct Dumper<'c> {
    conn: &'c Connection,
    time_cols: HashSet<String>,
    /// canonical JSON of a raw load id -> token
    load_tokens: HashMap<String, String>,
}

impl Dumper<'_> {
    fn strings(&self, sql: &str, params: &[&str]) -> anyhow::Result<Vec<String>> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map(duckdb::params_from_iter(params.iter()), |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn existing_schemas(&self) -> anyhow::Result<HashSet<String>> {
        Ok(self.strings("SELECT schema_name FROM information_schema.schemata", &[])?.into_iter().collect())
    }

    fn tables(&self, schema: &str) -> anyhow::Result<Vec<String>> {
        let mut t = self.strings(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND table_type = 'BASE TABLE'",
            &[schema],
        )?;
        t.sort();
        Ok(t)
    }

    fn columns(&self, schema: &str, table: &str) -> anyhow::Result<Vec<ColInfo>> {
        let mut stmt = self.conn.prepare(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
             WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        )?;
        let rows = stmt.query_map(duckdb::params![schema, table], |r| {
            Ok(ColInfo {
                name: r.get::<_, String>(0)?,
                data_type: r.get::<_, String>(1)?,
                nullable: r.get::<_, Option<String>>(2)?.as_deref() == Some("YES"),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Reads the given columns of a table (all rows, in scan order), converting each value.
    fn read(
        &self,
        schema: &str,
        table: &str,
        cols: &[(&ColInfo, Conv)],
        distinct: bool,
    ) -> anyhow::Result<Vec<Vec<Value>>> {
        if cols.is_empty() {
            let n = self.count(schema, table)?;
            return Ok(vec![Vec::new(); n as usize]);
        }
        let from = qualified(schema, table);
        let idents: Vec<String> = cols.iter().map(|(c, _)| ident(&c.name)).collect();
        let probe = format!("SELECT {} FROM {from}", idents.join(", "));
        let types: Vec<Ty> = {
            let stmt = self.conn.prepare(&probe).with_context(|| format!("cannot read {from}"))?;
            (0..cols.len()).map(|i| Ty::of(&stmt.column_logical_type(i))).collect()
        };
        let exprs: Vec<String> = types.iter().zip(&idents).map(|(t, id)| t.top_sql(id)).collect();
        let sql = format!("SELECT {}{} FROM {from}", if distinct { "DISTINCT " } else { "" }, exprs.join(", "));
        let mut stmt = self.conn.prepare(&sql).with_context(|| format!("cannot prepare {sql}"))?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut vals = Vec::with_capacity(cols.len());
            for (i, ((col, conv), ty)) in cols.iter().zip(&types).enumerate() {
                let text: Option<String> = row.get(i)?;
                let json_col = *conv == Conv::Canon && col.data_type.to_uppercase() == "JSON";
                vals.push(conv_top(ty, json_col, text)?);
            }
            out.push(vals);
        }
        Ok(out)
    }

    fn count(&self, schema: &str, table: &str) -> anyhow::Result<i64> {
        Ok(self
            .conn
            .query_row(&format!("SELECT count(*) FROM {}", qualified(schema, table)), [], |r| r.get::<_, i64>(0))?)
    }

    fn find_cols<'a>(
        &self,
        cols: &'a [ColInfo],
        names: &[&str],
        table: &str,
    ) -> anyhow::Result<Vec<(&'a ColInfo, Conv)>> {
        names
            .iter()
            .map(|n| {
                cols.iter()
                    .find(|c| c.name == *n)
                    .map(|c| (c, Conv::Raw))
                    .ok_or_else(|| anyhow::anyhow!("table {table} has no column {n}"))
            })
            .collect()
    }

    // -------------------------------------------------------------------- load tokens
    fn build_load_tokens(&mut self, present: &[&String]) -> anyhow::Result<()> {
        let mut loads: Vec<(Value, Value)> = Vec::new(); // (inserted_at, load_id)
        for ds in present {
            if self.tables(ds)?.iter().any(|t| t == "_dlt_loads") {
                let cols = self.columns(ds, "_dlt_loads")?;
                let sel = self.find_cols(&cols, &["load_id", "inserted_at"], "_dlt_loads")?;
                for r in self.read(ds, "_dlt_loads", &sel, false)? {
                    let mut it = r.into_iter();
                    let lid = it.next().unwrap_or(Value::Null);
                    let ins = it.next().unwrap_or(Value::Null);
                    loads.push((ins, lid));
                }
            }
        }
        // sort by inserted_at (None last), then load id
        let keyed: Vec<(bool, Value, NumKey, Value)> =
            loads.into_iter().map(|(ins, lid)| (ins.is_null(), ins, num_key(&lid), lid)).collect();
        let mut keyed = keyed;
        keyed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| py_cmp(&a.1, &b.1)).then_with(|| cmp_num_key(&a.2, &b.2)));
        self.load_tokens.clear();
        for (_, _, _, lid) in keyed {
            let k = sk(&lid);
            if !self.load_tokens.contains_key(&k) {
                let tok = format!("L{}", self.load_tokens.len() + 1);
                self.load_tokens.insert(k, tok);
            }
        }
        Ok(())
    }

    // -------------------------------------------------------------------- main
    fn dump(&mut self, datasets: &[String]) -> anyhow::Result<Value> {
        let schemas = self.existing_schemas()?;
        let present: Vec<&String> = datasets.iter().filter(|d| schemas.contains(*d)).collect();
        self.build_load_tokens(&present)?;
        // load ids of data rows that are not in any _dlt_loads: "U1".. in id order
        let mut unknown: Vec<Value> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for ds in &present {
            for t in self.tables(ds)? {
                if SYSTEM_TABLES.contains(&t.as_str()) {
                    continue;
                }
                let cols = self.columns(ds, &t)?;
                if !cols.iter().any(|c| c.name == LOAD_ID_COLUMN) {
                    continue;
                }
                let sel = self.find_cols(&cols, &[LOAD_ID_COLUMN], &t)?;
                for r in self.read(ds, &t, &sel, true)? {
                    let lid = &r[0];
                    let k = sk(lid);
                    if !lid.is_null() && !self.load_tokens.contains_key(&k) && seen.insert(k) {
                        unknown.push(lid.clone());
                    }
                }
            }
        }
        let mut unknown: Vec<(NumKey, Value)> = unknown.into_iter().map(|v| (num_key(&v), v)).collect();
        unknown.sort_by(|a, b| cmp_num_key(&a.0, &b.0));
        for (i, (_, lid)) in unknown.iter().enumerate() {
            self.load_tokens.insert(sk(lid), format!("U{}", i + 1));
        }
        let mut out_ds = Map::new();
        let sorted: BTreeSet<&String> = datasets.iter().collect();
        for ds in sorted {
            let v = if schemas.contains(ds) { self.dump_dataset(ds)? } else { json!({"exists": false}) };
            out_ds.insert(ds.clone(), v);
        }
        Ok(json!({"dump_format_version": DUMP_FORMAT_VERSION, "datasets": Value::Object(out_ds)}))
    }

    fn dump_dataset(&self, ds: &str) -> anyhow::Result<Value> {
        let tables = self.tables(ds)?;
        let data_tables: Vec<&String> = tables.iter().filter(|t| !SYSTEM_TABLES.contains(&t.as_str())).collect();
        // ---- system tables
        let mut system = Map::new();
        for st in SYSTEM_TABLES {
            if !tables.iter().any(|t| t == st) {
                system.insert(st.to_string(), json!({"exists": false}));
                continue;
            }
            let cols = self.columns(ds, st)?;
            let mut entry = Map::new();
            entry.insert("exists".into(), Value::Bool(true));
            entry.insert("columns".into(), columns_json(&cols));
            if st == "_dlt_loads" {
                let sel = self.find_cols(&cols, &["load_id", "schema_name", "status"], st)?;
                let rows = self.read(ds, st, &sel, false)?;
                let mut loads: Vec<(TokKey, Value)> = rows
                    .iter()
                    .map(|r| {
                        let tok = self.load_tokens.get(&sk(&r[0])).cloned();
                        let key = tok.as_deref().map(token_key).unwrap_or_else(missing_token_key);
                        let load = tok.map(Value::String).unwrap_or(Value::Null);
                        (key, json!({"load": load, "schema_name": r[1], "status": r[2]}))
                    })
                    .collect();
                loads.sort_by(|a, b| a.0.cmp(&b.0));
                entry.insert("count".into(), json!(rows.len()));
                entry.insert("loads".into(), Value::Array(loads.into_iter().map(|(_, v)| v).collect()));
            } else {
                entry.insert("count".into(), json!(self.count(ds, st)?));
            }
            system.insert(st.to_string(), Value::Object(entry));
        }
        // ---- data tables: read + canonicalize values (except ids)
        let mut tinfo: Vec<Tbl> = Vec::new();
        for t in &data_tables {
            let cols = self.columns(ds, t)?;
            let sel: Vec<(&ColInfo, Conv)> = cols
                .iter()
                .map(|c| {
                    let raw = ID_COLUMNS.contains(&c.name.as_str()) || c.name == LOAD_ID_COLUMN;
                    (c, if raw { Conv::Raw } else { Conv::Canon })
                })
                .collect();
            let mut rows = self.read(ds, t, &sel, false)?;
            let names: Vec<String> = cols.iter().map(|c| c.name.clone()).collect();
            if let Some(li) = names.iter().position(|n| n == LOAD_ID_COLUMN) {
                for row in rows.iter_mut() {
                    if !row[li].is_null() {
                        row[li] = match self.load_tokens.get(&sk(&row[li])) {
                            Some(tok) => Value::String(tok.clone()),
                            None => Value::Null,
                        };
                    }
                }
            }
            // time tokens
            let tcols: Vec<usize> =
                names.iter().enumerate().filter(|(_, n)| self.time_cols.contains(*n)).map(|(i, _)| i).collect();
            if !tcols.is_empty() {
                let mut vals: BTreeSet<String> = BTreeSet::new();
                for row in &rows {
                    for &i in &tcols {
                        if let Value::String(s) = &row[i]
                            && !is_literal_time(s)
                        {
                            vals.insert(s.clone());
                        }
                    }
                }
                let tmap: HashMap<String, String> =
                    vals.into_iter().enumerate().map(|(i, v)| (v, format!("T{}", i + 1))).collect();
                for row in rows.iter_mut() {
                    for &i in &tcols {
                        if let Value::String(s) = &row[i]
                            && let Some(tok) = tmap.get(s)
                        {
                            row[i] = Value::String(tok.clone());
                        }
                    }
                }
            }
            tinfo.push(Tbl::new(t.to_string(), cols, names, rows));
        }
        let order = assign_ids(&mut tinfo);
        let mut tables_out = Vec::new();
        for (tbl, ord) in tinfo.iter().zip(order) {
            let rows: Vec<Value> = ord.iter().map(|&r| Value::Array(tbl.rows[r].clone())).collect();
            tables_out.push(json!({
                "name": tbl.name,
                "columns": columns_json(&tbl.columns),
                "row_count": rows.len(),
                "rows": rows,
            }));
        }
        Ok(json!({"exists": true, "tables": tables_out, "system": Value::Object(system)}))
    }
}

// ------------------------------------------------------------------------------------------
// id tokens (`_assign_ids`)

struct Tbl {
    name: String,
    columns: Vec<ColInfo>,
    rows: Vec<Vec<Value>>,
    id: Option<usize>,
    parent: Option<usize>,
    root: Option<usize>,
    list_idx: Option<usize>,
    /// (JSON-encoded name, column index) of the content columns, sorted by name
    content: Vec<(String, usize)>,
}

impl Tbl {
    fn new(name: String, columns: Vec<ColInfo>, names: Vec<String>, rows: Vec<Vec<Value>>) -> Tbl {
        let pos = |n: &str| names.iter().position(|x| x == n);
        let mut content: Vec<(&String, usize)> =
            names.iter().enumerate().filter(|(_, n)| !ID_COLUMNS.contains(&n.as_str())).map(|(i, n)| (n, i)).collect();
        content.sort_by(|a, b| a.0.cmp(b.0));
        Tbl {
            id: pos("_dlt_id"),
            parent: pos("_dlt_parent_id"),
            root: pos("_dlt_root_id"),
            list_idx: pos("_dlt_list_idx"),
            content: content.into_iter().map(|(n, i)| (json_str(n, true), i)).collect(),
            name,
            columns,
            rows,
        }
    }

    fn cell(&self, r: usize, col: Option<usize>) -> &Value {
        static NULL: Value = Value::Null;
        col.map(|c| &self.rows[r][c]).unwrap_or(&NULL)
    }
}

type RowRef = (usize, usize);

struct Assigner<'a> {
    tables: &'a mut [Tbl],
    children: HashMap<String, Vec<RowRef>>,
    sig: Vec<Vec<Option<Rc<str>>>>,
}

impl Assigner<'_> {
    fn content_json(&self, t: usize, r: usize) -> String {
        let tbl = &self.tables[t];
        let mut s = String::from("{");
        for (i, (name, c)) in tbl.content.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(name);
            s.push(':');
            pyfmt::write_json(&mut s, &tbl.rows[r][*c], pyfmt::CANONICAL);
        }
        s.push('}');
        s
    }

    /// `signature(t, row, depth)`, memoized per row (regardless of depth, like dump.py).
    fn signature(&mut self, t: usize, r: usize, depth: usize) -> Rc<str> {
        if let Some(s) = &self.sig[t][r] {
            return s.clone();
        }
        let mut kids: Vec<String> = Vec::new();
        let id = self.tables[t].cell(r, self.tables[t].id);
        if depth < MAX_SIGNATURE_DEPTH && !id.is_null() {
            let list = self.children.get(&sk(id)).cloned().unwrap_or_default();
            for (ct, cr) in list {
                if (ct, cr) == (t, r) {
                    continue;
                }
                let csig = self.signature(ct, cr, depth + 1);
                let ctbl = &self.tables[ct];
                let idx = ctbl.cell(cr, ctbl.list_idx);
                kids.push(format!("[{},{},{}]", json_str(&ctbl.name, true), sk(idx), json_str(&csig, true)));
            }
            kids.sort();
        }
        let s: Rc<str> = format!("[{},[{}]]", self.content_json(t, r), kids.join(",")).into();
        self.sig[t][r] = Some(s.clone());
        s
    }
}

/// `isinstance(idx, int)` of a `_dlt_list_idx` value -> (sort key, token text).
fn list_idx_int(v: &Value) -> Option<(String, String)> {
    match v {
        Value::Bool(b) => Some((if *b { "1" } else { "0" }.to_string(), if *b { "True" } else { "False" }.to_string())),
        Value::Number(n) => {
            let t = n.to_string();
            is_int_text(&t).then(|| {
                let norm = normalize_int_text(&t);
                (norm.clone(), norm)
            })
        }
        _ => None,
    }
}

/// Replaces `_dlt_id`/`_dlt_parent_id`/`_dlt_root_id` by linkage tokens and returns, per
/// table, the row indices in canonical order.
#[allow(clippy::needless_range_loop)] // (table, row) indices address several parallel vectors
fn assign_ids(tables: &mut [Tbl]) -> Vec<Vec<usize>> {
    // global index of raw _dlt_id -> rows
    let mut by_id: HashMap<String, Vec<RowRef>> = HashMap::new();
    for (t, tbl) in tables.iter().enumerate() {
        if let Some(c) = tbl.id {
            for (r, row) in tbl.rows.iter().enumerate() {
                if !row[c].is_null() {
                    by_id.entry(sk(&row[c])).or_default().push((t, r));
                }
            }
        }
    }
    // children index: parent raw id -> rows
    let mut children: HashMap<String, Vec<RowRef>> = HashMap::new();
    for (t, tbl) in tables.iter().enumerate() {
        if let Some(c) = tbl.parent {
            for (r, row) in tbl.rows.iter().enumerate() {
                if !row[c].is_null() {
                    children.entry(sk(&row[c])).or_default().push((t, r));
                }
            }
        }
    }
    let sig = tables.iter().map(|t| vec![None; t.rows.len()]).collect();
    let mut tokens: Vec<Vec<Option<String>>> = tables.iter().map(|t| vec![None; t.rows.len()]).collect();
    let mut a = Assigner { tables, children, sig };
    let n_tables = a.tables.len();
    // tables are already sorted by name (tinfo order == sorted(tinfo))

    // roots
    for t in 0..n_tables {
        if a.tables[t].parent.is_some() {
            continue;
        }
        let n = a.tables[t].rows.len();
        let keys: Vec<Rc<str>> = (0..n).map(|r| a.signature(t, r, 0)).collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|x, y| keys[*x].cmp(&keys[*y]));
        for (i, r) in order.into_iter().enumerate() {
            tokens[t][r] = Some(format!("R{}", i + 1));
        }
    }

    // children: breadth-first from assigned parents
    let resolve_parent = |a: &Assigner, tokens: &Vec<Vec<Option<String>>>, t: usize, r: usize| {
        let tbl = &a.tables[t];
        let pid = tbl.cell(r, tbl.parent);
        if pid.is_null() {
            return None;
        }
        let cands = by_id.get(&sk(pid))?;
        cands
            .iter()
            .filter_map(|&(pt, pr)| tokens[pt][pr].as_ref())
            .min_by(|x, y| token_key(x).cmp(&token_key(y)))
            .cloned()
    };
    let child_tables: Vec<usize> = (0..n_tables).filter(|&t| a.tables[t].parent.is_some()).collect();
    let mut pending: HashMap<usize, Vec<usize>> =
        child_tables.iter().map(|&t| (t, (0..a.tables[t].rows.len()).collect())).collect();
    let mut progress = true;
    while progress && pending.values().any(|v| !v.is_empty()) {
        progress = false;
        for &t in &child_tables {
            let mut still = Vec::new();
            let mut resolved: Vec<(String, usize)> = Vec::new();
            for &r in &pending[&t] {
                match resolve_parent(&a, &tokens, t, r) {
                    Some(ptok) => resolved.push((ptok, r)),
                    None => still.push(r),
                }
            }
            // deterministic order within a table, then token = parent.list_idx
            let mut keyed: Vec<(TokKey, String, Rc<str>)> = Vec::with_capacity(resolved.len());
            for (ptok, r) in &resolved {
                let tbl = &a.tables[t];
                let idx = list_idx_int(tbl.cell(*r, tbl.list_idx)).map(|(k, _)| k).unwrap_or_else(|| "-1".to_string());
                let sig = a.signature(t, *r, 0);
                keyed.push((token_key(ptok), idx, sig));
            }
            let mut order: Vec<usize> = (0..resolved.len()).collect();
            order.sort_by(|x, y| {
                let (kx, ky) = (&keyed[*x], &keyed[*y]);
                kx.0.cmp(&ky.0).then_with(|| cmp_int_text(&kx.1, &ky.1)).then_with(|| kx.2.cmp(&ky.2))
            });
            let mut used: HashSet<String> = HashSet::new();
            for i in order {
                let (ptok, r) = &resolved[i];
                let tbl = &a.tables[t];
                let idx = list_idx_int(tbl.cell(*r, tbl.list_idx)).map(|(_, s)| s).unwrap_or_else(|| "x".to_string());
                let base = format!("{ptok}.{idx}");
                let mut tok = base.clone();
                let mut k = 1;
                while used.contains(&tok) {
                    k += 1;
                    tok = format!("{base}~{k}");
                }
                used.insert(tok.clone());
                tokens[t][*r] = Some(tok);
                progress = true;
            }
            pending.insert(t, still);
        }
    }
    // orphans (parent id does not resolve): "O<n>" ordered by signature, per table
    for &t in &child_tables {
        let rows = pending[&t].clone();
        let keys: Vec<Rc<str>> = rows.iter().map(|&r| a.signature(t, r, 0)).collect();
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|x, y| keys[*x].cmp(&keys[*y]));
        for (i, k) in order.into_iter().enumerate() {
            tokens[t][rows[k]] = Some(format!("O{}", i + 1));
        }
    }

    let mut raw_to_token: HashMap<String, String> = HashMap::new();
    for (rid, list) in &by_id {
        if let Some(tok) =
            list.iter().filter_map(|&(t, r)| tokens[t][r].as_ref()).min_by(|x, y| token_key(x).cmp(&token_key(y)))
        {
            raw_to_token.insert(rid.clone(), tok.clone());
        }
    }

    let mut orders = Vec::with_capacity(n_tables);
    for t in 0..n_tables {
        let n = a.tables[t].rows.len();
        for r in 0..n {
            let tok = tokens[t][r].clone();
            let tbl = &mut a.tables[t];
            if let Some(c) = tbl.id {
                tbl.rows[r][c] = match (&tbl.rows[r][c], &tok) {
                    (Value::Null, _) | (_, None) => Value::Null,
                    (_, Some(tok)) => Value::String(tok.clone()),
                };
            }
            for col in [tbl.parent, tbl.root].into_iter().flatten() {
                if !tbl.rows[r][col].is_null() {
                    let k = sk(&tbl.rows[r][col]);
                    tbl.rows[r][col] = Value::String(raw_to_token.get(&k).cloned().unwrap_or_else(|| "?".into()));
                }
            }
        }
        let keys: Vec<(TokKey, Rc<str>)> = (0..n)
            .map(|r| {
                let tk = tokens[t][r].as_deref().map(token_key).unwrap_or_else(missing_token_key);
                (tk, a.signature(t, r, 0))
            })
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|x, y| keys[*x].0.cmp(&keys[*y].0).then_with(|| keys[*x].1.cmp(&keys[*y].1)));
        orders.push(order);
    }
    orders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_keys_are_natural() {
        assert!(token_key("R2") < token_key("R10"));
        assert!(token_key("R1.2") < token_key("R1.10"));
        assert!(token_key("R1") < token_key("R1.0"));
        assert!(token_key("O1") < token_key("R1"));
        assert!(token_key("R1.0") < token_key("R1.0~2"));
        assert!(token_key("R1.x") > token_key("R1.5"));
    }

    #[test]
    fn literal_times() {
        assert!(!is_literal_time("2024-01-01T00:00:00.000000Z"));
        assert!(is_literal_time("9999-12-31T23:59:59.999999"));
        assert!(is_literal_time("L1"));
    }

    #[test]
    fn timestamp_text() {
        assert_eq!(
            conv_leaf(&Ty::TimestampTz, "2024-01-01 08:00:00.5+00"),
            Value::String("2024-01-01T08:00:00.500000Z".into())
        );
        assert_eq!(
            conv_leaf(&Ty::TimestampTz, "2024-01-01 10:00:00+02"),
            Value::String("2024-01-01T08:00:00.000000Z".into())
        );
        assert_eq!(
            conv_leaf(&Ty::Timestamp { ns: true }, "1969-12-31 23:59:59.9999995"),
            Value::String("1970-01-01T00:00:00.000000".into())
        );
        assert_eq!(
            conv_leaf(&Ty::Timestamp { ns: false }, "294247-01-01 00:00:00"),
            Value::String("294247-01-01 00:00:00".into())
        );
        assert_eq!(timedelta_str(-1), "-1 day, 23:59:59.999999");
        assert_eq!(timedelta_str(86_400_000_000 * 2 + 1_000_000), "2 days, 0:00:01");
    }
}
