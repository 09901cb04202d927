//! The Snowflake drivers' JSON protocol over async reqwest: log in
//! (`/session/v1/login-request`), run one statement (`/queries/v1/query-request`), poll a
//! statement that outlives the request (`getResultUrl`), fetch result chunks, close the session.
//!
//! Results arrive as Arrow IPC streams (`Accept: application/snowflake`; base64 in the response,
//! or chunks on a URL) and are read with our own Arrow (58): nothing of another Arrow version
//! crosses this module. DML answers as JSON rows (the counts).
//!
//! Why not the `snowflake-api` crate: as published (0.14) it hard-codes
//! `https://{account}.snowflakecomputing.com`, requires response fields that compatible servers
//! omit (login `masterToken`, query `returned`, …), PUTs only to AWS stages and decodes into
//! Arrow 57. The protocol is small; this module is the one place that speaks it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use base64::Engine as _;
use dlt_core::config::Secret;
use dlt_core::error::{Error, Result};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::credentials::{Authenticator, Credentials};

/// The destination's name in errors.
const NAME: &str = "snowflake";

/// Attempts of a request that failed in a way a retry may pass (5xx, 429, connection errors).
const ATTEMPTS: u32 = 5;

/// Snowflake's "the statement is still running" codes: poll `getResultUrl`.
const IN_PROGRESS: &[&str] = &["333333", "333334"];

/// One column of a result, as the server describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct ResultColumn {
    /// Name.
    pub name: String,
    /// Snowflake type (`fixed`, `text`, `timestamp_ntz`, `variant`, …).
    #[serde(rename = "type")]
    pub type_name: String,
    /// Whether NULL is allowed.
    #[serde(default)]
    pub nullable: bool,
    /// `NUMBER` precision.
    #[serde(default)]
    pub precision: Option<i64>,
    /// `NUMBER` scale, or the fractional-seconds digits of a timestamp.
    #[serde(default)]
    pub scale: Option<i64>,
}

/// What a statement returned.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    /// The query id (Snowflake's query history has it).
    pub query_id: String,
    /// The result columns.
    pub columns: Vec<ResultColumn>,
    /// The rows of a query, as Arrow batches.
    pub batches: Vec<RecordBatch>,
    /// The rows of a JSON result (DML: the affected row counts), as text.
    pub rows: Vec<Vec<Option<String>>>,
}

impl QueryResult {
    /// Rows returned.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum::<usize>() + self.rows.len()
    }
}

/// The response envelope of every call.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    success: bool,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// A logged-in session.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Secret,
    sequence: AtomicU64,
    /// `snowflake://user:***@account/database` for errors.
    shown: String,
}

fn transport(what: &str, e: &reqwest::Error) -> Error {
    let m = dlt_core::error::with_causes(what, e);
    // a refused certificate or an unknown host does not pass on a retry
    let transient = (e.is_timeout() || e.is_connect() || e.is_request() || e.is_body())
        && !dlt_core::error::is_certificate_failure(e)
        && !m.contains("dns error");
    Error::Destination { destination: NAME.into(), message: m, transient }
}

fn failed(what: &str, code: Option<&str>, message: Option<&str>, data: Option<&Value>) -> Error {
    let sql_state = data.and_then(|d| d.get("sqlState")).and_then(Value::as_str);
    let mut m = format!("{what}: {}", message.unwrap_or("the server reported a failure"));
    if let Some(c) = code {
        m.push_str(&format!(" (code {c}"));
        if let Some(s) = sql_state {
            m.push_str(&format!(", SQLSTATE {s}"));
        }
        m.push(')');
    }
    // 08xxx: connection exceptions; 390xxx login codes are about the credentials, not a retry
    let transient = sql_state.is_some_and(|s| s.starts_with("08"));
    Error::Destination { destination: NAME.into(), message: m, transient }
}

