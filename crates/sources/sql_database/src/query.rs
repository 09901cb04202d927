//! The SELECT of a table and the incremental window pushed into its WHERE clause, as dlt's
//! sql_database builds them:
//!
//! - `last_value_func` max: `col >= start` (`range_start = "closed"`, the default) or
//!   `col > start` (`"open"`); an `end_value` adds `col < end` (`range_end = "open"`, the
//!   default) or `col <= end` (`"closed"`). `min` reverses every operator.
//! - `on_cursor_value_missing = "include"` wraps the bounds as `(…) OR col IS NULL`;
//!   `"exclude"` adds `col IS NOT NULL`.
//! - `ORDER BY col ASC|DESC` only when `row_order` is set.
//! - no start value (a first run without `initial_value`) and no end value: no WHERE at all.
//! - a safe watermark (Postgres, see [`crate::SafeWatermark`]) adds `col < watermark`, like an
//!   open `end_value` that the pipeline does not know about (the state still advances).
//! - a partitioned read adds its key range ([`KeyRange`]), ANDed with the window.
//!
//! Postgres gets literals (`COPY` takes no parameters): numbers as written, strings as
//! `E'…'::<column type>`. MySQL gets numbers as written and strings as `_utf8mb4 X'…'` (no
//! escaping to get wrong under any `sql_mode`). SQLite binds parameters.

use dlt_core::error::{Error, Result};
use dlt_core::incremental::IncrementalConfig;
use serde_json::Value;

use crate::credentials::Dialect;
use crate::table::{SqlColumn, TableSchema};
use crate::types::ValueKind;

/// A bound parameter (SQLite).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlParam {
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// Text.
    Text(String),
}

/// The incremental window of one read.
#[derive(Debug, Clone)]
pub struct Window {
    /// The cursor column.
    pub column: SqlColumn,
    /// Start of the window (the pipeline's start value: stored last value or initial value).
    pub start: Option<Value>,
    /// End of the window.
    pub end: Option<Value>,
    /// Exclusive upper bound of this read from a safe watermark (Postgres: the start of the
    /// oldest open transaction); the pipeline's state still advances to the largest value read.
    pub watermark: Option<Value>,
    /// The incremental settings.
    pub cfg: IncrementalConfig,
}

impl Window {
    fn max(&self) -> bool {
        self.cfg.last_value_func.as_deref().unwrap_or("max") != "min"
    }
}

/// A statement and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// SQL text.
    pub sql: String,
    /// Parameters (SQLite only).
    pub params: Vec<SqlParam>,
}

/// Quote an identifier.
pub fn quote_ident(d: Dialect, s: &str) -> String {
    match d {
        Dialect::Mysql => format!("`{}`", s.replace('`', "``")),
        Dialect::Postgres | Dialect::Sqlite => format!("\"{}\"", s.replace('"', "\"\"")),
    }
}

/// `schema.table`, quoted.
pub fn qualified(d: Dialect, t: &TableSchema) -> String {
    match &t.schema {
        Some(s) => format!("{}.{}", quote_ident(d, s), quote_ident(d, &t.name)),
        None => quote_ident(d, &t.name),
    }
}

/// The Postgres type a window literal is cast to.
fn pg_cast(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Bool => "boolean",
        ValueKind::Int => "bigint",
        ValueKind::Double => "double precision",
        ValueKind::Decimal { .. } => "numeric",
        ValueKind::Text | ValueKind::Json => "text",
        ValueKind::Binary => "bytea",
        ValueKind::Date => "date",
        ValueKind::Time => "time",
        ValueKind::Timestamp { tz: true } => "timestamptz",
        ValueKind::Timestamp { tz: false } => "timestamp",
    }
}

fn pg_string(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02X}")).collect()
}

/// An ISO timestamp or date as a naive UTC wall clock `YYYY-MM-DD HH:MM:SS[.ffffff]`, the form
/// MySQL and SQLite (as SQLAlchemy stores it) compare.
pub fn naive_utc(s: &str, always_micros: bool) -> Option<String> {
    let fmt = if always_micros { "%Y-%m-%d %H:%M:%S%.6f" } else { "%Y-%m-%d %H:%M:%S%.f" };
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(d.naive_utc().format(fmt).to_string());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(d.format(fmt).to_string());
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(d) = chrono::DateTime::parse_from_str(s, f) {
            return Some(d.naive_utc().format(fmt).to_string());
        }
    }
    None
}

