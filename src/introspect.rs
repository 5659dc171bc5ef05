//! RFC 7662 token introspection, with a cache.
//!
//! Used for opaque tokens (anything that is not a three-part JWS) when
//! introspection is configured, and for routes behind
//! [`BearerAuthLayer::require_active`](crate::BearerAuthLayer::require_active), which
//! cannot accept the revocation window of a locally validated JWT.
//!
//! Answers are cached by the SHA-256 digest of the token (never the token
//! itself): an active answer until the configured maximum age or the
//! token's `exp`, whichever comes first; an inactive one for 10 s. All
//! concurrent requests for one token share a single call, and calls in
//! flight at once are bounded (64 by default), for opaque tokens and for
//! `require_active` checks each: beyond that a request waits up to the
//! fetch timeout for its turn. When the endpoint fails, or the
//! turn does not come, nothing is cached and the request fails closed with
//! 503.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::sync::{Mutex, Semaphore};
use tracing::Instrument as _;
use url::Url;

use crate::clock::unix_seconds;
use crate::config::Config;
use crate::error::{AuthError, TokenError};
use crate::fetch::{FetchError, Fetcher, loggable};
use crate::jwt::{self, Rules, claims::Principal};

/// The resource server's client id at the authorization server, for
/// introspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(pub(crate) String);

impl ClientId {
    /// A client id, as registered at the authorization server.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
}

/// The resource server's client secret, for introspection. Its `Debug`
/// output does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(pub(crate) String);

impl ClientSecret {
    /// A client secret, as issued by the authorization server.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(..)")
    }
}

/// How the resource server authenticates to the introspection endpoint
/// (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret. The default.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// Introspection settings, gathered by the builder.
#[derive(Clone)]
pub(crate) struct IntrospectionConfig {
    pub client_id: String,
    pub client_secret: String,
    pub endpoint: Option<Url>,
    pub auth: ClientAuth,
    /// Longest an active answer is reused for opaque tokens.
    pub max_age: Duration,
    /// Longest an active answer is reused on `require_active` routes.
    pub active_check_max_age: Duration,
    pub max_entries: u64,
    /// Calls to the endpoint in flight at once.
    pub max_in_flight: usize,
    /// Answers shared with other replicas, checked like the endpoint's.
    pub shared: Option<Arc<dyn SharedAnswers>>,
}

/// A future of a shared answer store.
pub(crate) type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Introspection answers other processes made, keyed by the token's
/// digest: the endpoint's body and when it was fetched. An implementation
/// authenticates what it returns (a store that can be written to must not
/// be able to grant); what it returns is checked again like a fresh
/// answer. Errors are misses.
pub(crate) trait SharedAnswers: Send + Sync + 'static {
    fn get(&self, token: Digest) -> Pending<'_, Option<(Vec<u8>, SystemTime)>>;
    /// Stores `body` for `ttl`.
    fn put(
        &self,
        token: Digest,
        body: Vec<u8>,
        fetched_at: SystemTime,
        ttl: Duration,
    ) -> Pending<'_, ()>;
}

pub(crate) type Digest = [u8; 32];

/// SHA-256 of a token: what the introspection cache stores instead of it.
pub(crate) fn digest(token: impl AsRef<[u8]>) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_ref()).as_ref(),
    );
    out
}

/// How long an inactive answer is reused.
const INACTIVE_MAX_AGE: Duration = Duration::from_secs(10);
/// `Retry-After` when the endpoint fails.
const RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Answer {
    verdict: Result<Principal, TokenError>,
    fetched_at: SystemTime,
}

/// Why a token is introspected: each use has its own answer age and its
/// own bound on calls in flight, so a flood of opaque tokens cannot starve
/// `require_active` checks of tokens that already validated.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Use {
    /// An opaque token, to be accepted at all.
    OpaqueToken,
    /// A `require_active` route asking whether a token is still active.
    ActiveCheck,
}

pub(crate) struct Introspector {
    fetcher: Fetcher,
    /// One permit per call in flight, per use.
    opaque_slots: Semaphore,
    active_slots: Semaphore,
    /// How long a call waits for a permit: the fetch timeout.
    queue_timeout: Duration,
    cfg: IntrospectionConfig,
    /// The issuer, to find the endpoint by discovery when none is given.
    issuer: Option<(Url, String)>,
    discovered: Mutex<Option<Url>>,
    cache: moka::future::Cache<Digest, Answer>,
    /// Calls made to the endpoint.
    calls: AtomicU64,
    /// `None`: metrics off.
    #[cfg(feature = "metrics")]
    metrics: Option<crate::telemetry::metrics::IntrospectionMetrics>,
}

