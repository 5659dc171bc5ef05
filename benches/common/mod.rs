//! What the benches share: one fixture per algorithm (issuer, tokens,
//! validators, the floor's key), the request that carries a token, and
//! the drivers that time calls on one or more threads. Also compiled
//! into `benches/peer` (`#[path]`), so that the peer crate is measured on
//! the very same tokens.

#![allow(dead_code)] // each bench binary uses part of it

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use serde_json::Value;
use tower::Service;
use tower_bearer::testing::{DpopKey, TestIssuer};
use tower_bearer::{Algorithm, BearerAuthLayer, ClaimPath, TrustedIssuer};

/// What the benches' DPoP proofs name: requests to `/` of `bench.test`,
/// which the validators see as https (their default request scheme).
const DPOP_HTU: &str = "https://bench.test/";

/// Distinct tokens: each new to the cold validator (its cache holds one),
/// all cached by the other.
pub const POOL: usize = 512;

/// Clients in turn for `CachedMany`: the "many clients".
pub const MANY: usize = 10_000;

/// The many are verified (and their entries allocated) in the order
/// `i * SCATTER % MANY`, not in the order of their requests: a server's
/// clients do not come back in the order they first came, and memory in
/// the order it is read would let the CPU fetch it ahead.
const SCATTER: usize = 7_919;

pub const ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// Everything measured for one algorithm.
pub struct Fixture {
    pub idp: TestIssuer,
    /// A validator whose cache holds one token: cycling through the pool,
    /// every token is new to it.
    cold: BearerAuthLayer,
    /// A validator with the default cache.
    cached: BearerAuthLayer,
    /// A validator without a cache: every request verified.
    uncached: BearerAuthLayer,
    /// `cold` and `cached` with ten trusted issuers, the token's last.
    cold_ten: BearerAuthLayer,
    cached_ten: BearerAuthLayer,
    /// `cold` reading Keycloak's realm and client roles.
    cold_roles: BearerAuthLayer,
    /// `cold` and `cached` with metrics on, into a Prometheus recorder
    /// (the others have them off).
    #[cfg(feature = "metrics")]
    cold_metrics: BearerAuthLayer,
    #[cfg(feature = "metrics")]
    cached_metrics: BearerAuthLayer,
    /// `Authorization` values of the two header-cost tokens: the costliest
    /// header within the limits, and a plain one of the same size.
    hostile_header: HeaderValue,
    plain_header: HeaderValue,
    /// A pool-like token whose `kid` the key set lacks: refused after the
    /// slow path's refresh, which a static set answers without I/O.
    unknown_kid: HeaderValue,
    /// The DPoP client's ES256 key, `POOL` tokens bound to it, proofs of
    /// the floor, and the floor's key for them.
    dpop_key: DpopKey,
    dpop_pool: Vec<String>,
    floor_proofs: Vec<String>,
    proof_key: ParsedPublicKey,
    /// `POOL` distinct tokens.
    pool: Vec<String>,
    /// `Authorization` values for the pool's tokens. Requests share them,
    /// as those a server parses share its read buffer: a 1 KB allocation
    /// per request would measure the allocator (glibc's frees of that
    /// size barely scale to two threads here).
    values: Vec<HeaderValue>,
    /// `Authorization` values of `MANY` distinct tokens, all cached.
    many: Vec<HeaderValue>,
    /// A copy of each of the many tokens, allocated right after its cache
    /// entry, in the same scattered order: what `ReadMany` compares
    /// requests with.
    many_copies: Vec<Arc<str>>,
    key: ParsedPublicKey,
    jwt_key: jsonwebtoken::DecodingKey,
    jwt_validation: jsonwebtoken::Validation,
    next: AtomicUsize,
}

/// Metrics off, where the feature is compiled in: the baseline every
/// case but the `*Metrics` ones measures.
fn metrics_off(b: tower_bearer::Builder) -> tower_bearer::Builder {
    #[cfg(feature = "metrics")]
    return b.metrics(false);
    #[cfg(not(feature = "metrics"))]
    b
}

