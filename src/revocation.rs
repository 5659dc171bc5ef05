//! Revocation of locally validated tokens before they expire.
//!
//! A [`RevocationCheck`] is consulted on every request, after the
//! signature (or the verified-token cache): it must be cheap and
//! synchronous. [`RevocationList`] is an in-memory implementation that
//! revokes by `jti`, `sub`, `sid` or `client_id`, of one issuer or of any,
//! and for a subject or a session only the tokens issued before a time:
//! what a revoked session or a changed credential means.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use crate::cache::TokenCache;
use crate::clock::{Clock, SystemClock};
use crate::jwt::claims::Principal;

/// Decides whether an otherwise valid token is revoked.
pub trait RevocationCheck: Send + Sync + 'static {
    /// `true` to refuse `principal` (401 `invalid_token`). Called on every
    /// request with the current time; keep it fast and never block.
    fn is_revoked(&self, principal: &Principal, now: SystemTime) -> bool;
}

/// What to revoke.
///
/// The first three match tokens of any issuer, the others those of one
/// issuer (its `iss`, as the tokens carry it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Revoke {
    /// One token, by its `jti`.
    TokenId(String),
    /// Every token about this subject (`sub`).
    Subject(String),
    /// Every token issued to this client (`client_id`, or `azp`).
    Client(String),
    /// One token of `issuer`, by its `jti`.
    IssuedToken {
        /// The issuer.
        issuer: String,
        /// The token's `jti`.
        jti: String,
    },
    /// Every token of `issuer` about `subject` issued before `before`
    /// (its `iat` earlier; a token without `iat` counts as earlier): what a
    /// changed credential, a disabled account or "sign out everywhere"
    /// means. A token from a login after it passes.
    SubjectBefore {
        /// The issuer.
        issuer: String,
        /// The subject (`sub`).
        subject: String,
        /// When the revocation took effect.
        before: SystemTime,
    },
    /// Every token of `issuer` of the session `sid` issued before `before`:
    /// a revoked session.
    SessionBefore {
        /// The issuer.
        issuer: String,
        /// The session (`sid`).
        sid: String,
        /// When the revocation took effect.
        before: SystemTime,
    },
    /// Every token of `issuer` about the user with this `email` issued
    /// before `before`, for an issuer that names users by e-mail address
    /// (compared without regard to case).
    EmailBefore {
        /// The issuer.
        issuer: String,
        /// The e-mail address (the tokens' `email`).
        email: String,
        /// When the revocation took effect.
        before: SystemTime,
    },
    /// Every token of `issuer` issued to `client` (`client_id`, or `azp`).
    IssuedTo {
        /// The issuer.
        issuer: String,
        /// The client.
        client: String,
    },
}

/// How long a revocation is kept by default: as long as an access token
/// is assumed to live at most, 24 hours. See
/// [`RevocationList::with_max_token_lifetime`].
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// An in-memory revocation list: cheap to clone (clones share the list),
/// lock-free to read.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_bearer::{BearerAuthLayer, RevocationList, Revoke};
///
/// // Access tokens here live at most an hour.
/// let revoked = RevocationList::with_max_token_lifetime(Duration::from_secs(3600));
/// let auth = BearerAuthLayer::builder()
///     .issuer("https://idp.example")
///     .audience("api")
///     .revocation_list(revoked.clone())
///     .build()
///     .unwrap();
/// // Alice changed her password: every token she had is refused, one
/// // from her next login is not. Kept an hour, then dropped.
/// revoked.revoke(Revoke::SubjectBefore {
///     issuer: "https://idp.example".into(),
///     subject: "alice".into(),
///     before: SystemTime::now(),
/// });
/// // One token, until a time of your choosing:
/// revoked.revoke_until(Revoke::TokenId("t-81".into()), SystemTime::now() + Duration::from_secs(600));
/// ```
#[derive(Clone)]
pub struct RevocationList {
    entries: Arc<ArcSwap<Lists>>,
    writer: Arc<Mutex<()>>,
    caches: Arc<Mutex<Vec<Weak<TokenCache>>>>,
    max_token_lifetime: Duration,
    /// The longest lifetime (`exp - iat`, seconds) of a token the
    /// validators it is attached to have verified: entries live at least
    /// that long.
    longest_seen: Arc<AtomicU64>,
    /// What `revoke` counts the lifetime from, and prunes by.
    clock: Arc<dyn Clock>,
    /// Where every revocation made here goes besides the list: the
    /// replicas' fan-out, once one is started.
    outbox: Arc<OnceLock<Outbox>>,
}

