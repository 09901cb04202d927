//! The destination conformance suite: the behaviour every destination owes the pipeline,
//! checked the same way for dlt-rs' own destinations and for a third-party crate.
//!
//! A destination crate implements [`Target`] in its tests (a fresh place to load into and an
//! independent reader of what it holds) and calls [`run`]:
//!
//! ```ignore
//! #[test]
//! fn conformance() {
//!     dlt_testkit::suite::run(&MyTarget::new());
//! }
//! ```
//!
//! Cases the destination's capabilities rule out (a merge strategy it does not declare, a
//! replace strategy it does not support) are skipped and listed. Every case asserts on the rows
//! the reader returns, never on what dlt-rs says it loaded.

use std::sync::Arc;

use dlt_core::config::Config;
use dlt_core::destination::{Destination, ReplaceStrategy};
use dlt_core::incremental::IncrementalConfig;
use dlt_core::resource::{MergeStrategy, Resource, WriteDispositionConfig};
use dlt_core::schema::WriteDisposition;
use dlt_core::{Pipeline, PipelineBuilder};
use serde_json::{Value, json};

use crate::fault::{Fault, Faulty, JobFault};

/// Text cells of rows (`None` is NULL).
pub type Rows = Vec<Vec<Option<String>>>;

/// A destination under test.
pub trait Target {
    /// A fresh, empty place to load into (a new database, a new bucket prefix, …).
    fn fresh(&self) -> Box<dyn Place>;
}

/// One place a case loads into.
pub trait Place {
    /// The destination writing here.
    fn destination(&self) -> Arc<dyn Destination>;
    /// `columns` of every row of `dataset`.`table` as text (integers in decimal, NULL as
    /// `None`), read without dlt-rs; `None` when the table does not exist. Order is free.
    fn rows(&self, dataset: &str, table: &str, columns: &[&str]) -> Option<Rows>;
    /// Configuration for pipelines loading here, as environment variables (e.g.
    /// `DESTINATION__FILESYSTEM__TABLE_FORMAT=delta`).
    fn env(&self) -> Vec<(String, String)> {
        vec![]
    }
}

/// A case of the suite.
pub struct Case {
    /// Name, as reported.
    pub name: &'static str,
    /// Runs the case; panics on a failed check.
    pub run: fn(&Ctx),
    /// Whether the destination's capabilities allow the case.
    pub applies: fn(&dlt_core::destination::Capabilities) -> bool,
}

/// What a case works with: a fresh place, a pipelines folder and a dataset name.
pub struct Ctx {
    place: Box<dyn Place>,
    dir: std::path::PathBuf,
    /// The dataset cases load into.
    pub dataset: String,
}

impl Ctx {
    /// A pipeline named `name` loading to `destination` (the place's, unless a case wraps it).
    pub fn pipeline_to(&self, name: &str, destination: Arc<dyn Destination>) -> Pipeline {
        self.pipeline_with(name, destination, &[])
    }

    /// [`Ctx::pipeline_to`] with more configuration (`(ENV_NAME, value)`).
    pub fn pipeline_with(&self, name: &str, destination: Arc<dyn Destination>, env: &[(&str, &str)]) -> Pipeline {
        let mut vars = self.place.env();
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        PipelineBuilder::new(name)
            .normalizer(Arc::new(dlt_normalize::RelationalNormalizer))
            .destination(destination)
            .dataset_name(&self.dataset)
            .pipelines_dir(self.dir.join("pipelines"))
            .config(Config::from_parts(vars, None, None))
            .build()
            .expect("building a pipeline")
    }

    /// A pipeline named `name` loading to the place.
    pub fn pipeline(&self, name: &str) -> Pipeline {
        self.pipeline_to(name, self.place.destination())
    }

    /// Sorted rows of `table` (panics when the table does not exist).
    pub fn rows(&self, table: &str, columns: &[&str]) -> Rows {
        let mut r = self
            .place
            .rows(&self.dataset, table, columns)
            .unwrap_or_else(|| panic!("table {}.{table} does not exist", self.dataset));
        r.sort();
        r
    }

    /// Whether `table` exists.
    pub fn exists(&self, table: &str) -> bool {
        self.place.rows(&self.dataset, table, &["_dlt_id"]).is_some()
    }