impl Fixture {
    pub fn new(rt: &tokio::runtime::Runtime, alg: Algorithm) -> Self {
        let idp = rt
            .block_on(TestIssuer::builder().algorithm(alg).start())
            .unwrap();
        let builder = || {
            metrics_off(
                BearerAuthLayer::builder()
                    .issuer(idp.issuer())
                    .audience(idp.audience())
                    .jwks_json(idp.jwks_json()),
            )
        };
        // Metrics on, their handles resolved from a Prometheus recorder as
        // an exporter's would be.
        #[cfg(feature = "metrics")]
        let (cold_metrics, cached_metrics) = {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&[0.000_01, 0.000_1, 0.001, 0.01, 0.1])
                .unwrap()
                .build_recorder();
            let build = |b: tower_bearer::Builder| {
                metrics::with_local_recorder(&recorder, || b.metrics(true).build().unwrap())
            };
            (
                build(builder().token_cache(1, Duration::from_secs(300))),
                build(builder()),
            )
        };
        let cold = builder()
            .token_cache(1, Duration::from_secs(300))
            .build()
            .unwrap();
        // Room for the many with a margin: a sharded cache's shards fill
        // unevenly.
        let cached = builder()
            .token_cache(2 * MANY as u64, Duration::from_secs(300))
            .build()
            .unwrap();
        let uncached = builder().no_token_cache().build().unwrap();
        // Nine other issuers first: the token's is found last.
        let ten = || {
            (0..9)
                .fold(
                    metrics_off(BearerAuthLayer::builder().audience(idp.audience())),
                    |b, i| {
                        b.trusted_issuer(
                            TrustedIssuer::new(format!("https://idp-{i}.example.com"))
                                .jwks_json(idp.jwks_json()),
                        )
                    },
                )
                .trusted_issuer(TrustedIssuer::new(idp.issuer()).jwks_json(idp.jwks_json()))
        };
        let cold_ten = ten()
            .token_cache(1, Duration::from_secs(300))
            .build()
            .unwrap();
        let cached_ten = ten().build().unwrap();
        let cold_roles = builder()
            .token_cache(1, Duration::from_secs(300))
            .role_claims([
                ClaimPath::keycloak_realm_roles(),
                ClaimPath::keycloak_client_roles("documents"),
            ])
            .build()
            .unwrap();
        let roles = rt.block_on(cold_roles.validate(&mint(&idp, 0))).unwrap();
        assert_eq!(roles.roles().len(), 5, "the roles are read");
        let (hostile, plain) = header_tokens(&idp);
        for token in [&hostile, &plain] {
            assert!(token.len() <= tower_bearer::Limits::default().max_token_bytes);
            rt.block_on(uncached.validate(token)).unwrap();
        }
        let bearer = |t: &str| HeaderValue::from_str(&format!("Bearer {t}")).unwrap();
        let unknown_kid = bearer(&realistic(&idp, POOL).header("kid", "rotated-away").sign());
        let pool: Vec<String> = (0..POOL).map(|i| mint(&idp, i)).collect();
        let dpop_key = DpopKey::generate(Algorithm::ES256).unwrap();
        let dpop_pool: Vec<String> = (0..POOL)
            .map(|i| realistic(&idp, i).bound_to(&dpop_key).sign())
            .collect();
        let floor_proofs: Vec<String> = dpop_pool
            .iter()
            .map(|t| dpop_key.proof("GET", DPOP_HTU, t).sign())
            .collect();
        let proof_key = floor_key(dpop_key.public_jwk(), Algorithm::ES256);
        let value = |t: &String| {
            HeaderValue::from_maybe_shared(Bytes::from(format!("Bearer {t}"))).unwrap()
        };
        let values = pool.iter().map(value).collect();
        let many_tokens: Vec<String> = (0..MANY).map(|i| mint(&idp, POOL + i)).collect();
        let many = many_tokens.iter().map(value).collect();
        // Every token of the many verified once: `CachedMany` measures
        // hits only.
        let mut many_copies = vec![None; MANY];
        for k in (0..MANY).map(|i| i * SCATTER % MANY) {
            rt.block_on(cached.validate(&many_tokens[k])).unwrap();
            many_copies[k] = Some(Arc::<str>::from(many_tokens[k].as_str()));
        }
        let many_copies = many_copies.into_iter().flatten().collect();
        // `validate` refuses a bound token (its proof is the request's),
        // having verified and cached it.
        for token in &dpop_pool {
            assert!(rt.block_on(cached.validate(token)).is_err());
        }
        let jwk = idp.public_jwk(&idp.current_kid()).unwrap();
        let jwt_key = {
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
            jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap()
        };
        let mut jwt_validation = jsonwebtoken::Validation::new(match alg {
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            _ => jsonwebtoken::Algorithm::EdDSA,
        });
        jwt_validation.set_issuer(&[idp.issuer()]);
        jwt_validation.set_audience(&[idp.audience()]);
        Self {
            key: floor_key(&jwk, alg),
            idp,
            cold,
            cached,
            uncached,
            cold_ten,
            cached_ten,
            cold_roles,
            #[cfg(feature = "metrics")]
            cold_metrics,
            #[cfg(feature = "metrics")]
            cached_metrics,
            hostile_header: bearer(&hostile),
            plain_header: bearer(&plain),
            unknown_kid,
            dpop_key,
            dpop_pool,
            floor_proofs,
            proof_key,
            pool,
            values,
            many,
            many_copies,
            jwt_key,
            jwt_validation,
            next: AtomicUsize::new(0),
        }
    }

    /// The floor for the `i`th pool token: verify with the pre-parsed
    /// key, decode and parse header and claims.
    pub fn floor(&self, i: usize) -> (Value, Value) {
        floor_of(&self.key, black_box(&self.pool[i % POOL]))
    }

    /// The floor of a DPoP proof: aws-lc-rs ES256 verify of the `i`th
    /// proof with a pre-parsed key, and its header and claims parsed.
    pub fn proof_floor(&self, i: usize) -> (Value, Value) {
        floor_of(&self.proof_key, black_box(&self.floor_proofs[i % POOL]))
    }

    /// `n` DPoP requests, each with a fresh proof: the next bound tokens in
    /// turn (`fresh`), or thread `t`'s own bound token again and again.
    fn dpop_requests(&self, t: usize, n: u64, fresh: bool) -> Vec<Request<()>> {
        (0..n)
            .map(|_| {
                let i = if fresh {
                    self.next.fetch_add(1, Ordering::Relaxed) % POOL
                } else {
                    t
                };
                let token = &self.dpop_pool[i];
                let proof = self.dpop_key.proof("GET", DPOP_HTU, token).sign();
                Request::get("/")
                    .header(http::header::HOST, "bench.test")
                    .header(AUTHORIZATION, format!("DPoP {token}"))
                    .header("dpop", proof)
                    .body(())
                    .unwrap()
            })
            .collect()
    }

    /// `jsonwebtoken::decode` of the `i`th pool token, iss and aud checked.
    pub fn jsonwebtoken(&self, i: usize) -> jsonwebtoken::TokenData<Value> {
        let token = black_box(&self.pool[i % POOL]);
        jsonwebtoken::decode(token, &self.jwt_key, &self.jwt_validation).unwrap()
    }

    /// Requests for the next `n` pool tokens (each new to a cold cache).
    fn fresh_requests(&self, n: u64) -> Vec<Request<()>> {
        (0..n)
            .map(|_| self.request(self.next.fetch_add(1, Ordering::Relaxed) % POOL))
            .collect()
    }

    /// `n` requests that all carry the same token, the `client`th of the
    /// pool: on two threads, two clients that each repeat their own.
    fn repeated_requests(&self, client: usize, n: u64) -> Vec<Request<()>> {
        (0..n).map(|_| self.request(client)).collect()
    }

    fn request(&self, i: usize) -> Request<()> {
        with_token(&self.values[i])
    }

    /// Requests for the next `n` of the many tokens, from thread `t`'s own
    /// place in their turn.
    fn many_requests(&self, t: usize, n: u64) -> Vec<Request<()>> {
        in_turn(&self.many, &self.next, t * MANY / 2, n)
    }
}

