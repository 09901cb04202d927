//! The one type-mapping table: database column types → the value kind read into Arrow → dlt
//! column hints.
//!
//! | Postgres | MySQL / MariaDB | SQLite (declared type) | kind → Arrow | dlt type |
//! |---|---|---|---|---|
//! | `boolean` | — | `BOOL…` | Bool → Boolean | bool |
//! | `smallint` | `smallint` | `SMALLINT` | Int → Int64 | bigint (precision 32 at `full_with_precision`, as dlt) |
//! | `integer`, `bigint`, `oid` | `tinyint` (incl. `tinyint(1)`), `mediumint`, `int`, `bigint` (signed or unsigned), `year`, `bit(n)` | any other name with `INT` | Int → Int64 | bigint |
//! | `real`, `double precision` | `float`, `double`, `real` | `REAL`, `FLOA…`, `DOUB…` | Double → Float64 | double |
//! | `numeric(p,s)`, p ≤ 38 | `decimal(p,s)`, p ≤ 38 | `NUMERIC(p,s)`, `DECIMAL(p,s)` | Decimal → Decimal128(p,s) | decimal (p,s) |
//! | `numeric` (unbounded) | — | `NUMERIC`, `DECIMAL` | Decimal → Decimal128(38,9); Postgres: a value with more than 9 places is an error unless a hint chooses the type (rounding: `decimal`, 38, 9) | decimal (dlt default 38,9) |
//! | `numeric(p,s)`, p > 38 | `decimal(p,s)`, p > 38 | `DECIMAL(p,s)`, p > 38 | Text → Utf8 (exact digits) | text |
//! | `text`, `varchar(n)`, `char(n)`, `name`, `"char"`, `citext` | `char(n)`, `varchar(n)`, `*text` | `…CHAR…`, `…TEXT…`, `CLOB`, no type | Text → Utf8 | text (precision n at `full_with_precision`) |
//! | enum types | `enum`, `set` | — | Text → Utf8 | text (the longest value's length at `full_with_precision`, as dlt) |
//! | `uuid` | — | `UUID` | Text → Utf8 (`8-4-4-4-12` lower-case) | text |
//! | `interval` | — | — | Text → Utf8, ISO 8601 (`P1Y2M3DT4H5M6S`) | text |
//! | `money`, `inet`, `cidr`, `macaddr`, `bit`, `varbit`, `xml`, `tsvector`, ranges, geometric, other types | `geometry` types → Binary; anything else | anything else | Text → Utf8 (the server's text form) | text |
//! | `json`, `jsonb` | `json` (MySQL; MariaDB's `JSON` is `longtext` and stays text, as in dlt) | `JSON` | Json → Utf8 (JSON text) | json |
//! | arrays (`int[]`, `text[]`, …), composite types | — | — | Json → Utf8 (`to_json`) | json |
//! | `bytea` | `binary`, `varbinary`, `*blob` | `BLOB` | Binary → Binary | binary |
//! | `date` | `date` | `DATE` | Date → Date32 | date |
//! | `time`, `timetz` (normalized to UTC) | `time` (0 ≤ t < 24 h) | `TIME` | Time → Time64(µs) | time |
//! | `timestamp` | `datetime`, `timestamp` (read with the session in UTC) | `DATETIME`, `TIMESTAMP` | Timestamp → Timestamp(µs, none) | timestamp, `timezone: false` |
//! | `timestamptz` | — | — | Timestamp → Timestamp(µs, "UTC") | timestamp (timezone true) |
//!
//! Reflection levels, as dlt's: `minimal` declares only names and nullability (types come from
//! the Arrow batches), `full` declares types with decimal precision/scale and the timestamp
//! time zone flag, `full_with_precision` adds text lengths and `smallint` → precision 32.
//! Primary-key columns are declared `primary_key: true`, `nullable: false` at every level.

use arrow::datatypes::{DataType as ArrowType, TimeUnit};
use dlt_core::schema::{Column, DataType};
use serde::{Deserialize, Serialize};

/// How values of a column are read: the Arrow type of the batches and the dlt type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// Boolean.
    Bool,
    /// 64-bit integer.
    Int,
    /// 64-bit float.
    Double,
    /// Fixed point with precision ≤ 38.
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: i8,
    },
    /// UTF-8 text.
    Text,
    /// A JSON document as text.
    Json,
    /// Bytes.
    Binary,
    /// Calendar date.
    Date,
    /// Time of day, microseconds.
    Time,
    /// Timestamp, microseconds; `tz` = an instant in UTC, otherwise a wall-clock value.
    Timestamp {
        /// Time-zone aware.
        tz: bool,
    },
}

