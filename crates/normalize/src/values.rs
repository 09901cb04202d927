//! Value parsing and formatting as dlt's coercions need them.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

fn digits(b: &[u8], from: usize, n: usize) -> Option<u32> {
    let s = b.get(from..from + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// A parsed ISO 8601 timestamp: UTC microseconds and whether the text had an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedTimestamp {
    /// Microseconds since the Unix epoch, UTC.
    pub micros: i64,
    /// The text carried `Z` or an offset.
    pub has_offset: bool,
}

/// Parse `YYYY-MM-DD[T| ]HH:MM[:SS[.f]][Z|±HH[:MM]]` (what dlt's `iso_timestamp` detection accepts).
/// Date-only strings are not timestamps here (see [`parse_iso_date`]).
pub fn parse_iso_timestamp(s: &str) -> Option<ParsedTimestamp> {
    let b = s.as_bytes();
    if b.len() >= 15 && b[8] == b'T' && b[..8].iter().all(u8::is_ascii_digit) {
        // ISO 8601 basic format: YYYYMMDDTHHMMSS[.f][Z|±HHMM]
        let mut ext =
            format!("{}-{}-{}T{}:{}:{}", &s[0..4], &s[4..6], &s[6..8], s.get(9..11)?, s.get(11..13)?, s.get(13..15)?);
        if !s.get(9..15)?.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let rest = &s[15..];
        let (frac, tz) = match rest.find(['Z', 'z', '+', '-']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        ext.push_str(frac);
        if tz.len() == 5 && !tz.contains(':') {
            ext.push_str(&format!("{}:{}", &tz[..3], &tz[3..]));
        } else {
            ext.push_str(tz);
        }
        return parse_iso_timestamp(&ext);
    }
    if b.len() < 16 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if b[10] != b'T' && b[10] != b' ' && b[10] != b't' {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    if b[13] != b':' {
        return None;
    }
    let minute = digits(b, 14, 2)?;
    let mut i = 16;
    let mut second = 0;
    let mut nanos: u32 = 0;
    if i < b.len() && b[i] == b':' {
        second = digits(b, i + 1, 2)?;
        i += 3;
        if i < b.len() && (b[i] == b'.' || b[i] == b',') {
            i += 1;
            let start = i;
            let mut frac: u64 = 0;
            let mut n = 0;
            while i < b.len() && b[i].is_ascii_digit() {
                if n < 9 {
                    frac = frac * 10 + (b[i] - b'0') as u64;
                    n += 1;
                }
                i += 1;
            }
            if i == start {
                return None;
            }
            while n < 9 {
                frac *= 10;
                n += 1;
            }
            nanos = frac as u32;
        }
    }
    let mut offset_secs: i64 = 0;
    let mut has_offset = false;
    if i < b.len() {
        match b[i] {
            b'Z' | b'z' => {
                has_offset = true;
                i += 1;
            }
            b'+' | b'-' => {
                let sign = if b[i] == b'-' { -1 } else { 1 };
                let oh = digits(b, i + 1, 2)? as i64;
                i += 3;
                let mut om = 0i64;
                if i < b.len() && b[i] == b':' {
                    om = digits(b, i + 1, 2)? as i64;
                    i += 3;
                } else if i + 1 < b.len() && b[i].is_ascii_digit() {
                    om = digits(b, i, 2)? as i64;
                    i += 2;
                }
                if oh > 23 || om > 59 {
                    return None;
                }
                offset_secs = sign * (oh * 3600 + om * 60);
                has_offset = true;
            }
            _ => return None,
        }
    }
    if i != b.len() {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    let dt = NaiveDateTime::new(date, time);
    let micros = dt.and_utc().timestamp_micros() - offset_secs * 1_000_000;
    Some(ParsedTimestamp { micros, has_offset })
}

/// Parse `YYYY-MM-DD` into days since the epoch.
pub fn parse_iso_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let d = NaiveDate::from_ymd_opt(digits(b, 0, 4)? as i32, digits(b, 5, 2)?, digits(b, 8, 2)?)?;
    Some((d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32)
}

/// Parse `HH:MM[:SS[.f]]` into microseconds since midnight.
pub fn parse_iso_time(s: &str) -> Option<i64> {
    let t = NaiveTime::parse_from_str(s, "%H:%M:%S%.f").or_else(|_| NaiveTime::parse_from_str(s, "%H:%M")).ok()?;
    use chrono::Timelike;
    Some(t.num_seconds_from_midnight() as i64 * 1_000_000 + (t.nanosecond() / 1000) as i64)
}

/// dlt's `str2bool`.
pub fn str2bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" | "t" | "true" | "on" | "1" => Some(true),
        "n" | "no" | "f" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Python's `int(s)` for coercion from text (trimmed, optional sign, `0x` hex allowed).
pub fn parse_int_text(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else {
        let cleaned = body.replace('_', "");
        if cleaned.is_empty() || !cleaned.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        cleaned.parse::<i64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// Python's `float(s)` for coercion from text.
pub fn parse_float_text(s: &str) -> Option<f64> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "nan" | "+nan" | "-nan" => return Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+' | b'e' | b'E' | b'_')) {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// Python's `repr(float)`.
pub fn py_float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    // shortest round-trip digits and exponent
    let sci = format!("{v:e}"); // e.g. "1.5e-5", "-1e16"
    let (mant, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("int exponent");
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if neg { "-" } else { "" };
    if (-4..16).contains(&exp) {
        // fixed notation
        let n = digits.len() as i32;
        let point = exp + 1; // position of the decimal point within digits
        let s = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point >= n {
            format!("{}{}.0", digits, "0".repeat((point - n) as usize))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits.clone() };
        let es = if exp < 0 { format!("-{:02}", -exp) } else { format!("+{exp:02}") };
        format!("{sign}{m}e{es}")
    }
}

/// Format UTC microseconds as ISO 8601 with offset, as Python's `isoformat()` does.
pub fn micros_to_iso(micros: i64, with_tz: bool) -> String {
    let dt = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
    let frac = if micros.rem_euclid(1_000_000) != 0 { "%.6f" } else { "" };
    if with_tz {
        dt.format(&format!("%Y-%m-%dT%H:%M:%S{frac}+00:00")).to_string()
    } else {
        dt.naive_utc().format(&format!("%Y-%m-%dT%H:%M:%S{frac}")).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let t = parse_iso_timestamp("2024-01-01T01:02:03+02:00").unwrap();
        assert_eq!(micros_to_iso(t.micros, true), "2023-12-31T23:02:03+00:00");
        assert!(t.has_offset);
        let n = parse_iso_timestamp("2024-01-01 00:00:00").unwrap();
        assert!(!n.has_offset);
        assert_eq!(n.micros, 1704067200000000);
        assert!(parse_iso_timestamp("2024-01-02").is_none());
        assert!(parse_iso_timestamp("2024-13-45T00:00:00").is_none());
        assert!(parse_iso_timestamp("12:30:00").is_none());
        let basic = parse_iso_timestamp("20240601T120000Z").unwrap();
        assert_eq!(micros_to_iso(basic.micros, true), "2024-06-01T12:00:00+00:00");
        assert_eq!(parse_iso_timestamp("20240601T120000+0200").unwrap().micros, basic.micros - 7_200_000_000);
        assert!(parse_iso_timestamp("2024-W01-1").is_none());
        assert!(parse_iso_timestamp("2024-02-30T00:00:00Z").is_none());
        let f = parse_iso_timestamp("2024-01-02T03:04:05.123456Z").unwrap();
        assert_eq!(f.micros % 1_000_000, 123456);
        assert_eq!(parse_iso_date("1970-01-02"), Some(1));
        assert_eq!(parse_iso_time("01:02:03.5"), Some(3723500000));
    }

    #[test]
    fn python_float_repr() {
        for (v, s) in [
            (1.5, "1.5"),
            (1.0, "1.0"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123456789.125, "123456789.125"),
            (-2.5e300, "-2.5e+300"),
            (1e15, "1000000000000000.0"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(py_float_repr(v), s);
        }
    }

    #[test]
    fn text_coercions() {
        assert_eq!(parse_int_text(" 5 "), Some(5));
        assert_eq!(parse_int_text("0x1f"), Some(31));
        assert_eq!(parse_int_text("1.5"), None);
        assert_eq!(parse_float_text("2.5"), Some(2.5));
        assert_eq!(str2bool("yes"), Some(true));
        assert_eq!(str2bool("notbool"), None);
    }
}
