//! The current key set and how it is refreshed.
//!
//! The hot path reads the current set through an [`ArcSwapOption`]: no
//! lock, no I/O, no waiting on a fetch. Fetches happen only when a request
//! needs keys the set does not have (first use, unknown `kid`); they are
//! serialised behind an async mutex, and a generation counter lets every
//! request that queued behind a fetch reuse its result instead of fetching
//! again (single-flight). A cooldown bounds how often unknown `kid`s can
//! trigger a fetch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwapOption, Guard};
use tokio::sync::Mutex;
use url::Url;

use super::fetch::{FetchError, Fetcher};
use super::set::KeySet;
use crate::alg::Algorithm;
use crate::clock::Clock;
use crate::config::{ConfigError, Limits};

/// Where keys come from.
pub(crate) enum Source {
    /// A fixed set; never fetched.
    Static(KeySet),
    /// A JWKS URL, plus configured shared secrets.
    Jwks(Url, KeySet),
    /// An issuer whose discovery document names the JWKS URL, plus
    /// configured shared secrets.
    Discovery(Url, KeySet),
}

pub(crate) struct KeyStore {
    current: ArcSwapOption<KeySet>,
    /// Bumped after every successful fetch.
    generation: AtomicU64,
    remote: Option<Remote>,
    refresh: Mutex<RefreshState>,
    issuer: Option<Box<str>>,
    algorithms: Vec<Algorithm>,
    limits: Limits,
    clock: Arc<dyn Clock>,
    cooldown: Duration,
}

/// A key set that is fetched.
struct Remote {
    fetcher: Fetcher,
    /// Where the JWKS URL comes from: given, or `None` for discovery.
    jwks_uri: Option<Url>,
    issuer_url: Option<Url>,
    /// Configured shared secrets, added to every fetched set.
    secrets: KeySet,
}

#[derive(Default)]
struct RefreshState {
    /// The JWKS URL found by discovery.
    jwks_uri: Option<Url>,
    /// When a request last triggered a fetch that counts against the
    /// cooldown: a refetch for an unknown `kid`, or a failed fetch.
    last_triggered: Option<SystemTime>,
}

/// What a [`KeyStore::refresh`] call achieved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// The set is newer than the caller's snapshot: validate again.
    Updated,
    /// Nothing was fetched: the cooldown has not passed.
    CoolingDown { retry_after: Duration },
    /// The fetch failed; the old set (if any) stays.
    Failed { retry_after: Duration },
}

impl Refresh {
    /// When a client refused for lack of keys should try again.
    pub(crate) fn retry_after(&self) -> Duration {
        match self {
            Self::Updated => Duration::ZERO,
            Self::CoolingDown { retry_after } | Self::Failed { retry_after } => *retry_after,
        }
    }
}

impl KeyStore {
    pub(crate) fn new(
        source: Source,
        issuer: Option<String>,
        algorithms: Vec<Algorithm>,
        limits: Limits,
        clock: Arc<dyn Clock>,
        cooldown: Duration,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let fetcher = || Fetcher::new(timeout, limits.max_document_bytes);
        let (current, remote) = match source {
            Source::Static(set) => (Some(Arc::new(set)), None),
            Source::Jwks(uri, secrets) => (
                secrets.as_partial(),
                Some(Remote {
                    fetcher: fetcher()?,
                    jwks_uri: Some(uri),
                    issuer_url: None,
                    secrets,
                }),
            ),
            Source::Discovery(issuer, secrets) => (
                secrets.as_partial(),
                Some(Remote {
                    fetcher: fetcher()?,
                    jwks_uri: None,
                    issuer_url: Some(issuer),
                    secrets,
                }),
            ),
        };
        Ok(Self {
            current: ArcSwapOption::new(current),
            generation: AtomicU64::new(0),
            remote,
            refresh: Mutex::new(RefreshState::default()),
            issuer: issuer.map(Box::from),
            algorithms,
            limits,
            clock,
            cooldown,
        })
    }

    /// Minimum time between triggered fetches.
    pub(crate) fn cooldown(&self) -> Duration {
        self.cooldown
    }

    /// The current set and its generation, without locking.
    pub(crate) fn snapshot(&self) -> (Guard<Option<Arc<KeySet>>>, u64) {
        let generation = self.generation.load(Ordering::Acquire);
        (self.current.load(), generation)
    }

