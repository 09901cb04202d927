//! Comparison of two conformance results (or two bare dumps), as `compare.py` does it.
//!
//! The inputs are the parsed JSON documents (serde_json with `arbitrary_precision`, so numbers
//! keep their text). Values are compared with Python's semantics after `json.load`: integers
//! exactly, floats with `math.isclose`, `$decimal` objects as decimals, everything else with
//! Python `==`. The difference lines are the ones compare.py prints, in the same order.

use crate::pyfmt::{
    DISPLAY, PyDecimal, dumps, integral_f64_text, is_int_text, normalize_int_text, py_repr, py_str, shorten,
};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};

/// Flags of compare.py (defaults equal compare.py's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    /// `--strict-errors`: also compare `error_class` of failed runs.
    pub strict_errors: bool,
    /// `--ignore-row-counts`: skip `normalized_row_counts`.
    pub ignore_row_counts: bool,
    /// `--ignore-system-columns`: skip the column lists of `_dlt_*` system tables.
    pub ignore_system_columns: bool,
    /// `--rel-tol` (default 1e-9).
    pub rel_tol: f64,
    /// `--abs-tol` (default 1e-12).
    pub abs_tol: f64,
    /// `--max-rows` (default 10): differing / missing / unexpected rows listed per table.
    pub max_rows: usize,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            strict_errors: false,
            ignore_row_counts: false,
            ignore_system_columns: false,
            rel_tol: 1e-9,
            abs_tol: 1e-12,
            max_rows: 10,
        }
    }
}

/// Compares `expected` with `actual`; returns the difference lines (empty = EQUAL).
///
/// Malformed input (what makes compare.py exit with status 2) yields a single line starting
/// with `compare: ` so that it never reads as EQUAL; use [`try_compare`] to tell them apart.
pub fn compare(expected: &Value, actual: &Value, opts: &CompareOptions) -> Vec<String> {
    match try_compare(expected, actual, opts) {
        Ok(diffs) => diffs,
        Err(e) => vec![format!("compare: {e}")],
    }
}

/// Like [`compare`], but malformed input is an error (compare.py's exit status 2).
pub fn try_compare(expected: &Value, actual: &Value, opts: &CompareOptions) -> anyhow::Result<Vec<String>> {
    let mut ctx = Ctx { opts, diffs: Vec::new() };
    let has = |v: &Value, k: &str| v.as_object().is_some_and(|o| o.contains_key(k));
    if has(expected, "runs") && has(actual, "runs") {
        let re = as_list(&expected["runs"], "runs")?;
        let ra = as_list(&actual["runs"], "runs")?;
        if re.len() != ra.len() {
            ctx.add("runs", format!("expected {} runs, got {}", re.len(), ra.len()));
        }
        for (x, y) in re.iter().zip(ra.iter()) {
            let index = key(x, "index")?;
            let p = format!("run[{}]", py_int_fmt(index)?);
            cmp_outcome(&mut ctx, &format!("{p}.outcome"), key(x, "outcome")?, key(y, "outcome")?)?;
            cmp_dump(&mut ctx, &format!("{p}."), key(x, "dump")?, key(y, "dump")?)?;
        }
    } else if has(expected, "datasets") && has(actual, "datasets") {
        cmp_dump(&mut ctx, "", expected, actual)?;
    } else {
        anyhow::bail!("inputs must both be result files or both be dumps");
    }
    Ok(ctx.diffs)
}

/// compare.py's console report: one line per difference, then `DIFFERENT (n differences)`,
/// or just `EQUAL`.
pub fn format_report(diffs: &[String]) -> String {
    if diffs.is_empty() {
        return "EQUAL\n".to_string();
    }
    let mut out = String::new();
    for d in diffs {
        out.push_str(d);
        out.push('\n');
    }
    out.push_str(&format!("DIFFERENT ({} differences)\n", diffs.len()));
    out
}

struct Ctx<'a> {
    opts: &'a CompareOptions,
    diffs: Vec<String>,
}

impl Ctx<'_> {
    fn add(&mut self, path: &str, msg: String) {
        self.diffs.push(format!("{path}: {msg}"));
    }
}

