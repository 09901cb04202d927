//! Python tools the tests run, each in a virtualenv of its own under the cache: created with
//! `python3 -m venv` and filled by pip when a pinned version is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// A virtualenv at `dir` holding `pinned` (`(package, version)`, installed as
/// `package==version`, extras allowed in the package: `fakesnow[server]`) and `also` (further
/// pip requirements, not checked); returns its `python`. Nothing is installed when every pinned
/// version is there already.
pub fn ensure(dir: &Path, pinned: &[(&str, &str)], also: &[&str]) -> Result<PathBuf> {
    let python = dir.join("bin/python");
    let ready = |python: &Path| pinned.iter().all(|(p, v)| package_version(python, p).as_deref() == Some(*v));
    let what: Vec<String> = pinned.iter().map(|(p, v)| format!("{p}=={v}")).collect();
    if ready(&python) {
        eprintln!("xtask: {} ready in {}", what.join(" "), dir.display());
        return Ok(python);
    }
    let ok = Command::new("python3").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !ok.is_ok_and(|s| s.success()) {
        bail!("`python3` is not available, so {} cannot be installed", what.join(" "));
    }
    if !python.exists() {
        eprintln!("xtask: creating a Python virtualenv in {}", dir.display());
        crate::util::run(Command::new("python3").args(["-m", "venv"]).arg(dir), "install python3-venv")
            .context("python3 -m venv failed")?;
    }
    eprintln!("xtask: installing {} into {}", what.join(" "), dir.display());
    crate::util::run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(&what)
            .args(also),
        "check that PyPI is reachable",
    )
    .with_context(|| format!("pip install {} failed", what.join(" ")))?;
    if !ready(&python) {
        let found: Vec<String> = pinned.iter().map(|(p, _)| format!("{p} {:?}", package_version(&python, p))).collect();
        bail!("after pip install, {} holds {}, not {}", dir.display(), found.join(", "), what.join(" "));
    }
    Ok(python)
}

/// The installed version of a Python package (extras ignored) in the environment of `python`.
pub fn package_version(python: &Path, package: &str) -> Option<String> {
    let name = package.split('[').next().unwrap_or(package);
    let out = Command::new(python)
        .args(["-c", &format!("import importlib.metadata as m; print(m.version('{name}'))")])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
