//! Paginators: how the next request of an endpoint is made from the last response.
//!
//! `auto` (the default) looks at the first response, as dlt does: a `Link` header with
//! `rel=next`, a `next` URL in the body, a `total_pages`-like count, or a `next` cursor.
//!
//! Two deliberate differences from dlt 1.31:
//! - when auto-detection finds none of those but the response looks paginated (pagination
//!   headers such as `X-Total-Count`, or keys such as `total`, `page`, `next`, `has_more`, `cursor`
//!   next to the records), it fails and asks for an explicit `paginator` (`single_page` if one page
//!   is really everything) instead of silently loading only the first page; the chosen paginator
//!   is logged at info level;
//! - a detected `total_pages` count never skips the last page nor loads the first one twice on a
//!   1-based API: the page numbering is taken from a `page` key next to the count, or, without one,
//!   from whether `page=1` repeats the first response.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use reqwest::Url;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::body::Records;
use crate::config::{PaginatorConfig, PaginatorKind};
use crate::jsonpath::{JsonPath, detect_data_path};

/// The request a paginator changes.
#[derive(Debug, Clone)]
pub struct Request {
    /// HTTP method.
    pub method: reqwest::Method,
    /// URL (with any query the path carried).
    pub url: Url,
    /// Query parameters added to the URL.
    pub params: Vec<(String, String)>,
    /// JSON body.
    pub json: Option<Value>,
    /// Form (object) or raw (string) body.
    pub data: Option<Value>,
    /// Headers of the endpoint.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// Set a query parameter, replacing earlier values.
    pub fn set_param(&mut self, k: &str, v: String) {
        match self.params.iter().position(|(pk, _)| pk == k) {
            Some(i) => {
                self.params[i].1 = v;
                let mut i = i + 1;
                while i < self.params.len() {
                    if self.params[i].0 == k {
                        self.params.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
            None => self.params.push((k.to_string(), v)),
        }
    }
}

/// What a paginator sees of a response.
pub struct Page<'a> {
    /// Response headers.
    pub headers: &'a HeaderMap,
    /// The JSON body (`None` when empty).
    pub body: Option<&'a Value>,
    /// The records selected from it.
    pub data: PageData<'a>,
}

/// The records of a page as a paginator sees them: how many, and whether a page repeats another.
#[derive(Clone, Copy)]
pub enum PageData<'a> {
    /// Parsed values.
    Values(&'a [Value]),
    /// The page's records, possibly still unparsed.
    Records(&'a Records),
}

impl PageData<'_> {
    /// Records on the page.
    pub fn len(&self) -> usize {
        match self {
            PageData::Values(v) => v.len(),
            PageData::Records(r) => r.len(),
        }
    }

    /// No records on the page.
    pub fn is_empty(&self) -> bool {
        match self {
            PageData::Values(v) => v.is_empty(),
            PageData::Records(r) => r.is_empty(),
        }
    }

    /// A hash of the records, to tell whether two pages are the same.
    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        match self {
            PageData::Values(v) => v.iter().for_each(|v| v.to_string().hash(&mut h)),
            PageData::Records(r) => r.values().for_each(|v| match v {
                Ok(v) => v.to_string().hash(&mut h),
                Err(e) => e.to_string().hash(&mut h),
            }),
        }
        h.finish()
    }
}

/// Pagination failed (the message says why and what to set).
pub type PResult<T> = Result<T, String>;

/// A paginator during one request sequence.
#[derive(Debug)]
pub enum Paginator {
    /// Not yet detected.
    Auto,
    /// One page.
    Single {
        /// Whether the page came.
        seen: bool,
    },
    /// `Link: <…>; rel="next"`.
    HeaderLink {
        /// rel name.
        key: String,
        /// Next URL.
        next: Option<String>,
    },
    /// Next URL in the body.
    JsonLink {
        /// Where.
        path: JsonPath,
        /// Next URL.
        next: Option<String>,
    },
    /// Cursor in a header.
    HeaderCursor {
        /// Header name.
        key: String,
        /// Query parameter.
        param: String,
        /// The cursor.
        cursor: Option<String>,
    },
    /// Cursor in the body.
    Cursor {
        /// Where.
        path: JsonPath,
        /// Where the next request carries it.
        param: Target,
        /// Stop at an empty page.
        stop_empty: bool,
        /// Boolean "more" flag.
        has_more: Option<JsonPath>,
        /// The cursor.
        cursor: Option<String>,
    },
    /// Offset or page number.
    Range(Range),
    /// A detected `total_pages` count.
    AutoPages(AutoPages),
}

/// Where a paginator puts its value: a query parameter, or a dotted path in the JSON body.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A query parameter.
    Param(String),
    /// A path in the JSON body (`a.b` → `{"a": {"b": …}}`).
    Body(Vec<String>),
}

