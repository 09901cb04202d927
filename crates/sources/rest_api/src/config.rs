//! The declarative configuration of a `rest_api` source, in dlt's shape: `client`,
//! `resource_defaults` and `resources`. Readable from the `[source]` table of a pipeline file, from
//! JSON or YAML, and buildable from Rust (every struct has public fields and a `Default`).
//!
//! Unknown keys are errors that name the key and the resource.

use dlt_core::config::Secret;
use dlt_core::error::{Error, Result};
use dlt_core::resource::{KeyHint, WriteDispositionConfig};
use indexmap::IndexMap;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// A whole `rest_api` source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestApiConfig {
    /// `type = "rest_api"` of a pipeline file's `[source]` table (accepted and ignored).
    #[serde(default, rename = "type")]
    pub source_type: Option<String>,
    /// Source (and schema) name; default `rest_api`, as dlt's.
    #[serde(default)]
    pub name: Option<String>,
    /// The HTTP client: base URL, headers, auth, default paginator, timeouts and retries.
    pub client: ClientConfig,
    /// Keys merged into every resource (the resource's own values win; `endpoint.params`,
    /// `endpoint.json`, `endpoint.headers` and `columns` are merged key by key).
    #[serde(default)]
    pub resource_defaults: Option<ResourceConfig>,
    /// The resources: a string (name = path) or a table.
    #[serde(deserialize_with = "de_resources")]
    pub resources: Vec<ResourceConfig>,
    /// Source-level `max_table_nesting`.
    #[serde(default)]
    pub max_table_nesting: Option<u32>,
    /// Source-level schema contract.
    #[serde(default)]
    pub schema_contract: Option<Value>,
}

/// `client`: how requests are made.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Base URL every relative endpoint path is joined to.
    pub base_url: String,
    /// Headers sent with every request.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Authentication of every request (an endpoint's `auth` replaces it).
    #[serde(default, deserialize_with = "de_auth")]
    pub auth: Option<AuthConfig>,
    /// The default paginator (`auto` when not set).
    #[serde(default, deserialize_with = "de_paginator")]
    pub paginator: Option<PaginatorConfig>,
    /// Timeouts, retries and request concurrency.
    #[serde(default)]
    pub session: Option<SessionConfig>,
    /// Follow a next-page URL or a redirect that leads to another origin (scheme, host, port)
    /// than the configured URL's — without any credentials. Default: such a URL is an error, so
    /// a hostile or compromised API cannot collect the token by naming another host.
    #[serde(default)]
    pub allow_cross_origin: bool,
    /// The largest response body read, in bytes, after decompression (default 128 MiB).
    #[serde(default)]
    pub max_response_bytes: Option<u64>,
    /// A PEM file of CA certificates trusted besides the built-in public roots, for an API
    /// behind a private CA. Unset: `REQUESTS_CA_BUNDLE`, then `SSL_CERT_FILE`, if set.
    #[serde(default)]
    pub ca_bundle: Option<String>,
}

/// `client.session`: timeouts and retries. Unset values come from dlt's `runtime` settings
/// (`RUNTIME__REQUEST_TIMEOUT`, `…__REQUEST_MAX_ATTEMPTS`, `…__REQUEST_BACKOFF_FACTOR`,
/// `…__REQUEST_MAX_RETRY_DELAY`), else dlt's defaults.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Seconds a whole request may take (default 60).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Seconds to connect (default: the request timeout).
    #[serde(default)]
    pub connect_timeout: Option<f64>,
    /// Attempts per request, the first included (default 5).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Backoff base in seconds: waits are `factor * 2^(attempt-1)` (default 1).
    #[serde(default)]
    pub backoff_factor: Option<f64>,
    /// Longest wait between attempts, also the cap on `Retry-After` (default 300 s).
    #[serde(default)]
    pub max_retry_delay: Option<f64>,
    /// Child requests (one per parent item) run at most this many at once (default 4).
    #[serde(default)]
    pub max_parallel: Option<usize>,
}

