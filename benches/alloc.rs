//! Heap allocations per request through the layer, on the cold path (a
//! token not seen before) and the cached path (a repeated token), counted
//! by a global allocator around the calls alone (the requests are built
//! before), and the heap bytes each cached token costs, for 10,000
//! tokens of 900 bytes (EdDSA, a Keycloak-like claim set), against the
//! token's own size. Prints lines for `scripts/bench-report`.
//!
//! `cargo bench --bench alloc`; `CASE=cold-roles` (a case's name) measures
//! that case alone, for an instruction count under
//! `valgrind --tool=callgrind --toggle-collect='*per_request*'`.

#[path = "common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use common::{Case, Fixture, call, fill, tokens};
use tower_bearer::testing::TestIssuer;
use tower_bearer::{Algorithm, BearerAuthLayer};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated and not freed.
static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: defers to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations per request of `case`, over `n` requests after one to warm up.
fn per_request(fx: &Fixture, case: Case, n: u64) -> f64 {
    let mut svc = fx.layer(case);
    for req in fx.requests(case, 0, 1) {
        call(&mut svc, req);
    }
    let reqs = fx.requests(case, 0, n);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for req in reqs {
        call(&mut svc, req);
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64
}

/// Heap bytes per cached token, and the tokens' size: `count` tokens of
/// 900 bytes, verified into a cache with room for all. The heap's own
/// bookkeeping (16 bytes an allocation with glibc) is not counted.
fn bytes_per_token(rt: &tokio::runtime::Runtime, count: usize) -> (f64, usize) {
    let idp = rt
        .block_on(TestIssuer::builder().algorithm(Algorithm::EdDSA).start())
        .unwrap();
    let values = tokens(&idp, count, 900);
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .jwks_json(idp.jwks_json())
        .token_cache(2 * count as u64, Duration::from_secs(300))
        .build()
        .unwrap();
    let before = LIVE.load(Ordering::Relaxed);
    fill(rt, &auth, &values);
    let bytes = (LIVE.load(Ordering::Relaxed) - before) as f64 / count as f64;
    (bytes, values[0].len() - "Bearer ".len())
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fx = Fixture::new(&rt, Algorithm::RS256);
    if let Ok(name) = std::env::var("CASE") {
        let case = [
            Case::Cold,
            Case::Cached,
            Case::ColdTenIssuers,
            Case::CachedTenIssuers,
            Case::ColdRoles,
            Case::DpopCold,
            Case::DpopCached,
            Case::ColdMetrics,
            Case::CachedMetrics,
        ]
        .into_iter()
        .find(|c| c.name() == name)
        .expect("CASE names a case");
        let n = per_request(&fx, case, 200);
        println!("allocations per request: {name} {n:.1}");
        return;
    }
    let cold = per_request(&fx, Case::Cold, 200);
    let cached = per_request(&fx, Case::Cached, 200);
    println!("allocations per request: cold {cold:.1}, cached {cached:.1}");
    let ten = per_request(&fx, Case::ColdTenIssuers, 200);
    let roles = per_request(&fx, Case::ColdRoles, 200);
    println!("allocations per request, cold: 10 issuers {ten:.1}, roles read {roles:.1}");
    let dpop_cold = per_request(&fx, Case::DpopCold, 200);
    let dpop_cached = per_request(&fx, Case::DpopCached, 200);
    println!("allocations per request, DPoP: cold {dpop_cold:.1}, token cached {dpop_cached:.1}");
    let cold_metrics = per_request(&fx, Case::ColdMetrics, 200);
    let cached_metrics = per_request(&fx, Case::CachedMetrics, 200);
    println!(
        "allocations per request, metrics on: cold {cold_metrics:.1}, cached {cached_metrics:.1}"
    );
    let (bytes, size) = bytes_per_token(&rt, 10_000);
    println!(
        "bytes per cached token: {bytes:.0} for a {size}-byte token, {:.2}x",
        bytes / size as f64
    );
}
