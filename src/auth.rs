//! [`BearerAuthLayer`]: the configured validator and the pipeline one request
//! goes through: the verified-token cache, then local validation with the
//! keys at hand, and only if those lack something, a wait for keys or for
//! introspection that resumes from what the fast path learned. Holds the
//! runtime state (key store, caches, counters) beside the configuration.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::cache::TokenCache;
use crate::clock::unix_seconds;
use crate::config::Config;
use crate::error::{AuthError, TokenError};
use crate::fetch::FetchError;
use crate::introspect::{self, Introspector};
use crate::jwks::{Key, KeyHealth, KeySet, KeyStore};
use crate::jwt::claims::Principal;
use crate::jwt::{self, Failure, Jws, Parsed};
use crate::revocation::RevocationCheck;

/// A validator for bearer access tokens, and the tower [`Layer`] that puts
/// it in front of a service.
///
/// Cheap to clone: clones share configuration and keys. Build one with
/// [`BearerAuthLayer::builder`]; see the [crate docs](crate) for an example.
///
/// Its type parameter says whether introspection is configured
/// ([`WithIntrospection`], from [`Builder::introspection`]) or not
/// ([`LocalOnly`], the default): only a validator that can introspect
/// offers [`require_active`](BearerAuthLayer::require_active), so a route
/// cannot ask for what the configuration lacks. `.into()` turns a
/// `BearerAuthLayer<WithIntrospection>` into a plain `BearerAuthLayer` where
/// one type is needed for both.
///
/// [`Layer`]: tower_layer::Layer
/// [`Builder::introspection`]: crate::Builder::introspection
pub struct BearerAuthLayer<M = LocalOnly> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) optional: bool,
    mode: PhantomData<fn() -> M>,
}

/// The mode of a validator without `require_active` routes: the default,
/// and what `.into()` turns a [`WithIntrospection`] one into (which still
/// introspects opaque tokens). See [`BearerAuthLayer`].
#[derive(Debug, Clone, Copy)]
pub enum LocalOnly {}

/// The mode of a validator with introspection configured: it also takes
/// opaque tokens and makes `require_active` route layers. See
/// [`BearerAuthLayer`].
#[derive(Debug, Clone, Copy)]
pub enum WithIntrospection {}

impl<M> Clone for BearerAuthLayer<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            optional: self.optional,
            mode: PhantomData,
        }
    }
}

impl From<BearerAuthLayer<WithIntrospection>> for BearerAuthLayer {
    fn from(auth: BearerAuthLayer<WithIntrospection>) -> Self {
        Self {
            shared: auth.shared,
            optional: auth.optional,
            mode: PhantomData,
        }
    }
}

/// What every clone of a validator shares: the configuration, and the
/// state that changes while it runs.
pub(crate) struct Shared {
    pub(crate) config: Config,
    issuer: Issuer,
    cache: Option<Arc<TokenCache>>,
    /// Every revocation check configured; any one can revoke.
    revocation: Box<[Arc<dyn RevocationCheck>]>,
    /// Signatures verified: each costs far more than this increment.
    signatures: AtomicU64,
}

/// One trusted issuer: the `iss` its tokens carry, its keys, and its
/// introspection endpoint. A validator holds one; [`Shared::issuer_for`]
/// is the one place a token's issuer is chosen, so that several can be
/// held, each with its own keys, without touching the rest of the
/// pipeline.
pub(crate) struct Issuer {
    /// `None` when the issuer check is explicitly skipped.
    pub(crate) iss: Option<Box<str>>,
    pub(crate) keys: Arc<KeyStore>,
    pub(crate) introspector: Option<Arc<Introspector>>,
}

impl<M> std::fmt::Debug for BearerAuthLayer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("issuer", &self.shared.issuer.iss)
            .field("optional", &self.optional)
            .finish_non_exhaustive()
    }
}

/// Counts of expensive work, from [`BearerAuthLayer::stats`].
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
    /// The token needs a wait: finish with [`Shared::resume`].
    Pending(Pending),
}

/// Why a token needs a wait, and what is known of it already.
pub(crate) enum Pending {
    /// An opaque token, for the introspection endpoint.
    Introspect,
    /// A JWS whose key the set of generation `seen` lacks (or no set yet).
    Keys { jws: Parsed, seen: u64 },
}

