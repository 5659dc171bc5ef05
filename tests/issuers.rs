//! Several issuers and tenants in one validator, and authorization beyond
//! scopes: roles from where real IdPs put them, claims rules, route rules.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use serde_json::json;
use tower::ServiceExt as _;
use tower_bearer::testing::{EndpointFault, TestIssuer};
use tower_bearer::{
    Algorithm, AuthError, BearerAuthLayer, ClaimPath, ClientId, ClientSecret, ConfigError, Limits,
    ManualClock, Refusal, TokenError, TrustedIssuer,
};

use common::issuer_on_a_manual_clock;

/// Two issuers sharing the builder's audience.
fn for_both(a: &TestIssuer, b: &TestIssuer) -> BearerAuthLayer {
    BearerAuthLayer::builder()
        .audience("test-api")
        .trusted_issuer(TrustedIssuer::new(a.issuer()))
        .trusted_issuer(TrustedIssuer::new(b.issuer()))
        .build()
        .unwrap()
}

async fn refused(auth: &BearerAuthLayer, token: &str) -> TokenError {
    match auth.validate(token).await {
        Err(AuthError::InvalidToken(e)) => e,
        other => panic!("expected invalid_token, got {other:?}"),
    }
}

#[tokio::test]
async fn each_issuer_s_tokens_are_verified_with_its_own_keys_only() {
    let (a, b) = (
        TestIssuer::start().await.unwrap(),
        TestIssuer::start().await.unwrap(),
    );
    let auth = for_both(&a, &b);
    let p = auth.validate(&a.token().sign()).await.unwrap();
    assert_eq!(p.claims().iss.as_deref(), Some(a.issuer()));
    let p = auth.validate(&b.token().sign()).await.unwrap();
    assert_eq!(p.claims().iss.as_deref(), Some(b.issuer()));

    // Both issuers name their first key `key-1`: B's token claiming to be
    // A's is checked against A's `key-1`, and fails.
    let forged = b.token().claim("iss", a.issuer()).sign();
    assert_eq!(refused(&auth, &forged).await, TokenError::BadSignature);
    // A `kid` only B has is unknown at A.
    let only_at_b = b.add_key(Algorithm::ES256);
    let forged = b
        .token()
        .signed_by(&only_at_b)
        .claim("iss", a.issuer())
        .sign();
    assert_eq!(refused(&auth, &forged).await, TokenError::UnknownKey);
    assert_eq!(
        b.jwks_fetches(),
        1,
        "B's keys were never fetched for A's token"
    );
}

#[tokio::test]
async fn an_iss_no_issuer_has_is_refused_without_any_fetch() {
    let (a, b) = (
        TestIssuer::start().await.unwrap(),
        TestIssuer::start().await.unwrap(),
    );
    let auth = BearerAuthLayer::builder()
        .audience("test-api")
        .trusted_issuer(TrustedIssuer::new(a.issuer()))
        .trusted_issuer(
            TrustedIssuer::new(format!("{}/realms/{{tenant}}", b.issuer())).tenants(["acme"]),
        )
        .build()
        .unwrap();
    let long = "t".repeat(200);
    for iss in [
        "https://evil.example".to_owned(),
        format!("{}/", a.issuer()),
        format!("{}/realms/other", b.issuer()),
        format!("{}/realms/{long}", b.issuer()),
        String::new(),
    ] {
        let token = a.token().claim("iss", iss.as_str()).sign();
        assert_eq!(
            refused(&auth, &token).await,
            TokenError::WrongIssuer,
            "{iss}"
        );
    }
    let no_iss = a.token().without("iss").sign();
    assert_eq!(refused(&auth, &no_iss).await, TokenError::WrongIssuer);
    let not_a_string = a.token().claim("iss", 7).sign();
    assert_eq!(refused(&auth, &not_a_string).await, TokenError::WrongIssuer);
    for idp in [&a, &b] {
        assert_eq!(idp.jwks_fetches() + idp.discovery_fetches(), 0);
    }
}

