//! End-to-end tests through the `dlt` facade against a real DuckDB file, read back with an
//! independent DuckDB connection (not through dlt-rs).

use std::sync::Arc;

use dlt::{Resource, destinations};
use serde_json::{Value, json};

mod common;
use common::{Env, columns, query, scalar};

fn issues(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "id": i,
                "title": format!("issue {i}"),
                "createdAt": "2024-01-02T03:04:05Z",
                "user": {"login": format!("u{}", i % 7), "siteAdmin": i % 2 == 0},
                "labels": (0..(i % 3)).map(|l| json!({"name": format!("l{l}")})).collect::<Vec<_>>(),
                "tags": ["a", "b"],
            })
        })
        .collect()
}

#[test]
fn nested_records_land_as_dlt_tables() {
    let env = Env::new();
    let mut p = env.pipeline("gh", "gh_data");
    let info = p.run(Resource::from_values("Issues", issues(30))).unwrap();
    assert_eq!(info.row_counts["issues"], 30);
    assert_eq!(info.row_counts["issues__labels"], 30); // 0+1+2 per 3 issues
    assert_eq!(info.row_counts["issues__tags"], 60);
    assert_eq!(info.row_counts["_dlt_pipeline_state"], 1);
    assert!(!info.has_failed_jobs());
    let db = env.db();
    let cols = columns(&db, "gh_data", "issues");
    let names: Vec<&str> = cols.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["id", "title", "created_at", "user__login", "user__site_admin", "_dlt_load_id", "_dlt_id"]);
    assert_eq!(cols[2].1, "TIMESTAMP WITH TIME ZONE");
    assert_eq!(cols[4].1, "BOOLEAN");
    assert_eq!(cols[5], ("_dlt_load_id".into(), "VARCHAR".into(), "NO".into()));
    let child = columns(&db, "gh_data", "issues__labels");
    let names: Vec<&str> = child.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["name", "_dlt_parent_id", "_dlt_list_idx", "_dlt_id"]);
    // every child row points at an existing parent; ids are unique
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM gh_data.issues__labels c LEFT JOIN gh_data.issues p ON c._dlt_parent_id = p._dlt_id WHERE p._dlt_id IS NULL"
        ),
        "0"
    );
    assert_eq!(scalar(&db, "SELECT count(DISTINCT _dlt_id) FROM gh_data.issues"), "30");
    assert_eq!(scalar(&db, "SELECT max(length(_dlt_id)) FROM gh_data.issues"), "14");
    assert_eq!(
        scalar(
            &db,
            "SELECT string_agg(value, ',' ORDER BY _dlt_list_idx) FROM gh_data.issues__tags t JOIN gh_data.issues i ON t._dlt_parent_id = i._dlt_id WHERE i.id = 5"
        ),
        "a,b"
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT strftime(created_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S') FROM gh_data.issues WHERE id = 1"
        ),
        "2024-01-02 03:04:05"
    );
    // system tables as dlt writes them
    let loads = query(&db, "SELECT load_id, schema_name, status FROM gh_data._dlt_loads");
    assert_eq!(loads.len(), 1);
    assert_eq!(loads[0][0].as_deref(), Some(info.load_ids[0].as_str()));
    assert_eq!(loads[0][1].as_deref(), Some("gh"));
    assert_eq!(loads[0][2].as_deref(), Some("0"));
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM gh_data.issues WHERE _dlt_load_id <> (SELECT load_id FROM gh_data._dlt_loads)"
        ),
        "0"
    );
    let schema_doc = scalar(&db, "SELECT schema FROM gh_data._dlt_version");
    let schema: Value = serde_json::from_str(&schema_doc).unwrap();
    assert_eq!(schema["name"], "gh");
    assert_eq!(schema["tables"]["issues__labels"]["parent"], "issues");
    let state = scalar(&db, "SELECT state FROM gh_data._dlt_pipeline_state");
    assert!(state.starts_with("eNp"), "{state}");
    let decoded = dlt::dlt_core::state::PipelineState::decode_from_destination(&state).unwrap();
    assert_eq!(decoded.get("dataset_name"), Some(&json!("gh_data")));
}

