//! What a validation tells an operator: one fixed reason code per
//! outcome, one `tracing` span per validation, and, with the `metrics`
//! feature, the metrics of the README's "Operating it" (`metrics`).
//!
//! The codes are a closed set, so a metric labelled with them has a
//! bounded number of series; nothing here ever holds the token, a claim
//! set, or a value taken from a token that no configuration names.

use std::time::SystemTime;

use crate::error::{AuthError, TokenError};

#[cfg(feature = "metrics")]
pub(crate) mod metrics;

/// How a validation ended, the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Accepted,
    Refused,
    /// The token could not be checked (no keys, introspection down): 503.
    Unavailable,
}

impl Outcome {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Refused => "refused",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The way a token was checked, the `path` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// A verified-token cache hit.
    Cached,
    /// Its signature checked (after a key fetch, sometimes).
    Verified,
    /// Asked of the authorization server (RFC 7662).
    Introspected,
}

#[cfg(feature = "metrics")]
impl Path {
    pub(crate) const ALL: [Self; 3] = [Self::Cached, Self::Verified, Self::Introspected];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Cached => "cached",
            Self::Verified => "verified",
            Self::Introspected => "introspected",
        }
    }
}

macro_rules! reasons {
    ($($variant:ident => $code:literal,)*) => {
        /// Why a validation ended as it did, the `reason` label: a fixed
        /// code for each kind of [`AuthError`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Reason {
            $($variant,)*
        }

        impl Reason {
            /// Every reason, in declaration order (`ALL[r as usize] == r`).
            #[cfg(any(test, feature = "metrics"))]
            pub(crate) const ALL: &[Self] = &[$(Self::$variant,)*];

            pub(crate) const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }
        }
    };
}

reasons! {
    Ok => "ok",
    MissingToken => "missing_token",
    InvalidRequest => "invalid_request",
    TooLarge => "too_large",
    Malformed => "malformed",
    AlgorithmNotAllowed => "algorithm_not_allowed",
    WrongType => "wrong_type",
    UnknownKey => "unknown_key",
    KeyMismatch => "key_mismatch",
    BadSignature => "bad_signature",
    Expired => "expired",
    NotYetValid => "not_yet_valid",
    TooOld => "too_old",
    Revoked => "revoked",
    Inactive => "inactive",
    InvalidClaims => "invalid_claims",
    WrongIssuer => "wrong_issuer",
    WrongAudience => "wrong_audience",
    Dpop => "dpop",
    DpopNonce => "dpop_nonce",
    Certificate => "certificate",
    Rule => "rule",
    InsufficientScope => "insufficient_scope",
    Forbidden => "forbidden",
    InsufficientUserAuthentication => "insufficient_user_authentication",
    KeysUnavailable => "keys_unavailable",
    IntrospectionUnavailable => "introspection_unavailable",
}

impl Reason {
    /// The reason for `err`, met on `path` (`None`: before any path was
    /// taken): an introspection answer `active: false` is `inactive`, a
    /// revocation hook's verdict `revoked`.
    pub(crate) fn of(err: &AuthError, path: Option<Path>) -> Self {
        let introspected = path == Some(Path::Introspected);
        match err {
            AuthError::MissingToken => Self::MissingToken,
            AuthError::InvalidRequest(_) => Self::InvalidRequest,
            AuthError::InsufficientScope(_) => Self::InsufficientScope,
            AuthError::Forbidden(_) => Self::Forbidden,
            AuthError::InsufficientUserAuthentication(_) => Self::InsufficientUserAuthentication,
            AuthError::InvalidDpopProof(_) => Self::Dpop,
            AuthError::UseDpopNonce => Self::DpopNonce,
            AuthError::TemporarilyUnavailable { .. } if introspected => {
                Self::IntrospectionUnavailable
            }
            AuthError::TemporarilyUnavailable { .. } => Self::KeysUnavailable,
            AuthError::InvalidToken(e) => match e {
                TokenError::TooLarge => Self::TooLarge,
                TokenError::Malformed
                | TokenError::Encrypted
                | TokenError::LimitExceeded(_)
                | TokenError::UntrustedKeySource(_)
                | TokenError::UnsupportedExtension => Self::Malformed,
                TokenError::AlgorithmNotAllowed => Self::AlgorithmNotAllowed,
                TokenError::WrongType => Self::WrongType,
                TokenError::UnknownKey => Self::UnknownKey,
                TokenError::KeyAlgorithmMismatch => Self::KeyMismatch,
                TokenError::BadSignature => Self::BadSignature,
                TokenError::Expired => Self::Expired,
                TokenError::NotYetValid => Self::NotYetValid,
                TokenError::TooOld => Self::TooOld,
                TokenError::Revoked if introspected => Self::Inactive,
                TokenError::Revoked => Self::Revoked,
                TokenError::MissingClaim(_) | TokenError::InvalidClaim(_) => Self::InvalidClaims,
                TokenError::WrongIssuer => Self::WrongIssuer,
                TokenError::WrongAudience => Self::WrongAudience,
                TokenError::DpopBound | TokenError::NotDpopBound | TokenError::DpopRequired => {
                    Self::Dpop
                }
                TokenError::CertificateMismatch => Self::Certificate,
                TokenError::Refused(_) => Self::Rule,
            },
        }
    }

