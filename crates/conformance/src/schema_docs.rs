//! The stored schema documents of a case: what a pipeline keeps in `_dlt_version` and in its
//! working dir (`<pipelines>/<pipeline>/schemas/<schema>.schema.json`) after every run, and the
//! comparison with what dlt 1.31 stored for the same runs (`expected_schemas.json` beside each
//! case, written by `tests/conformance/gen_expected_schemas.py`).
//!
//! File format (both sides):
//!
//! ```text
//! {"schema_docs_format_version": 1, "case": str, "oracle": {...},
//!  "runs": [{"index": i, "status": "ok"|"failed",
//!            "destination": {"<dataset>": null | {"<schema>": {"versions": [[version, hash], ...],
//!                                                              "schema": KEY}}},
//!            "local": {"<pipeline>": {"<schema>": KEY}}}],
//!  "documents": {KEY: stored schema document}}
//! ```
//!
//! `versions` are all `_dlt_version` rows of the schema in insertion order, `schema` the newest
//! row's document. Documents are stored once, keyed `<version>:<version_hash>` (`~N` appended
//! when different documents share a key).
//!
//! Comparison: whole documents, key by key, with the order of tables and of columns (which is
//! part of dlt's version hash); `version_hash` and `previous_hashes` and the hashes of the
//! `versions` rows are compared when no difference of the case was excused, since they follow
//! the content. A difference is excused by a row of the schema-document section of
//! `tests/conformance/DEVIATIONS.md` ([`Deviation`]).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use duckdb::Connection;
use serde_json::{Map, Value, json};

/// Format version of the files.
pub const FORMAT_VERSION: i64 = 1;
/// dlt's documents beside each case.
pub const EXPECTED_FILE: &str = "expected_schemas.json";
/// dlt-rs's documents in the case's output dir.
pub const ACTUAL_FILE: &str = "schemas.json";
/// Heading of the DEVIATIONS.md section that lists the excused differences.
pub const DEVIATIONS_HEADING: &str = "## Schema documents";

/// Documents seen so far in a case, keyed `<version>:<version_hash>`.
#[derive(Default)]
pub struct Documents(Map<String, Value>);

impl Documents {
    /// Store `doc` (once) and return its key.
    pub fn add(&mut self, doc: Value) -> String {
        let base = format!("{}:{}", key_part(doc.get("version")), key_part(doc.get("version_hash")));
        let mut key = base.clone();
        let mut n = 1;
        while self.0.get(&key).is_some_and(|d| d != &doc) {
            n += 1;
            key = format!("{base}~{n}");
        }
        self.0.insert(key.clone(), doc);
        key
    }

    /// All documents.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

fn key_part(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "None".to_string(),
        Some(v) => v.to_string(),
    }
}

/// The documents of one run: `_dlt_version` of every dataset in `conn`'s database and the
/// schema files of every pipeline under `pipelines_dir`.
pub fn snapshot(
    conn: &Connection,
    datasets: &[String],
    pipelines_dir: &Path,
    pipelines: &[String],
    docs: &mut Documents,
) -> Result<Value> {
    let mut destination = Map::new();
    for ds in datasets {
        destination.insert(ds.clone(), stored_documents(conn, ds, docs)?);
    }
    let mut local = Map::new();
    for p in pipelines {
        let dir = pipelines_dir.join(p).join("schemas");
        let mut entry = Map::new();
        if dir.is_dir() {
            let mut files: Vec<_> = fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            files.sort();
            for f in files {
                let Some(name) = f.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".schema.json"))
                else {
                    continue;
                };
                let text = fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
                let doc: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
                entry.insert(name.to_string(), json!(docs.add(doc)));
            }
        }
        local.insert(p.clone(), Value::Object(entry));
    }
    Ok(json!({"destination": destination, "local": local}))
}

fn stored_documents(conn: &Connection, dataset: &str, docs: &mut Documents) -> Result<Value> {
    let exists: i64 = conn.query_row(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = '_dlt_version'",
        [dataset],
        |r| r.get(0),
    )?;
    if exists == 0 {
        return Ok(Value::Null);
    }
    let sql = format!(
        "SELECT schema_name, version, version_hash, schema FROM \"{}\"._dlt_version ORDER BY inserted_at, version",
        dataset.replace('"', "\"\"")
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
    })?;
    let mut out: Map<String, Value> = Map::new();
    let mut newest: Map<String, Value> = Map::new();
    for row in rows {
        let (name, version, hash, schema) = row?;
        let doc: Value = serde_json::from_str(&schema)
            .with_context(|| format!("{dataset}._dlt_version: the schema of {name} v{version} is not JSON"))?;
        let entry = out.entry(name.clone()).or_insert_with(|| json!({"versions": [], "schema": null}));
        entry["versions"].as_array_mut().expect("array").push(json!([version, hash]));
        newest.insert(name, doc);
    }
    for (name, doc) in newest {
        out[&name]["schema"] = json!(docs.add(doc));
    }
    out.sort_keys();
    Ok(Value::Object(out))
}

