//! The normalizer's fast path for JSON lines: items parsed into a [`tape`](crate::tape) on one
//! thread (with their row ids), turned into cells of known columns on another.
//!
//! An item takes the fast path when every value it holds fits a column its table already has,
//! with the type that column already has. Anything else — a new table, column or variant, a
//! `_dlt_id` of its own, keys colliding after normalization, a `json` column, a list of lists,
//! nesting beyond `max_table_nesting`, a line the tape parser did not accept — sends the whole
//! item through the regular serde_json path, which evolves the schema as dlt does (so the next
//! items of the same shape take the fast path again). Nothing of an item is written before the
//! fast path has accepted all of it, and both paths convert values with the same functions.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use dlt_core::error::{Error, IoContext, Result};
use dlt_core::schema::{C_DLT_ID, C_DLT_LIST_IDX, C_DLT_LOAD_ID, C_DLT_PARENT_ID, C_DLT_ROOT_ID};
use serde_json::Value;

use crate::buffers::Cell;
use crate::coerce::{Scalar, coerce_scalar};
use crate::tape::{self, ARR, Chunk, ESTR, FALSE, NULL, NUM, OBJ, STR, TRUE, TapeIds};
use crate::{Names, PARSE_CHUNK, Run, TableRef, read_lines};

/// Items that took the fast path (for tests).
#[cfg(test)]
pub(crate) static FAST_ITEMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Cells of the rows of one item, collected before any is written.
struct Rows<'c> {
    cells: Vec<(usize, Cell<'c>)>,
    /// (table, end of the row's cells)
    rows: Vec<(Arc<str>, usize)>,
    /// Per column index: the last row (counter) that set it, to find a column set twice.
    seen: Vec<u32>,
    /// Per (prefix, key) number: the last row (counter) that had it.
    seen_keys: Vec<u32>,
    stamp: u32,
    /// Objects still to flatten: (node, path prefix, nesting level).
    stack: Vec<(u32, Arc<str>, u32)>,
    /// Lists found in rows: (path, node).
    lists: Vec<(Arc<str>, u32)>,
}

/// What the fast path knows of the tables it writes; cleared whenever an item takes the regular
/// path (which may change columns).
#[derive(Default)]
pub(crate) struct FastCache {
    /// (table, path prefix) → what the key at each position of objects there meant last time.
    shapes: rustc_hash::FxHashMap<(usize, usize), Vec<Slot>>,
    /// table → positions of the columns dlt adds.
    links: rustc_hash::FxHashMap<usize, LinkCols>,
    /// (table, list path) → child table.
    children: rustc_hash::FxHashMap<(usize, usize), TableRef>,
}

impl FastCache {
    fn clear(&mut self) {
        self.shapes.clear();
        self.links.clear();
        self.children.clear();
    }
}

/// A key of an object, resolved.
struct Slot {
    key: Box<str>,
    key_id: u32,
    path: Arc<str>,
    /// The key's column in the table's buffer, if it has one (position, definition).
    col: Option<(usize, dlt_core::schema::Column)>,
    /// A null here must be refused (a non-nullable column).
    null_refused: bool,
    /// The column is `json`: nested values are not flattened.
    json: bool,
    /// The key needs the regular path: `_dlt_id` or another `_dlt` name, or a name that other
    /// keys also normalize to.
    reject: bool,
}

impl Slot {
    fn new(
        names: &mut Names,
        buf: &crate::buffers::TableBuffer,
        schema: &dlt_core::schema::Schema,
        json_cols: &mut rustc_hash::FxHashMap<Arc<str>, rustc_hash::FxHashSet<String>>,
        table: &Arc<str>,
        prefix: &Arc<str>,
        key: &str,
    ) -> Slot {
        let ((path, name), key_id) = names.key_id(prefix, key);
        let reject = key == C_DLT_ID || name.starts_with("_dlt") || names.ambiguous.contains(&name);
        let col = buf.column(&name).cloned();
        let null_refused = match &col {
            Some((_, c)) => c.nullable == Some(false) && c.is_complete(),
            None => schema.tables[table.as_ref()]
                .columns
                .get(name.as_ref())
                .is_some_and(|c| c.nullable == Some(false) && c.is_complete()),
        };
        let json = crate::json_column(json_cols, schema, table, &name);
        Slot { key: key.into(), key_id, path, col, null_refused, json, reject }
    }
}

/// Positions of the columns dlt adds, in one table's buffer.
#[derive(Clone, Copy)]
struct LinkCols {
    load_id: Option<usize>,
    root_id: Option<usize>,
    parent_id: Option<usize>,
    list_idx: Option<usize>,
    row_id: Option<usize>,
}

