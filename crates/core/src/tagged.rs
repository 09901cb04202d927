//! dlt's typed JSON values.
//!
//! JSON has no datetime, date, time, decimal or bytes. dlt keeps such values in JSON as strings
//! whose first character is a tag from Unicode's private-use area: U+F026 decimal, U+F027
//! datetime, U+F028 date, U+F029 UUID, U+F02A hex bytes, U+F02B base64 bytes, U+F02C wei and
//! U+F02D time, followed by the value's text (Python's `isoformat()` for the temporal types,
//! `str()` for decimals). The whole pipeline state is written this way — `state.json`, the
//! `_dlt_pipeline_state` row and the text the state's version hash is taken over — so an
//! incremental cursor keeps its type from run to run and from one tool to the other.
//!
//! dlt-rs keeps tagged strings as they are inside the state document (so a state written by
//! dlt round-trips byte for byte), compares cursor values on what the tag says they are
//! ([`plain`]), and tags the cursor values it takes from typed (Arrow) data the way dlt tags
//! the Python values it gets from the same data ([`datetime`], [`date`], [`time`], [`decimal`]).

use std::borrow::Cow;

use serde_json::Value;

/// The type a tag stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// U+F026: a decimal number (`str(Decimal)`).
    Decimal,
    /// U+F027: a datetime (`isoformat()`, with an offset when time-zone aware).
    DateTime,
    /// U+F028: a date (`YYYY-MM-DD`).
    Date,
    /// U+F029: a UUID.
    Uuid,
    /// U+F02A: bytes as hex.
    HexBytes,
    /// U+F02B: bytes as base64.
    Bytes,
    /// U+F02C: wei (a large decimal integer).
    Wei,
    /// U+F02D: a time of day (`isoformat()`).
    Time,
}

const TAGS: [Tag; 8] =
    [Tag::Decimal, Tag::DateTime, Tag::Date, Tag::Uuid, Tag::HexBytes, Tag::Bytes, Tag::Wei, Tag::Time];

/// The first tag character; the others follow in the order of [`Tag`].
const FIRST: u32 = 0xF026;

impl Tag {
    /// The tag character.
    pub fn char(self) -> char {
        let i = TAGS.iter().position(|t| *t == self).expect("listed") as u32;
        char::from_u32(FIRST + i).expect("private-use character")
    }

    fn from_char(c: char) -> Option<Tag> {
        (c as u32).checked_sub(FIRST).and_then(|i| TAGS.get(i as usize)).copied()
    }

    /// Whether values of this type order by the instant they name.
    pub fn is_temporal(self) -> bool {
        matches!(self, Tag::DateTime | Tag::Date | Tag::Time)
    }
}

/// The tag and text of a tagged string (`None` for any other value, and for a lone tag
/// character, which dlt leaves as it is too).
pub fn split(v: &Value) -> Option<(Tag, &str)> {
    let s = v.as_str()?;
    let mut chars = s.chars();
    let tag = Tag::from_char(chars.next()?)?;
    let text = chars.as_str();
    (!text.is_empty()).then_some((tag, text))
}

/// `text` tagged as `tag`.
pub fn tagged(tag: Tag, text: &str) -> Value {
    let mut s = String::with_capacity(text.len() + 3);
    s.push(tag.char());
    s.push_str(text);
    Value::String(s)
}

/// The value a tagged string stands for, as plain JSON: decimals and wei as numbers (exact),
/// everything else as its text. Other values are returned as they are.
pub fn plain(v: &Value) -> Cow<'_, Value> {
    match split(v) {
        Some((Tag::Decimal | Tag::Wei, text)) => match text.parse::<serde_json::Number>() {
            Ok(n) => Cow::Owned(Value::Number(n)),
            Err(_) => Cow::Owned(Value::String(text.to_string())),
        },
        Some((_, text)) => Cow::Owned(Value::String(text.to_string())),
        None => Cow::Borrowed(v),
    }
}

/// [`plain`] applied to every value of a document, recursively.
pub fn plain_deep(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(plain_deep).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), plain_deep(v))).collect()),
        v => plain(v).into_owned(),
    }
}

