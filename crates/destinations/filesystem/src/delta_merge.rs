//! `merge` into Delta tables without DataFusion: the rows of the existing data files whose key
//! matches the package are found by reading only the key columns, just those files are
//! rewritten without the matched rows (streamed row group by row group), the package's rows are
//! written as new files, and one Delta commit per table removes the rewritten files and adds the
//! new ones (operation `MERGE`, with the load's application transaction).
//!
//! Strategies (the root table's `x-merge-strategy`):
//! - `upsert` (dlt's strategy for Delta): a row whose primary key matches an existing row
//!   replaces it, new keys are inserted. Nested tables: the rows of every root `_dlt_id` in the
//!   package (`_dlt_root_id`) and of every incoming nested `_dlt_id` are replaced by the package's
//!   nested rows, so nested rows the new data no longer has are removed.
//! - `delete-insert` (what dlt-rs records when no strategy is given): existing rows matching a
//!   primary key or a merge key of the package are deleted with their nested rows, then the
//!   package's rows are inserted. Without either key the rows are appended.
//! - `insert-only`: rows whose primary key exists are skipped, the others inserted with their
//!   nested rows.
//!
//! Within a package a primary key occurring several times keeps its last row (nested rows keep
//! the last row of each `_dlt_id`). A `hard_delete` column (bool: `true`; other types: not
//! null) deletes the key's existing row and is not inserted.
//!
//! Order of the commits (each table one transaction): nested tables first, the root table last,
//! so a retried package (whose committed tables are skipped through the application transaction)
//! still finds the root table as it was and derives the same nested rows to remove.

use std::collections::{HashMap, HashSet};
use std::path::Path as FsPath;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};
use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::protocol::{DeltaOperation, MergePredicate};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use dlt_core::schema::{Schema, Table};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path as ObjPath;
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};

use crate::delta::{FLUSH_BYTES, Prepared, commit_properties, conform, derr, prepare, table_handle};
use crate::error::{FsError, FsResult};
use crate::storage::Store;

const ROW_ID: &str = "_dlt_id";
const ROOT_ID: &str = "_dlt_root_id";

/// How a table chain is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Replace rows by primary key, insert new keys.
    Upsert,
    /// Delete rows matching a primary or merge key, insert the package's rows.
    DeleteInsert,
    /// Insert rows whose primary key does not exist.
    InsertOnly,
}

/// The merge settings of a root table.
#[derive(Debug, Clone)]
pub struct MergeSpec {
    /// The strategy.
    pub strategy: Strategy,
    /// Primary key columns.
    pub primary_key: Vec<String>,
    /// Merge key columns (`delete-insert` only).
    pub merge_key: Vec<String>,
    /// The `hard_delete` column, if any.
    pub hard_delete: Option<String>,
}

/// The merge settings of the root table `root`, or a terminal error for what Delta merges
/// cannot do here (checked before anything is written).
pub fn merge_spec(schema: &Schema, root: &str) -> FsResult<MergeSpec> {
    let t = schema.tables.get(root).ok_or_else(|| FsError::Config(format!("table `{root}` is not in the schema")))?;
    let unsupported = |m: String| FsError::Unsupported(format!("Delta table `{root}`: {m}"));
    let strategy = match t.merge_strategy().unwrap_or("delete-insert") {
        "upsert" => Strategy::Upsert,
        "delete-insert" => Strategy::DeleteInsert,
        "insert-only" => Strategy::InsertOnly,
        other => {
            return Err(unsupported(format!(
                "merge strategy `{other}` is not supported on Delta tables (upsert, delete-insert, insert-only)"
            )));
        }
    };
    let cols: Vec<_> = t.complete_columns().collect();
    let primary_key: Vec<String> = cols.iter().filter(|c| c.primary_key).map(|c| c.name.clone()).collect();
    let merge_key: Vec<String> = cols.iter().filter(|c| c.merge_key).map(|c| c.name.clone()).collect();
    if let Some(c) = cols.iter().find(|c| c.dedup_sort.is_some()) {
        return Err(unsupported(format!(
            "the `dedup_sort` hint (column `{}`) is not supported on Delta tables",
            c.name
        )));
    }
    if strategy != Strategy::DeleteInsert && primary_key.is_empty() {
        return Err(unsupported(format!(
            "merge strategy `{}` needs a primary key",
            if strategy == Strategy::Upsert { "upsert" } else { "insert-only" }
        )));
    }
    if strategy != Strategy::DeleteInsert && !merge_key.is_empty() {
        tracing::warn!("Delta table `{root}`: the merge key is only used by delete-insert; it is ignored");
    }
    let hard_delete = cols.iter().find(|c| c.hard_delete).map(|c| c.name.clone());
    Ok(MergeSpec {
        strategy,
        primary_key,
        merge_key: if strategy == Strategy::DeleteInsert { merge_key } else { vec![] },
        hard_delete,
    })
}