fn literal(d: Dialect, col: &SqlColumn, v: &Value, params: &mut Vec<SqlParam>) -> Result<String> {
    let kind = col.kind();
    match (d, v) {
        (Dialect::Sqlite, Value::Number(n)) => {
            params.push(match n.as_i64() {
                Some(i) => SqlParam::Int(i),
                None => SqlParam::Float(n.as_f64().unwrap_or(f64::NAN)),
            });
            Ok("?".into())
        }
        (_, Value::Number(n)) => Ok(n.to_string()),
        (Dialect::Postgres, Value::Bool(b)) => Ok(if *b { "TRUE" } else { "FALSE" }.into()),
        (_, Value::Bool(b)) => Ok(if *b { "1" } else { "0" }.into()),
        (Dialect::Postgres, Value::String(s)) => Ok(format!("{}::{}", pg_string(s), pg_cast(kind))),
        (Dialect::Mysql, Value::String(s)) => {
            let s = match kind {
                ValueKind::Timestamp { .. } => naive_utc(s, true).unwrap_or_else(|| s.clone()),
                _ => s.clone(),
            };
            Ok(format!("_utf8mb4 X'{}'", hex(&s)))
        }
        (Dialect::Sqlite, Value::String(s)) => {
            let s = match kind {
                ValueKind::Timestamp { .. } => naive_utc(s, false).unwrap_or_else(|| s.clone()),
                _ => s.clone(),
            };
            params.push(SqlParam::Text(s));
            Ok("?".into())
        }
        (_, other) => Err(Error::Config(format!(
            "incremental on `{}`: cursor value {other} cannot be used in a WHERE clause",
            col.name
        ))),
    }
}

/// The WHERE condition and ORDER BY of a window (`None` when nothing restricts the read).
pub fn window_sql(d: Dialect, w: &Window, params: &mut Vec<SqlParam>) -> Result<(Option<String>, Option<String>)> {
    let col = quote_ident(d, &w.column.name);
    let max = w.max();
    let start_open = w.cfg.range_start.as_deref() == Some("open");
    let end_closed = w.cfg.range_end.as_deref() == Some("closed");
    let mut bounds = vec![];
    if let Some(s) = w.start.as_ref().filter(|v| !v.is_null()) {
        let op = match (max, start_open) {
            (true, false) => ">=",
            (true, true) => ">",
            (false, false) => "<=",
            (false, true) => "<",
        };
        bounds.push(format!("{col} {op} {}", literal(d, &w.column, s, params)?));
    }
    if let Some(e) = w.end.as_ref().filter(|v| !v.is_null()) {
        let op = match (max, end_closed) {
            (true, false) => "<",
            (true, true) => "<=",
            (false, false) => ">",
            (false, true) => ">=",
        };
        bounds.push(format!("{col} {op} {}", literal(d, &w.column, e, params)?));
    }
    if let Some(wm) = w.watermark.as_ref().filter(|v| !v.is_null()) {
        if !max {
            return Err(Error::Config("incremental: a safe watermark needs last_value_func = \"max\"".into()));
        }
        bounds.push(format!("{col} < {}", literal(d, &w.column, wm, params)?));
    }
    let cond = match w.cfg.on_cursor_value_missing.as_deref().unwrap_or("raise") {
        "include" if !bounds.is_empty() => Some(format!("({}) OR {col} IS NULL", bounds.join(" AND "))),
        "exclude" => {
            bounds.push(format!("{col} IS NOT NULL"));
            Some(bounds.join(" AND "))
        }
        _ if bounds.is_empty() => None,
        _ => Some(bounds.join(" AND ")),
    };
    let order = match w.cfg.row_order.as_deref() {
        Some("asc") => Some(format!("{col} ASC")),
        Some("desc") => Some(format!("{col} DESC")),
        Some(other) => return Err(Error::Config(format!("incremental: row_order `{other}` is not asc or desc"))),
        None => None,
    };
    Ok((cond, order))
}

