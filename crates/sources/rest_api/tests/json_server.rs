//! The rest_api source against a real json-server 0.17.4, loaded through the pipeline into
//! DuckDB and read back with a separate DuckDB connection, row for row against the fixture.

mod support;

use std::path::Path;

use dlt_core::config::Config;
use dlt_core::registry::{SourceContext, SourceFactory};
use dlt_rest_api::{RestApiConfig, RestApiFactory, rest_api_resources, rest_api_source};
use serde_json::{Value, json};
use support::{JsonServer, Project, fixture_db, rows, scalar, table_exists};

fn no_providers() -> Config {
    Config::from_parts(vec![], None, None)
}

fn source(cfg: Value) -> dlt_core::Source {
    rest_api_source(&RestApiConfig::from_json(cfg).unwrap(), &no_providers()).unwrap()
}

type Rows = Vec<Vec<Option<String>>>;

const POSTS_SQL: &str = "SELECT id::VARCHAR, title, strftime(updated_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ'), \
                         author__name FROM {ds}.posts ORDER BY id";

fn posts_in_db(db: &Path, ds: &str) -> Rows {
    rows(db, &POSTS_SQL.replace("{ds}", ds))
}

fn expected_posts(db: &Value, ids: impl Fn(i64) -> bool) -> Rows {
    db["posts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| ids(p["id"].as_i64().unwrap()))
        .map(|p| {
            vec![
                Some(p["id"].to_string()),
                p["title"].as_str().map(str::to_string),
                p["updated_at"].as_str().map(str::to_string),
                p["author"]["name"].as_str().map(str::to_string),
            ]
        })
        .collect()
}

fn tags_count(db: &Value) -> usize {
    db["posts"].as_array().unwrap().iter().map(|p| p["tags"].as_array().unwrap().len()).sum()
}

/// Load `cfg` into a fresh dataset and check the posts table against the fixture.
fn load_posts(cfg: Value, ds: &str) -> (Project, dlt_core::LoadInfo) {
    let proj = Project::new();
    let mut p = proj.pipeline("rest", ds);
    let info = p.run(source(cfg)).unwrap();
    let db = fixture_db();
    assert_eq!(posts_in_db(&proj.db(), ds), expected_posts(&db, |_| true));
    assert_eq!(
        scalar(&proj.db(), &format!("SELECT count(*)::VARCHAR FROM {ds}.posts__tags")),
        tags_count(&db).to_string()
    );
    (proj, info)
}

#[test]
fn header_link_paging_explicit_and_detected() {
    let Some(srv) = JsonServer::start(&fixture_db(), &[]) else { return };
    for paginator in [json!("header_link"), Value::Null] {
        let mut client = json!({"base_url": srv.url});
        if !paginator.is_null() {
            client["paginator"] = paginator;
        }
        let (_p, info) = load_posts(
            json!({"client": client, "resources": [{"name": "posts", "endpoint": {"path": "posts", "params": {"_page": 1, "_limit": 5}}}]}),
            "hl",
        );
        assert_eq!(info.row_counts["posts"], 12);
        let reqs = srv.take_requests();
        assert_eq!(
            reqs,
            ["GET /posts?_page=1&_limit=5", "GET /posts?_page=2&_limit=5", "GET /posts?_page=3&_limit=5"],
            "{reqs:?}"
        );
    }
}

#[test]
fn offset_paging_with_start_and_limit() {
    let Some(srv) = JsonServer::start(&fixture_db(), &[]) else { return };
    let paginator =
        json!({"type": "offset", "limit": 5, "offset_param": "_start", "limit_param": "_limit", "total_path": ""});
    load_posts(
        json!({"client": {"base_url": format!("{}/", srv.url)}, "resources": [{"name": "posts", "endpoint": {"path": "/posts", "paginator": paginator}}]}),
        "off",
    );
    let reqs = srv.take_requests();
    assert_eq!(
        reqs,
        [
            "GET /posts?_start=0&_limit=5",
            "GET /posts?_start=5&_limit=5",
            "GET /posts?_start=10&_limit=5",
            "GET /posts?_start=15&_limit=5"
        ]
    );
}

#[test]
fn page_number_paging_and_max_pages() {
    let Some(srv) = JsonServer::start(&fixture_db(), &[]) else { return };
    let paginator = json!({"type": "page_number", "base_page": 1, "page_param": "_page", "total_path": ""});
    load_posts(
        json!({"client": {"base_url": srv.url, "paginator": paginator},
               "resources": [{"name": "posts", "endpoint": {"params": {"_limit": 5}}}]}),
        "pn",
    );
    assert_eq!(srv.take_requests().len(), 4, "pages 1-3 and the empty page 4");
    // max_pages stops early (a warning, not an error)
    let mut limited = paginator.clone();
    limited["max_pages"] = json!(2);
    let proj = Project::new();
    let info = proj
        .pipeline("rest", "pn2")
        .run(source(json!({"client": {"base_url": srv.url, "paginator": limited},
                           "resources": [{"name": "posts", "endpoint": {"params": {"_limit": 5}}}]})))
        .unwrap();
    assert_eq!(info.row_counts["posts"], 10);
    assert_eq!(posts_in_db(&proj.db(), "pn2"), expected_posts(&fixture_db(), |id| id <= 10));
    assert_eq!(srv.take_requests().len(), 2);
}

#[test]
fn json_link_with_relative_next_urls() {
    let Some(srv) = JsonServer::start(&fixture_db(), &[("WRAP", "json_link")]) else { return };
    // explicit
    load_posts(
        json!({"client": {"base_url": srv.url},
               "resources": [{"name": "posts", "endpoint": {"path": "posts", "params": {"_page": 1, "_limit": 5},
                   "data_selector": "$.data", "paginator": {"type": "json_link", "next_url_path": "next"}}}]}),
        "jl",
    );
    let reqs = srv.take_requests();
    assert_eq!(reqs, ["GET /posts?_page=1&_limit=5", "GET /posts?_page=2&_limit=5", "GET /posts?_page=3&_limit=5"]);
    // detected: json_link from the `next` key, records from `data`
    load_posts(
        json!({"client": {"base_url": srv.url},
               "resources": [{"name": "posts", "endpoint": {"path": "posts", "params": {"_page": 1, "_limit": 5}}}]}),
        "jl2",
    );
    assert_eq!(srv.take_requests().len(), 3);
}

#[test]
fn detected_total_pages_loads_every_page_once() {
    for (wrap, expected) in [
        ("pages", vec!["GET /posts", "GET /posts?page=2", "GET /posts?page=3"]),
        ("pages_nopage", vec!["GET /posts", "GET /posts?page=1", "GET /posts?page=2", "GET /posts?page=3"]),
    ] {
        let Some(srv) = JsonServer::start(&fixture_db(), &[("WRAP", wrap), ("PAGE_SIZE", "5")]) else { return };
        let (_p, info) =
            load_posts(json!({"client": {"base_url": srv.url}, "resources": ["posts"]}), &format!("tp_{wrap}"));
        assert_eq!(info.row_counts["posts"], 12, "{wrap}: no page skipped or loaded twice");
        assert_eq!(srv.take_requests(), expected, "{wrap}");
    }
}

fn expected_comments(db: &Value) -> Rows {
    let posts = db["posts"].as_array().unwrap();
    let mut out: Rows = db["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let post = posts.iter().find(|p| p["id"] == c["postId"]).unwrap();
            vec![
                Some(c["id"].to_string()),
                Some(c["postId"].to_string()),
                c["body"].as_str().map(str::to_string),
                post["title"].as_str().map(str::to_string),
            ]
        })
        .collect();
    out.sort_by_key(|r| r[0].clone().unwrap().parse::<i64>().unwrap());
    out
}

