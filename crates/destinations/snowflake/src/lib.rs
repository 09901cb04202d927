//! The Snowflake destination (in progress, issue 18): credentials as dlt names them, the client
//! of the drivers' JSON protocol and the dialect for the shared SQL loader. Staged loads (PUT /
//! COPY INTO) and the destination itself follow.
#![warn(missing_docs)]

pub mod client;
pub mod connection;
pub mod credentials;
pub mod destination;
pub mod dialect;
pub mod encrypt;
pub mod factory;
pub mod jwt;
pub mod stage;

pub use client::{Client, QueryResult, ResultColumn};
pub use connection::SnowflakeConnection;
pub use credentials::{Authenticator, Credentials};
pub use destination::{Snowflake, capabilities};
pub use dialect::SnowflakeDialect;
pub use factory::SnowflakeFactory;
