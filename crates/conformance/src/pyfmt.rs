//! Python-compatible text formatting used by the dump and the comparison.
//!
//! The reference scripts are written in Python, so their outputs (and the sort keys they
//! derive from JSON text) depend on how Python prints values: `repr(float)`, `str(Decimal)`,
//! `json.dumps(...)` with its escaping rules, `repr(str)` in messages. This module reproduces
//! those rules for the values that occur in dumps and result files.

use serde_json::{Number, Value};
use std::cmp::Ordering;
use std::fmt::Write as _;

// ------------------------------------------------------------------------------------------
// floats

/// Python's `repr(float)` (shortest round-trip digits; exponent form outside `1e-4 <= |x| < 1e16`).
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let neg = x.is_sign_negative();
    if x == 0.0 {
        return if neg { "-0.0" } else { "0.0" }.to_string();
    }
    let (digits, exp) = shortest_digits(x.abs());
    let decpt = exp + 1; // value = 0.<digits> * 10^decpt
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if decpt > -4 && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..(-decpt) {
                out.push('0');
            }
            out.push_str(&digits);
        } else if decpt as usize >= digits.len() {
            out.push_str(&digits);
            for _ in 0..(decpt as usize - digits.len()) {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.unsigned_abs());
    }
    out
}

/// Shortest round-trip significant digits of a positive finite `x` and the decimal exponent of
/// the first digit. Like Python (David Gay's dtoa, mode 0), among the shortest candidates the
/// one closest to the exact binary value wins, ties going to the even digit.
fn shortest_digits(x: f64) -> (String, i32) {
    let split = |s: &str| -> (String, i32) {
        let (mant, exp) = s.split_once('e').expect("LowerExp always has an exponent");
        let digits: String = mant.chars().filter(|c| *c != '.').collect();
        (digits, exp.parse().expect("exponent is an integer"))
    };
    // Rust's `{:e}` gives a shortest round-trip digit string, but not always the nearest one
    let (short, short_exp) = split(&format!("{x:e}"));
    let n = short.len();
    // exact formatting rounds half to even: the nearest n-digit decimal
    let (near, near_exp) = split(&format!("{:.*e}", n - 1, x));
    let near = near.trim_end_matches('0');
    let near = if near.is_empty() { "0" } else { near };
    let text = format!("{}.{}e{}", &near[..1], &near[1..], near_exp);
    if near.len() <= n && text.parse::<f64>() == Ok(x) { (near.to_string(), near_exp) } else { (short, short_exp) }
}

/// A float as `json.dumps` prints it (`NaN`, `Infinity`, `-Infinity` for non-finite values).
pub fn float_json(x: f64) -> String {
    if x.is_nan() {
        "NaN".to_string()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        float_repr(x)
    }
}

/// A JSON number holding Python's repr of a finite float.
pub fn float_number(x: f64) -> Option<Number> {
    if !x.is_finite() {
        return None;
    }
    number_from_text(&float_repr(x))
}

/// Builds a JSON number that keeps `text` verbatim (serde_json `arbitrary_precision`).
pub fn number_from_text(text: &str) -> Option<Number> {
    text.parse::<Number>().ok()
}

/// Python `float(s)` for strings: surrounding whitespace, `_` between digits, inf/nan words.
pub fn parse_py_float(s: &str) -> Option<f64> {
    let t = s.trim_matches(is_py_whitespace);
    if t.is_empty() {
        return None;
    }
    let cleaned = strip_digit_underscores(t)?;
    let lower = cleaned.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    if lower.len() - body.len() > 1 {
        return None;
    }
    if matches!(body, "inf" | "infinity" | "nan") {
        return lower.parse::<f64>().ok();
    }
    // only plain decimal syntax from here on (Rust accepts the same grammar as Python)
    if !body.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-')) {
        return None;
    }
    cleaned.parse::<f64>().ok()
}

/// Python `int(s)` for short strings (ASCII digits only): whitespace, sign, `_` between digits.
pub fn parse_py_int(s: &str) -> Option<i128> {
    let t = s.trim_matches(is_py_whitespace);
    let cleaned = strip_digit_underscores(t)?;
    let body = cleaned.strip_prefix(['+', '-']).unwrap_or(&cleaned);
    if body.is_empty() || !body.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    cleaned.parse::<i128>().ok()
}

