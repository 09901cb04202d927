//! The declarative `rest_api` source, as dlt's: a `client` (base URL, headers, auth, paginator,
//! timeouts and retries), `resource_defaults`, and `resources` whose endpoints may depend on a
//! parent resource (`{resources.<parent>.<field>}`) and load incrementally.
//!
//! ```no_run
//! use dlt_rest_api::{RestApiConfig, rest_api_source};
//! let cfg = RestApiConfig::from_json(serde_json::json!({
//!     "client": {"base_url": "https://api.example.com/", "paginator": "header_link"},
//!     "resources": [
//!         "posts",
//!         {"name": "comments", "endpoint": {"path": "posts/{resources.posts.id}/comments"},
//!          "include_from_parent": ["title"]}
//!     ]
//! }))?;
//! let source = rest_api_source(&cfg, &dlt_core::config::Config::default())?;
//! # Ok::<(), dlt_core::Error>(())
//! ```
//!
//! Deliberate differences from dlt 1.31 (see also `docs/rest_api.md`):
//! - **`auto` pagination fails loudly.** The detected paginator is logged (tracing, info). When
//!   none is detected but the response looks paginated (pagination headers, or keys such as
//!   `total`, `next`, `page`, `has_more`, `cursor` next to the records), the run fails and asks
//!   for an explicit `paginator` (`single_page` if one page is everything) where dlt would load
//!   the first page only, with a warning.
//! - **A detected `total_pages` never skips the last page** of a 1-based API, nor loads page 1
//!   twice (dlt's auto-detected page-number paginator does both, section 13.4).
//! - **`max_pages`** on any paginator stops a request sequence after that many pages (a warning
//!   says there were more).
//! - A `data_selector` that matches nothing is an error naming the URL and page, and so is a
//!   malformed JSON response.
//! - A response action matching a 429/5xx applies at once, without retrying first.
//! - A child resource receives its parent's items before the parent's incremental filter runs
//!   (the parent's request already carries the window, so this only matters at the boundary).
#![warn(missing_docs)]

pub mod auth;
pub mod body;
pub mod client;
pub mod config;
pub mod jsonpath;
pub mod paginator;
pub mod placeholder;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dlt_core::config::Config;
use dlt_core::error::{Error, Result};
use dlt_core::registry::{SourceContext, SourceFactory};
use dlt_core::resource::{Resource, ResourceContext, ResourceHints, Source};
use serde_json::{Map, Value};

use crate::auth::Auth;
use crate::client::{Http, PageIter, Pager, ReadSpec, RetryPolicy};
pub use crate::config::*;
use crate::jsonpath::JsonPath;
use crate::paginator::{Paginator, Request};
use crate::placeholder::{INCREMENTAL_NAMES, Placeholder, Vars};

/// dlt's default name of the source (and its schema and state section).
pub const DEFAULT_SOURCE_NAME: &str = "rest_api";

/// Where a query parameter's value comes from.
#[derive(Debug, Clone)]
enum ParamPlan {
    Value(Value),
    Start,
    End,
    Resolve(String),
}

#[derive(Debug)]
struct ParentLink {
    name: String,
    idx: usize,
    include: Vec<String>,
}

/// One resource, checked and ready to make requests.
#[derive(Debug)]
struct Plan {
    name: String,
    method: reqwest::Method,
    path: String,
    params: Vec<(String, ParamPlan)>,
    json: Option<Value>,
    data: Option<Value>,
    headers: Vec<(String, String)>,
    read: Arc<ReadSpec>,
    parent: Option<ParentLink>,
    incremental: Option<IncrementalSpec>,
    /// Fields the children need from each item.
    child_fields: Vec<String>,
}

/// Items a parent resource already produced in this run, for its children.
#[derive(Debug, Default)]
struct Feed {
    items: Vec<Map<String, Value>>,
    done: bool,
}

struct Runtime {
    http: Arc<Http>,
    plans: Vec<Plan>,
    feeds: Vec<Option<Mutex<Feed>>>,
    max_parallel: usize,
}

type ValueIter = Box<dyn Iterator<Item = Result<Value>> + Send>;

fn cfg_err(msg: String) -> Error {
    Error::Config(format!("rest_api: {msg}"))
}

fn runtime_setting(providers: &Config, key: &str) -> Option<f64> {
    providers.get(&["runtime"], key).and_then(|v| v.as_string().trim().parse().ok())
}