impl Target {
    /// From a `*_param` and a `*_body_path` setting (at most one may be set).
    fn from(kind: &str, param: &Option<String>, body: &Option<String>, default: &str) -> PResult<Target> {
        match (param, body) {
            (Some(_), Some(_)) => {
                Err(format!("{kind} paginator: set either the `_param` or the `_body_path`, not both"))
            }
            (_, Some(b)) if b.trim().is_empty() => Err(format!("{kind} paginator: an empty `_body_path`")),
            (_, Some(b)) => Ok(Target::Body(b.split('.').map(str::to_string).collect())),
            (p, None) => Ok(Target::Param(p.clone().unwrap_or_else(|| default.to_string()))),
        }
    }

    fn set(&self, req: &mut Request, v: Value) {
        match self {
            Target::Param(p) => req.set_param(
                p,
                match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
            ),
            Target::Body(path) => {
                let mut node = req.json.get_or_insert_with(|| Value::Object(Default::default()));
                for (i, k) in path.iter().enumerate() {
                    if !node.is_object() {
                        *node = Value::Object(Default::default());
                    }
                    let map = node.as_object_mut().expect("object");
                    if i + 1 == path.len() {
                        map.insert(k.clone(), v);
                        return;
                    }
                    node = map.entry(k.clone()).or_insert_with(|| Value::Object(Default::default()));
                }
            }
        }
    }
}

/// Offset / page-number state (dlt's range paginator).
#[derive(Debug)]
pub struct Range {
    kind: &'static str,
    param: Target,
    limit: Option<(Target, u64)>,
    current: i64,
    step: i64,
    base: i64,
    total_path: Option<JsonPath>,
    maximum: Option<i64>,
    stop_empty: bool,
    has_more: Option<JsonPath>,
    has_next: bool,
}

/// A `total_pages` count found by auto-detection, with the page numbering worked out.
#[derive(Debug)]
pub struct AutoPages {
    total_path: JsonPath,
    param: String,
    next: i64,
    total: i64,
    /// First page number (0 or 1); `None` while unknown.
    base: Option<i64>,
    /// Hash of the first page's records, to see whether `page=1` repeats it.
    first: u64,
    has_next: bool,
}

fn path(p: &str) -> PResult<JsonPath> {
    JsonPath::parse(p)
}

fn opt_path(p: &Option<String>, default: &str) -> PResult<Option<JsonPath>> {
    match p.as_deref().unwrap_or(default) {
        "" => Ok(None),
        s => path(s).map(Some),
    }
}

/// `total_path`: absent means `total`; `null` (dlt's `None`) and `""` mean no total.
fn total_path(p: &Option<Option<String>>) -> PResult<Option<JsonPath>> {
    match p {
        None => opt_path(&None, "total"),
        Some(None) => Ok(None),
        Some(Some(s)) => opt_path(&Some(s.clone()), "total"),
    }
}

