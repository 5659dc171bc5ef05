//! Validate OAuth 2.0 bearer access tokens locally, in a tower layer.
//!
//! `tower-bearer` checks a self-contained JWT access token on every request
//! without asking the authorization server: the signature against the
//! issuer's published keys (fetched once, kept in memory), then `iss`,
//! `aud`, `exp`, `nbf`, `typ`, and the scopes a route needs. Failures are
//! answered as RFC 6750 says. A verified request carries a [`Principal`] in
//! its extensions.
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::get};
//! use tower_bearer::{BearerAuthLayer, Principal};
//!
//! let auth = BearerAuthLayer::builder()
//!     .issuer("https://login.example.com/realms/acme")
//!     .audience("orders-api")
//!     .build()?;
//!
//! let app = Router::new()
//!     .route("/orders", get(|p: Principal| async move { format!("hello {:?}", p.subject()) }))
//!     .route_layer(auth.require_all(["orders:read"]))
//!     .layer(auth);
//! # let _: Router = app;
//! # Ok(()) }
//! ```
//!
//! A token bound to its sender is accepted only with its proof: a DPoP
//! proof (RFC 9449, [`Dpop`]) or the TLS client certificate it names (RFC
//! 8705, [`ClientCertificate`]), checked on every request.
//!
//! The price of validating locally is the *revocation window*: a token
//! whose grant was revoked stays valid until its `exp`. Keep access tokens
//! short-lived.
//!
//! # Features
//! - `axum`: extractors for [`Principal`] and typed claims
//!   ([`Claims`](crate::axum::Claims)), and `IntoResponse` for [`AuthError`].
//! - `tonic`: [`tonic::principal`] for handlers and `From<AuthError>` for
//!   `tonic::Status`. The layer itself answers gRPC requests the gRPC way
//!   without it.
//! - `testing`: [`testing::TestIssuer`], a loopback authorization server
//!   that mints tokens, for your own tests.
//! - `metrics`: requests by outcome, reason and issuer, validation time,
//!   caches, key fetches and introspection, through the `metrics` facade
//!   (the README's "Operating it" lists them). Install your recorder
//!   before [`Builder::build`].
//! - `mcp`: nothing in the library; what `examples/mcp_server.rs` builds
//!   on.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod alg;
mod auth;
mod builder;
mod cache;
mod clock;
mod config;
mod dpop;
mod error;
mod fetch;
mod introspect;
mod issuer;
mod jwks;
mod jwt;
mod layer;
mod metadata;
mod mtls;
mod policy;
mod readiness;
mod revocation;
mod sender;
pub mod ssf;
mod telemetry;
mod token;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod fleet;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod tonic;

/// The README's examples, compiled as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use alg::{Algorithm, UnknownAlgorithm};
pub use auth::{BearerAuthLayer, LocalOnly, Stats, WithIntrospection};
pub use builder::{Builder, ConfigError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    DEFAULT_ACTIVE_CHECK_MAX_AGE, DEFAULT_FETCH_TIMEOUT, DEFAULT_INTROSPECTION_CONCURRENCY,
    DEFAULT_INTROSPECTION_MAX_AGE, DEFAULT_JWKS_MAX_AGE, DEFAULT_LEEWAY, DEFAULT_MAX_STALE,
    DEFAULT_MAX_TENANTS, DEFAULT_REFETCH_COOLDOWN, DEFAULT_TOKEN_CACHE_ENTRIES,
    DEFAULT_TOKEN_CACHE_TTL, DISCOVERY_MAX_AGE, ErrorResponder, Limits, MAX_FETCH_TIMEOUT,
    MAX_JWKS_MAX_AGE, MAX_LEEWAY, MAX_LIFETIME, MAX_TOKEN_CACHE_ENTRIES, MIN_JWKS_MAX_AGE,
    TokenTypePolicy,
};
pub use error::{AuthError, ProofError, Refusal, RequestError, ScopePolicy, StepUp, TokenError};
pub use fetch::FetchError;
pub use introspect::{ClientAuth, ClientId, ClientSecret};
pub use issuer::{IssuerHealth, TrustedIssuer};
pub use jwks::{JwksError, KeyHealth};
pub use jwt::claims::{ClaimPath, Confirmation, Principal, RegisteredClaims, Roles, Scopes};
pub use layer::{BearerAuth, ResponseBody, ResponseFuture};
pub use metadata::{
    DEFAULT_METADATA_MAX_AGE, ProtectedResource, ResourceMetadata, WELL_KNOWN_PATH,
};
pub use mtls::{CertificateFormat, CertificateHeader, ClientCertificate};
pub use policy::{
    RequireActive, RequireActiveLayer, RequirePrincipal, RequirePrincipalLayer, RequireScopes,
    RequireScopesLayer,
};
pub use readiness::Readiness;
pub use revocation::{DEFAULT_MAX_TOKEN_LIFETIME, RevocationCheck, RevocationList, Revoke};
pub use sender::{DEFAULT_DPOP_REPLAY_ENTRIES, DEFAULT_DPOP_WINDOW, Dpop, MAX_DPOP_WINDOW};

// Hooks for conformance vectors and fuzzers: the exact stages the layer
// runs, outside the supported API.
#[doc(hidden)]
pub use jwks::{KeySet, SkippedKey};
#[doc(hidden)]
pub use jwt::Jws;