    /// Number of rows of `table` (0 when it does not exist: a destination may drop a table
    /// that a replace emptied).
    pub fn count(&self, table: &str) -> usize {
        self.place.rows(&self.dataset, table, &["_dlt_id"]).map(|r| r.len()).unwrap_or(0)
    }

    /// The number of completed loads in `_dlt_loads`.
    pub fn loads(&self) -> usize {
        self.place
            .rows(&self.dataset, "_dlt_loads", &["load_id", "status"])
            .unwrap_or_default()
            .iter()
            .filter(|r| r[1].as_deref() == Some("0"))
            .count()
    }
}

fn text(rows: &Rows) -> Vec<String> {
    rows.iter()
        .map(|r| r.iter().map(|c| c.clone().unwrap_or_else(|| "∅".into())).collect::<Vec<_>>().join("|"))
        .collect()
}

fn res(name: &str, rows: Vec<Value>) -> Resource {
    Resource::from_values(name, rows)
}

fn merge(name: &str, strategy: MergeStrategy, rows: Vec<Value>) -> Resource {
    let wd =
        WriteDispositionConfig { disposition: WriteDisposition::Merge, strategy: Some(strategy), ..Default::default() };
    res(name, rows).write_disposition(wd)
}

fn items(ids: &[i64], version: &str) -> Vec<Value> {
    ids.iter()
        .map(|i| json!({"id": i, "v": format!("{version}{i}"), "tags": [format!("t{i}"), format!("u{i}")]}))
        .collect()
}

fn append_and_nested(c: &Ctx) {
    let mut p = c.pipeline("suite_append");
    p.run(res("items", items(&[1, 2], "a"))).unwrap();
    p.run(res("items", items(&[3], "a"))).unwrap();
    assert_eq!(text(&c.rows("items", &["id", "v"])), ["1|a1", "2|a2", "3|a3"]);
    assert_eq!(text(&c.rows("items__tags", &["value"])), ["t1", "t2", "t3", "u1", "u2", "u3"]);
    assert_eq!(c.loads(), 2, "one _dlt_loads row per package");
}

fn replace_with(c: &Ctx, strategy: ReplaceStrategy) {
    let mut p = c.pipeline("suite_replace");
    let replace = |rows| res("items", rows).write_disposition(WriteDisposition::Replace);
    p.run(replace(items(&[1, 2, 3], "a"))).unwrap();
    drop(p);
    // the strategy is configuration, as `destination.replace_strategy` in config.toml
    let mut p = c.pipeline_with(
        "suite_replace",
        c.place.destination(),
        &[("DESTINATION__REPLACE_STRATEGY", strategy.as_str())],
    );
    p.run(replace(vec![json!({"id": 9, "v": "b9"})])).unwrap();
    assert_eq!(text(&c.rows("items", &["id", "v"])), ["9|b9"], "{}", strategy.as_str());
    assert_eq!(c.count("items__tags"), 0, "{}: nested rows of replaced rows are gone", strategy.as_str());
}

fn replace_truncate_and_insert(c: &Ctx) {
    replace_with(c, ReplaceStrategy::TruncateAndInsert)
}
fn replace_insert_from_staging(c: &Ctx) {
    replace_with(c, ReplaceStrategy::InsertFromStaging)
}
fn replace_staging_optimized(c: &Ctx) {
    replace_with(c, ReplaceStrategy::StagingOptimized)
}

fn merge_delete_insert(c: &Ctx) {
    let mut p = c.pipeline("suite_merge");
    let m = |rows| merge("items", MergeStrategy::DeleteInsert, rows).primary_key(["id"]);
    p.run(m(items(&[1, 2], "a"))).unwrap();
    p.run(m(items(&[2, 3], "b"))).unwrap();
    assert_eq!(text(&c.rows("items", &["id", "v"])), ["1|a1", "2|b2", "3|b3"]);
    assert_eq!(text(&c.rows("items__tags", &["value"])), ["t1", "t2", "t3", "u1", "u2", "u3"]);
    // a key twice in one load: one row
    p.run(m(vec![json!({"id": 4, "v": "c4"}), json!({"id": 4, "v": "c4"})])).unwrap();
    assert_eq!(c.rows("items", &["id"]).iter().filter(|r| r[0].as_deref() == Some("4")).count(), 1);
}

