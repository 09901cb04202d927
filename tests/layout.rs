//! The workspace's rule that no connector depends on another: shared pieces live in core or in
//! a small shared crate (`crates/shared/*`, `dlt-sql`). Read from every connector's manifest.

use std::path::Path;

fn connectors(root: &Path) -> Vec<(String, toml::Table)> {
    let mut out = vec![];
    for group in ["crates/sources", "crates/destinations"] {
        for e in std::fs::read_dir(root.join(group)).unwrap() {
            let manifest = e.unwrap().path().join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
            let t: toml::Table = text.parse().unwrap();
            let name = t["package"]["name"].as_str().unwrap().to_string();
            // dlt-sql is the shared SQL loader, not a connector
            if name != "dlt-sql" {
                out.push((name, t));
            }
        }
    }
    out
}

#[test]
fn no_connector_depends_on_another_connector() {
    let all = connectors(Path::new(env!("CARGO_MANIFEST_DIR")));
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"dlt-duckdb") && names.contains(&"dlt-sql-database"), "{names:?}");
    for (name, manifest) in &all {
        let deps = manifest.get("dependencies").and_then(|d| d.as_table()).cloned().unwrap_or_default();
        let bad: Vec<&String> = deps.keys().filter(|d| names.contains(&d.as_str()) && *d != name).collect();
        assert!(bad.is_empty(), "{name} depends on the connector(s) {bad:?}; move the shared part to crates/shared");
    }
}