/// One resource (also the shape of `resource_defaults`, whose `name` must be empty).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// Resource name (the table name unless `table_name` is set; the path unless `endpoint`).
    #[serde(default)]
    pub name: String,
    /// The request: a path string or a table.
    #[serde(default, deserialize_with = "de_endpoint")]
    pub endpoint: Option<Endpoint>,
    /// `append`, `replace`, `merge` or dlt's dict form.
    #[serde(default)]
    pub write_disposition: Option<WriteDispositionConfig>,
    /// Primary key column(s).
    #[serde(default)]
    pub primary_key: Option<KeyHint>,
    /// Merge key column(s).
    #[serde(default)]
    pub merge_key: Option<KeyHint>,
    /// Table name (default: the resource name).
    #[serde(default)]
    pub table_name: Option<String>,
    /// Maximum nesting of child tables.
    #[serde(default)]
    pub max_table_nesting: Option<u32>,
    /// Declared columns (dlt column schemas by name).
    #[serde(default)]
    pub columns: IndexMap<String, Value>,
    /// Schema contract.
    #[serde(default)]
    pub schema_contract: Option<Value>,
    /// Preferred job file format.
    #[serde(default)]
    pub file_format: Option<String>,
    /// Parent fields copied into each child row as `_<parent>_<field>`.
    #[serde(default)]
    pub include_from_parent: Vec<String>,
    /// `false`: do not load this resource as a table (it can still feed children).
    #[serde(default)]
    pub selected: Option<bool>,
}

impl ResourceConfig {
    /// A resource whose path is its name.
    pub fn new(name: impl Into<String>) -> Self {
        ResourceConfig { name: name.into(), ..Default::default() }
    }
}

/// `endpoint`: what to request and how to read the answers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Path relative to `client.base_url` (or an absolute URL); default: the resource name.
    #[serde(default)]
    pub path: Option<String>,
    /// HTTP method (default `GET`).
    #[serde(default)]
    pub method: Option<String>,
    /// Query parameters: values, `{type = "incremental", …}` or `{type = "resolve", …}`.
    #[serde(default)]
    pub params: IndexMap<String, ParamValue>,
    /// JSON body.
    #[serde(default)]
    pub json: Option<Value>,
    /// Form body (a table) or raw body (a string).
    #[serde(default)]
    pub data: Option<Value>,
    /// JSONPath of the records in each response (detected when not set).
    #[serde(default)]
    pub data_selector: Option<String>,
    /// Paginator of this endpoint (replaces the client's).
    #[serde(default, deserialize_with = "de_paginator")]
    pub paginator: Option<PaginatorConfig>,
    /// What to do with particular responses (`ignore`).
    #[serde(default)]
    pub response_actions: Option<Vec<ResponseAction>>,
    /// Incremental loading by request parameters.
    #[serde(default)]
    pub incremental: Option<IncrementalSpec>,
    /// Extra headers (merged over the client's).
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Authentication of this endpoint (replaces the client's).
    #[serde(default, deserialize_with = "de_auth")]
    pub auth: Option<AuthConfig>,
}

/// A query parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// A plain value (strings may hold `{resources.…}` / `{incremental.…}` placeholders).
    Value(Value),
    /// The incremental window's start (`{type = "incremental", cursor_path, initial_value, …}`).
    Incremental(Box<IncrementalSpec>),
    /// A parent field (dlt's older `{type = "resolve", resource, field}` form).
    Resolve {
        /// The parent resource.
        resource: String,
        /// The field of each parent item.
        field: String,
    },
}

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let Value::Object(m) = &v else { return Ok(ParamValue::Value(v)) };
        match m.get("type").and_then(Value::as_str) {
            Some("incremental") => {
                serde_json::from_value(v).map(|s| ParamValue::Incremental(Box::new(s))).map_err(D::Error::custom)
            }
            Some("resolve") => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Resolve {
                    #[serde(rename = "type")]
                    _type: String,
                    resource: String,
                    field: String,
                }
                let r: Resolve = serde_json::from_value(v).map_err(D::Error::custom)?;
                Ok(ParamValue::Resolve { resource: r.resource, field: r.field })
            }
            Some(other) => {
                Err(D::Error::custom(format!("unknown param type `{other}` (expected `incremental` or `resolve`)")))
            }
            None => Err(D::Error::custom("a table as a param value needs `type = \"incremental\"` or `\"resolve\"`")),
        }
    }
}

