//! [`AuthError`] and its mapping to RFC 6750 responses.
//!
//! Every failure of the pipeline is one variant, so callers can match on it
//! and each transport (HTTP, gRPC) can map it. Descriptions are fixed
//! strings written by this crate: they never contain the token or anything
//! else taken from the request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No bearer credentials at all (or another scheme, such as `Basic`).
    /// Answered with 401 and a `WWW-Authenticate: Bearer` challenge that
    /// carries no error code (RFC 6750 §3.1).
    MissingToken,
    /// The request itself is malformed: 400 `invalid_request`.
    InvalidRequest(RequestError),
    /// The token was presented but is not acceptable: 401 `invalid_token`.
    InvalidToken(TokenError),
    /// The token is valid but lacks scopes this route needs: 403
    /// `insufficient_scope`.
    InsufficientScope(ScopePolicy),
    /// The token is valid but a route rule refused it: it lacks a role
    /// ([`BearerAuthLayer::require_all_roles`]), or your predicate
    /// ([`BearerAuthLayer::require`]) said no. 403 `insufficient_scope`,
    /// RFC 6750's only error code for insufficient privileges, with the
    /// rule's fixed description and no `scope` parameter.
    ///
    /// [`BearerAuthLayer::require_all_roles`]: crate::BearerAuthLayer::require_all_roles
    /// [`BearerAuthLayer::require`]: crate::BearerAuthLayer::require
    Forbidden(Refusal),
    /// The token is valid but the user's authentication is not strong or
    /// recent enough for this route (RFC 9470): 401
    /// `insufficient_user_authentication`, with the `acr_values` and
    /// `max_age` the route needs in the challenge and the body, so the
    /// client can have the user authenticate again and retry.
    InsufficientUserAuthentication(StepUp),
    /// The DPoP proof (RFC 9449) is missing, malformed, for another
    /// request, replayed, or made with another key than the token's: 401
    /// `invalid_dpop_proof`, in a `DPoP` challenge.
    InvalidDpopProof(ProofError),
    /// Server nonces are on and the DPoP proof lacks the current one: 401
    /// `use_dpop_nonce`, with the nonce to use in the `DPoP-Nonce` header
    /// (RFC 9449 §8). The client retries with it.
    UseDpopNonce,
    /// The token cannot be checked right now — the issuer's keys could not
    /// be fetched, or the introspection endpoint did not answer: 503 with
    /// `Retry-After`. Never turned into a success.
    TemporarilyUnavailable {
        /// When the next attempt to fetch keys may happen.
        retry_after: Duration,
    },
}

/// What was wrong with the request's credentials, as opposed to the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// More than one `Authorization` header.
    MultipleAuthorizationHeaders,
    /// `Authorization: Bearer` with nothing after it.
    EmptyBearerToken,
    /// A bearer credential that is not RFC 6750 `b64token` syntax, or a
    /// header that is not visible ASCII.
    MalformedCredentials,
}

