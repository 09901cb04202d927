//! The BigQuery destination (in progress, issue 19): credentials and location as dlt names
//! them (`credentials`), the client over `gcp-bigquery-client` with the endpoint and token they
//! give (`client`, `auth`) and load jobs from local files (`load`). The dialect and the
//! destination follow. See
//! docs/bigquery.md.
#![warn(missing_docs)]

pub mod auth;
pub mod client;
pub mod credentials;
pub mod load;

pub use client::Client;
pub use credentials::{Auth, Credentials, Fields};
pub use load::{SourceFormat, job_id};