/// dlt's decimal default (precision 38, scale 9) for unbounded numerics.
pub const DEFAULT_DECIMAL: ValueKind = ValueKind::Decimal { precision: 38, scale: 9 };

impl ValueKind {
    /// The Arrow type of the batches.
    pub fn arrow_type(&self) -> ArrowType {
        match self {
            ValueKind::Bool => ArrowType::Boolean,
            ValueKind::Int => ArrowType::Int64,
            ValueKind::Double => ArrowType::Float64,
            ValueKind::Decimal { precision, scale } => ArrowType::Decimal128(*precision, *scale),
            ValueKind::Text | ValueKind::Json => ArrowType::Utf8,
            ValueKind::Binary => ArrowType::Binary,
            ValueKind::Date => ArrowType::Date32,
            ValueKind::Time => ArrowType::Time64(TimeUnit::Microsecond),
            ValueKind::Timestamp { tz: true } => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ValueKind::Timestamp { tz: false } => ArrowType::Timestamp(TimeUnit::Microsecond, None),
        }
    }

    /// The dlt data type.
    pub fn data_type(&self) -> DataType {
        match self {
            ValueKind::Bool => DataType::Bool,
            ValueKind::Int => DataType::Bigint,
            ValueKind::Double => DataType::Double,
            ValueKind::Decimal { .. } => DataType::Decimal,
            ValueKind::Text => DataType::Text,
            ValueKind::Json => DataType::Json,
            ValueKind::Binary => DataType::Binary,
            ValueKind::Date => DataType::Date,
            ValueKind::Time => DataType::Time,
            ValueKind::Timestamp { .. } => DataType::Timestamp,
        }
    }

    /// The kind for a dlt type (used when a table adapter sets a dlt type).
    pub fn from_data_type(t: DataType, precision: Option<u32>, scale: Option<u32>, timezone: Option<bool>) -> Self {
        match t {
            DataType::Bool => ValueKind::Bool,
            DataType::Bigint => ValueKind::Int,
            DataType::Double => ValueKind::Double,
            DataType::Decimal => decimal(precision, scale.map(|s| s as i32)),
            DataType::Text | DataType::Wei => ValueKind::Text,
            DataType::Json => ValueKind::Json,
            DataType::Binary => ValueKind::Binary,
            DataType::Date => ValueKind::Date,
            DataType::Time => ValueKind::Time,
            DataType::Timestamp => ValueKind::Timestamp { tz: timezone.unwrap_or(true) },
        }
    }
}

/// How much of the column types reflection declares (dlt's `reflection_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReflectionLevel {
    /// Names and nullability only.
    Minimal,
    /// Types, decimal precision/scale, timestamp time zone.
    #[default]
    Full,
    /// `full` plus text lengths and small-integer precision.
    FullWithPrecision,
}

impl ReflectionLevel {
    /// Parse dlt's name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "minimal" => ReflectionLevel::Minimal,
            "full" => ReflectionLevel::Full,
            "full_with_precision" => ReflectionLevel::FullWithPrecision,
            _ => return None,
        })
    }
}

/// The result of mapping a database type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    /// How values are read.
    pub kind: ValueKind,
    /// Text length (`varchar(n)`) or integer bits (`smallint` → 32), declared at
    /// `full_with_precision` only.
    pub precision: Option<u32>,
    /// Whether `kind` is the unbounded-numeric default (no precision declared to dlt).
    pub default_decimal: bool,
}

impl Mapped {
    fn of(kind: ValueKind) -> Mapped {
        Mapped { kind, precision: None, default_decimal: false }
    }
    fn with_precision(kind: ValueKind, precision: Option<u32>) -> Mapped {
        Mapped { kind, precision, default_decimal: false }
    }
}

fn decimal(precision: Option<u32>, scale: Option<i32>) -> ValueKind {
    match precision {
        Some(p) if p > 38 => ValueKind::Text,
        Some(p) if p > 0 => {
            let s = scale.unwrap_or(0).clamp(0, p as i32);
            ValueKind::Decimal { precision: p as u8, scale: s as i8 }
        }
        _ => DEFAULT_DECIMAL,
    }
}

fn numeric(precision: Option<u32>, scale: Option<i32>) -> Mapped {
    let kind = decimal(precision, scale);
    Mapped { kind, precision: None, default_decimal: precision.is_none() }
}

