//! A client for one dataset: dlt's system files, the commit procedure and state restore.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use base64::Engine;
use chrono::{DateTime, Utc};
use dlt_core::destination::{
    DestinationClient, FileFormat, FollowUpJob, JobFile, JobStatus, PackageToLoad, SqlClient, StoredState,
};
use dlt_core::error::Result;
use dlt_core::schema::{LOADS_TABLE, STATE_TABLE, Schema, VERSION_TABLE, WriteDisposition};
use serde_json::{Value, json};

use crate::convert;
use crate::error::{FsError, FsResult};
use crate::layout::{PathParams, check_segment};
use crate::{Shared, TableFormat};

/// The file marking an initialized dataset (holds the storage version, as dlt writes it).
pub const INIT_FILE: &str = "init";
/// dlt's separator of name parts in system file names.
pub const FILENAME_SEPARATOR: &str = "__";
/// Folder of the commit journals (one per package being committed).
pub const JOURNAL_DIR: &str = "_dlt_journal";
/// dlt's storage version (2: compressed files end in `.gz`).
pub const STORAGE_VERSION: i64 = 2;

/// A package's commit journal: the files it adds and the files it replaces.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Journal {
    /// The load id.
    pub load_id: String,
    /// The schema name (names the `_dlt_loads` file that commits the package).
    pub schema_name: String,
    /// Files written by the package (dataset-relative).
    pub adds: Vec<String>,
    /// Files of replaced tables to delete once the package is committed (dataset-relative).
    pub deletes: Vec<String>,
}

/// Follow-up job kinds.
const DELTA_COMMIT: &str = "delta";
const DELTA_MERGE: &str = "delta-merge";

/// The plan of the package being loaded.
#[derive(Debug)]
struct FsPackage {
    load_id: String,
    /// Tables stored as Delta tables.
    delta: BTreeSet<String>,
    /// Merged (Delta) root tables.
    merge_roots: Vec<String>,
    /// Every table of a merged chain.
    merge_tables: BTreeSet<String>,
    /// (table, dataset-relative folder) of each Delta table.
    delta_dirs: Vec<(String, String)>,
    /// (file id, dataset-relative path) of each plain job file.
    adds: Vec<(String, String)>,
    /// The journal written by `begin`.
    journal: Option<Journal>,
}

/// A table of a dataset as stored: what `dlt pipeline NAME info` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTable {
    /// The table name.
    pub table: String,
    /// Data files a reader sees (for a Delta table: the files of its current version).
    pub files: usize,
    /// Their total size in bytes.
    pub bytes: u64,
    /// The Delta table's current version (`None` for plain files).
    pub delta_version: Option<u64>,
}

/// A client for one dataset of a filesystem destination.
pub struct FilesystemClient {
    shared: Arc<Shared>,
    dataset: String,
    package: Option<FsPackage>,
    #[cfg(feature = "sql")]
    sql: Option<crate::sql::SqlState>,
}

impl std::fmt::Debug for FilesystemClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilesystemClient").field("dataset", &self.dataset).finish_non_exhaustive()
    }
}

/// `base64(hash)` as hex, as dlt puts hashes into file names.
pub fn hash_to_path_part(hash: &str) -> String {
    match base64::engine::general_purpose::STANDARD.decode(hash) {
        Ok(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Err(_) => hash.chars().filter(|c| c.is_ascii_alphanumeric()).collect(),
    }
}

/// Split a system file name `a__b__c.jsonl` into its parts (the first may contain `__`).
pub fn file_parts(path: &str, n: usize) -> Option<Vec<String>> {
    let name = path.rsplit('/').next()?;
    let stem = name.strip_suffix(".jsonl")?;
    let mut parts: Vec<String> = stem.rsplitn(n, FILENAME_SEPARATOR).map(str::to_string).collect();
    if parts.len() != n {
        return None;
    }
    parts.reverse();
    Some(parts)
}

fn newer(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) if x != y => x > y,
        _ => a > b,
    }
}

