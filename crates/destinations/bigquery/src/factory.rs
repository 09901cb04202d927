//! Builds the BigQuery destination from configuration, as dlt resolves it:
//! `DESTINATION__BIGQUERY__CREDENTIALS` (a service account key file's JSON) or its fields
//! (`…__CREDENTIALS__PROJECT_ID`, `__CLIENT_EMAIL`, `__PRIVATE_KEY`, `__PRIVATE_KEY_ID`,
//! `__TOKEN_URI`), and `DESTINATION__BIGQUERY__LOCATION`, `__PROJECT_ID`, `__API_ENDPOINT`, from
//! the environment, `.dlt/secrets.toml`, `.dlt/config.toml` or the pipeline file's
//! `[destination]`.

use std::sync::Arc;

use dlt_core::config::Secret;
use dlt_core::destination::Destination;
use dlt_core::error::{Error, Result};
use dlt_core::registry::{DestinationContext, DestinationFactory, InitTemplate};

use crate::credentials::{Credentials, Fields};
use crate::destination::{BigQuery, NAME};

/// The factory registered as `bigquery`.
#[derive(Debug, Default)]
pub struct BigQueryFactory;

impl DestinationFactory for BigQueryFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn init_template(&self) -> Option<InitTemplate> {
        Some(InitTemplate { secrets: include_str!("init/secrets.toml"), ..Default::default() })
    }

    fn build(&self, ctx: &DestinationContext<'_>) -> Result<Arc<dyn Destination>> {
        let field = |key: &str| ctx.credentials_field(NAME, key).filter(|v| !v.trim().is_empty());
        let own = |key: &str| ctx.setting(NAME, key);
        for key in ["project_id", "client_email", "private_key"] {
            if field(key).is_none()
                && let Some(at) = ctx.config.placeholder(&["destination", NAME], &["credentials", key])
            {
                return Err(Error::Config(format!(
                    "bigquery credentials: {at} is still the placeholder `dlt init` wrote; put the {key} there or set \
                     DESTINATION__BIGQUERY__CREDENTIALS__{}",
                    key.to_ascii_uppercase()
                )));
            }
        }
        // the whole key file's JSON as `credentials`
        let key_json = ctx.credentials_url(NAME).filter(|v| v.trim_start().starts_with('{')).map(Secret::new);
        let c = Credentials::from_fields(Fields {
            key_json,
            project_id: field("project_id"),
            client_email: field("client_email"),
            private_key: field("private_key").map(Secret::new),
            private_key_id: field("private_key_id"),
            token_uri: field("token_uri"),
            dataset_project_id: own("project_id").filter(|v| !v.trim().is_empty()),
            location: own("location").filter(|v| !v.trim().is_empty()),
            api_endpoint: own("api_endpoint").filter(|v| !v.trim().is_empty()),
        })?;
        Ok(Arc::new(BigQuery::new(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlt_core::config::Config;

    fn build(env: Vec<(&str, &str)>) -> Result<Arc<dyn Destination>> {
        let config =
            Config::from_parts(env.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), None, None);
        let dir = std::env::temp_dir();
        BigQueryFactory.build(&DestinationContext {
            pipeline_name: "p",
            config: &config,
            run_dir: &dir,
            explicit: None,
        })
    }

    #[test]
    fn credentials_and_location_come_from_dlts_names() {
        let d = build(vec![
            ("DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID", "proj"),
            ("DESTINATION__BIGQUERY__CREDENTIALS__CLIENT_EMAIL", "loader@proj.iam.gserviceaccount.com"),
            (
                "DESTINATION__BIGQUERY__CREDENTIALS__PRIVATE_KEY",
                "-----BEGIN PRIVATE KEY-----\nSECRETKEY\n-----END PRIVATE KEY-----",
            ),
            ("DESTINATION__BIGQUERY__LOCATION", "EU"),
        ])
        .unwrap();
        assert_eq!(d.display_location(), "bigquery://proj/EU as loader@proj.iam.gserviceaccount.com");
        assert!(!format!("{d:?}").contains("SECRETKEY"));
        let json = r#"{"type": "service_account", "project_id": "fromfile", "client_email": "a@b", "private_key": "-----BEGIN PRIVATE KEY-----\nK\n-----END PRIVATE KEY-----\n"}"#;
        let d = build(vec![("DESTINATION__BIGQUERY__CREDENTIALS", json)]).unwrap();
        assert_eq!(d.display_location(), "bigquery://fromfile/US as a@b");
        let d = build(vec![
            ("DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID", "p1"),
            ("DESTINATION__BIGQUERY__API_ENDPOINT", "http://127.0.0.1:9050"),
        ])
        .unwrap();
        assert_eq!(d.display_location(), "bigquery://p1/US without a token at http://127.0.0.1:9050");
        let e = build(vec![]).unwrap_err().to_string();
        assert!(e.contains("DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID"), "{e}");
    }
}