/// Postgres: `base` is the (domain-resolved) `pg_type.typname`, `typtype`/`category` its
/// `typtype` and `typcategory`, `typmod` the attribute's type modifier, `enum_len` the longest
/// label of an enum type.
pub fn postgres(base: &str, typtype: &str, category: &str, typmod: i32, enum_len: Option<i32>) -> Mapped {
    if category == "A" {
        return Mapped::of(ValueKind::Json);
    }
    match typtype {
        "e" => return Mapped::with_precision(ValueKind::Text, enum_len.map(|n| n as u32)),
        "c" => return Mapped::of(ValueKind::Json),
        _ => {}
    }
    let len = if typmod >= 4 { Some((typmod - 4) as u32) } else { None };
    match base {
        "bool" => Mapped::of(ValueKind::Bool),
        "int2" => Mapped::with_precision(ValueKind::Int, Some(32)),
        "int4" | "int8" | "oid" => Mapped::of(ValueKind::Int),
        "float4" | "float8" => Mapped::of(ValueKind::Double),
        "numeric" => match len {
            Some(m) => {
                let p = (m >> 16) & 0xffff;
                // Postgres 15+ stores the scale as an 11-bit signed number
                let s = (((m & 0x7ff) ^ 1024) as i32) - 1024;
                numeric(Some(p), Some(s))
            }
            None => numeric(None, None),
        },
        "varchar" | "bpchar" => Mapped::with_precision(ValueKind::Text, len),
        "text" | "name" | "char" | "citext" | "uuid" | "interval" => Mapped::of(ValueKind::Text),
        "json" | "jsonb" => Mapped::of(ValueKind::Json),
        "bytea" => Mapped::of(ValueKind::Binary),
        "date" => Mapped::of(ValueKind::Date),
        "time" | "timetz" => Mapped::of(ValueKind::Time),
        "timestamp" => Mapped::of(ValueKind::Timestamp { tz: false }),
        "timestamptz" => Mapped::of(ValueKind::Timestamp { tz: true }),
        _ => Mapped::of(ValueKind::Text),
    }
}

/// MySQL / MariaDB: `data_type` and `column_type` from `information_schema.COLUMNS`.
pub fn mysql(data_type: &str, precision: Option<u32>, scale: Option<u32>, char_len: Option<u32>) -> Mapped {
    match data_type.to_ascii_lowercase().as_str() {
        "smallint" => Mapped::with_precision(ValueKind::Int, Some(32)),
        "tinyint" | "mediumint" | "int" | "integer" | "bigint" | "year" | "bit" => Mapped::of(ValueKind::Int),
        "decimal" | "numeric" | "dec" | "fixed" => numeric(precision, scale.map(|s| s as i32)),
        "float" | "double" | "real" | "double precision" => Mapped::of(ValueKind::Double),
        "char" | "varchar" => Mapped::with_precision(ValueKind::Text, char_len),
        "tinytext" | "text" | "mediumtext" | "longtext" => Mapped::of(ValueKind::Text),
        // dlt gives enums the length of the longest value
        "enum" | "set" => Mapped::with_precision(ValueKind::Text, char_len),
        "json" => Mapped::of(ValueKind::Json),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "geometry" | "point"
        | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon" | "geometrycollection" => {
            Mapped::of(ValueKind::Binary)
        }
        "date" => Mapped::of(ValueKind::Date),
        "datetime" | "timestamp" => Mapped::of(ValueKind::Timestamp { tz: false }),
        "time" => Mapped::of(ValueKind::Time),
        _ => Mapped::of(ValueKind::Text),
    }
}

/// SQLite: the declared type of a column (`VARCHAR(20)`, `NUMERIC(10, 2)`, `` for none), by
/// SQLite's affinity rules refined with the names SQLAlchemy writes.
pub fn sqlite(declared: &str) -> Mapped {
    let up = declared.trim().to_ascii_uppercase();
    let (name, args) = match up.find('(') {
        Some(i) => (up[..i].trim().to_string(), up[i + 1..].trim_end_matches(')').to_string()),
        None => (up.clone(), String::new()),
    };
    let nums: Vec<u32> = args.split(',').filter_map(|a| a.trim().parse().ok()).collect();
    match name.as_str() {
        "BOOLEAN" | "BOOL" => return Mapped::of(ValueKind::Bool),
        "DATETIME" | "TIMESTAMP" => return Mapped::of(ValueKind::Timestamp { tz: false }),
        "DATE" => return Mapped::of(ValueKind::Date),
        "TIME" => return Mapped::of(ValueKind::Time),
        "JSON" => return Mapped::of(ValueKind::Json),
        "SMALLINT" => return Mapped::with_precision(ValueKind::Int, Some(32)),
        "NUMERIC" | "DECIMAL" => {
            return numeric(nums.first().copied(), nums.get(1).map(|s| *s as i32));
        }
        _ => {}
    }
    if name.contains("INT") {
        Mapped::of(ValueKind::Int)
    } else if name.contains("CHAR") || name.contains("CLOB") || name.contains("TEXT") {
        Mapped::with_precision(ValueKind::Text, nums.first().copied())
    } else if name.contains("BLOB") {
        Mapped::of(ValueKind::Binary)
    } else if name.contains("REAL") || name.contains("FLOA") || name.contains("DOUB") {
        Mapped::of(ValueKind::Double)
    } else {
        Mapped::of(ValueKind::Text)
    }
}

