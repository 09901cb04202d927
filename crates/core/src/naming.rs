//! Identifier naming conventions, as dlt applies them to tables, columns and datasets.
//!
//! The default is [`SnakeCase`]; keys found in data are normalized as *paths* (split on
//! `__`, each fragment normalized alone, joined again), see [`NamingConvention::normalize_path`].

use base64::Engine;
use sha3::digest::{ExtendableOutput, Update, XofReader};

/// Separator between path fragments: nested tables and flattened columns.
pub const PATH_SEPARATOR: &str = "__";
/// The longest table name dlt-rs makes, in characters. A table name is part of job file names
/// and, on the filesystem destination, a folder name; file systems refuse names over 255 bytes,
/// so a longer name (a hostile 250-character key holding a list, lists nested 100 deep) would
/// leave a package that can never be written. Longer names are shortened the way dlt shortens
/// identifiers (a hash tag in the middle). dlt has no such limit on DuckDB and fails there.
pub const MAX_TABLE_NAME_LENGTH: usize = 200;
/// The column an empty key maps to.
pub const EMPTY_KEY_IDENTIFIER: &str = "_empty";

/// A naming convention: how a user or data identifier becomes a destination identifier.
pub trait NamingConvention: Send + Sync + std::fmt::Debug {
    /// Name of the convention as dlt spells it (`snake_case`, `duck_case`, …).
    fn name(&self) -> &'static str;
    /// Maximum identifier length, if the destination has one.
    fn max_length(&self) -> Option<usize>;
    /// Normalize one identifier (not split on `__`), without shortening.
    fn normalize_raw(&self, ident: &str) -> String;

    /// Normalize one identifier and shorten it to the maximum length.
    fn normalize_identifier(&self, ident: &str) -> String {
        let trimmed = ident.trim();
        if trimmed.is_empty() {
            return EMPTY_KEY_IDENTIFIER.to_string();
        }
        let norm = self.normalize_raw(trimmed);
        shorten_identifier(&norm, ident, self.max_length())
    }

    /// Normalize a key as a path: split on `__`, drop empty fragments, normalize each one,
    /// join with `__`, then shorten the whole.
    fn normalize_path(&self, path: &str) -> String {
        let trimmed = path.trim();
        if trimmed.is_empty() {
            return EMPTY_KEY_IDENTIFIER.to_string();
        }
        let parts: Vec<String> = trimmed
            .split(PATH_SEPARATOR)
            .filter(|p| !p.trim().is_empty())
            .map(|p| self.normalize_raw(p.trim()))
            .collect();
        if parts.is_empty() {
            // the key consisted only of separators
            return self.normalize_identifier(trimmed);
        }
        let joined = parts.join(PATH_SEPARATOR);
        shorten_identifier(&joined, path, self.max_length())
    }

    /// Normalize a table name given by a user (also as a path), shortened to
    /// [`MAX_TABLE_NAME_LENGTH`] at most.
    fn normalize_table_identifier(&self, ident: &str) -> String {
        shorten_identifier(&self.normalize_path(ident), ident, Some(self.max_table_length()))
    }

    /// The longest table name: the destination's identifier limit, and never more than
    /// [`MAX_TABLE_NAME_LENGTH`].
    fn max_table_length(&self) -> usize {
        self.max_length().map_or(MAX_TABLE_NAME_LENGTH, |m| m.min(MAX_TABLE_NAME_LENGTH))
    }

    /// Join already normalized fragments into a table name (a nested table's) and shorten it
    /// to [`NamingConvention::max_table_length`].
    fn make_table_path(&self, fragments: &[&str]) -> String {
        let joined = fragments.join(PATH_SEPARATOR);
        shorten_identifier(&joined, &joined, Some(self.max_table_length()))
    }

    /// Join already normalized fragments into one path and shorten the result.
    fn make_path(&self, fragments: &[&str]) -> String {
        let joined = fragments.join(PATH_SEPARATOR);
        shorten_identifier(&joined, &joined, self.max_length())
    }
}

/// dlt's default `snake_case` convention (case-insensitive, ASCII only).
#[derive(Debug, Clone, Default)]
pub struct SnakeCase {
    /// Maximum identifier length (None = unlimited).
    pub max_length: Option<usize>,
}