impl LinkCols {
    fn of(buf: &crate::buffers::TableBuffer) -> LinkCols {
        LinkCols {
            load_id: buf.cached_index(C_DLT_LOAD_ID),
            root_id: buf.cached_index(C_DLT_ROOT_ID),
            parent_id: buf.cached_index(C_DLT_PARENT_ID),
            list_idx: buf.cached_index(C_DLT_LIST_IDX),
            row_id: buf.cached_index(C_DLT_ID),
        }
    }
}

impl<'a> Run<'a> {
    /// Normalize a JSON lines file whose row ids are random: tape parsing and row ids on one
    /// thread, cells and Arrow builders on this one.
    pub(crate) fn normalize_jsonl_tape(
        &mut self,
        path: &Path,
        root: &TableRef,
        max_nesting: u32,
        on_progress: &(dyn Fn(u64) + Sync),
    ) -> Result<()> {
        let f = File::open(path).at(path)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Chunk>>(4);
        let (back_tx, back_rx) = std::sync::mpsc::channel::<Chunk>();
        let mut ids = TapeIds::new(Names::new(self.naming.clone()), max_nesting);
        let root_path: Arc<str> = root.path.clone();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut chunk = Chunk::default();
                let read = read_lines(path, f, |line, lineno| {
                    chunk.push_line(line, lineno);
                    if let Some(r) = chunk.lines.last().and_then(|l| l.root) {
                        ids.line(&root_path, &mut chunk, r);
                    }
                    if chunk.lines.len() == PARSE_CHUNK {
                        ids.finish(&mut chunk);
                        let mut next = back_rx.try_recv().unwrap_or_default();
                        next.clear();
                        return Ok(tx.send(Ok(std::mem::replace(&mut chunk, next))).is_ok());
                    }
                    Ok(true)
                });
                let _ = match read {
                    Err(e) => tx.send(Err(e)),
                    Ok(()) if !chunk.lines.is_empty() => {
                        ids.finish(&mut chunk);
                        tx.send(Ok(chunk))
                    }
                    Ok(()) => Ok(()),
                };
            });
            // allocations kept from chunk to chunk (cells borrow from their chunk)
            let mut spare_cells: Vec<(usize, Cell<'static>)> = Vec::new();
            let mut spare_rows: Vec<(Arc<str>, usize)> = Vec::new();
            let mut seen: Vec<u32> = Vec::new();
            let mut seen_keys: Vec<u32> = Vec::new();
            let mut stamp = 0u32;
            let mut fast_items = 0u64;
            let first_item = self.items;
            for chunk in rx {
                let chunk = chunk?;
                let mut out = Rows {
                    cells: crate::recycle(std::mem::take(&mut spare_cells)),
                    rows: std::mem::take(&mut spare_rows),
                    seen: std::mem::take(&mut seen),
                    seen_keys: std::mem::take(&mut seen_keys),
                    stamp,
                    stack: Vec::new(),
                    lists: Vec::new(),
                };
                for line in &chunk.lines {
                    let fast = match line.root {
                        Some(r) => self.fast_item(root, &chunk, r, max_nesting, &mut out)?,
                        None => false,
                    };
                    fast_items += fast as u64;
                    #[cfg(test)]
                    if fast {
                        FAST_ITEMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    if !fast {
                        // the regular path may add or change columns
                        self.fast_cache.clear();
                        let item: Value = serde_json::from_str(chunk.line_text(line)).map_err(|e| Error::BadInput {
                            location: format!("{}:{}", path.display(), line.lineno),
                            message: e.to_string(),
                        })?;
                        self.pre = None;
                        self.normalize_item(root, &item)?;
                    }
                    self.items += 1;
                    if self.items.is_multiple_of(10_000) {
                        on_progress(self.items);
                    }
                }
                spare_cells = crate::recycle(out.cells);
                spare_rows = out.rows;
                seen = out.seen;
                seen_keys = out.seen_keys;
                stamp = out.stamp;
                let _ = back_tx.send(chunk);
            }
            tracing::debug!("{}: {fast_items} of {} items took the fast path", path.display(), self.items - first_item);
            Ok::<(), Error>(())
        })?;
        on_progress(self.items);
        Ok(())
    }

    /// Write the item at `root` if it takes the fast path; `false` (nothing written) if not.
    fn fast_item<'c>(
        &mut self,
        table: &TableRef,
        ch: &'c Chunk,
        root: u32,
        max_nesting: u32,
        out: &mut Rows<'c>,
    ) -> Result<bool>
    where
        'a: 'c,
    {
        if ch.nodes[root as usize].kind != OBJ || ch.aux[root as usize] == u32::MAX {
            return Ok(false);
        }
        out.cells.clear();
        out.rows.clear();
        out.stack.clear();
        out.lists.clear();
        let row_id = ch.id(ch.aux[root as usize]);
        let propagate = self.table_meta.get(table.name.as_ref()).is_some_and(|m| m.propagate_root);
        let root_id = if propagate { Some(row_id) } else { None };
        if !self.fast_row(table, ch, root, row_id, None, root_id, 0, max_nesting, out) {
            return Ok(false);
        }
        let mut start = 0;
        for (t, end) in &out.rows {
            self.buffers.get_mut(t.as_ref()).expect("checked").push_cells(&out.cells[start..*end])?;
            start = *end;
        }
        Ok(true)
    }

    /// Collect the cells of one row and of the rows nested in it; `false` if the item must take
    /// the regular path.
    #[allow(clippy::too_many_arguments)]
    fn fast_row<'c>(
        &mut self,
        table: &TableRef,
        ch: &'c Chunk,
        obj: u32,
        row_id: &'c str,
        link: Option<(&'c str, usize)>,
        root_id: Option<&'c str>,
        lvl: u32,
        max_nesting: u32,
        out: &mut Rows<'c>,
    ) -> bool
    where
        'a: 'c,
    {
        let Some(buf) = self.buffers.get(table.name.as_ref()) else { return false };
        out.stamp = out.stamp.wrapping_add(1);
        let table_key = Arc::as_ptr(&table.name) as *const u8 as usize;
        let lists_start = out.lists.len();
        let stack_base = out.stack.len();
        out.stack.push((obj, self.names.empty.clone(), lvl));
        while out.stack.len() > stack_base {
            let (d, prefix, l) = out.stack.pop().expect("not empty");
            let slots =
                self.fast_cache.shapes.entry((table_key, Arc::as_ptr(&prefix) as *const u8 as usize)).or_default();
            for (p, (k, v)) in tape::members(&ch.nodes, d).enumerate() {
                let key = ch.str_of(k);
                // the slot of this position from earlier objects of the same shape, if the key
                // is the same: no name or column lookups
                if slots.get(p).is_none_or(|s| &*s.key != key) {
                    let slot =
                        Slot::new(&mut self.names, buf, self.schema, &mut self.json_cols, &table.name, &prefix, key);
                    if p < slots.len() {
                        slots[p] = slot;
                    } else {
                        slots.push(slot);
                    }
                }
                let slot = &slots[p];
                // a key given twice in one object (the last one wins): the regular path
                if slot.reject || !mark_key(out, slot.key_id) {
                    return false;
                }
                let node = ch.nodes[v as usize];
                let scalar = match node.kind {
                    OBJ | ARR => {
                        if l >= max_nesting || slot.json {
                            return false;
                        }
                        if node.kind == OBJ {
                            out.stack.push((v, slot.path.clone(), l + 1));
                        } else if node.a > 0 {
                            out.lists.push((slot.path.clone(), v));
                        }
                        continue;
                    }
                    NULL => {
                        // a key given twice (the last one wins, even a null): the regular path
                        if slot.null_refused || slot.col.as_ref().is_some_and(|(i, _)| !mark(out, *i)) {
                            return false;
                        }
                        continue;
                    }
                    TRUE => Scalar::Bool(true),
                    FALSE => Scalar::Bool(false),
                    NUM => Scalar::Num(ch.num_of(node)),
                    STR | ESTR => Scalar::Str(ch.str_of(node)),
                    _ => return false,
                };
                let Some((i, col)) = &slot.col else { return false };
                let Some(cell) = coerce_scalar(col, scalar) else { return false };
                if !mark(out, *i) {
                    return false;
                }
                out.cells.push((*i, cell));
            }
        }
        // the columns dlt adds
        let links = *self.fast_cache.links.entry(table_key).or_insert_with(|| LinkCols::of(buf));
        match link {
            None => {
                let Some(i) = links.load_id else { return false };
                out.cells.push((i, Cell::Str(std::borrow::Cow::Borrowed(self.load_id))));
            }
            Some((parent_id, idx)) => {
                if let Some(r) = root_id {
                    let Some(i) = links.root_id else { return false };
                    out.cells.push((i, Cell::Str(std::borrow::Cow::Borrowed(r))));
                }
                let (Some(p), Some(x)) = (links.parent_id, links.list_idx) else {
                    return false;
                };
                out.cells.push((p, Cell::Str(std::borrow::Cow::Borrowed(parent_id))));
                out.cells.push((x, Cell::Int(idx as i64)));
            }
        }
        let Some(i) = links.row_id else { return false };
        out.cells.push((i, Cell::Str(std::borrow::Cow::Borrowed(row_id))));
        out.rows.push((table.name.clone(), out.cells.len()));
        let lists_end = out.lists.len();
        for li in lists_start..lists_end {
            let (list_path, list) = out.lists[li].clone();
            let first = ch.aux[list as usize];
            if first == u32::MAX {
                return false;
            }
            let child_key = (table_key, Arc::as_ptr(&list_path) as *const u8 as usize);
            let child = match self.fast_cache.children.get(&child_key) {
                Some(c) => c.clone(),
                None => {
                    let (child_path, child_name) = self.names.child_table(&table.path, &list_path);
                    let c = TableRef { path: child_path, name: child_name, parent: Some(table.name.clone()) };
                    self.fast_cache.children.insert(child_key, c.clone());
                    c
                }
            };
            for (idx, el) in tape::elements(&ch.nodes, list).enumerate() {
                let id = ch.id(first + idx as u32);
                let node = ch.nodes[el as usize];
                match node.kind {
                    OBJ => {
                        if !self.fast_row(&child, ch, el, id, Some((row_id, idx)), root_id, lvl + 1, max_nesting, out) {
                            return false;
                        }
                    }
                    ARR => return false,
                    _ => {
                        if !self.fast_value_row(&child, ch, node, id, (row_id, idx), root_id, out) {
                            return false;
                        }
                    }
                }
            }
        }
        out.lists.truncate(lists_start);
        true
    }

    /// A row of a list of scalars: the element in the column `value`.
    #[allow(clippy::too_many_arguments)]
    fn fast_value_row<'c>(
        &mut self,
        table: &TableRef,
        ch: &'c Chunk,
        node: tape::Node,
        row_id: &'c str,
        (parent_id, idx): (&'c str, usize),
        root_id: Option<&'c str>,
        out: &mut Rows<'c>,
    ) -> bool {
        let (_, value) = self.names.key(&self.names.empty.clone(), "value");
        let Some(buf) = self.buffers.get(table.name.as_ref()) else { return false };
        let scalar = match node.kind {
            NULL => None,
            TRUE => Some(Scalar::Bool(true)),
            FALSE => Some(Scalar::Bool(false)),
            NUM => Some(Scalar::Num(ch.num_of(node))),
            STR | ESTR => Some(Scalar::Str(ch.str_of(node))),
            _ => return false,
        };
        match scalar {
            Some(s) => {
                let Some((i, cell)) = buf.try_fast_scalar(&value, s) else { return false };
                out.cells.push((i, cell));
            }
            None => {
                if buf.refuses_null(&value) != Some(false) {
                    return false;
                }
            }
        }
        if let Some(r) = root_id {
            let Some(i) = buf.cached_index(C_DLT_ROOT_ID) else { return false };
            out.cells.push((i, Cell::Str(std::borrow::Cow::Borrowed(r))));
        }
        let (Some(p), Some(x), Some(d)) =
            (buf.cached_index(C_DLT_PARENT_ID), buf.cached_index(C_DLT_LIST_IDX), buf.cached_index(C_DLT_ID))
        else {
            return false;
        };
        out.cells.push((p, Cell::Str(std::borrow::Cow::Borrowed(parent_id))));
        out.cells.push((x, Cell::Int(idx as i64)));
        out.cells.push((d, Cell::Str(std::borrow::Cow::Borrowed(row_id))));
        out.rows.push((table.name.clone(), out.cells.len()));
        true
    }
}

/// Note that column `i` is set in the current row; `false` if it already was.
#[inline]
fn mark(out: &mut Rows<'_>, i: usize) -> bool {
    if out.seen.len() <= i {
        out.seen.resize(i + 1, 0);
    }
    if out.seen[i] == out.stamp {
        return false;
    }
    out.seen[i] = out.stamp;
    true
}

/// Note that key number `k` occurs in the current row; `false` if it already did.
#[inline]
fn mark_key(out: &mut Rows<'_>, k: u32) -> bool {
    let k = k as usize;
    if out.seen_keys.len() <= k {
        out.seen_keys.resize(k + 1, 0);
    }
    if out.seen_keys[k] == out.stamp {
        return false;
    }
    out.seen_keys[k] = out.stamp;
    true
}
