//! Pipeline files (`dlt run FILE`): TOML, YAML or JSON by extension, one shape.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{
    Config, Destination, DestinationContext, Error, Pipeline, Progress, Registry, Result, Source, SourceContext,
    pipeline,
};

/// The formats a pipeline file can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Toml,
    Yaml,
    Json,
}

fn format_of(path: &Path) -> Result<Format> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    Ok(match ext.as_str() {
        "toml" => Format::Toml,
        "yaml" | "yml" => Format::Yaml,
        "json" => Format::Json,
        other => {
            let shown = if other.is_empty() { "no extension".to_string() } else { format!("`.{other}`") };
            return Err(Error::Config(format!(
                "{}: a pipeline file ends in .toml, .yaml, .yml or .json (this one has {shown})",
                path.display()
            )));
        }
    })
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The file's document as the TOML table every reader of a pipeline file takes. Parse errors
/// name the file, line and column.
fn parse_document(path: &Path, text: &str) -> Result<toml::Table> {
    let at = |line: usize, col: usize, msg: &str| {
        Error::Config(format!("{}:{line}:{col}: {}", path.display(), msg.trim_end_matches('.').trim()))
    };
    match format_of(path)? {
        Format::Toml => text.parse::<toml::Table>().map_err(|e| {
            let (line, col) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            at(line, col, e.message())
        }),
        Format::Json => {
            let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                let msg = e.to_string();
                // serde_json appends " at line L column C"; the position goes in front instead
                let msg = msg.rsplit_once(" at line ").map_or(msg.as_str(), |(m, _)| m).to_string();
                at(e.line(), e.column(), &msg)
            })?;
            to_table(path, v)
        }
        Format::Yaml => {
            let v: serde_json::Value = serde_yaml::from_str(text).map_err(|e| {
                let (line, col) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
                let msg = e.to_string();
                let msg = msg.rsplit_once(" at line ").map_or(msg.as_str(), |(m, _)| m).to_string();
                at(line, col, &msg)
            })?;
            to_table(path, v)
        }
    }
}

/// A JSON/YAML document as a TOML table; `null` means "not set" and is left out.
fn to_table(path: &Path, v: serde_json::Value) -> Result<toml::Table> {
    fn conv(v: serde_json::Value, at: &str) -> std::result::Result<Option<toml::Value>, String> {
        Ok(Some(match v {
            serde_json::Value::Null => return Ok(None),
            serde_json::Value::Bool(b) => toml::Value::Boolean(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => toml::Value::Integer(i),
                None => match n.as_f64() {
                    Some(f) if n.is_f64() => toml::Value::Float(f),
                    _ => return Err(format!("`{at}`: the number {n} does not fit a 64-bit integer")),
                },
            },
            serde_json::Value::String(s) => toml::Value::String(s),
            serde_json::Value::Array(a) => toml::Value::Array(
                a.into_iter()
                    .enumerate()
                    .map(|(i, x)| conv(x, &format!("{at}[{i}]")))
                    .filter_map(|r| r.transpose())
                    .collect::<std::result::Result<_, _>>()?,
            ),
            serde_json::Value::Object(m) => {
                let mut t = toml::Table::new();
                for (k, x) in m {
                    let here = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                    if let Some(x) = conv(x, &here)? {
                        t.insert(k, x);
                    }
                }
                toml::Value::Table(t)
            }
        }))
    }
    match conv(v, "").map_err(|e| Error::Config(format!("{}: {e}", path.display())))? {
        Some(toml::Value::Table(t)) => Ok(t),
        _ => Err(Error::Config(format!(
            "{}: a pipeline file is a mapping with the sections `pipeline`, `source` and optionally `destination`",
            path.display()
        ))),
    }
}

