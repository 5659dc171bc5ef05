//! [`BearerAuth`]: the configured validator, and the tower layer that uses
//! it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::cache::TokenCache;
use crate::clock::unix_seconds;
use crate::config::{Builder, Config, ConfigError};
use crate::error::{AuthError, TokenError};
use crate::introspect::{self, Introspector};
use crate::jwks::{FetchError, KeyStore};
use crate::jwks::{KeyHealth, KeySet};
use crate::jwt::Jws;
use crate::jwt::claims::Principal;
use crate::jwt::{self, Failure};
use crate::policy::{MethodScopes, RequireActive, RequireScopes, ScopePolicy};

/// A validator for bearer access tokens, and the tower [`Layer`] that puts
/// it in front of a service.
///
/// Cheap to clone: clones share configuration and keys. Build one with
/// [`BearerAuth::builder`]; see the [crate docs](crate) for an example.
///
/// [`Layer`]: tower_layer::Layer
#[derive(Clone)]
pub struct BearerAuth {
    pub(crate) shared: Arc<Shared>,
    pub(crate) optional: bool,
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    keys: Arc<KeyStore>,
    cache: Option<Arc<TokenCache>>,
    introspector: Option<Arc<Introspector>>,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("issuer", &self.shared.config.issuer)
            .field("optional", &self.optional)
            .finish_non_exhaustive()
    }
}

/// Counts of expensive work, from [`BearerAuth::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Signature verifications (a verified-token cache hit needs none).
    pub signatures_verified: u64,
    /// Calls to the introspection endpoint (cached answers make none).
    pub introspection_calls: u64,
}

/// The outcome of the synchronous fast path.
pub(crate) enum Quick {
    Done(Result<Principal, AuthError>),
    /// Keys must be fetched, or the token introspected: finish with
    /// [`Shared::validate`].
    Pending,
}

impl BearerAuth {
    /// Starts a configuration. Issuer and audience are required.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn new(
        config: Config,
        keys: KeyStore,
        cache: Option<Arc<TokenCache>>,
        introspector: Option<Arc<Introspector>>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                keys: Arc::new(keys),
                cache,
                introspector,
            }),
            optional: false,
        }
    }

    /// The same validator as a layer that lets requests without any bearer
    /// token through unauthenticated (no [`Principal`] in their
    /// extensions). A token that is present must still be valid.
    pub fn optional(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            optional: true,
        }
    }

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
        if self.shared.introspector.is_none() {
            return Err(ConfigError::Introspection(
                "require_active needs introspection(client_id, secret) on the builder",
            ));
        }
        Ok(RequireActive::new(self.shared.clone()))
    }

    /// Counts of the expensive work done so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.config.stats;
        Stats {
            signatures_verified: c.signatures.load(Ordering::Relaxed),
            introspection_calls: c.introspections.load(Ordering::Relaxed),
        }
    }

    /// Fetches the issuer's keys now instead of on first use, and returns
    /// how many usable keys were found. Call it at start-up to fail fast
    /// on a misconfigured issuer; a static key set returns at once.
    pub async fn prefetch_keys(&self) -> Result<usize, FetchError> {
        self.shared.keys.prefetch().await
    }

    /// The state of the issuer's keys now: count, last fetch, last error,
    /// expiry. Serve it from a readiness probe.
    pub fn key_health(&self) -> KeyHealth {
        self.shared.keys.health().borrow().clone()
    }

    /// A receiver that sees every change of [`key_health`](Self::key_health):
    /// each fetch, successful or not.
    pub fn watch_key_health(&self) -> tokio::sync::watch::Receiver<KeyHealth> {
        self.shared.keys.health()
    }

    /// Validates a token: signature, header and claims, fetching keys if
    /// the token names one not seen yet (at most once per cooldown).
    ///
    /// This is the transport-neutral core that the layer uses; call it
    /// directly to validate tokens outside of a tower stack.
    pub async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        self.shared.validate(token).await
    }

    /// Reads a raw introspection answer as the introspection client does.
    /// Not part of the supported API: for fuzzing the answer parser.
    #[doc(hidden)]
    pub fn parse_introspection_answer(&self, body: &[u8]) -> Result<Principal, AuthError> {
        match introspect::parse_answer(&self.shared.config, body.to_vec()) {
            Ok(verdict) => verdict.map_err(AuthError::InvalidToken),
            Err(_) => Err(AuthError::TemporarilyUnavailable {
                retry_after: self.shared.keys.cooldown(),
            }),
        }
    }

    /// Checks only the JWS: size and header rules, key match, signature.
    /// The claims are **not** checked (no `exp`, `iss`, `aud`), so any
    /// token the issuer ever signed passes, for any audience. Not part of
    /// the supported API: it exists so that conformance vectors and fuzzers
    /// exercise the exact signature stage the layer runs. Use
    /// [`validate`](Self::validate).
    #[doc(hidden)]
    pub async fn verify_signature_only(&self, token: &str) -> Result<Jws, AuthError> {
        self.shared.with_keys(token, jwt::verify_jws).await
    }
}