/// Incremental loading of an endpoint: in `params` (the key is the start param) or as
/// `endpoint.incremental` (with `start_param` / `end_param`, or used through
/// `{incremental.start_value}` placeholders).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IncrementalSpec {
    /// `incremental` in the params form.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Query parameter that gets the window's start.
    #[serde(default)]
    pub start_param: Option<String>,
    /// Query parameter that gets the window's end.
    #[serde(default)]
    pub end_param: Option<String>,
    /// Field (or dotted path) of the cursor in each item.
    pub cursor_path: String,
    /// Start when nothing is stored yet.
    #[serde(default)]
    pub initial_value: Option<Value>,
    /// End of a bounded window (such runs store no state).
    #[serde(default)]
    pub end_value: Option<Value>,
    /// `max` (default) or `min`.
    #[serde(default)]
    pub last_value_func: Option<String>,
    /// Dedup key at the boundary.
    #[serde(default)]
    pub primary_key: Option<KeyHint>,
    /// `asc` / `desc`.
    #[serde(default)]
    pub row_order: Option<String>,
    /// `raise` (default), `include`, `exclude`.
    #[serde(default)]
    pub on_cursor_value_missing: Option<String>,
    /// `closed` (default) or `open`.
    #[serde(default)]
    pub range_start: Option<String>,
    /// `open` (default) or `closed`.
    #[serde(default)]
    pub range_end: Option<String>,
    /// Re-open the start by this amount.
    #[serde(default)]
    pub lag: Option<f64>,
}

impl IncrementalSpec {
    /// The cursor the pipeline keeps (filtering, dedup, state).
    pub fn to_incremental_config(&self) -> dlt_core::incremental::IncrementalConfig {
        let mut c = dlt_core::incremental::IncrementalConfig::new(self.cursor_path.clone());
        c.initial_value = self.initial_value.clone();
        c.end_value = self.end_value.clone();
        c.last_value_func = self.last_value_func.clone();
        c.primary_key = self.primary_key.clone();
        c.row_order = self.row_order.clone();
        c.on_cursor_value_missing = self.on_cursor_value_missing.clone();
        c.range_start = self.range_start.clone();
        c.range_end = self.range_end.clone();
        c.lag = self.lag;
        c
    }
}

/// `{status_code, content, action}`: when a response matches, do `action` (`ignore`: the
/// response yields nothing and pagination of that request stops).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResponseAction {
    /// HTTP status to match.
    #[serde(default)]
    pub status_code: Option<u16>,
    /// Substring of the body to match.
    #[serde(default)]
    pub content: Option<String>,
    /// `ignore` (the only action dlt 1.31 has as a string).
    pub action: String,
}

/// A paginator and the `max_pages` safety limit (any paginator type accepts it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PaginatorConfig {
    /// The paginator.
    pub kind: PaginatorKind,
    /// Stop after this many pages of one request (a warning is logged when more were there).
    pub max_pages: Option<u64>,
}

impl From<PaginatorKind> for PaginatorConfig {
    fn from(kind: PaginatorKind) -> Self {
        PaginatorConfig { kind, max_pages: None }
    }
}

/// Paginator types (dlt's `type` names; `json_response` is accepted for `json_link`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PaginatorKind {
    /// Detect from the first response (see the crate docs for how this differs from dlt).
    #[default]
    Auto,
    /// One request, no pagination.
    SinglePage,
    /// The `Link` header's `rel=next` URL.
    HeaderLink(HeaderLinkPaginator),
    /// A next URL in the JSON body.
    #[serde(alias = "json_response")]
    JsonLink(JsonLinkPaginator),
    /// A cursor in a response header, sent back as a query parameter.
    HeaderCursor(HeaderCursorPaginator),
    /// A cursor in the JSON body, sent back as a query parameter.
    Cursor(CursorPaginator),
    /// `offset` / `limit` query parameters.
    Offset(OffsetPaginator),
    /// A page number query parameter.
    PageNumber(PageNumberPaginator),
}