/// The least any validator does with `token`: verify its signature with
/// a pre-parsed key, decode and parse its header and claims.
pub fn floor_of(key: &ParsedPublicKey, token: &str) -> (Value, Value) {
    let (input, sig) = token.rsplit_once('.').unwrap();
    key.verify_sig(input.as_bytes(), &b64d(sig)).unwrap();
    let (h64, p64) = input.split_once('.').unwrap();
    let header = serde_json::from_slice(&b64d(h64)).unwrap();
    let claims = serde_json::from_slice(&b64d(p64)).unwrap();
    (header, claims)
}

/// `n` requests carrying the next of `values` in turn (counted by `at`),
/// from `offset` in their order.
pub fn in_turn(
    values: &[HeaderValue],
    at: &AtomicUsize,
    offset: usize,
    n: u64,
) -> Vec<Request<()>> {
    (0..n)
        .map(|_| {
            let i = at.fetch_add(1, Ordering::Relaxed);
            with_token(&values[(offset + i) % values.len()])
        })
        .collect()
}

/// A request carrying `value`, its bytes read once as a server's parser
/// reads them: a token a server has just received is in the CPU's cache.
pub fn with_token(value: &HeaderValue) -> Request<()> {
    black_box(value.as_bytes().iter().fold(0u8, |a, b| a ^ b));
    Request::get("/")
        .header(AUTHORIZATION, value.clone())
        .body(())
        .unwrap()
}