/// Takes each revocation made through the API, with its end.
pub(crate) type Outbox = Box<dyn Fn(&Revoke, SystemTime) + Send + Sync>;

impl Default for RevocationList {
    fn default() -> Self {
        Self {
            entries: Arc::default(),
            writer: Arc::default(),
            caches: Arc::default(),
            max_token_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
            longest_seen: Arc::default(),
            clock: Arc::new(SystemClock),
            outbox: Arc::default(),
        }
    }
}

/// Revocations by kind: those of any issuer, then those of each issuer.
#[derive(Clone, Default)]
struct Lists {
    any: Names,
    by_issuer: HashMap<String, Names>,
}

/// Revocations of one scope, each name mapped to when it ends (and, for
/// subjects and sessions of one issuer, the `iat` below which it holds).
#[derive(Clone, Default)]
struct Names {
    jti: HashMap<String, Entry>,
    sub: HashMap<String, Entry>,
    sid: HashMap<String, Entry>,
    client: HashMap<String, Entry>,
    /// Keyed by the address in lower case.
    email: HashMap<String, Entry>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Tokens with an `iat` below this (seconds since the epoch) are
    /// revoked; `i64::MAX`: every token.
    before: i64,
    until: SystemTime,
}

impl Entry {
    fn holds(&self, iat: Option<i64>, now: SystemTime) -> bool {
        now < self.until && iat.is_none_or(|iat| iat < self.before)
    }
}

impl Names {
    fn all(&mut self) -> [&mut HashMap<String, Entry>; 5] {
        [
            &mut self.jti,
            &mut self.sub,
            &mut self.sid,
            &mut self.client,
            &mut self.email,
        ]
    }

    fn len(&self) -> usize {
        self.jti.len() + self.sub.len() + self.sid.len() + self.client.len() + self.email.len()
    }

    /// Whether an entry revokes `p`, issued at `iat`.
    fn revokes(&self, p: &Principal, now: SystemTime) -> bool {
        let c = p.claims();
        let hit = |map: &HashMap<String, Entry>, name: Option<&str>| {
            name.and_then(|n| map.get(n))
                .is_some_and(|e| e.holds(c.iat, now))
        };
        hit(&self.jti, c.jti.as_deref())
            || hit(&self.sub, c.sub.as_deref())
            || hit(&self.sid, c.sid.as_deref())
            || hit(&self.client, p.client_id())
            // Lower-cased only while some address is revoked.
            || (!self.email.is_empty()
                && hit(&self.email, c.email.as_deref().map(str::to_lowercase).as_deref()))
    }
}

impl Lists {
    /// The map `what` goes into, its name there, and the `iat` below which
    /// it holds.
    fn slot(&mut self, what: &Revoke) -> (&mut HashMap<String, Entry>, String, i64) {
        let every = i64::MAX;
        match what {
            Revoke::TokenId(v) => (&mut self.any.jti, v.clone(), every),
            Revoke::Subject(v) => (&mut self.any.sub, v.clone(), every),
            Revoke::Client(v) => (&mut self.any.client, v.clone(), every),
            Revoke::IssuedToken { issuer, jti } => {
                (&mut self.issuer(issuer).jti, jti.clone(), every)
            }
            Revoke::IssuedTo { issuer, client } => {
                (&mut self.issuer(issuer).client, client.clone(), every)
            }
            Revoke::SubjectBefore {
                issuer,
                subject,
                before,
            } => (&mut self.issuer(issuer).sub, subject.clone(), unix(*before)),
            Revoke::SessionBefore {
                issuer,
                sid,
                before,
            } => (&mut self.issuer(issuer).sid, sid.clone(), unix(*before)),
            Revoke::EmailBefore {
                issuer,
                email,
                before,
            } => (
                &mut self.issuer(issuer).email,
                email.to_lowercase(),
                unix(*before),
            ),
        }
    }