/// A datetime as dlt tags it: Python's `isoformat()` of microseconds since the epoch —
/// `2024-01-01T03:20:00+00:00`, with `.ffffff` only when there are microseconds, and no offset
/// for a naive value.
pub fn datetime(micros: i64, aware: bool) -> Option<Value> {
    let d = chrono::DateTime::from_timestamp_micros(micros)?.naive_utc();
    let mut s = if micros.rem_euclid(1_000_000) == 0 {
        d.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        d.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    };
    if aware {
        s.push_str("+00:00");
    }
    Some(tagged(Tag::DateTime, &s))
}

/// A date (days since the epoch) as dlt tags it: `YYYY-MM-DD`.
pub fn date(days: i64) -> Option<Value> {
    let d = chrono::NaiveDate::from_num_days_from_ce_opt(i32::try_from(days + 719_163).ok()?)?;
    Some(tagged(Tag::Date, &d.format("%Y-%m-%d").to_string()))
}

/// A time of day (microseconds since midnight) as dlt tags it: `HH:MM:SS[.ffffff]`.
pub fn time(micros: i64) -> Value {
    let (secs, frac) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let hms = format!("{:02}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60);
    if frac == 0 { tagged(Tag::Time, &hms) } else { tagged(Tag::Time, &format!("{hms}.{frac:06}")) }
}

/// A decimal's text (as Python's `str(Decimal)` writes a value read from a fixed-scale column,
/// e.g. `12.50`) tagged as dlt tags it.
pub fn decimal(text: &str) -> Value {
    tagged(Tag::Decimal, text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tags_are_dlts_characters() {
        assert_eq!(Tag::Decimal.char(), '\u{f026}');
        assert_eq!(Tag::DateTime.char(), '\u{f027}');
        assert_eq!(Tag::Date.char(), '\u{f028}');
        assert_eq!(Tag::Time.char(), '\u{f02d}');
        for t in TAGS {
            assert_eq!(Tag::from_char(t.char()), Some(t));
        }
        assert_eq!(Tag::from_char('\u{f025}'), None);
        assert_eq!(Tag::from_char('\u{f02e}'), None);
    }

    #[test]
    fn split_and_plain() {
        let ts = json!("\u{f027}2024-01-01T03:20:00+00:00");
        assert_eq!(split(&ts), Some((Tag::DateTime, "2024-01-01T03:20:00+00:00")));
        assert_eq!(*plain(&ts), json!("2024-01-01T03:20:00+00:00"));
        let d = json!("\u{f026}12345678901234567890.50");
        assert_eq!(plain(&d).to_string(), "12345678901234567890.50");
        assert!(plain(&d).is_number());
        // a lone tag, an untagged string and other values stay as they are
        for v in [json!("\u{f027}"), json!("2024-01-01"), json!(5), json!(null)] {
            assert_eq!(split(&v), None);
            assert_eq!(*plain(&v), v);
        }
        let doc = json!({"a": [ts, {"b": "\u{f028}2024-02-29"}], "c": 1});
        assert_eq!(plain_deep(&doc), json!({"a": ["2024-01-01T03:20:00+00:00", {"b": "2024-02-29"}], "c": 1}));
    }

    #[test]
    fn python_isoformat() {
        assert_eq!(datetime(1_704_079_200_000_000, true), Some(json!("\u{f027}2024-01-01T03:20:00+00:00")));
        assert_eq!(datetime(1_704_079_200_000_500, false), Some(json!("\u{f027}2024-01-01T03:20:00.000500")));
        assert_eq!(date(19_782), Some(json!("\u{f028}2024-02-29")));
        assert_eq!(date(-1), Some(json!("\u{f028}1969-12-31")));
        assert_eq!(time(3_723_000_000), json!("\u{f02d}01:02:03"));
        assert_eq!(time(3_723_000_001), json!("\u{f02d}01:02:03.000001"));
        assert_eq!(decimal("1.50"), json!("\u{f026}1.50"));
    }
}
