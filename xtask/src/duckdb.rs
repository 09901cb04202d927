//! `cargo xtask setup`: provide DuckDB's own prebuilt `libduckdb.so` so that
//! nobody compiles DuckDB's C++ (≈ 40 CPU-minutes).
//!
//! Source of the library: the npm package `@duckdb/node-bindings-linux-x64`,
//! whose version is locked to the `duckdb` crate's (`=1.10506.1` ↔ DuckDB
//! 1.5.6). Change both together.

use std::ffi::{CStr, CString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::util::{Ctx, TempDir, describe_status, install_file, run, same_file};

/// DuckDB version the `duckdb` crate is generated for.
pub const DUCKDB_VERSION: &str = "1.5.6";
/// npm package carrying exactly that library build.
pub const NPM_PACKAGE: &str = "@duckdb/node-bindings-linux-x64@1.5.6-r.1";
/// File name `npm pack` gives that package (also looked for in `<cache>/npm/`).
const NPM_TARBALL: &str = "duckdb-node-bindings-linux-x64-1.5.6-r.1.tgz";
const LIB_NAME: &str = "libduckdb.so";

pub fn setup(ctx: &Ctx) -> Result<()> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        bail!(
            "the prebuilt libduckdb.so is only available for linux-x64 here; on this platform \
             build with `--features duckdb-bundled` (compiles DuckDB from source) or put a \
             DuckDB {DUCKDB_VERSION} library in {} yourself",
            ctx.duckdb_dir().display()
        );
    }
    let lib = ctx.duckdb_dir().join(LIB_NAME);
    let usable = match library_version(&lib) {
        Ok(v) if v == expected_version() => true,
        Ok(v) => {
            eprintln!("xtask: {} is DuckDB {v}, expected {}: replacing it", lib.display(), expected_version());
            false
        }
        Err(e) if lib.exists() => {
            eprintln!("xtask: {} is not usable ({e:#}): replacing it", lib.display());
            false
        }
        Err(_) => false,
    };
    if !usable {
        let cached = cached_library(ctx)?;
        install_file(&cached, &lib)?;
        eprintln!("xtask: installed {} from {}", lib.display(), cached.display());
    }
    // `cargo run` / `cargo test` put target/<profile>/deps on the library
    // path, so a copy there lets them find the library without any env.
    for profile in ["debug", "release"] {
        let dst = ctx.target_dir.join(profile).join("deps").join(LIB_NAME);
        if !same_file(&lib, &dst) {
            install_file(&lib, &dst)?;
            eprintln!("xtask: copied {LIB_NAME} to {}", dst.parent().unwrap().display());
        }
    }
    Ok(())
}

fn expected_version() -> String {
    format!("v{DUCKDB_VERSION}")
}

/// The DuckDB library in the cache dir, downloading it with npm if needed.
fn cached_library(ctx: &Ctx) -> Result<PathBuf> {
    let cached = ctx.cache_dir.join(format!("duckdb-{DUCKDB_VERSION}")).join(LIB_NAME);
    match library_version(&cached) {
        Ok(v) if v == expected_version() => return Ok(cached),
        Ok(v) => eprintln!("xtask: cached {} is DuckDB {v}: fetching it again", cached.display()),
        Err(e) if cached.exists() => {
            eprintln!("xtask: cached {} is not usable ({e:#}): fetching it again", cached.display())
        }
        Err(_) => {}
    }

    let tmp = TempDir::new("dlt-rs-duckdb")?;
    let extracted = match extract_from_cached_tarball(ctx, tmp.path()) {
        Some(path) => path,
        None => {
            let tarball = npm_pack(tmp.path())?;
            extract(&tarball, tmp.path())?
        }
    };
    let version =
        library_version(&extracted).with_context(|| format!("the library from {NPM_PACKAGE} cannot be loaded"))?;
    if version != expected_version() {
        bail!(
            "{NPM_PACKAGE} contains DuckDB {version}, expected {}: the npm package and the \
             duckdb crate version must be changed together (xtask/src/duckdb.rs)",
            expected_version()
        );
    }
    install_file(&extracted, &cached)?;
    eprintln!("xtask: cached DuckDB {version} in {}", cached.display());
    Ok(cached)
}

