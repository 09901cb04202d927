//! Per-table columnar buffers flushed to parquet job files.

use rustc_hash::FxHashMap as HashMap;
use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder,
    Int64Builder, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use dlt_core::destination::{FileFormat, JobFile};
use dlt_core::error::{Error, IoContext, Result};
use dlt_core::schema::{Column, DataType};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// A value already coerced to its column's type (text borrowed from the item where it can be).
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    /// Text or JSON text.
    Str(Cow<'a, str>),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// Timestamp, UTC microseconds.
    Micros(i64),
    /// Date, days since epoch.
    Days(i32),
    /// Time of day, microseconds.
    TimeMicros(i64),
    /// Decimal, unscaled at the column's scale.
    Decimal(i128),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl Cell<'_> {
    /// The same value, owning its text.
    pub fn into_owned(self) -> Cell<'static> {
        match self {
            Cell::Str(s) => Cell::Str(Cow::Owned(s.into_owned())),
            Cell::Int(v) => Cell::Int(v),
            Cell::Float(v) => Cell::Float(v),
            Cell::Bool(v) => Cell::Bool(v),
            Cell::Micros(v) => Cell::Micros(v),
            Cell::Days(v) => Cell::Days(v),
            Cell::TimeMicros(v) => Cell::TimeMicros(v),
            Cell::Decimal(v) => Cell::Decimal(v),
            Cell::Bytes(v) => Cell::Bytes(v),
        }
    }
}

/// The Arrow type a dlt column is written as.
pub fn arrow_type(col: &Column) -> ArrowType {
    match col.data_type.unwrap_or(DataType::Text) {
        DataType::Text | DataType::Json => ArrowType::Utf8,
        DataType::Bigint => ArrowType::Int64,
        DataType::Double => ArrowType::Float64,
        DataType::Bool => ArrowType::Boolean,
        DataType::Timestamp => {
            let tz = if col.timezone.unwrap_or(true) { Some("UTC".into()) } else { None };
            ArrowType::Timestamp(TimeUnit::Microsecond, tz)
        }
        DataType::Date => ArrowType::Date32,
        DataType::Time => ArrowType::Time64(TimeUnit::Microsecond),
        DataType::Decimal => {
            let (p, s) = decimal_precision(col);
            ArrowType::Decimal128(p as u8, s as i8)
        }
        DataType::Wei => ArrowType::Decimal128(38, 0),
        DataType::Binary => ArrowType::Binary,
    }
}

/// Precision and scale of a decimal column (dlt default 38,9).
pub fn decimal_precision(col: &Column) -> (u32, u32) {
    match col.data_type {
        Some(DataType::Wei) => (38, 0),
        _ => (col.precision.unwrap_or(38).min(38), col.scale.unwrap_or(9)),
    }
}

enum Builder {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder, Option<Arc<str>>),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Dec(Decimal128Builder, u8, i8),
    Bin(BinaryBuilder),
}

impl Builder {
    /// A builder sized for `rows` values (and `bytes` of text or binary data).
    fn with_capacity(t: &ArrowType, rows: usize, bytes: usize) -> Builder {
        match t {
            ArrowType::Utf8 => Builder::Str(StringBuilder::with_capacity(rows, bytes)),
            ArrowType::Int64 => Builder::Int(Int64Builder::with_capacity(rows)),
            ArrowType::Float64 => Builder::Float(Float64Builder::with_capacity(rows)),
            ArrowType::Boolean => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            ArrowType::Timestamp(_, tz) => Builder::Ts(TimestampMicrosecondBuilder::with_capacity(rows), tz.clone()),
            ArrowType::Date32 => Builder::Date(Date32Builder::with_capacity(rows)),
            ArrowType::Time64(_) => Builder::Time(Time64MicrosecondBuilder::with_capacity(rows)),
            ArrowType::Decimal128(p, s) => Builder::Dec(Decimal128Builder::with_capacity(rows), *p, *s),
            _ => Builder::Bin(BinaryBuilder::with_capacity(rows, bytes)),
        }
    }