impl Paginator {
    /// The paginator a config describes.
    pub fn new(cfg: &PaginatorConfig) -> PResult<Paginator> {
        Ok(match &cfg.kind {
            PaginatorKind::Auto => Paginator::Auto,
            PaginatorKind::SinglePage => Paginator::Single { seen: false },
            PaginatorKind::HeaderLink(h) => {
                Paginator::HeaderLink { key: h.links_next_key.clone().unwrap_or_else(|| "next".into()), next: None }
            }
            PaginatorKind::JsonLink(j) => {
                Paginator::JsonLink { path: path(j.next_url_path.as_deref().unwrap_or("next"))?, next: None }
            }
            PaginatorKind::HeaderCursor(h) => Paginator::HeaderCursor {
                key: h.cursor_key.clone().unwrap_or_else(|| "next".into()),
                param: h.cursor_param.clone().unwrap_or_else(|| "cursor".into()),
                cursor: None,
            },
            PaginatorKind::Cursor(c) => Paginator::Cursor {
                path: path(c.cursor_path.as_deref().unwrap_or("cursors.next"))?,
                param: Target::from("cursor", &c.cursor_param, &c.cursor_body_path, "cursor")?,
                stop_empty: c.stop_after_empty_page.unwrap_or(false),
                has_more: opt_path(&c.has_more_path, "")?,
                cursor: None,
            },
            PaginatorKind::Offset(o) => {
                if o.limit == 0 {
                    return Err("offset paginator: `limit` must be greater than 0".into());
                }
                let r = Range {
                    kind: "offset",
                    param: Target::from("offset", &o.offset_param, &o.offset_body_path, "offset")?,
                    limit: Some((Target::from("offset", &o.limit_param, &o.limit_body_path, "limit")?, o.limit)),
                    current: o.offset.unwrap_or(0) as i64,
                    step: o.limit as i64,
                    base: 0,
                    total_path: total_path(&o.total_path)?,
                    maximum: o.maximum_offset.map(|m| m as i64),
                    stop_empty: o.stop_after_empty_page.unwrap_or(true),
                    has_more: opt_path(&o.has_more_path, "")?,
                    has_next: true,
                };
                r.check()?;
                Paginator::Range(r)
            }
            PaginatorKind::PageNumber(p) => {
                let base = p.base_page.unwrap_or(0) as i64;
                let r = Range {
                    kind: "page_number",
                    param: Target::from("page_number", &p.page_param, &p.page_body_path, "page")?,
                    limit: None,
                    current: p.page.map(|x| x as i64).unwrap_or(base),
                    step: 1,
                    base,
                    total_path: total_path(&p.total_path)?,
                    maximum: p.maximum_page.map(|m| m as i64),
                    stop_empty: p.stop_after_empty_page.unwrap_or(true),
                    has_more: opt_path(&p.has_more_path, "")?,
                    has_next: true,
                };
                r.check()?;
                Paginator::Range(r)
            }
        })
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Paginator::Auto => "auto",
            Paginator::Single { .. } => "single_page",
            Paginator::HeaderLink { .. } => "header_link",
            Paginator::JsonLink { .. } => "json_link",
            Paginator::HeaderCursor { .. } => "header_cursor",
            Paginator::Cursor { .. } => "cursor",
            Paginator::Range(r) => r.kind,
            Paginator::AutoPages(_) => "page_number (detected total_pages)",
        }
    }

    /// Prepare the first request.
    pub fn init_request(&mut self, req: &mut Request) {
        if let Paginator::Range(r) = self {
            r.param.set(req, Value::from(r.current));
            if let Some((p, l)) = &r.limit {
                p.set(req, Value::from(*l));
            }
        }
    }

    /// Take in a response. Returns `true` when the page's records must be dropped (a detected
    /// 1-based API answered `page=1` with the first page again).
    pub fn update_state(&mut self, page: &Page<'_>) -> PResult<bool> {
        match self {
            Paginator::Auto => {
                let detected = detect(page)?;
                tracing::info!(paginator = detected.name(), "rest_api: detected the paginator from the first response");
                *self = detected;
                // the detected paginator reads the same first response
                if !matches!(self, Paginator::AutoPages(_)) {
                    self.update_state(page)?;
                }
                Ok(false)
            }
            Paginator::Single { seen } => {
                *seen = true;
                Ok(false)
            }
            Paginator::HeaderLink { key, next } => {
                *next = page
                    .headers
                    .get_all(reqwest::header::LINK)
                    .iter()
                    .filter_map(|h| h.to_str().ok())
                    .flat_map(parse_link_header)
                    .find(|(_, rels)| rels.iter().any(|r| r.eq_ignore_ascii_case(key)))
                    .map(|(u, _)| u);
                Ok(false)
            }
            Paginator::JsonLink { path, next } => {
                *next = page.body.and_then(|b| path.first(b)).and_then(link_value);
                Ok(false)
            }
            Paginator::HeaderCursor { key, cursor, .. } => {
                *cursor = page
                    .headers
                    .get(key.as_str())
                    .and_then(|h| h.to_str().ok())
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string);
                Ok(false)
            }
            Paginator::Cursor { path, stop_empty, has_more, cursor, .. } => {
                if *stop_empty && page.data.is_empty() {
                    *cursor = None;
                    return Ok(false);
                }
                *cursor = page.body.and_then(|b| path.first(b)).and_then(scalar_text);
                if let Some(hm) = has_more
                    && !read_bool(page.body, hm)?
                {
                    *cursor = None;
                }
                Ok(false)
            }
            Paginator::Range(r) => r.update(page).map(|_| false),
            Paginator::AutoPages(a) => a.update(page),
        }
    }

    /// Whether another request follows.
    pub fn has_next(&self) -> bool {
        match self {
            Paginator::Auto => true,
            Paginator::Single { seen } => !*seen,
            Paginator::HeaderLink { next, .. } | Paginator::JsonLink { next, .. } => next.is_some(),
            Paginator::HeaderCursor { cursor, .. } | Paginator::Cursor { cursor, .. } => cursor.is_some(),
            Paginator::Range(r) => r.has_next,
            Paginator::AutoPages(a) => a.has_next,
        }
    }

    /// Turn the request into the next page's.
    pub fn update_request(&mut self, req: &mut Request) -> PResult<()> {
        match self {
            Paginator::HeaderLink { next: Some(n), .. } | Paginator::JsonLink { next: Some(n), .. } => {
                // the next URL carries its own query
                req.url = req.url.join(n).map_err(|e| format!("invalid next page URL `{n}`: {e}"))?;
                req.params.clear();
            }
            Paginator::HeaderCursor { param, cursor: Some(c), .. } => req.set_param(param, c.clone()),
            Paginator::Cursor { param, cursor: Some(c), .. } => param.set(req, Value::String(c.clone())),
            Paginator::Range(r) => r.param.set(req, Value::from(r.current)),
            Paginator::AutoPages(a) => req.set_param(&a.param, a.next.to_string()),
            _ => {}
        }
        Ok(())
    }
}

