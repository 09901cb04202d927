//! A flat, allocation-free parse of JSON lines ("tape") for the normalizer's fast path.
//!
//! A chunk of lines is parsed into one vector of [`Node`]s in pre-order: a container node is
//! followed by its members (for objects: a key node, then the value's subtree), and records the
//! index just past its subtree, so siblings are found without pointers. Strings without escapes
//! point into the line text; unescaped strings are copied once into the chunk's string buffer.
//! A line the tape parser does not accept (invalid JSON, nesting deeper than serde_json allows,
//! a lone surrogate...) is marked and goes through serde_json, which reports the error exactly
//! as the regular path does.

use std::sync::Arc;

use dlt_core::ids::{child_row_ids_into, random_row_id};

use crate::Names;

/// Node kinds.
pub(crate) const NULL: u8 = 0;
pub(crate) const TRUE: u8 = 1;
pub(crate) const FALSE: u8 = 2;
/// A number: `a`/`b` = start/length of its literal in the chunk text.
pub(crate) const NUM: u8 = 3;
/// A string without escapes: `a`/`b` = start/length in the chunk text.
pub(crate) const STR: u8 = 4;
/// An unescaped string: `a`/`b` = start/length in the chunk's string buffer.
pub(crate) const ESTR: u8 = 5;
/// An array: `a` = element count, `b` = index just past its subtree.
pub(crate) const ARR: u8 = 6;
/// An object: `a` = member count, `b` = index just past its subtree.
pub(crate) const OBJ: u8 = 7;

/// serde_json's default recursion limit: deeper documents are left to it (it fails them).
const MAX_DEPTH: usize = 127;

/// One JSON value of a tape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Node {
    pub kind: u8,
    pub a: u32,
    pub b: u32,
}

/// A line of a chunk.
pub(crate) struct Line {
    pub start: u32,
    pub end: u32,
    pub lineno: u64,
    /// Index of the root node, `None` if the tape parser did not accept the line.
    pub root: Option<u32>,
}

/// Parsed lines with their row ids.
#[derive(Default)]
pub(crate) struct Chunk {
    pub text: String,
    pub lines: Vec<Line>,
    pub nodes: Vec<Node>,
    pub strs: String,
    /// Row ids made on the parsing thread, [`ID_LEN`] ASCII bytes each.
    pub ids: Vec<u8>,
    /// Per node: for an array, the index of its first element's id (`u32::MAX`: none made);
    /// for a line's root object, the index of its row id.
    pub aux: Vec<u32>,
}

/// Length of a `_dlt_id` (10 bytes, base64 without padding).
pub(crate) const ID_LEN: usize = 14;

impl Chunk {
    pub fn clear(&mut self) {
        self.text.clear();
        self.lines.clear();
        self.nodes.clear();
        self.strs.clear();
        self.ids.clear();
        self.aux.clear();
    }

    /// The text of a string node (key or value).
    #[inline]
    pub fn str_of(&self, n: Node) -> &str {
        let (s, a, b) = if n.kind == ESTR { (&self.strs, n.a, n.b) } else { (&self.text, n.a, n.b) };
        &s[a as usize..(a + b) as usize]
    }

    /// The literal of a number node.
    #[inline]
    pub fn num_of(&self, n: Node) -> &str {
        &self.text[n.a as usize..(n.a + n.b) as usize]
    }

    /// Row id number `i`.
    #[inline]
    pub fn id(&self, i: u32) -> &str {
        let at = i as usize * ID_LEN;
        std::str::from_utf8(&self.ids[at..at + ID_LEN]).expect("row ids are base64")
    }

    /// The line's text.
    pub fn line_text(&self, l: &Line) -> &str {
        &self.text[l.start as usize..l.end as usize]
    }

    /// Append a line (without its newline) and parse it.
    pub fn push_line(&mut self, line: &str, lineno: u64) {
        let start = self.text.len() as u32;
        self.text.push_str(line);
        let end = self.text.len() as u32;
        let mark = (self.nodes.len(), self.strs.len());
        let root = Parser { chunk: self, pos: start as usize, end: end as usize, depth: 0 }.parse_root();
        if root.is_none() {
            // a partly parsed line leaves nothing behind
            self.nodes.truncate(mark.0);
            self.strs.truncate(mark.1);
        }
        self.aux.resize(self.nodes.len(), u32::MAX);
        self.lines.push(Line { start, end, lineno, root });
    }
}