/// One excused difference: `path` (a `*` matches any text) in the documents of `case` (`*`
/// for every case).
#[derive(Debug, Clone, PartialEq)]
pub struct Deviation {
    /// Case name or `*`.
    pub case: String,
    /// Path of the difference, e.g. `tables.big.columns.n.data_type`.
    pub path: String,
}

impl Deviation {
    fn matches(&self, case: &str, path: &str) -> bool {
        // `extra/<case>` names a case of the extra folder by its folder path
        let case_pattern = self.case.rsplit('/').next().unwrap_or(&self.case);
        wildcard(case_pattern, case) && wildcard(&self.path, path)
    }
}

/// `pattern` with `*` matching any run of characters.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The excused differences: the rows of the table in the [`DEVIATIONS_HEADING`] section of
/// DEVIATIONS.md whose first two cells are a case and a path in backticks.
pub fn parse_deviations(markdown: &str) -> Result<Vec<Deviation>> {
    let mut out = vec![];
    let mut in_section = false;
    let mut found = false;
    for line in markdown.lines() {
        if line.starts_with("## ") {
            in_section = line.trim_end() == DEVIATIONS_HEADING;
            found |= in_section;
            continue;
        }
        if !in_section || !line.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let tick = |s: &str| s.strip_prefix('`').and_then(|s| s.strip_suffix('`')).map(str::to_string);
        if let (Some(case), Some(path)) = (cells.first().and_then(|c| tick(c)), cells.get(1).and_then(|c| tick(c))) {
            out.push(Deviation { case, path });
        }
    }
    if !found {
        bail!("DEVIATIONS.md has no `{DEVIATIONS_HEADING}` section");
    }
    Ok(out)
}

/// A difference found while comparing.
struct Diff {
    path: String,
    message: String,
}

/// Compares the documents dlt-rs stored (`actual`) with dlt's (`expected`); one line per
/// difference that no deviation excuses.
pub fn compare(case: &str, expected: &Value, actual: &Value, deviations: &[Deviation]) -> Vec<String> {
    let (Some(exp_runs), Some(act_runs)) = (expected["runs"].as_array(), actual["runs"].as_array()) else {
        return vec!["schema: a documents file has no `runs`".into()];
    };
    let mut content = vec![];
    let mut hashes = vec![];
    let mut out = vec![];
    if exp_runs.len() != act_runs.len() {
        out.push(format!("schema: {} runs recorded by dlt, {} by dlt-rs", exp_runs.len(), act_runs.len()));
    }
    let (edocs, adocs) = (&expected["documents"], &actual["documents"]);
    for (i, (er, ar)) in exp_runs.iter().zip(act_runs).enumerate() {
        for (side, what) in [("destination", "dataset"), ("local", "pipeline")] {
            let (e, a) = (&er[side], &ar[side]);
            for (owner, eo, ao) in union(e, a) {
                let at = format!("run[{i}].{side}.{owner}");
                let (eo, ao) = match (eo, ao) {
                    (Some(eo), Some(ao)) if !eo.is_null() && !ao.is_null() => (eo, ao),
                    (eo, ao) => {
                        let show = |v: Option<&Value>| match v {
                            None | Some(Value::Null) => "no schema table".to_string(),
                            Some(_) => "schemas".to_string(),
                        };
                        if show(eo) != show(ao) {
                            content.push(Diff {
                                path: "(dataset)".into(),
                                message: format!("{at}: dlt has {}, dlt-rs has {}", show(eo), show(ao)),
                            });
                        }
                        continue;
                    }
                };
                for (schema, es, as_) in union(eo, ao) {
                    let at = format!("{at}.{schema}");
                    let (Some(es), Some(as_)) = (es, as_) else {
                        let who = if es.is_some() { "dlt-rs" } else { "dlt" };
                        content.push(Diff {
                            path: "(schema)".into(),
                            message: format!("{at}: only {} stored this {what}'s schema", other(who)),
                        });
                        continue;
                    };
                    let (ekey, akey) = if side == "local" { (es, as_) } else { (&es["schema"], &as_["schema"]) };
                    let ed = ekey.as_str().and_then(|k| edocs.get(k)).unwrap_or(&Value::Null);
                    let ad = akey.as_str().and_then(|k| adocs.get(k)).unwrap_or(&Value::Null);
                    compare_document(&at, ed, ad, &mut content, &mut hashes);
                    if side == "destination" {
                        compare_versions(&at, &es["versions"], &as_["versions"], &mut content, &mut hashes);
                    }
                }
            }
        }
    }
    let mut excused = false;
    for d in content {
        if deviations.iter().any(|x| x.matches(case, &d.path)) {
            excused = true;
        } else {
            out.push(format!("schema: {}", d.message));
        }
    }
    // hashes follow the content: an excused content difference changes them too
    if !excused {
        out.extend(hashes.into_iter().map(|d| format!("schema: {}", d.message)));
    }
    out
}

