//! The verified-token cache's candidates, side by side in one run, with
//! the key and value shapes the crate stores: a 900-byte token as the key
//! (`Arc<str>`, hashed by its last 32 bytes with a keyed SipHash; the
//! crate's own table hashes its last 16 with its own keyed multiply), an
//! `Arc` to an entry as the value, and lookups by a separate copy of the
//! token (the request's header).
//!
//! - `moka-segmented`: moka's `sync::SegmentedCache` as the crate used it
//!   before (8 × cores segments, time to live, invalidation closures);
//! - `moka`: one moka `sync::Cache`, tuned: no time to live, no closures;
//! - `quick_cache`: quick_cache's `sync::Cache` (sharded, CLOCK-like
//!   S3-FIFO eviction, read lock per shard), default features off;
//! - `papaya`: papaya's lock-free `HashMap` (no eviction of its own);
//! - `scc`: scc's `HashCache` (bucket-local LRU eviction);
//! - `set-associative`: the crate's own table (`src/cache/table.rs`), its
//!   verified-token cache since quick_cache: its ways hold their tags and
//!   entries inline, so a hit reads two sets (at once) and then the
//!   token, where quick_cache reads its table, then the entry, then the
//!   token.
//!
//! For each, with the runs interleaved round by round: the cost of a hit
//! for one repeated token, for 10,000 tokens in turn, on one and on two
//! threads, and of an insert into a full cache; then the heap bytes each
//! entry costs, from a counting allocator, beyond the key and value.
//! Prints `CANDIDATE FIGURE VALUE` lines. `cargo bench --bench caches`.

#[path = "../common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use common::{Paired, paired_settings, parallel};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: defers to the system allocator; only counts live bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const TOKEN_BYTES: usize = 900;
const VALUE_BYTES: usize = 700;
const MANY: usize = 10_000;
const MEMORY_ENTRIES: usize = 100_000;

/// The crate's hasher: SipHash, randomly keyed, over the last 32 bytes.
#[derive(Clone, Default)]
struct TailHash(RandomState);

struct Tail(std::hash::DefaultHasher);

impl BuildHasher for TailHash {
    type Hasher = Tail;
    fn build_hasher(&self) -> Tail {
        Tail(self.0.build_hasher())
    }
}

impl Hasher for Tail {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(&bytes[bytes.len().saturating_sub(32)..]);
    }
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

type Key = Arc<str>;
/// What an entry holds: a principal and the rest, as one allocation.
type Value = Arc<Box<[u8]>>;

trait Candidate: Send + Sync {
    fn get(&self, token: &str) -> Option<Value>;
    fn insert(&self, token: Key, value: Value);
}

struct MokaSegmented(moka::sync::SegmentedCache<Key, Value, TailHash>);
struct Moka(moka::sync::Cache<Key, Value, TailHash>);
struct Quick(quick_cache::sync::Cache<Key, Value, quick_cache::UnitWeighter, TailHash>);
struct Papaya(papaya::HashMap<Key, Value, TailHash>);
struct Scc(scc::HashCache<Key, Value, TailHash>);

/// The crate's own table, as its verified-token cache uses it.
struct Assoc(tower_bearer::testing::TokenTable<Value>);

impl Candidate for Assoc {
    fn get(&self, token: &str) -> Option<Value> {
        self.0.get(token.as_bytes())
    }
    fn insert(&self, token: Key, value: Value) {
        drop(self.0.insert(token, value));
    }
}

/// The caches whose own `get` and `insert` have the trait's shape.
macro_rules! same_shape {
    ($($candidate:ty),*) => {$(
        impl Candidate for $candidate {
            fn get(&self, token: &str) -> Option<Value> {
                self.0.get(token)
            }
            fn insert(&self, token: Key, value: Value) {
                self.0.insert(token, value)
            }
        }
    )*};
}

same_shape!(MokaSegmented, Moka, Quick);

impl Candidate for Papaya {
    fn get(&self, token: &str) -> Option<Value> {
        self.0.pin().get(token).cloned()
    }
    fn insert(&self, token: Key, value: Value) {
        self.0.pin().insert(token, value);
    }
}