// ------------------------------------------------------------------------------------------
// Python-like access helpers

fn key<'v>(v: &'v Value, k: &str) -> anyhow::Result<&'v Value> {
    match v {
        Value::Object(o) => o.get(k).ok_or_else(|| anyhow::anyhow!("KeyError: {}", crate::pyfmt::repr_str(k))),
        other => anyhow::bail!("expected an object with key {k:?}, got {}", short(other, 60)),
    }
}

fn obj<'v>(v: &'v Value, what: &str) -> anyhow::Result<&'v Map<String, Value>> {
    v.as_object().ok_or_else(|| anyhow::anyhow!("{what}: expected an object, got {}", short(v, 60)))
}

fn as_list<'v>(v: &'v Value, what: &str) -> anyhow::Result<&'v Vec<Value>> {
    v.as_array().ok_or_else(|| anyhow::anyhow!("{what}: expected a list, got {}", short(v, 60)))
}

/// `d.get(k)` (None when absent).
fn get<'v>(v: &'v Value, k: &str) -> &'v Value {
    static NULL: Value = Value::Null;
    v.as_object().and_then(|o| o.get(k)).unwrap_or(&NULL)
}

/// Python truthiness.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => {
            let t = n.to_string();
            if is_int_text(&t) {
                normalize_int_text(&t) != "0"
            } else {
                t.parse::<f64>().map(|f| f != 0.0).unwrap_or(true)
            }
        }
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `"%d" % v`
fn py_int_fmt(v: &Value) -> anyhow::Result<String> {
    match v {
        Value::Bool(b) => Ok(if *b { "1" } else { "0" }.into()),
        Value::Number(n) => {
            let t = n.to_string();
            if is_int_text(&t) {
                Ok(normalize_int_text(&t))
            } else {
                let f: f64 = t.parse()?;
                anyhow::ensure!(f.is_finite(), "cannot convert float {t} to integer");
                Ok(integral_f64_text(f.trunc()))
            }
        }
        other => anyhow::bail!("%d format: a real number is required, not {}", py_repr(other)),
    }
}

/// `short(v, n)` of compare.py.
fn short(v: &Value, n: usize) -> String {
    shorten(dumps(v, DISPLAY), n)
}

// ------------------------------------------------------------------------------------------
// equality

enum Num {
    Int(String),
    Float(f64),
}

fn as_num(v: &Value) -> Option<Num> {
    match v {
        Value::Number(n) => {
            let t = n.to_string();
            if is_int_text(&t) {
                Some(Num::Int(normalize_int_text(&t)))
            } else {
                // json.load turns out-of-range literals into +-inf, like Rust's parser
                Some(Num::Float(t.parse::<f64>().unwrap_or(f64::NAN)))
            }
        }
        _ => None,
    }
}

fn int_to_f64(t: &str) -> f64 {
    t.parse::<f64>().unwrap_or(f64::NAN)
}

/// Python `int == float` (exact).
fn int_eq_float(i: &str, f: f64) -> bool {
    f.is_finite() && f.fract() == 0.0 && integral_f64_text(f) == *i
}

/// Python `==` between two values produced by `json.load`.
pub fn py_eq(x: &Value, y: &Value) -> bool {
    let numish = |v: &Value| -> Option<Num> {
        match v {
            Value::Bool(b) => Some(Num::Int(if *b { "1" } else { "0" }.into())),
            other => as_num(other),
        }
    };
    match (x, y) {
        (Value::Null, Value::Null) => true,
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(p, q)| py_eq(p, q)),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| py_eq(v, w)))
        }
        (a, b) => match (numish(a), numish(b)) {
            (Some(Num::Int(p)), Some(Num::Int(q))) => p == q,
            (Some(Num::Float(p)), Some(Num::Float(q))) => p == q,
            (Some(Num::Int(p)), Some(Num::Float(q))) | (Some(Num::Float(q)), Some(Num::Int(p))) => int_eq_float(&p, q),
            _ => false,
        },
    }
}