fn is_py_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Removes `_` that sit between two ASCII digits; any other `_` makes the text invalid.
fn strip_digit_underscores(t: &str) -> Option<String> {
    if !t.contains('_') {
        return Some(t.to_string());
    }
    let chars: Vec<char> = t.chars().collect();
    let mut out = String::with_capacity(t.len());
    for (i, c) in chars.iter().enumerate() {
        if *c == '_' {
            let prev = i > 0 && chars[i - 1].is_ascii_digit();
            let next = i + 1 < chars.len() && chars[i + 1].is_ascii_digit();
            if !(prev && next) {
                return None;
            }
        } else {
            out.push(*c);
        }
    }
    Some(out)
}

// ------------------------------------------------------------------------------------------
// integers as decimal text (arbitrary size)

/// True when a JSON number's text is an integer literal (Python `json.loads` gives an `int`).
pub fn is_int_text(text: &str) -> bool {
    !text.contains(['.', 'e', 'E'])
}

/// Normalizes integer text the way `str(int(text))` does (`-0` -> `0`, no leading zeros).
pub fn normalize_int_text(text: &str) -> String {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        "0".to_string()
    } else if neg {
        format!("-{digits}")
    } else {
        digits.to_string()
    }
}

/// Compares two integer texts numerically.
pub fn cmp_int_text(a: &str, b: &str) -> Ordering {
    let a = normalize_int_text(a);
    let b = normalize_int_text(b);
    let (an, ad) = match a.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, a.as_str()),
    };
    let (bn, bd) = match b.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, b.as_str()),
    };
    match (an, bn) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (neg, _) => {
            let mag = ad.len().cmp(&bd.len()).then_with(|| ad.cmp(bd));
            if neg { mag.reverse() } else { mag }
        }
    }
}