/// A failed login with what to check: the account identifier when its host is unknown or
/// refuses the account, the user's secret when Snowflake rejects it.
fn login_hint(e: Error, c: &Credentials) -> Error {
    let Error::Destination { destination, message, transient } = e else { return e };
    let hint = if message.contains("dns error") || message.contains("HTTP 403") {
        format!(
            "; check the account identifier `{}` (credentials `host`: `orgname-account_name` or a locator such as \
             `xy12345.eu-central-1`)",
            c.account
        )
    } else if message.contains("(code 390100") || message.contains("(code 390144") {
        let field = match c.authenticator {
            Authenticator::Password(_) => "password",
            Authenticator::OAuth(_) => "token",
            Authenticator::KeyPair { .. } => "private_key (and the public key registered for the user)",
        };
        format!(
            "; check the username `{}` and the {field} (DESTINATION__SNOWFLAKE__CREDENTIALS__{})",
            c.username,
            field.split(' ').next().unwrap_or(field).to_ascii_uppercase()
        )
    } else {
        return Error::Destination { destination, message, transient };
    };
    Error::Destination { destination, message: message + &hint, transient }
}

impl Client {
    /// Log in. `schema` is the session's schema (the dataset), which need not exist yet.
    pub async fn login(c: &Credentials, schema: Option<&str>, timeout: Duration) -> Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(30))
            .gzip(true)
            .user_agent(concat!("dlt-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| transport("building the HTTP client", &e))?;
        let shown = c.display();
        let what = format!("cannot log in to {shown}");
        let (authenticator, secret_field, secret) = match &c.authenticator {
            Authenticator::Password(p) => (None, "PASSWORD", p.expose().to_string()),
            Authenticator::OAuth(t) => (Some("OAUTH"), "TOKEN", t.expose().to_string()),
            Authenticator::KeyPair { private_key, passphrase } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let jwt =
                    crate::jwt::key_pair_jwt(&c.account, &c.username, private_key.expose(), passphrase.is_some(), now)?;
                (Some("SNOWFLAKE_JWT"), "TOKEN", jwt)
            }
        };
        let mut data = json!({
            "CLIENT_APP_ID": "dlt-rs",
            "CLIENT_APP_VERSION": env!("CARGO_PKG_VERSION"),
            "SVN_REVISION": "",
            "ACCOUNT_NAME": c.account,
            "LOGIN_NAME": c.username,
            "CLIENT_ENVIRONMENT": {"APPLICATION": "dlt-rs", "OS": std::env::consts::OS},
            "SESSION_PARAMETERS": {"TIMEZONE": "UTC", "AUTOCOMMIT": true},
        });
        data[secret_field] = json!(secret);
        if let Some(a) = authenticator {
            data["AUTHENTICATOR"] = json!(a);
        }
        let mut query: Vec<(&str, String)> =
            vec![("request_id", uuid::Uuid::new_v4().to_string()), ("databaseName", c.database.clone())];
        if let Some(s) = schema {
            query.push(("schemaName", s.to_string()));
        }
        if let Some(w) = &c.warehouse {
            query.push(("warehouse", w.clone()));
        }
        if let Some(r) = &c.role {
            query.push(("roleName", r.clone()));
        }
        let base = c.base_url();
        let url = format!("{base}/session/v1/login-request");
        let body = json!({ "data": data });
        let env = send(&what, || http.post(&url).query(&query).json(&body)).await.map_err(|e| login_hint(e, c))?;
        if !env.success {
            let e = failed(&what, env.code.as_deref(), env.message.as_deref(), env.data.as_ref());
            return Err(login_hint(e, c));
        }
        let token = env.data.as_ref().and_then(|d| d.get("token")).and_then(Value::as_str).ok_or_else(|| {
            Error::Destination {
                destination: NAME.into(),
                message: format!("{what}: the login answer has no session token"),
                transient: false,
            }
        })?;
        tracing::debug!(endpoint = %base, account = %c.account, "snowflake: logged in");
        Ok(Client { http, base, token: Secret::new(token), sequence: AtomicU64::new(1), shown })
    }

    fn auth(&self) -> String {
        format!("Snowflake Token=\"{}\"", self.token.expose())
    }

    /// Run one statement and read its whole result.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        let (what, mut env) = self.submit(sql, "application/snowflake").await?;
        // a statement that outlives the request: poll its result URL
        let mut wait = Duration::from_millis(100);
        while !env.success && env.code.as_deref().is_some_and(|c| IN_PROGRESS.contains(&c)) {
            let path =
                env.data.as_ref().and_then(|d| d.get("getResultUrl")).and_then(Value::as_str).ok_or_else(|| {
                    Error::Destination {
                        destination: NAME.into(),
                        message: format!("{what}: still running, but the answer has no getResultUrl"),
                        transient: false,
                    }
                })?;
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
            let url = format!("{}{path}", self.base);
            env = send(&what, || {
                self.http
                    .get(&url)
                    .header(reqwest::header::AUTHORIZATION, self.auth())
                    .header(reqwest::header::ACCEPT, "application/snowflake")
            })
            .await?;
        }
        if !env.success {
            return Err(failed(&what, env.code.as_deref(), env.message.as_deref(), env.data.as_ref()));
        }
        let data = env.data.unwrap_or(Value::Null);
        self.result(&what, data).await
    }

    /// Read a result: its columns, the first rowset and the chunks.
    async fn result(&self, what: &str, data: Value) -> Result<QueryResult> {
        let bad = |m: String| Error::Destination {
            destination: NAME.into(),
            message: format!("{what}: {m}"),
            transient: false,
        };
        let columns: Vec<ResultColumn> = match data.get("rowtype") {
            Some(r) => serde_json::from_value(r.clone()).map_err(|e| bad(format!("unreadable rowtype: {e}")))?,
            None => vec![],
        };
        let mut out = QueryResult {
            query_id: data.get("queryId").and_then(Value::as_str).unwrap_or_default().to_string(),
            columns,
            ..Default::default()
        };
        match data.get("queryResultFormat").and_then(Value::as_str) {
            Some("json") => {
                for row in data.get("rowset").and_then(Value::as_array).into_iter().flatten() {
                    let cells = row.as_array().map(|r| {
                        r.iter()
                            .map(|v| match v {
                                Value::Null => None,
                                Value::String(s) => Some(s.clone()),
                                other => Some(other.to_string()),
                            })
                            .collect()
                    });
                    out.rows.push(cells.unwrap_or_default());
                }
            }
            _ => {
                let b64 = data.get("rowsetBase64").and_then(Value::as_str).unwrap_or_default();
                if !b64.is_empty() {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|e| bad(format!("the Arrow rowset is not base64: {e}")))?;
                    out.batches.extend(read_ipc(&bytes).map_err(&bad)?);
                }
            }
        }
        for chunk in data.get("chunks").and_then(Value::as_array).into_iter().flatten() {
            let url =
                chunk.get("url").and_then(Value::as_str).ok_or_else(|| bad("a result chunk without url".into()))?;
            let bytes = self.chunk(what, url, &data).await?;
            out.batches.extend(read_ipc(&bytes).map_err(&bad)?);
        }
        Ok(out)
    }

    /// Download one result chunk (the headers the result names, or the key of its encryption).
    async fn chunk(&self, what: &str, url: &str, data: &Value) -> Result<Vec<u8>> {
        let headers: Vec<(String, String)> =
            match (data.get("chunkHeaders").and_then(Value::as_object), data.get("qrmk")) {
                (Some(h), _) => {
                    h.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect()
                }
                (None, Some(Value::String(k))) => vec![
                    ("x-amz-server-side-encryption-customer-algorithm".into(), "AES256".into()),
                    ("x-amz-server-side-encryption-customer-key".into(), k.clone()),
                ],
                _ => vec![],
            };
        let what = format!("{what}: downloading a result chunk");
        let mut last = None;
        for attempt in 1..=ATTEMPTS {
            let mut rb = self.http.get(url);
            for (k, v) in &headers {
                rb = rb.header(k.as_str(), v.as_str());
            }
            match rb.send().await {
                Ok(r) if r.status().is_success() => {
                    let body = r.bytes().await.map_err(|e| transport(&what, &e))?;
                    return gunzip(&body).map_err(|e| Error::Destination {
                        destination: NAME.into(),
                        message: format!("{what}: {e}"),
                        transient: true,
                    });
                }
                Ok(r) if retryable_status(r.status()) && attempt < ATTEMPTS => {
                    last = Some(format!("HTTP {}", r.status()))
                }
                Ok(r) => {
                    return Err(Error::Destination {
                        destination: NAME.into(),
                        message: format!("{what}: HTTP {}", r.status()),
                        transient: retryable_status(r.status()),
                    });
                }
                Err(e) => {
                    let err = transport(&what, &e);
                    if !err.is_transient() || attempt == ATTEMPTS {
                        return Err(err);
                    }
                    last = Some(err.to_string());
                }
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(Error::Destination {
            destination: NAME.into(),
            message: format!("{what}: {}", last.unwrap_or_default()),
            transient: true,
        })
    }

    /// Upload a local file to a stage location (`@"DS"."%T"`, a named stage, with an optional
    /// path): `PUT` tells where the stage keeps files, then the bytes go there, encrypted on the
    /// client when the stage says so (its `encryptionMaterial`; see [`crate::encrypt`]).
    /// Supported: stages on S3 (the stage's temporary credentials, [`crate::stage`]) and stages
    /// that hand out a presigned URL (GCS). Azure stages are refused with an error that says so.
    pub async fn put(&self, local: &std::path::Path, stage: &str) -> Result<()> {
        let abs = std::path::absolute(local).map_err(|e| Error::io(local.display().to_string(), e))?;
        let file_url = format!("file://{}", abs.display());
        let sql = format!("PUT '{}' {stage} AUTO_COMPRESS = FALSE OVERWRITE = TRUE", file_url.replace('\'', "\\'"));
        let what = format!("uploading {} to {stage} on {}", abs.display(), self.shown);
        let bad = |m: String| Error::Destination {
            destination: NAME.into(),
            message: format!("{what}: {m}"),
            transient: false,
        };
        let answer = self.raw(&sql).await?;
        let info = answer.get("stageInfo").ok_or_else(|| bad("the PUT answer has no stageInfo".into()))?;
        let kind = info.get("locationType").and_then(Value::as_str).unwrap_or_default();
        let material = crate::encrypt::Material::from_answer(answer.get("encryptionMaterial"));
        let presigned = info.get("presignedUrl").and_then(Value::as_str).filter(|u| !u.is_empty());
        // where the bytes go, decided before the file is read and encrypted
        let gcs_url = match (kind, presigned) {
            ("GCS", Some(url)) => Some(url),
            ("S3", _) => None,
            _ => {
                return Err(bad(format!(
                    "the stage is on {kind}{}; dlt-rs uploads to S3 stages and to stages that hand out a presigned URL \
                     (GCS) so far — Azure stages are not built yet (see docs/snowflake.md)",
                    if presigned.is_none() && kind == "GCS" { " without a presigned URL" } else { "" }
                )));
            }
        };
        let path = abs.clone();
        let data = dlt_core::runtime::blocking(move || std::fs::read(&path))
            .await
            .map_err(|e| Error::io(abs.display().to_string(), e))?;
        let name = abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let encrypted = match &material {
            Some(m) => Some(crate::encrypt::encrypt(m, &data)?),
            None => None,
        };
        match gcs_url {
            Some(url) => {
                let (body, headers) = match encrypted {
                    Some(e) => {
                        let h = crate::encrypt::gcs_headers(&e);
                        (e.body, h)
                    }
                    None => (data, vec![]),
                };
                let mut rb = self.http.put(url).body(body);
                for (k, v) in &headers {
                    rb = rb.header(k.as_str(), v.as_str());
                }
                let r = rb.send().await.map_err(|e| transport(&what, &e))?;
                if !r.status().is_success() {
                    return Err(Error::Destination {
                        destination: NAME.into(),
                        message: format!("{what}: HTTP {}", r.status()),
                        transient: retryable_status(r.status()),
                    });
                }
            }
            None => crate::stage::put_s3(info, &name, data, encrypted).await.map_err(|e| e.context(&what))?,
        }
        Ok(())
    }

    /// Run a statement and return the answer's `data` as it is (PUT's stage description).
    async fn raw(&self, sql: &str) -> Result<Value> {
        let (what, env) = self.submit(sql, "application/json").await?;
        if !env.success {
            return Err(failed(&what, env.code.as_deref(), env.message.as_deref(), env.data.as_ref()));
        }
        Ok(env.data.unwrap_or(Value::Null))
    }

    /// Send one statement to `/queries/v1/query-request` (results as `accept`) and return how
    /// errors name it and the answer.
    async fn submit(&self, sql: &str, accept: &str) -> Result<(String, Envelope)> {
        let shown = crate::copy::mask_credentials(sql);
        tracing::info!(target: "dlt::sql", destination = NAME, "{shown}");
        let what = format!("{} on {}", dlt_core::error::excerpt(&shown), self.shown);
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let body = json!({
            "sqlText": sql,
            "asyncExec": false,
            "sequenceId": seq,
            "querySubmissionTime": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        });
        // the same request id on a retry: the server runs the statement once
        let request_id = uuid::Uuid::new_v4().to_string();
        let url = format!("{}/queries/v1/query-request", self.base);
        let env = send(&what, || {
            self.http
                .post(&url)
                .query(&[("requestId", request_id.as_str())])
                .header(reqwest::header::AUTHORIZATION, self.auth())
                .header(reqwest::header::ACCEPT, accept)
                .json(&body)
        })
        .await?;
        Ok((what, env))
    }

    /// End the session (best effort: a session also times out on the server).
    pub async fn close(&self) {
        let url = format!("{}/session", self.base);
        let r = self
            .http
            .post(&url)
            .query(&[("delete", "true"), ("request_id", &uuid::Uuid::new_v4().to_string())])
            .header(reqwest::header::AUTHORIZATION, self.auth())
            .send()
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "snowflake: closing the session failed");
        }
    }
}