/// `header_link`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeaderLinkPaginator {
    /// The `rel` of the next link (default `next`).
    #[serde(default)]
    pub links_next_key: Option<String>,
}

/// `json_link`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JsonLinkPaginator {
    /// JSONPath of the next URL (default `next`).
    #[serde(default)]
    pub next_url_path: Option<String>,
}

/// `header_cursor`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeaderCursorPaginator {
    /// Response header with the cursor (default `next`).
    #[serde(default)]
    pub cursor_key: Option<String>,
    /// Query parameter it is sent as (default `cursor`).
    #[serde(default)]
    pub cursor_param: Option<String>,
}

/// `cursor` (JSON response cursor).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CursorPaginator {
    /// JSONPath of the cursor (default `cursors.next`).
    #[serde(default)]
    pub cursor_path: Option<String>,
    /// Query parameter it is sent as (default `cursor`).
    #[serde(default)]
    pub cursor_param: Option<String>,
    /// Or: dotted path in the JSON body it is sent at (POST APIs), instead of a parameter.
    #[serde(default)]
    pub cursor_body_path: Option<String>,
    /// Stop at the first page without records (default false).
    #[serde(default)]
    pub stop_after_empty_page: Option<bool>,
    /// JSONPath of a boolean "more pages" flag.
    #[serde(default)]
    pub has_more_path: Option<String>,
}

/// `offset`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OffsetPaginator {
    /// Page size (required).
    pub limit: u64,
    /// First offset (default 0).
    #[serde(default)]
    pub offset: Option<u64>,
    /// Offset query parameter (default `offset`).
    #[serde(default)]
    pub offset_param: Option<String>,
    /// Limit query parameter (default `limit`).
    #[serde(default)]
    pub limit_param: Option<String>,
    /// Or: dotted path in the JSON body the offset is sent at, instead of a parameter.
    #[serde(default)]
    pub offset_body_path: Option<String>,
    /// Or: dotted path in the JSON body the limit is sent at, instead of a parameter.
    #[serde(default)]
    pub limit_body_path: Option<String>,
    /// JSONPath of the total item count (absent: `total`; `null` or `""`: none, as dlt's
    /// `total_path=None`).
    #[serde(default, deserialize_with = "null_is_a_value")]
    pub total_path: Option<Option<String>>,
    /// Stop before this offset.
    #[serde(default)]
    pub maximum_offset: Option<u64>,
    /// Stop at the first page without records (default true).
    #[serde(default)]
    pub stop_after_empty_page: Option<bool>,
    /// JSONPath of a boolean "more pages" flag.
    #[serde(default)]
    pub has_more_path: Option<String>,
}

/// A setting whose explicit `null` means Python's `None` (dlt's meaning), not "unset": absent
/// is `None`, `null` is `Some(None)`.
fn null_is_a_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `page_number`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PageNumberPaginator {
    /// Number of the first page (default 0).
    #[serde(default)]
    pub base_page: Option<u64>,
    /// Page to start at (default `base_page`).
    #[serde(default)]
    pub page: Option<u64>,
    /// Page query parameter (default `page`).
    #[serde(default)]
    pub page_param: Option<String>,
    /// Or: dotted path in the JSON body the page is sent at, instead of a parameter.
    #[serde(default)]
    pub page_body_path: Option<String>,
    /// JSONPath of the total page count (absent: `total`; `null` or `""`: none, as dlt's
    /// `total_path=None`).
    #[serde(default, deserialize_with = "null_is_a_value")]
    pub total_path: Option<Option<String>>,
    /// Stop after this page number.
    #[serde(default)]
    pub maximum_page: Option<u64>,
    /// Stop at the first page without records (default true).
    #[serde(default)]
    pub stop_after_empty_page: Option<bool>,
    /// JSONPath of a boolean "more pages" flag.
    #[serde(default)]
    pub has_more_path: Option<String>,
}

