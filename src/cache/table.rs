//! The verified-token cache's table: set-associative, two choices, second
//! chance, an exact bound.
//!
//! A token's hash picks two sets of [`WAYS`] ways. A hit read-locks the
//! two sets' shards (one lock word each, which stay in the CPU's caches),
//! reads the two sets way by way, finds the token's way by tag, compares
//! the token whole and sets the way's reference bit: no read log, no
//! housekeeping. A way holds the token and the value themselves, so a
//! hit reads the sets (together) and then the token and the value
//! (together). A map of indices into a slab (quick_cache's, which this
//! table replaced) reads one line more before the token, which with many
//! tokens scattered in memory is one more trip to it: the layer's hit with
//! 10,000 tokens took 0.52–0.58 µs against quick_cache's 0.62–0.71 in
//! alternating full runs (`BENCHMARKS.md`; `benches/peer/caches.rs` puts
//! the candidates side by side). Inserts into a full table cost about
//! twice quick_cache's, a few hundred nanoseconds next to the signature
//! check that precedes each.
//!
//! An insert goes into the set of the two with fewer entries (two choices
//! keep the sets even: 10,000 tokens in a table of 20,000 all stay), and
//! when both are full it evicts by second chance, so a token seen once
//! leaves before those seen again.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::config::MAX_TOKEN_CACHE_ENTRIES;

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
    /// Keys drawn anew for each table, as a `HashMap`'s are.
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

    /// The length prefix `[u8]`'s `Hash` writes first, skipped: the
    /// bytes are compared anyway.
    fn write_usize(&mut self, _: usize) {}

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Ways a set holds.
const WAYS: usize = 8;

/// Locks the sets share (fewer for small tables): few enough that their
/// words stay in the CPU's caches between hits, many enough that two
/// threads rarely want the same one for writing.
const LOCKS: usize = 64;

/// A way's tag is the token's hash with this bit set (0 is an empty
/// way) ...
const OCCUPIED: u64 = 1;
/// ... and this one while the entry has been hit since eviction last
/// passed it.
const REFERENCED: u64 = 2;

/// One entry's place: its tag, the token and the value, on one cache line
/// (32 bytes for an `Arc` value).
struct Way<V> {
    tag: AtomicU64,
    entry: Option<(Arc<str>, V)>,
}

impl<V> Default for Way<V> {
    fn default() -> Self {
        Self {
            tag: AtomicU64::new(0),
            entry: None,
        }
    }
}

/// [`WAYS`] ways, on whole cache lines.
#[repr(align(64))]
struct Set<V>([Way<V>; WAYS]);

impl<V> Default for Set<V> {
    fn default() -> Self {
        Self(std::array::from_fn(|_| Way::default()))
    }
}

/// One lock and the sets it guards (set `i` is `sets[i / locks]` of lock
/// `i % locks`), on a cache line of its own: hits under different locks
/// never write to the same line.
#[repr(align(64))]
struct Shard<V>(RwLock<Box<[Set<V>]>>);

impl<V> Shard<V> {
    /// Nothing panics while a lock is held, but a poisoned one is still
    /// the table's: its sets are whole.
    fn read(&self) -> RwLockReadGuard<'_, Box<[Set<V>]>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Box<[Set<V>]>> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An entry that left the table, dropped by the caller once the locks
/// are released.
pub type Gone<V> = Option<(Arc<str>, V)>;

/// Token bytes → `V`, for at most the bound's number of tokens.
pub struct Table<V> {
    shards: Box<[Shard<V>]>,
    /// How many sets, and how many ways the last one may use (the others
    /// use [`WAYS`]): `max_entries` ways in all.
    sets: u64,
    last_ways: usize,
    hasher: TailHash,
}

impl<V> std::fmt::Debug for Table<V> {
    /// Its size only: never a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("sets", &self.sets)
            .finish_non_exhaustive()
    }
}

/// Where a token may be: its two sets (the same one twice in a table of
/// one) and its tag.
#[derive(Clone, Copy)]
struct Place {
    sets: [u64; 2],
    tag: u64,
}

impl<V: Clone> Table<V> {
    /// A table of `max_entries` ways (at most
    /// [`MAX_TOKEN_CACHE_ENTRIES`], which the builder checks), allocated
    /// whole: 32 bytes a way for an `Arc` value.
    pub fn new(max_entries: u64) -> Self {
        let entries = max_entries.min(MAX_TOKEN_CACHE_ENTRIES);
        let sets = entries.div_ceil(WAYS as u64);
        let last_ways = (entries - sets.saturating_sub(1) * WAYS as u64) as usize;
        let locks = (sets as usize).clamp(1, LOCKS);
        let shards = (0..locks)
            .map(|l| {
                // Sets l, l + locks, l + 2 locks, ...
                let count = (sets as usize).saturating_sub(l).div_ceil(locks);
                Shard(RwLock::new((0..count).map(|_| Set::default()).collect()))
            })
            .collect();
        Self {
            shards,
            sets,
            last_ways,
            hasher: TailHash::default(),
        }
    }