/// `math.isclose`
fn isclose(a: f64, b: f64, rel_tol: f64, abs_tol: f64) -> bool {
    if a == b {
        return true;
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    let diff = (b - a).abs();
    diff <= (rel_tol * b).abs() || diff <= (rel_tol * a).abs() || diff <= abs_tol
}

/// `num_eq` of compare.py (both sides are non-bool numbers).
fn num_eq(x: &Num, y: &Num, opts: &CompareOptions) -> bool {
    if let (Num::Int(a), Num::Int(b)) = (x, y) {
        return a == b;
    }
    let f = |n: &Num| match n {
        Num::Int(t) => int_to_f64(t),
        Num::Float(v) => *v,
    };
    let (fx, fy) = (f(x), f(y));
    if fx == fy {
        return true;
    }
    isclose(fx, fy, opts.rel_tol, opts.abs_tol)
}

fn py_decimal_of(v: &Value) -> Option<PyDecimal> {
    match v {
        Value::String(s) => PyDecimal::parse(s),
        Value::Bool(b) => Some(PyDecimal::from_int_text(if *b { "1" } else { "0" })),
        Value::Number(n) => {
            let t = n.to_string();
            if is_int_text(&t) {
                Some(PyDecimal::from_int_text(&t))
            } else {
                t.parse::<f64>().ok().map(PyDecimal::from_f64)
            }
        }
        _ => None,
    }
}

/// Kinds of Python values after json.load (int and float are distinct types).
fn py_type(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(n) => {
            if is_int_text(&n.to_string()) {
                2
            } else {
                3
            }
        }
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

/// `val_eq` of compare.py.
fn val_eq(x: &Value, y: &Value, opts: &CompareOptions) -> bool {
    if let (Some(a), Some(b)) = (as_num(x), as_num(y)) {
        return num_eq(&a, &b, opts);
    }
    if py_type(x) != py_type(y) {
        return false;
    }
    match (x, y) {
        (Value::Object(a), Value::Object(b)) => {
            if a.len() != b.len() || !a.keys().all(|k| b.contains_key(k)) {
                return false;
            }
            if a.len() == 1 && a.contains_key("$decimal") {
                let res = match (py_decimal_of(&a["$decimal"]), py_decimal_of(&b["$decimal"])) {
                    (Some(p), Some(q)) => p.py_eq(&q),
                    _ => None,
                };
                return res.unwrap_or_else(|| py_eq(x, y));
            }
            a.iter().all(|(k, v)| val_eq(v, &b[k], opts))
        }
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(p, q)| val_eq(p, q, opts)),
        _ => py_eq(x, y),
    }
}

fn rows_eq(a: &[Value], b: &[Value], opts: &CompareOptions) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(p, q)| val_eq(p, q, opts))
}

// ------------------------------------------------------------------------------------------
// columns / rows

fn col_str(c: &Value) -> anyhow::Result<String> {
    Ok(format!(
        "{} {}{}",
        py_str(key(c, "name")?),
        py_str(key(c, "data_type")?),
        if truthy(key(c, "nullable")?) { "" } else { " NOT NULL" }
    ))
}

fn name_of(c: &Value) -> anyhow::Result<String> {
    match key(c, "name")? {
        Value::String(s) => Ok(s.clone()),
        other => Ok(py_repr(other)),
    }
}

fn py_list_repr(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| crate::pyfmt::repr_str(s)).collect();
    format!("[{}]", parts.join(", "))
}

