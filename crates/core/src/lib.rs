//! dlt-rs core: the schema model and naming, resource and source types, load packages,
//! pipeline state, configuration and secrets, the destination traits, and the pipeline runner.
#![warn(missing_docs)]

pub mod config;
pub mod contract;
pub mod destination;
pub mod error;
pub mod fault;
mod hints;
pub mod ids;
pub mod incremental;
pub mod naming;
pub mod normalizer;
pub mod package;
pub mod pipeline;
pub mod registry;
pub mod resource;
pub mod runtime;
pub mod schema;
pub mod state;
pub mod tagged;
pub mod typed;
mod validate;

pub use async_trait::async_trait;
pub use error::{Error, Result, Step};
pub use pipeline::{DropOptions, LoadInfo, Pipeline, PipelineBuilder, Progress, Refresh, Trace};
pub use resource::{Item, Resource, ResourceHints, Source};
pub use schema::{Column, DataType, Schema, Table, WriteDisposition};
