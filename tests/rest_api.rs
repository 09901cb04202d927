//! `dlt run`'s path for a `[source] type = "rest_api"` pipeline file: the facade's registry builds
//! the source, the pipeline loads a real json-server (0.17.4) into DuckDB, and an independent
//! DuckDB connection reads the rows back.
#![cfg(feature = "rest_api")]

use dlt_testkit::services::json_server;

mod common;
use common::{query, scalar};

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
    let Some(server) = json_server(&db_json) else { return };
    let url = server.url.clone();
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
