//! The follow-up statements of the `merge` disposition (`delete-insert`, `upsert`, `scd2`,
//! `insert-only`) and of replace through staging, run against the staging dataset.

use dlt_core::error::{Error, Result};
use dlt_core::schema::{C_DLT_ID, C_DLT_LOAD_ID, C_DLT_ROOT_ID, Column, DataType, Schema, SortOrder, Table};
use serde_json::Value;

use crate::{Dialect, parse_ts};

/// Which job tables a package loads through the staging dataset, and which root tables merge.
#[derive(Debug, Default, Clone)]
pub struct StagingPlan {
    /// Tables whose jobs go to the staging dataset.
    pub staged: Vec<String>,
    /// Root tables merged from staging.
    pub merge_roots: Vec<String>,
}

/// Plan a package: merge tables always stage; replaced tables stage unless the strategy is
/// truncate-and-insert.
pub fn staging_plan(
    schema: &Schema,
    jobs: &[dlt_core::destination::JobFile],
    replace_strategy: dlt_core::destination::ReplaceStrategy,
) -> StagingPlan {
    use dlt_core::schema::WriteDisposition;
    let mut plan = StagingPlan::default();
    for job in jobs {
        let root = schema.root_table_name(&job.table).to_string();
        let wd = schema.tables.get(&root).and_then(|t| t.write_disposition);
        let stage = match wd {
            Some(WriteDisposition::Merge) => {
                if !plan.merge_roots.contains(&root) {
                    plan.merge_roots.push(root);
                }
                true
            }
            Some(WriteDisposition::Replace) => {
                replace_strategy != dlt_core::destination::ReplaceStrategy::TruncateAndInsert
            }
            _ => false,
        };
        if stage && !plan.staged.contains(&job.table) {
            plan.staged.push(job.table.clone());
        }
    }
    plan
}

/// Where the merge statements read and write.
pub struct MergeContext<'a> {
    /// The dialect.
    pub dialect: &'a dyn Dialect,
    /// The schema of the package.
    pub schema: &'a Schema,
    /// Final dataset.
    pub dataset: &'a str,
    /// Staging dataset (`<dataset>_staging`).
    pub staging: &'a str,
    /// The load id (scd2's boundary is the load's creation time).
    pub load_id: &'a str,
    /// Tables of the chain that the package has rows for (staged tables).
    pub staged: &'a [String],
    /// Tables that exist in the final dataset.
    pub existing: &'a [String],
}

impl MergeContext<'_> {
    fn q(&self, t: &str) -> String {
        format!("{}.{}", self.dialect.quote(self.dataset), self.dialect.quote(t))
    }
    fn s(&self, t: &str) -> String {
        format!("{}.{}", self.dialect.quote(self.staging), self.dialect.quote(t))
    }
    fn c(&self, c: &str) -> String {
        self.dialect.quote(c)
    }
    fn cols(&self, t: &Table) -> Vec<String> {
        t.complete_columns().map(|c| self.c(&c.name)).collect()
    }
}

fn temp_name(prefix: &str, table: &str) -> String {
    let id: u128 = rand::random();
    let clean: String = table.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(40).collect();
    format!("{clean}_{prefix}_{id:032x}")
}

fn key_columns(t: &Table, f: impl Fn(&Column) -> bool) -> Vec<&str> {
    t.columns.values().filter(|c| f(c)).map(|c| c.name.as_str()).collect()
}

/// The strategy of a merge table (`x-merge-strategy`, default delete-insert).
pub fn merge_strategy(t: &Table) -> &str {
    t.merge_strategy().unwrap_or("delete-insert")
}

/// The condition under which a staged row is *not* a hard delete.
fn not_deleted(ctx: &MergeContext<'_>, root: &Table, alias: &str) -> String {
    let mut conds = vec![];
    for c in root.columns.values().filter(|c| c.hard_delete) {
        let col = format!("{alias}{}", ctx.c(&c.name));
        if c.data_type == Some(DataType::Bool) {
            conds.push(format!("({col} IS NULL OR {col} = False)"));
        } else {
            conds.push(format!("{col} IS NULL"));
        }
    }
    if conds.is_empty() { "1 = 1".into() } else { conds.join(" AND ") }
}

fn is_deleted(ctx: &MergeContext<'_>, root: &Table, alias: &str) -> Option<String> {
    let hd: Vec<&Column> = root.columns.values().filter(|c| c.hard_delete).collect();
    if hd.is_empty() {
        return None;
    }
    Some(format!("NOT ({})", not_deleted(ctx, root, alias)))
}