/// One table of a merged chain: the dlt table, its bucket-relative folder, the package's job
/// files for it.
#[derive(Debug)]
pub struct ChainTable<'a> {
    /// The dlt table.
    pub table: &'a Table,
    /// The table's folder (bucket-relative).
    pub dir: String,
    /// The package's job files (parquet) for the table.
    pub files: Vec<&'a FsPath>,
}

fn job_err(path: &FsPath, e: impl std::fmt::Display) -> FsError {
    FsError::Job { path: path.display().to_string(), message: e.to_string() }
}

fn terminal(table: &str, m: impl std::fmt::Display) -> FsError {
    FsError::Delta { message: format!("Delta table `{table}`: {m}"), transient: false }
}

/// Keys of a set of columns, encoded with arrow's row format (`None` where a value is null: a
/// null key matches nothing, as in SQL).
struct KeyCols {
    names: Vec<String>,
    converter: RowConverter,
}

impl KeyCols {
    fn new(names: &[String], target: &ArrowSchema, table: &str) -> FsResult<Option<KeyCols>> {
        if names.is_empty() {
            return Ok(None);
        }
        let fields = names
            .iter()
            .map(|n| {
                target
                    .field_with_name(n)
                    .map(|f| SortField::new(f.data_type().clone()))
                    .map_err(|_| terminal(table, format!("key column `{n}` is not in the table")))
            })
            .collect::<FsResult<Vec<_>>>()?;
        let converter = RowConverter::new(fields).map_err(|e| terminal(table, e))?;
        Ok(Some(KeyCols { names: names.to_vec(), converter }))
    }

    /// The encoded keys and, per row, whether every key value is present.
    fn rows(&self, batch: &RecordBatch, table: &str) -> FsResult<(Rows, Vec<bool>)> {
        let cols: Vec<ArrayRef> = self
            .names
            .iter()
            .map(|n| batch.column_by_name(n).cloned().ok_or_else(|| terminal(table, format!("no column `{n}`"))))
            .collect::<FsResult<_>>()?;
        let valid = (0..batch.num_rows()).map(|i| cols.iter().all(|c| c.is_valid(i))).collect();
        let rows = self.converter.convert_columns(&cols).map_err(|e| terminal(table, e))?;
        Ok((rows, valid))
    }
}

fn string_col<'b>(batch: &'b RecordBatch, name: &str, table: &str) -> FsResult<Option<&'b StringArray>> {
    match batch.column_by_name(name) {
        None => Ok(None),
        Some(c) => c
            .as_string_opt::<i32>()
            .map(Some)
            .ok_or_else(|| terminal(table, format!("column `{name}` is not a string column"))),
    }
}

fn deleted_flags(batch: &RecordBatch, column: Option<&str>) -> Vec<bool> {
    let n = batch.num_rows();
    match column.and_then(|c| batch.column_by_name(c)) {
        None => vec![false; n],
        Some(c) => match c.as_boolean_opt() {
            Some(b) => (0..n).map(|i| b.is_valid(i) && b.value(i)).collect(),
            None => (0..n).map(|i| c.is_valid(i)).collect(),
        },
    }
}

/// A data file of the table's current version.
struct ActiveFile {
    path: String,
    size: u64,
    partition_values: Vec<(String, Option<String>)>,
    remove: deltalake::kernel::Remove,
}