impl Candidate for Scc {
    fn get(&self, token: &str) -> Option<Value> {
        self.0.read_sync(token, |_, v| v.clone())
    }
    fn insert(&self, token: Key, value: Value) {
        let _ = self.0.put_sync(token, value);
    }
}

fn build(name: &str, capacity: usize) -> Box<dyn Candidate> {
    match name {
        "moka-segmented" => {
            let segments = std::thread::available_parallelism()
                .map_or(4, usize::from)
                .saturating_mul(4)
                .next_power_of_two()
                .min(64);
            Box::new(MokaSegmented(
                moka::sync::SegmentedCache::builder(segments)
                    .max_capacity(capacity as u64)
                    .time_to_live(Duration::from_secs(600))
                    .support_invalidation_closures()
                    .build_with_hasher(TailHash::default()),
            ))
        }
        "moka" => Box::new(Moka(
            moka::sync::Cache::builder()
                .max_capacity(capacity as u64)
                .build_with_hasher(TailHash::default()),
        )),
        "quick_cache" => Box::new(Quick(quick_cache::sync::Cache::with(
            capacity,
            capacity as u64,
            quick_cache::UnitWeighter,
            TailHash::default(),
            Default::default(),
        ))),
        "quick_cache-64" => Box::new(Quick(quick_cache::sync::Cache::with_options(
            quick_cache::OptionsBuilder::new()
                .estimated_items_capacity(capacity)
                .weight_capacity(capacity as u64)
                .shards(64)
                .build()
                .unwrap(),
            quick_cache::UnitWeighter,
            TailHash::default(),
            Default::default(),
        ))),
        "papaya" => Box::new(Papaya(papaya::HashMap::with_capacity_and_hasher(
            capacity,
            TailHash::default(),
        ))),
        "set-associative" => Box::new(Assoc(tower_bearer::testing::TokenTable::new(
            capacity as u64,
        ))),
        _ => Box::new(Scc(scc::HashCache::with_capacity_and_hasher(
            capacity,
            capacity,
            TailHash::default(),
        ))),
    }
}

const CANDIDATES: [&str; 7] = [
    "moka-segmented",
    "moka",
    "quick_cache",
    "quick_cache-64",
    "papaya",
    "scc",
    "set-associative",
];

/// A distinct token-sized byte string: its number spread over all bytes,
/// so that the tail the hasher reads differs too.
fn token(i: usize) -> String {
    let mut state = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..TOKEN_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'A' + (state % 26) as u8)
        })
        .collect()
}

fn value() -> Value {
    Arc::new(vec![7u8; VALUE_BYTES].into_boxed_slice())
}

/// A cache holding `tokens`, looked up by separate copies of them.
struct Filled {
    cache: Box<dyn Candidate>,
    requests: Vec<String>,
}

impl Filled {
    fn new(name: &str, count: usize) -> Self {
        let cache = build(name, count * 2);
        let requests: Vec<String> = (0..count).map(token).collect();
        for r in &requests {
            cache.insert(Arc::from(r.as_str()), value());
        }
        // Eviction policies admit on the second sight; every entry is in.
        for r in &requests {
            if cache.get(r).is_none() {
                cache.insert(Arc::from(r.as_str()), value());
            }
        }
        assert!(requests.iter().all(|r| cache.get(r).is_some()), "{name}");
        Self { cache, requests }
    }

    /// `n` hits on `threads` threads: thread `t` cycles through the tokens
    /// from its own offset (`spread`), or repeats token `t`. Without
    /// `lookup`, the same loop alone: the baseline a hit is taken from.
    fn hits(&self, threads: usize, n: u64, spread: bool, lookup: bool) -> Duration {
        let len = self.requests.len();
        parallel(threads, n, |t, share| {
            move || {
                let start = Instant::now();
                for i in 0..share as usize {
                    let at = if spread { (t * len / 2 + i) % len } else { t };
                    let request = black_box(&self.requests[at]);
                    if lookup {
                        black_box(self.cache.get(request));
                    } else {
                        black_box(request.len());
                    }
                }
                start.elapsed()
            }
        })
    }
}