fn merge_upsert(c: &Ctx) {
    let mut p = c.pipeline("suite_upsert");
    let m = |rows| merge("items", MergeStrategy::Upsert, rows).primary_key(["id"]);
    p.run(m(items(&[1, 2], "a"))).unwrap();
    p.run(m(vec![json!({"id": 2, "v": "b2", "tags": ["x"]}), json!({"id": 3, "v": "b3"})])).unwrap();
    assert_eq!(text(&c.rows("items", &["id", "v"])), ["1|a1", "2|b2", "3|b3"]);
    assert_eq!(text(&c.rows("items__tags", &["value"])), ["t1", "u1", "x"]);
}

fn merge_insert_only(c: &Ctx) {
    let mut p = c.pipeline("suite_insert_only");
    let m = |rows| merge("items", MergeStrategy::InsertOnly, rows).primary_key(["id"]);
    p.run(m(items(&[1, 2], "a"))).unwrap();
    p.run(m(items(&[2, 3], "b"))).unwrap();
    assert_eq!(text(&c.rows("items", &["id", "v"])), ["1|a1", "2|a2", "3|b3"]);
}

fn merge_scd2(c: &Ctx) {
    let mut p = c.pipeline("suite_scd2");
    let m = |rows| merge("dim", MergeStrategy::Scd2, rows);
    p.run(m(vec![json!({"id": 1, "v": "a"}), json!({"id": 2, "v": "b"})])).unwrap();
    p.run(m(vec![json!({"id": 1, "v": "a2"}), json!({"id": 2, "v": "b"})])).unwrap();
    let rows = c.rows("dim", &["id", "v", "_dlt_valid_to"]);
    let active: Vec<String> =
        text(&rows.iter().filter(|r| r[2].is_none()).map(|r| r[..2].to_vec()).collect::<Vec<_>>());
    assert_eq!(active, ["1|a2", "2|b"], "one active version per key");
    let retired: Vec<String> =
        text(&rows.iter().filter(|r| r[2].is_some()).map(|r| r[..2].to_vec()).collect::<Vec<_>>());
    assert_eq!(retired, ["1|a"], "the changed version is retired");
}

fn schema_evolution(c: &Ctx) {
    let mut p = c.pipeline("suite_evolve");
    p.run(res("items", vec![json!({"id": 1})])).unwrap();
    p.run(res("items", vec![json!({"id": 2, "extra": "x", "nested": {"a": 5}})])).unwrap();
    assert_eq!(text(&c.rows("items", &["id", "extra", "nested__a"])), ["1|∅|∅", "2|x|5"]);
}

fn state_restore(c: &Ctx) {
    let inc = || {
        let rows: Vec<Value> = (1..=3).map(|i| json!({"id": i, "updated": i})).collect();
        res("events", rows).incremental(IncrementalConfig::new("updated"))
    };
    let mut p = c.pipeline("suite_state");
    p.run(inc()).unwrap();
    let wd = p.working_dir().to_path_buf();
    drop(p);
    std::fs::remove_dir_all(&wd).unwrap();
    // a new machine: state and schema come back from the destination
    let mut p = c.pipeline("suite_state");
    assert!(p.sync_destination().unwrap(), "state restored from the destination");
    assert!(p.schema("suite_state").unwrap().is_some_and(|s| s.tables.contains_key("events")));
    let more: Vec<Value> = (1..=4).map(|i| json!({"id": i, "updated": i})).collect();
    p.run(res("events", more).incremental(IncrementalConfig::new("updated"))).unwrap();
    assert_eq!(text(&c.rows("events", &["id"])), ["1", "2", "3", "4"], "only the new row is loaded");
}

fn drop_resource(c: &Ctx) {
    let mut p = c.pipeline("suite_drop");
    p.run(vec![res("keep", items(&[1], "a")), res("gone", items(&[1], "a"))]).unwrap();
    p.drop_resources("suite_drop", &["gone".to_string()]).unwrap();
    assert!(!c.exists("gone") && !c.exists("gone__tags"), "dropped tables are gone");
    assert_eq!(c.count("keep"), 1, "other tables stay");
    p.run(res("gone", items(&[2], "b"))).unwrap();
    assert_eq!(text(&c.rows("gone", &["id"])), ["2"]);
}

