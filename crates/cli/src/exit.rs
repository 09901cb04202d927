//! How a failed command ends: one error line (or a JSON object), the commands that recover a
//! stuck pipeline, and an exit code that tells scripts what kind of failure it was.

use dlt::{Error, Step};
use serde_json::json;

/// The run failed (a load that failed for good, an I/O error, anything not below).
pub const FAILED: i32 = 1;
/// Usage or configuration: fix the command line, the pipeline file, config or secrets.
pub const CONFIG: i32 = 2;
/// Transient: a server unreachable, a timeout, a lock; the same command may pass later.
pub const TRANSIENT: i32 = 3;
/// Data: bad input or a schema contract that rejected data.
pub const DATA: i32 = 4;

/// A failed command: the error and the commands that get the pipeline unstuck, if any.
pub struct Failure {
    pub error: anyhow::Error,
    pub recovery: Vec<String>,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure { error, recovery: vec![] }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure { error: e.into(), recovery: vec![] }
    }
}

/// The dlt error inside, if the failure came from the library.
fn dlt_error(e: &anyhow::Error) -> Option<&Error> {
    e.chain().find_map(|c| c.downcast_ref::<Error>())
}

/// The exit code of a failure.
pub fn code(e: &anyhow::Error) -> i32 {
    match dlt_error(e) {
        Some(err) if err.is_transient() => TRANSIENT,
        Some(err) => match err.root() {
            Error::Config(_) => CONFIG,
            Error::BadInput { .. } | Error::Schema(_) => DATA,
            _ => FAILED,
        },
        // the CLI's own checks: an unknown pipeline, mode or format
        None if e.downcast_ref::<std::io::Error>().is_some() => FAILED,
        None => CONFIG,
    }
}

/// What kind of failure a code stands for (in `--json` errors).
pub fn kind(code: i32) -> &'static str {
    match code {
        CONFIG => "configuration",
        TRANSIENT => "transient",
        DATA => "data",
        _ => "failed",
    }
}

/// The error as one line: each cause once. `configuration error:` is said once even when a
/// cause repeats it.
pub fn message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let mut c = cause.to_string();
        if msg.contains("configuration error: ") {
            c = c.replace("configuration error: ", "");
        }
        if !msg.contains(&c) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&c);
        }
        // a driver's error is already told in the destination's message (in words that say
        // what to do); its own text, with the driver's advice, is not repeated
        let driver = |e: Option<&dlt::Error>| matches!(e, Some(dlt::Error::DestinationDriver { .. }));
        if driver(cause.downcast_ref::<dlt::Error>()) || driver(cause.downcast_ref::<Box<dlt::Error>>().map(|b| &**b)) {
            break;
        }
    }
    while msg.matches("configuration error: ").count() > 1 {
        let last = msg.rfind("configuration error: ").unwrap_or(0);
        msg.replace_range(last..last + "configuration error: ".len(), "");
    }
    msg.replace('\n', " ")
}

/// The load package a failure left pending, if any.
pub fn pending_package(e: &anyhow::Error) -> Option<(Step, String)> {
    e.chain().find_map(|c| match c.downcast_ref::<Error>() {
        Some(Error::StepFailed { step, load_id: Some(id), .. }) => Some((*step, id.clone())),
        _ => None,
    })
}

/// The JSON object `--json` prints on failure.
pub fn json(f: &Failure) -> serde_json::Value {
    let code = code(&f.error);
    let step = dlt_error(&f.error).and_then(Error::step).map(|s| s.to_string());
    json!({
        "error": {
            "message": message(&f.error),
            "kind": kind(code),
            "exit_code": code,
            "step": step,
            "load_id": pending_package(&f.error).map(|(_, id)| id),
            "transient": code == TRANSIENT,
            "recovery": f.recovery,
        }
    })
}
