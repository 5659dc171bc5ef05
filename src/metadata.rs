//! Protected resource metadata (RFC 9728): the document that tells a
//! client which authorization servers issue tokens for this API, and the
//! tower service that serves it. [`ProtectedResource`] is what the user
//! configures; the builder checks it and turns it, with what the
//! validator knows (issuers, DPoP, certificate binding), into a
//! [`ResourceMetadata`], whose URL every challenge names.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Map, Value};
use url::Url;

use crate::alg::Algorithm;
use crate::fetch::is_acceptable_url;

/// The well-known path of RFC 9728 §3, which the resource identifier's
/// path (if any) follows.
pub const WELL_KNOWN_PATH: &str = "/.well-known/oauth-protected-resource";

/// How long clients may reuse the document: 1 h.
pub const DEFAULT_METADATA_MAX_AGE: Duration = Duration::from_secs(3600);

/// The members this crate writes; [`ProtectedResource::member`] cannot
/// name them.
const OWN_MEMBERS: [&str; 11] = [
    "resource",
    "authorization_servers",
    "scopes_supported",
    "bearer_methods_supported",
    "dpop_signing_alg_values_supported",
    "dpop_bound_access_tokens_required",
    "tls_client_certificate_bound_access_tokens",
    "resource_name",
    "resource_documentation",
    "resource_policy_uri",
    "resource_tos_uri",
];

/// The protected resource metadata (RFC 9728) of this API, given to
/// [`Builder::protected_resource`](crate::Builder::protected_resource).
///
/// The resource identifier is the URL clients call, such as
/// `https://api.example.com` or `https://api.example.com/mcp`. It is
/// also the audience tokens must carry (RFC 8707: a client asks for a
/// token with `resource=<identifier>`), unless
/// [`audience`](crate::Builder::audience) says otherwise. The document
/// is served at the URL RFC 9728 §3.1 derives from it
/// ([`ResourceMetadata::path`]), so the two always match (§3.3), and
/// every challenge names that URL in `resource_metadata` (§5.1).
///
/// What the validator knows fills the rest: `authorization_servers` from
/// the trusted issuers (templates are left out: add a tenant's issuer with
/// [`authorization_server`](Self::authorization_server)), the DPoP
/// members from [`Dpop`](crate::Dpop), and
/// `tls_client_certificate_bound_access_tokens` from
/// [`client_certificate_header`](crate::Builder::client_certificate_header).
///
/// ```
/// use tower_bearer::{BearerAuthLayer, ProtectedResource};
///
/// let auth = BearerAuthLayer::builder()
///     .issuer("https://login.example.com")
///     .protected_resource(
///         ProtectedResource::new("https://api.example.com/mcp")
///             .scopes_supported(["mcp:tools"])
///             .name("Example MCP server"),
///     )
///     .build()?;
/// let metadata = auth.resource_metadata().expect("configured above");
/// assert_eq!(metadata.path(), "/.well-known/oauth-protected-resource/mcp");
/// # Ok::<(), tower_bearer::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ProtectedResource {
    resource: String,
    scopes: Vec<String>,
    authorization_servers: Vec<String>,
    name: Option<String>,
    documentation: Option<String>,
    policy_uri: Option<String>,
    tos_uri: Option<String>,
    certificate_bound: Option<bool>,
    members: Vec<(String, Value)>,
    max_age: Duration,
}