#[test]
fn append_then_replace_truncates_the_whole_chain() {
    let env = Env::new();
    let mut p = env.pipeline("r", "rd");
    p.run(Resource::from_values("items", issues(10))).unwrap();
    p.run(Resource::from_values("items", issues(10))).unwrap();
    let db = env.db();
    assert_eq!(scalar(&db, "SELECT count(*) FROM rd.items"), "20");
    assert_eq!(scalar(&db, "SELECT count(*) FROM rd._dlt_loads"), "2");
    // the second run did not change the state: one state row only
    assert_eq!(scalar(&db, "SELECT count(*) FROM rd._dlt_pipeline_state"), "1");
    let r = Resource::from_values("items", issues(4)).write_disposition(dlt::WriteDisposition::Replace);
    p.run(r).unwrap();
    assert_eq!(scalar(&db, "SELECT count(*) FROM rd.items"), "4");
    assert_eq!(scalar(&db, "SELECT count(*) FROM rd.items__tags"), "8");
    assert_eq!(scalar(&db, "SELECT count(*) FROM rd.items__labels"), "3");
    // replacing with nothing empties root and children
    let r = Resource::from_values("items", Vec::<Value>::new()).write_disposition(dlt::WriteDisposition::Replace);
    p.run(r).unwrap();
    assert_eq!(scalar(&db, "SELECT count(*) FROM rd.items"), "0");
    assert_eq!(scalar(&db, "SELECT count(*) FROM rd.items__tags"), "0");
}

#[test]
fn sql_client_and_read_table() {
    let env = Env::new();
    let mut p = env.pipeline("s", "sd");
    p.run(Resource::from_values("t", vec![json!({"a": 1}), json!({"a": 2})])).unwrap();
    let mut c = p.sql_client().unwrap();
    let b = c.query("SELECT sum(a)::BIGINT AS s FROM t").unwrap();
    let s = b[0].column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().value(0);
    assert_eq!(s, 3);
    drop(c);
    let batches = p.read_table("t").unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    assert!(batches[0].schema().field_with_name("_dlt_id").is_ok());
}

#[test]
fn malformed_jsonl_names_file_and_line_and_leaves_destination_untouched() {
    let env = Env::new();
    let good = env.root.join("good.jsonl");
    std::fs::write(&good, "{\"id\": 1, \"v\": \"a\"}\n{\"id\": 2, \"v\": \"b\"}\n").unwrap();
    let bad = env.root.join("bad.jsonl");
    std::fs::write(&bad, "{\"id\": 3, \"v\": \"c\"}\n\n{\"id\": 4, \"v\": oops}\n{\"id\": 5}\n").unwrap();
    let mut p = env.pipeline("m", "md");
    let r = dlt::sources::files::resource("events", "good.jsonl", &env.root, None).unwrap();
    p.run(r).unwrap();
    let r = dlt::sources::files::resource("events", "bad.jsonl", &env.root, None).unwrap();
    let err = p.run(r).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("bad.jsonl:3"), "{msg}");
    assert_eq!(err.step(), Some(dlt::Step::Extract));
    let db = env.db();
    assert_eq!(scalar(&db, "SELECT count(*) FROM md.events"), "2");
    assert_eq!(scalar(&db, "SELECT count(*) FROM md._dlt_loads"), "1");
    assert!(!p.has_pending_packages().unwrap(), "a failed extract leaves no package behind");
    // the next good run works and loads only its own rows
    let r = dlt::sources::files::resource("events", "good.jsonl", &env.root, None).unwrap();
    p.run(r).unwrap();
    assert_eq!(scalar(&db, "SELECT count(*) FROM md.events"), "4");
}

#[test]
fn wrong_duckdb_path_is_a_clear_error_and_loses_nothing() {
    let env = Env::new();
    let mut p = dlt::pipeline("w")
        .destination(destinations::duckdb(env.root.join("no/such/dir/x.duckdb")))
        .pipelines_dir(env.root.join("pipelines"))
        .config(dlt::Config::from_parts(vec![], None, None))
        .build()
        .unwrap();
    let err = p.run(Resource::from_values("t", vec![json!({"a": 1})])).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("no/such/dir") && msg.contains("does not exist"), "{msg}");
    // the state cannot be restored from an unreachable destination: the run stops before
    // extracting (as dlt's sync step), rather than extracting on a state that may be stale
    assert_eq!(err.step(), Some(dlt::Step::Sync));
    assert!(!p.has_pending_packages().unwrap());
    std::fs::create_dir_all(env.root.join("no/such/dir")).unwrap();
    let info = p.run(Resource::from_values("t", vec![json!({"a": 2})])).unwrap();
    assert_eq!(info.load_ids.len(), 1);
    assert_eq!(
        scalar(
            &env.root.join("no/such/dir/x.duckdb"),
            "SELECT string_agg(a::VARCHAR, ',' ORDER BY a) FROM w_dataset.t"
        ),
        "2"
    );
    // a directory where the database file should be
    let mut p = dlt::pipeline("w2")
        .destination(destinations::duckdb(&env.root))
        .pipelines_dir(env.root.join("pipelines"))
        .config(dlt::Config::from_parts(vec![], None, None))
        .build()
        .unwrap();
    let err = p.run(Resource::from_values("t", vec![json!({"a": 1})])).unwrap_err();
    assert!(err.to_string().contains("cannot open DuckDB database"), "{err}");
}