/// Python's `datetime.isoformat()` of a UTC time (what dlt's JSON writes for datetimes).
pub fn py_isoformat(t: DateTime<Utc>) -> String {
    if t.timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

impl FilesystemClient {
    pub(crate) fn new(shared: Arc<Shared>, dataset: &str) -> FsResult<Self> {
        check_segment("dataset name", dataset)?;
        Ok(FilesystemClient {
            shared,
            dataset: dataset.to_string(),
            package: None,
            #[cfg(feature = "sql")]
            sql: None,
        })
    }

    /// The dataset name.
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// Bucket-relative path of a dataset-relative one.
    fn ds(&self, rel: &str) -> String {
        format!("{}/{}", self.dataset, rel)
    }

    fn strip_ds<'a>(&self, bucket_rel: &'a str) -> &'a str {
        bucket_rel.strip_prefix(&self.dataset).and_then(|r| r.strip_prefix('/')).unwrap_or(bucket_rel)
    }

    fn store(&self) -> &crate::storage::Store {
        &self.shared.store
    }

    /// Whether the table is one of dlt's (`_dlt…`), which always gets its own folder.
    fn is_dlt_table(table: &str) -> bool {
        table.starts_with("_dlt")
    }

    /// The dataset-relative prefix all files of `table` start with.
    pub fn table_prefix(&self, schema_name: &str, table: &str) -> FsResult<String> {
        check_segment("table name", table)?;
        if table == JOURNAL_DIR {
            return Err(FsError::UnsafePath(format!("table name `{table}` is reserved by dlt-rs")));
        }
        if Self::is_dlt_table(table) {
            return Ok(format!("{table}/"));
        }
        self.shared.layout.table_prefix(schema_name, table)
    }

    /// All stored files of `table` (dataset-relative), including files of uncommitted packages
    /// and files a committed replace has yet to delete.
    fn raw_table_files(&self, schema_name: &str, table: &str) -> FsResult<Vec<String>> {
        let prefix = self.table_prefix(schema_name, table)?;
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let list_dir = if dir.is_empty() { self.dataset.clone() } else { self.ds(dir) };
        Ok(self
            .store()
            .list(&list_dir)?
            .into_iter()
            .map(|p| self.strip_ds(&p).to_string())
            .filter(|p| p.starts_with(&prefix) && p.rsplit('/').next() != Some(INIT_FILE))
            .collect())
    }

    /// The files of `table` a reader should see (dataset-relative): files of uncommitted packages
    /// and files replaced by a committed package are left out, so a reader sees the table before
    /// or after a replace, never a mix.
    pub fn table_files(&self, schema_name: &str, table: &str) -> FsResult<Vec<String>> {
        let hidden = self.hidden_files()?;
        Ok(self.raw_table_files(schema_name, table)?.into_iter().filter(|f| !hidden.contains(f)).collect())
    }

    /// URLs of [`FilesystemClient::table_files`].
    pub fn table_file_urls(&self, schema_name: &str, table: &str) -> FsResult<Vec<String>> {
        Ok(self.table_files(schema_name, table)?.iter().map(|f| self.store().url_of(&self.ds(f))).collect())
    }

    fn hidden_files(&self) -> FsResult<HashSet<String>> {
        let mut hidden = HashSet::new();
        let journals = self.journals()?;
        if journals.is_empty() {
            return Ok(hidden);
        }
        let loads = self.committed_loads()?;
        for j in journals {
            if loads.contains(&j.load_id) {
                hidden.extend(j.deletes);
            } else {
                hidden.extend(j.adds);
            }
        }
        Ok(hidden)
    }

    fn journal_path(&self, load_id: &str) -> String {
        self.ds(&format!("{JOURNAL_DIR}/{load_id}.json"))
    }

    fn journals(&self) -> FsResult<Vec<Journal>> {
        let mut out = vec![];
        for p in self.store().list(&self.ds(JOURNAL_DIR))? {
            if !p.ends_with(".json") {
                continue;
            }
            if let Some(b) = self.store().get_bytes(&p)? {
                let j: Journal = serde_json::from_slice(&b)
                    .map_err(|e| FsError::Corrupt { path: p.clone(), message: e.to_string() })?;
                out.push(j);
            }
        }
        Ok(out)
    }

    fn read_journal(&self, load_id: &str) -> FsResult<Option<Journal>> {
        let p = self.journal_path(load_id);
        match self.store().get_bytes(&p)? {
            Some(b) => {
                Ok(Some(serde_json::from_slice(&b).map_err(|e| FsError::Corrupt { path: p, message: e.to_string() })?))
            }
            None => Ok(None),
        }
    }

    /// Load ids with a `_dlt_loads` file.
    pub fn committed_loads(&self) -> FsResult<HashSet<String>> {
        Ok(self
            .store()
            .list(&self.ds(LOADS_TABLE))?
            .iter()
            .filter_map(|p| file_parts(p, 2))
            .map(|mut parts| parts.swap_remove(1))
            .collect())
    }

    fn loads_file(&self, schema_name: &str, load_id: &str) -> String {
        self.ds(&format!("{LOADS_TABLE}/{schema_name}{FILENAME_SEPARATOR}{load_id}.jsonl"))
    }

    fn write_json(&self, rel_bucket: &str, v: &Value) -> FsResult<()> {
        self.store().put_bytes(rel_bucket, v.to_string().into_bytes())
    }

    /// Finish the deletions of committed packages whose process died before it could.
    fn recover(&self) -> FsResult<()> {
        let journals = self.journals()?;
        if journals.is_empty() {
            return Ok(());
        }
        let loads = self.committed_loads()?;
        for j in journals {
            if loads.contains(&j.load_id) {
                tracing::info!("finishing the replace of committed load {} ({} files)", j.load_id, j.deletes.len());
                for d in &j.deletes {
                    self.store().delete(&self.ds(d))?;
                }
                self.store().delete(&self.journal_path(&j.load_id))?;
            }
        }
        Ok(())
    }

    fn init(&self) -> FsResult<()> {
        let init = self.ds(INIT_FILE);
        match self.store().get_bytes(&init)? {
            None => {
                self.write_json(&init, &json!({"initial_version": STORAGE_VERSION, "current_version": STORAGE_VERSION}))
            }
            Some(b) if b.iter().all(u8::is_ascii_whitespace) => {
                // dlt's storage version 1 (empty init file): migrate as dlt does
                self.write_json(&init, &json!({"initial_version": 1, "current_version": STORAGE_VERSION}))
            }
            Some(b) => {
                let v: Value = serde_json::from_slice(&b)
                    .map_err(|e| FsError::Corrupt { path: init.clone(), message: e.to_string() })?;
                let cur = v.get("current_version").and_then(Value::as_i64).unwrap_or(0);
                if cur > STORAGE_VERSION {
                    return Err(FsError::Config(format!(
                        "dataset {} has storage version {cur}, newer than this dlt-rs supports ({STORAGE_VERSION})",
                        self.store().url_of(&self.dataset)
                    )));
                }
                Ok(())
            }
        }
    }

    /// The `_dlt_pipeline_state` document of a package, from its state job.
    fn state_doc(job: &JobFile) -> FsResult<Value> {
        let err = |m: String| FsError::Job { path: job.path.display().to_string(), message: m };
        let f = std::fs::File::open(&job.path).map_err(|e| err(e.to_string()))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .and_then(|b| b.build())
            .map_err(|e| err(e.to_string()))?;
        for batch in reader {
            let b = batch.map_err(|e| err(e.to_string()))?;
            if b.num_rows() == 0 {
                continue;
            }
            let col = |n: &str| b.column_by_name(n).ok_or_else(|| err(format!("state job has no column {n}")));
            let i64_of = |n: &str| -> FsResult<i64> {
                col(n)?
                    .as_primitive_opt::<Int64Type>()
                    .map(|a| a.value(0))
                    .ok_or_else(|| err(format!("{n} is not int64")))
            };
            let str_of = |n: &str| -> FsResult<Option<String>> {
                let c = col(n)?;
                let a = c.as_string_opt::<i32>().ok_or_else(|| err(format!("{n} is not a string")))?;
                Ok(if a.is_null(0) { None } else { Some(a.value(0).to_string()) })
            };
            let created = col("created_at")?
                .as_primitive_opt::<TimestampMicrosecondType>()
                .and_then(|a| DateTime::from_timestamp_micros(a.value(0)))
                .unwrap_or_else(Utc::now);
            return Ok(json!({
                "version": i64_of("version")?,
                "engine_version": i64_of("engine_version")?,
                "pipeline_name": str_of("pipeline_name")?,
                "state": str_of("state")?,
                "created_at": py_isoformat(created),
                "version_hash": str_of("version_hash")?,
                "_dlt_load_id": str_of("_dlt_load_id")?,
            }));
        }
        Err(err("state job has no row".into()))
    }

    /// Keep the newest `max_state_files` state files of a pipeline (dlt's cleanup).
    fn cleanup_states(&self, pipeline_name: &str) -> FsResult<()> {
        let max = self.shared.max_state_files;
        if max < 1 {
            return Ok(());
        }
        let mut files: Vec<(String, String)> = self
            .store()
            .list(&self.ds(STATE_TABLE))?
            .into_iter()
            .filter_map(|p| {
                let parts = file_parts(&p, 3)?;
                (parts[0] == pipeline_name).then(|| (parts[1].clone(), p))
            })
            .collect();
        if files.len() as i64 <= max {
            return Ok(());
        }
        files.sort_by(|a, b| if newer(&a.0, &b.0) { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater });
        for (_, p) in files.into_iter().skip(max as usize) {
            self.store().delete(&p)?;
        }
        Ok(())
    }

    /// Plan a package: check every job, decide which tables are Delta tables and where each
    /// plain job file goes. Nothing is written.
    fn plan(&self, package: &PackageToLoad<'_>) -> FsResult<FsPackage> {
        let schema = package.schema;
        let load_id = package.load_id;
        let output = self.shared.output;
        // tables stored as Delta tables (their root's table_format, else the configuration's)
        let mut delta: BTreeSet<String> = BTreeSet::new();
        for t in package.jobs.iter().map(|j| &j.table).chain(package.truncate_tables.iter()) {
            if !Self::is_dlt_table(t) && self.table_format(schema, t)? == Some(TableFormat::Delta) {
                delta.insert(t.clone());
            }
        }
        #[cfg(not(feature = "delta"))]
        if let Some(t) = delta.iter().next() {
            return Err(FsError::Unsupported(format!("table `{t}`: {}", crate::DELTA_NOT_BUILT)));
        }
        for job in package.jobs {
            if job.table == STATE_TABLE {
                continue;
            }
            if schema.write_disposition(&job.table) == WriteDisposition::Merge && !delta.contains(&job.table) {
                return Err(FsError::Unsupported(format!(
                    "table `{}` has write disposition `merge`, which the filesystem destination does not do \
                     on plain files (dlt falls back to append); use append or replace, or table_format = \"delta\"",
                    job.table
                )));
            }
            if job.format != FileFormat::Parquet {
                return Err(FsError::Job {
                    path: job.path.display().to_string(),
                    message: "only parquet job files can be loaded".into(),
                });
            }
        }
        let package_time = dlt_core::ids::load_id_time(load_id).unwrap_or_else(Utc::now);
        // merged Delta tables: their root tables, each merged with its whole chain
        let mut merge_roots: Vec<String> = vec![];
        for t in &delta {
            let root = schema.root_table_name(t).to_string();
            if schema.write_disposition(t) == WriteDisposition::Merge && !merge_roots.contains(&root) {
                merge_roots.push(root);
            }
        }
        #[cfg(feature = "delta")]
        for r in &merge_roots {
            crate::delta_merge::merge_spec(schema, r)?;
        }
        let mut merge_tables: BTreeSet<String> = BTreeSet::new();
        for r in &merge_roots {
            merge_tables.extend(schema.table_chain(r));
        }
        let mut delta_dirs: Vec<(String, String)> = vec![];
        for t in delta.iter().chain(merge_tables.iter().filter(|t| !delta.contains(*t))) {
            let prefix = self.table_prefix(&schema.name, t)?;
            let Some(dir) = prefix.strip_suffix('/').filter(|d| !d.is_empty()) else {
                return Err(FsError::Config(format!(
                    "Delta table `{t}`: the layout `{}` does not give the table a folder of its own",
                    self.shared.layout.template()
                )));
            };
            delta_dirs.push((t.clone(), self.ds(dir)));
        }
        let mut adds: Vec<(String, String)> = vec![];
        for job in package.jobs.iter().filter(|j| j.table != STATE_TABLE && !delta.contains(&j.table)) {
            self.table_prefix(&schema.name, &job.table)?;
            let mut rel = self.shared.layout.render(&PathParams {
                schema_name: &schema.name,
                table_name: &job.table,
                load_id,
                file_id: &job.file_id,
                ext: output.format.extension(),
                load_package_timestamp: package_time,
                current_datetime: self.shared.current_datetime,
            })?;
            if output.gz_suffix() {
                rel.push_str(".gz");
            }
            adds.push((job.file_id.clone(), rel));
        }
        let add_set: HashSet<&str> = adds.iter().map(|(_, r)| r.as_str()).collect();
        if add_set.len() != adds.len() {
            return Err(FsError::Config(format!(
                "layout `{}` gives two job files of load {load_id} the same path; add {{file_id}}",
                self.shared.layout.template()
            )));
        }
        Ok(FsPackage {
            load_id: load_id.to_string(),
            delta,
            merge_roots,
            merge_tables,
            delta_dirs,
            adds,
            journal: None,
        })
    }

    /// The plan of `package` (made once per package).
    fn package(&mut self, package: &PackageToLoad<'_>) -> FsResult<&mut FsPackage> {
        if self.package.as_ref().is_none_or(|p| p.load_id != package.load_id) {
            self.package = Some(self.plan(package)?);
        }
        Ok(self.package.as_mut().expect("just planned"))
    }

    /// Begin a package: write its journal (the files it adds and the replaced files it
    /// deletes once committed). Re-runnable: a resumed package keeps the files its completed
    /// jobs wrote.
    fn begin(&mut self, package: &PackageToLoad<'_>) -> FsResult<()> {
        let schema = package.schema;
        let load_id = package.load_id;
        let (delta, adds) = {
            let p = self.package(package)?;
            (p.delta.clone(), p.adds.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>())
        };
        let add_set: HashSet<&str> = adds.iter().map(String::as_str).collect();
        // files to replace: everything under the replaced tables' prefixes, listed before writing
        let mut deletes: BTreeSet<String> = BTreeSet::new();
        for t in package.truncate_tables.iter().filter(|t| !delta.contains(*t)) {
            for f in self.raw_table_files(&schema.name, t)? {
                if !add_set.contains(f.as_str()) {
                    deletes.insert(f);
                }
            }
        }
        // an earlier attempt of this package: files it wrote that this attempt does not rewrite
        if let Some(prev) = self.read_journal(load_id)? {
            for f in prev.adds.into_iter().chain(prev.deletes) {
                if !add_set.contains(f.as_str()) {
                    deletes.insert(f);
                }
            }
        }
        let journal = Journal {
            load_id: load_id.to_string(),
            schema_name: schema.name.clone(),
            adds: adds.clone(),
            deletes: deletes.into_iter().collect(),
        };
        let jv = serde_json::to_value(&journal).map_err(|e| FsError::Config(e.to_string()))?;
        self.write_json(&self.journal_path(load_id), &jv)?;
        self.package(package)?.journal = Some(journal);
        Ok(())
    }

    /// Write one plain job file where the layout puts it (Delta tables and the state job are
    /// written by follow-up jobs and at completion).
    fn load_one(&mut self, package: &PackageToLoad<'_>, job: &JobFile) -> FsResult<()> {
        let output = self.shared.output;
        let rel = {
            let p = self.package(package)?;
            if job.table == STATE_TABLE || p.delta.contains(&job.table) {
                return Ok(());
            }
            p.adds.iter().find(|(id, _)| id == &job.file_id).map(|(_, r)| r.clone())
        };
        let Some(rel) = rel else {
            return Err(FsError::Job {
                path: job.path.display().to_string(),
                message: "not part of the package".into(),
            });
        };
        let prepared = convert::prepare(&job.path, output)?;
        self.store().put_file(&self.ds(&rel), prepared.path())?;
        Ok(())
    }

    /// The follow-up jobs: one Delta commit per Delta table (parents first), one Delta merge
    /// per merged root table.
    fn follow_ups(&mut self, package: &PackageToLoad<'_>) -> FsResult<Vec<FollowUpJob>> {
        let p = self.package(package)?;
        let mut out: Vec<FollowUpJob> = package
            .schema
            .tables
            .keys()
            .filter(|t| p.delta.contains(*t) && !p.merge_tables.contains(*t))
            .map(|t| FollowUpJob::new(t.as_str(), DELTA_COMMIT))
            .collect();
        out.extend(p.merge_roots.iter().map(|r| FollowUpJob::new(r.as_str(), DELTA_MERGE)));
        Ok(out)
    }

    /// Run a follow-up job: commit a table's job files as one Delta version (a retry finds the
    /// version this load already wrote and skips it).
    fn follow_up(&mut self, package: &PackageToLoad<'_>, job: &FollowUpJob) -> FsResult<()> {
        #[cfg(feature = "delta")]
        {
            let schema = package.schema;
            let load_id = package.load_id;
            let delta_dirs = self.package(package)?.delta_dirs.clone();
            let dir_of = |t: &str| delta_dirs.iter().find(|(d, _)| d == t).map(|(_, dir)| dir.clone());
            let files_of = |t: &str| -> Vec<&std::path::Path> {
                package.jobs.iter().filter(|j| j.table == t).map(|j| j.path.as_path()).collect()
            };
            match job.kind.as_str() {
                DELTA_COMMIT => {
                    let (Some(dir), Some(table)) = (dir_of(&job.table), schema.tables.get(&job.table)) else {
                        return Err(FsError::Config(format!("`{}` is not a Delta table of this package", job.table)));
                    };
                    let dj = crate::delta::DeltaJob {
                        table,
                        files: files_of(&job.table),
                        overwrite: package.truncate_tables.contains(&job.table),
                    };
                    return crate::delta::write(self.store(), &dir, &dj, load_id);
                }
                DELTA_MERGE => {
                    let spec = crate::delta_merge::merge_spec(schema, &job.table)?;
                    let mut chain = vec![];
                    for t in schema.table_chain(&job.table) {
                        let dir = dir_of(&t).ok_or_else(|| FsError::Config(format!("`{t}` has no Delta folder")))?;
                        chain.push(crate::delta_merge::ChainTable {
                            table: &schema.tables[&t],
                            dir,
                            files: files_of(&t),
                        });
                    }
                    return crate::delta_merge::merge(self.store(), &spec, &chain, load_id);
                }
                _ => {}
            }
        }
        let _ = package;
        Err(FsError::Config(format!("unknown follow-up job `{}`", job.key())))
    }

    /// Complete a package: the state file, then the `_dlt_loads` file (the commit point), then
    /// the replaced files are deleted and the journal with them.
    fn complete(&mut self, package: &PackageToLoad<'_>) -> FsResult<()> {
        let schema = package.schema;
        let load_id = package.load_id;
        let journal = match self.package(package)?.journal.take() {
            Some(j) => j,
            None => self.read_journal(load_id)?.unwrap_or_default(),
        };
        dlt_core::fault::hit("load.in_transaction");
        if let Some(state_job) = package.jobs.iter().find(|j| j.table == STATE_TABLE) {
            let doc = Self::state_doc(state_job)?;
            let pipeline = doc["pipeline_name"].as_str().unwrap_or_default().to_string();
            check_segment("pipeline name", &pipeline)?;
            let name = format!(
                "{STATE_TABLE}/{pipeline}{FILENAME_SEPARATOR}{load_id}{FILENAME_SEPARATOR}{}.jsonl",
                hash_to_path_part(&schema.version_hash)
            );
            self.write_json(&self.ds(&name), &doc)?;
        }
        // the commit point
        self.write_json(
            &self.loads_file(&schema.name, load_id),
            &json!({
                "load_id": load_id,
                "schema_name": schema.name,
                "status": 0,
                "inserted_at": py_isoformat(Utc::now()),
                "schema_version_hash": schema.version_hash,
            }),
        )?;
        dlt_core::fault::hit("load.filesystem.before_delete");
        for d in &journal.deletes {
            self.store().delete(&self.ds(d))?;
        }
        self.store().delete(&self.journal_path(load_id))?;
        if let Some(state_job) = package.jobs.iter().find(|j| j.table == STATE_TABLE)
            && let Ok(doc) = Self::state_doc(state_job)
            && let Some(p) = doc["pipeline_name"].as_str()
        {
            self.cleanup_states(p)?;
        }
        self.package = None;
        #[cfg(feature = "sql")]
        {
            self.sql = None;
        }
        Ok(())
    }

    /// The table format of `table`: its root table's `table_format` hint, else the configuration's.
    pub fn table_format(&self, schema: &Schema, table: &str) -> FsResult<Option<TableFormat>> {
        match schema.root_table(table).and_then(|t| t.table_format.as_deref()) {
            Some(tf) => Ok(Some(TableFormat::parse(tf)?)),
            None => Ok(self.shared.table_format),
        }
    }

    /// Stored schema files: (path, schema name, sortable id, hash part).
    fn schema_files(&self) -> FsResult<Vec<(String, Vec<String>)>> {
        Ok(self
            .store()
            .list(&self.ds(VERSION_TABLE))?
            .into_iter()
            .filter_map(|p| file_parts(&p, 3).map(|parts| (p, parts)))
            .collect())
    }

    /// The newest stored schema document of every schema name.
    pub fn stored_schemas(&self) -> FsResult<Vec<Schema>> {
        let mut newest: std::collections::BTreeMap<String, (String, String)> = Default::default();
        for (p, parts) in self.schema_files()? {
            let e = newest.entry(parts[0].clone()).or_insert_with(|| (parts[1].clone(), p.clone()));
            if newer(&parts[1], &e.0) {
                *e = (parts[1].clone(), p);
            }
        }
        let mut out = vec![];
        for (_, (_, p)) in newest {
            if let Some(doc) = self.read_schema_doc(&p)? {
                out.push(Schema::from_str_any(&doc).map_err(|e| FsError::Corrupt { path: p, message: e.to_string() })?);
            }
        }
        Ok(out)
    }

    fn read_schema_doc(&self, p: &str) -> FsResult<Option<String>> {
        let Some(b) = self.store().get_bytes(p)? else { return Ok(None) };
        let v: Value =
            serde_json::from_slice(&b).map_err(|e| FsError::Corrupt { path: p.to_string(), message: e.to_string() })?;
        Ok(v.get("schema").and_then(Value::as_str).map(str::to_string))
    }

    /// Tables that have visible files: dlt's tables and the tables of the stored schemas.
    pub fn tables_with_files(&self) -> FsResult<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = vec![];
        let mut seen = HashSet::new();
        let schemas = self.stored_schemas()?;
        let hidden = self.hidden_files()?;
        let mut candidates: Vec<(String, String)> = vec![];
        for s in &schemas {
            for t in s.tables.keys() {
                candidates.push((s.name.clone(), t.clone()));
            }
        }
        for t in [LOADS_TABLE, VERSION_TABLE, STATE_TABLE] {
            candidates.push((String::new(), t.to_string()));
        }
        for (s, t) in candidates {
            if seen.contains(&t) || check_segment("table name", &t).is_err() {
                continue;
            }
            let schema_name = if s.is_empty() { "_" } else { s.as_str() };
            if self.raw_table_files(schema_name, &t)?.iter().any(|f| !hidden.contains(f)) {
                seen.insert(t.clone());
                out.push((schema_name.to_string(), t));
            }
        }
        Ok(out)
    }

    /// The dataset's tables as stored (for `dlt pipeline NAME info`): every table of the stored
    /// schemas and dlt's own tables that has files, with the number of files a reader sees and
    /// their total size; Delta tables with their current version (their files from the log).
    pub fn stored_tables(&self) -> FsResult<Vec<StoredTable>> {
        let hidden = self.hidden_files()?;
        let mut out = vec![];
        for (schema_name, table) in self.tables_with_files()? {
            let prefix = self.table_prefix(&schema_name, &table)?;
            let dir = prefix.strip_suffix('/').filter(|d| !d.is_empty());
            #[cfg(feature = "delta")]
            if let Some(dir) = dir
                && !Self::is_dlt_table(&table)
                && crate::delta::is_delta_table(self.store(), &self.ds(dir))?
            {
                let (version, files, bytes) = crate::delta::summary(self.store(), &self.ds(dir), &table)?;
                out.push(StoredTable { table, files, bytes, delta_version: Some(version) });
                continue;
            }
            let _ = dir;
            let dir = match prefix.rfind('/') {
                Some(i) => self.ds(&prefix[..i]),
                None => self.dataset.clone(),
            };
            let (mut files, mut bytes) = (0usize, 0u64);
            for (p, size) in self.store().list_sizes(&dir)? {
                let rel = self.strip_ds(&p);
                if rel.starts_with(&prefix) && !hidden.contains(rel) && rel.rsplit('/').next() != Some(INIT_FILE) {
                    files += 1;
                    bytes += size;
                }
            }
            out.push(StoredTable { table, files, bytes, delta_version: None });
        }
        out.sort_by(|a, b| a.table.cmp(&b.table));
        Ok(out)
    }

    #[cfg(feature = "sql")]
    pub(crate) fn shared_store(&self) -> &crate::storage::Store {
        self.store()
    }

    #[cfg(feature = "sql")]
    pub(crate) fn bucket_rel(&self, dataset_rel: &str) -> String {
        self.ds(dataset_rel)
    }

    #[cfg(feature = "sql")]
    fn sql_state(&mut self) -> Result<&mut crate::sql::SqlState> {
        if self.sql.is_none() {
            self.sql = Some(crate::sql::SqlState::open(self)?);
        }
        Ok(self.sql.as_mut().expect("just set"))
    }
}

