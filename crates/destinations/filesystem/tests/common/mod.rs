//! Helpers shared by the filesystem destination's integration tests: where `cargo xtask test`
//! installs the servers and readers, free ports, and the moto S3 server.
#![allow(dead_code)] // each test binary uses its own part

use std::path::PathBuf;

/// An installed tool: `$<env>` if set, else `<cache>/<rel>` (`$DLT_RS_CACHE`, else
/// `~/.cache/dlt-rs`), as `cargo xtask test` installs it.
pub fn installed(env: &str, rel: &str) -> Option<PathBuf> {
    dlt_testkit::services::installed(env, rel)
}

/// A service a test needs is missing: the test is skipped, except under `CI=true`, where it fails.
pub fn missing(what: &str, env: &str) {
    dlt_testkit::services::skip_or_fail(what, format!("not found ({env}; `cargo xtask test` installs it)"));
}

/// Python with deltalake (`DLT_TEST_DELTALAKE_PYTHON`, else `<cache>/delta`).
pub fn deltalake_python() -> Option<PathBuf> {
    let p = installed("DLT_TEST_DELTALAKE_PYTHON", "delta/bin/python").filter(|p| p.exists());
    if p.is_none() {
        missing("Python deltalake", "DLT_TEST_DELTALAKE_PYTHON");
    }
    p
}

// moto and plain S3 requests live in the testkit (the Snowflake tests use them too); each test
// binary uses its own part
#[allow(unused_imports)]
pub use dlt_testkit::services::{Moto, create_s3_bucket, dechunk, free_port, s3_http, start_moto};
