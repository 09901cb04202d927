//! Incremental loading: a cursor over items, with state kept at dlt's path
//! `sources.<source>.resources.<resource>.incremental.<cursor_path>`.

use std::cmp::Ordering;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::ids::digest_b64;
use crate::resource::KeyHint;

/// `incremental` hint of a resource (dlt's `dlt.sources.incremental` arguments).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IncrementalConfig {
    /// Key or dotted path of the cursor (`updated_at`, `meta.ts`, `$.meta.ts`).
    pub cursor_path: String,
    /// Start value when no state exists. A TOML datetime, date or time (unquoted in a pipeline
    /// file) is a typed value, as a Python `datetime`/`date`/`time` is to dlt.
    #[serde(default, deserialize_with = "de_cursor_value")]
    pub initial_value: Option<Value>,
    /// Exclusive end of a bounded window; such runs keep no state.
    #[serde(default, deserialize_with = "de_cursor_value")]
    pub end_value: Option<Value>,
    /// `max` (default) or `min`.
    #[serde(default)]
    pub last_value_func: Option<String>,
    /// Dedup key at the boundary (default: the resource's primary key; `[]` disables dedup).
    #[serde(default)]
    pub primary_key: Option<KeyHint>,
    /// `asc` or `desc`: stop reading at the first item past the window.
    #[serde(default)]
    pub row_order: Option<String>,
    /// `raise` (default), `include` or `exclude`.
    #[serde(default)]
    pub on_cursor_value_missing: Option<String>,
    /// `closed` (default, `>=`) or `open` (`>`).
    #[serde(default)]
    pub range_start: Option<String>,
    /// `open` (default, `<`) or `closed`.
    #[serde(default)]
    pub range_end: Option<String>,
    /// Re-open the start by this amount (numbers only here).
    #[serde(default)]
    pub lag: Option<f64>,
    /// A Rust comparison instead of `max`/`min`: `f(a, b)` is true when `a` is a better last
    /// value than `b`.
    #[serde(skip)]
    pub last_value_fn: Option<LastValueFn>,
}

/// A custom `last_value_func`: is the first value better than the second?
#[derive(Clone)]
pub struct LastValueFn(pub std::sync::Arc<BetterFn>);

/// `f(a, b)`: is `a` a better last value than `b`?
pub type BetterFn = dyn Fn(&Value, &Value) -> bool + Send + Sync;

impl std::fmt::Debug for LastValueFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LastValueFn(..)")
    }
}

impl PartialEq for LastValueFn {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

fn de_cursor_value<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Value>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.map(typed_config_value))
}

/// A TOML datetime as the toml crate hands it to serde (`{"$__toml_private_datetime": "…"}`)
/// becomes the tagged value dlt would have for the same Python value: an offset datetime keeps
/// its offset, a local datetime stays naive, a local date is a date and a local time a time.
/// Anything else is returned as it is.
pub fn typed_config_value(v: Value) -> Value {
    use crate::tagged::{Tag, tagged};
    let text = match &v {
        Value::Object(m) if m.len() == 1 => match m.get("$__toml_private_datetime") {
            Some(Value::String(s)) => s.clone(),
            _ => return v,
        },
        _ => return v,
    };
    let iso = text.replacen(' ', "T", 1);
    let frac = |nanos: u32| if nanos == 0 { String::new() } else { format!(".{:06}", nanos / 1_000) };
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(&iso) {
        use chrono::Timelike;
        let s = format!("{}{}{}", d.format("%Y-%m-%dT%H:%M:%S"), frac(d.nanosecond()), d.format("%:z"));
        return tagged(Tag::DateTime, &s);
    }
    if let Ok(d) = chrono::NaiveDateTime::parse_from_str(&iso, "%Y-%m-%dT%H:%M:%S%.f") {
        use chrono::Timelike;
        return tagged(Tag::DateTime, &format!("{}{}", d.format("%Y-%m-%dT%H:%M:%S"), frac(d.nanosecond())));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
        return tagged(Tag::Date, &d.format("%Y-%m-%d").to_string());
    }
    if let Ok(t) = chrono::NaiveTime::parse_from_str(&text, "%H:%M:%S%.f") {
        use chrono::Timelike;
        return tagged(Tag::Time, &format!("{}{}", t.format("%H:%M:%S"), frac(t.nanosecond())));
    }
    Value::String(text)
}

impl IncrementalConfig {
    /// A cursor on `cursor_path` with dlt's defaults.
    pub fn new(cursor_path: impl Into<String>) -> Self {
        IncrementalConfig {
            cursor_path: cursor_path.into(),
            initial_value: None,
            end_value: None,
            last_value_func: None,
            primary_key: None,
            row_order: None,
            on_cursor_value_missing: None,
            range_start: None,
            range_end: None,
            lag: None,
            last_value_fn: None,
        }
    }
}

