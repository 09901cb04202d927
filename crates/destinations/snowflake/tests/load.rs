//! The load step on fakesnow: a parquet job file goes into the table's stage with `PUT` (the
//! presigned-URL path) and into the table with `COPY INTO … FILES = (…)`; the same job again
//! adds nothing (Snowflake's load history). Read back by Snowflake's own Python connector.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{BooleanArray, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
use arrow::record_batch::RecordBatch;
use dlt_core::destination::{FileFormat, JobFile};
use dlt_core::runtime::block_on;
use dlt_core::schema::{Schema, Table};
use dlt_snowflake::{Client, Credentials, SnowflakeConnection, SnowflakeDialect};
use dlt_sql::{Dialect, SqlConnection};
use serde_json::json;

fn credentials(port: u16) -> Credentials {
    Credentials::parse(&format!("snowflake://loader:pw@testacct/DLT_DATA?host=127.0.0.1&port={port}&protocol=http"))
        .unwrap()
}

fn write_job(dir: &std::path::Path) -> JobFile {
    let schema = Arc::new(ArrowSchema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("flag", DataType::Boolean, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec![Some("ä"), None, Some("it's")])),
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
        ],
    )
    .unwrap();
    let path = dir.join(JobFile::file_name("items", "f1a2b3", 0, FileFormat::Parquet));
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    JobFile { table: "items".into(), file_id: "f1a2b3".into(), retry: 0, format: FileFormat::Parquet, path }
}

#[test]
fn a_parquet_job_is_put_into_the_table_stage_and_copied_once() {
    let Some(server) = dlt_testkit::services::fakesnow() else { return };
    let dir = std::env::temp_dir().join(format!("dlt-snowflake-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let job = write_job(&dir);
    let table: Table = serde_json::from_value(json!({
        "name": "items",
        "columns": {
            "id": {"data_type": "bigint", "nullable": false},
            "name": {"data_type": "text"},
            "flag": {"data_type": "bool"}
        }
    }))
    .unwrap();
    let mut schema = Schema::new("load_test");
    schema.tables.insert("items".into(), table.clone());
    let d = SnowflakeDialect;
    block_on(async {
        let client = Client::login(&credentials(server.port), None, Duration::from_secs(30)).await.unwrap();
        let mut conn = SnowflakeConnection::new(client);
        let mut ddl = dlt_sql::system_tables_sql(&d, "my_data");
        ddl.extend(dlt_sql::schema_update_sql(&d, "my_data", &schema, &["items".to_string()], &HashMap::new()));
        conn.execute(&ddl.join("\n")).await.unwrap();
        let target = format!("{}.{}", d.quote("my_data"), d.quote("items"));
        conn.load_job(&target, &table, &job).await.unwrap();
        // the same job again (a retry after a lost answer): the load history skips the file
        conn.load_job(&target, &table, &job).await.unwrap();
    });
    let rows = server.query("DLT_DATA", "SELECT ID, NAME, FLAG FROM MY_DATA.ITEMS ORDER BY ID");
    assert_eq!(
        rows,
        vec![
            vec![json!(1), json!("ä"), json!(true)],
            vec![json!(2), json!(null), json!(false)],
            vec![json!(3), json!("it's"), json!(null)],
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