/// Authentication (dlt's `type` names). Secret fields left out are resolved from the config
/// providers (`SOURCES__<SOURCE>__<RESOURCE>__CREDENTIALS__<FIELD>`, then shorter paths, e.g.
/// `SOURCES__REST_API__CREDENTIALS__TOKEN`); a provider value also wins over one written here.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthConfig {
    /// `Authorization: Bearer <token>`.
    Bearer(BearerAuth),
    /// An API key in a header, query parameter or cookie.
    ApiKey(ApiKeyAuth),
    /// HTTP basic.
    HttpBasic(HttpBasicAuth),
    /// OAuth2 client credentials: a token fetched, cached and refreshed.
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials(OAuth2ClientCredentials),
}

/// `bearer`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BearerAuth {
    /// The token.
    #[serde(default, deserialize_with = "de_secret")]
    pub token: Option<Secret>,
}

/// `api_key`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAuth {
    /// Header, parameter or cookie name (default `Authorization`).
    #[serde(default)]
    pub name: Option<String>,
    /// The key.
    #[serde(default, deserialize_with = "de_secret")]
    pub api_key: Option<Secret>,
    /// `header` (default), `query` (alias `param`) or `cookie`.
    #[serde(default)]
    pub location: Option<String>,
}

/// `http_basic`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpBasicAuth {
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default, deserialize_with = "de_secret")]
    pub password: Option<Secret>,
}

/// `oauth2_client_credentials`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OAuth2ClientCredentials {
    /// Token endpoint.
    #[serde(default)]
    pub access_token_url: Option<String>,
    /// Client id (sent with the secret as HTTP basic auth to the token endpoint).
    #[serde(default, deserialize_with = "de_secret")]
    pub client_id: Option<Secret>,
    /// Client secret.
    #[serde(default, deserialize_with = "de_secret")]
    pub client_secret: Option<Secret>,
    /// Form fields of the token request (default `grant_type = "client_credentials"`).
    #[serde(default)]
    pub access_token_request_data: IndexMap<String, Value>,
    /// Token lifetime in seconds when the token response has no `expires_in` (default 3600).
    #[serde(default)]
    pub default_token_expiration: Option<u64>,
}

fn de_secret<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Secret>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.map(|v| match v {
        Value::String(s) => Secret::new(s),
        other => Secret::new(other.to_string()),
    }))
}

fn de_auth<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<AuthConfig>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        // a bare type: every secret comes from the providers
        Some(Value::String(t)) => serde_json::from_value(serde_json::json!({ "type": t })).map(Some),
        Some(v) => serde_json::from_value(v).map(Some),
    }
    .map_err(D::Error::custom)
}

fn de_paginator<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<PaginatorConfig>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    let (v, max_pages) = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(t)) => (serde_json::json!({ "type": t }), None),
        Some(Value::Object(mut m)) => {
            let max = match m.remove("max_pages") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or_else(|| D::Error::custom("`max_pages` must be a positive integer"))?),
            };
            (Value::Object(m), max)
        }
        Some(other) => return Err(D::Error::custom(format!("a paginator is a type name or a table, not {other}"))),
    };
    let kind: PaginatorKind = serde_json::from_value(v).map_err(D::Error::custom)?;
    Ok(Some(PaginatorConfig { kind, max_pages }))
}

fn de_endpoint<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Endpoint>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(path)) => Ok(Some(Endpoint { path: Some(path), ..Default::default() })),
        Some(v) => serde_path_to_error::deserialize::<_, Endpoint>(v).map(Some).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                D::Error::custom(e.into_inner())
            } else {
                D::Error::custom(format!("{path}: {}", e.into_inner()))
            }
        }),
    }
}

fn de_resources<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<ResourceConfig>, D::Error> {
    let list = Vec::<Value>::deserialize(d)?;
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.into_iter().enumerate() {
        out.push(match v {
            Value::String(name) => ResourceConfig::new(name),
            Value::Object(m) => {
                let who = match m.get("name").and_then(Value::as_str) {
                    Some(n) => format!("resource `{n}`"),
                    None => format!("resource #{}", i + 1),
                };
                parse_resource(Value::Object(m)).map_err(|e| D::Error::custom(format!("{who}: {e}")))?
            }
            other => {
                return Err(D::Error::custom(format!(
                    "resource #{}: expected a string or a table, got {other}",
                    i + 1
                )));
            }
        });
    }
    Ok(out)
}