/// The dlt column hint of a reflected column at a reflection level.
pub fn dlt_column(name: &str, mapped: &Mapped, nullable: bool, primary_key: bool, level: ReflectionLevel) -> Column {
    let mut c = Column { name: name.to_string(), nullable: Some(nullable && !primary_key), ..Default::default() };
    c.primary_key = primary_key;
    if level == ReflectionLevel::Minimal {
        return c;
    }
    c.data_type = Some(mapped.kind.data_type());
    match mapped.kind {
        ValueKind::Decimal { precision, scale } if !mapped.default_decimal => {
            c.precision = Some(precision as u32);
            c.scale = Some(scale.max(0) as u32);
        }
        ValueKind::Timestamp { tz } => c.timezone = Some(tz),
        ValueKind::Text | ValueKind::Int if level == ReflectionLevel::FullWithPrecision => {
            c.precision = mapped.precision;
        }
        _ => {}
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_table() {
        // numeric(10,3): typmod = (10 << 16 | 3) + 4
        let m = postgres("numeric", "b", "N", ((10 << 16) | 3) + 4, None);
        assert_eq!(m.kind, ValueKind::Decimal { precision: 10, scale: 3 });
        let m = postgres("numeric", "b", "N", -1, None);
        assert!(m.default_decimal && m.kind == DEFAULT_DECIMAL);
        assert_eq!(postgres("numeric", "b", "N", ((50 << 16) | 2) + 4, None).kind, ValueKind::Text);
        assert_eq!(postgres("_int4", "b", "A", -1, None).kind, ValueKind::Json);
        assert_eq!(postgres("mood", "e", "E", -1, Some(7)).kind, ValueKind::Text);
        assert_eq!(postgres("mood", "e", "E", -1, Some(7)).precision, Some(7));
        assert_eq!(postgres("varchar", "b", "S", 24, None).precision, Some(20));
        assert_eq!(postgres("timestamptz", "b", "D", -1, None).kind, ValueKind::Timestamp { tz: true });
        assert_eq!(mysql("tinyint", Some(3), Some(0), None).kind, ValueKind::Int);
        assert_eq!(mysql("decimal", Some(38), Some(9), None).kind, ValueKind::Decimal { precision: 38, scale: 9 });
        assert_eq!(mysql("decimal", Some(65), Some(30), None).kind, ValueKind::Text);
        assert_eq!(mysql("longtext", None, None, Some(1 << 30)).kind, ValueKind::Text);
        assert_eq!(sqlite("VARCHAR(20)").precision, Some(20));
        assert_eq!(sqlite("NUMERIC(10, 2)").kind, ValueKind::Decimal { precision: 10, scale: 2 });
        assert_eq!(sqlite("INTEGER").kind, ValueKind::Int);
        assert_eq!(sqlite("DATETIME").kind, ValueKind::Timestamp { tz: false });
        assert_eq!(sqlite("").kind, ValueKind::Text);

        let vc = postgres("varchar", "b", "S", 24, None);
        let full = dlt_column("v", &vc, true, false, ReflectionLevel::Full);
        assert_eq!((full.data_type, full.precision), (Some(DataType::Text), None));
        let fwp = dlt_column("v", &vc, true, false, ReflectionLevel::FullWithPrecision);
        assert_eq!(fwp.precision, Some(20));
        let min = dlt_column("id", &Mapped::of(ValueKind::Int), true, true, ReflectionLevel::Minimal);
        assert_eq!((min.data_type, min.nullable, min.primary_key), (None, Some(false), true));
        let d = dlt_column("n", &postgres("numeric", "b", "N", -1, None), true, false, ReflectionLevel::Full);
        assert_eq!((d.data_type, d.precision), (Some(DataType::Decimal), None));
    }
}