/// Compare two cursor values: numbers numerically (decimals exactly), strings lexically except
/// ISO dates and timestamps, which order by the instant they name. dlt's tagged values
/// ([`crate::tagged`]: datetimes, dates, decimals… from typed data or from state written by
/// dlt) compare as the value the tag stands for, so a tagged datetime orders against a plain
/// ISO string and a tagged decimal against a number.
pub fn compare(a: &Value, b: &Value) -> Result<Ordering> {
    let (a, b) = (crate::tagged::plain(a), crate::tagged::plain(b));
    match (a.as_ref(), b.as_ref()) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return Ok(x.cmp(&y));
            }
            if let Some(o) = cmp_decimal_text(x.as_str(), y.as_str()) {
                return Ok(o);
            }
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            x.partial_cmp(&y).ok_or_else(|| Error::Pipeline("cursor values are not comparable (NaN)".into()))
        }
        (Value::String(x), Value::String(y)) => Ok(match (iso_instant(x), iso_instant(y)) {
            // ISO timestamps in different forms (`…00Z` vs `…00.500000+00:00`, other offsets)
            // order by the instant; same-form strings order the same either way
            (Some(a), Some(b)) if x != y => a.cmp(&b),
            _ => x.cmp(y),
        }),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        (x, y) => {
            Err(Error::Pipeline(format!("cursor values {x} and {y} have different types and cannot be compared")))
        }
    }
}

/// Exact order of two plain decimal numerals (`-12.50`, `3`); `None` when either has an
/// exponent or is not a plain numeral.
fn cmp_decimal_text(a: &str, b: &str) -> Option<Ordering> {
    fn parts(s: &str) -> Option<(bool, &str, &str)> {
        let (neg, s) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() && frac.is_empty() || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        // -0 is 0
        Some((neg && !(int.is_empty() && frac.is_empty()), int, frac))
    }
    let (an, ai, af) = parts(a)?;
    let (bn, bi, bf) = parts(b)?;
    let magnitude = ai.len().cmp(&bi.len()).then_with(|| ai.cmp(bi)).then_with(|| af.cmp(bf));
    Some(match (an, bn) {
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
    })
}

/// The instant of an ISO 8601 date or timestamp string (naive values read as UTC), if it is one.
fn iso_instant(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' || !b[..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(d.to_utc());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(d) = chrono::DateTime::parse_from_str(s, f) {
            return Some(d.to_utc());
        }
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(d.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|d| d.and_utc())
}

/// Python's `json.dumps(v, sort_keys=True)` (default separators, ASCII escapes), for dlt's hashes.
pub fn py_json_dumps(v: &Value) -> String {
    fn esc(s: &str, out: &mut String) {
        out.push('"');
        for ch in s.chars() {
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                    let mut buf = [0u16; 2];
                    for u in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    fn go(v: &Value, out: &mut String) {
        match v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => out.push_str(n.as_str()),
            Value::String(s) => esc(s, out),
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    go(x, out);
                }
                out.push(']');
            }
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    esc(k, out);
                    out.push_str(": ");
                    go(&m[*k], out);
                }
                out.push('}');
            }
        }
    }
    let mut s = String::new();
    go(v, &mut s);
    s
}

/// dlt's boundary hash: 9-byte SHAKE-128 of the JSON of the key (or the whole row), 12 characters.
pub fn row_hash(key: &Value) -> String {
    digest_b64(py_json_dumps(key).as_bytes(), 9)
}