fn build_http(client: &ClientConfig, providers: &Config) -> Result<(Http, usize)> {
    let s = client.session.clone().unwrap_or_default();
    let timeout = s.timeout.or_else(|| runtime_setting(providers, "request_timeout")).unwrap_or(60.0);
    let connect = s.connect_timeout.unwrap_or(timeout);
    let policy = RetryPolicy {
        max_attempts: s
            .max_attempts
            .or_else(|| runtime_setting(providers, "request_max_attempts").map(|v| v as u32))
            .unwrap_or(5)
            .max(1),
        backoff_factor: s
            .backoff_factor
            .or_else(|| runtime_setting(providers, "request_backoff_factor"))
            .unwrap_or(1.0),
        max_delay: s.max_retry_delay.or_else(|| runtime_setting(providers, "request_max_retry_delay")).unwrap_or(300.0),
    };
    let secs = |v: f64, what: &str| {
        if v.is_finite() && v > 0.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(cfg_err(format!("client.session.{what} must be a positive number of seconds")))
        }
    };
    let mut builder = reqwest::Client::builder();
    for cert in ca_bundle(client)? {
        builder = builder.add_root_certificate(cert);
    }
    let http_client = builder
        .timeout(secs(timeout, "timeout")?)
        .connect_timeout(secs(connect, "connect_timeout")?)
        .gzip(true)
        // redirects are followed by `Http::send`, which checks each target's origin
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("dlt-rs/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| cfg_err(format!("cannot build the HTTP client: {}", client::describe_reqwest(&e))))?;
    if client.base_url.trim().is_empty() {
        return Err(cfg_err("client.base_url is required".into()));
    }
    reqwest::Url::parse(&client.base_url)
        .map_err(|e| cfg_err(format!("client.base_url `{}` is not a URL: {e}", client.base_url)))?;
    let http = Http {
        client: http_client,
        base_url: client.base_url.clone(),
        headers: client.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        policy,
        allow_cross_origin: client.allow_cross_origin,
        max_response_bytes: match client.max_response_bytes {
            Some(0) => return Err(cfg_err("client.max_response_bytes must be a positive number of bytes".into())),
            Some(n) => n,
            None => client::DEFAULT_MAX_RESPONSE_BYTES,
        },
    };
    Ok((http, s.max_parallel.unwrap_or(4).max(1)))
}

/// The extra CA certificates to trust: `client.ca_bundle`, else the `REQUESTS_CA_BUNDLE` or
/// `SSL_CERT_FILE` environment variable (as Python's requests and OpenSSL read them).
fn ca_bundle(client: &ClientConfig) -> Result<Vec<reqwest::Certificate>> {
    let (path, origin) = match &client.ca_bundle {
        Some(p) => (p.clone(), "client.ca_bundle".to_string()),
        None => match ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()).map(|v| (v, k.to_string())))
        {
            Some(found) => found,
            None => return Ok(vec![]),
        },
    };
    let pem =
        std::fs::read(&path).map_err(|e| cfg_err(format!("{origin}: cannot read the CA bundle `{path}`: {e}")))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        cfg_err(format!("{origin}: `{path}` is not a PEM file of certificates: {}", client::describe_reqwest(&e)))
    })?;
    if certs.is_empty() {
        return Err(cfg_err(format!("{origin}: `{path}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)")));
    }
    tracing::debug!(path = %path, setting = %origin, certificates = certs.len(), "rest_api: trusting extra CA certificates");
    Ok(certs)
}

fn join_url(base: &str, path: &str) -> std::result::Result<reqwest::Url, String> {
    let full = if path.starts_with("http://") || path.starts_with("https://") {
        path.to_string()
    } else if path.is_empty() {
        base.to_string()
    } else {
        format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
    };
    reqwest::Url::parse(&full).map_err(|e| format!("`{full}` is not a valid URL: {e}"))
}