#[tokio::test]
async fn settings_given_once_apply_to_all_and_each_can_be_overridden() {
    let (clock, a) = issuer_on_a_manual_clock().await;
    let b = TestIssuer::builder()
        .clock(clock.clone())
        .audience("b-api")
        .algorithm(Algorithm::ES256)
        .start()
        .await
        .unwrap();
    let auth = BearerAuthLayer::builder()
        .clock(clock.clone())
        .audience("test-api")
        .leeway(Duration::ZERO)
        .trusted_issuer(TrustedIssuer::new(a.issuer()))
        .trusted_issuer(
            TrustedIssuer::new(b.issuer())
                .audience("b-api")
                .algorithms([Algorithm::ES256])
                .leeway(Duration::from_secs(120)),
        )
        .build()
        .unwrap();
    auth.validate(&a.token().sign()).await.unwrap();
    auth.validate(&b.token().sign()).await.unwrap();
    // A's audience is not B's.
    let wrong_aud = b.token().claim("aud", "test-api").sign();
    assert_eq!(refused(&auth, &wrong_aud).await, TokenError::WrongAudience);
    // B takes only ES256, whatever A takes.
    let rs256 = b.add_key(Algorithm::RS256);
    let token = b.token().signed_by(&rs256).sign();
    assert_eq!(
        refused(&auth, &token).await,
        TokenError::AlgorithmNotAllowed
    );
    // B's leeway is its own.
    let (a_late, b_late) = (
        a.token().expires_in(-60).sign(),
        b.token().expires_in(-60).sign(),
    );
    assert_eq!(refused(&auth, &a_late).await, TokenError::Expired);
    auth.validate(&b_late).await.unwrap();
}

#[tokio::test]
async fn one_issuer_s_outage_is_its_own() {
    let (a, b) = (
        TestIssuer::start().await.unwrap(),
        TestIssuer::start().await.unwrap(),
    );
    b.set_jwks_fault(EndpointFault::Status(500));
    let auth = for_both(&a, &b);
    auth.validate(&a.token().sign()).await.unwrap();
    assert!(matches!(
        auth.validate(&b.token().sign()).await,
        Err(AuthError::TemporarilyUnavailable { .. })
    ));
    auth.validate(&a.token().scope("again").sign())
        .await
        .unwrap();
    let health = auth.issuers_key_health();
    assert_eq!(health.len(), 2);
    assert_eq!(health[0].issuer, a.issuer());
    assert_eq!(health[0].keys.key_count, 1);
    assert!(health[0].keys.last_error.is_none());
    assert_eq!(health[1].issuer, b.issuer());
    assert_eq!(health[1].keys.key_count, 0);
    assert!(health[1].keys.last_error.is_some());
    assert_eq!(
        auth.key_health(),
        health[0].keys,
        "key_health is the first issuer's"
    );
}

#[tokio::test]
async fn issuers_with_one_jwks_uri_share_one_key_store() {
    let idp = TestIssuer::start().await.unwrap();
    let auth = BearerAuthLayer::builder()
        .audience("test-api")
        .trusted_issuer(TrustedIssuer::new(idp.issuer()).jwks_uri(idp.jwks_uri()))
        .trusted_issuer(TrustedIssuer::new("https://alias.example").jwks_uri(idp.jwks_uri()))
        .build()
        .unwrap();
    assert_eq!(auth.prefetch_keys().await.unwrap(), 1);
    auth.validate(&idp.token().sign()).await.unwrap();
    let alias = idp.token().claim("iss", "https://alias.example").sign();
    auth.validate(&alias).await.unwrap();
    assert_eq!(idp.jwks_fetches(), 1);
}

#[tokio::test]
async fn tenants_whose_discovery_names_one_jwks_uri_share_its_store_and_fetch() {
    let idp = TestIssuer::start().await.unwrap();
    idp.add_tenant("acme");
    idp.add_tenant("globex");
    let auth = BearerAuthLayer::builder()
        .audience("test-api")
        .trusted_issuer(TrustedIssuer::keycloak_realms(idp.issuer()))
        .build()
        .unwrap();
    for tenant in ["acme", "globex", "acme"] {
        let p = auth
            .validate(&idp.token().tenant(tenant).sign())
            .await
            .unwrap();
        assert_eq!(p.claims().iss, Some(idp.tenant_issuer(tenant)));
    }
    assert_eq!(idp.discovery_fetches(), 2, "one per tenant");
    assert_eq!(idp.jwks_fetches(), 1, "one for both");
    let health = auth.issuers_key_health();
    let tenants: Vec<_> = health.iter().map(|h| h.tenant.as_deref()).collect();
    assert_eq!(tenants, [Some("acme"), Some("globex")]);
    assert!(health.iter().all(|h| h.keys.key_count == 1));
}

