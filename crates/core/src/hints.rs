//! A resource's table hints as dlt's extract turns them into schema tables: the partial table
//! dlt computes from the hints (`dlt/extract/hints.py`) and its merge into the schema's table
//! (dlt's `update_table` with authoritative compound properties), then the normalizer config's
//! root key propagation ([`Schema::extend_table`]).

use indexmap::IndexMap;
use serde_json::{Value, json};

use crate::contract::{ContractMode, SchemaContract};
use crate::naming::NamingConvention;
use crate::resource::{MergeStrategy, ResourceHints, WriteDispositionConfig};
use crate::schema::{C_DLT_ID, Column, DataType, Schema, Table, WriteDisposition};

/// Put a resource's hints on its table in the schema (as dlt's extract does when the
/// resource's first item for the table arrives).
pub(crate) fn apply_hints(
    schema: &mut Schema,
    table: &str,
    resource: &str,
    hints: &ResourceHints,
    source_nesting: Option<u32>,
    naming: &dyn NamingConvention,
) {
    let mut partial = hints_table(table, resource, hints, naming);
    if is_new_table(schema, table) && columns_contract(schema, table, hints) != ContractMode::Evolve {
        partial.set_evolve_columns_once();
    }
    merge_table(schema, partial);
    if let Some(n) = source_nesting {
        // a source's nesting limit is the normalizer's (tables may override it)
        schema.set_normalizer_max_nesting(n);
    }
    schema.extend_table(table);
}

/// dlt's new table: not in the schema, or only declared columns (no types).
fn is_new_table(schema: &Schema, table: &str) -> bool {
    schema.tables.get(table).is_none_or(|t| !t.has_complete_columns())
}

/// The `columns` mode of the contract a table gets from hints, its own or the schema's.
fn columns_contract(schema: &Schema, table: &str, hints: &ResourceHints) -> ContractMode {
    let v = hints
        .schema_contract
        .as_ref()
        .or(schema.tables.get(table).and_then(|t| t.schema_contract.as_ref()))
        .or(schema.settings.schema_contract.as_ref());
    v.and_then(|v| SchemaContract::parse(v).ok()).map(|c| c.columns).unwrap_or(ContractMode::Evolve)
}

/// Column properties dlt treats as compound: a table's hints name all columns that have them.
const COMPOUND_PROPS: [&str; 5] = ["primary_key", "merge_key", "partition", "cluster", "incremental"];

fn has_prop(c: &Column, prop: &str) -> bool {
    match prop {
        "primary_key" => c.primary_key,
        "merge_key" => c.merge_key,
        "partition" => c.partition,
        "cluster" => c.cluster,
        other => c.extra.get(other).is_some_and(|v| !matches!(v, Value::Null | Value::Bool(false))),
    }
}

/// A column with no type and no hint left but the `nullable: false` its key hint gave it.
fn is_bare_key_stub(c: &Column) -> bool {
    c.data_type.is_none()
        && c.nullable != Some(true)
        && !COMPOUND_PROPS.iter().any(|p| has_prop(c, p))
        && c.unique.is_none()
        && c.precision.is_none()
        && c.scale.is_none()
        && c.timezone.is_none()
        && c.extra.is_empty()
}

fn remove_prop(c: &mut Column, prop: &str) {
    match prop {
        "primary_key" => c.primary_key = false,
        "merge_key" => c.merge_key = false,
        "partition" => c.partition = false,
        "cluster" => c.cluster = false,
        other => {
            c.extra.shift_remove(other);
        }
    }
}

