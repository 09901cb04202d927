//! Storage through `object_store`: local folders (`/path`, `file://`), `memory://`, `s3://`,
//! `gs://`, `az://`/`abfss://`. A [`Store`] is rooted at the bucket URL; every path given to it is
//! relative to that root and `/`-separated. Calls block on the pipeline's runtime (`dlt_core::runtime`).

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use dlt_core::config::Secret;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{FsError, FsResult};

/// Credentials as dlt names them (`DESTINATION__FILESYSTEM__CREDENTIALS__<NAME>`). Only the ones
/// of the bucket URL's scheme are used. `Debug` never shows secrets.
#[derive(Clone, Default, Debug)]
pub struct Credentials {
    /// S3 access key id.
    pub aws_access_key_id: Option<String>,
    /// S3 secret access key.
    pub aws_secret_access_key: Option<Secret>,
    /// S3 session token (temporary credentials).
    pub aws_session_token: Option<Secret>,
    /// S3 region (default `us-east-1`).
    pub region_name: Option<String>,
    /// Endpoint of an S3-compatible server (path-style requests; `http://` allowed), or of a GCS
    /// or Azure Blob emulator.
    pub endpoint_url: Option<String>,
    /// Azure storage account name.
    pub azure_storage_account_name: Option<String>,
    /// Azure storage account key.
    pub azure_storage_account_key: Option<Secret>,
    /// Azure SAS token (`sv=…&sig=…`).
    pub azure_storage_sas_token: Option<Secret>,
    /// Azure service principal: client id.
    pub azure_client_id: Option<String>,
    /// Azure service principal: client secret.
    pub azure_client_secret: Option<Secret>,
    /// Azure service principal: tenant id.
    pub azure_tenant_id: Option<String>,
    /// GCP service account: project id.
    pub project_id: Option<String>,
    /// GCP service account: client email.
    pub client_email: Option<String>,
    /// GCP service account: private key (PEM).
    pub private_key: Option<Secret>,
    /// GCP service account: private key id.
    pub private_key_id: Option<String>,
}

impl Credentials {
    /// Every configured value that must never appear in a message.
    fn secrets(&self) -> Vec<String> {
        let mut v: Vec<String> = [
            &self.aws_secret_access_key,
            &self.aws_session_token,
            &self.azure_storage_account_key,
            &self.azure_storage_sas_token,
            &self.azure_client_secret,
            &self.private_key,
        ]
        .into_iter()
        .flatten()
        .map(|s| s.expose().to_string())
        .collect();
        v.extend(self.aws_access_key_id.clone());
        v.retain(|s| s.len() >= 4);
        v
    }
}

/// The kind of storage behind a bucket URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A local folder.
    Local,
    /// `memory://` (process-wide, as fsspec's memory filesystem).
    Memory,
    /// `s3://`.
    S3,
    /// `gs://` / `gcs://`.
    Gcs,
    /// `az://`, `abfss://`, `abfs://`, `azure://`.
    Azure,
}

/// Storage rooted at a bucket URL.
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
    protocol: Protocol,
    local_root: Option<PathBuf>,
    secrets: Vec<String>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).field("protocol", &self.protocol).finish_non_exhaustive()
    }
}

fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    let mut m = STORES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    m.entry(name.to_string()).or_insert_with(|| Arc::new(InMemory::new())).clone()
}

/// Split `scheme://rest` (or a bare path).
fn scheme_of(url: &str) -> Option<(&str, &str)> {
    let (s, rest) = url.split_once("://")?;
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.') {
        return None;
    }
    Some((s, rest))
}

fn root_path(p: &str) -> FsResult<Path> {
    let trimmed = p.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(Path::default());
    }
    Path::parse(trimmed).map_err(|e| FsError::Config(format!("invalid path `{p}` in bucket_url: {e}")))
}

