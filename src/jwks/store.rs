//! The current key set and how it is kept fresh.
//!
//! The hot path reads the current set through an [`ArcSwapOption`] and one
//! atomic: no lock, no I/O, no waiting on a fetch in progress. Fetches
//! happen
//! - in the background, when the set's freshness (`Cache-Control: max-age`,
//!   clamped) is nearly used up: the first request that notices spawns one
//!   refresh and goes on with the keys at hand;
//! - in the request, when it needs keys the set does not have (first use,
//!   unknown `kid`, or a set stale beyond the configured window). These are
//!   serialised behind an async mutex, and a generation counter lets every
//!   request that queued behind a fetch reuse its result (single-flight). A
//!   cooldown bounds how often unknown `kid`s can trigger a fetch.
//!
//! An issuer found by discovery gets a store that only discovers: it
//! hands every call to the store for the JWKS URL its discovery named,
//! which the validator's [`StorePool`] holds and every issuer naming that
//! URL shares. That store fetches its one URL and never discovers, so no
//! issuer's discovery can change the keys another issuer is checked with.
//! Discovery is repeated once a day, in the background.
//!
//! A failed fetch (transport error, a status other than 200/304, a body
//! that is not a JWK set) keeps the last good set, up to `max_stale` past
//! its expiry, and retries with exponential backoff. A well-formed set
//! replaces the old one whole, even when it holds no usable key: a key the
//! issuer removed is gone at once. Keys whose JWK did not change keep their
//! `Arc`, so the verifications cached with them survive a refresh.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use tokio::sync::{Mutex, watch};
use tracing::Instrument as _;
use url::Url;

use super::set::KeySet;
use super::share::{FetchBudget, StorePool};
use crate::alg::Algorithm;
use crate::clock::{Clock, unix_millis};
use crate::config::Limits;
use crate::fetch::{FetchError, Fetched, Fetcher, Validators, loggable};
use crate::telemetry::{FetchResult, KeyObserver, KeyReading};

/// Where keys come from.
pub(crate) enum Source {
    /// A fixed set; never fetched.
    Static(KeySet),
    /// A JWKS URL, plus configured shared secrets.
    Jwks(Url, KeySet),
    /// An issuer whose discovery document names the JWKS URL, plus
    /// configured shared secrets. The set is kept by the pool's store for
    /// that URL, which every issuer naming it shares.
    Discovery(Url, KeySet, Arc<StorePool>),
}

/// How fetched key sets age. Defaults in [`crate::config`].
#[derive(Debug, Clone)]
pub(crate) struct KeyPolicy {
    /// Freshness when the JWKS response gives no `max-age`.
    pub default_max_age: Duration,
    /// `max-age` is clamped to `[min_max_age, max_max_age]`.
    pub min_max_age: Duration,
    pub max_max_age: Duration,
    /// How long past its expiry a set is still used while fetching fails.
    pub max_stale: Duration,
    /// Minimum time between fetches triggered by unknown `kid`s.
    pub cooldown: Duration,
    /// How often the discovery document is fetched again.
    pub discovery_max_age: Duration,
}

/// The state of the issuer's keys, for readiness probes and dashboards.
/// Get it from [`BearerAuthLayer::key_health`](crate::BearerAuthLayer::key_health).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyHealth {
    /// Usable keys in the current set, configured shared secrets included.
    /// Zero (without secrets) after the issuer published a set without a
    /// usable key: its tokens are then refused (`invalid_token`) and
    /// [`is_ready`](Self::is_ready) is false.
    pub key_count: usize,
    /// The `kid`s of those keys.
    pub kids: Vec<String>,
    /// Keys of the last fetched set that were skipped as unusable (RSA
    /// under 2048 bits, `use` other than `sig`, an unsupported curve, …);
    /// each is logged with its reason.
    pub skipped_keys: usize,
    /// When a fetch last succeeded (a 304 counts).
    pub last_success: Option<SystemTime>,
    /// When a fetch last failed, and why.
    pub last_error: Option<(SystemTime, FetchError)>,
    /// Fetch failures since the last success.
    pub consecutive_failures: u32,
    /// When the current set stops being fresh.
    pub expires_at: Option<SystemTime>,
    /// After this, the set is no longer used at all (expiry plus the
    /// stale-if-error window).
    pub usable_until: Option<SystemTime>,
    /// When the next background refresh is due: 80–100 % into the
    /// freshness lifetime after a success, after a backoff of 5 s doubling
    /// to 5 min after failures.
    pub next_refresh: Option<SystemTime>,
    /// Successful fetches so far.
    pub fetches: u64,
}