pub fn b64d(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

pub fn floor_key(jwk: &Value, alg: Algorithm) -> ParsedPublicKey {
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

pub type Handler = fn(Request<()>) -> std::future::Ready<Result<Response<String>, Infallible>>;
/// The service behind the layer: answers 200 with an empty body.
pub type Inner = tower::util::ServiceFn<Handler>;

fn ok(_: Request<()>) -> std::future::Ready<Result<Response<String>, Infallible>> {
    std::future::ready(Ok(Response::new(String::new())))
}

pub fn inner() -> Inner {
    tower::service_fn(ok as Handler)
}

/// One request through `svc`; panics unless it was let through.
pub fn call<S, B>(svc: &mut S, req: Request<()>)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    call_expecting(svc, req, http::StatusCode::OK);
}

/// One request through `svc`; panics unless answered with `status`.
fn call_expecting<S, B>(svc: &mut S, req: Request<()>, status: http::StatusCode)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    poll_once(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
    let res = poll_once(svc.call(req)).unwrap();
    assert_eq!(res.status(), status);
}

/// A realistic access token, numbered `i`: about 1 KB with RS256, with the
/// claims a Keycloak access token carries.
pub fn mint(idp: &TestIssuer, i: usize) -> String {
    realistic(idp, i).sign()
}

/// The token [`mint`] signs, still to be signed.
pub fn realistic(idp: &TestIssuer, i: usize) -> tower_bearer::testing::TokenBuilder<'_> {
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
}

/// The `Authorization` values of `n` distinct tokens of about `bytes`
/// bytes, signed on every core.
pub fn tokens(idp: &TestIssuer, n: usize, bytes: usize) -> Vec<HeaderValue> {
    let sample = realistic(idp, 0).claim("pad", "").sign();
    let pad = bytes.saturating_sub(sample.len()) * 3 / 4;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| {
                            let token = realistic(idp, i).claim("pad", "p".repeat(pad)).sign();
                            HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|p| p.join().unwrap()).collect()
    })
}