struct Parser<'c> {
    chunk: &'c mut Chunk,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser<'_> {
    #[inline]
    fn bytes(&self) -> &[u8] {
        &self.chunk.text.as_bytes()[..self.end]
    }

    #[inline]
    fn skip_ws(&mut self) {
        let b = self.bytes();
        let mut p = self.pos;
        while p < b.len() && matches!(b[p], b' ' | b'\t' | b'\n' | b'\r') {
            p += 1;
        }
        self.pos = p;
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn parse_root(mut self) -> Option<u32> {
        self.skip_ws();
        let root = self.chunk.nodes.len() as u32;
        self.value()?;
        self.skip_ws();
        (self.pos == self.end).then_some(root)
    }

    fn push(&mut self, kind: u8, a: u32, b: u32) -> usize {
        self.chunk.nodes.push(Node { kind, a, b });
        self.chunk.nodes.len() - 1
    }

    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'{' => self.container(OBJ, b'}'),
            b'[' => self.container(ARR, b']'),
            b'"' => self.string(),
            b't' => self.literal(b"true", TRUE),
            b'f' => self.literal(b"false", FALSE),
            b'n' => self.literal(b"null", NULL),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8], kind: u8) -> Option<()> {
        if self.bytes()[self.pos..].starts_with(word) {
            self.pos += word.len();
            self.push(kind, 0, 0);
            Some(())
        } else {
            None
        }
    }

    fn number(&mut self) -> Option<()> {
        let b = self.bytes();
        let start = self.pos;
        let mut p = start;
        if b.get(p) == Some(&b'-') {
            p += 1;
        }
        match b.get(p)? {
            b'0' => p += 1,
            b'1'..=b'9' => {
                while p < b.len() && b[p].is_ascii_digit() {
                    p += 1;
                }
            }
            _ => return None,
        }
        if b.get(p) == Some(&b'.') {
            p += 1;
            let d = p;
            while p < b.len() && b[p].is_ascii_digit() {
                p += 1;
            }
            if p == d {
                return None;
            }
        }
        if matches!(b.get(p), Some(b'e' | b'E')) {
            p += 1;
            if matches!(b.get(p), Some(b'+' | b'-')) {
                p += 1;
            }
            let d = p;
            while p < b.len() && b[p].is_ascii_digit() {
                p += 1;
            }
            if p == d {
                return None;
            }
        }
        self.pos = p;
        self.push(NUM, start as u32, (p - start) as u32);
        Some(())
    }

    fn string(&mut self) -> Option<()> {
        // at the opening quote
        let start = self.pos + 1;
        let b = self.bytes();
        let mut p = start;
        let escaped = loop {
            match *b.get(p)? {
                b'"' => break false,
                b'\\' => break true,
                0..=0x1f => return None,
                _ => p += 1,
            }
        };
        if !escaped {
            self.pos = p + 1;
            self.push(STR, start as u32, (p - start) as u32);
            return Some(());
        }
        // escapes: unescape into the chunk's string buffer
        let mut out = std::mem::take(&mut self.chunk.strs);
        let at = out.len();
        let r = self.unescape(start, p, &mut out);
        let len = out.len() - at;
        self.chunk.strs = out;
        r?;
        self.push(ESTR, at as u32, len as u32);
        Some(())
    }

    fn unescape(&mut self, start: usize, mut p: usize, out: &mut String) -> Option<()> {
        let b = &self.chunk.text.as_bytes()[..self.end];
        out.push_str(std::str::from_utf8(&b[start..p]).ok()?);
        loop {
            let c = *b.get(p)?;
            match c {
                b'"' => {
                    self.pos = p + 1;
                    return Some(());
                }
                b'\\' => {
                    let e = *b.get(p + 1)?;
                    p += 2;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = hex4(b.get(p..p + 4)?)?;
                            p += 4;
                            let ch = if (0xD800..0xDC00).contains(&hi) {
                                // a surrogate pair must follow (a lone one: serde_json decides)
                                if b.get(p..p + 2)? != b"\\u" {
                                    return None;
                                }
                                let lo = hex4(b.get(p + 2..p + 6)?)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                p += 6;
                                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                            } else {
                                char::from_u32(hi)?
                            };
                            out.push(ch);
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => {
                    // copy the run up to the next quote or backslash
                    let run = p;
                    while p < b.len() && !matches!(b[p], b'"' | b'\\' | 0..=0x1f) {
                        p += 1;
                    }
                    out.push_str(std::str::from_utf8(&b[run..p]).ok()?);
                }
            }
        }
    }

    /// An array or object at its opening bracket: its node, then its members (for objects each
    /// a key node and the value's subtree); the node records the member count and where the
    /// subtree ends.
    fn container(&mut self, kind: u8, close: u8) -> Option<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        let me = self.push(kind, 0, 0);
        let mut n = 0u32;
        self.skip_ws();
        if self.peek()? == close {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                if kind == OBJ {
                    if self.peek()? != b'"' {
                        return None;
                    }
                    self.string()?;
                    self.skip_ws();
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.pos += 1;
                    self.skip_ws();
                }
                self.value()?;
                n += 1;
                self.skip_ws();
                match self.peek()? {
                    b',' => self.pos += 1,
                    c if c == close => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        let end = self.chunk.nodes.len() as u32;
        self.chunk.nodes[me].a = n;
        self.chunk.nodes[me].b = end;
        self.depth -= 1;
        Some(())
    }
}

fn hex4(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// The members of an object node: (key node, value node index) pairs.
pub(crate) fn members(nodes: &[Node], obj: u32) -> impl Iterator<Item = (Node, u32)> + '_ {
    // an object's children are its keys and values in turn
    let mut children = Elements { nodes, at: obj + 1, left: 2 * nodes[obj as usize].a };
    std::iter::from_fn(move || {
        let key = children.next()?;
        let value = children.next()?;
        Some((nodes[key as usize], value))
    })
}

/// The elements of an array node.
pub(crate) fn elements(nodes: &[Node], arr: u32) -> Elements<'_> {
    let n = nodes[arr as usize];
    Elements { nodes, at: arr + 1, left: n.a }
}

