//! Failure handling against a fault-injecting HTTP server written here: 401, 429 with
//! Retry-After, 500, timeouts, malformed JSON, OAuth2 token refresh, response actions and the
//! auto paginator refusing to guess.

mod support;

use std::time::{Duration, Instant};

use dlt_core::config::Config;
use dlt_core::{Error, Item};
use dlt_rest_api::{RestApiConfig, rest_api_resources, rest_api_source};
use serde_json::{Value, json};
use support::{FaultServer, Project, Reply, rows, table_exists};

fn providers() -> Config {
    Config::from_parts(vec![], None, None)
}

/// Fast retries for tests.
fn session() -> Value {
    json!({"timeout": 1.0, "max_attempts": 3, "backoff_factor": 0.05, "max_retry_delay": 5.0})
}

fn cfg(url: &str, endpoint: Value) -> RestApiConfig {
    RestApiConfig::from_json(json!({
        "client": {"base_url": url, "session": session()},
        "resources": [{"name": "items", "endpoint": endpoint}]
    }))
    .unwrap()
}

/// All items of the first resource, or the first error (with the items before it).
fn collect(c: &RestApiConfig) -> (Vec<Value>, Option<Error>) {
    let r = rest_api_resources(c, &providers()).unwrap().into_iter().next().unwrap();
    let (_, _, items) = r.into_parts();
    let mut out = vec![];
    for i in items {
        match i {
            Ok(Item::Json(v)) => out.push(v),
            Ok(other) => panic!("{other:?}"),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

#[test]
fn unauthorized_is_terminal() {
    let srv = FaultServer::start(|_, _| Reply::json(401, r#"{"error": "no"}"#));
    let (items, err) = collect(&cfg(&srv.url, json!("items")));
    let err = err.unwrap();
    assert!(items.is_empty());
    let msg = err.to_string();
    assert!(msg.contains("HTTP 401") && msg.contains("/items") && msg.contains("page 1"), "{msg}");
    assert!(!err.is_transient());
    assert_eq!(srv.requests().len(), 1, "4xx is not retried");
}

#[test]
fn too_many_requests_honours_retry_after() {
    let srv = FaultServer::start(|_, n| {
        if n == 0 {
            Reply::json(429, "slow down").header("Retry-After", "1")
        } else {
            Reply::json(200, r#"[{"id": 1}]"#)
        }
    });
    let t = Instant::now();
    let (items, err) = collect(&cfg(&srv.url, json!({"path": "items", "paginator": "single_page"})));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(items, [json!({"id": 1})]);
    assert!(t.elapsed() >= Duration::from_millis(950), "waited {:?}", t.elapsed());
    assert_eq!(srv.requests().len(), 2);
}

#[test]
fn server_errors_are_retried_then_transient() {
    let srv =
        FaultServer::start(|_, n| if n < 2 { Reply::json(500, "oops") } else { Reply::json(200, r#"[{"id": 2}]"#) });
    let (items, err) = collect(&cfg(&srv.url, json!({"path": "items", "paginator": "single_page"})));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(items, [json!({"id": 2})]);
    assert_eq!(srv.requests().len(), 3);

    let srv = FaultServer::start(|_, _| Reply::json(503, "down"));
    let (_, err) = collect(&cfg(&srv.url, json!({"path": "items", "paginator": "single_page"})));
    let err = err.unwrap();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("HTTP 503") && err.to_string().contains("3 attempts"), "{err}");
    assert_eq!(srv.requests().len(), 3, "bounded attempts");
}

#[test]
fn timeouts_are_retried() {
    let srv = FaultServer::start(|_, n| {
        let r = Reply::json(200, r#"[{"id": 3}]"#);
        if n == 0 { r.delay(Duration::from_millis(2500)) } else { r }
    });
    let (items, err) = collect(&cfg(&srv.url, json!({"path": "items", "paginator": "single_page"})));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(items, [json!({"id": 3})]);
    assert_eq!(srv.requests().len(), 2);

    let srv = FaultServer::start(|_, _| Reply::json(200, "[]").delay(Duration::from_millis(2500)));
    let (_, err) = collect(&cfg(&srv.url, json!({"path": "items", "paginator": "single_page"})));
    let err = err.unwrap();
    assert!(err.is_transient() && err.to_string().contains("timed out"), "{err}");
}

#[test]
fn malformed_json_names_url_and_page_and_nothing_is_committed() {
    let handler = |s: &support::Seen, _| {
        if s.target.contains("page=2") {
            Reply::json(200, r#"[{"id": 3}, {"id": "#)
        } else {
            Reply::json(200, r#"[{"id": 1}, {"id": 2}]"#)
        }
    };
    let srv = FaultServer::start(handler);
    let endpoint = json!({"path": "items",
        "paginator": {"type": "page_number", "base_page": 1, "total_path": "", "maximum_page": 5}});
    let (items, err) = collect(&cfg(&srv.url, endpoint.clone()));
    assert_eq!(items.len(), 2, "page 1 came through before the error");
    let msg = err.unwrap().to_string();
    assert!(msg.contains("malformed JSON") && msg.contains("/items?page=2") && msg.contains("(page 2)"), "{msg}");

    // through the pipeline: the run fails and the destination gets nothing
    let proj = Project::new();
    let err = proj.pipeline("faulty", "f").run(rest_api_source(&cfg(&srv.url, endpoint), &providers()).unwrap());
    let msg = err.unwrap_err().to_string();
    assert!(msg.contains("malformed JSON") && msg.contains("(page 2)"), "{msg}");
    assert!(!proj.db().exists() || !table_exists(&proj.db(), "f", "items"));
}

#[test]
fn data_selector_that_matches_nothing_is_an_error() {
    let srv = FaultServer::start(|_, _| Reply::json(200, r#"{"results": [{"id": 1}]}"#));
    let (_, err) =
        collect(&cfg(&srv.url, json!({"path": "items", "data_selector": "data.items", "paginator": "single_page"})));
    let msg = err.unwrap().to_string();
    assert!(msg.contains("data_selector `data.items` matched nothing") && msg.contains("/items (page 1)"), "{msg}");
}

#[test]
fn auto_paginator_fails_loudly_when_it_cannot_tell() {
    let srv = FaultServer::start(|_, _| Reply::json(200, r#"{"results": [{"id": 1}], "count": 40, "next": null}"#));
    let (items, err) = collect(&cfg(&srv.url, json!("items")));
    assert!(items.is_empty());
    let msg = err.unwrap().to_string();
    assert!(msg.contains("set `paginator`") && msg.contains("single_page") && msg.contains("(page 1)"), "{msg}");
    // the same response with an explicit single_page loads
    let (items, err) = collect(&cfg(&srv.url, json!({"path": "items", "paginator": "single_page"})));
    assert!(err.is_none());
    assert_eq!(items, [json!({"id": 1})]);
    // a header like X-Total-Count also counts as a hint
    let srv = FaultServer::start(|_, _| Reply::json(200, r#"[{"id": 1}]"#).header("X-Total-Count", "30"));
    let msg = collect(&cfg(&srv.url, json!("items"))).1.unwrap().to_string();
    assert!(msg.contains("x-total-count"), "{msg}");
    // a plain list without hints is one page
    let srv = FaultServer::start(|_, _| Reply::json(200, r#"[{"id": 1}, {"id": 2}]"#));
    let (items, err) = collect(&cfg(&srv.url, json!("items")));
    assert!(err.is_none() && items.len() == 2);
}

#[test]
fn oauth2_token_is_cached_and_refreshed_on_401() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static TOKENS: AtomicUsize = AtomicUsize::new(0);
    let srv = FaultServer::start(|s, _| {
        if s.target == "/token" {
            let n = TOKENS.fetch_add(1, Ordering::SeqCst) + 1;
            return Reply::json(200, &format!(r#"{{"access_token": "t{n}", "expires_in": 3600}}"#));
        }
        // the first token is revoked
        match s.header("authorization") {
            Some("Bearer t2") => {
                let page: i64 = s.target.rsplit('=').next().and_then(|x| x.parse().ok()).unwrap_or(0);
                if page < 2 { Reply::json(200, &format!(r#"[{{"id": {page}}}]"#)) } else { Reply::json(200, "[]") }
            }
            _ => Reply::json(401, "expired"),
        }
    });
    let c = RestApiConfig::from_json(json!({
        "client": {"base_url": srv.url, "session": session(),
                   "auth": {"type": "oauth2_client_credentials", "access_token_url": format!("{}/token", srv.url),
                            "client_id": "cid", "client_secret": "csecret"}},
        "resources": [{"name": "items", "endpoint": {"path": "items", "paginator": {"type": "page_number", "total_path": ""}}}]
    }))
    .unwrap();
    let (items, err) = collect(&c);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(items, [json!({"id": 0}), json!({"id": 1})]);
    let reqs = srv.requests();
    let token_reqs: Vec<_> = reqs.iter().filter(|r| r.target == "/token").collect();
    assert_eq!(token_reqs.len(), 2, "fetched once, refreshed once after the 401, then cached");
    assert_eq!(token_reqs[0].method, "POST");
    assert!(token_reqs[0].body.contains("grant_type=client_credentials"), "{}", token_reqs[0].body);
    // client id and secret as HTTP basic auth
    assert_eq!(token_reqs[0].header("authorization"), Some("Basic Y2lkOmNzZWNyZXQ="));
    assert_eq!(reqs.len(), 2 + 1 + 3, "two token requests, the 401, three pages");
}

#[test]
fn response_actions_ignore_matching_responses() {
    let srv = FaultServer::start(|s, _| match s.target.as_str() {
        "/parents" => Reply::json(200, r#"[{"id": 1}, {"id": 2}, {"id": 3}]"#),
        "/parents/2/kids" => Reply::json(404, r#"{"error": "not found"}"#),
        "/parents/3/kids" => Reply::json(200, r#"{"status": "archived"}"#),
        t => Reply::json(200, &format!(r#"[{{"kid": "{t}"}}]"#)),
    });
    let c = RestApiConfig::from_json(json!({
        "client": {"base_url": srv.url, "session": session(), "paginator": "single_page"},
        "resources": ["parents", {"name": "kids", "include_from_parent": ["id"], "endpoint": {
            "path": "parents/{resources.parents.id}/kids",
            "response_actions": [{"status_code": 404, "action": "ignore"}, {"content": "archived", "action": "ignore"}]}}]
    }))
    .unwrap();
    let proj = Project::new();
    let info = proj.pipeline("ra", "ra").run(rest_api_source(&c, &providers()).unwrap()).unwrap();
    assert_eq!(info.row_counts["kids"], 1);
    assert_eq!(
        rows(&proj.db(), "SELECT kid, _parents_id::VARCHAR FROM ra.kids"),
        [[Some("/parents/1/kids".to_string()), Some("1".to_string())]]
    );
    // without the action the 404 fails the run
    let c = RestApiConfig::from_json(json!({
        "client": {"base_url": srv.url, "session": session(), "paginator": "single_page"},
        "resources": ["parents", {"name": "kids", "endpoint": "parents/{resources.parents.id}/kids"}]
    }))
    .unwrap();
    let err = Project::new().pipeline("ra", "ra").run(rest_api_source(&c, &providers()).unwrap()).unwrap_err();
    assert!(err.to_string().contains("HTTP 404"), "{err}");
}

#[test]
fn query_api_key_never_shows_in_errors() {
    let srv = FaultServer::start(|_, _| Reply::json(500, "boom"));
    let c = RestApiConfig::from_json(json!({
        "client": {"base_url": srv.url, "session": session(),
                   "auth": {"type": "api_key", "name": "key", "api_key": "s3cr3t", "location": "query"}},
        "resources": [{"name": "items", "endpoint": {"path": "items", "paginator": "single_page"}}]
    }))
    .unwrap();
    let (_, err) = collect(&c);
    let msg = err.unwrap().to_string();
    assert!(!msg.contains("s3cr3t"), "{msg}");
    assert!(srv.requests()[0].target.contains("key=s3cr3t"), "the key was sent");
    assert!(!format!("{c:?}").contains("s3cr3t"));
}

#[test]
fn a_paginator_that_would_repeat_a_request_stops_with_an_error() {
    let srv = FaultServer::start(|_, _| Reply::json(200, r#"{"items": [{"id": 1}], "next": "/items?page=1"}"#));
    let (items, err) = collect(&cfg(&srv.url, json!({"path": "items", "params": {"page": 1}})));
    let msg = err.unwrap().to_string();
    assert!(msg.contains("same page again") && msg.contains("json_link"), "{msg}");
    assert_eq!(items.len(), 1);
    assert_eq!(srv.requests().len(), 1);
}

#[test]
fn post_bodies_take_parent_and_incremental_placeholders() {
    let srv = FaultServer::start(|s, _| match (s.method.as_str(), s.target.as_str()) {
        ("GET", "/parents") => {
            Reply::json(200, r#"[{"id": 1, "meta": {"slug": "a"}}, {"id": 2, "meta": {"slug": "b"}}]"#)
        }
        ("POST", "/search") => {
            let body: Value = serde_json::from_str(&s.body).unwrap();
            Reply::json(200, &json!([{"ts": 10, "echo": body}]).to_string())
        }
        _ => Reply::json(404, "{}"),
    });
    let c = RestApiConfig::from_json(json!({
        "client": {"base_url": srv.url, "session": session(), "paginator": "single_page"},
        "resources": [
            {"name": "parents", "selected": false},
            {"name": "hits", "endpoint": {"path": "search", "method": "post",
                "json": {"parent": "{resources.parents.id}", "q": "slug:{resources.parents.meta.slug}",
                         "since": "{incremental.start_value}"},
                "incremental": {"cursor_path": "ts", "initial_value": 5}}}
        ]
    }))
    .unwrap();
    let rs = rest_api_resources(&c, &providers()).unwrap();
    assert_eq!(rs.len(), 1, "the unselected parent is not a resource");
    assert_eq!(rs[0].hints.incremental.as_ref().unwrap().cursor_path, "ts");
    let (items, err) = collect(&c);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        items.iter().map(|v| v["echo"].clone()).collect::<Vec<_>>(),
        [json!({"parent": 1, "q": "slug:a", "since": 5}), json!({"parent": 2, "q": "slug:b", "since": 5})]
    );
    let posts: Vec<_> = srv.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].header("content-type"), Some("application/json"));
}

#[test]
fn query_parameters_go_out_in_the_order_written() {
    // what reaches the wire: a recording server is the only peer that shows the order
    let srv = FaultServer::start(|_, _| Reply::json(200, r#"[{"id": 1}]"#));
    let toml = format!(
        "[client]\nbase_url = \"{}\"\n\n[[resources]]\nname = \"items\"\n\
         endpoint = {{ path = \"items\", paginator = \"single_page\", params = {{ zeta = 1, alpha = \"a\", mid = 2 }} }}\n",
        srv.url
    );
    let c = RestApiConfig::from_toml_str(&toml).unwrap();
    let (items, err) = collect(&c);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(items.len(), 1);
    let target = &srv.requests()[0].target;
    assert!(target.ends_with("items?zeta=1&alpha=a&mid=2"), "{target}");
    // JSON configs keep their order too
    let c = RestApiConfig::from_json(json!({
        "client": {"base_url": srv.url},
        "resources": [{"name": "items", "endpoint": {"path": "items", "paginator": "single_page",
                       "params": {"zeta": 1, "alpha": "a", "mid": 2}}}]
    }))
    .unwrap();
    collect(&c);
    let target = &srv.requests()[1].target;
    assert!(target.ends_with("items?zeta=1&alpha=a&mid=2"), "{target}");
}