fn parse_resource(v: Value) -> std::result::Result<ResourceConfig, String> {
    serde_path_to_error::deserialize::<_, ResourceConfig>(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." { inner } else { format!("{path}: {inner}") }
    })
}

/// A TOML table as JSON (TOML dates and times become ISO strings).
pub fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect()),
    }
}

impl RestApiConfig {
    /// Parse from JSON (dlt's `rest_api_source` dict).
    pub fn from_json(v: Value) -> Result<RestApiConfig> {
        serde_path_to_error::deserialize::<_, RestApiConfig>(v).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            Error::Config(if path == "." { format!("rest_api: {inner}") } else { format!("rest_api: {path}: {inner}") })
        })
    }

    /// Parse JSON text.
    pub fn from_json_str(s: &str) -> Result<RestApiConfig> {
        let v: Value = serde_json::from_str(s).map_err(|e| Error::Config(format!("rest_api: invalid JSON: {e}")))?;
        Self::from_json(v)
    }

    /// Parse YAML text.
    pub fn from_yaml_str(s: &str) -> Result<RestApiConfig> {
        let v: Value = serde_yaml::from_str(s).map_err(|e| Error::Config(format!("rest_api: invalid YAML: {e}")))?;
        Self::from_json(v)
    }

    /// Parse the `[source]` table of a pipeline file.
    pub fn from_toml(t: &toml::Table) -> Result<RestApiConfig> {
        Self::from_json(toml_to_json(&toml::Value::Table(t.clone())))
    }

    /// Parse TOML text (a `[source]`-shaped document).
    pub fn from_toml_str(s: &str) -> Result<RestApiConfig> {
        let t: toml::Table = s
            .parse()
            .map_err(|e: toml::de::Error| Error::Config(format!("rest_api: invalid TOML: {}", e.message())))?;
        Self::from_toml(&t)
    }

    /// The resources with `resource_defaults` merged in, checked for names.
    pub fn merged_resources(&self) -> Result<Vec<ResourceConfig>> {
        if let Some(d) = &self.resource_defaults
            && !d.name.is_empty()
        {
            return Err(Error::Config("rest_api: resource_defaults cannot set `name`".into()));
        }
        let mut out: Vec<ResourceConfig> = Vec::with_capacity(self.resources.len());
        for (i, r) in self.resources.iter().enumerate() {
            if r.name.is_empty() {
                return Err(Error::Config(format!("rest_api: resource #{} has no `name`", i + 1)));
            }
            if out.iter().any(|o| o.name == r.name) {
                return Err(Error::Config(format!("rest_api: resource `{}` is defined twice", r.name)));
            }
            out.push(match &self.resource_defaults {
                Some(d) => merge_resource(d, r),
                None => r.clone(),
            });
        }
        Ok(out)
    }
}

fn merge_map<V: Clone>(base: &IndexMap<String, V>, over: &IndexMap<String, V>) -> IndexMap<String, V> {
    let mut m = base.clone();
    for (k, v) in over {
        m.insert(k.clone(), v.clone());
    }
    m
}

fn merge_json(base: &Option<Value>, over: &Option<Value>) -> Option<Value> {
    match (base, over) {
        (Some(Value::Object(b)), Some(Value::Object(o))) => {
            let mut m: Map<String, Value> = b.clone();
            for (k, v) in o {
                m.insert(k.clone(), v.clone());
            }
            Some(Value::Object(m))
        }
        (_, Some(o)) => Some(o.clone()),
        (b, None) => b.clone(),
    }
}

