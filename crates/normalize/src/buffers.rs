//! Per-table columnar buffers flushed to parquet job files.

use rustc_hash::FxHashMap as HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder,
    Int64Builder, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use dlt_core::destination::{FileFormat, JobFile};
use dlt_core::error::{IoContext, Result};
use dlt_core::schema::{Column, DataType};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// A value already coerced to its column's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text or JSON text.
    Str(String),
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
    fn new(t: &ArrowType) -> Builder {
        match t {
            ArrowType::Utf8 => Builder::Str(StringBuilder::new()),
            ArrowType::Int64 => Builder::Int(Int64Builder::new()),
            ArrowType::Float64 => Builder::Float(Float64Builder::new()),
            ArrowType::Boolean => Builder::Bool(BooleanBuilder::new()),
            ArrowType::Timestamp(_, tz) => Builder::Ts(TimestampMicrosecondBuilder::new(), tz.clone()),
            ArrowType::Date32 => Builder::Date(Date32Builder::new()),
            ArrowType::Time64(_) => Builder::Time(Time64MicrosecondBuilder::new()),
            ArrowType::Decimal128(p, s) => Builder::Dec(Decimal128Builder::new(), *p, *s),
            _ => Builder::Bin(BinaryBuilder::new()),
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

    fn append(&mut self, c: &Cell) {
        match (self, c) {
            (Builder::Str(b), Cell::Str(s)) => b.append_value(s),
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

/// Buffered rows of one table and the parquet file they go to.
pub struct TableBuffer {
    table: String,
    fields: Vec<Field>,
    builders: Vec<Builder>,
    index: HashMap<String, usize>,
    /// Columns of this table by name, for coercion without touching the schema.
    cols: HashMap<String, (usize, Column)>,
    rows: usize,
    writer: Option<(ArrowWriter<File>, SchemaRef)>,
    dir: PathBuf,
    /// Rows written in total.
    pub total_rows: u64,
}

/// Rows buffered per table before a batch is written.
pub const BUFFER_ROWS: usize = 10_000;

fn props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(128 * 1024))
        .build()
}

impl TableBuffer {
    /// A buffer writing job files into `dir`.
    pub fn new(table: &str, dir: &Path) -> Self {
        TableBuffer {
            table: table.to_string(),
            fields: vec![],
            builders: vec![],
            index: HashMap::default(),
            cols: HashMap::default(),
            rows: 0,
            writer: None,
            dir: dir.to_path_buf(),
            total_rows: 0,
        }
    }

    /// Position of a known column.
    pub fn cached_index(&self, name: &str) -> Option<usize> {
        self.cols.get(name).map(|(i, _)| *i)
    }

    /// Coerce a value into a known column without schema changes; `None` = take the slow path.
    pub fn try_fast(&self, name: &str, v: &serde_json::Value) -> Option<(usize, Cell)> {
        let (i, col) = self.cols.get(name)?;
        crate::coerce::coerce(col, v).map(|c| (*i, c))
    }

    /// Position of a column in the buffer, adding it (null-filled) if new.
    pub fn column_index(&mut self, col: &Column) -> usize {
        if let Some(i) = self.index.get(&col.name) {
            let i = *i;
            self.cols.insert(col.name.clone(), (i, col.clone()));
            return i;
        }
        let t = arrow_type(col);
        let mut b = Builder::new(&t);
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
    pub fn push_row(&mut self, cells: &mut Vec<(usize, Cell)>) -> Result<()> {
        for (i, c) in cells.drain(..) {
            let b = &mut self.builders[i];
            if b.len() > self.rows {
                // the same column twice in one row (keys colliding after normalization): last wins
                continue;
            }
            b.append(&c);
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

    /// Write buffered rows to the job file.
    pub fn flush(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let schema = Arc::new(ArrowSchema::new(self.fields.clone()));
        let cols: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        let batch = RecordBatch::try_new(schema.clone(), cols)?;
        if self.writer.as_ref().map(|(_, s)| s != &schema).unwrap_or(false) {
            let (w, _) = self.writer.take().expect("checked");
            w.close()?;
        }
        if self.writer.is_none() {
            let id: [u8; 5] = rand::random();
            let id: String = id.iter().map(|x| format!("{x:02x}")).collect();
            let p = self.dir.join(JobFile::file_name(&self.table, &id, 0, FileFormat::Parquet));
            let f = File::create(&p).at(&p)?;
            self.writer = Some((ArrowWriter::try_new(f, schema.clone(), Some(props()))?, schema));
        }
        let (w, _) = self.writer.as_mut().expect("opened");
        w.write(&batch)?;
        self.total_rows += self.rows as u64;
        self.rows = 0;
        Ok(())
    }

    /// Flush and close the job file.
    pub fn finish(mut self) -> Result<u64> {
        self.flush()?;
        if let Some((w, _)) = self.writer.take() {
            w.close()?;
        }
        Ok(self.total_rows)
    }
}
