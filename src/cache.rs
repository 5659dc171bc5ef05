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
//! The time claims are checked against the clock on every hit, as the
//! seconds they allow, worked out once when the token is verified
//! ([`time_window`](crate::jwt::time_window)); a token outside them is
//! dropped and verified again, to be refused for what it is. Scope
//! policies and the revocation hook run per request after the cache.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::jwks::Lookup;
use crate::jwt::claims::{Principal, Stamp};

/// Hashes the last [`TAIL`](Self::TAIL) bytes of what it is given: two
/// words, each mixed with a random key, multiplied, and the product's
/// halves folded together.
///
/// The bytes hashed are the end of the signature: distinct for distinct
/// tokens, and unknown to a client until the issuer signs. Only verified
/// tokens are ever inserted, so nobody but the issuer chooses what fills
/// the table, and a lookup still compares the whole token: the hash
/// needs to spread random bytes, not to resist an adversary, and a
/// multiply does that in a handful of instructions where SipHash took a
/// hundred and fifty.
#[derive(Clone)]
pub(crate) struct TailHash([u64; 2]);

impl TailHash {
    /// 16 base64url characters, over 90 bits of signature: distinct for
    /// the tokens an issuer signs. A collision only costs a comparison.
    const TAIL: usize = 16;
}

impl Default for TailHash {
    /// Keys drawn anew for each cache, as a `HashMap`'s are.
    fn default() -> Self {
        let random = RandomState::new();
        Self([random.hash_one(0u8), random.hash_one(1u8)])
    }
}

impl BuildHasher for TailHash {
    type Hasher = Tail;

    fn build_hasher(&self) -> Tail {
        Tail {
            keys: self.0,
            hash: 0,
        }
    }
}

pub(crate) struct Tail {
    keys: [u64; 2],
    hash: u64,
}

impl Hasher for Tail {
    fn write(&mut self, bytes: &[u8]) {
        let tail = &bytes[bytes.len().saturating_sub(TailHash::TAIL)..];
        let mut words = [0u8; TailHash::TAIL];
        words[TailHash::TAIL - tail.len()..].copy_from_slice(tail);
        let (a, b) = words.split_at(8);
        let word = |w: &[u8]| u64::from_le_bytes(w.try_into().unwrap_or_default());
        let product =
            u128::from(self.hash ^ word(a) ^ self.keys[0]) * u128::from(word(b) ^ self.keys[1]);
        // Folded: the high half depends on every bit of both words.
        self.hash = (product as u64) ^ ((product >> 64) as u64);
    }

    /// The length prefix `[u8]`'s `Hash` writes first, skipped alike for
    /// entries and lookups: the bytes are compared anyway.
    fn write_usize(&mut self, _: usize) {}

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Each value is the principal itself, its [`Stamp`] in the same
/// allocation: a hit clones one counter, the token's own (none that
/// every entry of an issuer or key shares, which two threads would fight
/// over on every hit), and reads no other entry.
type Entries = quick_cache::sync::Cache<Cached, Principal, quick_cache::UnitWeighter, TailHash>;

/// A cached token, found by the bytes of a request's: the same allocation
/// as its principal's claim set ([`Principal::stamped`]).
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
/// Measured against moka (segmented and not), papaya, scc and a
/// set-associative table of our own in `benches/peer/caches.rs`: its hits
/// cost a third of moka's, its inserts into a full cache an eighth, its
/// own memory 70 bytes an entry, not 250. Our table's hits with many
/// tokens are faster there, but not in the layer (`BENCHMARKS.md`, "What
/// a hit with 10,000 tokens waits for"), and its inserts are slower.
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

    /// The cached principal for this token, if it is within its stamp's
    /// seconds (its time claims and the cache's lifetime) and its key is
    /// still in its issuer's current set. Otherwise the entry is dropped,
    /// and the token, verified again, answers for itself.
    /// `ms` and `secs` are `now` in Unix milliseconds and seconds, worked
    /// out once per request.
    pub(crate) fn get(
        &self,
        token: &[u8],
        now: SystemTime,
        ms: u64,
        secs: i64,
    ) -> Option<Principal> {
        let p = self.entries.get(token)?;
        let current = p.stamp().is_some_and(|s| {
            s.from <= secs
                && secs < s.until
                && (s.set_id.is_some() && s.set_id == s.keys.current_set_id(ms) || {
                    // Another set since: is the key in it?
                    let keys = s.keys.snapshot_at(now, ms);
                    match (keys.set(), p.algorithm()) {
                        (Some(set), Some(alg)) => match set.find(p.key_id(), alg) {
                            Lookup::Found(key) => std::ptr::eq(Arc::as_ptr(key), s.key.as_ptr()),
                            _ => false,
                        },
                        _ => false,
                    }
                })
        });
        if current {
            Some(p)
        } else {
            // This very entry: another thread may have verified the token
            // again meanwhile.
            self.entries.remove_if(token, |e| e.is(&p));
            None
        }
    }

    /// Caches `p`, just verified from `token`, with `stamp` (whose
    /// seconds end no later than the cache's lifetime from `now`), and
    /// returns it as cached: one copy of the token, the cache's key and
    /// the principal's claim set.
    pub(crate) fn keep(&self, token: &str, p: Principal, mut stamp: Stamp, now: i64) -> Principal {
        stamp.until = stamp.until.min(now.saturating_add(self.max_ttl_secs));
        let token: Arc<str> = Arc::from(token);
        let p = p.stamped(&token, stamp);
        if p.stamp().is_some() {
            self.entries.insert(Cached(token), p.clone());
        }
        p
    }

    /// Drops every entry whose principal matches.
    pub(crate) fn invalidate_matching(&self, pred: impl Fn(&Principal) -> bool) {
        // One pass over the shards, each write-locked in turn while it is
        // scanned (its hits wait): revocations are rare next to requests,
        // and each is checked per request anyway.
        self.entries.retain(|_, p| !pred(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(h: &TailHash, bytes: &[u8]) -> u64 {
        h.hash_one(bytes)
    }

    #[test]
    fn the_tail_alone_is_hashed_and_every_tail_spreads() {
        let h = TailHash::default();
        let token = b"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJlLW9mLXRoZS1pc3N1ZXI";
        let mut other = token.to_vec();
        other[0] = b'X';
        assert_eq!(hash(&h, token), hash(&h, &other), "only the tail counts");
        // As an entry is hashed, so is a lookup by bytes.
        let entry = Cached(Arc::from(std::str::from_utf8(token).unwrap()));
        assert_eq!(h.hash_one(&entry), hash(&h, token));
        // Tails one byte apart, anywhere in the 16, all differ, in the
        // top bits (which pick the shard) too.
        let mut seen = std::collections::HashSet::new();
        for i in 0..TailHash::TAIL {
            for b in [b'A', b'-', b'_', b'z'] {
                let mut t = token.to_vec();
                let at = t.len() - 1 - i;
                t[at] = b;
                seen.insert(hash(&h, &t));
            }
        }
        assert_eq!(seen.len(), 4 * TailHash::TAIL);
        let tops: std::collections::HashSet<_> = seen.iter().map(|v| v >> 56).collect();
        assert!(tops.len() > 16, "{}", tops.len());
        // Shorter than the tail, or empty: hashed, not refused.
        assert_ne!(hash(&h, b"abc"), hash(&h, b"abd"));
        let _ = hash(&h, b"");
        // Each cache draws its own keys.
        assert_ne!(hash(&TailHash::default(), token), hash(&h, token));
    }
}