/// Check one resource and turn it into a plan (parents are linked afterwards).
fn plan_resource(
    r: &ResourceConfig,
    client: &ClientConfig,
    client_auth: &Option<Arc<Auth>>,
    providers: &Config,
    source_name: &str,
) -> Result<(Plan, Option<String>)> {
    let name = r.name.as_str();
    let err = |m: String| cfg_err(format!("resource `{name}`: {m}"));
    let ep = r.endpoint.clone().unwrap_or_default();
    let path = ep.path.clone().unwrap_or_else(|| name.to_string());
    let method = reqwest::Method::from_bytes(ep.method.as_deref().unwrap_or("GET").to_ascii_uppercase().as_bytes())
        .map_err(|_| err(format!("unknown HTTP method `{}`", ep.method.as_deref().unwrap_or_default())))?;

    // placeholders and parents
    let mut found: Vec<Placeholder> = placeholder::scan(&path);
    let mut parents: Vec<String> = vec![];
    let mut incremental = ep.incremental.clone();
    let mut params = vec![];
    for (k, v) in &ep.params {
        match v {
            ParamValue::Value(v) => {
                placeholder::scan_json(v, &mut found);
                params.push((k.clone(), ParamPlan::Value(v.clone())));
            }
            ParamValue::Incremental(spec) => {
                if incremental.is_some() {
                    return Err(
                        err("more than one incremental definition (params and/or endpoint.incremental)".into()),
                    );
                }
                params.push((k.clone(), ParamPlan::Start));
                if let Some(e) = &spec.end_param {
                    params.push((e.clone(), ParamPlan::End));
                }
                incremental = Some((**spec).clone());
            }
            ParamValue::Resolve { resource, field } => {
                parents.push(resource.clone());
                params.push((k.clone(), ParamPlan::Resolve(field.clone())));
            }
        }
    }
    if let (Some(spec), None) = (&ep.incremental, params.iter().find(|(_, p)| matches!(p, ParamPlan::Start))) {
        if let Some(s) = &spec.start_param {
            params.push((s.clone(), ParamPlan::Start));
        }
        if let Some(e) = &spec.end_param {
            params.push((e.clone(), ParamPlan::End));
        }
    }
    if let Some(spec) = &incremental
        && let Some(k) = &spec.kind
        && k != "incremental"
    {
        return Err(err(format!("incremental `type` must be `incremental`, not `{k}`")));
    }
    if let Some(j) = &ep.json {
        placeholder::scan_json(j, &mut found);
    }
    if let Some(d) = &ep.data {
        placeholder::scan_json(d, &mut found);
    }
    let mut fields: Vec<(String, String)> = vec![];
    for p in &found {
        match p {
            Placeholder::Resource { resource, field } => {
                parents.push(resource.clone());
                fields.push((resource.clone(), field.clone()));
            }
            Placeholder::Incremental(n) => {
                if !INCREMENTAL_NAMES.contains(&n.as_str()) {
                    return Err(err(format!(
                        "unknown placeholder `{{incremental.{n}}}` (use {})",
                        INCREMENTAL_NAMES.join(", ")
                    )));
                }
                if incremental.is_none() {
                    return Err(err(format!("`{{incremental.{n}}}` is used but the endpoint has no `incremental`")));
                }
            }
        }
    }
    parents.dedup();
    if parents.len() > 1 {
        return Err(err(format!("refers to more than one parent resource: {}", parents.join(", "))));
    }
    let parent = parents.pop();
    if parent.as_deref() == Some(name) {
        return Err(err("refers to itself as its parent".into()));
    }
    if parent.is_none() && !r.include_from_parent.is_empty() {
        return Err(err(
            "include_from_parent needs a parent (`{resources.<parent>.<field>}` in the path or params)".into()
        ));
    }

    // reading
    let data_selector = match &ep.data_selector {
        Some(s) => Some(JsonPath::parse(s).map_err(|e| err(format!("data_selector: {e}")))?),
        None => None,
    };
    let paginator = ep.paginator.clone().or_else(|| client.paginator.clone()).unwrap_or_default();
    Paginator::new(&paginator).map_err(|e| err(format!("paginator: {e}")))?;
    let actions = ep.response_actions.clone().unwrap_or_default();
    for a in &actions {
        if a.action != "ignore" {
            return Err(err(format!("response action `{}` is not supported (only `ignore`)", a.action)));
        }
        if a.status_code.is_none() && a.content.is_none() {
            return Err(err("a response action needs `status_code` and/or `content`".into()));
        }
    }
    let auth = match &ep.auth {
        Some(a) => Some(Arc::new(Auth::resolve(a, providers, &["sources", source_name, name])?)),
        None => client_auth.clone(),
    };
    let read = Arc::new(ReadSpec { resource: name.to_string(), paginator, data_selector, actions, auth });
    let mut plan = Plan {
        name: name.to_string(),
        method,
        path,
        params,
        json: ep.json.clone(),
        data: ep.data.clone(),
        headers: ep.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        read,
        parent: None,
        incremental,
        child_fields: vec![],
    };
    if let Some(p) = &parent {
        let mut include = r.include_from_parent.clone();
        include.dedup();
        plan.parent = Some(ParentLink { name: p.clone(), idx: usize::MAX, include });
        // the parent fields this resource reads, recorded on the parent later
        plan.child_fields = fields.into_iter().map(|(_, f)| f).collect();
        for (_, pp) in &plan.params {
            if let ParamPlan::Resolve(f) = pp {
                plan.child_fields.push(f.clone());
            }
        }
    }
    Ok((plan, parent))
}