#[test]
fn state_and_schema_restore_from_the_destination() {
    let env = Env::new();
    let mut p = env.pipeline("rs", "rsd");
    p.run(Resource::from_values("t", vec![json!({"a": 1, "l": [1, 2]})])).unwrap();
    let hash = p.state().version_hash().to_string();
    let wd = p.working_dir().to_path_buf();
    drop(p);
    std::fs::remove_dir_all(&wd).unwrap();
    let mut p = env.pipeline("rs", "rsd");
    assert!(p.sync_destination().unwrap());
    assert_eq!(p.state().version_hash(), hash);
    let schema = p.schema("rs").unwrap().unwrap();
    assert!(schema.tables.contains_key("t__l"));
}

#[test]
fn arrow_and_csv_items_pass_through() {
    let env = Env::new();
    std::fs::write(env.root.join("u.csv"), "User Id,Name,Score\n1,a,1.5\n2,b,\n").unwrap();
    let mut p = env.pipeline("c", "cd");
    let r = dlt::sources::files::resource("users", "u.csv", &env.root, None).unwrap();
    let info = p.run(r).unwrap();
    assert_eq!(info.row_counts["users"], 2);
    let cols = columns(&env.db(), "cd", "users");
    let names: Vec<&str> = cols.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["user_id", "name", "score"]);
    assert_eq!(scalar(&env.db(), "SELECT count(*) FROM cd.users WHERE score IS NULL"), "1");
}

#[test]
fn dataset_defaults_and_dev_mode() {
    let env = Env::new();
    let p = dlt::pipeline("My Pipe")
        .destination(destinations::duckdb(env.db()))
        .pipelines_dir(env.root.join("pipelines"))
        .config(dlt::Config::from_parts(vec![], None, None))
        .build()
        .unwrap();
    assert_eq!(p.dataset_name(), "my_pipe_dataset");
    let p = dlt::pipeline("dev")
        .destination(destinations::duckdb(env.db()))
        .dataset_name("d")
        .dev_mode(true)
        .pipelines_dir(env.root.join("pipelines"))
        .config(dlt::Config::from_parts(vec![], None, None))
        .build()
        .unwrap();
    assert!(p.dataset_name().starts_with("d_") && p.dataset_name().len() == "d_".len() + 14, "{}", p.dataset_name());
}

/// A third-party source: registered by name, usable from a pipeline file.
struct Counter;

impl dlt::SourceFactory for Counter {
    fn name(&self) -> &'static str {
        "counter"
    }
    fn build(&self, config: &toml::Table, ctx: &dlt::SourceContext<'_>) -> dlt::Result<dlt::Source> {
        let n = config.get("count").and_then(|v| v.as_integer()).unwrap_or(3);
        let r = Resource::from_values("numbers", (0..n).map(|i| json!({"n": i, "sq": i * i})));
        Ok(dlt::Source::new(ctx.pipeline_name, vec![r]))
    }
}

#[test]
fn third_party_source_through_a_pipeline_file() {
    let env = Env::new();
    std::fs::write(
        env.root.join("p.toml"),
        format!(
            "[pipeline]\nname = \"ext\"\ndataset_name = \"ext_data\"\npipelines_dir = \"pipes\"\n\n[destination]\ncredentials = \"{}\"\n\n[source]\ntype = \"counter\"\ncount = 5\n",
            env.db().display()
        ),
    )
    .unwrap();
    let mut registry = dlt::registry();
    registry.register_source(std::sync::Arc::new(Counter));
    let pf = dlt::PipelineFile::load(&env.root.join("p.toml")).unwrap();
    let mut p = pf.pipeline(&registry, None).unwrap();
    let src = pf.source(&registry, p.config()).unwrap();
    let info = p.run(src).unwrap();
    assert_eq!(info.row_counts["numbers"], 5);
    assert_eq!(scalar(&env.db(), "SELECT sum(sq) FROM ext_data.numbers"), "30");
    // an unknown source type names the compiled-in ones
    std::fs::write(env.root.join("q.toml"), "[pipeline]\nname = \"q\"\n[source]\ntype = \"nope\"\n").unwrap();
    let pf = dlt::PipelineFile::load(&env.root.join("q.toml")).unwrap();
    let err = pf.source(&dlt::registry(), &dlt::Config::default()).unwrap_err().to_string();
    assert!(err.contains("unknown source type `nope`") && err.contains("files"), "{err}");
}

