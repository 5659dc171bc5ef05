//! The key lifecycle on a bad day: rotation, floods of unknown `kid`s, an
//! issuer that fails in every way, freshness, 304s, stale-if-error, and key
//! removal. Time is a `ManualClock`; nothing here sleeps.

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use tower_bearer::testing::{EndpointFault, TestIssuer};
use tower_bearer::{Algorithm, AuthError, BearerAuthLayer, KeyHealth, ManualClock, TokenError};

const FETCH_TIMEOUT: Duration = Duration::from_millis(500);

struct Setup {
    clock: ManualClock,
    idp: TestIssuer,
    auth: BearerAuthLayer,
    /// When the first key set was fetched.
    t0: SystemTime,
}

async fn setup() -> Setup {
    setup_with(|b| b).await
}

async fn setup_with(f: impl FnOnce(tower_bearer::Builder) -> tower_bearer::Builder) -> Setup {
    let (clock, idp) = common::issuer_on_a_manual_clock().await;
    let builder = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .clock(clock.clone())
        .fetch_timeout(FETCH_TIMEOUT);
    let auth = f(builder).build().unwrap();
    assert!(auth.validate(&idp.token().sign()).await.is_ok());
    let t0 = tower_bearer::Clock::now(&clock);
    Setup {
        clock,
        idp,
        auth,
        t0,
    }
}

/// Polls a future once: `Ready` proves it did not wait for anything.
fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
    pin!(f)
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

/// The next health update (each fetch attempt makes one).
async fn next_health(rx: &mut tokio::sync::watch::Receiver<KeyHealth>) -> KeyHealth {
    tokio::time::timeout(Duration::from_secs(20), rx.changed())
        .await
        .expect("a fetch in time")
        .unwrap();
    rx.borrow_and_update().clone()
}

fn unknown_key() -> AuthError {
    AuthError::InvalidToken(TokenError::UnknownKey)
}