fn hints_of(r: &ResourceConfig) -> Result<ResourceHints> {
    let mut h = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            h.insert(k.to_string(), v);
        }
    };
    put("table_name", r.table_name.clone().map(Value::String));
    put("write_disposition", r.write_disposition.as_ref().map(serde_json::to_value).transpose()?);
    put("primary_key", r.primary_key.as_ref().map(serde_json::to_value).transpose()?);
    put("merge_key", r.merge_key.as_ref().map(serde_json::to_value).transpose()?);
    if !r.columns.is_empty() {
        put("columns", Some(serde_json::to_value(&r.columns)?));
    }
    put("max_table_nesting", r.max_table_nesting.map(Value::from));
    put("schema_contract", r.schema_contract.clone());
    put("file_format", r.file_format.clone().map(Value::String));
    ResourceHints::from_json(&Value::Object(h)).map_err(|e| cfg_err(format!("resource `{}`: {e}", r.name)))
}

/// The resources of a `rest_api` config, parents before their children. `providers` resolve
/// secrets and `runtime` request settings. Resources with `selected = false` are left out (they
/// still feed their children).
pub fn rest_api_resources(cfg: &RestApiConfig, providers: &Config) -> Result<Vec<Resource>> {
    let source_name = cfg.name.clone().unwrap_or_else(|| DEFAULT_SOURCE_NAME.to_string());
    let resources = cfg.merged_resources()?;
    if resources.is_empty() {
        return Err(cfg_err("no resources".into()));
    }
    let (http, max_parallel) = build_http(&cfg.client, providers)?;
    let client_auth = match &cfg.client.auth {
        Some(a) => Some(Arc::new(Auth::resolve(a, providers, &["sources", &source_name])?)),
        None => None,
    };
    let mut plans = vec![];
    let mut parents = vec![];
    for r in &resources {
        let (plan, parent) = plan_resource(r, &cfg.client, &client_auth, providers, &source_name)?;
        plans.push(plan);
        parents.push(parent);
    }
    // link parents, collect the fields each parent must keep for its children
    let mut needed: Vec<Vec<String>> = vec![vec![]; plans.len()];
    for i in 0..plans.len() {
        if let Some(p) = &parents[i] {
            let idx = plans.iter().position(|x| &x.name == p).ok_or_else(|| {
                cfg_err(format!("resource `{}`: parent resource `{p}` is not defined", plans[i].name))
            })?;
            let mut f = plans[i].child_fields.clone();
            let link = plans[i].parent.as_mut().expect("set with the parent name");
            link.idx = idx;
            f.extend(link.include.iter().cloned());
            needed[idx].extend(f);
        }
    }
    for (i, mut f) in needed.into_iter().enumerate() {
        f.sort();
        f.dedup();
        plans[i].child_fields = f;
    }
    // parents first (and no cycles)
    let mut order: Vec<usize> = vec![];
    for i in 0..plans.len() {
        let mut chain = vec![];
        let mut cur = Some(i);
        while let Some(c) = cur {
            if order.contains(&c) {
                break;
            }
            if chain.contains(&c) {
                return Err(cfg_err(format!("resource `{}`: parent resources form a cycle", plans[c].name)));
            }
            chain.push(c);
            cur = plans[c].parent.as_ref().map(|l| l.idx);
        }
        order.extend(chain.into_iter().rev());
    }
    let feeds = plans.iter().map(|p| if p.child_fields.is_empty() { None } else { Some(Mutex::new(Feed::default())) });
    let feeds: Vec<_> = feeds.collect();
    let has_children: Vec<bool> =
        (0..plans.len()).map(|i| plans.iter().any(|p| p.parent.as_ref().is_some_and(|l| l.idx == i))).collect();
    let rt = Arc::new(Runtime { http: Arc::new(http), plans, feeds, max_parallel });
    let mut out = vec![];
    for idx in order {
        let r = &resources[idx];
        if r.selected == Some(false) {
            continue;
        }
        let hints = hints_of(r)?;
        let spec = rt.plans[idx].incremental.clone();
        let rt2 = rt.clone();
        let feeds_it = has_children[idx];
        let mut res = Resource::deferred(r.name.clone(), move |ctx: ResourceContext| -> ValueIter {
            let inc = incremental_vars(spec.as_ref(), ctx.start_value, ctx.end_value);
            let it = stream(rt2.clone(), idx, inc);
            if feeds_it && rt2.feeds[idx].is_some() { Box::new(Recorder { rt: rt2, idx, inner: it }) } else { it }
        })
        .with_hints(hints);
        if let Some(spec) = &rt.plans[idx].incremental {
            res = res.incremental(spec.to_incremental_config());
        }
        out.push(res);
    }
    Ok(out)
}