    /// Fetches a new set because a request needs keys that the snapshot of
    /// generation `seen` lacked. Concurrent callers share one fetch.
    pub(crate) async fn refresh(&self, seen: u64) -> Refresh {
        let mut state = self.refresh.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return Refresh::Updated;
        }
        let Some(remote) = &self.remote else {
            return Refresh::CoolingDown {
                retry_after: self.cooldown,
            };
        };
        let now = self.clock.now();
        // A clock that stepped backwards ends the cooldown rather than
        // stretching it.
        if let Some(elapsed) = state
            .last_triggered
            .and_then(|t| now.duration_since(t).ok())
            && elapsed < self.cooldown
        {
            return Refresh::CoolingDown {
                retry_after: self.cooldown - elapsed,
            };
        }
        let had_keys = self
            .current
            .load()
            .as_ref()
            .is_some_and(|s| !s.is_partial());
        // Recorded before fetching: a request cancelled mid-fetch still
        // counts against the cooldown, so dropped connections cannot turn
        // into one fetch each.
        state.last_triggered = Some(now);
        match self.fetch(remote, &mut state).await {
            Ok(()) => {
                // The first successful load does not start the cooldown, so
                // a rotation right after start-up is picked up at once.
                if !had_keys {
                    state.last_triggered = None;
                }
                Refresh::Updated
            }
            Err(_) => Refresh::Failed {
                retry_after: self.cooldown,
            },
        }
    }

    /// Fetches the key set now, regardless of cooldowns; returns how many
    /// usable keys it holds.
    pub(crate) async fn prefetch(&self) -> Result<usize, FetchError> {
        let mut state = self.refresh.lock().await;
        if let Some(remote) = &self.remote {
            self.fetch(remote, &mut state).await?;
        }
        Ok(self.current.load().as_ref().map_or(0, |s| s.len()))
    }

    async fn fetch(&self, remote: &Remote, state: &mut RefreshState) -> Result<(), FetchError> {
        let started = Instant::now();
        let result = self.fetch_set(remote, state).await;
        match &result {
            Ok(set) => {
                let old = self.current.load_full();
                let added: Vec<&str> = set
                    .kids()
                    .filter(|k| old.as_ref().is_none_or(|o| !o.kids().any(|ok| ok == *k)))
                    .collect();
                let removed: Vec<&str> = old
                    .as_ref()
                    .map(|o| {
                        o.kids()
                            .filter(|k| !set.kids().any(|nk| nk == *k))
                            .collect()
                    })
                    .unwrap_or_default();
                tracing::info!(
                    url = state.jwks_uri.as_ref().map(Url::as_str),
                    keys = set.len(),
                    ?added,
                    ?removed,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "fetched JWK set"
                );
            }
            Err(e) => tracing::error!(
                url = state.jwks_uri.as_ref().map(Url::as_str),
                error = %e,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "fetching the JWK set failed; keeping the previous set"
            ),
        }
        let set = result?;
        self.current.store(Some(Arc::new(set)));
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    async fn fetch_set(
        &self,
        remote: &Remote,
        state: &mut RefreshState,
    ) -> Result<KeySet, FetchError> {
        let uri = match (&remote.jwks_uri, &state.jwks_uri, &remote.issuer_url) {
            (Some(uri), _, _) | (None, Some(uri), _) => uri.clone(),
            (None, None, Some(issuer)) => {
                let expected = self.issuer.as_deref().unwrap_or(issuer.as_str());
                remote.fetcher.discover(issuer, expected).await?
            }
            (None, None, None) => return Err(FetchError::InvalidDocument("no JWKS URL".into())),
        };
        state.jwks_uri = Some(uri.clone());
        let body = remote.fetcher.get(&uri).await?;
        let (mut set, skipped) = KeySet::parse(&body, &self.algorithms, &self.limits)
            .map_err(|e| FetchError::InvalidDocument(e.to_string()))?;
        for s in &skipped {
            tracing::warn!(
                kid = s.kid.as_deref(),
                reason = s.reason,
                "skipping unusable JWK"
            );
        }
        if set.is_empty() {
            return Err(FetchError::NoUsableKeys);
        }
        set.extend(&remote.secrets);
        Ok(set)
    }
}