#[test]
fn schema_export_and_user_edited_import() {
    let env = Env::new();
    let build = || {
        dlt::pipeline("imp")
            .destination(destinations::duckdb(env.db()))
            .dataset_name("imp_data")
            .pipelines_dir(env.root.join("pipelines"))
            .import_schema_path(env.root.join("schemas/import"))
            .export_schema_path(env.root.join("schemas/export"))
            .config(dlt::Config::from_parts(vec![], None, None))
            .build()
            .unwrap()
    };
    let mut p = build();
    p.run(Resource::from_values("items", vec![json!({"id": 1, "name": "a"})])).unwrap();
    let exported = std::fs::read_to_string(env.root.join("schemas/export/imp.schema.yaml")).unwrap();
    assert!(exported.contains("items:") && exported.contains("data_type: bigint"), "{exported}");
    let import_file = env.root.join("schemas/import/imp.schema.yaml");
    let imported = std::fs::read_to_string(&import_file).unwrap();
    assert!(imported.contains("name: imp"), "{imported}");
    // the user declares a type for a column that does not exist yet
    let edited =
        exported.replacen("items:\n    columns:\n", "items:\n    columns:\n      zip:\n        data_type: text\n", 1);
    assert_ne!(edited, exported, "the export has the expected layout");
    std::fs::write(&import_file, edited).unwrap();
    drop(p);
    let mut p = build();
    p.run(Resource::from_values("items", vec![json!({"id": 2, "name": "b", "zip": 12345})])).unwrap();
    let cols = columns(&env.db(), "imp_data", "items");
    let zip = cols.iter().find(|c| c.0 == "zip").expect("zip column");
    assert_eq!(zip.1, "VARCHAR");
    assert_eq!(scalar(&env.db(), "SELECT zip FROM imp_data.items WHERE id = 2"), "12345");
    // a broken import file is a clear error naming it
    std::fs::write(&import_file, "tables: [not a schema").unwrap();
    drop(p);
    let mut p = build();
    let err = p.run(Resource::from_values("items", vec![json!({"id": 3})])).unwrap_err().to_string();
    assert!(err.contains("imp.schema.yaml"), "{err}");
}

#[test]
fn naming_convention_from_config_and_arrow_dlt_columns() {
    let env = Env::new();
    let cfg = dlt::Config::from_parts(
        vec![
            ("SCHEMA__NAMING".into(), "duck_case".into()),
            ("NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID".into(), "true".into()),
            ("NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_ID".into(), "true".into()),
        ],
        None,
        None,
    );
    let mut p = dlt::pipeline("nc")
        .destination(destinations::duckdb(env.db()))
        .dataset_name("nc_data")
        .pipelines_dir(env.root.join("pipelines"))
        .config(cfg)
        .build()
        .unwrap();
    p.run(Resource::from_values("MyEvents", vec![json!({"userId": 1, "Payload": {"Inner Key": "x"}})])).unwrap();
    let cols = columns(&env.db(), "nc_data", "MyEvents");
    let names: Vec<&str> = cols.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["userId", "Payload__Inner Key", "_dlt_load_id", "_dlt_id"]);
    assert_eq!(p.schema("nc").unwrap().unwrap().normalizers["names"], "duck_case");
    // arrow items get _dlt_load_id and _dlt_id when configured
    std::fs::write(env.root.join("a.csv"), "k\n1\n2\n").unwrap();
    let r = dlt::sources::files::resource("arrows", "a.csv", &env.root, None).unwrap();
    let info = p.run(r).unwrap();
    let load_id = info.load_ids.last().unwrap().clone();
    assert_eq!(
        scalar(&env.db(), &format!("SELECT count(*) FROM nc_data.arrows WHERE _dlt_load_id = '{load_id}'")),
        "2"
    );
    assert_eq!(scalar(&env.db(), "SELECT count(DISTINCT _dlt_id) FROM nc_data.arrows"), "2");
    // an unknown convention is a clear error
    let err = dlt::pipeline("bad")
        .destination(destinations::duckdb(env.db()))
        .pipelines_dir(env.root.join("pipelines"))
        .config(dlt::Config::from_parts(vec![("SCHEMA__NAMING".into(), "kebab".into())], None, None))
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown naming convention `kebab`"), "{err}");
}