#[tokio::test]
async fn discoveries_that_name_each_other_s_keys_are_followed_without_a_loop() {
    let (a, b) = (
        TestIssuer::start().await.unwrap(),
        TestIssuer::start().await.unwrap(),
    );
    a.set_discovered_jwks_uri(Some(&b.jwks_uri()));
    b.set_discovered_jwks_uri(Some(&a.jwks_uri()));
    let auth = for_both(&a, &b);
    // Each issuer's keys are those its own discovery names: A's are at B.
    let a_by_b = b.token().claim("iss", a.issuer()).sign();
    let b_by_a = a.token().claim("iss", b.issuer()).sign();
    auth.validate(&a_by_b).await.unwrap();
    auth.validate(&b_by_a).await.unwrap();
    // Both name their first key `key-1`: A's own token is checked against
    // B's `key-1`, and fails.
    assert_eq!(
        refused(&auth, &a.token().sign()).await,
        TokenError::BadSignature
    );
    assert_eq!((a.jwks_fetches(), b.jwks_fetches()), (1, 1));
}

#[tokio::test]
async fn one_issuer_s_new_discovery_never_changes_the_keys_of_another_that_shared_them() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let start = || TestIssuer::builder().clock(clock.clone()).start();
    let (a, b, other) = (
        start().await.unwrap(),
        start().await.unwrap(),
        start().await.unwrap(),
    );
    // B's discovery names A's keys: one store and one fetch serve both.
    b.set_discovered_jwks_uri(Some(&a.jwks_uri()));
    let auth = BearerAuthLayer::builder()
        .clock(clock.clone())
        .audience("test-api")
        .trusted_issuer(TrustedIssuer::new(a.issuer()))
        .trusted_issuer(TrustedIssuer::new(b.issuer()))
        .build()
        .unwrap();
    auth.validate(&a.token().sign()).await.unwrap();
    auth.validate(&a.token().claim("iss", b.issuer()).sign())
        .await
        .unwrap();
    assert_eq!(a.jwks_fetches(), 1);

    // A day on, A's discovery names other keys.
    a.set_discovered_jwks_uri(Some(&other.jwks_uri()));
    clock.advance(Duration::from_secs(86_400 + 1));
    auth.prefetch_keys().await.unwrap();
    auth.validate(&other.token().claim("iss", a.issuer()).sign())
        .await
        .unwrap();
    // B still names A's keys: what A's discovery says now is not B's.
    // (Every test issuer names its first key `key-1`: the other's is
    // checked against A's, and fails.)
    let b_by_other = other.token().claim("iss", b.issuer()).sign();
    assert_eq!(refused(&auth, &b_by_other).await, TokenError::BadSignature);
    auth.validate(&a.token().claim("iss", b.issuer()).sign())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_keycloak_template_reads_realm_and_client_roles() {
    let idp = TestIssuer::start().await.unwrap();
    idp.add_tenant("acme");
    idp.add_tenant("globex");
    let auth = BearerAuthLayer::builder()
        .audience("test-api")
        .trusted_issuer(
            TrustedIssuer::keycloak_realms(idp.issuer())
                .tenants(["acme"])
                .role_claims([
                    ClaimPath::keycloak_realm_roles(),
                    ClaimPath::keycloak_client_roles("test-api"),
                ]),
        )
        .build()
        .unwrap();
    let token = idp
        .token()
        .tenant("acme")
        .claim(
            "realm_access",
            json!({ "roles": ["offline_access", "auditor"] }),
        )
        .claim(
            "resource_access",
            json!({
                "account": { "roles": ["manage-account"] },
                "test-api": { "roles": ["orders:write", "auditor"] },
            }),
        )
        .sign();
    let p = auth.validate(&token).await.unwrap();
    let roles: Vec<&str> = p.roles().iter().collect();
    assert_eq!(roles, ["offline_access", "auditor", "orders:write"]);
    assert!(!p.has_role("manage-account"));
    // `globex` is served, but not allowed: refused before any fetch.
    let before = idp.discovery_fetches();
    let globex = idp.token().tenant("globex").sign();
    assert_eq!(refused(&auth, &globex).await, TokenError::WrongIssuer);
    assert_eq!(idp.discovery_fetches(), before);
}

