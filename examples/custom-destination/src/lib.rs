//! A destination written against dlt-rs' published API only: every table is a folder of JSON
//! lines files, one file per job.
//!
//! It has no transactions, so it follows the contract's idempotent protocol
//! ([`DestinationClient`]): a job's file name is fixed by its load id and file id, so running a
//! job again overwrites the same file; a replaced table drops the files of earlier loads; the
//! `_dlt_loads` row is written last, and state is restored only from loads that have one.
//!
//! ```text
//! <path>/<dataset>/<table>/<load_id>.<file_id>.jsonl
//! <path>/<dataset>/_dlt_loads/<load_id>.jsonl           written last
//! <path>/<dataset>/_dlt_version/<schema>.<micros>.jsonl
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dlt::dlt_core::destination::{
    Capabilities, Destination, DestinationClient, FileFormat, JobFile, JobStatus, PackageToLoad, ReplaceStrategy,
    StoredState,
};
use dlt::dlt_core::registry::{DestinationContext, DestinationFactory, InitTemplate};
use dlt::dlt_core::schema::{LOADS_TABLE, STATE_TABLE, Schema, VERSION_TABLE};
use dlt::{Error, Result};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

const NAME: &str = "jsonl_folder";

/// JSON lines files in a local folder.
#[derive(Debug)]
pub struct JsonlFolder {
    root: PathBuf,
    caps: Capabilities,
}

impl JsonlFolder {
    /// A destination writing under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let caps = Capabilities::default()
            .with_preferred_file_format(FileFormat::Parquet)
            .with_replace_strategies(vec![ReplaceStrategy::TruncateAndInsert]);
        JsonlFolder { root: root.into(), caps }
    }
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::io(path, e)
}

#[async_trait::async_trait]
impl Destination for JsonlFolder {
    fn name(&self) -> &str {
        NAME
    }
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }
    fn display_location(&self) -> String {
        format!("file://{}", self.root.display())
    }
    async fn client(&self, dataset_name: &str) -> Result<Box<dyn DestinationClient>> {
        Ok(Box::new(Client { dir: self.root.join(dataset_name) }))
    }
    async fn dataset_info(&self, dataset_name: &str) -> Result<Vec<String>> {
        let client = Client { dir: self.root.join(dataset_name) };
        let tables = client.tables()?;
        Ok(vec![format!("Dataset {dataset_name} at {}: {} table folder(s)", client.dir.display(), tables.len())])
    }
}

struct Client {
    dir: PathBuf,
}