#[derive(Deserialize)]
struct Status {
    active: bool,
    token_type: Option<String>,
}

impl Introspector {
    pub(crate) fn new(
        cfg: IntrospectionConfig,
        issuer: Option<(Url, String)>,
        fetcher: &Fetcher,
        timeout: Duration,
    ) -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(cfg.max_entries)
            // A memory bound only: freshness is judged by the injected clock.
            .time_to_live(
                cfg.max_age
                    .max(cfg.active_check_max_age)
                    .max(INACTIVE_MAX_AGE)
                    * 2,
            )
            .build();
        Self {
            fetcher: fetcher.clone(),
            opaque_slots: Semaphore::new(cfg.max_in_flight.min(Semaphore::MAX_PERMITS)),
            active_slots: Semaphore::new(cfg.max_in_flight.min(Semaphore::MAX_PERMITS)),
            queue_timeout: timeout,
            cfg,
            issuer,
            discovered: Mutex::new(None),
            cache,
            calls: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            metrics: None,
        }
    }

    /// Reports its calls to the metrics from now on.
    #[cfg(feature = "metrics")]
    pub(crate) fn measure(&mut self) {
        self.metrics = Some(crate::telemetry::metrics::IntrospectionMetrics::new());
    }

    /// Calls made to the endpoint so far.
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Introspects `token` for `use_`, reusing an answer as old as that
    /// use allows.
    pub(crate) async fn check(
        &self,
        config: &Config,
        rules: &Rules,
        token: &str,
        use_: Use,
    ) -> Result<Principal, AuthError> {
        let (max_age, slots) = match use_ {
            Use::OpaqueToken => (self.cfg.max_age, &self.opaque_slots),
            Use::ActiveCheck => (self.cfg.active_check_max_age, &self.active_slots),
        };
        let key = digest(token);
        let now = config.clock.now();
        if let Some(answer) = self.cache.get(&key).await {
            if let Some(verdict) = fresh(&answer, rules, now, max_age) {
                return verdict;
            }
            self.cache.invalidate(&key).await;
        }
        let call = async {
            let _permit = tokio::time::timeout(self.queue_timeout, slots.acquire())
                .await
                .map_err(|_| FetchError::Busy)?
                .map_err(|_| FetchError::Busy)?;
            if let Some(shared) = &self.cfg.shared
                && let Some((body, fetched_at)) = shared.get(key).await
                && let Ok(verdict) = parse_answer(config, rules, body)
            {
                return Ok(Answer {
                    verdict,
                    fetched_at,
                });
            }
            let (verdict, body) = self.call(config, rules, token).await?;
            let fetched_at = config.clock.now();
            let answer = Answer {
                verdict,
                fetched_at,
            };
            if let Some(shared) = &self.cfg.shared {
                // As long as any replica may reuse it, never past `exp`.
                let lifetime = match &answer.verdict {
                    Err(_) => INACTIVE_MAX_AGE,
                    Ok(p) => {
                        let left = p.claims().exp.saturating_sub(unix_seconds(fetched_at));
                        let left = Duration::from_secs(u64::try_from(left).unwrap_or(0));
                        self.cfg
                            .max_age
                            .max(self.cfg.active_check_max_age)
                            .min(left)
                    }
                };
                if !lifetime.is_zero() {
                    shared.put(key, body, fetched_at, lifetime).await;
                }
            }
            Ok::<_, FetchError>(answer)
        };
        match self.cache.try_get_with(key, call).await {
            Ok(answer) => fresh(&answer, rules, now, Duration::MAX)
                .unwrap_or(Err(AuthError::InvalidToken(TokenError::Expired))),
            Err(e) => {
                tracing::error!(error = %e, "token introspection failed; refusing with 503");
                Err(AuthError::TemporarilyUnavailable {
                    retry_after: RETRY_AFTER,
                })
            }
        }
    }

    /// One call to the endpoint, and the body it answered. `Err` only when
    /// the endpoint could not give an answer; an answer that refuses the
    /// token is `Ok((Err(_), _))`.
    async fn call(
        &self,
        config: &Config,
        rules: &Rules,
        token: &str,
    ) -> Result<(Result<Principal, TokenError>, Vec<u8>), FetchError> {
        let endpoint = self.endpoint().await?;
        let (id, secret) = (self.cfg.client_id.as_str(), self.cfg.client_secret.as_str());
        let mut form = vec![("token", token), ("token_type_hint", "access_token")];
        let basic = match self.cfg.auth {
            ClientAuth::Basic => Some((id, secret)),
            ClientAuth::Post => {
                form.extend([("client_id", id), ("client_secret", secret)]);
                None
            }
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let span = tracing::debug_span!("tower_bearer.introspect", endpoint = loggable(&endpoint));
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        let answer = self
            .fetcher
            .post_form(&endpoint, &form, basic)
            .instrument(span)
            .await
            .and_then(|body| Ok((parse_answer(config, rules, body.clone())?, body)));
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.metrics {
            m.called(
                answer.as_ref().ok().map(|(v, _)| v.is_ok()),
                started.elapsed(),
            );
        }
        answer
    }

    async fn endpoint(&self) -> Result<Url, FetchError> {
        if let Some(url) = &self.cfg.endpoint {
            return Ok(url.clone());
        }
        let mut discovered = self.discovered.lock().await;
        if let Some(url) = &*discovered {
            return Ok(url.clone());
        }
        let Some((issuer, expected)) = &self.issuer else {
            return Err(FetchError::InvalidDocument(
                "no introspection endpoint".into(),
            ));
        };
        let meta = self.fetcher.discover(issuer, expected).await?;
        let url = meta
            .introspection_endpoint
            .ok_or_else(|| FetchError::InvalidDocument("no introspection_endpoint".into()))?;
        *discovered = Some(url.clone());
        Ok(url)
    }
}