impl<M> BearerAuthLayer<M> {
    pub(crate) fn new(
        config: Config,
        issuer: Issuer,
        cache: Option<Arc<TokenCache>>,
        revocation: Box<[Arc<dyn RevocationCheck>]>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                issuer,
                cache,
                revocation,
                signatures: AtomicU64::new(0),
            }),
            optional: false,
            mode: PhantomData,
        }
    }

    /// The same validator as a layer that lets requests without any bearer
    /// token through unauthenticated (no [`Principal`] in their
    /// extensions). A token that is present must still be valid.
    pub fn optional(&self) -> Self {
        Self {
            optional: true,
            ..self.clone()
        }
    }

    /// Counts of the expensive work done so far.
    pub fn stats(&self) -> Stats {
        Stats {
            signatures_verified: self.shared.signatures.load(Ordering::Relaxed),
            introspection_calls: self
                .shared
                .issuer
                .introspector
                .as_ref()
                .map_or(0, |i| i.calls()),
        }
    }

    /// Fetches the issuer's keys now instead of on first use, and returns
    /// how many usable keys the issuer publishes (configured shared secrets
    /// not counted). Call it at start-up to fail fast on a misconfigured
    /// issuer: an error when the keys cannot be fetched, and 0 when none of
    /// the published keys fits the algorithm allow-list. A static key set
    /// returns at once.
    pub async fn prefetch_keys(&self) -> Result<usize, FetchError> {
        self.shared.issuer.keys.prefetch().await
    }

    /// The state of the issuer's keys now: count, last fetch, last error,
    /// expiry. Serve it from a readiness probe.
    pub fn key_health(&self) -> KeyHealth {
        self.shared.issuer.keys.health().borrow().clone()
    }

    /// A receiver that sees every change of [`key_health`](Self::key_health):
    /// each fetch, successful or not.
    pub fn watch_key_health(&self) -> tokio::sync::watch::Receiver<KeyHealth> {
        self.shared.issuer.keys.health()
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
        let iss = self.shared.issuer.iss.as_deref();
        match introspect::parse_answer(&self.shared.config, iss, body.to_vec()) {
            Ok(verdict) => verdict.map_err(AuthError::InvalidToken),
            Err(_) => Err(AuthError::TemporarilyUnavailable {
                retry_after: self.shared.issuer.keys.cooldown(),
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
        let shared = &self.shared;
        let jws = jwt::parse(&shared.config, token).map_err(|e| shared.refuse(e))?;
        let keys = shared
            .issuer_for(&jws)
            .keys
            .snapshot(shared.config.clock.now());
        let first = shared.verify(&jws, token, keys.set()).cloned();
        let seen = keys.generation;
        drop(keys);
        let key = match first {
            Ok(key) => key,
            Err(Failure::UnknownKey | Failure::NoKeys) => {
                shared.verify_after_refresh(&jws, token, seen).await?.0
            }
            Err(f) => return Err(shared.refuse_failure(f)),
        };
        Ok(Jws::verified(jws, &key))
    }
}

impl Shared {
    /// The verdict for a token verified before, if it is in the cache and
    /// still current: its key still published, its time claims still met.
    /// Takes the bytes as sent: a hit proves them a well-formed token.
    pub(crate) fn validate_cached(&self, token: &[u8]) -> Option<Result<Principal, AuthError>> {
        let cache = self.cache.as_ref()?;
        let now = self.config.clock.now();
        // The issuer whose keys verified the cached token: with one issuer,
        // the only one.
        let keys = self.issuer.keys.snapshot(now);
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

    /// After a cache miss: validates with the keys at hand, without
    /// waiting, or says what to wait for.
    pub(crate) fn validate_uncached(&self, token: &str) -> Quick {
        if token.len() > self.config.limits.max_token_bytes {
            return Quick::Done(Err(self.refuse(TokenError::TooLarge)));
        }
        if self.issuer.introspector.is_some() && !introspect::is_jws_shaped(token) {
            return Quick::Pending(Pending::Introspect);
        }
        let jws = match jwt::parse(&self.config, token) {
            Ok(jws) => jws,
            Err(e) => return Quick::Done(Err(self.refuse(e))),
        };
        let now = self.config.clock.now();
        let keys = self.issuer_for(&jws).keys.snapshot(now);
        match self.verify(&jws, token, keys.set()) {
            Ok(key) => Quick::Done(self.finish(token, jws, key, keys.set_id(), now)),
            Err(Failure::UnknownKey | Failure::NoKeys) => Quick::Pending(Pending::Keys {
                jws,
                seen: keys.generation,
            }),
            Err(f) => Quick::Done(Err(self.refuse_failure(f))),
        }
    }

    /// Finishes what [`validate_uncached`](Self::validate_uncached) could
    /// not: introspects, or refreshes the keys and verifies once more.
    pub(crate) async fn resume(
        &self,
        token: &str,
        pending: Pending,
    ) -> Result<Principal, AuthError> {
        match pending {
            Pending::Introspect => {
                // An opaque token names no issuer: the one that introspects.
                let Some(introspector) = &self.issuer.introspector else {
                    return Err(self.refuse(TokenError::Malformed));
                };
                let p = introspector
                    .check(&self.config, token, introspect::Use::OpaqueToken)
                    .await?;
                self.accept(p, self.config.clock.now())
            }
            Pending::Keys { jws, seen } => {
                let (key, set_id) = self.verify_after_refresh(&jws, token, seen).await?;
                self.finish(token, jws, &key, set_id, self.config.clock.now())
            }
        }
    }

    /// The whole pipeline, for [`BearerAuthLayer::validate`]: each stage once.
    pub(crate) async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        if let Some(verdict) = self.validate_cached(token.as_bytes()) {
            return verdict;
        }
        match self.validate_uncached(token) {
            Quick::Done(verdict) => verdict,
            Quick::Pending(pending) => self.resume(token, pending).await,
        }
    }

    /// The key of `keys` that signed `jws`, counting the signature check.
    fn verify<'k>(
        &self,
        jws: &Parsed,
        token: &str,
        keys: Option<&'k KeySet>,
    ) -> Result<&'k Arc<Key>, Failure> {
        let key = jws.key(keys)?;
        self.signatures.fetch_add(1, Ordering::Relaxed);
        if jws.signed_by(token, key) {
            Ok(key)
        } else {
            Err(TokenError::BadSignature.into())
        }
    }

    /// Refreshes the key set that generation `seen` was (single-flight,
    /// cooldown) and verifies `jws` with the set that follows; returns the
    /// key and the id of its set.
    async fn verify_after_refresh(
        &self,
        jws: &Parsed,
        token: &str,
        seen: u64,
    ) -> Result<(Arc<Key>, Option<u64>), AuthError> {
        let keys = &self.issuer_for(jws).keys;
        let refresh = keys.refresh(seen).await;
        let keys = keys.snapshot(self.config.clock.now());
        match self.verify(jws, token, keys.set()) {
            Ok(key) => Ok((key.clone(), keys.set_id())),
            Err(Failure::NoKeys) => {
                tracing::warn!(?refresh, "no key set available; answering 503");
                Err(AuthError::TemporarilyUnavailable {
                    retry_after: refresh.retry_after(),
                })
            }
            Err(f) => Err(self.refuse_failure(f)),
        }
    }

    /// The claims of a token `key` verified, cached with that key, then
    /// the last word.
    fn finish(
        &self,
        token: &str,
        jws: Parsed,
        key: &Arc<Key>,
        set_id: Option<u64>,
        now: SystemTime,
    ) -> Result<Principal, AuthError> {
        let iss = self.issuer_for(&jws).iss.as_deref();
        let p = jwt::principal(&self.config, iss, jws, key).map_err(|e| self.refuse(e))?;
        if let Some(cache) = &self.cache {
            cache.insert(
                token,
                p.clone(),
                Arc::downgrade(key),
                set_id,
                unix_seconds(now),
            );
        }
        self.accept(p, now)
    }

    /// Asks the authorization server whether `token` is still active,
    /// reusing an answer a few seconds old (for `require_active` routes).
    pub(crate) async fn check_active(&self, token: &str) -> Result<(), AuthError> {
        let Some(introspector) = &self.issuer.introspector else {
            return Err(AuthError::TemporarilyUnavailable {
                retry_after: self.issuer.keys.cooldown(),
            });
        };
        introspector
            .check(&self.config, token, introspect::Use::ActiveCheck)
            .await
            .map(drop)
    }

    /// The last word on a valid token: the revocation hook.
    fn accept(&self, p: Principal, now: SystemTime) -> Result<Principal, AuthError> {
        if self
            .revocation
            .iter()
            .any(|check| check.is_revoked(&p, now))
        {
            return Err(self.refuse(TokenError::Revoked));
        }
        Ok(p)
    }

    /// The issuer whose keys must have signed `jws`.
    fn issuer_for(&self, _jws: &Parsed) -> &Issuer {
        &self.issuer
    }

    fn refuse_failure(&self, f: Failure) -> AuthError {
        match f {
            Failure::Token(e) => self.refuse(e),
            Failure::UnknownKey => self.refuse(TokenError::UnknownKey),
            Failure::NoKeys => AuthError::TemporarilyUnavailable {
                retry_after: self.issuer.keys.cooldown(),
            },
        }
    }

    fn refuse(&self, e: TokenError) -> AuthError {
        tracing::debug!(reason = %e, "bearer token refused");
        AuthError::InvalidToken(e)
    }
}