impl KeyHealth {
    /// What the key metrics' gauges show of it.
    fn reading(&self) -> KeyReading {
        KeyReading {
            keys: self.key_count,
            last_success: self.last_success,
            expires_at: self.expires_at,
        }
    }

    /// Whether tokens signed with the issuer's keys can be checked now.
    pub fn is_ready(&self, now: SystemTime) -> bool {
        self.key_count > 0 && self.usable_until.is_none_or(|t| now < t)
    }

    /// How long ago the keys were last confirmed current.
    pub fn age(&self, now: SystemTime) -> Option<Duration> {
        self.last_success.and_then(|t| now.duration_since(t).ok())
    }

    /// Whether the set is past its freshness and kept only because
    /// fetching a new one fails.
    pub fn is_stale(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }
}

/// A key set as fetched: the keys (configured secrets included), and how
/// many of the JWKs were usable or skipped.
struct FetchedSet {
    set: KeySet,
    usable: usize,
    skipped: usize,
}

/// A key set with its lifetimes.
pub(crate) struct Loaded {
    pub(crate) set: KeySet,
    /// Past this, the set is not used at all.
    usable_until: SystemTime,
    /// Which set this is: unique among every store's sets, kept by a 304.
    /// Equal ids mean the very same keys.
    id: u64,
}

/// A set's id and usable-until, readable without a guard. One writer at
/// a time (a store's refreshes are serialised): it marks the id
/// [`NEVER`], writes the time, then the new id; a reader that reads the
/// same id before and after the time has the time of that id.
struct Mirror {
    id: AtomicU64,
    until_ms: AtomicU64,
}

impl Mirror {
    fn of(loaded: Option<&Loaded>) -> Self {
        let m = Self {
            id: AtomicU64::new(NEVER),
            until_ms: AtomicU64::new(0),
        };
        m.set(loaded);
        m
    }

    fn set(&self, loaded: Option<&Loaded>) {
        self.id.store(NEVER, Ordering::Release);
        if let Some(l) = loaded {
            self.until_ms
                .store(unix_millis(l.usable_until), Ordering::Release);
            self.id.store(l.id, Ordering::Release);
        }
    }

    /// The id, if its set is usable at `now_ms`.
    fn usable_id(&self, now_ms: u64) -> Option<u64> {
        let id = self.id.load(Ordering::Acquire);
        let until = self.until_ms.load(Ordering::Acquire);
        (id != NEVER && now_ms < until && self.id.load(Ordering::Acquire) == id).then_some(id)
    }
}

/// The id of the next set loaded by any store.
static NEXT_SET_ID: AtomicU64 = AtomicU64::new(0);

fn next_set_id() -> u64 {
    NEXT_SET_ID.fetch_add(1, Ordering::Relaxed)
}