    fn issuer(&mut self, issuer: &str) -> &mut Names {
        self.by_issuer.entry(issuer.to_owned()).or_default()
    }

    /// Drops every entry that has ended.
    fn prune(&mut self, now: SystemTime) {
        for names in std::iter::once(&mut self.any).chain(self.by_issuer.values_mut()) {
            for map in names.all() {
                map.retain(|_, e| e.until > now);
            }
        }
        self.by_issuer.retain(|_, names| names.len() > 0);
    }

    fn len(&self) -> usize {
        self.any.len() + self.by_issuer.values().map(Names::len).sum::<usize>()
    }

    /// Whether nothing is held, without counting: a request asks it.
    fn is_empty(&self) -> bool {
        self.any.len() == 0 && self.by_issuer.is_empty()
    }
}

/// Whole seconds since the epoch, as `iat` counts them (before it: 0).
fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl std::fmt::Debug for RevocationList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationList")
            .field("entries", &self.entries.load().len())
            .finish()
    }
}

impl RevocationList {
    /// An empty list, whose revocations are kept for
    /// [`DEFAULT_MAX_TOKEN_LIFETIME`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty list whose revocations are kept for `lifetime`: as long as
    /// the longest-lived access token of any issuer it serves may live.
    /// After that no token it could match is still valid, and the entry
    /// is dropped. A validator it is attached to
    /// ([`revocation_list`](crate::Builder::revocation_list)) that
    /// verifies a token with a longer life (`exp - iat`) lengthens it to
    /// that.
    pub fn with_max_token_lifetime(lifetime: Duration) -> Self {
        Self {
            max_token_lifetime: lifetime,
            ..Self::default()
        }
    }

    /// The same list on `clock` (give it your validator's): the time
    /// [`revoke`](Self::revoke) counts from, and by which ended entries
    /// are dropped. Use it before sharing the list: clones made earlier
    /// keep the clock they had.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Revokes for as long as a token it matches could live: the maximum
    /// token lifetime from now, or from `before` for
    /// [`SubjectBefore`](Revoke::SubjectBefore),
    /// [`SessionBefore`](Revoke::SessionBefore) and
    /// [`EmailBefore`](Revoke::EmailBefore) (a token issued before it has
    /// expired by then).
    pub fn revoke(&self, what: Revoke) {
        let from = match &what {
            Revoke::SubjectBefore { before, .. }
            | Revoke::SessionBefore { before, .. }
            | Revoke::EmailBefore { before, .. } => *before,
            _ => self.clock.now(),
        };
        let until = from.checked_add(self.retention()).unwrap_or(from);
        self.revoke_until(what, until);
    }

    /// Revokes until `until` (set it to the expiry of the longest-lived
    /// token concerned; the entry is forgotten after that). Cached
    /// verifications of matching tokens are dropped at once. Revoking what
    /// is already revoked keeps the later end and the later `before`.
    pub fn revoke_until(&self, what: Revoke, until: SystemTime) {
        self.apply(&what, until);
        if let Some(outbox) = self.outbox.get() {
            outbox(&what, until);
        }
    }