/// Verifies and caches each of `values` through `auth`, on every core.
pub fn fill(rt: &tokio::runtime::Runtime, auth: &BearerAuthLayer, values: &[HeaderValue]) {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = values.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for part in values.chunks(chunk) {
            s.spawn(move || {
                for v in part {
                    let token = &v.to_str().unwrap()["Bearer ".len()..];
                    rt.block_on(auth.validate(token)).unwrap();
                }
            });
        }
    });
}

/// Two tokens as large as the default size limit allows, signed by the
/// issuer: one whose header is the costliest the limits let through (as
/// many members as allowed, their long names alike but for the last
/// bytes, so every duplicate check compares and hashes them whole), and
/// one whose header is exactly as long with a single long member.
fn header_tokens(idp: &TestIssuer) -> (String, String) {
    let kid = idp.current_kid();
    let alg = idp.public_jwk(&kid).unwrap()["alg"].clone();
    let claims = serde_json::json!({
        "iss": idp.issuer(), "aud": idp.audience(), "sub": "mallory",
        "exp": 4_000_000_000i64,
    });
    let base = || serde_json::json!({ "alg": alg, "kid": kid });
    let b64_len = |n: usize| (4 * n).div_ceil(3);
    let sample = idp.sign_raw(&base(), &claims, &kid);
    let fixed = sample.len() - b64_len(base().to_string().len());
    let limits = tower_bearer::Limits::default();
    let room = limits.max_token_bytes - fixed;
    let hostile_with = |prefix: usize| {
        let mut h = base();
        for i in 0..limits.max_header_members - 2 {
            h[format!("{}{i:02}", "m".repeat(prefix))] = 0.into();
        }
        h
    };
    let mut prefix = 1;
    while b64_len(hostile_with(prefix + 1).to_string().len()) <= room {
        prefix += 1;
    }
    let hostile = hostile_with(prefix);
    let length = hostile.to_string().len();
    let mut plain = base();
    plain["x"] = String::new().into();
    let padding = length - plain.to_string().len();
    plain["x"] = "a".repeat(padding).into();
    assert_eq!(plain.to_string().len(), length);
    (
        idp.sign_raw(&hostile, &claims, &kid),
        idp.sign_raw(&plain, &claims, &kid),
    )
}

/// Polls a future once and returns its output. The benches keep every
/// key in memory, so a request never waits: what is timed is the work,
/// not an executor's bookkeeping.
pub fn poll_once<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a bench request waited"),
    }
}

/// Runs `iters` units of work split over `threads` threads started
/// together, and returns the longest time a thread spent on its share.
/// `prepare` runs on each thread with the thread's number and share, and
/// returns the work, which times itself.
pub fn parallel<W: FnOnce() -> Duration>(
    threads: usize,
    iters: u64,
    prepare: impl Fn(usize, u64) -> W + Sync,
) -> Duration {
    if threads == 1 {
        return prepare(0, iters)();
    }
    let barrier = Arc::new(Barrier::new(threads));
    let share = iters.div_ceil(threads as u64);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, prepare) = (barrier.clone(), &prepare);
                scope.spawn(move || {
                    // A new thread's allocator caches and pages start
                    // empty: warm them up before the clock starts.
                    prepare(t, share.div_ceil(4))();
                    let work = prepare(t, share);
                    barrier.wait();
                    work()
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

/// Times `f` called `n` times.
fn timed(n: u64, mut f: impl FnMut(usize)) -> Duration {
    let start = Instant::now();
    (0..n as usize).for_each(&mut f);
    start.elapsed()
}

/// Requests are built in batches this large between timed stretches: few
/// enough to stay in cache, as a request a server has just parsed is.
const BATCH: u64 = 32;

/// The time `requests` take through `svc`, on `threads` threads at once,
/// each let through.
pub fn serve<S, B>(
    threads: usize,
    iters: u64,
    svc: impl Fn() -> S + Sync,
    requests: impl Fn(usize, u64) -> Vec<Request<()>> + Sync,
) -> Duration
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    serve_expecting(threads, iters, svc, requests, http::StatusCode::OK)
}

/// [`serve`], each request answered with `status`.
fn serve_expecting<S, B>(
    threads: usize,
    iters: u64,
    svc: impl Fn() -> S + Sync,
    requests: impl Fn(usize, u64) -> Vec<Request<()>> + Sync,
    status: http::StatusCode,
) -> Duration
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    parallel(threads, iters, |t, share| {
        let (mut svc, requests) = (svc(), &requests);
        move || {
            let mut busy = Duration::ZERO;
            let mut left = share;
            while left > 0 {
                let reqs = requests(t, left.min(BATCH));
                left -= reqs.len() as u64;
                let start = Instant::now();
                for req in reqs {
                    call_expecting(&mut svc, req, status);
                }
                busy += start.elapsed();
            }
            busy
        }
    })
}