fn transient_failures_are_retried(c: &Ctx) {
    let faulty = Arc::new(Faulty::scripted(c.place.destination(), [Fault::TransientBefore, Fault::TransientBefore]));
    let mut p = c.pipeline_to("suite_retry", faulty.clone());
    p.run(res("items", items(&[1, 2], "a"))).unwrap();
    assert_eq!(faulty.injected(), (2, 0));
    assert_eq!(c.count("items"), 2);
    assert_eq!(c.loads(), 1);
}

fn a_lost_acknowledgement_loads_once(c: &Ctx) {
    let faulty = Arc::new(Faulty::scripted(c.place.destination(), [Fault::TransientAfter]));
    let mut p = c.pipeline_to("suite_ack", faulty.clone());
    p.run(res("items", items(&[1, 2], "a"))).unwrap();
    assert_eq!(faulty.injected(), (1, 0));
    assert_eq!(c.count("items"), 2, "the retry finds the package committed");
    assert_eq!(c.loads(), 1);
}

fn a_failed_package_stays_pending_and_loads_once(c: &Ctx) {
    let faulty = Arc::new(Faulty::scripted(c.place.destination(), [Fault::TerminalBefore]));
    let mut p = c.pipeline_to("suite_pending", faulty);
    assert!(p.run(res("items", items(&[1, 2], "a"))).is_err());
    assert!(!c.exists("items") || c.count("items") == 0, "nothing of the failed package is visible");
    drop(p);
    let mut p = c.pipeline("suite_pending");
    p.run(res("items", items(&[3], "a"))).unwrap();
    assert_eq!(text(&c.rows("items", &["id"])), ["1", "2", "3"], "the pending package loads first, once");
    assert_eq!(c.loads(), 2);
}

fn a_retried_job_loads_once(c: &Ctx) {
    // one job fails before loading, the next after loading (its acknowledgement lost)
    let faulty = Arc::new(
        Faulty::scripted(c.place.destination(), []).with_job_faults([JobFault::RetryBefore, JobFault::RetryAfter]),
    );
    let mut p = c.pipeline_to("suite_job_retry", faulty.clone());
    p.run(res("items", items(&[1, 2, 3], "a"))).unwrap();
    assert_eq!(faulty.injected(), (2, 0));
    assert_eq!(text(&c.rows("items", &["id"])), ["1", "2", "3"], "every row once");
    assert_eq!(c.count("items__tags"), 6, "every nested row once");
    assert_eq!(c.loads(), 1);
}

