//! The load step: a parquet job file into a table with binary `COPY … FROM STDIN`.
//!
//! Decoding parquet and encoding rows is CPU work: it runs on the blocking pool and hands
//! ~1 MiB chunks through a bounded channel to the async side, which streams them to the
//! server; the two overlap.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::ArrayRef;
use bytes::{BufMut, Bytes, BytesMut};
use dlt_core::destination::JobFile;
use dlt_core::error::{Error, Result};
use dlt_core::schema::{Column, DataType, Table};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sqlx::postgres::PgConnection;

use crate::pgvalue::{PgKind, value_at};
use crate::{NAME, classify, quote};

const CHUNK: usize = 1 << 20;
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// The binary type a column of `c`'s dlt type is copied as.
pub fn pg_kind(c: &Column) -> PgKind {
    match c.data_type.unwrap_or(DataType::Text) {
        DataType::Text => PgKind::Text,
        DataType::Double => PgKind::Float8,
        DataType::Bool => PgKind::Bool,
        DataType::Bigint => match c.precision {
            Some(p) if p <= 16 => PgKind::Int2,
            Some(p) if p <= 32 => PgKind::Int4,
            Some(p) if p > 64 => PgKind::Numeric,
            _ => PgKind::Int8,
        },
        DataType::Timestamp => PgKind::Timestamp,
        DataType::Date => PgKind::Date,
        DataType::Time => PgKind::Time,
        DataType::Binary => PgKind::Bytea,
        DataType::Json => PgKind::Jsonb,
        DataType::Decimal | DataType::Wei => PgKind::Numeric,
    }
}

fn job_error(message: String) -> Error {
    Error::Destination { destination: NAME.into(), message, transient: false }
}

/// The columns of a job file, in file order, with their copy types.
fn columns(path: &Path, table: &Table) -> Result<Vec<(String, PgKind, bool)>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f)?;
    let mut out = vec![];
    for field in builder.schema().fields() {
        let col = table.columns.get(field.name()).ok_or_else(|| {
            job_error(format!(
                "job {} has column `{}` that table `{}` does not know",
                path.display(),
                field.name(),
                table.name
            ))
        })?;
        out.push((field.name().clone(), pg_kind(col), col.data_type == Some(DataType::Json)));
    }
    Ok(out)
}

/// Encode the rows of `path` as binary COPY data, handing chunks to `send` (false: stop).
fn encode(path: &Path, cols: &[(String, PgKind, bool)], send: impl Fn(Bytes) -> bool) -> Result<()> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)?.with_batch_size(16_384).build()?;
    let mut buf = BytesMut::with_capacity(CHUNK + CHUNK / 4);
    buf.put_slice(HEADER);
    buf.put_i32(0);
    buf.put_i32(0);
    let mut row_no = 0usize;
    for batch in reader {
        let batch = batch?;
        let arrays: Vec<&ArrayRef> = batch.columns().iter().collect();
        for i in 0..batch.num_rows() {
            buf.put_i16(cols.len() as i16);
            for (c, (name, kind, json)) in arrays.iter().zip(cols) {
                value_at(c, i, *json)
                    .encode(*kind, &mut buf)
                    .map_err(|e| job_error(format!("job {}: row {row_no}, column `{name}`: {e}", path.display())))?;
            }
            row_no += 1;
            if buf.len() >= CHUNK && !send(buf.split().freeze()) {
                return Ok(());
            }
        }
    }
    buf.put_i16(-1);
    send(buf.split().freeze());
    Ok(())
}

/// Copy one parquet job file into `target` (a qualified, quoted table name).
pub async fn copy_job(conn: &mut PgConnection, target: &str, table: &Table, job: &JobFile) -> Result<()> {
    let path: PathBuf = job.path.clone();
    let t = table.clone();
    let p = path.clone();
    let cols = dlt_core::runtime::blocking(move || columns(&p, &t)).await?;
    let names: Vec<String> = cols.iter().map(|(n, _, _)| quote(n)).collect();
    let sql = format!("COPY {target} ({}) FROM STDIN (FORMAT binary)", names.join(", "));
    tracing::info!(target: "dlt::sql", destination = NAME, "{sql}");
    let mut copy = conn.copy_in_raw(&sql).await.map_err(|e| classify(e, &format!("starting COPY into {target}")))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let p = path.clone();
    let producer = tokio::task::spawn_blocking(move || encode(&p, &cols, |b| tx.blocking_send(b).is_ok()));
    let what = || format!("loading job {} into {target}", path.display());
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = copy.send(chunk).await {
            drop(rx);
            let _ = producer.await;
            return Err(classify(e, &what()));
        }
    }
    let encoded = match producer.await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    if let Err(e) = encoded {
        let _ = copy.abort(e.to_string()).await;
        return Err(e);
    }
    copy.finish().await.map_err(|e| classify(e, &what()))?;
    Ok(())
}
