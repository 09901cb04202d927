//! The BigQuery destination (in progress, issue 19): credentials and location as dlt names
//! them (`credentials`) and the client over `gcp-bigquery-client` with the endpoint and token
//! they give (`client`). Load jobs, the dialect and the destination follow. See
//! docs/bigquery.md.
#![warn(missing_docs)]

pub mod client;
pub mod credentials;

pub use client::Client;
pub use credentials::{Auth, Credentials, Fields};