/// Iterator over the child node indexes of a container, skipping each child's subtree.
pub(crate) struct Elements<'n> {
    nodes: &'n [Node],
    at: u32,
    left: u32,
}

impl Iterator for Elements<'_> {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let v = self.at;
        self.at = next_sibling(self.nodes, v);
        Some(v)
    }
}

#[inline]
fn next_sibling(nodes: &[Node], i: u32) -> u32 {
    let n = nodes[i as usize];
    if n.kind == ARR || n.kind == OBJ { n.b } else { i + 1 }
}

/// Makes the row ids of tape lines as the normalizer would (a random root id; child ids hashed
/// from the parent id, the child table name and the list index), following the same flattening.
/// Items with their own `_dlt_id` take the regular path, which makes its own ids. Child ids are
/// hashed in bulk per chunk, level by level (a child's id is the parent of its own children).
pub(crate) struct TapeIds {
    pub names: Names,
    pub max_nesting: u32,
    /// Child ids to make: (parent id slot, child table, list index, id slot, depth).
    jobs: Vec<(u32, Arc<str>, u32, u32, u32)>,
}

impl TapeIds {
    pub fn new(names: Names, max_nesting: u32) -> Self {
        TapeIds { names, max_nesting, jobs: Vec::new() }
    }

    /// Plan the ids of the line's item (root must be an object); [`finish`](Self::finish) makes
    /// the child ids.
    pub fn line(&mut self, root_path: &Arc<str>, ch: &mut Chunk, root: u32) {
        if ch.nodes[root as usize].kind != OBJ {
            return;
        }
        let id = (ch.ids.len() / ID_LEN) as u32;
        ch.ids.extend_from_slice(random_row_id().as_bytes());
        ch.aux[root as usize] = id;
        self.row(root_path, ch, root, id, 0, 0);
    }

    /// Hash the child ids planned for the chunk.
    pub fn finish(&mut self, ch: &mut Chunk) {
        if self.jobs.is_empty() {
            return;
        }
        // parents first: jobs of one depth only need ids of the depths before
        self.jobs.sort_by_key(|j| j.4);
        let mut start = 0;
        while start < self.jobs.len() {
            let depth = self.jobs[start].4;
            let end = start + self.jobs[start..].iter().take_while(|j| j.4 == depth).count();
            let parents: Vec<[u8; ID_LEN]> = self.jobs[start..end]
                .iter()
                .map(|j| {
                    let at = j.0 as usize * ID_LEN;
                    ch.ids[at..at + ID_LEN].try_into().expect("id length")
                })
                .collect();
            let batch: Vec<(&str, &str, usize, usize)> = self.jobs[start..end]
                .iter()
                .zip(&parents)
                .map(|(j, p)| {
                    (std::str::from_utf8(p).expect("ids are base64"), j.1.as_ref(), j.2 as usize, j.3 as usize)
                })
                .collect();
            child_row_ids_into(&batch, &mut ch.ids);
            start = end;
        }
        self.jobs.clear();
    }