/// Look up a cursor path (`a.b`, `$.a.b`, `a[0].b`) in an item.
pub fn lookup<'v>(item: &'v Value, path: &str) -> Option<&'v Value> {
    let p = path.strip_prefix("$.").unwrap_or(path);
    let mut cur = item;
    for part in p.split('.') {
        let (key, idx) = match part.find('[') {
            Some(i) => (&part[..i], part[i + 1..].trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !key.is_empty() {
            cur = cur.get(key)?;
        }
        if let Some(i) = idx {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

/// What to do with one item.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Keep the item.
    Keep,
    /// Drop the item.
    Skip,
    /// Drop it and stop reading (row_order says nothing later qualifies).
    Stop,
}

/// The cursor of one resource during one extract.
#[derive(Debug)]
pub struct Cursor {
    cfg: IncrementalConfig,
    max: bool,
    /// Start of the window (stored last_value, else initial_value), moved back by `lag`.
    /// Tagged values ([`crate::tagged`]) stay tagged; [`Cursor::public_start_value`] is the
    /// plain form a source filters on.
    pub start_value: Option<Value>,
    /// The window's start before `lag`: what the state records as `start_value` once a row
    /// passes (dlt's rule).
    raw_start: Option<Value>,
    /// `start_value` as stored by the previous run (kept when no row passes).
    stored_start: Option<Value>,
    /// The stored `last_value` (with `lag`, the cursor never moves back behind it).
    stored_last: Option<Value>,
    /// Whether any row passed the window.
    kept_any: bool,
    last_value: Option<Value>,
    prior_hashes: Vec<String>,
    new_hashes: Vec<String>,
    key: Vec<String>,
    dedup: bool,
}

impl Cursor {
    /// Open a cursor from its config, the stored state (if any) and the resource's primary key.
    pub fn new(cfg: IncrementalConfig, state: Option<&Map<String, Value>>, resource_pk: &[String]) -> Result<Cursor> {
        let max = match cfg.last_value_func.as_deref().unwrap_or("max") {
            "max" => true,
            "min" => false,
            other => return Err(Error::Config(format!("incremental: last_value_func `{other}` is not max or min"))),
        };
        let stored_last = state.and_then(|s| s.get("last_value")).filter(|v| !v.is_null()).cloned();
        let stored_start = match state {
            Some(s) => s.get("start_value").cloned().filter(|v| !v.is_null()),
            // a new cursor's state starts with the initial value (as dlt's)
            None => cfg.initial_value.clone(),
        };
        let mut start_value = if cfg.end_value.is_some() {
            // a bounded window ignores and keeps no state
            cfg.initial_value.clone()
        } else {
            stored_last.clone().or_else(|| cfg.initial_value.clone())
        };
        let raw_start = start_value.clone();
        if let Some(lag) = cfg.lag {
            let lag = if max { -lag } else { lag };
            start_value = match start_value {
                Some(Value::Number(n)) => match n.as_i64() {
                    Some(i) if lag.fract() == 0.0 => Some(json!(i + lag as i64)),
                    _ => Some(json!(n.as_f64().unwrap_or(0.0) + lag)),
                },
                // timestamps move by seconds, dates by days (as dlt's lag); a tagged value keeps its tag
                Some(Value::String(s)) => Some(match crate::tagged::split(&Value::String(s.clone())) {
                    Some((tag, text)) => match shift_iso(text, lag) {
                        Some(t) => crate::tagged::tagged(tag, &t),
                        None => Value::String(s),
                    },
                    None => Value::String(shift_iso(&s, lag).unwrap_or(s)),
                }),
                other => other,
            };
        }
        let prior_hashes: Vec<String> = if cfg.end_value.is_some() {
            vec![]
        } else {
            state
                .and_then(|s| s.get("unique_hashes"))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        let key = match &cfg.primary_key {
            Some(k) => k.0.clone(),
            None => resource_pk.to_vec(),
        };
        let explicit_empty = matches!(&cfg.primary_key, Some(k) if k.0.is_empty());
        let dedup = !explicit_empty
            && cfg.end_value.is_none()
            && cfg.lag.is_none()
            && cfg.range_start.as_deref().unwrap_or("closed") == "closed";
        Ok(Cursor {
            cfg,
            max,
            last_value: start_value.clone(),
            start_value,
            raw_start,
            stored_start,
            stored_last,
            kept_any: false,
            prior_hashes,
            new_hashes: vec![],
            key,
            dedup,
        })
    }

    fn better(&self, a: &Value, b: &Value) -> Result<bool> {
        if let Some(f) = &self.cfg.last_value_fn {
            return Ok((f.0)(a, b));
        }
        let o = compare(a, b)?;
        Ok(if self.max { o == Ordering::Greater } else { o == Ordering::Less })
    }

    fn key_of(&self, item: &Value) -> Value {
        match self.key.len() {
            0 => item.clone(),
            1 => item.get(&self.key[0]).cloned().unwrap_or(Value::Null),
            _ => Value::Array(self.key.iter().map(|k| item.get(k).cloned().unwrap_or(Value::Null)).collect()),
        }
    }

    /// Decide about one item and advance the cursor.
    pub fn check(&mut self, item: &Value) -> Result<Decision> {
        let value = match lookup(item, &self.cfg.cursor_path) {
            Some(Value::Null) | None => {
                return match self.cfg.on_cursor_value_missing.as_deref().unwrap_or("raise") {
                    "include" => Ok(Decision::Keep),
                    "exclude" => Ok(Decision::Skip),
                    _ => Err(Error::Pipeline(format!(
                        "incremental cursor `{}` is missing or null in item {} (set on_cursor_value_missing to include or exclude)",
                        self.cfg.cursor_path,
                        truncate(item)
                    ))),
                };
            }
            Some(v) => v.clone(),
        };
        // the end of a bounded window
        if let Some(end) = &self.cfg.end_value {
            let o = compare(&value, end)?;
            let past = if self.max { o } else { o.reverse() };
            let closed = self.cfg.range_end.as_deref() == Some("closed");
            if past == Ordering::Greater || (past == Ordering::Equal && !closed) {
                let asc = self.cfg.row_order.as_deref() == Some(if self.max { "asc" } else { "desc" });
                return Ok(if asc { Decision::Stop } else { Decision::Skip });
            }
        }
        if let Some(start) = self.start_value.clone() {
            let o = compare(&value, &start).unwrap_or(Ordering::Equal);
            let before = match &self.cfg.last_value_fn {
                Some(f) => (f.0)(&start, &value) && value != start,
                None => {
                    if self.max {
                        o == Ordering::Less
                    } else {
                        o == Ordering::Greater
                    }
                }
            };
            let o = if self.cfg.last_value_fn.is_some() && value == start { Ordering::Equal } else { o };
            if before {
                let past_end = self.cfg.row_order.as_deref() == Some(if self.max { "desc" } else { "asc" });
                return Ok(if past_end { Decision::Stop } else { Decision::Skip });
            }
            if o == Ordering::Equal {
                if self.cfg.range_start.as_deref() == Some("open") {
                    return Ok(Decision::Skip);
                }
                if self.dedup && self.prior_hashes.contains(&row_hash(&self.key_of(item))) {
                    return Ok(Decision::Skip);
                }
            }
        }
        // advance
        self.kept_any = true;
        match &self.last_value {
            Some(last) if !self.better(&value, last)? => {
                if compare(&value, last)? == Ordering::Equal && self.dedup {
                    self.new_hashes.push(row_hash(&self.key_of(item)));
                }
            }
            _ => {
                self.last_value = Some(value);
                self.new_hashes.clear();
                if self.dedup {
                    self.new_hashes.push(row_hash(&self.key_of(item)));
                }
            }
        }
        Ok(Decision::Keep)
    }

    /// Decide about every row of an Arrow batch whose cursor is a top-level column: the rows to
    /// keep (`None` when none is) and whether reading should stop (`row_order` passed the window).
    /// Each row is checked as [`Cursor::check`] checks a JSON item holding its cursor and key
    /// values (see [`arrow_value`]); rows after a stop are dropped.
    pub fn check_batch(
        &mut self,
        batch: &arrow::record_batch::RecordBatch,
    ) -> Result<(Option<arrow::record_batch::RecordBatch>, bool)> {
        let path = self.cfg.cursor_path.strip_prefix("$.").unwrap_or(&self.cfg.cursor_path).to_string();
        let schema = batch.schema();
        let cursor = schema.index_of(&path).ok();
        // the columns the boundary hash needs: the key, or the whole row without one
        let key_cols: Vec<usize> = if !self.dedup {
            vec![]
        } else if self.key.is_empty() {
            (0..batch.num_columns()).collect()
        } else {
            self.key.iter().filter_map(|k| schema.index_of(k).ok()).collect()
        };
        let n = batch.num_rows();
        let mut keep = arrow::array::BooleanBuilder::with_capacity(n);
        let mut stop = false;
        for i in 0..n {
            if stop {
                keep.append_value(false);
                continue;
            }
            let mut item = Map::new();
            for c in key_cols.iter() {
                item.insert(schema.field(*c).name().clone(), arrow_value(batch.column(*c), i));
            }
            if let Some(c) = cursor {
                item.insert(schema.field(c).name().clone(), arrow_cursor_value(batch.column(c), i));
            }
            keep.append_value(match self.check(&Value::Object(item))? {
                Decision::Keep => true,
                Decision::Skip => false,
                Decision::Stop => {
                    stop = true;
                    false
                }
            });
        }
        let mask = keep.finish();
        let kept = match mask.true_count() {
            0 => None,
            t if t == n => Some(batch.clone()),
            _ => Some(arrow::compute::filter_record_batch(batch, &mask)?),
        };
        Ok((kept, stop))
    }

    /// The state to store after the run (`None` for a bounded window, which keeps none).
    pub fn into_state(self) -> Option<Value> {
        if self.cfg.end_value.is_some() {
            return None;
        }
        let mut hashes = self.new_hashes;
        let same = |a: &Option<Value>, b: &Option<Value>| match (a, b) {
            (Some(a), Some(b)) => a == b || compare(a, b).is_ok_and(|o| o == Ordering::Equal),
            _ => false,
        };
        if same(&self.last_value, &self.start_value) {
            // nothing newer: the boundary still holds the earlier rows too, in their order (so
            // a run without new rows leaves the state, and its hash, as they were)
            let mut merged = self.prior_hashes;
            for h in hashes {
                if !merged.contains(&h) {
                    merged.push(h);
                }
            }
            hashes = merged;
        }
        // with a lag the window re-opens behind the stored value, but the cursor never moves back
        let mut last_value = self.last_value;
        if self.cfg.lag.is_some()
            && let (Some(stored), Some(last)) = (&self.stored_last, &last_value)
            && compare(stored, last).is_ok_and(|o| o == if self.max { Ordering::Greater } else { Ordering::Less })
        {
            last_value = Some(stored.clone());
        }
        // as dlt: `start_value` moves to the window's start only when a row passed it
        let start_value = if self.kept_any { self.raw_start } else { self.stored_start };
        Some(json!({
            "initial_value": self.cfg.initial_value,
            "last_value": last_value,
            "unique_hashes": hashes,
            "start_value": start_value,
        }))
    }

    /// The window's start as a source filters on it: a tagged value in its plain form
    /// (`2024-01-01T00:00:00+00:00`, a decimal as a number).
    pub fn public_start_value(&self) -> Option<Value> {
        self.start_value.as_ref().map(|v| crate::tagged::plain(v).into_owned())
    }
}

/// One Arrow cell as the cursor value dlt keeps for it: temporal and decimal values tagged as
/// dlt tags the Python value it reads from the same cell ([`crate::tagged`]: a timestamp is a
/// datetime, `2024-01-01T03:20:00+00:00`), anything else as [`arrow_value`].
pub fn arrow_cursor_value(col: &arrow::array::ArrayRef, i: usize) -> Value {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{self as t, DataType as A, TimeUnit};
    if col.is_null(i) {
        return Value::Null;
    }
    let tagged = match col.data_type() {
        A::Timestamp(unit, tz) => {
            let micros = match unit {
                TimeUnit::Second => col.as_primitive::<t::TimestampSecondType>().value(i).checked_mul(1_000_000),
                TimeUnit::Millisecond => col.as_primitive::<t::TimestampMillisecondType>().value(i).checked_mul(1_000),
                TimeUnit::Microsecond => Some(col.as_primitive::<t::TimestampMicrosecondType>().value(i)),
                TimeUnit::Nanosecond => {
                    Some(col.as_primitive::<t::TimestampNanosecondType>().value(i).div_euclid(1_000))
                }
            };
            micros.and_then(|m| crate::tagged::datetime(m, tz.is_some()))
        }
        A::Date32 => crate::tagged::date(col.as_primitive::<t::Date32Type>().value(i) as i64),
        A::Date64 => crate::tagged::date(col.as_primitive::<t::Date64Type>().value(i).div_euclid(86_400_000)),
        A::Time64(TimeUnit::Microsecond) => {
            Some(crate::tagged::time(col.as_primitive::<t::Time64MicrosecondType>().value(i)))
        }
        A::Time64(TimeUnit::Nanosecond) => {
            Some(crate::tagged::time(col.as_primitive::<t::Time64NanosecondType>().value(i) / 1_000))
        }
        A::Time32(TimeUnit::Millisecond) => {
            Some(crate::tagged::time(col.as_primitive::<t::Time32MillisecondType>().value(i) as i64 * 1_000))
        }
        A::Time32(_) => {
            Some(crate::tagged::time(col.as_primitive::<t::Time32SecondType>().value(i) as i64 * 1_000_000))
        }
        A::Decimal128(..) | A::Decimal256(..) => {
            arrow::util::display::array_value_to_string(col, i).ok().map(|s| crate::tagged::decimal(&s))
        }
        _ => None,
    };
    tagged.unwrap_or_else(|| arrow_value(col, i))
}

/// One Arrow cell as the JSON value a cursor compares and stores: numbers (decimals exact),
/// text, booleans, dates as `YYYY-MM-DD`, times as `HH:MM:SS.ffffff`, timestamps as ISO 8601
/// with microseconds (`+00:00` for time-zone-aware ones), anything else as Arrow displays it.
pub fn arrow_value(col: &arrow::array::ArrayRef, i: usize) -> Value {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{self as t, DataType as A, TimeUnit};
    if col.is_null(i) {
        return Value::Null;
    }
    let display = || arrow::util::display::array_value_to_string(col, i).map(Value::String).unwrap_or(Value::Null);
    let micros_iso = |micros: i64, tz: bool| match chrono::DateTime::from_timestamp_micros(micros) {
        Some(d) => {
            let s = d.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
            Value::String(if tz { s + "+00:00" } else { s })
        }
        None => display(),
    };
    let time_iso = |us: i64| {
        let (secs, frac) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
        Value::String(format!("{:02}:{:02}:{:02}.{frac:06}", secs / 3600, (secs / 60) % 60, secs % 60))
    };
    match col.data_type() {
        A::Boolean => Value::Bool(col.as_boolean().value(i)),
        A::Int8 => json!(col.as_primitive::<t::Int8Type>().value(i)),
        A::Int16 => json!(col.as_primitive::<t::Int16Type>().value(i)),
        A::Int32 => json!(col.as_primitive::<t::Int32Type>().value(i)),
        A::Int64 => json!(col.as_primitive::<t::Int64Type>().value(i)),
        A::UInt8 => json!(col.as_primitive::<t::UInt8Type>().value(i)),
        A::UInt16 => json!(col.as_primitive::<t::UInt16Type>().value(i)),
        A::UInt32 => json!(col.as_primitive::<t::UInt32Type>().value(i)),
        A::UInt64 => json!(col.as_primitive::<t::UInt64Type>().value(i)),
        A::Float32 => serde_json::Number::from_f64(col.as_primitive::<t::Float32Type>().value(i) as f64)
            .map_or(Value::Null, Value::Number),
        A::Float64 => serde_json::Number::from_f64(col.as_primitive::<t::Float64Type>().value(i))
            .map_or(Value::Null, Value::Number),
        A::Utf8 => Value::String(col.as_string::<i32>().value(i).to_string()),
        A::LargeUtf8 => Value::String(col.as_string::<i64>().value(i).to_string()),
        A::Decimal128(..) | A::Decimal256(..) => match arrow::util::display::array_value_to_string(col, i) {
            Ok(s) => serde_json::from_str::<serde_json::Number>(&s).map(Value::Number).unwrap_or(Value::String(s)),
            Err(_) => Value::Null,
        },
        A::Timestamp(unit, tz) => {
            let tz = tz.is_some();
            match unit {
                TimeUnit::Second => {
                    micros_iso(col.as_primitive::<t::TimestampSecondType>().value(i).saturating_mul(1_000_000), tz)
                }
                TimeUnit::Millisecond => {
                    micros_iso(col.as_primitive::<t::TimestampMillisecondType>().value(i).saturating_mul(1_000), tz)
                }
                TimeUnit::Microsecond => micros_iso(col.as_primitive::<t::TimestampMicrosecondType>().value(i), tz),
                TimeUnit::Nanosecond => {
                    micros_iso(col.as_primitive::<t::TimestampNanosecondType>().value(i).div_euclid(1_000), tz)
                }
            }
        }
        A::Date32 => {
            let d = col.as_primitive::<t::Date32Type>().value(i);
            match chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163) {
                Some(d) => Value::String(d.format("%Y-%m-%d").to_string()),
                None => display(),
            }
        }
        A::Time64(TimeUnit::Microsecond) => time_iso(col.as_primitive::<t::Time64MicrosecondType>().value(i)),
        A::Time64(TimeUnit::Nanosecond) => time_iso(col.as_primitive::<t::Time64NanosecondType>().value(i) / 1_000),
        A::Time32(TimeUnit::Millisecond) => {
            time_iso(col.as_primitive::<t::Time32MillisecondType>().value(i) as i64 * 1_000)
        }
        A::Time32(_) => time_iso(col.as_primitive::<t::Time32SecondType>().value(i) as i64 * 1_000_000),
        _ => display(),
    }
}

/// Move an ISO timestamp by `secs` seconds, or an ISO date by `secs` days.
fn shift_iso(s: &str, amount: f64) -> Option<String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some((d + chrono::Duration::days(amount as i64)).format("%Y-%m-%d").to_string());
    }
    let delta = chrono::Duration::microseconds((amount * 1_000_000.0) as i64);
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some((d + delta).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some((d + delta).format("%Y-%m-%dT%H:%M:%S%.f").to_string());
        }
    }
    None
}