impl Range {
    fn check(&self) -> PResult<()> {
        if self.total_path.is_none() && self.maximum.is_none() && self.has_more.is_none() && !self.stop_empty {
            return Err(format!(
                "{} paginator: set one of total_path, maximum_{}, has_more_path or stop_after_empty_page",
                self.kind,
                if self.kind == "offset" { "offset" } else { "page" }
            ));
        }
        Ok(())
    }

    fn update(&mut self, page: &Page<'_>) -> PResult<()> {
        if self.stop_empty && page.data.is_empty() {
            self.has_next = false;
            return Ok(());
        }
        let mut total = None;
        if let Some(tp) = &self.total_path {
            let v = page.body.and_then(|b| tp.first(b));
            total = Some(v.and_then(as_int).ok_or_else(|| match v {
                None => format!(
                    "{} paginator: no total at `{tp}` in the response (set `total_path` to where the total is, or \
                     to \"\" when the API gives none)",
                    self.kind
                ),
                Some(v) => format!("{} paginator: `{tp}` is not an integer: {v}", self.kind),
            })?);
        }
        self.current += self.step;
        if total.is_some_and(|t| self.current >= t + self.base) || self.maximum.is_some_and(|m| self.current >= m) {
            self.has_next = false;
        }
        if let Some(hm) = &self.has_more {
            self.has_next = read_bool(page.body, hm)?;
        }
        Ok(())
    }
}

impl AutoPages {
    fn last(&self) -> i64 {
        self.base.unwrap_or(0) + self.total - 1
    }

    fn update(&mut self, page: &Page<'_>) -> PResult<bool> {
        let mut discard = false;
        if self.base.is_none() {
            // `page=1` answered: the same records as the first response means pages count from 1
            let repeat = !page.data.is_empty() && page.data.fingerprint() == self.first;
            self.base = Some(if repeat { 1 } else { 0 });
            discard = repeat;
        }
        if let Some(total) = page.body.and_then(|b| self.total_path.first(b)).and_then(as_int) {
            self.total = total;
        }
        if page.data.is_empty() {
            self.has_next = false;
            return Ok(false);
        }
        self.next += 1;
        self.has_next = self.next <= self.last();
        Ok(discard)
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn read_bool(body: Option<&Value>, p: &JsonPath) -> PResult<bool> {
    match body.and_then(|b| p.first(b)) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "y" | "on" => Ok(true),
            "false" | "0" | "no" | "n" | "off" => Ok(false),
            _ => Err(format!("`{p}` is not a boolean: {s:?}")),
        },
        Some(other) => Err(format!("`{p}` is not a boolean: {other}")),
        None => Err(format!("no `{p}` (has_more_path) in the response")),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A next-page link: a string, or an object with `href` / `url`.
fn link_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Object(m) => m.get("href").or_else(|| m.get("url")).and_then(link_value),
        _ => None,
    }
}

/// Parse an RFC 8288 `Link` header into (URL, rels).
pub fn parse_link_header(h: &str) -> Vec<(String, Vec<String>)> {
    let mut out = vec![];
    let mut rest = h;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else { break };
        let url = rest[open + 1..open + close].trim().to_string();
        rest = &rest[open + close + 1..];
        // parameters run to the next `,` outside quotes
        let mut end = rest.len();
        let mut in_q = false;
        for (i, c) in rest.char_indices() {
            match c {
                '"' => in_q = !in_q,
                ',' if !in_q => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let params = &rest[..end];
        rest = &rest[end..];
        let mut rels = vec![];
        for p in params.split(';') {
            if let Some((k, v)) = p.split_once('=')
                && k.trim().eq_ignore_ascii_case("rel")
            {
                rels.extend(v.trim().trim_matches('"').split_whitespace().map(str::to_string));
            }
        }
        out.push((url, rels));
    }
    out
}

/// Keys found in dicts (depth first, in document order), with their paths.
fn find_keys<'v>(
    v: &'v Value,
    pred: &dyn Fn(&str) -> bool,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, &'v Value)>,
) {
    if let Value::Object(m) = v {
        for (k, x) in m {
            path.push(k.clone());
            if pred(k) {
                out.push((path.clone(), x));
            }
            if x.is_object() {
                find_keys(x, pred, path, out);
            }
            path.pop();
        }
    }
}

