//! Typed columns from Rust types: the Rust answer to dlt's Pydantic models.
//!
//! A struct that derives [`Table`] (with `#[derive(dlt::Table)]`, from the `dlt-derive` crate)
//! declares a resource's columns — names, types, nullability and keys — from its fields.
//! [`resource`] loads rows of such a struct with those columns declared; [`validate`] checks
//! untyped JSON rows against the struct before they are loaded.
//!
//! # Type mapping
//!
//! [`ColumnType`] decides the dlt type of each Rust type; [`column_of`] turns it into a
//! [`Column`]. Every implementation is in this file:
//!
//! | Rust type | dlt column |
//! | --- | --- |
//! | `i8`, `i16`, `i32` | `bigint`, precision 8 / 16 / 32 |
//! | `u8`, `u16` | `bigint`, precision 16 / 32 (the next signed width holds every value) |
//! | `i64`, `isize`, `u32` | `bigint` |
//! | `u64`, `usize` | `bigint`; a value ≥ 2^63 does not fit the signed 64-bit column: [`resource`] fails on that row |
//! | `f32`, `f64` | `double` |
//! | `bool` | `bool` |
//! | `String`, `str`, `char` | `text` |
//! | `Vec<u8>`, `[u8]`, `[u8; N]` | `binary` (rows carry them base64-encoded) |
//! | `chrono::DateTime<Utc / FixedOffset / Local>` | `timestamp` (timezone-aware: dlt's default, no hint written) |
//! | `chrono::NaiveDateTime` | `timestamp`, `timezone: false` |
//! | `chrono::NaiveDate` / `NaiveTime` | `date` / `time` |
//! | `serde_json::Value` (nullable), maps, sets, `Vec<T>` / slices / arrays of other `T`, structs deriving `Table` | `json` |
//! | `Option<T>` | `T`'s column, nullable |
//! | `&T`, `Box<T>`, `Arc<T>`, `Rc<T>`, `Cow<T>` | `T`'s column |
//!
//! Every other type is NOT NULL unless wrapped in `Option`. Nested structs, lists and maps stay
//! in ONE `json` column of the parent table — no child tables, no flattening — as dlt stores a
//! nested Pydantic model by default in recent versions. (`#[serde(flatten)]` on a field whose
//! type derives `Table` puts its columns into the parent instead.) A type without an
//! implementation is a compile error at the derive; implement [`ColumnType`] for it, or give
//! the field `#[dlt(data_type = "…")]`.
//!
//! Decimals: `rust_decimal` is not a dependency; declare a `String` (or number) field with
//! `#[dlt(data_type = "decimal", precision = 10, scale = 2)]`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use base64::Engine;
use indexmap::IndexMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::resource::{Item, KeyHint, Resource, ResourceHints, TableName};
use crate::schema::{Column, DataType, WriteDisposition};

/// A Rust struct whose fields are a table's columns. Derive it with `#[derive(dlt::Table)]`.
///
/// Field attributes (`#[dlt(...)]`): `primary_key`, `merge_key`, `unique`, `partition`,
/// `cluster`, `sort`, `hard_delete`, `dedup_sort = "asc" | "desc"`, `name = "…"` (column name),
/// `data_type = "…"`, `precision = N`, `scale = N`, `timezone = bool`, `nullable = bool`,
/// `description = "…"`, `skip` (not a column; dropped from rows). `#[serde(rename = "…")]`,
/// `#[serde(rename_all = "…")]`, `#[serde(skip)]` / `skip_serializing` and `#[serde(flatten)]`
/// are respected. Struct attributes: `#[dlt(table_name = "…", write_disposition = "merge")]`, and
/// `#[dlt(crate = "dlt_core")]` for code that depends on `dlt-core` instead of `dlt`.
pub trait Table: Serialize {
    /// Columns in field order, dlt names (snake_case of the field name or the serde rename),
    /// types, nullability (`Option<T>` = nullable, else NOT NULL), keys.
    fn columns() -> Vec<Column>;

