//! The relational JSON normalizer: JSON items → per-table Arrow batches (parquet job files),
//! with dlt's flattening, child tables, naming, type inference, coercion and variant columns.
//! Arrow items pass through with normalized column names and no per-row work.
#![warn(missing_docs)]

mod arrow_items;
mod buffers;
mod coerce;
mod fast;
mod tape;
pub mod values;

use rustc_hash::FxHashMap as HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use dlt_core::contract::{ContractMode, SchemaContract, violation};
use dlt_core::destination::{FileFormat, JobFile};
use dlt_core::error::{Error, IoContext, Result};
use dlt_core::ids::{DLT_ID_LENGTH_BYTES, child_row_id, digest_b64, random_row_id};
use dlt_core::naming::NamingConvention;
use dlt_core::normalizer::{NormalizeRequest, NormalizeResult, Normalizer};
use dlt_core::schema::{
    C_DLT_ID, C_DLT_LIST_IDX, C_DLT_LOAD_ID, C_DLT_PARENT_ID, C_DLT_ROOT_ID, Column, DataType, Schema, Table,
    to_sorted_json,
};
use serde_json::{Map, Value};

pub use buffers::{BUFFER_ROWS, Cell, arrow_type};
use buffers::{JobWriter, TableBuffer};

/// Items parsed per chunk handed to the normalizing thread.
const PARSE_CHUNK: usize = 512;

/// Default `max_table_nesting` (dlt: 1000, i.e. unlimited).
pub const DEFAULT_MAX_NESTING: u32 = 1000;

/// dlt's relational normalizer.
#[derive(Debug, Default, Clone)]
pub struct RelationalNormalizer;

impl Normalizer for RelationalNormalizer {
    fn normalize(&self, req: NormalizeRequest<'_>) -> Result<NormalizeResult> {
        let convention = req.schema.normalizers.get("names").and_then(|v| v.as_str()).unwrap_or("snake_case");
        let naming = req.capabilities.naming_convention(convention).ok_or_else(|| {
            Error::Schema(format!("schema {} uses an unknown naming convention `{convention}`", req.schema.name))
        })?;
        let add_load_id = req
            .config
            .get(&["normalize", "parquet_normalizer"], "add_dlt_load_id")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let add_row_id = req
            .config
            .get(&["normalize", "parquet_normalizer"], "add_dlt_id")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        // the tape fast path for JSON lines (`normalize.fast_path = false` turns it off)
        let fast_path = req.config.get(&["normalize"], "fast_path").and_then(|v| v.as_bool()).unwrap_or(true);
        let mut run = Run {
            fast_path,
            fast_cache: Default::default(),
            schema: req.schema,
            names: Names::new(naming.clone()),
            naming,
            load_id: req.load_id,
            out_dir: req.output_dir,
            buffers: HashMap::default(),
            new_tables: Default::default(),
            filtered: Default::default(),
            collisions: Default::default(),
            contracts: HashMap::default(),
            table_meta: HashMap::default(),
            cells: Vec::with_capacity(64),
            items: 0,
            writer: JobWriter::start(),
            pre: None,
            json_cols: HashMap::default(),
        };
        let mut arrow_counts: indexmap::IndexMap<String, u64> = indexmap::IndexMap::new();
        for f in req.files {
            match f.format {
                FileFormat::Jsonl => run.normalize_jsonl(&f.path, &f.table, req.on_progress)?,
                FileFormat::Parquet => {
                    let n = arrow_items::normalize_parquet(
                        &f.path,
                        &f.table,
                        run.schema,
                        run.naming.as_ref(),
                        req.output_dir,
                        arrow_items::DltColumns {
                            load_id: if add_load_id { Some(req.load_id) } else { None },
                            row_id: add_row_id,
                        },
                    )?;
                    *arrow_counts.entry(f.table.clone()).or_default() += n;
                }
                FileFormat::Csv => {
                    return Err(Error::Package(format!("unexpected extracted file format: {}", f.path.display())));
                }
            }
        }
        let mut row_counts = indexmap::IndexMap::new();
        let mut buffers: Vec<(Arc<str>, TableBuffer)> = run.buffers.drain().collect();
        buffers.sort_by(|a, b| a.0.cmp(&b.0));
        let mut counted = Vec::with_capacity(buffers.len());
        for (t, b) in buffers {
            counted.push((t, b.finish()?));
        }
        run.writer.finish()?;
        for (t, n) in counted {
            if n > 0 {
                row_counts.insert(t.to_string(), n);
                if let Some(tbl) = run.schema.tables.get_mut(t.as_ref()) {
                    tbl.set_seen_data();
                }
            }
        }
        for (t, n) in arrow_counts {
            if n > 0 {
                *row_counts.entry(t.clone()).or_default() += n;
                if let Some(tbl) = run.schema.tables.get_mut(&t) {
                    tbl.set_seen_data();
                }
            }
        }
        Ok(NormalizeResult { row_counts })
    }
}

/// Per-root-table settings derived from the schema once.
#[derive(Default)]
struct TableMeta {
    max_nesting: u32,
    propagate_root: bool,
    id_mode: IdMode,
    primary_key: Vec<String>,
}

#[derive(Default, Clone, Copy, PartialEq)]
enum IdMode {
    #[default]
    Random,
    KeyHash,
    RowHash,
}

/// An unshortened path and the (possibly shortened) identifier made from it.
type PathName = (Arc<str>, Arc<str>);

/// Normalized names, cached: keys seen once are never normalized again.
struct Names {
    naming: Arc<dyn NamingConvention>,
    /// prefix (unshortened path, "" at the top) -> raw key -> (unshortened path, column name)
    nested: HashMap<Arc<str>, HashMap<String, (PathName, u32)>>,
    /// table (unshortened path) -> nested list path -> (child unshortened path, child table name)
    tables: HashMap<Arc<str>, HashMap<Arc<str>, PathName>>,
    /// Column names made so far.
    produced: rustc_hash::FxHashSet<Arc<str>>,
    /// Column names produced by more than one key path (keys colliding after normalization):
    /// only these need a duplicate check within a row.
    ambiguous: rustc_hash::FxHashSet<Arc<str>>,
    /// (prefix, key) pairs seen.
    key_count: u32,
    empty: Arc<str>,
}