#[tokio::test]
async fn a_rotated_key_is_accepted_on_its_first_request_with_one_fetch() {
    let s = setup().await;
    assert_eq!(s.idp.jwks_fetches(), 1);
    s.idp.rotate(Algorithm::PS256);
    let p = s.auth.validate(&s.idp.token().sign()).await.unwrap();
    assert_eq!(p.algorithm(), Some(Algorithm::PS256));
    assert_eq!(s.idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn two_hundred_random_kids_cost_at_most_two_fetches() {
    let s = setup().await;
    let tokens: Vec<String> = (0..200)
        .map(|i| s.idp.token().header("kid", format!("rnd-{i:x}")).sign())
        .collect();
    // Half concurrently, half one after another.
    let concurrent: Vec<_> = tokens[..100]
        .iter()
        .map(|t| {
            let (auth, t) = (s.auth.clone(), t.clone());
            tokio::spawn(async move { auth.validate(&t).await })
        })
        .collect();
    for task in concurrent {
        assert_eq!(task.await.unwrap().unwrap_err(), unknown_key());
    }
    for t in &tokens[100..] {
        assert_eq!(s.auth.validate(t).await.unwrap_err(), unknown_key());
    }
    assert!(
        s.idp.jwks_fetches() <= 2,
        "{} fetches",
        s.idp.jwks_fetches()
    );
}

#[tokio::test]
async fn fifty_concurrent_requests_for_a_new_kid_share_exactly_one_fetch() {
    let s = setup().await;
    s.idp.rotate(Algorithm::ES256);
    let token = s.idp.token().sign();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (auth, token) = (s.auth.clone(), token.clone());
            tokio::spawn(async move { auth.validate(&token).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_ok());
    }
    assert_eq!(s.idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn a_failing_endpoint_never_slows_known_keys_and_unknown_kids_fail_within_the_timeout() {
    for fault in [
        EndpointFault::Status(500),
        EndpointFault::InvalidJson,
        EndpointFault::HugeBody(10 * 1024 * 1024),
        EndpointFault::HugeStream(10 * 1024 * 1024),
        EndpointFault::Hang,
    ] {
        let s = setup().await;
        let known = s.idp.token().expires_in(100_000).sign();
        s.idp.set_jwks_fault(fault.clone());
        let mut health = s.auth.watch_key_health();

        // Past the refresh time: the next request starts a background
        // refresh, which fails (or hangs until the timeout).
        s.clock.advance(Duration::from_secs(601));
        // Known kids are answered without waiting, during and after it.
        for _ in 0..3 {
            assert!(
                matches!(poll_once(s.auth.validate(&known)), Poll::Ready(Ok(_))),
                "{fault:?}"
            );
        }
        let h = next_health(&mut health).await;
        assert_eq!(h.consecutive_failures, 1, "{fault:?}");
        assert!(
            matches!(poll_once(s.auth.validate(&known)), Poll::Ready(Ok(_))),
            "{fault:?}"
        );

        // An unknown kid fails fast: the failed fetch started the cooldown.
        let unknown = s.idp.token().header("kid", "new").sign();
        assert!(
            matches!(poll_once(s.auth.validate(&unknown)), Poll::Ready(Err(e)) if e == unknown_key()),
            "{fault:?}"
        );

        // After the cooldown it tries again, and fails within the timeout.
        s.clock.advance(Duration::from_secs(31));
        let verdict = tokio::time::timeout(FETCH_TIMEOUT * 10, s.auth.validate(&unknown)).await;
        assert_eq!(
            verdict.expect("bounded by the fetch timeout").unwrap_err(),
            unknown_key(),
            "{fault:?}"
        );
        let h = s.auth.key_health();
        assert!(
            h.last_error.is_some() && h.key_count == 1,
            "{fault:?}: {h:?}"
        );
    }
}

#[tokio::test]
async fn max_age_is_honoured_within_its_clamp() {
    for (cache_control, ttl) in [
        (None, 600),
        (Some("max-age=120"), 120),
        (Some("public, max-age=5"), 60),
        (Some("max-age=9999999"), 86_400),
        (Some("no-store"), 60),
    ] {
        let (clock, idp) = common::issuer_on_a_manual_clock().await;
        idp.set_jwks_cache_control(cache_control);
        let auth = common::validator_on(&idp, &clock);
        assert_eq!(auth.prefetch_keys().await.unwrap(), 1);
        let t0 = tower_bearer::Clock::now(&clock);
        let h = auth.key_health();
        assert_eq!(
            h.expires_at,
            Some(t0 + Duration::from_secs(ttl)),
            "{cache_control:?}"
        );
        let next = h
            .next_refresh
            .unwrap()
            .duration_since(t0)
            .unwrap()
            .as_secs_f64();
        assert!(
            (0.8 * ttl as f64..=ttl as f64).contains(&next),
            "{cache_control:?}: refresh at {next}s of {ttl}s"
        );

        // Once due, the next request refreshes in the background.
        let mut rx = auth.watch_key_health();
        clock.advance(Duration::from_secs(ttl));
        assert!(auth.validate(&idp.token().sign()).await.is_ok());
        let h = next_health(&mut rx).await;
        assert_eq!(h.fetches, 2, "{cache_control:?}");
    }
}

#[tokio::test]
async fn an_unchanged_set_is_revalidated_with_a_304() {
    let s = setup().await;
    let mut rx = s.auth.watch_key_health();
    s.clock.advance(Duration::from_secs(600));
    assert!(s.auth.validate(&s.idp.token().sign()).await.is_ok());
    let h = next_health(&mut rx).await;
    assert_eq!(
        s.idp.jwks_not_modified(),
        1,
        "If-None-Match was sent and honoured"
    );
    assert_eq!((h.fetches, h.key_count), (2, 1));
    let now = tower_bearer::Clock::now(&s.clock);
    assert_eq!(
        h.expires_at,
        Some(now + Duration::from_secs(600)),
        "a 304 extends the set's freshness"
    );
    assert!(s.auth.validate(&s.idp.token().sign()).await.is_ok());
}

#[tokio::test]
async fn a_stale_set_serves_until_the_configured_window_ends() {
    let s = setup_with(|b| b.max_stale(Duration::from_secs(3600))).await;
    let token = s.idp.token().expires_in(100_000).sign();
    s.idp.set_jwks_fault(EndpointFault::Status(503));
    let mut rx = s.auth.watch_key_health();

    // 10 min fresh + 30 min stale: still served, while refreshes fail.
    s.clock.advance(Duration::from_secs(600 + 1800));
    assert!(s.auth.validate(&token).await.is_ok());
    let h = next_health(&mut rx).await;
    assert!(
        h.is_stale(tower_bearer::Clock::now(&s.clock))
            && h.is_ready(tower_bearer::Clock::now(&s.clock))
    );
    assert_eq!(h.consecutive_failures, 1);
    // The next try waits for the backoff (5 s, then 10 s, …).
    assert_eq!(
        h.next_refresh,
        Some(tower_bearer::Clock::now(&s.clock) + Duration::from_secs(5))
    );

    // Past 10 min + 60 min: the set is no longer used.
    s.clock.advance(Duration::from_secs(1801));
    assert!(matches!(
        s.auth.validate(&token).await,
        Err(AuthError::TemporarilyUnavailable { .. })
    ));
    assert!(
        !s.auth
            .key_health()
            .is_ready(tower_bearer::Clock::now(&s.clock))
    );

    // The issuer recovers: the next fetch brings the keys back.
    s.idp.set_jwks_fault(EndpointFault::None);
    s.clock.advance(Duration::from_secs(31));
    assert!(s.auth.validate(&token).await.is_ok());
    assert_eq!(s.auth.key_health().consecutive_failures, 0);
    let _ = s.t0;
}

#[tokio::test]
async fn a_key_dropped_by_the_issuer_is_refused_at_once() {
    let s = setup().await;
    let old_kid = s.idp.current_kid();
    let old_token = s.idp.token().sign();
    let new_kid = s.idp.rotate(Algorithm::ES256);
    s.idp.unpublish(&old_kid);
    // The first token with the new kid refetches the set, which no longer
    // holds the old key.
    assert!(s.auth.validate(&s.idp.token().sign()).await.is_ok());
    assert_eq!(
        s.auth.validate(&old_token).await.unwrap_err(),
        unknown_key()
    );
    assert_eq!(s.auth.key_health().kids, [new_kid]);

    // The same through a background refresh.
    let s = setup().await;
    let old_kid = s.idp.current_kid();
    let old_token = s.idp.token().expires_in(100_000).sign();
    s.idp.add_key(Algorithm::EdDSA);
    s.idp.unpublish(&old_kid);
    let mut rx = s.auth.watch_key_health();
    s.clock.advance(Duration::from_secs(600));
    assert!(
        s.auth.validate(&old_token).await.is_ok(),
        "still valid until the refresh lands"
    );
    next_health(&mut rx).await;
    assert_eq!(
        s.auth.validate(&old_token).await.unwrap_err(),
        unknown_key()
    );
}

#[tokio::test]
async fn discovery_is_fetched_again_after_a_day() {
    let s = setup_with(|b| {
        b.jwks_max_age(Duration::from_secs(3600))
            .jwks_max_age_range(Duration::from_secs(60)..=Duration::from_secs(86_400))
    })
    .await;
    assert_eq!(s.idp.discovery_fetches(), 1);
    let mut rx = s.auth.watch_key_health();
    for hour in 1..=25 {
        s.clock.advance(Duration::from_secs(3600));
        assert!(
            s.auth
                .validate(&s.idp.token().expires_in(10_000_000).sign())
                .await
                .is_ok()
        );
        next_health(&mut rx).await;
        let want = if hour < 24 { 1 } else { 2 };
        assert_eq!(s.idp.discovery_fetches(), want, "after {hour} h");
    }
}

#[tokio::test]
async fn health_reports_the_key_set() {
    let s = setup().await;
    let now = tower_bearer::Clock::now(&s.clock);
    let h = s.auth.key_health();
    assert_eq!(h.key_count, 1);
    assert_eq!(h.kids, [s.idp.current_kid()]);
    assert_eq!(h.last_success, Some(s.t0));
    assert_eq!(h.age(now), Some(Duration::ZERO));
    assert!(h.is_ready(now) && !h.is_stale(now) && h.last_error.is_none());
}

#[tokio::test]
async fn key_rotation_is_picked_up_with_one_fetch_and_unknown_kids_respect_the_cooldown() {
    let Setup {
        clock, idp, auth, ..
    } = setup().await;
    assert_eq!(idp.jwks_fetches(), 1, "keys are fetched on first use");

    idp.rotate(Algorithm::ES256);
    assert!(
        auth.validate(&idp.token().sign()).await.is_ok(),
        "rotation picked up"
    );
    assert_eq!(idp.jwks_fetches(), 2);

    // A flood of unknown kids within the cooldown costs nothing.
    for i in 0..50 {
        let token = idp.token().header("kid", format!("random-{i}")).sign();
        assert_eq!(
            auth.validate(&token).await.unwrap_err(),
            AuthError::InvalidToken(TokenError::UnknownKey)
        );
    }
    assert_eq!(idp.jwks_fetches(), 2);

    // A rotation inside the cooldown waits for it to pass.
    idp.rotate(Algorithm::EdDSA);
    let token = idp.token().sign();
    assert!(auth.validate(&token).await.is_err());
    clock.advance(Duration::from_secs(31));
    assert!(auth.validate(&token).await.is_ok());
    assert_eq!(idp.jwks_fetches(), 3);
}

#[tokio::test]
async fn a_cancelled_refetch_still_counts_against_the_cooldown() {
    let Setup {
        clock, idp, auth, ..
    } = setup().await;
    idp.rotate(Algorithm::ES256);
    let token = idp.token().sign();
    // Start the refetch the new kid needs, and drop the request while the
    // fetch is in flight, as a client hanging up would.
    {
        let mut fut = std::pin::pin!(auth.validate(&token));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    // That attempt started the cooldown: no new fetch until it passes.
    assert_eq!(
        auth.validate(&token).await.unwrap_err(),
        AuthError::InvalidToken(TokenError::UnknownKey)
    );
    clock.advance(Duration::from_secs(31));
    assert!(auth.validate(&token).await.is_ok());
}

#[tokio::test]
async fn a_cached_verification_outlives_a_304_and_a_new_set_with_its_key_but_not_new_material() {
    let s = setup_with(|b| b.token_cache(100, Duration::from_secs(3600))).await;
    let token = s.idp.token().expires_in(100_000).sign();
    assert!(s.auth.validate(&token).await.is_ok());
    let base = s.auth.stats().signatures_verified;
    let verified = || s.auth.stats().signatures_verified - base;

    // Refreshed with a 304: the same keys, still a hit.
    let mut rx = s.auth.watch_key_health();
    s.clock.advance(Duration::from_secs(600));
    assert!(s.auth.validate(&token).await.is_ok());
    next_health(&mut rx).await;
    assert_eq!(s.idp.jwks_not_modified(), 1);
    assert!(s.auth.validate(&token).await.is_ok());
    assert_eq!(verified(), 0, "hits across a 304");

    // A changed set keeps the very key whose JWK did not change: the
    // cached verification is found by a lookup in the new set.
    s.idp.add_key(Algorithm::ES256);
    s.clock.advance(Duration::from_secs(600));
    assert!(s.auth.validate(&token).await.is_ok());
    next_health(&mut rx).await;
    assert!(s.auth.validate(&token).await.is_ok());
    assert_eq!(verified(), 0, "hits across a new set with the same key");

    // The same kid with new key material is a new key: the cached
    // verification goes, and the token is checked against the new key.
    s.idp.rekey(&s.idp.current_kid());
    s.clock.advance(Duration::from_secs(600));
    assert!(
        s.auth.validate(&token).await.is_ok(),
        "until the refresh lands"
    );
    next_health(&mut rx).await;
    assert_eq!(
        s.auth.validate(&token).await.unwrap_err(),
        AuthError::InvalidToken(TokenError::BadSignature)
    );
    assert_eq!(verified(), 1, "verified again, against the new material");
    assert!(s.auth.validate(&s.idp.token().sign()).await.is_ok());
}

#[tokio::test]
async fn an_issuer_without_etag_keeps_a_thousand_cached_verifications_across_a_refresh() {
    let s = setup_with(|b| b.token_cache(2000, Duration::from_secs(3600))).await;
    s.idp.set_jwks_etag(false);
    let tokens: Vec<String> = (0..1000)
        .map(|_| s.idp.token().expires_in(100_000).sign())
        .collect();
    for t in &tokens {
        assert!(s.auth.validate(t).await.is_ok());
    }
    let verified = s.auth.stats().signatures_verified;

    let mut rx = s.auth.watch_key_health();
    s.clock.advance(Duration::from_secs(600));
    assert!(s.auth.validate(&tokens[0]).await.is_ok());
    next_health(&mut rx).await;
    assert_eq!(s.idp.jwks_not_modified(), 0, "a full 200 every time");
    for t in &tokens {
        assert!(s.auth.validate(t).await.is_ok());
    }
    assert_eq!(
        s.auth.stats().signatures_verified,
        verified,
        "no signature checked again after a refresh with unchanged keys"
    );

    // A kid reused for new material drops every one of them.
    s.idp.rekey(&s.idp.current_kid());
    s.clock.advance(Duration::from_secs(600));
    assert!(s.auth.validate(&tokens[0]).await.is_ok());
    next_health(&mut rx).await;
    for t in &tokens {
        assert_eq!(
            s.auth.validate(t).await.unwrap_err(),
            AuthError::InvalidToken(TokenError::BadSignature)
        );
    }
    assert_eq!(s.auth.stats().signatures_verified, verified + 1000);
}

/// JWK sets that are well-formed and hold no usable key: empty, or only
/// keys this crate refuses (RSA-1024, `use: enc`, Ed448).
fn sets_without_usable_keys(idp: &TestIssuer) -> Vec<(&'static str, String, usize)> {
    let mut enc = idp.public_jwk(&idp.current_kid()).unwrap();
    enc["use"] = "enc".into();
    enc["kid"] = "enc-key".into();
    let mut n = vec![0xc5u8; 128];
    n[127] = 0x01;
    let rsa_1024 = serde_json::json!({
        "kty": "RSA", "kid": "small", "n": common::b64(&n), "e": "AQAB",
    });
    let ed448 = serde_json::json!({
        "kty": "OKP", "crv": "Ed448", "kid": "ed448", "x": common::b64([7u8; 57]),
    });
    vec![
        ("empty", r#"{"keys":[]}"#.to_owned(), 0),
        (
            "unusable",
            serde_json::json!({ "keys": [rsa_1024, enc, ed448] }).to_string(),
            3,
        ),
    ]
}

#[tokio::test]
async fn a_well_formed_set_without_usable_keys_replaces_the_old_one_on_a_refetch() {
    let probe = setup().await;
    for (what, body, skipped) in sets_without_usable_keys(&probe.idp) {
        let s = setup_with(|b| b.token_cache(100, Duration::from_secs(3600))).await;
        let token = s.idp.token().expires_in(100_000).sign();
        assert!(s.auth.validate(&token).await.is_ok(), "{what}: cached");
        s.idp.set_jwks_fault(EndpointFault::Document(body));
        // A new kid makes the request refetch the set.
        let new = s.idp.token().header("kid", "next").sign();
        assert_eq!(
            s.auth.validate(&new).await.unwrap_err(),
            unknown_key(),
            "{what}"
        );
        assert_eq!(s.idp.jwks_fetches(), 2, "{what}");
        assert_eq!(
            s.auth.validate(&token).await.unwrap_err(),
            unknown_key(),
            "{what}: the withdrawn key's token, cached before"
        );
        let fresh = s.idp.token().expires_in(100_000).sign();
        assert_eq!(
            s.auth.validate(&fresh).await.unwrap_err(),
            unknown_key(),
            "{what}"
        );
        let h = s.auth.key_health();
        let now = tower_bearer::Clock::now(&s.clock);
        assert_eq!((h.key_count, h.skipped_keys), (0, skipped), "{what}");
        assert!(!h.is_ready(now) && h.last_error.is_none(), "{what}: {h:?}");
    }
}

#[tokio::test]
async fn a_well_formed_set_without_usable_keys_replaces_the_old_one_in_the_background() {
    let probe = setup().await;
    for (what, body, skipped) in sets_without_usable_keys(&probe.idp) {
        let s = setup_with(|b| b.token_cache(100, Duration::from_secs(3600))).await;
        let token = s.idp.token().expires_in(100_000).sign();
        assert!(s.auth.validate(&token).await.is_ok());
        s.idp.set_jwks_fault(EndpointFault::Document(body));
        let mut rx = s.auth.watch_key_health();
        s.clock.advance(Duration::from_secs(600));
        assert!(
            s.auth.validate(&token).await.is_ok(),
            "{what}: until it lands"
        );
        let h = next_health(&mut rx).await;
        assert_eq!(
            (h.key_count, h.skipped_keys, h.fetches),
            (0, skipped, 2),
            "{what}"
        );
        assert_eq!(
            s.auth.validate(&token).await.unwrap_err(),
            unknown_key(),
            "{what}"
        );
    }
}

/// A request that waits for the keys while `prefetch_keys` discovers them
/// (the example server prefetches in the background) must get them, not
/// a 503: the discovering store delegated while the request waited, and
/// the delegate had not loaded its set yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_racing_a_prefetch_gets_the_keys() {
    let idp = TestIssuer::start().await.unwrap();
    let token = idp.token().sign();
    for round in 0..50 {
        let auth = common::validator(&idp);
        let prefetch = tokio::spawn({
            let auth = auth.clone();
            async move { auth.prefetch_keys().await }
        });
        let verdict = auth.validate(&token).await;
        prefetch.await.unwrap().unwrap();
        assert!(verdict.is_ok(), "round {round}: {verdict:?}");
    }
}

/// The same race fetches the set once, whichever of the two goes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetch_racing_a_request_fetches_the_set_once() {
    let idp = TestIssuer::start().await.unwrap();
    let token = idp.token().sign();
    for round in 0..50 {
        let before = idp.jwks_fetches();
        let auth = common::validator(&idp);
        let prefetch = tokio::spawn({
            let auth = auth.clone();
            async move { auth.prefetch_keys().await }
        });
        auth.validate(&token).await.unwrap();
        prefetch.await.unwrap().unwrap();
        assert_eq!(idp.jwks_fetches() - before, 1, "round {round}");
    }
}
