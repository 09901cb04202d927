//! The BigQuery destination (experimental, issue 19): credentials and location as dlt names
//! them (`credentials`), the client over `gcp-bigquery-client` with the endpoint and token they
//! give (`client`, `auth`), load jobs from local files (`load`), and the dialect and
//! connection the shared SQL loader runs (`dialect`, `connection`, `destination`). See
//! docs/bigquery.md.
#![warn(missing_docs)]

pub mod auth;
pub mod client;
pub mod connection;
pub mod credentials;
pub mod destination;
pub mod dialect;
pub mod factory;
pub mod load;

pub use client::Client;
pub use connection::BigQueryConnection;
pub use credentials::{Auth, Credentials, Fields};
pub use destination::{BigQuery, capabilities};
pub use dialect::BigQueryDialect;
pub use factory::BigQueryFactory;
pub use load::{SourceFormat, job_id};