fn to_path(keys: &[String]) -> JsonPath {
    let text = keys
        .iter()
        .map(|k| {
            if k.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') { k.clone() } else { format!("['{k}']") }
        })
        .collect::<Vec<_>>()
        .join(".");
    JsonPath::parse(&text).unwrap_or_else(|_| JsonPath::parse("$").expect("root parses"))
}

/// Keys (lower case, without `_`/`-`) that suggest a paginated response.
const PAGINATION_KEYS: &[&str] = &[
    "next",
    "nexturl",
    "nextpage",
    "nextcursor",
    "nexttoken",
    "nextlink",
    "nextpagetoken",
    "cursor",
    "cursors",
    "total",
    "totalcount",
    "totalitems",
    "totalresults",
    "totalpages",
    "count",
    "page",
    "pages",
    "perpage",
    "pagesize",
    "limit",
    "offset",
    "hasmore",
    "hasnext",
    "more",
    "pagination",
    "paging",
    "continuation",
    "continuationtoken",
    "lastpage",
    "pageinfo",
];

/// Headers that suggest a paginated response.
const PAGINATION_HEADERS: &[&str] = &[
    "link",
    "x-total-count",
    "x-total",
    "x-total-pages",
    "x-next-page",
    "x-next",
    "x-next-cursor",
    "x-page",
    "x-per-page",
];

