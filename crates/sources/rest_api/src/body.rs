//! A JSON response body split into its envelope and its records.
//!
//! The envelope is everything a paginator may read (`next`, `total`, cursors). The records are
//! the list the data selector names. They stay unparsed slices of the body until the source
//! takes them one at a time, so a page that is one large list costs its bytes plus 16 bytes per
//! record, not a tree of values several times its size.
//!
//! Only objects are split lazily, and only down to [`MAX_SPLIT_DEPTH`]: an array found on the
//! way keeps its elements raw until it is known whether it is the record list. Everything else
//! is parsed as usual. A selector with wildcards or indexes reads a fully parsed body.

use std::collections::VecDeque;

use indexmap::IndexMap;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::jsonpath::{JsonPath, detect_data_path};

/// Objects deeper than this are parsed whole (data selectors are rarely deeper).
const MAX_SPLIT_DEPTH: usize = 8;

/// One level of a body split lazily.
enum Node<'a> {
    Object(Vec<(String, Node<'a>)>),
    Array(Vec<&'a RawValue>),
    Leaf(Value),
}

fn split(raw: &RawValue, depth: usize) -> serde_json::Result<Node<'_>> {
    let text = raw.get();
    Ok(match text.as_bytes().first() {
        Some(b'{') if depth < MAX_SPLIT_DEPTH => {
            let fields: IndexMap<String, &RawValue> = serde_json::from_str(text)?;
            let mut out = Vec::with_capacity(fields.len());
            for (k, v) in fields {
                out.push((k, split(v, depth + 1)?));
            }
            Node::Object(out)
        }
        Some(b'[') => Node::Array(serde_json::from_str(text)?),
        _ => Node::Leaf(serde_json::from_str(text)?),
    })
}

/// The node as a value; the array at `keep` (a path of keys) is left empty and its elements
/// are returned instead, as are the elements of every array when `keep` is `None` and
/// `shape_only` is set (enough to detect where the records are).
fn materialize<'a>(
    node: &Node<'a>,
    keep: Option<&[String]>,
    shape_only: bool,
    kept: &mut Option<Vec<&'a RawValue>>,
) -> serde_json::Result<Value> {
    Ok(match node {
        Node::Leaf(v) => v.clone(),
        Node::Array(items) => {
            if keep.is_some_and(<[String]>::is_empty) {
                *kept = Some(items.clone());
                Value::Array(vec![])
            } else if shape_only {
                Value::Array(vec![])
            } else {
                Value::Array(items.iter().map(|r| serde_json::from_str(r.get())).collect::<Result<_, _>>()?)
            }
        }
        Node::Object(fields) => {
            let mut m = serde_json::Map::with_capacity(fields.len());
            for (k, v) in fields {
                let below = match keep {
                    Some([first, rest @ ..]) if first == k => Some(rest),
                    _ => None,
                };
                let v = materialize(v, below, shape_only, kept)?;
                m.insert(k.clone(), v);
            }
            Value::Object(m)
        }
    })
}

/// A page's records that are still slices of the body.
#[derive(Debug, Default)]
pub struct RawRecords {
    body: Vec<u8>,
    spans: VecDeque<(usize, usize)>,
}

impl RawRecords {
    /// Records left.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// No records left.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Parse and take the next record.
    pub fn pop_front(&mut self) -> Option<serde_json::Result<Value>> {
        let (a, b) = self.spans.pop_front()?;
        Some(serde_json::from_slice(&self.body[a..b]))
    }

    /// The records, parsed one at a time without taking them.
    pub fn values(&self) -> impl Iterator<Item = serde_json::Result<Value>> + '_ {
        self.spans.iter().map(|&(a, b)| serde_json::from_slice(&self.body[a..b]))
    }
}

/// The records of one page.
#[derive(Debug)]
pub enum Records {
    /// Parsed values.
    Parsed(VecDeque<Value>),
    /// Slices of the body, parsed when taken.
    Raw(RawRecords),
}

impl Default for Records {
    fn default() -> Self {
        Records::Parsed(VecDeque::new())
    }
}

impl Records {
    /// Records left.
    pub fn len(&self) -> usize {
        match self {
            Records::Parsed(v) => v.len(),
            Records::Raw(r) => r.len(),
        }
    }

    /// No records left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Take the next record.
    pub fn pop_front(&mut self) -> Option<serde_json::Result<Value>> {
        match self {
            Records::Parsed(v) => v.pop_front().map(Ok),
            Records::Raw(r) => r.pop_front(),
        }
    }

    /// The records as values, without taking them (for the paginators' repeat check).
    pub fn values(&self) -> Box<dyn Iterator<Item = serde_json::Result<Value>> + '_> {
        match self {
            Records::Parsed(v) => Box::new(v.iter().cloned().map(Ok)),
            Records::Raw(r) => Box::new(r.values()),
        }
    }
}

/// A response body split into envelope and records.
#[derive(Debug, Default)]
pub struct SplitBody {
    /// The body without the records (`None` when the body is empty).
    pub envelope: Option<Value>,
    /// The records.
    pub records: Records,
    /// The data path found by detection, when there was no selector.
    pub detected: Option<String>,
}

/// Why a body could not be split.
#[derive(Debug)]
pub enum SplitError {
    /// Not JSON.
    Malformed(serde_json::Error),
    /// The selector matched nothing.
    NoMatch,
}

impl From<serde_json::Error> for SplitError {
    fn from(e: serde_json::Error) -> Self {
        SplitError::Malformed(e)
    }
}