impl ProtectedResource {
    /// The metadata of the resource `resource`: an https URL (http only on
    /// a loopback host), in normal form (as [`url::Url`] writes it), with
    /// no query or fragment.
    pub fn new(resource: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            scopes: Vec::new(),
            authorization_servers: Vec::new(),
            name: None,
            documentation: None,
            policy_uri: None,
            tos_uri: None,
            certificate_bound: None,
            members: Vec::new(),
            max_age: DEFAULT_METADATA_MAX_AGE,
        }
    }

    /// `scopes_supported`: the scopes clients may ask for. Default: the
    /// member is left out.
    pub fn scopes_supported<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// One more entry of `authorization_servers`, after the trusted
    /// issuers: for an issuer template, the concrete issuer of a tenant.
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }

    /// `resource_name`: a name for people.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// `resource_documentation`: a URL of documentation for developers.
    pub fn documentation(mut self, url: impl Into<String>) -> Self {
        self.documentation = Some(url.into());
        self
    }

    /// `resource_policy_uri`: a URL of how the data is used.
    pub fn policy_uri(mut self, url: impl Into<String>) -> Self {
        self.policy_uri = Some(url.into());
        self
    }

    /// `resource_tos_uri`: a URL of the terms of service.
    pub fn tos_uri(mut self, url: impl Into<String>) -> Self {
        self.tos_uri = Some(url.into());
        self
    }

    /// `tls_client_certificate_bound_access_tokens` (RFC 8705). Default:
    /// true when a [`client_certificate_header`](crate::Builder::client_certificate_header)
    /// is set. Say `true` when your TLS server puts the
    /// [`ClientCertificate`](crate::ClientCertificate) into each request.
    pub fn certificate_bound_tokens(mut self, supported: bool) -> Self {
        self.certificate_bound = Some(supported);
        self
    }

    /// A member of your own (a registered one such as
    /// `authorization_details_types_supported`, or an extension). It
    /// cannot be one this crate writes; `build()` refuses that.
    pub fn member(mut self, name: impl Into<String>, value: Value) -> Self {
        self.members.push((name.into(), value));
        self
    }

    /// How long clients may cache the document (`Cache-Control:
    /// max-age`). Default: [`DEFAULT_METADATA_MAX_AGE`]; at most 365 days.
    pub fn cache_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The resource identifier, once checked.
    pub(crate) fn resource(&self) -> Result<&str, &'static str> {
        resource_url(&self.resource).map(|_| self.resource.as_str())
    }

    /// The document, checked: `issuers` are the trusted issuers' ids,
    /// `dpop` the proof algorithms and whether DPoP is required (`None`:
    /// off), `certificate_header` whether a proxy passes certificates on,
    /// `origin` the public origin configured for DPoP.
    pub(crate) fn build(
        &self,
        issuers: &[&str],
        dpop: Option<(&[Algorithm], bool)>,
        certificate_header: bool,
        origin: Option<&Url>,
    ) -> Result<ResourceMetadata, &'static str> {
        let url = resource_url(&self.resource)?;
        if origin.is_some_and(|o| o.origin() != url.origin()) {
            return Err(
                "the protected resource is not on the public_origin this API is reached at",
            );
        }
        let mut doc = Map::new();
        doc.insert("resource".into(), self.resource.clone().into());
        let mut servers: Vec<&str> = Vec::new();
        for iss in issuers
            .iter()
            .copied()
            .chain(self.authorization_servers.iter().map(String::as_str))
        {
            if !Url::parse(iss).is_ok_and(|u| is_acceptable_url(&u)) {
                return Err("an authorization server is not an https URL (http only on loopback)");
            }
            if !servers.contains(&iss) {
                servers.push(iss);
            }
        }
        if !servers.is_empty() {
            doc.insert("authorization_servers".into(), servers.into());
        }
        if self.scopes.iter().any(|s| !is_scope_token(s)) {
            return Err("a supported scope is empty or has characters a scope cannot have");
        }
        if !self.scopes.is_empty() {
            doc.insert("scopes_supported".into(), self.scopes.clone().into());
        }
        doc.insert("bearer_methods_supported".into(), vec!["header"].into());
        if let Some((algs, required)) = dpop {
            let names: Vec<&str> = algs.iter().map(|a| a.as_str()).collect();
            doc.insert("dpop_signing_alg_values_supported".into(), names.into());
            doc.insert("dpop_bound_access_tokens_required".into(), required.into());
        }
        let certificate_bound = self.certificate_bound.unwrap_or(certificate_header);
        if certificate_bound {
            doc.insert(
                "tls_client_certificate_bound_access_tokens".into(),
                true.into(),
            );
        }
        if let Some(name) = &self.name {
            if name.trim().is_empty() {
                return Err("resource_name must not be empty");
            }
            doc.insert("resource_name".into(), name.clone().into());
        }
        for (member, value) in [
            ("resource_documentation", &self.documentation),
            ("resource_policy_uri", &self.policy_uri),
            ("resource_tos_uri", &self.tos_uri),
        ] {
            if let Some(value) = value {
                if !Url::parse(value).is_ok_and(|u| matches!(u.scheme(), "https" | "http")) {
                    return Err(
                        "resource_documentation, resource_policy_uri and resource_tos_uri are http(s) URLs",
                    );
                }
                doc.insert(member.into(), value.clone().into());
            }
        }
        for (name, value) in &self.members {
            if name.is_empty() || OWN_MEMBERS.contains(&name.as_str()) || doc.contains_key(name) {
                return Err("an additional member is empty, repeated, or one this crate writes");
            }
            doc.insert(name.clone(), value.clone());
        }
        if self.max_age > Duration::from_secs(365 * 24 * 3600) {
            return Err("the metadata cache_max_age is at most 365 days");
        }
        let cache_control =
            HeaderValue::from_str(&format!("public, max-age={}", self.max_age.as_secs()))
                .map_err(|_| "the metadata cache_max_age is at most 365 days")?;
        let path = metadata_path(&url);
        let mut full = url.clone();
        full.set_path(&path);
        let body = serde_json::to_string(&doc)
            .map_err(|_| "an additional member cannot be written as JSON")?;
        Ok(ResourceMetadata {
            doc: Arc::new(Document {
                url: full.as_str().into(),
                path: path.into(),
                body: body.into(),
                cache_control,
            }),
        })
    }
}