pub(crate) struct KeyStore {
    current: ArcSwapOption<Loaded>,
    /// `current`'s id and usable-until (Unix ms), mirrored for
    /// [`current_set_id`](Self::current_set_id); `id` is [`NEVER`] while
    /// there is no set or one is being replaced.
    mirror: Mirror,
    /// Bumped after every successful fetch.
    generation: AtomicU64,
    /// Unix milliseconds at which a background refresh (or, for a
    /// discovering store, a new discovery) is due.
    next_background: AtomicU64,
    background_running: AtomicBool,
    remote: Option<Remote>,
    refresh: Mutex<RefreshState>,
    health: Arc<watch::Sender<KeyHealth>>,
    issuer: Option<Box<str>>,
    algorithms: Vec<Algorithm>,
    limits: Limits,
    clock: Arc<dyn Clock>,
    policy: KeyPolicy,
    /// This store, to follow a delegate's health.
    me: Weak<KeyStore>,
    /// The discovering stores that delegate here: their health is this
    /// store's, updated with it.
    followers: std::sync::Mutex<Vec<Weak<KeyStore>>>,
    /// A discovering store's: the pool's store for the JWKS URL its
    /// discovery named, which serves every call. That store fetches one
    /// fixed URL and never delegates, so a delegate has no delegate of its
    /// own and one issuer's discovery never changes another's keys.
    delegate: ArcSwapOption<KeyStore>,
    /// Where its fetches are reported (metrics).
    observer: KeyObserver,
    /// Whether `delegate` is set: read first, so that a store that does
    /// not delegate pays one plain load for the indirection.
    delegated: AtomicBool,
    /// Gates the first discovery of a template's made-up issuers.
    budget: Option<(Arc<FetchBudget>, Box<str>)>,
}

/// Where a store's keys are fetched from.
enum Remote {
    /// A JWKS URL, fetched by this store.
    Jwks {
        fetcher: Fetcher,
        uri: Url,
        /// Configured shared secrets, added to every fetched set.
        secrets: KeySet,
    },
    /// An issuer whose discovery names the JWKS URL; the pool's store for
    /// that URL fetches it.
    Discovery {
        fetcher: Fetcher,
        issuer_url: Url,
        /// Configured shared secrets, for the store the pool makes.
        secrets: KeySet,
        pool: Arc<StorePool>,
    },
}

#[derive(Default)]
struct RefreshState {
    /// The JWKS URL found by discovery, and when.
    discovered: Option<(Url, SystemTime)>,
    /// Validators of the last JWKS answer, for conditional requests.
    validators: Validators,
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

/// The current keys as one request sees them.
pub(crate) struct Snapshot {
    /// A guard, not an `Arc` clone: no shared counter is written per
    /// request, so threads do not contend on it.
    loaded: arc_swap::Guard<Option<Arc<Loaded>>>,
    usable: bool,
    /// The generation the snapshot was taken at.
    pub(crate) generation: u64,
}

impl Snapshot {
    pub(crate) fn set(&self) -> Option<&KeySet> {
        self.loaded.as_ref().filter(|_| self.usable).map(|l| &l.set)
    }

    /// The id of the usable set: equal ids, the very same keys.
    pub(crate) fn set_id(&self) -> Option<u64> {
        self.loaded.as_ref().filter(|_| self.usable).map(|l| l.id)
    }
}

const NEVER: u64 = u64::MAX;

/// How long after a failed discovery a discovering store that has a JWKS
/// URL tries again in the background.
const REDISCOVERY_RETRY: Duration = Duration::from_secs(300);

impl KeyStore {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        source: Source,
        issuer: Option<String>,
        algorithms: Vec<Algorithm>,
        limits: Limits,
        clock: Arc<dyn Clock>,
        policy: KeyPolicy,
        fetcher: &Fetcher,
        budget: Option<(Arc<FetchBudget>, Box<str>)>,
    ) -> Arc<Self> {
        let forever = |set: KeySet| {
            Arc::new(Loaded {
                set,
                usable_until: far_future(),
                id: next_set_id(),
            })
        };
        let (current, remote) = match source {
            Source::Static(set) => (Some(forever(set)), None),
            Source::Jwks(uri, secrets) => (
                secrets.as_partial().map(forever),
                Some(Remote::Jwks {
                    fetcher: fetcher.clone(),
                    uri,
                    secrets,
                }),
            ),
            Source::Discovery(issuer_url, secrets, pool) => (
                secrets.as_partial().map(forever),
                Some(Remote::Discovery {
                    fetcher: fetcher.clone(),
                    issuer_url,
                    secrets,
                    pool,
                }),
            ),
        };
        let health = KeyHealth {
            key_count: current.as_ref().map_or(0, |l| l.set.len()),
            kids: current
                .as_ref()
                .map_or_else(Vec::new, |l| l.set.kids().map(str::to_owned).collect()),
            ..KeyHealth::default()
        };
        Arc::new_cyclic(|me| Self {
            mirror: Mirror::of(current.as_deref()),
            current: ArcSwapOption::new(current),
            generation: AtomicU64::new(0),
            next_background: AtomicU64::new(NEVER),
            background_running: AtomicBool::new(false),
            remote,
            refresh: Mutex::new(RefreshState::default()),
            health: Arc::new(watch::Sender::new(health)),
            issuer: issuer.map(Box::from),
            algorithms,
            limits,
            clock,
            policy,
            me: me.clone(),
            followers: std::sync::Mutex::new(Vec::new()),
            delegate: ArcSwapOption::empty(),
            delegated: AtomicBool::new(false),
            budget,
            observer: KeyObserver::default(),
        })
    }

