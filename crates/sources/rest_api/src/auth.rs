//! Authentication at request time, with secrets resolved from the config providers.
//! Secrets are [`Secret`]s: `Debug` shows `***`, and they are never put in logs or errors.

use std::time::{Duration, Instant};

use dlt_core::config::{Config, Secret};
use dlt_core::error::{Error, Result};
use indexmap::IndexMap;
use reqwest::header::{AUTHORIZATION, COOKIE, HeaderValue};
use reqwest::{Client, RequestBuilder};
use serde_json::Value;

use crate::config::AuthConfig;

/// Where an API key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLocation {
    /// A request header.
    Header,
    /// A query parameter.
    Query,
    /// A cookie.
    Cookie,
}

/// Resolved authentication.
#[derive(Debug)]
pub enum Auth {
    /// `Authorization: Bearer …`.
    Bearer(Secret),
    /// An API key.
    ApiKey {
        /// Header, parameter or cookie name.
        name: String,
        /// The key.
        key: Secret,
        /// Where it goes.
        location: KeyLocation,
    },
    /// HTTP basic.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// OAuth2 client credentials.
    OAuth2(OAuth2),
}

/// OAuth2 client-credentials state: the cached token and when it expires.
#[derive(Debug)]
pub struct OAuth2 {
    url: String,
    client_id: Secret,
    client_secret: Secret,
    data: IndexMap<String, Value>,
    default_expiry: u64,
    /// The cached token and when it expires; held while a new one is fetched, so concurrent
    /// requests wait for one fetch.
    token: tokio::sync::Mutex<Option<(Secret, Instant)>>,
}

/// Looks up auth fields: a provider value wins over the one in the source config.
struct Lookup<'a> {
    providers: &'a Config,
    sections: Vec<&'a str>,
    kind: &'static str,
}

impl Lookup<'_> {
    fn value(&self, field: &str, explicit: Option<&str>) -> Option<String> {
        self.providers
            .resolve(&self.sections, &["credentials", field])
            .map(|(v, _)| v.as_string())
            .or_else(|| explicit.map(str::to_string))
    }

    fn required(&self, field: &str, explicit: Option<&str>) -> Result<String> {
        self.value(field, explicit).ok_or_else(|| {
            let tried = self.providers.tried_env_names(&self.sections, &["credentials", field]);
            Error::Config(format!(
                "rest_api: auth `{}` needs `{field}`: set it in the source config or in one of {}",
                self.kind,
                tried.join(", ")
            ))
        })
    }

    fn secret(&self, field: &str, explicit: Option<&Secret>) -> Result<Secret> {
        self.required(field, explicit.map(Secret::expose)).map(Secret::new)
    }
}

impl Auth {
    /// Resolve an auth config; `sections` are the config sections of the resource
    /// (`["sources", "rest_api", "<resource>"]`), tried from the most specific.
    pub fn resolve(cfg: &AuthConfig, providers: &Config, sections: &[&str]) -> Result<Auth> {
        let mut l = Lookup { providers, sections: sections.to_vec(), kind: "" };
        Ok(match cfg {
            AuthConfig::Bearer(b) => {
                l.kind = "bearer";
                Auth::Bearer(l.secret("token", b.token.as_ref())?)
            }
            AuthConfig::ApiKey(k) => {
                l.kind = "api_key";
                let location = match l.value("location", k.location.as_deref()).as_deref().unwrap_or("header") {
                    "header" => KeyLocation::Header,
                    "query" | "param" => KeyLocation::Query,
                    "cookie" => KeyLocation::Cookie,
                    other => {
                        return Err(Error::Config(format!(
                            "rest_api: api_key location `{other}` is not header, query, param or cookie"
                        )));
                    }
                };
                Auth::ApiKey {
                    name: l.value("name", k.name.as_deref()).unwrap_or_else(|| "Authorization".into()),
                    key: l.secret("api_key", k.api_key.as_ref())?,
                    location,
                }
            }
            AuthConfig::HttpBasic(b) => {
                l.kind = "http_basic";
                Auth::Basic {
                    username: l.required("username", b.username.as_deref())?,
                    password: l.secret("password", b.password.as_ref())?,
                }
            }
            AuthConfig::OAuth2ClientCredentials(o) => {
                l.kind = "oauth2_client_credentials";
                Auth::OAuth2(OAuth2 {
                    url: l.required("access_token_url", o.access_token_url.as_deref())?,
                    client_id: l.secret("client_id", o.client_id.as_ref())?,
                    client_secret: l.secret("client_secret", o.client_secret.as_ref())?,
                    data: o.access_token_request_data.clone(),
                    default_expiry: o.default_token_expiration.unwrap_or(3600),
                    token: tokio::sync::Mutex::new(None),
                })
            }
        })
    }

