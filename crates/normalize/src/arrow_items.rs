//! Arrow items: column names normalized, dlt types taken from the Arrow schema, rows untouched.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchReader};
use dlt_core::destination::{FileFormat, JobFile};
use dlt_core::error::{IoContext, Result};
use dlt_core::naming::NamingConvention;
use dlt_core::schema::{C_DLT_ID, C_DLT_LOAD_ID, Column, DataType, Schema, Table};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The dlt column for an Arrow field.
pub fn column_from_field(name: &str, f: &Field) -> Column {
    let mut c = Column { name: name.to_string(), nullable: Some(f.is_nullable()), ..Default::default() };
    c.data_type = Some(match f.data_type() {
        ArrowType::Boolean => DataType::Bool,
        ArrowType::Int8 | ArrowType::UInt8 => {
            c.precision = Some(8);
            DataType::Bigint
        }
        ArrowType::Int16 | ArrowType::UInt16 => {
            c.precision = Some(16);
            DataType::Bigint
        }
        ArrowType::Int32 | ArrowType::UInt32 => {
            c.precision = Some(32);
            DataType::Bigint
        }
        ArrowType::Int64 | ArrowType::UInt64 => DataType::Bigint,
        ArrowType::Float16 | ArrowType::Float32 | ArrowType::Float64 => DataType::Double,
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => DataType::Text,
        ArrowType::Binary | ArrowType::LargeBinary | ArrowType::FixedSizeBinary(_) | ArrowType::BinaryView => {
            DataType::Binary
        }
        ArrowType::Date32 | ArrowType::Date64 => DataType::Date,
        ArrowType::Time32(_) | ArrowType::Time64(_) => DataType::Time,
        ArrowType::Timestamp(unit, tz) => {
            c.timezone = Some(tz.is_some());
            c.precision = Some(match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            });
            DataType::Timestamp
        }
        ArrowType::Decimal128(p, s) | ArrowType::Decimal256(p, s) => {
            c.precision = Some(*p as u32);
            c.scale = Some((*s).max(0) as u32);
            DataType::Decimal
        }
        ArrowType::Struct(_) | ArrowType::List(_) | ArrowType::LargeList(_) | ArrowType::Map(_, _) => DataType::Json,
        _ => DataType::Text,
    });
    c
}

/// The type a column is stored as in job files: units parquet and the loaders handle everywhere.
fn storage_type(t: &ArrowType) -> ArrowType {
    match t {
        ArrowType::Timestamp(TimeUnit::Second | TimeUnit::Millisecond, tz) => {
            ArrowType::Timestamp(TimeUnit::Microsecond, tz.clone())
        }
        ArrowType::Date64 => ArrowType::Date32,
        ArrowType::Time32(_) => ArrowType::Time64(TimeUnit::Microsecond),
        ArrowType::UInt64 => ArrowType::Int64,
        t => t.clone(),
    }
}

/// dlt columns added to Arrow items on request (dlt adds none by default).
#[derive(Debug, Clone, Copy, Default)]
pub struct DltColumns<'a> {
    /// Add `_dlt_load_id` with this load id.
    pub load_id: Option<&'a str>,
    /// Add a random `_dlt_id` per row.
    pub row_id: bool,
}

/// Rewrite an extracted parquet file with normalized column names; add its columns to the schema.
pub fn normalize_parquet(
    path: &Path,
    table: &str,
    schema: &mut Schema,
    naming: &dyn NamingConvention,
    out_dir: &Path,
    dlt: DltColumns<'_>,
) -> Result<u64> {
    let f = File::open(path).at(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f)?.with_batch_size(65_536);
    let file_rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let reader = builder.build()?;
    let in_schema = reader.schema();
    let t = schema.tables.entry(table.to_string()).or_insert_with(|| Table::new(table));
    let mut fields = vec![];
    for field in in_schema.fields() {
        let name = naming.normalize_path(field.name());
        let inferred = column_from_field(&name, field);
        let col = t.columns.entry(name.clone()).or_insert_with(|| inferred.clone());
        if col.data_type.is_none() {
            let declared = col.clone();
            *col = inferred;
            col.merge_hints(&declared);
        }
        fields.push(field.as_ref().clone().with_name(name).with_data_type(storage_type(field.data_type())));
    }
    for (on, name) in [(dlt.load_id.is_some(), C_DLT_LOAD_ID), (dlt.row_id, C_DLT_ID)] {
        if on && !fields.iter().any(|f| f.name() == name) {
            let mut c = Column::new(name, DataType::Text).not_null();
            if name == C_DLT_ID {
                c.unique = Some(true);
                c.row_key = Some(true);
            }
            t.columns.entry(name.to_string()).or_insert(c);
            fields.push(Field::new(name, ArrowType::Utf8, false));
        }
    }
    let out_schema = Arc::new(ArrowSchema::new(fields));
    let id: [u8; 5] = rand::random();
    let id: String = id.iter().map(|x| format!("{x:02x}")).collect();
    let p = out_dir.join(JobFile::file_name(table, &id, 0, FileFormat::Parquet));
    let unchanged = out_schema.fields().len() == in_schema.fields().len()
        && out_schema
            .fields()
            .iter()
            .zip(in_schema.fields())
            .all(|(o, i)| o.name() == i.name() && o.data_type() == i.data_type());
    if unchanged {
        // names and types are already what the job needs: the extracted file is the job file
        // (extracted files are never written again, so a hard link is safe)
        if std::fs::hard_link(path, &p).is_err() {
            std::fs::copy(path, &p).at(&p)?;
        }
        return Ok(file_rows);
    }
    let out = File::create(&p).at(&p)?;
    let mut w = ArrowWriter::try_new(out, out_schema.clone(), None)?;
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        let mut cols = Vec::with_capacity(out_schema.fields().len());
        for (c, f) in batch.columns().iter().zip(out_schema.fields()) {
            if c.data_type() != f.data_type() {
                cols.push(arrow::compute::cast(c, f.data_type())?);
            } else {
                cols.push(c.clone());
            }
        }
        let n = batch.num_rows();
        for f in out_schema.fields().iter().skip(batch.num_columns()) {
            let arr: arrow::array::ArrayRef = if f.name() == C_DLT_LOAD_ID {
                Arc::new(arrow::array::StringArray::from(vec![dlt.load_id.unwrap_or_default(); n]))
            } else {
                Arc::new(arrow::array::StringArray::from_iter_values((0..n).map(|_| dlt_core::ids::random_row_id())))
            };
            cols.push(arr);
        }
        let b = RecordBatch::try_new(out_schema.clone(), cols)?;
        w.write(&b)?;
    }
    w.close()?;
    Ok(rows)
}
