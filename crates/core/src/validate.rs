//! Checks of a package's schema after normalizing, before anything reaches the destination:
//! mistakes in hints that the data reveals (a key that names no column) are configuration
//! errors here, not failed merges at load that leave a package pending.

use crate::error::{Error, Result};
use crate::schema::{Schema, WriteDisposition};

/// Every `primary_key` / `merge_key` of a merged table among `tables` must be a column the
/// data has (a key column known only from hints never got a type).
pub(crate) fn merge_keys(schema: &Schema, tables: &[String]) -> Result<()> {
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