    /// The value cached for `token`, marked as seen again.
    pub fn get(&self, token: &[u8]) -> Option<V> {
        let place = self.place(token);
        self.with_read(place, |a, b| {
            // Both sets at once, way by way: the first lines of the two
            // are read together, not one set after the other.
            (0..WAYS)
                .flat_map(|w| [a.get(w), b.get(w)])
                .flatten()
                .find_map(|way| way.hit(place.tag, token))
        })
    }

    /// Caches `value` for `token`, in place of what the table held for
    /// it; returns what left.
    #[must_use]
    pub fn insert(&self, token: Arc<str>, value: V) -> Gone<V> {
        let place = self.place(token.as_bytes());
        self.with_ways(place, |a, b| put(a, b, place.tag, (token, value)))
    }

    /// Removes `token`'s entry if `pred` holds for its value; returns it.
    #[must_use]
    pub(crate) fn remove_if(&self, token: &[u8], pred: impl Fn(&V) -> bool) -> Gone<V> {
        self.with_ways(self.place(token), |a, b| {
            let way = a
                .iter_mut()
                .chain(b)
                .find(|w| w.holding(token).is_some_and(&pred))?;
            way.take()
        })
    }

    /// Keeps only the entries whose value `keep` holds for: one pass over
    /// the shards, each write-locked in turn while it is scanned.
    pub(crate) fn retain(&self, keep: impl Fn(&V) -> bool) {
        for shard in &self.shards {
            let mut sets = shard.write();
            for way in sets.iter_mut().flat_map(|s| &mut s.0) {
                if way.entry.as_ref().is_some_and(|(_, v)| !keep(v)) {
                    drop(way.take());
                }
            }
        }
    }

    /// The two sets (from each half of the hash, by multiply and shift)
    /// and the tag of `token`.
    fn place(&self, token: &[u8]) -> Place {
        let h = self.hasher.hash_one(token);
        let pick = |half: u64| (half * self.sets) >> 32;
        Place {
            sets: [pick(h >> 32), pick(h & u64::from(u32::MAX))],
            tag: (h | OCCUPIED) & !REFERENCED,
        }
    }

    /// The lock of set `set`, the set's place among that lock's, and the
    /// ways it may use.
    fn spot(&self, set: u64) -> (usize, usize, usize) {
        let locks = self.shards.len() as u64;
        let ways = if set + 1 == self.sets {
            self.last_ways
        } else {
            WAYS
        };
        ((set % locks) as usize, (set / locks) as usize, ways)
    }

    /// Runs `f` on the ways of `place`'s two sets (the second empty when
    /// both are one), read-locked in the order of their locks, as writers
    /// take them.
    fn with_read<R>(&self, place: Place, f: impl FnOnce(&[Way<V>], &[Way<V>]) -> R) -> R {
        let [a, b] = place.sets;
        let ((la, ia, na), (lb, ib, nb)) = (self.spot(a), self.spot(b));
        let read = |l: usize| self.shards.get(l).map(Shard::read);
        if la == lb {
            let sets = read(la);
            let second = if ia == ib {
                &[][..]
            } else {
                read_ways(&sets, ib, nb)
            };
            return f(read_ways(&sets, ia, na), second);
        }
        let (ga, gb) = in_order(la, lb, read);
        f(read_ways(&ga, ia, na), read_ways(&gb, ib, nb))
    }

    /// Runs `f` on the ways of `place`'s two sets (the second empty when
    /// both are one), write-locked in the order of their locks: two
    /// writers never hold one lock each and wait for the other's.
    fn with_ways<R>(&self, place: Place, f: impl FnOnce(&mut [Way<V>], &mut [Way<V>]) -> R) -> R {
        let [a, b] = place.sets;
        let ((la, ia, na), (lb, ib, nb)) = (self.spot(a), self.spot(b));
        let write = |l: usize| self.shards.get(l).map(Shard::write);
        if la == lb {
            let Some(mut sets) = write(la) else {
                return f(&mut [], &mut []);
            };
            if ia == ib {
                return f(ways_of(sets.get_mut(ia), na), &mut []);
            }
            let (x, y) = two_mut(&mut sets, ia, ib);
            return f(ways_of(x, na), ways_of(y, nb));
        }
        let (mut ga, mut gb) = in_order(la, lb, write);
        let x = ga.as_mut().and_then(|s| s.get_mut(ia));
        let y = gb.as_mut().and_then(|s| s.get_mut(ib));
        f(ways_of(x, na), ways_of(y, nb))
    }