impl Client {
    fn tables(&self) -> Result<Vec<String>> {
        let mut out = vec![];
        let Ok(rd) = fs::read_dir(&self.dir) else { return Ok(out) };
        for e in rd {
            let e = e.map_err(|e| io(&self.dir, e))?;
            if e.path().is_dir() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every row of a table, with the load id of its file.
    fn rows(&self, table: &str) -> Result<Vec<Value>> {
        let dir = self.dir.join(table);
        let mut rows = vec![];
        let Ok(rd) = fs::read_dir(&dir) else { return Ok(rows) };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            let text = fs::read_to_string(&f).map_err(|e| io(&f, e))?;
            for line in text.lines().filter(|l| !l.is_empty()) {
                rows.push(serde_json::from_str(line)?);
            }
        }
        Ok(rows)
    }

    fn completed_loads(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .rows(LOADS_TABLE)?
            .iter()
            .filter(|r| r["status"] == json!(0))
            .filter_map(|r| r["load_id"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Write `lines` to `path` through a temporary file, so a reader never sees half a file.
    fn write(path: &Path, lines: &[String]) -> Result<()> {
        let dir = path.parent().expect("a file in a table folder");
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let tmp = path.with_extension("tmp");
        let mut f = fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        for l in lines {
            writeln!(f, "{l}").map_err(|e| io(&tmp, e))?;
        }
        f.sync_all().map_err(|e| io(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| io(path, e))
    }

    /// A parquet job file as JSON lines.
    fn job_lines(path: &Path) -> Result<Vec<String>> {
        let f = fs::File::open(path).map_err(|e| io(path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)?.build()?;
        let mut buf = Vec::new();
        {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
            for batch in reader {
                w.write(&batch?)?;
            }
            w.finish()?;
        }
        Ok(String::from_utf8_lossy(&buf).lines().map(str::to_string).collect())
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

#[async_trait::async_trait]
impl DestinationClient for Client {
    async fn initialize_storage(&mut self) -> Result<()> {
        fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))
    }

    async fn update_stored_schema(&mut self, schema: &Schema, _tables: &[String]) -> Result<()> {
        let known = self.rows(VERSION_TABLE)?.iter().any(|r| r["version_hash"] == json!(schema.version_hash));
        if known {
            return Ok(());
        }
        let micros = now_micros();
        let row = json!({
            "version": schema.version, "engine_version": schema.engine_version, "inserted_at": micros,
            "schema_name": schema.name, "version_hash": schema.version_hash, "schema": schema.to_json(),
        });
        let path = self.dir.join(VERSION_TABLE).join(format!("{}.{micros:020}.jsonl", schema.name));
        Self::write(&path, &[row.to_string()])
    }

    async fn is_loaded(&mut self, load_id: &str) -> Result<bool> {
        Ok(self.completed_loads()?.iter().any(|l| l == load_id))
    }

    async fn begin_package(&mut self, package: &PackageToLoad<'_>) -> Result<()> {
        // replaced tables lose the files of earlier loads (this load's files are kept: a resumed
        // package keeps what its completed jobs wrote)
        for t in package.truncate_tables {
            let dir = self.dir.join(t);
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                if !e.file_name().to_string_lossy().starts_with(package.load_id) {
                    fs::remove_file(e.path()).map_err(|err| io(&e.path(), err))?;
                }
            }
        }
        Ok(())
    }

    async fn load_job(&mut self, package: &PackageToLoad<'_>, job: &JobFile) -> JobStatus {
        if job.format != FileFormat::Parquet {
            let e = Error::Config(format!("{NAME} loads parquet job files, got {}", job.path.display()));
            return JobStatus::Failed(e);
        }
        // the same job always writes the same file: running it again overwrites it
        let path = self.dir.join(&job.table).join(format!("{}.{}.jsonl", package.load_id, job.file_id));
        JobStatus::from_result(Self::job_lines(&job.path).and_then(|lines| Self::write(&path, &lines)))
    }

    async fn complete_package(&mut self, package: &PackageToLoad<'_>) -> Result<()> {
        // last: the load is complete only with this row
        let row = json!({
            "load_id": package.load_id, "schema_name": package.schema.name, "status": 0,
            "inserted_at": now_micros(), "schema_version_hash": package.schema.version_hash,
        });
        Self::write(&self.dir.join(LOADS_TABLE).join(format!("{}.jsonl", package.load_id)), &[row.to_string()])
    }

    async fn stored_state(&mut self, pipeline_name: &str) -> Result<Option<StoredState>> {
        let done = self.completed_loads()?;
        let mut best: Option<StoredState> = None;
        for r in self.rows(STATE_TABLE)? {
            let load_id = r["_dlt_load_id"].as_str().unwrap_or_default().to_string();
            if r["pipeline_name"] != json!(pipeline_name) || !done.contains(&load_id) {
                continue;
            }
            if best.as_ref().is_some_and(|b| b.load_id >= load_id) {
                continue;
            }
            best = Some(StoredState {
                version: r["version"].as_i64().unwrap_or_default(),
                engine_version: r["engine_version"].as_i64().unwrap_or_default(),
                pipeline_name: pipeline_name.to_string(),
                state: r["state"].as_str().unwrap_or_default().to_string(),
                load_id,
            });
        }
        Ok(best)
    }

    async fn stored_schema(&mut self, schema_name: &str) -> Result<Option<String>> {
        let mut rows: Vec<Value> =
            self.rows(VERSION_TABLE)?.into_iter().filter(|r| r["schema_name"] == json!(schema_name)).collect();
        rows.sort_by_key(|r| r["inserted_at"].as_i64());
        Ok(rows.last().and_then(|r| r["schema"].as_str().map(str::to_string)))
    }

    async fn drop_tables(&mut self, tables: &[String]) -> Result<()> {
        for t in tables {
            let dir = self.dir.join(t);
            if dir.is_dir() {
                fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
            }
        }
        Ok(())
    }

    async fn existing_tables(&mut self) -> Result<Vec<String>> {
        self.tables()
    }
}

/// Builds the destination from `[destination] folder = "…"` in a pipeline file, or
/// `DESTINATION__JSONL_FOLDER__FOLDER`; default `<run dir>/<pipeline name>_jsonl`.
#[derive(Debug, Default)]
pub struct JsonlFolderFactory;

impl DestinationFactory for JsonlFolderFactory {
    fn name(&self) -> &'static str {
        NAME
    }
    fn build(&self, ctx: &DestinationContext<'_>) -> Result<Arc<dyn Destination>> {
        let path = ctx
            .config
            .get(&["destination", NAME], "folder")
            .map(|v| v.as_string())
            .or_else(|| ctx.explicit.and_then(|t| t.get("folder")).and_then(|v| v.as_str()).map(str::to_string))
            .unwrap_or_else(|| format!("{}_jsonl", ctx.pipeline_name));
        Ok(Arc::new(JsonlFolder::new(ctx.run_dir.join(path))))
    }
    fn init_template(&self) -> Option<InitTemplate> {
        Some(InitTemplate {
            config: "[destination.jsonl_folder]\n# The folder the tables are written to.\nfolder = \"data_out\"\n",
            ..Default::default()
        })
    }
}