/// A pipeline file as `dlt run` reads it: TOML (`.toml`), YAML (`.yaml`, `.yml`) or JSON
/// (`.json`), with the same sections and keys in each.
///
/// ```toml
/// [pipeline]
/// name = "quickstart"
/// destination = "duckdb"
/// dataset_name = "github_data"   # optional, default <name>_dataset
///
/// [destination]                  # optional, lowest precedence after env and .dlt/*.toml
/// credentials = "duckdb:///quickstart.duckdb"
///
/// # optional: `staging = "filesystem"` in [pipeline] uploads job files there first and the
/// # destination loads them from it; its settings as for the destination, or here:
/// # [staging]
/// # bucket_url = "stage"
///
/// [source]
/// type = "files"
/// [[source.resources]]
/// name = "issues"
/// path = "data/issues.jsonl"
/// write_disposition = "append"
/// ```
#[derive(Debug, Clone)]
pub struct PipelineFile {
    /// Where the file is (relative paths resolve against its folder).
    pub path: PathBuf,
    /// `[pipeline].name`.
    pub name: String,
    /// `[pipeline].destination`.
    pub destination: String,
    /// `[pipeline].dataset_name`.
    pub dataset_name: Option<String>,
    /// `[pipeline].dev_mode`.
    pub dev_mode: bool,
    /// `[pipeline].pipelines_dir`.
    pub pipelines_dir: Option<PathBuf>,
    /// `[pipeline].import_schema_path`.
    pub import_schema_path: Option<PathBuf>,
    /// `[pipeline].export_schema_path`.
    pub export_schema_path: Option<PathBuf>,
    /// `[destination]`.
    pub destination_config: Option<toml::Table>,
    /// `[pipeline].staging`: a staging destination.
    pub staging: Option<String>,
    /// `[staging]`: the staging destination's settings.
    pub staging_config: Option<toml::Table>,
    /// `[source]`.
    pub source: toml::Table,
}

