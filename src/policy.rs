//! Scope requirements per route: a [`ScopePolicy`] and the
//! [`RequireScopes`] layer that enforces it after [`BearerAuth`].
//!
//! [`BearerAuth`]: crate::BearerAuth

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::{BearerAuth, Shared};
use crate::builder::ConfigError;
use crate::error::{AuthError, Protocol, ScopeRequirement};
use crate::jwt::claims::Principal;
use crate::layer::{ResponseBody, ResponseFuture};
use crate::token;

/// Scopes a route requires: all of a list, or any one of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePolicy(ScopeRequirement);

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
        let scopes: Vec<Box<str>> = scopes
            .into_iter()
            .map(|s| s.into().into_boxed_str())
            .collect();
        Self(ScopeRequirement {
            scopes: scopes.into(),
            any_of,
        })
    }

    /// Checks a principal (or its absence) against the policy.
    pub fn check(&self, principal: Option<&Principal>) -> Result<(), AuthError> {
        let principal = principal.ok_or(AuthError::MissingToken)?;
        let scopes = principal.scopes();
        let ok = if self.0.any_of {
            self.0.scopes.iter().any(|s| scopes.contains(s))
        } else {
            self.0.scopes.iter().all(|s| scopes.contains(s))
        };
        if ok {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope(self.0.clone()))
        }
    }
}

/// A layer that refuses requests whose [`Principal`] lacks the scopes of a
/// [`ScopePolicy`]: 403 `insufficient_scope`, or 401 when the request was
/// not authenticated at all. It is a [`MethodScopes`] whose fallback policy
/// applies to every path. Put it behind [`BearerAuth`](crate::BearerAuth),
/// e.g. with axum's `route_layer`; build it with
/// [`BearerAuth::require_all`](crate::BearerAuth::require_all) /
/// [`require_any`](crate::BearerAuth::require_any), or with
/// [`MethodScopes::policy`] for default error responses.
pub type RequireScopes = MethodScopes;

/// The service made by [`RequireScopes`].
pub type RequireScopesService<S> = MethodScopesService<S>;

/// A route layer that checks every request's token with the authorization
/// server (RFC 7662 introspection), for routes that cannot accept the
/// revocation window of a locally validated JWT. Made by
/// [`BearerAuth::require_active`](crate::BearerAuth::require_active); put
/// it behind [`BearerAuth`](crate::BearerAuth).
///
/// A token the server reports inactive gets 401 `invalid_token`; an
/// endpoint that does not answer gets 503 with `Retry-After`.
#[derive(Clone)]
pub struct RequireActive {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RequireActive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireActive").finish_non_exhaustive()
    }
}

impl RequireActive {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for RequireActive {
    type Service = RequireActiveService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireActiveService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`RequireActive`].
#[derive(Clone)]
pub struct RequireActiveService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for RequireActiveService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireActiveService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireActiveService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let principal = req.extensions().get::<Principal>().cloned();
        let token = token::extract(req.headers(), shared.config.cookie.as_deref());
        let (principal, token) = match (principal, token) {
            (Some(p), Ok(Some(t))) => (p, t.to_owned()),
            (_, Err(e)) => return ResponseFuture::refused(shared, &e, Protocol::of(req.headers())),
            _ => {
                return ResponseFuture::refused(
                    shared,
                    &AuthError::MissingToken,
                    Protocol::of(req.headers()),
                );
            }
        };
        let task = shared.clone();
        let check = Box::pin(async move { task.check_active(&token).await.map(|()| principal) });
        // Keep the instance that poll_ready drove to readiness.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::validating(check, inner, req, shared.clone())
    }
}

