//! Sources and resources: named streams of items with table hints.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::schema::{Column, Schema, WriteDisposition};

/// One item yielded by a resource.
#[derive(Debug, Clone)]
pub enum Item {
    /// A JSON value (objects become rows; other values are wrapped as `{"value": …}`).
    Json(Value),
    /// An Arrow batch, passed through without per-row work.
    Arrow(RecordBatch),
    /// One JSON document already serialized by its producer, which checked that it is valid
    /// JSON (e.g. a JSONL line): extract copies it without building a value tree.
    RawJson(String),
    /// A block of JSON lines already checked by its producer: `lines` documents, one per line,
    /// each line ending in `\n`, no blank lines, no surrounding whitespace, and no line that is a
    /// JSON array (a list of items goes as [`Item::RawJson`]). Extract copies the block as it is;
    /// wherever items are examined one by one (processing steps, dynamic table names, incremental
    /// cursors) it is split into one [`Item::RawJson`] per line first ([`split_raw_lines`]).
    RawJsonLines {
        /// The lines, each ending in `\n`.
        text: String,
        /// How many lines `text` holds.
        lines: usize,
    },
}

/// The lines of an [`Item::RawJsonLines`] block, one [`Item::RawJson`] each.
#[derive(Debug)]
pub struct RawLines {
    text: String,
    pos: usize,
}

impl RawLines {
    /// Iterate over the lines of `text`.
    pub fn new(text: String) -> Self {
        RawLines { text, pos: 0 }
    }
}

impl Iterator for RawLines {
    type Item = Result<Item>;
    fn next(&mut self) -> Option<Result<Item>> {
        let rest = self.text.get(self.pos..).filter(|r| !r.is_empty())?;
        let end = rest.find('\n').unwrap_or(rest.len());
        let line = rest[..end].to_string();
        self.pos += end + 1;
        Some(Ok(Item::RawJson(line)))
    }
}

/// One item, or the lines of a block.
enum RowsOf {
    One(Option<Result<Item>>),
    Lines(RawLines),
}

impl Iterator for RowsOf {
    type Item = Result<Item>;
    fn next(&mut self) -> Option<Result<Item>> {
        match self {
            RowsOf::One(i) => i.take(),
            RowsOf::Lines(l) => l.next(),
        }
    }
}

/// Split every [`Item::RawJsonLines`] block into one [`Item::RawJson`] per line; other items
/// (and errors) pass unchanged, in order.
pub fn split_raw_lines(it: ItemIter) -> ItemIter {
    Box::new(it.flat_map(|r| match r {
        Ok(Item::RawJsonLines { text, .. }) => RowsOf::Lines(RawLines::new(text)),
        other => RowsOf::One(Some(other)),
    }))
}

impl From<Value> for Item {
    fn from(v: Value) -> Self {
        Item::Json(v)
    }
}

impl From<RecordBatch> for Item {
    fn from(b: RecordBatch) -> Self {
        Item::Arrow(b)
    }
}

/// Computes a table name from a JSON item.
pub type TableNameFn = Arc<dyn Fn(&Value) -> Option<String> + Send + Sync>;

/// The table an item goes to.
#[derive(Clone)]
pub enum TableName {
    /// Fixed name (before normalization).
    Static(String),
    /// Computed from each item; `None` falls back to the resource name.
    Dynamic(TableNameFn),
}

impl std::fmt::Debug for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableName::Static(s) => write!(f, "Static({s:?})"),
            TableName::Dynamic(_) => f.write_str("Dynamic(..)"),
        }
    }
}

impl TableName {
    /// Take the table name from a top-level field of each item.
    pub fn from_field(field: impl Into<String>) -> Self {
        let field = field.into();
        TableName::Dynamic(Arc::new(move |v: &Value| match v.get(&field) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        }))
    }
}

/// Merge strategies of the `merge` disposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergeStrategy {
    /// Delete rows with matching keys, insert the new ones (default).
    DeleteInsert,
    /// MERGE by primary key.
    Upsert,
    /// Slowly changing dimension type 2.
    Scd2,
    /// Insert rows whose key is not present.
    InsertOnly,
}

impl MergeStrategy {
    /// dlt's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            MergeStrategy::DeleteInsert => "delete-insert",
            MergeStrategy::Upsert => "upsert",
            MergeStrategy::Scd2 => "scd2",
            MergeStrategy::InsertOnly => "insert-only",
        }
    }
}