#[tokio::test]
async fn an_entra_shaped_template_requires_tid_to_be_the_tenant_of_iss() {
    let idp = TestIssuer::start().await.unwrap();
    let tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let auth = BearerAuthLayer::builder()
        .audience("test-api")
        .trusted_issuer(
            TrustedIssuer::new(format!("{}/realms/{{tenant}}", idp.issuer()))
                .jwks_uri(idp.jwks_uri())
                .tenant_claim("tid")
                .role_claims([ClaimPath::entra_roles()]),
        )
        .build()
        .unwrap();
    let entra = |tid_claim: Option<&str>| {
        let t = idp
            .token()
            .tenant(tid)
            .claim("roles", json!(["Reports.Read"]));
        match tid_claim {
            Some(v) => t.claim("tid", v).sign(),
            None => t.sign(),
        }
    };
    let p = auth.validate(&entra(Some(tid))).await.unwrap();
    assert!(p.has_role("Reports.Read"));
    let other = "0a0a0a0a-86f1-41af-91ab-2d7cd011db47";
    assert_eq!(
        refused(&auth, &entra(Some(other))).await,
        TokenError::WrongIssuer
    );
    assert_eq!(
        refused(&auth, &entra(None)).await,
        TokenError::MissingClaim("tid".into())
    );
    // The shared key store: no discovery at all, one JWKS fetch.
    assert_eq!(idp.discovery_fetches(), 0);
    assert_eq!(idp.jwks_fetches(), 1);
}

#[tokio::test]
async fn hostile_tenants_cost_no_fetch() {
    let idp = TestIssuer::start().await.unwrap();
    let auth = BearerAuthLayer::builder()
        .audience("test-api")
        .trusted_issuer(TrustedIssuer::keycloak_realms(idp.issuer()))
        .build()
        .unwrap();
    let base = idp.issuer();
    let long = "a".repeat(129);
    for iss in [
        format!("{base}/realms/"),
        format!("{base}/realms/.."),
        format!("{base}/realms/."),
        format!("{base}/realms/a%2Fb"),
        format!("{base}/realms/a/b"),
        format!("{base}/realms/a?b"),
        format!("{base}/realms/{long}"),
        format!(
            "http://127.0.0.2{}/realms/acme",
            &base["http://127.0.0.1".len()..]
        ),
    ] {
        let token = idp.token().claim("iss", iss.as_str()).sign();
        assert_eq!(
            refused(&auth, &token).await,
            TokenError::WrongIssuer,
            "{iss}"
        );
    }
    assert_eq!(idp.discovery_fetches() + idp.jwks_fetches(), 0);
}

#[tokio::test]
async fn a_flood_of_made_up_tenants_costs_bounded_memory_and_fetches() {
    let (clock, idp) = issuer_on_a_manual_clock().await;
    let auth = BearerAuthLayer::builder()
        .clock(clock.clone())
        .audience("test-api")
        .max_tenants(10)
        .refetch_cooldown(Duration::from_secs(30))
        .trusted_issuer(TrustedIssuer::keycloak_realms(idp.issuer()))
        .build()
        .unwrap();
    for i in 0..1000 {
        let token = idp.token().tenant(&format!("made-up-{i}")).sign();
        assert!(
            matches!(
                auth.validate(&token).await,
                Err(AuthError::TemporarilyUnavailable { .. })
            ),
            "tenant {i}"
        );
    }
    assert_eq!(
        idp.discovery_fetches(),
        10,
        "at most max_tenants per cooldown"
    );
    assert!(
        auth.issuers_key_health().len() <= 10,
        "at most max_tenants held"
    );

    // One tenant, again and again: one discovery per cooldown, however
    // often its issuer was dropped and made again meanwhile.
    clock.advance(Duration::from_secs(61));
    let ghost = idp.token().tenant("ghost").sign();
    for _ in 0..5 {
        let _ = auth.validate(&ghost).await;
        for i in 0..20 {
            let _ = auth
                .validate(&idp.token().tenant(&format!("filler-{i}")).sign())
                .await;
        }
    }
    assert_eq!(idp.discovery_fetches(), 20, "ghost once, and nine fillers");
    clock.advance(Duration::from_secs(61));
    let _ = auth.validate(&ghost).await;
    assert_eq!(idp.discovery_fetches(), 21, "a cooldown later, ghost again");
}

