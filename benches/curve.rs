//! The cost curve: how a request's cost grows with the work behind it.
//!
//! - `hit`: a cache hit (cached − open, same requests) against the number
//!   of cached tokens, 10³ to 10⁶ (`CURVE_MAX`, default 10⁶): EdDSA
//!   tokens of 900 bytes with a Keycloak-like claim set, every one in the
//!   cache, requested in turn;
//! - `keys`: the cold path (RS256) against the keys in the issuer's set,
//!   1 to 100, the token's key the last;
//! - `issuers`: the cold path (RS256) against the configured issuers,
//!   1 to 100, the token's the last;
//! - `size`: the cold path (ES256) against the token's size, 0.5 to
//!   16 KiB, with the floor (verify + parse) of the same tokens beside it;
//! - `rss`: the process's resident memory for a cache of 100,000 tokens
//!   (its configured bound), and after 300,000 more have gone through it.
//!
//! Each curve's points run interleaved round by round (`Paired`). Prints
//! `CURVE X MEDIAN BEST EXTRA` lines for `scripts/bench-report`, which
//! draws the table and the plot. `cargo bench --bench curve`.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{Paired, fill, floor_key, floor_of, in_turn, inner, paired_settings, serve, tokens};
use http::HeaderValue;
use tower_bearer::testing::TestIssuer;
use tower_bearer::{Algorithm, BearerAuthLayer, TrustedIssuer};

const TTL: Duration = Duration::from_secs(3600);

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (count, round) = paired_settings();
    let max: usize = std::env::var("CURVE_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    hit_and_memory(&rt, max, count, round);
    keys(&rt, count, round);
    issuers(&rt, count, round);
    size(&rt, count, round);
}

/// Resident memory of this process, bytes (Linux).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn hit_and_memory(rt: &tokio::runtime::Runtime, max: usize, count: usize, round: Duration) {
    let idp = rt
        .block_on(TestIssuer::builder().algorithm(Algorithm::EdDSA).start())
        .unwrap();
    let build = |entries: usize| {
        BearerAuthLayer::builder()
            .issuer(idp.issuer())
            .audience(idp.audience())
            .jwks_json(idp.jwks_json())
            .token_cache(entries as u64, TTL)
            .build()
            .unwrap()
    };
    let started = Instant::now();
    let values = tokens(&idp, max.max(400_000), 900);
    let token_bytes = values[0].len() - "Bearer ".len();
    eprintln!(
        "curve: {} tokens of {token_bytes} bytes signed in {:.0?}",
        values.len(),
        started.elapsed()
    );

    // The memory bound: a cache of 100,000, filled, then 300,000 more.
    let bound = 100_000;
    let before = rss();
    let auth = build(bound);
    fill(rt, &auth, &values[..bound]);
    let full = rss() - before;
    fill(rt, &auth, &values[bound..4 * bound]);
    let after = rss() - before;
    drop(auth);
    println!("rss 100000 {full} {after} {token_bytes}");

    // Hits against the number of cached tokens: one cache, grown in steps
    // and measured at each, against the open service on the same requests.
    // Twice the entries: a sharded cache's shards fill unevenly.
    let auth = build(2 * max);
    let mut cached = 0;
    let mut n = 1_000;
    while n <= max {
        fill(rt, &auth, &values[cached..n]);
        cached = n;
        let slice = &values[..n];
        let at = std::sync::atomic::AtomicUsize::new(0);
        let timers = [
            Box::new(|k| serve(1, k, inner, |_, k| in_turn(slice, &at, 0, k)))
                as Box<dyn Fn(u64) -> Duration>,
            Box::new(|k| {
                serve(
                    1,
                    k,
                    || tower::Layer::layer(&auth, inner()),
                    |_, k| in_turn(slice, &at, 0, k),
                )
            }),
        ];
        let p = Paired::run(&timers, count, round);
        let (median, _, _) = p.difference(1, 0);
        println!(
            "hit {n} {median:.1} {:.1} {:.1}",
            p.best(1) - p.best(0),
            p.median(0)
        );
        n *= 10;
    }
}

/// Times the cold path of `auth` for the tokens of `values` in turn.
fn cold<'a>(
    auth: &'a BearerAuthLayer,
    values: &'a [HeaderValue],
    at: &'a std::sync::atomic::AtomicUsize,
) -> impl Fn(u64) -> Duration + 'a {
    move |k| {
        serve(
            1,
            k,
            || tower::Layer::layer(auth, inner()),
            |_, k| in_turn(values, at, 0, k),
        )
    }
}

/// One curve of cold paths, each point against the first.
fn cold_curve(
    name: &str,
    xs: &[usize],
    auths: &[BearerAuthLayer],
    values: &[HeaderValue],
    count: usize,
    round: Duration,
) {
    let at = std::sync::atomic::AtomicUsize::new(0);
    let timers: Vec<_> = auths.iter().map(|a| cold(a, values, &at)).collect();
    let p = Paired::run(&timers, count, round);
    for (i, x) in xs.iter().enumerate() {
        let (ratio, _, _) = p.ratio(i, 0);
        println!("{name} {x} {:.1} {:.1} {ratio:.3}", p.median(i), p.best(i));
    }
}

