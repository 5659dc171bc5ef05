//! Fetching discovery documents and JWK sets: https only (loopback
//! excepted), a timeout, a body cap, and no redirect to another host.

use std::fmt;
use std::time::Duration;

use reqwest::redirect;
use serde::Deserialize;
use url::Url;

use crate::config::{ConfigError, is_acceptable_url};

/// Why fetching keys failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchError {
    /// Connection, TLS or timeout failure.
    Transport(String),
    /// A status other than 200.
    Status(u16),
    /// The body is larger than the configured cap.
    TooLarge,
    /// The body is not the expected JSON document.
    InvalidDocument(String),
    /// The discovery document's `issuer` differs from the configured issuer
    /// (RFC 8414 §3.3).
    IssuerMismatch,
    /// A URL in the discovery document is not https (nor loopback).
    InsecureUrl,
    /// The JWK set holds no key usable with the allowed algorithms.
    NoUsableKeys,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "request failed: {e}"),
            Self::Status(s) => write!(f, "unexpected HTTP status {s}"),
            Self::TooLarge => f.write_str("response body exceeds the size limit"),
            Self::InvalidDocument(e) => write!(f, "invalid document: {e}"),
            Self::IssuerMismatch => f.write_str("discovery document names another issuer"),
            Self::InsecureUrl => f.write_str("discovery document names a non-https URL"),
            Self::NoUsableKeys => f.write_str("the JWK set holds no usable key"),
        }
    }
}

impl std::error::Error for FetchError {}

/// An HTTP client set up for fetching keys.
pub(crate) struct Fetcher {
    client: reqwest::Client,
    max_bytes: usize,
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: Option<String>,
}

impl Fetcher {
    pub(crate) fn new(timeout: Duration, max_bytes: usize) -> Result<Self, ConfigError> {
        let policy = redirect::Policy::custom(|attempt| {
            let same_host = attempt
                .previous()
                .first()
                .is_some_and(|first| first.host_str() == attempt.url().host_str());
            if attempt.previous().len() > 3 || !same_host || !is_acceptable_url(attempt.url()) {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(policy)
            .user_agent(concat!("tower-bearer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        Ok(Self { client, max_bytes })
    }

    /// GETs `url` and returns the body of a 200 answer, at most
    /// `max_bytes` long.
    pub(crate) async fn get(&self, url: &Url) -> Result<Vec<u8>, FetchError> {
        let mut res = self
            .client
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport)?;
        if res.status() != http::StatusCode::OK {
            return Err(FetchError::Status(res.status().as_u16()));
        }
        if res
            .content_length()
            .is_some_and(|len| len > self.max_bytes as u64)
        {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Finds the JWKS URL of `issuer`: OpenID discovery
    /// (`{issuer}/.well-known/openid-configuration`) first, then RFC 8414
    /// (`/.well-known/oauth-authorization-server{path}`). The document's
    /// `issuer` must equal the configured one exactly.
    pub(crate) async fn discover(&self, issuer: &Url, expected: &str) -> Result<Url, FetchError> {
        let oidc = well_known(issuer, "openid-configuration", false);
        let body = match self.get(&oidc).await {
            Ok(body) => body,
            Err(FetchError::Status(404)) => {
                self.get(&well_known(issuer, "oauth-authorization-server", true))
                    .await?
            }
            Err(e) => return Err(e),
        };
        let meta: Metadata = serde_json::from_slice(&body)
            .map_err(|e| FetchError::InvalidDocument(e.to_string()))?;
        if meta.issuer != expected {
            return Err(FetchError::IssuerMismatch);
        }
        let jwks_uri = meta
            .jwks_uri
            .ok_or_else(|| FetchError::InvalidDocument("no jwks_uri".into()))?;
        let url = Url::parse(&jwks_uri).map_err(|_| FetchError::InsecureUrl)?;
        if !is_acceptable_url(&url) {
            return Err(FetchError::InsecureUrl);
        }
        Ok(url)
    }
}

fn transport(e: reqwest::Error) -> FetchError {
    // Without the URL: it is logged separately, and errors may be shown.
    FetchError::Transport(e.without_url().to_string())
}

/// `{issuer}/.well-known/{name}` (OpenID Connect Discovery §4), or with
/// `insert_path` the RFC 8414 §3.1 form that puts the issuer's path after
/// the well-known segment.
fn well_known(issuer: &Url, name: &str, insert_path: bool) -> Url {
    let mut url = issuer.clone();
    let path = issuer.path().trim_end_matches('/');
    if insert_path {
        url.set_path(&format!("/.well-known/{name}{path}"));
    } else {
        url.set_path(&format!("{path}/.well-known/{name}"));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls_follow_both_specs() {
        let iss = Url::parse("https://idp.example/realms/acme").unwrap();
        assert_eq!(
            well_known(&iss, "openid-configuration", false).as_str(),
            "https://idp.example/realms/acme/.well-known/openid-configuration"
        );
        assert_eq!(
            well_known(&iss, "oauth-authorization-server", true).as_str(),
            "https://idp.example/.well-known/oauth-authorization-server/realms/acme"
        );
        let root = Url::parse("https://idp.example/").unwrap();
        assert_eq!(
            well_known(&root, "openid-configuration", false).as_str(),
            "https://idp.example/.well-known/openid-configuration"
        );
    }
}
