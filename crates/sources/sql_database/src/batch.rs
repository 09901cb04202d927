//! Arrow column builders per value kind, text parsing shared by the MySQL and SQLite readers,
//! and the conversion of a batch into JSON rows (the `rows` backend).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder, Date32Array, Date32Builder,
    Decimal128Array, Decimal128Builder, Float64Array, Float64Builder, Int64Array, Int64Builder, StringArray,
    StringBuilder, Time64MicrosecondArray, Time64MicrosecondBuilder, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use dlt_core::error::Result;
use serde_json::{Map, Value};

use crate::types::ValueKind;

/// Days from 0001-01-01 (CE day 1) to 1970-01-01.
const UNIX_EPOCH_CE_DAYS: i32 = 719_163;

/// Powers of ten that fit an i128.
pub(crate) fn pow10(e: u32) -> Option<i128> {
    10i128.checked_pow(e)
}

/// One column being built.
pub(crate) enum ColBuilder {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Double(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Text(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder, bool),
}

impl ColBuilder {
    pub(crate) fn new(kind: ValueKind, cap: usize) -> ColBuilder {
        match kind {
            ValueKind::Bool => ColBuilder::Bool(BooleanBuilder::with_capacity(cap)),
            ValueKind::Int => ColBuilder::Int(Int64Builder::with_capacity(cap)),
            ValueKind::Double => ColBuilder::Double(Float64Builder::with_capacity(cap)),
            ValueKind::Decimal { precision, scale } => {
                ColBuilder::Decimal(Decimal128Builder::with_capacity(cap), precision, scale)
            }
            ValueKind::Text | ValueKind::Json => ColBuilder::Text(StringBuilder::with_capacity(cap, cap * 16)),
            ValueKind::Binary => ColBuilder::Binary(BinaryBuilder::with_capacity(cap, cap * 16)),
            ValueKind::Date => ColBuilder::Date(Date32Builder::with_capacity(cap)),
            ValueKind::Time => ColBuilder::Time(Time64MicrosecondBuilder::with_capacity(cap)),
            ValueKind::Timestamp { tz } => ColBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(cap), tz),
        }
    }

    pub(crate) fn append_null(&mut self) {
        match self {
            ColBuilder::Bool(b) => b.append_null(),
            ColBuilder::Int(b) => b.append_null(),
            ColBuilder::Double(b) => b.append_null(),
            ColBuilder::Decimal(b, ..) => b.append_null(),
            ColBuilder::Text(b) => b.append_null(),
            ColBuilder::Binary(b) => b.append_null(),
            ColBuilder::Date(b) => b.append_null(),
            ColBuilder::Time(b) => b.append_null(),
            ColBuilder::Timestamp(b, _) => b.append_null(),
        }
    }

    /// Append a value given as text (MySQL's text protocol, SQLite text, casts to text).
    pub(crate) fn append_text(&mut self, s: &str) -> std::result::Result<(), String> {
        match self {
            ColBuilder::Bool(b) => b.append_value(parse_bool(s).ok_or_else(|| format!("`{s}` is not a boolean"))?),
            ColBuilder::Int(b) => b.append_value(parse_int(s).ok_or_else(|| int_error(s))?),
            ColBuilder::Double(b) => b.append_value(parse_float(s).ok_or_else(|| format!("`{s}` is not a number"))?),
            ColBuilder::Decimal(b, p, sc) => {
                let v = parse_decimal(s, *sc)
                    .filter(|v| fits(*v, *p))
                    .ok_or_else(|| format!("`{s}` does not fit decimal({p},{sc})"))?;
                b.append_value(v)
            }
            ColBuilder::Text(b) => b.append_value(s),
            ColBuilder::Binary(b) => b.append_value(s.as_bytes()),
            ColBuilder::Date(b) => b.append_value(parse_date(s).ok_or_else(|| format!("`{s}` is not a date"))?),
            ColBuilder::Time(b) => b.append_value(parse_time(s).ok_or_else(|| time_error(s))?),
            ColBuilder::Timestamp(b, _) => {
                b.append_value(parse_timestamp(s).ok_or_else(|| format!("`{s}` is not a timestamp"))?)
            }
        }
        Ok(())
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
            ColBuilder::Bool(b) => Arc::new(b.finish()),
            ColBuilder::Int(b) => Arc::new(b.finish()),
            ColBuilder::Double(b) => Arc::new(b.finish()),
            ColBuilder::Decimal(b, p, s) => Arc::new(
                b.finish().with_precision_and_scale(*p, *s).expect("precision and scale checked at reflection"),
            ),
            ColBuilder::Text(b) => Arc::new(b.finish()),
            ColBuilder::Binary(b) => Arc::new(b.finish()),
            ColBuilder::Date(b) => Arc::new(b.finish()),
            ColBuilder::Time(b) => Arc::new(b.finish()),
            ColBuilder::Timestamp(b, tz) => {
                let a = b.finish();
                Arc::new(if *tz { a.with_timezone("UTC") } else { a })
            }
        }
    }
}

