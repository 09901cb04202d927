//! The example's own `dlt` binary runs a pipeline file into the example destination, offers it
//! in `dlt init`, and reports it in `dlt pipeline … info`.

use std::process::Command;

fn custom_dlt(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_custom-dlt"))
        .args(args)
        .current_dir(dir)
        .env("DLT_DATA_DIR", dir.join("home"))
        .output()
        .unwrap()
}

#[test]
fn a_custom_binary_runs_a_pipeline_file_into_the_custom_destination() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/events.jsonl"), "{\"id\": 1, \"tags\": [\"a\"]}\n{\"id\": 2}\n").unwrap();
    std::fs::write(
        dir.path().join("events.toml"),
        "[pipeline]\nname = \"ev\"\ndestination = \"jsonl_folder\"\ndataset_name = \"ev_data\"\n\n\
         [destination]\nfolder = \"out\"\n\n[source]\ntype = \"files\"\n\n\
         [[source.resources]]\nname = \"events\"\npath = \"data/events.jsonl\"\n",
    )
    .unwrap();
    let out = custom_dlt(dir.path(), &["run", "events.toml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = dir.path().join("out/ev_data/events");
    let mut ids: Vec<i64> = std::fs::read_dir(&table)
        .unwrap()
        .flat_map(|f| {
            std::fs::read_to_string(f.unwrap().path()).unwrap().lines().map(str::to_string).collect::<Vec<_>>()
        })
        .map(|l| serde_json::from_str::<serde_json::Value>(&l).unwrap()["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [1, 2]);
    assert!(dir.path().join("out/ev_data/events__tags").is_dir());
    assert_eq!(std::fs::read_dir(dir.path().join("out/ev_data/_dlt_loads")).unwrap().count(), 1);

    let info = custom_dlt(dir.path(), &["pipeline", "ev", "info"]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success() && text.contains("Dataset ev_data at"), "{text}");

    let init_dir = dir.path().join("proj");
    std::fs::create_dir(&init_dir).unwrap();
    let init = custom_dlt(&init_dir, &["init", "files", "jsonl_folder"]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let config = std::fs::read_to_string(init_dir.join(".dlt/config.toml")).unwrap();
    assert!(config.contains("[destination.jsonl_folder]"), "{config}");
}
