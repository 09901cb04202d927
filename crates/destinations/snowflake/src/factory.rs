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

use crate::copy::{StageOptions, StagingCredentials};
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
        Ok(Arc::new(Snowflake::new(c).with_stage(stage_options(ctx)?)))
    }
}

/// dlt's `stage_name` and `keep_staged_files` (`[destination.snowflake]`, or the pipeline file's
/// `[destination]`), and the staging bucket's URL and credentials as the filesystem destination
/// reads them (`[destination.filesystem]`), for `COPY` from a staging bucket.
fn stage_options(ctx: &DestinationContext<'_>) -> Result<StageOptions> {
    let own = |key: &str| ctx.setting(NAME, key);
    let keep_staged_files = match own("keep_staged_files").as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(Error::Config(format!("snowflake: keep_staged_files must be true or false, not `{other}`")));
        }
    };
    let fs = |key: &str| ctx.credentials_field("filesystem", key);
    let secret = |key: &str| fs(key).map(Secret::new);
    let staging_credentials = match (fs("aws_access_key_id"), secret("aws_secret_access_key")) {
        (Some(access_key_id), Some(secret_access_key)) => Some(StagingCredentials::Aws {
            access_key_id,
            secret_access_key,
            session_token: secret("aws_session_token"),
        }),
        _ => match (fs("azure_storage_account_name"), secret("azure_storage_sas_token")) {
            (Some(account_name), Some(sas_token)) => {
                Some(StagingCredentials::AzureSas { account_name, sas_token, account_host: fs("azure_account_host") })
            }
            _ => None,
        },
    };
    Ok(StageOptions {
        stage_name: own("stage_name").filter(|s| !s.trim().is_empty()),
        keep_staged_files,
        staging_bucket_url: ctx.config.get(&["destination", "filesystem"], "bucket_url").map(|v| v.as_string()),
        staging_credentials,
    })
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

    #[test]
    fn stage_options_come_from_the_destination_and_the_staging_filesystems_config() {
        let stage = |env: Vec<(&str, &str)>| {
            let config =
                Config::from_parts(env.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), None, None);
            let dir = std::env::temp_dir();
            stage_options(&DestinationContext { pipeline_name: "p", config: &config, run_dir: &dir, explicit: None })
        };
        let d = stage(vec![]).unwrap();
        assert!(d.keep_staged_files && d.stage_name.is_none() && d.staging_credentials.is_none());
        let s = stage(vec![
            ("DESTINATION__SNOWFLAKE__STAGE_NAME", "PUBLIC.MY_STAGE"),
            ("DESTINATION__SNOWFLAKE__KEEP_STAGED_FILES", "false"),
            ("DESTINATION__FILESYSTEM__BUCKET_URL", "s3://bucket/data"),
            ("DESTINATION__FILESYSTEM__CREDENTIALS__AWS_ACCESS_KEY_ID", "AKIA1"),
            ("DESTINATION__FILESYSTEM__CREDENTIALS__AWS_SECRET_ACCESS_KEY", "very-secret"),
        ])
        .unwrap();
        assert_eq!(s.stage_name.as_deref(), Some("PUBLIC.MY_STAGE"));
        assert!(!s.keep_staged_files);
        assert_eq!(s.staging_bucket_url.as_deref(), Some("s3://bucket/data"));
        let shown = format!("{s:?}");
        assert!(shown.contains("AKIA1") && !shown.contains("very-secret"), "{shown}");
        let az = stage(vec![
            ("DESTINATION__FILESYSTEM__CREDENTIALS__AZURE_STORAGE_ACCOUNT_NAME", "acct"),
            ("DESTINATION__FILESYSTEM__CREDENTIALS__AZURE_STORAGE_SAS_TOKEN", "sv=1&sig=x"),
        ])
        .unwrap();
        assert!(matches!(az.staging_credentials, Some(StagingCredentials::AzureSas { .. })));
        let e = stage(vec![("DESTINATION__SNOWFLAKE__KEEP_STAGED_FILES", "maybe")]).unwrap_err().to_string();
        assert!(e.contains("keep_staged_files must be true or false"), "{e}");
    }
}