    /// Optional table name override (attribute), else None.
    fn table_name() -> Option<&'static str> {
        None
    }

    /// Optional write disposition (attribute), else None.
    fn write_disposition() -> Option<WriteDisposition> {
        None
    }

    /// The key each column has in the serialized row (the serde name), in `columns()` order.
    /// The default says the keys are the column names.
    fn serde_keys() -> Vec<String> {
        Self::columns().into_iter().map(|c| c.name).collect()
    }

    /// Serialized keys that are not columns (`#[dlt(skip)]` fields serde still writes); they
    /// are dropped from rows.
    fn skipped_keys() -> Vec<String> {
        Vec::new()
    }
}

/// The dlt column type of a Rust type (see the [module docs](self) for the table).
pub trait ColumnType {
    /// dlt data type.
    const DATA_TYPE: DataType;
    /// Whether the column is nullable (only `Option<T>` and `serde_json::Value` are).
    const NULLABLE: bool = false;
    /// Precision hint (bits of an integer, digits of a decimal, fractional digits of a time).
    const PRECISION: Option<u32> = None;
    /// Scale hint of a decimal.
    const SCALE: Option<u32> = None;
    /// Timezone hint of a timestamp (`None` = dlt's default, timezone-aware).
    const TIMEZONE: Option<bool> = None;
    /// The type of a sequence (`Vec<Self>`, `[Self]`, `[Self; N]`) of this type: `json`,
    /// except `binary` for bytes.
    const SEQUENCE_DATA_TYPE: DataType = DataType::Json;
}

/// The column of a field of type `T`: the one function the derive calls for every field.
pub fn column_of<T: ColumnType + ?Sized>(name: impl Into<String>) -> Column {
    Column {
        name: name.into(),
        data_type: Some(T::DATA_TYPE),
        nullable: Some(T::NULLABLE),
        precision: T::PRECISION,
        scale: T::SCALE,
        timezone: T::TIMEZONE,
        ..Default::default()
    }
}

macro_rules! column_type {
    ($($t:ty => $dt:ident $(, precision $p:expr)?;)*) => {$(
        impl ColumnType for $t {
            const DATA_TYPE: DataType = DataType::$dt;
            $(const PRECISION: Option<u32> = Some($p);)?
        }
    )*};
}

column_type! {
    i8 => Bigint, precision 8;
    i16 => Bigint, precision 16;
    i32 => Bigint, precision 32;
    i64 => Bigint;
    isize => Bigint;
    u16 => Bigint, precision 32;
    u32 => Bigint;
    u64 => Bigint;
    usize => Bigint;
    f32 => Double;
    f64 => Double;
    bool => Bool;
    String => Text;
    str => Text;
    char => Text;
    chrono::NaiveDate => Date;
    chrono::NaiveTime => Time;
}

impl ColumnType for u8 {
    const DATA_TYPE: DataType = DataType::Bigint;
    const PRECISION: Option<u32> = Some(16);
    const SEQUENCE_DATA_TYPE: DataType = DataType::Binary;
}

impl ColumnType for chrono::NaiveDateTime {
    const DATA_TYPE: DataType = DataType::Timestamp;
    const TIMEZONE: Option<bool> = Some(false);
}

impl<Tz: chrono::TimeZone> ColumnType for chrono::DateTime<Tz> {
    const DATA_TYPE: DataType = DataType::Timestamp;
}

impl ColumnType for Value {
    const DATA_TYPE: DataType = DataType::Json;
    const NULLABLE: bool = true;
}

impl ColumnType for Map<String, Value> {
    const DATA_TYPE: DataType = DataType::Json;
}

impl<T: ColumnType> ColumnType for Option<T> {
    const DATA_TYPE: DataType = T::DATA_TYPE;
    const NULLABLE: bool = true;
    const PRECISION: Option<u32> = T::PRECISION;
    const SCALE: Option<u32> = T::SCALE;
    const TIMEZONE: Option<bool> = T::TIMEZONE;
}

macro_rules! forward {
    ($($t:ty),*) => {$(
        impl<T: ColumnType + ?Sized> ColumnType for $t {
            const DATA_TYPE: DataType = T::DATA_TYPE;
            const NULLABLE: bool = T::NULLABLE;
            const PRECISION: Option<u32> = T::PRECISION;
            const SCALE: Option<u32> = T::SCALE;
            const TIMEZONE: Option<bool> = T::TIMEZONE;
            const SEQUENCE_DATA_TYPE: DataType = T::SEQUENCE_DATA_TYPE;
        }
    )*};
}