fn cmp_columns(ctx: &mut Ctx, path: &str, ce: &Value, ca: &Value) -> anyhow::Result<()> {
    if py_eq(ce, ca) {
        return Ok(());
    }
    let ce = as_list(ce, "columns")?;
    let ca = as_list(ca, "columns")?;
    let ne = ce.iter().map(name_of).collect::<anyhow::Result<Vec<_>>>()?;
    let na = ca.iter().map(name_of).collect::<anyhow::Result<Vec<_>>>()?;
    let emap: HashMap<&str, &Value> = ne.iter().map(String::as_str).zip(ce.iter()).collect();
    let amap: HashMap<&str, &Value> = na.iter().map(String::as_str).zip(ca.iter()).collect();
    for n in &ne {
        match amap.get(n.as_str()) {
            None => ctx.add(path, format!("missing column {}", col_str(emap[n.as_str()])?)),
            Some(a) => {
                let e = emap[n.as_str()];
                if !py_eq(e, a) {
                    ctx.add(
                        path,
                        format!("column {}: expected {}, got {}", crate::pyfmt::repr_str(n), col_str(e)?, col_str(a)?),
                    );
                }
            }
        }
    }
    for n in &na {
        if !emap.contains_key(n.as_str()) {
            ctx.add(path, format!("unexpected column {}", col_str(amap[n.as_str()])?));
        }
    }
    let common_e: Vec<String> = ne.iter().filter(|n| amap.contains_key(n.as_str())).cloned().collect();
    let common_a: Vec<String> = na.iter().filter(|n| emap.contains_key(n.as_str())).cloned().collect();
    if common_e != common_a {
        ctx.add(
            path,
            format!("column order differs: expected {}, got {}", py_list_repr(&common_e), py_list_repr(&common_a)),
        );
    }
    Ok(())
}

fn row_as_dict(common: &[String], row: &[Value]) -> Value {
    let mut m = Map::new();
    for (k, v) in common.iter().zip(row) {
        m.insert(k.clone(), v.clone());
    }
    Value::Object(m)
}