#[test]
fn duckdb_insert_from_staging_and_unsupported_strategy() {
    let env = Env::new();
    let build = |strategy: &str| {
        dlt::pipeline("rs")
            .destination(destinations::duckdb(env.db()))
            .dataset_name("rsd")
            .pipelines_dir(env.root.join("pipelines"))
            .config(dlt::Config::from_parts(
                vec![("DESTINATION__REPLACE_STRATEGY".into(), strategy.into())],
                None,
                None,
            ))
            .build()
            .unwrap()
    };
    let mut p = build("insert-from-staging");
    let r = |rows: Vec<Value>| Resource::from_values("r", rows).write_disposition(dlt::WriteDisposition::Replace);
    p.run(r(vec![json!({"id": 1, "l": [1, 2]})])).unwrap();
    p.run(r(vec![json!({"id": 2, "l": [3]})])).unwrap();
    assert_eq!(scalar(&env.db(), "SELECT string_agg(id::VARCHAR, ',') FROM rsd.r"), "2");
    assert_eq!(scalar(&env.db(), "SELECT string_agg(value::VARCHAR, ',') FROM rsd.r__l"), "3");
    drop(p);
    let mut p = build("staging-optimized");
    let err = p.run(r(vec![json!({"id": 3})])).unwrap_err().to_string();
    assert!(err.contains("does not support the replace strategy `staging-optimized`"), "{err}");
    // refused before extraction: nothing is left pending
    for stage in ["normalize/extracted", "load/normalized"] {
        let d = p.working_dir().join(stage);
        assert_eq!(std::fs::read_dir(&d).map(|r| r.count()).unwrap_or(0), 0, "{}", d.display());
    }
}

#[test]
fn upsert_with_duplicate_keys_in_one_load_keeps_the_last_row() {
    let env = Env::new();
    let mut p = env.pipeline("ups", "ups_data");
    let up = |rows: Vec<Value>| {
        let mut wd = dlt::WriteDispositionConfig { disposition: dlt::WriteDisposition::Merge, ..Default::default() };
        wd.strategy = Some(dlt::MergeStrategy::Upsert);
        Resource::from_values("u", rows).write_disposition(wd).primary_key(["id"])
    };
    p.run(up(vec![json!({"id": 1, "v": "a"}), json!({"id": 1, "v": "b"}), json!({"id": 2, "v": "c", "l": [1]})]))
        .unwrap();
    assert_eq!(scalar(&env.db(), "SELECT string_agg(id || v, ',' ORDER BY id) FROM ups_data.u"), "1b,2c");
    p.run(up(vec![json!({"id": 2, "v": "d", "l": [7, 8]}), json!({"id": 2, "v": "e", "l": [9]})])).unwrap();
    assert_eq!(scalar(&env.db(), "SELECT string_agg(id || v, ',' ORDER BY id) FROM ups_data.u"), "1b,2e");
    // the earlier duplicate's nested rows are gone with it
    assert_eq!(scalar(&env.db(), "SELECT string_agg(value::VARCHAR, ',' ORDER BY value) FROM ups_data.u__l"), "9");
}

#[test]
fn transient_faults_are_retried_and_terminal_ones_leave_the_package_pending() {
    use dlt_testkit::fault::{FaultConfig, Faulty};
    let env = Env::new();
    let cfg = || {
        dlt::Config::from_parts(
            vec![("LOAD__RETRY_BACKOFF_MS".into(), "1".into()), ("LOAD__RAISE_ON_MAX_RETRIES".into(), "20".into())],
            None,
            None,
        )
    };
    let build = |d: Arc<Faulty>| {
        dlt::pipeline("flt")
            .destination(d)
            .dataset_name("flt_data")
            .pipelines_dir(env.root.join("pipelines"))
            .config(cfg())
            .build()
            .unwrap()
    };
    // half of all commits fail transiently: every run still loads, each row once
    let faulty = Arc::new(Faulty::new(
        destinations::duckdb(env.db()),
        FaultConfig { retry_prob: 0.5, seed: 42, ..Default::default() },
    ));
    let injected = faulty.injected.clone();
    let mut p = build(faulty);
    for round in 0..8 {
        let rows: Vec<Value> = (0..10).map(|i| json!({"id": round * 10 + i})).collect();
        p.run(Resource::from_values("t", rows)).unwrap();
    }
    assert!(injected.lock().unwrap().0 >= 3, "faults were injected: {:?}", injected.lock().unwrap());
    assert_eq!(scalar(&env.db(), "SELECT count(*) FROM flt_data.t"), "80");
    assert_eq!(scalar(&env.db(), "SELECT count(DISTINCT id) FROM flt_data.t"), "80");
    assert_eq!(scalar(&env.db(), "SELECT count(*) FROM flt_data._dlt_loads"), "8");
    drop(p);
    // every commit fails terminally: the package stays pending with the reason, no retries
    let faulty = Arc::new(Faulty::new(
        destinations::duckdb(env.db()),
        FaultConfig { fail_prob: 1.0, seed: 1, ..Default::default() },
    ));
    let injected = faulty.injected.clone();
    let mut p = build(faulty);
    let err = p.run(Resource::from_values("t", vec![json!({"id": 1000})])).unwrap_err().to_string();
    assert!(err.contains("injected terminal failure"), "{err}");
    assert_eq!(*injected.lock().unwrap(), (0, 1));
    assert!(p.has_pending_packages().unwrap());
    let pending = p.packages().list(dlt::dlt_core::package::PackageStage::Normalized).unwrap();
    let exc =
        std::fs::read_to_string(p.packages().normalized_dir().join(&pending[0]).join("failed_jobs/package.exception"))
            .unwrap();
    assert!(exc.contains("injected terminal failure"), "{exc}");
    drop(p);
    // the real destination completes it
    let mut p = env.pipeline("flt", "flt_data");
    p.run(Resource::from_values("t", vec![json!({"id": 1001})])).unwrap();
    assert_eq!(scalar(&env.db(), "SELECT count(*) FROM flt_data.t"), "82");
}

