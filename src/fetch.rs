//! The one HTTP client, for key fetching and introspection alike: the URL
//! policy (https only, loopback excepted), discovery documents, conditional
//! GETs of JWK sets, form POSTs, a timeout, a body cap, and no redirect to
//! another host.

use std::fmt;
use std::time::Duration;

use reqwest::redirect;
use serde::Deserialize;
use url::Url;

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
    /// Too many introspection calls were in flight: no turn came within
    /// the fetch timeout.
    Busy,
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
            Self::Busy => f.write_str("too many calls in flight; none finished in time"),
        }
    }
}

impl std::error::Error for FetchError {}

/// `ETag` and `Last-Modified` of the last answer, for conditional requests.
#[derive(Debug, Clone, Default)]
pub(crate) struct Validators {
    etag: Option<http::HeaderValue>,
    last_modified: Option<http::HeaderValue>,
}

/// The outcome of a conditional GET.
pub(crate) enum Fetched {
    /// 304: the previous body is still current.
    NotModified { max_age: Option<Duration> },
    /// 200 with a body.
    Body {
        body: Vec<u8>,
        validators: Validators,
        max_age: Option<Duration>,
    },
}

/// The freshness lifetime the server gave: `Cache-Control: max-age` minus
/// `Age`; zero for `no-cache` / `no-store`; `None` when it said nothing.
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    for directive in headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let directive = directive.trim();
        if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store")
        {
            return Some(Duration::ZERO);
        }
        if let Some((name, value)) = directive.split_once('=')
            && name.trim().eq_ignore_ascii_case("max-age")
        {
            max_age = value
                .trim()
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    let age = headers
        .get(http::header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    max_age.map(|m| m.saturating_sub(age))
}

/// An HTTP client set up for fetching keys. Clones share one connection
/// pool: a validator makes one, for every issuer.
#[derive(Clone)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
    max_bytes: usize,
}

#[derive(Deserialize)]
struct RawMetadata {
    issuer: String,
    jwks_uri: Option<String>,
    introspection_endpoint: Option<String>,
}

/// What discovery tells: the endpoints this crate uses.
#[derive(Debug, Clone)]
pub(crate) struct Metadata {
    pub jwks_uri: Option<Url>,
    pub introspection_endpoint: Option<Url>,
}

impl Fetcher {
    /// Fails only when the TLS backend cannot be set up.
    pub(crate) fn new(timeout: Duration, max_bytes: usize) -> Result<Self, FetchError> {
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
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        Ok(Self { client, max_bytes })
    }

    /// GETs `url` and returns the body of a 200 answer, at most
    /// `max_bytes` long.
    pub(crate) async fn get(&self, url: &Url) -> Result<Vec<u8>, FetchError> {
        match self.get_conditional(url, &Validators::default()).await? {
            Fetched::Body { body, .. } => Ok(body),
            Fetched::NotModified { .. } => Err(FetchError::Status(304)),
        }
    }

    /// GETs `url`, sending `If-None-Match` / `If-Modified-Since` when the
    /// previous answer carried validators.
    pub(crate) async fn get_conditional(
        &self,
        url: &Url,
        prev: &Validators,
    ) -> Result<Fetched, FetchError> {
        let mut req = self
            .client
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json");
        if let Some(etag) = &prev.etag {
            req = req.header(http::header::IF_NONE_MATCH, etag.clone());
        }
        if let Some(modified) = &prev.last_modified {
            req = req.header(http::header::IF_MODIFIED_SINCE, modified.clone());
        }
        let res = req.send().await.map_err(transport)?;
        let max_age = max_age(res.headers());
        if res.status() == http::StatusCode::NOT_MODIFIED
            && (prev.etag.is_some() || prev.last_modified.is_some())
        {
            return Ok(Fetched::NotModified { max_age });
        }
        if res.status() != http::StatusCode::OK {
            return Err(FetchError::Status(res.status().as_u16()));
        }
        let validators = Validators {
            etag: res.headers().get(http::header::ETAG).cloned(),
            last_modified: res.headers().get(http::header::LAST_MODIFIED).cloned(),
        };
        let body = self.read_body(res).await?;
        Ok(Fetched::Body {
            body,
            validators,
            max_age,
        })
    }

    /// Finds the JWKS URL of `issuer`: OpenID discovery
    /// (`{issuer}/.well-known/openid-configuration`) first, then RFC 8414
    /// (`/.well-known/oauth-authorization-server{path}`). The document's
    /// `issuer` must equal the configured one exactly.
    pub(crate) async fn discover(
        &self,
        issuer: &Url,
        expected: &str,
    ) -> Result<Metadata, FetchError> {
        let oidc = well_known(issuer, "openid-configuration", false);
        let body = match self.get(&oidc).await {
            Ok(body) => body,
            Err(FetchError::Status(404)) => {
                self.get(&well_known(issuer, "oauth-authorization-server", true))
                    .await?
            }
            Err(e) => return Err(e),
        };
        metadata(&body, expected)
    }