fn dedup_order(ctx: &MergeContext<'_>, root: &Table) -> String {
    match root.columns.values().find(|c| c.dedup_sort.is_some()) {
        Some(c) => format!("{} {}", ctx.c(&c.name), if c.dedup_sort == Some(SortOrder::Desc) { "DESC" } else { "ASC" }),
        // without dedup_sort, the first staged row of a key wins (as dlt observed on duckdb)
        None => ctx.dialect.row_order().map(|r| format!("{r} ASC")).unwrap_or_else(|| "(SELECT NULL)".into()),
    }
}

fn last_first(ctx: &MergeContext<'_>) -> String {
    ctx.dialect.row_order().map(|r| format!("{r} DESC")).unwrap_or_else(|| "(SELECT NULL)".into())
}

/// Follow-up statements that merge the staged chain of `root` into the final dataset.
pub fn merge_statements(ctx: &MergeContext<'_>, root_name: &str) -> Result<Vec<String>> {
    let root = ctx
        .schema
        .tables
        .get(root_name)
        .ok_or_else(|| Error::Schema(format!("merge: table `{root_name}` not in schema")))?;
    let chain: Vec<&Table> = ctx
        .schema
        .table_chain(root_name)
        .iter()
        .skip(1)
        .filter(|n| ctx.existing.contains(n))
        .filter_map(|n| ctx.schema.tables.get(n))
        .collect();
    match merge_strategy(root) {
        "delete-insert" => Ok(delete_insert(ctx, root, &chain)),
        "upsert" => upsert(ctx, root, &chain),
        "insert-only" => insert_only(ctx, root, &chain),
        "scd2" => scd2(ctx, root, &chain),
        other => Err(Error::Schema(format!("table `{root_name}`: unknown merge strategy `{other}`"))),
    }
}

fn staged(ctx: &MergeContext<'_>, t: &Table) -> bool {
    ctx.staged.iter().any(|s| s == &t.name)
}

