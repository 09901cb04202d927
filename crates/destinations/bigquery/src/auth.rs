//! Access tokens: one source for the client crate's calls and for the REST calls it does not
//! make (uploads), so both carry the same token. A service account key is exchanged through
//! `yup-oauth2` (as the client crate does), Application Default Credentials are found the same
//! way, and an emulator over plain HTTP gets no token at all.

use dlt_core::error::{Error, Result};
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::yup_oauth2;
use gcp_bigquery_client::yup_oauth2::authenticator::{ApplicationDefaultCredentialsTypes, DefaultAuthenticator};

use crate::credentials::{Auth, Credentials};

/// The OAuth scope of the BigQuery API (read-write), which also covers load jobs' uploads.
pub const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// Where tokens come from.
#[derive(Clone)]
pub enum TokenSource {
    /// No token (an emulator).
    None,
    /// A service account or Application Default Credentials, refreshed by `yup-oauth2`.
    OAuth(DefaultAuthenticator),
}

impl TokenSource {
    /// The source the credentials call for.
    pub async fn new(c: &Credentials) -> Result<TokenSource> {
        let built = match &c.auth {
            Auth::None => return Ok(TokenSource::None),
            Auth::ServiceAccount { client_email, private_key, private_key_id, token_uri } => {
                let key: yup_oauth2::ServiceAccountKey = serde_json::from_value(serde_json::json!({
                    "type": "service_account",
                    "project_id": c.project_id,
                    "private_key_id": private_key_id,
                    "private_key": private_key.expose(),
                    "client_email": client_email,
                    "token_uri": token_uri,
                }))
                .map_err(|e| Error::Config(format!("bigquery: the service account key is incomplete: {e}")))?;
                yup_oauth2::ServiceAccountAuthenticator::builder(key).build().await
            }
            Auth::ApplicationDefault => {
                let opts = yup_oauth2::ApplicationDefaultCredentialsFlowOpts::default();
                match yup_oauth2::ApplicationDefaultCredentialsAuthenticator::builder(opts).await {
                    ApplicationDefaultCredentialsTypes::InstanceMetadata(b) => b.build().await,
                    ApplicationDefaultCredentialsTypes::ServiceAccount(b) => b.build().await,
                }
            }
        };
        built.map(TokenSource::OAuth).map_err(|e| {
            Error::Config(format!(
                "bigquery: cannot set up authorization for {}: {e}; give a service account key \
                 (DESTINATION__BIGQUERY__CREDENTIALS__CLIENT_EMAIL and __PRIVATE_KEY) or set GOOGLE_APPLICATION_CREDENTIALS",
                c.display()
            ))
        })
    }

    /// A current access token (empty without one).
    pub async fn token(&self) -> std::result::Result<String, BQError> {
        match self {
            TokenSource::None => Ok(String::new()),
            TokenSource::OAuth(a) => Ok(a.token(&[SCOPE]).await?.token().ok_or(BQError::NoToken)?.to_string()),
        }
    }
}

#[async_trait::async_trait]
impl Authenticator for TokenSource {
    async fn access_token(&self) -> std::result::Result<String, BQError> {
        self.token().await
    }
}