fn truncate(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 { format!("{}…", s.chars().take(120).collect::<String>()) } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: Value) -> IncrementalConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn dlt_hashes() {
        // dlt: pk 2 -> Tp44cKMYfAuJ, pk 3 -> Cn/dwi436vBb
        assert_eq!(row_hash(&json!(2)), "Tp44cKMYfAuJ");
        assert_eq!(row_hash(&json!(3)), "Cn/dwi436vBb");
        assert_eq!(py_json_dumps(&json!({"b": [1, "ü"], "a": null})), r#"{"a": null, "b": [1, "\u00fc"]}"#);
    }

    #[test]
    fn toml_datetimes_are_typed_initial_values() {
        let c: IncrementalConfig = toml::from_str(
            "cursor_path = 't'\ninitial_value = 2024-01-01T00:00:00Z\nend_value = 2024-02-01T10:00:00.5+02:00",
        )
        .unwrap();
        assert_eq!(c.initial_value, Some(json!("\u{f027}2024-01-01T00:00:00+00:00")));
        assert_eq!(c.end_value, Some(json!("\u{f027}2024-02-01T10:00:00.500000+02:00")));
        let c: IncrementalConfig = toml::from_str("cursor_path = 't'\ninitial_value = 2024-01-01").unwrap();
        assert_eq!(c.initial_value, Some(json!("\u{f028}2024-01-01")));
        let c: IncrementalConfig = toml::from_str("cursor_path = 't'\ninitial_value = 2024-01-01T08:00:00").unwrap();
        assert_eq!(c.initial_value, Some(json!("\u{f027}2024-01-01T08:00:00")));
        let c: IncrementalConfig = toml::from_str("cursor_path = 't'\ninitial_value = '2024-01-01'").unwrap();
        assert_eq!(c.initial_value, Some(json!("2024-01-01")), "a quoted value stays a string");
    }

    #[test]
    fn tagged_values_compare_as_what_they_stand_for() {
        let c = |a: Value, b: Value| compare(&a, &b).unwrap();
        // a datetime dlt stored against ISO strings from JSON data
        let stored = json!("\u{f027}2024-01-01T03:20:00+00:00");
        assert_eq!(c(json!("2024-01-01T03:20:01Z"), stored.clone()), Ordering::Greater);
        assert_eq!(c(json!("2024-01-01T03:20:00Z"), stored.clone()), Ordering::Equal);
        assert_eq!(c(json!("2023-12-31T23:59:59Z"), stored.clone()), Ordering::Less);
        assert_eq!(c(json!("\u{f028}2024-01-02"), json!("2024-01-01")), Ordering::Greater);
        // decimals exactly, against numbers and each other
        assert_eq!(c(json!("\u{f026}10.50"), json!(10.5)), Ordering::Equal);
        assert_eq!(c(json!("\u{f026}-0.001"), json!(0)), Ordering::Less);
        assert_eq!(
            c(json!("\u{f026}12345678901234567890.000000001"), json!("\u{f026}12345678901234567890")),
            Ordering::Greater
        );
        assert_eq!(cmp_decimal_text("-2.5", "-2.45"), Some(Ordering::Less));
        assert_eq!(cmp_decimal_text("0.0", "-0"), Some(Ordering::Equal));
        assert_eq!(cmp_decimal_text("1e5", "2"), None);
    }

    #[test]
    fn state_written_by_dlt_with_a_datetime_cursor_continues() {
        // dlt's state after loading rows up to 03:20 from typed data
        let state = json!({
            "initial_value": null,
            "last_value": "\u{f027}2024-01-01T03:20:00+00:00",
            "unique_hashes": [row_hash(&json!(7))],
            "start_value": "\u{f027}2024-01-01T00:00:00+00:00",
        });
        let mut cur = Cursor::new(cfg(json!({"cursor_path": "t"})), state.as_object(), &["id".to_string()]).unwrap();
        assert_eq!(cur.public_start_value(), Some(json!("2024-01-01T03:20:00+00:00")));
        let d = |cur: &mut Cursor, id: i64, t: &str| cur.check(&json!({"id": id, "t": t})).unwrap();
        assert_eq!(d(&mut cur, 7, "2024-01-01T03:20:00+00:00"), Decision::Skip, "boundary row already loaded");
        assert_eq!(d(&mut cur, 8, "2024-01-01T03:20:00+00:00"), Decision::Keep, "new row at the boundary");
        assert_eq!(d(&mut cur, 6, "2024-01-01T01:00:00+00:00"), Decision::Skip);
        assert_eq!(d(&mut cur, 9, "2024-01-02T00:00:00+00:00"), Decision::Keep);
        let st = cur.into_state().unwrap();
        // the new value comes from the data (a string, as dlt keeps a str cursor); the start is
        // the window's start as stored, still tagged
        assert_eq!(st["last_value"], json!("2024-01-02T00:00:00+00:00"));
        assert_eq!(st["start_value"], json!("\u{f027}2024-01-01T03:20:00+00:00"));
    }

    #[test]
    fn a_run_without_new_rows_leaves_the_state_as_it_was() {
        let state = json!({
            "initial_value": 0,
            "last_value": 10,
            "unique_hashes": [row_hash(&json!(10))],
            "start_value": 5,
        });
        let mut cur =
            Cursor::new(cfg(json!({"cursor_path": "id", "initial_value": 0})), state.as_object(), &["id".to_string()])
                .unwrap();
        assert_eq!(cur.check(&json!({"id": 10})).unwrap(), Decision::Skip);
        assert_eq!(cur.check(&json!({"id": 3})).unwrap(), Decision::Skip);
        assert_eq!(cur.into_state().unwrap(), state);
        // a new cursor that sees nothing records its initial value as the start (as dlt)
        let cur = Cursor::new(cfg(json!({"cursor_path": "id", "initial_value": 4})), None, &[]).unwrap();
        assert_eq!(
            cur.into_state().unwrap(),
            json!({"initial_value": 4, "last_value": 4, "unique_hashes": [], "start_value": 4})
        );
    }

    #[test]
    fn arrow_cursor_values_are_tagged_as_dlt_tags_them() {
        use arrow::array::{ArrayRef, Date32Array, Decimal128Array, Int64Array, TimestampMicrosecondArray};
        use std::sync::Arc;
        let ts: ArrayRef =
            Arc::new(TimestampMicrosecondArray::from(vec![1_704_079_200_000_000, 1_704_079_200_123_456]));
        assert_eq!(arrow_cursor_value(&ts, 0), json!("\u{f027}2024-01-01T03:20:00"));
        assert_eq!(arrow_cursor_value(&ts, 1), json!("\u{f027}2024-01-01T03:20:00.123456"));
        let tz: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![1_704_079_200_000_000]).with_timezone("UTC"));
        assert_eq!(arrow_cursor_value(&tz, 0), json!("\u{f027}2024-01-01T03:20:00+00:00"));
        let d: ArrayRef = Arc::new(Date32Array::from(vec![19_782]));
        assert_eq!(arrow_cursor_value(&d, 0), json!("\u{f028}2024-02-29"));
        let dec: ArrayRef = Arc::new(Decimal128Array::from(vec![1250]).with_precision_and_scale(10, 2).unwrap());
        assert_eq!(arrow_cursor_value(&dec, 0), json!("\u{f026}12.50"));
        let i: ArrayRef = Arc::new(Int64Array::from(vec![5]));
        assert_eq!(arrow_cursor_value(&i, 0), json!(5));
    }

    #[test]
    fn iso_timestamps_in_different_forms_order_by_instant() {
        let c = |a: &str, b: &str| compare(&json!(a), &json!(b)).unwrap();
        assert_eq!(c("2024-01-03T00:00:00.500000+00:00", "2024-01-03T00:00:00Z"), Ordering::Greater);
        assert_eq!(c("2024-01-03T00:00:00.000000+00:00", "2024-01-03T00:00:00Z"), Ordering::Equal);
        assert_eq!(c("2024-01-03T06:00:00+05:00", "2024-01-03T02:00:00Z"), Ordering::Less);
        assert_eq!(c("2024-01-03 00:00:00", "2024-01-02T23:59:59.9Z"), Ordering::Greater);
        assert_eq!(c("b", "a"), Ordering::Greater);
        let mut cur =
            Cursor::new(cfg(json!({"cursor_path": "t", "initial_value": "2024-01-03T00:00:00Z"})), None, &[]).unwrap();
        assert_eq!(cur.check(&json!({"t": "2024-01-03T00:00:00.500000+00:00"})).unwrap(), Decision::Keep);
    }

    #[test]
    fn arrow_batches_are_checked_row_by_row() {
        use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
        use std::sync::Arc;
        let batch = arrow::record_batch::RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef),
            (
                "ts",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_000_000), Some(2_000_000), None, Some(3_000_000)])
                        .with_timezone("UTC"),
                ) as ArrayRef,
            ),
            ("v", Arc::new(StringArray::from(vec!["a", "b", "c", "d"])) as ArrayRef),
        ])
        .unwrap();
        let mut c = Cursor::new(
            cfg(json!({"cursor_path": "ts", "initial_value": "1970-01-01T00:00:02Z", "on_cursor_value_missing": "exclude"})),
            None,
            &["id".to_string()],
        )
        .unwrap();
        let (kept, stop) = c.check_batch(&batch).unwrap();
        let kept = kept.unwrap();
        assert!(!stop);
        assert_eq!(kept.num_rows(), 2);
        assert_eq!(arrow_value(kept.column(0), 0), json!(2));
        assert_eq!(arrow_value(kept.column(1), 1), json!("1970-01-01T00:00:03.000000+00:00"));
        let state = c.into_state().unwrap();
        // a timestamp from typed data is kept as dlt keeps the datetime it reads: tagged
        assert_eq!(state["last_value"], json!("\u{f027}1970-01-01T00:00:03+00:00"));
        assert_eq!(state["unique_hashes"], json!([row_hash(&json!(4))]));
        // a bounded window over ordered rows stops at its end
        let mut c = Cursor::new(
            cfg(json!({"cursor_path": "ts", "on_cursor_value_missing": "exclude", "row_order": "asc",
                       "end_value": "1970-01-01T00:00:02.5Z"})),
            None,
            &["id".to_string()],
        )
        .unwrap();
        let (kept, stop) = c.check_batch(&batch).unwrap();
        assert!(stop);
        assert_eq!(kept.unwrap().num_rows(), 2);
    }

    #[test]
    fn boundary_dedup_across_runs() {
        let mut c = Cursor::new(cfg(json!({"cursor_path": "ts", "initial_value": 10})), None, &[]).unwrap();
        let rows = [json!({"id": 1, "ts": 5}), json!({"id": 2, "ts": 10}), json!({"id": 3, "ts": 15})];
        let d: Vec<Decision> = rows.iter().map(|r| c.check(r).unwrap()).collect();
        assert_eq!(d, [Decision::Skip, Decision::Keep, Decision::Keep]);
        let state = c.into_state().unwrap();
        assert_eq!(state["last_value"], 15);
        let mut c =
            Cursor::new(cfg(json!({"cursor_path": "ts", "initial_value": 10})), state.as_object(), &[]).unwrap();
        assert_eq!(c.check(&json!({"id": 3, "ts": 15})).unwrap(), Decision::Skip);
        assert_eq!(c.check(&json!({"id": 4, "ts": 15})).unwrap(), Decision::Keep);
        assert_eq!(c.check(&json!({"id": 6, "ts": 12})).unwrap(), Decision::Skip);
    }

    #[test]
    fn windows_order_and_missing() {
        let mut c =
            Cursor::new(cfg(json!({"cursor_path": "c", "initial_value": 18, "row_order": "desc"})), None, &[]).unwrap();
        assert_eq!(c.check(&json!({"c": 30})).unwrap(), Decision::Keep);
        assert_eq!(c.check(&json!({"c": 15})).unwrap(), Decision::Stop);
        let mut w =
            Cursor::new(cfg(json!({"cursor_path": "c", "initial_value": 10, "end_value": 20})), None, &[]).unwrap();
        assert_eq!(w.check(&json!({"c": 20})).unwrap(), Decision::Skip);
        assert_eq!(w.check(&json!({"c": 19})).unwrap(), Decision::Keep);
        assert!(w.into_state().is_none());
        let mut m = Cursor::new(cfg(json!({"cursor_path": "meta.ts"})), None, &[]).unwrap();
        let err = m.check(&json!({"id": 1})).unwrap_err().to_string();
        assert!(err.contains("meta.ts") && err.contains("missing"), "{err}");
        assert_eq!(lookup(&json!({"a": [{"b": 3}]}), "$.a[0].b"), Some(&json!(3)));
        // lag re-opens the window: seconds for timestamps, days for dates, units for numbers
        let state = json!({"last_value": "2024-01-02T00:00:00Z"});
        let c = Cursor::new(cfg(json!({"cursor_path": "t", "lag": 3600})), state.as_object(), &[]).unwrap();
        assert_eq!(c.start_value, Some(json!("2024-01-01T23:00:00Z")));
        let state = json!({"last_value": "2024-01-02"});
        let c = Cursor::new(cfg(json!({"cursor_path": "t", "lag": 2})), state.as_object(), &[]).unwrap();
        assert_eq!(c.start_value, Some(json!("2023-12-31")));
        let state = json!({"last_value": 20});
        let mut c = Cursor::new(cfg(json!({"cursor_path": "t", "lag": 5})), state.as_object(), &[]).unwrap();
        assert_eq!(c.start_value, Some(json!(15)));
        assert_eq!(c.check(&json!({"t": 16})).unwrap(), Decision::Keep);
    }
}