async fn active_files(table: &DeltaTable, name: &str) -> FsResult<Vec<ActiveFile>> {
    let snapshot = table.snapshot().map_err(|e| derr(e, name, "reading the snapshot"))?;
    let views: Vec<_> = snapshot
        .snapshot()
        .file_views(&table.log_store(), None)
        .try_collect()
        .await
        .map_err(|e| derr(e, name, "listing the files"))?;
    let mut out = Vec::with_capacity(views.len());
    for f in views {
        if f.deletion_vector_descriptor().is_some() {
            return Err(terminal(
                name,
                format!("file {} has a deletion vector, which dlt-rs' merge cannot read; run OPTIMIZE first", f.path()),
            ));
        }
        let remove = f.remove_action(true);
        out.push(ActiveFile {
            path: f.path().to_string(),
            size: f.size().max(0) as u64,
            partition_values: remove.partition_values.clone().unwrap_or_default().into_iter().collect(),
            remove,
        });
    }
    Ok(out)
}

/// Reads a table's data file in batches, with its partition columns filled in from the log and
/// every batch conformed to `target` (the table's columns, or a part of them).
struct ActiveReader<'a> {
    stream: parquet::arrow::async_reader::ParquetRecordBatchStream<ParquetObjectReader>,
    file: &'a ActiveFile,
    target: SchemaRef,
    name: &'a str,
}

fn read_err(name: &str, path: &str, e: parquet::errors::ParquetError) -> FsError {
    FsError::Delta {
        message: format!("Delta table `{name}`: reading {path}: {e}"),
        transient: matches!(e, parquet::errors::ParquetError::External(_)),
    }
}

impl<'a> ActiveReader<'a> {
    async fn open(
        store: &Arc<dyn ObjectStore>,
        file: &'a ActiveFile,
        target: &SchemaRef,
        name: &'a str,
    ) -> FsResult<ActiveReader<'a>> {
        let location = ObjPath::parse(&file.path).unwrap_or_else(|_| ObjPath::from(file.path.as_str()));
        let reader = ParquetObjectReader::new(store.clone(), location).with_file_size(file.size);
        let builder = ParquetRecordBatchStreamBuilder::new(reader).await.map_err(|e| read_err(name, &file.path, e))?;
        let in_file: Vec<usize> = builder
            .parquet_schema()
            .root_schema()
            .get_fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| target.field_with_name(f.name()).is_ok())
            .map(|(i, _)| i)
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), in_file);
        let stream = builder.with_projection(mask).build().map_err(|e| read_err(name, &file.path, e))?;
        Ok(ActiveReader { stream, file, target: target.clone(), name })
    }

    async fn next(&mut self) -> FsResult<Option<RecordBatch>> {
        loop {
            let Some(batch) = self.stream.next().await else { return Ok(None) };
            let batch = batch.map_err(|e| read_err(self.name, &self.file.path, e))?;
            if batch.num_rows() == 0 {
                continue;
            }
            // partition columns live in the folder names, not in the file
            let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
            let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
            for (k, v) in &self.file.partition_values {
                if self.target.field_with_name(k).is_ok() && batch.column_by_name(k).is_none() {
                    fields.push(Field::new(k, ArrowType::Utf8, true));
                    cols.push(Arc::new(StringArray::from(vec![v.as_deref(); batch.num_rows()])));
                }
            }
            let full =
                RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), cols).map_err(|e| terminal(self.name, e))?;
            return Ok(Some(conform(&full, &self.target, self.name)?));
        }
    }
}

/// The table's Arrow schema as delta-rs' writer takes it (partition columns included).
fn table_schema(table: &DeltaTable, name: &str) -> FsResult<SchemaRef> {
    Ok(RecordBatchWriter::for_table(table).map_err(|e| derr(e, name, "reading the schema"))?.arrow_schema())
}

fn project(target: &SchemaRef, names: &[&str]) -> SchemaRef {
    Arc::new(ArrowSchema::new(
        target.fields().iter().filter(|f| names.contains(&f.name().as_str())).cloned().collect::<Vec<_>>(),
    ))
}

