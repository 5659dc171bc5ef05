//! [`BearerAuthLayer`]: the configured validator and the pipeline one request
//! goes through: the verified-token cache, then local validation with the
//! keys at hand, and only if those lack something, a wait for keys or for
//! introspection that resumes from what the fast path learned. Holds the
//! runtime state (key store, caches, counters) beside the configuration.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use tracing::Instrument as _;

use crate::cache::TokenCache;
use crate::clock::{unix_millis, unix_seconds};
use crate::config::Config;
use crate::error::{AuthError, Challenge, Protocol, Refusal, TokenError};
use crate::fetch::FetchError;
use crate::introspect;
use crate::issuer::{Issuer, IssuerHealth, Issuers};
use crate::jwks::{Key, KeyHealth, KeySet};
use crate::jwt::claims::{Principal, Stamp};
use crate::jwt::{self, Failure, Jws, Parsed};
use crate::metadata::ResourceMetadata;
use crate::readiness::Readiness;
use crate::revocation::RevocationCheck;
use crate::sender::{Binding, DPOP_NONCE, Parts, Scheme};
use crate::telemetry::{self, Path, Reason, Seen, Tally, Watch};
use crate::token;

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
    /// What binds tokens to their senders: DPoP and client certificates.
    pub(crate) binding: Binding,
    issuers: Issuers,
    cache: Option<Arc<TokenCache>>,
    /// Every revocation check configured; any one can revoke.
    revocation: Box<[Arc<dyn RevocationCheck>]>,
    /// Where each `RevocationList` learns the longest token lifetime
    /// verified here, so that its entries outlive every token they match.
    lifetimes: Box<[Arc<AtomicU64>]>,
    /// Signatures verified: each costs far more than this increment.
    signatures: AtomicU64,
    /// `None`: metrics off for this validator.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<crate::telemetry::metrics::Metrics>,
}

impl<M> std::fmt::Debug for BearerAuthLayer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("issuer", &self.shared.issuers.first_iss())
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
    /// A JWS whose key the set of generation `seen` of its issuer lacks
    /// (or no set yet).
    Keys {
        jws: Parsed,
        issuer: Arc<Issuer>,
        seen: u64,
    },
}