/// A `rest_api` source: [`rest_api_resources`] under the config's `name` (default `rest_api`).
pub fn rest_api_source(cfg: &RestApiConfig, providers: &Config) -> Result<Source> {
    let mut s = Source::new(
        cfg.name.clone().unwrap_or_else(|| DEFAULT_SOURCE_NAME.to_string()),
        rest_api_resources(cfg, providers)?,
    );
    s.max_table_nesting = cfg.max_table_nesting;
    s.schema_contract = cfg.schema_contract.clone();
    Ok(s)
}

fn incremental_vars(spec: Option<&IncrementalSpec>, start: Option<Value>, end: Option<Value>) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(s) = spec {
        let initial = s.initial_value.clone().unwrap_or(Value::Null);
        let start = start.or_else(|| s.initial_value.clone()).unwrap_or(Value::Null);
        m.insert("initial_value".into(), initial);
        m.insert("start_value".into(), start.clone());
        m.insert("last_value".into(), start);
        m.insert("end_value".into(), end.or_else(|| s.end_value.clone()).unwrap_or(Value::Null));
    }
    m
}

fn build_request(http: &Http, plan: &Plan, vars: &Vars) -> Result<Request> {
    let err = |m: String| Error::Source { resource: plan.name.clone(), message: m, transient: false };
    let path = placeholder::render(&plan.path, vars, true).map_err(err)?;
    let url = join_url(&http.base_url, &path).map_err(err)?;
    let mut params = vec![];
    for (k, p) in &plan.params {
        let v = match p {
            ParamPlan::Value(v) => placeholder::render_json(v, vars).map_err(err)?,
            ParamPlan::Start => vars.incremental.get("start_value").cloned().unwrap_or(Value::Null),
            ParamPlan::End => vars.incremental.get("end_value").cloned().unwrap_or(Value::Null),
            ParamPlan::Resolve(f) => vars
                .parent
                .as_ref()
                .and_then(|(_, item)| item.get(f).cloned())
                .ok_or_else(|| err(format!("parent item has no field `{f}` for param `{k}`")))?,
        };
        match v {
            Value::Null => {}
            Value::Array(a) => params.extend(a.iter().map(|x| (k.clone(), placeholder::value_text(x)))),
            v => params.push((k.clone(), placeholder::value_text(&v))),
        }
    }
    Ok(Request {
        method: plan.method.clone(),
        url,
        params,
        json: plan.json.as_ref().map(|j| placeholder::render_json(j, vars)).transpose().map_err(err)?,
        data: plan.data.as_ref().map(|j| placeholder::render_json(j, vars)).transpose().map_err(err)?,
        headers: plan.headers.clone(),
    })
}

fn project(item: &Value, fields: &[String]) -> Map<String, Value> {
    let mut m = Map::new();
    for f in fields {
        if let Some(v) = dlt_core::incremental::lookup(item, f) {
            m.insert(f.clone(), v.clone());
        }
    }
    m
}