impl Store {
    /// Open the storage of `bucket_url`. Relative local paths resolve against `base_dir`.
    pub fn open(bucket_url: &str, creds: &Credentials, base_dir: &FsPath) -> FsResult<Store> {
        let bucket_url = bucket_url.trim();
        if bucket_url.is_empty() {
            return Err(FsError::Config("bucket_url is empty".into()));
        }
        let secrets = creds.secrets();
        let Some((scheme, rest)) = scheme_of(bucket_url) else {
            return Self::local(PathBuf::from(bucket_url), base_dir, secrets);
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                // file:///abs/path, file://relative/path, file://localhost/abs/path
                let rest = rest.strip_prefix("localhost/").map(|r| format!("/{r}")).unwrap_or(rest.to_string());
                Self::local(PathBuf::from(rest), base_dir, secrets)
            }
            "memory" => {
                let (name, path) = rest.split_once('/').unwrap_or((rest, ""));
                Ok(Store {
                    inner: memory_store(name),
                    root: root_path(path)?,
                    url: bucket_url.trim_end_matches('/').to_string(),
                    protocol: Protocol::Memory,
                    local_root: None,
                    secrets,
                })
            }
            "s3" | "s3a" => Self::cloud(Protocol::S3, bucket_url, rest, creds, secrets),
            "gs" | "gcs" => Self::cloud(Protocol::Gcs, bucket_url, rest, creds, secrets),
            "az" | "abfs" | "abfss" | "azure" | "adl" => Self::cloud(Protocol::Azure, bucket_url, rest, creds, secrets),
            other => Err(FsError::Config(format!(
                "bucket_url scheme `{other}://` is not supported (use a local path, file://, memory://, s3://, gs://, az:// or abfss://)"
            ))),
        }
    }

    fn local(p: PathBuf, base_dir: &FsPath, secrets: Vec<String>) -> FsResult<Store> {
        let abs = if p.is_absolute() { p } else { base_dir.join(p) };
        std::fs::create_dir_all(&abs)
            .map_err(|e| FsError::Config(format!("cannot create the local bucket folder {}: {e}", abs.display())))?;
        let abs = std::fs::canonicalize(&abs).unwrap_or(abs);
        let fs = LocalFileSystem::new_with_prefix(&abs)
            .map_err(|e| FsError::Config(format!("cannot use the local bucket folder {}: {e}", abs.display())))?
            .with_automatic_cleanup(true);
        Ok(Store {
            inner: Arc::new(fs),
            root: Path::default(),
            url: format!("file://{}", abs.display()),
            protocol: Protocol::Local,
            local_root: Some(abs),
            secrets,
        })
    }

    #[allow(unused_variables, unreachable_code)]
    fn cloud(protocol: Protocol, url: &str, rest: &str, creds: &Credentials, secrets: Vec<String>) -> FsResult<Store> {
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err(FsError::Config(format!("bucket_url {url} names no bucket")));
        }
        let display = url.trim_end_matches('/').to_string();
        let inner: Arc<dyn ObjectStore> = match protocol {
            #[cfg(feature = "s3")]
            Protocol::S3 => cloud::s3(host, creds, &display)?,
            #[cfg(feature = "gcs")]
            Protocol::Gcs => cloud::gcs(host, creds, &display)?,
            #[cfg(feature = "azure")]
            Protocol::Azure => cloud::azure(url, creds, &display)?,
            other => {
                return Err(FsError::Config(format!(
                    "bucket_url {display}: support for {other:?} is not compiled in (enable the dlt-filesystem feature)"
                )));
            }
        };
        Ok(Store { inner, root: root_path(path)?, url: display, protocol, local_root: None, secrets })
    }

    /// The bucket URL (no secrets).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The kind of storage.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The local folder of a local bucket.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }

    /// The full URL of a relative path.
    pub fn url_of(&self, rel: &str) -> String {
        format!("{}/{}", self.url, rel)
    }

    /// The local file of a relative path (local buckets only).
    pub fn local_path(&self, rel: &str) -> Option<PathBuf> {
        self.local_root.as_ref().map(|r| r.join(rel))
    }

    fn path(&self, rel: &str) -> FsResult<Path> {
        let mut parts: Vec<String> = self.root.parts().map(|p| p.as_ref().to_string()).collect();
        for seg in rel.split('/').filter(|s| !s.is_empty()) {
            if seg == "." || seg == ".." {
                return Err(FsError::UnsafePath(format!("`{rel}` has a `{seg}` segment")));
            }
            parts.push(seg.to_string());
        }
        Path::parse(parts.join("/")).map_err(|e| FsError::UnsafePath(format!("`{rel}`: {e}")))
    }

    fn rel_of(&self, p: &Path) -> String {
        let root = self.root.as_ref();
        let s = p.as_ref();
        if root.is_empty() {
            s.to_string()
        } else {
            s.strip_prefix(root).map(|r| r.trim_start_matches('/').to_string()).unwrap_or_else(|| s.to_string())
        }
    }

    /// The table URL and the root object store (`/` = the store's root) of the bucket-relative
    /// folder `rel`, for delta-rs: the same store and credentials as every other file.
    #[cfg(feature = "delta")]
    pub(crate) fn delta_backend(&self, rel: &str) -> FsResult<(url::Url, Arc<dyn ObjectStore>)> {
        let bad = |e: String| FsError::Config(format!("cannot make a Delta table URL for `{rel}`: {e}"));
        let path = self.path(rel)?;
        match self.protocol {
            Protocol::Local => {
                let root = self.local_root.as_ref().expect("local buckets have a root");
                let dir = root.join(self.rel_of(&path));
                let url = url::Url::from_directory_path(&dir).map_err(|_| bad(dir.display().to_string()))?;
                Ok((url, Arc::new(LocalFileSystem::new())))
            }
            Protocol::Memory => {
                let url = url::Url::parse(&format!("memory:///{path}/")).map_err(|e| bad(e.to_string()))?;
                Ok((url, self.inner.clone()))
            }
            _ => {
                // the scheme and authority of the bucket URL, then the full path in the bucket
                let (scheme, rest) = scheme_of(&self.url).ok_or_else(|| bad(self.url.clone()))?;
                let host = rest.split('/').next().unwrap_or_default();
                let url = url::Url::parse(&format!("{scheme}://{host}/{path}/")).map_err(|e| bad(e.to_string()))?;
                Ok((url, self.inner.clone()))
            }
        }
    }

    /// A message with the configured secrets masked.
    pub(crate) fn redact(&self, msg: String) -> String {
        let mut m = msg;
        for s in &self.secrets {
            if m.contains(s.as_str()) {
                m = m.replace(s.as_str(), "***");
            }
        }
        m
    }

    fn err(&self, op: &str, e: object_store::Error) -> FsError {
        let message = self.redact(e.to_string());
        let bucket = self.url.clone();
        let op = op.to_string();
        match &e {
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                FsError::AccessDenied { bucket, op, message }
            }
            _ if message.contains("NoSuchBucket")
                || message.contains("ContainerNotFound")
                || message.contains("The specified bucket does not exist") =>
            {
                FsError::NoBucket { bucket, op, message }
            }
            _ if message.contains("InvalidAccessKeyId")
                // object_store reports a refused GCS list as a generic error with the status
                || message.contains("status code: 403 Forbidden")
                || message.contains("status code: 401 Unauthorized")
                || message.contains("SignatureDoesNotMatch")
                || message.contains("AuthenticationFailed")
                || message.contains("AuthorizationFailure") =>
            {
                FsError::AccessDenied { bucket, op, message }
            }
            _ => {
                let l = message.to_ascii_lowercase();
                let transient = l.contains("error sending request")
                    || l.contains("connect")
                    || l.contains("timed out")
                    || l.contains("timeout")
                    || l.contains("server error")
                    || l.contains("status 5")
                    || l.contains("503")
                    || l.contains("slowdown");
                FsError::Storage { bucket, op, message, transient }
            }
        }
    }

    /// Run a store future to completion from the synchronous code of this crate, on the
    /// pipeline's runtime (`dlt_core::runtime::block_on`: the caller's multi-threaded runtime,
    /// or the shared one).
    pub fn block_on<F: std::future::Future + Send>(&self, f: F) -> F::Output
    where
        F::Output: Send,
    {
        dlt_core::runtime::block_on(f)
    }

    /// Write bytes to `rel` (atomic: the object appears whole or not at all).
    pub fn put_bytes(&self, rel: &str, data: Vec<u8>) -> FsResult<()> {
        let p = self.path(rel)?;
        let store = self.inner.clone();
        self.block_on(async move { store.put(&p, PutPayload::from(data)).await })
            .map(|_| ())
            .map_err(|e| self.err(&format!("write {rel}"), e))
    }

    /// Upload a local file to `rel`, streaming (multipart above a few MiB); the object appears
    /// only when complete. Returns its size.
    pub fn put_file(&self, rel: &str, local: &FsPath) -> FsResult<u64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let p = self.path(rel)?;
        let store = self.inner.clone();
        let local = local.to_path_buf();
        let op = format!("upload {} to {rel}", local.display());
        let r: Result<u64, std::result::Result<object_store::Error, std::io::Error>> = self.block_on(async move {
            let mut f = tokio::fs::File::open(&local).await.map_err(Err)?;
            let mut w = object_store::buffered::BufWriter::with_capacity(store, p, 8 * 1024 * 1024);
            let mut buf = vec![0u8; 1024 * 1024];
            let mut total = 0u64;
            loop {
                let n = f.read(&mut buf).await.map_err(Err)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                if let Err(e) = w.write_all(&buf[..n]).await {
                    let _ = w.abort().await;
                    return Err(Err(e));
                }
            }
            w.shutdown().await.map_err(Err)?;
            Ok(total)
        });
        r.map_err(|e| match e {
            Ok(e) => self.err(&op, e),
            Err(io) => {
                // object_store errors come back wrapped in io::Error from the AsyncWrite side
                match io.into_inner().map(|b| b.downcast::<object_store::Error>()) {
                    Some(Ok(e)) => self.err(&op, *e),
                    Some(Err(other)) => FsError::Storage {
                        bucket: self.url.clone(),
                        op: op.clone(),
                        message: self.redact(other.to_string()),
                        transient: false,
                    },
                    None => FsError::Storage {
                        bucket: self.url.clone(),
                        op: op.clone(),
                        message: "I/O error".into(),
                        transient: false,
                    },
                }
            }
        })
    }

    /// Read a whole object; `None` if it does not exist.
    pub fn get_bytes(&self, rel: &str) -> FsResult<Option<Bytes>> {
        let p = self.path(rel)?;
        let store = self.inner.clone();
        let r = self.block_on(async move {
            match store.get(&p).await {
                Ok(g) => g.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        r.map_err(|e| self.err(&format!("read {rel}"), e))
    }

    /// Download an object into a local file.
    pub fn get_to_file(&self, rel: &str, local: &FsPath) -> FsResult<()> {
        use tokio::io::AsyncWriteExt;
        let p = self.path(rel)?;
        let store = self.inner.clone();
        let local = local.to_path_buf();
        let op = format!("download {rel}");
        let r: Result<(), std::result::Result<object_store::Error, std::io::Error>> = self.block_on(async move {
            let g = store.get(&p).await.map_err(Ok)?;
            let mut stream = g.into_stream();
            let mut f = tokio::fs::File::create(&local).await.map_err(Err)?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(Ok)?;
                f.write_all(&chunk).await.map_err(Err)?;
            }
            f.flush().await.map_err(Err)?;
            Ok(())
        });
        r.map_err(|e| match e {
            Ok(e) => self.err(&op, e),
            Err(io) => FsError::Storage { bucket: self.url.clone(), op, message: io.to_string(), transient: false },
        })
    }

    /// Whether an object exists.
    pub fn exists(&self, rel: &str) -> FsResult<bool> {
        let p = self.path(rel)?;
        let store = self.inner.clone();
        let r = self.block_on(async move {
            match store.head(&p).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        });
        r.map_err(|e| self.err(&format!("check {rel}"), e))
    }

    /// All objects below the folder `rel_dir` (recursive), as relative paths, sorted.
    pub fn list(&self, rel_dir: &str) -> FsResult<Vec<String>> {
        let p = self.path(rel_dir)?;
        let store = self.inner.clone();
        let r: Result<Vec<Path>, object_store::Error> = self.block_on(async move {
            let mut out = vec![];
            let prefix = if p.as_ref().is_empty() { None } else { Some(&p) };
            let mut s = store.list(prefix);
            while let Some(m) = s.next().await {
                match m {
                    Ok(m) => out.push(m.location),
                    Err(object_store::Error::NotFound { .. }) => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        });
        let mut v: Vec<String> =
            r.map_err(|e| self.err(&format!("list {rel_dir}/"), e))?.iter().map(|p| self.rel_of(p)).collect();
        v.sort();
        Ok(v)
    }

    /// All objects below the folder `rel_dir` (recursive) with their sizes in bytes, sorted.
    pub fn list_sizes(&self, rel_dir: &str) -> FsResult<Vec<(String, u64)>> {
        let p = self.path(rel_dir)?;
        let store = self.inner.clone();
        let r: Result<Vec<(Path, u64)>, object_store::Error> = self.block_on(async move {
            let mut out = vec![];
            let prefix = if p.as_ref().is_empty() { None } else { Some(&p) };
            let mut s = store.list(prefix);
            while let Some(m) = s.next().await {
                match m {
                    Ok(m) => out.push((m.location, m.size)),
                    Err(object_store::Error::NotFound { .. }) => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        });
        let mut v: Vec<(String, u64)> = r
            .map_err(|e| self.err(&format!("list {rel_dir}/"), e))?
            .iter()
            .map(|(p, n)| (self.rel_of(p), *n))
            .collect();
        v.sort();
        Ok(v)
    }

    /// The immediate sub-folders of `rel_dir` (names only).
    pub fn list_dirs(&self, rel_dir: &str) -> FsResult<Vec<String>> {
        let p = self.path(rel_dir)?;
        let store = self.inner.clone();
        let r = self.block_on(async move {
            let prefix = if p.as_ref().is_empty() { None } else { Some(&p) };
            match store.list_with_delimiter(prefix).await {
                Ok(l) => Ok(l.common_prefixes),
                Err(object_store::Error::NotFound { .. }) => Ok(vec![]),
                Err(e) => Err(e),
            }
        });
        let mut v: Vec<String> = r
            .map_err(|e| self.err(&format!("list {rel_dir}/"), e))?
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Delete an object (a missing one is not an error).
    pub fn delete(&self, rel: &str) -> FsResult<()> {
        let p = self.path(rel)?;
        let store = self.inner.clone();
        let r = self.block_on(async move {
            match store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        });
        r.map_err(|e| self.err(&format!("delete {rel}"), e))
    }
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
mod cloud {
    use super::*;
    use std::time::Duration;

    fn client_options(endpoint: Option<&str>) -> object_store::ClientOptions {
        let mut o = object_store::ClientOptions::new().with_connect_timeout(Duration::from_secs(5));
        if endpoint.is_some_and(|e| e.starts_with("http://")) {
            o = o.with_allow_http(true);
        }
        o
    }

    fn retry() -> object_store::RetryConfig {
        object_store::RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(30), ..Default::default() }
    }

    fn has_env(names: &[&str]) -> bool {
        names.iter().any(|n| std::env::var_os(n).is_some_and(|v| !v.is_empty()))
    }

    #[cfg(feature = "s3")]
    pub(super) fn s3(bucket: &str, c: &Credentials, display: &str) -> FsResult<Arc<dyn ObjectStore>> {
        use object_store::aws::AmazonS3Builder;
        let explicit = c.aws_access_key_id.is_some();
        if !explicit
            && !has_env(&[
                "AWS_ACCESS_KEY_ID",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ])
        {
            return Err(FsError::Config(format!(
                "no credentials for {display}: set DESTINATION__FILESYSTEM__CREDENTIALS__AWS_ACCESS_KEY_ID and \
                 DESTINATION__FILESYSTEM__CREDENTIALS__AWS_SECRET_ACCESS_KEY (or [destination.filesystem.credentials] in \
                 .dlt/secrets.toml, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
            )));
        }
        let mut b = if explicit { AmazonS3Builder::new() } else { AmazonS3Builder::from_env() };
        b = b.with_bucket_name(bucket).with_retry(retry());
        if let Some(k) = &c.aws_access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &c.aws_secret_access_key {
            b = b.with_secret_access_key(s.expose());
        }
        if let Some(t) = &c.aws_session_token {
            b = b.with_token(t.expose());
        }
        let region = c
            .region_name
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        b = b.with_region(region);
        if let Some(e) = &c.endpoint_url {
            b = b
                .with_endpoint(e.trim_end_matches('/'))
                .with_virtual_hosted_style_request(false)
                .with_allow_http(e.starts_with("http://"));
        }
        b = b.with_client_options(client_options(c.endpoint_url.as_deref()));
        let s = b.build().map_err(|e| FsError::Config(format!("cannot configure {display}: {e}")))?;
        Ok(Arc::new(s))
    }

    #[cfg(feature = "gcs")]
    pub(super) fn gcs(bucket: &str, c: &Credentials, display: &str) -> FsResult<Arc<dyn ObjectStore>> {
        use object_store::gcp::GoogleCloudStorageBuilder;
        let mut b = GoogleCloudStorageBuilder::new().with_bucket_name(bucket).with_retry(retry());
        match (&c.client_email, &c.private_key) {
            (Some(email), Some(key)) => {
                let sa = serde_json::json!({
                    "type": "service_account",
                    "project_id": c.project_id.clone().unwrap_or_default(),
                    "private_key_id": c.private_key_id.clone().unwrap_or_default(),
                    "private_key": key.expose(),
                    "client_email": email,
                    "token_uri": "https://oauth2.googleapis.com/token",
                });
                b = b.with_service_account_key(sa.to_string());
            }
            _ if c.endpoint_url.is_some() => {
                // Unsigned requests (an emulator). object_store 0.13's uploads ask the credential
                // provider even with `skip_signature` (reads and lists do not), which without a key
                // would be the instance-metadata service (or application default credentials): a
                // static empty token instead.
                let none = object_store::gcp::GcpCredential { bearer: String::new() };
                b = b
                    .with_skip_signature(true)
                    .with_credentials(Arc::new(object_store::StaticCredentialProvider::new(none)));
            }
            _ if has_env(&[
                "GOOGLE_APPLICATION_CREDENTIALS",
                "GOOGLE_SERVICE_ACCOUNT",
                "GOOGLE_SERVICE_ACCOUNT_KEY",
            ]) =>
            {
                b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket).with_retry(retry());
            }
            _ => {
                return Err(FsError::Config(format!(
                    "no credentials for {display}: set DESTINATION__FILESYSTEM__CREDENTIALS__CLIENT_EMAIL, …__PRIVATE_KEY \
                     and …__PROJECT_ID (or GOOGLE_APPLICATION_CREDENTIALS)"
                )));
            }
        }
        if let Some(e) = &c.endpoint_url {
            b = b.with_base_url(e.trim_end_matches('/'));
        }
        b = b.with_client_options(client_options(c.endpoint_url.as_deref()));
        let s = b.build().map_err(|e| FsError::Config(format!("cannot configure {display}: {e}")))?;
        Ok(Arc::new(s))
    }

    #[cfg(feature = "azure")]
    pub(super) fn azure(url: &str, c: &Credentials, display: &str) -> FsResult<Arc<dyn ObjectStore>> {
        use object_store::azure::MicrosoftAzureBuilder;
        // az://container/path, abfss://container@account.dfs.core.windows.net/path
        let mut b = MicrosoftAzureBuilder::new().with_retry(retry());
        let normalized = url.replacen("azure://", "az://", 1);
        b = b.with_url(normalized);
        if let Some(a) = &c.azure_storage_account_name {
            b = b.with_account(a);
        }
        if let Some(k) = &c.azure_storage_account_key {
            b = b.with_access_key(k.expose());
        } else if let Some(sas) = &c.azure_storage_sas_token {
            let pairs: Vec<(String, String)> =
                url::form_urlencoded::parse(sas.expose().trim_start_matches('?').as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
            b = b.with_sas_authorization(pairs);
        } else if let (Some(id), Some(secret), Some(tenant)) =
            (&c.azure_client_id, &c.azure_client_secret, &c.azure_tenant_id)
        {
            b = b.with_client_secret_authorization(id, secret.expose(), tenant);
        } else if !has_env(&[
            "AZURE_STORAGE_ACCOUNT_KEY",
            "AZURE_STORAGE_SAS_KEY",
            "AZURE_CLIENT_SECRET",
            "AZURE_FEDERATED_TOKEN_FILE",
        ]) {
            return Err(FsError::Config(format!(
                "no credentials for {display}: set DESTINATION__FILESYSTEM__CREDENTIALS__AZURE_STORAGE_ACCOUNT_NAME and \
                 …__AZURE_STORAGE_ACCOUNT_KEY (or …__AZURE_STORAGE_SAS_TOKEN, or a service principal)"
            )));
        }
        if let Some(e) = &c.endpoint_url {
            b = b.with_endpoint(e.trim_end_matches('/').to_string()).with_allow_http(e.starts_with("http://"));
        }
        b = b.with_client_options(client_options(c.endpoint_url.as_deref()));
        let s = b.build().map_err(|e| FsError::Config(format!("cannot configure {display}: {e}")))?;
        Ok(Arc::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_memory_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        for url in [dir.path().join("b").display().to_string(), "memory://unit-test/some/root".to_string()] {
            let s = Store::open(&url, &Credentials::default(), dir.path()).unwrap();
            s.put_bytes("ds/t/a.txt", b"hello".to_vec()).unwrap();
            s.put_bytes("ds/t2/b.txt", b"x".to_vec()).unwrap();
            assert_eq!(s.get_bytes("ds/t/a.txt").unwrap().unwrap().as_ref(), b"hello");
            assert!(s.get_bytes("ds/t/missing").unwrap().is_none());
            assert_eq!(s.list("ds").unwrap(), ["ds/t/a.txt", "ds/t2/b.txt"]);
            assert_eq!(s.list_dirs("ds").unwrap(), ["t", "t2"]);
            assert!(s.list("nothing").unwrap().is_empty());
            s.delete("ds/t/a.txt").unwrap();
            s.delete("ds/t/a.txt").unwrap();
            assert!(!s.exists("ds/t/a.txt").unwrap());
            assert!(s.put_bytes("ds/../x", vec![]).is_err());
        }
    }

    #[test]
    fn relative_local_path_and_file_url() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open("rel/bucket", &Credentials::default(), dir.path()).unwrap();
        s.put_bytes("f", vec![1]).unwrap();
        assert!(dir.path().join("rel/bucket/f").exists());
        let url = format!("file://{}", dir.path().join("fb").display());
        let s = Store::open(&url, &Credentials::default(), dir.path()).unwrap();
        s.put_bytes("g/h", vec![1]).unwrap();
        assert!(dir.path().join("fb/g/h").exists());
    }

    #[test]
    fn unknown_scheme_and_missing_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let e = Store::open("ftp://x/y", &Credentials::default(), dir.path()).unwrap_err();
        assert!(e.to_string().contains("ftp://"), "{e}");
        #[cfg(feature = "s3")]
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            let e = Store::open("s3://b/p", &Credentials::default(), dir.path()).unwrap_err();
            assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
        }
    }
}