/// Why a presented token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Longer than the configured maximum; refused before any decoding.
    TooLarge,
    /// Not a compact JWS: wrong number of segments, bad base64url, or JSON
    /// that does not parse.
    Malformed,
    /// A five-part JWE; encrypted access tokens are not supported.
    Encrypted,
    /// JSON nested deeper than allowed, or more entries than allowed.
    LimitExceeded(&'static str),
    /// `alg` is not on the allow-list (this includes `none`).
    AlgorithmNotAllowed,
    /// The header names a key source this crate never trusts (`jwk`, `jku`,
    /// `x5u`).
    UntrustedKeySource(&'static str),
    /// `crit` lists an extension this crate does not understand, or `b64`
    /// is false.
    UnsupportedExtension,
    /// `typ` is not one the configured policy accepts.
    WrongType,
    /// No key with this `kid` (after a refetch, if one was allowed).
    UnknownKey,
    /// A key exists under this `kid` but cannot be used with the token's
    /// `alg` (other key type or curve, or the JWK's own `alg` differs).
    KeyAlgorithmMismatch,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is in the past, beyond the leeway.
    Expired,
    /// `nbf` is in the future, beyond the leeway; or, with a maximum token
    /// age, `iat` is.
    NotYetValid,
    /// `iat` is older than the configured maximum token age.
    TooOld,
    /// The token was revoked: by the revocation hook, or the authorization
    /// server's introspection answered `active: false`.
    Revoked,
    /// A required claim is absent.
    MissingClaim(Arc<str>),
    /// A claim has the wrong JSON type or an impossible value.
    InvalidClaim(&'static str),
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    WrongAudience,
    /// The token is bound to a DPoP key (`cnf.jkt`) and came with the
    /// `Bearer` scheme: it needs the `DPoP` scheme and a proof.
    DpopBound,
    /// The token came with the `DPoP` scheme but is not bound to a DPoP
    /// key.
    NotDpopBound,
    /// A bearer token where DPoP is required (by the validator, or by a
    /// [`require_dpop`](crate::BearerAuthLayer::require_dpop) route).
    DpopRequired,
    /// The token is bound to a TLS client certificate (`cnf["x5t#S256"]`,
    /// RFC 8705) and the request came without that certificate.
    CertificateMismatch,
    /// A rule refused the token: your
    /// [`claims_validator`](crate::Builder::claims_validator), the
    /// [`allowed_clients`](crate::Builder::allowed_clients) list, or a
    /// `require_active` route given a token whose issuer does not
    /// introspect. Answered with the rule's fixed description. (A tenant
    /// claim that does not match the tenant of `iss` is
    /// [`WrongIssuer`](Self::WrongIssuer).)
    Refused(Refusal),
}

/// Why one of your rules refused a token: a fixed description, sent to the
/// client as `error_description`. It is a `&'static str` so that it cannot
/// carry anything taken from the token or the request.
///
/// ```
/// use tower_bearer::Refusal;
/// const NOT_A_PARTNER: Refusal = Refusal::new("the token's tenant is not a partner");
/// assert_eq!(NOT_A_PARTNER.description(), "the token's tenant is not a partner");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(&'static str);

impl Refusal {
    /// A refusal with this description. One that could not go into a
    /// quoted header parameter (quotes, backslashes, characters outside
    /// visible ASCII) or is empty is replaced by
    /// `"the token is not accepted here"`.
    pub const fn new(description: &'static str) -> Self {
        let b = description.as_bytes();
        let mut ok = !b.is_empty();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if !(c == b' ' || c.is_ascii_graphic()) || c == b'"' || c == b'\\' {
                ok = false;
            }
            i += 1;
        }
        Self(if ok {
            description
        } else {
            "the token is not accepted here"
        })
    }

    /// The description sent to the client.
    pub const fn description(&self) -> &'static str {
        self.0
    }
}

/// Why a DPoP proof was refused: a fixed description, sent to the client
/// as the `error_description` of `invalid_dpop_proof`. Never anything
/// taken from the proof or the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofError(pub(crate) &'static str);

impl ProofError {
    /// The description sent to the client.
    pub const fn description(&self) -> &'static str {
        self.0
    }
}

/// The user authentication a route requires (RFC 9470): an `acr` from a
/// list, an `auth_time` no older than a maximum age, or both. A token
/// without the claim does not meet it. Route layers check it
/// ([`BearerAuthLayer::require_step_up`](crate::BearerAuthLayer::require_step_up));
/// [`AuthError::InsufficientUserAuthentication`] carries it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepUp {
    acr_values: Arc<[Box<str>]>,
    max_age: Option<Duration>,
}

impl StepUp {
    /// An `acr` among `values` (exact match). An empty list asks nothing.
    pub fn acr_values<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::default().and_acr_values(values)
    }

    /// An `auth_time` at most `max_age` ago.
    pub fn max_age(max_age: Duration) -> Self {
        Self::default().and_max_age(max_age)
    }

    /// This, and an `acr` among `values`.
    pub fn and_acr_values<I, S>(mut self, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.acr_values = values
            .into_iter()
            .map(|s| s.into().into_boxed_str())
            .collect();
        self
    }

    /// This, and an `auth_time` at most `max_age` ago.
    pub fn and_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// The `acr` values the route accepts; empty when it asks none.
    pub fn acr(&self) -> impl Iterator<Item = &str> {
        self.acr_values.iter().map(|s| &**s)
    }

    /// The oldest `auth_time` the route accepts, as an age.
    pub fn oldest(&self) -> Option<Duration> {
        self.max_age
    }

    /// The challenge parameters RFC 9470 §3 names: `acr_values`
    /// (space-separated) and `max_age` (seconds).
    fn params(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        let acr = (!self.acr_values.is_empty()).then(|| ("acr_values", self.acr_values.join(" ")));
        let age = self.max_age.map(|m| ("max_age", m.as_secs().to_string()));
        acr.into_iter().chain(age)
    }

    /// Whether claims with this `acr` and `auth_time` meet it at `now`
    /// (Unix seconds).
    pub(crate) fn is_met(&self, acr: Option<&str>, auth_time: Option<i64>, now: i64) -> bool {
        let acr_ok = self.acr_values.is_empty()
            || acr.is_some_and(|a| self.acr_values.iter().any(|v| **v == *a));
        let age_ok = self.max_age.is_none_or(|max| {
            auth_time
                .is_some_and(|t| u64::try_from(now.saturating_sub(t)).unwrap_or(0) <= max.as_secs())
        });
        acr_ok && age_ok
    }
}

