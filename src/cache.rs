//! The verified-token cache: a repeated JWT skips the signature check.
//!
//! Keyed by the token itself, compared whole. Only its last bytes, part of
//! the signature, are hashed ([`TailHash`](table::TailHash)): they differ
//! between any two tokens, and hashing all 900 bytes cost about as much as
//! the rest of a hit (a digest even more, on machines without SHA
//! instructions). Entries therefore hold tokens, as the requests that
//! carry them do, and a cached principal reads its claim set from that
//! same copy. They are bounded in number, in a table of our own
//! ([`table`]); their lifetime is judged on every hit.
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

pub(crate) mod table;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::jwks::Lookup;
use crate::jwt::claims::{Principal, Stamp};
use table::Table;

/// Each entry is the principal itself, its [`Stamp`] in the same
/// allocation: a hit clones one counter, the token's own (none that
/// every entry of an issuer or key shares, which two threads would fight
/// over on every hit), and reads no other entry. At most `max_entries`
/// of them, exactly ([`table`]).
pub(crate) struct TokenCache {
    entries: Table<Principal>,
    max_ttl_secs: i64,
}

impl TokenCache {
    pub(crate) fn new(max_entries: u64, max_ttl: Duration) -> Self {
        // The bound is on entries, never on their age: an entry's lifetime
        // is judged on every hit by the configured clock, and an entry no
        // one asks for is evicted as new ones come.
        let max_ttl_secs = i64::try_from(max_ttl.as_secs()).unwrap_or(i64::MAX);
        Self {
            entries: Table::new(max_entries),
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
            drop(self.entries.remove_if(token, |e| e.is(&p)));
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
            // What leaves is dropped once the table's locks are released.
            drop(self.entries.insert(token, p.clone()));
        }
        p
    }

    /// Drops every entry whose principal matches.
    pub(crate) fn invalidate_matching(&self, pred: impl Fn(&Principal) -> bool) {
        // One pass over the shards, each write-locked in turn while it is
        // scanned (its hits wait): revocations are rare next to requests,
        // and each is checked per request anyway.
        self.entries.retain(|p| !pred(p));
    }
}