#[test]
fn parent_child_with_include_from_parent() {
    let Some(srv) = JsonServer::start(&fixture_db(), &[]) else { return };
    let db = fixture_db();
    let cfg = json!({
        "client": {"base_url": srv.url},
        "resources": [
            // listed before its parent: the source orders parents first
            {"name": "comments", "endpoint": {"path": "posts/{resources.posts.id}/comments"}, "include_from_parent": ["title"]},
            {"name": "posts", "endpoint": {"path": "posts", "params": {"_page": 1, "_limit": 5}, "paginator": "header_link"}},
            {"name": "comments_by_param", "table_name": "comments2",
             "endpoint": {"path": "comments", "params": {"postId": {"type": "resolve", "resource": "posts", "field": "id"}},
                          "paginator": "single_page"},
             "include_from_parent": ["title"]}
        ]
    });
    let proj = Project::new();
    let info = proj.pipeline("rest", "pc").run(source(cfg.clone())).unwrap();
    assert_eq!(info.row_counts["posts"], 12);
    assert_eq!(info.row_counts["comments"], 18);
    assert_eq!(posts_in_db(&proj.db(), "pc"), expected_posts(&db, |_| true));
    let sql = "SELECT id::VARCHAR, post_id::VARCHAR, body, _posts_title FROM pc.{t} ORDER BY id";
    assert_eq!(rows(&proj.db(), &sql.replace("{t}", "comments")), expected_comments(&db));
    assert_eq!(rows(&proj.db(), &sql.replace("{t}", "comments2")), expected_comments(&db));
    // the parent was requested once: its items fed both children
    let reqs = srv.take_requests();
    assert_eq!(reqs.iter().filter(|r| r.starts_with("GET /posts?")).count(), 3, "{reqs:?}");
    assert_eq!(reqs.iter().filter(|r| r.ends_with("/comments")).count(), 12);
    assert_eq!(reqs.iter().filter(|r| r.starts_with("GET /comments?postId=")).count(), 12);

    // a child iterated on its own reads the parent itself; its records come in parent order
    let rs = rest_api_resources(&RestApiConfig::from_json(cfg).unwrap(), &no_providers()).unwrap();
    let comments = rs.into_iter().find(|r| r.name == "comments").unwrap();
    let (_, _, items) = comments.into_parts();
    let got: Vec<(i64, i64)> = items
        .map(|i| match i.unwrap() {
            dlt_core::Item::Json(v) => (v["postId"].as_i64().unwrap(), v["id"].as_i64().unwrap()),
            other => panic!("{other:?}"),
        })
        .collect();
    let mut want: Vec<(i64, i64)> = db["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["postId"].as_i64().unwrap(), c["id"].as_i64().unwrap()))
        .collect();
    want.sort();
    assert_eq!(got, want);

    // parent not selected: no posts table, children still loaded
    let cfg = json!({
        "client": {"base_url": srv.url},
        "resources": [
            {"name": "posts", "selected": false, "endpoint": {"path": "posts", "params": {"_page": 1, "_limit": 5}}},
            {"name": "comments", "endpoint": {"path": "posts/{resources.posts.id}/comments"}, "include_from_parent": ["title"]}
        ]
    });
    let proj = Project::new();
    let info = proj.pipeline("rest", "pc2").run(source(cfg)).unwrap();
    assert!(!info.row_counts.contains_key("posts"));
    assert!(!table_exists(&proj.db(), "pc2", "posts"));
    assert_eq!(
        rows(&proj.db(), "SELECT id::VARCHAR, post_id::VARCHAR, body, _posts_title FROM pc2.comments ORDER BY id"),
        expected_comments(&db)
    );
}

#[test]
fn incremental_params_across_two_runs() {
    let Some(srv) = JsonServer::start(&fixture_db(), &[]) else { return };
    let cfg = json!({
        "client": {"base_url": srv.url},
        "resources": [{"name": "posts", "primary_key": "id", "endpoint": {"path": "posts", "params": {
            "updated_at_gte": {"type": "incremental", "cursor_path": "updated_at", "initial_value": "2024-01-03T10:00:00Z"},
            "_sort": "updated_at", "_order": "asc"}}}]
    });
    let proj = Project::new();
    let mut p = proj.pipeline("rest", "inc");
    let info = p.run(source(cfg.clone())).unwrap();
    assert_eq!(info.row_counts["posts"], 10);
    assert_eq!(posts_in_db(&proj.db(), "inc"), expected_posts(&fixture_db(), |id| id >= 3));
    assert_eq!(srv.take_requests(), ["GET /posts?updated_at_gte=2024-01-03T10%3A00%3A00Z&_sort=updated_at&_order=asc"]);

    // the API gets two new posts
    let http = reqwest::blocking::Client::new();
    let mut db = fixture_db();
    for i in [13, 14] {
        let post = json!({"id": i, "title": format!("post {i}"), "updated_at": format!("2024-01-{i}T10:00:00Z"),
                          "author": {"name": "late"}, "tags": []});
        assert!(http.post(format!("{}/posts", srv.url)).json(&post).send().unwrap().status().is_success());
        db["posts"].as_array_mut().unwrap().push(post);
    }
    srv.take_requests();
    let info = p.run(source(cfg)).unwrap();
    // only rows from the last cursor value on were requested; the boundary row was deduplicated
    assert_eq!(srv.take_requests(), ["GET /posts?updated_at_gte=2024-01-12T10%3A00%3A00Z&_sort=updated_at&_order=asc"]);
    assert_eq!(info.row_counts["posts"], 2);
    assert_eq!(posts_in_db(&proj.db(), "inc"), expected_posts(&db, |id| id >= 3));
    let st = &p.state().0["sources"]["rest_api"]["resources"]["posts"]["incremental"]["updated_at"];
    assert_eq!(st["last_value"], json!("2024-01-14T10:00:00Z"), "{st}");
    assert_eq!(st["initial_value"], json!("2024-01-03T10:00:00Z"));
}

#[test]
fn incremental_endpoint_form_with_placeholders() {
    let Some(srv) = JsonServer::start(&fixture_db(), &[]) else { return };
    let cfg = json!({
        "client": {"base_url": srv.url},
        "resources": [{"name": "posts", "endpoint": {"path": "posts",
            "params": {"updated_at_gte": "{incremental.start_value}", "_sort": "id"},
            "incremental": {"cursor_path": "updated_at", "initial_value": "2024-01-10T10:00:00Z",
                            "end_value": "2024-01-12T10:00:00Z", "end_param": "updated_at_lte"}}}]
    });
    let proj = Project::new();
    let info = proj.pipeline("rest", "incp").run(source(cfg)).unwrap();
    assert_eq!(
        srv.take_requests(),
        ["GET /posts?updated_at_gte=2024-01-10T10%3A00%3A00Z&_sort=id&updated_at_lte=2024-01-12T10%3A00%3A00Z"]
    );
    // json-server's `_lte` includes the end; the pipeline's window (open at the end) drops post 12
    assert_eq!(info.row_counts["posts"], 2);
    assert_eq!(posts_in_db(&proj.db(), "incp"), expected_posts(&fixture_db(), |id| id == 10 || id == 11));
}

#[test]
fn auth_bearer_api_key_and_basic() {
    let cases: [(&str, Value, &str, &str); 4] = [
        ("bearer", json!({"type": "bearer"}), "SOURCES__REST_API__CREDENTIALS__TOKEN", "tok-123"),
        (
            "api_key_header",
            json!({"type": "api_key", "name": "X-API-Key"}),
            "SOURCES__REST_API__CREDENTIALS__API_KEY",
            "k-456",
        ),
        (
            "api_key_query",
            json!({"type": "api_key", "name": "api_key", "location": "query"}),
            "SOURCES__REST_API__POSTS__CREDENTIALS__API_KEY",
            "q-789",
        ),
        ("basic", json!({"type": "http_basic", "username": "ann"}), "SOURCES__REST_API__CREDENTIALS__PASSWORD", "pw-0"),
    ];
    for (mode, auth, env_key, secret) in cases {
        let server_secret = if mode == "basic" { format!("ann:{secret}") } else { secret.to_string() };
        let Some(srv) = JsonServer::start(&fixture_db(), &[("AUTH_MODE", mode), ("AUTH_SECRET", &server_secret)])
        else {
            return;
        };
        let ep = json!({"path": "posts", "params": {"_page": 1, "_limit": 5}, "auth": auth});
        let cfg = RestApiConfig::from_json(
            json!({"client": {"base_url": srv.url}, "resources": [{"name": "posts", "endpoint": ep}]}),
        )
        .unwrap();
        // the wrong secret: a terminal 401 that never shows the secret
        let wrong = Config::from_parts(vec![(env_key.into(), "wrong-secret".into())], None, None);
        let proj = Project::new();
        let err = proj.pipeline("rest", "auth").run(rest_api_source(&cfg, &wrong).unwrap()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("401") && !err.is_transient(), "{mode}: {msg}");
        assert!(!msg.contains("wrong-secret"), "{mode}: {msg}");
        assert!(!table_exists(&proj.db(), "auth", "posts"));
        // the right one, from the environment provider
        let right = Config::from_parts(vec![(env_key.into(), secret.into())], None, None);
        let info = proj.pipeline("rest", "auth").run(rest_api_source(&cfg, &right).unwrap()).unwrap();
        assert_eq!(info.row_counts["posts"], 12, "{mode}");
        assert_eq!(posts_in_db(&proj.db(), "auth"), expected_posts(&fixture_db(), |_| true));
    }
}

#[test]
fn pipeline_file_source_table_through_the_factory() {
    let Some(srv) = JsonServer::start(&fixture_db(), &[]) else { return };
    let toml_text = format!(
        r#"
type = "rest_api"
[client]
base_url = "{}"
paginator = {{ type = "page_number", base_page = 1, page_param = "_page", total_path = "" }}
[resource_defaults]
write_disposition = "replace"
endpoint = {{ params = {{ _limit = 4 }} }}
[[resources]]
name = "posts"
primary_key = "id"
[[resources]]
name = "comments"
include_from_parent = ["title"]
endpoint = {{ path = "posts/{{resources.posts.id}}/comments", paginator = "single_page", response_actions = [{{ status_code = 404, action = "ignore" }}] }}
"#,
        srv.url
    );
    let table: toml::Table = toml_text.parse().unwrap();
    let providers = no_providers();
    let proj = Project::new();
    let src = RestApiFactory
        .build(&table, &SourceContext { pipeline_name: "rest", config: &providers, base_dir: proj.dir.path() })
        .unwrap();
    assert_eq!(src.name, "rest_api");
    let mut p = proj.pipeline("rest", "pf");
    let info = p.run(src).unwrap();
    assert_eq!(info.row_counts["posts"], 12);
    assert_eq!(info.row_counts["comments"], 18);
    assert_eq!(posts_in_db(&proj.db(), "pf"), expected_posts(&fixture_db(), |_| true));
    // replace twice: same rows
    let src = RestApiFactory
        .build(&table, &SourceContext { pipeline_name: "rest", config: &providers, base_dir: proj.dir.path() })
        .unwrap();
    p.run(src).unwrap();
    assert_eq!(scalar(&proj.db(), "SELECT count(*)::VARCHAR FROM pf.comments"), "18");
    assert_eq!(posts_in_db(&proj.db(), "pf"), expected_posts(&fixture_db(), |_| true));
}