forward!(&T, Box<T>, Arc<T>, Rc<T>);

impl<T: ColumnType + ToOwned + ?Sized> ColumnType for Cow<'_, T> {
    const DATA_TYPE: DataType = T::DATA_TYPE;
    const NULLABLE: bool = T::NULLABLE;
    const PRECISION: Option<u32> = T::PRECISION;
    const SCALE: Option<u32> = T::SCALE;
    const TIMEZONE: Option<bool> = T::TIMEZONE;
    const SEQUENCE_DATA_TYPE: DataType = T::SEQUENCE_DATA_TYPE;
}

impl<T: ColumnType> ColumnType for Vec<T> {
    const DATA_TYPE: DataType = T::SEQUENCE_DATA_TYPE;
}

impl<T: ColumnType> ColumnType for [T] {
    const DATA_TYPE: DataType = T::SEQUENCE_DATA_TYPE;
}

impl<T: ColumnType, const N: usize> ColumnType for [T; N] {
    const DATA_TYPE: DataType = T::SEQUENCE_DATA_TYPE;
}

macro_rules! json_container {
    ($($t:ty => [$($g:ident),*]),*) => {$(
        impl<$($g),*> ColumnType for $t {
            const DATA_TYPE: DataType = DataType::Json;
        }
    )*};
}

json_container! {
    VecDeque<T> => [T],
    HashSet<T, S> => [T, S],
    BTreeSet<T> => [T],
    HashMap<K, V, S> => [K, V, S],
    BTreeMap<K, V> => [K, V],
    IndexMap<K, V, S> => [K, V, S]
}

/// The resource hints a [`Table`] declares: its columns, `primary_key` / `merge_key` from
/// the key columns, and the table name and write disposition if given.
pub fn hints<T: Table>() -> ResourceHints {
    let columns = T::columns();
    let keys = |pick: fn(&Column) -> bool| {
        let k: Vec<String> = columns.iter().filter(|c| pick(c)).map(|c| c.name.clone()).collect();
        (!k.is_empty()).then_some(KeyHint(k))
    };
    ResourceHints {
        table_name: T::table_name().map(|t| TableName::Static(t.to_string())),
        write_disposition: T::write_disposition().map(Into::into),
        primary_key: keys(|c| c.primary_key),
        merge_key: keys(|c| c.merge_key),
        columns: columns.iter().map(|c| (c.name.clone(), c.clone())).collect(),
        ..Default::default()
    }
}

/// How a serialized row of a [`Table`] becomes a dlt row: keys renamed to column names,
/// non-column keys dropped, bytes base64-encoded.
struct RowShape {
    /// serde key → what to do with its value.
    keys: HashMap<String, KeyShape>,
    /// Keys that are not columns.
    dropped: HashSet<String>,
}

struct KeyShape {
    /// The column name, if it differs from the key.
    rename: Option<String>,
    /// The column name.
    column: String,
    /// A binary column: bytes are base64-encoded.
    binary: bool,
    /// A 64-bit bigint column: integers beyond `i64` (from `u64` / `usize`) are rejected.
    bigint: bool,
}

impl RowShape {
    fn of<T: Table>() -> RowShape {
        let columns = T::columns();
        let serde_keys = T::serde_keys();
        let mut keys = HashMap::new();
        if serde_keys.len() == columns.len() {
            for (key, c) in serde_keys.into_iter().zip(&columns) {
                let rename = (key != c.name).then(|| c.name.clone());
                let binary = c.data_type == Some(DataType::Binary);
                let bigint = c.data_type == Some(DataType::Bigint) && c.precision.is_none_or(|p| p <= 64);
                if rename.is_some() || binary || bigint {
                    keys.insert(key, KeyShape { rename, column: c.name.clone(), binary, bigint });
                }
            }
        }
        RowShape { keys, dropped: T::skipped_keys().into_iter().collect() }
    }

