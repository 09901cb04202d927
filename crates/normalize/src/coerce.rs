//! Type inference, coercion into existing columns, and variant columns (dlt's matrix).

use std::borrow::Cow;

use base64::Engine;
use dlt_core::error::{Error, Result};
use dlt_core::naming::NamingConvention;
use dlt_core::schema::{Column, DataType, Schema};
use serde_json::{Number, Value};

use crate::buffers::{Cell, decimal_precision};
use crate::values::{
    parse_float_text, parse_int_text, parse_iso_date, parse_iso_time, parse_iso_timestamp, py_float_repr, str2bool,
};

/// The dlt type of a JSON value as Python would type it (no detections).
pub fn py_type(v: &Value) -> DataType {
    match v {
        Value::Bool(_) => DataType::Bool,
        Value::Number(n) if is_integer(n) => {
            if n.as_i64().is_some() {
                DataType::Bigint
            } else if n.as_str().trim_start_matches('-').len() <= 38 {
                // beyond 64 bits: dlt crashes or fails the load; dlt-rs keeps the exact value
                DataType::Decimal
            } else {
                DataType::Text
            }
        }
        Value::Number(_) => DataType::Double,
        Value::String(_) => DataType::Text,
        _ => DataType::Json,
    }
}

/// A JSON number written without `.` or exponent is an integer.
pub fn is_integer(n: &Number) -> bool {
    let s = n.as_str();
    !s.contains(['.', 'e', 'E'])
}

/// The type a new column gets from a value, with the schema's detections.
fn infer_type(schema: &Schema, v: &Value) -> DataType {
    if let Value::String(s) = v {
        if schema.settings.detections.iter().any(|d| d == "iso_timestamp") && parse_iso_timestamp(s).is_some() {
            return DataType::Timestamp;
        }
        if schema.settings.detections.iter().any(|d| d == "iso_date") && parse_iso_date(s).is_some() {
            return DataType::Date;
        }
    }
    py_type(v)
}