    /// A query parameter whose value must be masked when a URL is shown.
    pub fn secret_query_param(&self) -> Option<&str> {
        match self {
            Auth::ApiKey { name, location: KeyLocation::Query, .. } => Some(name),
            _ => None,
        }
    }

    /// Add the credentials to a request.
    pub async fn apply(&self, req: RequestBuilder, client: &Client, resource: &str) -> Result<RequestBuilder> {
        Ok(match self {
            Auth::Bearer(t) => req.header(AUTHORIZATION, sensitive(&format!("Bearer {}", t.expose()), resource)?),
            Auth::ApiKey { name, key, location } => match location {
                KeyLocation::Header => req.header(name.as_str(), sensitive(key.expose(), resource)?),
                KeyLocation::Query => req.query(&[(name.as_str(), key.expose())]),
                KeyLocation::Cookie => req.header(COOKIE, sensitive(&format!("{name}={}", key.expose()), resource)?),
            },
            Auth::Basic { username, password } => req.basic_auth(username, Some(password.expose())),
            Auth::OAuth2(o) => {
                let token = o.token(client, resource).await?;
                req.header(AUTHORIZATION, sensitive(&format!("Bearer {}", token.expose()), resource)?)
            }
        })
    }

    /// After a 401: drop a cached OAuth2 token so the next attempt fetches a new one. Returns
    /// whether retrying can help (only for OAuth2).
    pub async fn invalidate(&self) -> bool {
        match self {
            Auth::OAuth2(o) => {
                *o.token.lock().await = None;
                true
            }
            _ => false,
        }
    }
}

fn sensitive(v: &str, resource: &str) -> Result<HeaderValue> {
    let mut h = HeaderValue::from_str(v).map_err(|_| Error::Source {
        resource: resource.to_string(),
        message: "a credential contains characters not allowed in an HTTP header".into(),
        transient: false,
    })?;
    h.set_sensitive(true);
    Ok(h)
}

impl OAuth2 {
    /// The cached token, fetched again when missing or about to expire.
    async fn token(&self, client: &Client, resource: &str) -> Result<Secret> {
        let mut guard = self.token.lock().await;
        if let Some((t, exp)) = guard.as_ref()
            && Instant::now() + Duration::from_secs(5) < *exp
        {
            return Ok(t.clone());
        }
        let mut form: Vec<(String, String)> = vec![("grant_type".into(), "client_credentials".into())];
        for (k, v) in &self.data {
            let v = crate::placeholder::value_text(v);
            match form.iter_mut().find(|(fk, _)| fk == k) {
                Some(slot) => slot.1 = v,
                None => form.push((k.clone(), v)),
            }
        }
        let err =
            |message: String, transient: bool| Error::Source { resource: resource.to_string(), message, transient };
        let resp = client
            .post(&self.url)
            .basic_auth(self.client_id.expose(), Some(self.client_secret.expose()))
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                err(
                    format!("OAuth2 token request to {} failed: {}", self.url, crate::client::describe_reqwest(&e)),
                    true,
                )
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(err(
                format!("OAuth2 token request to {} failed with HTTP {status}", self.url),
                status.is_server_error() || status.as_u16() == 429,
            ));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|e| err(format!("OAuth2 token response from {} is not JSON: {e}", self.url), false))?;
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("OAuth2 token response from {} has no `access_token`", self.url), false))?;
        let secs = match body.get("expires_in") {
            Some(Value::Number(n)) => n.as_f64().map(|f| f as u64),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(self.default_expiry);
        let t = Secret::new(token);
        *guard = Some((t.clone(), Instant::now() + Duration::from_secs(secs)));
        tracing::info!(url = %self.url, expires_in = secs, "fetched an OAuth2 access token");
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiKeyAuth, BearerAuth};

    #[test]
    fn provider_wins_and_missing_names_env_vars() {
        let providers =
            Config::from_parts(vec![("SOURCES__REST_API__CREDENTIALS__TOKEN".into(), "from-env".into())], None, None);
        let a = Auth::resolve(
            &AuthConfig::Bearer(BearerAuth { token: Some(Secret::new("inline")) }),
            &providers,
            &["sources", "rest_api", "posts"],
        )
        .unwrap();
        assert!(matches!(&a, Auth::Bearer(t) if t.expose() == "from-env"));
        assert!(!format!("{a:?}").contains("from-env"));
        let err = Auth::resolve(
            &AuthConfig::ApiKey(ApiKeyAuth::default()),
            &Config::from_parts(vec![], None, None),
            &["sources", "rest_api", "posts"],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("SOURCES__REST_API__POSTS__CREDENTIALS__API_KEY"), "{err}");
    }
}
