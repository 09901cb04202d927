//! Query results as Arrow: rows come back in Postgres' text format (simple query protocol) and
//! are typed by their column type: integers, floats and booleans as such, everything else
//! (numeric, timestamps, json, …) as its text.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema};
use arrow::record_batch::RecordBatch;
use dlt_core::error::Result;
use sqlx::postgres::PgRow;
use sqlx::{Column, Row, TypeInfo, ValueRef};

fn text(row: &PgRow, i: usize) -> Option<&str> {
    let v = row.try_get_raw(i).ok()?;
    if v.is_null() { None } else { v.as_str().ok() }
}

/// Rows of one result as one batch (none for an empty result).
pub fn to_batch(rows: &[PgRow]) -> Result<Vec<RecordBatch>> {
    let Some(first) = rows.first() else { return Ok(vec![]) };
    let mut fields = vec![];
    let mut arrays: Vec<ArrayRef> = vec![];
    for (i, c) in first.columns().iter().enumerate() {
        let (dt, arr): (ArrowType, ArrayRef) = match c.type_info().name() {
            "INT2" | "INT4" | "INT8" | "OID" => {
                let mut b = Int64Builder::with_capacity(rows.len());
                rows.iter().for_each(|r| b.append_option(text(r, i).and_then(|s| s.parse().ok())));
                (ArrowType::Int64, Arc::new(b.finish()))
            }
            "FLOAT4" | "FLOAT8" => {
                let mut b = Float64Builder::with_capacity(rows.len());
                rows.iter().for_each(|r| b.append_option(text(r, i).and_then(|s| s.parse().ok())));
                (ArrowType::Float64, Arc::new(b.finish()))
            }
            "BOOL" => {
                let mut b = BooleanBuilder::with_capacity(rows.len());
                rows.iter().for_each(|r| b.append_option(text(r, i).map(|s| s == "t")));
                (ArrowType::Boolean, Arc::new(b.finish()))
            }
            _ => {
                let mut b = StringBuilder::new();
                rows.iter().for_each(|r| b.append_option(text(r, i)));
                (ArrowType::Utf8, Arc::new(b.finish()))
            }
        };
        fields.push(Field::new(c.name(), dt, true));
        arrays.push(arr);
    }
    Ok(vec![RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), arrays)?])
}
