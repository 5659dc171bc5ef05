//! Shared Signals (OpenID SSF 1.0): the issuer's Security Event Tokens
//! (RFC 8417), received by push (RFC 8935, [`SsfPush`]) or poll
//! (RFC 8936, [`SsfPoll`]), become revocations in a [`RevocationList`].
//!
//! A SET is checked like an access token, with rules of its own: a
//! signature by a key of the transmitter's JWKS (found through its
//! `/.well-known/ssf-configuration`, kept and refreshed like an issuer's),
//! `typ` `secevent+jwt`, `iss` the transmitter, `aud` naming this
//! receiver, an `iat`, a `jti` not seen before, and an `events` claim.
//! Then its events:
//!
//! | event | revokes, of its subject, the tokens issued before the event |
//! |---|---|
//! | CAEP `session-revoked` | of the session (a complex subject's `session`), else all of the user's |
//! | CAEP `credential-change` | all (not for `change_type` `create`) |
//! | RISC `account-disabled`, `account-purged`, `credential-compromise`, `sessions-revoked` | all |
//! | SSF `verification` | nothing; its `state` is kept ([`SsfReceiver::last_verification`]) |
//! | any other | nothing; logged |
//!
//! Subjects are RFC 9493 identifiers, from the event's `subject` or the
//! SET's `sub_id`: `iss_sub` (tokens of that `iss` and `sub`), `opaque`
//! (`sub` of the configured token issuer), `email` (tokens whose `email`
//! claim matches), `aliases` (each), and SSF's `complex` (`user`, and
//! `session` as `sid`). Others (`phone_number`, `account`, …) name nothing
//! access tokens carry: logged, nothing revoked.
//!
//! ```no_run
//! # async fn run() -> Result<(), tower_bearer::ConfigError> {
//! use axum::Router;
//! use tower_bearer::{RevocationList, ssf::SsfReceiver};
//!
//! let revoked = RevocationList::new();
//! let receiver = SsfReceiver::builder("https://idp.example", "https://api.example", revoked.clone())
//!     .build()?;
//! let app: Router = Router::new()
//!     // The transmitter sends this `Authorization` value.
//!     .route_service("/ssf/events", receiver.push_endpoint("Bearer s3cr3t")?);
//! # Ok(()) }
//! ```

mod events;
mod poll;
mod push;

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

pub use poll::{Polled, SsfPoll};
pub use push::SsfPush;

use crate::alg::Algorithm;
use crate::builder::ConfigError;
use crate::clock::{Clock, SystemClock};
use crate::config::{
    DEFAULT_FETCH_TIMEOUT, DEFAULT_JWKS_MAX_AGE, DEFAULT_LEEWAY, DEFAULT_MAX_STALE,
    DEFAULT_REFETCH_COOLDOWN, DISCOVERY_MAX_AGE, Limits, MAX_JWKS_MAX_AGE, MIN_JWKS_MAX_AGE,
};
use crate::error::TokenError;
use crate::fetch::{Fetcher, acceptable_url, loggable};
use crate::jwks::{KeyPolicy, KeySet, KeyStore, Source};
use crate::jwt::{self, Failure};
use crate::revocation::{DEFAULT_MAX_TOKEN_LIFETIME, RevocationList, Revoke};

/// How old a SET may be by default (its `iat`): as long as its `jti` is
/// remembered, so that no replay passes. See
/// [`SsfReceiverBuilder::max_event_age`].
pub const DEFAULT_MAX_EVENT_AGE: Duration = DEFAULT_MAX_TOKEN_LIFETIME;

/// How many `jti`s are remembered, at most.
const MAX_SEEN: u64 = 100_000;

/// Largest SET accepted.
const MAX_SET_BYTES: usize = 64 * 1024;

