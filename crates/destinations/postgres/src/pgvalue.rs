//! Arrow values to Postgres' binary COPY format.

use arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int8Array,
    Int16Array, Int32Array, Int64Array, LargeBinaryArray, LargeStringArray, StringArray, Time64MicrosecondArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt32Array,
};
use arrow::datatypes::{DataType as ArrowType, TimeUnit};
use bytes::{BufMut, BytesMut};

/// One value of a row being copied.
#[derive(Debug)]
pub enum PgValue<'a> {
    /// NULL.
    Null,
    /// text / varchar.
    Text(&'a str),
    /// jsonb (sent as its text).
    Jsonb(&'a str),
    /// Integers, narrowed to the column's width.
    Int(i64),
    /// Floats.
    Float(f64),
    /// Booleans.
    Bool(bool),
    /// Microseconds since the Unix epoch (timestamp with or without time zone).
    Micros(i64),
    /// Days since the Unix epoch.
    Days(i32),
    /// Microseconds since midnight.
    TimeMicros(i64),
    /// A decimal: unscaled value and scale.
    Numeric(i128, u32),
    /// Bytes.
    Bytes(&'a [u8]),
}

const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000; // 2000-01-01 - 1970-01-01
const PG_EPOCH_OFFSET_DAYS: i32 = 10_957;

/// The Postgres type a column is copied as (its binary format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgKind {
    /// text / varchar.
    Text,
    /// jsonb.
    Jsonb,
    /// smallint.
    Int2,
    /// integer.
    Int4,
    /// bigint.
    Int8,
    /// real.
    Float4,
    /// double precision.
    Float8,
    /// boolean.
    Bool,
    /// timestamp with or without time zone (the same binary format).
    Timestamp,
    /// date.
    Date,
    /// time.
    Time,
    /// numeric.
    Numeric,
    /// bytea.
    Bytea,
}

impl PgValue<'_> {
    /// Append the value's binary COPY field (length, then bytes; `-1` for NULL) as `kind`.
    /// An integer too wide for a `smallint` or `integer` column is an error naming the value.
    pub fn encode(&self, kind: PgKind, out: &mut BytesMut) -> Result<(), String> {
        if let PgValue::Null = self {
            out.put_i32(-1);
            return Ok(());
        }
        let at = out.len();
        out.put_i32(0);
        match self {
            PgValue::Null => unreachable!("handled above"),
            PgValue::Text(s) => out.put_slice(s.as_bytes()),
            PgValue::Jsonb(s) => {
                if kind == PgKind::Jsonb {
                    out.put_u8(1);
                }
                out.put_slice(s.as_bytes());
            }
            PgValue::Int(v) => match kind {
                PgKind::Int2 => out.put_i16(i16::try_from(*v).map_err(|_| format!("{v} does not fit a smallint"))?),
                PgKind::Int4 => out.put_i32(i32::try_from(*v).map_err(|_| format!("{v} does not fit an integer"))?),
                PgKind::Numeric => write_numeric(*v as i128, 0, out),
                _ => out.put_i64(*v),
            },
            PgValue::Float(v) => {
                if kind == PgKind::Float4 {
                    out.put_f32(*v as f32)
                } else {
                    out.put_f64(*v)
                }
            }
            PgValue::Bool(b) => out.put_u8(*b as u8),
            PgValue::Micros(v) => out.put_i64(v - PG_EPOCH_OFFSET_MICROS),
            PgValue::Days(d) => out.put_i32(d - PG_EPOCH_OFFSET_DAYS),
            PgValue::TimeMicros(v) => out.put_i64(*v),
            PgValue::Numeric(v, scale) => write_numeric(*v, *scale, out),
            PgValue::Bytes(b) => out.put_slice(b),
        }
        let len = (out.len() - at - 4) as i32;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

/// Postgres' binary numeric: base-10000 digits, weight, sign and display scale.
pub fn write_numeric(v: i128, scale: u32, out: &mut BytesMut) {
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let (int_part, frac_part) = if digits.len() > scale {
        (digits[..digits.len() - scale].to_string(), digits[digits.len() - scale..].to_string())
    } else {
        ("0".to_string(), format!("{}{}", "0".repeat(scale - digits.len()), digits))
    };
    let int_pad = (4 - int_part.len() % 4) % 4;
    let int_s = format!("{}{}", "0".repeat(int_pad), int_part);
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let frac_s = format!("{}{}", frac_part, "0".repeat(frac_pad));
    let mut groups: Vec<i16> = vec![];
    for i in (0..int_s.len()).step_by(4) {
        groups.push(int_s[i..i + 4].parse().unwrap_or(0));
    }
    let int_groups = groups.len() as i16;
    for i in (0..frac_s.len()).step_by(4) {
        groups.push(frac_s[i..i + 4].parse().unwrap_or(0));
    }
    let mut weight = int_groups - 1;
    // strip leading zero groups
    let mut start = 0;
    while start < groups.len() && groups[start] == 0 {
        start += 1;
        weight -= 1;
    }
    let mut end = groups.len();
    while end > start && groups[end - 1] == 0 {
        end -= 1;
    }
    let g = &groups[start..end];
    if g.is_empty() {
        weight = 0;
    }
    out.put_i16(g.len() as i16);
    out.put_i16(weight);
    out.put_u16(if neg && !g.is_empty() { 0x4000 } else { 0 });
    out.put_u16(scale as u16);
    for d in g {
        out.put_i16(*d);
    }
}

/// Read row `i` of an Arrow column as a copy value (`json` columns are sent as jsonb text).
pub fn value_at<'a>(col: &'a ArrayRef, i: usize, json: bool) -> PgValue<'a> {
    if col.is_null(i) {
        return PgValue::Null;
    }
    let a = col.as_any();
    match col.data_type() {
        ArrowType::Utf8 => {
            let s = a.downcast_ref::<StringArray>().expect("utf8").value(i);
            if json { PgValue::Jsonb(s) } else { PgValue::Text(s) }
        }
        ArrowType::LargeUtf8 => {
            let s = a.downcast_ref::<LargeStringArray>().expect("utf8").value(i);
            if json { PgValue::Jsonb(s) } else { PgValue::Text(s) }
        }
        ArrowType::Int64 => PgValue::Int(a.downcast_ref::<Int64Array>().expect("i64").value(i)),
        ArrowType::Int32 => PgValue::Int(a.downcast_ref::<Int32Array>().expect("i32").value(i) as i64),
        ArrowType::Int16 => PgValue::Int(a.downcast_ref::<Int16Array>().expect("i16").value(i) as i64),
        ArrowType::Int8 => PgValue::Int(a.downcast_ref::<Int8Array>().expect("i8").value(i) as i64),
        ArrowType::UInt32 => PgValue::Int(a.downcast_ref::<UInt32Array>().expect("u32").value(i) as i64),
        ArrowType::Float64 => PgValue::Float(a.downcast_ref::<Float64Array>().expect("f64").value(i)),
        ArrowType::Float32 => PgValue::Float(a.downcast_ref::<Float32Array>().expect("f32").value(i) as f64),
        ArrowType::Boolean => PgValue::Bool(a.downcast_ref::<BooleanArray>().expect("bool").value(i)),
        ArrowType::Timestamp(unit, _) => PgValue::Micros(match unit {
            TimeUnit::Microsecond => a.downcast_ref::<TimestampMicrosecondArray>().expect("ts").value(i),
            TimeUnit::Millisecond => a.downcast_ref::<TimestampMillisecondArray>().expect("ts").value(i) * 1000,
            TimeUnit::Second => a.downcast_ref::<TimestampSecondArray>().expect("ts").value(i) * 1_000_000,
            TimeUnit::Nanosecond => a.downcast_ref::<TimestampNanosecondArray>().expect("ts").value(i) / 1000,
        }),
        ArrowType::Date32 => PgValue::Days(a.downcast_ref::<Date32Array>().expect("date").value(i)),
        ArrowType::Time64(_) => PgValue::TimeMicros(a.downcast_ref::<Time64MicrosecondArray>().expect("time").value(i)),
        ArrowType::Decimal128(_, s) => {
            PgValue::Numeric(a.downcast_ref::<Decimal128Array>().expect("dec").value(i), (*s).max(0) as u32)
        }
        ArrowType::Binary => PgValue::Bytes(a.downcast_ref::<BinaryArray>().expect("bin").value(i)),
        ArrowType::LargeBinary => PgValue::Bytes(a.downcast_ref::<LargeBinaryArray>().expect("bin").value(i)),
        _ => PgValue::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: i128, s: u32) -> Vec<u8> {
        let mut b = BytesMut::new();
        write_numeric(v, s, &mut b);
        b.to_vec()
    }

    #[test]
    fn numerics() {
        // 12.345 -> digits [12, 3450], weight 0, dscale 3
        assert_eq!(enc(12345, 3), vec![0, 2, 0, 0, 0, 0, 0, 3, 0, 12, 13, 122]);
        // 0 with scale 9
        assert_eq!(enc(0, 9), vec![0, 0, 0, 0, 0, 0, 0, 9]);
        // -1 -> one digit 1, weight 0, negative
        assert_eq!(enc(-1, 0), vec![0, 1, 0, 0, 0x40, 0, 0, 0, 0, 1]);
        // 10000 -> one digit 1 at weight 1
        assert_eq!(enc(10000, 0), vec![0, 1, 0, 1, 0, 0, 0, 0, 0, 1]);
    }
}