/// Reads a package's job file (local parquet) in batches conformed to `target`.
struct JobReader<'a> {
    inner: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    path: &'a FsPath,
    target: SchemaRef,
    name: &'a str,
}

impl<'a> JobReader<'a> {
    fn open(path: &'a FsPath, target: &SchemaRef, name: &'a str) -> FsResult<JobReader<'a>> {
        let f = std::fs::File::open(path).map_err(|e| job_err(path, e))?;
        let inner = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .and_then(|b| b.build())
            .map_err(|e| job_err(path, e))?;
        Ok(JobReader { inner, path, target: target.clone(), name })
    }

    fn next(&mut self) -> FsResult<Option<RecordBatch>> {
        for batch in self.inner.by_ref() {
            let batch = batch.map_err(|e| job_err(self.path, e))?;
            if batch.num_rows() > 0 {
                return Ok(Some(conform(&batch, &self.target, self.name)?));
            }
        }
        Ok(None)
    }
}

/// Which rows of an existing file are replaced (`true`: the row goes).
type Matcher<'m> = dyn Fn(&RecordBatch) -> FsResult<Vec<bool>> + Send + Sync + 'm;

/// Writes the table's new version: the `rewrite` files without the rows `matcher` selects, plus
/// the package's rows `insert` keeps (per job file and row number), in one `MERGE` commit.
#[allow(clippy::too_many_arguments)]
async fn commit_merge(
    table: &DeltaTable,
    name: &str,
    rewrite: &[&ActiveFile],
    matcher: &Matcher<'_>,
    files: &[&FsPath],
    insert: &[Vec<usize>],
    predicate: &str,
    load_id: &str,
) -> FsResult<()> {
    if rewrite.is_empty() && insert.iter().all(Vec::is_empty) {
        tracing::debug!("Delta table `{name}`: nothing to merge");
        return Ok(());
    }
    let mut writer = RecordBatchWriter::for_table(table).map_err(|e| derr(e, name, "starting the writer"))?;
    let target = writer.arrow_schema();
    let store = table.object_store();
    let mut actions: Vec<Action> = vec![];
    let mut kept_rows = 0usize;
    for file in rewrite {
        let mut reader = ActiveReader::open(&store, file, &target, name).await?;
        while let Some(b) = reader.next().await? {
            let keep = BooleanArray::from(matcher(&b)?.into_iter().map(|goes| !goes).collect::<Vec<_>>());
            let b = filter_record_batch(&b, &keep).map_err(|e| terminal(name, e))?;
            if b.num_rows() == 0 {
                continue;
            }
            kept_rows += b.num_rows();
            writer.write(b).await.map_err(|e| derr(e, name, "writing"))?;
            if writer.buffer_len() >= FLUSH_BYTES {
                actions
                    .extend(writer.flush().await.map_err(|e| derr(e, name, "writing"))?.into_iter().map(Action::Add));
            }
        }
        actions.push(Action::Remove(file.remove.clone()));
    }
    let mut inserted = 0usize;
    for (path, rows) in files.iter().zip(insert) {
        if rows.is_empty() {
            continue;
        }
        let mut offset = 0usize;
        let mut next = 0usize;
        let mut reader = JobReader::open(path, &target, name)?;
        while let Some(b) = reader.next()? {
            let n = b.num_rows();
            let mut keep = vec![false; n];
            while next < rows.len() && rows[next] < offset + n {
                keep[rows[next] - offset] = true;
                next += 1;
            }
            offset += n;
            let b = filter_record_batch(&b, &BooleanArray::from(keep)).map_err(|e| terminal(name, e))?;
            if b.num_rows() == 0 {
                continue;
            }
            inserted += b.num_rows();
            writer.write(b).await.map_err(|e| derr(e, name, "writing"))?;
            if writer.buffer_len() >= FLUSH_BYTES {
                actions
                    .extend(writer.flush().await.map_err(|e| derr(e, name, "writing"))?.into_iter().map(Action::Add));
            }
        }
    }
    actions.extend(writer.flush().await.map_err(|e| derr(e, name, "writing"))?.into_iter().map(Action::Add));
    let snapshot = table.snapshot().map_err(|e| derr(e, name, "reading the snapshot"))?.clone();
    let pred = |a: &str| MergePredicate { action_type: a.to_string(), predicate: None };
    let operation = DeltaOperation::Merge {
        predicate: None,
        merge_predicate: Some(predicate.to_string()),
        matched_predicates: vec![pred("update")],
        not_matched_predicates: vec![pred("insert")],
        not_matched_by_source_predicates: vec![],
    };
    let finalized = CommitBuilder::from(commit_properties(load_id))
        .with_actions(actions)
        .build(Some(&snapshot), table.log_store(), operation)
        .await
        .map_err(|e| derr(e, name, "committing the merge"))?;
    tracing::debug!(
        "Delta table `{name}`: merge committed as version {} ({} files rewritten keeping {kept_rows} rows, {inserted} rows inserted)",
        finalized.version(),
        rewrite.len()
    );
    Ok(())
}

