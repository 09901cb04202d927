//! fakesnow, the Snowflake-protocol server the Snowflake destination is tested against.
//!
//! `cargo xtask test` installs `fakesnow[server]==0.12.1` (with `snowflake-connector-python<5`,
//! the independent client the tests read back with) into a virtualenv at
//! `$DLT_RS_CACHE/fakesnow` (default `~/.cache/dlt-rs/fakesnow`) when that version is missing,
//! and exports the path of its `fakesnow` script as `DLT_TEST_FAKESNOW`; the tests start one
//! server per test on a free port of 127.0.0.1 (`dlt_testkit::services::fakesnow`). Without
//! Python the Snowflake tests skip with a message, except under `CI=true`, where that is an
//! error (and the tests fail too).

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::util::{Ctx, is_ci};

/// The pinned version.
pub const VERSION: &str = "0.12.1";
/// The env var the tests read.
pub const ENV: &str = "DLT_TEST_FAKESNOW";

/// Make fakesnow available and export its path to child processes.
pub fn ensure(ctx: &mut Ctx) -> Result<()> {
    if let Some(p) = std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if p.exists() {
            eprintln!("xtask: fakesnow from {ENV} ({})", p.display());
            return Ok(());
        }
        bail!("{ENV} points to {}, which does not exist", p.display());
    }
    let dir = ctx.cache_dir.join("fakesnow");
    match crate::venv::ensure(&dir, &[("fakesnow[server]", VERSION)], &["snowflake-connector-python<5"]) {
        Ok(_) => {
            ctx.extra_env.push((ENV.to_string(), dir.join("bin/fakesnow").into_os_string()));
            Ok(())
        }
        Err(e) if !is_ci() => {
            eprintln!("xtask: warning: {e:#}; the Snowflake destination's tests will be skipped");
            Ok(())
        }
        Err(e) => Err(e.context("fakesnow is needed by the Snowflake tests (CI is set, so this is an error)")),
    }
}