/// Why a SET was refused, as RFC 8935 §2.4 names it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetError {
    /// `invalid_request`: not a SET, a malformed one, a replayed `jti`, or
    /// an event that does not follow its definition.
    InvalidRequest(&'static str),
    /// `invalid_key`: not signed by a key of the transmitter, or with an
    /// algorithm not accepted.
    InvalidKey(&'static str),
    /// `invalid_issuer`: `iss` is not the transmitter.
    InvalidIssuer,
    /// `invalid_audience`: `aud` does not name this receiver.
    InvalidAudience,
    /// `authentication_failed`: the push request's `Authorization` is
    /// missing or wrong.
    AuthenticationFailed,
    /// The transmitter's keys cannot be loaded now (its configuration or
    /// JWKS does not answer): try again later. Push answers 503.
    KeysUnavailable {
        /// When to try again.
        retry_after: Duration,
    },
}

impl SetError {
    /// The RFC 8935 error code (`temporarily_unavailable` for
    /// [`KeysUnavailable`](Self::KeysUnavailable), which RFC 8935 leaves to
    /// HTTP).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidKey(_) => "invalid_key",
            Self::InvalidIssuer => "invalid_issuer",
            Self::InvalidAudience => "invalid_audience",
            Self::AuthenticationFailed => "authentication_failed",
            Self::KeysUnavailable { .. } => "temporarily_unavailable",
        }
    }

    /// A description for the transmitter: never the SET or its claims.
    pub fn description(&self) -> &'static str {
        match self {
            Self::InvalidRequest(why) | Self::InvalidKey(why) => why,
            Self::InvalidIssuer => "iss is not the transmitter",
            Self::InvalidAudience => "aud does not name this receiver",
            Self::AuthenticationFailed => "the Authorization header is missing or wrong",
            Self::KeysUnavailable { .. } => "the transmitter's keys cannot be loaded now",
        }
    }
}

impl fmt::Display for SetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.description())
    }
}

impl std::error::Error for SetError {}

/// What a SET that passed every check did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Received {
    /// Its `jti`.
    pub jti: String,
    /// The revocations its events made.
    pub revoked: Vec<Revoke>,
    /// Its events that revoked nothing (an unknown type, a subject format
    /// access tokens do not carry, a created credential), with why.
    pub ignored: Vec<(String, &'static str)>,
}

/// The last SSF verification event received (SSF 1.0 §8.1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verification {
    /// The `state` the receiver asked the transmitter to send back.
    pub state: Option<String>,
    /// When it arrived.
    pub received_at: SystemTime,
}

/// Receives a transmitter's SETs into a [`RevocationList`]. Cheap to
/// clone; clones share everything.
#[derive(Clone)]
pub struct SsfReceiver {
    inner: Arc<Inner>,
}

struct Inner {
    transmitter: Box<str>,
    transmitter_url: Url,
    audience: Box<str>,
    token_issuer: Box<str>,
    revocations: RevocationList,
    clock: Arc<dyn Clock>,
    fetcher: Fetcher,
    limits: Limits,
    algorithms: Box<[Algorithm]>,
    max_age: Duration,
    keys: OnceLock<Arc<KeyStore>>,
    /// When discovery last failed: it is not tried again within the
    /// cooldown, whatever a transmitter posts.
    discovery: tokio::sync::Mutex<Option<SystemTime>>,
    seen: moka::sync::Cache<Box<str>, ()>,
    verification: Mutex<Option<Verification>>,
}

impl fmt::Debug for SsfReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsfReceiver")
            .field("transmitter", &self.inner.transmitter)
            .field("audience", &self.inner.audience)
            .finish_non_exhaustive()
    }
}

/// Configures an [`SsfReceiver`]; from [`SsfReceiver::builder`].
#[derive(Clone)]
pub struct SsfReceiverBuilder {
    transmitter: String,
    audience: String,
    revocations: RevocationList,
    token_issuer: Option<String>,
    jwks_uri: Option<String>,
    clock: Arc<dyn Clock>,
    max_age: Duration,
}