    /// The entries held, for tests.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let sets = s.read();
                sets.iter()
                    .flat_map(|s| &s.0)
                    .filter(|w| w.entry.is_some())
                    .count()
            })
            .sum()
    }
}

impl<V: Clone> Way<V> {
    /// This way's value if it holds `token` (tagged `tag`), marked as
    /// seen again.
    fn hit(&self, tag: u64, token: &[u8]) -> Option<V> {
        let seen = self.tag.load(Ordering::Relaxed);
        // The tag first: the token is compared only where it matches.
        if seen & !REFERENCED != tag {
            return None;
        }
        let value = self.holding(token)?;
        if seen & REFERENCED == 0 {
            self.tag.fetch_or(REFERENCED, Ordering::Relaxed);
        }
        Some(value.clone())
    }
}

impl<V> Way<V> {
    /// The value of this way, if it holds `token`.
    fn holding(&self, token: &[u8]) -> Option<&V> {
        let (key, value) = self.entry.as_ref()?;
        (key.as_bytes() == token).then_some(value)
    }

    /// Empties this way; returns what it held.
    fn take(&mut self) -> Gone<V> {
        *self.tag.get_mut() = 0;
        self.entry.take()
    }

    /// Makes `entry` this way's, not yet referenced; returns what it held.
    fn take_in(&mut self, tag: u64, entry: (Arc<str>, V)) -> Gone<V> {
        *self.tag.get_mut() = tag;
        self.entry.replace(entry)
    }
}

/// Puts `entry` into one of the ways `a` and `b`: in place of the same
/// token's (verified again by another request meanwhile), else into a
/// free way of the set with fewer entries (the first, if they hold as
/// many: two choices keep the sets even), else in place of the first
/// entry not referenced since the sweep last passed it, from a place the
/// tag picks, clearing the reference bits it passes (second chance).
/// Returns what left: the entry it replaced, or `entry` itself in a
/// table of no ways.
fn put<V>(a: &mut [Way<V>], b: &mut [Way<V>], tag: u64, entry: (Arc<str>, V)) -> Gone<V> {
    let token = entry.0.as_bytes();
    let held = |w: &Way<V>| w.holding(token).is_some();
    let used = |ways: &[Way<V>]| ways.iter().filter(|w| w.entry.is_some()).count();
    let free = |ways: &[Way<V>]| ways.iter().position(|w| w.entry.is_none());
    let n = a.len() + b.len();
    let at = a.iter().chain(b.iter()).position(held).or_else(|| {
        let (first, second) = (free(a), free(b).map(|i| a.len() + i));
        match (first, second) {
            (Some(i), Some(j)) => Some(if used(b) < used(a) { j } else { i }),
            (one, other) => one.or(other),
        }
    });
    let at = at.or_else(|| {
        // Two rounds at most: the first clears every bit it passes.
        let start = (tag >> 8) as usize % n.max(1);
        (0..2 * n).map(|i| (start + i) % n).find(|&i| {
            way_at(a, b, i).is_some_and(|way| {
                let seen = way.tag.get_mut();
                let spared = *seen & REFERENCED != 0;
                *seen &= !REFERENCED;
                !spared
            })
        })
    });
    match at.and_then(|i| way_at(a, b, i)) {
        Some(way) => way.take_in(tag, entry),
        None => Some(entry),
    }
}

/// `lock(a)` and `lock(b)` (distinct), taken in the order of `a` and `b`.
fn in_order<G>(a: usize, b: usize, lock: impl Fn(usize) -> G) -> (G, G) {
    if a < b {
        let first = lock(a);
        (first, lock(b))
    } else {
        let first = lock(b);
        (lock(a), first)
    }
}

/// Way `i` of `a` then `b`.
fn way_at<'a, V>(a: &'a mut [Way<V>], b: &'a mut [Way<V>], i: usize) -> Option<&'a mut Way<V>> {
    match i.checked_sub(a.len()) {
        None => a.get_mut(i),
        Some(i) => b.get_mut(i),
    }
}

/// The first `n` ways of set `i` of `sets`, none if there is no such set.
fn read_ways<'a, V>(
    sets: &'a Option<RwLockReadGuard<'_, Box<[Set<V>]>>>,
    i: usize,
    n: usize,
) -> &'a [Way<V>] {
    sets.as_deref()
        .and_then(|s| s.get(i))
        .and_then(|s| s.0.get(..n))
        .unwrap_or_default()
}

/// The first `n` ways of `set`, none if there is no such set.
fn ways_of<V>(set: Option<&mut Set<V>>, n: usize) -> &mut [Way<V>] {
    match set {
        Some(set) => set.0.get_mut(..n).unwrap_or_default(),
        None => &mut [],
    }
}

