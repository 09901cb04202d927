//! HTTP requests with retries (429 with `Retry-After`, 5xx, connection errors, timeouts), response
//! actions, and the pages of one endpoint request.
//!
//! Requests are async (reqwest on the shared runtime). A request sequence is a [`Pager`]: it
//! hands out the next page's request and takes in its response (parsing, paginator). The
//! synchronous [`PageIter`] that resources read requests the next page in the background while
//! the records of the current one are consumed; a child resource's request sequences run as
//! tasks, a few at once (see the crate's `ChildIter`).

use std::sync::Arc;
use std::time::Duration;

use dlt_core::error::{Error, Result};
use reqwest::Client;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::auth::Auth;
use crate::body::{Records, SplitError, split_body};
use crate::config::{PaginatorConfig, ResponseAction};
use crate::jsonpath::JsonPath;
use crate::paginator::{Page, PageData, Paginator, Request};

/// How failed requests are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Backoff base in seconds.
    pub backoff_factor: f64,
    /// Longest wait in seconds (also caps `Retry-After`).
    pub max_delay: f64,
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let secs = self.backoff_factor * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        Duration::from_secs_f64(secs.clamp(0.0, self.max_delay.max(0.0)))
    }
}

/// The HTTP side of a source: one client shared by all its resources.
#[derive(Debug)]
pub struct Http {
    /// The reqwest client (timeouts, gzip).
    pub client: Client,
    /// `client.base_url`.
    pub base_url: String,
    /// `client.headers`.
    pub headers: Vec<(String, String)>,
    /// Retries.
    pub policy: RetryPolicy,
    /// `client.allow_cross_origin`: follow a next-page URL or redirect to another origin than
    /// the configured URL's (without credentials). Off: such a URL is an error.
    pub allow_cross_origin: bool,
    /// `client.max_response_bytes`: the largest response body read (after decompression).
    pub max_response_bytes: u64,
}

/// Default of `client.max_response_bytes`: 128 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 128 << 20;

/// Redirects followed per request.
const MAX_REDIRECTS: usize = 10;

/// A response that was read.
#[derive(Debug)]
pub struct Response {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Vec<u8>,
}

/// What a request came to.
#[derive(Debug)]
pub enum Outcome {
    /// A successful response.
    Ok(Response),
    /// A response action said to ignore it.
    Ignored,
}

/// A reqwest error with its causes, without the URL (which may hold a secret).
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() { "timed out".to_string() } else { String::new() };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = src {
        let t = c.to_string();
        if !t.is_empty() && !s.contains(&t) {
            if !s.is_empty() {
                s.push_str(": ");
            }
            s.push_str(&t);
        }
        src = c.source();
    }
    if s.is_empty() { "request failed".to_string() } else { s }
}

/// Timeouts, refused connections and broken bodies may pass on a later attempt; a refused TLS
/// certificate never does.
fn retryable(e: &reqwest::Error) -> bool {
    (e.is_timeout() || e.is_connect() || e.is_request() || e.is_body()) && !dlt_core::error::is_certificate_failure(e)
}

/// `Retry-After` as seconds or as an HTTP date (a date in the past: no wait).
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some((at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO))
}

fn excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    if s.len() > 200 { format!("{}…", &s[..s.floor_char_boundary(200)]) } else { s.to_string() }
}

/// Does a response action match?
pub fn action_matches(a: &ResponseAction, status: u16, body: &str) -> bool {
    match (a.status_code, a.content.as_deref()) {
        (Some(s), Some(c)) => s == status && body.contains(c),
        (Some(s), None) => s == status,
        (None, Some(c)) => body.contains(c),
        (None, None) => false,
    }
}

/// The URL with the query parameters, as shown in logs and errors (the value of a secret
/// query parameter masked).
pub fn full_url(req: &Request) -> Url {
    let mut u = req.url.clone();
    if !req.params.is_empty() {
        u.query_pairs_mut().extend_pairs(req.params.iter());
    }
    u
}