    /// Reports fetches to the key metrics `m` from now on (unless another
    /// issuer's came first).
    #[cfg(feature = "metrics")]
    pub(crate) fn observe_with(&self, m: Arc<crate::telemetry::metrics::KeyMetrics>) {
        self.observer.attach(m, self.health.borrow().reading());
    }

    /// The store this one delegates to, once discovery found it.
    fn delegate(&self) -> Option<Arc<KeyStore>> {
        if self.delegated.load(Ordering::Acquire) {
            self.delegate.load_full()
        } else {
            None
        }
    }

    /// The JWKS URL this store fetches itself.
    fn jwks_url(&self) -> Option<&Url> {
        match &self.remote {
            Some(Remote::Jwks { uri, .. }) => Some(uri),
            _ => None,
        }
    }

    /// From now on `owner` serves this store's keys, and this store's
    /// health is the owner's.
    fn delegate_to(&self, owner: &Arc<KeyStore>) {
        self.delegate.store(Some(owner.clone()));
        self.delegated.store(true, Ordering::Release);
        // Under the lock, so that no update of the owner's comes between.
        let mut followers = owner
            .followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Dropped stores go, and this one is listed once.
        followers.retain(|f| f.strong_count() > 0 && !Weak::ptr_eq(f, &self.me));
        followers.push(self.me.clone());
        self.health.send_replace(owner.health.borrow().clone());
    }

    /// Minimum time between triggered fetches.
    pub(crate) fn cooldown(&self) -> Duration {
        self.policy.cooldown
    }

    /// The keys usable at `now`, without locking. Starts a background
    /// refresh when one is due; never waits for it.
    pub(crate) fn snapshot(self: &Arc<Self>, now: SystemTime) -> Snapshot {
        self.snapshot_at(now, unix_millis(now))
    }

    /// [`snapshot`](Self::snapshot), with `now` in Unix milliseconds
    /// worked out already (a cache hit has it).
    pub(crate) fn snapshot_at(self: &Arc<Self>, now: SystemTime, now_ms: u64) -> Snapshot {
        if now_ms >= self.next_background.load(Ordering::Relaxed) {
            self.spawn_background_refresh();
        }
        if self.delegated.load(Ordering::Acquire)
            && let Some(owner) = self.delegate.load().as_ref()
        {
            return owner.snapshot_at(now, now_ms);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let loaded = self.current.load();
        let usable = loaded.as_ref().is_some_and(|l| now < l.usable_until);
        Snapshot {
            loaded,
            usable,
            generation,
        }
    }

    /// The id of the current set if it is usable at `now_ms`, read
    /// without a snapshot: all a cache hit needs while the set that
    /// verified its token is current. `None` when a snapshot must say
    /// (no usable set, or one being replaced). Starts a due background
    /// refresh, as a snapshot does.
    pub(crate) fn current_set_id(self: &Arc<Self>, now_ms: u64) -> Option<u64> {
        if now_ms >= self.next_background.load(Ordering::Relaxed) {
            self.spawn_background_refresh();
        }
        if self.delegated.load(Ordering::Acquire) {
            return self.delegate.load().as_ref()?.current_set_id(now_ms);
        }
        self.mirror.usable_id(now_ms)
    }

    fn spawn_background_refresh(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // No runtime: the set is refreshed when a request needs keys.
        };
        if self.background_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = Arc::clone(self);
        runtime.spawn(async move {
            store.refresh_in_background().await;
            store.background_running.store(false, Ordering::Release);
        });
    }