/// What is measured for a fixture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// aws-lc-rs verify with a pre-parsed key, plus header and claims parse.
    Floor,
    /// `jsonwebtoken::decode` with iss and aud checks.
    Jsonwebtoken,
    /// The inner service alone, as called through the layer.
    Open,
    /// The layer with a token it has not seen.
    Cold,
    /// The layer with a repeated token.
    Cached,
    /// The layer with `MANY` tokens in turn, all cached: many clients.
    CachedMany,
    /// The layer without a cache, with a token whose header is the
    /// costliest within the limits: 32 members with long names alike but
    /// for their last bytes.
    HostileHeader,
    /// The same with a header of the same size and one member.
    PlainHeader,
    /// The cold validator with a token whose `kid` its set lacks: the
    /// slow path (a refresh the static set answers at once, a second
    /// lookup) and a 401, no fetch.
    UnknownKid,
    /// `Cold` with ten trusted issuers, the token's found last.
    ColdTenIssuers,
    /// `Cached` with ten trusted issuers.
    CachedTenIssuers,
    /// `Cold` reading Keycloak's realm and client roles (five in all).
    ColdRoles,
    /// The floor of a DPoP proof: ES256 verify with a pre-parsed key, and
    /// its header and claims parsed.
    ProofFloor,
    /// `Cold` with a DPoP-bound token and a fresh ES256 proof.
    DpopCold,
    /// `Cached` with a DPoP-bound token and a fresh ES256 proof.
    DpopCached,
    /// The least a hit with many tokens reads: each request's token
    /// compared with a stored copy of it, found by its index, for the
    /// `MANY` tokens in turn; no table, no principal.
    ReadMany,
    /// The same with one token, whose copy stays in the CPU's caches.
    ReadOne,
    /// `Cold` with metrics on, into a Prometheus recorder.
    ColdMetrics,
    /// `Cached` with metrics on, into a Prometheus recorder.
    CachedMetrics,
}

/// The cases also measured on two threads.
pub const TWO_THREADS: [Case; 5] = [
    Case::Floor,
    Case::Open,
    Case::Cold,
    Case::Cached,
    Case::CachedMany,
];

impl Case {
    pub const ALL: [Case; 6] = [
        Case::Floor,
        Case::Jsonwebtoken,
        Case::Open,
        Case::Cold,
        Case::Cached,
        Case::CachedMany,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Case::Floor => "floor",
            Case::Jsonwebtoken => "jsonwebtoken",
            Case::Open => "open",
            Case::Cold => "cold",
            Case::Cached => "cached",
            Case::CachedMany => "cached-10k",
            Case::HostileHeader => "hostile-header",
            Case::PlainHeader => "plain-header",
            Case::UnknownKid => "unknown-kid",
            Case::ColdTenIssuers => "cold-10-issuers",
            Case::CachedTenIssuers => "cached-10-issuers",
            Case::ColdRoles => "cold-roles",
            Case::ProofFloor => "proof-floor",
            Case::DpopCold => "dpop-cold",
            Case::DpopCached => "dpop-cached",
            Case::ReadMany => "read-10k",
            Case::ReadOne => "read-one",
            Case::ColdMetrics => "cold-metrics",
            Case::CachedMetrics => "cached-metrics",
        }
    }
}

