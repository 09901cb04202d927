//! File layout as dlt's filesystem destination lays files out: a template such as
//! `{table_name}/{load_id}.{file_id}.{ext}` (the default) below `<bucket_url>/<dataset_name>/`.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::error::{FsError, FsResult};

/// dlt's default layout.
pub const DEFAULT_LAYOUT: &str = "{table_name}/{load_id}.{file_id}.{ext}";

/// Date and time tokens (pendulum's format tokens, rendered lower-case as dlt does).
pub const DATETIME_PLACEHOLDERS: &[&str] =
    &["YYYY", "YY", "Y", "MMMM", "MMM", "MM", "M", "DD", "D", "HH", "H", "mm", "m", "dddd", "ddd", "dd", "d", "Q"];

/// Every placeholder dlt knows besides the date tokens.
pub const STANDARD_PLACEHOLDERS: &[&str] = &[
    "schema_name",
    "table_name",
    "load_id",
    "file_id",
    "ext",
    "curr_date",
    "timestamp",
    "timestamp_ms",
    "load_package_timestamp",
    "load_package_timestamp_ms",
];

/// Placeholders allowed before `{table_name}`.
const PREFIX_PLACEHOLDERS: &[&str] = &["schema_name"];

/// A parsed, validated layout.
#[derive(Debug, Clone)]
pub struct Layout {
    template: String,
    placeholders: Vec<String>,
    extra: BTreeMap<String, String>,
    prefix_template: String,
}

/// The values a file's path is made from.
#[derive(Debug, Clone)]
pub struct PathParams<'a> {
    /// Schema name.
    pub schema_name: &'a str,
    /// Table name.
    pub table_name: &'a str,
    /// Load id.
    pub load_id: &'a str,
    /// Job file id.
    pub file_id: &'a str,
    /// Extension (`parquet`, `jsonl`, `csv`; without `.gz`).
    pub ext: &'a str,
    /// When the load package was created.
    pub load_package_timestamp: DateTime<Utc>,
    /// `current_datetime` from the config; the package's time when unset (as dlt).
    pub current_datetime: Option<DateTime<Utc>>,
}

fn placeholders_of(template: &str) -> FsResult<Vec<String>> {
    let mut out = vec![];
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| FsError::Config(format!("layout `{template}` has a `{{` without a closing `}}`")))?;
        out.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    if rest.contains('}') {
        return Err(FsError::Config(format!("layout `{template}` has a `}}` without an opening `{{`")));
    }
    Ok(out)
}

/// Check that `value` can be one path segment: not empty, not `.`/`..`, no separators, no control
/// characters. `what` names it in the error.
pub fn check_segment(what: &str, value: &str) -> FsResult<()> {
    let bad = value.is_empty()
        || value == "."
        || value == ".."
        || value.chars().any(|c| c == '/' || c == '\\' || c.is_control())
        || value.trim() != value;
    if bad {
        return Err(FsError::UnsafePath(format!(
            "{what} `{}` cannot be used as a file or folder name (empty, `.`/`..`, a path separator, a control \
             character or surrounding blanks); it would not stay inside the dataset folder",
            value.escape_debug()
        )));
    }
    Ok(())
}

/// Check a relative path made from a layout: no absolute path, no empty, `.` or `..` segments.
pub fn check_relative_path(path: &str) -> FsResult<()> {
    if path.starts_with('/') || path.contains('\\') || path.chars().any(char::is_control) {
        return Err(FsError::UnsafePath(format!("`{}` is not a relative path", path.escape_debug())));
    }
    for seg in path.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(FsError::UnsafePath(format!(
                "`{}` has an empty, `.` or `..` segment and could leave the dataset folder",
                path.escape_debug()
            )));
        }
    }
    Ok(())
}