    async fn refresh_in_background(&self) {
        let Some(remote) = &self.remote else { return };
        let mut state = self.refresh.lock().await;
        let now = self.clock.now();
        // A request-triggered fetch may have run while this task waited.
        if unix_millis(now) < self.next_background.load(Ordering::Relaxed) {
            return;
        }
        let _ = self.fetch(remote, &mut state, now).await;
    }

    /// The health snapshot, and a receiver that sees every update.
    pub(crate) fn health(&self) -> watch::Receiver<KeyHealth> {
        self.health.subscribe()
    }

    /// Updates the health after a fetch that came to `result`, and that
    /// of every store delegating here; each reports the fetch.
    fn update_health(&self, result: FetchResult, f: impl FnOnce(&mut KeyHealth)) {
        self.health.send_modify(f);
        self.observer
            .fetched(result, self.health.borrow().reading());
        let mut followers = self
            .followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if followers.is_empty() {
            return;
        }
        let health = self.health.borrow().clone();
        followers.retain(|follower| match follower.upgrade() {
            Some(f) if f.delegates_to(self) => {
                f.observer.fetched(result, health.reading());
                f.health.send_replace(health.clone());
                true
            }
            _ => false,
        });
    }

    fn delegates_to(&self, owner: &KeyStore) -> bool {
        self.delegate
            .load()
            .as_ref()
            .is_some_and(|d| std::ptr::eq(Arc::as_ptr(d), owner))
    }

    /// Fetches a new set because a request needs keys that the snapshot of
    /// generation `seen` lacked. Concurrent callers share one fetch.
    pub(crate) async fn refresh(&self, seen: u64) -> Refresh {
        match self.delegate() {
            Some(owner) => owner.refresh_own(seen).await,
            None => self.refresh_own(seen).await,
        }
    }

    async fn refresh_own(&self, seen: u64) -> Refresh {
        let mut state = self.refresh.lock().await;
        if self.delegated.load(Ordering::Acquire) {
            // Discovery delegated while this call waited for the lock (a
            // prefetch, say): the caller's next snapshot is the delegate's,
            // which may not have loaded its set yet.
            drop(state);
            return match self.delegate() {
                Some(owner) => owner.refresh_unless_loaded().await,
                None => Refresh::Updated,
            };
        }
        if self.generation.load(Ordering::Acquire) != seen {
            return Refresh::Updated;
        }
        let cooldown = self.policy.cooldown;
        let Some(remote) = &self.remote else {
            return Refresh::CoolingDown {
                retry_after: cooldown,
            };
        };
        let now = self.clock.now();
        // A clock that stepped backwards ends the cooldown rather than
        // stretching it.
        if let Some(elapsed) = state
            .last_triggered
            .and_then(|t| now.duration_since(t).ok())
            && elapsed < cooldown
        {
            return Refresh::CoolingDown {
                retry_after: cooldown - elapsed,
            };
        }
        let had_keys = self
            .current
            .load()
            .as_ref()
            .is_some_and(|l| !l.set.is_partial());
        if let Some((budget, tenant)) = &self.budget
            && !budget.allow(tenant, now)
        {
            return Refresh::CoolingDown {
                retry_after: cooldown,
            };
        }
        // Recorded before fetching: a request cancelled mid-fetch still
        // counts against the cooldown, so dropped connections cannot turn
        // into one fetch each.
        state.last_triggered = Some(now);
        match self.fetch(remote, &mut state, now).await {
            Ok(Some(owner)) => {
                drop(state);
                owner.refresh_unless_loaded().await
            }
            Ok(None) => {
                // The first successful load does not start the cooldown, so
                // a rotation right after start-up is picked up at once.
                if !had_keys {
                    state.last_triggered = None;
                }
                Refresh::Updated
            }
            Err(_) => Refresh::Failed {
                retry_after: cooldown,
            },
        }
    }

