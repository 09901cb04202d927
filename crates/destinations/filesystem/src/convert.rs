//! Job files in the configured format: parquet jobs are uploaded as they are; jsonl and csv are
//! converted from the parquet job with arrow's writers, gzip-compressed unless disabled.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use dlt_core::destination::FileFormat;
use flate2::Compression as GzLevel;
use flate2::write::GzEncoder;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{FsError, FsResult};

/// The format files are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputFormat {
    /// File format.
    pub format: FileFormat,
    /// Gzip jsonl/csv files (dlt's default; the name gets `.gz` as in dlt's storage version 2).
    /// Parquet files keep the compression of the job file.
    pub gzip: bool,
}

impl OutputFormat {
    /// Whether files get a `.gz` suffix.
    pub fn gz_suffix(&self) -> bool {
        self.gzip && self.format != FileFormat::Parquet
    }
}

/// A local file ready to upload: the job file itself, or a converted temporary copy.
#[derive(Debug)]
pub enum Prepared {
    /// Upload the job file as it is.
    Original(PathBuf),
    /// A converted temporary file (removed when dropped).
    Converted(tempfile::NamedTempFile),
}

impl Prepared {
    /// The local file.
    pub fn path(&self) -> &Path {
        match self {
            Prepared::Original(p) => p,
            Prepared::Converted(t) => t.path(),
        }
    }
}

fn job_err(path: &Path, e: impl std::fmt::Display) -> FsError {
    FsError::Job { path: path.display().to_string(), message: e.to_string() }
}

/// Make the file to upload for a parquet job in `out`'s format.
pub fn prepare(job: &Path, out: OutputFormat) -> FsResult<Prepared> {
    if out.format == FileFormat::Parquet {
        return Ok(Prepared::Original(job.to_path_buf()));
    }
    let tmp =
        tempfile::NamedTempFile::new().map_err(|e| job_err(job, format!("cannot create a temporary file: {e}")))?;
    let f = tmp.reopen().map_err(|e| job_err(job, e))?;
    if out.gzip {
        let mut enc = GzEncoder::new(BufWriter::new(f), GzLevel::default());
        convert(job, out.format, &mut enc)?;
        let mut inner = enc.finish().map_err(|e| job_err(job, e))?;
        inner.flush().map_err(|e| job_err(job, e))?;
    } else {
        let mut w = BufWriter::new(f);
        convert(job, out.format, &mut w)?;
        w.flush().map_err(|e| job_err(job, e))?;
    }
    Ok(Prepared::Converted(tmp))
}

/// The schema the text writers get: timestamps in UTC are labelled with the `+00:00` offset (the
/// same instants; arrow formats them as `2024-01-02T03:04:05+00:00` without a time zone database).
fn text_schema(s: &arrow::datatypes::Schema) -> std::sync::Arc<arrow::datatypes::Schema> {
    use arrow::datatypes::{DataType, Field};
    let fields: Vec<Field> = s
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(unit, Some(tz)) if matches!(tz.as_ref(), "UTC" | "utc" | "Z" | "Etc/UTC") => {
                f.as_ref().clone().with_data_type(DataType::Timestamp(*unit, Some("+00:00".into())))
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    std::sync::Arc::new(arrow::datatypes::Schema::new_with_metadata(fields, s.metadata().clone()))
}

/// Convert a parquet job into jsonl or csv, written to `sink`.
pub fn convert<W: Write>(job: &Path, format: FileFormat, sink: &mut W) -> FsResult<()> {
    let file = File::open(job).map_err(|e| job_err(job, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(8192).build())
        .map_err(|e| job_err(job, e))?;
    let text_schema = text_schema(arrow::record_batch::RecordBatchReader::schema(&reader).as_ref());
    let reader = reader.map(|b| {
        b.and_then(|b| {
            let cols = b
                .columns()
                .iter()
                .zip(text_schema.fields())
                .map(|(c, f)| {
                    if c.data_type() == f.data_type() {
                        Ok(c.clone())
                    } else {
                        c.to_data()
                            .into_builder()
                            .data_type(f.data_type().clone())
                            .build()
                            .map(arrow::array::make_array)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            arrow::record_batch::RecordBatch::try_new(text_schema.clone(), cols)
        })
    });
    match format {
        FileFormat::Jsonl => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut *sink);
            for batch in reader {
                let batch = batch.map_err(|e| job_err(job, e))?;
                w.write(&batch).map_err(|e| job_err(job, e))?;
            }
            w.finish().map_err(|e| job_err(job, e))?;
        }
        FileFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut *sink);
            for batch in reader {
                let batch = batch.map_err(|e| job_err(job, e))?;
                w.write(&batch).map_err(|e| job_err(job, format!("cannot write as csv: {e}")))?;
            }
        }
        FileFormat::Parquet => unreachable!("parquet jobs are uploaded as they are"),
    }
    sink.flush().map_err(|e| job_err(job, e))
}
