//! Load jobs from a local job file — what `gcp-bigquery-client` lacks: the file goes up by
//! BigQuery's resumable upload (`POST /upload/bigquery/v2/projects/P/jobs?uploadType=resumable`
//! with the job's configuration, then one `PUT` of the whole file with its `Content-Range`),
//! then the job is polled until it is done.
//!
//! A job's id is derived from the job file's name (`dlt_<load id>_<file name>`), which carries
//! the file's retry number: a job that ran but whose completion was never recorded (a lost
//! answer, a killed process) is found again by its id (BigQuery answers 409 to a second insert)
//! and not run twice, while a retried file gets a new id and so a new job.

use std::path::Path;
use std::time::Duration;

use dlt_core::error::{Error, Result};
use gcp_bigquery_client::error::BQError;
use serde_json::{Value, json};

use crate::client::{Client, bq_error, job_errors};

/// The formats a load job reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// Parquet.
    Parquet,
    /// Newline-delimited JSON.
    Jsonl,
}

impl SourceFormat {
    fn api_name(self) -> &'static str {
        match self {
            SourceFormat::Parquet => "PARQUET",
            SourceFormat::Jsonl => "NEWLINE_DELIMITED_JSON",
        }
    }
}

/// The job id of a job file: `dlt_<load id>_<file name>` with every character BigQuery does not
/// take in an id (letters, digits, `_`, `-`) replaced by `_`.
pub fn job_id(load_id: &str, file_name: &str) -> String {
    let raw = format!("dlt_{load_id}_{file_name}");
    let id: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    id.chars().take(1024).collect()
}

impl Client {
    /// Append the rows of the job file at `path` to `dataset.table` with a load job of id
    /// `job_id`, and wait for it (see the module docs for what a repeated id means).
    pub async fn load_file(
        &self,
        dataset: &str,
        table: &str,
        path: &Path,
        format: SourceFormat,
        job_id: &str,
    ) -> Result<()> {
        let what = format!("loading {} into {dataset}.{table} ({}, job {job_id})", path.display(), self.shown);
        let config = json!({
            "jobReference": {"projectId": self.project, "jobId": job_id, "location": self.location},
            "configuration": {"load": {
                "destinationTable": {"projectId": self.project, "datasetId": dataset, "tableId": table},
                "sourceFormat": format.api_name(),
                "writeDisposition": "WRITE_APPEND",
                "createDisposition": "CREATE_NEVER",
            }},
        });
        let start = format!("{}/upload/bigquery/v2/projects/{}/jobs?uploadType=resumable", self.endpoint, self.project);
        let token = self.tokens.token().await.map_err(|e| bq_error(&what, e))?;
        let r = self
            .authorized(self.http.post(&start), &token)
            .json(&config)
            .send()
            .await
            .map_err(|e| bq_error(&what, BQError::RequestError(e)))?;
        let status = r.status();
        if status == reqwest::StatusCode::CONFLICT {
            // the job exists: an earlier attempt got this far
            tracing::info!(job = job_id, "bigquery: the load job exists already; waiting for it");
            return self.wait_for_job(job_id, &what).await;
        }
        if !status.is_success() {
            return Err(http_error(&what, status, &r.text().await.unwrap_or_default()));
        }
        let session =
            r.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string).ok_or_else(
                || Error::Destination {
                    destination: "bigquery".into(),
                    message: format!("{what}: the upload session has no Location"),
                    transient: true,
                },
            )?;
        let len = tokio::fs::metadata(path).await.map_err(|e| Error::io(path, e))?.len();
        let range = if len == 0 { "bytes */0".to_string() } else { format!("bytes 0-{}/{len}", len - 1) };
        let file = tokio::fs::File::open(path).await.map_err(|e| Error::io(path, e))?;
        let r = self
            .authorized(self.http.put(&session), &token)
            .header(reqwest::header::CONTENT_RANGE, range)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::from(file))
            .send()
            .await
            .map_err(|e| bq_error(&what, BQError::RequestError(e)))?;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(http_error(&what, status, &body));
        }
        let job: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if job["status"]["state"] == "DONE" {
            return job_outcome(&what, &job);
        }
        self.wait_for_job(job_id, &what).await
    }

    fn authorized(&self, b: reqwest::RequestBuilder, token: &str) -> reqwest::RequestBuilder {
        if token.is_empty() { b } else { b.bearer_auth(token) }
    }

    /// Poll a job until it is done; its errors if it failed.
    async fn wait_for_job(&self, job_id: &str, what: &str) -> Result<()> {
        let mut wait = Duration::from_millis(200);
        loop {
            let job = self
                .inner
                .job()
                .get_job(&self.project, job_id, Some(&self.location))
                .await
                .map_err(|e| bq_error(what, e))?;
            let status = job.status.as_ref();
            if status.and_then(|s| s.state.as_deref()) == Some("DONE") {
                let errors = status.and_then(|s| s.error_result.as_ref()).map(|e| {
                    let mut all = vec![e.clone()];
                    all.extend(status.and_then(|s| s.errors.clone()).unwrap_or_default());
                    all
                });
                return match errors {
                    Some(errors) => Err(job_errors(what, &errors)),
                    None => Ok(()),
                };
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }
}

/// A finished job's outcome, from its JSON.
fn job_outcome(what: &str, job: &Value) -> Result<()> {
    let status = &job["status"];
    if status["errorResult"].is_null() {
        return Ok(());
    }
    let mut errors = vec![status["errorResult"].clone()];
    errors.extend(status["errors"].as_array().cloned().unwrap_or_default());
    let errors: Vec<gcp_bigquery_client::model::error_proto::ErrorProto> =
        errors.into_iter().filter_map(|e| serde_json::from_value(e).ok()).collect();
    Err(job_errors(what, &errors))
}

/// An HTTP error answer of the upload endpoint: BigQuery's message when the body has one.
fn http_error(what: &str, status: reqwest::StatusCode, body: &str) -> Error {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let message = v["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| dlt_core::error::excerpt(body));
    Error::Destination {
        destination: "bigquery".into(),
        message: format!("{what}: HTTP {status}: {message}"),
        transient: status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_come_from_the_load_and_the_file() {
        assert_eq!(job_id("1712.5", "items__tags.abc123.0.parquet"), "dlt_1712_5_items__tags_abc123_0_parquet");
        assert_eq!(job_id("1", "ä.x"), "dlt_1___x");
    }
}