#[test]
fn refresh_modes_and_state_only_drop() {
    let env = Env::new();
    let mut p = env.pipeline("rf", "rf_data");
    let inc = |ids: std::ops::Range<i64>| {
        let hints = dlt::ResourceHints::from_json(&json!({"incremental": {"cursor_path": "id"}})).unwrap();
        Resource::from_values("ev", ids.map(|i| json!({"id": i, "l": [i]})).collect::<Vec<_>>()).with_hints(hints)
    };
    let other = || Resource::from_values("other", vec![json!({"x": 1})]);
    p.run(vec![inc(0..10), other()]).unwrap();
    p.run(inc(0..15)).unwrap();
    assert_eq!(scalar(&env.db(), "SELECT count(*) FROM rf_data.ev"), "15", "incremental: only new rows");
    // drop_data: the resource's tables are emptied and its cursor reset, in the same load
    p.run_with_refresh(inc(0..12), Some(dlt::Refresh::DropData)).unwrap();
    assert_eq!(scalar(&env.db(), "SELECT count(*) FROM rf_data.ev"), "12");
    assert_eq!(scalar(&env.db(), "SELECT count(*) FROM rf_data.ev__l"), "12");
    assert_eq!(scalar(&env.db(), "SELECT count(*) FROM rf_data.other"), "1", "other resources keep their data");
    // drop_resources: the tables are dropped, so a changed type starts fresh
    let changed = Resource::from_values("ev", vec![json!({"id": "a-text-id"})]);
    p.run_with_refresh(changed, Some(dlt::Refresh::DropResources)).unwrap();
    let cols = columns(&env.db(), "rf_data", "ev");
    assert_eq!(cols[0], ("id".into(), "VARCHAR".into(), "YES".into()));
    assert_eq!(
        scalar(
            &env.db(),
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'rf_data' AND table_name = 'ev__l'"
        ),
        "0"
    );
    // drop_sources: every table of the source goes, other resources included
    p.run_with_refresh(inc(0..3), Some(dlt::Refresh::DropSources)).unwrap();
    assert_eq!(
        scalar(
            &env.db(),
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'rf_data' AND table_name = 'other'"
        ),
        "0"
    );
    assert_eq!(scalar(&env.db(), "SELECT count(*) FROM rf_data.ev"), "3");
    // a state-only drop keeps the rows and resets the cursor: the next run loads everything again
    p.drop_resources_with("rf", &["ev".to_string()], &dlt::DropOptions { state_only: true, ..Default::default() })
        .unwrap();
    assert_eq!(scalar(&env.db(), "SELECT count(*) FROM rf_data.ev"), "3");
    p.run(inc(0..5)).unwrap();
    assert_eq!(scalar(&env.db(), "SELECT count(*) FROM rf_data.ev"), "8");
    // state paths: remove only the cursor
    p.drop_resources_with(
        "rf",
        &[],
        &dlt::DropOptions { state_only: true, state_paths: vec!["resources.ev.incremental".into()] },
    )
    .unwrap();
    let st = p.state().get("sources").cloned().unwrap();
    assert!(st["rf"]["resources"].get("ev").is_some_and(|ev| ev.get("incremental").is_none()), "{st}");
}

