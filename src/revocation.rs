//! Revocation of locally validated tokens before they expire.
//!
//! A [`RevocationCheck`] is consulted on every request, after the
//! signature (or the verified-token cache): it must be cheap and
//! synchronous. [`RevocationList`] is an in-memory implementation that
//! revokes by `jti`, `sub` or `client_id` until a given time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::cache::TokenCache;
use crate::jwt::claims::Principal;

/// Decides whether an otherwise valid token is revoked.
pub trait RevocationCheck: Send + Sync + 'static {
    /// `true` to refuse `principal` (401 `invalid_token`). Called on every
    /// request with the current time; keep it fast and never block.
    fn is_revoked(&self, principal: &Principal, now: SystemTime) -> bool;
}

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Revoke {
    /// One token, by its `jti`.
    TokenId(String),
    /// Every token about this subject (`sub`).
    Subject(String),
    /// Every token issued to this client (`client_id`, or `azp`).
    Client(String),
}

/// An in-memory revocation list: cheap to clone (clones share the list),
/// lock-free to read.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_bearer::{BearerAuthLayer, RevocationList, Revoke};
///
/// let revoked = RevocationList::new();
/// let auth = BearerAuthLayer::builder()
///     .issuer("https://idp.example")
///     .audience("api")
///     .revocation(revoked.clone())
///     .build()
///     .unwrap();
/// // Until the longest-lived token of this user has expired:
/// revoked.revoke(Revoke::Subject("alice".into()), SystemTime::now() + Duration::from_secs(3600));
/// ```
#[derive(Clone, Default)]
pub struct RevocationList {
    entries: Arc<ArcSwap<Lists>>,
    writer: Arc<Mutex<()>>,
    caches: Arc<Mutex<Vec<Weak<TokenCache>>>>,
}

/// Revocations by kind, each name mapped to the time it ends.
#[derive(Clone, Default)]
struct Lists {
    jti: HashMap<String, SystemTime>,
    sub: HashMap<String, SystemTime>,
    client: HashMap<String, SystemTime>,
}

impl Lists {
    fn map(&mut self, what: &Revoke) -> (&mut HashMap<String, SystemTime>, String) {
        match what {
            Revoke::TokenId(v) => (&mut self.jti, v.clone()),
            Revoke::Subject(v) => (&mut self.sub, v.clone()),
            Revoke::Client(v) => (&mut self.client, v.clone()),
        }
    }

    fn len(&self) -> usize {
        self.jti.len() + self.sub.len() + self.client.len()
    }
}

impl std::fmt::Debug for RevocationList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationList")
            .field("entries", &self.entries.load().len())
            .finish()
    }
}

impl RevocationList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Revokes until `until` (set it to the expiry of the longest-lived
    /// token concerned; the entry is forgotten after that). Cached
    /// verifications of matching tokens are dropped at once.
    pub fn revoke(&self, what: Revoke, until: SystemTime) {
        {
            let _writer = self
                .writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = SystemTime::now();
            let mut next = Lists::clone(&self.entries.load());
            for map in [&mut next.jti, &mut next.sub, &mut next.client] {
                map.retain(|_, t| *t > now);
            }
            let (map, name) = next.map(&what);
            map.insert(name, until);
            self.entries.store(Arc::new(next));
        }
        let caches = self
            .caches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for cache in caches.iter().filter_map(Weak::upgrade) {
            let what = what.clone();
            cache.invalidate_matching(move |p| matches(&what, p));
        }
    }

    /// Lifts a revocation.
    pub fn unrevoke(&self, what: &Revoke) {
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = Lists::clone(&self.entries.load());
        let (map, name) = next.map(what);
        map.remove(&name);
        self.entries.store(Arc::new(next));
    }

    /// How many revocations are held (expired ones included until the next
    /// change).
    pub fn len(&self) -> usize {
        self.entries.load().len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.entries.load().len() == 0
    }

    pub(crate) fn attach(&self, cache: &Arc<TokenCache>) {
        self.caches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::downgrade(cache));
    }
}

fn matches(what: &Revoke, p: &Principal) -> bool {
    let c = p.claims();
    match what {
        Revoke::TokenId(jti) => c.jti.as_deref() == Some(jti),
        Revoke::Subject(sub) => c.sub.as_deref() == Some(sub),
        Revoke::Client(client) => p.client_id() == Some(client),
    }
}

impl RevocationCheck for RevocationList {
    fn is_revoked(&self, p: &Principal, now: SystemTime) -> bool {
        let lists = self.entries.load();
        if lists.len() == 0 {
            return false;
        }
        let c = p.claims();
        let hit = |map: &HashMap<String, SystemTime>, name: Option<&str>| {
            name.and_then(|n| map.get(n))
                .is_some_and(|until| now < *until)
        };
        hit(&lists.jti, c.jti.as_deref())
            || hit(&lists.sub, c.sub.as_deref())
            || hit(&lists.client, p.client_id())
    }
}