impl Names {
    fn new(naming: Arc<dyn NamingConvention>) -> Self {
        Names {
            naming,
            nested: HashMap::default(),
            tables: HashMap::default(),
            produced: Default::default(),
            ambiguous: Default::default(),
            key_count: 0,
            empty: Arc::from(""),
        }
    }

    fn key(&mut self, prefix: &Arc<str>, k: &str) -> (Arc<str>, Arc<str>) {
        self.key_id(prefix, k).0
    }

    /// [`key`](Self::key) and a number unique to the (prefix, key) pair.
    fn key_id(&mut self, prefix: &Arc<str>, k: &str) -> (PathName, u32) {
        if let Some(v) = self.nested.get(prefix.as_ref()).and_then(|m| m.get(k)) {
            return v.clone();
        }
        let nk = self.naming.normalize_path(k);
        let v: (Arc<str>, Arc<str>) = if prefix.is_empty() {
            let a: Arc<str> = Arc::from(nk);
            (a.clone(), a)
        } else {
            let full = format!("{prefix}{}{nk}", dlt_core::naming::PATH_SEPARATOR);
            let short = self.naming.make_path(&[prefix.as_ref(), &nk]);
            (Arc::from(full), Arc::from(short))
        };
        // a (prefix, key) pair is normalized once: a name made again comes from another key
        if !self.produced.insert(v.1.clone()) {
            self.ambiguous.insert(v.1.clone());
        }
        self.key_count += 1;
        let entry = (v, self.key_count);
        self.nested.entry(prefix.clone()).or_default().insert(k.to_string(), entry.clone());
        entry
    }

    fn child_table(&mut self, table_path: &Arc<str>, list_path: &Arc<str>) -> (Arc<str>, Arc<str>) {
        if let Some(v) = self.tables.get(table_path.as_ref()).and_then(|m| m.get(list_path.as_ref())) {
            return v.clone();
        }
        let full = format!("{table_path}{}{list_path}", dlt_core::naming::PATH_SEPARATOR);
        let short = self.naming.make_table_path(&[table_path.as_ref(), list_path.as_ref()]);
        let v: (Arc<str>, Arc<str>) = (Arc::from(full), Arc::from(short));
        self.tables.entry(table_path.clone()).or_default().insert(list_path.clone(), v.clone());
        v
    }
}

struct Run<'a> {
    /// Whether JSON lines take the tape fast path.
    fast_path: bool,
    /// What the fast path knows of the tables it writes.
    fast_cache: fast::FastCache,
    schema: &'a mut Schema,
    /// Tables that had no materialized columns when this package first touched them.
    new_tables: rustc_hash::FxHashSet<Arc<str>>,
    /// Tables whose rows a contract discards (with their nested tables).
    filtered: rustc_hash::FxHashSet<Arc<str>>,
    /// (table, column) pairs already reported as colliding keys.
    collisions: rustc_hash::FxHashSet<(Arc<str>, Arc<str>)>,
    /// Contract per table, resolved once.
    contracts: HashMap<Arc<str>, SchemaContract>,
    naming: Arc<dyn NamingConvention>,
    names: Names,
    load_id: &'a str,
    out_dir: &'a Path,
    buffers: HashMap<Arc<str>, TableBuffer>,
    table_meta: HashMap<String, TableMeta>,
    /// A row's cells; kept empty between rows so its allocation is reused.
    cells: Vec<(usize, Cell<'static>)>,
    items: u64,
    writer: JobWriter,
    /// Row ids the parsing thread made for the current item.
    pre: Option<ItemIds>,
    /// Columns of type json per table (nested values there are not flattened), cached.
    json_cols: HashMap<Arc<str>, rustc_hash::FxHashSet<String>>,
}

/// An empty vector of cells of any lifetime, reusing `v`'s allocation.
fn recycle<'a, 'b>(mut v: Vec<(usize, Cell<'a>)>) -> Vec<(usize, Cell<'b>)> {
    v.clear();
    // in-place collect: same element layout, so the allocation is kept and nothing is copied
    v.into_iter().map(|_| unreachable!("empty")).collect()
}

/// The non-blank lines of a JSON lines file, without their line ending, with their line numbers;
/// `each` returns `Ok(false)` to stop early. Read errors name the file.
fn read_lines(path: &Path, f: File, mut each: impl FnMut(&str, u64) -> Result<bool>) -> Result<()> {
    let mut reader = BufReader::with_capacity(1 << 20, f);
    let mut line = String::new();
    let mut lineno = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line).at(path)? == 0 {
            return Ok(());
        }
        lineno += 1;
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        if !each(text, lineno)? {
            return Ok(());
        }
    }
}

/// Whether `col` of `table` is a `json` column (nested values there are not flattened), cached.
fn json_column(
    cache: &mut HashMap<Arc<str>, rustc_hash::FxHashSet<String>>,
    schema: &Schema,
    table: &Arc<str>,
    col: &str,
) -> bool {
    if !cache.contains_key(table.as_ref()) {
        let cols = schema
            .tables
            .get(table.as_ref())
            .map(|t| {
                t.columns.values().filter(|c| c.data_type == Some(DataType::Json)).map(|c| c.name.clone()).collect()
            })
            .unwrap_or_default();
        cache.insert(table.clone(), cols);
    }
    cache[table.as_ref()].contains(col)
}

/// A parsed item and the row ids made for it on the parsing thread.
type Parsed = (Value, Option<ItemIds>);

/// Row ids of one item: its root id and the ids of the elements of each nested list.
#[derive(Default)]
struct ItemIds {
    root: String,
    lists: Vec<ListIds>,
}

/// Ids of the elements of one list (found by the address of its elements).
struct ListIds {
    list: usize,
    parent_id: String,
    table: Arc<str>,
    ids: Vec<String>,
}

