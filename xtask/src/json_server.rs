//! json-server, the real third-party HTTP API the rest_api source is tested against.
//!
//! `cargo xtask test` installs `json-server@0.17.4` from the npm registry into
//! `$DLT_RS_CACHE/node` (default `~/.cache/dlt-rs/node`) when it is missing and exports its path
//! as `DLT_TEST_JSON_SERVER`; the tests start one server per test on a free port. Without npm the
//! tests skip with a message, except under `CI=true`, where that is an error.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::util::{Ctx, is_ci};

/// The pinned version.
pub const VERSION: &str = "0.17.4";

/// The env var the tests read.
pub const ENV: &str = "DLT_TEST_JSON_SERVER";

/// Make json-server available and export its path to child processes.
pub fn ensure(ctx: &mut Ctx) -> Result<()> {
    if let Some(p) = std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if p.exists() {
            eprintln!("xtask: json-server from {ENV} ({})", p.display());
            return Ok(());
        }
        bail!("{ENV} points to {}, which does not exist", p.display());
    }
    match install(&ctx.cache_dir.join("node")) {
        Ok(bin) => {
            ctx.extra_env.push((ENV.to_string(), bin.into_os_string()));
            Ok(())
        }
        Err(e) if !is_ci() => {
            eprintln!("xtask: warning: {e:#}; the rest_api tests that need json-server will be skipped");
            Ok(())
        }
        Err(e) => Err(e.context("json-server is needed by the rest_api tests (CI is set, so this is an error)")),
    }
}

/// Install `json-server@VERSION` under `dir` unless that version is there; returns the binary.
pub fn install(dir: &Path) -> Result<PathBuf> {
    let bin = dir.join("node_modules/.bin/json-server");
    if installed_version(dir).as_deref() == Some(VERSION) && bin.exists() {
        eprintln!("xtask: json-server {VERSION} ready in {}", dir.display());
        return Ok(bin);
    }
    for tool in ["node", "npm"] {
        let ok = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("`{tool}` is not available, so json-server {VERSION} cannot be installed");
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    eprintln!("xtask: installing json-server {VERSION} into {}", dir.display());
    crate::util::run(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
            .arg(dir)
            .arg(format!("json-server@{VERSION}")),
        "install Node.js and npm",
    )
    .context("npm install json-server failed")?;
    match installed_version(dir) {
        Some(v) if v == VERSION && bin.exists() => Ok(bin),
        other => bail!("after npm install, {} holds json-server {other:?}, not {VERSION}", dir.display()),
    }
}

fn installed_version(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("node_modules/json-server/package.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("version")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_installed_pinned_version_is_reused() {
        let dir = std::env::temp_dir().join(format!("xtask-json-server-{}", std::process::id()));
        let pkg = dir.join("node_modules/json-server");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::create_dir_all(dir.join("node_modules/.bin")).unwrap();
        std::fs::write(pkg.join("package.json"), format!(r#"{{"name": "json-server", "version": "{VERSION}"}}"#))
            .unwrap();
        std::fs::write(dir.join("node_modules/.bin/json-server"), "").unwrap();
        assert_eq!(installed_version(&dir).as_deref(), Some(VERSION));
        // no npm run: the binary is returned as it is
        assert_eq!(install(&dir).unwrap(), dir.join("node_modules/.bin/json-server"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Needs the npm registry: `cargo test -p xtask -- --ignored`.
    #[test]
    #[ignore]
    fn installs_from_npm() {
        let dir = std::env::temp_dir().join(format!("xtask-json-server-npm-{}", std::process::id()));
        let bin = install(&dir).unwrap();
        assert!(bin.exists());
        assert_eq!(installed_version(&dir).as_deref(), Some(VERSION));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