impl SnakeCase {
    /// The convention with a maximum identifier length.
    pub fn with_max_length(max_length: Option<usize>) -> Self {
        SnakeCase { max_length }
    }
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Split camel case with dlt's two rules, then lower-case.
fn split_camel(s: &str) -> String {
    // rule 1: ([^_])([A-Z][a-z]+) -> \1_\2 (non-overlapping, left to right)
    let chars: Vec<char> = s.chars().collect();
    let mut out1: Vec<char> = Vec::with_capacity(chars.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '_'
            && i + 1 < chars.len()
            && chars[i + 1].is_ascii_uppercase()
            && i + 2 < chars.len()
            && chars[i + 2].is_ascii_lowercase()
        {
            // consume the match: c, upper, then all following lowercase letters
            out1.push(c);
            out1.push('_');
            out1.push(chars[i + 1]);
            let mut j = i + 2;
            while j < chars.len() && chars[j].is_ascii_lowercase() {
                out1.push(chars[j]);
                j += 1;
            }
            i = j;
            continue;
        }
        out1.push(c);
        i += 1;
    }
    // rule 2: ([a-z0-9])([A-Z]) -> \1_\2 (non-overlapping)
    let mut out2 = String::with_capacity(out1.len() + 8);
    let mut i = 0;
    while i < out1.len() {
        let c = out1[i];
        if (c.is_ascii_lowercase() || c.is_ascii_digit()) && i + 1 < out1.len() && out1[i + 1].is_ascii_uppercase() {
            out2.push(c);
            out2.push('_');
            out2.push(out1[i + 1]);
            i += 2;
            continue;
        }
        out2.push(c);
        i += 1;
    }
    out2.to_lowercase()
}

impl NamingConvention for SnakeCase {
    fn name(&self) -> &'static str {
        "snake_case"
    }
    fn max_length(&self) -> Option<usize> {
        self.max_length
    }
    fn normalize_raw(&self, ident: &str) -> String {
        // 2. single-character mappings
        let mapped: String = ident
            .chars()
            .map(|c| match c {
                '+' | '*' => 'x',
                '-' => '_',
                '@' => 'a',
                '|' => 'l',
                c => c,
            })
            .collect();
        // 3. runs of non-word characters -> one underscore
        let mut replaced = String::with_capacity(mapped.len());
        let mut in_run = false;
        for c in mapped.chars() {
            if is_word(c) {
                replaced.push(c);
                in_run = false;
            } else if !in_run {
                replaced.push('_');
                in_run = true;
            }
        }
        // 4. camel case split + lower
        let mut s = split_camel(&replaced);
        // 5. leading digit
        if s.starts_with(|c: char| c.is_ascii_digit()) {
            s.insert(0, '_');
        }
        // 6. trailing underscores -> x
        let trimmed_len = s.trim_end_matches('_').len();
        let trailing = s.len() - trimmed_len;
        if trailing > 0 {
            s.truncate(trimmed_len);
            s.extend(std::iter::repeat_n('x', trailing));
        }
        // 7. collapse underscores
        collapse_underscores(&s)
    }
}

fn collapse_underscores(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_us = false;
    for c in s.chars() {
        if c == '_' {
            if !prev_us {
                out.push(c);
            }
            prev_us = true;
        } else {
            out.push(c);
            prev_us = false;
        }
    }
    out
}

/// dlt's `duck_case`: case-sensitive, keeps unicode; only `\n`, `\r`, `"` become `_`.
#[derive(Debug, Clone, Default)]
pub struct DuckCase {
    /// Maximum identifier length (None = unlimited).
    pub max_length: Option<usize>,
}

impl NamingConvention for DuckCase {
    fn name(&self) -> &'static str {
        "duck_case"
    }
    fn max_length(&self) -> Option<usize> {
        self.max_length
    }
    fn normalize_raw(&self, ident: &str) -> String {
        let s: String = ident.chars().map(|c| if matches!(c, '\n' | '\r' | '"') { '_' } else { c }).collect();
        collapse_underscores(&s)
    }
}

/// dlt's `direct`: names are left unchanged.
#[derive(Debug, Clone, Default)]
pub struct Direct {
    /// Maximum identifier length (None = unlimited).
    pub max_length: Option<usize>,
}

impl NamingConvention for Direct {
    fn name(&self) -> &'static str {
        "direct"
    }
    fn max_length(&self) -> Option<usize> {
        self.max_length
    }
    fn normalize_raw(&self, ident: &str) -> String {
        ident.to_string()
    }
}

/// dlt's `sql_cs_v1` (`case_sensitive = true`) and `sql_ci_v1` (lower-cased).
#[derive(Debug, Clone, Default)]
pub struct SqlV1 {
    /// Lower-case identifiers (`sql_ci_v1`).
    pub case_insensitive: bool,
    /// Maximum identifier length (None = unlimited).
    pub max_length: Option<usize>,
}

impl NamingConvention for SqlV1 {
    fn name(&self) -> &'static str {
        if self.case_insensitive { "sql_ci_v1" } else { "sql_cs_v1" }
    }
    fn max_length(&self) -> Option<usize> {
        self.max_length
    }
    fn normalize_raw(&self, ident: &str) -> String {
        let mut s: String = ident.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        if s.starts_with(|c: char| c.is_ascii_digit()) {
            s.insert(0, '_');
        }
        let s = s.trim_end_matches('_').to_string();
        let s = if s.is_empty() { "_".to_string() } else { s };
        if self.case_insensitive { s.to_lowercase() } else { s }
    }
}

