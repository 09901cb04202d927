//! The `files` source: local JSONL, JSON, CSV and Parquet files by path or glob.
//! JSON formats yield JSON items; CSV and Parquet yield Arrow batches.
#![warn(missing_docs)]

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::csv::ReaderBuilder;
use arrow::csv::reader::Format;
use dlt_core::error::{Error, IoContext, Result};
use dlt_core::registry::{SourceContext, SourceFactory};
use dlt_core::resource::{Item, Resource, ResourceHints, Source};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

mod jsonl;
pub use jsonl::BLOCK_SIZE as JSONL_BLOCK_SIZE;

/// File formats the source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// One JSON document per line.
    Jsonl,
    /// A JSON array of items (or one object).
    Json,
    /// CSV with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl FileKind {
    /// Guess from a file name (`.gz` is looked through).
    pub fn from_path(p: &Path) -> Option<FileKind> {
        let name = p.file_name()?.to_str()?.to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let ext = name.rsplit('.').next()?;
        Self::parse(ext)
    }

    /// Parse a format name.
    pub fn parse(s: &str) -> Option<FileKind> {
        Some(match s {
            "jsonl" | "ndjson" => FileKind::Jsonl,
            "json" => FileKind::Json,
            "csv" => FileKind::Csv,
            "parquet" => FileKind::Parquet,
            _ => return None,
        })
    }
}

/// Expand a path or glob into sorted files; an empty match is an error naming the pattern.
pub fn expand(pattern: &str, base: &Path) -> Result<Vec<PathBuf>> {
    let full = if Path::new(pattern).is_absolute() { PathBuf::from(pattern) } else { base.join(pattern) };
    let s = full.to_string_lossy().to_string();
    let mut out = vec![];
    if s.contains(['*', '?', '[']) {
        for e in glob::glob(&s).map_err(|e| Error::Config(format!("bad glob `{pattern}`: {e}")))? {
            let p = e.map_err(|e| Error::Config(format!("cannot read a match of `{pattern}`: {e}")))?;
            if p.is_file() {
                out.push(p);
            }
        }
        out.sort();
    } else if full.is_file() {
        out.push(full);
    }
    if out.is_empty() {
        return Err(Error::Config(format!("no files match `{}`", s)));
    }
    Ok(out)
}

fn is_gz(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()) == Some("gz")
}

fn open(p: &Path) -> Result<Box<dyn Read + Send>> {
    let f = File::open(p).at(p)?;
    if is_gz(p) { Ok(Box::new(flate2::read::MultiGzDecoder::new(f))) } else { Ok(Box::new(f)) }
}

/// Items of a list of files, read lazily, one file after the other.
pub struct FileItems {
    files: std::vec::IntoIter<PathBuf>,
    kind: Option<FileKind>,
    current: Option<Box<dyn Iterator<Item = Result<Item>> + Send>>,
    batch_size: usize,
    jsonl_block_size: usize,
}

impl FileItems {
    /// Read `files`; `kind` forces the format (otherwise taken from each file name).
    pub fn new(files: Vec<PathBuf>, kind: Option<FileKind>) -> Self {
        FileItems {
            files: files.into_iter(),
            kind,
            current: None,
            batch_size: 50_000,
            jsonl_block_size: JSONL_BLOCK_SIZE,
        }
    }

    /// Read JSONL files in blocks of `bytes` (default [`JSONL_BLOCK_SIZE`]); each block's lines
    /// are checked on a worker thread and extracted as one item.
    pub fn with_jsonl_block_size(mut self, bytes: usize) -> Self {
        self.jsonl_block_size = bytes.max(1);
        self
    }

    fn open_next(&mut self) -> Option<Result<Box<dyn Iterator<Item = Result<Item>> + Send>>> {
        let p = self.files.next()?;
        let kind = match self.kind.or_else(|| FileKind::from_path(&p)) {
            Some(k) => k,
            None => {
                return Some(Err(Error::Config(format!(
                    "cannot tell the format of {}: set `format` to jsonl, json, csv or parquet",
                    p.display()
                ))));
            }
        };
        Some(read_file_blocks(&p, kind, self.batch_size, self.jsonl_block_size))
    }
}

