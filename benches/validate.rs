//! Per-request cost of tower-bearer, next to what it is built on, in the
//! same run: for RS256, ES256 and EdDSA with a realistic access token,
//!
//! - `floor`: aws-lc-rs verify with a pre-parsed key, plus decoding and
//!   parsing header and claims (the least any validator must do);
//! - `jsonwebtoken`: `jsonwebtoken::decode` with iss and aud checks;
//! - `open`: the bench's inner service called without the layer: what
//!   every request costs here anyway (dropping it, building a response);
//! - `cold`: tower-bearer's layer through a tower `Service` call, a token
//!   it has not seen (cache miss: syntax, verify, claims, insert);
//! - `cached`: the same with a repeated token (verified-token cache hit);
//! - `… x2`: floor, cold and cached on two threads at once (time per unit:
//!   half of the 1-thread time is perfect scaling);
//! - `hostile-header` / `plain-header`: the layer without a cache, with a
//!   token as large as the limit allows whose header is the costliest the
//!   limits let through (32 members whose long names differ only at the
//!   end), and one whose header is as long with a single member;
//! - `unknown-kid`: a token whose `kid` the key set lacks, through the
//!   slow path (the refresh a static set answers without I/O) to its 401.
//!
//! jwt-authorizer is measured on the same tokens by `benches/peer`, and
//! `benches/ratios.rs` measures the ratios the targets name with the runs
//! interleaved. `cargo bench --bench validate`.

#[path = "common/mod.rs"]
mod common;

use common::{ALGORITHMS, Case, Fixture, TWO_THREADS};
use criterion::{Criterion, criterion_group, criterion_main};

fn validate(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for alg in ALGORITHMS {
        let fx = Fixture::new(&rt, alg);
        let mut group = c.benchmark_group(format!("{alg}"));
        for case in Case::ALL {
            group.bench_function(case.name(), |b| b.iter_custom(|n| fx.time(case, 1, n)));
        }
        for case in [
            Case::HostileHeader,
            Case::PlainHeader,
            Case::UnknownKid,
            Case::ColdTenIssuers,
            Case::CachedTenIssuers,
            Case::ColdRoles,
        ] {
            group.bench_function(case.name(), |b| b.iter_custom(|n| fx.time(case, 1, n)));
        }
        for case in TWO_THREADS {
            group.bench_function(format!("{} x2", case.name()), |b| {
                b.iter_custom(|n| fx.time(case, 2, n))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, validate);
criterion_main!(benches);
