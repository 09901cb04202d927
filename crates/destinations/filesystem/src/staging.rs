//! The filesystem destination as a staging area ([`Staging`], the contract's): a package's job
//! files uploaded to a bucket for a destination's own bulk load (`COPY INTO … FROM 's3://…'`,
//! BigQuery load jobs from `gs://…`, DuckDB reading a local folder). The pipeline uploads before
//! it commits and hands the URLs to the destination in `PackageToLoad::staged`. Staged files use
//! the staging destination's layout under `<bucket_url>/<dataset_name>/`, written as append (dlt
//! turns replace and merge into append on staging), and no `_dlt_*` files are written there.

use dlt_core::destination::{FileFormat, JobFile, StagedFile, Staging};
use dlt_core::error::Result;
use dlt_core::schema::STATE_TABLE;

use crate::Filesystem;
use crate::convert;
use crate::layout::PathParams;

#[async_trait::async_trait]
impl Staging for Filesystem {
    fn staged_format(&self) -> FileFormat {
        self.shared.output.format
    }

    async fn upload_jobs(
        &self,
        dataset: &str,
        schema_name: &str,
        load_id: &str,
        jobs: &[JobFile],
    ) -> Result<Vec<StagedFile>> {
        crate::layout::check_segment("dataset name", dataset)?;
        let shared = &self.shared;
        let time = dlt_core::ids::load_id_time(load_id).unwrap_or_else(chrono::Utc::now);
        let mut out = vec![];
        for job in jobs.iter().filter(|j| j.table != STATE_TABLE) {
            let mut rel = shared.layout.render(&PathParams {
                schema_name,
                table_name: &job.table,
                load_id,
                file_id: &job.file_id,
                ext: shared.output.format.extension(),
                load_package_timestamp: time,
                current_datetime: shared.current_datetime,
            })?;
            if shared.output.gz_suffix() {
                rel.push_str(".gz");
            }
            let prepared = convert::prepare(&job.path, shared.output)?;
            let path = format!("{dataset}/{rel}");
            shared.store.put_file(&path, prepared.path())?;
            out.push(StagedFile {
                table: job.table.clone(),
                file_id: job.file_id.clone(),
                url: shared.store.url_of(&path),
                format: shared.output.format,
                gzip: shared.output.gz_suffix(),
            });
        }
        Ok(out)
    }

    async fn cleanup(&self, files: &[StagedFile]) -> Result<()> {
        let base = format!("{}/", self.shared.store.url());
        for f in files {
            if let Some(rel) = f.url.strip_prefix(&base) {
                self.shared.store.delete(rel)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FilesystemConfig;
    use dlt_core::destination::FileFormat;
    use dlt_core::runtime::block_on as rt;
    use std::sync::Arc;

    fn job(dir: &std::path::Path, table: &str, file_id: &str) -> JobFile {
        use arrow::array::{ArrayRef, Int64Array};
        let batch = arrow::record_batch::RecordBatch::try_from_iter([(
            "id",
            Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
        )])
        .unwrap();
        let path = dir.join(JobFile::file_name(table, file_id, 0, FileFormat::Parquet));
        let mut w =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        JobFile::parse(path).unwrap()
    }

    #[test]
    fn uploads_jobs_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = dir.path().join("stage");
        let mut c = FilesystemConfig::new(bucket.display().to_string());
        c.loader_file_format = FileFormat::Jsonl;
        let fs = Filesystem::new(c).unwrap();
        let jobs = vec![job(dir.path(), "users", "aaaaa11111"), job(dir.path(), STATE_TABLE, "bbbbb22222")];
        let staged = rt(fs.upload_jobs("ds", "s", "1700000000.5", &jobs)).unwrap();
        assert_eq!(staged.len(), 1, "the state job is not staged");
        let local = bucket.canonicalize().unwrap();
        assert_eq!(staged[0].url, format!("file://{}/ds/users/1700000000.5.aaaaa11111.jsonl.gz", local.display()));
        assert_eq!((staged[0].format, staged[0].gzip, staged[0].table.as_str()), (FileFormat::Jsonl, true, "users"));
        assert!(local.join("ds/users/1700000000.5.aaaaa11111.jsonl.gz").exists());
        assert!(!local.join("ds/_dlt_loads").exists());
        rt(fs.cleanup(&staged)).unwrap();
        assert!(!local.join("ds/users/1700000000.5.aaaaa11111.jsonl.gz").exists());
        assert!(rt(fs.upload_jobs("..", "s", "1", &jobs)).is_err());
    }
}
