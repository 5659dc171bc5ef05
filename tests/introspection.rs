//! Introspection for opaque tokens and `require_active` routes, the
//! verified-token cache, and revocation controls. Time is a `ManualClock`.

mod common;

use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use tower::ServiceExt as _;
use tower_bearer::testing::{EndpointFault, TestIssuer};
use tower_bearer::{
    Algorithm, AuthError, BearerAuthLayer, ClientId, ClientSecret, Clock, ManualClock,
    RevocationList, Revoke, TokenError, WithIntrospection,
};

struct Setup {
    clock: ManualClock,
    idp: TestIssuer,
    auth: BearerAuthLayer<WithIntrospection>,
}

type Builder = tower_bearer::Builder<WithIntrospection>;

async fn setup() -> Setup {
    setup_with(|b| b).await
}

async fn setup_with(f: impl FnOnce(Builder) -> Builder) -> Setup {
    let (clock, idp) = common::issuer_on_a_manual_clock().await;
    let (id, secret) = TestIssuer::INTROSPECTION_CLIENT;
    let builder = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .clock(clock.clone())
        .introspection(ClientId::new(id), ClientSecret::new(secret))
        .fetch_timeout(Duration::from_millis(500));
    let auth = f(builder).build().unwrap();
    Setup { clock, idp, auth }
}

fn invalid(e: TokenError) -> AuthError {
    AuthError::InvalidToken(e)
}

fn app(auth: &BearerAuthLayer<WithIntrospection>) -> Router {
    Router::new()
        .route(
            "/documents",
            get(|| async { "ok" }).route_layer(auth.require_all(["read"])),
        )
        .route(
            "/payments",
            get(|| async { "ok" })
                .route_layer(auth.require_active())
                .route_layer(auth.require_all(["read"])),
        )
        .layer(auth.clone())
}

async fn status(app: &Router, path: &str, token: &str) -> (StatusCode, Option<String>) {
    let req = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let retry_after = res
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status(), retry_after)
}

#[tokio::test]
async fn an_opaque_token_is_introspected_once_for_twenty_sequential_and_fifty_concurrent_requests()
{
    let s = setup().await;
    let token = s.idp.token().scope("read").opaque();
    for _ in 0..20 {
        let p = s.auth.validate(&token).await.unwrap();
        assert!(p.is_introspected() && p.has_scope("read"));
    }
    let other = s.idp.token().scope("read").opaque();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (auth, t) = (s.auth.clone(), other.clone());
            tokio::spawn(async move { auth.validate(&t).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_ok());
    }
    assert_eq!(s.idp.introspections(), 2, "one call per token");
    assert_eq!(s.auth.stats().introspection_calls, 2);
}

#[tokio::test]
async fn introspection_answers_are_checked_like_jwt_claims() {
    let s = setup().await;
    let revoked = s.idp.token().opaque();
    s.idp.revoke(&revoked);
    let now = s.clock.unix_seconds() as i64;
    let cases = [
        (revoked, TokenError::Revoked),
        (
            s.idp.token().claim("aud", "other-api").opaque(),
            TokenError::WrongAudience,
        ),
        (
            s.idp.token().claim("iss", "https://evil.example").opaque(),
            TokenError::WrongIssuer,
        ),
        (
            s.idp.token().claim("nbf", now + 3600).opaque(),
            TokenError::NotYetValid,
        ),
        (
            s.idp.token().claim("token_type", "refresh_token").opaque(),
            TokenError::WrongType,
        ),
        (
            s.idp.token().claim("exp", "later").opaque(),
            TokenError::InvalidClaim("exp"),
        ),
    ];
    for (token, want) in cases {
        assert_eq!(
            s.auth.validate(&token).await.unwrap_err(),
            invalid(want.clone()),
            "{want:?}"
        );
    }
    // A past exp: the issuer reports such a token inactive.
    let expired = s.idp.token().claim("exp", now - 10).opaque();
    assert_eq!(
        s.auth.validate(&expired).await.unwrap_err(),
        invalid(TokenError::Revoked)
    );
    // Absent iss and aud are fine (RFC 7662 makes them optional).
    let bare = s
        .idp
        .token()
        .without("iss")
        .without("aud")
        .without("exp")
        .opaque();
    assert!(s.auth.validate(&bare).await.is_ok());
}