fn strip_param(u: &mut Url, name: &str) {
    if u.query_pairs().any(|(k, _)| k == name) {
        let pairs: Vec<(String, String)> =
            u.query_pairs().filter(|(k, _)| k != name).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if pairs.is_empty() {
            u.set_query(None);
        } else {
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
}

/// A URL as logs and errors show it: a password in the user info and the value of a secret
/// query parameter masked.
fn shown_url(u: &Url, secret_param: Option<&str>) -> String {
    let mut m = u.clone();
    if m.password().is_some() {
        let _ = m.set_password(Some("***"));
    }
    if let Some(p) = secret_param
        && u.query_pairs().any(|(k, _)| k == p)
    {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| (k.to_string(), if k == p { "***".to_string() } else { v.to_string() }))
            .collect();
        m.query_pairs_mut().clear().extend_pairs(pairs);
    }
    m.to_string()
}

impl Http {
    /// Send a request: retry what may pass on a later attempt, apply response actions, refresh an
    /// OAuth2 token once on 401. `what` names the request in errors (`GET <url> (page N)`).
    ///
    /// Credentials — the auth, `client.headers` and the endpoint's headers — go only to
    /// `origin`, the origin of the URL the user configured for this request sequence. A URL or
    /// redirect to another origin (a next-page link, a `Location`) is an error naming both
    /// origins, or with `client.allow_cross_origin` is followed without them.
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &self,
        req: &Request,
        origin: &reqwest::Url,
        auth: Option<&Auth>,
        actions: &[ResponseAction],
        resource: &str,
        page: u64,
    ) -> Result<Outcome> {
        let mut url = full_url(req);
        if let Some(p) = auth.and_then(Auth::secret_query_param) {
            // a next-page URL may echo the key back: the auth adds it once
            strip_param(&mut url, p);
        }
        let secret = auth.and_then(Auth::secret_query_param);
        let what = format!("{} {} (page {page})", req.method, shown_url(&url, secret));
        let fail =
            |message: String, transient: bool| Error::Source { resource: resource.to_string(), message, transient };
        let mut attempt = 0u32;
        let mut refreshed = false;
        loop {
            attempt += 1;
            tracing::info!(target: "dlt::http", request = %what, attempt, "rest_api: request");
            let result = self.send_following_redirects(req, &url, origin, auth, resource, &what).await;
            let resp = match result {
                Ok(r) => r,
                Err(SendError::Http(e)) => {
                    let can = retryable(&e);
                    if can && attempt < self.policy.max_attempts {
                        let wait = self.policy.backoff(attempt);
                        tracing::warn!(request = %what, attempt, error = %describe_reqwest(&e), wait_s = wait.as_secs_f64(), "rest_api: request failed, retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    let tail = if can { format!(" (gave up after {attempt} attempts)") } else { String::new() };
                    return Err(fail(format!("{what}: {}{tail}", describe_reqwest(&e)), can));
                }
                Err(SendError::Other(e)) => return Err(e),
            };
            let status = resp.status.as_u16();
            if !actions.is_empty() {
                let text = String::from_utf8_lossy(&resp.body);
                if let Some(a) = actions.iter().find(|a| action_matches(a, status, &text))
                    && a.action == "ignore"
                {
                    tracing::info!(request = %what, status, "rest_api: ignoring the response (response_actions)");
                    return Ok(Outcome::Ignored);
                }
            }
            if resp.status == StatusCode::UNAUTHORIZED
                && !refreshed
                && let Some(a) = auth
                && a.invalidate().await
            {
                refreshed = true;
                attempt -= 1;
                tracing::info!(request = %what, "rest_api: 401, fetching a new OAuth2 token");
                continue;
            }
            if resp.status == StatusCode::TOO_MANY_REQUESTS || resp.status.is_server_error() {
                if attempt < self.policy.max_attempts {
                    let wait = retry_after(&resp.headers)
                        .unwrap_or_else(|| self.policy.backoff(attempt))
                        .min(Duration::from_secs_f64(self.policy.max_delay.max(0.0)));
                    tracing::warn!(request = %what, status, attempt, wait_s = wait.as_secs_f64(), "rest_api: retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Err(fail(
                    format!("{what}: HTTP {} (gave up after {attempt} attempts): {}", resp.status, excerpt(&resp.body)),
                    true,
                ));
            }
            if !resp.status.is_success() {
                return Err(fail(format!("{what}: HTTP {}: {}", resp.status, excerpt(&resp.body)), false));
            }
            return Ok(Outcome::Ok(resp));
        }
    }

    /// One attempt: the request, then the redirects it gets, each checked against `origin`.
    async fn send_following_redirects(
        &self,
        req: &Request,
        url: &Url,
        origin: &Url,
        auth: Option<&Auth>,
        resource: &str,
        what: &str,
    ) -> std::result::Result<Response, SendError> {
        let mut url = url.clone();
        let mut method = req.method.clone();
        let mut with_body = true;
        for _ in 0..=MAX_REDIRECTS {
            let trusted = self.check_origin(&url, origin, resource, what)?;
            let mut rb = self.client.request(method.clone(), url.clone());
            if trusted {
                for (k, v) in self.headers.iter().chain(req.headers.iter()) {
                    rb = rb.header(k.as_str(), v.as_str());
                }
            }
            if with_body {
                if let Some(j) = &req.json {
                    rb = rb.json(j);
                }
                match &req.data {
                    Some(Value::Object(m)) => {
                        let form: Vec<(String, String)> =
                            m.iter().map(|(k, v)| (k.clone(), crate::placeholder::value_text(v))).collect();
                        rb = rb.form(&form);
                    }
                    Some(Value::String(s)) => rb = rb.body(s.clone()),
                    Some(Value::Null) | None => {}
                    Some(other) => rb = rb.body(other.to_string()),
                }
            }
            if trusted && let Some(a) = auth {
                rb = a.apply(rb, &self.client, resource).await.map_err(SendError::Other)?;
            }
            let r = rb.send().await.map_err(SendError::Http)?;
            let status = r.status();
            if status.is_redirection()
                && let Some(loc) = r.headers().get(reqwest::header::LOCATION)
            {
                let loc = loc.to_str().ok().and_then(|l| url.join(l).ok()).ok_or_else(|| {
                    SendError::Other(Error::Source {
                        resource: resource.to_string(),
                        message: format!("{what}: HTTP {status} with an unreadable Location header"),
                        transient: false,
                    })
                })?;
                tracing::debug!(request = %what, status = status.as_u16(), "rest_api: following a redirect");
                // 301/302/303 turn a request with a body into a GET (as browsers and reqwest do);
                // 307/308 repeat it as it was
                if !matches!(status, StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT)
                    && (method != reqwest::Method::GET && method != reqwest::Method::HEAD)
                {
                    method = reqwest::Method::GET;
                    with_body = false;
                }
                url = loc;
                continue;
            }
            let headers = r.headers().clone();
            let body = self.read_body(r, resource, what).await?;
            return Ok(Response { status, headers, body });
        }
        Err(SendError::Other(Error::Source {
            resource: resource.to_string(),
            message: format!("{what}: more than {MAX_REDIRECTS} redirects"),
            transient: false,
        }))
    }

    /// Whether `url` may get credentials (it is on `origin`); an error for another origin
    /// unless cross-origin requests are allowed (then without credentials).
    fn check_origin(
        &self,
        url: &Url,
        origin: &Url,
        resource: &str,
        what: &str,
    ) -> std::result::Result<bool, SendError> {
        if url.origin() == origin.origin() {
            return Ok(true);
        }
        if self.allow_cross_origin {
            tracing::info!(
                request = %what,
                to = %url.origin().ascii_serialization(),
                "rest_api: following a URL on another origin without credentials (client.allow_cross_origin)"
            );
            return Ok(false);
        }
        Err(SendError::Other(Error::Source {
            resource: resource.to_string(),
            message: format!(
                "{what}: the response leads to {}, another origin than the configured {}; dlt-rs sends \
                 credentials only to the configured origin and does not follow such links. If the API \
                 really serves pages from there, set `client.allow_cross_origin = true` to follow them \
                 without credentials",
                url.origin().ascii_serialization(),
                origin.origin().ascii_serialization()
            ),
            transient: false,
        }))
    }

    /// The body, decompressed, read up to `max_response_bytes`.
    async fn read_body(
        &self,
        mut r: reqwest::Response,
        resource: &str,
        what: &str,
    ) -> std::result::Result<Vec<u8>, SendError> {
        let limit = self.max_response_bytes;
        let too_large = || {
            SendError::Other(Error::Source {
                resource: resource.to_string(),
                message: format!(
                    "{what}: the response is larger than client.max_response_bytes ({limit} bytes); raise the \
                     setting if the API really sends pages this large, or ask for smaller pages"
                ),
                transient: false,
            })
        };
        // a declared length says it up front (for an uncompressed body it is the size read)
        if r.content_length().is_some_and(|n| n > limit) && r.headers().get(reqwest::header::CONTENT_ENCODING).is_none()
        {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(r.content_length().unwrap_or(0).min(limit).min(16 << 20) as usize);
        while let Some(chunk) = r.chunk().await.map_err(SendError::Http)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Why one attempt failed: an HTTP error (maybe retried) or a final error.
enum SendError {
    Http(reqwest::Error),
    Other(Error),
}

/// How one endpoint is read: paginator, data selector, response actions and auth.
#[derive(Debug, Clone)]
pub struct ReadSpec {
    /// Resource name (errors).
    pub resource: String,
    /// The paginator config.
    pub paginator: PaginatorConfig,
    /// The data selector (detected when `None`).
    pub data_selector: Option<JsonPath>,
    /// Response actions.
    pub actions: Vec<ResponseAction>,
    /// Auth.
    pub auth: Option<Arc<Auth>>,
}

/// One request sequence (an endpoint's pages): the request of the next page and the paginator's
/// state. [`Pager::next_request`] gives a page's request, [`Http::send`] makes it, and
/// [`Pager::accept`] takes in the response: its records, and the request of the page after it.
pub struct Pager {
    http: Arc<Http>,
    spec: Arc<ReadSpec>,
    req: Request,
    /// The origin of the first request (the configured URL): credentials go only there.
    origin: Url,
    paginator: Option<Paginator>,
    page_no: u64,
    done: bool,
    detected_logged: bool,
    /// An error to return once the records before it are out.
    pending: Option<Error>,
}

/// A page's request, ready to send.
pub struct PageRequest {
    http: Arc<Http>,
    spec: Arc<ReadSpec>,
    req: Request,
    origin: Url,
    page_no: u64,
}

impl PageRequest {
    /// Send it (with retries, redirects and response actions).
    pub async fn send(self) -> Result<Outcome> {
        let s = &self.spec;
        self.http.send(&self.req, &self.origin, s.auth.as_deref(), &s.actions, &s.resource, self.page_no).await
    }
}

impl Pager {
    /// The pages starting with `req`.
    pub fn new(http: Arc<Http>, spec: Arc<ReadSpec>, req: Request) -> Pager {
        Pager {
            http,
            spec,
            origin: req.url.clone(),
            req,
            paginator: None,
            page_no: 0,
            done: false,
            detected_logged: false,
            pending: None,
        }
    }

    fn err(&self, message: String) -> Error {
        Error::Source { resource: self.spec.resource.clone(), message, transient: false }
    }

    /// The request of the next page, or `None` when the sequence has ended.
    pub fn next_request(&mut self) -> Result<Option<PageRequest>> {
        if self.done {
            return Ok(None);
        }
        if self.paginator.is_none() {
            let mut p = Paginator::new(&self.spec.paginator).map_err(|e| self.err(e))?;
            p.init_request(&mut self.req);
            self.paginator = Some(p);
        }
        self.page_no += 1;
        Ok(Some(PageRequest {
            http: self.http.clone(),
            spec: self.spec.clone(),
            req: self.req.clone(),
            origin: self.origin.clone(),
            page_no: self.page_no,
        }))
    }

    /// The error that ended the sequence after the records of its last page, if any.
    pub fn take_pending(&mut self) -> Option<Error> {
        self.pending.take()
    }

    /// A record of a page, or the error that names it.
    pub fn record(&self, r: serde_json::Result<Value>) -> Result<Value> {
        r.map_err(|e| self.err(format!("a record of the response: {e}")))
    }

    /// Take in the response to the last request: its records (the data selector applied), the
    /// paginator's state, and the request of the next page (or the end).
    pub fn accept(&mut self, outcome: Outcome) -> Result<Records> {
        let page_no = self.page_no;
        let auth = self.spec.auth.as_deref();
        let shown = format!(
            "{} {} (page {page_no})",
            self.req.method,
            shown_url(&full_url(&self.req), auth.and_then(Auth::secret_query_param))
        );
        let what = || shown.clone();
        let resp = match outcome {
            Outcome::Ok(r) => r,
            Outcome::Ignored => {
                self.done = true;
                return Ok(Records::default());
            }
        };
        let mut paginator = self.paginator.take().expect("next_request made the paginator");
        let Response { headers, body, .. } = resp;
        let split = split_body(body, self.spec.data_selector.as_ref()).map_err(|e| match e {
            SplitError::Malformed(e) => self.err(format!("{}: malformed JSON in the response: {e}", what())),
            SplitError::NoMatch => self.err(format!(
                "{}: data_selector `{}` matched nothing in the response",
                what(),
                self.spec.data_selector.as_ref().map(ToString::to_string).unwrap_or_default()
            )),
        })?;
        if let Some(p) = &split.detected
            && !self.detected_logged
        {
            tracing::info!(resource = %self.spec.resource, path = %p, "rest_api: detected the page data");
            self.detected_logged = true;
        }
        let discard = paginator
            .update_state(&Page {
                headers: &headers,
                body: split.envelope.as_ref(),
                data: PageData::Records(&split.records),
            })
            .map_err(|e| self.err(format!("{}: {e}", what())))?;
        let records = if discard { Records::default() } else { split.records };
        if paginator.has_next() {
            if self.spec.paginator.max_pages.is_some_and(|m| page_no >= m) {
                tracing::warn!(resource = %self.spec.resource, max_pages = page_no, "rest_api: stopped at max_pages although there are more pages");
                self.done = true;
            } else {
                // an error here comes after this page's records
                let before = (full_url(&self.req), self.req.json.clone());
                match paginator.update_request(&mut self.req) {
                    Err(e) => self.pending = Some(self.err(format!("{}: {e}", what()))),
                    Ok(()) if (full_url(&self.req), self.req.json.clone()) == before => {
                        self.pending = Some(self.err(format!(
                            "{}: the {} paginator would request the same page again; check its settings",
                            what(),
                            paginator.name()
                        )))
                    }
                    Ok(()) => {}
                }
                self.done = self.pending.is_some();
            }
        } else {
            self.done = true;
        }
        self.paginator = Some(paginator);
        Ok(records)
    }

    /// Every record of the sequence, the pages requested one after the other (a child
    /// resource's task).
    pub async fn collect(mut self) -> Result<Vec<Value>> {
        let mut out = vec![];
        while let Some(req) = self.next_request()? {
            let mut records = self.accept(req.send().await?)?;
            out.reserve(records.len());
            while let Some(r) = records.pop_front() {
                out.push(self.record(r)?);
            }
        }
        match self.take_pending() {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// The records of one request sequence, page by page, lazily; the next page is requested in the
/// background while the current page's records are taken.
pub struct PageIter {
    pager: Pager,
    buf: Records,
    next: Option<tokio::task::JoinHandle<Result<Outcome>>>,
    failed: bool,
}

impl PageIter {
    /// Iterate the pages starting with `req`.
    pub fn new(http: Arc<Http>, spec: Arc<ReadSpec>, req: Request) -> PageIter {
        Self::from_pager(Pager::new(http, spec, req))
    }

    /// Iterate the pages of a request sequence.
    pub fn from_pager(pager: Pager) -> PageIter {
        PageIter { pager, buf: Records::default(), next: None, failed: false }
    }

    /// Start the request of the next page (nothing when the sequence has ended).
    fn request_next(&mut self) -> Result<()> {
        if let Some(req) = self.pager.next_request()? {
            self.next = Some(dlt_core::runtime::handle().spawn(req.send()));
        }
        Ok(())
    }

    fn fail(&mut self, e: Error) -> Option<Result<Value>> {
        self.failed = true;
        Some(Err(e))
    }
}

impl Iterator for PageIter {
    type Item = Result<Value>;
    fn next(&mut self) -> Option<Result<Value>> {
        loop {
            if let Some(v) = self.buf.pop_front() {
                return Some(self.pager.record(v));
            }
            if self.failed {
                return None;
            }
            if self.next.is_none()
                && let Err(e) = self.request_next()
            {
                return self.fail(e);
            }
            let Some(next) = self.next.take() else {
                self.failed = true;
                return self.pager.take_pending().map(Err);
            };
            let outcome = dlt_core::runtime::block_on(next)
                .unwrap_or_else(|e| Err(self.pager.err(format!("the request task failed: {e}"))));
            match outcome.and_then(|o| self.pager.accept(o)) {
                Ok(records) => self.buf = records,
                Err(e) => return self.fail(e),
            }
            if let Err(e) = self.request_next() {
                self.pager.pending.get_or_insert(e);
            }
        }
    }
}

impl Drop for PageIter {
    fn drop(&mut self) {
        if let Some(h) = self.next.take() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_mask_passwords_and_secret_params() {
        let u = Url::parse("https://user:hunter2@api.example/items?api_key=k3y&page=2").unwrap();
        assert_eq!(shown_url(&u, Some("api_key")), "https://user:***@api.example/items?api_key=***&page=2");
        assert_eq!(shown_url(&u, None), "https://user:***@api.example/items?api_key=k3y&page=2");
        let plain = Url::parse("https://api.example/items").unwrap();
        assert_eq!(shown_url(&plain, Some("api_key")), "https://api.example/items");
    }
}