/// Split `body` by the data selector (or the detected data path when there is none).
pub fn split_body(body: Vec<u8>, selector: Option<&JsonPath>) -> Result<SplitBody, SplitError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(SplitBody::default());
    }
    if let Some(sel) = selector
        && sel.keys().is_none()
    {
        // wildcards and indexes: the old way, on a whole tree
        let doc: Value = serde_json::from_slice(&body)?;
        let records = sel.records(&doc).ok_or(SplitError::NoMatch)?;
        return Ok(SplitBody { envelope: Some(doc), records: Records::Parsed(records.into()), detected: None });
    }
    // the spans are offsets into `body`, which the records keep
    let base = body.as_ptr() as usize;
    let (envelope, kept, detected) = {
        let root: &RawValue = serde_json::from_slice(&body)?;
        let tree = split(root, 0)?;
        let (path, detected) = match selector {
            Some(sel) => (sel.keys(), None),
            None => {
                let shape = materialize(&tree, None, true, &mut None)?;
                match detect_data_path(&shape) {
                    Some(p) => {
                        let keys = JsonPath::parse(&p).ok().and_then(|jp| jp.keys());
                        (keys, Some(p))
                    }
                    None => (None, None),
                }
            }
        };
        let mut kept = None;
        let envelope = materialize(&tree, path.as_deref(), false, &mut kept)?;
        let kept: Option<Vec<(usize, usize)>> = kept.map(|items| {
            items
                .iter()
                .map(|r| {
                    let a = r.get().as_ptr() as usize - base;
                    (a, a + r.get().len())
                })
                .collect()
        });
        let records = match (&path, &kept) {
            (_, Some(_)) => None,
            // no list at the path: what is there is the records (null: none; a value: one)
            (Some(keys), None) => {
                let at = keys.iter().try_fold(&envelope, |v, k| v.get(k.as_str())).ok_or(SplitError::NoMatch)?;
                Some(match at {
                    Value::Null => VecDeque::new(),
                    other => VecDeque::from([other.clone()]),
                })
            }
            // nothing detected: the whole body is one record
            (None, None) => Some(VecDeque::from([envelope.clone()])),
        };
        (envelope, kept.ok_or(records), detected)
    };
    let records = match kept {
        Ok(spans) => Records::Raw(RawRecords { body, spans: spans.into() }),
        Err(Some(parsed)) => Records::Parsed(parsed),
        Err(None) => Records::default(),
    };
    Ok(SplitBody { envelope: Some(envelope), records, detected })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn all(r: &mut Records) -> Vec<Value> {
        std::iter::from_fn(|| r.pop_front()).map(Result::unwrap).collect()
    }

    #[test]
    fn a_root_list_stays_raw_until_taken() {
        let mut s = split_body(br#"[{"a": 1}, {"a": [2, 3]}]"#.to_vec(), None).unwrap();
        assert!(matches!(s.records, Records::Raw(_)));
        assert_eq!(s.detected.as_deref(), Some("$"));
        assert_eq!(s.envelope, Some(json!([])));
        assert_eq!(all(&mut s.records), vec![json!({"a": 1}), json!({"a": [2, 3]})]);
    }

    #[test]
    fn the_envelope_keeps_everything_but_the_records() {
        let body = br#"{"meta": {"next": "/p?page=2", "tags": ["x"]}, "data": [{"id": 1}, {"id": 2}], "total": 2}"#;
        let sel = JsonPath::parse("data").unwrap();
        let mut s = split_body(body.to_vec(), Some(&sel)).unwrap();
        assert_eq!(s.envelope, Some(json!({"meta": {"next": "/p?page=2", "tags": ["x"]}, "data": [], "total": 2})));
        assert_eq!(all(&mut s.records), vec![json!({"id": 1}), json!({"id": 2})]);
        // detected the same way without a selector
        let s = split_body(body.to_vec(), None).unwrap();
        assert_eq!(s.detected.as_deref(), Some("data"));
        assert_eq!(s.records.len(), 2);
    }

    #[test]
    fn non_list_records_and_misses() {
        let sel = JsonPath::parse("item").unwrap();
        let mut s = split_body(br#"{"item": {"id": 7}}"#.to_vec(), Some(&sel)).unwrap();
        assert_eq!(all(&mut s.records), vec![json!({"id": 7})]);
        let s = split_body(br#"{"item": null}"#.to_vec(), Some(&sel)).unwrap();
        assert!(s.records.is_empty());
        assert!(matches!(split_body(br#"{"other": 1}"#.to_vec(), Some(&sel)), Err(SplitError::NoMatch)));
        assert!(matches!(split_body(br#"{"item": "#.to_vec(), Some(&sel)), Err(SplitError::Malformed(_))));
        // one object without any list is itself the record
        let mut s = split_body(br#"{"id": 1, "name": "x"}"#.to_vec(), None).unwrap();
        assert_eq!(all(&mut s.records), vec![json!({"id": 1, "name": "x"})]);
        // wildcards read a parsed tree
        let sel = JsonPath::parse("groups[*].items").unwrap();
        let mut s = split_body(br#"{"groups": [{"items": [1, 2]}, {"items": [3]}]}"#.to_vec(), Some(&sel)).unwrap();
        assert_eq!(all(&mut s.records), vec![json!(1), json!(2), json!(3)]);
    }

    #[test]
    fn numbers_keep_their_precision() {
        let mut s =
            split_body(br#"[{"n": 12345678901234567890123, "f": 0.1000000000000000055511}]"#.to_vec(), None).unwrap();
        let v = all(&mut s.records);
        assert_eq!(v[0]["n"].to_string(), "12345678901234567890123");
        assert_eq!(v[0]["f"].to_string(), "0.1000000000000000055511");
    }
}
