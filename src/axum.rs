//! axum extractors for the verified [`Principal`] and for typed claims.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use serde::Deserialize;
//! use tower_bearer::{BearerAuthLayer, Principal, axum::Claims};
//!
//! #[derive(Deserialize)]
//! struct MyClaims {
//!     tenant: String,
//! }
//!
//! async fn me(p: Principal) -> String {
//!     p.subject().unwrap_or("unknown").to_owned()
//! }
//!
//! async fn tenant(Claims(c): Claims<MyClaims>) -> String {
//!     c.tenant
//! }
//!
//! async fn maybe(p: Option<Principal>) -> &'static str {
//!     if p.is_some() { "signed in" } else { "anonymous" }
//! }
//!
//! # fn app(auth: BearerAuthLayer) -> Router {
//! Router::new()
//!     .route("/me", get(me))
//!     .route("/tenant", get(tenant))
//!     .layer(auth.clone())
//!     .merge(Router::new().route("/maybe", get(maybe)).layer(auth.optional()))
//! # }
//! ```
//!
//! The extractors read what the [`BearerAuthLayer`](crate::BearerAuthLayer) layer
//! put into the request; without the layer they reject with 401.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{AuthError, TokenError};
use crate::jwt::claims::Principal;

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        self.to_response(None).map(axum_core::body::Body::from)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(AuthError::MissingToken)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

/// The verified token's whole claim set, deserialized into `T`.
///
/// Rejects with 401 `invalid_token` when the claims do not fit `T` (a
/// missing field, say), and with 401 when the request was not
/// authenticated.
#[derive(Debug, Clone)]
pub struct Claims<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Claims<T> {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .ok_or(AuthError::MissingToken)?;
        principal.deserialize_claims().map(Claims).map_err(|e| {
            // The category only: serde's message can quote claim values.
            tracing::debug!(category = ?e.classify(), "token claims do not fit the handler's claims type");
            AuthError::InvalidToken(TokenError::InvalidClaim("claims"))
        })
    }
}