impl fmt::Debug for SsfReceiverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsfReceiverBuilder")
            .field("transmitter", &self.transmitter)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl SsfReceiver {
    /// A receiver of the SETs of `transmitter` (its issuer identifier,
    /// https or loopback http), addressed to `audience`, into
    /// `revocations`.
    pub fn builder(
        transmitter: impl Into<String>,
        audience: impl Into<String>,
        revocations: RevocationList,
    ) -> SsfReceiverBuilder {
        SsfReceiverBuilder {
            transmitter: transmitter.into(),
            audience: audience.into(),
            revocations,
            token_issuer: None,
            jwks_uri: None,
            clock: Arc::new(SystemClock),
            max_age: DEFAULT_MAX_EVENT_AGE,
        }
    }
}

impl SsfReceiverBuilder {
    /// The `iss` of the access tokens that subjects without an issuer of
    /// their own (`opaque`, `email`) are about. Default: the transmitter,
    /// as when the authorization server transmits its own events.
    pub fn token_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.token_issuer = Some(issuer.into());
        self
    }

    /// The transmitter's JWKS URL, for a transmitter that publishes no
    /// `/.well-known/ssf-configuration`. Default: discovered.
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.jwks_uri = Some(url.into());
        self
    }

    /// The clock SETs are checked by (and revocations made by). Default:
    /// the system's.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// SETs issued longer ago are refused (`invalid_request`), and `jti`s
    /// are remembered this long. Default [`DEFAULT_MAX_EVENT_AGE`].
    pub fn max_event_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// Checks the configuration. Nothing is fetched yet.
    pub fn build(self) -> Result<SsfReceiver, ConfigError> {
        let url = |s: &str| acceptable_url(s).ok_or_else(|| ConfigError::InsecureUrl(s.to_owned()));
        let transmitter_url = url(&self.transmitter)?;
        if self.audience.is_empty() {
            return Err(ConfigError::MissingAudience);
        }
        if self.max_age.is_zero() {
            return Err(ConfigError::InvalidLimit("max_event_age"));
        }
        let limits = Limits {
            max_token_bytes: MAX_SET_BYTES,
            ..Limits::default()
        };
        let fetcher = Fetcher::new(DEFAULT_FETCH_TIMEOUT, limits.max_document_bytes)
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        let algorithms: Box<[Algorithm]> = Algorithm::DEFAULT_ALLOWED
            .into_iter()
            .filter(|a| !a.is_symmetric())
            .collect();
        let inner = Inner {
            token_issuer: self
                .token_issuer
                .unwrap_or_else(|| self.transmitter.clone())
                .into(),
            transmitter: self.transmitter.into(),
            transmitter_url,
            audience: self.audience.into(),
            revocations: self.revocations,
            clock: self.clock,
            fetcher,
            limits,
            algorithms,
            max_age: self.max_age,
            keys: OnceLock::new(),
            discovery: tokio::sync::Mutex::new(None),
            seen: moka::sync::Cache::builder()
                .max_capacity(MAX_SEEN)
                .time_to_live(self.max_age)
                .build(),
            verification: Mutex::new(None),
        };
        if let Some(jwks) = self.jwks_uri {
            let store = inner.key_store(url(&jwks)?);
            let _ = inner.keys.set(store);
        }
        Ok(SsfReceiver {
            inner: Arc::new(inner),
        })
    }
}

/// The claims of a SET this crate reads.
#[derive(Deserialize)]
struct SetClaims {
    iss: Option<String>,
    #[serde(default)]
    aud: Audience,
    iat: Option<Value>,
    exp: Option<Value>,
    jti: Option<String>,
    events: Option<Map<String, Value>>,
    sub_id: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, aud: &str) -> bool {
        match self {
            Self::None => false,
            Self::One(a) => a == aud,
            Self::Many(v) => v.iter().any(|a| a == aud),
        }
    }
}

impl SsfReceiver {
    /// The push endpoint (RFC 8935): a tower `Service` to mount in axum
    /// (`route_service`), answering 202 or 400 with RFC 8935's JSON error.
    /// The transmitter must send `authorization` as its `Authorization`
    /// header (compared in constant time).
    pub fn push_endpoint(&self, authorization: &str) -> Result<SsfPush, ConfigError> {
        SsfPush::new(self.clone(), authorization)
    }