/// Scopes a route requires: all of a list, or any one of it. Route layers
/// check it; [`AuthError::InsufficientScope`] carries it, and its
/// challenge names the scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePolicy {
    scopes: Arc<[Box<str>]>,
    any_of: bool,
}

impl ScopePolicy {
    /// Every one of `scopes` is required.
    pub fn all<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(scopes, false)
    }

    /// At least one of `scopes` is required.
    pub fn any<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(scopes, true)
    }

    fn new<I, S>(scopes: I, any_of: bool) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            scopes: scopes
                .into_iter()
                .map(|s| s.into().into_boxed_str())
                .collect(),
            any_of,
        }
    }

    /// The scopes the policy names.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().map(|s| &**s)
    }

    /// `true` when any one of the scopes suffices, `false` when all are
    /// needed.
    pub fn is_any_of(&self) -> bool {
        self.any_of
    }
}

/// How a refusal is answered: as HTTP (RFC 6750) or as gRPC, and in
/// whose challenge its error goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Protocol {
    pub(crate) grpc: bool,
    /// The credentials came with the `DPoP` scheme.
    pub(crate) dpop: bool,
}

impl Protocol {
    /// gRPC when the request says `content-type: application/grpc…` (this
    /// includes `application/grpc+proto` and gRPC-Web).
    pub(crate) fn of(headers: &http::HeaderMap) -> Self {
        let grpc = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let dpop = headers.get(header::AUTHORIZATION).is_some_and(|v| {
            v.as_bytes()
                .get(..5)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"DPoP "))
        });
        Self { grpc, dpop }
    }
}

/// What every challenge of a validator carries besides the error: its
/// realm, and the URL of its protected resource metadata (RFC 9728 §5.1).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Challenge<'a> {
    pub(crate) realm: Option<&'a str>,
    pub(crate) resource_metadata: Option<&'a str>,
}

impl<'a> Challenge<'a> {
    fn realm(realm: Option<&'a str>) -> Self {
        Self {
            realm,
            resource_metadata: None,
        }
    }
}

impl AuthError {
    /// The gRPC status code this error is answered with: 16
    /// `UNAUTHENTICATED` for missing or invalid credentials, 7
    /// `PERMISSION_DENIED` for a missing scope, 14 `UNAVAILABLE` when the
    /// token cannot be checked now.
    pub fn grpc_code(&self) -> u8 {
        match self {
            Self::MissingToken
            | Self::InvalidRequest(_)
            | Self::InvalidToken(_)
            | Self::InvalidDpopProof(_)
            | Self::UseDpopNonce
            | Self::InsufficientUserAuthentication(_) => 16,
            Self::InsufficientScope(_) | Self::Forbidden(_) => 7,
            Self::TemporarilyUnavailable { .. } => 14,
        }
    }

    /// The gRPC answer: HTTP 200 with a trailers-only response —
    /// `grpc-status`, a percent-encoded `grpc-message` saying why (never
    /// the token), the RFC 6750 challenge as `www-authenticate` metadata,
    /// `cache-control: no-store` — and no body, so the layer sends it as a
    /// single HEADERS frame that ends the stream.
    pub fn to_grpc_response(&self, realm: Option<&str>) -> Response<Bytes> {
        self.grpc_response(Challenge::realm(realm))
    }