/// Makes an item's row ids as the normalizer would (random root id, child ids hashed from the
/// parent id, the child table name and the list index), following the same flattening.
struct IdMaker {
    names: Names,
    max_nesting: u32,
}

impl IdMaker {
    fn item(&mut self, root_path: &Arc<str>, v: &Value) -> ItemIds {
        let mut out = ItemIds { root: random_row_id(), lists: Vec::new() };
        if let Value::Object(m) = v {
            let root = match m.get(C_DLT_ID) {
                Some(Value::String(s)) => s.clone(),
                _ => out.root.clone(),
            };
            self.row(root_path, m, &root, 0, &mut out.lists);
        }
        out
    }

    fn row(&mut self, table_path: &Arc<str>, map: &Map<String, Value>, row_id: &str, lvl: u32, out: &mut Vec<ListIds>) {
        let mut lists: Vec<(Arc<str>, &Vec<Value>)> = vec![];
        let mut stack: Vec<(&Map<String, Value>, Arc<str>, u32)> = vec![(map, self.names.empty.clone(), lvl)];
        while let Some((d, prefix, l)) = stack.pop() {
            for (k, v) in d {
                match v {
                    Value::Object(o) if l < self.max_nesting => {
                        let (path, _) = self.names.key(&prefix, k);
                        stack.push((o, path, l + 1));
                    }
                    Value::Array(a) if l < self.max_nesting && !a.is_empty() => {
                        let (path, _) = self.names.key(&prefix, k);
                        lists.push((path, a));
                    }
                    _ => {}
                }
            }
        }
        for (list_path, list) in lists {
            let (child_path, child_name) = self.names.child_table(table_path, &list_path);
            let ids: Vec<String> = (0..list.len()).map(|i| child_row_id(row_id, &child_name, i)).collect();
            for (el, id) in list.iter().zip(&ids) {
                if let Value::Object(m) = el {
                    let id = match m.get(C_DLT_ID) {
                        Some(Value::String(s)) => s.as_str(),
                        _ => id.as_str(),
                    };
                    self.row(&child_path, m, id, lvl + 1, out);
                }
            }
            out.push(ListIds { list: list.as_ptr() as usize, parent_id: row_id.to_string(), table: child_name, ids });
        }
    }
}

/// Where a row sits in the tree.
#[derive(Clone, Copy)]
struct Link<'p> {
    parent_id: &'p str,
    idx: usize,
}

/// A table being written: its unshortened path (for naming children), its name, its parent.
#[derive(Clone)]
struct TableRef {
    path: Arc<str>,
    name: Arc<str>,
    parent: Option<Arc<str>>,
}

impl<'a> Run<'a> {
    fn meta(&mut self, root: &str) -> &TableMeta {
        if !self.table_meta.contains_key(root) {
            let t = self.schema.tables.get(root);
            let strategy = t.and_then(|t| t.merge_strategy()).map(str::to_string);
            let is_merge = t.and_then(|t| t.write_disposition) == Some(dlt_core::WriteDisposition::Merge);
            let strategy = strategy.unwrap_or_else(|| "delete-insert".into());
            let meta = TableMeta {
                max_nesting: t
                    .and_then(Table::max_nesting)
                    .or(self.schema.normalizer_max_nesting())
                    .unwrap_or(DEFAULT_MAX_NESTING),
                // the schema's propagation config (dlt's rule, kept by extract), or a merge
                // table of a schema that predates it
                propagate_root: self.schema.propagates_root_key(root)
                    || (is_merge && matches!(strategy.as_str(), "delete-insert" | "upsert" | "insert-only")),
                id_mode: match (is_merge, strategy.as_str()) {
                    (true, "upsert" | "insert-only") => IdMode::KeyHash,
                    (true, "scd2") => IdMode::RowHash,
                    _ => IdMode::Random,
                },
                primary_key: t
                    .map(|t| t.columns.values().filter(|c| c.primary_key).map(|c| c.name.clone()).collect())
                    .unwrap_or_default(),
            };
            self.table_meta.insert(root.to_string(), meta);
        }
        &self.table_meta[root]
    }