impl Layout {
    /// Parse and validate a layout with its extra placeholders (`extra_placeholders`).
    pub fn new(template: &str, extra: BTreeMap<String, String>) -> FsResult<Layout> {
        let template = template.trim();
        if template.is_empty() {
            return Err(FsError::Config("layout is empty".into()));
        }
        if template.starts_with('/') {
            return Err(FsError::Config(format!("layout `{template}` must be relative (no leading `/`)")));
        }
        let placeholders = placeholders_of(template)?;
        let invalid: Vec<&String> = placeholders
            .iter()
            .filter(|p| {
                !STANDARD_PLACEHOLDERS.contains(&p.as_str())
                    && !DATETIME_PLACEHOLDERS.contains(&p.as_str())
                    && !extra.contains_key(p.as_str())
            })
            .collect();
        if !invalid.is_empty() {
            return Err(FsError::Config(format!(
                "layout `{template}` has unknown placeholders {invalid:?}; known: {}, the date tokens {} and \
                 extra_placeholders",
                STANDARD_PLACEHOLDERS.join(", "),
                DATETIME_PLACEHOLDERS.join(" ")
            )));
        }
        let Some(ti) = placeholders.iter().position(|p| p == "table_name") else {
            return Err(FsError::Config(format!("layout `{template}` has no {{table_name}} placeholder")));
        };
        let before: Vec<&String> =
            placeholders[..ti].iter().filter(|p| !PREFIX_PLACEHOLDERS.contains(&p.as_str())).collect();
        if !before.is_empty() {
            return Err(FsError::Config(format!(
                "layout `{template}`: only {{schema_name}} may come before {{table_name}}, found {before:?}"
            )));
        }
        let at = template.find("{table_name}").expect("placeholder found") + "{table_name}".len();
        let sep = template[at..].chars().next();
        let Some(c) = sep.filter(|c| *c != '{') else {
            return Err(FsError::Config(format!(
                "layout `{template}` needs a separator after {{table_name}} (so tables with a common start keep apart)"
            )));
        };
        let prefix_template = template[..at + c.len_utf8()].to_string();
        Ok(Layout { template: template.to_string(), placeholders, extra, prefix_template })
    }

    /// The template.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// Extra placeholders not used by the layout (dlt warns about them).
    pub fn unused_extra(&self) -> Vec<&str> {
        self.extra.keys().filter(|k| !self.placeholders.contains(k)).map(String::as_str).collect()
    }

    /// Whether every table gets its own folder (`…{table_name}/…`).
    pub fn table_is_folder(&self) -> bool {
        self.prefix_template.ends_with('/')
    }

    /// The path prefix that all files of `table` start with (relative to the dataset folder).
    pub fn table_prefix(&self, schema_name: &str, table: &str) -> FsResult<String> {
        check_segment("table name", table)?;
        check_segment("schema name", schema_name)?;
        let p = self.prefix_template.replace("{schema_name}", schema_name).replace("{table_name}", table);
        Ok(p)
    }

    /// The path of one file (relative to the dataset folder).
    pub fn render(&self, p: &PathParams<'_>) -> FsResult<String> {
        check_segment("table name", p.table_name)?;
        check_segment("schema name", p.schema_name)?;
        check_segment("load id", p.load_id)?;
        check_segment("file id", p.file_id)?;
        let now = p.current_datetime.unwrap_or(p.load_package_timestamp);
        let mut out = String::with_capacity(self.template.len() + 64);
        let mut rest = self.template.as_str();
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let end = after.find('}').expect("validated");
            let name = &after[..end];
            out.push_str(&self.value(name, p, now));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        if !self.placeholders.iter().any(|x| x == "ext") {
            out.push('.');
            out.push_str(p.ext);
        }
        check_relative_path(&out)?;
        Ok(out)
    }

    fn value(&self, name: &str, p: &PathParams<'_>, now: DateTime<Utc>) -> String {
        if let Some(v) = self.extra.get(name) {
            return v.clone();
        }
        match name {
            "schema_name" => p.schema_name.into(),
            "table_name" => p.table_name.into(),
            "load_id" => p.load_id.into(),
            "file_id" => p.file_id.into(),
            "ext" => p.ext.into(),
            "curr_date" => now.format("%Y-%m-%d").to_string(),
            "timestamp" => now.timestamp().to_string(),
            "timestamp_ms" => now.timestamp_millis().to_string(),
            "load_package_timestamp" => p.load_package_timestamp.timestamp().to_string(),
            "load_package_timestamp_ms" => p.load_package_timestamp.timestamp_millis().to_string(),
            token => date_token(token, now),
        }
    }
}