fn retryable_status(s: reqwest::StatusCode) -> bool {
    s.is_server_error() || s == reqwest::StatusCode::TOO_MANY_REQUESTS || s == reqwest::StatusCode::REQUEST_TIMEOUT
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64 << attempt.min(6))
}

/// Send a request (built anew for each attempt), retrying what may pass on a later attempt, and
/// read the JSON envelope.
async fn send(what: &str, request: impl Fn() -> reqwest::RequestBuilder) -> Result<Envelope> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r = match request().send().await {
            Ok(r) => r,
            Err(e) => {
                let err = transport(what, &e);
                if err.is_transient() && attempt < ATTEMPTS {
                    tracing::warn!(request = %what, attempt, error = %err, "snowflake: retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                return Err(err);
            }
        };
        let status = r.status();
        if retryable_status(status) && attempt < ATTEMPTS {
            tracing::warn!(request = %what, attempt, status = status.as_u16(), "snowflake: retrying");
            tokio::time::sleep(backoff(attempt)).await;
            continue;
        }
        let body = r.bytes().await.map_err(|e| transport(what, &e))?;
        return match serde_json::from_slice::<Envelope>(&body) {
            Ok(env) if status.is_success() || !env.success => {
                if !status.is_success() && env.message.is_none() {
                    return Err(Error::Destination {
                        destination: NAME.into(),
                        message: format!("{what}: HTTP {status}"),
                        transient: retryable_status(status),
                    });
                }
                Ok(env)
            }
            _ => Err(Error::Destination {
                destination: NAME.into(),
                message: format!(
                    "{what}: HTTP {status}: {}",
                    dlt_core::error::excerpt(&String::from_utf8_lossy(&body))
                ),
                transient: retryable_status(status),
            }),
        };
    }
}

/// A gzip body decompressed (chunks may come compressed without a `Content-Encoding`).
fn gunzip(b: &[u8]) -> std::result::Result<Vec<u8>, String> {
    if b.starts_with(&[0x1f, 0x8b]) {
        let mut out = vec![];
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(b), &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    } else {
        Ok(b.to_vec())
    }
}

/// The batches of an Arrow IPC stream.
fn read_ipc(bytes: &[u8]) -> std::result::Result<Vec<RecordBatch>, String> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| format!("unreadable Arrow result: {e}"))?;
    reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| format!("unreadable Arrow result: {e}"))
}