fn other(who: &str) -> &'static str {
    if who == "dlt-rs" { "dlt" } else { "dlt-rs" }
}

/// Keys of two objects (expected's order, then actual's extra keys) with both values.
fn union<'v>(e: &'v Value, a: &'v Value) -> Vec<(String, Option<&'v Value>, Option<&'v Value>)> {
    let mut keys: Vec<&String> = e.as_object().map(|m| m.keys().collect()).unwrap_or_default();
    for k in a.as_object().map(|m| m.keys().collect::<Vec<_>>()).unwrap_or_default() {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter().map(|k| (k.clone(), e.get(k), a.get(k))).collect()
}

fn compare_versions(at: &str, e: &Value, a: &Value, content: &mut Vec<Diff>, hashes: &mut Vec<Diff>) {
    let nums = |v: &Value| -> Vec<Value> {
        v.as_array().map(|a| a.iter().map(|r| r[0].clone()).collect()).unwrap_or_default()
    };
    let (en, an) = (nums(e), nums(a));
    if en != an {
        content.push(Diff {
            path: "versions".into(),
            message: format!("{at}: _dlt_version holds versions {en:?} in dlt, {an:?} in dlt-rs"),
        });
    } else if e != a {
        hashes.push(Diff {
            path: "versions".into(),
            message: format!("{at}: _dlt_version rows have other version hashes: dlt {e}, dlt-rs {a}"),
        });
    }
}