fn parse_decimal(text: &str, scale: u32) -> Option<i128> {
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
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.bytes().chain(frac_part.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    // value = digits * 10^(exp - frac_len); want value * 10^scale
    let shift = exp - frac_part.len() as i32 + scale as i32;
    let mut v: i128 = 0;
    let digits = digits.trim_start_matches('0');
    let (keep, round_digit) = if shift >= 0 {
        (digits.to_string(), None)
    } else {
        let cut = digits.len() as i32 + shift;
        if cut <= 0 {
            let rd = if cut == 0 { digits.chars().next() } else { None };
            (String::new(), rd)
        } else {
            (digits[..cut as usize].to_string(), digits.chars().nth(cut as usize))
        }
    };
    for c in keep.bytes() {
        v = v.checked_mul(10)?.checked_add((c - b'0') as i128)?;
    }
    if shift > 0 {
        v = v.checked_mul(10i128.checked_pow(shift as u32)?)?;
    }
    if let Some(r) = round_digit
        && r >= '5'
    {
        v += 1;
    }
    if v.unsigned_abs() >= 10u128.pow(38) {
        return None;
    }
    Some(if neg { -v } else { v })
}

fn decode_binary(s: &str) -> Option<Vec<u8>> {
    if let Some(h) = s.strip_prefix("0x") {
        if h.len() % 2 != 0 {
            return None;
        }
        return (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok()).collect();
    }
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// A JSON scalar, as the tape and serde_json both hold it: numbers as their literal.
#[derive(Clone, Copy)]
pub(crate) enum Scalar<'v> {
    Str(&'v str),
    Num(&'v str),
    Bool(bool),
}

fn literal_is_integer(s: &str) -> bool {
    !s.contains(['.', 'e', 'E'])
}

/// serde_json's `Number::as_i64` with arbitrary precision.
fn literal_i64(s: &str) -> Option<i64> {
    s.parse().ok()
}

/// serde_json's `Number::as_f64` with arbitrary precision.
fn literal_f64(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Coerce `v` (of Python type `from`) into a column of type `col`; `None` when dlt would raise.
pub(crate) fn coerce<'v>(col: &Column, v: &'v Value) -> Option<Cell<'v>> {
    match v {
        Value::String(s) => coerce_scalar(col, Scalar::Str(s)),
        Value::Number(n) => coerce_scalar(col, Scalar::Num(n.as_str())),
        Value::Bool(b) => coerce_scalar(col, Scalar::Bool(*b)),
        _ => Some(match (col.data_type?, v) {
            (DataType::Text, other) => Cell::Str(serde_json::to_string(other).ok()?.into()),
            (DataType::Json, Value::Object(_) | Value::Array(_)) => Cell::Str(serde_json::to_string(v).ok()?.into()),
            _ => return None,
        }),
    }
}

/// [`coerce`] of a scalar: the one place both the tape and the serde_json path convert values.
pub(crate) fn coerce_scalar<'v>(col: &Column, v: Scalar<'v>) -> Option<Cell<'v>> {
    let to = col.data_type?;
    Some(match (to, v) {
        (DataType::Text, Scalar::Str(s)) => Cell::Str(Cow::Borrowed(s)),
        (DataType::Text, Scalar::Num(n)) => {
            let text =
                if literal_is_integer(n) { n.to_string() } else { py_float_repr(literal_f64(n).unwrap_or(f64::NAN)) };
            Cell::Str(text.into())
        }
        (DataType::Text, Scalar::Bool(b)) => Cell::Str(Cow::Borrowed(if b { "True" } else { "False" })),
        (DataType::Json, Scalar::Str(s)) => {
            let parsed: Value = serde_json::from_str(s).ok()?;
            Cell::Str(serde_json::to_string(&parsed).ok()?.into())
        }
        (DataType::Bigint, Scalar::Num(n)) => {
            if literal_is_integer(n) {
                Cell::Int(literal_i64(n)?)
            } else {
                let f = literal_f64(n)?;
                if f.fract() != 0.0 || !f.is_finite() || f.abs() > 9.2e18 {
                    return None;
                }
                Cell::Int(f as i64)
            }
        }
        (DataType::Bigint, Scalar::Str(s)) => Cell::Int(parse_int_text(s)?),
        (DataType::Double, Scalar::Num(n)) => Cell::Float(literal_f64(n)?),
        (DataType::Double, Scalar::Str(s)) => Cell::Float(parse_float_text(s)?),
        (DataType::Bool, Scalar::Bool(b)) => Cell::Bool(b),
        (DataType::Bool, Scalar::Str(s)) => Cell::Bool(str2bool(s)?),
        (DataType::Bool, Scalar::Num(n)) => Cell::Bool(literal_f64(n)? != 0.0),
        (DataType::Timestamp, Scalar::Str(s)) => match parse_iso_timestamp(s) {
            Some(t) => Cell::Micros(t.micros),
            None => Cell::Micros(parse_iso_date(s)? as i64 * 86_400_000_000),
        },
        (DataType::Timestamp, Scalar::Num(n)) => {
            if literal_is_integer(n) {
                Cell::Micros(literal_i64(n)?.checked_mul(1_000_000)?)
            } else {
                Cell::Micros((literal_f64(n)? * 1_000_000.0).round() as i64)
            }
        }
        (DataType::Date, Scalar::Str(s)) => match parse_iso_date(s) {
            Some(d) => Cell::Days(d),
            None => Cell::Days(parse_iso_timestamp(s)?.micros.div_euclid(86_400_000_000) as i32),
        },
        (DataType::Date, Scalar::Num(n)) => Cell::Days((literal_f64(n)? / 86_400.0).floor() as i32),
        (DataType::Time, Scalar::Str(s)) => Cell::TimeMicros(parse_iso_time(s)?),
        (DataType::Decimal | DataType::Wei, Scalar::Num(n)) => {
            Cell::Decimal(parse_decimal(n, decimal_precision(col).1)?)
        }
        (DataType::Decimal | DataType::Wei, Scalar::Str(s)) => {
            Cell::Decimal(parse_decimal(s, decimal_precision(col).1)?)
        }
        (DataType::Binary, Scalar::Str(s)) => Cell::Bytes(decode_binary(s)?),
        _ => return None,
    })
}

/// Coerce a non-null value of column `name` in `table`, evolving the schema as dlt does:
/// a new column is inferred, an incomplete (declared) column is completed, and a value that
/// cannot be coerced goes to the variant column `<name>__v_<type>`.
#[cfg(test)]
pub fn coerce_value(
    schema: &mut Schema,
    naming: &dyn NamingConvention,
    table: &str,
    name: &str,
    v: &Value,
) -> Result<(Column, Cell<'static>)> {
    let c = plan_value(schema, naming, table, name, v)?;
    if c.new.is_some() {
        add_column(schema, table, &c.col);
    }
    Ok((c.col, c.cell.into_owned()))
}