fn delete_insert(ctx: &MergeContext<'_>, root: &Table, chain: &[&Table]) -> Vec<String> {
    let mut out = vec![];
    let pk = key_columns(root, |c| c.primary_key);
    let mk = key_columns(root, |c| c.merge_key);
    let q_root = ctx.q(&root.name);
    let s_root = ctx.s(&root.name);
    let cols = ctx.cols(root).join(", ");
    // dlt's `deduplicated: true` (`x-deduplicated` in schemas of older dlt-rs versions)
    let deduplicate = !["x-stage-data-deduplicated", "x-deduplicated"]
        .iter()
        .any(|k| root.extra.get(*k).and_then(Value::as_bool).unwrap_or(false));
    if pk.is_empty() && mk.is_empty() {
        // no keys: an append through staging
        out.push(format!(
            "INSERT INTO {q_root}({cols}) SELECT {cols} FROM {s_root} WHERE {};",
            not_deleted(ctx, root, "")
        ));
        for t in chain.iter().filter(|t| staged(ctx, t)) {
            let c = ctx.cols(t).join(", ");
            out.push(format!("INSERT INTO {}({c}) SELECT {c} FROM {};", ctx.q(&t.name), ctx.s(&t.name)));
        }
        return out;
    }
    let mut key_cond: Vec<String> = vec![];
    if !pk.is_empty() {
        key_cond.push(pk.iter().map(|k| format!("d.{k} = s.{k}", k = ctx.c(k))).collect::<Vec<_>>().join(" AND "));
    }
    for k in &mk {
        key_cond.push(format!("d.{k} = s.{k}", k = ctx.c(k)));
    }
    let cond = key_cond.join(" OR ");
    let has_children = !chain.is_empty();
    if has_children {
        let del = temp_name("delete", &root.name);
        out.push(ctx.dialect.create_temp_table_as(
            &del,
            &format!(
                "SELECT d.{id} FROM {q_root} AS d WHERE EXISTS (SELECT 1 FROM {s_root} AS s WHERE {cond})",
                id = ctx.c(C_DLT_ID)
            ),
        ));
        for t in chain {
            out.push(format!(
                "DELETE FROM {} WHERE {} IN (SELECT * FROM {del});",
                ctx.q(&t.name),
                ctx.c(C_DLT_ROOT_ID)
            ));
        }
        out.push(format!("DELETE FROM {q_root} WHERE {} IN (SELECT * FROM {del});", ctx.c(C_DLT_ID)));
    } else {
        out.push(format!("DELETE FROM {q_root} AS d WHERE EXISTS (SELECT 1 FROM {s_root} AS s WHERE {cond});"));
    }
    // rows to insert: one per primary key (unless declared deduplicated), no hard deletes
    let id = ctx.c(C_DLT_ID);
    let filter = not_deleted(ctx, root, "");
    if !has_children {
        // no nested tables: insert straight from staging (Arrow tables may have no `_dlt_id`)
        if !pk.is_empty() && deduplicate {
            let part = pk.iter().map(|k| ctx.c(k)).collect::<Vec<_>>().join(", ");
            out.push(format!(
                "INSERT INTO {q_root}({cols}) SELECT {cols} FROM (SELECT ROW_NUMBER() OVER (partition BY {part} ORDER BY {}) AS _dlt_dedup_rn, {cols} FROM {s_root}) AS _dlt_dedup_numbered WHERE _dlt_dedup_rn = 1 AND ({filter});",
                dedup_order(ctx, root),
            ));
        } else {
            out.push(format!("INSERT INTO {q_root}({cols}) SELECT {cols} FROM {s_root} WHERE {filter};"));
        }
        return out;
    }
    let select_ids = if !pk.is_empty() && deduplicate {
        let part = pk.iter().map(|k| ctx.c(k)).collect::<Vec<_>>().join(", ");
        let mut inner = vec![id.clone()];
        inner.extend(root.columns.values().filter(|c| c.hard_delete).map(|c| ctx.c(&c.name)));
        format!(
            "SELECT {id} FROM (SELECT ROW_NUMBER() OVER (partition BY {part} ORDER BY {}) AS _dlt_dedup_rn, {} FROM {s_root}) AS _dlt_dedup_numbered WHERE _dlt_dedup_rn = 1 AND ({filter})",
            dedup_order(ctx, root),
            inner.join(", "),
        )
    } else {
        format!("SELECT {id} FROM {s_root} WHERE {filter}")
    };
    let ins = temp_name("insert", &root.name);
    out.push(ctx.dialect.create_temp_table_as(&ins, &select_ids));
    out.push(format!("INSERT INTO {q_root}({cols}) SELECT {cols} FROM {s_root} WHERE {id} IN (SELECT * FROM {ins});"));
    for t in chain.iter().filter(|t| staged(ctx, t)) {
        let c = ctx.cols(t).join(", ");
        out.push(format!(
            "INSERT INTO {}({c}) SELECT {c} FROM (SELECT ROW_NUMBER() OVER (partition BY {id} ORDER BY (SELECT NULL)) AS _dlt_dedup_rn, {c} FROM {}) AS _dlt_dedup_numbered WHERE _dlt_dedup_rn = 1 AND ({} IN (SELECT * FROM {ins}));",
            ctx.q(&t.name),
            ctx.s(&t.name),
            ctx.c(C_DLT_ROOT_ID)
        ));
    }
    out
}