    /// A poll client (RFC 8936) of the transmitter's poll endpoint
    /// `endpoint`, sending `authorization` as its `Authorization` header.
    pub fn poller(&self, endpoint: &str, authorization: &str) -> Result<SsfPoll, ConfigError> {
        SsfPoll::new(self.clone(), endpoint, authorization)
    }

    /// The last verification event, if one came.
    pub fn last_verification(&self) -> Option<Verification> {
        self.inner
            .verification
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Checks one SET (its compact serialization) and applies its events
    /// to the revocation list.
    pub async fn receive(&self, set: &str) -> Result<Received, SetError> {
        let inner = &*self.inner;
        let payload = inner.verify(set.trim()).await?;
        jwt::check_depth(&payload, inner.limits.max_json_depth)
            .map_err(|_| SetError::InvalidRequest("the claims are nested too deeply"))?;
        let claims: SetClaims = serde_json::from_slice(&payload)
            .map_err(|_| SetError::InvalidRequest("the claims are not a valid SET"))?;
        let (jti, events, issued_at) = inner.check(&claims)?;
        let outcome = events::read(
            events,
            claims.sub_id.as_ref(),
            issued_at,
            &inner.token_issuer,
        )?;
        // Last: a SET refused above may come again, fixed.
        if !inner.seen.entry(Box::from(jti)).or_insert(()).is_fresh() {
            return Err(SetError::InvalidRequest("this jti was received before"));
        }
        for what in &outcome.revoke {
            inner.revocations.revoke(what.clone());
        }
        for (event, why) in &outcome.ignored {
            tracing::info!(jti, event = %event, why, "SSF event changed nothing");
        }
        if let Some(state) = outcome.verification {
            tracing::info!(jti, "SSF verification event received");
            *inner
                .verification
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Verification {
                state,
                received_at: inner.clock.now(),
            });
        }
        tracing::info!(jti, revocations = outcome.revoke.len(), "SET received");
        Ok(Received {
            jti: jti.to_owned(),
            revoked: outcome.revoke,
            ignored: outcome.ignored,
        })
    }
}

impl Inner {
    fn key_store(&self, jwks: Url) -> Arc<KeyStore> {
        let policy = KeyPolicy {
            default_max_age: DEFAULT_JWKS_MAX_AGE,
            min_max_age: MIN_JWKS_MAX_AGE,
            max_max_age: MAX_JWKS_MAX_AGE,
            max_stale: DEFAULT_MAX_STALE,
            cooldown: DEFAULT_REFETCH_COOLDOWN,
            discovery_max_age: DISCOVERY_MAX_AGE,
        };
        KeyStore::new(
            Source::Jwks(jwks, KeySet::default()),
            Some(self.transmitter.to_string()),
            self.algorithms.to_vec(),
            self.limits.clone(),
            self.clock.clone(),
            policy,
            &self.fetcher,
            None,
        )
    }

    /// The transmitter's key store, discovered on first use.
    async fn keys(&self) -> Result<Arc<KeyStore>, SetError> {
        if let Some(store) = self.keys.get() {
            return Ok(store.clone());
        }
        let mut failed = self.discovery.lock().await;
        if let Some(store) = self.keys.get() {
            return Ok(store.clone());
        }
        let now = self.clock.now();
        if let Some(at) = *failed {
            let again = at + DEFAULT_REFETCH_COOLDOWN;
            if now < again {
                let retry_after = again.duration_since(now).unwrap_or_default();
                return Err(SetError::KeysUnavailable { retry_after });
            }
        }
        let found = self
            .fetcher
            .discover_transmitter(&self.transmitter_url, &self.transmitter)
            .await
            .and_then(|meta| {
                meta.jwks_uri
                    .ok_or(crate::fetch::FetchError::InvalidDocument(
                        "no jwks_uri".into(),
                    ))
            });
        match found {
            Ok(jwks) => {
                let store = self.keys.get_or_init(|| self.key_store(jwks)).clone();
                *failed = None;
                Ok(store)
            }
            Err(e) => {
                tracing::warn!(
                    transmitter = %loggable(&self.transmitter_url),
                    error = %e,
                    "SSF transmitter configuration could not be loaded"
                );
                *failed = Some(now);
                Err(SetError::KeysUnavailable {
                    retry_after: DEFAULT_REFETCH_COOLDOWN,
                })
            }
        }
    }

