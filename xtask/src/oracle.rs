//! Python dlt 1.31, the other side of the interop tests (`crates/cli/tests/interop.rs`) and the
//! reference of `cargo xtask bench --with-dlt`.
//!
//! `cargo xtask test` installs `dlt[duckdb,postgres,parquet]==1.31.0` from PyPI into the
//! virtualenv `$DLT_RS_CACHE/oracle` (default `~/.cache/dlt-rs/oracle`) when it is not there yet
//! (one quick `importlib.metadata` probe when it is), and exports that virtualenv's `python` as
//! `DLT_TEST_DLT_PYTHON`. Without Python or PyPI the interop tests skip with a message, except
//! under `CI=true`, where that is an error (and the tests fail too).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::util::{Ctx, is_ci};

/// The pinned dlt version.
pub const VERSION: &str = "1.31.0";

/// The env var the interop tests read: a `python` that imports dlt 1.31.
pub const ENV: &str = "DLT_TEST_DLT_PYTHON";

/// The packages the extras `duckdb`, `postgres` and `parquet` bring; all must be importable.
const EXTRAS: [&str; 3] = ["duckdb", "psycopg2-binary", "pyarrow"];

/// Make Python dlt available and export its interpreter to child processes.
pub fn ensure(ctx: &mut Ctx) -> Result<()> {
    if let Some(p) = std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if p.exists() {
            eprintln!("xtask: Python dlt from {ENV} ({})", p.display());
            return Ok(());
        }
        bail!("{ENV} points to {}, which does not exist", p.display());
    }
    match install(&ctx.cache_dir.join("oracle")) {
        Ok(python) => {
            ctx.extra_env.push((ENV.to_string(), python.into_os_string()));
            Ok(())
        }
        Err(e) if !is_ci() => {
            eprintln!("xtask: warning: {e:#}; the interop tests with Python dlt will be skipped");
            Ok(())
        }
        Err(e) => Err(e.context("Python dlt is needed by the interop tests (CI is set, so this is an error)")),
    }
}

/// Install `dlt[duckdb,postgres,parquet]==VERSION` into the virtualenv `dir` unless it is there;
/// returns its `python`.
pub fn install(dir: &Path) -> Result<PathBuf> {
    let python = dir.join("bin/python");
    if let Ok(()) = check(&python) {
        eprintln!("xtask: Python dlt {VERSION} ready in {}", dir.display());
        return Ok(python);
    }
    let ok = Command::new("python3").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !ok.is_ok_and(|s| s.success()) {
        bail!("`python3` is not available, so Python dlt {VERSION} cannot be installed");
    }
    if !python.exists() {
        eprintln!("xtask: creating a Python virtualenv in {}", dir.display());
        crate::util::run(Command::new("python3").args(["-m", "venv"]).arg(dir), "install python3-venv")
            .context("python3 -m venv failed")?;
    }
    eprintln!("xtask: installing dlt[duckdb,postgres,parquet]=={VERSION} into {}", dir.display());
    crate::util::run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("dlt[duckdb,postgres,parquet]=={VERSION}")),
        "check that PyPI is reachable",
    )
    .context("pip install dlt failed")?;
    check(&python).with_context(|| format!("after pip install, {} is not usable", dir.display()))?;
    Ok(python)
}

/// One probe: dlt is `VERSION` and the extras are installed.
fn check(python: &Path) -> Result<()> {
    if !python.exists() {
        bail!("{} does not exist", python.display());
    }
    let script = format!(
        "import importlib.metadata as m\nfor p in {:?}: print(p, m.version(p))",
        [&["dlt"][..], &EXTRAS[..]].concat()
    );
    let out = Command::new(python)
        .args(["-c", &script])
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "{} lacks a package: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let dlt = text.lines().find_map(|l| l.strip_prefix("dlt ")).unwrap_or("");
    if dlt != VERSION {
        bail!("{} has dlt {dlt}, not {VERSION}", python.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interpreter_is_not_ready() {
        let dir = std::env::temp_dir().join(format!("xtask-oracle-{}", std::process::id()));
        let err = check(&dir.join("bin/python")).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
