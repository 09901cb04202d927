//! Delta tables (`table_format = "delta"`), written with [`deltalake`] (delta-rs) without its
//! DataFusion feature: the table is created, appended to and overwritten with delta-rs'
//! `RecordBatchWriter` and explicit commits; new columns are added with `add_columns`.
//!
//! - Location: `<bucket_url>/<dataset>/<table_name>/` (the `_delta_log` folder and the data files,
//!   hive-style `col=value/` folders for partitioned tables), through this destination's own
//!   object store (so every bucket protocol and its credentials work the same way).
//! - A new table is created from the dlt table's complete columns (types below; `partition`
//!   hints become its partition columns, fixed from then on), then the first data is appended.
//! - `append` adds files; `replace` commits the new files together with the removal of every file
//!   the table had (one commit: a reader sees the old rows or the new ones); a replace without
//!   rows removes all files. New dlt columns are added (nullable) before the data is written.
//! - Every data commit carries the application transaction `(dlt-rs, <load id as integer>)`: a
//!   retried package skips the tables an earlier attempt already committed.
//! - `merge` is done by [`crate::delta_merge`] (delta-rs' own `MERGE` needs DataFusion, which
//!   this build does not include).
//!
//! | dlt type | Delta type |
//! |---|---|
//! | text, json | string |
//! | bigint | long |
//! | double | double |
//! | bool | boolean |
//! | timestamp (timezone) | timestamp |
//! | timestamp (timezone false) | timestamp_ntz |
//! | date | date |
//! | time | string (`HH:MM:SS.ffffff`; Delta has no time type, as in dlt) |
//! | decimal(p,s) | decimal(p,s) |
//! | wei | decimal(38,0) |
//! | binary | binary |

use std::path::Path as FsPath;
use std::sync::{Arc, Once};

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder, new_null_array};
use arrow::datatypes::{DataType as ArrowType, Schema as ArrowSchema, Time64MicrosecondType, TimeUnit};
use arrow::record_batch::RecordBatch;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, DataType, PrimitiveType, StructField, Transaction};
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories,
};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use dlt_core::schema::{Column, DataType as DltType, Table};
use futures::TryStreamExt;
use url::Url;

use crate::error::{FsError, FsResult};
use crate::storage::Store;

/// The application id of dlt-rs' Delta transactions (its version is the load id as an integer).
pub const APP_ID: &str = "dlt-rs";

/// Buffered bytes after which the writer flushes a file (bounded memory for large loads).
pub(crate) const FLUSH_BYTES: usize = 64 * 1024 * 1024;

/// What to do with a Delta table in a package.
#[derive(Debug)]
pub struct DeltaJob<'a> {
    /// The dlt table (its complete columns define the Delta schema).
    pub table: &'a Table,
    /// The package's job files (parquet) for the table.
    pub files: Vec<&'a FsPath>,
    /// Replace the table's rows (the table is in the package's truncate list).
    pub overwrite: bool,
}

pub(crate) fn derr(e: DeltaTableError, table: &str, what: &str) -> FsError {
    let message = format!("Delta table `{table}`: {what}: {e}");
    let l = message.to_ascii_lowercase();
    let transient = matches!(e, DeltaTableError::VersionAlreadyExists(_))
        || l.contains("error sending request")
        || l.contains("timed out")
        || l.contains("connection");
    FsError::Delta { message, transient }
}

/// The Delta type of a dlt column.
pub fn delta_type(c: &Column) -> FsResult<DataType> {
    Ok(match c.data_type.unwrap_or(DltType::Text) {
        DltType::Text | DltType::Json | DltType::Time => DataType::STRING,
        DltType::Bigint => DataType::LONG,
        DltType::Double => DataType::DOUBLE,
        DltType::Bool => DataType::BOOLEAN,
        DltType::Timestamp => {
            if c.timezone.unwrap_or(true) {
                DataType::TIMESTAMP
            } else {
                DataType::TIMESTAMP_NTZ
            }
        }
        DltType::Date => DataType::DATE,
        DltType::Binary => DataType::BINARY,
        DltType::Decimal => {
            let (p, s) = (c.precision.unwrap_or(38).min(38), c.scale.unwrap_or(9));
            DataType::Primitive(PrimitiveType::decimal(p as u8, s as u8).map_err(|e| {
                FsError::Config(format!("column `{}`: decimal({p},{s}) is not a Delta type: {e}", c.name))
            })?)
        }
        DltType::Wei => DataType::Primitive(PrimitiveType::decimal(38, 0).expect("valid decimal")),
    })
}

/// A log store factory that keeps the given object store (commits use put-if-absent, which local
/// files, S3, GCS and Azure Blob all provide), registered for the cloud schemes that delta-rs'
/// own cloud crates would otherwise serve.
#[derive(Debug, Default)]
struct PassThroughLogStoreFactory;

