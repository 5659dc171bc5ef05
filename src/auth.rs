//! [`BearerAuth`]: the configured validator, and the tower layer that uses
//! it.

use std::sync::Arc;

use crate::config::{Builder, Config};
use crate::error::{AuthError, TokenError};
use crate::jwks::{FetchError, KeyStore};
use crate::jwks::{KeyHealth, KeySet};
use crate::jwt::Jws;
use crate::jwt::claims::Principal;
use crate::jwt::{self, Failure};
use crate::policy::{RequireScopes, ScopePolicy};

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
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("issuer", &self.shared.config.issuer)
            .field("optional", &self.optional)
            .finish_non_exhaustive()
    }
}

/// The outcome of the synchronous fast path.
pub(crate) enum Quick {
    Done(Result<Principal, AuthError>),
    /// Keys must be fetched first: finish with [`Shared::validate`].
    NeedKeys,
}

impl BearerAuth {
    /// Starts a configuration. Issuer and audience are required.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn new(config: Config, keys: KeyStore) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                keys: Arc::new(keys),
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
        RequireScopes::new(ScopePolicy::all(scopes), Some(self.shared.clone()))
    }

    /// A route layer that requires at least one of `scopes`.
    pub fn require_any<I, S>(&self, scopes: I) -> RequireScopes
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RequireScopes::new(ScopePolicy::any(scopes), Some(self.shared.clone()))
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
    /// Validates with the keys at hand, without waiting.
    pub(crate) fn validate_now(&self, token: &str) -> Quick {
        let keys = self.keys.snapshot(self.config.clock.now());
        let outcome = jwt::validate(&self.config, keys.set(), token);
        match outcome {
            Ok(p) => Quick::Done(Ok(p)),
            Err(Failure::UnknownKey | Failure::NoKeys) => Quick::NeedKeys,
            Err(f) => Quick::Done(Err(self.refuse_failure(f))),
        }
    }

    pub(crate) async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        self.with_keys(token, jwt::validate).await
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
                Err(AuthError::KeysUnavailable {
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
            Failure::NoKeys => AuthError::KeysUnavailable {
                retry_after: self.keys.cooldown(),
            },
        }
    }

    fn refuse(&self, e: TokenError) -> AuthError {
        tracing::debug!(reason = %e, "bearer token refused");
        AuthError::InvalidToken(e)
    }
}
