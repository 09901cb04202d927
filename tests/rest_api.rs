//! `dlt run`'s path for a `[source] type = "rest_api"` pipeline file: the facade's registry builds
//! the source, the pipeline loads a real json-server (0.17.4) into DuckDB, and an independent
//! DuckDB connection reads the rows back.
#![cfg(feature = "rest_api")]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{query, scalar};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// json-server on a free port, or `None` (skip) when it is not installed outside CI.
fn json_server(db: &std::path::Path) -> Option<(Server, String)> {
    let bin =
        std::env::var_os("DLT_TEST_JSON_SERVER").filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(|| {
            let cache = std::env::var_os("DLT_RS_CACHE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/dlt-rs"));
            cache.join("node/node_modules/.bin/json-server")
        });
    if !bin.exists() {
        let msg = format!("json-server not found at {} (run `cargo xtask test`)", bin.display());
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(&bin)
        .args(["-q", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg(db)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "json-server did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some((server, format!("http://127.0.0.1:{port}")))
}

#[test]
fn pipeline_file_with_a_rest_api_source() {
    let dir = tempfile::tempdir().unwrap();
    let posts: Vec<serde_json::Value> = (1..=7)
        .map(|i| serde_json::json!({"id": i, "title": format!("t{i}"), "labels": [{"name": format!("l{i}")}]}))
        .collect();
    let comments: Vec<serde_json::Value> =
        (1..=7).map(|i| serde_json::json!({"id": 100 + i, "postId": 1 + i % 3, "body": format!("c{i}")})).collect();
    let db_json = dir.path().join("db.json");
    std::fs::write(&db_json, serde_json::json!({"posts": posts, "comments": comments}).to_string()).unwrap();
    let Some((_server, url)) = json_server(&db_json) else { return };
    let file = dir.path().join("pipeline.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[pipeline]
name = "blog"
destination = "duckdb"
dataset_name = "blog_data"
pipelines_dir = "pipelines"

[source]
type = "rest_api"
[source.client]
base_url = "{url}"
paginator = "header_link"

[[source.resources]]
name = "posts"
write_disposition = "replace"
endpoint = {{ path = "posts", params = {{ _page = 1, _limit = 3 }} }}

[[source.resources]]
name = "comments"
include_from_parent = ["title"]
endpoint = {{ path = "posts/{{resources.posts.id}}/comments", paginator = "single_page" }}
"#
        ),
    )
    .unwrap();
    let pf = dlt::PipelineFile::load(&file).unwrap();
    let registry = dlt::registry();
    assert!(registry.source_names().contains(&"rest_api"));
    let mut p = pf.pipeline(&registry, None).unwrap();
    let config = p.config().clone();
    let info = p.run(pf.source(&registry, &config).unwrap()).unwrap();
    assert_eq!(info.row_counts["posts"], 7);
    assert_eq!(info.row_counts["posts__labels"], 7);
    assert_eq!(info.row_counts["comments"], 7);
    let db = dir.path().join("blog.duckdb");
    let got = query(&db, "SELECT id, title FROM blog_data.posts ORDER BY id");
    let want: Vec<Vec<Option<String>>> = (1..=7).map(|i| vec![Some(i.to_string()), Some(format!("t{i}"))]).collect();
    assert_eq!(got, want);
    let got = query(&db, "SELECT id, post_id, body, _posts_title FROM blog_data.comments ORDER BY id");
    let want: Vec<Vec<Option<String>>> = (1..=7)
        .map(|i| {
            let post = 1 + i % 3;
            vec![Some((100 + i).to_string()), Some(post.to_string()), Some(format!("c{i}")), Some(format!("t{post}"))]
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(scalar(&db, "SELECT count(*) FROM blog_data._dlt_loads"), "1");
}