/// What the package's root rows do.
struct RootPlan {
    /// Per job file, the row numbers to insert (ascending).
    insert: Vec<Vec<usize>>,
    /// `_dlt_id`s of the inserted root rows (their nested rows are inserted).
    inserted_ids: HashSet<String>,
    /// `_dlt_root_id`s whose existing nested rows are removed.
    removed_roots: HashSet<String>,
}

struct Winner {
    file: usize,
    row: usize,
    id: Option<String>,
    deleted: bool,
}

/// Merges a package into a chain of Delta tables (`chain[0]` is the root; see the module docs).
pub fn merge(store: &Store, spec: &MergeSpec, chain: &[ChainTable<'_>], load_id: &str) -> FsResult<()> {
    let mut handles =
        chain.iter().map(|c| table_handle(store, &c.dir, &c.table.name)).collect::<FsResult<Vec<DeltaTable>>>()?;
    store.block_on(async move { merge_async(&mut handles, spec, chain, load_id).await }).map_err(|e| match e {
        FsError::Delta { message, transient } => FsError::Delta { message: store.redact(message), transient },
        e => e,
    })
}

async fn merge_async(
    handles: &mut [DeltaTable],
    spec: &MergeSpec,
    chain: &[ChainTable<'_>],
    load_id: &str,
) -> FsResult<()> {
    let (root_handle, nested_handles) = handles.split_first_mut().expect("a chain has a root");
    let root = &chain[0];
    let name = root.table.name.as_str();
    match prepare(root_handle, root.table, !root.files.is_empty(), load_id).await? {
        Prepared::Absent | Prepared::Committed => return Ok(()),
        Prepared::Ready => {}
    }
    let target = table_schema(root_handle, name)?;
    let pk = KeyCols::new(&spec.primary_key, &target, name)?;
    let mk = KeyCols::new(&spec.merge_key, &target, name)?;

    // 1. the package's root rows: the last row of every primary key wins
    let mut winners: HashMap<Vec<u8>, Winner> = HashMap::new();
    let mut merge_keys: HashSet<Vec<u8>> = HashSet::new();
    let mut incoming_ids: HashSet<String> = HashSet::new();
    let mut unkeyed: Vec<Winner> = vec![];
    for (fi, path) in root.files.iter().enumerate() {
        let mut offset = 0usize;
        let mut reader = JobReader::open(path, &target, name)?;
        while let Some(b) = reader.next()? {
            let ids = string_col(&b, ROW_ID, name)?;
            let deleted = deleted_flags(&b, spec.hard_delete.as_deref());
            let pk_rows = pk.as_ref().map(|k| k.rows(&b, name)).transpose()?;
            if let Some(k) = &mk {
                let (rows, valid) = k.rows(&b, name)?;
                for i in (0..b.num_rows()).filter(|i| valid[*i]) {
                    merge_keys.insert(rows.row(i).as_ref().to_vec());
                }
            }
            for (i, del) in deleted.iter().enumerate() {
                let id = ids.filter(|a| a.is_valid(i)).map(|a| a.value(i).to_string());
                if let Some(id) = &id {
                    incoming_ids.insert(id.clone());
                }
                let w = Winner { file: fi, row: offset + i, id, deleted: *del };
                match &pk_rows {
                    Some((rows, valid)) if valid[i] => {
                        winners.insert(rows.row(i).as_ref().to_vec(), w);
                    }
                    _ => unkeyed.push(w),
                }
            }
            offset += b.num_rows();
        }
    }

    // 2. the existing root rows: which keys exist, which files hold rows to replace
    let mut key_names: Vec<&str> = spec.primary_key.iter().chain(&spec.merge_key).map(String::as_str).collect();
    key_names.push(ROW_ID);
    let key_schema = project(&target, &key_names);
    let files = active_files(root_handle, name).await?;
    let store = root_handle.object_store();
    let mut existing_keys: HashSet<Vec<u8>> = HashSet::new();
    let mut removed_ids: HashSet<String> = HashSet::new();
    let mut rewrite: Vec<&ActiveFile> = vec![];
    let matches = |b: &RecordBatch| -> FsResult<Vec<bool>> {
        let mut m = vec![false; b.num_rows()];
        if let Some(k) = &pk {
            let (rows, valid) = k.rows(b, name)?;
            for (i, hit) in m.iter_mut().enumerate() {
                *hit |= valid[i] && winners.contains_key(rows.row(i).as_ref());
            }
        }
        if let Some(k) = &mk {
            let (rows, valid) = k.rows(b, name)?;
            for (i, hit) in m.iter_mut().enumerate() {
                *hit |= valid[i] && merge_keys.contains(rows.row(i).as_ref());
            }
        }
        Ok(m)
    };
    if !winners.is_empty() || !merge_keys.is_empty() {
        for file in &files {
            let mut hit = false;
            let mut reader = ActiveReader::open(&store, file, &key_schema, name).await?;
            while let Some(b) = reader.next().await? {
                let m = matches(&b)?;
                if !m.iter().any(|x| *x) {
                    continue;
                }
                hit = true;
                if spec.strategy == Strategy::InsertOnly {
                    let (rows, _) = pk.as_ref().expect("insert-only has a primary key").rows(&b, name)?;
                    for i in (0..b.num_rows()).filter(|i| m[*i]) {
                        existing_keys.insert(rows.row(i).as_ref().to_vec());
                    }
                } else if let Some(ids) = string_col(&b, ROW_ID, name)? {
                    for i in (0..b.num_rows()).filter(|i| m[*i] && ids.is_valid(*i)) {
                        removed_ids.insert(ids.value(i).to_string());
                    }
                }
            }
            if hit && spec.strategy != Strategy::InsertOnly {
                rewrite.push(file);
            }
        }
    }

    // 3. the plan: rows to insert, nested rows to remove
    let mut plan = RootPlan {
        insert: vec![vec![]; root.files.len()],
        inserted_ids: HashSet::new(),
        removed_roots: match spec.strategy {
            Strategy::Upsert => removed_ids.union(&incoming_ids).cloned().collect(),
            Strategy::DeleteInsert => removed_ids,
            Strategy::InsertOnly => HashSet::new(),
        },
    };
    let mut chosen: Vec<&Winner> = unkeyed.iter().filter(|w| !w.deleted).collect();
    for (k, w) in &winners {
        let exists = spec.strategy == Strategy::InsertOnly && existing_keys.contains(k);
        if !w.deleted && !exists {
            chosen.push(w);
        }
    }
    for w in chosen {
        plan.insert[w.file].push(w.row);
        if let Some(id) = &w.id {
            plan.inserted_ids.insert(id.clone());
        }
    }
    for rows in &mut plan.insert {
        rows.sort_unstable();
    }

    // 4. nested tables first (each its own commit), the root last
    for (t, h) in chain[1..].iter().zip(nested_handles.iter_mut()) {
        merge_nested(h, t, spec.strategy, &plan, load_id).await?;
    }
    let predicate =
        spec.primary_key.iter().chain(&spec.merge_key).map(|c| format!("target.{c} = source.{c}")).collect::<Vec<_>>();
    let predicate = if predicate.is_empty() { "false".to_string() } else { predicate.join(" AND ") };
    // fault point: the nested tables are committed, the root table is not
    dlt_core::fault::hit("load.filesystem.delta_merge_root");
    let matcher: Box<Matcher<'_>> = if spec.strategy == Strategy::InsertOnly {
        Box::new(|b: &RecordBatch| Ok(vec![false; b.num_rows()]))
    } else {
        Box::new(matches)
    };
    commit_merge(root_handle, name, &rewrite, matcher.as_ref(), &root.files, &plan.insert, &predicate, load_id).await
}

/// Merges a nested table: removes the nested rows of the replaced roots (and, for upsert, the
/// rows whose `_dlt_id` arrives again), inserts the package's rows of the inserted roots.
async fn merge_nested(
    handle: &mut DeltaTable,
    t: &ChainTable<'_>,
    strategy: Strategy,
    plan: &RootPlan,
    load_id: &str,
) -> FsResult<()> {
    let name = t.table.name.as_str();
    match prepare(handle, t.table, !t.files.is_empty(), load_id).await? {
        Prepared::Absent | Prepared::Committed => return Ok(()),
        Prepared::Ready => {}
    }
    let target = table_schema(handle, name)?;
    // the package's rows: those of inserted roots, the last of every _dlt_id
    let mut last: HashMap<String, (usize, usize)> = HashMap::new();
    let mut insert: Vec<Vec<usize>> = vec![vec![]; t.files.len()];
    for (fi, path) in t.files.iter().enumerate() {
        let mut offset = 0usize;
        let mut reader = JobReader::open(path, &target, name)?;
        while let Some(b) = reader.next()? {
            let roots = string_col(&b, ROOT_ID, name)?.ok_or_else(|| {
                terminal(name, format!("the nested table of a merged table has no `{ROOT_ID}` column"))
            })?;
            let ids = string_col(&b, ROW_ID, name)?;
            for i in 0..b.num_rows() {
                if !(roots.is_valid(i) && plan.inserted_ids.contains(roots.value(i))) {
                    continue;
                }
                match ids.filter(|a| a.is_valid(i)) {
                    Some(a) => {
                        last.insert(a.value(i).to_string(), (fi, offset + i));
                    }
                    None => insert[fi].push(offset + i),
                }
            }
            offset += b.num_rows();
        }
    }
    for (fi, row) in last.values() {
        insert[*fi].push(*row);
    }
    for rows in &mut insert {
        rows.sort_unstable();
    }
    // the existing rows to remove
    let replaced_ids: HashSet<&str> =
        if strategy == Strategy::Upsert { last.keys().map(String::as_str).collect() } else { HashSet::new() };
    let matcher = |b: &RecordBatch| -> FsResult<Vec<bool>> {
        let roots = string_col(b, ROOT_ID, name)?;
        let ids = string_col(b, ROW_ID, name)?;
        Ok((0..b.num_rows())
            .map(|i| {
                roots.is_some_and(|r| r.is_valid(i) && plan.removed_roots.contains(r.value(i)))
                    || ids.is_some_and(|a| a.is_valid(i) && replaced_ids.contains(a.value(i)))
            })
            .collect())
    };
    let mut rewrite: Vec<&ActiveFile> = vec![];
    let files = active_files(handle, name).await?;
    if !plan.removed_roots.is_empty() || !replaced_ids.is_empty() {
        let key_schema = project(&target, &[ROOT_ID, ROW_ID]);
        let store = handle.object_store();
        for file in &files {
            let mut hit = false;
            let mut reader = ActiveReader::open(&store, file, &key_schema, name).await?;
            while let Some(b) = reader.next().await? {
                hit |= matcher(&b)?.into_iter().any(|x| x);
            }
            if hit {
                rewrite.push(file);
            }
        }
    }
    let predicate = format!("target.{ROW_ID} = source.{ROW_ID}");
    commit_merge(handle, name, &rewrite, &matcher, &t.files, &insert, &predicate, load_id).await
}