/// Heap bytes per entry of a cache of `MEMORY_ENTRIES` 900-byte tokens,
/// and how many of them are the structure's own.
fn bytes_per_entry(name: &str) -> (f64, f64) {
    let keys: Vec<Key> = (0..MEMORY_ENTRIES).map(|i| Arc::from(token(i))).collect();
    let values: Vec<Value> = (0..MEMORY_ENTRIES).map(|_| value()).collect();
    let before = LIVE.load(Ordering::Relaxed);
    let cache = build(name, MEMORY_ENTRIES);
    for (k, v) in keys.iter().zip(&values) {
        cache.insert(k.clone(), v.clone());
    }
    let per_entry = (LIVE.load(Ordering::Relaxed) - before) as f64 / MEMORY_ENTRIES as f64;
    drop(cache);
    // The keys and values are counted apart: a cache holds both anyway.
    let own = (TOKEN_BYTES + VALUE_BYTES) as f64;
    (per_entry + own, per_entry)
}

fn main() {
    let (count, round) = paired_settings();
    let one: Vec<Filled> = CANDIDATES.iter().map(|c| Filled::new(c, 1)).collect();
    let many: Vec<Filled> = CANDIDATES.iter().map(|c| Filled::new(c, MANY)).collect();
    let full: Vec<(Box<dyn Candidate>, Vec<Key>)> = CANDIDATES
        .iter()
        .map(|c| {
            let cache = build(c, MANY);
            for i in 0..MANY {
                cache.insert(Arc::from(token(i)), value());
            }
            let fresh = (MANY..MANY + 200_000)
                .map(|i| Arc::from(token(i)))
                .collect();
            (cache, fresh)
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    type Timer<'a> = Box<dyn Fn(u64) -> Duration + Sync + 'a>;
    let mut timers: Vec<Timer> = vec![
        Box::new(|n| one[0].hits(1, n, false, false)),
        Box::new(|n| many[0].hits(1, n, true, false)),
        Box::new(|n| many[0].hits(2, n, true, false)),
    ];
    for c in 0..CANDIDATES.len() {
        let (one, many, full, next) = (&one[c], &many[c], &full[c], &next);
        timers.push(Box::new(move |n| one.hits(1, n, false, true)));
        timers.push(Box::new(move |n| many.hits(1, n, true, true)));
        timers.push(Box::new(move |n| many.hits(2, n, true, true)));
        timers.push(Box::new(move |n| {
            let (cache, fresh) = full;
            let start = Instant::now();
            for _ in 0..n {
                let i = next.fetch_add(1, Ordering::Relaxed) % fresh.len();
                cache.insert(fresh[i].clone(), value());
            }
            start.elapsed()
        }));
    }
    let p = Paired::run(&timers, count, round);
    let ns = |(m, _, _): (f64, f64, f64)| m;
    for (c, name) in CANDIDATES.iter().enumerate() {
        let at = 3 + 4 * c;
        let hit_one = ns(p.difference(at, 0));
        let hit_many = ns(p.difference(at + 1, 1));
        // Two threads: the rate of hits against one thread's.
        let scaling = ns(p.ratio(at + 1, at + 2));
        let base_scaling = ns(p.ratio(1, 2));
        println!("{name} hit-one-ns {hit_one:.1}");
        println!("{name} hit-10k-ns {hit_many:.1}");
        println!("{name} hit-10k-best-ns {:.1}", p.best(at + 1) - p.best(1));
        println!("{name} scaling-x2 {scaling:.2} (loop alone {base_scaling:.2})");
        println!("{name} insert-full-ns {:.1}", p.median(at + 3));
    }
    for name in CANDIDATES {
        let (total, overhead) = bytes_per_entry(name);
        println!("{name} bytes-per-entry {total:.0} (structure {overhead:.0})");
    }
}
