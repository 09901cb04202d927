//! dlt's schema model: tables, columns, data types, and the stored-schema document.

use base64::Engine;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha3::Digest;

use crate::error::{Error, Result};

/// Schema engine version dlt 1.31 writes.
pub const SCHEMA_ENGINE_VERSION: u64 = 11;
/// `_dlt_loads` table name.
pub const LOADS_TABLE: &str = "_dlt_loads";
/// `_dlt_version` table name.
pub const VERSION_TABLE: &str = "_dlt_version";
/// `_dlt_pipeline_state` table name.
pub const STATE_TABLE: &str = "_dlt_pipeline_state";
/// Row id column.
pub const C_DLT_ID: &str = "_dlt_id";
/// Load id column.
pub const C_DLT_LOAD_ID: &str = "_dlt_load_id";
/// Parent row id column of nested tables.
pub const C_DLT_PARENT_ID: &str = "_dlt_parent_id";
/// Position in the parent list.
pub const C_DLT_LIST_IDX: &str = "_dlt_list_idx";
/// Root row id, propagated for merge tables.
pub const C_DLT_ROOT_ID: &str = "_dlt_root_id";

/// dlt data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// Text / VARCHAR.
    Text,
    /// 64-bit float.
    Double,
    /// Boolean.
    Bool,
    /// Timestamp (timezone-aware unless `timezone: false`).
    Timestamp,
    /// 64-bit integer (narrower with `precision`).
    Bigint,
    /// Bytes.
    Binary,
    /// JSON document (older schemas: `complex`).
    #[serde(alias = "complex")]
    Json,
    /// Fixed-point decimal.
    Decimal,
    /// 256-bit integer (EVM amounts).
    Wei,
    /// Calendar date.
    Date,
    /// Time of day.
    Time,
}