fn norm_key(k: &str) -> String {
    k.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

/// Why a response looks paginated, if it does.
fn pagination_hint(page: &Page<'_>) -> Option<String> {
    let rows = page.data.len();
    // a total that this page already holds in full says there is nothing more
    let all_here = |v: Option<i64>| v.is_some_and(|n| n >= 0 && n as u64 <= rows as u64);
    for (name, value) in page.headers.iter() {
        let n = name.as_str();
        let v = value.to_str().unwrap_or("").trim();
        if v.is_empty() || (matches!(n, "x-total-count" | "x-total") && all_here(v.parse().ok())) {
            continue;
        }
        if PAGINATION_HEADERS.contains(&n) || n.starts_with("x-pagination") {
            return Some(format!("header `{n}`"));
        }
    }
    let body = page.body?;
    // keys next to records only count when the records are a list inside an object
    if !body.is_object() || detect_data_path(body).is_none() {
        return None;
    }
    let mut found = vec![];
    let pred = |k: &str| PAGINATION_KEYS.contains(&norm_key(k).as_str());
    find_keys(body, &pred, &mut vec![], &mut found);
    let counts = ["total", "totalcount", "totalitems", "totalresults", "count"];
    found
        .into_iter()
        .filter(|(p, v)| !(p.last().is_some_and(|k| counts.contains(&norm_key(k).as_str())) && all_here(as_int(v))))
        .find(|(p, _)| p.len() <= 2)
        .map(|(p, v)| format!("key `{}` = {}", p.join("."), short(v)))
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 { format!("{}…", &s[..s.floor_char_boundary(60)]) } else { s }
}

/// dlt's detectors, in order, on the first response.
pub fn detect(page: &Page<'_>) -> PResult<Paginator> {
    // a `Link` header with pagination rels (dlt looks for `next` only; `first`/`last`/`prev`
    // without `next` is the last page of a Link-paginated API)
    let has_link = page
        .headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(parse_link_header)
        .any(|(_, rels)| {
            rels.iter().any(|r| ["next", "last", "first", "prev", "previous"].iter().any(|x| r.eq_ignore_ascii_case(x)))
        });
    if has_link {
        return Ok(Paginator::HeaderLink { key: "next".into(), next: None });
    }
    let mut nexts = vec![];
    let mut totals = vec![];
    if let Some(body) = page.body {
        find_keys(body, &|k: &str| k.to_ascii_lowercase().contains("next"), &mut vec![], &mut nexts);
        find_keys(
            body,
            &|k: &str| matches!(k.to_ascii_lowercase().as_str(), "total_pages" | "pages" | "totalpages"),
            &mut vec![],
            &mut totals,
        );
    }
    let is_link = |v: &Value| link_value(v).is_some_and(|s| s.starts_with("http") || s.starts_with('/'));
    if let Some((p, _)) = nexts.iter().find(|(_, v)| is_link(v)) {
        return Ok(Paginator::JsonLink { path: to_path(p), next: None });
    }
    if let Some((p, v)) = totals.iter().find(|(_, v)| as_int(v).is_some()) {
        let total = as_int(v).unwrap_or(0);
        // the page number next to the count tells how pages are numbered
        let mut parent = p.clone();
        parent.pop();
        let siblings = page.body.and_then(|b| if parent.is_empty() { Some(b) } else { to_path(&parent).first(b) });
        let current = siblings.and_then(|s| {
            ["page", "current_page", "currentPage", "page_number", "pageNumber"]
                .iter()
                .find_map(|k| s.get(*k).and_then(as_int))
        });
        let mut a = AutoPages {
            total_path: to_path(p),
            param: "page".into(),
            next: 1,
            total,
            base: None,
            first: page.data.fingerprint(),
            has_next: false,
        };
        match current {
            Some(cur) => {
                a.base = Some(if cur <= 0 { 0 } else { 1 });
                a.next = cur + 1;
                a.has_next = !page.data.is_empty() && a.next <= a.last();
            }
            // unknown: ask for page 1 and see whether it repeats the first page
            None => a.has_next = !page.data.is_empty() && total > 1,
        }
        return Ok(Paginator::AutoPages(a));
    }
    // a cursor only where the records are a list inside an object (not a field of one record)
    let has_list = page.body.is_some_and(|b| b.is_object() && detect_data_path(b).is_some());
    if let Some((p, _)) = nexts.iter().find(|(_, v)| has_list && scalar_text(v).is_some()) {
        return Ok(Paginator::Cursor {
            path: to_path(p),
            param: Target::Param("cursor".into()),
            stop_empty: false,
            has_more: None,
            cursor: None,
        });
    }
    if let Some(why) = pagination_hint(page) {
        return Err(format!(
            "cannot tell how this endpoint paginates, but the response looks paginated ({why}); set `paginator` \
             explicitly (header_link, json_link, offset, page_number, cursor, header_cursor), or `single_page` if \
             one response holds everything"
        ));
    }
    tracing::info!("rest_api: no pagination found in the first response; loading it as a single page");
    Ok(Paginator::Single { seen: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OffsetPaginator, PageNumberPaginator};
    use reqwest::header::HeaderValue;
    use serde_json::json;

    fn page<'a>(h: &'a HeaderMap, body: &'a Value, data: &'a [Value]) -> Page<'a> {
        Page { headers: h, body: Some(body), data: PageData::Values(data) }
    }

    fn req() -> Request {
        Request {
            method: reqwest::Method::GET,
            url: Url::parse("http://h/api/posts?x=1").unwrap(),
            params: vec![("a".into(), "b".into())],
            json: None,
            data: None,
            headers: vec![],
        }
    }

    #[test]
    fn link_headers() {
        let l = parse_link_header(
            r#"<http://h/p?_page=1&_limit=2>; rel="first", <http://h/p?_page=2&_limit=2>; rel="next", <http://h/p?a=1,2>; rel="last""#,
        );
        assert_eq!(l.len(), 3);
        assert_eq!(l[1], ("http://h/p?_page=2&_limit=2".to_string(), vec!["next".to_string()]));
        assert_eq!(l[2].0, "http://h/p?a=1,2");
        assert!(parse_link_header("").is_empty());
    }

    #[test]
    fn relative_next_urls_resolve_against_the_request() {
        let mut p = Paginator::new(&PaginatorKind::JsonLink(Default::default()).into()).unwrap();
        let h = HeaderMap::new();
        let body = json!({"next": "/api/posts?page=2"});
        p.update_state(&page(&h, &body, &[json!(1)])).unwrap();
        let mut r = req();
        p.update_request(&mut r).unwrap();
        assert_eq!(r.url.as_str(), "http://h/api/posts?page=2");
        assert!(r.params.is_empty());
        let body = json!({"next": "?page=3"});
        p.update_state(&page(&h, &body, &[json!(1)])).unwrap();
        p.update_request(&mut r).unwrap();
        assert_eq!(r.url.as_str(), "http://h/api/posts?page=3");
        let body = json!({"next": null});
        p.update_state(&page(&h, &body, &[json!(1)])).unwrap();
        assert!(!p.has_next());
    }

    #[test]
    fn offset_and_page_number_follow_dlt() {
        let cfg = PaginatorKind::Offset(OffsetPaginator { limit: 10, ..Default::default() }).into();
        let mut p = Paginator::new(&cfg).unwrap();
        let mut r = req();
        p.init_request(&mut r);
        assert!(r.params.contains(&("offset".into(), "0".into())) && r.params.contains(&("limit".into(), "10".into())));
        let h = HeaderMap::new();
        let d = vec![json!(1); 10];
        p.update_state(&page(&h, &json!({"total": 25}), &d)).unwrap();
        assert!(p.has_next());
        p.update_request(&mut r).unwrap();
        assert!(r.params.contains(&("offset".into(), "10".into())));
        p.update_state(&page(&h, &json!({"total": 25}), &d)).unwrap();
        p.update_state(&page(&h, &json!({"total": 25}), &d)).unwrap();
        assert!(!p.has_next());
        // a missing total with the default path is an error, as in dlt
        let mut p = Paginator::new(&cfg).unwrap();
        let err = p.update_state(&page(&h, &json!([1]), &d)).unwrap_err();
        assert!(err.contains("total_path"), "{err}");
        // 1-based page numbers with a total page count: the last page is requested
        let cfg = PaginatorKind::PageNumber(PageNumberPaginator {
            base_page: Some(1),
            total_path: Some(Some("total_pages".into())),
            ..Default::default()
        })
        .into();
        let mut p = Paginator::new(&cfg).unwrap();
        let mut pages = vec![];
        let mut r = req();
        p.init_request(&mut r);
        loop {
            pages.push(r.params.iter().find(|(k, _)| k == "page").unwrap().1.clone());
            p.update_state(&page(&h, &json!({"total_pages": 3}), &d)).unwrap();
            if !p.has_next() {
                break;
            }
            p.update_request(&mut r).unwrap();
        }
        assert_eq!(pages, ["1", "2", "3"]);
    }

    fn run_auto(responses: &[Value]) -> (Vec<Option<String>>, Vec<bool>) {
        let h = HeaderMap::new();
        let mut p = Paginator::Auto;
        let mut r = req();
        r.params.clear();
        let mut sent = vec![];
        let mut discards = vec![];
        for body in responses {
            sent.push(r.params.iter().find(|(k, _)| k == "page").map(|x| x.1.clone()));
            let data = body["items"].as_array().cloned().unwrap_or_default();
            discards.push(p.update_state(&page(&h, body, &data)).unwrap());
            if !p.has_next() {
                break;
            }
            p.update_request(&mut r).unwrap();
        }
        (sent, discards)
    }

    #[test]
    fn a_null_total_path_means_no_total_as_in_dlt() {
        let kind = |v: Value| serde_json::from_value::<PaginatorKind>(v).unwrap();
        let with = |v: Value| match Paginator::new(&kind(v).into()).unwrap() {
            Paginator::Range(r) => r.total_path.map(|p| p.to_string()),
            _ => panic!("a range paginator"),
        };
        // absent: dlt's default `total`; null (Python's None) and "": no total
        assert_eq!(with(json!({"type": "page_number", "base_page": 1})).as_deref(), Some("total"));
        assert_eq!(with(json!({"type": "page_number", "base_page": 1, "total_path": null})), None);
        assert_eq!(with(json!({"type": "offset", "limit": 5, "total_path": null})), None);
        assert_eq!(with(json!({"type": "offset", "limit": 5, "total_path": ""})), None);
        assert_eq!(
            with(json!({"type": "offset", "limit": 5, "total_path": "meta.count"})).as_deref(),
            Some("meta.count")
        );
    }

    #[test]
    fn detected_total_pages_never_skips_the_last_page() {
        // 1-based with a page key: 1 (no param), 2, 3
        let pages: Vec<Value> = (1..=3).map(|i| json!({"items": [i], "page": i, "total_pages": 3})).collect();
        let (sent, _) = run_auto(&pages);
        assert_eq!(sent, [None, Some("2".into()), Some("3".into())]);
        // 1-based without a page key: page=1 repeats the first page and is dropped
        let bodies = vec![
            json!({"items": [1], "total_pages": 3}),
            json!({"items": [1], "total_pages": 3}),
            json!({"items": [2], "total_pages": 3}),
            json!({"items": [3], "total_pages": 3}),
        ];
        let (sent, discards) = run_auto(&bodies);
        assert_eq!(sent, [None, Some("1".into()), Some("2".into()), Some("3".into())]);
        assert_eq!(discards, [false, true, false, false]);
        // 0-based without a page key: 0 (no param), 1, 2
        let bodies = vec![
            json!({"items": [1], "total_pages": 3}),
            json!({"items": [2], "total_pages": 3}),
            json!({"items": [3], "total_pages": 3}),
        ];
        let (sent, discards) = run_auto(&bodies);
        assert_eq!(sent, [None, Some("1".into()), Some("2".into())]);
        assert_eq!(discards, [false, false, false]);
    }

    #[test]
    fn detection_order_and_loud_fallback() {
        let mut h = HeaderMap::new();
        h.insert("link", HeaderValue::from_static("<http://h/p?page=2>; rel=\"next\""));
        assert_eq!(detect(&page(&h, &json!([1]), &[json!(1)])).unwrap().name(), "header_link");
        let h = HeaderMap::new();
        let b = json!({"data": [1], "links": {"next": {"href": "http://h/p?2"}}});
        assert_eq!(detect(&page(&h, &b, &[json!(1)])).unwrap().name(), "json_link");
        let b = json!({"data": [1], "next_cursor": "abc"});
        assert_eq!(detect(&page(&h, &b, &[json!(1)])).unwrap().name(), "cursor");
        // a Link header without `next` (the only page of a Link-paginated API)
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static("<http://h/p?page=1>; rel=\"first\", <http://h/p?page=1>; rel=\"last\""),
        );
        assert_eq!(detect(&page(&h, &json!([1]), &[json!(1)])).unwrap().name(), "header_link");
        let h = HeaderMap::new();
        // a `next…` field of a single record is not a cursor
        assert_eq!(detect(&page(&h, &json!({"id": 1, "next_step": "x"}), &[json!(1)])).unwrap().name(), "single_page");
        // plain list, plain object: one page
        assert_eq!(detect(&page(&h, &json!([1, 2]), &[json!(1)])).unwrap().name(), "single_page");
        assert_eq!(detect(&page(&h, &json!({"id": 1, "count": 3}), &[json!(1)])).unwrap().name(), "single_page");
        // looks paginated but undetectable: an error that says what to set
        let b = json!({"results": [1], "count": 40, "next": null});
        let err = detect(&page(&h, &b, &[json!(1)])).unwrap_err();
        assert!(err.contains("paginator") && err.contains("single_page") && err.contains("count"), "{err}");
        let mut h = HeaderMap::new();
        h.insert("x-total-count", HeaderValue::from_static("40"));
        let err = detect(&page(&h, &json!([1]), &[json!(1)])).unwrap_err();
        assert!(err.contains("x-total-count"), "{err}");
        // a total that the page holds in full, and an empty Link header: the only page
        let mut h = HeaderMap::new();
        h.insert("x-total-count", HeaderValue::from_static("2"));
        h.insert("link", HeaderValue::from_static(""));
        assert_eq!(detect(&page(&h, &json!([1, 2]), &[json!(1), json!(2)])).unwrap().name(), "single_page");
        let h = HeaderMap::new();
        let b = json!({"results": [1, 2], "count": 2});
        assert_eq!(detect(&page(&h, &b, &[json!(1), json!(2)])).unwrap().name(), "single_page");
    }

    #[test]
    fn body_path_forms_put_values_into_the_json_body() {
        use crate::config::{CursorPaginator, OffsetPaginator, PageNumberPaginator};
        let req = || Request {
            method: reqwest::Method::POST,
            url: Url::parse("http://x/search").unwrap(),
            params: vec![],
            json: Some(json!({"query": "q"})),
            data: None,
            headers: vec![],
        };
        let h = HeaderMap::new();
        // offset and limit at body paths
        let cfg = PaginatorKind::Offset(OffsetPaginator {
            limit: 10,
            offset_body_path: Some("paging.offset".into()),
            limit_body_path: Some("paging.limit".into()),
            total_path: Some(Some("".into())),
            ..Default::default()
        })
        .into();
        let mut p = Paginator::new(&cfg).unwrap();
        let mut r = req();
        p.init_request(&mut r);
        assert_eq!(r.json, Some(json!({"query": "q", "paging": {"offset": 0, "limit": 10}})));
        assert!(r.params.is_empty());
        let body = json!({"items": [1]});
        p.update_state(&page(&h, &body, &[json!(1)])).unwrap();
        p.update_request(&mut r).unwrap();
        assert_eq!(r.json.as_ref().unwrap()["paging"]["offset"], json!(10));
        // page number at a body path
        let cfg = PaginatorKind::PageNumber(PageNumberPaginator {
            base_page: Some(1),
            page_body_path: Some("page".into()),
            total_path: Some(Some("".into())),
            ..Default::default()
        })
        .into();
        let mut p = Paginator::new(&cfg).unwrap();
        let mut r = req();
        p.init_request(&mut r);
        assert_eq!(r.json.as_ref().unwrap()["page"], json!(1));
        // cursor at a body path
        let cfg = PaginatorKind::Cursor(CursorPaginator {
            cursor_path: Some("next".into()),
            cursor_body_path: Some("after".into()),
            ..Default::default()
        })
        .into();
        let mut p = Paginator::new(&cfg).unwrap();
        let mut r = req();
        let body = json!({"next": "abc"});
        p.update_state(&page(&h, &body, &[json!(1)])).unwrap();
        p.update_request(&mut r).unwrap();
        assert_eq!(r.json, Some(json!({"query": "q", "after": "abc"})));
        // both forms at once: a config error
        let cfg = PaginatorKind::Cursor(CursorPaginator {
            cursor_param: Some("c".into()),
            cursor_body_path: Some("after".into()),
            ..Default::default()
        })
        .into();
        assert!(Paginator::new(&cfg).unwrap_err().contains("not both"));
    }
}