/// A write disposition with its strategy and options, as dlt's dict form
/// `{"disposition": "merge", "strategy": "scd2", …}` or the plain string.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct WriteDispositionConfig {
    /// append / replace / merge / skip.
    pub disposition: WriteDisposition,
    /// Merge strategy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<MergeStrategy>,
    /// Strategy options (`deduplicated`, `validity_column_names`, …).
    #[serde(flatten)]
    pub options: serde_json::Map<String, Value>,
}

impl<'de> Deserialize<'de> for WriteDispositionConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        const DISPOSITIONS: &str = "append, replace, merge or skip";
        const STRATEGIES: &str = "delete-insert, upsert, scd2 or insert-only";
        let disposition = |s: &str| match s {
            "append" => Ok(WriteDisposition::Append),
            "replace" => Ok(WriteDisposition::Replace),
            "merge" => Ok(WriteDisposition::Merge),
            "skip" => Ok(WriteDisposition::Skip),
            s if ["delete-insert", "upsert", "scd2", "insert-only"].contains(&s) => Err(D::Error::custom(format!(
                "write_disposition `{s}` is a merge strategy: write {{ disposition = \"merge\", strategy = \"{s}\" }}"
            ))),
            s => Err(D::Error::custom(format!("unknown write_disposition `{s}`: use {DISPOSITIONS}"))),
        };
        match Value::deserialize(d)? {
            Value::String(s) => Ok(WriteDispositionConfig { disposition: disposition(&s)?, ..Default::default() }),
            Value::Object(mut m) => {
                let disp = match m.remove("disposition") {
                    Some(Value::String(s)) => disposition(&s)?,
                    Some(other) => {
                        return Err(D::Error::custom(format!(
                            "write_disposition.disposition must be a string ({DISPOSITIONS}), not {other}"
                        )));
                    }
                    None => {
                        return Err(D::Error::custom(format!(
                            "write_disposition needs `disposition` ({DISPOSITIONS})"
                        )));
                    }
                };
                let strategy = match m.remove("strategy") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(match s.as_str() {
                        "delete-insert" => MergeStrategy::DeleteInsert,
                        "upsert" => MergeStrategy::Upsert,
                        "scd2" => MergeStrategy::Scd2,
                        "insert-only" => MergeStrategy::InsertOnly,
                        other => {
                            return Err(D::Error::custom(format!(
                                "unknown merge strategy `{other}`: use {STRATEGIES}"
                            )));
                        }
                    }),
                    Some(other) => {
                        return Err(D::Error::custom(format!(
                            "write_disposition.strategy must be a string ({STRATEGIES}), not {other}"
                        )));
                    }
                };
                Ok(WriteDispositionConfig { disposition: disp, strategy, options: m })
            }
            other => Err(D::Error::custom(format!(
                "write_disposition is a string ({DISPOSITIONS}) or a table with `disposition` and `strategy`, not {other}"
            ))),
        }
    }
}

impl From<WriteDisposition> for WriteDispositionConfig {
    fn from(disposition: WriteDisposition) -> Self {
        WriteDispositionConfig { disposition, ..Default::default() }
    }
}

/// A key hint: one column or several.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(transparent)]
pub struct KeyHint(pub Vec<String>);

impl<'de> Deserialize<'de> for KeyHint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let bad = |v: &Value| D::Error::custom(format!("a key is a column name or a list of column names, not {v}"));
        Ok(KeyHint(match Value::deserialize(d)? {
            Value::String(s) => vec![s],
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(bad(&other)),
                })
                .collect::<std::result::Result<_, _>>()?,
            other => return Err(bad(&other)),
        }))
    }
}