    fn apply(&self, v: Value) -> std::result::Result<Value, String> {
        let Value::Object(m) = v else { return Ok(v) };
        if self.keys.is_empty() && self.dropped.is_empty() {
            return Ok(Value::Object(m));
        }
        let mut out = Map::with_capacity(m.len());
        for (k, v) in m {
            if self.dropped.contains(&k) {
                continue;
            }
            match self.keys.get(&k) {
                None => {
                    out.insert(k, v);
                }
                Some(shape) => {
                    let v = if shape.binary { encode_bytes(v) } else { v };
                    if shape.bigint
                        && let Value::Number(n) = &v
                        && n.as_i64().is_none()
                        && n.as_u64().is_some()
                    {
                        return Err(format!(
                            "column `{}`: {n} does not fit a bigint (signed 64-bit) column",
                            shape.column
                        ));
                    }
                    out.insert(shape.rename.clone().unwrap_or(k), v);
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn row<T: Serialize>(&self, row: &T) -> std::result::Result<Value, String> {
        self.apply(serde_json::to_value(row).map_err(|e| e.to_string())?)
    }
}

/// serde_json writes bytes as a list of numbers; dlt's binary columns take base64 text.
fn encode_bytes(v: Value) -> Value {
    let Value::Array(a) = &v else { return v };
    let bytes: Option<Vec<u8>> = a.iter().map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok())).collect();
    match bytes {
        Some(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        None => v,
    }
}

fn bad_input(resource: &str, n: usize, message: String) -> Error {
    Error::BadInput { location: format!("{resource} item #{n}"), message }
}

/// A resource over typed rows: each row is serialized with serde_json into an
/// [`Item::Json`] keyed by dlt column names, with the [`hints`] of `T` (declared columns,
/// keys, table name, write disposition).
///
/// A row that cannot be serialized, or with an integer ≥ 2^63 (a `u64` / `usize`) for a
/// `bigint` column, fails the extract with [`Error::BadInput`] at `"<resource> item #<n>"`.
pub fn resource<T, I>(name: &str, rows: I) -> Resource
where
    T: Table + Send + 'static,
    I: IntoIterator<Item = T>,
    I::IntoIter: Send + 'static,
{
    let shape = RowShape::of::<T>();
    let res = name.to_string();
    let items = rows
        .into_iter()
        .enumerate()
        .map(move |(n, row)| shape.row(&row).map(Item::Json).map_err(|e| bad_input(&res, n, e)));
    Resource::new(name, items).with_hints(hints::<T>())
}

/// A resource over untyped JSON rows, each checked by deserializing it into `T`. The first
/// row that does not fit fails the extract with [`Error::BadInput`] at `"<resource> item #<n>"`
/// (`n` counts from 0, as everywhere in extract), with serde's message prefixed by the field
/// (`` field `amount`: invalid type: … ``; missing fields are named by serde itself).
///
/// What is loaded is the row serialized back from `T`: keys `T` does not know are dropped,
/// like Pydantic's default `extra = "ignore"`, and serde defaults fill missing optional fields.
/// Add `#[serde(deny_unknown_fields)]` to `T` to reject them instead. The resource has the
/// same hints as [`resource`].
pub fn validate<T, I>(name: &str, items: I) -> Resource
where
    T: Table + DeserializeOwned + 'static,
    I: IntoIterator<Item = Value>,
    I::IntoIter: Send + 'static,
{
    let shape = RowShape::of::<T>();
    let res = name.to_string();
    let items = items.into_iter().enumerate().map(move |(n, v)| {
        let row: T = match serde_json::from_value::<T>(v.clone()) {
            Ok(r) => r,
            Err(e) => return Err(bad_input(&res, n, describe_error::<T>(&v, &e))),
        };
        shape.row(&row).map(Item::Json).map_err(|e| bad_input(&res, n, e))
    });
    Resource::new(name, items).with_hints(hints::<T>())
}

/// serde's message without serde_json's position suffix.
fn message_of(e: &serde_json::Error) -> String {
    let s = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    s.strip_suffix(&suffix).map(str::to_string).unwrap_or(s)
}

/// Name the field a deserialization error is about: serde_json's value errors carry no
/// position, so the row is written one top-level entry per line and parsed again from text;
/// the error's line is the field's.
fn describe_error<T: DeserializeOwned>(v: &Value, original: &serde_json::Error) -> String {
    let Value::Object(m) = v else { return message_of(original) };
    let mut text = String::from("{\n");
    let mut keys = Vec::with_capacity(m.len());
    for (i, (k, val)) in m.iter().enumerate() {
        let (Ok(ks), Ok(vs)) = (serde_json::to_string(k), serde_json::to_string(val)) else {
            return message_of(original);
        };
        text.push_str(&ks);
        text.push(':');
        text.push_str(&vs);
        if i + 1 < m.len() {
            text.push(',');
        }
        text.push('\n');
        keys.push(k);
    }
    text.push('}');
    match serde_json::from_str::<T>(&text) {
        Ok(_) => message_of(original),
        Err(e) => {
            let msg = message_of(&e);
            match e.line().checked_sub(2).and_then(|i| keys.get(i)) {
                Some(k) => format!("field `{k}`: {msg}"),
                None => msg,
            }
        }
    }
}

/// Re-exports the derive's generated code uses.
#[doc(hidden)]
pub mod __private {
    pub use serde::Serialize;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime, Utc};
    use serde::Deserialize;

    fn ty<T: ColumnType + ?Sized>() -> (DataType, bool, Option<u32>, Option<bool>) {
        let c = column_of::<T>("x");
        (c.data_type.unwrap(), c.nullable.unwrap(), c.precision, c.timezone)
    }

    #[test]
    fn integers() {
        use DataType::Bigint;
        assert_eq!(ty::<i8>(), (Bigint, false, Some(8), None));
        assert_eq!(ty::<i16>(), (Bigint, false, Some(16), None));
        assert_eq!(ty::<i32>(), (Bigint, false, Some(32), None));
        assert_eq!(ty::<i64>(), (Bigint, false, None, None));
        assert_eq!(ty::<isize>(), (Bigint, false, None, None));
        assert_eq!(ty::<u8>(), (Bigint, false, Some(16), None));
        assert_eq!(ty::<u16>(), (Bigint, false, Some(32), None));
        assert_eq!(ty::<u32>(), (Bigint, false, None, None));
        assert_eq!(ty::<u64>(), (Bigint, false, None, None));
        assert_eq!(ty::<usize>(), (Bigint, false, None, None));
    }

    #[test]
    fn scalars() {
        assert_eq!(ty::<f32>().0, DataType::Double);
        assert_eq!(ty::<f64>().0, DataType::Double);
        assert_eq!(ty::<bool>().0, DataType::Bool);
        assert_eq!(ty::<String>(), (DataType::Text, false, None, None));
        assert_eq!(ty::<&str>().0, DataType::Text);
        assert_eq!(ty::<str>().0, DataType::Text);
        assert_eq!(ty::<char>().0, DataType::Text);
        assert_eq!(ty::<Box<str>>().0, DataType::Text);
        assert_eq!(ty::<Arc<str>>().0, DataType::Text);
        assert_eq!(ty::<Cow<'static, str>>().0, DataType::Text);
    }

    #[test]
    fn bytes_and_sequences() {
        assert_eq!(ty::<Vec<u8>>().0, DataType::Binary);
        assert_eq!(ty::<Vec<u8>>().2, None, "binary has no integer precision");
        assert_eq!(ty::<[u8]>().0, DataType::Binary);
        assert_eq!(ty::<&[u8]>().0, DataType::Binary);
        assert_eq!(ty::<[u8; 16]>().0, DataType::Binary);
        assert_eq!(ty::<Cow<'static, [u8]>>().0, DataType::Binary);
        assert_eq!(ty::<Vec<i64>>().0, DataType::Json);
        assert_eq!(ty::<Vec<String>>().0, DataType::Json);
        assert_eq!(ty::<Vec<Vec<u8>>>().0, DataType::Json);
        assert_eq!(ty::<Vec<Option<u8>>>().0, DataType::Json);
        assert_eq!(ty::<[f64; 3]>().0, DataType::Json);
        assert_eq!(ty::<VecDeque<u8>>().0, DataType::Json);
        assert_eq!(ty::<HashSet<String>>().0, DataType::Json);
        assert_eq!(ty::<HashMap<String, i64>>().0, DataType::Json);
        assert_eq!(ty::<BTreeMap<String, Value>>().0, DataType::Json);
        assert_eq!(ty::<IndexMap<String, Value>>().0, DataType::Json);
        assert_eq!(ty::<Map<String, Value>>(), (DataType::Json, false, None, None));
        assert_eq!(ty::<Value>(), (DataType::Json, true, None, None));
    }

    #[test]
    fn chrono_types() {
        assert_eq!(ty::<DateTime<Utc>>(), (DataType::Timestamp, false, None, None));
        assert_eq!(ty::<DateTime<FixedOffset>>(), (DataType::Timestamp, false, None, None));
        assert_eq!(ty::<DateTime<Local>>().0, DataType::Timestamp);
        assert_eq!(ty::<NaiveDateTime>(), (DataType::Timestamp, false, None, Some(false)));
        assert_eq!(ty::<NaiveDate>(), (DataType::Date, false, None, None));
        assert_eq!(ty::<NaiveTime>(), (DataType::Time, false, None, None));
    }

    #[test]
    fn options_are_nullable() {
        assert_eq!(ty::<Option<i32>>(), (DataType::Bigint, true, Some(32), None));
        assert_eq!(ty::<Option<NaiveDateTime>>(), (DataType::Timestamp, true, None, Some(false)));
        assert_eq!(ty::<Option<Vec<u8>>>().0, DataType::Binary);
        assert_eq!(ty::<Box<Option<String>>>(), (DataType::Text, true, None, None));
        let c = column_of::<Option<u64>>("n");
        assert_eq!(c.name, "n");
        assert!(c.is_nullable());
    }

    /// A hand-written `Table` (what the derive generates, minus attributes).
    #[derive(Serialize, Deserialize)]
    struct Row {
        #[serde(rename = "ID")]
        id: i64,
        blob: Vec<u8>,
        note: Option<String>,
        internal: u8,
    }

    impl Table for Row {
        fn columns() -> Vec<Column> {
            let mut id = column_of::<i64>("id");
            id.primary_key = true;
            vec![id, column_of::<Vec<u8>>("blob"), column_of::<Option<String>>("note")]
        }
        fn table_name() -> Option<&'static str> {
            Some("rows")
        }
        fn serde_keys() -> Vec<String> {
            vec!["ID".into(), "blob".into(), "note".into()]
        }
        fn skipped_keys() -> Vec<String> {
            vec!["internal".into()]
        }
    }

    #[test]
    fn hints_from_table() {
        let h = hints::<Row>();
        assert_eq!(h.columns.keys().collect::<Vec<_>>(), ["id", "blob", "note"]);
        assert_eq!(h.primary_key, Some(KeyHint(vec!["id".into()])));
        assert_eq!(h.merge_key, None);
        assert!(matches!(h.table_name, Some(TableName::Static(ref t)) if t == "rows"));
        assert!(h.write_disposition.is_none());
    }

    #[test]
    fn rows_are_keyed_by_column_names() {
        let shape = RowShape::of::<Row>();
        let v = shape.row(&Row { id: 7, blob: vec![0, 1, 255], note: None, internal: 3 }).unwrap();
        assert_eq!(v, serde_json::json!({"id": 7, "blob": "AAH/", "note": null}));
        assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["id", "blob", "note"]);
    }

    fn first_error(r: Resource) -> Error {
        let (_, _, items) = r.into_parts();
        items.filter_map(|i| i.err()).next().expect("an error")
    }

    #[test]
    fn validate_names_item_and_field() {
        let rows = vec![
            serde_json::json!({"ID": 1, "blob": [1], "note": "a", "internal": 1, "extra": true}),
            serde_json::json!({"ID": 2, "blob": [], "note": 5, "internal": 1}),
        ];
        let r = validate::<Row, _>("things", rows.clone());
        let (_, _, mut items) = r.into_parts();
        match items.next().unwrap().unwrap() {
            Item::Json(v) => assert_eq!(v, serde_json::json!({"id": 1, "blob": "AQ==", "note": "a"})),
            other => panic!("{other:?}"),
        }
        match items.next().unwrap() {
            Err(Error::BadInput { location, message }) => {
                assert_eq!(location, "things item #1");
                assert!(message.starts_with("field `note`: invalid type: integer `5`"), "{message}");
                assert!(!message.contains("line"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let missing = first_error(validate::<Row, _>("things", vec![serde_json::json!({"blob": [], "internal": 0})]));
        assert!(missing.to_string().contains("missing field `ID`"), "{missing}");
        let not_object = first_error(validate::<Row, _>("things", vec![serde_json::json!(3)]));
        assert!(not_object.to_string().contains("things item #0"), "{not_object}");
    }
}
