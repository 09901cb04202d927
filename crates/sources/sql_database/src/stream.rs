//! Rows of a sqlx stream into Arrow batches, for the reader threads of the sqlx dialects.

use arrow::record_batch::RecordBatch;
use dlt_core::error::{Error, Result};
use dlt_core::runtime::block_on;
use futures_util::{Stream, TryStreamExt};

use crate::batch::{BatchBuilder, ColBuilder};
use crate::table::TableSchema;
use crate::types::ValueKind;

/// Writes one row (numbered from 1) into the column builders.
pub(crate) type PutRow<'a, R> = dyn Fn(&R, &mut [ColBuilder], u64) -> Result<()> + Sync + 'a;

/// The output columns of a read: the table's, or, when a query adapter's SQL was read and its
/// `first` row came back, that row's (`natural` gives the kind of a column the table does not
/// have, from the type name the database reports).
pub(crate) fn columns<R: sqlx::Row>(
    t: &TableSchema,
    first: Option<&R>,
    natural: fn(&str) -> ValueKind,
) -> (Vec<String>, Vec<ValueKind>) {
    use sqlx::{Column, TypeInfo};
    match first {
        None => t.columns.iter().map(|c| (c.output_name.clone(), c.kind())).unzip(),
        Some(r) => r
            .columns()
            .iter()
            .map(|rc| {
                let n = rc.name().to_string();
                match t.columns.iter().find(|c| c.name == n || c.output_name == n) {
                    Some(c) => (c.output_name.clone(), c.kind()),
                    None => (n, natural(rc.type_info().name())),
                }
            })
            .unzip(),
    }
}

/// Fill batches of `chunk_size` rows from `rows` (after `first`, a row taken already to learn
/// the columns) and hand each to `emit`: one trip into the runtime per batch, so `emit` (which
/// may wait for the pipeline) runs outside the async code. `put` writes one row, numbered from
/// 1, into the column builders; `fetch_error` names what failed when the stream does.
pub(crate) fn drain<R, S>(
    mut rows: S,
    mut first: Option<R>,
    bb: &mut BatchBuilder,
    chunk_size: usize,
    put: &PutRow<'_, R>,
    fetch_error: &(dyn Fn(sqlx::Error) -> Error + Sync),
    emit: &mut dyn FnMut(RecordBatch) -> bool,
) -> Result<()>
where
    R: Send,
    S: Stream<Item = std::result::Result<R, sqlx::Error>> + Unpin + Send,
{
    let mut row_no = 0u64;
    let mut done = false;
    while !done {
        block_on(async {
            while bb.rows < chunk_size {
                let row = match first.take() {
                    Some(r) => r,
                    None => match rows.try_next().await.map_err(fetch_error)? {
                        Some(r) => r,
                        None => {
                            done = true;
                            break;
                        }
                    },
                };
                row_no += 1;
                put(&row, &mut bb.cols, row_no)?;
                bb.rows += 1;
            }
            Ok::<(), Error>(())
        })?;
        if bb.rows > 0 && !emit(bb.finish()?) {
            return Ok(());
        }
    }
    Ok(())
}
