//! Fault injection for crash tests: `DLT_FAULT=<point>[:<action>]` makes the process stop at a
//! named point. Actions: `abort` (default; dies at once, like `kill -9`, no cleanup runs) or
//! `sleep=<ms>` (so a test can send a real SIGKILL while the process sits there).
//!
//! Points: `extract.items_written`, `normalize.before_publish`, `load.in_transaction`
//! (all jobs inserted, nothing committed), `load.after_commit` (committed in the destination,
//! package not yet moved locally).

/// Stop here if `DLT_FAULT` names this point.
pub fn hit(point: &str) {
    let Ok(spec) = std::env::var("DLT_FAULT") else { return };
    let (p, action) = spec.split_once(':').unwrap_or((spec.as_str(), "abort"));
    if p != point {
        return;
    }
    if let Some(ms) = action.strip_prefix("sleep=") {
        let ms: u64 = ms.parse().unwrap_or(10_000);
        eprintln!("DLT_FAULT: sleeping {ms} ms at {point}");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    } else {
        eprintln!("DLT_FAULT: aborting at {point}");
        std::process::abort();
    }
}