fn a_failed_job_keeps_the_package_pending(c: &Ctx) {
    let faulty =
        Arc::new(Faulty::scripted(c.place.destination(), []).with_job_faults([JobFault::Pass, JobFault::Fail]));
    let transactional = faulty.capabilities().supports_transactions;
    let mut p = c.pipeline_to("suite_job_failed", faulty.clone());
    let err = p.run(res("items", items(&[1, 2], "a"))).expect_err("a failed job fails the run");
    let msg = err.to_string();
    assert!(msg.contains("stays pending") && msg.contains("injected terminal failure"), "the error says so: {msg}");
    assert_eq!(faulty.job_runs(), 2);
    // the package is pending, with the failed job's reason next to it
    let pending = p.working_dir().join("load").join("normalized");
    let packages: Vec<_> = std::fs::read_dir(&pending).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(packages.len(), 1, "one pending package");
    let package = &packages[0];
    let failed: Vec<String> = std::fs::read_dir(package.join("failed_jobs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(failed.iter().any(|f| f.ends_with(".exception") && f != "package.exception"), "{failed:?}");
    let files = |d: &str| std::fs::read_dir(package.join(d)).map(|r| r.count()).unwrap_or(0) as u32;
    let (left, done) = (files("new_jobs"), files("completed_jobs"));
    if transactional {
        assert_eq!(done, 0, "a transactional attempt records nothing before its commit");
        assert!(c.count("items") == 0 && c.loads() == 0, "nothing of the failed package is visible");
    } else {
        assert_eq!(done, 1, "the job that completed is recorded");
    }
    // the cause is gone: the pending package resumes and loads once
    p.load().unwrap();
    assert_eq!(faulty.job_runs(), 2 + left, "only the jobs left run again");
    assert_eq!(text(&c.rows("items", &["id"])), ["1", "2"]);
    assert_eq!(c.count("items__tags"), 4);
    assert_eq!(c.loads(), 1);
}

fn has_merge(caps: &dlt_core::destination::Capabilities, s: MergeStrategy) -> bool {
    caps.merge_strategies.contains(&s) && caps.merge_table_formats.is_empty()
}

/// Every case of the suite.
pub fn cases() -> Vec<Case> {
    vec![
        Case { name: "append_and_nested", run: append_and_nested, applies: |_| true },
        Case {
            name: "replace_truncate_and_insert",
            run: replace_truncate_and_insert,
            applies: |c| c.replace_strategies.contains(&ReplaceStrategy::TruncateAndInsert),
        },
        Case {
            name: "replace_insert_from_staging",
            run: replace_insert_from_staging,
            applies: |c| c.replace_strategies.contains(&ReplaceStrategy::InsertFromStaging),
        },
        Case {
            name: "replace_staging_optimized",
            run: replace_staging_optimized,
            applies: |c| c.replace_strategies.contains(&ReplaceStrategy::StagingOptimized),
        },
        Case {
            name: "merge_delete_insert",
            run: merge_delete_insert,
            applies: |c| has_merge(c, MergeStrategy::DeleteInsert),
        },
        Case { name: "merge_upsert", run: merge_upsert, applies: |c| has_merge(c, MergeStrategy::Upsert) },
        Case {
            name: "merge_insert_only",
            run: merge_insert_only,
            applies: |c| has_merge(c, MergeStrategy::InsertOnly),
        },
        Case { name: "merge_scd2", run: merge_scd2, applies: |c| has_merge(c, MergeStrategy::Scd2) },
        Case { name: "schema_evolution", run: schema_evolution, applies: |_| true },
        Case { name: "state_restore", run: state_restore, applies: |_| true },
        Case { name: "drop_resource", run: drop_resource, applies: |_| true },
        Case { name: "transient_failures_are_retried", run: transient_failures_are_retried, applies: |_| true },
        Case { name: "a_lost_acknowledgement_loads_once", run: a_lost_acknowledgement_loads_once, applies: |_| true },
        Case {
            name: "a_failed_package_stays_pending_and_loads_once",
            run: a_failed_package_stays_pending_and_loads_once,
            applies: |_| true,
        },
        Case { name: "a_retried_job_loads_once", run: a_retried_job_loads_once, applies: |_| true },
        Case {
            name: "a_failed_job_keeps_the_package_pending",
            run: a_failed_job_keeps_the_package_pending,
            applies: |_| true,
        },
    ]
}

/// Run every case that `target`'s capabilities allow, each in a fresh place; panics naming
/// every failed case. Returns the names of the cases run and of those skipped.
pub fn run(target: &dyn Target) -> (Vec<&'static str>, Vec<&'static str>) {
    run_with_known_failures(target, &[])
}

/// [`run`], where the cases named in `known` (with the reason: a limit of the test peer, not of
/// the destination) are expected to fail: they run, their failure is reported with the reason,
/// and a known case that passes fails the run (take it off the list).
pub fn run_with_known_failures(
    target: &dyn Target,
    known: &[(&'static str, &'static str)],
) -> (Vec<&'static str>, Vec<&'static str>) {
    let (mut ran, mut skipped, mut failed) = (vec![], vec![], vec![]);
    for case in cases() {
        let place = target.fresh();
        if !(case.applies)(place.destination().capabilities()) {
            skipped.push(case.name);
            continue;
        }
        let dir = std::env::temp_dir().join(format!("dlt-suite-{}-{}-{:x}", case.name, std::process::id(), nanos()));
        let ctx = Ctx { place, dir: dir.clone(), dataset: "suite_data".into() };
        eprintln!("suite: {}", case.name);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.run)(&ctx)));
        let _ = std::fs::remove_dir_all(&dir);
        let reason = known.iter().find(|(n, _)| *n == case.name).map(|(_, r)| *r);
        match (r, reason) {
            (Ok(()), Some(_)) => failed.push(format!("{}: passes now; take it off the known failures", case.name)),
            (Ok(()), None) => ran.push(case.name),
            (Err(_), Some(reason)) => eprintln!("suite: {} failed as known: {reason}", case.name),
            (Err(e), None) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(format!("{}: {msg}", case.name));
            }
        }
    }
    eprintln!("suite: {} passed, {} skipped ({})", ran.len(), skipped.len(), skipped.join(", "));
    assert!(failed.is_empty(), "conformance cases failed:\n{}", failed.join("\n"));
    (ran, skipped)
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}