/// The table dlt computes from a resource's hints (before any data): the declared columns in
/// their order (as declared, no defaults added), the key columns (`nullable: false`), the
/// merge disposition's table hints (`x-merge-strategy` only when a strategy is given,
/// `x-stage-data-deduplicated`, …) and scd2 columns, and `incremental: true` on a cursor
/// column given by a plain name.
fn hints_table(table: &str, resource: &str, hints: &ResourceHints, naming: &dyn NamingConvention) -> Table {
    let mut t = Table::new(table);
    t.resource = Some(resource.to_string());
    let mut cols: IndexMap<String, Column> = IndexMap::new();
    for (name, col) in &hints.columns {
        let n = naming.normalize_path(name);
        let mut c = cols.shift_remove(&n).unwrap_or_default();
        let mut h = col.clone();
        h.name = n.clone();
        c.merge_hints(&h);
        c.name = n.clone();
        cols.insert(n, c);
    }
    for (keys, prop) in [(&hints.primary_key, "primary_key"), (&hints.merge_key, "merge_key")] {
        let Some(keys) = keys else { continue };
        // the key argument names all key columns: declared key flags give way
        for c in cols.values_mut() {
            remove_prop(c, prop);
        }
        for k in &keys.0 {
            let n = naming.normalize_path(k);
            let c = cols.entry(n.clone()).or_insert_with(|| Column {
                name: n,
                nullable: Some(false),
                ..Default::default()
            });
            if c.nullable.is_none() {
                c.nullable = Some(false);
            }
            if prop == "primary_key" {
                c.primary_key = true;
            } else {
                c.merge_key = true;
            }
        }
    }
    if let Some(wd) = &hints.write_disposition {
        t.write_disposition = Some(wd.disposition);
        if wd.disposition == WriteDisposition::Merge {
            merge_disposition_hints(&mut t, &mut cols, wd, naming);
        }
    }
    if let Some(cursor) = hints.incremental.as_ref().and_then(|i| simple_field_name(&i.cursor_path)) {
        let n = naming.normalize_path(&cursor);
        let c = cols.entry(n.clone()).or_insert_with(|| Column { name: n, ..Default::default() });
        c.extra.insert("incremental".into(), json!(true));
    }
    t.columns = cols;
    if let Some(n) = hints.max_table_nesting {
        t.set_max_nesting(n);
    }
    if let Some(c) = &hints.schema_contract {
        t.schema_contract = Some(c.clone());
    }
    if let Some(f) = &hints.file_format {
        t.file_format = Some(f.clone());
    }
    if let Some(f) = &hints.table_format {
        t.table_format = Some(f.clone());
    }
    t
}

/// The table hints of a merge disposition, as dlt stores them.
fn merge_disposition_hints(
    t: &mut Table,
    cols: &mut IndexMap<String, Column>,
    wd: &WriteDispositionConfig,
    naming: &dyn NamingConvention,
) {
    let truthy = |v: &Value| !matches!(v, Value::Null | Value::Bool(false)) && v != &json!("") && v != &json!(0);
    if let Some(strategy) = wd.strategy {
        t.extra.insert("x-merge-strategy".into(), json!(strategy.as_str()));
    }
    for (key, hint) in [
        ("deduplicated", "x-stage-data-deduplicated"),
        ("source_filter", "x-merge-source-filter"),
        ("destination_scope", "x-merge-destination-scope"),
        ("skip_unchanged_rows", "x-merge-skip-unchanged-rows"),
    ] {
        if let Some(v) = wd.options.get(key).filter(|v| truthy(v)) {
            t.extra.insert(hint.into(), v.clone());
        }
    }
    let row_version =
        wd.options.get("row_version_column_name").and_then(Value::as_str).map(|s| naming.normalize_path(s));
    if wd.strategy != Some(MergeStrategy::Scd2) {
        // upsert and friends compare the row version only when told to skip unchanged rows
        if let Some(rv) = row_version
            && wd.options.get("skip_unchanged_rows").is_some_and(truthy)
        {
            let c = cols.entry(rv.clone()).or_insert_with(|| Column { name: rv, ..Default::default() });
            c.nullable = Some(false);
            c.extra.insert("x-row-version".into(), json!(true));
        }
        return;
    }
    if let Some(b) = wd.options.get("boundary_timestamp") {
        t.extra.insert("x-boundary-timestamp".into(), b.clone());
    }
    let names: Vec<String> = wd
        .options
        .get("validity_column_names")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(|s| naming.normalize_path(s))).collect())
        .filter(|v: &Vec<String>| v.len() == 2)
        .unwrap_or_else(|| vec!["_dlt_valid_from".into(), "_dlt_valid_to".into()]);
    // the validity columns are (re)defined whole
    let mut from = Column::new(names[0].clone(), DataType::Timestamp);
    from.extra.insert("x-valid-from".into(), json!(true));
    cols.insert(names[0].clone(), from);
    let mut to = Column::new(names[1].clone(), DataType::Timestamp);
    to.extra.insert("x-valid-to".into(), json!(true));
    to.extra.insert(
        "x-active-record-timestamp".into(),
        wd.options.get("active_record_timestamp").cloned().unwrap_or(Value::Null),
    );
    cols.insert(names[1].clone(), to);
    // the row version (the row hash in `_dlt_id` unless named) is not unique: a retired row
    // that comes back has the same one
    let rv = row_version.unwrap_or_else(|| C_DLT_ID.to_string());
    let mut c = Column {
        name: rv.clone(),
        nullable: Some(false),
        unique: Some(false),
        row_key: Some(false),
        ..Default::default()
    };
    c.extra.insert("x-row-version".into(), json!(true));
    cols.insert(rv, c);
}