    /// Right after a discovering store delegated here: this store's set if
    /// it has a usable one, else a fetch.
    async fn refresh_unless_loaded(&self) -> Refresh {
        let seen = self.generation.load(Ordering::Acquire);
        if self
            .current
            .load()
            .as_ref()
            .is_some_and(|l| !l.set.is_partial() && self.clock.now() < l.usable_until)
        {
            return Refresh::Updated;
        }
        Box::pin(self.refresh_own(seen)).await
    }

    /// Fetches the key set now, regardless of cooldowns, unless a request
    /// loaded it while this call waited; returns how many usable keys the
    /// issuer publishes (configured secrets not counted).
    pub(crate) async fn prefetch(&self) -> Result<usize, FetchError> {
        let before = self.generation.load(Ordering::Acquire);
        let owner = match &self.remote {
            Some(remote) => {
                let mut state = self.refresh.lock().await;
                let loaded_meanwhile = matches!(remote, Remote::Jwks { .. })
                    && self.generation.load(Ordering::Acquire) != before;
                if loaded_meanwhile {
                    // A request loaded the set while this call waited.
                    None
                } else {
                    self.fetch(remote, &mut state, self.clock.now()).await?
                }
            }
            None => None,
        };
        match owner {
            Some(owner) => Box::pin(owner.prefetch()).await,
            None => Ok(self
                .current
                .load()
                .as_ref()
                .map_or(0, |l| l.set.published_len())),
        }
    }

    /// One fetch, with everything that follows from its outcome. A store
    /// with a JWKS URL fetches the set and returns `None`. A discovering
    /// store discovers (unless its discovery is still fresh) and returns
    /// the store it now delegates to.
    async fn fetch(
        &self,
        remote: &Remote,
        state: &mut RefreshState,
        now: SystemTime,
    ) -> Result<Option<Arc<KeyStore>>, FetchError> {
        match remote {
            Remote::Jwks {
                fetcher,
                uri,
                secrets,
            } => {
                let started = Instant::now();
                let span = tracing::debug_span!("tower_bearer.key_fetch", url = loggable(uri));
                let result = self
                    .fetch_set(fetcher, uri, secrets, state)
                    .instrument(span)
                    .await;
                self.loaded(uri, result, started, state, now).map(|()| None)
            }
            Remote::Discovery {
                fetcher,
                issuer_url,
                secrets,
                pool,
            } => {
                let uri = self.discover(fetcher, issuer_url, state, now).await?;
                let current = self.delegate();
                if let Some(owner) = current.as_ref().filter(|o| o.jwks_url() == Some(&uri)) {
                    return Ok(Some(owner.clone()));
                }
                if current.is_some() {
                    tracing::info!(
                        issuer = loggable(issuer_url),
                        url = loggable(&uri),
                        "the discovery document names a new JWKS URL; using its keys from now on"
                    );
                }
                let owner = pool.get_or_insert(&uri, &self.algorithms, || {
                    KeyStore::new(
                        Source::Jwks(uri.clone(), secrets.clone()),
                        None,
                        self.algorithms.clone(),
                        self.limits.clone(),
                        self.clock.clone(),
                        self.policy.clone(),
                        fetcher,
                        None,
                    )
                });
                self.delegate_to(&owner);
                Ok(Some(owner))
            }
        }
    }