/// One pendulum format token of `t`, lower-cased (dlt lower-cases date parts).
pub fn date_token(token: &str, t: DateTime<Utc>) -> String {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    const DAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
    let wd = t.weekday().num_days_from_monday() as usize;
    let year = t.year().to_string();
    match token {
        "YYYY" | "Y" => year,
        "YY" => year.get(2..).unwrap_or_default().to_string(),
        "MMMM" => MONTHS[t.month0() as usize].into(),
        "MMM" => MONTHS[t.month0() as usize][..3].into(),
        "MM" => format!("{:02}", t.month()),
        "M" => t.month().to_string(),
        "DD" => format!("{:02}", t.day()),
        "D" => t.day().to_string(),
        "HH" => format!("{:02}", t.hour()),
        "H" => t.hour().to_string(),
        "mm" => format!("{:02}", t.minute()),
        "m" => t.minute().to_string(),
        "dddd" => DAYS[wd].into(),
        "ddd" => DAYS[wd][..3].into(),
        "dd" => DAYS[wd][..2].into(),
        // pendulum's `d`: 0 = Sunday
        "d" => ((wd + 1) % 7).to_string(),
        "Q" => (t.month0() / 3 + 1).to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn params<'a>(table: &'a str) -> PathParams<'a> {
        PathParams {
            schema_name: "s",
            table_name: table,
            load_id: "1700000000.123456",
            file_id: "abc123",
            ext: "parquet",
            // a Sunday
            load_package_timestamp: Utc.with_ymd_and_hms(2024, 3, 3, 7, 5, 9).unwrap(),
            current_datetime: None,
        }
    }

    #[test]
    fn default_layout() {
        let l = Layout::new(DEFAULT_LAYOUT, Default::default()).unwrap();
        assert_eq!(l.render(&params("users")).unwrap(), "users/1700000000.123456.abc123.parquet");
        assert_eq!(l.table_prefix("s", "users").unwrap(), "users/");
        assert!(l.table_is_folder());
    }

    #[test]
    fn placeholders() {
        let mut extra = BTreeMap::new();
        extra.insert("env".to_string(), "prod".to_string());
        let l = Layout::new(
            "{schema_name}/{table_name}/{env}/{YYYY}/{MM}/{DD}/{HH}{mm}/{ddd}-{d}-{MMM}-{Q}/{curr_date}/{timestamp}/{load_package_timestamp_ms}/{file_id}",
            extra,
        )
        .unwrap();
        assert_eq!(
            l.render(&params("t")).unwrap(),
            "s/t/prod/2024/03/03/0705/sun-0-mar-1/2024-03-03/1709449509/1709449509000/abc123.parquet"
        );
        assert_eq!(l.table_prefix("s", "t").unwrap(), "s/t/");
        let mut p = params("t");
        p.current_datetime = Some(Utc.with_ymd_and_hms(2025, 12, 31, 23, 0, 0).unwrap());
        let l = Layout::new("{table_name}.{YY}{M}{D}.{load_package_timestamp}.{ext}", Default::default()).unwrap();
        assert_eq!(l.render(&p).unwrap(), "t.251231.1709449509.parquet");
        assert_eq!(l.table_prefix("s", "t").unwrap(), "t.");
        assert!(!l.table_is_folder());
    }

    #[test]
    fn invalid_layouts() {
        for bad in [
            "{load_id}/{table_name}/{file_id}",
            "{table_name}{load_id}",
            "{table_name}/{unknown}",
            "{load_id}.{ext}",
            "/{table_name}/{load_id}",
            "{table_name/{load_id}",
        ] {
            assert!(Layout::new(bad, Default::default()).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostile_names_stay_inside() {
        let l = Layout::new(DEFAULT_LAYOUT, Default::default()).unwrap();
        for t in ["..", ".", "../etc", "a/b", "a\\b", "", " x", "x\n", "/abs"] {
            assert!(l.render(&params(t)).is_err(), "{t:?}");
            assert!(l.table_prefix("s", t).is_err(), "{t:?}");
        }
        let mut extra = BTreeMap::new();
        extra.insert("up".to_string(), "..".to_string());
        let l = Layout::new("{table_name}/{up}/{load_id}", extra).unwrap();
        assert!(l.render(&params("t")).is_err());
        // ordinary odd-but-safe names are fine
        let l = Layout::new(DEFAULT_LAYOUT, Default::default()).unwrap();
        assert_eq!(l.render(&params("Ünïcode tàble")).unwrap(), "Ünïcode tàble/1700000000.123456.abc123.parquet");
    }
}