    pub(crate) const fn outcome(self) -> Outcome {
        match self {
            Self::Ok => Outcome::Accepted,
            Self::KeysUnavailable | Self::IntrospectionUnavailable => Outcome::Unavailable,
            _ => Outcome::Refused,
        }
    }
}

/// What a key fetch (a JWK set, or a discovery document) came to, the
/// `result` label of `tower_bearer_key_fetches_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FetchResult {
    Updated = 0,
    NotModified = 1,
    Error = 2,
}

#[cfg(feature = "metrics")]
impl FetchResult {
    pub(crate) const ALL: [Self; 3] = [Self::Updated, Self::NotModified, Self::Error];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::NotModified => "not_modified",
            Self::Error => "error",
        }
    }
}

/// Where a key store reports its fetches: the key metrics of the issuer
/// that claimed it first (several issuers may share one store). Without
/// the `metrics` feature it holds and does nothing.
#[derive(Default)]
pub(crate) struct KeyObserver {
    #[cfg(feature = "metrics")]
    metrics: std::sync::OnceLock<std::sync::Arc<metrics::KeyMetrics>>,
}

/// What a key store's health says after a fetch, for the gauges.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct KeyReading {
    pub(crate) keys: usize,
    pub(crate) last_success: Option<SystemTime>,
    pub(crate) expires_at: Option<SystemTime>,
}

impl KeyObserver {
    /// One fetch, and the store's state after it.
    pub(crate) fn fetched(&self, result: FetchResult, reading: KeyReading) {
        #[cfg(feature = "metrics")]
        if let Some(m) = self.metrics.get() {
            m.fetched(result, reading);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (result, reading);
    }

    /// Reports to `m` from now on, unless another issuer's metrics came
    /// first; sets its gauges from `reading` at once (a static set is
    /// never fetched).
    #[cfg(feature = "metrics")]
    pub(crate) fn attach(&self, m: std::sync::Arc<metrics::KeyMetrics>, reading: KeyReading) {
        if self.metrics.set(m).is_ok()
            && let Some(m) = self.metrics.get()
        {
            m.set(reading);
        }
    }
}

/// What one validation learned on its way, for its span and metrics: the
/// path it took, the configured issuer (by index, 0 for none) whose rules
/// judged the token, and (metrics on) when its timed part began.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Seen {
    pub(crate) path: Option<Path>,
    pub(crate) issuer: u16,
    #[cfg(feature = "metrics")]
    timer: Timer,
}

/// One cache hit in this many is timed: two clock reads and a histogram
/// sample cost a third of a hit, and a sample of hits shows their
/// distribution as well as all of them would.
#[cfg(feature = "metrics")]
pub(crate) const TIMED_HITS: u32 = 16;

#[cfg(feature = "metrics")]
#[derive(Clone, Copy, Debug, Default)]
struct Timer {
    /// Metrics are on.
    on: bool,
    started: Option<std::time::Instant>,
}

impl Seen {
    /// A validation starting now; `timed` when metrics are on. It is
    /// timed from now if it is the hit in [`TIMED_HITS`] of this thread.
    pub(crate) fn start(timed: bool) -> Self {
        #[cfg(feature = "metrics")]
        return Self {
            timer: Timer {
                on: timed,
                started: (timed && sampled()).then(std::time::Instant::now),
            },
            ..Self::default()
        };
        #[cfg(not(feature = "metrics"))]
        {
            let _ = timed;
            Self::default()
        }
    }