fn compare_document(at: &str, e: &Value, a: &Value, content: &mut Vec<Diff>, hashes: &mut Vec<Diff>) {
    for key in ["version_hash", "previous_hashes"] {
        if e.get(key) != a.get(key) {
            hashes.push(Diff {
                path: key.into(),
                message: format!("{at}: {key}: dlt {}, dlt-rs {}", show(e.get(key)), show(a.get(key))),
            });
        }
    }
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Value::Object(m) = &mut v {
            m.shift_remove("version_hash");
            m.shift_remove("previous_hashes");
        }
        v
    };
    compare_value(at, "", &strip(e), &strip(a), content);
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "absent".into(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 200 { format!("{}…", s.chars().take(200).collect::<String>()) } else { s }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn compare_value(at: &str, path: &str, e: &Value, a: &Value, out: &mut Vec<Diff>) {
    match (e, a) {
        (Value::Object(em), Value::Object(am)) => {
            for (k, ev, av) in union(e, a) {
                let p = join(path, &k);
                match (ev, av) {
                    (Some(ev), Some(av)) => compare_value(at, &p, ev, av, out),
                    (ev, av) => {
                        out.push(Diff { message: format!("{at}: {p}: dlt {}, dlt-rs {}", show(ev), show(av)), path: p })
                    }
                }
            }
            // the order of tables and of columns is part of the document (and of dlt's hash)
            let ordered = path == "tables" || path.ends_with(".columns");
            if ordered {
                let ek: Vec<&String> = em.keys().filter(|k| am.contains_key(*k)).collect();
                let ak: Vec<&String> = am.keys().filter(|k| em.contains_key(*k)).collect();
                if ek != ak {
                    let p = join(path, "(order)");
                    out.push(Diff { message: format!("{at}: {path}: order in dlt {ek:?}, in dlt-rs {ak:?}"), path: p });
                }
            }
        }
        (e, a) if numbers_equal(e, a) => {}
        (e, a) if e != a => out.push(Diff {
            message: format!("{at}: {path}: dlt {}, dlt-rs {}", show(Some(e)), show(Some(a))),
            path: path.to_string(),
        }),
        _ => {}
    }
}

/// `1` and `1.0` are the same JSON number for a schema document's reader.
fn numbers_equal(e: &Value, a: &Value) -> bool {
    match (e, a) {
        (Value::Number(x), Value::Number(y)) => x == y || (x.as_f64().is_some() && x.as_f64() == y.as_f64()),
        _ => false,
    }
}

/// A documents file.
pub fn read(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if v["schema_docs_format_version"].as_i64() != Some(FORMAT_VERSION) {
        bail!("{}: schema_docs_format_version is not {FORMAT_VERSION}", path.display());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*", "anything.at.all"));
        assert!(wildcard("tables.*.columns.n.data_type", "tables.big.columns.n.data_type"));
        assert!(!wildcard("tables.*.columns.n.data_type", "tables.big.columns.m.data_type"));
        assert!(wildcard("a*b*c", "aXXbYYc"));
        assert!(!wildcard("a*b*c", "aXXbYY"));
    }

    #[test]
    fn deviations_section() {
        let md = "# x\n## Other\n| `a` | `b` | x |\n## Schema documents\n\n| case | path | why |\n|---|---|---|\n\
                  | `types_uint64_range` | `tables.*.data_type` | decimal |\n| not code | `x` | y |\n## Next\n| `c` | `d` |\n";
        let d = parse_deviations(md).unwrap();
        assert_eq!(d, vec![Deviation { case: "types_uint64_range".into(), path: "tables.*.data_type".into() }]);
        assert!(parse_deviations("# nothing\n").is_err());
    }

    fn file(doc: Value, versions: Value) -> Value {
        let mut docs = Documents::default();
        let key = docs.add(doc);
        json!({"schema_docs_format_version": 1, "runs": [{"index": 0,
            "destination": {"ds": {"p": {"versions": versions, "schema": key}}},
            "local": {"p": {"p": key}}}], "documents": docs.into_value()})
    }

    #[test]
    fn compares_content_order_and_hashes() {
        let doc = json!({"version": 2, "version_hash": "h2", "previous_hashes": ["h1"], "name": "p",
            "tables": {"a": {"columns": {"x": {"data_type": "bigint"}, "y": {"data_type": "text"}}}}});
        let exp = file(doc.clone(), json!([[2, "h2"]]));
        assert!(compare("c", &exp, &exp, &[]).is_empty());

        // a changed hint: the content difference is reported for both documents (stored and
        // local), the hash differences are reported too
        let mut changed = doc.clone();
        changed["tables"]["a"]["columns"]["x"]["precision"] = json!(64);
        changed["version_hash"] = json!("h3");
        let act = file(changed, json!([[2, "h3"]]));
        let diffs = compare("c", &exp, &act, &[]);
        assert!(diffs.iter().any(|d| d.contains("tables.a.columns.x.precision: dlt absent, dlt-rs 64")), "{diffs:?}");
        assert!(diffs.iter().any(|d| d.contains("version_hash")), "{diffs:?}");
        // excused: nothing left, hashes included
        let dev = [Deviation { case: "c".into(), path: "tables.*.precision".into() }];
        assert!(compare("c", &exp, &act, &dev).is_empty());
        let dev_extra = [Deviation { case: "extra/c".into(), path: "tables.*.precision".into() }];
        assert!(compare("c", &exp, &act, &dev_extra).is_empty());
        assert!(!compare("other_case", &exp, &act, &dev).is_empty());

        // column order
        let mut reordered = doc.clone();
        reordered["tables"]["a"]["columns"] = json!({"y": {"data_type": "text"}, "x": {"data_type": "bigint"}});
        let diffs = compare("c", &exp, &file(reordered, json!([[2, "h2"]])), &[]);
        assert!(diffs.iter().any(|d| d.contains("tables.a.columns: order")), "{diffs:?}");

        // version numbering
        let mut v3 = doc.clone();
        v3["version"] = json!(3);
        let diffs = compare("c", &exp, &file(v3, json!([[3, "h2"]])), &[]);
        assert!(diffs.iter().any(|d| d.contains("version: dlt 2, dlt-rs 3")), "{diffs:?}");
        assert!(diffs.iter().any(|d| d.contains("holds versions")), "{diffs:?}");
    }
}