/// Table hints of a resource (dlt's `@dlt.resource(...)` arguments).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceHints {
    /// Table name (default: the resource name).
    #[serde(default, deserialize_with = "de_table_name")]
    pub table_name: Option<TableName>,
    /// Take the table name from this top-level field of each item.
    #[serde(default, skip)]
    pub table_name_from: Option<String>,
    /// Write disposition.
    #[serde(default)]
    pub write_disposition: Option<WriteDispositionConfig>,
    /// Primary key columns.
    #[serde(default)]
    pub primary_key: Option<KeyHint>,
    /// Merge key columns.
    #[serde(default)]
    pub merge_key: Option<KeyHint>,
    /// Declared columns (dlt column schemas), in order.
    #[serde(default)]
    pub columns: IndexMap<String, Column>,
    /// Maximum nesting of child tables.
    #[serde(default)]
    pub max_table_nesting: Option<u32>,
    /// Schema contract (`"evolve"`, … or a dict per entity).
    #[serde(default)]
    pub schema_contract: Option<Value>,
    /// Preferred job file format.
    #[serde(default)]
    pub file_format: Option<String>,
    /// Table format on destinations that have several (`delta` on the filesystem destination).
    #[serde(default)]
    pub table_format: Option<String>,
    /// Incremental cursor.
    #[serde(default)]
    pub incremental: Option<crate::incremental::IncrementalConfig>,
}

fn de_table_name<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<TableName>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(TableName::Static))
}

impl ResourceHints {
    /// Parse hints from a JSON object in dlt's `dlt.resource(**hints)` shape
    /// (also accepts `table_name_from`).
    pub fn from_json(v: &Value) -> Result<ResourceHints> {
        let mut v = v.clone();
        let from = v.as_object_mut().and_then(|m| m.remove("table_name_from"));
        let mut hints: ResourceHints =
            serde_json::from_value(v).map_err(|e| Error::Config(format!("invalid resource hints: {e}")))?;
        if let Some(Value::String(f)) = from {
            hints.table_name = Some(TableName::from_field(f));
        }
        Ok(hints)
    }

    /// Effective write disposition.
    pub fn disposition(&self) -> WriteDisposition {
        self.write_disposition.as_ref().map(|w| w.disposition).unwrap_or_default()
    }
}

/// The iterator type of a resource.
pub type ItemIter = Box<dyn Iterator<Item = Result<Item>> + Send>;

/// A named stream of items with hints.
pub struct Resource {
    /// Resource name.
    pub name: String,
    /// Table hints.
    pub hints: ResourceHints,
    items: Items,
}

/// What a deferred resource gets when extraction starts.
#[derive(Debug, Clone)]
pub struct ResourceContext {
    /// The incremental window's start (stored last value, else the initial value).
    pub start_value: Option<Value>,
    /// The window's end, if bounded.
    pub end_value: Option<Value>,
    state: std::sync::Arc<std::sync::Mutex<serde_json::Map<String, Value>>>,
}

impl ResourceContext {
    /// A context (used by the pipeline).
    pub fn new(
        start_value: Option<Value>,
        end_value: Option<Value>,
        state: std::sync::Arc<std::sync::Mutex<serde_json::Map<String, Value>>>,
    ) -> Self {
        ResourceContext { start_value, end_value, state }
    }

    /// The resource's own state (`sources.<source>.resources.<resource>`): read it to resume,
    /// write to it while producing items; it is committed with the load, like the cursor.
    pub fn state(&self) -> std::sync::MutexGuard<'_, serde_json::Map<String, Value>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Builds a resource's items once its incremental window and state are known.
pub type DeferredItems = Box<dyn FnOnce(ResourceContext) -> ItemIter + Send>;

impl Iterator for Items {
    type Item = Result<Item>;
    /// Iterate directly (a deferred resource is built with an empty context: no window, no state).
    fn next(&mut self) -> Option<Result<Item>> {
        if matches!(self, Items::Deferred(_)) {
            let Items::Deferred(build) = std::mem::replace(self, Items::Ready(Box::new(std::iter::empty()))) else {
                unreachable!("checked")
            };
            *self = Items::Ready(build(ResourceContext::new(None, None, Default::default())));
        }
        match self {
            Items::Ready(it) => it.next(),
            Items::Deferred(_) => None,
        }
    }
}

/// The items of a resource: ready, or built at extract time from a [`ResourceContext`].
pub enum Items {
    /// An iterator.
    Ready(ItemIter),
    /// A builder called with the context.
    Deferred(DeferredItems),
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource").field("name", &self.name).field("hints", &self.hints).finish()
    }
}

impl Resource {
    /// A resource over any iterator of items.
    pub fn new<I, T>(name: impl Into<String>, items: I) -> Self
    where
        I: IntoIterator<Item = Result<T>>,
        I::IntoIter: Send + 'static,
        T: Into<Item>,
    {
        Resource {
            name: name.into(),
            hints: ResourceHints::default(),
            items: Items::Ready(Box::new(items.into_iter().map(|r| r.map(Into::into)))),
        }
    }