/// What a coercion needs added to the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewKind {
    /// A column the table does not have.
    Column,
    /// A declared column without a type gets one.
    Completed,
    /// A variant column `<name>__v_<type>`.
    Variant,
}

/// A coerced value, and the column it goes to (to be added to the schema when `new` is set).
#[derive(Debug, Clone)]
pub struct Coerced<'v> {
    /// The column.
    pub col: Column,
    /// The value.
    pub cell: Cell<'v>,
    /// Whether the column must be added first.
    pub new: Option<NewKind>,
}

/// Add (or complete) a column of a table.
pub fn add_column(schema: &mut Schema, table: &str, col: &Column) {
    let t = schema.tables.get_mut(table).expect("table exists");
    // a declared column without a type (a key or sort hint only) takes its place when data
    // first arrives, as in dlt; declared typed columns keep theirs
    if t.columns.get(&col.name).is_some_and(|c| !c.is_complete()) {
        t.columns.shift_remove(&col.name);
    }
    t.columns.insert(col.name.clone(), col.clone());
}

/// Coerce a non-null value of column `name` in `table` as dlt does, without changing the schema:
/// a new column is inferred, an incomplete (declared) column is completed, and a value that
/// cannot be coerced goes to the variant column `<name>__v_<type>`.
pub fn plan_value<'v>(
    schema: &Schema,
    naming: &dyn NamingConvention,
    table: &str,
    name: &str,
    v: &'v Value,
) -> Result<Coerced<'v>> {
    plan_inner(schema, naming, table, name, v, false)
}

fn plan_inner<'v>(
    schema: &Schema,
    naming: &dyn NamingConvention,
    table: &str,
    name: &str,
    v: &'v Value,
    is_variant: bool,
) -> Result<Coerced<'v>> {
    let existing = schema.tables.get(table).and_then(|t| t.columns.get(name));
    if let Some(col) = existing.filter(|c| c.is_complete()) {
        if let Some(cell) = coerce(col, v) {
            return Ok(Coerced { col: col.clone(), cell, new: None });
        }
        if is_variant {
            return Err(Error::Schema(format!(
                "table `{table}`, column `{name}`: cannot coerce value {} into type {}",
                truncate(v),
                col.data_type.map(|d| d.as_str()).unwrap_or("?")
            )));
        }
        let vname = naming.make_path(&[name, &format!("v_{}", py_type(v).as_str())]);
        return plan_inner(schema, naming, table, &vname, v, true);
    }
    // new column, or a declared column without a type
    let dt = infer_type(schema, v);
    let completed = existing.is_some();
    let mut col = existing.cloned().unwrap_or_else(|| Column { name: name.to_string(), ..Default::default() });
    col.data_type = Some(dt);
    if dt == DataType::Decimal && matches!(v, Value::Number(n) if is_integer(n)) && col.precision.is_none() {
        // an integer beyond 64 bits: an exact decimal without fraction
        col.precision = Some(38);
        col.scale = Some(0);
    }
    if col.nullable.is_none() {
        col.nullable = Some(true);
    }
    if is_variant {
        col.variant = true;
        col.description = Some(format!("Variant of column {name} generated by dlt"));
    }
    let cell = coerce(&col, v).ok_or_else(|| {
        Error::Schema(format!("table `{table}`, column `{name}`: cannot store value {} as {dt}", truncate(v)))
    })?;
    let new = if is_variant {
        NewKind::Variant
    } else if completed {
        NewKind::Completed
    } else {
        NewKind::Column
    };
    Ok(Coerced { col, cell, new: Some(new) })
}

