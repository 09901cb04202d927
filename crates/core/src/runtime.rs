//! The one async runtime connectors run on, and the one place where blocking work meets it.
//!
//! Connector traits are async ([`async_trait`](https://docs.rs/async-trait)); a pipeline drives
//! them with [`block_on`], which runs the future on the caller's Tokio runtime when there is a
//! multi-threaded one, and otherwise on a process-wide multi-threaded runtime that is started
//! on first use and never dropped (so dropping a pipeline inside async code cannot panic).
//!
//! Drivers that only have a blocking API (DuckDB's C library) hand each call to [`blocking`],
//! which runs it on Tokio's blocking pool, never on an async worker. CPU-bound work of the
//! engine (normalizing, parquet encoding) runs on the pipeline's own threads, not here.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

static SHARED: OnceLock<Runtime> = OnceLock::new();

/// The process-wide runtime used when the caller has none.
pub fn shared() -> &'static Runtime {
    SHARED.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("dlt-io")
            .enable_all()
            .build()
            .expect("starting the dlt-rs I/O runtime")
    })
}

/// A handle to the runtime connectors run on: the caller's multi-threaded runtime, or the
/// shared one.
pub fn handle() -> Handle {
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => h,
        _ => shared().handle().clone(),
    }
}

/// Run `fut` to completion from synchronous code: on the caller's multi-threaded runtime (the
/// worker steps aside with `block_in_place`), on the shared runtime from a helper thread when
/// the caller runs a current-thread runtime (which cannot be blocked), or on the shared runtime
/// directly when there is no runtime.
pub fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| h.block_on(fut)),
        Ok(_) => std::thread::scope(|s| {
            s.spawn(|| shared().block_on(fut)).join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        }),
        Err(_) => shared().block_on(fut),
    }
}

/// Run a blocking call (a driver without an async API) on the blocking pool and await it. A
/// panic in `f` is raised again in the caller.
pub async fn blocking<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(p) => std::panic::resume_unwind(p),
            Err(e) => panic!("blocking task cancelled: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_works_without_and_inside_runtimes() {
        assert_eq!(block_on(async { blocking(|| 1 + 1).await }), 2);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        assert_eq!(rt.block_on(async { block_on(async { blocking(|| 3).await }) }), 3);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        assert_eq!(rt.block_on(async { block_on(async { blocking(|| 4).await }) }), 4);
    }
}