impl Iterator for FileItems {
    type Item = Result<Item>;
    fn next(&mut self) -> Option<Result<Item>> {
        loop {
            if let Some(cur) = &mut self.current {
                match cur.next() {
                    Some(item) => return Some(item),
                    None => self.current = None,
                }
            }
            match self.open_next()? {
                Ok(it) => self.current = Some(it),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Read one file as items (Arrow batches of `batch_size` rows for CSV and Parquet).
pub fn read_file(p: &Path, kind: FileKind, batch_size: usize) -> Result<Box<dyn Iterator<Item = Result<Item>> + Send>> {
    read_file_blocks(p, kind, batch_size, JSONL_BLOCK_SIZE)
}

fn read_file_blocks(
    p: &Path,
    kind: FileKind,
    batch_size: usize,
    jsonl_block_size: usize,
) -> Result<Box<dyn Iterator<Item = Result<Item>> + Send>> {
    let path = p.to_path_buf();
    match kind {
        FileKind::Jsonl => {
            // the size tells a small file (checked at once) from a large one (checked by threads)
            let size = if is_gz(p) { None } else { std::fs::metadata(p).ok().map(|m| m.len()) };
            Ok(Box::new(jsonl::JsonlItems::new(p, open(p)?, size, jsonl_block_size)))
        }
        FileKind::Json => {
            let mut s = String::new();
            open(p)?.read_to_string(&mut s).at(p)?;
            let v: Value = serde_json::from_str(&s).map_err(|e| Error::BadInput {
                location: format!("{}:{}", path.display(), e.line()),
                message: format!("malformed JSON: {e}"),
            })?;
            let items: Vec<Value> = match v {
                Value::Array(a) => a,
                other => vec![other],
            };
            Ok(Box::new(items.into_iter().map(|v| Ok(Item::Json(v)))))
        }
        FileKind::Csv => {
            let mut sample = open(p)?;
            let (schema, _) =
                Format::default().with_header(true).infer_schema(&mut sample, Some(10_000)).map_err(|e| {
                    Error::BadInput {
                        location: path.display().to_string(),
                        message: format!("cannot read CSV header: {e}"),
                    }
                })?;
            // timestamps in CSV are read as UTC instants (dlt's default: naive values are UTC)
            let fields: Vec<arrow::datatypes::Field> = schema
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    arrow::datatypes::DataType::Timestamp(_, None) => {
                        f.as_ref().clone().with_data_type(arrow::datatypes::DataType::Timestamp(
                            arrow::datatypes::TimeUnit::Microsecond,
                            Some("+00:00".into()),
                        ))
                    }
                    _ => f.as_ref().clone(),
                })
                .collect();
            let schema = arrow::datatypes::Schema::new(fields);
            let reader = ReaderBuilder::new(Arc::new(schema))
                .with_header(true)
                .with_batch_size(batch_size)
                .build(open(p)?)
                .map_err(|e| Error::BadInput { location: path.display().to_string(), message: e.to_string() })?;
            let mut batch_no = 0usize;
            Ok(Box::new(reader.map(move |b| {
                batch_no += 1;
                b.map(Item::Arrow).map_err(|e| Error::BadInput {
                    location: format!("{} (rows {}..)", path.display(), (batch_no - 1) * batch_size + 1),
                    message: e.to_string(),
                })
            })))
        }
        FileKind::Parquet => {
            let f = File::open(p).at(p)?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(f)
                .map_err(|e| Error::BadInput { location: path.display().to_string(), message: e.to_string() })?
                .with_batch_size(batch_size)
                .build()
                .map_err(|e| Error::BadInput { location: path.display().to_string(), message: e.to_string() })?;
            Ok(Box::new(reader.map(move |b| {
                b.map(Item::Arrow)
                    .map_err(|e| Error::BadInput { location: path.display().to_string(), message: e.to_string() })
            })))
        }
    }
}

/// A resource over files matching `pattern` (relative to `base`).
pub fn resource(name: &str, pattern: &str, base: &Path, kind: Option<FileKind>) -> Result<Resource> {
    let files = expand(pattern, base)?;
    Ok(Resource::new(name, FileItems::new(files, kind)))
}

/// Builds a `files` source from a pipeline file's `[source]` table:
/// `[[source.resources]]` with `name`, `path` (path or glob), optional `format`, and dlt's
/// resource hints (`write_disposition`, `primary_key`, `table_name`, `columns`, …).
#[derive(Debug, Default)]
pub struct FilesFactory;

impl SourceFactory for FilesFactory {
    fn init_template(&self) -> Option<dlt_core::registry::InitTemplate> {
        Some(dlt_core::registry::InitTemplate { pipeline: include_str!("init/pipeline.toml"), ..Default::default() })
    }
    fn name(&self) -> &'static str {
        "files"
    }

    fn build(&self, config: &toml::Table, ctx: &SourceContext<'_>) -> Result<Source> {
        let name = config.get("name").and_then(|v| v.as_str()).unwrap_or(ctx.pipeline_name).to_string();
        for k in config.keys() {
            if !matches!(k.as_str(), "type" | "name" | "resources" | "max_table_nesting" | "schema_contract") {
                return Err(Error::Config(format!("[source]: unknown key `{k}` for the files source")));
            }
        }
        let list = config
            .get("resources")
            .and_then(|v| v.as_array())
            .ok_or_else(|| Error::Config("[source]: the files source needs [[source.resources]] entries".into()))?;
        let mut resources = vec![];
        for (i, r) in list.iter().enumerate() {
            let t = r
                .as_table()
                .ok_or_else(|| Error::Config(format!("[[source.resources]] #{}: must be a table", i + 1)))?;
            let rname = t
                .get("name")
                .and_then(|v| v.as_str())
                .ok_or_else(|| Error::Config(format!("[[source.resources]] #{}: missing `name`", i + 1)))?;
            let path = t
                .get("path")
                .and_then(|v| v.as_str())
                .ok_or_else(|| Error::Config(format!("resource `{rname}`: missing `path`")))?;
            let kind = match t.get("format").and_then(|v| v.as_str()) {
                Some(f) => Some(FileKind::parse(f).ok_or_else(|| {
                    Error::Config(format!("resource `{rname}`: unknown format `{f}` (jsonl, json, csv, parquet)"))
                })?),
                None => None,
            };
            let mut hints = toml::Table::new();
            for (k, v) in t {
                if !matches!(k.as_str(), "name" | "path" | "format") {
                    hints.insert(k.clone(), v.clone());
                }
            }
            let hints_json = serde_json::to_value(&hints)?;
            let hints =
                ResourceHints::from_json(&hints_json).map_err(|e| Error::Config(format!("resource `{rname}`: {e}")))?;
            resources.push(resource(rname, path, ctx.base_dir, kind)?.with_hints(hints));
        }
        let mut source = Source::new(name, resources);
        source.max_table_nesting = config.get("max_table_nesting").and_then(|v| v.as_integer()).map(|v| v as u32);
        source.schema_contract = config.get("schema_contract").map(serde_json::to_value).transpose()?;
        Ok(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Rows of items as text: each line of a block, a single document trimmed, an error's text.
    fn rows(items: impl Iterator<Item = Result<Item>>) -> Vec<std::result::Result<String, String>> {
        let mut out = vec![];
        for i in items {
            match i {
                Ok(Item::RawJsonLines { text, lines }) => {
                    assert!(text.ends_with('\n'), "{text:?}");
                    assert_eq!(text.lines().count(), lines, "{text:?}");
                    out.extend(text.lines().map(|l| Ok(l.to_string())));
                }
                Ok(Item::RawJson(s)) => out.push(Ok(s.trim().to_string())),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => out.push(Err(e.to_string())),
            }
        }
        out
    }

    /// What reading line by line gives (the reader before blocks): the reference.
    fn rows_line_by_line(p: &Path) -> Vec<std::result::Result<String, String>> {
        use std::io::BufRead;
        let reader = std::io::BufReader::new(open(p).unwrap());
        let mut out = vec![];
        for (i, line) in reader.lines().enumerate() {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    out.push(Err(Error::io(p, e).to_string()));
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            out.push(match serde_json::from_str::<serde::de::IgnoredAny>(&line) {
                Ok(_) => Ok(line.trim().to_string()),
                Err(e) => Err(Error::BadInput {
                    location: format!("{}:{}", p.display(), i + 1),
                    message: format!("malformed JSON: {e}"),
                }
                .to_string()),
            });
        }
        out
    }

    #[test]
    fn jsonl_error_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        let mut f = File::create(&p).unwrap();
        writeln!(f, "{{\"a\": 1}}\n\n{{\"a\": 2}}\n{{\"a\": oops}}").unwrap();
        let items = rows(FileItems::new(vec![p.clone()], None));
        assert_eq!(items.len(), 3);
        let err = items[2].as_ref().unwrap_err().to_string();
        assert!(err.contains("a.jsonl:4"), "{err}");
    }

    #[test]
    fn jsonl_blocks_give_what_reading_line_by_line_gives() {
        let d = tempfile::tempdir().unwrap();
        let mut cases: Vec<(&str, Vec<u8>)> = vec![];
        // many lines, blank and whitespace-only ones, a bad line deep inside, arrays
        let mut big = String::new();
        for i in 0..3000 {
            match i % 500 {
                17 => big.push('\n'),
                18 => big.push_str("   \t \n"),
                19 => big.push_str(&format!("[{{\"id\": {i}}}, {{\"id\": {}}}]\n", i + 1)),
                20 => big.push_str(&format!("  {{\"id\": {i}, \"padded\": true}}  \n")),
                _ => big.push_str(&format!("{{\"id\": {i}, \"s\": \"{}\"}}\n", "x".repeat(i % 37))),
            }
            if i == 2345 {
                big.push_str("{\"id\": oops}\n");
            }
        }
        cases.push(("big.jsonl", big.clone().into_bytes()));
        // no newline at the end
        cases.push(("no_eol.jsonl", b"{\"a\": 1}\n{\"a\": 2}".to_vec()));
        cases.push(("no_eol_bad.jsonl", b"{\"a\": 1}\n{\"a\": 2".to_vec()));
        // CRLF line endings, with blank CRLF lines and an error after them
        cases.push(("crlf.jsonl", b"{\"a\": 1}\r\n\r\n{\"a\": 2}\r\n{\"a\": \r\n{\"a\": 3}\r\n".to_vec()));
        // invalid UTF-8 on a line, a line longer than a block, lone `\r`
        cases.push((
            "utf8.jsonl",
            [
                &b"{\"a\": 1}\n{\"a\": \"\xff\"}\n"[..],
                format!("{{\"long\": \"{}\"}}\n", "y".repeat(3000)).as_bytes(),
                b"\r\n{\"b\": 1}\r",
            ]
            .concat(),
        ));
        cases.push(("empty.jsonl", vec![]));
        cases.push(("blank.jsonl", b"\n\n  \n".to_vec()));
        for (name, bytes) in cases {
            let p = d.path().join(name);
            std::fs::write(&p, &bytes).unwrap();
            let expected = rows_line_by_line(&p);
            for block in [1, 7, 64, 1000, 4096, 1 << 20] {
                let got = rows(FileItems::new(vec![p.clone()], None).with_jsonl_block_size(block));
                assert_eq!(got, expected, "{name}, blocks of {block} bytes");
            }
        }
        // the bad line is named with its number in the file, after many blocks
        let p = d.path().join("big.jsonl");
        let errs: Vec<String> = rows(FileItems::new(vec![p.clone()], None).with_jsonl_block_size(4096))
            .into_iter()
            .filter_map(|r| r.err())
            .collect();
        assert_eq!(errs.len(), 1, "{errs:?}");
        let bad_line = big.lines().position(|l| l.contains("oops")).unwrap() + 1;
        assert!(bad_line > 2000 && errs[0].contains(&format!("big.jsonl:{bad_line}:")), "{errs:?}");
        assert!(errs[0].contains("malformed JSON"), "{errs:?}");
        // good lines come in blocks, not one item per line
        let items: Vec<Item> = FileItems::new(vec![d.path().join("no_eol.jsonl")], None).map(|i| i.unwrap()).collect();
        assert!(matches!(&items[..], [Item::RawJsonLines { text, lines: 2 }] if text == "{\"a\": 1}\n{\"a\": 2}\n"));
        let items = FileItems::new(vec![p], None).with_jsonl_block_size(1 << 16).count();
        assert!(items < 100, "{items} items");
    }

    #[test]
    fn jsonl_gzip_in_blocks() {
        let d = tempfile::tempdir().unwrap();
        let gz = d.path().join("b.jsonl.gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        for i in 0..5000 {
            writeln!(enc, "{{\"x\": {i}}}").unwrap();
        }
        writeln!(enc, "{{\"x\": }}").unwrap();
        enc.finish().unwrap();
        let expected = rows_line_by_line(&gz);
        assert_eq!(expected.len(), 5001);
        for block in [100, 4096, 1 << 20] {
            let got = rows(FileItems::new(vec![gz.clone()], None).with_jsonl_block_size(block));
            assert_eq!(got, expected, "blocks of {block} bytes");
        }
        assert!(expected[5000].as_ref().unwrap_err().contains("b.jsonl.gz:5001:"), "{:?}", expected[5000]);
    }

    #[test]
    fn json_arrays_gzip_and_parquet() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.json"), r#"[{"id": 1}, {"id": 2}, {"id": 3}]"#).unwrap();
        let items: Vec<Item> = FileItems::new(vec![d.path().join("a.json")], None).map(|i| i.unwrap()).collect();
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[2], Item::Json(v) if v["id"] == 3));
        // gzip-compressed JSONL
        let gz = d.path().join("b.jsonl.gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(b"{\"x\": 1}\n{\"x\": 2}\n").unwrap();
        enc.finish().unwrap();
        let items = rows(FileItems::new(vec![gz], None));
        assert_eq!(items, [Ok("{\"x\": 1}".to_string()), Ok("{\"x\": 2}".to_string())]);
        // parquet written with arrow, read back as one batch
        let batch = arrow::record_batch::RecordBatch::try_from_iter(vec![(
            "n",
            Arc::new(arrow::array::Int64Array::from(vec![1, 2, 3, 4])) as arrow::array::ArrayRef,
        )])
        .unwrap();
        let pq = d.path().join("c.parquet");
        let mut w = parquet::arrow::ArrowWriter::try_new(File::create(&pq).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let items: Vec<Item> = FileItems::new(vec![pq], None).map(|i| i.unwrap()).collect();
        assert!(matches!(&items[0], Item::Arrow(b) if b.num_rows() == 4));
        // a malformed JSON array names the file
        std::fs::write(d.path().join("bad.json"), "[{\"id\": 1},\n{oops}]").unwrap();
        let err = FileItems::new(vec![d.path().join("bad.json")], None).next().unwrap().unwrap_err().to_string();
        assert!(err.contains("bad.json:2"), "{err}");
        // unknown extension without a format
        std::fs::write(d.path().join("x.txt"), "").unwrap();
        let err = FileItems::new(vec![d.path().join("x.txt")], None).next().unwrap().unwrap_err().to_string();
        assert!(err.contains("cannot tell the format"), "{err}");
    }

    #[test]
    fn csv_and_glob() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x1.csv"), "id,name\n1,a\n2,b\n").unwrap();
        std::fs::write(d.path().join("x2.csv"), "id,name\n3,c\n").unwrap();
        let r = resource("x", "x*.csv", d.path(), None).unwrap();
        let (_, _, items) = r.into_parts();
        let rows: usize = items
            .map(|i| match i.unwrap() {
                Item::Arrow(b) => b.num_rows(),
                _ => panic!("csv gives arrow"),
            })
            .sum();
        assert_eq!(rows, 3);
        assert!(expand("nothing*.csv", d.path()).unwrap_err().to_string().contains("no files match"));
    }
}
