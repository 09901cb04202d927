//! `{resources.<parent>.<field>}` and `{incremental.<value>}` placeholders in paths, params and
//! JSON bodies. Other text in braces is left as it is.

use serde_json::{Map, Value};

/// A placeholder found in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placeholder {
    /// `{resources.<resource>.<field>}` (the field may be a dotted path).
    Resource {
        /// Parent resource.
        resource: String,
        /// Field of the parent item.
        field: String,
    },
    /// `{incremental.initial_value|start_value|last_value|end_value}`.
    Incremental(String),
}

/// The incremental names a template may use.
pub const INCREMENTAL_NAMES: &[&str] = &["initial_value", "start_value", "last_value", "end_value"];

/// Values the placeholders of one request take.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    /// The parent resource's name and its item (fields by path).
    pub parent: Option<(String, Map<String, Value>)>,
    /// `initial_value`, `start_value`, `last_value`, `end_value`.
    pub incremental: Map<String, Value>,
}

/// Placeholders in a string, in order.
pub fn scan(s: &str) -> Vec<Placeholder> {
    spans(s).into_iter().map(|(_, _, p)| p).collect()
}

fn spans(s: &str) -> Vec<(usize, usize, Placeholder)> {
    let mut out = vec![];
    let mut i = 0;
    while let Some(open) = s[i..].find('{') {
        let start = i + open;
        let Some(close) = s[start..].find('}') else { break };
        let end = start + close;
        let inner = s[start + 1..end].trim();
        if let Some(rest) = inner.strip_prefix("resources.") {
            if let Some((res, field)) = rest.split_once('.')
                && !res.is_empty()
                && !field.is_empty()
            {
                out.push((
                    start,
                    end + 1,
                    Placeholder::Resource { resource: res.to_string(), field: field.to_string() },
                ));
            }
        } else if let Some(name) = inner.strip_prefix("incremental.") {
            out.push((start, end + 1, Placeholder::Incremental(name.to_string())));
        }
        i = end + 1;
    }
    out
}

/// Placeholders anywhere in a JSON value's strings.
pub fn scan_json(v: &Value, out: &mut Vec<Placeholder>) {
    match v {
        Value::String(s) => out.extend(scan(s)),
        Value::Array(a) => a.iter().for_each(|x| scan_json(x, out)),
        Value::Object(m) => m.values().for_each(|x| scan_json(x, out)),
        _ => {}
    }
}

fn lookup(vars: &Vars, p: &Placeholder) -> Result<Value, String> {
    match p {
        Placeholder::Resource { resource, field } => match &vars.parent {
            Some((name, item)) if name == resource => {
                item.get(field).cloned().ok_or_else(|| format!("parent `{resource}` item has no field `{field}`"))
            }
            _ => Err(format!("`{{resources.{resource}.{field}}}` has no parent item")),
        },
        Placeholder::Incremental(n) => Ok(vars.incremental.get(n).cloned().unwrap_or(Value::Null)),
    }
}

/// A value as text in a URL or string (`null` is empty, objects and arrays are JSON).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Percent-encode a value for one path segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@!$&'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Fill the placeholders of a string; `path_segment` percent-encodes the values.
pub fn render(s: &str, vars: &Vars, path_segment: bool) -> Result<String, String> {
    let sp = spans(s);
    if sp.is_empty() {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (a, b, p) in sp {
        out.push_str(&s[last..a]);
        let text = value_text(&lookup(vars, &p)?);
        if path_segment && matches!(text.to_ascii_lowercase().as_str(), "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e.")
        {
            // URL parsers resolve such a segment, so the request would go to another path
            return Err(format!(
                "the value `{text}` of `{}` cannot be put into the path `{s}`: it is a relative path segment",
                &s[a..b]
            ));
        }
        out.push_str(&if path_segment { encode_segment(&text) } else { text });
        last = b;
    }
    out.push_str(&s[last..]);
    Ok(out)
}

/// Fill the placeholders of a JSON value: a string that is exactly one placeholder takes the
/// value with its type; other strings are rendered as text.
pub fn render_json(v: &Value, vars: &Vars) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            let sp = spans(s);
            if sp.len() == 1 && sp[0].0 == 0 && sp[0].1 == s.len() {
                lookup(vars, &sp[0].2)?
            } else {
                Value::String(render(s, vars, false)?)
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| render_json(x, vars)).collect::<Result<_, _>>()?),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, x)| Ok((k.clone(), render_json(x, vars)?))).collect::<Result<_, String>>()?)
        }
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Vars {
        let mut item = Map::new();
        item.insert("id".into(), json!(3));
        item.insert("slug".into(), json!("a b/c"));
        item.insert("user.id".into(), json!("u1"));
        let mut inc = Map::new();
        inc.insert("start_value".into(), json!("2024-01-01"));
        Vars { parent: Some(("posts".into(), item)), incremental: inc }
    }

    #[test]
    fn dot_segments_from_data_are_refused() {
        for bad in ["..", ".", "%2E%2e"] {
            let mut item = Map::new();
            item.insert("id".into(), json!(bad));
            let v = Vars { parent: Some(("posts".into(), item)), incremental: Map::new() };
            let err = render("posts/{resources.posts.id}/comments", &v, true).unwrap_err();
            assert!(err.contains("relative path segment") && err.contains("{resources.posts.id}"), "{err}");
            // in a query value it is harmless text
            assert_eq!(render("c?x={resources.posts.id}", &v, false).unwrap(), format!("c?x={bad}"));
        }
    }

    #[test]
    fn scans() {
        assert_eq!(
            scan("posts/{resources.posts.id}/c?{x}&{incremental.start_value}"),
            vec![
                Placeholder::Resource { resource: "posts".into(), field: "id".into() },
                Placeholder::Incremental("start_value".into())
            ]
        );
        assert!(scan("{not one} {resources.x}").is_empty());
    }

    #[test]
    fn renders() {
        let v = vars();
        assert_eq!(render("posts/{resources.posts.id}/comments", &v, true).unwrap(), "posts/3/comments");
        assert_eq!(render("s/{resources.posts.slug}", &v, true).unwrap(), "s/a%20b%2Fc");
        assert_eq!(render("{resources.posts.user.id}-{incremental.start_value}", &v, false).unwrap(), "u1-2024-01-01");
        assert_eq!(render("{incremental.end_value}", &v, false).unwrap(), "");
        assert_eq!(render("keep {this}", &v, false).unwrap(), "keep {this}");
        assert!(render("{resources.users.id}", &v, false).unwrap_err().contains("no parent"));
        assert!(render("{resources.posts.nope}", &v, false).unwrap_err().contains("no field `nope`"));
        assert_eq!(
            render_json(&json!({"post": "{resources.posts.id}", "q": "id={resources.posts.id}", "n": [1]}), &v)
                .unwrap(),
            json!({"post": 3, "q": "id=3", "n": [1]})
        );
    }
}