    /// The token is not in the cache: with metrics on, every such
    /// validation is timed, from here.
    pub(crate) fn missed(&mut self) {
        #[cfg(feature = "metrics")]
        if self.timer.on {
            self.timer.started = Some(std::time::Instant::now());
        }
    }

    /// When its timed part began, if it is timed.
    #[cfg(feature = "metrics")]
    pub(crate) fn started(&self) -> Option<std::time::Instant> {
        self.timer.started
    }
}

/// Whether this validation is the one in [`TIMED_HITS`] of its thread.
#[cfg(feature = "metrics")]
fn sampled() -> bool {
    thread_local! {
        static COUNT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    COUNT.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n % TIMED_HITS == 0
    })
}

/// One validation under way: its span, and what it has learned.
pub(crate) struct Watch {
    pub(crate) span: tracing::Span,
    pub(crate) seen: Seen,
}

impl Watch {
    /// A validation starting now; `timed` when metrics are on.
    pub(crate) fn start(timed: bool) -> Self {
        Self {
            span: validation_span(),
            seen: Seen::start(timed),
        }
    }
}

/// An accepted token's count, held until the inner service has answered:
/// a route layer may still refuse the request, and then the request is
/// counted as that refusal instead. Nothing without the `metrics` feature.
#[derive(Default)]
pub(crate) struct Tally {
    /// The issuer's counters, for an accepted token with metrics on.
    #[cfg(feature = "metrics")]
    pub(crate) issuer: Option<std::sync::Arc<metrics::IssuerMetrics>>,
}

/// Marks a refusal's response with its reason; `counted` when a
/// `BearerAuth` has counted it, so that no layer around counts it again.
#[cfg(feature = "metrics")]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decided {
    pub(crate) reason: Reason,
    pub(crate) counted: bool,
}

/// Marks `res` as a refusal for `reason`, counted or not.
pub(crate) fn mark<B>(res: &mut http::Response<B>, reason: Reason, counted: bool) {
    #[cfg(feature = "metrics")]
    res.extensions_mut().insert(Decided { reason, counted });
    #[cfg(not(feature = "metrics"))]
    let _ = (res, reason, counted);
}

/// Counts the request of `tally` now that the inner service answered
/// `res`: as accepted, unless a route layer refused it (then as that
/// refusal, marked counted).
pub(crate) fn settle<B>(tally: &mut Tally, res: &mut http::Response<B>) {
    #[cfg(feature = "metrics")]
    if let Some(m) = tally.issuer.take() {
        match res.extensions_mut().get_mut::<Decided>() {
            None => m.count(Reason::Ok),
            Some(d) if d.counted => {}
            Some(d) => {
                m.count(d.reason);
                d.counted = true;
            }
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (tally, res);
}

/// Counts an accepted token at once: no route follows.
pub(crate) fn settle_now(tally: Tally) {
    #[cfg(feature = "metrics")]
    if let Some(m) = tally.issuer {
        m.count(Reason::Ok);
    }
    #[cfg(not(feature = "metrics"))]
    let Tally {} = tally;
}

/// The span of one validation (`tower_bearer.validate`, at `debug`):
/// every field is recorded once the outcome is known.
pub(crate) fn validation_span() -> tracing::Span {
    tracing::debug_span!(
        "tower_bearer.validate",
        outcome = tracing::field::Empty,
        reason = tracing::field::Empty,
        iss = tracing::field::Empty,
        kid = tracing::field::Empty,
        alg = tracing::field::Empty,
        cached = tracing::field::Empty,
        "enduser.id" = tracing::field::Empty,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_sits_at_its_own_index_with_a_distinct_code() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert!(
                r.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{r:?}"
            );
        }
        let mut codes: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Reason::ALL.len());
    }

    #[test]
    fn revoked_means_inactive_only_when_the_server_said_so() {
        let revoked = AuthError::InvalidToken(TokenError::Revoked);
        assert_eq!(Reason::of(&revoked, Some(Path::Cached)), Reason::Revoked);
        assert_eq!(
            Reason::of(&revoked, Some(Path::Introspected)),
            Reason::Inactive
        );
        let down = AuthError::TemporarilyUnavailable {
            retry_after: std::time::Duration::ZERO,
        };
        assert_eq!(
            Reason::of(&down, Some(Path::Verified)).outcome(),
            Outcome::Unavailable
        );
        assert_eq!(
            Reason::of(&down, Some(Path::Introspected)),
            Reason::IntrospectionUnavailable
        );
    }
}