    fn grpc_response(&self, challenge: Challenge<'_>) -> Response<Bytes> {
        let mut res = Response::new(Bytes::new());
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(
            "grpc-status",
            HeaderValue::from(u16::from(self.grpc_code())),
        );
        let message = self.description().unwrap_or("a bearer token is required");
        if let Ok(v) = HeaderValue::from_str(&percent_encode(message)) {
            headers.insert("grpc-message", v);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(value) = self.bearer_challenge(challenge) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        res
    }

    pub(crate) fn respond(&self, challenge: Challenge<'_>, protocol: Protocol) -> Response<Bytes> {
        if protocol.grpc {
            self.grpc_response(challenge)
        } else {
            self.response(challenge)
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken
            | Self::InvalidToken(_)
            | Self::InvalidDpopProof(_)
            | Self::UseDpopNonce
            | Self::InsufficientUserAuthentication(_) => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::InsufficientScope(_) | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TemporarilyUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The RFC 6750 error code, if this error carries one.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::MissingToken => None,
            Self::InvalidRequest(_) => Some("invalid_request"),
            Self::InvalidToken(_) => Some("invalid_token"),
            Self::InsufficientScope(_) | Self::Forbidden(_) => Some("insufficient_scope"),
            Self::InvalidDpopProof(_) => Some("invalid_dpop_proof"),
            Self::UseDpopNonce => Some("use_dpop_nonce"),
            Self::InsufficientUserAuthentication(_) => Some("insufficient_user_authentication"),
            Self::TemporarilyUnavailable { .. } => Some("temporarily_unavailable"),
        }
    }

    /// A short, client-safe explanation. Never contains request data.
    pub fn description(&self) -> Option<&str> {
        Some(match self {
            Self::MissingToken => return None,
            Self::InvalidRequest(e) => e.description(),
            Self::InvalidToken(e) => e.description(),
            Self::InsufficientScope(r) if r.any_of => {
                "the token lacks all of the scopes that allow this request"
            }
            Self::InsufficientScope(_) => "the token lacks a scope this request needs",
            Self::Forbidden(r) => r.description(),
            Self::InvalidDpopProof(e) => e.description(),
            Self::UseDpopNonce => "the DPoP proof must carry the server's current nonce",
            Self::InsufficientUserAuthentication(_) => {
                "the user's authentication is not strong or recent enough for this request"
            }
            Self::TemporarilyUnavailable { .. } => {
                "the token cannot be checked right now; retry later"
            }
        })
    }

    /// The `WWW-Authenticate` challenge for this error (RFC 6750 §3), or
    /// `None` for errors that are not about the credentials.
    pub fn www_authenticate(&self, realm: Option<&str>) -> Option<HeaderValue> {
        self.bearer_challenge(Challenge::realm(realm))
    }

    fn bearer_challenge(&self, challenge: Challenge<'_>) -> Option<HeaderValue> {
        if matches!(self, Self::TemporarilyUnavailable { .. }) {
            return None;
        }
        Some(self.challenge("Bearer", challenge, true, None))
    }

    /// The challenge of `scheme` (`Bearer` or `DPoP`), with this error's
    /// parameters when `with_error`, and DPoP's `algs` when given.
    pub(crate) fn challenge(
        &self,
        scheme: &'static str,
        challenge: Challenge<'_>,
        with_error: bool,
        algs: Option<&str>,
    ) -> HeaderValue {
        let mut params: Vec<String> = Vec::with_capacity(6);
        if let Some(realm) = challenge.realm {
            params.push(format!("realm=\"{realm}\""));
        }
        if let Some(url) = challenge.resource_metadata {
            params.push(format!("resource_metadata=\"{url}\""));
        }
        if with_error {
            if let Some(code) = self.error_code() {
                params.push(format!("error=\"{code}\""));
            }
            if let Some(desc) = self.description() {
                params.push(format!("error_description=\"{desc}\""));
            }
            if let Self::InsufficientScope(req) = self {
                let scopes = req
                    .scopes
                    .join(" ")
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"");
                params.push(format!("scope=\"{scopes}\""));
            }
            if let Self::InsufficientUserAuthentication(step_up) = self {
                params.extend(step_up.params().map(|(name, value)| {
                    let value = value.replace('\\', "\\\\").replace('"', "\\\"");
                    format!("{name}=\"{value}\"")
                }));
            }
        }
        if let Some(algs) = algs {
            params.push(format!("algs=\"{algs}\""));
        }
        let value = if params.is_empty() {
            scheme.to_owned()
        } else {
            format!("{scheme} {}", params.join(", "))
        };
        // Every part is a fixed string, the realm (checked by the builder),
        // the metadata URL (a URL as `Url` writes it: no quotes), algorithm names or escaped scopes; a scope with control
        // characters would make this fail, and then the bare scheme is sent.
        HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(scheme))
    }

    /// The default HTTP response: status, `WWW-Authenticate` (or
    /// `Retry-After` for 503), `Cache-Control: no-store`, and a small JSON
    /// body with the same fields as the challenge.
    pub fn to_response(&self, realm: Option<&str>) -> Response<Bytes> {
        self.response(Challenge::realm(realm))
    }

    fn response(&self, challenge: Challenge<'_>) -> Response<Bytes> {
        let mut body = serde_json::Map::new();
        if let Some(code) = self.error_code() {
            body.insert("error".into(), code.into());
        }
        if let Some(desc) = self.description() {
            body.insert("error_description".into(), desc.into());
        }
        if let Self::InsufficientScope(req) = self {
            body.insert("scope".into(), req.scopes.join(" ").into());
        }
        if let Self::InsufficientUserAuthentication(step_up) = self {
            if !step_up.acr_values.is_empty() {
                body.insert("acr_values".into(), step_up.acr_values.join(" ").into());
            }
            if let Some(max) = step_up.max_age {
                body.insert("max_age".into(), max.as_secs().into());
            }
        }
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut res = Response::new(Bytes::from(body));
        *res.status_mut() = self.status();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(value) = self.bearer_challenge(challenge) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Self::TemporarilyUnavailable { retry_after } = self {
            // Whole seconds, rounded up, at least 1 (RFC 9110 §10.2.3).
            let secs = retry_after
                .as_secs()
                .saturating_add(u64::from(retry_after.subsec_nanos() > 0));
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        res
    }
}