// The store below still blocks on its own I/O runtime (from a helper thread when called on an
// async worker); moving it onto the pipeline's runtime is listed in docs/architecture.md.
#[cfg(feature = "sql")]
#[async_trait::async_trait]
impl SqlClient for FilesystemClient {
    async fn execute(&mut self, sql: &str) -> Result<()> {
        self.sql_state()?.execute(sql)
    }
    async fn query(&mut self, sql: &str) -> Result<Vec<arrow::record_batch::RecordBatch>> {
        self.sql_state()?.query(sql)
    }
}

#[async_trait::async_trait]
impl DestinationClient for FilesystemClient {
    async fn initialize_storage(&mut self) -> Result<()> {
        self.init()?;
        self.recover()?;
        Ok(())
    }

    async fn update_stored_schema(&mut self, schema: &Schema, tables: &[String]) -> Result<()> {
        for t in tables {
            self.table_prefix(&schema.name, t)?;
        }
        check_segment("schema name", &schema.name)?;
        let hash = hash_to_path_part(&schema.version_hash);
        if self.schema_files()?.iter().any(|(_, parts)| parts[2] == hash) {
            return Ok(());
        }
        let now = Utc::now();
        let id = dlt_core::ids::format_py_float(now.timestamp_micros() as f64 / 1_000_000.0);
        let name = format!("{VERSION_TABLE}/{}{FILENAME_SEPARATOR}{id}{FILENAME_SEPARATOR}{hash}.jsonl", schema.name);
        self.write_json(
            &self.ds(&name),
            &json!({
                "version_hash": schema.version_hash,
                "schema_name": schema.name,
                "version": schema.version,
                "engine_version": schema.engine_version,
                "inserted_at": py_isoformat(now),
                "schema": schema.to_json(),
            }),
        )?;
        Ok(())
    }