/// The route layers a validator makes, with its realm and error hook.
impl BearerAuth {
    /// A route layer that requires every one of `scopes`.
    ///
    /// Use it with axum's `route_layer` behind this layer. Errors are
    /// answered with this validator's realm and error hook.
    pub fn require_all<I, S>(&self, scopes: I) -> RequireScopes
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.method_scopes().otherwise(ScopePolicy::all(scopes))
    }

    /// A route layer that requires at least one of `scopes`.
    pub fn require_any<I, S>(&self, scopes: I) -> RequireScopes
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.method_scopes().otherwise(ScopePolicy::any(scopes))
    }

    /// Scope requirements per gRPC method (or request path), enforced
    /// behind this layer; errors use this validator's realm and hook.
    ///
    /// ```
    /// # fn f(auth: tower_bearer::BearerAuth) {
    /// use tower_bearer::ScopePolicy;
    /// let policies = auth
    ///     .method_scopes()
    ///     .method("/grpc.health.v1.Health/Check", ScopePolicy::all(["read"]))
    ///     .method("/grpc.health.v1.Health/Watch", ScopePolicy::all(["admin"]))
    ///     .service("acme.orders.v1.Orders", ScopePolicy::any(["orders:read", "orders:admin"]));
    /// # let _ = policies; }
    /// ```
    pub fn method_scopes(&self) -> MethodScopes {
        MethodScopes::new(Some(self.shared.clone()))
    }

    /// A route layer for routes that cannot accept the revocation window:
    /// every request is checked with the authorization server through
    /// introspection, even when its JWT validated locally (answers are
    /// reused for a few seconds, 5 s by default; see
    /// [`Builder::introspection_cache`](crate::Builder::introspection_cache)).
    /// Put it behind this layer with axum's `route_layer`.
    ///
    /// Fails when introspection is not configured.
    pub fn require_active(&self) -> Result<RequireActive, ConfigError> {
        if !self.has_introspection() {
            return Err(ConfigError::Introspection(
                "require_active needs introspection(client_id, secret) on the builder",
            ));
        }
        Ok(RequireActive::new(self.shared.clone()))
    }
}

/// A refusal answered with the validator's realm and hook when there is one.
fn refuse<S, B>(
    shared: Option<&Shared>,
    err: &AuthError,
    protocol: Protocol,
) -> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    match shared {
        Some(shared) => ResponseFuture::refused(shared, err, protocol),
        None => ResponseFuture::refused_with(err.respond(None, protocol)),
    }
}

/// Scope requirements per gRPC method: a declarative map from method path
/// (`/package.Service/Method`) to a [`ScopePolicy`], with per-service
/// defaults and an optional fallback. Works on any request path, so it can
/// also guard plain HTTP routes by path. Put it behind
/// [`BearerAuth`](crate::BearerAuth); build it with
/// [`BearerAuth::method_scopes`](crate::BearerAuth::method_scopes).
///
/// A method with no entry, no service default and no fallback needs only a
/// valid token.
#[derive(Clone, Default)]
pub struct MethodScopes {
    methods: Arc<std::collections::HashMap<String, ScopePolicy>>,
    services: Arc<std::collections::HashMap<String, ScopePolicy>>,
    fallback: Option<Arc<ScopePolicy>>,
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for MethodScopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodScopes")
            .field("methods", &self.methods)
            .field("services", &self.services)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl MethodScopes {
    pub(crate) fn new(shared: Option<Arc<Shared>>) -> Self {
        Self {
            shared,
            ..Self::default()
        }
    }

    /// One policy for every request, answering errors with default
    /// responses (no realm, no hook).
    pub fn policy(policy: ScopePolicy) -> Self {
        Self::default().otherwise(policy)
    }

    /// The policy of one method, by its full path:
    /// `/grpc.health.v1.Health/Check`.
    pub fn method(mut self, path: impl Into<String>, policy: ScopePolicy) -> Self {
        Arc::make_mut(&mut self.methods).insert(path.into(), policy);
        self
    }

    /// The policy of every method of a service without its own entry, by
    /// the service's full name: `grpc.health.v1.Health`.
    pub fn service(mut self, name: impl Into<String>, policy: ScopePolicy) -> Self {
        Arc::make_mut(&mut self.services).insert(name.into(), policy);
        self
    }

    /// The policy of every method matched by nothing else.
    pub fn otherwise(mut self, policy: ScopePolicy) -> Self {
        self.fallback = Some(Arc::new(policy));
        self
    }

    /// The policy that applies to `path`, if any.
    pub fn policy_for(&self, path: &str) -> Option<&ScopePolicy> {
        self.methods
            .get(path)
            .or_else(|| {
                let service = path.strip_prefix('/')?.split_once('/')?.0;
                self.services.get(service)
            })
            .or(self.fallback.as_deref())
    }
}

impl<S> Layer<S> for MethodScopes {
    type Service = MethodScopesService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MethodScopesService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`MethodScopes`].
#[derive(Clone, Debug)]
pub struct MethodScopesService<S> {
    inner: S,
    layer: MethodScopes,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for MethodScopesService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let verdict = match self.layer.policy_for(req.uri().path()) {
            Some(policy) => policy.check(req.extensions().get::<Principal>()),
            None if req.extensions().get::<Principal>().is_some() => Ok(()),
            None => Err(AuthError::MissingToken),
        };
        match verdict {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err(e) => refuse(
                self.layer.shared.as_deref(),
                &e,
                Protocol::of(req.headers()),
            ),
        }
    }
}
