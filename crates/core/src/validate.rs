//! Checks that turn mistakes into configuration errors before anything reaches the destination:
//! a resource's hints against the destination's capabilities before extracting, and a package's
//! schema after normalizing, when the data reveals the rest (a key that names no column).
//! Found at load instead, they would fail a package that every later run retries.

use crate::destination::Capabilities;
use crate::error::{Error, Result};
use crate::resource::ResourceHints;
use crate::schema::{Schema, WriteDisposition};

/// The checks of a normalized package, for the root tables among `tables`.
pub(crate) fn package(schema: &Schema, tables: &[String], caps: &Capabilities, destination: &str) -> Result<()> {
    merge_keys(schema, tables)?;
    merges_the_destination_can_do(schema, tables, caps, destination)
}

/// A merged table must be one the destination merges: the strategy among its strategies, the
/// table in a format it merges (plain files on the filesystem destination do not).
fn merges_the_destination_can_do(
    schema: &Schema,
    tables: &[String],
    caps: &Capabilities,
    destination: &str,
) -> Result<()> {
    for name in tables {
        let Some(t) = schema.tables.get(name) else { continue };
        if t.parent.is_some() || t.write_disposition != Some(WriteDisposition::Merge) {
            continue;
        }
        let resource = t.resource.as_deref().unwrap_or(name);
        let strategy = t.merge_strategy().unwrap_or("delete-insert");
        merge_supported(resource, strategy, t.table_format.as_deref(), caps, destination)
            .map_err(|m| Error::Config(format!("{m}. {DISCARDED}")))?;
    }
    Ok(())
}

const DISCARDED: &str = "Nothing was loaded: the package was discarded and the state did not move";

/// A resource's own hints, checked against the destination before anything is extracted.
pub(crate) fn resource_hints(
    resource: &str,
    hints: &ResourceHints,
    caps: &Capabilities,
    destination: &str,
) -> Result<()> {
    let Some(wd) = &hints.write_disposition else { return Ok(()) };
    if wd.disposition != WriteDisposition::Merge {
        return Ok(());
    }
    let strategy = wd.strategy.map_or("delete-insert", |s| s.as_str());
    merge_supported(resource, strategy, hints.table_format.as_deref(), caps, destination)
        .map_err(|m| Error::Config(format!("{m}. Nothing was extracted")))
}

/// Why the destination cannot merge this table, if it cannot.
fn merge_supported(
    resource: &str,
    strategy: &str,
    table_format: Option<&str>,
    caps: &Capabilities,
    destination: &str,
) -> std::result::Result<(), String> {
    if !caps.merge_table_formats.is_empty() && !table_format.is_some_and(|f| caps.merge_table_formats.contains(&f)) {
        return Err(format!(
            "resource `{resource}` has write_disposition `merge`, which the {destination} destination does only \
             for table_format {}; use append or replace, or set table_format = \"{}\"",
            caps.merge_table_formats.join(" or "),
            caps.merge_table_formats[0]
        ));
    }
    if !caps.merge_strategies.iter().any(|s| s.as_str() == strategy) {
        let have: Vec<&str> = caps.merge_strategies.iter().map(|s| s.as_str()).collect();
        return Err(format!(
            "resource `{resource}`: merge strategy `{strategy}` is not one the {destination} destination runs \
             (it runs: {}); choose one of them in write_disposition",
            if have.is_empty() { "none".to_string() } else { have.join(", ") }
        ));
    }
    Ok(())
}

/// Every `primary_key` / `merge_key` of a merged table among `tables` must be a column the
/// data has (a key column known only from hints never got a type).
fn merge_keys(schema: &Schema, tables: &[String]) -> Result<()> {
    for name in tables {
        let Some(t) = schema.tables.get(name) else { continue };
        if t.parent.is_some() || t.write_disposition != Some(WriteDisposition::Merge) {
            continue;
        }
        for c in t.columns.values() {
            let what = match (c.primary_key, c.merge_key) {
                (true, _) => "primary_key",
                (_, true) => "merge_key",
                _ => continue,
            };
            if c.data_type.is_some() {
                continue;
            }
            let has: Vec<&str> = t
                .columns
                .values()
                .filter(|c| c.data_type.is_some() && !c.name.starts_with("_dlt_"))
                .map(|c| c.name.as_str())
                .collect();
            let resource = t.resource.as_deref().unwrap_or(name);
            return Err(Error::Config(format!(
                "resource `{resource}`: {what} `{}` is not a column of table `{name}`; the data has: {}. Fix \
                 `{what}` in the resource's hints. Nothing was loaded: the package was discarded and the state \
                 did not move, so the next run reads the same data again",
                c.name,
                if has.is_empty() { "no columns".to_string() } else { has.join(", ") }
            )));
        }
    }
    Ok(())
}