impl Fixture {
    /// The wall time of `n` units of `case` split over `threads` threads.
    pub fn time(&self, case: Case, threads: usize, n: u64) -> Duration {
        let requests = |t, k| self.requests(case, t, k);
        match case {
            Case::Floor => parallel(threads, n, |_, share| {
                move || timed(share, |i| drop(black_box(self.floor(i))))
            }),
            Case::Jsonwebtoken => parallel(threads, n, |_, share| {
                move || timed(share, |i| drop(black_box(self.jsonwebtoken(i))))
            }),
            Case::ProofFloor => parallel(threads, n, |_, share| {
                move || timed(share, |i| drop(black_box(self.proof_floor(i))))
            }),
            Case::Open => serve(threads, n, inner, requests),
            Case::ReadMany | Case::ReadOne => parallel(threads, n, |t, share| {
                move || self.read_copies(t, share, case == Case::ReadMany)
            }),
            Case::UnknownKid => serve_expecting(
                threads,
                n,
                || self.layer(case),
                requests,
                http::StatusCode::UNAUTHORIZED,
            ),
            _ => serve(threads, n, || self.layer(case), requests),
        }
    }

    /// `n` comparisons of a request's token with its stored copy, for
    /// thread `t`: the many in turn from the thread's own place, or the
    /// thread's own repeated token. In batches, each request's bytes read
    /// just before, as `serve` does.
    fn read_copies(&self, t: usize, n: u64, many: bool) -> Duration {
        let mut busy = Duration::ZERO;
        let mut left = n;
        while left > 0 {
            let batch: Vec<usize> = (0..left.min(BATCH))
                .map(|_| {
                    if many {
                        (t * MANY / 2 + self.next.fetch_add(1, Ordering::Relaxed)) % MANY
                    } else {
                        t
                    }
                })
                .collect();
            left -= batch.len() as u64;
            for &k in &batch {
                black_box(self.many[k].as_bytes().iter().fold(0u8, |a, b| a ^ b));
            }
            let start = Instant::now();
            for &k in &batch {
                let sent = &self.many[k].as_bytes()["Bearer ".len()..];
                black_box(black_box(&self.many_copies[k]).as_bytes() == sent);
            }
            busy += start.elapsed();
        }
        busy
    }

    /// The layer a case calls: the cold validator's, the uncached one's,
    /// or the caching one's.
    pub fn layer(&self, case: Case) -> tower_bearer::BearerAuth<Inner> {
        let auth = match case {
            Case::Cold | Case::UnknownKid | Case::DpopCold => &self.cold,
            Case::ColdTenIssuers => &self.cold_ten,
            Case::CachedTenIssuers => &self.cached_ten,
            Case::ColdRoles => &self.cold_roles,
            #[cfg(feature = "metrics")]
            Case::ColdMetrics => &self.cold_metrics,
            #[cfg(feature = "metrics")]
            Case::CachedMetrics => &self.cached_metrics,
            #[cfg(not(feature = "metrics"))]
            Case::ColdMetrics | Case::CachedMetrics => {
                unreachable!("the metrics cases need the metrics feature")
            }
            Case::HostileHeader | Case::PlainHeader => &self.uncached,
            _ => &self.cached,
        };
        tower::Layer::layer(auth, inner())
    }