#[test]
fn deferred_resource_sees_its_window_and_keeps_its_own_state() {
    use dlt::dlt_core::incremental::{IncrementalConfig, LastValueFn};
    let env = Env::new();
    let mut p = env.pipeline("dfr", "dfr_data");
    // an "API" with ids 0..n: the resource asks only for ids after the cursor
    let make = |n: i64| {
        let mut cfg = IncrementalConfig::new("id");
        cfg.initial_value = Some(json!(2));
        Resource::deferred("api", move |ctx| {
            let since = ctx.start_value.clone().and_then(|v| v.as_i64()).unwrap_or(0);
            let calls = ctx.state().get("calls").and_then(Value::as_i64).unwrap_or(0);
            ctx.state().insert("calls".into(), json!(calls + 1));
            ctx.state().insert("asked_since".into(), json!(since));
            (since..n).map(|i| Ok::<_, dlt::Error>(json!({"id": i})))
        })
        .incremental(cfg)
    };
    p.run(make(5)).unwrap();
    p.run(make(8)).unwrap();
    // ids 2..5 then 5..8 (the boundary row 4 was asked for again and deduplicated)
    assert_eq!(scalar(&env.db(), "SELECT string_agg(id::VARCHAR, ',' ORDER BY id) FROM dfr_data.api"), "2,3,4,5,6,7");
    let state = p.state().get("sources").cloned().unwrap();
    assert_eq!(state["dfr"]["resources"]["api"]["calls"], json!(2), "{state}");
    assert_eq!(state["dfr"]["resources"]["api"]["asked_since"], json!(4));
    assert_eq!(state["dfr"]["resources"]["api"]["incremental"]["id"]["last_value"], json!(7));
    // the state reached the destination with the load
    let stored = scalar(&env.db(), "SELECT state FROM dfr_data._dlt_pipeline_state ORDER BY version DESC LIMIT 1");
    let decoded = dlt::dlt_core::state::PipelineState::decode_from_destination(&stored).unwrap();
    assert_eq!(decoded.get("sources").unwrap()["dfr"]["resources"]["api"]["calls"], json!(2));
    // a Rust last_value_func: the longest string wins
    let mut cfg = IncrementalConfig::new("name");
    cfg.last_value_fn = Some(LastValueFn(Arc::new(|a: &Value, b: &Value| {
        a.as_str().unwrap_or("").len() > b.as_str().unwrap_or("").len()
    })));
    let r = Resource::from_values("names", vec![json!({"name": "ab"}), json!({"name": "abcd"}), json!({"name": "x"})])
        .incremental(cfg.clone());
    p.run(r).unwrap();
    let r = Resource::from_values("names", vec![json!({"name": "abc"}), json!({"name": "abcdef"})]).incremental(cfg);
    p.run(r).unwrap();
    assert_eq!(scalar(&env.db(), "SELECT string_agg(name, ',' ORDER BY name) FROM dfr_data.names"), "ab,abcd,abcdef,x");
}

/// Records the extract step's progress reports.
#[derive(Default)]
struct ExtractProgress(std::sync::Mutex<Vec<u64>>);

impl dlt::Progress for ExtractProgress {
    fn step_started(&self, _: dlt::Step, _: &str) {}
    fn items(&self, step: dlt::Step, count: u64) {
        if step == dlt::Step::Extract {
            self.0.lock().unwrap().push(count);
        }
    }
    fn step_finished(&self, _: dlt::Step) {}
}

/// A JSONL file of several read blocks (4 MiB each): `n` rows of ~350 bytes, a blank line, a
/// whitespace-only line and a CRLF line now and then, and no newline after the last row.
fn big_jsonl(path: &std::path::Path, n: usize) {
    let mut s = String::new();
    for i in 0..n {
        if i % 1000 == 999 {
            s.push_str("\n  \n");
        }
        let kind = if i % 3 == 0 { "a" } else { "b" };
        s.push_str(&format!("{{\"id\": {i}, \"kind\": \"{kind}\", \"pad\": \"{}\"}}", "p".repeat(300)));
        if i + 1 < n {
            s.push_str(if i % 7 == 0 { "\r\n" } else { "\n" });
        }
    }
    assert!(s.len() > 2 * dlt::sources::files::JSONL_BLOCK_SIZE, "several blocks");
    std::fs::write(path, s).unwrap();
}