fn upsert(ctx: &MergeContext<'_>, root: &Table, chain: &[&Table]) -> Result<Vec<String>> {
    let pk = key_columns(root, |c| c.primary_key);
    if pk.is_empty() {
        return Err(Error::Schema(format!("table `{}`: the upsert strategy needs a primary_key", root.name)));
    }
    let mut out = vec![];
    let cols: Vec<String> = ctx.cols(root);
    let on = pk.iter().map(|k| format!("d.{k} = s.{k}", k = ctx.c(k))).collect::<Vec<_>>().join(" AND ");
    let part = pk.iter().map(|k| ctx.c(k)).collect::<Vec<_>>().join(", ");
    // unlike dlt, duplicate keys inside one load do not duplicate rows: the last staged row wins
    let source = format!(
        "(SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {part} ORDER BY {}) AS _dlt_dedup_rn FROM {}) AS x WHERE _dlt_dedup_rn = 1)",
        last_first(ctx),
        ctx.s(&root.name)
    );
    let set = cols.iter().map(|c| format!("{c} = s.{c}")).collect::<Vec<_>>().join(", ");
    let values = cols.iter().map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ");
    let (matched, not_matched) = match is_deleted(ctx, root, "s.") {
        Some(del) => (
            format!("WHEN MATCHED AND {del} THEN DELETE WHEN MATCHED THEN UPDATE SET {set}"),
            format!("WHEN NOT MATCHED AND NOT ({del}) THEN INSERT ({}) VALUES ({values})", cols.join(", ")),
        ),
        None => (
            format!("WHEN MATCHED THEN UPDATE SET {set}"),
            format!("WHEN NOT MATCHED THEN INSERT ({}) VALUES ({values})", cols.join(", ")),
        ),
    };
    out.push(format!("MERGE INTO {} AS d USING {source} AS s ON {on} {matched} {not_matched};", ctx.q(&root.name)));
    let id = ctx.c(C_DLT_ID);
    for t in chain {
        if staged(ctx, t) {
            let c = ctx.cols(t);
            let set = c.iter().map(|x| format!("{x} = s.{x}")).collect::<Vec<_>>().join(", ");
            let vals = c.iter().map(|x| format!("s.{x}")).collect::<Vec<_>>().join(", ");
            out.push(format!(
                "MERGE INTO {} AS d USING (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {id} ORDER BY {}) AS _dlt_dedup_rn FROM {}) AS x WHERE _dlt_dedup_rn = 1) AS s ON d.{id} = s.{id} WHEN MATCHED THEN UPDATE SET {set} WHEN NOT MATCHED THEN INSERT ({}) VALUES ({vals});",
                ctx.q(&t.name),
                last_first(ctx),
                ctx.s(&t.name),
                c.join(", ")
            ));
            out.push(format!(
                "DELETE FROM {} WHERE {} IN (SELECT {id} FROM {}) AND {id} NOT IN (SELECT {id} FROM {});",
                ctx.q(&t.name),
                ctx.c(C_DLT_ROOT_ID),
                ctx.s(&root.name),
                ctx.s(&t.name)
            ));
        } else {
            // no nested rows in this load: the staged roots have none any more
            out.push(format!(
                "DELETE FROM {} WHERE {} IN (SELECT {id} FROM {});",
                ctx.q(&t.name),
                ctx.c(C_DLT_ROOT_ID),
                ctx.s(&root.name)
            ));
        }
    }
    Ok(out)
}

fn insert_only(ctx: &MergeContext<'_>, root: &Table, chain: &[&Table]) -> Result<Vec<String>> {
    let pk = key_columns(root, |c| c.primary_key);
    if pk.is_empty() {
        return Err(Error::Schema(format!("table `{}`: the insert-only strategy needs a primary_key", root.name)));
    }
    let cols = ctx.cols(root).join(", ");
    let on = pk.iter().map(|k| format!("d.{k} = s.{k}", k = ctx.c(k))).collect::<Vec<_>>().join(" AND ");
    let id = ctx.c(C_DLT_ID);
    let ins = temp_name("insert", &root.name);
    let mut out = vec![ctx.dialect.create_temp_table_as(
        &ins,
        &format!(
            "SELECT s.{id} FROM {} AS s WHERE NOT EXISTS (SELECT 1 FROM {} AS d WHERE {on}) AND {}",
            ctx.s(&root.name),
            ctx.q(&root.name),
            not_deleted(ctx, root, "s.")
        ),
    )];
    out.push(format!(
        "INSERT INTO {}({cols}) SELECT {cols} FROM {} WHERE {id} IN (SELECT * FROM {ins});",
        ctx.q(&root.name),
        ctx.s(&root.name)
    ));
    for t in chain.iter().filter(|t| staged(ctx, t)) {
        let c = ctx.cols(t).join(", ");
        out.push(format!(
            "INSERT INTO {}({c}) SELECT {c} FROM {} WHERE {} IN (SELECT * FROM {ins});",
            ctx.q(&t.name),
            ctx.s(&t.name),
            ctx.c(C_DLT_ROOT_ID)
        ));
    }
    Ok(out)
}

/// Statements that replace `tables` (nested first) with their staged rows, for the
/// `insert-from-staging` strategy; tables without staged rows are emptied.
pub fn replace_from_staging(ctx: &MergeContext<'_>, tables: &[String]) -> Vec<String> {
    let mut out = vec![];
    for name in tables.iter().filter(|t| ctx.existing.contains(t)) {
        out.push(format!("DELETE FROM {};", ctx.q(name)));
    }
    for name in tables.iter().rev() {
        if let Some(t) = ctx.schema.tables.get(name).filter(|t| staged(ctx, t)) {
            let c = ctx.cols(t).join(", ");
            out.push(format!("INSERT INTO {}({c}) SELECT {c} FROM {};", ctx.q(name), ctx.s(name)));
        }
    }
    out
}

/// scd2 validity column names of a root table.
pub fn scd2_columns(t: &Table) -> (String, String) {
    let from = t.columns.values().find(|c| c.extra.get("x-valid-from") == Some(&Value::Bool(true)));
    let to = t.columns.values().find(|c| c.extra.get("x-valid-to") == Some(&Value::Bool(true)));
    (
        from.map(|c| c.name.clone()).unwrap_or_else(|| "_dlt_valid_from".into()),
        to.map(|c| c.name.clone()).unwrap_or_else(|| "_dlt_valid_to".into()),
    )
}

