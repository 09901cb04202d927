//! `dlt init <source> <destination>`: a commented starter pipeline file, `.dlt/config.toml`,
//! a `.dlt/secrets.toml` template and a `.gitignore` that keeps the secrets out of git.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use dlt::dlt_core::registry::{InitTemplate, Registry};

/// Sources of `registry` with an `init` template.
pub fn sources(registry: &Registry) -> Vec<&'static str> {
    registry.source_names().into_iter().filter(|n| source_template(registry, n).is_some()).collect()
}

/// Destinations of `registry` with an `init` template.
pub fn destinations(registry: &Registry) -> Vec<&'static str> {
    registry.destination_names().into_iter().filter(|n| destination_template(registry, n).is_some()).collect()
}

fn source_template(registry: &Registry, name: &str) -> Option<InitTemplate> {
    registry.source(name).ok().and_then(|f| f.init_template())
}

fn destination_template(registry: &Registry, name: &str) -> Option<InitTemplate> {
    registry.destination(name).ok().and_then(|f| f.init_template())
}

/// The pipeline name for a project folder: the folder's name in snake case, so two projects
/// never share a pipeline (and its state) by accident; `{source}_pipeline` when the folder has
/// no usable name.
pub fn pipeline_name(dir: &Path, source: &str) -> String {
    let folder = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let mut name = String::new();
    for c in folder.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.ends_with('_') {
            name.push('_');
        }
    }
    let name = name.trim_matches('_');
    match name.chars().next() {
        Some(c) if c.is_ascii_alphabetic() => name.to_string(),
        Some(_) => format!("p_{name}"),
        None => format!("{source}_pipeline"),
    }
}

/// The files `init` writes, as (path relative to the project folder, contents); the pipeline
/// is called `name`. The templates come from the connectors' factories in `registry`.
pub fn files(registry: &Registry, name: &str, source: &str, destination: &str) -> Result<Vec<(String, String)>> {
    let Some(src) = source_template(registry, source) else {
        bail!("no template for source `{source}`; templates exist for: {}", sources(registry).join(", "));
    };
    let Some(dst) = destination_template(registry, destination) else {
        bail!(
            "no template for destination `{destination}`; templates exist for: {}",
            destinations(registry).join(", ")
        );
    };
    let file = format!("{source}_pipeline");
    // a dataset named like the pipeline (DuckDB's database) makes DuckDB's names ambiguous
    let dataset = if name == format!("{source}_data") { format!("{name}_dataset") } else { format!("{source}_data") };
    let head = format!(
        "# A dlt-rs pipeline: {source} -> {destination}, written by `dlt init {source} {destination}`.\n\
         #\n\
         #   dlt run {file}.toml               # extract, normalize and load\n\
         #   dlt pipeline {name} info          # what was loaded\n\
         #\n\
         # Secrets (tokens, passwords) belong in .dlt/secrets.toml or in environment variables,\n\
         # never in this file; environment variables win over both files.\n\n\
         [pipeline]\n\
         name = \"{name}\"\n\
         destination = \"{destination}\"\n\
         dataset_name = \"{dataset}\"\n\n"
    );
    let source_part = src.pipeline;
    let mut secrets = String::from(
        "# Secrets for dlt-rs. Keep this file out of version control (see .gitignore).\n\
         # Every value here can also come from an environment variable: the section path in upper\n\
         # case joined with `__`, e.g. SOURCES__REST_API__CREDENTIALS__TOKEN.\n\n",
    );
    secrets.push_str(src.secrets);
    let mut config = String::from(
        "# Settings for dlt-rs (not secrets). Environment variables win over this file,\n\
         # e.g. NORMALIZE__LOADER_FILE_FORMAT or DESTINATION__DUCKDB__MEMORY_LIMIT.\n\n\
         [runtime]\n\
         log_level = \"WARNING\"\n\n",
    );
    config.push_str(src.config);
    secrets.push_str(dst.secrets);
    config.push_str(dst.config);
    Ok(vec![
        (format!("{file}.toml"), format!("{head}{source_part}")),
        (".dlt/config.toml".into(), config),
        (".dlt/secrets.toml".into(), secrets),
        (".gitignore".into(), "# dlt-rs: secrets and local data\n.dlt/secrets.toml\n*.duckdb\n*.wal\n".into()),
    ])
}

/// Create a file that will hold secrets: readable by its owner only (0600), and only if
/// nothing — not even a dangling symlink — is at the path.
fn write_secret_file(p: &Path, body: &str) -> Result<()> {
    use std::io::Write;
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(p).with_context(|| format!("creating {}", p.display()))?;
    f.write_all(body.as_bytes()).with_context(|| format!("writing {}", p.display()))?;
    Ok(())
}