#[test]
fn jsonl_in_blocks_extracts_every_row_through_steps_cursors_and_table_names() {
    let env = Env::new();
    let n = 30_000;
    big_jsonl(&env.root.join("big.jsonl"), n);
    let files = |name: &str| dlt::sources::files::resource(name, "big.jsonl", &env.root, None).unwrap();
    let progress = Arc::new(ExtractProgress::default());
    let mut p = dlt::pipeline("jb")
        .destination(destinations::duckdb(env.db()))
        .dataset_name("jb_data")
        .pipelines_dir(env.root.join("pipelines"))
        .config(dlt::Config::from_parts(vec![], None, None))
        .progress(progress.clone())
        .build()
        .unwrap();
    // plain: every row, progress every 10,000 items as when items came one by one
    let info = p.run(files("plain")).unwrap();
    assert_eq!(info.row_counts.get("plain"), Some(&(n as u64)));
    assert_eq!(*progress.0.lock().unwrap(), [10_000, 20_000, 30_000, 30_000]);
    let db = env.db();
    assert_eq!(scalar(&db, "SELECT count(*) FROM jb_data.plain"), n.to_string());
    assert_eq!(scalar(&db, "SELECT count(DISTINCT id) FROM jb_data.plain"), n.to_string());
    assert_eq!(scalar(&db, "SELECT max(id) FROM jb_data.plain"), (n - 1).to_string());
    // a processing step sees every row
    let mapped = files("mapped").add_map(|mut v| {
        v["seen"] = json!(true);
        v
    });
    let info = p.run(mapped).unwrap();
    assert_eq!(info.row_counts.get("mapped"), Some(&(n as u64)));
    assert_eq!(scalar(&db, "SELECT count(*) FROM jb_data.mapped WHERE seen"), n.to_string());
    // an incremental cursor sees every row: only ids from the initial value on
    let hints =
        dlt::ResourceHints::from_json(&json!({"incremental": {"cursor_path": "id", "initial_value": 12345}})).unwrap();
    let info = p.run(files("inc").with_hints(hints)).unwrap();
    assert_eq!(info.row_counts.get("inc"), Some(&(n as u64 - 12345)));
    assert_eq!(scalar(&db, "SELECT min(id) FROM jb_data.inc"), "12345");
    // table names taken from each row
    let hints = dlt::ResourceHints::from_json(&json!({"table_name_from": "kind"})).unwrap();
    let info = p.run(files("kinds").with_hints(hints)).unwrap();
    assert_eq!(info.row_counts.get("a"), Some(&(n as u64).div_ceil(3)));
    assert_eq!(info.row_counts.get("b"), Some(&(n as u64 - (n as u64).div_ceil(3))));
    assert_eq!(scalar(&db, "SELECT count(*) FROM jb_data.b WHERE kind = 'b'"), (n - n.div_ceil(3)).to_string());
}

#[test]
fn malformed_line_deep_in_a_large_jsonl_file_loads_nothing() {
    let env = Env::new();
    let path = env.root.join("big.jsonl");
    big_jsonl(&path, 30_000);
    // break the row with id 25000: file line 25001, after 25 pairs of blank lines
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen("{\"id\": 25000,", "{\"id\": 25000 oops,", 1);
    let bad_line = text.lines().position(|l| l.contains("oops")).unwrap() + 1;
    assert_eq!(bad_line, 25_051);
    std::fs::write(&path, text).unwrap();
    let mut p = env.pipeline("jbad", "jbad_data");
    let r = dlt::sources::files::resource("events", "big.jsonl", &env.root, None).unwrap();
    let err = p.run(r).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("big.jsonl:{bad_line}:")) && msg.contains("malformed JSON"), "{msg}");
    assert_eq!(err.step(), Some(dlt::Step::Extract));
    assert!(!p.has_pending_packages().unwrap(), "a failed extract leaves no package behind");
    let tables = scalar(&env.db(), "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'jbad_data'");
    assert_eq!(tables, "0");
}

#[test]
fn hostile_keys_make_shortened_tables_and_never_a_stuck_package() {
    let env = Env::new();
    let mut p = env.pipeline("hk", "hk");
    let long_key = "k".repeat(250);
    let mut deep = json!([1, 2]);
    for _ in 0..100 {
        deep = json!([deep]);
    }
    let rows = vec![json!({"id": 1, long_key.clone(): [{"x": 1}, {"x": 2}], "deep": deep})];
    p.run(Resource::from_values("t", rows.clone())).unwrap();
    assert!(!p.has_pending_packages().unwrap());
    let db = env.db();
    let tables: Vec<String> = common::query(
        &db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'hk' AND table_name NOT LIKE '_dlt%' ORDER BY 1",
    )
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect();
    assert!(tables.iter().all(|t| t.len() <= dlt::dlt_core::naming::MAX_TABLE_NAME_LENGTH), "{tables:?}");
    // the long key's table holds its two rows; the 101 levels of lists made one table per level
    let long = tables.iter().find(|t| t.starts_with("t__kkkk")).expect("the long key's table");
    assert_eq!(scalar(&db, &format!("SELECT count(*) FROM hk.\"{long}\"")), "2");
    assert_eq!(tables.iter().filter(|t| t.starts_with("t__deep")).count(), 101, "{tables:?}");
    // the next run is clean and appends to the same tables
    p.run(Resource::from_values("t", rows)).unwrap();
    assert!(!p.has_pending_packages().unwrap());
    assert_eq!(scalar(&db, &format!("SELECT count(*) FROM hk.\"{long}\"")), "4");
}