impl PipelineFile {
    /// Read and validate a pipeline file.
    pub fn load(path: &Path) -> Result<PipelineFile> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let doc = parse_document(path, &text)?;
        // relative paths in the file, and the locations printed, resolve from an absolute path
        let path = &std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        for k in doc.keys() {
            if !matches!(k.as_str(), "pipeline" | "destination" | "source" | "staging") {
                return Err(Error::Config(format!("{}: unknown section [{k}]", path.display())));
            }
        }
        let p = doc
            .get("pipeline")
            .and_then(|v| v.as_table())
            .ok_or_else(|| Error::Config(format!("{}: missing [pipeline] section", path.display())))?;
        for k in p.keys() {
            if !matches!(
                k.as_str(),
                "name"
                    | "destination"
                    | "staging"
                    | "dataset_name"
                    | "dev_mode"
                    | "pipelines_dir"
                    | "import_schema_path"
                    | "export_schema_path"
            ) {
                return Err(Error::Config(format!("{}: unknown key `{k}` in [pipeline]", path.display())));
            }
        }
        let name = p
            .get("name")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::Config(format!("{}: [pipeline] needs `name`", path.display())))?
            .to_string();
        let destination = p.get("destination").and_then(|v| v.as_str()).unwrap_or("duckdb").to_string();
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(PipelineFile {
            path: path.to_path_buf(),
            name,
            destination,
            dataset_name: p.get("dataset_name").and_then(|v| v.as_str()).map(str::to_string),
            dev_mode: p.get("dev_mode").and_then(|v| v.as_bool()).unwrap_or(false),
            pipelines_dir: p.get("pipelines_dir").and_then(|v| v.as_str()).map(|d| base.join(d)),
            import_schema_path: p.get("import_schema_path").and_then(|v| v.as_str()).map(|d| base.join(d)),
            export_schema_path: p.get("export_schema_path").and_then(|v| v.as_str()).map(|d| base.join(d)),
            destination_config: doc.get("destination").and_then(|v| v.as_table()).cloned(),
            staging: p.get("staging").and_then(|v| v.as_str()).map(str::to_string),
            staging_config: doc.get("staging").and_then(|v| v.as_table()).cloned(),
            source: doc
                .get("source")
                .and_then(|v| v.as_table())
                .cloned()
                .ok_or_else(|| Error::Config(format!("{}: missing [source] section", path.display())))?,
        })
    }

    /// The folder relative paths resolve against.
    pub fn base_dir(&self) -> PathBuf {
        let base = self.path.parent().map(Path::to_path_buf).unwrap_or_default();
        if base.as_os_str().is_empty() { std::env::current_dir().unwrap_or_default() } else { base }
    }

    /// Build the destination named in the file.
    pub fn destination(&self, registry: &Registry, config: &Config, run_dir: &Path) -> Result<Arc<dyn Destination>> {
        let f = registry.destination(&self.destination)?;
        f.build(&DestinationContext {
            pipeline_name: &self.name,
            config,
            run_dir,
            explicit: self.destination_config.as_ref(),
        })
    }

    /// Build the source named in the file.
    pub fn source(&self, registry: &Registry, config: &Config) -> Result<Source> {
        let ty = self
            .source
            .get("type")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::Config(format!("{}: [source] needs `type`", self.path.display())))?;
        let base = self.base_dir();
        registry.source(ty)?.build(&self.source, &SourceContext { pipeline_name: &self.name, config, base_dir: &base })
    }

    /// Build the pipeline (destination from the file; run dir = the file's folder).
    pub fn pipeline(&self, registry: &Registry, progress: Option<Arc<dyn Progress>>) -> Result<Pipeline> {
        let run_dir = self.base_dir();
        let config = Config::load(&run_dir, None)?.with_pipeline(&self.name);
        let dest = self.destination(registry, &config, &run_dir)?;
        let staging = match &self.staging {
            Some(name) => Some(registry.destination(name)?.build(&DestinationContext {
                pipeline_name: &self.name,
                config: &config,
                run_dir: &run_dir,
                explicit: self.staging_config.as_ref(),
            })?),
            None => None,
        };
        let mut b = pipeline(&self.name).destination(dest).dev_mode(self.dev_mode).config(config);
        if let Some(st) = staging {
            b = b.staging(st);
        }
        if let Some(d) = &self.dataset_name {
            b = b.dataset_name(d);
        }
        if let Some(d) = &self.pipelines_dir {
            b = b.pipelines_dir(d);
        }
        if let Some(d) = &self.import_schema_path {
            b = b.import_schema_path(d);
        }
        if let Some(d) = &self.export_schema_path {
            b = b.export_schema_path(d);
        }
        if let Some(p) = progress {
            b = b.progress(p);
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, text: &str) -> Result<PipelineFile> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        PipelineFile::load(&p)
    }

    #[test]
    fn the_same_file_in_three_formats() {
        let toml = "[pipeline]\nname = \"p\"\ndataset_name = \"d\"\n[source]\ntype = \"files\"\n[[source.resources]]\nname = \"r\"\npath = \"x.jsonl\"\nchunk = 5\n";
        let yaml = "pipeline:\n  name: p\n  dataset_name: d\nsource:\n  type: files\n  resources:\n    - name: r\n      path: x.jsonl\n      chunk: 5\n      skip: null\n";
        let json = r#"{"pipeline": {"name": "p", "dataset_name": "d"}, "source": {"type": "files", "resources": [{"name": "r", "path": "x.jsonl", "chunk": 5}]}}"#;
        let a = load("p.toml", toml).unwrap();
        let b = load("p.yaml", yaml).unwrap();
        let c = load("p.json", json).unwrap();
        for f in [&b, &c] {
            assert_eq!((&f.name, &f.dataset_name, &f.source), (&a.name, &a.dataset_name, &a.source));
        }
    }

    #[test]
    fn parse_errors_give_line_and_column() {
        let e = load("bad.toml", "[pipeline]\nname = \"p\n").unwrap_err().to_string();
        assert!(e.contains("bad.toml:2:"), "{e}");
        let e = load("bad.json", "{\n  \"pipeline\": {\"name\": \"p\",}\n}").unwrap_err().to_string();
        assert!(e.contains("bad.json:2:"), "{e}");
        let e = load("bad.yaml", "pipeline:\n  name: p\n bad: [\n").unwrap_err().to_string();
        assert!(e.contains("bad.yaml:3:"), "{e}");
        let e = load("p.txt", "").unwrap_err().to_string();
        assert!(e.contains(".toml, .yaml, .yml or .json"), "{e}");
        let e = load("list.yaml", "- a\n- b\n").unwrap_err().to_string();
        assert!(e.contains("a mapping"), "{e}");
    }
}
