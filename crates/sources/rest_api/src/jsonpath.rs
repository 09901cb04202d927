//! The JSONPath subset data selectors and paginator paths use: `$`, `$.a.b`, `a.b`, `a[0]`,
//! `a[*].b`, `['key with.dots']`; plus dlt's detection of where a page's records are.

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
    All,
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonPath {
    /// Parse; errors say what is not supported.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let t = text.trim();
        let mut rest = t.strip_prefix('$').unwrap_or(t);
        let mut steps = vec![];
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                if r.starts_with('.') {
                    return Err(format!("`{text}`: recursive descent (`..`) is not supported"));
                }
                rest = r;
                continue;
            }
            if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or_else(|| format!("`{text}`: unclosed `[`"))?;
                let inner = r[..end].trim();
                rest = &r[end + 1..];
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Ok(i) = inner.parse::<usize>() {
                    steps.push(Step::Index(i));
                } else if inner.len() >= 2
                    && ((inner.starts_with('\'') && inner.ends_with('\''))
                        || (inner.starts_with('"') && inner.ends_with('"')))
                {
                    steps.push(Step::Key(inner[1..inner.len() - 1].to_string()));
                } else {
                    return Err(format!("`{text}`: unsupported selector `[{inner}]` (use [n], [*] or ['key'])"));
                }
                continue;
            }
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let key = &rest[..end];
            if key == "*" {
                steps.push(Step::All);
            } else if key.contains(['(', ')', '?', '@', '$']) {
                return Err(format!("`{text}`: filters and expressions are not supported"));
            } else {
                steps.push(Step::Key(key.to_string()));
            }
            rest = &rest[end..];
        }
        Ok(JsonPath { text: text.to_string(), steps })
    }

    /// The whole document (`$`).
    pub fn is_root(&self) -> bool {
        self.steps.is_empty()
    }

    /// The keys from the root, when the path is made of keys only (`$`: none).
    pub fn keys(&self) -> Option<Vec<String>> {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Key(k) => Some(k.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether the path can match more than one value.
    pub fn has_wildcard(&self) -> bool {
        self.steps.contains(&Step::All)
    }

    /// All values the path matches, in document order.
    pub fn find<'v>(&self, doc: &'v Value) -> Vec<&'v Value> {
        let mut cur = vec![doc];
        for s in &self.steps {
            let mut next = vec![];
            for v in cur {
                match s {
                    Step::Key(k) => {
                        if let Some(x) = v.get(k.as_str()) {
                            next.push(x);
                        }
                    }
                    Step::Index(i) => {
                        if let Some(x) = v.get(*i) {
                            next.push(x);
                        }
                    }
                    Step::All => match v {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(m) => next.extend(m.values()),
                        _ => {}
                    },
                }
            }
            cur = next;
        }
        cur
    }

    /// The first match.
    pub fn first<'v>(&self, doc: &'v Value) -> Option<&'v Value> {
        self.find(doc).into_iter().next()
    }

    /// The records a data selector picks: a matched list gives its items, a matched object is
    /// one record, several matches (a wildcard) are the records. `None` when nothing matched.
    pub fn records(&self, doc: &Value) -> Option<Vec<Value>> {
        let found = self.find(doc);
        if found.is_empty() {
            return None;
        }
        if found.len() == 1 && !self.has_wildcard() {
            return Some(match found[0] {
                Value::Array(a) => a.clone(),
                Value::Null => vec![],
                other => vec![other.clone()],
            });
        }
        let mut out = vec![];
        for v in found {
            match v {
                Value::Array(a) => out.extend(a.iter().cloned()),
                Value::Null => {}
                other => out.push(other.clone()),
            }
        }
        Some(out)
    }
}

/// Keys that usually hold a page's records (dlt's list, in its order of preference).
const DATA_KEYS: &[&str] =
    &["data", "items", "results", "entries", "records", "rows", "entities", "payload", "content", "objects", "values"];
/// Keys that never hold them.
const NON_DATA_KEYS: &[&str] = &["meta", "metadata", "pagination", "links", "extras", "headers"];

/// dlt's data selector detection: a list response is the records (`$`); otherwise the first
/// list (up to two levels deep, skipping metadata keys) under a well-known data key, else the
/// first list found; `None` means the whole response is one record.
pub fn detect_data_path(doc: &Value) -> Option<String> {
    if doc.is_array() {
        return Some("$".to_string());
    }
    let mut lists: Vec<Vec<String>> = vec![];
    fn walk(v: &Value, path: &mut Vec<String>, depth: usize, out: &mut Vec<Vec<String>>) {
        let Value::Object(m) = v else { return };
        for (k, x) in m {
            if NON_DATA_KEYS.contains(&k.to_ascii_lowercase().as_str()) {
                continue;
            }
            path.push(k.clone());
            match x {
                Value::Array(_) => out.push(path.clone()),
                Value::Object(_) if depth < 2 => walk(x, path, depth + 1, out),
                _ => {}
            }
            path.pop();
        }
    }
    walk(doc, &mut vec![], 1, &mut lists);
    let preferred =
        lists.iter().find(|p| p.last().is_some_and(|k| DATA_KEYS.contains(&k.to_ascii_lowercase().as_str())));
    preferred.or(lists.first()).map(|p| p.iter().map(|k| quote_key(k)).collect::<Vec<_>>().join("."))
}

fn quote_key(k: &str) -> String {
    if k.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') && !k.is_empty() {
        k.to_string()
    } else {
        format!("['{k}']")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let doc = json!({"a": {"b": [{"c": 1}, {"c": 2}]}, "x.y": 3});
        let p = |s| JsonPath::parse(s).unwrap();
        assert_eq!(p("$").records(&doc).unwrap().len(), 1);
        assert_eq!(p("$.a.b").records(&doc).unwrap().len(), 2);
        assert_eq!(p("a.b").records(&doc).unwrap().len(), 2);
        assert_eq!(p("a.b[*].c").records(&doc).unwrap(), vec![json!(1), json!(2)]);
        assert_eq!(p("a.b[1].c").first(&doc), Some(&json!(2)));
        assert_eq!(p("$['x.y']").first(&doc), Some(&json!(3)));
        assert!(p("a.nope").records(&doc).is_none());
        assert!(JsonPath::parse("$..a").is_err());
        assert!(JsonPath::parse("$.a[?(@.b)]").is_err());
    }

    #[test]
    fn detection_follows_dlt() {
        assert_eq!(detect_data_path(&json!([1])).as_deref(), Some("$"));
        assert_eq!(detect_data_path(&json!({"meta": {"x": []}, "results": [1]})).as_deref(), Some("results"));
        assert_eq!(detect_data_path(&json!({"links": [], "page": {"things": [1]}})).as_deref(), Some("page.things"));
        assert_eq!(detect_data_path(&json!({"other": [1], "d": {"items": [2]}})).as_deref(), Some("d.items"));
        assert_eq!(detect_data_path(&json!({"id": 1})), None);
    }
}
