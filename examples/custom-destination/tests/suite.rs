//! The testkit's destination conformance suite on the example destination, read back by
//! parsing its JSON lines files directly.

use std::path::Path;
use std::sync::Arc;

use custom_destination::JsonlFolder;
use dlt::dlt_core::destination::Destination;
use dlt_testkit::suite::{Place, Rows, Target};
use serde_json::Value;

struct Folder;

struct FolderPlace(tempfile::TempDir);

impl Target for Folder {
    fn fresh(&self) -> Box<dyn Place> {
        Box::new(FolderPlace(tempfile::tempdir().unwrap()))
    }
}

fn cell(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        v => Some(v.to_string()),
    }
}

impl Place for FolderPlace {
    fn destination(&self) -> Arc<dyn Destination> {
        Arc::new(JsonlFolder::new(self.0.path()))
    }

    fn rows(&self, dataset: &str, table: &str, columns: &[&str]) -> Option<Rows> {
        let dir = self.0.path().join(dataset).join(table);
        if !dir.is_dir() {
            return None;
        }
        let mut rows = vec![];
        for f in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
            if f.extension().and_then(|e| e.to_str()) != Some("jsonl") {
                continue;
            }
            for line in std::fs::read_to_string(Path::new(&f)).unwrap().lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                rows.push(columns.iter().map(|c| cell(&v[*c])).collect());
            }
        }
        Some(rows)
    }
}

#[test]
fn the_example_passes_the_suite() {
    let (ran, skipped) = dlt_testkit::suite::run(&Folder);
    assert!(ran.contains(&"state_restore") && ran.contains(&"a_lost_acknowledgement_loads_once"), "{ran:?}");
    assert!(skipped.iter().all(|s| s.starts_with("merge_") || s.starts_with("replace_")), "{skipped:?}");
}
