//! moto, the S3 server the filesystem destination is tested against, and Python deltalake, the
//! independent reader of the Delta tables it writes.
//!
//! `cargo xtask test` installs `moto[server]==5.2.5` from PyPI into a virtualenv at
//! `$DLT_RS_CACHE/moto` (default `~/.cache/dlt-rs/moto`) when that version is missing, and
//! exports the path of its `moto_server` as `DLT_TEST_MOTO_SERVER`; the tests start one server
//! per test on a free port of 127.0.0.1. Without Python the S3 tests skip with a message, except
//! under `CI=true`, where that is an error (and the tests fail too).
//!
//! Likewise `deltalake==1.6.6` with `pyarrow==26.0.1` into `$DLT_RS_CACHE/delta`, exported as
//! `DLT_TEST_DELTALAKE_PYTHON` (that virtualenv's `python`) for the Delta tests of the
//! filesystem destination.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{Ctx, is_ci};

/// The pinned version.
pub const VERSION: &str = "5.2.5";

/// The env var the tests read.
pub const ENV: &str = "DLT_TEST_MOTO_SERVER";

/// Make moto_server available and export its path to child processes.
pub fn ensure(ctx: &mut Ctx) -> Result<()> {
    if let Some(p) = std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if p.exists() {
            eprintln!("xtask: moto_server from {ENV} ({})", p.display());
            return Ok(());
        }
        bail!("{ENV} points to {}, which does not exist", p.display());
    }
    match install(&ctx.cache_dir.join("moto")) {
        Ok(bin) => {
            ctx.extra_env.push((ENV.to_string(), bin.into_os_string()));
            Ok(())
        }
        Err(e) if !is_ci() => {
            eprintln!("xtask: warning: {e:#}; the filesystem destination's S3 tests will be skipped");
            Ok(())
        }
        Err(e) => Err(e.context("moto is needed by the S3 tests (CI is set, so this is an error)")),
    }
}

/// Install `moto[server]==VERSION` into the virtualenv `dir` unless it is there; returns
/// `moto_server`.
pub fn install(dir: &Path) -> Result<PathBuf> {
    crate::venv::ensure(dir, &[("moto[server]", VERSION)], &[])?;
    let bin = dir.join("bin/moto_server");
    if !bin.exists() {
        bail!("after pip install, {} has no moto_server", dir.display());
    }
    Ok(bin)
}

/// The pinned Python deltalake (delta-rs' Python package) and the pyarrow it reads into.
pub const DELTALAKE_VERSION: &str = "1.6.6";
/// pyarrow for `DeltaTable.to_pyarrow_table()`.
pub const PYARROW_VERSION: &str = "26.0.1";
/// The env var the Delta tests read: the virtualenv's `python`.
pub const DELTALAKE_ENV: &str = "DLT_TEST_DELTALAKE_PYTHON";

/// Make Python deltalake available and export the virtualenv's python to child processes.
pub fn ensure_deltalake(ctx: &mut Ctx) -> Result<()> {
    if let Some(p) = std::env::var_os(DELTALAKE_ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if p.exists() {
            eprintln!("xtask: Python deltalake from {DELTALAKE_ENV} ({})", p.display());
            return Ok(());
        }
        bail!("{DELTALAKE_ENV} points to {}, which does not exist", p.display());
    }
    match install_deltalake(&ctx.cache_dir.join("delta")) {
        Ok(python) => {
            ctx.extra_env.push((DELTALAKE_ENV.to_string(), python.into_os_string()));
            Ok(())
        }
        Err(e) if !is_ci() => {
            eprintln!("xtask: warning: {e:#}; the filesystem destination's Delta tests will be skipped");
            Ok(())
        }
        Err(e) => Err(e.context("Python deltalake is needed by the Delta tests (CI is set, so this is an error)")),
    }
}

/// Install `deltalake==DELTALAKE_VERSION` and `pyarrow==PYARROW_VERSION` into the virtualenv
/// `dir` unless they are there; returns its `python`.
pub fn install_deltalake(dir: &Path) -> Result<PathBuf> {
    crate::venv::ensure(dir, &[("deltalake", DELTALAKE_VERSION), ("pyarrow", PYARROW_VERSION)], &[])
}

/// Azurite, the Azure Blob emulator the filesystem destination's Azure tests start.
pub const AZURITE_VERSION: &str = "3.37.0";
/// The env var the Azure tests read.
pub const AZURITE_ENV: &str = "DLT_TEST_AZURITE";

/// Make `azurite-blob` available (npm, into `$DLT_RS_CACHE/azurite`) and export its path.
pub fn ensure_azurite(ctx: &mut Ctx) -> Result<()> {
    if let Some(p) = std::env::var_os(AZURITE_ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if p.exists() {
            eprintln!("xtask: azurite-blob from {AZURITE_ENV} ({})", p.display());
            return Ok(());
        }
        bail!("{AZURITE_ENV} points to {}, which does not exist", p.display());
    }
    let dir = ctx.cache_dir.join("azurite");
    let bin = dir.join("node_modules/.bin/azurite-blob");
    let installed = std::fs::read_to_string(dir.join("node_modules/azurite/package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string));
    let result = if installed.as_deref() == Some(AZURITE_VERSION) && bin.exists() {
        eprintln!("xtask: azurite {AZURITE_VERSION} ready in {}", dir.display());
        Ok(())
    } else {
        eprintln!("xtask: installing azurite {AZURITE_VERSION} into {}", dir.display());
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        crate::util::run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
                .arg(&dir)
                .arg(format!("azurite@{AZURITE_VERSION}")),
            "install Node.js and npm",
        )
        .context("npm install azurite failed")
        .and_then(|()| if bin.exists() { Ok(()) } else { bail!("npm install left no {}", bin.display()) })
    };
    match result {
        Ok(()) => {
            ctx.extra_env.push((AZURITE_ENV.to_string(), bin.into_os_string()));
            Ok(())
        }
        Err(e) if !is_ci() => {
            eprintln!("xtask: warning: {e:#}; the filesystem destination's Azure tests will be skipped");
            Ok(())
        }
        Err(e) => Err(e.context("azurite is needed by the Azure tests (CI is set, so this is an error)")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn missing_python_in_a_fresh_dir_is_no_version() {
        let dir = std::env::temp_dir().join(format!("xtask-moto-{}", std::process::id()));
        assert_eq!(crate::venv::package_version(&dir.join("bin/python"), "moto"), None);
        assert_eq!(crate::venv::package_version(&dir.join("bin/python"), "deltalake"), None);
    }
}