/// The records of one resource; a child makes one request sequence per parent item.
fn stream(rt: Arc<Runtime>, idx: usize, inc: Map<String, Value>) -> ValueIter {
    let plan = &rt.plans[idx];
    let Some(link) = &plan.parent else {
        let vars = Vars { parent: None, incremental: inc };
        return match build_request(&rt.http, plan, &vars) {
            Ok(req) => Box::new(PageIter::new(rt.http.clone(), plan.read.clone(), req)),
            Err(e) => Box::new(std::iter::once(Err(e))),
        };
    };
    let pidx = link.idx;
    let done_items = rt.feeds[pidx].as_ref().and_then(|f| {
        let f = f.lock().unwrap_or_else(|e| e.into_inner());
        f.done.then(|| f.items.clone())
    });
    let parents: Box<dyn Iterator<Item = Result<Map<String, Value>>> + Send> = match done_items {
        Some(items) => Box::new(items.into_iter().map(Ok)),
        None => {
            // the parent did not run before (not selected): read it now
            tracing::info!(resource = %plan.name, parent = %link.name, "rest_api: requesting the parent resource's items");
            let pspec = rt.plans[pidx].incremental.clone();
            let fields = rt.plans[pidx].child_fields.clone();
            let pit = stream(rt.clone(), pidx, incremental_vars(pspec.as_ref(), None, None));
            Box::new(pit.map(move |r| r.map(|v| project(&v, &fields))))
        }
    };
    Box::new(ChildIter {
        rt,
        idx,
        inc,
        parents,
        current: None,
        running: VecDeque::new(),
        parent_error: None,
        parents_done: false,
    })
}

/// Records the parent fields children need while the parent's items pass to the pipeline.
struct Recorder {
    rt: Arc<Runtime>,
    idx: usize,
    inner: ValueIter,
}

impl Iterator for Recorder {
    type Item = Result<Value>;
    fn next(&mut self) -> Option<Result<Value>> {
        let n = self.inner.next();
        if let Some(feed) = &self.rt.feeds[self.idx] {
            let mut f = feed.lock().unwrap_or_else(|e| e.into_inner());
            match &n {
                Some(Ok(v)) => {
                    let p = project(v, &self.rt.plans[self.idx].child_fields);
                    f.items.push(p);
                }
                None => f.done = true,
                Some(Err(_)) => {}
            }
        }
        n
    }
}

/// A child's requests for one parent item and the `_<parent>_<field>` columns its records get.
fn child_request(
    rt: &Runtime,
    idx: usize,
    inc: &Map<String, Value>,
    item: Map<String, Value>,
) -> Result<(Pager, Map<String, Value>)> {
    let plan = &rt.plans[idx];
    let link = plan.parent.as_ref().expect("a child has a parent");
    let mut extra = Map::new();
    for f in &link.include {
        match item.get(f) {
            Some(v) => {
                extra.insert(format!("_{}_{}", link.name, f), v.clone());
            }
            None => {
                return Err(Error::Source {
                    resource: plan.name.clone(),
                    message: format!("include_from_parent: a `{}` item has no field `{f}`", link.name),
                    transient: false,
                });
            }
        }
    }
    let vars = Vars { parent: Some((link.name.clone(), item)), incremental: inc.clone() };
    let req = build_request(&rt.http, plan, &vars)?;
    Ok((Pager::new(rt.http.clone(), plan.read.clone(), req), extra))
}

/// A child record with the parent's fields added (a record that is not an object is wrapped
/// as `value`).
fn with_parent_fields(mut v: Value, extra: &Map<String, Value>) -> Value {
    if extra.is_empty() {
        return v;
    }
    if let Value::Object(m) = &mut v {
        for (k, x) in extra {
            m.insert(k.clone(), x.clone());
        }
    } else {
        let mut m = extra.clone();
        m.insert("value".into(), v);
        v = Value::Object(m);
    }
    v
}

/// All records of a child for one parent item, lazily, page after page.
fn child_records(rt: &Runtime, idx: usize, inc: &Map<String, Value>, item: Map<String, Value>) -> ValueIter {
    match child_request(rt, idx, inc, item) {
        Ok((pager, extra)) => {
            Box::new(PageIter::from_pager(pager).map(move |r| r.map(|v| with_parent_fields(v, &extra))))
        }
        Err(e) => Box::new(std::iter::once(Err(e))),
    }
}