#[tokio::test]
async fn role_claims_take_strings_arrays_and_namespaced_names_within_limits() {
    let idp = TestIssuer::start().await.unwrap();
    let build = |paths: Vec<ClaimPath>, limits: Limits| {
        BearerAuthLayer::builder()
            .issuer(idp.issuer())
            .audience("test-api")
            .role_claims(paths)
            .limits(limits)
            .build()
            .unwrap()
    };
    let auth = build(
        vec![
            ClaimPath::parse("https://example.com/roles"),
            ClaimPath::parse("groups"),
        ],
        Limits::default(),
    );
    let token = idp
        .token()
        .claim("https://example.com/roles", "admin auditor")
        .claim("groups", json!(["g1", "admin"]))
        .sign();
    let p = auth.validate(&token).await.unwrap();
    // In token order: serde_json writes the claims sorted by name.
    assert_eq!(
        p.roles().iter().collect::<Vec<_>>(),
        ["g1", "admin", "auditor"]
    );
    let null = idp.token().claim("groups", serde_json::Value::Null).sign();
    assert!(auth.validate(&null).await.unwrap().roles().is_empty());
    for bad in [
        json!(7),
        json!(["a", 1]),
        json!({ "roles": [] }),
        json!(true),
    ] {
        let token = idp.token().claim("groups", bad.clone()).sign();
        assert_eq!(
            refused(&auth, &token).await,
            TokenError::InvalidClaim("roles"),
            "{bad}"
        );
    }
    // A nested path whose middle is not an object.
    let nested = build(vec![ClaimPath::keycloak_realm_roles()], Limits::default());
    let token = idp.token().claim("realm_access", json!(["x"])).sign();
    assert_eq!(
        refused(&nested, &token).await,
        TokenError::InvalidClaim("roles")
    );
    // A member on the path given twice is ambiguous, as a claim would be.
    let token = idp
        .token()
        .claim("realm_access", json!({ "roles": ["reader"] }))
        .sign();
    let twice = common::claims_of(&token).to_string().replace(
        r#""roles":["reader"]"#,
        r#""roles":["reader"],"roles":["admin"]"#,
    );
    let kid = idp.current_kid();
    let header = json!({ "alg": "RS256", "kid": kid, "typ": "at+jwt" });
    let token = idp.sign_raw_bytes(&header, twice.as_bytes(), &kid);
    assert_eq!(
        refused(&nested, &token).await,
        TokenError::InvalidClaim("roles")
    );

    let few = build(
        vec![ClaimPath::claim("groups")],
        Limits {
            max_roles: 3,
            ..Limits::default()
        },
    );
    let token = idp.token().claim("groups", json!(["a", "b", "c"])).sign();
    assert_eq!(few.validate(&token).await.unwrap().roles().len(), 3);
    let token = idp
        .token()
        .claim("groups", json!(["a", "b", "c", "d"]))
        .sign();
    assert_eq!(
        refused(&few, &token).await,
        TokenError::LimitExceeded("roles")
    );
}

#[test]
fn role_claims_that_cannot_be_read_are_configuration_errors() {
    for (path, depth) in [
        (ClaimPath::nested(Vec::<String>::new()), 16),
        (ClaimPath::parse("a..b"), 16),
        (ClaimPath::parse("scope"), 16),
        (ClaimPath::parse("aud"), 16),
        (ClaimPath::parse("cnf.jkt"), 16),
        (ClaimPath::parse("a.b.c.d.e.f.g.h.i"), 16),
        (ClaimPath::parse("a.b.c"), 2),
    ] {
        let err = BearerAuthLayer::builder()
            .issuer("https://login.example.com")
            .audience("api")
            .role_claims([path.clone()])
            .limits(Limits {
                max_json_depth: depth,
                ..Limits::default()
            })
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::RoleClaim(_)), "{path}: {err}");
    }
}

/// A router whose `/reports` needs role `auditor`, `/any` one of two
/// roles, and `/staff` a rule of its own.
fn app(auth: &BearerAuthLayer) -> Router {
    let staff = auth.require(|p| match p.subject() {
        Some(s) if s.ends_with("@staff") => Ok(()),
        _ => Err(Refusal::new("this request is for staff")),
    });
    Router::new()
        .route(
            "/reports",
            get(|| async { "ok" }).route_layer(auth.require_all_roles(["auditor"])),
        )
        .route(
            "/any",
            get(|| async { "ok" }).route_layer(auth.require_any_role(["auditor", "admin"])),
        )
        .route("/staff", get(|| async { "ok" }).route_layer(staff))
        .layer(auth.clone())
}

