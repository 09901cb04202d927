//! Registration of sources and destinations by name, so pipeline files (`dlt run`) can use them.
//! Connector crates export a factory; the `dlt` facade registers the compiled-in ones.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, ConfigValue};
use crate::destination::Destination;
use crate::error::{Error, Result};
use crate::resource::Source;

/// What a factory gets to build a destination.
pub struct DestinationContext<'a> {
    /// The pipeline name (default file names, config prefixes).
    pub pipeline_name: &'a str,
    /// Config and secrets providers.
    pub config: &'a Config,
    /// The run directory (relative paths resolve here).
    pub run_dir: &'a Path,
    /// Explicit settings (the `[destination]` table of a pipeline file), lowest precedence.
    pub explicit: Option<&'a toml::Table>,
}

impl DestinationContext<'_> {
    /// The whole `credentials` of destination `name` when given as one string (a connection
    /// URL): from the providers (`DESTINATION__<NAME>__CREDENTIALS`, secrets.toml, …), else the
    /// pipeline file's `[destination]` table.
    pub fn credentials_url(&self, name: &str) -> Option<String> {
        let whole = self.config.resolve(&["destination", name], &["credentials"]).map(|(v, _)| v);
        match (whole, self.explicit.and_then(|t| t.get("credentials"))) {
            (Some(ConfigValue::Str(s)), _) | (Some(ConfigValue::Toml(toml::Value::String(s))), _) => Some(s),
            (None, Some(toml::Value::String(s))) => Some(s.clone()),
            _ => None,
        }
    }

    /// A setting of destination `name` beside its credentials (`DESTINATION__<NAME>__<KEY>`, a
    /// `[destination.<name>]` table, or the pipeline file's `[destination]` table), as text.
    pub fn setting(&self, name: &str, key: &str) -> Option<String> {
        self.config.get(&["destination", name], key).map(|v| v.as_string()).or_else(|| {
            self.explicit.and_then(|t| t.get(key)).map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()))
        })
    }

    /// One field of destination `name`'s credentials (`DESTINATION__<NAME>__CREDENTIALS__<KEY>`,
    /// a `[destination.<name>.credentials]` table, or the pipeline file's `[destination]`
    /// credentials table). The `<configure me>` placeholder `dlt init` writes is not a value.
    pub fn credentials_field(&self, name: &str, key: &str) -> Option<String> {
        let table_value = |t: &toml::Table| t.get(key).map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()));
        self.config
            .resolve(&["destination", name], &["credentials", key])
            .map(|(v, _)| v.as_string())
            .or_else(|| {
                match (
                    self.config.resolve(&["destination", name], &["credentials"]).map(|(v, _)| v),
                    self.explicit.and_then(|t| t.get("credentials")),
                ) {
                    (Some(ConfigValue::Toml(toml::Value::Table(t))), _) => table_value(&t),
                    (_, Some(toml::Value::Table(t))) => table_value(t),
                    _ => None,
                }
            })
            .filter(|v| !crate::config::is_placeholder(v))
    }
}

/// What `dlt init` writes for a connector: commented TOML text, each part optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct InitTemplate {
    /// A source's `[source]` table for the pipeline file.
    pub pipeline: &'static str,
    /// Lines for `.dlt/config.toml`.
    pub config: &'static str,
    /// Lines for `.dlt/secrets.toml`.
    pub secrets: &'static str,
}

/// Builds a destination from configuration.
pub trait DestinationFactory: Send + Sync {
    /// Registered name (`duckdb`).
    fn name(&self) -> &'static str;
    /// Build it.
    fn build(&self, ctx: &DestinationContext<'_>) -> Result<Arc<dyn Destination>>;
    /// What `dlt init` writes for this destination; `None`: `dlt init` does not offer it.
    fn init_template(&self) -> Option<InitTemplate> {
        None
    }
}

/// What a factory gets to build a source.
pub struct SourceContext<'a> {
    /// The pipeline name.
    pub pipeline_name: &'a str,
    /// Config and secrets providers.
    pub config: &'a Config,
    /// Folder relative paths in the source config resolve against.
    pub base_dir: &'a Path,
}

/// Builds a source from its config (the `[source]` table of a pipeline file).
pub trait SourceFactory: Send + Sync {
    /// Registered name (`files`, `rest_api`, …).
    fn name(&self) -> &'static str;
    /// Build it.
    fn build(&self, config: &toml::Table, ctx: &SourceContext<'_>) -> Result<Source>;
    /// What `dlt init` writes for this source; `None`: `dlt init` does not offer it.
    fn init_template(&self) -> Option<InitTemplate> {
        None
    }
}

/// Sources and destinations by name.
#[derive(Default, Clone)]
pub struct Registry {
    sources: BTreeMap<&'static str, Arc<dyn SourceFactory>>,
    destinations: BTreeMap<&'static str, Arc<dyn DestinationFactory>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }
    /// Register a source factory.
    pub fn register_source(&mut self, f: Arc<dyn SourceFactory>) -> &mut Self {
        self.sources.insert(f.name(), f);
        self
    }
    /// Register a destination factory.
    pub fn register_destination(&mut self, f: Arc<dyn DestinationFactory>) -> &mut Self {
        self.destinations.insert(f.name(), f);
        self
    }
    /// Look up a source factory.
    pub fn source(&self, name: &str) -> Result<&Arc<dyn SourceFactory>> {
        self.sources.get(name).ok_or_else(|| {
            Error::Config(format!(
                "unknown source type `{name}`; compiled-in sources: {}",
                self.sources.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }
    /// Look up a destination factory.
    pub fn destination(&self, name: &str) -> Result<&Arc<dyn DestinationFactory>> {
        self.destinations.get(name).ok_or_else(|| {
            Error::Config(format!(
                "unknown destination `{name}`; compiled-in destinations: {}",
                self.destinations.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }
    /// Names of registered sources.
    pub fn source_names(&self) -> Vec<&'static str> {
        self.sources.keys().cloned().collect()
    }
    /// Names of registered destinations.
    pub fn destination_names(&self) -> Vec<&'static str> {
        self.destinations.keys().cloned().collect()
    }
}