/// `resource_defaults` under a resource: the resource's values win; maps (`params`, `json`,
/// `headers`, `columns`) are merged key by key; paginators and auth are replaced whole.
pub fn merge_resource(defaults: &ResourceConfig, r: &ResourceConfig) -> ResourceConfig {
    let endpoint = match (&defaults.endpoint, &r.endpoint) {
        (None, e) => e.clone(),
        (Some(d), None) => Some(d.clone()),
        (Some(d), Some(e)) => Some(Endpoint {
            path: e.path.clone().or_else(|| d.path.clone()),
            method: e.method.clone().or_else(|| d.method.clone()),
            params: merge_map(&d.params, &e.params),
            json: merge_json(&d.json, &e.json),
            data: e.data.clone().or_else(|| d.data.clone()),
            data_selector: e.data_selector.clone().or_else(|| d.data_selector.clone()),
            paginator: e.paginator.clone().or_else(|| d.paginator.clone()),
            response_actions: e.response_actions.clone().or_else(|| d.response_actions.clone()),
            incremental: e.incremental.clone().or_else(|| d.incremental.clone()),
            headers: merge_map(&d.headers, &e.headers),
            auth: e.auth.clone().or_else(|| d.auth.clone()),
        }),
    };
    ResourceConfig {
        name: r.name.clone(),
        endpoint,
        write_disposition: r.write_disposition.clone().or_else(|| defaults.write_disposition.clone()),
        primary_key: r.primary_key.clone().or_else(|| defaults.primary_key.clone()),
        merge_key: r.merge_key.clone().or_else(|| defaults.merge_key.clone()),
        table_name: r.table_name.clone().or_else(|| defaults.table_name.clone()),
        max_table_nesting: r.max_table_nesting.or(defaults.max_table_nesting),
        columns: merge_map(&defaults.columns, &r.columns),
        schema_contract: r.schema_contract.clone().or_else(|| defaults.schema_contract.clone()),
        file_format: r.file_format.clone().or_else(|| defaults.file_format.clone()),
        include_from_parent: if r.include_from_parent.is_empty() {
            defaults.include_from_parent.clone()
        } else {
            r.include_from_parent.clone()
        },
        selected: r.selected.or(defaults.selected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn toml_source_table_parses() {
        let cfg = RestApiConfig::from_toml_str(
            r#"
type = "rest_api"
[client]
base_url = "http://localhost:3000/"
paginator = "header_link"
auth = { type = "bearer" }
[resource_defaults]
primary_key = "id"
write_disposition = "merge"
endpoint = { params = { _limit = 10 } }
[[resources]]
name = "posts"
endpoint = { path = "posts", params = { since = { type = "incremental", cursor_path = "updated_at", initial_value = 2024-01-02T00:00:00Z } } }
[[resources]]
name = "comments"
include_from_parent = ["title"]
[resources.endpoint]
path = "posts/{resources.posts.id}/comments"
paginator = { type = "offset", limit = 5, offset_param = "_start", limit_param = "_limit", max_pages = 3 }
response_actions = [{ status_code = 404, action = "ignore" }]
"#,
        )
        .unwrap();
        assert_eq!(cfg.client.paginator.as_ref().unwrap().kind, PaginatorKind::HeaderLink(Default::default()));
        assert!(matches!(cfg.client.auth, Some(AuthConfig::Bearer(BearerAuth { token: None }))));
        let rs = cfg.merged_resources().unwrap();
        assert_eq!(rs.len(), 2);
        let posts = rs[0].endpoint.as_ref().unwrap();
        assert_eq!(posts.params["_limit"], ParamValue::Value(json!(10)));
        match &posts.params["since"] {
            ParamValue::Incremental(i) => assert_eq!(i.initial_value, Some(json!("2024-01-02T00:00:00Z"))),
            other => panic!("{other:?}"),
        }
        assert_eq!(rs[1].primary_key, Some(KeyHint(vec!["id".into()])));
        let p = rs[1].endpoint.as_ref().unwrap().paginator.clone().unwrap();
        assert_eq!(p.max_pages, Some(3));
        assert!(matches!(p.kind, PaginatorKind::Offset(OffsetPaginator { limit: 5, .. })));
        assert_eq!(rs[1].endpoint.as_ref().unwrap().params["_limit"], ParamValue::Value(json!(10)));
    }

    #[test]
    fn strings_json_and_yaml() {
        let cfg = RestApiConfig::from_json(json!({
            "client": {"base_url": "https://api.example.com"},
            "resources": ["users", {"name": "x", "endpoint": "things/all"}]
        }))
        .unwrap();
        assert_eq!(cfg.resources[0].name, "users");
        assert!(cfg.resources[0].endpoint.is_none());
        assert_eq!(cfg.resources[1].endpoint.as_ref().unwrap().path.as_deref(), Some("things/all"));
        let y = RestApiConfig::from_yaml_str(
            "client:\n  base_url: http://h\n  auth:\n    type: api_key\n    name: X-Key\n    location: query\nresources:\n  - name: a\n    endpoint:\n      paginator:\n        type: page_number\n        base_page: 1\n        total_path: ''\n",
        )
        .unwrap();
        assert!(matches!(&y.client.auth, Some(AuthConfig::ApiKey(k)) if k.name.as_deref() == Some("X-Key")));
    }

    #[test]
    fn unknown_keys_name_key_and_resource() {
        let err = RestApiConfig::from_json(json!({
            "client": {"base_url": "http://h"},
            "resources": [{"name": "posts", "endpoint": {"path": "p", "paramz": {}}}]
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("resource `posts`") && err.contains("paramz"), "{err}");
        let err = RestApiConfig::from_json(json!({
            "client": {"base_url": "http://h"},
            "resources": [{"name": "posts", "write_dispositon": "append"}]
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("resource `posts`") && err.contains("write_dispositon"), "{err}");
        let err = RestApiConfig::from_json(json!({
            "client": {"base_url": "http://h", "paginator": {"type": "offset", "limit": 1, "offest": 2}},
            "resources": ["a"]
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("offest") && err.contains("client.paginator"), "{err}");
        let err = RestApiConfig::from_json(json!({
            "client": {"base_url": "http://h"},
            "resources": [{"name": "a", "endpoint": {"paginator": "pages"}}]
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("resource `a`") && err.contains("pages"), "{err}");
        let err = RestApiConfig::from_json(json!({
            "client": {"base_url": "http://h"}, "resourcez": [],
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("resourcez"), "{err}");
        let err = RestApiConfig::from_json(json!({
            "client": {"base_url": "http://h"},
            "resources": [{"name": "a", "endpoint": {"params": {"x": {"type": "incremental", "cursor_path": "t", "intial_value": 1}}}}]
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("resource `a`") && err.contains("intial_value"), "{err}");
        let err = RestApiConfig::from_json(json!({
            "client": {"base_url": "http://h", "auth": {"type": "bearer", "tokn": "x"}},
            "resources": ["a"]
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("tokn"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let cfg = RestApiConfig::from_json(json!({
            "client": {"base_url": "http://h", "auth": {"type": "http_basic", "username": "u", "password": "hunter2"}},
            "resources": ["a"]
        }))
        .unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }

    #[test]
    fn defaults_merge_key_by_key() {
        let d = ResourceConfig {
            endpoint: Some(Endpoint {
                params: [("a".to_string(), ParamValue::Value(json!(1))), ("b".into(), ParamValue::Value(json!(2)))]
                    .into_iter()
                    .collect(),
                headers: [("X-A".to_string(), "1".to_string())].into_iter().collect(),
                json: Some(json!({"x": 1, "y": 2})),
                ..Default::default()
            }),
            write_disposition: Some(dlt_core::schema::WriteDisposition::Replace.into()),
            ..Default::default()
        };
        let r = ResourceConfig {
            name: "r".into(),
            endpoint: Some(Endpoint {
                params: [("b".to_string(), ParamValue::Value(json!(3)))].into_iter().collect(),
                json: Some(json!({"y": 5})),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = merge_resource(&d, &r);
        let e = m.endpoint.unwrap();
        assert_eq!(e.params["a"], ParamValue::Value(json!(1)));
        assert_eq!(e.params["b"], ParamValue::Value(json!(3)));
        assert_eq!(e.json, Some(json!({"x": 1, "y": 5})));
        assert_eq!(e.headers["X-A"], "1");
        assert_eq!(m.write_disposition.unwrap().disposition, dlt_core::schema::WriteDisposition::Replace);
    }
}
