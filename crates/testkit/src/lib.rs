//! Test helpers that dlt-rs' own connector crates use, and that a third-party connector crate
//! uses the same way from its `[dev-dependencies]`:
//!
//! - [`suite`]: the destination conformance suite (append, replace and merge strategies,
//!   scd2, nested tables, schema evolution, state restore, drop, retries and exactly-once
//!   through the fault wrapper), run from a destination crate's tests in a few lines.
//! - [`fault`]: a destination wrapper that fails commits as scripted or with seeded
//!   probabilities.
//! - [`services`]: the real servers tests talk to (PostgreSQL, MariaDB, json-server). A server
//!   that is not there skips the test with a note, and fails it under `CI=true`.
//! - [`strip_tls`]: proxies that answer "no TLS" in front of a real database, to prove that a
//!   client asked for TLS fails closed.
//!
//! It depends on `dlt-core` and `dlt-normalize` only, so any connector crate can use it without
//! pulling in another connector.
#![warn(missing_docs)]

pub mod fault;
pub mod recorder;
pub mod services;
pub mod strip_tls;
pub mod suite;