type ChildTask = tokio::task::JoinHandle<Result<Vec<Value>>>;

/// A child's records in parent order. With `max_parallel` > 1, the request sequences of up to
/// that many parent items run at once as tasks (each collects its pages); their records are
/// yielded in parent order, and when the first in line is handed on its slot goes to the next
/// parent item. With 1, one parent item's pages after the other, lazily.
struct ChildIter {
    rt: Arc<Runtime>,
    idx: usize,
    inc: Map<String, Value>,
    parents: Box<dyn Iterator<Item = Result<Map<String, Value>>> + Send>,
    current: Option<ValueIter>,
    running: VecDeque<ChildTask>,
    /// The parents' error, returned after the records of the items before it.
    parent_error: Option<Error>,
    parents_done: bool,
}

impl ChildIter {
    /// Start tasks for parent items until `max_parallel` run.
    fn fill(&mut self) {
        while !self.parents_done && self.running.len() < self.rt.max_parallel {
            match self.parents.next() {
                None => self.parents_done = true,
                Some(Err(e)) => {
                    self.parents_done = true;
                    self.parent_error = Some(e);
                }
                Some(Ok(item)) => {
                    let task = match child_request(&self.rt, self.idx, &self.inc, item) {
                        Ok((pager, extra)) => dlt_core::runtime::handle().spawn(async move {
                            let mut records = pager.collect().await?;
                            for r in &mut records {
                                *r = with_parent_fields(std::mem::take(r), &extra);
                            }
                            Ok(records)
                        }),
                        Err(e) => dlt_core::runtime::handle().spawn(async move { Err(e) }),
                    };
                    self.running.push_back(task);
                }
            }
        }
    }

    /// Stop: no more records after an error.
    fn stop(&mut self, e: Error) -> Option<Result<Value>> {
        for t in self.running.drain(..) {
            t.abort();
        }
        self.current = None;
        self.parents_done = true;
        self.parent_error = None;
        Some(Err(e))
    }
}

impl Drop for ChildIter {
    fn drop(&mut self) {
        for t in self.running.drain(..) {
            t.abort();
        }
    }
}

impl Iterator for ChildIter {
    type Item = Result<Value>;
    fn next(&mut self) -> Option<Result<Value>> {
        loop {
            if let Some(cur) = &mut self.current {
                match cur.next() {
                    Some(Err(e)) => return self.stop(e),
                    Some(ok) => return Some(ok),
                    None => self.current = None,
                }
            }
            if self.rt.max_parallel <= 1 {
                if self.parents_done {
                    return self.parent_error.take().map(Err);
                }
                match self.parents.next() {
                    None => self.parents_done = true,
                    Some(Err(e)) => return self.stop(e),
                    Some(Ok(item)) => self.current = Some(child_records(&self.rt, self.idx, &self.inc, item)),
                }
                continue;
            }
            self.fill();
            let Some(task) = self.running.pop_front() else {
                return self.parent_error.take().map(Err);
            };
            let records = dlt_core::runtime::block_on(task).unwrap_or_else(|e| {
                Err(Error::Source {
                    resource: self.rt.plans[self.idx].name.clone(),
                    message: format!("a child request task failed: {e}"),
                    transient: false,
                })
            });
            match records {
                Ok(vals) => self.current = Some(Box::new(vals.into_iter().map(Ok))),
                Err(e) => return self.stop(e),
            }
            // the finished sequence's slot goes to the next parent item
            self.fill();
        }
    }
}

/// Builds a `rest_api` source from a pipeline file's `[source]` table (`type = "rest_api"`,
/// `client`, `resource_defaults`, `resources`, `name`, `max_table_nesting`, `schema_contract`).
#[derive(Debug, Default)]
pub struct RestApiFactory;

impl SourceFactory for RestApiFactory {
    fn init_template(&self) -> Option<dlt_core::registry::InitTemplate> {
        Some(dlt_core::registry::InitTemplate {
            pipeline: include_str!("init/pipeline.toml"),
            secrets: include_str!("init/secrets.toml"),
            ..Default::default()
        })
    }
    fn name(&self) -> &'static str {
        "rest_api"
    }

    fn build(&self, config: &toml::Table, ctx: &SourceContext<'_>) -> Result<Source> {
        let cfg = RestApiConfig::from_toml(config)?;
        rest_api_source(&cfg, ctx.config)
    }
}
