//! The relational JSON normalizer: JSON items → per-table Arrow batches (parquet job files),
//! with dlt's flattening, child tables, naming, type inference, coercion and variant columns.
//! Arrow items pass through with normalized column names and no per-row work.
#![warn(missing_docs)]

mod arrow_items;
mod buffers;
mod coerce;
pub mod values;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

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

use buffers::TableBuffer;
pub use buffers::{BUFFER_ROWS, Cell, arrow_type};

/// Default `max_table_nesting` (dlt: 1000, i.e. unlimited).
pub const DEFAULT_MAX_NESTING: u32 = 1000;

/// dlt's relational normalizer.
#[derive(Debug, Default, Clone)]
pub struct RelationalNormalizer;

impl Normalizer for RelationalNormalizer {
    fn normalize(&self, req: NormalizeRequest<'_>) -> Result<NormalizeResult> {
        let naming = req.capabilities.naming();
        let mut run = Run {
            schema: req.schema,
            naming,
            load_id: req.load_id,
            out_dir: req.output_dir,
            buffers: HashMap::new(),
            key_cache: HashMap::new(),
            table_meta: HashMap::new(),
            cells: Vec::with_capacity(64),
            items: 0,
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
                    )?;
                    *arrow_counts.entry(f.table.clone()).or_default() += n;
                }
                FileFormat::Csv => {
                    return Err(Error::Package(format!("unexpected extracted file format: {}", f.path.display())));
                }
            }
        }
        let mut row_counts = indexmap::IndexMap::new();
        let mut buffers: Vec<(String, TableBuffer)> = run.buffers.drain().collect();
        buffers.sort_by(|a, b| a.0.cmp(&b.0));
        for (t, b) in buffers {
            let n = b.finish()?;
            if n > 0 {
                row_counts.insert(t.clone(), n);
                if let Some(tbl) = run.schema.tables.get_mut(&t) {
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

struct Run<'a> {
    schema: &'a mut Schema,
    naming: Arc<dyn NamingConvention>,
    load_id: &'a str,
    out_dir: &'a Path,
    buffers: HashMap<String, TableBuffer>,
    key_cache: HashMap<String, String>,
    table_meta: HashMap<String, TableMeta>,
    cells: Vec<(usize, Cell)>,
    items: u64,
}

/// Where a row hangs in the tree.
struct Link<'p> {
    parent_id: &'p str,
    idx: usize,
    root_id: Option<&'p str>,
}

impl<'a> Run<'a> {
    fn meta(&mut self, root: &str) -> &TableMeta {
        if !self.table_meta.contains_key(root) {
            let t = self.schema.tables.get(root);
            let strategy = t.and_then(|t| t.merge_strategy()).map(str::to_string);
            let is_merge = t.and_then(|t| t.write_disposition) == Some(dlt_core::WriteDisposition::Merge);
            let strategy = strategy.unwrap_or_else(|| "delete-insert".into());
            let meta = TableMeta {
                max_nesting: t.and_then(Table::max_nesting).unwrap_or(DEFAULT_MAX_NESTING),
                propagate_root: is_merge && matches!(strategy.as_str(), "delete-insert" | "upsert" | "insert-only"),
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
        let f = File::open(path).at(path)?;
        let mut reader = BufReader::with_capacity(1 << 20, f);
        let mut line = String::new();
        let mut lineno = 0u64;
        loop {
            line.clear();
            let n = reader.read_line(&mut line).at(path)?;
            if n == 0 {
                break;
            }
            lineno += 1;
            if line.trim().is_empty() {
                continue;
            }
            let item: Value = serde_json::from_str(&line).map_err(|e| Error::BadInput {
                location: format!("{}:{lineno}", path.display()),
                message: e.to_string(),
            })?;
            self.normalize_item(table, item)?;
            self.items += 1;
            if self.items % 10_000 == 0 {
                on_progress(self.items);
            }
        }
        on_progress(self.items);
        Ok(())
    }

    /// Normalize one item of a root table.
    fn normalize_item(&mut self, root: &str, item: Value) -> Result<()> {
        let map = match item {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        let meta = self.meta(root);
        let (id_mode, propagate, pk) = (meta.id_mode, meta.propagate_root, meta.primary_key.clone());
        let row_id = match map.get(C_DLT_ID) {
            Some(Value::String(s)) => s.clone(),
            _ => match id_mode {
                IdMode::Random => random_row_id(),
                IdMode::KeyHash if !pk.is_empty() => self.key_hash(&map, &pk),
                IdMode::KeyHash => random_row_id(),
                IdMode::RowHash => row_hash(&map),
            },
        };
        let path = vec![root.to_string()];
        let root_id = if propagate { Some(row_id.clone()) } else { None };
        self.normalize_row(&path, root, &map, &row_id, None, root_id.as_deref(), 0)
    }

    fn key_hash(&mut self, map: &Map<String, Value>, pk: &[String]) -> String {
        let mut m = Map::new();
        for (k, v) in map {
            let n = self.norm_key(k);
            if pk.contains(&n) {
                m.insert(n, v.clone());
            }
        }
        digest_b64(to_sorted_json(&Value::Object(m)).as_bytes(), DLT_ID_LENGTH_BYTES)
    }

    fn norm_key(&mut self, k: &str) -> String {
        if let Some(n) = self.key_cache.get(k) {
            return n.clone();
        }
        let n = self.naming.normalize_path(k);
        self.key_cache.insert(k.to_string(), n.clone());
        n
    }

    fn is_nested_type(&self, table: &str, col: &str, lvl: u32, max_nesting: u32) -> bool {
        if lvl + 1 > max_nesting {
            return true;
        }
        self.schema
            .tables
            .get(table)
            .and_then(|t| t.columns.get(col))
            .map(|c| c.data_type == Some(DataType::Json))
            .unwrap_or(false)
    }

    #[allow(clippy::too_many_arguments)]
    fn normalize_row<'v>(
        &mut self,
        path: &[String],
        table: &str,
        map: &'v Map<String, Value>,
        row_id: &str,
        link: Option<Link<'_>>,
        root_id: Option<&str>,
        lvl: u32,
    ) -> Result<()> {
        let root = path[0].clone();
        let max_nesting = self.meta(&root).max_nesting;
        // flatten: scalars of a level first, nested dicts expanded from a LIFO stack
        let mut row: Vec<(String, &'v Value)> = Vec::with_capacity(map.len() + 4);
        let mut lists: Vec<(Vec<String>, &'v Vec<Value>)> = vec![];
        let mut stack: Vec<(&'v Map<String, Value>, Vec<String>, u32)> = vec![(map, vec![], lvl)];
        while let Some((d, prefix, l)) = stack.pop() {
            for (k, v) in d {
                let nk = self.norm_key(k);
                let name = if prefix.is_empty() {
                    nk.clone()
                } else {
                    let mut frags: Vec<&str> = prefix.iter().map(String::as_str).collect();
                    frags.push(&nk);
                    self.naming.make_path(&frags)
                };
                match v {
                    Value::Object(o) if !self.is_nested_type(table, &name, l, max_nesting) => {
                        let mut p = prefix.clone();
                        p.push(nk);
                        stack.push((o, p, l + 1));
                        continue;
                    }
                    Value::Array(a) if !self.is_nested_type(table, &name, l, max_nesting) => {
                        let mut p = prefix.clone();
                        p.push(self.naming.normalize_table_identifier(k));
                        lists.push((p, a));
                        continue;
                    }
                    _ => {}
                }
                if let Some(slot) = row.iter_mut().find(|(n, _)| *n == name) {
                    slot.1 = v; // keys colliding after normalization: the last one wins
                } else {
                    row.push((name, v));
                }
            }
        }
        let parent_table = if path.len() > 1 {
            let pp: Vec<&str> = path[..path.len() - 1].iter().map(String::as_str).collect();
            Some(self.naming.make_path(&pp))
        } else {
            None
        };
        self.write_row(table, parent_table.as_deref(), &row, row_id, link, root_id)?;
        for (frags, list) in lists {
            let mut child_path = path.to_vec();
            child_path.extend(frags);
            let refs: Vec<&str> = child_path.iter().map(String::as_str).collect();
            let child_table = self.naming.make_path(&refs);
            self.normalize_list(&child_path, &child_table, list, row_id, root_id, lvl + 1)?;
        }
        Ok(())
    }

    fn normalize_list(
        &mut self,
        path: &[String],
        table: &str,
        list: &[Value],
        parent_id: &str,
        root_id: Option<&str>,
        lvl: u32,
    ) -> Result<()> {
        for (idx, v) in list.iter().enumerate() {
            let link = Link { parent_id, idx, root_id };
            match v {
                Value::Object(m) => {
                    let id = match m.get(C_DLT_ID) {
                        Some(Value::String(s)) => s.clone(),
                        _ => child_row_id(parent_id, table, idx),
                    };
                    self.normalize_row(path, table, m, &id, Some(link), root_id, lvl)?;
                }
                Value::Array(inner) => {
                    // a list of lists: an intermediate row, the inner list under the key `list`
                    let mut wrap = Map::new();
                    wrap.insert("list".to_string(), Value::Array(inner.clone()));
                    let id = child_row_id(parent_id, table, idx);
                    self.normalize_row(path, table, &wrap, &id, Some(link), root_id, lvl)?;
                }
                scalar => {
                    let id = child_row_id(parent_id, table, idx);
                    let row = vec![("value".to_string(), scalar)];
                    let parent_table = {
                        let pp: Vec<&str> = path[..path.len() - 1].iter().map(String::as_str).collect();
                        self.naming.make_path(&pp)
                    };
                    self.write_row(table, Some(&parent_table), &row, &id, Some(link), root_id)?;
                }
            }
        }
        Ok(())
    }

    fn ensure_table(&mut self, table: &str, parent: Option<&str>) {
        if !self.schema.tables.contains_key(table) {
            let mut t = Table::new(table);
            t.parent = parent.map(str::to_string);
            self.schema.tables.insert(table.to_string(), t);
        }
    }

    fn dlt_column(&mut self, table: &str, name: &str, dt: DataType) -> usize {
        let t = self.schema.tables.get_mut(table).expect("table ensured");
        let col = t.columns.entry(name.to_string()).or_insert_with(|| {
            let mut c = Column::new(name, dt).not_null();
            match name {
                C_DLT_ID => {
                    c.unique = true;
                    c.row_key = true;
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
        let col = col.clone();
        let buf = self.buffers.entry(table.to_string()).or_insert_with(|| TableBuffer::new(table, self.out_dir));
        buf.column_index(&col)
    }

    fn write_row(
        &mut self,
        table: &str,
        parent: Option<&str>,
        row: &[(String, &Value)],
        row_id: &str,
        link: Option<Link<'_>>,
        root_id: Option<&str>,
    ) -> Result<()> {
        self.ensure_table(table, parent);
        if !self.buffers.contains_key(table) {
            self.buffers.insert(table.to_string(), TableBuffer::new(table, self.out_dir));
        }
        let mut cells = std::mem::take(&mut self.cells);
        for (name, v) in row {
            if v.is_null() {
                let col = self.schema.tables[table].columns.get(name.as_str());
                if let Some(c) = col {
                    if c.nullable == Some(false) && c.is_complete() {
                        self.cells = cells;
                        return Err(Error::Schema(format!(
                            "table `{table}`, column `{name}`: null value for a column declared nullable=false (load {})",
                            self.load_id
                        )));
                    }
                }
                continue;
            }
            let (col, cell) = coerce::coerce_value(self.schema, self.naming.as_ref(), table, name, v)?;
            let buf = self.buffers.get_mut(table).expect("buffer");
            let i = buf.column_index(&col);
            cells.push((i, cell));
        }
        match link {
            None => {
                let i = self.dlt_column(table, C_DLT_LOAD_ID, DataType::Text);
                cells.push((i, Cell::Str(self.load_id.to_string())));
            }
            Some(l) => {
                if let Some(r) = l.root_id.or(root_id) {
                    let i = self.dlt_column(table, C_DLT_ROOT_ID, DataType::Text);
                    cells.push((i, Cell::Str(r.to_string())));
                }
                let i = self.dlt_column(table, C_DLT_PARENT_ID, DataType::Text);
                cells.push((i, Cell::Str(l.parent_id.to_string())));
                let i = self.dlt_column(table, C_DLT_LIST_IDX, DataType::Bigint);
                cells.push((i, Cell::Int(l.idx as i64)));
            }
        }
        if !row.iter().any(|(n, _)| n == C_DLT_ID) {
            let i = self.dlt_column(table, C_DLT_ID, DataType::Text);
            cells.push((i, Cell::Str(row_id.to_string())));
        }
        let buf = self.buffers.get_mut(table).expect("buffer");
        let r = buf.push_row(&mut cells);
        self.cells = cells;
        r
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