/// The column a cursor path names, if it is a plain field name (`ts` or `"a.b"`), not a path.
fn simple_field_name(path: &str) -> Option<String> {
    let p = path.trim();
    if let Some(inner) = p.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return (!inner.is_empty() && !inner.contains('"')).then(|| inner.to_string());
    }
    let mut chars = p.chars();
    let first = chars.next()?;
    ((first.is_alphabetic() || first == '_') && chars.all(|c| c.is_alphanumeric() || c == '_')).then(|| p.to_string())
}

/// dlt's `update_table` of a table computed from hints: a new table is added as it is; an
/// existing one takes the new table-level values, compound column properties (keys, partition,
/// cluster, incremental) named by the new table replace the old ones, existing columns take the
/// new properties, and a column that was only declared (no type) moves to the end once it
/// gets a type.
fn merge_table(schema: &mut Schema, mut partial: Table) {
    let Some(t) = schema.tables.get_mut(&partial.name) else {
        if partial.parent.is_none() && partial.write_disposition.is_none() {
            partial.write_disposition = Some(WriteDisposition::Append);
        }
        schema.tables.insert(partial.name.clone(), partial);
        return;
    };
    let mut lost_key: Vec<String> = vec![];
    for prop in COMPOUND_PROPS {
        if partial.columns.values().any(|c| has_prop(c, prop)) {
            for c in t.columns.values_mut() {
                if has_prop(c, prop) && !partial.columns.contains_key(&c.name) {
                    lost_key.push(c.name.clone());
                }
                remove_prop(c, prop);
            }
        }
    }
    // a column that existed only as a key hint (never in the data) goes with the hint: a
    // corrected `primary_key` replaces the mistaken one instead of leaving it behind
    for name in lost_key {
        if t.columns.get(&name).is_some_and(is_bare_key_stub) {
            t.columns.shift_remove(&name);
        }
    }
    for (name, col) in partial.columns {
        if col.is_complete() && t.columns.get(&name).is_some_and(|c| !c.is_complete()) {
            let mut old = t.columns.shift_remove(&name).expect("checked");
            old.merge_hints(&col);
            t.columns.insert(name, old);
        } else if let Some(old) = t.columns.get_mut(&name) {
            old.merge_hints(&col);
        } else {
            t.columns.insert(name, col);
        }
    }
    if partial.write_disposition.is_some() {
        t.write_disposition = partial.write_disposition;
    } else if t.write_disposition.is_none() && t.parent.is_none() {
        t.write_disposition = Some(WriteDisposition::Append);
    }
    if partial.resource.is_some() {
        t.resource = partial.resource;
    }
    if partial.schema_contract.is_some() {
        t.schema_contract = partial.schema_contract;
    }
    if partial.file_format.is_some() {
        t.file_format = partial.file_format;
    }
    if partial.table_format.is_some() {
        t.table_format = partial.table_format;
    }
    // table-level hints replace the old values (as dlt: a resource's `x-normalizer` with
    // `max_nesting` replaces the table's, normalize marks `seen-data` again)
    for (k, v) in partial.extra {
        if t.extra.get(&k) != Some(&v) {
            t.extra.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::SnakeCase;

    fn apply(schema: &mut Schema, table: &str, hints: serde_json::Value) {
        let hints = ResourceHints::from_json(&hints).expect("hints");
        apply_hints(schema, table, table, &hints, None, &SnakeCase::default());
    }

    #[test]
    fn plain_field_names_only() {
        assert_eq!(simple_field_name("ts"), Some("ts".into()));
        assert_eq!(simple_field_name("\"a.b\""), Some("a.b".into()));
        assert_eq!(simple_field_name("$.ts"), None);
        assert_eq!(simple_field_name("items[*].ts"), None);
        assert_eq!(simple_field_name("a.b"), None);
    }

    #[test]
    fn keys_replace_keys_and_declared_columns_stay_as_declared() {
        let mut s = Schema::new("s");
        apply(&mut s, "t", json!({"primary_key": "id", "columns": {"v": {"data_type": "text"}}}));
        let t = &s.tables["t"];
        assert_eq!(t.columns.keys().collect::<Vec<_>>(), ["v", "id"]);
        assert_eq!(t.columns["v"].nullable, None, "no nullable added to a declared column");
        assert_eq!((t.columns["id"].primary_key, t.columns["id"].nullable), (true, Some(false)));
        assert_eq!(t.write_disposition, Some(WriteDisposition::Append));
        // a later primary key names all key columns: the old one loses the flag, and a key
        // column known only from the hint (never in the data) goes with it
        apply(&mut s, "t", json!({"primary_key": "v"}));
        let t = &s.tables["t"];
        assert!(!t.columns.contains_key("id") && t.columns["v"].primary_key);
        // a key column the data has keeps its place without the flag
        apply(&mut s, "u", json!({"primary_key": "id", "columns": {"id": {"data_type": "bigint"}}}));
        apply(&mut s, "u", json!({"primary_key": "w"}));
        let u = &s.tables["u"];
        assert!(!u.columns["id"].primary_key && u.columns["w"].primary_key);
    }

    #[test]
    fn merge_and_scd2_hints_as_dlt_stores_them() {
        let mut s = Schema::new("s");
        apply(&mut s, "m", json!({"write_disposition": "merge", "primary_key": "id"}));
        assert_eq!(s.tables["m"].merge_strategy(), None, "no strategy given, none stored");
        assert!(s.propagates_root_key("m"));
        apply(
            &mut s,
            "d",
            json!({"write_disposition": {"disposition": "merge", "strategy": "scd2",
                   "active_record_timestamp": "9999-12-31", "deduplicated": false}}),
        );
        let d = &s.tables["d"];
        assert_eq!(d.columns.keys().collect::<Vec<_>>(), ["_dlt_valid_from", "_dlt_valid_to", "_dlt_id"]);
        assert_eq!(d.columns["_dlt_valid_to"].extra["x-active-record-timestamp"], json!("9999-12-31"));
        assert_eq!((d.columns["_dlt_id"].unique, d.columns["_dlt_id"].row_key), (Some(false), Some(false)));
        assert!(!d.extra.contains_key("x-stage-data-deduplicated"), "a false option is not stored");
        assert!(!s.propagates_root_key("d"), "scd2 does not propagate the root id");
        // switched to append: the next extraction drops the table's propagation entry
        apply(&mut s, "m", json!({"write_disposition": "append"}));
        assert!(s.propagates_root_key("m"), "entries are only added while hints apply");
        s.refresh_root_key_propagation();
        assert!(!s.propagates_root_key("m"));
        assert_eq!(s.normalizers.pointer("/json/config/propagation/tables"), Some(&json!({})));
    }

    #[test]
    fn cursor_column_is_marked_incremental() {
        let mut s = Schema::new("s");
        apply(&mut s, "i", json!({"incremental": {"cursor_path": "updatedAt"}}));
        assert_eq!(s.tables["i"].columns["updated_at"].extra["incremental"], json!(true));
    }
}
