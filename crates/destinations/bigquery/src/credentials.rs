//! BigQuery credentials and location as dlt names them.
//!
//! - A service account: the fields `project_id`, `client_email`, `private_key` (PEM),
//!   `private_key_id`, `token_uri` (`DESTINATION__BIGQUERY__CREDENTIALS__<FIELD>`,
//!   `[destination.bigquery.credentials]`), or the whole key file's JSON as `credentials`.
//! - No key: Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS` or gcloud's
//!   file), with `project_id` from the fields or the file.
//! - `location` (default `US`) and `project_id` of `[destination.bigquery]` (the project the
//!   datasets live in, when it is not the credentials' own).
//!
//! `api_endpoint` (a dlt-rs addition, like the Google client libraries' client option of that
//! name) points the client at another REST endpoint than `https://bigquery.googleapis.com`: an
//! emulator, a private service connect address. Over plain `http://` without a key, requests
//! carry no token (emulators do not check one).
//!
//! The private key is a [`Secret`]: `Debug` and [`Credentials::display`] never show it.

use dlt_core::config::Secret;
use dlt_core::error::{Error, Result};
use serde_json::Value;

/// Google's BigQuery REST endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://bigquery.googleapis.com";

/// How requests are authorized (`Debug` shows no key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A service account key: a JWT signed with `private_key` is exchanged at `token_uri`.
    ServiceAccount {
        /// `client_email`.
        client_email: String,
        /// `private_key` (PEM, PKCS#8).
        private_key: Secret,
        /// `private_key_id`, if given.
        private_key_id: Option<String>,
        /// `token_uri` (default `https://oauth2.googleapis.com/token`).
        token_uri: String,
    },
    /// Application Default Credentials, found at run time.
    ApplicationDefault,
    /// No token at all (an emulator over plain HTTP).
    None,
}

/// Where and as whom to load.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The project the datasets live in (and jobs run in).
    pub project_id: String,
    /// How requests are authorized.
    pub auth: Auth,
    /// The location of datasets and jobs (`US`, `EU`, `europe-west3`, …).
    pub location: String,
    /// The REST endpoint (default [`DEFAULT_ENDPOINT`]).
    pub api_endpoint: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("at", &self.display()).finish_non_exhaustive()
    }
}

/// The fields as the configuration gives them (each `None` when unset).
#[derive(Debug, Default, Clone)]
pub struct Fields {
    /// `credentials` as one value: the service account key file's JSON.
    pub key_json: Option<Secret>,
    /// `credentials.project_id`.
    pub project_id: Option<String>,
    /// `credentials.client_email`.
    pub client_email: Option<String>,
    /// `credentials.private_key`.
    pub private_key: Option<Secret>,
    /// `credentials.private_key_id`.
    pub private_key_id: Option<String>,
    /// `credentials.token_uri`.
    pub token_uri: Option<String>,
    /// `[destination.bigquery] project_id`: the datasets' project when not the credentials'.
    pub dataset_project_id: Option<String>,
    /// `[destination.bigquery] location`.
    pub location: Option<String>,
    /// `[destination.bigquery] api_endpoint`.
    pub api_endpoint: Option<String>,
}