    /// A resource over infallible JSON values.
    pub fn from_values<I>(name: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = Value>,
        I::IntoIter: Send + 'static,
    {
        Resource::new(name, values.into_iter().map(Ok::<Value, Error>))
    }

    /// Replace the hints.
    pub fn with_hints(mut self, hints: ResourceHints) -> Self {
        self.hints = hints;
        self
    }

    /// Set a static table name.
    pub fn table_name(mut self, name: impl Into<String>) -> Self {
        self.hints.table_name = Some(TableName::Static(name.into()));
        self
    }

    /// Set the write disposition.
    pub fn write_disposition(mut self, wd: impl Into<WriteDispositionConfig>) -> Self {
        self.hints.write_disposition = Some(wd.into());
        self
    }

    /// Set the primary key.
    pub fn primary_key<S: Into<String>>(mut self, cols: impl IntoIterator<Item = S>) -> Self {
        self.hints.primary_key = Some(KeyHint(cols.into_iter().map(Into::into).collect()));
        self
    }

    /// Declare a column.
    pub fn column(mut self, col: Column) -> Self {
        self.hints.columns.insert(col.name.clone(), col);
        self
    }

    /// Set `max_table_nesting`.
    pub fn max_table_nesting(mut self, n: u32) -> Self {
        self.hints.max_table_nesting = Some(n);
        self
    }

    /// Take the item iterator out (used by extract).
    pub fn into_parts(self) -> (String, ResourceHints, Items) {
        (self.name, self.hints, self.items)
    }

    /// A resource whose items are built when extraction starts, from its incremental window and
    /// its own state — how an API or database resource asks only for what is new:
    ///
    /// ```
    /// # use dlt_core::resource::{Resource, ResourceHints};
    /// # use serde_json::json;
    /// let r = Resource::deferred("events", |ctx| {
    ///     let since = ctx.start_value.clone().unwrap_or(json!(0)).as_i64().unwrap_or(0);
    ///     ctx.state().insert("last_request_since".into(), json!(since));
    ///     (since..since + 3).map(|i| Ok::<_, dlt_core::Error>(json!({"id": i})))
    /// });
    /// ```
    pub fn deferred<F, I, T>(name: impl Into<String>, build: F) -> Self
    where
        F: FnOnce(ResourceContext) -> I + Send + 'static,
        I: IntoIterator<Item = Result<T>>,
        I::IntoIter: Send + 'static,
        T: Into<Item>,
    {
        Resource {
            name: name.into(),
            hints: ResourceHints::default(),
            items: Items::Deferred(Box::new(move |ctx| Box::new(build(ctx).into_iter().map(|r| r.map(Into::into))))),
        }
    }

    /// Set an incremental cursor.
    pub fn incremental(mut self, cfg: crate::incremental::IncrementalConfig) -> Self {
        self.hints.incremental = Some(cfg);
        self
    }
    /// A processing step (dlt's `add_map`): every JSON item goes through `f` before extraction.
    /// Arrow batches pass unchanged.
    pub fn add_map<F>(self, f: F) -> Self
    where
        F: Fn(Value) -> Value + Send + Sync + 'static,
    {
        self.add_yield_map(move |v| vec![f(v)])
    }

    /// A processing step (dlt's `add_filter`): JSON items for which `keep` is false are dropped.
    /// Arrow batches pass unchanged.
    pub fn add_filter<F>(self, keep: F) -> Self
    where
        F: Fn(&Value) -> bool + Send + Sync + 'static,
    {
        self.add_yield_map(move |v| if keep(&v) { vec![v] } else { vec![] })
    }

    /// A processing step (dlt's `add_yield_map`): each JSON item becomes zero or more items.
    /// Steps run in the order they are added; Arrow batches pass unchanged.
    pub fn add_yield_map<F>(mut self, f: F) -> Self
    where
        F: Fn(Value) -> Vec<Value> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let step = move |it: ItemIter| -> ItemIter {
            let f = f.clone();
            Box::new(split_raw_lines(it).flat_map(move |r| -> Vec<Result<Item>> {
                let v = match r {
                    Ok(Item::Json(v)) => v,
                    Ok(Item::RawJson(s)) => match serde_json::from_str(&s) {
                        Ok(v) => v,
                        Err(e) => return vec![Err(e.into())],
                    },
                    other => return vec![other],
                };
                f(v).into_iter().map(|v| Ok(Item::Json(v))).collect()
            }))
        };
        self.items = match self.items {
            Items::Ready(it) => Items::Ready(step(it)),
            Items::Deferred(build) => Items::Deferred(Box::new(move |ctx| step(build(ctx)))),
        };
        self
    }
}