    fn row(&mut self, table_path: &Arc<str>, ch: &mut Chunk, obj: u32, row_id: u32, lvl: u32, depth: u32) {
        let mut lists: Vec<(Arc<str>, u32)> = vec![];
        let mut stack: Vec<(u32, Arc<str>, u32)> = vec![(obj, self.names.empty.clone(), lvl)];
        while let Some((d, prefix, l)) = stack.pop() {
            for (k, v) in members(&ch.nodes, d) {
                let node = ch.nodes[v as usize];
                if l >= self.max_nesting || !(node.kind == OBJ || (node.kind == ARR && node.a > 0)) {
                    continue;
                }
                let (path, _) = self.names.key(&prefix, ch.str_of(k));
                if node.kind == OBJ {
                    stack.push((v, path, l + 1));
                } else {
                    lists.push((path, v));
                }
            }
        }
        for (list_path, list) in lists {
            let (child_path, child_name) = self.names.child_table(table_path, &list_path);
            let first = (ch.ids.len() / ID_LEN) as u32;
            let n = ch.nodes[list as usize].a;
            ch.ids.resize(ch.ids.len() + n as usize * ID_LEN, b'?');
            for i in 0..n {
                self.jobs.push((row_id, child_name.clone(), i, first + i, depth));
            }
            ch.aux[list as usize] = first;
            let els: Vec<u32> = elements(&ch.nodes, list).collect();
            for (i, el) in els.into_iter().enumerate() {
                if ch.nodes[el as usize].kind == OBJ {
                    self.row(&child_path, ch, el, first + i as u32, lvl + 1, depth + 1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> (Chunk, Option<u32>) {
        let mut c = Chunk::default();
        c.push_line(s, 1);
        let r = c.lines[0].root;
        (c, r)
    }

    #[test]
    fn accepts_what_serde_accepts() {
        for s in [
            r#"{"a":1,"b":[1,2,{"c":null}],"d":"x\"y\u00e9\ud83d\ude00","e":-0.5e-3,"f":true,"g":false,"h":{}}"#,
            "  [ ]  ",
            "0",
            r#""\/\b\f\n\r\t""#,
        ] {
            let (c, r) = parse(s);
            assert!(r.is_some(), "{s}");
            assert!(serde_json::from_str::<serde_json::Value>(s).is_ok());
            let _ = c;
        }
        let (c, r) = parse(r#"{"d":"x\"y\u00e9\ud83d\ude00"}"#);
        let (k, v) = members(&c.nodes, r.unwrap()).next().unwrap();
        assert_eq!(c.str_of(k), "d");
        assert_eq!(c.str_of(c.nodes[v as usize]), "x\"y\u{e9}\u{1F600}");
    }

    #[test]
    fn rejects_what_serde_rejects() {
        for s in [
            "{",
            r#"{"a":}"#,
            "[1,]",
            "01",
            "1.",
            "-",
            "1e",
            r#"{"a":1}x"#,
            "\"\u{1}\"",
            r#""\ud800""#,
            "tru",
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#""\x""#,
        ] {
            let (_, r) = parse(s);
            assert!(r.is_none(), "{s}");
            assert!(serde_json::from_str::<serde_json::Value>(s).is_err(), "{s}");
        }
        // deeper than serde_json's limit: left to serde_json
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(parse(&deep).1.is_none());
    }

    #[test]
    fn siblings_skip_subtrees() {
        let (c, r) = parse(r#"{"a":{"x":[1,[2,3]],"y":2},"b":[{"z":1},{}],"c":"s"}"#);
        let keys: Vec<&str> = members(&c.nodes, r.unwrap()).map(|(k, _)| c.str_of(k)).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        let (_, b) = members(&c.nodes, r.unwrap()).nth(1).unwrap();
        assert_eq!(elements(&c.nodes, b).count(), 2);
    }
}