/// gRPC's percent-encoding of `grpc-message`: bytes outside printable
/// ASCII, and `%`, as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl RequestError {
    fn description(&self) -> &'static str {
        match self {
            Self::MultipleAuthorizationHeaders => {
                "the request has more than one Authorization header"
            }
            Self::EmptyBearerToken => "the Bearer credentials are empty",
            Self::MalformedCredentials => "the Bearer credentials are malformed",
        }
    }
}

impl TokenError {
    /// A short, client-safe explanation.
    pub fn description(&self) -> &str {
        match self {
            Self::TooLarge => "the token is too large",
            Self::Malformed => "the token is not a well-formed JWT",
            Self::Encrypted => "encrypted tokens are not accepted",
            Self::LimitExceeded(_) => "the token exceeds a structural limit",
            Self::AlgorithmNotAllowed => "the token's signing algorithm is not accepted",
            Self::UntrustedKeySource(_) => "the token names a key source that is not trusted",
            Self::UnsupportedExtension => "the token uses an unsupported JWS extension",
            Self::WrongType => "the token type is not accepted",
            Self::UnknownKey => "the token was signed with an unknown key",
            Self::KeyAlgorithmMismatch => "the token's algorithm does not match its key",
            Self::BadSignature => "the token signature is invalid",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::TooOld => "the token is too old",
            Self::Revoked => "the token has been revoked or is no longer active",
            Self::MissingClaim(_) => "the token lacks a required claim",
            Self::InvalidClaim(_) => "the token has a malformed claim",
            Self::WrongIssuer => "the token was issued by an untrusted issuer",
            Self::WrongAudience => "the token is not meant for this audience",
            Self::DpopBound => {
                "the token is bound to a DPoP key: send it with the DPoP scheme and a proof"
            }
            Self::NotDpopBound => "the token sent with the DPoP scheme is not bound to a DPoP key",
            Self::DpopRequired => "this request needs a DPoP-bound token",
            Self::CertificateMismatch => {
                "the token is bound to a TLS client certificate this request did not present"
            }
            Self::Refused(r) => r.description(),
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingToken => f.write_str("no bearer token"),
            Self::InvalidRequest(e) => write!(f, "invalid request: {}", e.description()),
            Self::InvalidToken(e) => write!(f, "invalid token: {e}"),
            Self::InsufficientScope(r) => write!(
                f,
                "insufficient scope: needs {} of [{}]",
                if r.any_of { "one" } else { "all" },
                r.scopes.join(" ")
            ),
            Self::Forbidden(r) => write!(f, "forbidden: {}", r.description()),
            Self::InvalidDpopProof(e) => write!(f, "invalid DPoP proof: {}", e.description()),
            Self::UseDpopNonce => f.write_str("the DPoP proof lacks the server's nonce"),
            Self::InsufficientUserAuthentication(_) => {
                f.write_str("the user's authentication is not strong or recent enough")
            }
            Self::TemporarilyUnavailable { .. } => {
                f.write_str("the token cannot be checked right now")
            }
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LimitExceeded(what) => write!(f, "limit exceeded: {what}"),
            Self::UntrustedKeySource(h) => write!(f, "untrusted key source header `{h}`"),
            Self::MissingClaim(c) => write!(f, "missing claim `{c}`"),
            Self::InvalidClaim(c) => write!(f, "malformed claim `{c}`"),
            other => f.write_str(other.description()),
        }
    }
}

impl std::error::Error for AuthError {}
impl std::error::Error for TokenError {}

impl From<TokenError> for AuthError {
    fn from(e: TokenError) -> Self {
        Self::InvalidToken(e)
    }
}
