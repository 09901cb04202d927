//! Test helpers that dlt-rs' own connector crates use, and that a third-party connector crate
//! uses the same way from its `[dev-dependencies]`:
//!
//! - [`services`]: the real servers tests talk to (PostgreSQL, MariaDB, json-server). A server
//!   that is not there skips the test with a note, and fails it under `CI=true`.
//! - [`strip_tls`]: proxies that answer "no TLS" in front of a real database, to prove that a
//!   client asked for TLS fails closed.
//!
//! It depends on nothing but the standard library, so any connector crate can use it without
//! pulling in another connector.
#![warn(missing_docs)]

pub mod services;
pub mod strip_tls;