/// The resource identifier, parsed: https (http on loopback), no query,
/// fragment or userinfo, written as `Url` writes it (a bare origin may
/// leave off its `/`).
fn resource_url(resource: &str) -> Result<Url, &'static str> {
    const WHY: &str = "the protected resource is an https URL (http only on loopback) in normal form, without query, fragment or userinfo";
    let url = Url::parse(resource).map_err(|_| WHY)?;
    let normal = url.as_str() == resource
        || (url.path() == "/" && url.as_str().strip_suffix('/') == Some(resource));
    if !is_acceptable_url(&url)
        || !normal
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(WHY);
    }
    Ok(url)
}

/// RFC 9728 §3.1: the well-known path between the host and the
/// resource's path, whose root `/` is dropped.
fn metadata_path(resource: &Url) -> String {
    match resource.path() {
        "/" => WELL_KNOWN_PATH.to_owned(),
        path => format!("{WELL_KNOWN_PATH}{path}"),
    }
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// The tower service that serves this API's protected resource metadata:
/// `GET` (any query) and `HEAD` get the JSON document with
/// `Cache-Control`, other methods 405. Mount it outside the
/// authentication layer, at [`path`](Self::path):
///
/// ```
/// # #[cfg(feature = "axum")] {
/// # fn app(auth: tower_bearer::BearerAuthLayer) -> Option<axum::Router> {
/// use axum::{Router, routing::post};
///
/// let metadata = auth.resource_metadata()?;
/// let app = Router::new()
///     .route("/mcp", post(|| async { "…" }))
///     .layer(auth)
///     // Added after the layer: not behind it.
///     .route_service(metadata.path(), metadata.clone());
/// # Some(app) }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ResourceMetadata {
    doc: Arc<Document>,
}

#[derive(Debug)]
struct Document {
    url: Box<str>,
    path: Box<str>,
    body: Box<str>,
    cache_control: HeaderValue,
}

impl ResourceMetadata {
    /// The path to serve the document at: RFC 9728's well-known path,
    /// followed by the resource identifier's path, if it has one.
    pub fn path(&self) -> &str {
        &self.doc.path
    }

    /// The document's URL, as challenges name it in `resource_metadata`.
    pub fn url(&self) -> &str {
        &self.doc.url
    }

    /// The document itself, JSON.
    pub fn json(&self) -> &str {
        &self.doc.body
    }

    fn answer(&self, method: &Method) -> Response<String> {
        if let Some(refused) = refuse_unless_get(method) {
            return refused;
        }
        let mut res = Response::new(String::new());
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, self.doc.cache_control.clone());
        // A public document, which browser-based clients read too.
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        *res.body_mut() = self.doc.body.to_string();
        res
    }
}

/// 405 with `Allow: GET, HEAD` for any other method than those two.
pub(crate) fn refuse_unless_get(method: &Method) -> Option<Response<String>> {
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    let mut res = Response::new(String::new());
    *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    Some(res)
}

/// The tower `Service` of a document service, whose
/// `answer(&self, &Method) -> Response<String>` is ready at once.
macro_rules! document_service {
    ($service:ty) => {
        impl<B> tower_service::Service<http::Request<B>> for $service {
            type Response = http::Response<String>;
            type Error = std::convert::Infallible;
            type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

            fn poll_ready(
                &mut self,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), Self::Error>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn call(&mut self, req: http::Request<B>) -> Self::Future {
                std::future::ready(Ok(self.answer(req.method())))
            }
        }
    };
}
pub(crate) use document_service;

document_service!(ResourceMetadata);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_well_known_path_goes_between_host_and_path() {
        let path = |r: &str| metadata_path(&resource_url(r).unwrap());
        assert_eq!(path("https://api.example.com"), WELL_KNOWN_PATH);
        assert_eq!(path("https://api.example.com/"), WELL_KNOWN_PATH);
        assert_eq!(
            path("https://api.example.com/mcp"),
            "/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            path("https://api.example.com/v1/mcp/"),
            "/.well-known/oauth-protected-resource/v1/mcp/"
        );
    }

    #[test]
    fn a_resource_identifier_is_an_https_url_in_normal_form() {
        for bad in [
            "api.example.com",
            "http://api.example.com",
            "https://api.example.com/a?x=1",
            "https://api.example.com/a#f",
            "https://user@api.example.com/",
            "HTTPS://api.example.com/",
            "https://api.example.com:443/",
            "https://api.example.com/a/../b",
            "",
        ] {
            assert!(resource_url(bad).is_err(), "{bad}");
        }
        for good in [
            "https://api.example.com",
            "https://api.example.com/",
            "https://api.example.com:8443/mcp",
            "http://127.0.0.1:3000/mcp",
            "http://localhost/",
        ] {
            assert!(resource_url(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn scope_tokens_follow_rfc_6749() {
        assert!(is_scope_token("mcp:tools"));
        assert!(is_scope_token("https://graph.example.com/read"));
        for bad in ["", "a b", "a\"b", "a\\b", "é"] {
            assert!(!is_scope_token(bad), "{bad}");
        }
    }
}