    /// Finds the JWKS URL of a Shared Signals transmitter, from its
    /// `/.well-known/ssf-configuration{path}` (SSF 1.0 §7.2), whose
    /// `issuer` must equal `expected`.
    pub(crate) async fn discover_transmitter(
        &self,
        issuer: &Url,
        expected: &str,
    ) -> Result<Metadata, FetchError> {
        let body = self
            .get(&well_known(issuer, "ssf-configuration", true))
            .await?;
        metadata(&body, expected)
    }

    /// POSTs an `application/x-www-form-urlencoded` body, optionally with
    /// HTTP Basic client authentication (RFC 6749 §2.3.1: id and secret
    /// form-encoded first), and returns the body of a 200 answer.
    pub(crate) async fn post_form(
        &self,
        url: &Url,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<Vec<u8>, FetchError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .client
            .post(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        if let Some((id, secret)) = basic {
            use base64::Engine as _;
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(id),
                enc(secret)
            ));
            req = req.header(http::header::AUTHORIZATION, format!("Basic {credentials}"));
        }
        let res = req.send().await.map_err(transport)?;
        if res.status() != http::StatusCode::OK {
            return Err(FetchError::Status(res.status().as_u16()));
        }
        self.read_body(res).await
    }

    /// POSTs a JSON body with an `Authorization` value, and returns the
    /// body of a 200 answer.
    pub(crate) async fn post_json(
        &self,
        url: &Url,
        body: Vec<u8>,
        authorization: &http::HeaderValue,
    ) -> Result<Vec<u8>, FetchError> {
        let res = self
            .client
            .post(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::AUTHORIZATION, authorization.clone())
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        if res.status() != http::StatusCode::OK {
            return Err(FetchError::Status(res.status().as_u16()));
        }
        self.read_body(res).await
    }

    /// Reads a body of at most `max_bytes`, refusing early on a larger
    /// `Content-Length` and stopping as soon as a streamed body passes it.
    async fn read_body(&self, mut res: reqwest::Response) -> Result<Vec<u8>, FetchError> {
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
}

/// The endpoints of a metadata document naming `expected` as its issuer.
fn metadata(body: &[u8], expected: &str) -> Result<Metadata, FetchError> {
    let meta: RawMetadata =
        serde_json::from_slice(body).map_err(|e| FetchError::InvalidDocument(e.to_string()))?;
    if meta.issuer != expected {
        return Err(FetchError::IssuerMismatch);
    }
    let checked = |u: Option<String>| -> Result<Option<Url>, FetchError> {
        u.map(|u| acceptable_url(&u).ok_or(FetchError::InsecureUrl))
            .transpose()
    };
    Ok(Metadata {
        jwks_uri: checked(meta.jwks_uri)?,
        introspection_endpoint: checked(meta.introspection_endpoint)?,
    })
}

/// `s` as a URL, if it parses and the URL policy accepts it.
pub(crate) fn acceptable_url(s: &str) -> Option<Url> {
    Url::parse(s).ok().filter(is_acceptable_url)
}

/// The URL policy: https, or http on a loopback host (127.0.0.0/8, ::1,
/// localhost). Applied to every URL configured, found by discovery, or
/// redirected to.
pub(crate) fn is_acceptable_url(url: &Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// `url` as logs may show it: without userinfo, query or fragment, which
/// may carry credentials.
pub(crate) fn loggable(url: &Url) -> String {
    let mut url = url.clone();
    // Both fail only for URLs that cannot have userinfo, which have none.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.into()
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

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn max_age_is_read_from_cache_control_minus_age() {
        let secs = |pairs: &[(&str, &str)]| max_age(&headers(pairs)).map(|d| d.as_secs());
        assert_eq!(secs(&[]), None);
        assert_eq!(secs(&[("cache-control", "public, max-age=300")]), Some(300));
        assert_eq!(
            secs(&[("cache-control", "Max-Age=\"120\", must-revalidate")]),
            Some(120)
        );
        assert_eq!(
            secs(&[("cache-control", "max-age=300"), ("age", "100")]),
            Some(200)
        );
        assert_eq!(
            secs(&[("cache-control", "max-age=30"), ("age", "100")]),
            Some(0)
        );
        assert_eq!(secs(&[("cache-control", "no-store, max-age=300")]), Some(0));
        assert_eq!(
            secs(&[("cache-control", "public"), ("cache-control", "max-age=60")]),
            Some(60)
        );
        assert_eq!(secs(&[("cache-control", "max-age=soon")]), None);
    }

    #[test]
    fn logged_urls_carry_no_credentials() {
        let url = Url::parse("https://user:pa55@idp.example:8443/jwks?key=s3cret#frag").unwrap();
        assert_eq!(loggable(&url), "https://idp.example:8443/jwks");
    }

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