fn cmp_rows(ctx: &mut Ctx, path: &str, te: &Value, ta: &Value) -> anyhow::Result<()> {
    let opts = ctx.opts;
    let ne = as_list(key(te, "columns")?, "columns")?.iter().map(name_of).collect::<anyhow::Result<Vec<_>>>()?;
    let na = as_list(key(ta, "columns")?, "columns")?.iter().map(name_of).collect::<anyhow::Result<Vec<_>>>()?;
    let common: Vec<String> = ne.iter().filter(|n| na.contains(n)).cloned().collect();
    let ie: Vec<usize> = common.iter().map(|n| ne.iter().position(|x| x == n).unwrap()).collect();
    let ia: Vec<usize> = common.iter().map(|n| na.iter().position(|x| x == n).unwrap()).collect();
    let project = |rows: &Value, idx: &[usize]| -> anyhow::Result<Vec<Vec<Value>>> {
        as_list(rows, "rows")?
            .iter()
            .map(|r| {
                let r = as_list(r, "row")?;
                idx.iter()
                    .map(|&i| r.get(i).cloned().ok_or_else(|| anyhow::anyhow!("IndexError: list index out of range")))
                    .collect()
            })
            .collect()
    };
    let re = project(key(te, "rows")?, &ie)?;
    let ra = project(key(ta, "rows")?, &ia)?;
    if re.len() != ra.len() {
        ctx.add(path, format!("row count: expected {}, got {}", re.len(), ra.len()));
    }
    // 1) positional equality
    if re.len() == ra.len() && re.iter().zip(&ra).all(|(x, y)| rows_eq(x, y, opts)) {
        return Ok(());
    }
    // 2) multiset matching (greedy, in order, like compare.py)
    let mut unmatched_a: Vec<usize> = (0..ra.len()).collect();
    let mut missing = Vec::new();
    for (i, r) in re.iter().enumerate() {
        match unmatched_a.iter().position(|&j| rows_eq(r, &ra[j], opts)) {
            Some(pos) => {
                unmatched_a.remove(pos);
            }
            None => missing.push(i),
        }
    }
    if missing.is_empty() && unmatched_a.is_empty() {
        ctx.add(path, "same rows, different canonical order (check sorting/id tokens)".to_string());
        return Ok(());
    }
    let max_rows = opts.max_rows;
    if missing.len() == unmatched_a.len() {
        for (k, (&i, &j)) in missing.iter().zip(&unmatched_a).enumerate() {
            if k >= max_rows {
                ctx.add(path, format!("... {} more differing rows", missing.len() - k));
                break;
            }
            let cells: Vec<String> = (0..common.len())
                .filter(|&c| !val_eq(&re[i][c], &ra[j][c], opts))
                .map(|c| format!("{}: expected {}, got {}", common[c], short(&re[i][c], 60), short(&ra[j][c], 60)))
                .collect();
            ctx.add(path, format!("row {i} differs: {}", cells.join("; ")));
        }
        return Ok(());
    }
    for (k, &i) in missing.iter().enumerate() {
        if k >= max_rows {
            ctx.add(path, format!("... {} more missing rows", missing.len() - k));
            break;
        }
        ctx.add(path, format!("missing row {}", short(&row_as_dict(&common, &re[i]), 300)));
    }
    for (k, &j) in unmatched_a.iter().enumerate() {
        if k >= max_rows {
            ctx.add(path, format!("... {} more unexpected rows", unmatched_a.len() - k));
            break;
        }
        ctx.add(path, format!("unexpected row {}", short(&row_as_dict(&common, &ra[j]), 300)));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// datasets / dumps / outcomes

fn tables_by_name(ds: &Value) -> anyhow::Result<Map<String, Value>> {
    let mut m = Map::new();
    let tables = match get(ds, "tables") {
        Value::Null if !obj(ds, "dataset")?.contains_key("tables") => return Ok(m),
        t => as_list(t, "tables")?,
    };
    for t in tables {
        m.insert(name_of(t)?, t.clone());
    }
    Ok(m)
}

fn sorted_union<'a>(a: impl Iterator<Item = &'a String>, b: impl Iterator<Item = &'a String>) -> Vec<&'a String> {
    let set: BTreeSet<&String> = a.chain(b).collect();
    set.into_iter().collect()
}

fn cmp_dataset(ctx: &mut Ctx, path: &str, de: &Value, da: &Value) -> anyhow::Result<()> {
    obj(de, "dataset")?;
    obj(da, "dataset")?;
    let (xe, xa) = (get(de, "exists"), get(da, "exists"));
    if !py_eq(xe, xa) {
        ctx.add(path, format!("dataset exists: expected {}, got {}", py_str(xe), py_str(xa)));
        return Ok(());
    }
    if !truthy(xe) {
        return Ok(());
    }
    let te = tables_by_name(de)?;
    let ta = tables_by_name(da)?;
    for n in sorted_union(te.keys(), ta.keys()) {
        let p = format!("{path}.{n}");
        match (te.get(n), ta.get(n)) {
            (Some(e), None) => {
                ctx.add(&p, format!("missing table ({} rows expected)", py_int_fmt(key(e, "row_count")?)?))
            }
            (None, Some(a)) => ctx.add(&p, format!("unexpected table ({} rows)", py_int_fmt(key(a, "row_count")?)?)),
            (Some(e), Some(a)) => {
                cmp_columns(ctx, &p, key(e, "columns")?, key(a, "columns")?)?;
                cmp_rows(ctx, &p, e, a)?;
            }
            (None, None) => unreachable!(),
        }
    }
    let empty = Value::Object(Map::new());
    let se = match obj(de, "dataset")?.get("system") {
        Some(v) => v,
        None => &empty,
    };
    let sa = match obj(da, "dataset")?.get("system") {
        Some(v) => v,
        None => &empty,
    };
    let (se_m, sa_m) = (obj(se, "system")?, obj(sa, "system")?);
    let absent = serde_json::json!({"exists": false});
    for st in sorted_union(se_m.keys(), sa_m.keys()) {
        let p = format!("{path}.{st}");
        let x = se_m.get(st).unwrap_or(&absent);
        let y = sa_m.get(st).unwrap_or(&absent);
        if !py_eq(get(x, "exists"), get(y, "exists")) {
            ctx.add(&p, format!("exists: expected {}, got {}", py_str(get(x, "exists")), py_str(get(y, "exists"))));
            continue;
        }
        if !ctx.opts.ignore_system_columns && !py_eq(get(x, "columns"), get(y, "columns")) {
            let empty_list = Value::Array(Vec::new());
            let cx = obj(x, "system table")?.get("columns").unwrap_or(&empty_list);
            let cy = obj(y, "system table")?.get("columns").unwrap_or(&empty_list);
            cmp_columns(ctx, &p, cx, cy)?;
        }
        for k in ["count", "loads"] {
            if !py_eq(get(x, k), get(y, k)) {
                ctx.add(&p, format!("{k}: expected {}, got {}", short(get(x, k), 300), short(get(y, k), 300)));
            }
        }
    }
    Ok(())
}

fn cmp_dump(ctx: &mut Ctx, path: &str, de: &Value, da: &Value) -> anyhow::Result<()> {
    let empty = Map::new();
    let dse = match obj(de, "dump")?.get("datasets") {
        Some(v) => obj(v, "datasets")?,
        None => &empty,
    };
    let dsa = match obj(da, "dump")?.get("datasets") {
        Some(v) => obj(v, "datasets")?,
        None => &empty,
    };
    for n in sorted_union(dse.keys(), dsa.keys()) {
        let p = format!("{path}{n}");
        match (dse.get(n), dsa.get(n)) {
            (Some(_), None) => ctx.add(&p, "dataset missing from actual dump".to_string()),
            (None, Some(_)) => ctx.add(&p, "dataset not in expected dump".to_string()),
            (Some(e), Some(a)) => cmp_dataset(ctx, &p, e, a)?,
            (None, None) => unreachable!(),
        }
    }
    Ok(())
}

fn cmp_outcome(ctx: &mut Ctx, path: &str, oe: &Value, oa: &Value) -> anyhow::Result<()> {
    let (me, ma) = (obj(oe, "outcome")?, obj(oa, "outcome")?);
    let empty_str = Value::String(String::new());
    let (se, sa) = (get(oe, "status"), get(oa, "status"));
    if !py_eq(se, sa) {
        ctx.add(
            path,
            format!(
                "status: expected {} ({}), got {} ({})",
                py_str(se),
                py_str(me.get("error_class").unwrap_or(&empty_str)),
                py_str(sa),
                py_str(ma.get("error_class").unwrap_or(&empty_str))
            ),
        );
        return Ok(());
    }
    if py_eq(se, &Value::String("failed".into())) {
        if !py_eq(get(oe, "stage"), get(oa, "stage")) {
            ctx.add(
                path,
                format!("failing stage: expected {}, got {}", py_str(get(oe, "stage")), py_str(get(oa, "stage"))),
            );
        }
        if ctx.opts.strict_errors && !py_eq(get(oe, "error_class"), get(oa, "error_class")) {
            ctx.add(
                path,
                format!(
                    "error class: expected {}, got {}",
                    py_str(get(oe, "error_class")),
                    py_str(get(oa, "error_class"))
                ),
            );
        }
    } else if !ctx.opts.ignore_row_counts
        && let (Some(ce), Some(ca)) = (me.get("normalized_row_counts"), ma.get("normalized_row_counts"))
        && !py_eq(ce, ca)
    {
        ctx.add(path, format!("normalized_row_counts: expected {}, got {}", short(ce, 300), short(ca, 300)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn numbers() {
        let o = CompareOptions::default();
        assert!(val_eq(&v("1"), &v("1.0"), &o));
        assert!(val_eq(&v("0.1"), &v("0.10000000000000001"), &o));
        assert!(val_eq(&v("1.0000000001"), &v("1.0"), &o));
        assert!(!val_eq(&v("1.00001"), &v("1.0"), &o));
        assert!(!val_eq(&v("true"), &v("1"), &o));
        assert!(val_eq(
            &v("340282366920938463463374607431768211455"),
            &v("340282366920938463463374607431768211455"),
            &o
        ));
        assert!(!val_eq(
            &v("340282366920938463463374607431768211455"),
            &v("340282366920938463463374607431768211454"),
            &o
        ));
        assert!(val_eq(&json!({"$decimal": "1.50"}), &json!({"$decimal": "1.5"}), &o));
        assert!(!val_eq(&json!({"$decimal": "1.51"}), &json!({"$decimal": "1.5"}), &o));
        assert!(py_eq(&v("true"), &v("1.0")));
        assert!(!py_eq(&v("9007199254740993"), &v("9007199254740992.0")));
    }
}