    /// [`revoke_until`](Self::revoke_until) here only: what a replica
    /// learns from the others.
    pub(crate) fn apply(&self, what: &Revoke, until: SystemTime) {
        {
            let _writer = self
                .writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut next = Lists::clone(&self.entries.load());
            next.prune(self.clock.now());
            let (map, name, before) = next.slot(what);
            let entry = map.entry(name).or_insert(Entry { before, until });
            entry.before = entry.before.max(before);
            entry.until = entry.until.max(until);
            self.entries.store(Arc::new(next));
        }
        let caches = self
            .caches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for cache in caches.iter().filter_map(Weak::upgrade) {
            cache.invalidate_matching(|p| matches(what, p));
        }
    }

    /// Lifts a revocation (for a subject or a session, whatever its
    /// `before`), in this process only: the fan-out to other replicas
    /// carries revocations, never their lifting.
    pub fn unrevoke(&self, what: &Revoke) {
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = Lists::clone(&self.entries.load());
        let (map, name, _) = next.slot(what);
        map.remove(&name);
        next.by_issuer.retain(|_, names| names.len() > 0);
        self.entries.store(Arc::new(next));
    }

    /// How many revocations are held (expired ones included until the next
    /// change).
    pub fn len(&self) -> usize {
        self.entries.load().len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.entries.load().is_empty()
    }

    /// Where a validator reports the lifetimes of the tokens it verifies.
    pub(crate) fn lifetimes(&self) -> Arc<AtomicU64> {
        self.longest_seen.clone()
    }

    /// How long a revocation made now lasts: how long the fan-out keeps
    /// what it carries.
    pub(crate) fn retention(&self) -> Duration {
        let seen = Duration::from_secs(self.longest_seen.load(Ordering::Relaxed));
        self.max_token_lifetime.max(seen)
    }

    /// Sends every later revocation made through the API to `outbox` too;
    /// `false` if one was set already.
    #[cfg(feature = "redis")]
    pub(crate) fn set_outbox(&self, outbox: Outbox) -> bool {
        self.outbox.set(outbox).is_ok()
    }

    pub(crate) fn attach(&self, cache: &Arc<TokenCache>) {
        self.caches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::downgrade(cache));
    }
}

/// Whether `what` names `p` (for the cache: the time checks are the
/// list's).
fn matches(what: &Revoke, p: &Principal) -> bool {
    let c = p.claims();
    let of = |issuer: &str| c.iss.as_deref() == Some(issuer);
    let before = |t: &SystemTime| c.iat.is_none_or(|iat| iat < unix(*t));
    match what {
        Revoke::TokenId(jti) => c.jti.as_deref() == Some(jti),
        Revoke::Subject(sub) => c.sub.as_deref() == Some(sub),
        Revoke::Client(client) => p.client_id() == Some(client),
        Revoke::IssuedToken { issuer, jti } => of(issuer) && c.jti.as_deref() == Some(jti),
        Revoke::IssuedTo { issuer, client } => of(issuer) && p.client_id() == Some(client),
        Revoke::SubjectBefore {
            issuer,
            subject,
            before: t,
        } => of(issuer) && c.sub.as_deref() == Some(subject) && before(t),
        Revoke::SessionBefore {
            issuer,
            sid,
            before: t,
        } => of(issuer) && c.sid.as_deref() == Some(sid) && before(t),
        Revoke::EmailBefore {
            issuer,
            email,
            before: t,
        } => {
            of(issuer)
                && c.email
                    .as_deref()
                    .is_some_and(|e| e.to_lowercase() == email.to_lowercase())
                && before(t)
        }
    }
}

impl RevocationCheck for RevocationList {
    fn is_revoked(&self, p: &Principal, now: SystemTime) -> bool {
        let lists = self.entries.load();
        if lists.is_empty() {
            return false;
        }
        lists.any.revokes(p, now)
            || p.claims()
                .iss
                .as_deref()
                .and_then(|iss| lists.by_issuer.get(iss))
                .is_some_and(|names| names.revokes(p, now))
    }
}