    /// Everything that follows from a JWKS fetch's outcome: the new set,
    /// its lifetimes, the next background refresh, logs and health.
    fn loaded(
        &self,
        uri: &Url,
        result: Result<(Option<FetchedSet>, Option<Duration>), FetchError>,
        started: Instant,
        state: &mut RefreshState,
        now: SystemTime,
    ) -> Result<(), FetchError> {
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let old = self.current.load_full().filter(|l| !l.set.is_partial());
        let uri = loggable(uri);
        match result {
            Ok((set, max_age)) => {
                let status = if set.is_some() { 200 } else { 304 };
                let p = &self.policy;
                let ttl = max_age
                    .unwrap_or(p.default_max_age)
                    .clamp(p.min_max_age, p.max_max_age);
                let skipped = set.as_ref().map(|f| f.skipped);
                if let Some(f) = &set
                    && f.usable == 0
                {
                    tracing::error!(
                        url = uri.as_str(),
                        skipped = f.skipped,
                        "the issuer's JWK set holds no usable key; its tokens are refused until it publishes one"
                    );
                }
                let (set, id) = match (set, &old) {
                    (Some(f), _) => (f.set, next_set_id()),
                    // 304: the set we have is current again.
                    (None, Some(old)) => (old.set.clone(), old.id),
                    (None, None) => (KeySet::default(), next_set_id()),
                };
                let refresh_at = now + ttl.mul_f64(jitter());
                let added: Vec<&str> = set
                    .kids()
                    .filter(|k| {
                        old.as_ref()
                            .is_none_or(|o| !o.set.kids().any(|ok| ok == *k))
                    })
                    .collect();
                let removed: Vec<&str> = old
                    .as_ref()
                    .map(|o| {
                        o.set
                            .kids()
                            .filter(|k| !set.kids().any(|nk| nk == *k))
                            .collect()
                    })
                    .unwrap_or_default();
                tracing::info!(
                    url = uri.as_str(),
                    status,
                    keys = set.len(),
                    ?added,
                    ?removed,
                    elapsed_ms,
                    ttl_s = ttl.as_secs(),
                    next_refresh_in_s =
                        refresh_at.duration_since(now).unwrap_or_default().as_secs(),
                    "JWK set fetched"
                );
                let usable_until = now + ttl + p.max_stale;
                let result = if status == 200 {
                    FetchResult::Updated
                } else {
                    FetchResult::NotModified
                };
                self.update_health(result, |h| {
                    h.key_count = set.len();
                    h.skipped_keys = skipped.unwrap_or(h.skipped_keys);
                    h.kids = set.kids().map(str::to_owned).collect();
                    h.last_success = Some(now);
                    h.consecutive_failures = 0;
                    h.expires_at = Some(now + ttl);
                    h.usable_until = Some(usable_until);
                    h.next_refresh = Some(refresh_at);
                    h.fetches += 1;
                });
                let loaded = Arc::new(Loaded {
                    set,
                    usable_until,
                    id,
                });
                self.mirror.set(None);
                self.current.store(Some(loaded.clone()));
                self.mirror.set(Some(&loaded));
                self.next_background
                    .store(unix_millis(refresh_at), Ordering::Relaxed);
                self.generation.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => {
                let failures = self.health.borrow().consecutive_failures.saturating_add(1);
                // 5 s, 10 s, 20 s, … up to 5 minutes between background tries.
                let backoff =
                    Duration::from_secs(5 << (failures - 1).min(6)).min(Duration::from_secs(300));
                let usable = old.as_ref().map(|l| l.usable_until);
                tracing::error!(
                    url = uri.as_str(),
                    error = %e,
                    elapsed_ms,
                    consecutive_failures = failures,
                    retry_in_s = backoff.as_secs(),
                    serving_previous_keys_until = ?usable,
                    "fetching the JWK set failed; keeping the previous set"
                );
                // Any failed fetch starts the cooldown: requests for unknown
                // kids then fail fast instead of queueing for another try.
                state.last_triggered = Some(now);
                let retry = old.is_some().then(|| now + backoff);
                self.update_health(FetchResult::Error, |h| {
                    h.last_error = Some((now, e.clone()));
                    h.consecutive_failures = failures;
                    h.next_refresh = retry.or(h.next_refresh);
                });
                if let Some(retry) = retry {
                    self.next_background
                        .store(unix_millis(retry), Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }

    /// The new set (`None` for a 304) and the server's `max-age`.
    async fn fetch_set(
        &self,
        fetcher: &Fetcher,
        uri: &Url,
        secrets: &KeySet,
        state: &mut RefreshState,
    ) -> Result<(Option<FetchedSet>, Option<Duration>), FetchError> {
        match fetcher.get_conditional(uri, &state.validators).await? {
            Fetched::NotModified { max_age } => Ok((None, max_age)),
            Fetched::Body {
                body,
                validators,
                max_age,
            } => {
                let previous = self.current.load();
                let (mut set, skipped) = KeySet::parse_logged(
                    &body,
                    &self.algorithms,
                    &self.limits,
                    previous.as_ref().map(|l| &l.set),
                )
                .map_err(|e| FetchError::InvalidDocument(e.to_string()))?;
                let usable = set.len();
                set.extend(secrets);
                state.validators = validators;
                Ok((
                    Some(FetchedSet {
                        set,
                        usable,
                        skipped,
                    }),
                    max_age,
                ))
            }
        }
    }

    /// The JWKS URL from discovery (with the issuer check), fetched again
    /// once a day. If that fails, the URL found before stays and another
    /// try is due in five minutes.
    async fn discover(
        &self,
        fetcher: &Fetcher,
        issuer: &Url,
        state: &mut RefreshState,
        now: SystemTime,
    ) -> Result<Url, FetchError> {
        let max_age = self.policy.discovery_max_age;
        if let Some((uri, at)) = &state.discovered
            && now.duration_since(*at).is_ok_and(|age| age < max_age)
        {
            return Ok(uri.clone());
        }
        let expected = self.issuer.as_deref().unwrap_or(issuer.as_str());
        let span = tracing::debug_span!("tower_bearer.discovery", issuer = loggable(issuer));
        let found = fetcher
            .discover(issuer, expected)
            .instrument(span)
            .await
            .and_then(|meta| {
                meta.jwks_uri
                    .ok_or_else(|| FetchError::InvalidDocument("no jwks_uri".into()))
            });
        let (result, next) = match (found, &state.discovered) {
            (Ok(uri), _) => {
                state.discovered = Some((uri.clone(), now));
                (Ok(uri), now + max_age)
            }
            (Err(e), Some((uri, _))) => {
                tracing::warn!(
                    issuer = loggable(issuer),
                    error = %e,
                    "refreshing the discovery document failed; keeping the JWKS URL found before"
                );
                (Ok(uri.clone()), now + REDISCOVERY_RETRY)
            }
            (Err(e), None) => {
                tracing::error!(
                    issuer = loggable(issuer),
                    error = %e,
                    "fetching the discovery document failed"
                );
                // Requests for keys then fail fast until the cooldown passes.
                state.last_triggered = Some(now);
                self.health.send_modify(|h| {
                    h.last_error = Some((now, e.clone()));
                    h.consecutive_failures = h.consecutive_failures.saturating_add(1);
                });
                self.observer
                    .fetched(FetchResult::Error, self.health.borrow().reading());
                return Err(e);
            }
        };
        self.next_background
            .store(unix_millis(next), Ordering::Relaxed);
        result
    }
}

/// A factor in [0.8, 1.0): refresh at 90 % of the freshness lifetime,
/// ±10 % of it, so a fleet of replicas does not refetch in the same second.
fn jitter() -> f64 {
    let mut bytes = [0u8; 2];
    let random = aws_lc_rs::rand::fill(&mut bytes).map_or(0x8000, |()| u16::from_le_bytes(bytes));
    0.8 + 0.2 * f64::from(random) / 65536.0
}

fn far_future() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1 << 40)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_names_the_current_set_only_while_it_is_usable() {
        let loaded = |id, until_ms| Loaded {
            set: KeySet::default(),
            usable_until: UNIX_EPOCH + Duration::from_millis(until_ms),
            id,
        };
        let m = Mirror::of(None);
        assert_eq!(m.usable_id(0), None, "no set");
        m.set(Some(&loaded(7, 5_000)));
        assert_eq!(m.usable_id(4_999), Some(7));
        assert_eq!(m.usable_id(5_000), None, "past its usable-until");
        // A replacement under way: no id until the new one is written.
        m.set(None);
        assert_eq!(m.usable_id(1_000), None);
        m.set(Some(&loaded(8, 9_000)));
        assert_eq!(m.usable_id(5_000), Some(8));
    }

    #[test]
    fn jitter_stays_within_ten_percent_of_ninety() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.8..1.0).contains(&j), "{j}");
        }
    }
}
