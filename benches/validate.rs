//! Per-request cost of tower-bearer, next to what it is built on, in the
//! same run: for RS256, ES256 and EdDSA with a realistic access token,
//!
//! - `floor`: aws-lc-rs verify with a pre-parsed key, plus parsing header
//!   and claims (the least any validator must do);
//! - `jsonwebtoken`: `jsonwebtoken::decode` with iss and aud checks;
//! - `cold`: tower-bearer's layer through a tower `Service` call, a token
//!   it has not seen (cache miss: digest, verify, claims, insert);
//! - `cached`: the same with a repeated token (verified-token cache hit);
//! - `cold x2` / `cached x2`: the same on two threads at once (time per
//!   request of the pair: half of the 1-thread time is perfect scaling).
//!
//! `cargo bench --bench validate`; `scripts/bench-report` turns the results
//! into ratios.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use serde_json::Value;
use tower::{Service, ServiceExt};
use tower_bearer::testing::TestIssuer;
use tower_bearer::{Algorithm, BearerAuth};

/// Distinct tokens for the cold path; cycled, with a cache too small to
/// keep them.
const POOL: usize = 512;

fn b64d(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

fn floor_key(jwk: &Value, alg: Algorithm) -> ParsedPublicKey {
    let s = |k: &str| b64d(jwk[k].as_str().unwrap());
    match alg {
        Algorithm::RS256 => RsaPublicKeyComponents {
            n: s("n"),
            e: s("e"),
        }
        .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
        .unwrap(),
        Algorithm::ES256 => {
            let mut point = vec![4];
            point.extend(s("x"));
            point.extend(s("y"));
            ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).unwrap()
        }
        _ => ParsedPublicKey::new(&signature::ED25519, s("x")).unwrap(),
    }
}

fn jsonwebtoken_key(jwk: &Value) -> jsonwebtoken::DecodingKey {
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap()
}

/// A realistic access token: about 900 bytes with RS256.
fn mint(idp: &TestIssuer, i: usize) -> String {
    idp.token()
        .scope("openid profile email documents:read documents:write")
        .claim("azp", "web-frontend")
        .claim("sid", format!("5f8c3a8e-2f8e-4b7a-9a2e-{i:012}"))
        .claim(
            "realm_access",
            serde_json::json!({ "roles": ["offline_access", "uma_authorization", "editor"] }),
        )
        .claim(
            "resource_access",
            serde_json::json!({ "documents": { "roles": ["reader", "writer"] } }),
        )
        .claim("preferred_username", "alice.example")
        .claim("email", "alice@example.com")
        .expires_in(86_400)
        .sign()
}

type Svc = tower_bearer::Bearer<
    tower::util::ServiceFn<
        fn(Request<()>) -> std::future::Ready<Result<Response<String>, Infallible>>,
    >,
>;

fn ok(_: Request<()>) -> std::future::Ready<Result<Response<String>, Infallible>> {
    std::future::ready(Ok(Response::new(String::new())))
}

fn service(auth: &BearerAuth) -> Svc {
    tower::Layer::layer(auth, tower::service_fn(ok as fn(_) -> _))
}

fn request(token: &str) -> Request<()> {
    Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

/// One request through the layer; panics unless it was let through.
fn call(rt: &tokio::runtime::Runtime, svc: &mut Svc, req: Request<()>) {
    let res = rt.block_on(async { svc.ready().await.unwrap().call(req).await.unwrap() });
    assert!(res.status().is_success());
}

/// `iters` requests split over `threads` threads started together; the
/// wall time until the last one is done (requests are built beforehand).
fn parallel(threads: usize, iters: u64, auth: &BearerAuth, tokens: &Arc<Vec<String>>) -> Duration {
    let next = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(std::sync::Barrier::new(threads));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (auth, tokens, next, barrier) =
                    (auth.clone(), tokens.clone(), next.clone(), barrier.clone());
                scope.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    let mut svc = service(&auth);
                    let reqs: Vec<Request<()>> = (0..iters / threads as u64)
                        .map(|_| {
                            request(&tokens[next.fetch_add(1, Ordering::Relaxed) % tokens.len()])
                        })
                        .collect();
                    barrier.wait();
                    let start = Instant::now();
                    for req in reqs {
                        call(&rt, &mut svc, req);
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap_or_default()
    })
}

fn validate(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let idp = rt
            .block_on(TestIssuer::builder().algorithm(alg).start())
            .unwrap();
        let builder = || {
            BearerAuth::builder()
                .issuer(idp.issuer())
                .audience(idp.audience())
                .jwks_json(idp.jwks_json())
        };
        let cold_auth = builder()
            .token_cache(1, Duration::from_secs(300))
            .build()
            .unwrap();
        let cached_auth = builder().build().unwrap();
        let pool: Arc<Vec<String>> = Arc::new((0..POOL).map(|i| mint(&idp, i)).collect());
        let token = pool[0].clone();
        let jwk = idp.public_jwk(&idp.current_kid()).unwrap();
        let key = floor_key(&jwk, alg);
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = b64d(sig);
        let (h64, p64) = input.split_once('.').unwrap();
        let jwt_key = jsonwebtoken_key(&jwk);
        let mut jwt_validation = jsonwebtoken::Validation::new(match alg {
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            _ => jsonwebtoken::Algorithm::EdDSA,
        });
        jwt_validation.set_issuer(&[idp.issuer()]);
        jwt_validation.set_audience(&[idp.audience()]);

        let mut group = c.benchmark_group(format!("{alg}"));
        group.bench_function("floor", |b| {
            b.iter(|| {
                key.verify_sig(black_box(input.as_bytes()), black_box(&sig))
                    .unwrap();
                let header: Value = serde_json::from_slice(&b64d(h64)).unwrap();
                let claims: Value = serde_json::from_slice(&b64d(p64)).unwrap();
                black_box((header, claims))
            })
        });
        group.bench_function("jsonwebtoken", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<Value>(black_box(&token), &jwt_key, &jwt_validation).unwrap()
            })
        });
        let mut svc = service(&cold_auth);
        let mut i = 0;
        group.bench_function("cold", |b| {
            b.iter_batched(
                || {
                    i += 1;
                    request(&pool[i % POOL])
                },
                |req| call(&rt, &mut svc, req),
                criterion::BatchSize::SmallInput,
            )
        });
        let mut svc = service(&cached_auth);
        group.bench_function("cached", |b| {
            b.iter_batched(
                || request(&token),
                |req| call(&rt, &mut svc, req),
                criterion::BatchSize::SmallInput,
            )
        });
        let repeated = Arc::new(vec![token.clone()]);
        group.bench_function("cold x2", |b| {
            b.iter_custom(|n| parallel(2, n.max(2), &cold_auth, &pool))
        });
        group.bench_function("cached x2", |b| {
            b.iter_custom(|n| parallel(2, n.max(2), &cached_auth, &repeated))
        });
        group.bench_function("cold x1", |b| {
            b.iter_custom(|n| parallel(1, n, &cold_auth, &pool))
        });
        group.bench_function("cached x1", |b| {
            b.iter_custom(|n| parallel(1, n, &cached_auth, &repeated))
        });
        group.finish();
    }
}

criterion_group!(benches, validate);
criterion_main!(benches);