/// One key range of a partitioned read: `from <= key < to`. The first range is open below and
/// also takes the NULL keys, the last one is open above, so that together they cover every row
/// (also rows written after the bounds were read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// Database name of the integer key column.
    pub column: String,
    /// Inclusive lower bound; `None` for the first range (which also reads NULL keys).
    pub from: Option<i64>,
    /// Exclusive upper bound; `None` for the last range.
    pub to: Option<i64>,
}

impl KeyRange {
    /// The condition of the range (`None`: the only range, the whole table).
    pub fn sql(&self, d: Dialect) -> Option<String> {
        let k = quote_ident(d, &self.column);
        match (self.from, self.to) {
            (None, None) => None,
            (None, Some(b)) => Some(format!("{k} < {b} OR {k} IS NULL")),
            (Some(a), Some(b)) => Some(format!("{k} >= {a} AND {k} < {b}")),
            (Some(a), None) => Some(format!("{k} >= {a}")),
        }
    }
}

/// Split the keys `lo..=hi` into up to `n` ranges of equal width (fewer when there are fewer
/// keys than `n`); the first range also takes NULL keys, the last one everything above.
pub fn key_ranges(column: &str, lo: i64, hi: i64, n: usize) -> Vec<KeyRange> {
    let span = (hi as i128 - lo as i128 + 1).max(1);
    let n = (n.max(1) as i128).min(span);
    let width = (span + n - 1) / n;
    let cuts: Vec<i64> = (1..n).map(|i| (lo as i128 + i * width) as i64).filter(|c| *c <= hi).collect();
    let mut out = vec![];
    let mut from = None;
    for c in cuts {
        out.push(KeyRange { column: column.into(), from, to: Some(c) });
        from = Some(c);
    }
    out.push(KeyRange { column: column.into(), from, to: None });
    out
}

/// `SELECT <exprs> FROM <table> [WHERE …] [ORDER BY …]`.
pub fn select(d: Dialect, t: &TableSchema, exprs: &[String], window: Option<&Window>) -> Result<Select> {
    select_range(d, t, exprs, window, None)
}

/// [`select`] restricted to one key range of a partitioned read.
pub fn select_range(
    d: Dialect,
    t: &TableSchema,
    exprs: &[String],
    window: Option<&Window>,
    range: Option<&KeyRange>,
) -> Result<Select> {
    let mut params = vec![];
    let mut sql = format!("SELECT {} FROM {}", exprs.join(", "), qualified(d, t));
    let (cond, order) = match window {
        Some(w) => window_sql(d, w, &mut params)?,
        None => (None, None),
    };
    match (cond, range.and_then(|r| r.sql(d))) {
        (Some(c), Some(r)) => sql.push_str(&format!(" WHERE ({c}) AND ({r})")),
        (Some(c), None) | (None, Some(c)) => {
            sql.push_str(" WHERE ");
            sql.push_str(&c);
        }
        (None, None) => {}
    }
    if let Some(o) = order {
        sql.push_str(" ORDER BY ");
        sql.push_str(&o);
    }
    Ok(Select { sql, params })
}

