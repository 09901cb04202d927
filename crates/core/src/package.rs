//! Load packages on disk, in dlt's stage folders:
//! `normalize/extracted/<load_id>` → `load/normalized/<load_id>` → `load/loaded/<load_id>`.
//! Each stage is written into a temporary folder and renamed into place, so a crash leaves either
//! the previous stage or the next one, never a half-written package.

use std::fs;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::destination::JobFile;
use crate::error::{IoContext, Result};

/// Per-package facts kept in `load_package_state.json`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct PackageState {
    /// Load id.
    pub load_id: String,
    /// Schema (source) name.
    pub schema_name: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Pipeline state to commit with this package (present only if it changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_state: Option<serde_json::Map<String, Value>>,
    /// Resources extracted, with the root tables each wrote to (even with no rows).
    #[serde(default)]
    pub resources: IndexMap<String, Vec<String>>,
    /// Items extracted per root table.
    #[serde(default)]
    pub extracted_items: IndexMap<String, u64>,
    /// Rows normalized per table.
    #[serde(default)]
    pub row_counts: IndexMap<String, u64>,
    /// Tables to empty before loading (replace), nested first.
    #[serde(default)]
    pub truncate_tables: Vec<String>,
    /// Tables that received jobs.
    #[serde(default)]
    pub tables_with_jobs: Vec<String>,
    /// Tables a `drop_data` refresh empties with this package.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refresh_truncate: Vec<String>,
    /// Completion time (RFC 3339), once loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<String>,
    /// An attempt of a destination without transactions began loading the package (replaced
    /// tables emptied, staging tables made): a later attempt resumes with the jobs left.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub begun: bool,
    /// Follow-up jobs (`<table>.<kind>`) completed by an attempt of a destination without
    /// transactions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub completed_follow_ups: Vec<String>,
}

/// The stage a package is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PackageStage {
    /// Extracted, not normalized.
    Extracted,
    /// Normalized, waiting to be loaded.
    Normalized,
    /// Loaded.
    Loaded,
}

impl std::fmt::Display for PackageStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PackageStage::Extracted => "EXTRACTED",
            PackageStage::Normalized => "NORMALIZED",
            PackageStage::Loaded => "LOADED",
        })
    }
}

/// The package folders of one pipeline's working directory.
#[derive(Debug, Clone)]
pub struct PackageStorage {
    root: PathBuf,
}

/// Job folders inside a package.
pub const NEW_JOBS: &str = "new_jobs";
/// Completed jobs folder.
pub const COMPLETED_JOBS: &str = "completed_jobs";
/// Failed jobs folder (an `.exception` file per failed job).
pub const FAILED_JOBS: &str = "failed_jobs";
/// Package state file.
pub const PACKAGE_STATE_FILE: &str = "load_package_state.json";
/// Schema file.
pub const SCHEMA_FILE: &str = "schema.json";

impl PackageStorage {
    /// Storage under a pipeline working directory; creates the stage folders.
    pub fn open(working_dir: &Path) -> Result<Self> {
        let s = PackageStorage { root: working_dir.to_path_buf() };
        for d in [s.extracted_dir(), s.normalized_dir(), s.loaded_dir(), s.tmp_extract_dir(), s.tmp_normalize_dir()] {
            fs::create_dir_all(&d).at(&d)?;
        }
        for (d, v) in [("normalize", "1.0.1"), ("load", "1.0.2")] {
            let p = s.root.join(d).join(".version");
            if !p.exists() {
                fs::write(&p, v).at(&p)?;
            }
        }
        Ok(s)
    }

    /// `normalize/extracted`.
    pub fn extracted_dir(&self) -> PathBuf {
        self.root.join("normalize").join("extracted")
    }
    /// `load/normalized`.
    pub fn normalized_dir(&self) -> PathBuf {
        self.root.join("load").join("normalized")
    }
    /// `load/loaded`.
    pub fn loaded_dir(&self) -> PathBuf {
        self.root.join("load").join("loaded")
    }
    fn tmp_extract_dir(&self) -> PathBuf {
        self.root.join("normalize").join("new")
    }
    fn tmp_normalize_dir(&self) -> PathBuf {
        self.root.join("load").join("new")
    }

    /// Remove half-written packages left by a crash (they are redone from the previous stage).
    pub fn cleanup_partial(&self) -> Result<()> {
        for d in [self.tmp_extract_dir(), self.tmp_normalize_dir()] {
            for e in list_dirs(&d)? {
                fs::remove_dir_all(&e).at(&e)?;
            }
        }
        // a package both normalized and still extracted: the rename happened, the delete did not
        for id in self.list(PackageStage::Extracted)? {
            if self.normalized_dir().join(&id).exists() || self.loaded_dir().join(&id).exists() {
                let p = self.extracted_dir().join(&id);
                fs::remove_dir_all(&p).at(&p)?;
            }
        }
        Ok(())
    }

    /// A fresh temporary folder for an extract in progress.
    pub fn new_extract(&self, load_id: &str) -> Result<PathBuf> {
        let p = self.tmp_extract_dir().join(load_id);
        fs::create_dir_all(p.join(NEW_JOBS)).at(&p)?;
        Ok(p)
    }