impl Credentials {
    /// Resolve the fields: a key file's JSON, or the key's fields, or (neither) Application
    /// Default Credentials; without a key over `http://`, no token.
    pub fn from_fields(f: Fields) -> Result<Credentials> {
        let mut f = f;
        if let Some(json) = &f.key_json {
            let v: Value = serde_json::from_str(json.expose()).map_err(|e| {
                Error::Config(format!(
                    "bigquery credentials: `credentials` is not a service account key file's JSON ({e}); give the \
                     file's content, or the fields project_id, client_email and private_key"
                ))
            })?;
            let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
            if s("type").as_deref().is_some_and(|t| t != "service_account") {
                return Err(Error::Config(format!(
                    "bigquery credentials: the key file is of type `{}`; dlt-rs takes a service account key",
                    s("type").unwrap_or_default()
                )));
            }
            f.project_id = f.project_id.or(s("project_id"));
            f.client_email = f.client_email.or(s("client_email"));
            f.private_key = f.private_key.or(s("private_key").map(Secret::new));
            f.private_key_id = f.private_key_id.or(s("private_key_id"));
            f.token_uri = f.token_uri.or(s("token_uri"));
        }
        let api_endpoint =
            f.api_endpoint.map(|e| e.trim_end_matches('/').to_string()).unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let auth = match (f.client_email, f.private_key) {
            (Some(client_email), Some(private_key)) => {
                if !private_key.expose().contains("PRIVATE KEY-----") {
                    return Err(Error::Config(
                        "bigquery credentials: private_key is not a PEM key (-----BEGIN PRIVATE KEY-----…); \
                         copy it from the service account key file, with its line breaks (\\n)"
                            .into(),
                    ));
                }
                Auth::ServiceAccount {
                    client_email,
                    private_key,
                    private_key_id: f.private_key_id,
                    token_uri: f.token_uri.unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
                }
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::Config(
                    "bigquery credentials: a service account needs both client_email and private_key \
                     (DESTINATION__BIGQUERY__CREDENTIALS__CLIENT_EMAIL, …__PRIVATE_KEY)"
                        .into(),
                ));
            }
            (None, None) if api_endpoint.starts_with("http://") => Auth::None,
            (None, None) => Auth::ApplicationDefault,
        };
        let project_id = f.dataset_project_id.or(f.project_id).filter(|p| !p.trim().is_empty()).ok_or_else(|| {
            Error::Config(
                "bigquery credentials: no project_id; set DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID (or \
                 [destination.bigquery.credentials] project_id)"
                    .into(),
            )
        })?;
        Ok(Credentials { project_id, auth, location: f.location.unwrap_or_else(|| "US".into()), api_endpoint })
    }

    /// What logs and `info` show: `bigquery://project/location (as client_email)`, no secret.
    pub fn display(&self) -> String {
        let who = match &self.auth {
            Auth::ServiceAccount { client_email, .. } => format!(" as {client_email}"),
            Auth::ApplicationDefault => " with application default credentials".into(),
            Auth::None => " without a token".into(),
        };
        let at =
            if self.api_endpoint == DEFAULT_ENDPOINT { String::new() } else { format!(" at {}", self.api_endpoint) };
        format!("bigquery://{}/{}{who}{at}", self.project_id, self.location)
    }

    /// The REST API's base: `<endpoint>/bigquery/v2`.
    pub fn v2_base(&self) -> String {
        format!("{}/bigquery/v2", self.api_endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";

    #[test]
    fn a_key_file_or_its_fields_and_never_the_key_in_what_is_shown() {
        let json = serde_json::json!({
            "type": "service_account", "project_id": "proj-1", "client_email": "loader@proj-1.iam.gserviceaccount.com",
            "private_key": KEY, "private_key_id": "abc", "token_uri": "https://oauth2.googleapis.com/token"
        });
        let c =
            Credentials::from_fields(Fields { key_json: Some(Secret::new(json.to_string())), ..Default::default() })
                .unwrap();
        assert_eq!(c.project_id, "proj-1");
        assert_eq!(c.location, "US");
        assert_eq!(c.display(), "bigquery://proj-1/US as loader@proj-1.iam.gserviceaccount.com");
        assert!(!format!("{c:?}").contains("MIIB"));
        // the fields, a dataset project and a location of their own
        let c = Credentials::from_fields(Fields {
            project_id: Some("creds-proj".into()),
            client_email: Some("x@y".into()),
            private_key: Some(Secret::new(KEY)),
            dataset_project_id: Some("data-proj".into()),
            location: Some("EU".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((c.project_id.as_str(), c.location.as_str()), ("data-proj", "EU"));
        // an emulator over http without a key: no token
        let c = Credentials::from_fields(Fields {
            project_id: Some("p1".into()),
            api_endpoint: Some("http://127.0.0.1:9050/".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.auth, Auth::None);
        assert_eq!(c.v2_base(), "http://127.0.0.1:9050/bigquery/v2");
        assert!(c.display().ends_with("without a token at http://127.0.0.1:9050"), "{}", c.display());
    }

    #[test]
    fn mistakes_say_what_to_set() {
        let e = Credentials::from_fields(Fields::default()).unwrap_err().to_string();
        assert!(e.contains("DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID"), "{e}");
        let e = Credentials::from_fields(Fields { client_email: Some("x@y".into()), ..Default::default() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("both client_email and private_key"), "{e}");
        let e = Credentials::from_fields(Fields {
            client_email: Some("x@y".into()),
            private_key: Some(Secret::new("hunter2")),
            project_id: Some("p".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("not a PEM key") && !e.contains("hunter2"), "{e}");
        let e = Credentials::from_fields(Fields { key_json: Some(Secret::new("{oops")), ..Default::default() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a service account key file"), "{e}");
    }
}