/// The plain column list of a table (each column quoted).
pub fn plain_exprs(d: Dialect, t: &TableSchema) -> Vec<String> {
    t.columns.iter().map(|c| quote_ident(d, &c.name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Mapped;
    use serde_json::json;

    fn table() -> TableSchema {
        let ts = Mapped { kind: ValueKind::Timestamp { tz: true }, precision: None, default_decimal: false };
        TableSchema {
            schema: Some("src".into()),
            name: "tt".into(),
            is_view: false,
            columns: vec![SqlColumn::new("updated_at", "timestamptz", ts, true)],
            primary_key: vec![],
        }
    }

    fn window(cfg: serde_json::Value, start: Option<Value>, end: Option<Value>) -> Window {
        Window {
            column: table().columns[0].clone(),
            start,
            end,
            watermark: None,
            cfg: serde_json::from_value(cfg).unwrap(),
        }
    }

    #[test]
    fn where_clauses() {
        let t = table();
        let ex = plain_exprs(Dialect::Postgres, &t);
        let w = window(json!({"cursor_path": "updated_at"}), None, None);
        assert_eq!(
            select(Dialect::Postgres, &t, &ex, Some(&w)).unwrap().sql,
            "SELECT \"updated_at\" FROM \"src\".\"tt\""
        );
        let w = window(json!({"cursor_path": "updated_at"}), Some(json!("2024-01-01T00:00:00Z")), None);
        assert_eq!(
            select(Dialect::Postgres, &t, &ex, Some(&w)).unwrap().sql,
            "SELECT \"updated_at\" FROM \"src\".\"tt\" WHERE \"updated_at\" >= E'2024-01-01T00:00:00Z'::timestamptz"
        );
        let w = window(
            json!({"cursor_path": "updated_at", "last_value_func": "min", "range_start": "open", "range_end": "closed",
                   "on_cursor_value_missing": "include", "row_order": "desc"}),
            Some(json!(10)),
            Some(json!(2)),
        );
        let (c, o) = window_sql(Dialect::Mysql, &w, &mut vec![]).unwrap();
        assert_eq!(c.unwrap(), "(`updated_at` < 10 AND `updated_at` >= 2) OR `updated_at` IS NULL");
        assert_eq!(o.unwrap(), "`updated_at` DESC");
        let w =
            window(json!({"cursor_path": "u", "on_cursor_value_missing": "exclude"}), Some(json!(5)), Some(json!(9)));
        let mut p = vec![];
        let (c, _) = window_sql(Dialect::Sqlite, &w, &mut p).unwrap();
        assert_eq!(c.unwrap(), "\"updated_at\" >= ? AND \"updated_at\" < ? AND \"updated_at\" IS NOT NULL");
        assert_eq!(p, vec![SqlParam::Int(5), SqlParam::Int(9)]);
        let w = window(json!({"cursor_path": "u"}), Some(json!("2024-01-02T03:04:05+01:00")), None);
        let (c, _) = window_sql(Dialect::Mysql, &w, &mut vec![]).unwrap();
        assert_eq!(c.unwrap(), format!("`updated_at` >= _utf8mb4 X'{}'", hex("2024-01-02 02:04:05.000000")));
        // quotes and backslashes cannot escape a Postgres literal
        assert_eq!(pg_string("a'b\\c"), "E'a''b\\\\c'");
    }

    #[test]
    fn watermark_and_key_ranges() {
        let t = table();
        let ex = plain_exprs(Dialect::Postgres, &t);
        let mut w = window(
            json!({"cursor_path": "updated_at", "on_cursor_value_missing": "include"}),
            Some(json!("2024-01-01T00:00:00+00:00")),
            None,
        );
        w.watermark = Some(json!("2024-01-05T00:00:00.000000+00:00"));
        let r = KeyRange { column: "id".into(), from: None, to: Some(10) };
        assert_eq!(
            select_range(Dialect::Postgres, &t, &ex, Some(&w), Some(&r)).unwrap().sql,
            "SELECT \"updated_at\" FROM \"src\".\"tt\" WHERE ((\"updated_at\" >= E'2024-01-01T00:00:00+00:00'::timestamptz \
             AND \"updated_at\" < E'2024-01-05T00:00:00.000000+00:00'::timestamptz) OR \"updated_at\" IS NULL) \
             AND (\"id\" < 10 OR \"id\" IS NULL)"
        );
        w.cfg.last_value_func = Some("min".into());
        assert!(window_sql(Dialect::Postgres, &w, &mut vec![]).is_err());
        let r = |from, to| KeyRange { column: "k".into(), from, to };
        assert_eq!(key_ranges("k", 1, 10, 3), vec![r(None, Some(5)), r(Some(5), Some(9)), r(Some(9), None)]);
        assert_eq!(key_ranges("k", 7, 7, 3), vec![r(None, None)]);
        assert_eq!(key_ranges("k", 0, 1, 3), vec![r(None, Some(1)), r(Some(1), None)]);
        let full = key_ranges("k", i64::MIN, i64::MAX, 2);
        assert_eq!(full, vec![r(None, Some(0)), r(Some(0), None)]);
        assert_eq!(r(Some(5), None).sql(Dialect::Mysql).unwrap(), "`k` >= 5");
    }
}