fn scd2(ctx: &MergeContext<'_>, root: &Table, chain: &[&Table]) -> Result<Vec<String>> {
    let (vf, vt) = scd2_columns(root);
    let boundary = match root.extra.get("x-boundary-timestamp").and_then(Value::as_str) {
        Some(s) => {
            parse_ts(s).ok_or_else(|| Error::Config(format!("table `{}`: bad boundary_timestamp `{s}`", root.name)))?
        }
        None => dlt_core::ids::load_id_time(ctx.load_id)
            .map(|t| t.timestamp_micros())
            .ok_or_else(|| Error::Package(format!("load id `{}` is not a timestamp", ctx.load_id)))?,
    };
    let ts = ctx.dialect.timestamp_literal(boundary);
    // on the valid-to column, as dlt stores it (table level in schemas of older dlt-rs versions)
    let valid_to = root.columns.get(&vt);
    let active_hint = valid_to
        .and_then(|c| c.extra.get("x-active-record-timestamp"))
        .or_else(|| root.extra.get("x-active-record-timestamp"));
    let active = match active_hint.and_then(Value::as_str) {
        Some(s) => Some(ctx.dialect.timestamp_literal(
            parse_ts(s).ok_or_else(|| Error::Config(format!("bad active_record_timestamp `{s}`")))?,
        )),
        None => None,
    };
    let is_active = |col: &str| match &active {
        Some(a) => format!("{col} = {a}"),
        None => format!("{col} IS NULL"),
    };
    let active_value = active.clone().unwrap_or_else(|| "NULL".into());
    let row_version = root
        .columns
        .values()
        .find(|c| c.extra.get("x-row-version") == Some(&Value::Bool(true)))
        .map(|c| c.name.clone())
        .unwrap_or_else(|| C_DLT_ID.to_string());
    let rv = ctx.c(&row_version);
    let q_root = ctx.q(&root.name);
    let s_root = ctx.s(&root.name);
    let mk = key_columns(root, |c| c.merge_key);
    let mut out = vec![];
    // 1. retire active rows that are absent from the load (only keys present when a merge_key is set)
    let mut retire = format!(
        "UPDATE {q_root} SET {vt} = {ts} WHERE {rv} NOT IN (SELECT {rv} FROM {s_root}) AND {}",
        is_active(&ctx.c(&vt)),
        vt = ctx.c(&vt)
    );
    for k in &mk {
        retire.push_str(&format!(" AND {k} IN (SELECT {k} FROM {s_root})", k = ctx.c(k)));
    }
    if let Some(del) = is_deleted(ctx, root, "") {
        // hard-deleted rows retire their active version
        retire = format!(
            "{retire};\nUPDATE {q_root} SET {vt} = {ts} WHERE {is_act} AND {rv} IN (SELECT {rv} FROM {s_root} WHERE {del})",
            vt = ctx.c(&vt),
            is_act = is_active(&ctx.c(&vt))
        );
    }
    out.push(format!("{retire};"));
    // 2. insert new versions
    let data_cols: Vec<String> =
        root.complete_columns().filter(|c| c.name != vf && c.name != vt).map(|c| ctx.c(&c.name)).collect();
    let dc = data_cols.join(", ");
    out.push(format!(
        "INSERT INTO {q_root} ({dc}, {vf}, {vt}) SELECT {dc}, {ts} AS {vf}, {active_value} AS {vt} FROM {s_root} AS s WHERE {rv} NOT IN (SELECT {rv} FROM {q_root} WHERE {}) AND {};",
        is_active(&ctx.c(&vt)),
        not_deleted(ctx, root, "s."),
        vf = ctx.c(&vf),
        vt = ctx.c(&vt)
    ));
    // 3. nested tables are insert-only, keyed by their deterministic ids
    let id = ctx.c(C_DLT_ID);
    for t in chain.iter().filter(|t| staged(ctx, t)) {
        let c = ctx.cols(t).join(", ");
        out.push(format!(
            "INSERT INTO {}({c}) SELECT {c} FROM {} WHERE {id} NOT IN (SELECT {id} FROM {});",
            ctx.q(&t.name),
            ctx.s(&t.name),
            ctx.q(&t.name)
        ));
    }
    let _ = C_DLT_LOAD_ID;
    Ok(out)
}
