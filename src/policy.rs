//! Scope requirements per route: a [`ScopePolicy`] and the
//! [`RequireScopesLayer`] layer that enforces it after [`BearerAuthLayer`].
//!
//! [`BearerAuthLayer`]: crate::BearerAuthLayer

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::{BearerAuthLayer, Shared, WithIntrospection};
use crate::clock::unix_seconds;
use crate::error::{AuthError, Protocol, Refusal, ScopePolicy, StepUp, TokenError};
use crate::jwt::claims::Principal;
use crate::layer::{ResponseBody, ResponseFuture};
use crate::token;

impl ScopePolicy {
    /// Checks a principal (or its absence) against the policy.
    pub fn check(&self, principal: Option<&Principal>) -> Result<(), AuthError> {
        let principal = principal.ok_or(AuthError::MissingToken)?;
        let granted = principal.scopes();
        let ok = if self.is_any_of() {
            self.scopes().any(|s| granted.contains(s))
        } else {
            self.scopes().all(|s| granted.contains(s))
        };
        if ok {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope(self.clone()))
        }
    }
}

/// A route layer that checks every request's token with the authorization
/// server (RFC 7662 introspection), for routes that cannot accept the
/// revocation window of a locally validated JWT. Made by
/// [`BearerAuthLayer::require_active`](crate::BearerAuthLayer::require_active); put
/// it behind [`BearerAuthLayer`](crate::BearerAuthLayer).
///
/// A token the server reports inactive gets 401 `invalid_token`; an
/// endpoint that does not answer gets 503 with `Retry-After`.
#[derive(Clone)]
pub struct RequireActiveLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RequireActiveLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireActiveLayer").finish_non_exhaustive()
    }
}

impl RequireActiveLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for RequireActiveLayer {
    type Service = RequireActive<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireActive {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`RequireActiveLayer`].
#[derive(Clone)]
pub struct RequireActive<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for RequireActive<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireActive")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireActive<S>
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
        let token = token::extract(
            req.headers(),
            shared.config.cookie.as_deref(),
            shared.binding.accepts_dpop(),
        );
        let (principal, token) = match (principal, token) {
            (Some(p), Ok(Some(t))) => (p, t.to_owned()),
            (_, Err(e)) => {
                return ResponseFuture::refused(Some(shared), &e, Protocol::of(req.headers()));
            }
            _ => {
                return ResponseFuture::refused(
                    Some(shared),
                    &AuthError::MissingToken,
                    Protocol::of(req.headers()),
                );
            }
        };
        let task = shared.clone();
        let check = Box::pin(async move {
            task.check_active(&principal, &token)
                .await
                .map(|()| principal)
        });
        // Keep the instance that poll_ready drove to readiness.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::validating(check, inner, req, shared.clone(), None)
    }
}

/// The route layers a validator makes, with its realm and error hook.
impl<M> BearerAuthLayer<M> {
    /// A route layer that requires every one of `scopes`.
    ///
    /// Use it with axum's `route_layer` behind this layer. Errors are
    /// answered with this validator's realm and error hook.
    pub fn require_all<I, S>(&self, scopes: I) -> RequireScopesLayer
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.method_scopes().otherwise(ScopePolicy::all(scopes))
    }

    /// A route layer that requires at least one of `scopes`.
    pub fn require_any<I, S>(&self, scopes: I) -> RequireScopesLayer
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
    /// # fn f(auth: tower_bearer::BearerAuthLayer) {
    /// use tower_bearer::ScopePolicy;
    /// let policies = auth
    ///     .method_scopes()
    ///     .method("/grpc.health.v1.Health/Check", ScopePolicy::all(["read"]))
    ///     .method("/grpc.health.v1.Health/Watch", ScopePolicy::all(["admin"]))
    ///     .service("acme.orders.v1.Orders", ScopePolicy::any(["orders:read", "orders:admin"]));
    /// # let _ = policies; }
    /// ```
    pub fn method_scopes(&self) -> RequireScopesLayer {
        RequireScopesLayer::new(Some(self.shared.clone()))
    }
}