    async fn is_loaded(&mut self, load_id: &str) -> Result<bool> {
        Ok(self.committed_loads()?.contains(load_id))
    }

    async fn begin_package(&mut self, package: &PackageToLoad<'_>) -> Result<()> {
        Ok(self.begin(package)?)
    }

    async fn load_job(&mut self, package: &PackageToLoad<'_>, job: &JobFile) -> JobStatus {
        JobStatus::from_result(self.load_one(package, job).map_err(Into::into))
    }

    async fn follow_up_jobs(&mut self, package: &PackageToLoad<'_>) -> Result<Vec<FollowUpJob>> {
        Ok(self.follow_ups(package)?)
    }

    async fn run_follow_up(&mut self, package: &PackageToLoad<'_>, job: &FollowUpJob) -> JobStatus {
        JobStatus::from_result(self.follow_up(package, job).map_err(Into::into))
    }

    async fn complete_package(&mut self, package: &PackageToLoad<'_>) -> Result<()> {
        Ok(self.complete(package)?)
    }

    async fn stored_state(&mut self, pipeline_name: &str) -> Result<Option<StoredState>> {
        let files = self.store().list(&self.ds(STATE_TABLE))?;
        if files.is_empty() {
            return Ok(None);
        }
        let loads = self.committed_loads()?;
        let mut best: Option<(String, String)> = None;
        for p in files {
            let Some(parts) = file_parts(&p, 3) else { continue };
            if parts[0] != pipeline_name || !loads.contains(&parts[1]) {
                continue;
            }
            if best.as_ref().is_none_or(|(l, _)| newer(&parts[1], l)) {
                best = Some((parts[1].clone(), p));
            }
        }
        let Some((load_id, p)) = best else { return Ok(None) };
        let Some(b) = self.store().get_bytes(&p)? else { return Ok(None) };
        let v: Value =
            serde_json::from_slice(&b).map_err(|e| FsError::Corrupt { path: p.clone(), message: e.to_string() })?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let corrupt = |m: &str| FsError::Corrupt { path: p.clone(), message: m.to_string() };
        Ok(Some(StoredState {
            version: v.get("version").and_then(Value::as_i64).ok_or_else(|| corrupt("no version"))?,
            engine_version: v.get("engine_version").and_then(Value::as_i64).unwrap_or(4),
            pipeline_name: s("pipeline_name").unwrap_or_else(|| pipeline_name.to_string()),
            state: s("state").ok_or_else(|| corrupt("no state"))?,
            load_id: s("_dlt_load_id").or_else(|| s("dlt_load_id")).unwrap_or(load_id),
        }))
    }

