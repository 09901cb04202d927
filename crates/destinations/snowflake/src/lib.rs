//! The Snowflake destination: credentials as dlt names them, a client of the drivers' JSON
//! protocol (`client`), the dialect for the shared SQL loader (`dialect`), job files `PUT` into
//! a stage (encrypted as the drivers do, `encrypt`, `stage`) or read from a staging bucket, and
//! `COPY INTO` as dlt writes it (`copy`). See docs/snowflake.md.
#![warn(missing_docs)]

pub mod client;
pub mod connection;
pub mod copy;
pub mod credentials;
pub mod destination;
pub mod dialect;
pub mod encrypt;
pub mod factory;
pub mod jwt;
pub mod stage;

pub use client::{Client, QueryResult, ResultColumn};
pub use connection::SnowflakeConnection;
pub use copy::{StageOptions, StagingCredentials};
pub use credentials::{Authenticator, Credentials};
pub use destination::{Snowflake, capabilities};
pub use dialect::SnowflakeDialect;
pub use factory::SnowflakeFactory;