impl<M> BearerAuthLayer<M> {
    pub(crate) fn new(
        config: Config,
        binding: Binding,
        issuers: Issuers,
        cache: Option<Arc<TokenCache>>,
        revocation: Box<[Arc<dyn RevocationCheck>]>,
        lifetimes: Box<[Arc<AtomicU64>]>,
        #[cfg(feature = "metrics")] metrics: Option<crate::telemetry::metrics::Metrics>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                binding,
                issuers,
                cache,
                revocation,
                lifetimes,
                signatures: AtomicU64::new(0),
                #[cfg(feature = "metrics")]
                metrics,
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
                .issuers
                .known()
                .iter()
                .filter_map(|i| i.introspector.as_ref())
                .map(|i| i.calls())
                .sum(),
        }
    }

    /// Fetches the keys of every configured issuer now instead of on first
    /// use (and the shared key set of each template that has one; a
    /// template's tenants are found on first use), and returns the fewest
    /// usable keys any of them publishes (configured shared secrets not
    /// counted). Call it at start-up to fail fast on a misconfigured
    /// issuer: an error when some issuer's keys cannot be fetched, and 0
    /// when one publishes none that fits its algorithm allow-list. A
    /// static key set returns at once. With nothing to fetch up front
    /// (only templates whose tenants each discover their keys), 0.
    pub async fn prefetch_keys(&self) -> Result<usize, FetchError> {
        let mut fewest = None::<usize>;
        for keys in self.shared.issuers.configured_keys() {
            let n = keys.prefetch().await?;
            fewest = Some(fewest.map_or(n, |f| f.min(n)));
        }
        Ok(fewest.unwrap_or(0))
    }

    /// The state of the first configured issuer's keys now (the only
    /// issuer's, usually): count, last fetch, last error, expiry. Serve it
    /// from a readiness probe; with several issuers, see
    /// [`issuers_key_health`](Self::issuers_key_health).
    pub fn key_health(&self) -> KeyHealth {
        self.watch_key_health().borrow().clone()
    }

    /// The state of every issuer's keys: each configured issuer, in the
    /// order configured, then every tenant a template has made, by tenant.
    /// Issuers that share a key store report the same keys.
    pub fn issuers_key_health(&self) -> Vec<IssuerHealth> {
        self.shared.issuers.health()
    }

    /// The service that answers a readiness probe: 200 while every
    /// configured issuer has a usable key set, 503 with the reason
    /// otherwise. See [`Readiness`].
    pub fn readiness(&self) -> Readiness {
        let shared = self.shared.clone();
        Readiness::new(Arc::new(move || {
            let now = shared.config.clock.now();
            (now, shared.issuers.configured_health())
        }))
    }

    /// The service that serves this API's protected resource metadata
    /// (RFC 9728), when [`Builder::protected_resource`](crate::Builder::protected_resource)
    /// configured it.
    pub fn resource_metadata(&self) -> Option<ResourceMetadata> {
        self.shared.config.metadata.clone()
    }

    /// A receiver that sees every change of [`key_health`](Self::key_health):
    /// each fetch, successful or not.
    pub fn watch_key_health(&self) -> tokio::sync::watch::Receiver<KeyHealth> {
        match self.shared.issuers.configured_keys().first() {
            Some(keys) => keys.health(),
            None => tokio::sync::watch::channel(KeyHealth::default()).1,
        }
    }

    /// Validates a token: signature, header and claims, fetching keys if
    /// the token names one not seen yet (at most once per cooldown).
    ///
    /// This is the transport-neutral core that the layer uses; call it
    /// directly to validate bearer tokens outside of a tower stack. A
    /// sender-constrained token (one with a `cnf` claim) is refused here,
    /// `DpopBound` or `CertificateMismatch`: whether its sender holds the
    /// key or certificate is a question of the request, which
    /// [`validate_request`](Self::validate_request) answers.
    pub async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        let shared = &self.shared;
        let mut watch = Watch::start(shared.timed());
        let verdict = shared
            .run(token, &mut watch)
            .await
            .and_then(|p| match p.confirmation() {
                None => Ok(p),
                Some(c) if c.jkt.is_some() => Err(AuthError::InvalidToken(TokenError::DpopBound)),
                Some(_) => Err(AuthError::InvalidToken(TokenError::CertificateMismatch)),
            });
        shared.finish_observed(&mut watch, verdict.as_ref());
        verdict
    }

    /// Validates a request's credentials as the layer does: the token of
    /// its `Authorization` header (or the configured cookie), then the
    /// token's binding to the sender: the proof in its `DPoP` header, the
    /// [`ClientCertificate`](crate::ClientCertificate) in its extensions
    /// (or the configured certificate header). For servers that are not a
    /// tower stack.
    pub async fn validate_request<B>(
        &self,
        req: &http::Request<B>,
    ) -> Result<Principal, AuthError> {
        let shared = &self.shared;
        let mut watch = Watch::start(shared.timed());
        let verdict = async {
            let dpop = shared.binding.accepts_dpop();
            let (scheme, raw) =
                token::locate(req.headers(), shared.config.cookie.as_deref(), dpop)?
                    .ok_or(AuthError::MissingToken)?;
            let p = shared.run(token::check(raw)?, &mut watch).await?;
            shared.check_binding(&p, scheme, raw, req)?;
            Ok(p)
        }
        .await;
        shared.finish_observed(&mut watch, verdict.as_ref());
        verdict
    }

    /// Reads a raw introspection answer as the introspection client does.
    /// Not part of the supported API: for fuzzing the answer parser.
    #[doc(hidden)]
    pub fn parse_introspection_answer(&self, body: &[u8]) -> Result<Principal, AuthError> {
        let shared = &self.shared;
        let Some(issuer) = shared.issuers.opaque().first() else {
            return Err(AuthError::InvalidToken(TokenError::Malformed));
        };
        match introspect::parse_answer(&shared.config, &issuer.rules, body.to_vec()) {
            Ok(verdict) => verdict.map_err(AuthError::InvalidToken),
            Err(_) => Err(AuthError::TemporarilyUnavailable {
                retry_after: issuer.keys.cooldown(),
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
        let issuer = shared.issuer_for(&jws)?;
        let keys = issuer.keys.snapshot(shared.config.clock.now());
        let first = shared.verify(&jws, token, keys.set()).cloned();
        let seen = keys.generation;
        drop(keys);
        let key = match first {
            Ok(key) => key,
            Err(Failure::UnknownKey | Failure::NoKeys) => {
                shared
                    .verify_after_refresh(&jws, &issuer, token, seen)
                    .await?
                    .0
            }
            Err(f) => return Err(shared.refuse_failure(f, &issuer)),
        };
        Ok(Jws::verified(jws, &key))
    }
}

/// A `require_active` route, and a token whose issuer does not introspect.
const NO_ACTIVE_CHECK: Refusal =
    Refusal::new("this route needs the token's issuer to confirm it is active, and it cannot");

impl Shared {
    /// The verdict for a token verified before, if it is in the cache and
    /// still current: its key still published, its time claims still met.
    /// Takes the bytes as sent: a hit proves them a well-formed token.
    pub(crate) fn validate_cached(
        &self,
        token: &[u8],
        seen: &mut Seen,
    ) -> Option<Result<Principal, AuthError>> {
        let cache = self.cache.as_ref()?;
        // Whole seconds are judged here: the coarse clock does. One
        // conversion of its reading per request.
        let now = self.config.clock.now_coarse();
        let ms = unix_millis(now);
        let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
        let Some(p) = cache.get(token, now, ms, secs) else {
            #[cfg(feature = "metrics")]
            if let Some(m) = &self.metrics {
                m.cache_misses.increment(1);
            }
            return None;
        };
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.metrics {
            m.cache_hits.increment(1);
        }
        seen.path = Some(Path::Cached);
        seen.issuer = p.stamp().map_or(0, |s| s.issuer);
        Some(self.accept(p, now))
    }

    /// After a cache miss: validates with the keys at hand, without
    /// waiting, or says what to wait for.
    pub(crate) fn validate_uncached(&self, token: &str, seen: &mut Seen) -> Quick {
        seen.missed();
        if token.len() > self.config.limits.max_token_bytes {
            return Quick::Done(Err(self.refuse(TokenError::TooLarge)));
        }
        if !self.issuers.opaque().is_empty() && !introspect::is_jws_shaped(token) {
            seen.path = Some(Path::Introspected);
            if let [only] = self.issuers.opaque() {
                seen.issuer = only.label;
            }
            return Quick::Pending(Pending::Introspect);
        }
        let jws = match jwt::parse(&self.config, token) {
            Ok(jws) => jws,
            Err(e) => return Quick::Done(Err(self.refuse(e))),
        };
        let issuer = match self.issuer_for(&jws) {
            Ok(issuer) => issuer,
            Err(e) => return Quick::Done(Err(e)),
        };
        seen.path = Some(Path::Verified);
        seen.issuer = issuer.label;
        let now = self.config.clock.now();
        let keys = issuer.keys.snapshot(now);
        match self.verify(&jws, token, keys.set()) {
            Ok(key) => Quick::Done(self.finish(token, jws, &issuer, key, keys.set_id(), now)),
            Err(Failure::UnknownKey | Failure::NoKeys) => {
                let seen = keys.generation;
                drop(keys);
                Quick::Pending(Pending::Keys { jws, issuer, seen })
            }
            Err(f) => Quick::Done(Err(self.refuse_failure(f, &issuer))),
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
                let p = self.introspect_opaque(token).await?;
                self.saw_lifetime(&p);
                self.accept(p, self.config.clock.now())
            }
            Pending::Keys { jws, issuer, seen } => {
                let (key, set_id) = self
                    .verify_after_refresh(&jws, &issuer, token, seen)
                    .await?;
                self.finish(token, jws, &issuer, &key, set_id, self.config.clock.now())
            }
        }
    }

    /// An opaque token names no issuer: it is introspected at each issuer
    /// configured for opaque tokens, in order, and the first that calls
    /// it active accepts it. When none does, a refusal, unless one of them
    /// could not answer: then 503, as it may have been that one's token.
    async fn introspect_opaque(&self, token: &str) -> Result<Principal, AuthError> {
        let opaque = self.issuers.opaque();
        self.introspect_in_order(
            opaque,
            token,
            introspect::Use::OpaqueToken,
            TokenError::Malformed,
        )
        .await
    }

    /// Introspects `token` at each of `issuers` in order: the first that
    /// calls it active accepts it. Otherwise the most telling refusal: an
    /// issuer that could not answer over one that said no, over `none`
    /// when no issuer introspects.
    async fn introspect_in_order(
        &self,
        issuers: &[Arc<Issuer>],
        token: &str,
        purpose: introspect::Use,
        none: TokenError,
    ) -> Result<Principal, AuthError> {
        let mut verdict = Err(self.refuse(none));
        for issuer in issuers {
            let Some(introspector) = &issuer.introspector else {
                continue;
            };
            match introspector
                .check(&self.config, &issuer.rules, token, purpose)
                .await
            {
                Ok(p) => return Ok(p),
                Err(e @ AuthError::TemporarilyUnavailable { .. }) => verdict = Err(e),
                Err(e) if !matches!(verdict, Err(AuthError::TemporarilyUnavailable { .. })) => {
                    verdict = Err(e);
                }
                Err(_) => {}
            }
        }
        verdict
    }

    /// The whole pipeline, each stage once, for the public `validate`
    /// and `validate_request`, which observe its verdict with
    /// [`finish_observed`](Self::finish_observed).
    async fn run(&self, token: &str, watch: &mut Watch) -> Result<Principal, AuthError> {
        match self.validate_cached(token.as_bytes(), &mut watch.seen) {
            Some(verdict) => verdict,
            None => match self.validate_uncached(token, &mut watch.seen) {
                Quick::Done(verdict) => verdict,
                Quick::Pending(pending) => {
                    let span = watch.span.clone();
                    self.resume(token, pending).instrument(span).await
                }
            },
        }
    }

    /// Observes a verdict no route follows, and counts it at once.
    fn finish_observed(&self, watch: &mut Watch, verdict: Result<&Principal, &AuthError>) {
        telemetry::settle_now(self.observe(watch, verdict));
    }

    /// The end of one validation: its span's fields, its metrics. For an
    /// accepted token, what to count it with once the route has answered
    /// ([`telemetry::settle`]): a route layer may still refuse it.
    pub(crate) fn observe(
        &self,
        watch: &mut Watch,
        verdict: Result<&Principal, &AuthError>,
    ) -> Tally {
        if watch.seen.path == Some(Path::Introspected)
            && let Ok(p) = verdict
        {
            watch.seen.issuer = self.issuers.label_of(p);
        }
        let reason = match verdict {
            Ok(_) => Reason::Ok,
            Err(e) => Reason::of(e, watch.seen.path),
        };
        if !watch.span.is_disabled() {
            let label = self.issuers.label(watch.seen.issuer);
            let subject = self.config.trace_subject;
            record(&watch.span, watch.seen, verdict, reason, label, subject);
        }
        #[cfg(feature = "metrics")]
        {
            let Some(m) = &self.metrics else {
                return Tally::default();
            };
            if verdict.is_err_and(|e| *e == AuthError::InvalidDpopProof(crate::dpop::REPLAYED)) {
                m.dpop_replays.increment(1);
            }
            let Seen { path, issuer, .. } = watch.seen;
            m.observe(path, issuer, reason, watch.seen.started());
            Tally {
                issuer: verdict.is_ok().then(|| m.issuer(issuer).clone()),
            }
        }
        #[cfg(not(feature = "metrics"))]
        Tally::default()
    }

    /// Whether validations are timed: metrics are on.
    pub(crate) fn timed(&self) -> bool {
        #[cfg(feature = "metrics")]
        return self.metrics.is_some();
        #[cfg(not(feature = "metrics"))]
        false
    }

    /// The issuer whose keys must have signed `jws`: chosen by its
    /// unverified `iss`, with its own algorithm allow-list. An `iss` no
    /// configured issuer has is refused here, before any fetch.
    fn issuer_for(&self, jws: &Parsed) -> Result<Arc<Issuer>, AuthError> {
        let issuer = self
            .issuers
            .choose(jws)
            .ok_or_else(|| self.refuse(TokenError::WrongIssuer))?;
        if !issuer.rules.algorithms.contains(&jws.alg()) {
            return Err(self.refuse(TokenError::AlgorithmNotAllowed));
        }
        Ok(issuer)
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

    /// Refreshes the `issuer`'s key set that generation `seen` was
    /// (single-flight, cooldown) and verifies `jws` with the set that
    /// follows; returns the key and the id of its set.
    async fn verify_after_refresh(
        &self,
        jws: &Parsed,
        issuer: &Issuer,
        token: &str,
        seen: u64,
    ) -> Result<(Arc<Key>, Option<u64>), AuthError> {
        let refresh = issuer.keys.refresh(seen).await;
        let keys = issuer.keys.snapshot(self.config.clock.now());
        match self.verify(jws, token, keys.set()) {
            Ok(key) => Ok((key.clone(), keys.set_id())),
            Err(Failure::NoKeys) => {
                tracing::warn!(?refresh, "no key set available; answering 503");
                Err(AuthError::TemporarilyUnavailable {
                    retry_after: refresh.retry_after(),
                })
            }
            Err(f) => Err(self.refuse_failure(f, issuer)),
        }
    }

    /// The claims of a token `key` of `issuer` verified, checked with that
    /// issuer's rules and cached with that key, then the last word.
    fn finish(
        &self,
        token: &str,
        jws: Parsed,
        issuer: &Arc<Issuer>,
        key: &Arc<Key>,
        set_id: Option<u64>,
        now: SystemTime,
    ) -> Result<Principal, AuthError> {
        let p =
            jwt::principal(&self.config, &issuer.rules, jws, key).map_err(|e| self.refuse(e))?;
        self.saw_lifetime(&p);
        let p = match (&self.cache, jwt::time_window(&issuer.rules, p.claims())) {
            (Some(cache), Some((from, until))) => {
                let stamp = Stamp {
                    keys: issuer.keys.clone(),
                    key: Arc::downgrade(key),
                    set_id,
                    from,
                    until,
                    issuer: issuer.label,
                };
                cache.keep(token, p, stamp, unix_seconds(now))
            }
            _ => p,
        };
        self.accept(p, now)
    }

    /// Asks the authorization server of the issuer that accepted `p`
    /// whether `token` is still active, reusing an answer a few seconds
    /// old (for `require_active` routes). An issuer without introspection
    /// cannot say, so its tokens are refused there.
    pub(crate) async fn check_active(&self, p: &Principal, token: &str) -> Result<(), AuthError> {
        let issuer;
        let issuers = match p.claims().iss.as_deref() {
            // An opaque token whose answer named no issuer: asked again
            // where opaque tokens are asked, in the same order.
            None if p.is_introspected() => self.issuers.opaque(),
            _ => {
                issuer = self.issuers.of(p);
                issuer.as_slice()
            }
        };
        let none = TokenError::Refused(NO_ACTIVE_CHECK);
        self.introspect_in_order(issuers, token, introspect::Use::ActiveCheck, none)
            .await
            .map(drop)
    }

    /// Tells each revocation list how long `p`, just verified, lives
    /// (`exp - iat`; nothing for a token without `iat` or `exp`). Once per
    /// verification, never on a cache hit.
    fn saw_lifetime(&self, p: &Principal) {
        if self.lifetimes.is_empty() {
            return;
        }
        let c = p.claims();
        let Some(iat) = c.iat.filter(|_| c.exp != i64::MAX) else {
            return;
        };
        let Ok(life) = u64::try_from(c.exp.saturating_sub(iat)) else {
            return;
        };
        for longest in &self.lifetimes {
            longest.fetch_max(life, Ordering::Relaxed);
        }
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

    fn refuse_failure(&self, f: Failure, issuer: &Issuer) -> AuthError {
        match f {
            Failure::Token(e) => self.refuse(e),
            Failure::UnknownKey => self.refuse(TokenError::UnknownKey),
            Failure::NoKeys => AuthError::TemporarilyUnavailable {
                retry_after: issuer.keys.cooldown(),
            },
        }
    }

    fn refuse(&self, e: TokenError) -> AuthError {
        tracing::debug!(reason = %e, "bearer token refused");
        AuthError::InvalidToken(e)
    }

    /// The binding checks of a valid token (DPoP proof, client
    /// certificate), which every request runs, cached token or not; the
    /// `DPoP-Nonce` to answer with, if any.
    pub(crate) fn check_binding<B>(
        &self,
        p: &Principal,
        scheme: Scheme,
        token: &[u8],
        req: &http::Request<B>,
    ) -> Result<Option<HeaderValue>, AuthError> {
        let now = || unix_seconds(self.config.clock.now());
        self.binding
            .check(p, scheme, token, &Parts::of(req), now)
            .inspect_err(|e| tracing::debug!(reason = %e, "sender constraint not met"))
    }

    /// The answer to a refusal: the error's response, with the challenges
    /// of every scheme this validator takes (RFC 9449 §7.1: the error in
    /// the challenge of the scheme it concerns), then your hook.
    pub(crate) fn error_response(&self, err: &AuthError, protocol: Protocol) -> Response<Bytes> {
        let challenge = Challenge {
            realm: self.config.realm.as_deref(),
            resource_metadata: self.config.metadata.as_ref().map(ResourceMetadata::url),
        };
        let mut res = err.respond(challenge, protocol);
        if let Some(algs) = self.binding.dpop_algs()
            && !matches!(err, AuthError::TemporarilyUnavailable { .. })
        {
            let in_dpop = protocol.dpop
                || matches!(
                    err,
                    AuthError::InvalidDpopProof(_)
                        | AuthError::UseDpopNonce
                        | AuthError::InvalidToken(
                            TokenError::DpopRequired | TokenError::NotDpopBound
                        )
                );
            let bearer = self.binding.accepts_bearer()
                && !matches!(err, AuthError::InvalidToken(TokenError::DpopRequired));
            let dpop = err.challenge("DPoP", challenge, in_dpop, Some(algs));
            let bearer = bearer.then(|| err.challenge("Bearer", challenge, !in_dpop, None));
            // The challenge that carries the error first.
            let (first, second) = match bearer {
                Some(bearer) if !in_dpop => (bearer, Some(dpop)),
                bearer => (dpop, bearer),
            };
            let headers = res.headers_mut();
            headers.insert(header::WWW_AUTHENTICATE, first);
            if let Some(second) = second {
                headers.append(header::WWW_AUTHENTICATE, second);
            }
            if matches!(err, AuthError::UseDpopNonce)
                && let Some(nonce) = self.binding.nonce(unix_seconds(self.config.clock.now()))
            {
                headers.insert(DPOP_NONCE, nonce);
            }
        }
        match &self.config.responder {
            Some(f) => f(err, res),
            None => res,
        }
    }

    /// The layer's own refusal: observed, answered, and marked counted.
    pub(crate) fn refusal(
        &self,
        watch: &mut Watch,
        err: &AuthError,
        protocol: Protocol,
    ) -> Response<Bytes> {
        self.observe(watch, Err(err));
        let mut res = self.error_response(err, protocol);
        telemetry::mark(&mut res, Reason::of(err, watch.seen.path), true);
        res
    }
}

/// Records the outcome of a validation on its span: for an accepted
/// token its `iss`, `kid` and `alg`, and its subject when `subject` (the
/// user opted in); for a refusal the configured issuer `label`, if the
/// token got as far as one.
fn record(
    span: &tracing::Span,
    seen: Seen,
    verdict: Result<&Principal, &AuthError>,
    reason: Reason,
    label: &str,
    subject: bool,
) {
    span.record("outcome", reason.outcome().as_str());
    span.record("reason", reason.as_str());
    if let Some(path) = seen.path {
        span.record("cached", path == Path::Cached);
    }
    match verdict {
        Ok(p) => {
            if let Some(iss) = p.claims().iss.as_deref() {
                span.record("iss", iss);
            }
            if let Some(kid) = p.key_id() {
                span.record("kid", kid);
            }
            if let Some(alg) = p.algorithm() {
                span.record("alg", alg.as_str());
            }
            if subject && let Some(sub) = p.subject() {
                span.record("enduser.id", sub);
            }
        }
        Err(_) => {
            if !label.is_empty() {
                span.record("iss", label);
            }
        }
    }
}