const SETS: [usize; 5] = [1, 3, 10, 30, 100];

fn rs256(rt: &tokio::runtime::Runtime) -> (TestIssuer, Vec<HeaderValue>) {
    let idp = rt
        .block_on(TestIssuer::builder().algorithm(Algorithm::RS256).start())
        .unwrap();
    let values = tokens(&idp, 256, 0);
    (idp, values)
}

/// Cold cost against the keys in the set: the issuer's key is the last of
/// `n`, the others copies of it under other `kid`s.
fn keys(rt: &tokio::runtime::Runtime, count: usize, round: Duration) {
    let (idp, values) = rs256(rt);
    let jwk = idp.public_jwk(&idp.current_kid()).unwrap();
    let auths: Vec<_> = SETS
        .iter()
        .map(|&n| {
            let mut keys: Vec<_> = (1..n)
                .map(|i| {
                    let mut other = jwk.clone();
                    other["kid"] = format!("rotated-{i}").into();
                    other
                })
                .collect();
            keys.push(jwk.clone());
            let set = serde_json::json!({ "keys": keys }).to_string();
            BearerAuthLayer::builder()
                .issuer(idp.issuer())
                .audience(idp.audience())
                .jwks_json(set)
                .no_token_cache()
                .build()
                .unwrap()
        })
        .collect();
    cold_curve("keys", &SETS, &auths, &values, count, round);
}

/// Cold cost against the configured issuers, the token's the last.
fn issuers(rt: &tokio::runtime::Runtime, count: usize, round: Duration) {
    let (idp, values) = rs256(rt);
    let auths: Vec<_> = SETS
        .iter()
        .map(|&n| {
            (1..n)
                .fold(
                    BearerAuthLayer::builder().audience(idp.audience()),
                    |b, i| {
                        b.trusted_issuer(
                            TrustedIssuer::new(format!("https://idp-{i}.example.com"))
                                .jwks_json(idp.jwks_json()),
                        )
                    },
                )
                .trusted_issuer(TrustedIssuer::new(idp.issuer()).jwks_json(idp.jwks_json()))
                .no_token_cache()
                .build()
                .unwrap()
        })
        .collect();
    cold_curve("issuers", &SETS, &auths, &values, count, round);
}

/// Cold cost against the token's size (ES256), beside the floor of the
/// same tokens.
fn size(rt: &tokio::runtime::Runtime, count: usize, round: Duration) {
    let idp = rt
        .block_on(TestIssuer::builder().algorithm(Algorithm::ES256).start())
        .unwrap();
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .jwks_json(idp.jwks_json())
        .no_token_cache()
        .build()
        .unwrap();
    let key = floor_key(
        &idp.public_jwk(&idp.current_kid()).unwrap(),
        Algorithm::ES256,
    );
    let sizes = [512, 1024, 2048, 4096, 8192, 16384];
    let sets: Vec<Vec<HeaderValue>> = sizes
        .iter()
        .map(|&bytes| {
            let values = small_tokens(&idp, bytes);
            let longest = values.iter().map(HeaderValue::len).max().unwrap() - 7;
            assert!(longest <= bytes, "{bytes}-byte tokens came out {longest}");
            values
        })
        .collect();
    let at = std::sync::atomic::AtomicUsize::new(0);
    let mut timers: Vec<Box<dyn Fn(u64) -> Duration + '_>> = Vec::new();
    for values in &sets {
        timers.push(Box::new(cold(&auth, values, &at)));
        let key = &key;
        timers.push(Box::new(move |k| {
            let start = Instant::now();
            for i in 0..k as usize {
                let token = &values[i % values.len()].to_str().unwrap()[7..];
                black_box(floor_of(key, token));
            }
            start.elapsed()
        }));
    }
    let p = Paired::run(&timers, count, round);
    for (i, bytes) in sizes.iter().enumerate() {
        let (ratio, _, _) = p.ratio(2 * i, 2 * i + 1);
        println!(
            "size {bytes} {:.1} {:.1} {ratio:.3}",
            p.median(2 * i),
            p.median(2 * i + 1)
        );
    }
}

/// 64 tokens of at most `bytes` bytes (the limit, at 16 KiB, included):
/// the few claims an access token must carry, padded.
fn small_tokens(idp: &TestIssuer, bytes: usize) -> Vec<HeaderValue> {
    let base = |i: usize| {
        idp.token()
            .without("client_id")
            .without("iat")
            .claim("n", i)
            .expires_in(86_400)
    };
    // Base64 rounds, and the ids in the claims grow: each token's padding
    // found by trying, a byte less at a time.
    let first = bytes.saturating_sub(base(10).claim("pad", "").sign().len()) * 3 / 4 + 2;
    (10..74)
        .map(|i| {
            let mut pad = first;
            let token = loop {
                let token = base(i).claim("pad", "p".repeat(pad)).sign();
                if token.len() <= bytes || pad == 0 {
                    break token;
                }
                pad -= 1;
            };
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
        })
        .collect()
}
