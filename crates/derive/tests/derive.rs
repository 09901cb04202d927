//! The derive against `dlt-core` directly (`#[dlt(crate = "dlt_core")]`): generics, renames,
//! overrides and the generated `ColumnType` of a derived struct.

use dlt_core::schema::{DataType, WriteDisposition};
use dlt_core::typed::{ColumnType, Table};
use serde::Serialize;

#[derive(Serialize, dlt_derive::Table)]
#[dlt(crate = "dlt_core", table_name = "pages", write_disposition = "merge")]
#[serde(rename_all = "PascalCase")]
struct Page<T: Serialize> {
    #[dlt(primary_key, merge_key)]
    page_no: u32,
    items: Vec<T>,
    #[serde(rename(serialize = "NEXT", deserialize = "next"))]
    next_cursor: Option<String>,
    #[dlt(data_type = "wei", nullable = true)]
    total: String,
    #[dlt(nullable = true, precision = 3, timezone = false, description = "fetch time")]
    fetched_at: String,
    #[dlt(unique, partition, cluster, sort, dedup_sort = "asc")]
    r#ref: i16,
}

#[derive(Serialize, dlt_derive::Table)]
#[dlt(crate = "dlt_core")]
struct Item<'a> {
    label: &'a str,
    bytes: &'a [u8],
    amounts: [u8; 4],
}

#[test]
fn generic_struct_with_overrides() {
    let cols = Page::<Item<'static>>::columns();
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["page_no", "items", "next", "total", "fetched_at", "ref"]);
    assert!(cols[0].primary_key && cols[0].merge_key);
    assert_eq!(cols[1].data_type, Some(DataType::Json));
    assert_eq!((cols[2].data_type, cols[2].nullable), (Some(DataType::Text), Some(true)));
    assert_eq!((cols[3].data_type, cols[3].nullable), (Some(DataType::Wei), Some(true)));
    assert_eq!(cols[4].data_type, Some(DataType::Text));
    assert_eq!((cols[4].nullable, cols[4].precision, cols[4].timezone), (Some(true), Some(3), Some(false)));
    assert_eq!(cols[4].description.as_deref(), Some("fetch time"));
    let r = &cols[5];
    assert!(r.unique == Some(true) && r.partition && r.cluster && r.sort && !r.primary_key);
    assert_eq!(r.dedup_sort, Some(dlt_core::schema::SortOrder::Asc));
    assert_eq!(r.precision, Some(16));
    assert_eq!(Page::<u8>::serde_keys(), ["PageNo", "Items", "NEXT", "Total", "FetchedAt", "Ref"]);
    assert_eq!(Page::<u8>::table_name(), Some("pages"));
    assert_eq!(Page::<u8>::write_disposition(), Some(WriteDisposition::Merge));
    assert_eq!(<Page<u8> as ColumnType>::DATA_TYPE, DataType::Json);
}

#[test]
fn borrowed_fields() {
    let cols = Item::columns();
    let types: Vec<_> = cols.iter().map(|c| c.data_type.unwrap()).collect();
    assert_eq!(types, [DataType::Text, DataType::Binary, DataType::Binary]);
    let v = serde_json::to_value(Item { label: "x", bytes: b"ab", amounts: [1, 2, 3, 4] }).unwrap();
    assert_eq!(v["label"], "x");
}