fn truncate(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 { format!("{}…", &s[..s.char_indices().nth(80).map(|(i, _)| i).unwrap_or(s.len())]) } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlt_core::naming::SnakeCase;
    use dlt_core::schema::Table;
    use serde_json::json;

    fn schema() -> Schema {
        let mut s = Schema::new("t");
        s.tables.insert("t".into(), Table::new("t"));
        s
    }

    #[test]
    fn inference_and_variants() {
        let mut s = schema();
        let n = SnakeCase::default();
        let (c, cell) = coerce_value(&mut s, &n, "t", "a", &json!(1)).unwrap();
        assert_eq!(c.data_type, Some(DataType::Bigint));
        assert_eq!(cell, Cell::Int(1));
        // integral float into bigint
        let (_, cell) = coerce_value(&mut s, &n, "t", "a", &json!(3.0)).unwrap();
        assert_eq!(cell, Cell::Int(3));
        // non-integral float -> variant
        let (c, cell) = coerce_value(&mut s, &n, "t", "a", &json!(2.5)).unwrap();
        assert_eq!(c.name, "a__v_double");
        assert!(c.variant);
        assert_eq!(c.description.as_deref(), Some("Variant of column a__v_double generated by dlt"));
        assert_eq!(cell, Cell::Float(2.5));
        // "5" into bigint
        let (_, cell) = coerce_value(&mut s, &n, "t", "a", &json!("5")).unwrap();
        assert_eq!(cell, Cell::Int(5));
        // bool into bigint -> variant
        let (c, _) = coerce_value(&mut s, &n, "t", "a", &json!(true)).unwrap();
        assert_eq!(c.name, "a__v_bool");
        // text column takes numbers
        coerce_value(&mut s, &n, "t", "s", &json!("x")).unwrap();
        let (_, cell) = coerce_value(&mut s, &n, "t", "s", &json!(1.25)).unwrap();
        assert_eq!(cell, Cell::Str("1.25".into()));
        // iso timestamp detection
        let (c, cell) = coerce_value(&mut s, &n, "t", "ts", &json!("2024-01-01T01:02:03+02:00")).unwrap();
        assert_eq!(c.data_type, Some(DataType::Timestamp));
        assert_eq!(cell, Cell::Micros(1704063723000000));
        let (c, _) = coerce_value(&mut s, &n, "t", "d", &json!("2024-01-01")).unwrap();
        assert_eq!(c.data_type, Some(DataType::Text));
        // int 5 into a timestamp column = epoch seconds
        let (_, cell) = coerce_value(&mut s, &n, "t", "ts", &json!(5)).unwrap();
        assert_eq!(cell, Cell::Micros(5_000_000));
        // bool column takes "yes" and 0
        coerce_value(&mut s, &n, "t", "b", &json!(true)).unwrap();
        assert_eq!(coerce_value(&mut s, &n, "t", "b", &json!("yes")).unwrap().1, Cell::Bool(true));
        assert_eq!(coerce_value(&mut s, &n, "t", "b", &json!(0)).unwrap().1, Cell::Bool(false));
        assert_eq!(coerce_value(&mut s, &n, "t", "b", &json!("notbool")).unwrap().0.name, "b__v_text");
    }

    #[test]
    fn integers_beyond_64_bits_stay_exact() {
        let mut s = schema();
        let n = SnakeCase::default();
        let (c, cell) = coerce_value(&mut s, &n, "t", "u", &json!(18446744073709551615u64)).unwrap();
        assert_eq!((c.data_type, c.precision, c.scale), (Some(DataType::Decimal), Some(38), Some(0)));
        assert_eq!(cell, Cell::Decimal(18446744073709551615));
        // into an existing bigint column: a decimal variant
        coerce_value(&mut s, &n, "t", "i", &json!(1)).unwrap();
        let (c, _) = coerce_value(&mut s, &n, "t", "i", &json!(9223372036854775808u64)).unwrap();
        assert_eq!(c.name, "i__v_decimal");
        // beyond 38 digits: text
        let big: Value = serde_json::from_str("123456789012345678901234567890123456789012").unwrap();
        let (c, cell) = coerce_value(&mut s, &n, "t", "h", &big).unwrap();
        assert_eq!(c.data_type, Some(DataType::Text));
        assert_eq!(cell, Cell::Str("123456789012345678901234567890123456789012".into()));
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal("1.23456789012", 9), Some(1234567890));
        assert_eq!(parse_decimal("10.25", 9), Some(10250000000));
        assert_eq!(parse_decimal("-1.5", 0), Some(-2));
        assert_eq!(parse_decimal("1e3", 2), Some(100000));
        assert_eq!(parse_decimal("abc", 2), None);
    }
}