/// Sets `i` and `j` (distinct) of `sets`, both borrowed at once.
fn two_mut<V>(
    sets: &mut [Set<V>],
    i: usize,
    j: usize,
) -> (Option<&mut Set<V>>, Option<&mut Set<V>>) {
    let (lo, hi) = (i.min(j), i.max(j));
    if hi >= sets.len() {
        let low = sets.get_mut(lo);
        return if i < j { (low, None) } else { (None, low) };
    }
    let (left, right) = sets.split_at_mut(hi);
    let (low, high) = (left.get_mut(lo), right.first_mut());
    if i < j { (low, high) } else { (high, low) }
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
        // Tails one byte apart, anywhere in the 16, all differ, in the
        // top bits (which pick the first set) too.
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
        // Each table draws its own keys.
        assert_ne!(hash(&TailHash::default(), token), hash(&h, token));
    }

    /// A token-like string whose tail (what is hashed) is its number.
    fn token(i: usize) -> Arc<str> {
        Arc::from(format!("eyJhbGciOiJFUzI1NiJ9.eyJuIjoxfQ.{i:032x}"))
    }

    #[test]
    fn the_bound_is_exact_and_a_table_half_full_keeps_every_token() {
        for bound in [1, 7, 8, 9, 100, 1000] {
            let t = Table::new(bound);
            for i in 0..3 * bound as usize {
                drop(t.insert(token(i), i));
            }
            assert_eq!(t.len(), bound as usize, "bound {bound}");
        }
        // Two choices: half the ways filled, none is pushed out.
        let t = Table::new(20_000);
        for i in 0..10_000 {
            assert!(t.insert(token(i), i).is_none());
        }
        assert!((0..10_000).all(|i| t.get(token(i).as_bytes()) == Some(i)));
        assert_eq!(t.get(token(10_000).as_bytes()), None);
        // None at all: nothing is kept, the entry comes back.
        let none = Table::new(0);
        assert_eq!(none.insert(token(1), 1), Some((token(1), 1)));
        assert_eq!(none.get(token(1).as_bytes()), None);
    }

    #[test]
    fn a_token_is_found_only_by_all_its_bytes_and_replaced_in_place() {
        let t = Table::new(100);
        drop(t.insert(token(1), 1));
        let same_tail = format!("X{}", &token(1)[1..]);
        assert_eq!(t.get(same_tail.as_bytes()), None, "same hash, other bytes");
        assert_eq!(t.get(&token(1).as_bytes()[1..]), None);
        assert_eq!(t.insert(token(1), 2), Some((token(1), 1)));
        assert_eq!(t.get(token(1).as_bytes()), Some(2));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_token_seen_again_outlives_a_stream_of_tokens_seen_once() {
        let t = Table::new(16);
        drop(t.insert(token(0), 0));
        for i in 1..1000 {
            assert_eq!(t.get(token(0).as_bytes()), Some(0), "after {i}");
            drop(t.insert(token(i), i));
        }
        // Unreferenced, it is pushed out in turn.
        for i in 1000..1100 {
            drop(t.insert(token(i), i));
        }
        assert_eq!(t.get(token(0).as_bytes()), None);
        assert_eq!(t.len(), 16);
    }

    #[test]
    fn removal_takes_only_the_entry_asked_for() {
        let t = Table::new(100);
        for i in 0..10 {
            drop(t.insert(token(i), i));
        }
        assert_eq!(t.remove_if(token(3).as_bytes(), |&v| v == 4), None);
        assert_eq!(
            t.remove_if(token(3).as_bytes(), |&v| v == 3),
            Some((token(3), 3))
        );
        assert_eq!(t.get(token(3).as_bytes()), None);
        t.retain(|&v| v % 2 == 0);
        let left: Vec<usize> = (0..10)
            .filter(|&i| t.get(token(i).as_bytes()).is_some())
            .collect();
        assert_eq!(left, [0, 2, 4, 6, 8]);
    }

    #[test]
    fn threads_inserting_and_reading_at_once_keep_the_bound() {
        // Eight sets under eight locks: most lookups and inserts take two
        // locks, in either order of the sets; a deadlock would hang.
        let t = Table::new(64);
        std::thread::scope(|s| {
            for k in 0..4 {
                let t = &t;
                s.spawn(move || {
                    for i in 0..20_000 {
                        let n = (i * 7 + k) % 500;
                        match t.get(token(n).as_bytes()) {
                            Some(v) => assert_eq!(v, n),
                            None => drop(t.insert(token(n), n)),
                        }
                    }
                });
            }
        });
        assert_eq!(t.len(), 64);
    }
}
