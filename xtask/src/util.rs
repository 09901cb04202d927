//! Paths, child processes, temp dirs and small file helpers shared by the tasks.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

/// Everything a task needs to know about where things live.
pub struct Ctx {
    /// Workspace root (parent of `xtask/`).
    pub repo: PathBuf,
    /// `$CARGO_TARGET_DIR`, or `<repo>/target`.
    pub target_dir: PathBuf,
    /// `$DLT_RS_CACHE`, or `$HOME/.cache/dlt-rs`.
    pub cache_dir: PathBuf,
    /// Extra environment given to every child process (test service URLs, …).
    pub extra_env: Vec<(String, OsString)>,
}

impl Ctx {
    pub fn new() -> Result<Self> {
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .filter(|p| p.join("Cargo.toml").is_file())
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let repo = manifest_dir.parent().context("xtask's manifest directory has no parent")?.to_path_buf();
        let target_dir = match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
            Some(dir) => std::path::absolute(PathBuf::from(dir)).context("cannot make CARGO_TARGET_DIR absolute")?,
            None => repo.join("target"),
        };
        let cache_dir = match std::env::var_os("DLT_RS_CACHE").filter(|v| !v.is_empty()) {
            Some(dir) => std::path::absolute(PathBuf::from(dir)).context("cannot make DLT_RS_CACHE absolute")?,
            None => {
                let home = std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .context("neither DLT_RS_CACHE nor HOME is set: cannot locate the cache dir")?;
                PathBuf::from(home).join(".cache").join("dlt-rs")
            }
        };
        Ok(Ctx { repo, target_dir, cache_dir, extra_env: Vec::new() })
    }

    /// `<repo>/.duckdb`: where the prebuilt libduckdb.so lives (DUCKDB_LIB_DIR).
    pub fn duckdb_dir(&self) -> PathBuf {
        self.repo.join(".duckdb")
    }

    /// `LD_LIBRARY_PATH` with `<repo>/.duckdb` in front of the inherited value.
    pub fn ld_library_path(&self) -> OsString {
        let mut value = self.duckdb_dir().into_os_string();
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|v| !v.is_empty()) {
            value.push(":");
            value.push(old);
        }
        value
    }

    /// A child process with the common environment, run from the repo root.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.repo).env("LD_LIBRARY_PATH", self.ld_library_path());
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// `cargo …` (the same cargo that runs xtask) with the common environment.
    pub fn cargo(&self) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        self.command(cargo)
    }

    /// Path of a binary built by `cargo build --release`.
    pub fn release_bin(&self, name: &str) -> PathBuf {
        self.target_dir.join("release").join(name)
    }
}

/// Render a command for log lines: `program arg arg …`.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Spawn error with a helpful message when the program is not installed.
pub fn spawn_error(err: io::Error, cmd: &Command, hint: &str) -> anyhow::Error {
    let program = cmd.get_program().to_string_lossy().into_owned();
    if err.kind() == io::ErrorKind::NotFound {
        anyhow::anyhow!("`{program}` was not found on PATH. {hint}")
    } else {
        anyhow::Error::new(err).context(format!("failed to start `{}`", describe(cmd)))
    }
}

/// Run a command with inherited stdio and return its exit status.
pub fn status(cmd: &mut Command, hint: &str) -> Result<ExitStatus> {
    eprintln!("xtask: $ {}", describe(cmd));
    cmd.status().map_err(|e| spawn_error(e, cmd, hint))
}

/// Run a command with inherited stdio; fail unless it exits 0.
pub fn run(cmd: &mut Command, hint: &str) -> Result<()> {
    let st = status(cmd, hint)?;
    if !st.success() {
        bail!("`{}` failed ({})", describe(cmd), describe_status(st));
    }
    Ok(())
}

pub fn describe_status(st: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".to_string(),
    }
}

/// The exit code to hand back to our own caller for a child's status
/// (128 + signal for a killed child, like a shell).
pub fn exit_code(st: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        _ => 1,
    }
}

/// Is this a CI run (`CI` set to anything but empty/`0`/`false`)?
pub fn is_ci() -> bool {
    match std::env::var("CI") {
        Ok(v) => !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"),
        Err(_) => false,
    }
}

/// A freshly created directory under the system temp dir, removed on drop
/// unless [`TempDir::keep`] was called.
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    pub fn new(prefix: &str) -> Result<Self> {
        let base = std::env::temp_dir();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        for attempt in 0..100u32 {
            let path = base.join(format!("{prefix}-{}-{nanos:x}-{attempt}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path, keep: false }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create temp dir {}", path.display()));
                }
            }
        }
        bail!("cannot create a unique temp dir under {}", base.display())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leave the directory in place when dropped; returns its path.
    pub fn keep(&mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Copy `src` to `dst` atomically (temp file in the same dir + rename), so a
/// process that has the old file mapped keeps working and nobody ever sees a
/// half-written file. The copy gets `src`'s modification time, which
/// [`same_file`] uses as a cheap up-to-date check.
pub fn install_file(src: &Path, dst: &Path) -> Result<()> {
    let dir = dst.parent().with_context(|| format!("{} has no parent dir", dst.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file_name = dst.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| -> Result<()> {
        fs::copy(src, &tmp).with_context(|| format!("cannot copy {} to {}", src.display(), tmp.display()))?;
        let mtime =
            fs::metadata(src).and_then(|m| m.modified()).with_context(|| format!("cannot stat {}", src.display()))?;
        let f = fs::File::options().write(true).open(&tmp).with_context(|| format!("cannot open {}", tmp.display()))?;
        f.set_modified(mtime).with_context(|| format!("cannot set mtime of {}", tmp.display()))?;
        drop(f);
        fs::rename(&tmp, dst).with_context(|| format!("cannot move {} to {}", tmp.display(), dst.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Same size and modification time (what [`install_file`] preserves).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(ma), Ok(mb)) => ma.len() == mb.len() && matches!((ma.modified(), mb.modified()), (Ok(x), Ok(y)) if x == y),
        _ => false,
    }
}

/// Today's date in UTC as `YYYY-MM-DD` (no chrono: days → civil date).
pub fn utc_date() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn temp_dir_is_removed_unless_kept() {
        let t = TempDir::new("xtask-selftest").unwrap();
        let p = t.path().to_path_buf();
        assert!(p.is_dir());
        drop(t);
        assert!(!p.exists());
        let mut t = TempDir::new("xtask-selftest").unwrap();
        let p = t.keep();
        drop(t);
        assert!(p.is_dir());
        fs::remove_dir_all(p).unwrap();
    }

    #[test]
    fn install_and_compare() {
        let t = TempDir::new("xtask-selftest").unwrap();
        let a = t.path().join("a");
        let b = t.path().join("sub").join("b");
        fs::write(&a, b"hello").unwrap();
        assert!(!same_file(&a, &b));
        install_file(&a, &b).unwrap();
        assert!(same_file(&a, &b));
        assert_eq!(fs::read(&b).unwrap(), b"hello");
    }
}
