//! tonic support (feature `tonic`).
//!
//! The [`BearerAuthLayer`](crate::BearerAuthLayer) layer needs nothing from tonic:
//! put it in front of a tonic server and it recognises gRPC requests
//! (`content-type: application/grpc…`) and answers their failures as gRPC
//! does — HTTP 200, trailers-only, `grpc-status` 16 `UNAUTHENTICATED` for
//! missing or invalid tokens and 7 `PERMISSION_DENIED` for missing scopes,
//! a `grpc-message` saying why (never the token) and the RFC 6750
//! challenge as `www-authenticate` metadata. Per-method scopes come from
//! [`BearerAuthLayer::method_scopes`](crate::BearerAuthLayer::method_scopes).
//!
//! ```no_run
//! use tonic::transport::Server;
//! use tower_bearer::{BearerAuthLayer, ScopePolicy};
//!
//! # async fn run(health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>) -> Result<(), Box<dyn std::error::Error>> {
//! let auth = BearerAuthLayer::builder()
//!     .issuer("https://login.example.com/realms/acme")
//!     .audience("health-api")
//!     .build()?;
//! let scopes = auth
//!     .method_scopes()
//!     .method("/grpc.health.v1.Health/Check", ScopePolicy::all(["read"]))
//!     .method("/grpc.health.v1.Health/Watch", ScopePolicy::all(["admin"]));
//! Server::builder()
//!     .layer(tower::ServiceBuilder::new().layer(auth).layer(scopes))
//!     .add_service(health)
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! In a handler, [`principal`] reads who called. Each service of this
//! crate implements tonic's [`NamedService`] when the service it wraps
//! does, so a layer can also wrap a single service given to
//! `Server::add_service`.

use tonic::server::NamedService;

use crate::error::AuthError;
use crate::jwt::claims::Principal;
use crate::layer::BearerAuth;
use crate::policy::{RequireActive, RequirePrincipal, RequireScopes};

/// The verified principal of a request that passed the layer.
///
/// ```
/// # fn handler(req: tonic::Request<()>) -> Result<(), tonic::Status> {
/// let caller = tower_bearer::tonic::principal(&req)?;
/// tracing::info!(sub = caller.subject(), "called");
/// # Ok(()) }
/// ```
pub fn principal<T>(req: &tonic::Request<T>) -> Result<&Principal, tonic::Status> {
    req.extensions()
        .get::<Principal>()
        .ok_or_else(|| tonic::Status::from(AuthError::MissingToken))
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        let code = tonic::Code::from_i32(i32::from(e.grpc_code()));
        let message = e
            .description()
            .unwrap_or("a bearer token is required")
            .to_owned();
        let mut status = tonic::Status::new(code, message);
        let challenge = e.www_authenticate(None);
        if let Some(value) = challenge
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            status.metadata_mut().insert("www-authenticate", value);
        }
        status
    }
}

impl<S: NamedService> NamedService for BearerAuth<S> {
    const NAME: &'static str = S::NAME;
}

impl<S: NamedService> NamedService for RequireScopes<S> {
    const NAME: &'static str = S::NAME;
}

impl<S: NamedService> NamedService for RequireActive<S> {
    const NAME: &'static str = S::NAME;
}

impl<S: NamedService> NamedService for RequirePrincipal<S> {
    const NAME: &'static str = S::NAME;
}