async fn get_status(app: &Router, path: &str, token: &str) -> (StatusCode, Option<String>) {
    let req = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status(), challenge)
}

#[tokio::test]
async fn role_and_rule_route_layers_answer_403_insufficient_scope() {
    let idp = TestIssuer::start().await.unwrap();
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience("test-api")
        .role_claims([ClaimPath::claim("roles")])
        .build()
        .unwrap();
    let app = app(&auth);
    let auditor = idp.token().claim("roles", json!(["auditor"])).sign();
    let admin = idp.token().claim("roles", "admin").sign();
    let staff = idp.token().claim("sub", "ann@staff").sign();
    assert_eq!(
        get_status(&app, "/reports", &auditor).await.0,
        StatusCode::OK
    );
    assert_eq!(get_status(&app, "/any", &admin).await.0, StatusCode::OK);
    assert_eq!(get_status(&app, "/staff", &staff).await.0, StatusCode::OK);
    let (status, challenge) = get_status(&app, "/reports", &admin).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        challenge.as_deref(),
        Some(
            r#"Bearer error="insufficient_scope", error_description="the token lacks a role this request needs""#
        )
    );
    let (status, challenge) = get_status(&app, "/staff", &admin).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        challenge
            .unwrap()
            .contains(r#"error_description="this request is for staff""#)
    );
    // Without a token at all: 401, not 403.
    let res = app
        .clone()
        .oneshot(Request::get("/reports").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn claims_validators_and_client_allowlists_refuse_with_401() {
    let (a, b) = (
        TestIssuer::start().await.unwrap(),
        TestIssuer::start().await.unwrap(),
    );
    const NO_ROBOTS: Refusal = Refusal::new("robots are not accepted");
    const NOT_PARTNER: Refusal = Refusal::new("not a partner tenant");
    let auth = BearerAuthLayer::builder()
        .audience("test-api")
        .claims_validator(|p| match p.subject() {
            Some("robot") => Err(NO_ROBOTS),
            _ => Ok(()),
        })
        .allowed_clients(["test-client", "web"])
        .trusted_issuer(TrustedIssuer::new(a.issuer()))
        .trusted_issuer(
            TrustedIssuer::new(b.issuer())
                .allowed_clients(["b-client"])
                .claims_validator(|p| {
                    let tid: Option<String> = p
                        .deserialize_claims::<serde_json::Value>()
                        .ok()
                        .and_then(|c| c.get("tid")?.as_str().map(str::to_owned));
                    match tid.as_deref() {
                        Some("partner") => Ok(()),
                        _ => Err(NOT_PARTNER),
                    }
                }),
        )
        .build()
        .unwrap();
    auth.validate(&a.token().sign()).await.unwrap();
    // `azp` stands in for a missing `client_id`.
    let azp = a.token().without("client_id").claim("azp", "web").sign();
    auth.validate(&azp).await.unwrap();
    let other = a.token().claim("client_id", "other").sign();
    let e = refused(&auth, &other).await;
    assert_eq!(
        e.description(),
        "the token was issued to a client this API does not accept"
    );
    let robot = a.token().claim("sub", "robot").sign();
    assert_eq!(refused(&auth, &robot).await, TokenError::Refused(NO_ROBOTS));
    // B has its own allow-list, and its own rule after the builder's.
    let b_ok = b
        .token()
        .claim("client_id", "b-client")
        .claim("tid", "partner");
    auth.validate(&b_ok.sign()).await.unwrap();
    let b_default_client = b.token().claim("tid", "partner").sign();
    assert!(matches!(
        refused(&auth, &b_default_client).await,
        TokenError::Refused(_)
    ));
    let b_stranger = b
        .token()
        .claim("client_id", "b-client")
        .claim("tid", "x")
        .sign();
    assert_eq!(
        refused(&auth, &b_stranger).await,
        TokenError::Refused(NOT_PARTNER)
    );
    let b_robot = b
        .token()
        .claim("client_id", "b-client")
        .claim("tid", "partner")
        .claim("sub", "robot")
        .sign();
    assert_eq!(
        refused(&auth, &b_robot).await,
        TokenError::Refused(NO_ROBOTS)
    );
    // The description is the fixed string given, on the wire too.
    let res = AuthError::InvalidToken(TokenError::Refused(NO_ROBOTS)).to_response(None);
    assert!(
        res.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .ends_with(r#"error_description="robots are not accepted""#)
    );
    assert_eq!(
        Refusal::new("quote \" inside").description(),
        "the token is not accepted here"
    );
}

fn introspecting(idp: &TestIssuer) -> TrustedIssuer {
    let (id, secret) = TestIssuer::INTROSPECTION_CLIENT;
    TrustedIssuer::new(idp.issuer()).introspection(ClientId::new(id), ClientSecret::new(secret))
}

#[tokio::test]
async fn opaque_tokens_go_to_the_issuers_chosen_for_them_in_order() {
    let (a, b) = (
        TestIssuer::start().await.unwrap(),
        TestIssuer::start().await.unwrap(),
    );
    let ambiguous = BearerAuthLayer::builder()
        .audience("test-api")
        .trusted_issuer(introspecting(&a))
        .trusted_issuer(introspecting(&b))
        .build()
        .unwrap_err();
    assert!(matches!(ambiguous, ConfigError::Issuers(_)), "{ambiguous}");

    let only_b = BearerAuthLayer::builder()
        .audience("test-api")
        .trusted_issuer(introspecting(&a).opaque_tokens(false))
        .trusted_issuer(introspecting(&b))
        .build()
        .unwrap();
    let from_b = b.token().scope("read").opaque();
    assert!(only_b.validate(&from_b).await.unwrap().has_scope("read"));
    let from_a = a.token().opaque();
    assert_eq!(refused(&only_b, &from_a).await, TokenError::Revoked);
    assert_eq!(a.introspections(), 0);

    // Both, A first: B's token is inactive at A, active at B.
    let both = BearerAuthLayer::builder()
        .audience("test-api")
        .trusted_issuer(introspecting(&a).opaque_tokens(true))
        .trusted_issuer(introspecting(&b).opaque_tokens(true))
        .build()
        .unwrap();
    let from_b = b.token().opaque();
    both.validate(&from_b).await.unwrap();
    assert_eq!(a.introspections(), 1);
    // A down and the token nobody's: 503, as it may have been A's.
    a.set_introspection_fault(EndpointFault::Status(500));
    let nobody = "bm9ib2R5LXMtdG9rZW4tYXQtYWxs";
    assert!(matches!(
        both.validate(nobody).await,
        Err(AuthError::TemporarilyUnavailable { .. })
    ));
    // Yet B's own tokens are still accepted.
    both.validate(&b.token().opaque()).await.unwrap();
}

#[tokio::test]
async fn require_active_asks_where_the_token_was_accepted() {
    let (a, b, local) = (
        TestIssuer::start().await.unwrap(),
        TestIssuer::start().await.unwrap(),
        TestIssuer::start().await.unwrap(),
    );
    let (id, secret) = TestIssuer::INTROSPECTION_CLIENT;
    let auth = BearerAuthLayer::builder()
        .audience("test-api")
        .introspection(ClientId::new(id), ClientSecret::new(secret))
        .trusted_issuer(TrustedIssuer::new(a.issuer()).opaque_tokens(true))
        .trusted_issuer(TrustedIssuer::new(b.issuer()).opaque_tokens(true))
        .trusted_issuer(TrustedIssuer::new(local.issuer()).without_introspection())
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/payments",
            get(|| async { "ok" }).route_layer(auth.require_active()),
        )
        .layer(auth.clone());
    // An opaque token B accepted is active at B, though A comes first.
    let (status, _) = get_status(&app, "/payments", &b.token().opaque()).await;
    assert_eq!(status, StatusCode::OK);
    // A JWT of an issuer that cannot introspect: refused, and told why.
    let (status, challenge) = get_status(&app, "/payments", &local.token().sign()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge
            .unwrap()
            .contains("needs the token's issuer to confirm it is active"),
        "a clear description"
    );
}

#[test]
fn several_issuers_configured_inconsistently_are_refused() {
    let base = || BearerAuthLayer::builder().audience("api");
    let a = || TrustedIssuer::new("https://a.example.com");
    let cases: Vec<(&str, Result<BearerAuthLayer, ConfigError>)> = vec![
        (
            "twice",
            base()
                .issuer("https://a.example.com")
                .trusted_issuer(a())
                .build(),
        ),
        (
            "builder-wide jwks_uri",
            base()
                .jwks_uri("https://a.example.com/keys")
                .trusted_issuer(a())
                .trusted_issuer(TrustedIssuer::new("https://b.example.com"))
                .build(),
        ),
        (
            "two tenants",
            base()
                .trusted_issuer(TrustedIssuer::new(
                    "https://x.example.com/{tenant}/{tenant}",
                ))
                .build(),
        ),
        (
            "other braces",
            base()
                .trusted_issuer(TrustedIssuer::new("https://x.example.com/{realm}"))
                .build(),
        ),
        (
            "opaque template",
            base()
                .trusted_issuer(
                    TrustedIssuer::keycloak_realms("https://kc.example.com").opaque_tokens(true),
                )
                .build(),
        ),
        (
            "tenant claim without a template",
            base().trusted_issuer(a().tenant_claim("tid")).build(),
        ),
        (
            "a shared secret and several issuers",
            base()
                .shared_secret(Algorithm::HS256, [7u8; 32])
                .trusted_issuer(a())
                .trusted_issuer(TrustedIssuer::new("https://b.example.com"))
                .build(),
        ),
        (
            "a shared secret and a template",
            base()
                .shared_secret(Algorithm::HS256, [7u8; 32])
                .trusted_issuer(TrustedIssuer::entra())
                .build(),
        ),
        (
            "opaque tokens without introspection",
            base().trusted_issuer(a().opaque_tokens(true)).build(),
        ),
        (
            "a tenant that is no segment",
            base()
                .trusted_issuer(
                    TrustedIssuer::keycloak_realms("https://kc.example.com").tenants(["a/b"]),
                )
                .build(),
        ),
    ];
    for (case, result) in cases {
        assert!(
            matches!(result, Err(ConfigError::Issuers(_))),
            "{case}: {result:?}"
        );
    }
    assert!(matches!(
        base()
            .trusted_issuer(a().leeway(Duration::from_secs(3600)))
            .build(),
        Err(ConfigError::TooLong { .. })
    ));
    assert!(matches!(
        base()
            .max_tenants(0)
            .trusted_issuer(TrustedIssuer::entra())
            .build(),
        Err(ConfigError::InvalidLimit("max_tenants"))
    ));
    assert!(matches!(
        base()
            .issuer("")
            .insecure_skip_issuer_check()
            .jwks_json(r#"{"keys":[]}"#)
            .build(),
        Err(ConfigError::EmptyValue("issuer"))
    ));
    // The presets build.
    for preset in [
        TrustedIssuer::entra().tenants(["72f988bf-86f1-41af-91ab-2d7cd011db47"]),
        TrustedIssuer::auth0("acme.eu.auth0.com"),
        TrustedIssuer::keycloak_realm("https://kc.example.com/", "acme"),
    ] {
        base().trusted_issuer(preset).build().unwrap();
    }
}

#[tokio::test]
async fn a_cached_token_keeps_its_issuer_s_rules() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let a = TestIssuer::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let b = TestIssuer::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let auth = BearerAuthLayer::builder()
        .clock(clock.clone())
        .audience("test-api")
        .leeway(Duration::ZERO)
        .trusted_issuer(TrustedIssuer::new(a.issuer()))
        .trusted_issuer(TrustedIssuer::new(b.issuer()).leeway(Duration::from_secs(120)))
        .build()
        .unwrap();
    let (ta, tb) = (
        a.token().expires_in(10).sign(),
        b.token().expires_in(10).sign(),
    );
    auth.validate(&ta).await.unwrap();
    auth.validate(&tb).await.unwrap();
    let verified = auth.stats().signatures_verified;
    clock.advance(Duration::from_secs(60));
    auth.validate(&tb).await.unwrap();
    assert_eq!(auth.stats().signatures_verified, verified, "from the cache");
    // Past its own issuer's leeway, a cached token leaves the cache and is
    // refused for what it is.
    assert_eq!(refused(&auth, &ta).await, TokenError::Expired);
    assert_eq!(refused(&auth, &ta).await, TokenError::Expired);
}
