//! Compact-but-readable JSON layout, identical to `jsonfmt.py` (`pretty(o)`).
//!
//! A value is printed on one line (`json.dumps(o, ensure_ascii=False)` style, separators
//! `", "` / `": "`) when it fits in 160 columns from its indentation; otherwise a non-empty
//! object/array is split with one member per line, indented by one space per level.

use crate::pyfmt::{DISPLAY, dumps, json_str};
use serde_json::Value;

/// Line width used by the reference writer.
pub const WIDTH: usize = 160;

/// `jsonfmt.pretty(v)`; the writers append a single `"\n"` when writing a file.
pub fn to_pretty_json(v: &Value) -> String {
    pretty(v, 0, WIDTH)
}

/// `jsonfmt.pretty(o, indent, width)`.
pub fn pretty(v: &Value, indent: usize, width: usize) -> String {
    let flat = dumps(v, DISPLAY);
    let non_empty_container = match v {
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => false,
    };
    if !non_empty_container || flat.chars().count() + indent <= width {
        return flat;
    }
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, x)| format!("{pad} {}: {}", json_str(k, false), pretty(x, indent + 1, width).trim_start()))
                .collect();
            format!("{{\n{}\n{pad}}}", items.join(",\n"))
        }
        Value::Array(arr) => {
            let items: Vec<String> =
                arr.iter().map(|x| format!("{pad} {}", pretty(x, indent + 1, width).trim_start())).collect();
            format!("[\n{}\n{pad}]", items.join(",\n"))
        }
        _ => flat,
    }
}
