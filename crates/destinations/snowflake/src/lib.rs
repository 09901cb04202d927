//! The Snowflake destination (in progress, issue 18): credentials as dlt names them and the
//! client of the drivers' JSON protocol. The dialect, staged loads (PUT / COPY INTO) and the
//! destination itself follow.
#![warn(missing_docs)]

pub mod client;
pub mod credentials;

pub use client::{Client, QueryResult, ResultColumn};
pub use credentials::{Authenticator, Credentials};