/// The cached verdict if it is still usable at `now`: an inactive answer
/// for 10 s, an active one for `max_age` and never past the token's `exp`
/// (checked again, with `nbf` and the maximum token age).
fn fresh(
    answer: &Answer,
    rules: &Rules,
    now: SystemTime,
    max_age: Duration,
) -> Option<Result<Principal, AuthError>> {
    let age = now.duration_since(answer.fetched_at).unwrap_or_default();
    match &answer.verdict {
        Err(e) => (age < INACTIVE_MAX_AGE).then(|| Err(AuthError::InvalidToken(e.clone()))),
        Ok(p) if age < max_age => Some(
            jwt::check_time_claims(rules, p.claims(), unix_seconds(now))
                .map(|()| p.clone())
                .map_err(AuthError::InvalidToken),
        ),
        Ok(_) => None,
    }
}

/// Reads an introspection answer (RFC 7662 §2.2). `Err` when it is not a
/// valid answer at all (the endpoint is broken: fail closed); `Ok(Err(_))`
/// when it refuses the token: inactive, another token type, or claims that
/// fail the checks a JWT's claims would.
pub(crate) fn parse_answer(
    config: &Config,
    rules: &Rules,
    body: Vec<u8>,
) -> Result<Result<Principal, TokenError>, FetchError> {
    let status: Status =
        serde_json::from_slice(&body).map_err(|e| FetchError::InvalidDocument(e.to_string()))?;
    if !status.active {
        return Ok(Err(TokenError::Revoked));
    }
    // RFC 7662 §2.2: token_type as in RFC 6749 §5.1 ("Bearer"); some
    // servers say "access_token"; a DPoP-bound token is "DPoP" (RFC 9449
    // §6.2), and its `cnf` names the key. A refresh token is not one.
    let dpop = status
        .token_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop"));
    if let Some(t) = &status.token_type
        && !(t.eq_ignore_ascii_case("bearer") || t == "access_token" || dpop)
    {
        return Ok(Err(TokenError::WrongType));
    }
    Ok(
        jwt::principal_from_claims(config, rules, body, None, None, false).and_then(|p| {
            // A DPoP token whose key is not named could only pass as a
            // bearer token: refused.
            if dpop && p.confirmation().is_none_or(|c| c.jkt.is_none()) {
                Err(TokenError::NotDpopBound)
            } else {
                Ok(p)
            }
        }),
    )
}

/// Whether `token` is shaped like a compact JWS (three segments); anything
/// else is opaque.
pub(crate) fn is_jws_shaped(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}
