//! The verified-token cache: a repeated JWT skips the signature check.
//!
//! Keyed by the token itself, compared whole. Only its last bytes, part of
//! the signature, are hashed ([`TailHash`]): they differ between any two
//! tokens, and hashing all 900 bytes cost about as much as the rest of a
//! hit (a digest even more, on machines without SHA instructions).
//! Entries therefore hold tokens, as the requests that carry them do, and
//! a cached principal reads its claim set from that same copy. They are
//! bounded in number; their lifetime is judged on every hit.
//! An entry remembers the key that verified it; a hit counts
//! only while that very key (not just its `kid`) is still in the current key
//! set, so a key the issuer removes takes its cached verifications with it.
//! While the set that verified it is current (same set id) that is known
//! without a lookup; after a new set is fetched, the key is looked up.
//! `exp` and `nbf` are checked against the clock on every hit, and scope
//! policies and the revocation hook run per request after the cache.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use crate::issuer::Issuer;
use crate::jwks::{Key, Lookup};
use crate::jwt::claims::Principal;

/// Shared behind an `Arc`, so that a hit clones one counter of its own
/// (not the `Weak`, whose counter every entry of a key shares: two
/// threads would fight over that cache line on every hit).
struct Entry {
    principal: Principal,
    /// The issuer whose key verified it, and whose rules it met.
    issuer: Arc<Issuer>,
    key: Weak<Key>,
    /// The id of the key set that verified it, when known: while that set
    /// is current, so is the key, and no lookup is needed.
    set_id: Option<u64>,
    /// When it was verified, by the injected clock (Unix seconds).
    verified_at: i64,
}

/// A cache hit: the entry itself, so that taking it clones the entry's
/// own counter rather than the issuer's, which every hit would share.
pub(crate) struct Hit(Arc<Entry>);

impl Hit {
    pub(crate) fn principal(&self) -> &Principal {
        &self.0.principal
    }

    pub(crate) fn issuer(&self) -> &Issuer {
        &self.0.issuer
    }
}

/// Hashes the last [`TAIL`](Self::TAIL) bytes of what it is given with
/// the standard library's randomly keyed SipHash.
///
/// The bytes hashed are the end of the signature: distinct for distinct
/// tokens, and unknown to a client until the issuer signs. Only verified
/// tokens are ever inserted, so nobody but the issuer chooses what fills
/// the table, and a lookup still compares the whole token.
#[derive(Clone, Default)]
pub(crate) struct TailHash(RandomState);

impl TailHash {
    /// 16 base64url characters, over 90 bits of signature: distinct for
    /// the tokens an issuer signs, and three SipHash blocks fewer than 32
    /// bytes and a length prefix. A collision only costs a comparison.
    const TAIL: usize = 16;
}

impl BuildHasher for TailHash {
    type Hasher = Tail;

    fn build_hasher(&self) -> Tail {
        Tail(self.0.build_hasher())
    }
}

pub(crate) struct Tail(std::hash::DefaultHasher);

impl Hasher for Tail {
    fn write(&mut self, bytes: &[u8]) {
        self.0
            .write(&bytes[bytes.len().saturating_sub(TailHash::TAIL)..]);
    }

    /// The length prefix `[u8]`'s `Hash` writes first, skipped alike for
    /// entries and lookups: the bytes are compared anyway.
    fn write_usize(&mut self, _: usize) {}

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

type Entries = quick_cache::sync::Cache<Cached, Arc<Entry>, quick_cache::UnitWeighter, TailHash>;

/// A cached token, found by the bytes of a request's: the same allocation
/// as its principal's claim set ([`Principal::keeping_token`]).
#[derive(PartialEq, Eq)]
struct Cached(Arc<str>);

impl std::borrow::Borrow<[u8]> for Cached {
    fn borrow(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Hashed as the bytes a lookup hashes.
impl std::hash::Hash for Cached {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_bytes().hash(state);
    }
}

/// quick_cache's sharded map with S3-FIFO eviction: a hit takes a shard's
/// read lock and sets the entry's reference bit, with no read log and no
/// housekeeping, and a token seen once leaves before the ones seen again.
/// Measured against moka (segmented and not), papaya and scc in
/// `benches/peer/caches.rs`: its hits cost a third of moka's, its inserts
/// into a full cache an eighth, its own memory 70 bytes an entry, not 250.
pub(crate) struct TokenCache {
    entries: Entries,
    max_ttl_secs: i64,
}

impl TokenCache {
    pub(crate) fn new(max_entries: u64, max_ttl: Duration) -> Self {
        // The bound is on entries, never on their age: an entry's lifetime
        // is judged on every hit by the configured clock, and an entry no
        // one asks for is evicted as new ones come.
        let capacity = usize::try_from(max_entries).unwrap_or(usize::MAX);
        let entries = Entries::with(
            capacity,
            max_entries,
            quick_cache::UnitWeighter,
            TailHash::default(),
            Default::default(),
        );
        let max_ttl_secs = i64::try_from(max_ttl.as_secs()).unwrap_or(i64::MAX);
        Self {
            entries,
            max_ttl_secs,
        }
    }

    /// The cached principal for this token and the issuer that verified
    /// it, if that was less than the maximum lifetime ago and its key is
    /// still in that issuer's current set. The token's own time claims are
    /// the caller's.
    /// `ms` and `secs` are `now` in Unix milliseconds and seconds, worked
    /// out once per request.
    pub(crate) fn get(&self, token: &[u8], now: SystemTime, ms: u64, secs: i64) -> Option<Hit> {
        let entry = self.entries.get(token)?;
        let keys = entry.issuer.keys.snapshot_at(now, ms);
        let p = &entry.principal;
        let young = secs.saturating_sub(entry.verified_at) < self.max_ttl_secs;
        let current = young
            && (entry.set_id.is_some() && entry.set_id == keys.set_id()
                || match (keys.set(), p.algorithm()) {
                    (Some(set), Some(alg)) => match set.find(p.key_id(), alg) {
                        Lookup::Found(key) => std::ptr::eq(Arc::as_ptr(key), entry.key.as_ptr()),
                        _ => false,
                    },
                    _ => false,
                });
        if current {
            Some(Hit(entry))
        } else {
            // This very entry: another thread may have verified the token
            // again meanwhile.
            self.entries.remove_if(token, |e| Arc::ptr_eq(e, &entry));
            None
        }
    }

    pub(crate) fn insert(
        &self,
        token: Arc<str>,
        principal: Principal,
        issuer: Arc<Issuer>,
        key: Weak<Key>,
        set_id: Option<u64>,
        now: i64,
    ) {
        self.entries.insert(
            Cached(token),
            Arc::new(Entry {
                principal,
                issuer,
                key,
                set_id,
                verified_at: now,
            }),
        );
    }

    pub(crate) fn invalidate(&self, token: &[u8]) {
        self.entries.remove(token);
    }

    /// Drops every entry whose principal matches.
    pub(crate) fn invalidate_matching(&self, pred: impl Fn(&Principal) -> bool) {
        // One pass over the shards, each write-locked in turn while it is
        // scanned (its hits wait): revocations are rare next to requests,
        // and each is checked per request anyway.
        self.entries.retain(|_, e| !pred(&e.principal));
    }
}
