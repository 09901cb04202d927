//! Fault injection for crash tests: `DLT_FAULT=<point>[:<action>]` makes the process stop at a
//! named point. Actions: `abort` (default; dies at once, like `kill -9`, no cleanup runs) or
//! `sleep=<ms>` (so a test can send a real SIGKILL while the process sits there).
//!
//! Points: `extract.item.<n>` (while extracting the n-th item), `extract.items_written`, `normalize.before_publish`, `load.in_transaction`
//! (all jobs inserted, nothing committed), `load.after_commit` (committed in the destination,
//! package not yet moved locally), `load.after_job.<n>` (the n-th job of an attempt completed and
//! recorded, the next not started: a destination without transactions resumes from here).

fn spec() -> Option<&'static (String, String)> {
    static SPEC: std::sync::OnceLock<Option<(String, String)>> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| {
        let spec = std::env::var("DLT_FAULT").ok()?;
        let (p, a) = spec.split_once(':').unwrap_or((spec.as_str(), "abort"));
        Some((p.to_string(), a.to_string()))
    })
    .as_ref()
}

/// Stop at the `n`-th occurrence of a counted point (`DLT_FAULT=extract.item.<n>`).
pub fn hit_nth(point: &str, n: u64) {
    if let Some((p, _)) = spec()
        && p.len() > point.len()
        && p.starts_with(point)
        && p[point.len() + 1..].parse() == Ok(n)
    {
        hit(p);
    }
}

/// [`hit_nth`] for the `count` occurrences `first..first + count` at once (a block of items).
pub fn hit_nth_in(point: &str, first: u64, count: u64) {
    if let Some((p, _)) = spec()
        && p.len() > point.len()
        && p.starts_with(point)
        && let Ok(n) = p[point.len() + 1..].parse::<u64>()
        && (first..first + count).contains(&n)
    {
        hit(p);
    }
}

/// Stop here if `DLT_FAULT` names this point.
pub fn hit(point: &str) {
    let Some((p, action)) = spec() else { return };
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