/// The route layer only a validator that can introspect makes.
impl BearerAuthLayer<WithIntrospection> {
    /// A route layer for routes that cannot accept the revocation window:
    /// every request is checked with the authorization server through
    /// introspection, even when its JWT validated locally (answers are
    /// reused for a few seconds, 5 s by default; see
    /// [`Builder::active_check_max_age`](crate::Builder::active_check_max_age)).
    /// Put it behind this layer with axum's `route_layer`.
    ///
    /// Only a validator built with
    /// [`Builder::introspection`](crate::Builder::introspection) has it, so
    /// a route cannot ask for what the configuration lacks:
    ///
    /// ```compile_fail
    /// let auth = tower_bearer::BearerAuthLayer::builder()
    ///     .issuer("https://login.example.com")
    ///     .audience("api")
    ///     .build()?;
    /// let active = auth.require_active(); // no introspection: no such method
    /// # Ok::<(), tower_bearer::ConfigError>(())
    /// ```
    pub fn require_active(&self) -> RequireActiveLayer {
        RequireActiveLayer::new(self.shared.clone())
    }
}

/// A layer that refuses requests whose [`Principal`] lacks the scopes a
/// route needs: 403 `insufficient_scope`, or 401 when the request was not
/// authenticated at all. Put it behind
/// [`BearerAuthLayer`](crate::BearerAuthLayer), e.g. with axum's
/// `route_layer`.
///
/// One policy for every request comes from
/// [`BearerAuthLayer::require_all`](crate::BearerAuthLayer::require_all) or
/// [`require_any`](crate::BearerAuthLayer::require_any). Scopes per gRPC
/// method come from
/// [`BearerAuthLayer::method_scopes`](crate::BearerAuthLayer::method_scopes):
/// a map from method path (`/package.Service/Method`) to a [`ScopePolicy`],
/// with per-service defaults and a fallback; it works on any request path,
/// so it can also guard plain HTTP routes by path. A method with no entry,
/// no service default and no fallback needs only a valid token.
/// [`RequireScopesLayer::policy`] makes one with default error responses.
#[derive(Clone, Default)]
pub struct RequireScopesLayer {
    methods: Arc<std::collections::HashMap<String, ScopePolicy>>,
    services: Arc<std::collections::HashMap<String, ScopePolicy>>,
    fallback: Option<Arc<ScopePolicy>>,
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for RequireScopesLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireScopesLayer")
            .field("methods", &self.methods)
            .field("services", &self.services)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl RequireScopesLayer {
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

impl<S> Layer<S> for RequireScopesLayer {
    type Service = RequireScopes<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopes {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`RequireScopesLayer`].
#[derive(Clone, Debug)]
pub struct RequireScopes<S> {
    inner: S,
    layer: RequireScopesLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScopes<S>
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
            Err(e) => ResponseFuture::refused(
                self.layer.shared.as_deref(),
                &e,
                Protocol::of(req.headers()),
            ),
        }
    }
}

/// What a route's rule on the principal is: `Ok(())` lets the request
/// through, an error is answered (403 with a [`Refusal`]'s description for
/// the rules of yours).
type PrincipalRule = Arc<dyn Fn(&Principal) -> Result<(), AuthError> + Send + Sync>;

/// A token without a role a route requires.
const MISSING_ROLE: Refusal = Refusal::new("the token lacks a role this request needs");

/// A route layer that refuses requests whose [`Principal`] fails a rule:
/// 403 `insufficient_scope` with the rule's fixed description, or 401
/// when the request was not authenticated at all. Made by
/// [`BearerAuthLayer::require_all_roles`],
/// [`require_any_role`](BearerAuthLayer::require_any_role) and
/// [`require`](BearerAuthLayer::require); put it behind
/// [`BearerAuthLayer`], e.g. with axum's `route_layer`.
#[derive(Clone)]
pub struct RequirePrincipalLayer {
    rule: PrincipalRule,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RequirePrincipalLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequirePrincipalLayer")
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for RequirePrincipalLayer {
    type Service = RequirePrincipal<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequirePrincipal {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`RequirePrincipalLayer`].
#[derive(Clone, Debug)]
pub struct RequirePrincipal<S> {
    inner: S,
    layer: RequirePrincipalLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequirePrincipal<S>
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
        let verdict = match req.extensions().get::<Principal>() {
            Some(p) => (self.layer.rule)(p),
            None => Err(AuthError::MissingToken),
        };
        match verdict {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err(e) => {
                ResponseFuture::refused(Some(&self.layer.shared), &e, Protocol::of(req.headers()))
            }
        }
    }
}

/// Route layers on roles and on rules of your own.
impl<M> BearerAuthLayer<M> {
    /// A route layer that requires every one of `roles`, read from the
    /// configured [`role_claims`](crate::Builder::role_claims). A token
    /// without them gets 403 `insufficient_scope` (RFC 6750 has no other
    /// code for insufficient privileges) with the fixed description "the
    /// token lacks a role this request needs"; the roles are not named.
    pub fn require_all_roles<I, S>(&self, roles: I) -> RequirePrincipalLayer
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let roles: Box<[Box<str>]> = roles.into_iter().map(|r| r.into().into()).collect();
        self.require(move |p| {
            if roles.iter().all(|r| p.has_role(r)) {
                Ok(())
            } else {
                Err(MISSING_ROLE)
            }
        })
    }