/// Write the starter files into `dir`. An existing pipeline file is kept unless `force`;
/// existing `.dlt` files and `.gitignore` are never overwritten (the `.gitignore` gets the
/// secrets line appended when it lacks it).
pub fn init(registry: &Registry, dir: &Path, source: &str, destination: &str, force: bool) -> Result<()> {
    let abs = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let name = pipeline_name(&abs, source);
    let files = files(registry, &name, source, destination)?;
    let needs_secrets = [source_template(registry, source), destination_template(registry, destination)]
        .iter()
        .flatten()
        .any(|t| !t.secrets.is_empty());
    fs::create_dir_all(dir.join(".dlt")).with_context(|| format!("creating {}", dir.join(".dlt").display()))?;
    for (i, (rel, body)) in files.iter().enumerate() {
        let p = dir.join(rel);
        // a symlink counts as there even when it points nowhere: it is never followed to create
        // a file somewhere else
        let exists = fs::symlink_metadata(&p).is_ok();
        if i == 0 && exists && !force {
            bail!("{} exists; pass --force to overwrite it", p.display());
        }
        if rel == ".gitignore" && exists {
            let cur = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            if !cur.lines().any(|l| l.trim() == ".dlt/secrets.toml") {
                let sep = if cur.ends_with('\n') || cur.is_empty() { "" } else { "\n" };
                fs::write(&p, format!("{cur}{sep}.dlt/secrets.toml\n"))
                    .with_context(|| format!("writing {}", p.display()))?;
                println!("added .dlt/secrets.toml to {rel}");
            }
            continue;
        }
        if i > 0 && exists {
            println!("kept existing {rel}");
            continue;
        }
        if rel == ".dlt/secrets.toml" {
            write_secret_file(&p, body)?;
        } else {
            fs::write(&p, body).with_context(|| format!("writing {}", p.display()))?;
        }
        println!("wrote {rel}");
    }
    let file = format!("{source}_pipeline.toml");
    println!();
    if needs_secrets {
        println!("Next: edit {file}, put credentials into .dlt/secrets.toml, then run `dlt run {file}`.");
    } else {
        println!("Next: edit {file} (the data files it reads), then run `dlt run {file}`.");
    }
    println!("The pipeline is named `{name}` after this folder; its state lives under that name.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_valid_toml_and_names_the_pipeline() {
        let registry = dlt::registry();
        for s in sources(&registry) {
            for d in destinations(&registry) {
                let files = files(&registry, "p", s, d).unwrap();
                for (rel, body) in &files {
                    if rel.ends_with(".toml") {
                        let t: toml::Table = body.parse().unwrap_or_else(|e| panic!("{s}/{d} {rel}: {e}"));
                        if rel.ends_with("_pipeline.toml") {
                            assert_eq!(t["pipeline"]["destination"].as_str(), Some(d));
                            assert_eq!(t["source"]["type"].as_str(), Some(s));
                        }
                    }
                }
            }
        }
        assert!(files(&dlt::registry(), "p", "nope", "duckdb").unwrap_err().to_string().contains("rest_api"));
        assert!(files(&dlt::registry(), "p", "rest_api", "nope").unwrap_err().to_string().contains("duckdb"));
    }

    #[test]
    fn the_rest_api_template_builds_a_source() {
        let files = files(&dlt::registry(), "p", "rest_api", "duckdb").unwrap();
        let t: toml::Table = files[0].1.parse().unwrap();
        let src = t["source"].as_table().unwrap();
        let config = dlt::Config::default();
        let dir = tempfile::tempdir().unwrap();
        let ctx = dlt::SourceContext { pipeline_name: "p", config: &config, base_dir: dir.path() };
        let source = dlt::registry().source("rest_api").unwrap().build(src, &ctx).unwrap();
        let names: Vec<&str> = source.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["pokemon", "berry"]);
    }

    #[cfg(unix)]
    #[test]
    fn secrets_file_is_private_and_never_follows_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        init(&dlt::registry(), dir.path(), "files", "duckdb", false).unwrap();
        let mode = fs::metadata(dir.path().join(".dlt/secrets.toml")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // a dangling symlink where the secrets go: kept, and nothing is created at its target
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(".dlt")).unwrap();
        let target = dir.path().join("elsewhere.toml");
        std::os::unix::fs::symlink(&target, dir.path().join(".dlt/secrets.toml")).unwrap();
        init(&dlt::registry(), dir.path(), "files", "duckdb", false).unwrap();
        assert!(!target.exists(), "the symlink was followed");
        assert!(fs::symlink_metadata(dir.path().join(".dlt/secrets.toml")).unwrap().file_type().is_symlink());
    }

    #[test]
    fn pipelines_are_named_after_their_folder() {
        assert_eq!(pipeline_name(Path::new("/home/a/Shop Orders-2024"), "sql_database"), "shop_orders_2024");
        assert_eq!(pipeline_name(Path::new("/home/a/2024"), "files"), "p_2024");
        assert_eq!(pipeline_name(Path::new("/"), "files"), "files_pipeline");
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("billing");
        fs::create_dir_all(&project).unwrap();
        init(&dlt::registry(), &project, "files", "duckdb", false).unwrap();
        let t: toml::Table = fs::read_to_string(project.join("files_pipeline.toml")).unwrap().parse().unwrap();
        assert_eq!(t["pipeline"]["name"].as_str(), Some("billing"));
    }

    #[test]
    fn init_keeps_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(".dlt")).unwrap();
        fs::write(dir.path().join(".dlt/secrets.toml"), "[mine]\nx = 1\n").unwrap();
        fs::write(dir.path().join(".gitignore"), "target").unwrap();
        init(&dlt::registry(), dir.path(), "rest_api", "postgres", false).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join(".dlt/secrets.toml")).unwrap(), "[mine]\nx = 1\n");
        assert_eq!(fs::read_to_string(dir.path().join(".gitignore")).unwrap(), "target\n.dlt/secrets.toml\n");
        assert!(dir.path().join("rest_api_pipeline.toml").is_file());
        assert!(fs::read_to_string(dir.path().join(".dlt/config.toml")).unwrap().contains("[runtime]"));
        // a second init does not overwrite the pipeline file without --force
        let err = init(&dlt::registry(), dir.path(), "rest_api", "postgres", false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        init(&dlt::registry(), dir.path(), "rest_api", "postgres", true).unwrap();
    }
}