#[tokio::test]
async fn over_http_inactive_is_401_and_a_missing_scope_is_403() {
    let s = setup().await;
    let app = app(&s.auth);
    let revoked = s.idp.token().scope("read").opaque();
    s.idp.revoke(&revoked);
    assert_eq!(
        status(&app, "/documents", &revoked).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&app, "/documents", &s.idp.token().scope("write").opaque())
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(&app, "/documents", &s.idp.token().scope("read").opaque())
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_closed_for_opaque_tokens_only() {
    for fault in [
        EndpointFault::Status(500),
        EndpointFault::InvalidJson,
        EndpointFault::Hang,
    ] {
        let s = setup().await;
        let app = app(&s.auth);
        s.idp.set_introspection_fault(fault.clone());
        let opaque = s.idp.token().scope("read").opaque();
        let (code, retry_after) = status(&app, "/documents", &opaque).await;
        assert_eq!(
            (code, retry_after.as_deref()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("5")),
            "{fault:?}"
        );
        // Nothing was cached: the next request tries again.
        let before = s.idp.introspections();
        assert_eq!(
            status(&app, "/documents", &opaque).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(s.idp.introspections(), before + 1, "{fault:?}");
        // Locally validated JWTs do not care.
        assert_eq!(
            status(&app, "/documents", &s.idp.token().scope("read").sign())
                .await
                .0,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn a_revoked_jwt_is_refused_at_once_on_require_active_routes_and_accepted_elsewhere_until_exp()
 {
    let s = setup().await;
    let app = app(&s.auth);
    let jwt = s.idp.token().scope("read").expires_in(600).sign();
    assert_eq!(status(&app, "/payments", &jwt).await.0, StatusCode::OK);
    assert_eq!(status(&app, "/documents", &jwt).await.0, StatusCode::OK);

    s.idp.revoke(&jwt);
    // The require_active answer is reused for 5 s at most.
    s.clock.advance(Duration::from_secs(6));
    assert_eq!(
        status(&app, "/payments", &jwt).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The revocation window: the ordinary route accepts it until exp.
    assert_eq!(status(&app, "/documents", &jwt).await.0, StatusCode::OK);
    s.clock.advance(Duration::from_secs(600 + 60));
    assert_eq!(
        status(&app, "/documents", &jwt).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_opaque_token_without_introspection_is_invalid() {
    let idp = TestIssuer::start().await.unwrap();
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .build()
        .unwrap();
    let opaque = idp.token().opaque();
    assert_eq!(
        auth.validate(&opaque).await.unwrap_err(),
        invalid(TokenError::Malformed)
    );
    assert_eq!(idp.introspections(), 0);
}

#[tokio::test]
async fn a_repeated_jwt_skips_the_signature_until_it_expires_or_its_key_goes() {
    let s = setup().await;
    let token = s.idp.token().expires_in(120).sign();
    assert!(s.auth.validate(&token).await.is_ok());
    let verified = s.auth.stats().signatures_verified;
    for _ in 0..10 {
        assert!(s.auth.validate(&token).await.is_ok());
    }
    assert_eq!(
        s.auth.stats().signatures_verified,
        verified,
        "cache hits verify nothing"
    );

    // Expired while cached: refused (exp + 60 s leeway).
    s.clock.advance(Duration::from_secs(181));
    assert_eq!(
        s.auth.validate(&token).await.unwrap_err(),
        invalid(TokenError::Expired)
    );

    // The key leaves the key set: the cached verification goes with it.
    let token = s.idp.token().expires_in(100_000).sign();
    assert!(s.auth.validate(&token).await.is_ok());
    let old_kid = s.idp.current_kid();
    s.idp.rotate(Algorithm::ES256);
    s.idp.unpublish(&old_kid);
    s.clock.advance(Duration::from_secs(31));
    assert!(
        s.auth.validate(&s.idp.token().sign()).await.is_ok(),
        "refetch brings the new key"
    );
    assert_eq!(
        s.auth.validate(&token).await.unwrap_err(),
        invalid(TokenError::UnknownKey)
    );
}

#[tokio::test]
async fn a_cached_token_is_a_hit_only_for_the_whole_token() {
    // The cache hashes only a token's last bytes: tokens sharing them must
    // still be told apart, and a forgery reusing a cached signature verified.
    let s = setup().await;
    let token = s.idp.token().claim("sub", "alice").sign();
    assert!(s.auth.validate(&token).await.is_ok());
    let (_, sig) = token.rsplit_once('.').unwrap();
    let (header, _) = token.split_once('.').unwrap();
    let claims = common::claims_of(&s.idp.token().claim("sub", "mallory").sign());
    let forged = format!("{header}.{}.{sig}", common::b64(claims.to_string()));
    let verified = s.auth.stats().signatures_verified;
    assert_eq!(
        s.auth.validate(&forged).await.unwrap_err(),
        invalid(TokenError::BadSignature)
    );
    assert_eq!(s.auth.stats().signatures_verified, verified + 1);
    let p = s.auth.validate(&token).await.unwrap();
    assert_eq!(p.subject(), Some("alice"));
    assert_eq!(
        s.auth.stats().signatures_verified,
        verified + 1,
        "still a hit"
    );
}

#[tokio::test]
async fn a_cached_verification_lives_no_longer_than_the_configured_maximum() {
    let s = setup_with(|b| b.token_cache(100, Duration::from_secs(120))).await;
    let token = s.idp.token().expires_in(100_000).sign();
    assert!(s.auth.validate(&token).await.is_ok());
    s.clock.advance(Duration::from_secs(119));
    assert!(s.auth.validate(&token).await.is_ok());
    assert_eq!(s.auth.stats().signatures_verified, 1);
    s.clock.advance(Duration::from_secs(2));
    assert!(s.auth.validate(&token).await.is_ok());
    assert_eq!(
        s.auth.stats().signatures_verified,
        2,
        "verified again after 120 s"
    );
}

#[tokio::test]
async fn the_cache_can_be_turned_off() {
    let off: [fn(Builder) -> Builder; 2] = [
        |b| b.no_token_cache(),
        |b| b.token_cache(0, Duration::from_secs(60)),
    ];
    for off in off {
        let s = setup_with(off).await;
        let token = s.idp.token().sign();
        for _ in 0..3 {
            assert!(s.auth.validate(&token).await.is_ok());
        }
        assert_eq!(s.auth.stats().signatures_verified, 3);
    }
}

#[tokio::test]
async fn a_maximum_token_age_bounds_the_revocation_window() {
    let s = setup_with(|b| b.max_token_age(Duration::from_secs(300))).await;
    let token = s.idp.token().expires_in(3600).sign();
    assert!(s.auth.validate(&token).await.is_ok());
    s.clock.advance(Duration::from_secs(300 + 61));
    assert_eq!(
        s.auth.validate(&token).await.unwrap_err(),
        invalid(TokenError::TooOld),
        "also on a cache hit"
    );
    let no_iat = s.idp.token().without("iat").sign();
    assert!(matches!(
        s.auth.validate(&no_iat).await,
        Err(AuthError::InvalidToken(TokenError::MissingClaim(_)))
    ));
    // An `iat` in the future would stretch the bound by as much.
    let now = i64::try_from(
        s.clock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let later = s
        .idp
        .token()
        .claim("iat", now + 61)
        .expires_in(100_000)
        .sign();
    assert_eq!(
        s.auth.validate(&later).await.unwrap_err(),
        invalid(TokenError::NotYetValid)
    );
    let within_leeway = s.idp.token().claim("iat", now + 60).sign();
    assert!(s.auth.validate(&within_leeway).await.is_ok());
}

/// Validates every token at once; returns each verdict.
async fn all_at_once(
    auth: &BearerAuthLayer<WithIntrospection>,
    tokens: Vec<String>,
) -> Vec<Result<(), AuthError>> {
    let mut set = tokio::task::JoinSet::new();
    for t in tokens {
        let auth = auth.clone();
        set.spawn(async move { auth.validate(&t).await.map(drop) });
    }
    set.join_all().await
}

fn random_opaque() -> String {
    let mut bytes = [0u8; 24];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    common::b64(bytes)
}

#[tokio::test]
async fn five_hundred_distinct_opaque_tokens_at_once_never_exceed_the_bound_in_flight() {
    // A wait for a free slot ends at the fetch timeout: long enough here
    // that a loaded machine still answers every token, as this test is
    // about the bound and not about time.
    let s = setup_with(|b| b.fetch_timeout(Duration::from_secs(120))).await;
    // Answers that take a while, so that calls overlap.
    s.idp.set_introspection_delay(Duration::from_millis(20));
    let verdicts = all_at_once(&s.auth, (0..500).map(|_| random_opaque()).collect()).await;
    assert_eq!(verdicts.len(), 500);
    for v in verdicts {
        assert_eq!(
            v.unwrap_err(),
            invalid(TokenError::Revoked),
            "an answer each"
        );
    }
    assert_eq!(s.idp.introspections(), 500);
    let peak = s.idp.max_introspections_in_flight();
    assert!(
        (2..=tower_bearer::DEFAULT_INTROSPECTION_CONCURRENCY).contains(&peak),
        "{peak} in flight at once"
    );
}

#[tokio::test]
async fn a_flood_of_opaque_tokens_does_not_starve_require_active_checks() {
    let s = setup_with(|b| {
        b.introspection_concurrency(1)
            .fetch_timeout(Duration::from_secs(1))
    })
    .await;
    // Each answer takes 300 ms: five opaque tokens queued on one slot
    // would keep a check waiting past the 1 s timeout.
    s.idp.set_introspection_delay(Duration::from_millis(300));
    let app = app(&s.auth);
    let flood: Vec<String> = (0..5).map(|_| random_opaque()).collect();
    let valid = s.idp.token().scope("read").sign();
    let opaque = async {
        let mut set = tokio::task::JoinSet::new();
        for t in flood {
            let app = app.clone();
            set.spawn(async move { status(&app, "/documents", &t).await.0 });
        }
        set.join_all().await
    };
    let (opaque, active) = tokio::join!(opaque, status(&app, "/payments", &valid));
    assert_eq!(
        active.0,
        StatusCode::OK,
        "the active check had a slot of its own"
    );
    assert!(
        opaque
            .iter()
            .all(|c| *c == StatusCode::UNAUTHORIZED || *c == StatusCode::SERVICE_UNAVAILABLE)
    );
}

#[tokio::test]
async fn a_request_that_finds_no_free_introspection_slot_in_time_gets_503() {
    let s = setup_with(|b| {
        b.introspection_concurrency(1)
            .fetch_timeout(Duration::from_millis(200))
    })
    .await;
    s.idp.set_introspection_fault(EndpointFault::Hang);
    let app = app(&s.auth);
    let (a, b, c) = (random_opaque(), random_opaque(), random_opaque());
    let answers = tokio::join!(
        status(&app, "/documents", &a),
        status(&app, "/documents", &b),
        status(&app, "/documents", &c),
    );
    // One call holds the only slot until its timeout, then the next one
    // waiting takes it and hangs as long: the third never reaches the
    // endpoint and gives up after the timeout. Each gets an answer.
    for (code, retry_after) in [answers.0, answers.1, answers.2] {
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(retry_after.is_some());
    }
    assert!(s.idp.introspections() < 3, "{}", s.idp.introspections());
    assert_eq!(s.idp.max_introspections_in_flight(), 1);
}

/// Revokes every token of one subject.
struct SubjectBan(&'static str);

impl tower_bearer::RevocationCheck for SubjectBan {
    fn is_revoked(&self, p: &tower_bearer::Principal, _: SystemTime) -> bool {
        p.subject() == Some(self.0)
    }
}

#[tokio::test]
async fn revocation_checks_add_up_in_any_order() {
    for list_first in [true, false] {
        let list = RevocationList::new();
        let s = setup_with(|b| {
            if list_first {
                b.revocation_list(list.clone())
                    .revocation(SubjectBan("mallory"))
            } else {
                b.revocation(SubjectBan("mallory"))
                    .revocation_list(list.clone())
            }
        })
        .await;
        let now = Clock::now(&s.clock);
        let banned = s.idp.token().claim("sub", "mallory").sign();
        let listed = s.idp.token().claim("jti", "listed").sign();
        list.revoke_until(
            Revoke::TokenId("listed".into()),
            now + Duration::from_secs(600),
        );
        for token in [&banned, &listed] {
            assert_eq!(
                s.auth.validate(token).await.unwrap_err(),
                invalid(TokenError::Revoked),
                "list first: {list_first}"
            );
        }
        assert!(s.auth.validate(&s.idp.token().sign()).await.is_ok());
    }
}

#[tokio::test]
async fn a_revocation_list_refuses_by_jti_sub_or_client_until_it_ends() {
    let list = RevocationList::new();
    let s = setup_with(|b| b.revocation_list(list.clone())).await;
    let now = || Clock::now(&s.clock);
    let mine = s
        .idp
        .token()
        .claim("sub", "alice")
        .claim("jti", "t-1")
        .expires_in(100_000)
        .sign();
    let theirs = s
        .idp
        .token()
        .claim("sub", "bob")
        .claim("client_id", "app-2")
        .expires_in(100_000)
        .sign();
    let verified = || s.auth.stats().signatures_verified;
    assert!(s.auth.validate(&mine).await.is_ok() && s.auth.validate(&theirs).await.is_ok());

    for (what, refused, allowed) in [
        (Revoke::TokenId("t-1".into()), &mine, &theirs),
        (Revoke::Subject("bob".into()), &theirs, &mine),
        (Revoke::Client("app-2".into()), &theirs, &mine),
    ] {
        list.revoke_until(what.clone(), now() + Duration::from_secs(600));
        let before = verified();
        assert_eq!(
            s.auth.validate(refused).await.unwrap_err(),
            invalid(TokenError::Revoked),
            "{what:?}"
        );
        assert_eq!(
            verified(),
            before + 1,
            "{what:?}: the cached verification was dropped"
        );
        assert!(s.auth.validate(allowed).await.is_ok(), "{what:?}");
        list.unrevoke(&what);
        assert!(s.auth.validate(refused).await.is_ok());
    }
    // A revocation ends when its time is up.
    list.revoke_until(
        Revoke::Subject("alice".into()),
        now() + Duration::from_secs(60),
    );
    assert!(s.auth.validate(&mine).await.is_err());
    s.clock.advance(Duration::from_secs(61));
    assert!(s.auth.validate(&mine).await.is_ok());
    let _ = SystemTime::now();
}

/// An issuer on a manual clock, a revocation list on it that keeps entries
/// an hour, and a validator with that list.
async fn with_an_hour_long_list() -> (ManualClock, TestIssuer, RevocationList, BearerAuthLayer) {
    let (clock, idp) = common::issuer_on_a_manual_clock().await;
    let list = RevocationList::with_max_token_lifetime(Duration::from_secs(3600))
        .with_clock(clock.clone());
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .clock(clock.clone())
        .revocation_list(list.clone())
        .build()
        .unwrap();
    (clock, idp, list, auth)
}

#[tokio::test]
async fn revocations_of_one_issuer_and_before_a_time_mean_what_the_events_say() {
    let (clock, idp, list, auth) = with_an_hour_long_list().await;
    let iss = idp.issuer().to_owned();
    let t0 = Clock::now(&clock);
    let secs = |t: SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let token = |sub: &str, iat: SystemTime, extra: (&str, &str)| {
        idp.token()
            .claim("sub", sub)
            .claim("iat", secs(iat))
            .claim(extra.0, extra.1)
            .expires_in(3000)
            .sign()
    };
    let earlier = t0 - Duration::from_secs(60);
    let refused = |t: &str| {
        let auth = auth.clone();
        let t = t.to_owned();
        async move { auth.validate(&t).await.err() }
    };
    let revoked = Some(invalid(TokenError::Revoked));

    // A session revoked at t0: its tokens from before, not those after,
    // nor another session's.
    let old_session = token("alice", earlier, ("sid", "s-1"));
    let other_session = token("alice", earlier, ("sid", "s-2"));
    assert_eq!(refused(&old_session).await, None, "cached before the event");
    list.revoke(Revoke::SessionBefore {
        issuer: iss.clone(),
        sid: "s-1".into(),
        before: t0,
    });
    assert_eq!(refused(&old_session).await, revoked, "the cached one too");
    assert_eq!(refused(&other_session).await, None);
    clock.advance(Duration::from_secs(5));
    let new_login = token("alice", Clock::now(&clock), ("sid", "s-1"));
    assert_eq!(refused(&new_login).await, None, "issued after the event");

    // A changed credential: every earlier token of the subject, any
    // session; a token without iat counts as earlier.
    let bob_before = token("bob", earlier, ("sid", "s-9"));
    let bob_no_iat = idp.token().claim("sub", "bob").without("iat").sign();
    list.revoke(Revoke::SubjectBefore {
        issuer: iss.clone(),
        subject: "bob".into(),
        before: t0,
    });
    assert_eq!(refused(&bob_before).await, revoked);
    assert_eq!(refused(&bob_no_iat).await, revoked);
    let bob_after = token("bob", Clock::now(&clock), ("sid", "s-10"));
    assert_eq!(refused(&bob_after).await, None);

    // Scoped by issuer: another issuer's revocation names none of these.
    let carol = token("carol", earlier, ("jti", "j-1"));
    for what in [
        Revoke::IssuedToken {
            issuer: "https://other.example".into(),
            jti: "j-1".into(),
        },
        Revoke::SubjectBefore {
            issuer: "https://other.example".into(),
            subject: "carol".into(),
            before: t0,
        },
    ] {
        list.revoke(what.clone());
        assert_eq!(refused(&carol).await, None, "{what:?}");
    }
    list.revoke(Revoke::IssuedToken {
        issuer: iss.clone(),
        jti: "j-1".into(),
    });
    assert_eq!(refused(&carol).await, revoked);
    let dave = token("dave", earlier, ("client_id", "app-7"));
    list.revoke(Revoke::IssuedTo {
        issuer: iss.clone(),
        client: "app-7".into(),
    });
    assert_eq!(refused(&dave).await, revoked);

    // Each entry lives as long as a token could: an hour from its time.
    // Past that, the tokens it named have expired anyway, and it is gone.
    let held = list.len();
    clock.advance(Duration::from_secs(3600));
    list.revoke(Revoke::TokenId("unrelated".into()));
    assert_eq!(list.len(), 1, "{held} entries dropped at their end");
    assert_eq!(
        refused(&bob_before).await,
        Some(invalid(TokenError::Expired)),
        "what the entry named has expired by its end"
    );
    list.unrevoke(&Revoke::TokenId("unrelated".into()));
    list.unrevoke(&Revoke::IssuedToken {
        issuer: iss.clone(),
        jti: "never-revoked".into(),
    });
    assert!(list.is_empty(), "lifting what was never there adds nothing");
}

#[tokio::test]
async fn a_revocation_outlives_the_longest_token_its_validator_verified() {
    let (clock, idp, list, auth) = with_an_hour_long_list().await;
    // Two hours, where the list was told one.
    let long = idp.token().claim("sub", "erin").expires_in(7200).sign();
    assert!(auth.validate(&long).await.is_ok());
    let t0 = Clock::now(&clock);
    list.revoke(Revoke::SubjectBefore {
        issuer: idp.issuer().into(),
        subject: "erin".into(),
        before: t0 + Duration::from_secs(1),
    });
    clock.advance(Duration::from_secs(3700));
    assert_eq!(
        auth.validate(&long).await.unwrap_err(),
        invalid(TokenError::Revoked),
        "past the configured hour, within the token's two"
    );
}

/// Fuzz finding 1 (`fuzz/artifacts/introspection_response/crash-780d…`):
/// an answer whose unknown members hold numbers out of `f64` range. The
/// harness assumed serde_json::Value could re-read every accepted answer;
/// the parser skips unknown members without reading them, as it does for
/// unknown JWT claims, and checks every member it uses.
#[test]
fn an_answer_with_an_out_of_range_number_in_an_unknown_member_is_read_without_it() {
    let auth = BearerAuthLayer::builder()
        .issuer("https://issuer.example")
        .audience("api")
        .introspection(ClientId::new("rs"), ClientSecret::new("secret"))
        .introspection_endpoint("https://issuer.example/introspect")
        .build()
        .unwrap();
    let found = br#"{"active":true,":iss":"119audh;ttps:ampHe","aud":["api"],",Is":1e1615}"#;
    let p = auth.parse_introspection_answer(found).unwrap();
    assert_eq!(p.claims().aud, ["api"]);
    // In a member that is used, the same number is refused.
    let used = br#"{"active":true,"aud":["api"],"exp":1e1615}"#;
    assert!(auth.parse_introspection_answer(used).is_err());
}