    fn normalize_jsonl(&mut self, path: &Path, table: &str, on_progress: &(dyn Fn(u64) + Sync)) -> Result<()> {
        let root = TableRef { path: Arc::from(table), name: Arc::from(table), parent: None };
        // upsert / insert-only: a key that occurs several times in one load keeps its last row
        // (dlt would insert every duplicate); found by a first pass over the file
        let last_of_key = self.last_occurrences(path, table)?;
        let key_columns = self.meta(table).primary_key.clone();
        let f = File::open(path).at(path)?;
        let mut index: u64 = 0;
        // one thread reads and parses lines, this one normalizes: two cores busy, memory bounded
        // by the channel (a few chunks of parsed items)
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Parsed>>>(4);
        // processed chunks go back to be freed by the thread that allocated them (allocators
        // reuse same-thread frees at once; cross-thread frees cost fresh pages)
        let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<Parsed>>();
        // with random root ids, the parsing thread also makes every row id (hashing is a large
        // part of the work); the normalizer checks each against its own parent and table
        let naming = self.naming.clone();
        let mut ids = match self.meta(table) {
            m if m.id_mode == IdMode::Random && last_of_key.is_none() => {
                Some(IdMaker { names: Names::new(naming), max_nesting: m.max_nesting })
            }
            _ => None,
        };
        if self.fast_path
            && let Some(m) = ids.take()
        {
            return self.normalize_jsonl_tape(path, &root, m.max_nesting, on_progress);
        }
        let root_path: Arc<str> = root.path.clone();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut chunk = Vec::with_capacity(PARSE_CHUNK);
                let read = read_lines(path, f, |line, lineno| {
                    let v = serde_json::from_str::<Value>(line).map_err(|e| Error::BadInput {
                        location: format!("{}:{lineno}", path.display()),
                        message: e.to_string(),
                    })?;
                    let pre = ids.as_mut().map(|m| m.item(&root_path, &v));
                    chunk.push((v, pre));
                    if chunk.len() == PARSE_CHUNK {
                        let next = match back_rx.try_recv() {
                            Ok(mut old) => {
                                old.clear();
                                old
                            }
                            Err(_) => Vec::with_capacity(PARSE_CHUNK),
                        };
                        return Ok(tx.send(Ok(std::mem::replace(&mut chunk, next))).is_ok());
                    }
                    Ok(true)
                });
                let _ = match read {
                    Err(e) => tx.send(Err(e)),
                    Ok(()) if !chunk.is_empty() => tx.send(Ok(chunk)),
                    Ok(()) => Ok(()),
                };
            });
            for chunk in rx {
                let mut chunk = chunk?;
                for (item, pre) in &mut chunk {
                    let i = index;
                    index += 1;
                    if let Some(last) = &last_of_key {
                        let map = match item {
                            Value::Object(m) => Some(m),
                            _ => None,
                        };
                        if let Some(m) = map
                            && last.get(&self.key_hash(m, &key_columns)).is_some_and(|l| *l != i)
                        {
                            continue;
                        }
                    }
                    self.pre = pre.take();
                    self.normalize_item(&root, item)?;
                    self.items += 1;
                    if self.items.is_multiple_of(10_000) {
                        on_progress(self.items);
                    }
                }
                let _ = back_tx.send(chunk);
            }
            Ok::<(), Error>(())
        })?;
        on_progress(self.items);
        Ok(())
    }

    /// For tables whose row ids are key hashes: the index of the last item of every key, when some
    /// key occurs more than once (`None` otherwise, or for other tables).
    fn last_occurrences(&mut self, path: &Path, table: &str) -> Result<Option<HashMap<String, u64>>> {
        let meta = self.meta(table);
        if meta.id_mode != IdMode::KeyHash || meta.primary_key.is_empty() {
            return Ok(None);
        }
        let pk = meta.primary_key.clone();
        let f = File::open(path).at(path)?;
        let mut last: HashMap<String, u64> = HashMap::default();
        let mut dup = false;
        let mut index = 0u64;
        read_lines(path, f, |line, _| {
            if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(line) {
                dup |= last.insert(self.key_hash(&m, &pk), index).is_some();
            }
            index += 1;
            Ok(true)
        })?;
        Ok(if dup { Some(last) } else { None })
    }

    /// Normalize one item of a root table.
    fn normalize_item(&mut self, root: &TableRef, item: &Value) -> Result<()> {
        let wrapped;
        let map = match item {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("value".into(), other.clone());
                wrapped = m;
                &wrapped
            }
        };
        let meta = self.meta(&root.name);
        let (id_mode, propagate, max_nesting) = (meta.id_mode, meta.propagate_root, meta.max_nesting);
        let row_id = match map.get(C_DLT_ID) {
            Some(Value::String(s)) => s.clone(),
            _ => match id_mode {
                IdMode::Random => self.pre.as_mut().map(|p| std::mem::take(&mut p.root)).unwrap_or_else(random_row_id),
                IdMode::KeyHash => {
                    let pk = self.meta(&root.name).primary_key.clone();
                    if pk.is_empty() { random_row_id() } else { self.key_hash(map, &pk) }
                }
                IdMode::RowHash => row_hash(map),
            },
        };
        let root_id = if propagate { Some(row_id.clone()) } else { None };
        self.normalize_row(root, map, &row_id, None, root_id.as_deref(), 0, max_nesting)
    }

    fn key_hash(&mut self, map: &Map<String, Value>, pk: &[String]) -> String {
        let mut m = Map::new();
        for (k, v) in map {
            let n = self.naming.normalize_path(k);
            if pk.contains(&n) {
                m.insert(n, v.clone());
            }
        }
        digest_b64(to_sorted_json(&Value::Object(m)).as_bytes(), DLT_ID_LENGTH_BYTES)
    }

    fn is_json_column(&mut self, table: &Arc<str>, col: &str) -> bool {
        json_column(&mut self.json_cols, self.schema, table, col)
    }

    #[allow(clippy::too_many_arguments)]
    fn normalize_row<'v>(
        &mut self,
        table: &TableRef,
        map: &'v Map<String, Value>,
        row_id: &str,
        link: Option<Link<'_>>,
        root_id: Option<&str>,
        lvl: u32,
        max_nesting: u32,
    ) -> Result<()> {
        if !self.admit_table(table)? {
            return Ok(()); // a contract discards this table and everything nested in it
        }
        // flatten: scalars of a level first, nested dicts expanded from a LIFO stack
        let mut row: Vec<(Arc<str>, &'v Value)> = Vec::with_capacity(map.len() + 4);
        let mut lists: Vec<(Arc<str>, &'v Vec<Value>)> = vec![];
        let mut stack: Vec<(&'v Map<String, Value>, Arc<str>, u32)> = vec![(map, self.names.empty.clone(), lvl)];
        while let Some((d, prefix, l)) = stack.pop() {
            for (k, v) in d {
                let (path, name) = self.names.key(&prefix, k);
                match v {
                    Value::Object(o) if l < max_nesting && !self.is_json_column(&table.name, &name) => {
                        stack.push((o, path, l + 1));
                        continue;
                    }
                    Value::Array(a) if l < max_nesting && !self.is_json_column(&table.name, &name) => {
                        lists.push((path, a));
                        continue;
                    }
                    _ => {}
                }
                let dup = if self.names.ambiguous.is_empty() || !self.names.ambiguous.contains(&name) {
                    None
                } else {
                    row.iter_mut().find(|(n, _)| *n == name)
                };
                if let Some(slot) = dup {
                    // keys colliding after normalization: the last one wins, as in dlt; unlike dlt,
                    // say so (once per table and column) instead of dropping data silently
                    if self.collisions.insert((table.name.clone(), name.clone())) {
                        tracing::warn!(
                            "table `{}`: several keys normalize to column `{name}`; the last one wins (key `{k}`)",
                            table.name
                        );
                    }
                    slot.1 = v;
                } else {
                    row.push((name, v));
                }
            }
        }
        self.write_row(table, &row, row_id, link, root_id)?;
        for (list_path, list) in lists {
            let (child_path, child_name) = self.names.child_table(&table.path, &list_path);
            let child = TableRef { path: child_path, name: child_name, parent: Some(table.name.clone()) };
            self.normalize_list(&child, list, row_id, root_id, lvl + 1, max_nesting)?;
        }
        Ok(())
    }

    fn normalize_list(
        &mut self,
        table: &TableRef,
        list: &[Value],
        parent_id: &str,
        root_id: Option<&str>,
        lvl: u32,
        max_nesting: u32,
    ) -> Result<()> {
        let mut pre = self.precomputed(list, parent_id, &table.name);
        let mut child_id = |idx: usize| match pre.as_mut().and_then(|ids| ids.get_mut(idx)) {
            Some(id) => std::mem::take(id),
            None => child_row_id(parent_id, &table.name, idx),
        };
        for (idx, v) in list.iter().enumerate() {
            let link = Link { parent_id, idx };
            match v {
                Value::Object(m) => {
                    let id = match m.get(C_DLT_ID) {
                        Some(Value::String(s)) => s.clone(),
                        _ => child_id(idx),
                    };
                    self.normalize_row(table, m, &id, Some(link), root_id, lvl, max_nesting)?;
                }
                Value::Array(inner) => {
                    // a list of lists: an intermediate row, the inner list under the key `list`
                    let mut wrap = Map::new();
                    wrap.insert("list".to_string(), Value::Array(inner.clone()));
                    let id = child_id(idx);
                    self.normalize_row(table, &wrap, &id, Some(link), root_id, lvl, max_nesting)?;
                }
                scalar => {
                    if !self.admit_table(table)? {
                        return Ok(());
                    }
                    let id = child_id(idx);
                    let (_, value_name) = self.names.key(&self.names.empty.clone(), "value");
                    let row = [(value_name, scalar)];
                    self.write_row(table, &row, &id, Some(link), root_id)?;
                }
            }
        }
        Ok(())
    }

    /// The ids the parsing thread made for the elements of `list`, if it made them for this
    /// parent and table.
    fn precomputed(&mut self, list: &[Value], parent_id: &str, table: &str) -> Option<Vec<String>> {
        let pre = self.pre.as_mut()?;
        let at = list.as_ptr() as usize;
        let i = pre.lists.iter().position(|l| l.list == at)?;
        let l = pre.lists.swap_remove(i);
        (l.parent_id == parent_id && l.table.as_ref() == table && l.ids.len() == list.len()).then_some(l.ids)
    }

    fn contract(&mut self, table: &str) -> Result<SchemaContract> {
        if let Some(c) = self.contracts.get(table) {
            return Ok(*c);
        }
        let c = SchemaContract::for_table(self.schema, table)?;
        self.contracts.insert(Arc::from(table), c);
        Ok(c)
    }

    /// Whether rows may go to `table`; applies the `tables` contract to new nested tables.
    fn admit_table(&mut self, table: &TableRef) -> Result<bool> {
        if self.buffers.contains_key(table.name.as_ref()) {
            return Ok(true);
        }
        if self.filtered.contains(table.name.as_ref()) {
            return Ok(false);
        }
        let exists = self.schema.tables.get(table.name.as_ref()).is_some_and(Table::has_complete_columns);
        if !exists {
            if let Some(parent) = &table.parent {
                if self.filtered.contains(parent.as_ref()) {
                    self.filtered.insert(table.name.clone());
                    return Ok(false);
                }
                // new root tables were checked in extract; new nested tables are checked here
                match self.contract(parent)?.tables {
                    ContractMode::Evolve => {}
                    ContractMode::Freeze => return Err(violation("tables", &table.name, None, None)),
                    ContractMode::DiscardRow | ContractMode::DiscardValue => {
                        self.filtered.insert(table.name.clone());
                        return Ok(false);
                    }
                }
            }
            self.new_tables.insert(table.name.clone());
        }
        self.buffer(table);
        Ok(true)
    }

    fn buffer(&mut self, table: &TableRef) -> &mut TableBuffer {
        if !self.buffers.contains_key(table.name.as_ref()) {
            if !self.schema.tables.contains_key(table.name.as_ref()) {
                let mut t = Table::new(table.name.as_ref());
                t.parent = table.parent.as_ref().map(|p| p.to_string());
                self.schema.tables.insert(table.name.to_string(), t);
            }
            self.buffers.insert(table.name.clone(), TableBuffer::new(&table.name, self.out_dir, &self.writer));
        }
        self.buffers.get_mut(table.name.as_ref()).expect("inserted")
    }

    fn dlt_column(schema: &mut Schema, buf: &mut TableBuffer, table: &str, name: &str, dt: DataType) -> usize {
        if let Some(i) = buf.cached_index(name) {
            return i;
        }
        let t = schema.tables.get_mut(table).expect("table ensured");
        // an scd2 root's `_dlt_id` is the row hash: a version that comes back has the same one,
        // so it is the row version, not a unique row key (as dlt marks it)
        let scd2_row_version = t.parent.is_none()
            && t.merge_strategy() == Some("scd2")
            && !t.columns.values().any(|c| c.extra.get("x-row-version") == Some(&serde_json::Value::Bool(true)));
        // a declared column without a type (scd2's row version `_dlt_id`) moves to the end when
        // it gets its type, as dlt merges it
        if t.columns.get(name).is_some_and(|c| !c.is_complete()) {
            let mut declared = t.columns.shift_remove(name).expect("checked");
            declared.data_type = Some(dt);
            t.columns.insert(name.to_string(), declared);
        }
        let col = t.columns.entry(name.to_string()).or_insert_with(|| {
            let mut c = Column::new(name, dt).not_null();
            match name {
                C_DLT_ID if scd2_row_version => {
                    c.extra.insert("x-row-version".into(), serde_json::Value::Bool(true));
                }
                C_DLT_ID => {
                    c.unique = Some(true);
                    c.row_key = Some(true);
                }
                C_DLT_PARENT_ID => c.parent_key = true,
                C_DLT_ROOT_ID => c.root_key = true,
                _ => {}
            }
            c
        });
        if col.data_type.is_none() {
            col.data_type = Some(dt);
        }
        buf.column_index(col)
    }

    fn write_row(
        &mut self,
        table: &TableRef,
        row: &[(Arc<str>, &Value)],
        row_id: &str,
        link: Option<Link<'_>>,
        root_id: Option<&str>,
    ) -> Result<()> {
        self.buffer(table);
        let mut cells = recycle(std::mem::take(&mut self.cells));
        let r = match self.fill_cells(table, row, row_id, link, root_id, &mut cells) {
            Ok(true) => self.buffers.get_mut(table.name.as_ref()).expect("buffer").push_row(&mut cells),
            Ok(false) => Ok(()), // the contract discards this row
            Err(e) => Err(e),
        };
        self.cells = recycle(cells);
        r
    }

    fn fill_cells<'c>(
        &mut self,
        table: &TableRef,
        row: &[(Arc<str>, &'c Value)],
        row_id: &'c str,
        link: Option<Link<'c>>,
        root_id: Option<&'c str>,
        cells: &mut Vec<(usize, Cell<'c>)>,
    ) -> Result<bool>
    where
        'a: 'c,
    {
        let tname: &str = &table.name;
        let contract = self.contract(tname)?;
        let buf = self.buffers.get_mut(tname).expect("buffer");
        for (name, v) in row {
            if v.is_null() {
                if let Some(c) = self.schema.tables[tname].columns.get(name.as_ref())
                    && c.nullable == Some(false)
                    && c.is_complete()
                {
                    return Err(Error::Schema(format!(
                        "table `{tname}`, column `{name}`: null value for a column declared nullable=false (load {})",
                        self.load_id
                    )));
                }
                continue;
            }
            // fast path: a known column and a value that fits its type
            if let Some((i, cell)) = buf.try_fast(name, v) {
                cells.push((i, cell));
                continue;
            }
            let planned = coerce::plan_value(self.schema, self.naming.as_ref(), tname, name, v)?;
            if let Some(kind) = planned.new {
                let mode = match kind {
                    coerce::NewKind::Completed => ContractMode::Evolve,
                    _ if planned.col.name.starts_with("_dlt") => ContractMode::Evolve,
                    coerce::NewKind::Column if self.new_tables.contains(tname) => ContractMode::Evolve,
                    coerce::NewKind::Column => contract.columns,
                    coerce::NewKind::Variant => contract.data_type,
                };
                match mode {
                    ContractMode::Evolve => {
                        coerce::add_column(self.schema, tname, &planned.col);
                        self.json_cols.remove(tname);
                    }
                    ContractMode::Freeze => {
                        let entity = if kind == coerce::NewKind::Variant { "data_type" } else { "columns" };
                        return Err(violation(entity, tname, Some(&planned.col.name), Some(v)));
                    }
                    ContractMode::DiscardRow => return Ok(false),
                    ContractMode::DiscardValue => continue,
                }
            }
            let i = buf.column_index(&planned.col);
            cells.push((i, planned.cell));
        }
        match link {
            None => {
                let i = Self::dlt_column(self.schema, buf, tname, C_DLT_LOAD_ID, DataType::Text);
                cells.push((i, Cell::Str(std::borrow::Cow::Borrowed(self.load_id))));
            }
            Some(l) => {
                if let Some(r) = root_id {
                    let i = Self::dlt_column(self.schema, buf, tname, C_DLT_ROOT_ID, DataType::Text);
                    cells.push((i, Cell::Str(std::borrow::Cow::Borrowed(r))));
                }
                let i = Self::dlt_column(self.schema, buf, tname, C_DLT_PARENT_ID, DataType::Text);
                cells.push((i, Cell::Str(std::borrow::Cow::Borrowed(l.parent_id))));
                let i = Self::dlt_column(self.schema, buf, tname, C_DLT_LIST_IDX, DataType::Bigint);
                cells.push((i, Cell::Int(l.idx as i64)));
            }
        }
        if !row.iter().any(|(n, _)| n.as_ref() == C_DLT_ID) {
            let i = Self::dlt_column(self.schema, buf, tname, C_DLT_ID, DataType::Text);
            cells.push((i, Cell::Str(std::borrow::Cow::Borrowed(row_id))));
        }
        Ok(true)
    }
}

/// dlt's scd2 row hash: the original item without `_dlt*` keys, sorted compact JSON.
fn row_hash(map: &Map<String, Value>) -> String {
    let mut m = Map::new();
    for (k, v) in map {
        if !k.starts_with("_dlt") {
            m.insert(k.clone(), v.clone());
        }
    }
    digest_b64(to_sorted_json(&Value::Object(m)).as_bytes(), DLT_ID_LENGTH_BYTES)
}

/// Helper for tests and tools: the job files of a folder.
pub fn job_files(dir: &Path) -> Result<Vec<JobFile>> {
    dlt_core::package::list_jobs(dir, ".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, StringArray};
    use dlt_core::destination::Capabilities;
    use std::collections::HashMap as StdMap;

    fn caps() -> Capabilities {
        Capabilities::default()
            .with_preferred_file_format(FileFormat::Parquet)
            .with_supported_file_formats(vec![FileFormat::Parquet])
            .with_max_identifier_length(65536)
            .with_max_column_identifier_length(65536)
            .with_supports_transactions(true)
            .with_merge_strategies(vec![])
            .with_replace_strategies(vec![])
            .with_timestamp_precision(6)
            .with_decimal_precision((38, 9))
            .with_type_map(vec![])
    }

    /// `_dlt_id`, `_dlt_parent_id`, `_dlt_list_idx` of a row.
    type IdRow = (String, Option<String>, Option<i64>);

    /// Rows of every job file by table.
    fn id_rows(dir: &Path) -> StdMap<String, Vec<IdRow>> {
        let mut out: StdMap<String, Vec<_>> = StdMap::new();
        for job in job_files(dir).unwrap() {
            let f = File::open(&job.path).unwrap();
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(f, 1024).unwrap();
            for batch in reader {
                let b = batch.unwrap();
                let col = |n: &str| b.column_by_name(n).cloned();
                let ids = col(C_DLT_ID).unwrap();
                let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
                let parents = col(C_DLT_PARENT_ID);
                let parents = parents.as_ref().map(|a| a.as_any().downcast_ref::<StringArray>().unwrap());
                let idx = col(C_DLT_LIST_IDX);
                let idx = idx.as_ref().map(|a| a.as_any().downcast_ref::<Int64Array>().unwrap());
                for i in 0..b.num_rows() {
                    out.entry(job.table.clone()).or_default().push((
                        ids.value(i).to_string(),
                        parents.map(|p| p.value(i).to_string()),
                        idx.filter(|a| !a.is_null(i)).map(|a| a.value(i)),
                    ));
                }
            }
        }
        out
    }

    /// Normalize the JSON lines file `input` of table `t` into job files in `out`.
    fn normalize_file(
        input: &Path,
        out: &Path,
        schema: &mut Schema,
        config: &dlt_core::config::Config,
    ) -> NormalizeResult {
        let files = vec![JobFile {
            table: "t".into(),
            file_id: "x".into(),
            retry: 0,
            format: FileFormat::Jsonl,
            path: input.to_path_buf(),
        }];
        RelationalNormalizer
            .normalize(NormalizeRequest {
                load_id: "1",
                files: &files,
                output_dir: out,
                schema,
                capabilities: &caps(),
                config,
                on_progress: &|_| {},
            })
            .unwrap()
    }

    /// Normalize `lines` (one table `t`), with or without the tape fast path: the schema, and
    /// per table the rows as JSON text with ids replaced by (table, row number) references.
    fn normalized(lines: &str, fast: bool, max_nesting: Option<u32>) -> (String, Vec<(String, Vec<String>)>) {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("t.jsonl");
        std::fs::write(&input, lines).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let mut schema = Schema::new("s");
        let mut t = Table::new("t");
        if let Some(n) = max_nesting {
            t.set_max_nesting(n);
        }
        schema.tables.insert("t".into(), t);
        let config =
            dlt_core::config::Config::from_parts(vec![("NORMALIZE__FAST_PATH".into(), fast.to_string())], None, None);
        normalize_file(&input, &out, &mut schema, &config);
        let mut tables: Vec<(String, Vec<serde_json::Map<String, Value>>)> = vec![];
        let mut jobs = job_files(&out).unwrap();
        jobs.sort_by(|a, b| a.table.cmp(&b.table));
        for job in jobs {
            let f = File::open(&job.path).unwrap();
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(f, 1024).unwrap();
            let mut rows = vec![];
            for batch in reader {
                let b = batch.unwrap();
                let opts = arrow::util::display::FormatOptions::default();
                for i in 0..b.num_rows() {
                    let mut row = serde_json::Map::new();
                    for (f, col) in b.schema().fields().iter().zip(b.columns()) {
                        let v = if col.is_null(i) {
                            Value::Null
                        } else {
                            let col = match f.data_type() {
                                arrow::datatypes::DataType::Timestamp(..) => {
                                    arrow::compute::cast(col, &arrow::datatypes::DataType::Int64).unwrap()
                                }
                                _ => col.clone(),
                            };
                            let fmt = arrow::util::display::ArrayFormatter::try_new(col.as_ref(), &opts).unwrap();
                            Value::String(format!("{}: {}", f.data_type(), fmt.value(i)))
                        };
                        row.insert(f.name().clone(), v);
                    }
                    rows.push(row);
                }
            }
            match tables.iter_mut().find(|(t, _)| *t == job.table) {
                Some((_, r)) => r.push(Default::default()),
                None => tables.push((job.table.clone(), vec![])),
            }
            tables.iter_mut().find(|(t, _)| *t == job.table).unwrap().1.extend(rows);
        }
        // ids → (table, row) references
        let mut refs: StdMap<String, String> = StdMap::new();
        for (t, rows) in &tables {
            for (i, r) in rows.iter().enumerate() {
                if let Some(Value::String(id)) = r.get(C_DLT_ID) {
                    refs.insert(id.trim_start_matches("Utf8: ").to_string(), format!("{t}#{i}"));
                }
            }
        }
        let out_tables = tables
            .into_iter()
            .map(|(t, rows)| {
                let rows = rows
                    .into_iter()
                    .map(|mut r| {
                        for k in [C_DLT_ID, C_DLT_PARENT_ID, C_DLT_ROOT_ID] {
                            if let Some(Value::String(id)) = r.get(k) {
                                let id = id.trim_start_matches("Utf8: ");
                                let own = id.starts_with("own:");
                                let v = if own { id.to_string() } else { refs.get(id).cloned().unwrap_or("?".into()) };
                                r.insert(k.into(), Value::String(v));
                            }
                        }
                        serde_json::to_string(&r).unwrap()
                    })
                    .collect();
                (t, rows)
            })
            .collect();
        let schema_text = serde_json::to_string(&schema.tables).unwrap();
        (schema_text, out_tables)
    }

    /// The tape fast path gives exactly what the serde_json path gives: the same schema (column
    /// order, types, variants), rows, values and id links, on input that keeps changing shape.
    #[test]
    fn fast_path_matches_regular_path() {
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let values = [
            r#"1"#,
            r#"-0"#,
            r#"2.5"#,
            r#"1e3"#,
            r#"-1.25E-2"#,
            r#"18446744073709551616"#,
            r#"9223372036854775807"#,
            r#""text""#,
            r#""esc \"q\" \\ \u00e9 \ud83d\ude00 \n""#,
            r#"true"#,
            r#"false"#,
            r#"null"#,
            r#"{}"#,
            r#"[]"#,
            r#"{"in":1,"deep":{"x":"y"}}"#,
            r#"[1,2,null]"#,
            r#"[{"a":1},{"a":"s","b":[true]}]"#,
            r#"[[1,2],[3]]"#,
            r#""12""#,
            r#""1.5""#,
            r#""yes""#,
        ];
        let keys = ["id", "Name", "camelCase", "with space", "value", "n", "ts", "a-b", "a_b", "list"];
        let mut lines = String::new();
        for i in 0..3000 {
            let mut item = format!(r#"{{"id":{i}"#);
            for _ in 0..next(6) {
                let k = keys[next(keys.len() as u64) as usize];
                // mostly a stable type per key, sometimes anything
                // (a variant of a detected timestamp column fails in dlt too: `ts` stays one)
                let v = if k == "ts" {
                    r#""2024-01-02T03:04:05Z""#
                } else if next(10) < 8 {
                    values[(k.len() * 3 + 1) % values.len()]
                } else {
                    values[next(values.len() as u64) as usize]
                };
                item.push_str(&format!(r#","{k}":{v}"#));
            }
            if next(50) == 0 {
                item.push_str(&format!(r#","_dlt_id":"own:{i}""#));
            }
            item.push_str(r#","tags":["a","b"],"obj":{"Inner Key":2,"items":[{"q":1,"sub":[{"z":"x"}]}]}}"#);
            lines.push_str(&item);
            lines.push('\n');
            if i % 997 == 0 {
                lines.push_str("   \n[1,2]\n\"scalar\"\n");
            }
        }
        for nesting in [None, Some(1)] {
            let before = fast::FAST_ITEMS.load(std::sync::atomic::Ordering::Relaxed);
            let (schema_fast, fast) = normalized(&lines, true, nesting);
            // most items take the fast path (the others are new shapes, own ids, duplicate keys...)
            let taken = fast::FAST_ITEMS.load(std::sync::atomic::Ordering::Relaxed) - before;
            // (beyond max_table_nesting every item here holds a value serialized as JSON: regular path)
            assert!(taken > 800 || nesting.is_some(), "{taken} items took the fast path");
            let (schema_slow, slow) = normalized(&lines, false, nesting);
            assert_eq!(schema_fast, schema_slow, "max nesting {nesting:?}");
            assert_eq!(fast.len(), slow.len());
            for ((tf, rf), (ts, rs)) in fast.iter().zip(&slow) {
                assert_eq!(tf, ts);
                assert_eq!(rf.len(), rs.len(), "{tf}");
                for (i, (a, b)) in rf.iter().zip(rs).enumerate() {
                    assert_eq!(a, b, "table {tf} row {i}");
                }
            }
            assert_eq!(nesting.is_none(), fast.iter().any(|(t, _)| t == "t__obj__items__sub"));
        }
    }

    /// Child ids are dlt's hash of (parent id, child table, list index) at every depth, whichever
    /// thread computes them; a `_dlt_id` in the data wins.
    #[test]
    fn child_row_ids_follow_parent_ids() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("t.jsonl");
        let mut lines = String::new();
        for i in 0..1500 {
            // more items than one parse chunk, lists of objects with lists, of lists, of scalars;
            // a few items with an id of their own or a list of lists (the regular path), the
            // rest on the fast path
            let own = if i % 10 == 0 { format!(r#","_dlt_id":"own:{i}""#) } else { String::new() };
            let grid = if i % 7 == 0 { r#"[[1,2],[3]]"# } else { r#"[{"c":1},{"c":2},{"c":3}]"# };
            lines.push_str(&format!(
                r#"{{"id":{i},"Nested":{{"Tags":["a","b"]}},"items":[{{"n":1,"subs":[{{"x":1}},{{"x":2}}]}},{{"n":2{own},"subs":[{{"x":3}}]}}],"grid":{grid}}}"#
            ));
            lines.push('\n');
        }
        std::fs::write(&input, lines).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let mut schema = Schema::new("s");
        schema.tables.insert("t".into(), Table::new("t"));
        let before = fast::FAST_ITEMS.load(std::sync::atomic::Ordering::Relaxed);
        let res = normalize_file(&input, &out, &mut schema, &dlt_core::config::Config::default());
        assert_eq!(res.row_counts["t"], 1500);
        assert_eq!(res.row_counts["t__items"], 3000);
        assert_eq!(res.row_counts["t__items__subs"], 4500);
        assert_eq!(res.row_counts["t__nested__tags"], 3000);
        // 215 items (multiples of 7) have a list of lists
        assert_eq!(res.row_counts["t__grid"], 215 * 2 + 1285 * 3);
        assert_eq!(res.row_counts["t__grid__list"], 215 * 3);
        let taken = fast::FAST_ITEMS.load(std::sync::atomic::Ordering::Relaxed) - before;
        assert!(taken >= 1100, "{taken} items took the fast path");
        let rows = id_rows(&out);
        let mut checked = 0;
        for (table, parent_table) in [
            ("t__items", "t"),
            ("t__items__subs", "t__items"),
            ("t__nested__tags", "t"),
            ("t__grid", "t"),
            ("t__grid__list", "t__grid"),
        ] {
            let parents: rustc_hash::FxHashSet<&str> = rows[parent_table].iter().map(|r| r.0.as_str()).collect();
            for (id, parent, idx) in &rows[table] {
                let parent = parent.as_deref().unwrap();
                assert!(parents.contains(parent), "{table}: parent {parent} missing");
                let expected = child_row_id(parent, table, idx.unwrap() as usize);
                if id.starts_with("own:") {
                    assert_eq!(table, "t__items");
                } else {
                    assert_eq!(id, &expected, "{table} row {idx:?} of {parent}");
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 3000 + 4500 + 3000 + 4285 + 645);
        // the rows under an item with its own `_dlt_id` hang from that id
        assert!(rows["t__items__subs"].iter().any(|r| r.1.as_deref() == Some("own:10")));
    }
}