    async fn stored_schema(&mut self, schema_name: &str) -> Result<Option<String>> {
        let mut best: Option<(String, String)> = None;
        for (p, parts) in self.schema_files()? {
            if parts[0] != schema_name {
                continue;
            }
            if best.as_ref().is_none_or(|(id, _)| newer(&parts[1], id)) {
                best = Some((parts[1].clone(), p));
            }
        }
        match best {
            Some((_, p)) => Ok(self.read_schema_doc(&p)?),
            None => Ok(None),
        }
    }

    async fn drop_tables(&mut self, tables: &[String]) -> Result<()> {
        // the schema name only matters for layouts with {schema_name}: try every stored one
        let mut names: Vec<String> = self.stored_schemas()?.into_iter().map(|s| s.name).collect();
        if names.is_empty() {
            names.push("_".into());
        }
        for t in tables {
            for s in &names {
                for f in self.raw_table_files(s, t)? {
                    self.store().delete(&self.ds(&f))?;
                }
            }
        }
        #[cfg(feature = "sql")]
        {
            self.sql = None;
        }
        Ok(())
    }

    async fn existing_tables(&mut self) -> Result<Vec<String>> {
        let mut v: Vec<String> = self.tables_with_files()?.into_iter().map(|(_, t)| t).collect();
        v.sort();
        Ok(v)
    }
    #[cfg(feature = "sql")]
    fn sql(&mut self) -> Option<&mut dyn SqlClient> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            file_parts("ds/_dlt_loads/my__schema__1700000000.5.jsonl", 2).unwrap(),
            ["my__schema", "1700000000.5"]
        );
        assert_eq!(file_parts("x/p__1.0__abcd.jsonl", 3).unwrap(), ["p", "1.0", "abcd"]);
        assert!(file_parts("x/p__1.0.jsonl", 3).is_none());
        assert!(file_parts("x/init", 2).is_none());
        assert_eq!(hash_to_path_part("AAEC/w=="), "000102ff");
        assert!(newer("1700000000.9", "1700000000.10"));
        assert!(newer("1000000000.0", "999999999.9"));
        assert!(!newer("99.0", "100.0"));
        let t = DateTime::from_timestamp_micros(1_700_000_000_000_001).unwrap();
        assert_eq!(py_isoformat(t), "2023-11-14T22:13:20.000001+00:00");
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(py_isoformat(t), "2023-11-14T22:13:20+00:00");
    }
}
