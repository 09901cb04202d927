//! moto, the S3 server the filesystem destination is tested against.
//!
//! `cargo xtask test` installs `moto[server]==5.2.5` from PyPI into a virtualenv at
//! `$DLT_RS_CACHE/moto` (default `~/.cache/dlt-rs/moto`) when that version is missing, and
//! exports the path of its `moto_server` as `DLT_TEST_MOTO_SERVER`; the tests start one server
//! per test on a free port of 127.0.0.1. Without Python the S3 tests skip with a message, except
//! under `CI=true`, where that is an error (and the tests fail too).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
    let bin = dir.join("bin/moto_server");
    let python = dir.join("bin/python");
    if bin.exists() && installed_version(&python).as_deref() == Some(VERSION) {
        eprintln!("xtask: moto {VERSION} ready in {}", dir.display());
        return Ok(bin);
    }
    let ok = Command::new("python3").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !ok.is_ok_and(|s| s.success()) {
        bail!("`python3` is not available, so moto {VERSION} cannot be installed");
    }
    if !python.exists() {
        eprintln!("xtask: creating a Python virtualenv in {}", dir.display());
        crate::util::run(Command::new("python3").args(["-m", "venv"]).arg(dir), "install python3-venv")
            .context("python3 -m venv failed")?;
    }
    eprintln!("xtask: installing moto[server]=={VERSION} into {}", dir.display());
    crate::util::run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("moto[server]=={VERSION}")),
        "check that PyPI is reachable",
    )
    .context("pip install moto failed")?;
    match installed_version(&python) {
        Some(v) if v == VERSION && bin.exists() => Ok(bin),
        other => bail!("after pip install, {} holds moto {other:?}, not {VERSION}", dir.display()),
    }
}

fn installed_version(python: &Path) -> Option<String> {
    let out = Command::new(python)
        .args(["-c", "import importlib.metadata as m; print(m.version('moto'))"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_python_in_a_fresh_dir_is_no_version() {
        let dir = std::env::temp_dir().join(format!("xtask-moto-{}", std::process::id()));
        assert_eq!(installed_version(&dir.join("bin/python")), None);
    }
}