/// Why `s` is not a 64-bit integer, with the column hint that loads it when it is an integer
/// beyond 64 bits (an unsigned BIGINT reaches 2^64 - 1).
fn int_error(s: &str) -> String {
    let digits = s.trim().strip_prefix('-').unwrap_or(s.trim());
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        format!(
            "`{s}` does not fit a 64-bit integer; load the column as a decimal with the column hint \
             data_type = \"decimal\", precision = 20, scale = 0 (or as text with data_type = \"text\")"
        )
    } else {
        format!("`{s}` is not a 64-bit integer")
    }
}

/// Why `s` is not a time of day, with the column hint that loads a duration (a MySQL/MariaDB
/// TIME holds -838:59:59 … 838:59:59).
fn time_error(s: &str) -> String {
    let t = s.trim().strip_prefix('-').unwrap_or(s.trim());
    let duration =
        t.split(':').count() == 3 && t.split(':').next().is_some_and(|h| h.bytes().all(|b| b.is_ascii_digit()));
    if duration {
        format!(
            "`{s}` is not a time of day (0 to 24 h) but a duration; load the column as text with the column \
             hint data_type = \"text\""
        )
    } else {
        format!("`{s}` is not a time of day")
    }
}

/// Builders for all columns of a batch.
pub(crate) struct BatchBuilder {
    pub(crate) schema: SchemaRef,
    pub(crate) cols: Vec<ColBuilder>,
    kinds: Vec<ValueKind>,
    pub(crate) rows: usize,
    cap: usize,
}

impl BatchBuilder {
    pub(crate) fn new(names: &[String], kinds: &[ValueKind], cap: usize) -> BatchBuilder {
        let fields: Vec<Field> =
            names.iter().zip(kinds).map(|(n, k)| Field::new(n.as_str(), k.arrow_type(), true)).collect();
        BatchBuilder {
            schema: Arc::new(Schema::new(fields)),
            cols: kinds.iter().map(|k| ColBuilder::new(*k, cap)).collect(),
            kinds: kinds.to_vec(),
            rows: 0,
            cap,
        }
    }

    /// The finished batch; the builders start over.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.cols.iter_mut().map(|c| c.finish()).collect();
        self.cols = self.kinds.iter().map(|k| ColBuilder::new(*k, self.cap)).collect();
        let n = self.rows;
        self.rows = 0;
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(n)),
        )?)
    }
}

pub(crate) fn fits(v: i128, precision: u8) -> bool {
    pow10(precision as u32).is_none_or(|m| v.unsigned_abs() < m as u128)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "y" | "yes" | "on" => Some(true),
        "0" | "f" | "false" | "n" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim();
    t.parse::<i64>().ok().or_else(|| {
        // `5.0` (SQLite REAL in an INTEGER column) is still an integer
        let f: f64 = t.parse().ok()?;
        (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64)
    })
}

fn parse_float(s: &str) -> Option<f64> {
    let t = s.trim();
    t.parse::<f64>().ok().or_else(|| match t.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    })
}