/// A named group of resources; owns the schema its tables go to.
#[derive(Debug)]
pub struct Source {
    /// Source (and schema) name.
    pub name: String,
    /// Resources, extracted in order.
    pub resources: Vec<Resource>,
    /// A schema to start from (e.g. imported from YAML); otherwise the pipeline's.
    pub schema: Option<Schema>,
    /// Source-level `max_table_nesting`.
    pub max_table_nesting: Option<u32>,
    /// Source-level schema contract.
    pub schema_contract: Option<Value>,
}

impl Source {
    /// A source from resources.
    pub fn new(name: impl Into<String>, resources: Vec<Resource>) -> Self {
        Source { name: name.into(), resources, schema: None, max_table_nesting: None, schema_contract: None }
    }

    /// Replace a resource by what `f` makes of it (e.g. to add processing steps to one of a
    /// declarative source's resources); an error names the resources there are.
    pub fn with_resource(mut self, name: &str, f: impl FnOnce(Resource) -> Resource) -> Result<Self> {
        let Some(i) = self.resources.iter().position(|r| r.name == name) else {
            let names: Vec<&str> = self.resources.iter().map(|r| r.name.as_str()).collect();
            return Err(Error::Config(format!(
                "source `{}` has no resource `{name}` (it has: {})",
                self.name,
                names.join(", ")
            )));
        };
        let r = self.resources.remove(i);
        self.resources.insert(i, f(r));
        Ok(self)
    }
}

/// Anything a pipeline can run: a source, one resource, or several resources.
pub trait IntoSource {
    /// Convert, naming the source after the pipeline when it has no name of its own.
    fn into_source(self, pipeline_name: &str) -> Source;
}

impl IntoSource for Source {
    fn into_source(self, _: &str) -> Source {
        self
    }
}

impl IntoSource for Resource {
    fn into_source(self, pipeline_name: &str) -> Source {
        Source::new(pipeline_name, vec![self])
    }
}

impl IntoSource for Vec<Resource> {
    fn into_source(self, pipeline_name: &str) -> Source {
        Source::new(pipeline_name, self)
    }
}

#[cfg(test)]
mod step_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn processing_steps_run_in_order() {
        let r = Resource::from_values("r", (0..6).map(|i| json!({"id": i})))
            .add_filter(|v| v["id"].as_i64().unwrap() % 2 == 0)
            .add_map(|mut v| {
                v["double"] = json!(v["id"].as_i64().unwrap() * 2);
                v
            })
            .add_yield_map(|v| vec![v.clone(), v]);
        let (_, _, items) = r.into_parts();
        let out: Vec<Value> = items
            .map(|i| match i.unwrap() {
                Item::Json(v) => v,
                _ => panic!("json expected"),
            })
            .collect();
        let ids: Vec<i64> = out.iter().map(|v| v["double"].as_i64().unwrap()).collect();
        assert_eq!(ids, [0, 0, 4, 4, 8, 8]);
        // deferred resources get the steps too, and an unknown resource name is an error
        let d =
            Resource::deferred("d", |_| (0..3).map(|i| Ok::<_, Error>(json!({"id": i})))).add_filter(|v| v["id"] != 1);
        let src = Source::new("s", vec![d]).with_resource("d", |r| r.add_map(|v| json!({"x": v["id"]}))).unwrap();
        let (_, _, items) = src.resources.into_iter().next().unwrap().into_parts();
        let xs: Vec<Value> = items
            .map(|i| match i.unwrap() {
                Item::Json(v) => v["x"].clone(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(xs, [json!(0), json!(2)]);
        let err = Source::new("s", vec![]).with_resource("nope", |r| r).unwrap_err();
        assert!(err.to_string().contains("no resource `nope`"), "{err}");
    }
}