    /// A route layer that requires at least one of `roles`; answered as
    /// [`require_all_roles`](Self::require_all_roles) is.
    pub fn require_any_role<I, S>(&self, roles: I) -> RequirePrincipalLayer
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let roles: Box<[Box<str>]> = roles.into_iter().map(|r| r.into().into()).collect();
        self.require(move |p| {
            if roles.iter().any(|r| p.has_role(r)) {
                Ok(())
            } else {
                Err(MISSING_ROLE)
            }
        })
    }

    /// A route layer with a rule of yours on the principal: `Err` answers
    /// 403 `insufficient_scope` with the [`Refusal`]'s description.
    ///
    /// ```
    /// # fn f(auth: tower_bearer::BearerAuthLayer) {
    /// use tower_bearer::Refusal;
    /// let staff_only = auth.require(|p| match p.subject() {
    ///     Some(sub) if sub.ends_with("@staff") => Ok(()),
    ///     _ => Err(Refusal::new("this request is for staff")),
    /// });
    /// # let _ = staff_only; }
    /// ```
    pub fn require<F>(&self, rule: F) -> RequirePrincipalLayer
    where
        F: Fn(&Principal) -> Result<(), Refusal> + Send + Sync + 'static,
    {
        RequirePrincipalLayer {
            rule: Arc::new(move |p| rule(p).map_err(AuthError::Forbidden)),
            shared: self.shared.clone(),
        }
    }

    /// A route layer that requires a stronger or more recent user
    /// authentication than the token shows (RFC 9470): an `acr` among the
    /// step-up's values, an `auth_time` within its maximum age, or both.
    /// A token without the claim does not meet it. The refusal is 401
    /// `insufficient_user_authentication` with `acr_values` and `max_age`
    /// in the challenge and the body, so the client can have the user
    /// authenticate again.
    pub fn require_step_up(&self, step_up: StepUp) -> RequirePrincipalLayer {
        let clock = self.shared.config.clock.clone();
        RequirePrincipalLayer {
            rule: Arc::new(move |p| {
                let claims = p.claims();
                let now = unix_seconds(clock.now());
                if step_up.is_met(claims.acr.as_deref(), claims.auth_time, now) {
                    Ok(())
                } else {
                    Err(AuthError::InsufficientUserAuthentication(step_up.clone()))
                }
            }),
            shared: self.shared.clone(),
        }
    }

    /// [`require_step_up`](Self::require_step_up) with an `acr` among
    /// `values` alone.
    pub fn require_acr<I, S>(&self, values: I) -> RequirePrincipalLayer
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.require_step_up(StepUp::acr_values(values))
    }

    /// A route layer that takes DPoP-bound tokens only (RFC 9449), even
    /// where the validator also takes bearer tokens: any other token gets
    /// 401 `invalid_token` with a `DPoP` challenge. (The validator has
    /// already checked the proof of every DPoP-bound token.)
    pub fn require_dpop(&self) -> RequirePrincipalLayer {
        RequirePrincipalLayer {
            rule: Arc::new(|p| match p.confirmation() {
                Some(c) if c.jkt.is_some() => Ok(()),
                _ => Err(AuthError::InvalidToken(TokenError::DpopRequired)),
            }),
            shared: self.shared.clone(),
        }
    }
}