/// Parse a decimal number (`-12.345`, `1e3`) scaled by `10^scale`, rounding half away from zero.
pub(crate) fn parse_decimal(text: &str, scale: i8) -> Option<i128> {
    let t = text.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (mant, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
        None => (body, 0),
    };
    let (int_part, frac_part) = mant.split_once('.').unwrap_or((mant, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().chain(frac_part.bytes()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // digits d1 d2 … dn with the value digits × 10^shift
    let shift = exp - frac_part.len() as i32 + scale as i32;
    let digits = int_part.bytes().chain(frac_part.bytes()).skip_while(|c| *c == b'0').collect::<Vec<u8>>();
    let keep = if shift >= 0 { digits.len() } else { (digits.len() as i32 + shift).max(0) as usize };
    let mut v: i128 = 0;
    for c in &digits[..keep] {
        v = v.checked_mul(10)?.checked_add((c - b'0') as i128)?;
    }
    if shift > 0 {
        v = v.checked_mul(pow10(shift as u32)?)?;
    } else if keep < digits.len() {
        // the first dropped digit decides (half away from zero)
        let first_dropped = if digits.len() as i32 + shift >= 0 { digits[keep] } else { b'0' };
        if first_dropped >= b'5' {
            v = v.checked_add(1)?;
        }
    }
    Some(if neg { -v } else { v })
}

/// `YYYY-MM-DD` (a time part is ignored) → days since 1970-01-01.
pub(crate) fn parse_date(s: &str) -> Option<i32> {
    let t = s.trim();
    let d = t.get(..10).and_then(|p| NaiveDate::parse_from_str(p, "%Y-%m-%d").ok())?;
    Some(date_days(d))
}

pub(crate) fn date_days(d: NaiveDate) -> i32 {
    chrono::Datelike::num_days_from_ce(&d) - UNIX_EPOCH_CE_DAYS
}

/// `HH:MM[:SS[.ffffff]]` → microseconds since midnight.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    let t = s.trim();
    let tm = NaiveTime::parse_from_str(t, "%H:%M:%S%.f").or_else(|_| NaiveTime::parse_from_str(t, "%H:%M")).ok()?;
    Some(tm.num_seconds_from_midnight() as i64 * 1_000_000 + (tm.nanosecond() / 1000) as i64)
}

/// An ISO timestamp (`T` or space; an offset or `Z` converts to UTC; a bare date is midnight)
/// → microseconds since the epoch.
pub(crate) fn parse_timestamp(s: &str) -> Option<i64> {
    let t = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp_micros());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(d) = DateTime::parse_from_str(t, f) {
            return Some(d.timestamp_micros());
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Some(d.and_utc().timestamp_micros());
        }
    }
    let d = NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// A decimal's text (`-12.340` for -12340 at scale 3).
pub(crate) fn decimal_text(v: i128, scale: i8) -> String {
    if scale <= 0 {
        let mut s = v.to_string();
        s.extend(std::iter::repeat_n('0', (-scale) as usize));
        return s;
    }
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let digits =
        if digits.len() <= scale { format!("{}{digits}", "0".repeat(scale + 1 - digits.len())) } else { digits };
    let (i, f) = digits.split_at(digits.len() - scale);
    format!("{}{i}.{f}", if neg { "-" } else { "" })
}

fn micros_to_naive(us: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_micros(us).map(|d| d.naive_utc())
}

/// A timestamp as the JSON text the rows backend yields (`2024-01-02T03:04:05.000006+00:00`, or
/// without the offset for wall-clock timestamps).
pub(crate) fn timestamp_text(us: i64, tz: bool) -> Option<String> {
    let d = micros_to_naive(us)?;
    let s = d.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
    Some(if tz { s + "+00:00" } else { s })
}

/// Convert a batch into JSON rows keyed by column name, for the `rows` backend: decimals as
/// exact numbers, timestamps/dates/times as ISO text, binary as base64, JSON columns as their
/// text (the normalizer parses it into the declared `json` column).
pub(crate) fn batch_to_rows(batch: &RecordBatch) -> Vec<Value> {
    let n = batch.num_rows();
    let names: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
    let mut rows: Vec<Map<String, Value>> = (0..n).map(|_| Map::with_capacity(names.len())).collect();
    for (ci, col) in batch.columns().iter().enumerate() {
        let name = &names[ci];
        let kind = kind_of(col.data_type());
        for (i, row) in rows.iter_mut().enumerate() {
            let v = if col.is_null(i) { Value::Null } else { cell_json(col, kind, i) };
            row.insert(name.clone(), v);
        }
    }
    rows.into_iter().map(Value::Object).collect()
}

fn kind_of(t: &arrow::datatypes::DataType) -> ValueKind {
    use arrow::datatypes::DataType as A;
    match t {
        A::Boolean => ValueKind::Bool,
        A::Int64 => ValueKind::Int,
        A::Float64 => ValueKind::Double,
        A::Decimal128(p, s) => ValueKind::Decimal { precision: *p, scale: *s },
        A::Binary => ValueKind::Binary,
        A::Date32 => ValueKind::Date,
        A::Time64(_) => ValueKind::Time,
        A::Timestamp(_, tz) => ValueKind::Timestamp { tz: tz.is_some() },
        _ => ValueKind::Text,
    }
}

fn cell_json(col: &ArrayRef, kind: ValueKind, i: usize) -> Value {
    let any = col.as_any();
    match kind {
        ValueKind::Bool => Value::Bool(any.downcast_ref::<BooleanArray>().expect("bool").value(i)),
        ValueKind::Int => Value::from(any.downcast_ref::<Int64Array>().expect("int").value(i)),
        ValueKind::Double => {
            let f = any.downcast_ref::<Float64Array>().expect("double").value(i);
            serde_json::Number::from_f64(f).map(Value::Number).unwrap_or_else(|| Value::String(f.to_string()))
        }
        ValueKind::Decimal { scale, .. } => {
            let v = any.downcast_ref::<Decimal128Array>().expect("decimal").value(i);
            let text = decimal_text(v, scale);
            serde_json::from_str::<serde_json::Number>(&text).map(Value::Number).unwrap_or(Value::String(text))
        }
        ValueKind::Text | ValueKind::Json => {
            Value::String(any.downcast_ref::<StringArray>().expect("text").value(i).to_string())
        }
        ValueKind::Binary => Value::String(
            base64::engine::general_purpose::STANDARD.encode(any.downcast_ref::<BinaryArray>().expect("bin").value(i)),
        ),
        ValueKind::Date => {
            let d = any.downcast_ref::<Date32Array>().expect("date").value(i);
            NaiveDate::from_num_days_from_ce_opt(d + UNIX_EPOCH_CE_DAYS)
                .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
                .unwrap_or(Value::Null)
        }
        ValueKind::Time => {
            let us = any.downcast_ref::<Time64MicrosecondArray>().expect("time").value(i);
            let (secs, frac) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
            Value::String(format!("{:02}:{:02}:{:02}.{frac:06}", secs / 3600, (secs / 60) % 60, secs % 60))
        }
        ValueKind::Timestamp { tz } => {
            let us = any.downcast_ref::<TimestampMicrosecondArray>().expect("ts").value(i);
            timestamp_text(us, tz).map(Value::String).unwrap_or(Value::Null)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_parsing() {
        assert_eq!(parse_decimal("12.345", 2), Some(1235));
        assert_eq!(parse_decimal("-12.345", 2), Some(-1235));
        assert_eq!(parse_decimal("-12.344", 2), Some(-1234));
        assert_eq!(parse_decimal("1e3", 0), Some(1000));
        assert_eq!(parse_decimal("0.0005", 3), Some(1));
        assert_eq!(parse_decimal("0.00049", 3), Some(0));
        assert_eq!(parse_decimal("0.000049", 3), Some(0));
        assert_eq!(
            parse_decimal("99999999999999999999999999999.999999999", 9),
            Some(99_999_999_999_999_999_999_999_999_999_999_999_999)
        );
        assert_eq!(parse_decimal("abc", 2), None);
        assert_eq!(decimal_text(-5, 3), "-0.005");
        assert_eq!(decimal_text(123_450, 2), "1234.50");
        assert_eq!(decimal_text(7, 0), "7");
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("1969-12-31 23:00:00"), Some(-1));
        assert_eq!(parse_time("01:00:00.5"), Some(3_600_500_000));
        assert_eq!(parse_timestamp("1970-01-01 00:00:01.000001"), Some(1_000_001));
        assert_eq!(parse_timestamp("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(timestamp_text(1_000_001, true).unwrap(), "1970-01-01T00:00:01.000001+00:00");
        assert!(fits(99_999, 5) && !fits(100_000, 5));
    }
}
