//! bqemulator, the BigQuery emulator (REST and gRPC on DuckDB) the BigQuery destination is tested
//! against.
//!
//! `cargo xtask test` installs `bqemulator==1.4.0` (with `numpy`, `duckdb==1.5.5` and
//! `duckdb-extension-spatial==1.5.5`) into a virtualenv at `$DLT_RS_CACHE/bqemulator` (default
//! `~/.cache/dlt-rs/bqemulator`) when that version is missing. Its start always runs DuckDB's
//! `INSTALL spatial`, which downloads the extension and fails offline; so the extension from the
//! `duckdb-extension-spatial` wheel is copied into the DuckDB extension folder of a private home
//! (`$DLT_RS_CACHE/bqemulator-home/.duckdb/extensions/v1.5.5/linux_amd64/`), and the server runs
//! with `HOME` set to it. Exported to the tests: `DLT_TEST_BQEMULATOR` (the `bqemulator` script)
//! and `DLT_TEST_BQEMULATOR_HOME`; `dlt_testkit::services::bqemulator` starts one server per
//! test on free ports. Without Python the BigQuery tests skip with a message, except under
//! `CI=true`, where that is an error.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::util::{Ctx, is_ci};

/// The pinned version.
pub const VERSION: &str = "1.4.0";
/// DuckDB's version in that environment (the extension folder is named after it).
const DUCKDB: &str = "1.5.5";
/// The env vars the tests read.
pub const ENV: &str = "DLT_TEST_BQEMULATOR";
/// The home folder the server runs with.
pub const HOME_ENV: &str = "DLT_TEST_BQEMULATOR_HOME";

/// Make bqemulator available and export its paths to child processes.
pub fn ensure(ctx: &mut Ctx) -> Result<()> {
    if let Some(p) = std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if p.exists() {
            eprintln!("xtask: bqemulator from {ENV} ({})", p.display());
            return Ok(());
        }
        bail!("{ENV} points to {}, which does not exist", p.display());
    }
    let dir = ctx.cache_dir.join("bqemulator");
    let home = ctx.cache_dir.join("bqemulator-home");
    let installed = crate::venv::ensure(
        &dir,
        &[("bqemulator", VERSION), ("duckdb", DUCKDB), ("duckdb-extension-spatial", DUCKDB)],
        &["numpy"],
    )
    .and_then(|python| offline_spatial(&python, &home));
    match installed {
        Ok(()) => {
            ctx.extra_env.push((ENV.to_string(), dir.join("bin/bqemulator").into_os_string()));
            ctx.extra_env.push((HOME_ENV.to_string(), home.into_os_string()));
            Ok(())
        }
        Err(e) if !is_ci() => {
            eprintln!("xtask: warning: {e:#}; the BigQuery destination's tests will be skipped");
            Ok(())
        }
        Err(e) => Err(e.context("bqemulator is needed by the BigQuery tests (CI is set, so this is an error)")),
    }
}

/// Copy the spatial extension shipped in the wheel to where DuckDB looks for it under `home`.
fn offline_spatial(python: &Path, home: &Path) -> Result<()> {
    let out = std::process::Command::new(python)
        .args(["-c", "import duckdb_extension_spatial, os; print(os.path.dirname(duckdb_extension_spatial.__file__))"])
        .output()
        .context("locating the duckdb-extension-spatial package")?;
    if !out.status.success() {
        bail!("cannot import duckdb_extension_spatial: {}", String::from_utf8_lossy(&out.stderr));
    }
    let pkg = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let from = pkg.join(format!("extensions/v{DUCKDB}/spatial.duckdb_extension"));
    let to_dir = home.join(format!(".duckdb/extensions/v{DUCKDB}/linux_amd64"));
    std::fs::create_dir_all(&to_dir).with_context(|| format!("creating {}", to_dir.display()))?;
    let to = to_dir.join("spatial.duckdb_extension");
    if !to.exists() {
        std::fs::copy(&from, &to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}
