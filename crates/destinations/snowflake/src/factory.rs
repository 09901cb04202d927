//! Builds the Snowflake destination from configuration, as dlt resolves it:
//! `DESTINATION__SNOWFLAKE__CREDENTIALS` (a `snowflake://` URL) or its fields
//! (`…__CREDENTIALS__DATABASE`, `__USERNAME`, `__PASSWORD`, `__HOST`, `__WAREHOUSE`, `__ROLE`,
//! `__AUTHENTICATOR`, `__TOKEN`, `__PRIVATE_KEY`, `__PRIVATE_KEY_PASSPHRASE`), from the
//! environment, `.dlt/secrets.toml`, `.dlt/config.toml` or the pipeline file's `[destination]`.
//! A field set beside a URL overrides the URL's part.

use std::sync::Arc;

use dlt_core::config::{Config, Secret};
use dlt_core::destination::Destination;
use dlt_core::error::{Error, Result};
use dlt_core::registry::{DestinationContext, DestinationFactory, InitTemplate};

use crate::credentials::{Authenticator, Credentials, Fields};
use crate::destination::{NAME, Snowflake};

/// The factory registered as `snowflake`.
#[derive(Debug, Default)]
pub struct SnowflakeFactory;

/// The credentials' fields, each from the providers or the explicit table.
const FIELDS: &[&str] = &[
    "database",
    "username",
    "password",
    "host",
    "warehouse",
    "role",
    "authenticator",
    "token",
    "private_key",
    "private_key_passphrase",
];

impl DestinationFactory for SnowflakeFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn init_template(&self) -> Option<InitTemplate> {
        Some(InitTemplate { secrets: include_str!("init/secrets.toml"), ..Default::default() })
    }

    fn build(&self, ctx: &DestinationContext<'_>) -> Result<Arc<dyn Destination>> {
        let field = |key: &str| ctx.credentials_field(NAME, key);
        let url = ctx.credentials_url(NAME);
        let set: Vec<(&str, String)> = FIELDS.iter().filter_map(|k| field(k).map(|v| (*k, v))).collect();
        if url.is_none() && set.is_empty() {
            return Err(Error::Config(format!(
                "snowflake credentials missing: set {} (a snowflake:// URL) or its fields, or {}",
                ctx.config.tried_env_names(&["destination", NAME], &["credentials"])[..].join(", "),
                Config::secrets_section(&["destination", NAME], &["credentials"])
            )));
        }
        for key in ["password", "host"] {
            if url.is_none()
                && field(key).is_none()
                && let Some(at) = ctx.config.placeholder(&["destination", NAME], &["credentials", key])
            {
                return Err(Error::Config(format!(
                    "snowflake credentials: {at} is still the placeholder `dlt init` wrote; put the {key} there or \
                     set DESTINATION__SNOWFLAKE__CREDENTIALS__{}",
                    key.to_ascii_uppercase()
                )));
            }
        }
        let mut c = match &url {
            Some(u) => Credentials::parse(u)?,
            None => Credentials::from_fields(fields(&set, None), vec![])?,
        };
        if url.is_some() && !set.is_empty() {
            c = overlay(c, &set)?;
        }
        Ok(Arc::new(Snowflake::new(c)))
    }
}

fn get<'a>(set: &'a [(&str, String)], key: &str) -> Option<&'a String> {
    set.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// The fields given, over `base` (a parsed URL's).
fn fields(set: &[(&str, String)], base: Option<&Credentials>) -> Fields {
    let s = |k: &str| get(set, k).cloned();
    let secret = |k: &str| get(set, k).map(Secret::new);
    let (password, token, private_key, passphrase) = match base.map(|b| &b.authenticator) {
        Some(Authenticator::Password(p)) => (Some(p.clone()), None, None, None),
        Some(Authenticator::OAuth(t)) => (None, Some(t.clone()), None, None),
        Some(Authenticator::KeyPair { private_key, passphrase }) => {
            (None, None, Some(private_key.clone()), passphrase.clone())
        }
        None => (None, None, None, None),
    };
    Fields {
        database: s("database").or(base.map(|b| b.database.clone())),
        username: s("username").or(base.map(|b| b.username.clone())),
        password: secret("password").or(password),
        host: s("host").or(base.map(|b| b.account.clone())),
        warehouse: s("warehouse").or(base.and_then(|b| b.warehouse.clone())),
        role: s("role").or(base.and_then(|b| b.role.clone())),
        authenticator: s("authenticator"),
        token: secret("token").or(token),
        private_key: secret("private_key").or(private_key),
        private_key_passphrase: secret("private_key_passphrase").or(passphrase),
    }
}

/// A URL's credentials with the fields set beside it taking precedence.
fn overlay(base: Credentials, set: &[(&str, String)]) -> Result<Credentials> {
    let mut options = base.options.clone();
    if let Some(h) = &base.host {
        options.push(("host".into(), h.clone()));
    }
    if let Some(p) = base.port {
        options.push(("port".into(), p.to_string()));
    }
    options.push(("protocol".into(), base.protocol.clone()));
    Credentials::from_fields(fields(set, Some(&base)), options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(env: Vec<(&str, &str)>) -> Result<Arc<dyn Destination>> {
        let config =
            Config::from_parts(env.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), None, None);
        let dir = std::env::temp_dir();
        SnowflakeFactory.build(&DestinationContext {
            pipeline_name: "p",
            config: &config,
            run_dir: &dir,
            explicit: None,
        })
    }

    #[test]
    fn credentials_come_from_a_url_or_fields_and_fields_win() {
        let d = build(vec![("DESTINATION__SNOWFLAKE__CREDENTIALS", "snowflake://u:pw@acct/db?warehouse=W")]).unwrap();
        assert_eq!(d.display_location(), "snowflake://u:***@acct/db?warehouse=W");
        let d = build(vec![
            ("DESTINATION__SNOWFLAKE__CREDENTIALS__DATABASE", "dlt_data"),
            ("DESTINATION__SNOWFLAKE__CREDENTIALS__USERNAME", "loader"),
            ("DESTINATION__SNOWFLAKE__CREDENTIALS__PASSWORD", "hunter2"),
            ("DESTINATION__SNOWFLAKE__CREDENTIALS__HOST", "kgiotue-wn98412"),
            ("DESTINATION__SNOWFLAKE__CREDENTIALS__ROLE", "LOADER"),
        ])
        .unwrap();
        assert_eq!(d.display_location(), "snowflake://loader:***@kgiotue-wn98412/dlt_data?role=LOADER");
        assert!(!format!("{d:?}").contains("hunter2"));
        let d = build(vec![
            ("DESTINATION__SNOWFLAKE__CREDENTIALS", "snowflake://u:pw@acct/db"),
            ("DESTINATION__SNOWFLAKE__CREDENTIALS__WAREHOUSE", "BIG_WH"),
        ])
        .unwrap();
        assert_eq!(d.display_location(), "snowflake://u:***@acct/db?warehouse=BIG_WH");
        let e = build(vec![]).unwrap_err().to_string();
        assert!(e.contains("DESTINATION__SNOWFLAKE__CREDENTIALS"), "{e}");
        let e = build(vec![("DESTINATION__SNOWFLAKE__CREDENTIALS__USERNAME", "u")]).unwrap_err().to_string();
        assert!(e.contains("`host`"), "{e}");
    }
}