    /// A fresh temporary folder for a normalize in progress.
    pub fn new_normalize(&self, load_id: &str) -> Result<PathBuf> {
        let p = self.tmp_normalize_dir().join(load_id);
        if p.exists() {
            fs::remove_dir_all(&p).at(&p)?;
        }
        for d in [NEW_JOBS, COMPLETED_JOBS, FAILED_JOBS] {
            fs::create_dir_all(p.join(d)).at(&p)?;
        }
        Ok(p)
    }

    /// Publish a finished extract.
    pub fn commit_extract(&self, load_id: &str) -> Result<PathBuf> {
        let from = self.tmp_extract_dir().join(load_id);
        let to = self.extracted_dir().join(load_id);
        fs::rename(&from, &to).at(&to)?;
        Ok(to)
    }

    /// Publish a finished normalize and drop the extracted package.
    pub fn commit_normalize(&self, load_id: &str) -> Result<PathBuf> {
        let from = self.tmp_normalize_dir().join(load_id);
        let to = self.normalized_dir().join(load_id);
        fs::rename(&from, &to).at(&to)?;
        let ex = self.extracted_dir().join(load_id);
        if ex.exists() {
            fs::remove_dir_all(&ex).at(&ex)?;
        }
        Ok(to)
    }

    /// Mark a package loaded: jobs to `completed_jobs`, folder to `load/loaded`.
    pub fn complete_load(&self, load_id: &str) -> Result<PathBuf> {
        let dir = self.normalized_dir().join(load_id);
        let done = dir.join(COMPLETED_JOBS);
        fs::create_dir_all(&done).at(&done)?;
        for f in list_files(&dir.join(NEW_JOBS))? {
            let to = done.join(f.file_name().unwrap_or_default());
            fs::rename(&f, &to).at(&to)?;
        }
        let failed = dir.join(FAILED_JOBS);
        for f in list_files(&failed)? {
            fs::remove_file(&f).at(&f)?;
        }
        let to = self.loaded_dir().join(load_id);
        fs::rename(&dir, &to).at(&to)?;
        Ok(to)
    }

    /// Package ids in a stage, oldest first.
    pub fn list(&self, stage: PackageStage) -> Result<Vec<String>> {
        let mut ids: Vec<String> = list_dirs(&self.stage_dir(stage))?
            .into_iter()
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect();
        ids.sort_by(|a, b| cmp_load_ids(a, b));
        Ok(ids)
    }

    /// Folder of a stage.
    pub fn stage_dir(&self, stage: PackageStage) -> PathBuf {
        match stage {
            PackageStage::Extracted => self.extracted_dir(),
            PackageStage::Normalized => self.normalized_dir(),
            PackageStage::Loaded => self.loaded_dir(),
        }
    }

    /// Find a package in any stage.
    pub fn find(&self, load_id: &str) -> Option<(PackageStage, PathBuf)> {
        for st in [PackageStage::Loaded, PackageStage::Normalized, PackageStage::Extracted] {
            let p = self.stage_dir(st).join(load_id);
            if p.is_dir() {
                return Some((st, p));
            }
        }
        None
    }

    /// Delete an extracted package that has nothing to load (see dlt's empty packages).
    pub fn drop_extracted(&self, load_id: &str) -> Result<()> {
        let p = self.extracted_dir().join(load_id);
        fs::remove_dir_all(&p).at(&p)
    }

    /// Delete every package that is not loaded (extracted or normalized).
    pub fn drop_pending(&self) -> Result<Vec<String>> {
        let mut dropped = vec![];
        for st in [PackageStage::Extracted, PackageStage::Normalized] {
            for id in self.list(st)? {
                let p = self.stage_dir(st).join(&id);
                fs::remove_dir_all(&p).at(&p)?;
                dropped.push(id);
            }
        }
        Ok(dropped)
    }
}

/// Order load ids numerically when they parse as numbers.
pub fn cmp_load_ids(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}

/// Subfolders of a folder (none if it does not exist).
pub fn list_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    list_entries(dir, true)
}

/// Files of a folder, sorted by name (none if it does not exist).
pub fn list_files(dir: &Path) -> Result<Vec<PathBuf>> {
    list_entries(dir, false)
}

fn list_entries(dir: &Path, dirs: bool) -> Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(crate::error::Error::io(dir, e)),
    };
    let mut out = vec![];
    for e in rd {
        let e = e.at(dir)?;
        let p = e.path();
        if p.is_dir() == dirs {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Job files in a package's `new_jobs` folder.
pub fn list_jobs(package_dir: &Path, folder: &str) -> Result<Vec<JobFile>> {
    Ok(list_files(&package_dir.join(folder))?.into_iter().filter_map(JobFile::parse).collect())
}

/// Read `load_package_state.json`.
pub fn read_package_state(package_dir: &Path) -> Result<PackageState> {
    let p = package_dir.join(PACKAGE_STATE_FILE);
    let s = fs::read_to_string(&p).at(&p)?;
    Ok(serde_json::from_str(&s)?)
}

/// Write `load_package_state.json` (write + rename).
pub fn write_package_state(package_dir: &Path, state: &PackageState) -> Result<()> {
    write_atomic(&package_dir.join(PACKAGE_STATE_FILE), serde_json::to_string_pretty(state)?.as_bytes())
}

/// Write a file through a temporary sibling and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    {
        use std::io::Write;
        let mut f = fs::File::create(&tmp).at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
    }
    fs::rename(&tmp, path).at(path)?;
    Ok(())
}