    /// The payload of `set`, if a key of the transmitter signed it.
    async fn verify(&self, set: &str) -> Result<Vec<u8>, SetError> {
        let parsed = jwt::parse_jws(&self.limits, &self.algorithms, set, jwt::check_set_type)
            .map_err(|e| match e {
                TokenError::AlgorithmNotAllowed => {
                    SetError::InvalidKey("the signing algorithm is not accepted")
                }
                TokenError::WrongType => SetError::InvalidRequest("typ is not secevent+jwt"),
                TokenError::TooLarge => SetError::InvalidRequest("the SET is too large"),
                _ => SetError::InvalidRequest("not a signed JWT"),
            })?;
        let store = self.keys().await?;
        let mut refreshed = None;
        loop {
            let snapshot = store.snapshot(self.clock.now());
            match parsed.key(snapshot.set()) {
                Ok(key) if parsed.signed_by(set, key) => return Ok(parsed.payload().to_vec()),
                Ok(_) => return Err(SetError::InvalidKey("the signature does not verify")),
                Err(Failure::Token(_)) => {
                    return Err(SetError::InvalidKey("the key does not fit the algorithm"));
                }
                // One refetch for a key not seen yet, within the cooldown.
                Err(_) if refreshed.is_none() => {
                    refreshed = Some(store.refresh(snapshot.generation).await);
                }
                Err(Failure::UnknownKey) => {
                    return Err(SetError::InvalidKey("the key is not the transmitter's"));
                }
                Err(Failure::NoKeys) => {
                    let retry_after = refreshed.map_or(Duration::ZERO, |r| r.retry_after());
                    return Err(SetError::KeysUnavailable {
                        retry_after: retry_after.max(Duration::from_secs(1)),
                    });
                }
            }
        }
    }

    /// The registered claims' checks; the `jti`, the events, and `iat`.
    fn check<'c>(
        &self,
        c: &'c SetClaims,
    ) -> Result<(&'c str, &'c Map<String, Value>, SystemTime), SetError> {
        if c.iss.as_deref() != Some(&*self.transmitter) {
            return Err(SetError::InvalidIssuer);
        }
        if !c.aud.contains(&self.audience) {
            return Err(SetError::InvalidAudience);
        }
        let iat = c
            .iat
            .as_ref()
            .ok_or(SetError::InvalidRequest("iat is missing"))?;
        let iat = events::timestamp(iat).ok_or(SetError::InvalidRequest("iat is not a time"))?;
        let jti = c
            .jti
            .as_deref()
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or(SetError::InvalidRequest("jti is missing"))?;
        let events = c
            .events
            .as_ref()
            .filter(|e| !e.is_empty())
            .ok_or(SetError::InvalidRequest("events is missing"))?;
        let now = self.clock.now();
        if iat > now + DEFAULT_LEEWAY {
            return Err(SetError::InvalidRequest("iat is in the future"));
        }
        if now.duration_since(iat).is_ok_and(|age| age > self.max_age) {
            return Err(SetError::InvalidRequest("the SET is too old"));
        }
        if let Some(exp) = &c.exp {
            let exp =
                events::timestamp(exp).ok_or(SetError::InvalidRequest("exp is not a time"))?;
            if now >= exp + DEFAULT_LEEWAY {
                return Err(SetError::InvalidRequest("the SET has expired"));
            }
        }
        Ok((jti, events, iat))
    }
}