impl DataType {
    /// dlt's name of the type.
    pub fn as_str(&self) -> &'static str {
        match self {
            DataType::Text => "text",
            DataType::Double => "double",
            DataType::Bool => "bool",
            DataType::Timestamp => "timestamp",
            DataType::Bigint => "bigint",
            DataType::Binary => "binary",
            DataType::Json => "json",
            DataType::Decimal => "decimal",
            DataType::Wei => "wei",
            DataType::Date => "date",
            DataType::Time => "time",
        }
    }

    /// Parse dlt's type name.
    pub fn parse(s: &str) -> Option<DataType> {
        Some(match s {
            "text" => DataType::Text,
            "double" => DataType::Double,
            "bool" => DataType::Bool,
            "timestamp" => DataType::Timestamp,
            "bigint" => DataType::Bigint,
            "binary" => DataType::Binary,
            "json" | "complex" => DataType::Json,
            "decimal" => DataType::Decimal,
            "wei" => DataType::Wei,
            "date" => DataType::Date,
            "time" => DataType::Time,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Sort order for `dedup_sort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

/// A column of a table, with dlt's hints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Column {
    /// Normalized column name.
    #[serde(default)]
    pub name: String,
    /// Data type; `None` = incomplete (declared hints only, not materialized).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<DataType>,
    /// Nullability (dlt default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nullable: Option<bool>,
    /// Precision (digits, bits or fractional-second digits depending on the type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<u32>,
    /// Scale of decimals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<u32>,
    /// Timestamp with time zone (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<bool>,
    /// Part of the primary key.
    #[serde(default, skip_serializing_if = "is_false")]
    pub primary_key: bool,
    /// Part of the merge key.
    #[serde(default, skip_serializing_if = "is_false")]
    pub merge_key: bool,
    /// Unique (`Some(false)` is stored as dlt stores it, e.g. on an scd2 row version column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<bool>,
    /// The row key (`_dlt_id`); `Some(false)` as for `unique`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_key: Option<bool>,
    /// Reference to the parent row (`_dlt_parent_id`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub parent_key: bool,
    /// Reference to the root row (`_dlt_root_id`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub root_key: bool,
    /// Partition hint.
    #[serde(default, skip_serializing_if = "is_false")]
    pub partition: bool,
    /// Cluster hint.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cluster: bool,
    /// Sort hint.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sort: bool,
    /// Rows with a true / non-null value here delete their key (merge).
    #[serde(default, skip_serializing_if = "is_false")]
    pub hard_delete: bool,
    /// Column deciding which duplicate survives in-load dedup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_sort: Option<SortOrder>,
    /// Variant column generated by the normalizer.
    #[serde(default, skip_serializing_if = "is_false")]
    pub variant: bool,
    /// Free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Other properties (`x-…` hints).
    #[serde(flatten)]
    pub extra: IndexMap<String, Value>,
}

impl Column {
    /// A nullable column of a type.
    pub fn new(name: impl Into<String>, data_type: DataType) -> Self {
        Column { name: name.into(), data_type: Some(data_type), nullable: Some(true), ..Default::default() }
    }

    /// Set nullability.
    pub fn not_null(mut self) -> Self {
        self.nullable = Some(false);
        self
    }

    /// Whether the column can be materialized (has a type).
    pub fn is_complete(&self) -> bool {
        self.data_type.is_some()
    }

    /// Effective nullability.
    pub fn is_nullable(&self) -> bool {
        self.nullable.unwrap_or(true)
    }

    /// Whether the column is unique.
    pub fn is_unique(&self) -> bool {
        self.unique == Some(true)
    }

    /// Whether the column is the row key.
    pub fn is_row_key(&self) -> bool {
        self.row_key == Some(true)
    }

    /// Merge hints declared for this column into it (declared values win).
    pub fn merge_hints(&mut self, hints: &Column) {
        if hints.data_type.is_some() {
            self.data_type = hints.data_type;
        }
        if hints.nullable.is_some() {
            self.nullable = hints.nullable;
        }
        if hints.precision.is_some() {
            self.precision = hints.precision;
        }
        if hints.scale.is_some() {
            self.scale = hints.scale;
        }
        if hints.timezone.is_some() {
            self.timezone = hints.timezone;
        }
        self.primary_key |= hints.primary_key;
        self.merge_key |= hints.merge_key;
        if hints.unique.is_some() {
            self.unique = hints.unique;
        }
        if hints.row_key.is_some() {
            self.row_key = hints.row_key;
        }
        self.partition |= hints.partition;
        self.cluster |= hints.cluster;
        self.sort |= hints.sort;
        self.hard_delete |= hints.hard_delete;
        if hints.dedup_sort.is_some() {
            self.dedup_sort = hints.dedup_sort;
        }
        if hints.description.is_some() {
            self.description = hints.description.clone();
        }
        for (k, v) in &hints.extra {
            self.extra.insert(k.clone(), v.clone());
        }
    }
}

/// How data reaches a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WriteDisposition {
    /// Add rows.
    #[default]
    Append,
    /// Replace the table (and its nested tables) with the new load.
    Replace,
    /// Merge by keys.
    Merge,
    /// Never loaded (system tables).
    Skip,
}

impl WriteDisposition {
    /// dlt's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            WriteDisposition::Append => "append",
            WriteDisposition::Replace => "replace",
            WriteDisposition::Merge => "merge",
            WriteDisposition::Skip => "skip",
        }
    }
}

/// A table of the schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Table {
    /// Normalized table name.
    #[serde(default)]
    pub name: String,
    /// Columns in table order.
    #[serde(default, with = "columns_map")]
    pub columns: IndexMap<String, Column>,
    /// Write disposition (root tables only; nested tables inherit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_disposition: Option<WriteDisposition>,
    /// Parent table of a nested table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Resource that produced the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Schema contract of the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_contract: Option<Value>,
    /// Preferred job file format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_format: Option<String>,
    /// Table format (delta, iceberg).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_format: Option<String>,
    /// Other properties (`x-merge-strategy`, `x-normalizer`, …).
    #[serde(flatten)]
    pub extra: IndexMap<String, Value>,
}

mod columns_map {
    use super::Column;
    use indexmap::IndexMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(cols: &IndexMap<String, Column>, s: S) -> Result<S::Ok, S::Error> {
        cols.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IndexMap<String, Column>, D::Error> {
        let mut cols: IndexMap<String, Column> = IndexMap::deserialize(d)?;
        for (name, col) in cols.iter_mut() {
            if col.name.is_empty() {
                col.name = name.clone();
            }
        }
        Ok(cols)
    }
}

impl Table {
    /// A new empty table.
    pub fn new(name: impl Into<String>) -> Self {
        Table { name: name.into(), ..Default::default() }
    }

    /// Whether the table has received data (`x-normalizer.seen-data`).
    pub fn seen_data(&self) -> bool {
        self.extra.get("x-normalizer").and_then(|v| v.get("seen-data")).and_then(Value::as_bool).unwrap_or(false)
    }

    /// Mark the table as having received data (and drop `evolve-columns-once`, as dlt).
    pub fn set_seen_data(&mut self) {
        let entry = self.extra.entry("x-normalizer".to_string()).or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(m) = entry {
            m.shift_remove("evolve-columns-once");
            m.insert("seen-data".to_string(), Value::Bool(true));
        }
    }

    /// Mark a new table whose columns contract is not `evolve`: its first data may still add
    /// columns (dlt's `x-normalizer.evolve-columns-once`; this replaces other markers, as dlt).
    pub fn set_evolve_columns_once(&mut self) {
        self.extra.insert("x-normalizer".to_string(), serde_json::json!({"evolve-columns-once": true}));
    }

    /// `x-normalizer.max_nesting`, if set.
    pub fn max_nesting(&self) -> Option<u32> {
        self.extra.get("x-normalizer").and_then(|v| v.get("max_nesting")).and_then(Value::as_u64).map(|v| v as u32)
    }

    /// Set `x-normalizer.max_nesting`.
    pub fn set_max_nesting(&mut self, n: u32) {
        let entry = self.extra.entry("x-normalizer".to_string()).or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(m) = entry {
            m.insert("max_nesting".to_string(), Value::from(n));
        }
    }

    /// `x-merge-strategy`, if set.
    pub fn merge_strategy(&self) -> Option<&str> {
        self.extra.get("x-merge-strategy").and_then(Value::as_str)
    }

    /// Columns that can be materialized.
    pub fn complete_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.values().filter(|c| c.is_complete())
    }

    /// Whether any column can be materialized.
    pub fn has_complete_columns(&self) -> bool {
        self.columns.values().any(Column::is_complete)
    }
}

/// Schema settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Enabled type detections (`iso_timestamp`, …).
    #[serde(default)]
    pub detections: Vec<String>,
    /// Column hints by name pattern.
    #[serde(default)]
    pub default_hints: IndexMap<String, Vec<String>>,
    /// Schema-wide contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_contract: Option<Value>,
    /// Preferred types by column-name pattern.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub preferred_types: IndexMap<String, DataType>,
}

impl Default for Settings {
    fn default() -> Self {
        let mut default_hints = IndexMap::new();
        default_hints.insert(
            "not_null".to_string(),
            [C_DLT_ID, C_DLT_ROOT_ID, C_DLT_PARENT_ID, C_DLT_LIST_IDX, C_DLT_LOAD_ID]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        default_hints.insert("parent_key".to_string(), vec![C_DLT_PARENT_ID.to_string()]);
        default_hints.insert("root_key".to_string(), vec![C_DLT_ROOT_ID.to_string()]);
        default_hints.insert("unique".to_string(), vec![C_DLT_ID.to_string()]);
        default_hints.insert("row_key".to_string(), vec![C_DLT_ID.to_string()]);
        Settings {
            detections: vec!["iso_timestamp".to_string()],
            default_hints,
            schema_contract: None,
            preferred_types: IndexMap::new(),
        }
    }
}

/// A dlt schema: the stored-schema document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    /// Version, bumped when the content hash changes.
    pub version: u64,
    /// base64 SHA3-256 content hash.
    pub version_hash: String,
    /// Engine version of the document format.
    pub engine_version: u64,
    /// Schema name (= source name).
    pub name: String,
    /// Tables in creation order.
    #[serde(with = "tables_map")]
    pub tables: IndexMap<String, Table>,
    /// Settings.
    pub settings: Settings,
    /// Normalizer configuration.
    pub normalizers: Value,
    /// Older hashes, newest first (at most 10).
    #[serde(default)]
    pub previous_hashes: Vec<String>,
    /// Hash of the schema last imported from the import folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_version_hash: Option<String>,
}

mod tables_map {
    use super::Table;
    use indexmap::IndexMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(t: &IndexMap<String, Table>, s: S) -> Result<S::Ok, S::Error> {
        t.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IndexMap<String, Table>, D::Error> {
        let mut t: IndexMap<String, Table> = IndexMap::deserialize(d)?;
        for (name, table) in t.iter_mut() {
            if table.name.is_empty() {
                table.name = name.clone();
            }
        }
        Ok(t)
    }
}

fn system_column(name: &str, dt: DataType, nullable: bool, description: &str) -> Column {
    Column {
        name: name.to_string(),
        data_type: Some(dt),
        nullable: Some(nullable),
        description: Some(description.to_string()),
        ..Default::default()
    }
}

/// A load id column: text of at most 64 characters (dlt's `precision: 64`).
fn load_id_column(name: &str, description: &str) -> Column {
    Column { precision: Some(64), ..system_column(name, DataType::Text, false, description) }
}

/// The `_dlt_version` table definition (columns and descriptions as dlt 1.31 stores them).
pub fn version_table() -> Table {
    let mut t = Table::new(VERSION_TABLE);
    for c in [
        system_column(
            "version",
            DataType::Bigint,
            false,
            "Numeric version of the schema, incremented on each schema change",
        ),
        system_column(
            "engine_version",
            DataType::Bigint,
            false,
            "Version of the dlt schema engine that created this schema",
        ),
        system_column("inserted_at", DataType::Timestamp, false, "Timestamp when this schema version was stored"),
        system_column("schema_name", DataType::Text, false, "Name of the schema"),
        system_column(
            "version_hash",
            DataType::Text,
            false,
            "Unique hash of the schema content, used to detect changes",
        ),
        system_column("schema", DataType::Text, false, "JSON representation of the complete schema definition"),
    ] {
        t.columns.insert(c.name.clone(), c);
    }
    t.write_disposition = Some(WriteDisposition::Skip);
    t.resource = Some(VERSION_TABLE.to_string());
    t.description = Some("Created by DLT. Tracks schema updates".to_string());
    t
}

/// The `_dlt_loads` table definition (columns and descriptions as dlt 1.31 stores them).
pub fn loads_table() -> Table {
    let mut t = Table::new(LOADS_TABLE);
    for c in [
        load_id_column("load_id", "Unique identifier of the load operation"),
        system_column("schema_name", DataType::Text, true, "Name of the schema associated with this load"),
        system_column("status", DataType::Bigint, false, "Status of the load operation (0 = success)"),
        system_column("inserted_at", DataType::Timestamp, false, "Timestamp when the load was completed"),
        system_column("schema_version_hash", DataType::Text, true, "Hash of the schema version used during this load"),
    ] {
        t.columns.insert(c.name.clone(), c);
    }
    t.write_disposition = Some(WriteDisposition::Skip);
    t.resource = Some(LOADS_TABLE.to_string());
    t.description = Some("Created by DLT. Tracks completed loads".to_string());
    t
}

/// The `_dlt_pipeline_state` table as extract adds it to a schema (dlt 1.31: the columns with
/// their descriptions, `file_format: preferred`, no table description; `_dlt_id` is added when
/// the state row is normalized, see [`state_row_id_column`]).
pub fn state_table() -> Table {
    let mut t = Table::new(STATE_TABLE);
    for c in [
        system_column("version", DataType::Bigint, false, "Numeric version of the pipeline state"),
        system_column("engine_version", DataType::Bigint, false, "Version of the dlt state engine"),
        system_column("pipeline_name", DataType::Text, false, "Name of the pipeline this state belongs to"),
        system_column("state", DataType::Text, false, "Compressed JSON representation of the pipeline state"),
        system_column("created_at", DataType::Timestamp, false, "Timestamp when this state was created"),
        system_column("version_hash", DataType::Text, true, "Hash of the state content, used to detect changes"),
        load_id_column(C_DLT_LOAD_ID, "Load identifier linking this row to its load operation"),
    ] {
        t.columns.insert(c.name.clone(), c);
    }
    t.write_disposition = Some(WriteDisposition::Append);
    t.resource = Some(STATE_TABLE.to_string());
    t.file_format = Some("preferred".to_string());
    t
}

/// The `_dlt_id` column the normalizer adds to `_dlt_pipeline_state` with the state row.
pub fn state_row_id_column() -> Column {
    let mut id = Column::new(C_DLT_ID, DataType::Text).not_null();
    id.unique = Some(true);
    id.row_key = Some(true);
    id
}

/// The `_dlt_pipeline_state` table once a state row was normalized into it.
pub fn state_table_with_row_id() -> Table {
    let mut t = state_table();
    t.columns.insert(C_DLT_ID.to_string(), state_row_id_column());
    t
}

/// Convert JSON to YAML values (numbers keep their exact value).
pub fn json_to_yaml(v: &Value) -> serde_yaml::Value {
    match v {
        Value::Null => serde_yaml::Value::Null,
        Value::Bool(b) => serde_yaml::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_yaml::Value::Number(i.into())
            } else if let Some(u) = n.as_u64() {
                serde_yaml::Value::Number(u.into())
            } else {
                serde_yaml::Value::Number(n.as_f64().unwrap_or(f64::NAN).into())
            }
        }
        Value::String(s) => serde_yaml::Value::String(s.clone()),
        Value::Array(a) => serde_yaml::Value::Sequence(a.iter().map(json_to_yaml).collect()),
        Value::Object(m) => {
            let mut out = serde_yaml::Mapping::new();
            for (k, v) in m {
                out.insert(serde_yaml::Value::String(k.clone()), json_to_yaml(v));
            }
            serde_yaml::Value::Mapping(out)
        }
    }
}

/// Write `v` as compact JSON with object keys sorted (recursively).
pub fn to_sorted_json(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            v => v.clone(),
        }
    }
    serde_json::to_string(&sort(v)).unwrap_or_default()
}

impl Schema {
    /// A new schema with dlt's default settings and system tables.
    pub fn new(name: impl Into<String>) -> Self {
        let mut tables = IndexMap::new();
        tables.insert(VERSION_TABLE.to_string(), version_table());
        tables.insert(LOADS_TABLE.to_string(), loads_table());
        let mut s = Schema {
            version: 0,
            version_hash: String::new(),
            engine_version: SCHEMA_ENGINE_VERSION,
            name: name.into(),
            tables,
            settings: Settings::default(),
            normalizers: serde_json::json!({
                "names": "snake_case",
                "json": {"module": "dlt.common.normalizers.json.relational"}
            }),
            previous_hashes: vec![],
            imported_version_hash: None,
        };
        s.version_hash = s.compute_hash();
        s
    }

    /// Whether the schema was never stored (its first [`Schema::bump_version`] makes version 1).
    pub fn is_new(&self) -> bool {
        self.version == 0
    }

    /// The content hash as dlt computes it.
    pub fn compute_hash(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            for k in ["version", "version_hash", "imported_version_hash", "previous_hashes"] {
                m.shift_remove(k);
            }
        }
        let mut h = sha3::Sha3_256::new();
        h.update(to_sorted_json(&v).as_bytes());
        let mut names: Vec<&String> = self.tables.keys().collect();
        names.sort();
        for n in names {
            h.update(n.as_bytes());
            for c in self.tables[n].columns.keys() {
                h.update(c.as_bytes());
            }
        }
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    }

    /// Recompute the hash; bump the version if the content changed. Returns whether it did.
    ///
    /// As dlt: a new schema ([`Schema::new`], version 0) becomes version 1 on its first bump
    /// (whatever it holds by then, with no history); after that every change of content bumps
    /// the version and puts the old hash first in `previous_hashes` (a hash already there is
    /// not stored twice; at most 10 are kept).
    pub fn bump_version(&mut self) -> bool {
        let h = self.compute_hash();
        if self.is_new() {
            self.version_hash = h;
            self.version = 1;
            return true;
        }
        if h == self.version_hash {
            return false;
        }
        let old = std::mem::replace(&mut self.version_hash, h);
        if !old.is_empty() {
            self.link_previous_hash(old);
        }
        self.version += 1;
        true
    }

    /// Put `hash` first in `previous_hashes` (unless it is there already; at most 10 are kept).
    /// dlt does this, besides in [`Schema::bump_version`], when the schema of one extraction
    /// step replaces the one before it (see the pipeline's extract).
    pub fn link_previous_hash(&mut self, hash: String) {
        if !self.previous_hashes.contains(&hash) {
            self.previous_hashes.insert(0, hash);
            self.previous_hashes.truncate(10);
        }
    }

    /// Serialize as the stored JSON document (compact).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Serialize as pretty JSON.
    pub fn to_pretty_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// YAML as dlt's CLI prints it: column `name` keys and default-valued properties omitted.
    pub fn to_pretty_yaml(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(Value::Object(tables)) = v.get_mut("tables") {
            for (_, t) in tables.iter_mut() {
                if let Some(Value::Object(t)) = Some(t) {
                    t.shift_remove("name");
                    if let Some(Value::Object(cols)) = t.get_mut("columns") {
                        for (_, c) in cols.iter_mut() {
                            if let Value::Object(c) = c {
                                c.shift_remove("name");
                                if c.get("nullable") == Some(&Value::Bool(true)) {
                                    c.shift_remove("nullable");
                                }
                            }
                        }
                    }
                }
            }
        }
        serde_yaml::to_string(&json_to_yaml(&v)).unwrap_or_default()
    }

    /// Parse a stored schema document (JSON or YAML).
    pub fn from_str_any(s: &str) -> Result<Schema> {
        if let Ok(schema) = serde_json::from_str::<Schema>(s) {
            return Ok(schema);
        }
        serde_yaml::from_str::<Schema>(s).map_err(|e| Error::Schema(format!("cannot parse schema document: {e}")))
    }

    /// Merge another schema's tables on top of this one: tables and columns this schema lacks are
    /// added (in their order), existing columns keep this schema's definition.
    pub fn merge_missing_from(&mut self, other: &Schema) {
        for (name, t) in &other.tables {
            match self.tables.get_mut(name) {
                None => {
                    self.tables.insert(name.clone(), t.clone());
                }
                Some(mine) => {
                    for (c, col) in &t.columns {
                        if !mine.columns.contains_key(c) {
                            mine.columns.insert(c.clone(), col.clone());
                        }
                    }
                    for (k, v) in &t.extra {
                        mine.extra.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
        }
    }

    /// The root table of `table` (follows `parent`).
    pub fn root_table_name<'a>(&'a self, table: &'a str) -> &'a str {
        let mut cur = table;
        let mut guard = 0;
        while let Some(p) = self.tables.get(cur).and_then(|t| t.parent.as_deref()) {
            cur = p;
            guard += 1;
            if guard > 10_000 {
                break;
            }
        }
        cur
    }

    /// How many parents `table` has (0 for a root table).
    pub fn table_chain_depth(&self, table: &str) -> usize {
        let mut cur = table;
        let mut depth = 0;
        while let Some(p) = self.tables.get(cur).and_then(|t| t.parent.as_deref()) {
            cur = p;
            depth += 1;
            if depth > 10_000 {
                break;
            }
        }
        depth
    }

    /// Root table of `table`.
    pub fn root_table(&self, table: &str) -> Option<&Table> {
        self.tables.get(self.root_table_name(table))
    }

    /// A table and all its nested descendants, parents first.
    pub fn table_chain(&self, root: &str) -> Vec<String> {
        let mut out = vec![root.to_string()];
        let mut i = 0;
        while i < out.len() {
            let cur = out[i].clone();
            for (name, t) in &self.tables {
                if t.parent.as_deref() == Some(cur.as_str()) && !out.contains(name) {
                    out.push(name.clone());
                }
            }
            i += 1;
        }
        out
    }

    /// Effective write disposition of a table (inherited from its root).
    pub fn write_disposition(&self, table: &str) -> WriteDisposition {
        self.root_table(table).and_then(|t| t.write_disposition).unwrap_or_default()
    }

    /// The normalizer's nesting limit (`normalizers.json.config.max_nesting`, set by a source).
    pub fn normalizer_max_nesting(&self) -> Option<u32> {
        self.normalizers.pointer("/json/config/max_nesting").and_then(Value::as_u64).map(|n| n as u32)
    }

    /// Set the normalizer's nesting limit (dlt: a source's `max_table_nesting`).
    pub fn set_normalizer_max_nesting(&mut self, n: u32) {
        let Value::Object(norm) = &mut self.normalizers else { return };
        let json = norm.entry("json").or_insert_with(|| Value::Object(Default::default()));
        let Value::Object(json) = json else { return };
        let config = json.entry("config").or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(config) = config {
            config.insert("max_nesting".into(), Value::from(n));
        }
    }

    /// Whether `table` is one of dlt's own tables (`_dlt_version`, `_dlt_loads`,
    /// `_dlt_pipeline_state`).
    pub fn is_dlt_table(table: &str) -> bool {
        matches!(table, VERSION_TABLE | LOADS_TABLE | STATE_TABLE)
    }

    /// dlt's rule for carrying `_dlt_root_id` into the nested tables of root table `root`: a
    /// merge table whose strategy (default delete-insert) is delete-insert, upsert, insert-only
    /// or cdc, or any chain whose nested tables already have a root key column.
    pub fn requires_root_key(&self, root: &str) -> bool {
        let Some(t) = self.tables.get(root) else { return false };
        let merge = !Self::is_dlt_table(root)
            && t.write_disposition == Some(WriteDisposition::Merge)
            && matches!(
                t.merge_strategy().unwrap_or("delete-insert"),
                "delete-insert" | "upsert" | "insert-only" | "cdc"
            );
        merge
            || self
                .table_chain(root)
                .iter()
                .filter_map(|n| self.tables.get(n))
                .any(|t| t.columns.values().any(|c| c.root_key))
    }

    /// `normalizers.json.config.propagation.tables`, if any.
    fn propagation_tables(&self) -> Option<&serde_json::Map<String, Value>> {
        self.normalizers.pointer("/json/config/propagation/tables").and_then(Value::as_object)
    }

    /// Whether the normalizer propagates the root row id into the nested tables of root table
    /// `root` (an entry in `normalizers.json.config.propagation.tables`).
    pub fn propagates_root_key(&self, root: &str) -> bool {
        self.propagation_tables().is_some_and(|t| t.contains_key(root))
    }

    /// dlt's `extend_table`: after `table` was added or updated, record the root key
    /// propagation of its root table in the normalizer config if [`Schema::requires_root_key`]
    /// (`{<row key column>: "_dlt_root_id"}`). Entries are only ever added here.
    pub fn extend_table(&mut self, table: &str) {
        let root = self.root_table_name(table).to_string();
        if !self.requires_root_key(&root) {
            return;
        }
        let row_key = self.tables[&root]
            .columns
            .values()
            .find(|c| c.is_row_key())
            .map(|c| c.name.clone())
            .unwrap_or_else(|| C_DLT_ID.to_string());
        let Value::Object(norm) = &mut self.normalizers else { return };
        let json = norm.entry("json").or_insert_with(|| Value::Object(Default::default()));
        let Value::Object(json) = json else { return };
        let mut cur = json;
        for key in ["config", "propagation", "tables"] {
            let next = cur.entry(key).or_insert_with(|| Value::Object(Default::default()));
            if !next.is_object() {
                *next = Value::Object(Default::default());
            }
            cur = next.as_object_mut().expect("object");
        }
        let entry = cur.entry(root).or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(m) = entry {
            m.insert(row_key, Value::String(C_DLT_ROOT_ID.to_string()));
        }
    }

    /// What dlt does to the propagation config when extraction starts: the entries of data
    /// tables are dropped, then every table is extended again ([`Schema::extend_table`]) as
    /// the schema stands before this extraction's hints. A root table that stopped needing
    /// the root key (e.g. switched from merge to append) so loses its entry.
    pub fn refresh_root_key_propagation(&mut self) {
        let data_tables: Vec<String> = self.tables.keys().filter(|n| !Self::is_dlt_table(n)).cloned().collect();
        if let Some(Value::Object(tables)) = self.normalizers.pointer_mut("/json/config/propagation/tables") {
            tables.retain(|name, _| !data_tables.contains(name));
        }
        let names: Vec<String> = self.tables.keys().cloned().collect();
        for n in names {
            self.extend_table(&n);
        }
    }

    /// Data tables (not `_dlt_version` / `_dlt_loads`).
    pub fn data_tables(&self) -> impl Iterator<Item = &Table> {
        self.tables.values().filter(|t| t.name != VERSION_TABLE && t.name != LOADS_TABLE)
    }

    /// Tables produced by a resource (root tables whose `resource` is `resource`, and their chains).
    pub fn resource_tables(&self, resource: &str) -> Vec<String> {
        let mut out = vec![];
        for t in self.tables.values() {
            if t.parent.is_none() && t.resource.as_deref() == Some(resource) {
                for n in self.table_chain(&t.name) {
                    if !out.contains(&n) {
                        out.push(n);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_hash() {
        let mut s = Schema::new("src");
        assert!(s.is_new());
        let mut t = Table::new("users");
        t.columns.insert("id".into(), Column::new("id", DataType::Bigint));
        s.tables.insert("users".into(), t);
        // the first stored version is 1, without history
        assert!(s.bump_version());
        assert_eq!((s.version, s.previous_hashes.len()), (1, 0));
        assert!(!s.bump_version());
        let v1 = s.version_hash.clone();
        s.tables["users"].columns.insert("name".into(), Column::new("name", DataType::Text));
        assert!(s.bump_version());
        assert_eq!(s.version, 2);
        assert_eq!(s.previous_hashes, vec![v1.clone()]);
        // a hash already in the history is not stored twice
        let v2 = s.version_hash.clone();
        s.link_previous_hash(v2.clone());
        s.tables["users"].columns.insert("other".into(), Column::new("other", DataType::Text));
        assert!(s.bump_version());
        assert_eq!((s.version, s.previous_hashes.clone()), (3, vec![v2, v1]));
        let json = s.to_json();
        let back = Schema::from_str_any(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.compute_hash(), s.version_hash);
        assert_eq!(s.version_hash.len(), 44);
        // column order is part of the hash
        let mut s2 = s.clone();
        s2.tables["users"].columns.insert("a".into(), Column::new("a", DataType::Text));
        let mut s3 = s.clone();
        s3.tables["users"].columns.insert("a".into(), Column::new("a", DataType::Text));
        s3.tables["users"].columns.move_index(1, 0);
        assert_ne!(s2.compute_hash(), s3.compute_hash());
    }

    #[test]
    fn yaml_roundtrip() {
        let s = Schema::new("src");
        let y = s.to_pretty_yaml();
        assert!(y.contains("_dlt_loads"));
        let back = Schema::from_str_any(&y).unwrap();
        assert_eq!(back.tables.len(), 2);
        assert_eq!(back.tables["_dlt_loads"].columns["load_id"].name, "load_id");
    }

    #[test]
    fn chains() {
        let mut s = Schema::new("x");
        s.tables.insert("a".into(), Table::new("a"));
        let mut c = Table::new("a__b");
        c.parent = Some("a".into());
        s.tables.insert("a__b".into(), c);
        let mut g = Table::new("a__b__c");
        g.parent = Some("a__b".into());
        s.tables.insert("a__b__c".into(), g);
        assert_eq!(s.table_chain("a"), vec!["a", "a__b", "a__b__c"]);
        assert_eq!(s.root_table_name("a__b__c"), "a");
    }
}