/// Exact decimal text of an integral, finite f64.
pub fn integral_f64_text(x: f64) -> String {
    debug_assert!(x.is_finite() && x.fract() == 0.0);
    if x.abs() < 1e30 {
        return normalize_int_text(&format!("{}", x as i128));
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1075;
    let mant = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
    let mut digits = BigDigits::from_u64(mant);
    for _ in 0..exp.max(0) {
        digits.mul_small(2);
    }
    let s = digits.to_string();
    if x < 0.0 { format!("-{s}") } else { s }
}

/// Exact decimal expansion of a finite f64 as (negative, coefficient digits, exponent).
pub fn f64_exact_decimal(x: f64) -> (bool, String, i64) {
    let neg = x.is_sign_negative();
    let bits = x.abs().to_bits();
    let raw_exp = ((bits >> 52) & 0x7ff) as i64;
    let frac = bits & ((1u64 << 52) - 1);
    let (mut mant, mut exp2) = if raw_exp == 0 { (frac, -1074) } else { (frac | (1u64 << 52), raw_exp - 1075) };
    // reduce to the smallest exact representation (like `Decimal(float)`)
    while mant != 0 && mant % 2 == 0 && exp2 < 0 {
        mant /= 2;
        exp2 += 1;
    }
    let mut digits = BigDigits::from_u64(mant);
    if exp2 >= 0 {
        for _ in 0..exp2 {
            digits.mul_small(2);
        }
        (neg, digits.to_string(), 0)
    } else {
        // mant * 2^-k = mant * 5^k / 10^k
        for _ in 0..(-exp2) {
            digits.mul_small(5);
        }
        (neg, digits.to_string(), exp2)
    }
}

/// Little helper for exact integer arithmetic in base 1e9.
struct BigDigits(Vec<u64>);

impl BigDigits {
    const BASE: u64 = 1_000_000_000;

    fn from_u64(mut v: u64) -> Self {
        let mut limbs = Vec::new();
        while v > 0 {
            limbs.push(v % Self::BASE);
            v /= Self::BASE;
        }
        BigDigits(limbs)
    }

    fn mul_small(&mut self, k: u64) {
        let mut carry = 0u64;
        for limb in self.0.iter_mut() {
            let v = *limb * k + carry;
            *limb = v % Self::BASE;
            carry = v / Self::BASE;
        }
        while carry > 0 {
            self.0.push(carry % Self::BASE);
            carry /= Self::BASE;
        }
    }
}

impl std::fmt::Display for BigDigits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.split_last() {
            None => f.write_str("0"),
            Some((top, rest)) => {
                write!(f, "{top}")?;
                for limb in rest.iter().rev() {
                    write!(f, "{limb:09}")?;
                }
                Ok(())
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// decimals

/// A parsed Python `Decimal` (finite values only carry digits/exponent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PyDecimal {
    Finite {
        neg: bool,
        /// coefficient without leading zeros ("0" for zero)
        coeff: String,
        exp: i64,
    },
    Infinite {
        neg: bool,
    },
    NaN,
    SNaN,
}

impl PyDecimal {
    /// `decimal.Decimal(s)` for a string (ASCII syntax; surrounding whitespace allowed).
    pub fn parse(s: &str) -> Option<PyDecimal> {
        let t = s.trim_matches(is_py_whitespace);
        let t = strip_digit_underscores(t)?;
        let (neg, body) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t.as_str()),
        };
        let lower = body.to_ascii_lowercase();
        if lower == "inf" || lower == "infinity" {
            return Some(PyDecimal::Infinite { neg });
        }
        for (prefix, val) in [("snan", PyDecimal::SNaN), ("nan", PyDecimal::NaN)] {
            if let Some(payload) = lower.strip_prefix(prefix) {
                return payload.chars().all(|c| c.is_ascii_digit()).then_some(val);
            }
        }
        let (mantissa, exp_part) = match lower.find('e') {
            Some(i) => (&lower[..i], Some(&lower[i + 1..])),
            None => (lower.as_str(), None),
        };
        let (int_part, frac_part) = match mantissa.find('.') {
            Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
            None => (mantissa, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        if !int_part.chars().all(|c| c.is_ascii_digit()) || !frac_part.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let mut exp: i64 = 0;
        if let Some(e) = exp_part {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            exp = e.parse::<i64>().ok()?;
        }
        exp -= frac_part.len() as i64;
        let all = format!("{int_part}{frac_part}");
        let coeff = all.trim_start_matches('0');
        let coeff = if coeff.is_empty() { "0" } else { coeff };
        Some(PyDecimal::Finite { neg, coeff: coeff.to_string(), exp })
    }

    /// `decimal.Decimal(int)`.
    pub fn from_int_text(text: &str) -> PyDecimal {
        let n = normalize_int_text(text);
        let (neg, digits) = match n.strip_prefix('-') {
            Some(d) => (true, d.to_string()),
            None => (false, n),
        };
        PyDecimal::Finite { neg, coeff: digits, exp: 0 }
    }

    /// `decimal.Decimal(float)` (exact binary value).
    pub fn from_f64(x: f64) -> PyDecimal {
        if x.is_nan() {
            return PyDecimal::NaN;
        }
        if x.is_infinite() {
            return PyDecimal::Infinite { neg: x < 0.0 };
        }
        let (neg, digits, exp) = f64_exact_decimal(x);
        let coeff = digits.trim_start_matches('0');
        PyDecimal::Finite { neg, coeff: if coeff.is_empty() { "0".into() } else { coeff.into() }, exp }
    }

    /// Python `Decimal.__eq__`; `None` where Python raises (signaling NaN).
    pub fn py_eq(&self, other: &PyDecimal) -> Option<bool> {
        use PyDecimal::*;
        match (self, other) {
            (SNaN, _) | (_, SNaN) => None,
            (NaN, _) | (_, NaN) => Some(false),
            (Infinite { neg: a }, Infinite { neg: b }) => Some(a == b),
            (Infinite { .. }, _) | (_, Infinite { .. }) => Some(false),
            (Finite { neg: na, coeff: ca, exp: ea }, Finite { neg: nb, coeff: cb, exp: eb }) => {
                let za = ca == "0";
                let zb = cb == "0";
                if za || zb {
                    return Some(za && zb);
                }
                let (ca2, ea2) = strip_trailing_zeros(ca, *ea);
                let (cb2, eb2) = strip_trailing_zeros(cb, *eb);
                Some(na == nb && ca2 == cb2 && ea2 == eb2)
            }
        }
    }

    /// Python `str(Decimal)` (scientific notation when the exponent is positive or the
    /// adjusted exponent is below -6, e.g. `0E-9`, `1.00E-7`).
    pub fn to_py_string(&self) -> String {
        match self {
            PyDecimal::NaN => "NaN".into(),
            PyDecimal::SNaN => "sNaN".into(),
            PyDecimal::Infinite { neg } => if *neg { "-Infinity" } else { "Infinity" }.into(),
            PyDecimal::Finite { neg, coeff, exp } => {
                let len = coeff.len() as i64;
                let leftdigits = exp + len;
                let dotplace = if *exp <= 0 && leftdigits > -6 { leftdigits } else { 1 };
                let (intpart, fracpart) = if dotplace <= 0 {
                    ("0".to_string(), format!(".{}{}", "0".repeat((-dotplace) as usize), coeff))
                } else if dotplace >= len {
                    (format!("{}{}", coeff, "0".repeat((dotplace - len) as usize)), String::new())
                } else {
                    (coeff[..dotplace as usize].to_string(), format!(".{}", &coeff[dotplace as usize..]))
                };
                let exp_s = if leftdigits == dotplace {
                    String::new()
                } else {
                    let e = leftdigits - dotplace;
                    format!("E{}{}", if e < 0 { '-' } else { '+' }, e.unsigned_abs())
                };
                format!("{}{intpart}{fracpart}{exp_s}", if *neg { "-" } else { "" })
            }
        }
    }
}

fn strip_trailing_zeros(coeff: &str, exp: i64) -> (&str, i64) {
    let stripped = coeff.trim_end_matches('0');
    (stripped, exp + (coeff.len() - stripped.len()) as i64)
}

/// `str(Decimal(duckdb_text))` for DuckDB's DECIMAL text (e.g. `-0.500` -> `-0.500`,
/// `0.000000000` -> `0E-9`).
pub fn decimal_str(text: &str) -> String {
    match PyDecimal::parse(text) {
        Some(d) => d.to_py_string(),
        None => text.to_string(),
    }
}

// ------------------------------------------------------------------------------------------
// json.dumps

/// Options of Python's `json.dumps` that matter here.
#[derive(Debug, Clone, Copy)]
pub struct DumpsOpts {
    pub sort_keys: bool,
    pub ensure_ascii: bool,
    pub item_sep: &'static str,
    pub key_sep: &'static str,
}

/// `json.dumps(o, sort_keys=True, ensure_ascii=True, separators=(",", ":"))`
pub const CANONICAL: DumpsOpts = DumpsOpts { sort_keys: true, ensure_ascii: true, item_sep: ",", key_sep: ":" };

/// `json.dumps(o, ensure_ascii=False)` (default separators `", "` and `": "`)
pub const DISPLAY: DumpsOpts = DumpsOpts { sort_keys: false, ensure_ascii: false, item_sep: ", ", key_sep: ": " };

/// Python's `json.dumps` of a JSON-loaded value.
pub fn dumps(v: &Value, opts: DumpsOpts) -> String {
    let mut out = String::new();
    write_json(&mut out, v, opts);
    out
}

/// Canonical JSON (`_sk` of dump.py).
pub fn sk(v: &Value) -> String {
    dumps(v, CANONICAL)
}

pub fn write_json(out: &mut String, v: &Value, opts: DumpsOpts) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_json(n)),
        Value::String(s) => write_json_str(out, s, opts.ensure_ascii),
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(opts.item_sep);
                }
                write_json(out, x, opts);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if opts.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(opts.item_sep);
                }
                write_json_str(out, k, opts.ensure_ascii);
                out.push_str(opts.key_sep);
                write_json(out, x, opts);
            }
            out.push('}');
        }
    }
}

