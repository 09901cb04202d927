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

/// Every item of every resource, in the order the pipeline extracts them (parents first).
fn collect_all(c: &RestApiConfig) -> Vec<(String, Vec<Value>)> {
    let mut out = vec![];
    for r in rest_api_resources(c, &providers()).unwrap() {
        let (name, _, items) = r.into_parts();
        let values = items
            .map(|i| match i {
                Ok(Item::Json(v)) => v,
                other => panic!("{name}: {other:?}"),
            })
            .collect();
        out.push((name, values));
    }
    out
}

#[test]
fn retry_after_as_an_http_date_is_honoured() {
    // the date two seconds ahead (HTTP dates have whole seconds: the wait is 1–2 s)
    let at = (chrono::Utc::now() + chrono::Duration::seconds(2)).format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let srv = FaultServer::start(move |_, n| {
        if n == 0 {
            Reply::json(429, "slow down").header("Retry-After", &at)
        } else {
            Reply::json(200, r#"[{"id": 1}]"#)
        }
    });
    let t = Instant::now();
    let (items, err) = collect(&cfg(&srv.url, json!({"path": "items", "paginator": "single_page"})));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(items, [json!({"id": 1})]);
    assert!(t.elapsed() >= Duration::from_millis(900), "waited {:?}", t.elapsed());
    assert_eq!(srv.requests().len(), 2);

    // a date in the past: retried at once (not after the backoff of an unreadable header)
    let srv = FaultServer::start(|_, n| {
        if n == 0 {
            Reply::json(503, "busy").header("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")
        } else {
            Reply::json(200, r#"[{"id": 2}]"#)
        }
    });
    let (items, err) = collect(&cfg(&srv.url, json!({"path": "items", "paginator": "single_page"})));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(items, [json!({"id": 2})]);
    assert_eq!(srv.requests().len(), 2);
}

#[test]
fn child_requests_run_up_to_max_parallel_at_once_and_keep_the_parent_order() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (now2, max2) = (now.clone(), max.clone());
    let srv = FaultServer::start(move |seen, _| {
        if seen.target.ends_with("/parents") {
            let ids: Vec<Value> = (1..=7).map(|i| json!({"id": i})).collect();
            return Reply::json(200, &Value::Array(ids).to_string());
        }
        // /parents/<id>/kids: held open a while, counting the requests in flight; the first
        // parent's children take longest, so later ones finish first
        let id: u64 = seen.target.split('/').nth(2).unwrap().parse().unwrap();
        let in_flight = now2.fetch_add(1, Ordering::SeqCst) + 1;
        max2.fetch_max(in_flight, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(if id == 1 { 400 } else { 150 }));
        now2.fetch_sub(1, Ordering::SeqCst);
        Reply::json(200, &json!([{"kid": id * 10}, {"kid": id * 10 + 1}]).to_string())
    });
    let mut session = session();
    session["max_parallel"] = json!(3);
    let c = RestApiConfig::from_json(json!({
        "client": {"base_url": srv.url, "session": session, "paginator": "single_page"},
        "resources": [
            "parents",
            {"name": "kids", "endpoint": {"path": "parents/{resources.parents.id}/kids"},
             "include_from_parent": ["id"]}
        ]
    }))
    .unwrap();
    let all = collect_all(&c);
    assert_eq!(all[0].1.len(), 7);
    let kids: Vec<(u64, u64)> =
        all[1].1.iter().map(|v| (v["_parents_id"].as_u64().unwrap(), v["kid"].as_u64().unwrap())).collect();
    let want: Vec<(u64, u64)> = (1..=7).flat_map(|i| [(i, i * 10), (i, i * 10 + 1)]).collect();
    assert_eq!(kids, want, "children in the parents' order");
    assert_eq!(max.load(Ordering::SeqCst), 3, "max_parallel child requests at once");
    assert_eq!(srv.requests().len(), 8);
}

#[test]
fn the_next_page_is_requested_while_the_current_one_is_consumed() {
    let srv = FaultServer::start(|seen, _| {
        let page: u64 = seen.target.rsplit('=').next().and_then(|p| p.parse().ok()).unwrap_or(1);
        let body = if page <= 3 { json!([{"page": page}, {"page": page}]) } else { json!([]) };
        Reply::json(200, &body.to_string())
    });
    let c = cfg(
        &srv.url,
        json!({"path": "items", "paginator": {"type": "page_number", "base_page": 1, "total_path": null}}),
    );
    let r = rest_api_resources(&c, &providers()).unwrap().into_iter().next().unwrap();
    let (_, _, mut items) = r.into_parts();
    // one record of page 1 taken: page 2 is on its way without another record being asked for
    assert!(matches!(items.next(), Some(Ok(Item::Json(v))) if v == json!({"page": 1})));
    let t = Instant::now();
    while srv.requests().len() < 2 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(srv.requests().len(), 2, "page 2 requested ahead");
    assert!(srv.requests()[1].target.ends_with("page=2"), "{:?}", srv.requests()[1].target);
    // and only one page ahead
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(srv.requests().len(), 2);
    let rest: Vec<Value> = items
        .map(|i| match i {
            Ok(Item::Json(v)) => v,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(rest.len(), 5);
    assert_eq!(srv.requests().len(), 4, "pages 1–3 and the empty page 4");
}