    /// Bytes of text or binary data held.
    fn data_bytes(&self) -> usize {
        match self {
            Builder::Str(b) => b.values_slice().len(),
            Builder::Bin(b) => b.values_slice().len(),
            _ => 0,
        }
    }

    fn len(&self) -> usize {
        match self {
            Builder::Str(b) => b.len(),
            Builder::Int(b) => b.len(),
            Builder::Float(b) => b.len(),
            Builder::Bool(b) => b.len(),
            Builder::Ts(b, _) => b.len(),
            Builder::Date(b) => b.len(),
            Builder::Time(b) => b.len(),
            Builder::Dec(b, _, _) => b.len(),
            Builder::Bin(b) => b.len(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Str(b) => b.append_null(),
            Builder::Int(b) => b.append_null(),
            Builder::Float(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Ts(b, _) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
            Builder::Dec(b, _, _) => b.append_null(),
            Builder::Bin(b) => b.append_null(),
        }
    }

    fn append(&mut self, c: &Cell<'_>) {
        match (self, c) {
            (Builder::Str(b), Cell::Str(s)) => b.append_value(s.as_ref()),
            (Builder::Int(b), Cell::Int(i)) => b.append_value(*i),
            (Builder::Float(b), Cell::Float(f)) => b.append_value(*f),
            (Builder::Bool(b), Cell::Bool(v)) => b.append_value(*v),
            (Builder::Ts(b, _), Cell::Micros(v)) => b.append_value(*v),
            (Builder::Date(b), Cell::Days(v)) => b.append_value(*v),
            (Builder::Time(b), Cell::TimeMicros(v)) => b.append_value(*v),
            (Builder::Dec(b, _, _), Cell::Decimal(v)) => b.append_value(*v),
            (Builder::Bin(b), Cell::Bytes(v)) => b.append_value(v),
            (b, c) => {
                debug_assert!(false, "cell {c:?} does not fit builder");
                b.append_null()
            }
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Ts(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Dec(b, p, s) => {
                Arc::new(b.finish().with_precision_and_scale(*p, *s).expect("valid decimal precision"))
            }
            Builder::Bin(b) => Arc::new(b.finish()),
        }
    }
}

/// Parquet encoding and compression, off the normalizing thread: table buffers hand finished
/// batches to one writer thread, which owns every open job file of the package.
pub struct JobWriter {
    tx: Option<SyncSender<WriteMsg>>,
    handle: Option<std::thread::JoinHandle<()>>,
    failed: Arc<Mutex<Option<Error>>>,
}

enum WriteMsg {
    /// Append a batch to the file at `path` (opened on first use with the batch's schema).
    Batch(PathBuf, RecordBatch),
    /// Close the file at `path`.
    Close(PathBuf),
}

/// Batches in flight to the writer thread (bounds memory).
const WRITER_QUEUE: usize = 4;

impl JobWriter {
    /// Start the writer thread.
    pub fn start() -> JobWriter {
        let (tx, rx) = sync_channel::<WriteMsg>(WRITER_QUEUE);
        let failed: Arc<Mutex<Option<Error>>> = Arc::default();
        let fail = failed.clone();
        let handle = std::thread::Builder::new()
            .name("dlt-parquet".into())
            .spawn(move || {
                let mut open: HashMap<PathBuf, ArrowWriter<File>> = HashMap::default();
                let run = |open: &mut HashMap<PathBuf, ArrowWriter<File>>, msg: WriteMsg| -> Result<()> {
                    match msg {
                        WriteMsg::Batch(path, batch) => {
                            if !open.contains_key(&path) {
                                let f = File::create(&path).at(&path)?;
                                open.insert(path.clone(), ArrowWriter::try_new(f, batch.schema(), Some(props()))?);
                            }
                            open.get_mut(&path).expect("opened").write(&batch)?;
                        }
                        WriteMsg::Close(path) => {
                            if let Some(w) = open.remove(&path) {
                                w.close()?;
                            }
                        }
                    }
                    Ok(())
                };
                for msg in rx {
                    if let Err(e) = run(&mut open, msg) {
                        *fail.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return; // dropping the receiver makes later sends fail
                    }
                }
                for (_, w) in open.drain() {
                    if let Err(e) = w.close() {
                        *fail.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.into());
                        return;
                    }
                }
            })
            .expect("spawn the parquet writer thread");
        JobWriter { tx: Some(tx), handle: Some(handle), failed }
    }

    fn handle(&self) -> WriterHandle {
        WriterHandle { tx: self.tx.clone().expect("writer running"), failed: self.failed.clone() }
    }

    /// Wait until every file is written and closed.
    pub fn finish(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        self.tx.take();
        if let Some(h) = self.handle.take()
            && h.join().is_err()
        {
            return Err(Error::Package("the parquet writer thread panicked".into()));
        }
        match self.failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for JobWriter {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A table buffer's way to the writer thread.
#[derive(Clone)]
struct WriterHandle {
    tx: SyncSender<WriteMsg>,
    failed: Arc<Mutex<Option<Error>>>,
}

impl WriterHandle {
    fn send(&self, msg: WriteMsg) -> Result<()> {
        if self.tx.send(msg).is_err() {
            return Err(self
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| Error::Package("the parquet writer thread stopped".into())));
        }
        Ok(())
    }
}

/// Buffered rows of one table and the parquet file they go to.
pub struct TableBuffer {
    table: String,
    fields: Vec<Field>,
    builders: Vec<Builder>,
    index: HashMap<String, usize>,
    /// Columns of this table by name, for coercion without touching the schema.
    cols: HashMap<String, (usize, Column)>,
    rows: usize,
    /// The job file being written and its schema.
    file: Option<(PathBuf, SchemaRef)>,
    writer: WriterHandle,
    dir: PathBuf,
    /// Rows written in total.
    pub total_rows: u64,
}

/// Rows buffered per table before a batch is written.
pub const BUFFER_ROWS: usize = 10_000;

fn props() -> WriterProperties {
    let mut b =
        WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(128 * 1024));
    // row ids are random or hashes: a dictionary never pays and compression finds nothing, so
    // both would only cost time (here and in every reader)
    for c in [dlt_core::schema::C_DLT_ID, dlt_core::schema::C_DLT_PARENT_ID, dlt_core::schema::C_DLT_ROOT_ID] {
        let path = parquet::schema::types::ColumnPath::from(c);
        b = b
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_compression(path, Compression::UNCOMPRESSED);
    }
    b.build()
}

impl TableBuffer {
    /// A buffer writing job files into `dir` through `writer`.
    pub fn new(table: &str, dir: &Path, writer: &JobWriter) -> Self {
        TableBuffer {
            table: table.to_string(),
            fields: vec![],
            builders: vec![],
            index: HashMap::default(),
            cols: HashMap::default(),
            rows: 0,
            file: None,
            writer: writer.handle(),
            dir: dir.to_path_buf(),
            total_rows: 0,
        }
    }

    /// Position of a known column.
    pub fn cached_index(&self, name: &str) -> Option<usize> {
        self.cols.get(name).map(|(i, _)| *i)
    }

    /// Coerce a value into a known column without schema changes; `None` = take the slow path.
    pub fn try_fast<'v>(&self, name: &str, v: &'v serde_json::Value) -> Option<(usize, Cell<'v>)> {
        let (i, col) = self.cols.get(name)?;
        crate::coerce::coerce(col, v).map(|c| (*i, c))
    }

    /// [`try_fast`](Self::try_fast) for a scalar of the tape.
    #[inline]
    pub(crate) fn try_fast_scalar<'v>(&self, name: &str, v: crate::coerce::Scalar<'v>) -> Option<(usize, Cell<'v>)> {
        let (i, col) = self.cols.get(name)?;
        crate::coerce::coerce_scalar(col, v).map(|c| (*i, c))
    }

    /// The known column `name`: its position and definition.
    #[inline]
    pub(crate) fn column(&self, name: &str) -> Option<&(usize, Column)> {
        self.cols.get(name)
    }

    /// Whether a null for the known column `name` must be refused (`None`: not known here).
    #[inline]
    pub(crate) fn refuses_null(&self, name: &str) -> Option<bool> {
        self.cols.get(name).map(|(_, c)| c.nullable == Some(false) && c.is_complete())
    }

    /// Position of a column in the buffer, adding it (null-filled) if new.
    pub fn column_index(&mut self, col: &Column) -> usize {
        if let Some(i) = self.index.get(&col.name) {
            let i = *i;
            self.cols.insert(col.name.clone(), (i, col.clone()));
            return i;
        }
        let t = arrow_type(col);
        let mut b = Builder::with_capacity(&t, BUFFER_ROWS, 0);
        for _ in 0..self.rows {
            b.append_null();
        }
        self.fields.push(Field::new(&col.name, t, true));
        self.builders.push(b);
        let i = self.builders.len() - 1;
        self.index.insert(col.name.clone(), i);
        self.cols.insert(col.name.clone(), (i, col.clone()));
        i
    }

    /// Append one row given as (column index, cell) pairs.
    pub fn push_row(&mut self, cells: &mut Vec<(usize, Cell<'_>)>) -> Result<()> {
        let r = self.push_cells(cells);
        cells.clear();
        r
    }

    /// Append one row given as (column index, cell) pairs.
    pub(crate) fn push_cells(&mut self, cells: &[(usize, Cell<'_>)]) -> Result<()> {
        for (i, c) in cells {
            let b = &mut self.builders[*i];
            if b.len() > self.rows {
                // the same column twice in one row (keys colliding after normalization): last wins
                continue;
            }
            b.append(c);
        }
        self.rows += 1;
        for b in &mut self.builders {
            while b.len() < self.rows {
                b.append_null();
            }
        }
        if self.rows >= BUFFER_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Hand buffered rows to the writer thread.
    pub fn flush(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let schema = Arc::new(ArrowSchema::new(self.fields.clone()));
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.builders.len());
        for (b, f) in self.builders.iter_mut().zip(&self.fields) {
            // the next batch's builder gets this one's size up front: no regrowth while filling
            let bytes = b.data_bytes();
            let mut next = Builder::with_capacity(f.data_type(), BUFFER_ROWS, bytes + bytes / 8);
            std::mem::swap(b, &mut next);
            cols.push(next.finish());
        }
        let batch = RecordBatch::try_new(schema.clone(), cols)?;
        if let Some((path, s)) = &self.file
            && s != &schema
        {
            // new columns: the rest of the rows go to a new file with the wider schema
            self.writer.send(WriteMsg::Close(path.clone()))?;
            self.file = None;
        }
        if self.file.is_none() {
            let id: [u8; 5] = rand::random();
            let id: String = id.iter().map(|x| format!("{x:02x}")).collect();
            let p = self.dir.join(JobFile::file_name(&self.table, &id, 0, FileFormat::Parquet));
            self.file = Some((p, schema));
        }
        let (path, _) = self.file.as_ref().expect("set");
        self.writer.send(WriteMsg::Batch(path.clone(), batch))?;
        self.total_rows += self.rows as u64;
        self.rows = 0;
        Ok(())
    }

    /// Flush and close the job file (the writer thread finishes it).
    pub fn finish(mut self) -> Result<u64> {
        self.flush()?;
        if let Some((path, _)) = self.file.take() {
            self.writer.send(WriteMsg::Close(path))?;
        }
        Ok(self.total_rows)
    }
}