/// How Python prints a JSON number after `json.loads` (ints verbatim, floats via repr).
pub fn number_json(n: &Number) -> String {
    let text = n.to_string();
    if is_int_text(&text) {
        normalize_int_text(&text)
    } else {
        match text.parse::<f64>() {
            Ok(f) => float_json(f),
            Err(_) => text,
        }
    }
}

/// `json.dumps` of a string (`ensure_ascii` escapes everything outside `' '..='~'`).
pub fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{:04x}", unit);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

pub fn json_str(s: &str, ensure_ascii: bool) -> String {
    let mut out = String::new();
    write_json_str(&mut out, s, ensure_ascii);
    out
}

// ------------------------------------------------------------------------------------------
// str() / repr() of JSON-loaded values (for messages)

/// Python `str(v)` of a value produced by `json.load`.
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python `repr(v)` of a value produced by `json.load`.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => {
            let text = n.to_string();
            if is_int_text(&text) {
                normalize_int_text(&text)
            } else {
                text.parse::<f64>().map(float_repr).unwrap_or(text)
            }
        }
        Value::String(s) => repr_str(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map.iter().map(|(k, x)| format!("{}: {}", repr_str(k), py_repr(x))).collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

/// Python `repr(str)`.
pub fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::new();
    out.push(quote);
    for c in s.chars() {
        match c {
            c if c == quote || c == '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x7f => out.push(c),
            c if is_printable(c) => out.push(c),
            c if (c as u32) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push(quote);
    out
}

/// Approximation of Python's `str.isprintable` for non-ASCII characters (control, format,
/// separator and private-use characters are not printable).
fn is_printable(c: char) -> bool {
    let u = c as u32;
    !matches!(u,
        0x80..=0xa0
        | 0xad
        | 0x600..=0x605
        | 0x61c
        | 0x6dd
        | 0x70f
        | 0x1680
        | 0x180e
        | 0x2000..=0x200f
        | 0x2028..=0x202f
        | 0x205f..=0x2064
        | 0x2066..=0x206f
        | 0x3000
        | 0xd800..=0xf8ff
        | 0xfeff
        | 0xfff9..=0xfffb
        | 0xfffe..=0xffff
        | 0xe0001
        | 0xe0020..=0xe007f
        | 0xf0000..=0x10ffff)
}

/// Python `bytes.__repr__`.
pub fn repr_bytes(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') { '"' } else { '\'' };
    let mut out = String::from("b");
    out.push(quote);
    for &x in b {
        match x {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            x if x as char == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(x as char),
            x => {
                let _ = write!(out, "\\x{x:02x}");
            }
        }
    }
    out.push(quote);
    out
}

/// Truncates to `n` code points the way `s[: n - 3] + "..."` does when longer than `n`.
pub fn shorten(s: String, n: usize) -> String {
    if s.chars().count() <= n {
        s
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(3)).collect();
        t.push_str("...");
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1234567890123456.0, "1234567890123456.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5, "1.5"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (123456789012345680000.0, "1.2345678901234568e+20"),
            (0.1f32 as f64, "0.10000000149011612"),
            (-2.5e-7, "-2.5e-07"),
            (100.0, "100.0"),
            (9007199254740993.0, "9007199254740992.0"),
            (10.529983520507812, "10.529983520507812"),
            (-118.15383911132812, "-118.15383911132812"),
        ];
        for (x, want) in cases {
            assert_eq!(float_repr(x), want, "{x:e}");
        }
    }

    #[test]
    fn decimal_str_matches_python() {
        for (text, want) in [
            ("0.000000000", "0E-9"),
            ("0.000000100", "1.00E-7"),
            ("0.000001000", "0.000001000"),
            ("1.50", "1.50"),
            ("123", "123"),
            ("-0.500", "-0.500"),
            ("12345678901234567890123456789.123456789", "12345678901234567890123456789.123456789"),
            ("100", "100"),
            ("0", "0"),
        ] {
            assert_eq!(decimal_str(text), want);
        }
        let a = PyDecimal::parse("1.50").unwrap();
        let b = PyDecimal::parse("1.5").unwrap();
        assert_eq!(a.py_eq(&b), Some(true));
        assert_eq!(PyDecimal::parse("0E-9").unwrap().py_eq(&PyDecimal::parse("-0").unwrap()), Some(true));
        assert_eq!(PyDecimal::from_f64(0.5), PyDecimal::parse("0.5").unwrap());
    }

    #[test]
    fn json_escapes() {
        let v: Value = serde_json::from_str(r#"{"b":"é😀\u007f\u0001","a":[1,1.0,1E5,-0]}"#).unwrap();
        assert_eq!(sk(&v), r#"{"a":[1,1.0,100000.0,0],"b":"\u00e9\ud83d\ude00\u007f\u0001"}"#);
        assert_eq!(dumps(&v, DISPLAY), "{\"b\": \"é😀\u{7f}\\u0001\", \"a\": [1, 1.0, 100000.0, 0]}");
    }

    #[test]
    fn number_text_is_kept() {
        let n = number_from_text("1e+16").unwrap();
        assert_eq!(n.to_string(), "1e+16");
        let big = number_from_text("340282366920938463463374607431768211455").unwrap();
        assert_eq!(big.to_string(), "340282366920938463463374607431768211455");
    }

    #[test]
    fn reprs() {
        assert_eq!(repr_str("a'b"), "\"a'b\"");
        assert_eq!(repr_str("a\"'b"), "'a\"\\'b'");
        assert_eq!(repr_bytes(b"x\x00'"), "b\"x\\x00'\"");
        assert_eq!(integral_f64_text(1e30), "1000000000000000019884624838656");
        assert_eq!(cmp_int_text("-5", "3"), Ordering::Less);
        assert_eq!(cmp_int_text("10", "9"), Ordering::Greater);
        assert_eq!(parse_py_int(" 2024"), Some(2024));
        assert_eq!(parse_py_int("1-01"), None);
        assert_eq!(parse_py_float("1_000.5"), Some(1000.5));
        assert_eq!(parse_py_float("abc"), None);
        assert_eq!(parse_py_float(" -Infinity "), Some(f64::NEG_INFINITY));
        assert!(parse_py_float("NaN").unwrap().is_nan());
    }
}
