//! Reading small query results (system tables, `information_schema`) as text.

use arrow::array::{Array, StringArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use dlt_core::error::Result;

/// Every row of `batches` as text cells (`None` for NULL), whatever the column types.
pub fn cell_strings(batches: &[RecordBatch]) -> Result<Vec<Vec<Option<String>>>> {
    let mut rows = vec![];
    for b in batches {
        let cols = b
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &DataType::Utf8))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let cols: Vec<&StringArray> =
            cols.iter().map(|c| c.as_any().downcast_ref::<StringArray>().expect("cast to utf8")).collect();
        for i in 0..b.num_rows() {
            rows.push(cols.iter().map(|c| (!c.is_null(i)).then(|| c.value(i).to_string())).collect());
        }
    }
    Ok(rows)
}

/// The first line of a statement, at most 200 characters, for error messages.
pub fn first_line(sql: &str) -> String {
    let l = sql.trim().lines().next().unwrap_or_default();
    let mut out: String = l.chars().take(200).collect();
    if out.len() < l.len() {
        out.push('…');
    }
    out
}
