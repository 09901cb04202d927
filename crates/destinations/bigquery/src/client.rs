//! The BigQuery client: `gcp-bigquery-client` for datasets and queries, pointed at the
//! credentials' endpoint (`api_endpoint`) and authorized as they say (a service account key,
//! Application Default Credentials, or no token for an emulator). Errors keep BigQuery's message
//! and reasons and say whether a retry may pass (rate limits, backend and internal errors,
//! lost connections).

use std::sync::Arc;
use std::time::Duration;

use dlt_core::error::{Error, Result};
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table_row::TableRow;
use serde_json::Value;

use crate::auth::TokenSource;
use crate::credentials::Credentials;

/// The destination's name, in errors.
const NAME: &str = "bigquery";

/// A query's result: column names and rows, each value as the REST API renders it (a string,
/// a nested record or list, or null).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// The rows.
    pub rows: Vec<Vec<Value>>,
}

/// A client for one project and location.
pub struct Client {
    pub(crate) inner: gcp_bigquery_client::Client,
    pub(crate) tokens: TokenSource,
    pub(crate) http: reqwest::Client,
    pub(crate) endpoint: String,
    pub(crate) project: String,
    pub(crate) location: String,
    pub(crate) shown: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("at", &self.shown).finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the credentials' project, location and endpoint.
    pub async fn connect(c: &Credentials) -> Result<Client> {
        let shown = c.display();
        let what = format!("cannot connect to {shown}");
        let tokens = TokenSource::new(c).await?;
        let mut builder = ClientBuilder::new();
        builder.with_v2_base_url(c.v2_base());
        let inner = builder.build_from_authenticator(Arc::new(tokens.clone())).await.map_err(|e| bq_error(&what, e))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("dlt-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| bq_error(&what, BQError::RequestError(e)))?;
        Ok(Client {
            inner,
            tokens,
            http,
            endpoint: c.api_endpoint.clone(),
            project: c.project_id.clone(),
            location: c.location.clone(),
            shown,
        })
    }

    /// The project datasets and jobs belong to.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// Whether `dataset` exists.
    pub async fn dataset_exists(&self, dataset: &str) -> Result<bool> {
        match self.inner.dataset().get(&self.project, dataset).await {
            Ok(_) => Ok(true),
            Err(BQError::ResponseError { error }) if error.error.code == 404 => Ok(false),
            Err(e) => Err(bq_error(&format!("reading dataset {dataset} of {}", self.shown), e)),
        }
    }

    /// Create `dataset` in the client's location unless it exists.
    pub async fn create_dataset_if_missing(&self, dataset: &str) -> Result<()> {
        if self.dataset_exists(dataset).await? {
            return Ok(());
        }
        let d = Dataset::new(&self.project, dataset).location(&self.location);
        match self.inner.dataset().create(d).await {
            Ok(_) => Ok(()),
            // created meanwhile by another run
            Err(BQError::ResponseError { error }) if error.error.code == 409 => Ok(()),
            Err(e) => Err(bq_error(&format!("creating dataset {dataset} in {}", self.shown), e)),
        }
    }

    /// Run one statement or script (standard SQL) and read its whole result, waiting for a job
    /// that outlives the request and following the result's pages.
    pub async fn query(&self, sql: &str) -> Result<Rows> {
        tracing::info!(target: "dlt::sql", destination = NAME, "{sql}");
        let what = format!("{} on {}", dlt_core::error::excerpt(sql), self.shown);
        let mut request = QueryRequest::new(sql);
        request.use_legacy_sql = false;
        request.location = Some(self.location.clone());
        let r = self.inner.job().query(&self.project, request).await.map_err(|e| bq_error(&what, e))?;
        if let Some(errors) = r.errors.as_ref().filter(|e| !e.is_empty()) {
            return Err(job_errors(&what, errors));
        }
        let mut out = Rows {
            columns: r
                .schema
                .as_ref()
                .and_then(|s| s.fields.as_ref())
                .map(|f| f.iter().map(|f| f.name.clone()).collect())
                .unwrap_or_default(),
            rows: cells(r.rows.unwrap_or_default()),
        };
        let job_id = r.job_reference.as_ref().and_then(|j| j.job_id.clone());
        let (mut complete, mut page) = (r.job_complete.unwrap_or(true), r.page_token);
        let mut wait = Duration::from_millis(200);
        while let Some(job_id) = job_id.as_deref().filter(|_| !complete || page.is_some()) {
            if !complete {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            let params = GetQueryResultsParameters {
                location: Some(self.location.clone()),
                page_token: page.clone(),
                ..Default::default()
            };
            let next = self
                .inner
                .job()
                .get_query_results(&self.project, job_id, params)
                .await
                .map_err(|e| bq_error(&what, e))?;
            if let Some(errors) = next.errors.as_ref().filter(|e| !e.is_empty()) {
                return Err(job_errors(&what, errors));
            }
            complete = next.job_complete.unwrap_or(true);
            if complete {
                if out.columns.is_empty() {
                    out.columns = next
                        .schema
                        .as_ref()
                        .and_then(|s| s.fields.as_ref())
                        .map(|f| f.iter().map(|f| f.name.clone()).collect())
                        .unwrap_or_default();
                }
                out.rows.extend(cells(next.rows.unwrap_or_default()));
                page = next.page_token;
            }
        }
        Ok(out)
    }
}

fn cells(rows: Vec<TableRow>) -> Vec<Vec<Value>> {
    rows.into_iter()
        .map(|r| r.columns.unwrap_or_default().into_iter().map(|c| c.value.unwrap_or(Value::Null)).collect())
        .collect()
}

/// Reasons a retry may pass (BigQuery's error reasons).
const TRANSIENT_REASONS: &[&str] = &["rateLimitExceeded", "backendError", "internalError", "jobBackendError"];

pub(crate) fn job_errors(what: &str, errors: &[gcp_bigquery_client::model::error_proto::ErrorProto]) -> Error {
    let list: Vec<String> = errors
        .iter()
        .map(|e| format!("{} ({})", e.message.as_deref().unwrap_or("?"), e.reason.as_deref().unwrap_or("?")))
        .collect();
    let transient = errors.iter().all(|e| e.reason.as_deref().is_some_and(|r| TRANSIENT_REASONS.contains(&r)));
    Error::Destination { destination: NAME.into(), message: format!("{what}: {}", list.join("; ")), transient }
}

/// A client error as dlt-rs reports it.
pub(crate) fn bq_error(what: &str, e: BQError) -> Error {
    let (message, transient) = match &e {
        BQError::ResponseError { error } => {
            let reasons: Vec<&str> =
                error.error.errors.iter().filter_map(|m| m.get("reason").map(String::as_str)).collect();
            let transient = error.error.code >= 500
                || error.error.code == 429
                || reasons.iter().any(|r| TRANSIENT_REASONS.contains(r));
            let reasons = if reasons.is_empty() { String::new() } else { format!(", {}", reasons.join(", ")) };
            (format!("{what}: {} (HTTP {}{reasons})", error.error.message, error.error.code), transient)
        }
        BQError::RequestError(r) => {
            (dlt_core::error::with_causes(what, r), r.is_timeout() || r.is_connect() || r.is_request())
        }
        other => (format!("{what}: {other}"), false),
    };
    Error::Destination { destination: NAME.into(), message, transient }
}