/// A previously downloaded tarball in `<cache>/npm/` works offline.
fn extract_from_cached_tarball(ctx: &Ctx, into: &Path) -> Option<PathBuf> {
    let tarball = ctx.cache_dir.join("npm").join(NPM_TARBALL);
    if !tarball.is_file() {
        return None;
    }
    match extract(&tarball, into) {
        Ok(path) => Some(path),
        Err(e) => {
            eprintln!("xtask: cannot use {} ({e:#}); downloading with npm instead", tarball.display());
            None
        }
    }
}

/// `npm pack <package>` in `dir`; returns the tarball's path.
fn npm_pack(dir: &Path) -> Result<PathBuf> {
    eprintln!("xtask: downloading DuckDB {DUCKDB_VERSION} ({NPM_PACKAGE}, ≈ 24 MB) with npm");
    run(
        Command::new("npm").arg("pack").arg(NPM_PACKAGE).current_dir(dir),
        "npm is needed once to download the prebuilt DuckDB library: install Node.js/npm \
         (e.g. `apt-get install npm`), or build with `--features duckdb-bundled`.",
    )
    .context("downloading the prebuilt DuckDB library with npm failed")?;
    let tarball = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .with_context(|| format!("`npm pack` left no .tgz file in {}", dir.display()))?;
    Ok(tarball)
}

/// Extract `package/libduckdb.so` from the npm tarball into `into`.
fn extract(tarball: &Path, into: &Path) -> Result<PathBuf> {
    let member = format!("package/{LIB_NAME}");
    run(
        Command::new("tar").arg("-xzf").arg(tarball).arg("-C").arg(into).arg(&member),
        "tar (with gzip) is needed to unpack the DuckDB npm package.",
    )
    .with_context(|| format!("cannot extract {member} from {}", tarball.display()))?;
    let path = into.join(&member);
    if !path.is_file() {
        bail!("{} has no {member}", tarball.display());
    }
    Ok(path)
}

/// DuckDB's `duckdb_library_version()` (e.g. "v1.5.6") of the library at
/// `path`. Loading it proves the file is complete, loadable and the right
/// release. The load happens in a child process (`xtask __duckdb-version`),
/// because mapping a truncated library can kill the loading process (SIGBUS).
pub fn library_version(path: &Path) -> Result<String> {
    if !path.is_file() {
        bail!("{} does not exist", path.display());
    }
    let exe = std::env::current_exe().context("cannot locate the xtask binary")?;
    let out = Command::new(exe)
        .arg(VERSION_PROBE_TASK)
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("cannot run the library probe")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        bail!("loading it failed ({}){}{err}", describe_status(out.status), if err.is_empty() { "" } else { ": " });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Hidden task run by [`library_version`] in a child process.
pub const VERSION_PROBE_TASK: &str = "__duckdb-version";

/// Body of [`VERSION_PROBE_TASK`]: dlopen the library in this process.
pub fn probe_library_version(path: &Path) -> Result<String> {
    let cpath = CString::new(path.as_os_str().as_bytes()).context("path contains a NUL byte")?;
    // SAFETY: plain dlopen/dlsym; the library stays loaded (never dlclose'd),
    // and `duckdb_library_version` takes no arguments and returns a static
    // NUL-terminated string. A broken file can crash this process, which is
    // why it runs in a throw-away child.
    unsafe {
        let handle = libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            bail!("dlopen failed: {}", dlerror());
        }
        let sym = libc::dlsym(handle, c"duckdb_library_version".as_ptr());
        if sym.is_null() {
            bail!("no duckdb_library_version symbol: {}", dlerror());
        }
        let f: extern "C" fn() -> *const libc::c_char = std::mem::transmute(sym);
        let v = f();
        if v.is_null() {
            bail!("duckdb_library_version() returned NULL");
        }
        Ok(CStr::from_ptr(v).to_string_lossy().into_owned())
    }
}

fn dlerror() -> String {
    // SAFETY: dlerror returns NULL or a thread-local NUL-terminated string.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() { "unknown error".to_string() } else { CStr::from_ptr(e).to_string_lossy().into_owned() }
    }
}