    /// `n` requests of a case for thread `t`: new tokens for `Cold`, the
    /// many in turn for `CachedMany`, else thread `t`'s own repeated token.
    pub fn requests(&self, case: Case, t: usize, n: u64) -> Vec<Request<()>> {
        let with = |value: &HeaderValue| (0..n).map(|_| with_token(value)).collect();
        match case {
            Case::CachedMany => self.many_requests(t, n),
            Case::Cold | Case::ColdTenIssuers | Case::ColdRoles | Case::ColdMetrics => {
                self.fresh_requests(n)
            }
            Case::HostileHeader => with(&self.hostile_header),
            Case::PlainHeader => with(&self.plain_header),
            Case::UnknownKid => with(&self.unknown_kid),
            Case::DpopCold => self.dpop_requests(t, n, true),
            Case::DpopCached => self.dpop_requests(t, n, false),
            _ => self.repeated_requests(t, n),
        }
    }
}

/// Per-unit times of several measurements taken in turn, round after
/// round, so that a host that speeds up or slows down (a shared VM does)
/// affects all of them alike: ratios are taken within a round.
pub struct Paired {
    /// Nanoseconds per unit, `[measurement][round]`.
    pub rounds: Vec<Vec<f64>>,
}

impl Paired {
    /// Runs each of `runs` (given a unit count, returns the time taken)
    /// for about `round` per turn, `count` rounds.
    pub fn run(runs: &[impl Fn(u64) -> Duration], count: usize, round: Duration) -> Self {
        let sizes: Vec<u64> = runs
            .iter()
            .map(|run| {
                let mut n = 8;
                loop {
                    let took = run(n);
                    if took >= round / 4 {
                        break (n as f64 * round.as_secs_f64() / took.as_secs_f64()) as u64;
                    }
                    n *= 4;
                }
            })
            .collect();
        let mut rounds = vec![Vec::with_capacity(count); runs.len()];
        for r in 0..count {
            // A different one goes first each round.
            for k in 0..runs.len() {
                let m = (r + k) % runs.len();
                let n = sizes[m].max(1);
                rounds[m].push(runs[m](n).as_nanos() as f64 / n as f64);
            }
        }
        Self { rounds }
    }

    /// The median of measurement `m`'s per-unit times, in nanoseconds.
    pub fn median(&self, m: usize) -> f64 {
        median(self.rounds[m].clone())
    }

    /// Median, smallest and largest of the per-round ratios `a / b`.
    pub fn ratio(&self, a: usize, b: usize) -> (f64, f64, f64) {
        let ratios: Vec<f64> = self.rounds[a]
            .iter()
            .zip(&self.rounds[b])
            .map(|(x, y)| x / y)
            .collect();
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        (median(ratios), lo, hi)
    }

    /// The ratio of the fastest rounds of `a` and `b`: interference only
    /// ever adds time, so each one's fastest round is its least disturbed.
    pub fn best_ratio(&self, a: usize, b: usize) -> f64 {
        self.best(a) / self.best(b)
    }

    /// The fastest round of measurement `m`, nanoseconds per unit.
    pub fn best(&self, m: usize) -> f64 {
        self.rounds[m].iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// Median, smallest and largest of the per-round ratios
    /// `(a - b) / c`: what `a` adds to `b`, against `c`.
    pub fn excess_ratio(&self, a: usize, b: usize, c: usize) -> (f64, f64, f64) {
        let r: Vec<f64> = (0..self.rounds[a].len())
            .map(|i| (self.rounds[a][i] - self.rounds[b][i]) / self.rounds[c][i])
            .collect();
        let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (median(r), lo, hi)
    }

    /// Median, smallest and largest of the per-round differences `a - b`.
    pub fn difference(&self, a: usize, b: usize) -> (f64, f64, f64) {
        let d: Vec<f64> = self.rounds[a]
            .iter()
            .zip(&self.rounds[b])
            .map(|(x, y)| x - y)
            .collect();
        let lo = d.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = d.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (median(d), lo, hi)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Round length and count of paired runs: `QUICK=1` for a shorter run.
pub fn paired_settings() -> (usize, Duration) {
    if std::env::var_os("QUICK").is_some() {
        (9, Duration::from_millis(30))
    } else {
        (21, Duration::from_millis(60))
    }
}
