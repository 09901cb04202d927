//! Arrow batches from the `duckdb` crate as the workspace's arrow version: shared by the DuckDB
//! destination and the filesystem destination's SQL over files, so neither depends on the other.
//!
//! The `duckdb` crate for DuckDB 2.0 is built on arrow 60, while the workspace stays on the arrow
//! that delta-rs supports (58). Both implement the Arrow C Data Interface, so a batch crosses
//! over without copying its buffers: exported as a C struct array by one version and imported by
//! the other.
#![warn(missing_docs)]

use arrow::array::StructArray;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use duckdb::arrow as duck_arrow;
use duckdb::arrow::array::Array as _;

/// Convert a batch returned by `duckdb` (its arrow) into the workspace's [`RecordBatch`].
pub fn to_workspace_batch(batch: duck_arrow::record_batch::RecordBatch) -> Result<RecordBatch, ArrowError> {
    let data = duck_arrow::array::StructArray::from(batch).into_data();
    let (array, schema) = duck_arrow::ffi::to_ffi(&data)
        .map_err(|e| ArrowError::CDataInterface(format!("exporting a DuckDB batch: {e}")))?;
    // SAFETY: `FFI_ArrowArray` and `FFI_ArrowSchema` are `#[repr(C)]` definitions of the same
    // C structs (`ArrowArray`, `ArrowSchema`) of the Arrow C Data Interface in both arrow
    // versions (the transmute checks their sizes). Ownership moves with the value: the importer
    // calls the exporter's release callback exactly once.
    let (array, schema) = unsafe {
        (
            std::mem::transmute::<duck_arrow::ffi::FFI_ArrowArray, arrow::ffi::FFI_ArrowArray>(array),
            std::mem::transmute::<duck_arrow::ffi::FFI_ArrowSchema, arrow::ffi::FFI_ArrowSchema>(schema),
        )
    };
    // SAFETY: the struct pair was produced by `to_ffi` above and is valid.
    let data = unsafe { arrow::ffi::from_ffi(array, &schema)? };
    Ok(RecordBatch::from(StructArray::from(data)))
}

/// Every batch of a DuckDB query result, as the workspace's [`RecordBatch`]es.
pub fn collect_batches(
    batches: impl Iterator<Item = duck_arrow::record_batch::RecordBatch>,
) -> Result<Vec<RecordBatch>, ArrowError> {
    batches.map(to_workspace_batch).collect()
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Decimal128Type, Int64Type, TimeUnit};

    #[test]
    fn batches_cross_with_types_nulls_and_nesting() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT i::BIGINT AS id, CASE WHEN i % 2 = 0 THEN 'v' || i END AS txt, \
                 (i / 4)::DECIMAL(38,9) AS dec, TIMESTAMPTZ '2024-01-02 03:04:05+00' AS ts, \
                 [i, i + 1] AS list, {'a': i} AS obj FROM range(3000) t(i) ORDER BY i",
            )
            .unwrap();
        let batches = super::collect_batches(stmt.query_arrow([]).unwrap()).unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3000);
        let schema = batches[0].schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "txt", "dec", "ts", "list", "obj"]);
        assert_eq!(schema.field(2).data_type(), &DataType::Decimal128(38, 9));
        assert!(matches!(schema.field(3).data_type(), DataType::Timestamp(TimeUnit::Microsecond, Some(_))));
        let mut seen = 0i64;
        for b in &batches {
            let ids = b.column(0).as_primitive::<Int64Type>();
            let txt = b.column(1).as_string::<i32>();
            let dec = b.column(2).as_primitive::<Decimal128Type>();
            let list = b.column(4).as_list::<i32>();
            for r in 0..b.num_rows() {
                let i = ids.value(r);
                assert_eq!(i, seen);
                assert_eq!(txt.is_null(r), i % 2 == 1);
                if i % 2 == 0 {
                    assert_eq!(txt.value(r), format!("v{i}"));
                }
                assert_eq!(dec.value(r), i as i128 * 250_000_000, "{i} / 4 at scale 9");
                assert_eq!(list.value(r).as_primitive::<Int64Type>().values().to_vec(), [i, i + 1]);
                seen += 1;
            }
            let obj = b.column(5).as_struct();
            assert_eq!(obj.column(0).as_primitive::<Int64Type>().value(0), ids.value(0));
        }
    }
}