impl LogStoreFactory for PassThroughLogStoreFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(prefixed_store, root_store, location, options))
    }
}

fn register_log_stores() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let registry = logstore_factories();
        for scheme in ["s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "azure", "adl"] {
            let url = Url::parse(&format!("{scheme}://")).expect("valid scheme url");
            if !registry.contains_key(&url) {
                registry.insert(url, Arc::new(PassThroughLogStoreFactory));
            }
        }
    });
}

/// An unloaded handle of the Delta table at the bucket-relative folder `rel`.
pub(crate) fn table_handle(store: &Store, rel: &str, name: &str) -> FsResult<DeltaTable> {
    register_log_stores();
    let (url, root) = store.delta_backend(rel)?;
    DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| derr(e, name, "invalid location"))?
        .with_storage_backend(root, url)
        .build()
        .map_err(|e| derr(e, name, "opening"))
}

/// The load id as a monotonically increasing integer (`1700000000.1234567` → `17000000001234567`).
pub fn load_version(load_id: &str) -> Option<i64> {
    let (secs, frac) = load_id.split_once('.').unwrap_or((load_id, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac7: String = format!("{frac:0<7}").chars().take(7).collect();
    secs.parse::<i64>().ok()?.checked_mul(10_000_000)?.checked_add(frac7.parse::<i64>().ok()?)
}

pub(crate) fn commit_properties(load_id: &str) -> CommitProperties {
    let mut p = CommitProperties::default()
        .with_metadata([("dlt_load_id".to_string(), serde_json::Value::String(load_id.to_string()))]);
    if let Some(v) = load_version(load_id) {
        p = p.with_application_transaction(Transaction::new(APP_ID, v));
    }
    p
}

/// `HH:MM:SS.ffffff` (pyarrow's cast of `time64[us]` to string, as dlt writes times to Delta).
fn time_strings(a: &dyn Array) -> ArrayRef {
    let t = a.as_primitive::<Time64MicrosecondType>();
    let mut b = StringBuilder::with_capacity(t.len(), t.len() * 15);
    for i in 0..t.len() {
        if t.is_null(i) {
            b.append_null();
        } else {
            let us = t.value(i);
            let (s, f) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
            b.append_value(format!("{:02}:{:02}:{:02}.{f:06}", s / 3600, (s / 60) % 60, s % 60));
        }
    }
    Arc::new(b.finish())
}

/// A job batch in the table's Arrow schema: columns by name, cast to the table's types, missing
/// columns as nulls.
pub(crate) fn conform(batch: &RecordBatch, target: &Arc<ArrowSchema>, table: &str) -> FsResult<RecordBatch> {
    let n = batch.num_rows();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for f in target.fields() {
        let col = match batch.column_by_name(f.name()) {
            None => new_null_array(f.data_type(), n),
            Some(c) if c.data_type() == f.data_type() => c.clone(),
            Some(c)
                if matches!(c.data_type(), ArrowType::Time64(TimeUnit::Microsecond))
                    && f.data_type() == &ArrowType::Utf8 =>
            {
                time_strings(c.as_ref())
            }
            Some(c) => arrow::compute::cast(c, f.data_type()).map_err(|e| FsError::Delta {
                message: format!(
                    "Delta table `{table}`: column `{}` ({}) cannot be written as {}: {e}",
                    f.name(),
                    c.data_type(),
                    f.data_type()
                ),
                transient: false,
            })?,
        };
        cols.push(col);
    }
    RecordBatch::try_new(target.clone(), cols)
        .map_err(|e| FsError::Delta { message: format!("Delta table `{table}`: {e}"), transient: false })
}

/// Writes a package's rows of one table into its Delta table at the bucket-relative folder `rel`
/// (see the module docs).
pub fn write(store: &Store, rel: &str, job: &DeltaJob<'_>, load_id: &str) -> FsResult<()> {
    let name = job.table.name.as_str();
    let mut table = table_handle(store, rel, name)?;
    store.block_on(async move { write_async(&mut table, job, load_id).await }).map_err(|e| match e {
        FsError::Delta { message, transient } => FsError::Delta { message: store.redact(message), transient },
        e => e,
    })
}

/// The state of a Delta table before a package's rows are written.
pub(crate) enum Prepared {
    /// The table does not exist and the package has no rows for it: nothing to do.
    Absent,
    /// An earlier attempt of this package committed to the table already.
    Committed,
    /// The table exists (created now if needed), is loaded and has every column of the dlt table.
    Ready,
}

/// Open (or create, when `has_rows`) the Delta table of `t`, skip it when this load committed
/// already, and add the columns the dlt schema gained (nullable).
pub(crate) async fn prepare(table: &mut DeltaTable, t: &Table, has_rows: bool, load_id: &str) -> FsResult<Prepared> {
    let name = t.name.as_str();
    let exists = table.log_store().is_delta_table_location().await.map_err(|e| derr(e, name, "reading the log"))?;
    let cols: Vec<&Column> = t.complete_columns().collect();
    if !exists {
        if !has_rows {
            // nothing to replace and no rows: the table is created by its first rows
            return Ok(Prepared::Absent);
        }
        let fields = cols
            .iter()
            .map(|c| Ok(StructField::new(c.name.clone(), delta_type(c)?, c.is_nullable())))
            .collect::<FsResult<Vec<_>>>()?;
        let partitions: Vec<String> = cols.iter().filter(|c| c.partition).map(|c| c.name.clone()).collect();
        let created = table
            .create()
            .with_table_name(name)
            .with_columns(fields)
            .with_partition_columns(partitions)
            .with_commit_properties(
                CommitProperties::default()
                    .with_metadata([("dlt_load_id".to_string(), serde_json::Value::String(load_id.to_string()))]),
            )
            .await
            .map_err(|e| derr(e, name, "creating the table"))?;
        *table = created;
    } else {
        table.load().await.map_err(|e| derr(e, name, "loading"))?;
    }
    // an earlier attempt of this package committed already
    if let Some(v) = load_version(load_id) {
        let done = table
            .snapshot()
            .map_err(|e| derr(e, name, "reading the snapshot"))?
            .transaction_version(table.log_store().as_ref(), APP_ID)
            .await
            .map_err(|e| derr(e, name, "reading the application transaction"))?;
        if done.is_some_and(|d| d >= v) {
            tracing::info!("Delta table `{name}`: load {load_id} is committed already");
            return Ok(Prepared::Committed);
        }
    }
    // schema evolution: new dlt columns become new nullable Delta columns
    let have: Vec<String> = {
        let snap = table.snapshot().map_err(|e| derr(e, name, "reading the snapshot"))?;
        snap.schema().fields().map(|f| f.name().to_string()).collect()
    };
    let mut new_fields = vec![];
    for c in &cols {
        if !have.iter().any(|h| h == &c.name) {
            new_fields.push(StructField::new(c.name.clone(), delta_type(c)?, true));
        }
    }
    if !new_fields.is_empty() {
        let t = std::mem::replace(table, table.clone());
        *table = t
            .add_columns()
            .with_fields(new_fields)
            .with_commit_properties(
                CommitProperties::default()
                    .with_metadata([("dlt_load_id".to_string(), serde_json::Value::String(load_id.to_string()))]),
            )
            .await
            .map_err(|e| derr(e, name, "adding columns"))?;
    }
    Ok(Prepared::Ready)
}

async fn write_async(table: &mut DeltaTable, job: &DeltaJob<'_>, load_id: &str) -> FsResult<()> {
    let name = job.table.name.as_str();
    match prepare(table, job.table, !job.files.is_empty(), load_id).await? {
        Prepared::Absent | Prepared::Committed => return Ok(()),
        Prepared::Ready => {}
    }
    // the data files
    let mut writer = RecordBatchWriter::for_table(table).map_err(|e| derr(e, name, "starting the writer"))?;
    let target = writer.arrow_schema();
    let mut actions: Vec<Action> = vec![];
    for path in &job.files {
        let f = std::fs::File::open(path)
            .map_err(|e| FsError::Job { path: path.display().to_string(), message: e.to_string() })?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .and_then(|b| b.build())
            .map_err(|e| FsError::Job { path: path.display().to_string(), message: e.to_string() })?;
        for batch in reader {
            let batch = batch.map_err(|e| FsError::Job { path: path.display().to_string(), message: e.to_string() })?;
            if batch.num_rows() == 0 {
                continue;
            }
            writer.write(conform(&batch, &target, name)?).await.map_err(|e| derr(e, name, "writing"))?;
            if writer.buffer_len() >= FLUSH_BYTES {
                actions
                    .extend(writer.flush().await.map_err(|e| derr(e, name, "writing"))?.into_iter().map(Action::Add));
            }
        }
    }
    actions.extend(writer.flush().await.map_err(|e| derr(e, name, "writing"))?.into_iter().map(Action::Add));
    let snapshot = table.snapshot().map_err(|e| derr(e, name, "reading the snapshot"))?.clone();
    if job.overwrite {
        let removes: Vec<Action> = snapshot
            .snapshot()
            .file_views(&table.log_store(), None)
            .map_ok(|f| Action::Remove(f.remove_action(true)))
            .try_collect()
            .await
            .map_err(|e| derr(e, name, "listing the files to replace"))?;
        actions.extend(removes);
    }
    if actions.is_empty() {
        return Ok(());
    }
    let partition_cols: Vec<String> = snapshot.metadata().partition_columns().to_vec();
    let operation = DeltaOperation::Write {
        mode: if job.overwrite { SaveMode::Overwrite } else { SaveMode::Append },
        partition_by: (!partition_cols.is_empty()).then_some(partition_cols),
        predicate: None,
    };
    let finalized = CommitBuilder::from(commit_properties(load_id))
        .with_actions(actions)
        .build(Some(&snapshot), table.log_store(), operation)
        .await
        .map_err(|e| derr(e, name, "committing"))?;
    tracing::debug!("Delta table `{name}`: committed version {}", finalized.version());
    Ok(())
}

/// A data file of a Delta table (bucket-relative path) with its partition values.
pub type DeltaFile = (String, Vec<(String, Option<String>)>);

/// Whether the bucket-relative folder holds a Delta table (`_delta_log/`).
pub fn is_delta_table(store: &Store, rel: &str) -> FsResult<bool> {
    Ok(!store.list(&format!("{rel}/_delta_log"))?.is_empty())
}

/// The data files of the Delta table's current version (bucket-relative paths) with their
/// partition values.
pub fn current_files(store: &Store, rel: &str, name: &str) -> FsResult<Vec<DeltaFile>> {
    let mut table = table_handle(store, rel, name)?;
    store.block_on(async move {
        table.load().await.map_err(|e| derr(e, name, "loading"))?;
        let snap = table.snapshot().map_err(|e| derr(e, name, "reading the snapshot"))?;
        let files: Vec<DeltaFile> = snap
            .snapshot()
            .file_views(&table.log_store(), None)
            .map_ok(|f| {
                let mut pv: Vec<(String, Option<String>)> =
                    f.remove_action(false).partition_values.unwrap_or_default().into_iter().collect();
                pv.sort();
                (format!("{rel}/{}", f.path()), pv)
            })
            .try_collect()
            .await
            .map_err(|e| derr(e, name, "listing the files"))?;
        Ok(files)
    })
}

/// The current version of the Delta table at the bucket-relative folder `rel`, its number of
/// data files and their total size in bytes (from the log).
pub fn summary(store: &Store, rel: &str, name: &str) -> FsResult<(u64, usize, u64)> {
    let mut table = table_handle(store, rel, name)?;
    store.block_on(async move {
        table.load().await.map_err(|e| derr(e, name, "loading"))?;
        let version = table.version().unwrap_or_default();
        let snap = table.snapshot().map_err(|e| derr(e, name, "reading the snapshot"))?;
        let sizes: Vec<i64> = snap
            .snapshot()
            .file_views(&table.log_store(), None)
            .map_ok(|f| f.size())
            .try_collect()
            .await
            .map_err(|e| derr(e, name, "listing the files"))?;
        Ok((version, sizes.len(), sizes.iter().map(|s| (*s).max(0) as u64).sum()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_versions_grow_with_the_load_id() {
        assert_eq!(load_version("1700000000.1234567"), Some(17_000_000_001_234_567));
        assert_eq!(load_version("1700000000.12"), Some(17_000_000_001_200_000));
        assert_eq!(load_version("1700000000"), Some(17_000_000_000_000_000));
        assert!(load_version("1700000000.5").unwrap() > load_version("1700000000.49999").unwrap());
        assert_eq!(load_version("abc"), None);
    }

    #[test]
    fn times_as_pyarrow_strings() {
        let a = arrow::array::Time64MicrosecondArray::from(vec![Some(3_723_000_001), None, Some(0)]);
        let s = time_strings(&a);
        let s = s.as_string::<i32>();
        assert_eq!(s.value(0), "01:02:03.000001");
        assert!(s.is_null(1));
        assert_eq!(s.value(2), "00:00:00.000000");
    }

    #[test]
    fn type_mapping() {
        let c = |dt: DltType| Column::new("c", dt);
        assert_eq!(delta_type(&c(DltType::Json)).unwrap(), DataType::STRING);
        assert_eq!(delta_type(&c(DltType::Bigint)).unwrap(), DataType::LONG);
        let mut naive = c(DltType::Timestamp);
        naive.timezone = Some(false);
        assert_eq!(delta_type(&naive).unwrap(), DataType::TIMESTAMP_NTZ);
        let mut d = c(DltType::Decimal);
        d.precision = Some(10);
        d.scale = Some(2);
        assert_eq!(delta_type(&d).unwrap(), DataType::Primitive(PrimitiveType::decimal(10, 2).unwrap()));
    }
}