/// Look a convention up by dlt's name.
pub fn convention_by_name(name: &str, max_length: Option<usize>) -> Option<Box<dyn NamingConvention>> {
    Some(match name {
        "snake_case" => Box::new(SnakeCase { max_length }),
        "duck_case" => Box::new(DuckCase { max_length }),
        "direct" => Box::new(Direct { max_length }),
        "sql_cs_v1" => Box::new(SqlV1 { case_insensitive: false, max_length }),
        "sql_ci_v1" => Box::new(SqlV1 { case_insensitive: true, max_length }),
        _ => return None,
    })
}

/// dlt's 6-character tag: SHAKE-128 (4 bytes) of `source`, base64, `/`→`a`, `+`→`b`, lower-cased.
pub fn short_tag(source: &str) -> String {
    let mut hasher = sha3::Shake128::default();
    hasher.update(source.as_bytes());
    let mut reader = hasher.finalize_xof();
    let mut buf = [0u8; 4];
    reader.read(&mut buf);
    let enc = base64::engine::general_purpose::STANDARD_NO_PAD.encode(buf);
    enc.replace('/', "a").replace('+', "b").to_lowercase()
}

/// Shorten `name` to `max_length` with the tag of `original` in the middle.
pub fn shorten_identifier(name: &str, original: &str, max_length: Option<usize>) -> String {
    let Some(max) = max_length else {
        return name.to_string();
    };
    let len = name.chars().count();
    if len <= max {
        return name.to_string();
    }
    let tag = short_tag(original);
    let r = max.saturating_sub(tag.len());
    let head = r.div_ceil(2);
    let tail = r / 2;
    let chars: Vec<char> = name.chars().collect();
    let mut out: String = chars[..head].iter().collect();
    out.push_str(&tag);
    out.extend(chars[len - tail..].iter());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_examples() {
        let n = SnakeCase::default();
        let cases = [
            ("camelCase", "camel_case"),
            ("HTTPResponseCode", "http_response_code"),
            ("getHTTPResponse", "get_http_response"),
            ("userID", "user_id"),
            ("aBC1Def", "a_bc1_def"),
            ("v2Field", "v2_field"),
            ("Hello World", "hello_world"),
            ("a b  c", "a_b_c"),
            ("a-b", "a_b"),
            ("a+b", "axb"),
            ("a*b", "axb"),
            ("a@b", "aab"),
            ("a|b", "alb"),
            ("a.b", "a_b"),
            ("a$b", "a_b"),
            ("x!@#y", "x_a_y"),
            ("price€", "pricex"),
            ("Ünïcödé", "_n_c_dx"),
            ("日本語", "x"),
            ("1abc", "_1abc"),
            ("123", "_123"),
            ("a_", "ax"),
            ("a__", "axx"),
            ("_", "x"),
            ("_a", "_a"),
            ("__a", "_a"),
            ("a__b", "a_b"),
            ("tab\tname", "tab_name"),
            ("price ($)", "pricex"),
            ("100%", "_100x"),
            ("@at", "aat"),
            ("straße", "stra_e"),
            ("ñame", "_ame"),
            ("Café Orders", "caf_orders"),
        ];
        for (input, expected) in cases {
            assert_eq!(n.normalize_identifier(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn paths() {
        let n = SnakeCase::default();
        assert_eq!(n.normalize_path("a__b"), "a__b");
        assert_eq!(n.normalize_path("a___b"), "a___b");
        assert_eq!(n.normalize_path("__a"), "a");
        assert_eq!(n.normalize_path("a__"), "a");
        assert_eq!(n.normalize_path("__dlt_id"), "dlt_id");
        assert_eq!(n.normalize_path("__dunder__"), "dunder");
        assert_eq!(n.normalize_path("___"), "x");
        assert_eq!(n.normalize_path(""), "_empty");
        assert_eq!(n.normalize_path("  "), "_empty");
        assert_eq!(n.normalize_path("MyTable"), "my_table");
    }

    #[test]
    fn shortening_postgres() {
        let n = SnakeCase::with_max_length(Some(63));
        let long = "very_long_column_name_that_exceeds_the_postgres_limit_of_sixty_three_chars";
        assert_eq!(n.normalize_identifier(long), "very_long_column_name_that_exaqjxiqs_limit_of_sixty_three_chars");
    }

    #[test]
    fn other_conventions() {
        let sql = SqlV1 { case_insensitive: false, max_length: None };
        assert_eq!(sql.normalize_raw("1Ab-c_"), "_1Ab_c");
        let ci = SqlV1 { case_insensitive: true, max_length: None };
        assert_eq!(ci.normalize_raw("Ab c"), "ab_c");
        let duck = DuckCase::default();
        assert_eq!(duck.normalize_raw("Straße\"x"), "Straße_x");
    }
}