impl Shared {
    /// Validates with what is at hand — the verified-token cache, the
    /// current keys — without waiting.
    pub(crate) fn validate_now(&self, token: &str) -> Quick {
        match self.validate_cached(token.as_bytes()) {
            Some(result) => Quick::Done(result),
            None => self.validate_uncached(token),
        }
    }

    /// The verdict for a token verified before, if it is in the cache and
    /// still current: its key still published, its time claims still met.
    /// Takes the bytes as sent: a hit proves them a well-formed token.
    pub(crate) fn validate_cached(&self, token: &[u8]) -> Option<Result<Principal, AuthError>> {
        let cache = self.cache.as_ref()?;
        let now = self.config.clock.now();
        let keys = self.keys.snapshot(now);
        let p = cache.get(token, &keys, unix_seconds(now))?;
        Some(
            match jwt::check_time_claims(&self.config, p.claims(), unix_seconds(now)) {
                Ok(()) => self.accept(p, now),
                Err(e) => {
                    cache.invalidate(token);
                    Err(self.refuse(e))
                }
            },
        )
    }

    /// [`validate_now`](Self::validate_now) after a cache miss.
    pub(crate) fn validate_uncached(&self, token: &str) -> Quick {
        if token.len() > self.config.limits.max_token_bytes {
            return Quick::Done(Err(self.refuse(TokenError::TooLarge)));
        }
        if self.introspector.is_some() && !introspect::is_jws_shaped(token) {
            return Quick::Pending;
        }
        let now = self.config.clock.now();
        let keys = self.keys.snapshot(now);
        match jwt::validate(&self.config, keys.set(), token) {
            Ok((p, key)) => {
                if let Some(cache) = &self.cache {
                    cache.insert(token, p.clone(), key, keys.set_id(), unix_seconds(now));
                }
                Quick::Done(self.accept(p, now))
            }
            Err(Failure::UnknownKey | Failure::NoKeys) => Quick::Pending,
            Err(f) => Quick::Done(Err(self.refuse_failure(f))),
        }
    }

    pub(crate) async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        if let Quick::Done(result) = self.validate_now(token) {
            return result;
        }
        if let Some(introspector) = &self.introspector
            && !introspect::is_jws_shaped(token)
        {
            let p = introspector
                .check(&self.config, token, introspector.max_age())
                .await?;
            return self.accept(p, self.config.clock.now());
        }
        let (p, key) = self.with_keys(token, jwt::validate).await?;
        let now = self.config.clock.now();
        if let Some(cache) = &self.cache {
            // The set it was verified with is not known here: hits check
            // the key by lookup.
            cache.insert(token, p.clone(), key, None, unix_seconds(now));
        }
        self.accept(p, now)
    }

    /// Asks the authorization server whether `token` is still active,
    /// reusing an answer a few seconds old (for `require_active` routes).
    pub(crate) async fn check_active(&self, token: &str) -> Result<(), AuthError> {
        let Some(introspector) = &self.introspector else {
            return Err(AuthError::TemporarilyUnavailable {
                retry_after: self.keys.cooldown(),
            });
        };
        introspector
            .check(&self.config, token, introspector.active_check_max_age())
            .await
            .map(drop)
    }

    /// The last word on a valid token: the revocation hook.
    fn accept(&self, p: Principal, now: std::time::SystemTime) -> Result<Principal, AuthError> {
        match &self.config.revocation {
            Some(check) if check.is_revoked(&p, now) => Err(self.refuse(TokenError::Revoked)),
            _ => Ok(p),
        }
    }

    /// Runs `stage` with the current keys; if it needs keys the set lacks,
    /// refreshes the set (single-flight, cooldown) and runs it once more.
    async fn with_keys<T>(
        &self,
        token: &str,
        stage: impl Fn(&Config, Option<&KeySet>, &str) -> Result<T, Failure>,
    ) -> Result<T, AuthError> {
        let keys = self.keys.snapshot(self.config.clock.now());
        let first = stage(&self.config, keys.set(), token);
        let seen = keys.generation;
        drop(keys);
        let refresh = match first {
            Err(Failure::UnknownKey | Failure::NoKeys) => self.keys.refresh(seen).await,
            other => return other.map_err(|f| self.refuse_failure(f)),
        };
        let keys = self.keys.snapshot(self.config.clock.now());
        match stage(&self.config, keys.set(), token) {
            Err(Failure::NoKeys) => {
                tracing::warn!(?refresh, "no key set available; answering 503");
                Err(AuthError::TemporarilyUnavailable {
                    retry_after: refresh.retry_after(),
                })
            }
            second => second.map_err(|f| self.refuse_failure(f)),
        }
    }

    fn refuse_failure(&self, f: Failure) -> AuthError {
        match f {
            Failure::Token(e) => self.refuse(e),
            Failure::UnknownKey => self.refuse(TokenError::UnknownKey),
            Failure::NoKeys => AuthError::TemporarilyUnavailable {
                retry_after: self.keys.cooldown(),
            },
        }
    }

    fn refuse(&self, e: TokenError) -> AuthError {
        tracing::debug!(reason = %e, "bearer token refused");
        AuthError::InvalidToken(e)
    }
}
