//! Sender-constrained tokens through the layer: DPoP (RFC 9449) proofs and
//! bindings, server nonces, challenges, and certificate-bound tokens (RFC
//! 8705). Proofs here come from `testing::DpopKey`; `tests/interop.rs`
//! makes them with the `dpop` npm package instead. Time is a `ManualClock`.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{Request, StatusCode, header};
use serde_json::json;
use tower::ServiceExt as _;
use tower_bearer::testing::{DpopKey, TestIssuer};
use tower_bearer::{
    Algorithm, BearerAuthLayer, Builder, CertificateFormat, CertificateHeader, ClientCertificate,
    ConfigError, Dpop, ManualClock, Principal,
};

const HTU: &str = "https://api.test/me";

struct Setup {
    clock: ManualClock,
    idp: TestIssuer,
    key: DpopKey,
}

async fn setup() -> Setup {
    let (clock, idp) = common::issuer_on_a_manual_clock().await;
    Setup {
        clock,
        idp,
        key: DpopKey::generate(Algorithm::ES256).unwrap(),
    }
}

impl Setup {
    fn builder(&self) -> Builder {
        BearerAuthLayer::builder()
            .issuer(self.idp.issuer())
            .audience(self.idp.audience())
            .clock(self.clock.clone())
    }

    fn now(&self) -> i64 {
        use tower_bearer::Clock as _;
        self.clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// A token bound to the setup's key.
    fn bound(&self) -> String {
        self.idp.token().bound_to(&self.key).sign()
    }

    /// A fresh proof for `GET /me` with `token`, made now.
    fn proof(&self, token: &str) -> String {
        self.key
            .proof("GET", HTU, token)
            .issued_at(self.now())
            .sign()
    }
}

fn api(auth: &BearerAuthLayer) -> Router {
    Router::new()
        .route(
            "/me",
            get(|p: Principal| async move { p.subject().unwrap_or_default().to_owned() }),
        )
        .route("/me", post(|| async { "posted" }))
        .route(
            "/strict",
            get(|| async { "strict" }).route_layer(auth.require_dpop()),
        )
        .layer(auth.clone())
}

struct Answer {
    status: StatusCode,
    challenges: Vec<String>,
    nonce: Option<String>,
}

async fn call(app: &Router, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "api.test");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    Answer {
        status: res.status(),
        challenges: res
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect(),
        nonce: res
            .headers()
            .get("dpop-nonce")
            .map(|v| v.to_str().unwrap().to_owned()),
    }
}

async fn get_me(app: &Router, token: &str, proof: Option<&str>) -> Answer {
    with_dpop(app, "/me", token, proof.as_slice()).await
}

/// `GET path` with `token` in the DPoP scheme and one `DPoP` header per
/// proof.
async fn with_dpop(app: &Router, path: &str, token: &str, proofs: &[&str]) -> Answer {
    let auth = format!("DPoP {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend(proofs.iter().map(|p| ("dpop", *p)));
    call(app, "GET", path, &headers).await
}

fn error_of(a: &Answer) -> &str {
    &a.challenges[0]
}

#[tokio::test]
async fn a_bound_token_with_a_fresh_proof_is_accepted_and_a_replayed_proof_refused() {
    let s = setup().await;
    let auth = s.builder().build().unwrap();
    let app = api(&auth);
    let token = s.bound();
    let proof = s.proof(&token);
    assert_eq!(
        get_me(&app, &token, Some(&proof)).await.status,
        StatusCode::OK
    );
    // The same token again is a verified-token cache hit; its proof is
    // still checked, and a replayed one refused.
    let replay = get_me(&app, &token, Some(&proof)).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert!(
        error_of(&replay).starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{:?}",
        replay.challenges
    );
    assert!(error_of(&replay).contains("used before"));
    assert_eq!(
        get_me(&app, &token, Some(&s.proof(&token))).await.status,
        StatusCode::OK
    );
    assert_eq!(auth.stats().signatures_verified, 1, "the token, once");
}

#[tokio::test]
async fn a_proof_for_another_request_token_or_key_is_refused() {
    let s = setup().await;
    let app = api(&s.builder().build().unwrap());
    let token = s.bound();
    let now = s.now();
    let other_key = DpopKey::generate(Algorithm::ES256).unwrap();
    let cases = [
        (
            "another method",
            s.key.proof("POST", HTU, &token).issued_at(now).sign(),
        ),
        (
            "another URI",
            s.key
                .proof("GET", "https://api.test/other", &token)
                .issued_at(now)
                .sign(),
        ),
        (
            "another host",
            s.key
                .proof("GET", "https://evil.test/me", &token)
                .issued_at(now)
                .sign(),
        ),
        (
            "another token",
            s.key
                .proof("GET", HTU, "another-token")
                .issued_at(now)
                .sign(),
        ),
        (
            "another key",
            other_key.proof("GET", HTU, &token).issued_at(now).sign(),
        ),
        (
            "no ath",
            s.key
                .proof("GET", HTU, &token)
                .issued_at(now)
                .without("ath")
                .sign(),
        ),
        (
            "no jti",
            s.key
                .proof("GET", HTU, &token)
                .issued_at(now)
                .without("jti")
                .sign(),
        ),
        (
            "too old",
            s.key.proof("GET", HTU, &token).issued_at(now - 61).sign(),
        ),
        (
            "from the future",
            s.key.proof("GET", HTU, &token).issued_at(now + 61).sign(),
        ),
        (
            "wrong typ",
            s.key
                .proof("GET", HTU, &token)
                .issued_at(now)
                .header("typ", "jwt")
                .sign(),
        ),
        (
            "symmetric alg",
            s.key
                .proof("GET", HTU, &token)
                .issued_at(now)
                .header("alg", "HS256")
                .sign(),
        ),
        (
            "a private key in jwk",
            s.key
                .proof("GET", HTU, &token)
                .issued_at(now)
                .header("jwk", {
                    let mut jwk = s.key.public_jwk().clone();
                    jwk["d"] = json!("AAAA");
                    jwk
                })
                .sign(),
        ),
        ("not a JWS", "not-a-proof".to_owned()),
    ];
    for (case, proof) in cases {
        let a = get_me(&app, &token, Some(&proof)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{case}");
        assert!(
            error_of(&a).starts_with("DPoP error=\"invalid_dpop_proof\""),
            "{case}: {:?}",
            a.challenges
        );
        assert!(!error_of(&a).contains(&token), "{case}: never the token");
    }
    // Within the window either way: accepted.
    for iat in [now - 60, now + 60] {
        let proof = s.key.proof("GET", HTU, &token).issued_at(iat).sign();
        assert_eq!(
            get_me(&app, &token, Some(&proof)).await.status,
            StatusCode::OK
        );
    }
    // EdDSA by either name: RFC 9864's Ed25519 too.
    let ed = DpopKey::generate(Algorithm::EdDSA).unwrap();
    let bound_ed = s.idp.token().bound_to(&ed).sign();
    for name in ["EdDSA", "Ed25519"] {
        let proof = ed
            .proof("GET", HTU, &bound_ed)
            .issued_at(now)
            .header("alg", name)
            .sign();
        assert_eq!(
            get_me(&app, &bound_ed, Some(&proof)).await.status,
            StatusCode::OK,
            "{name}"
        );
    }
    // The URI is compared after normalisation; the query is not part of it.
    let proof = s
        .key
        .proof("GET", "HTTPS://API.test:443/%6De", &token)
        .issued_at(now)
        .sign();
    let a = with_dpop(&app, "/me?page=2", &token, &[&proof]).await;
    assert_eq!(a.status, StatusCode::OK);
    // A request path that normalisation would change is not one a proof
    // can name: the router sees it as sent.
    for path in ["/orders/../me", "/orders/%2E%2e/me", "/./me"] {
        let a = with_dpop(&app, path, &token, &[&s.proof(&token)]).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            error_of(&a).contains("dot segments"),
            "{path}: {:?}",
            a.challenges
        );
    }
    // Two DPoP headers: refused.
    let (p1, p2) = (s.proof(&token), s.proof(&token));
    let a = with_dpop(&app, "/me", &token, &[&p1, &p2]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(error_of(&a).contains("exactly one DPoP header"));
}

#[tokio::test]
async fn a_bound_token_is_refused_as_bearer_or_without_a_proof_whatever_the_configuration() {
    let s = setup().await;
    let token = s.bound();
    for dpop in [Dpop::allowed(), Dpop::required(), Dpop::off()] {
        let app = api(&s.builder().dpop(dpop.clone()).build().unwrap());
        let bearer = call(
            &app,
            "GET",
            "/me",
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
        assert_eq!(bearer.status, StatusCode::UNAUTHORIZED, "{dpop:?}");
        let without = get_me(&app, &token, None).await;
        assert_eq!(without.status, StatusCode::UNAUTHORIZED, "{dpop:?}");
    }
    // A bearer token sent with the DPoP scheme is refused too.
    let app = api(&s.builder().build().unwrap());
    let unbound = s.idp.token().sign();
    let a = get_me(&app, &unbound, Some(&s.proof(&unbound))).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(error_of(&a).contains("not bound to a DPoP key"));
}

#[tokio::test]
async fn challenges_offer_both_schemes_with_the_error_in_the_one_it_concerns() {
    let s = setup().await;
    let app = api(&s.builder().build().unwrap());
    let algs = "algs=\"ES256 ES384 EdDSA PS256 RS256\"";
    let none = call(&app, "GET", "/me", &[]).await;
    assert_eq!(
        none.challenges,
        ["Bearer".to_owned(), format!("DPoP {algs}")]
    );

    let bad_bearer = call(&app, "GET", "/me", &[("authorization", "Bearer a.b.c")]).await;
    assert!(bad_bearer.challenges[0].starts_with("Bearer error=\"invalid_token\""));
    assert_eq!(bad_bearer.challenges[1], format!("DPoP {algs}"));

    let bad_dpop = get_me(&app, "a.b.c", Some("x")).await;
    assert!(
        bad_dpop.challenges[0].starts_with("DPoP error=\"invalid_token\""),
        "{:?}",
        bad_dpop.challenges
    );
    assert!(bad_dpop.challenges[0].ends_with(algs));
    assert_eq!(bad_dpop.challenges[1], "Bearer");

    // Required: the DPoP challenge alone.
    let strict = app_strict(&s);
    let a = call(
        &strict,
        "GET",
        "/me",
        &[("authorization", &format!("Bearer {}", s.idp.token().sign()))],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.challenges.len(), 1, "{:?}", a.challenges);
    assert!(a.challenges[0].starts_with("DPoP error=\"invalid_token\""));

    // Off: Bearer alone, as before DPoP.
    let off = api(&s.builder().dpop(Dpop::off()).build().unwrap());
    assert_eq!(call(&off, "GET", "/me", &[]).await.challenges, ["Bearer"]);
}

fn app_strict(s: &Setup) -> Router {
    api(&s.builder().dpop(Dpop::required()).build().unwrap())
}

#[tokio::test]
async fn dpop_can_be_required_by_the_validator_or_by_one_route() {
    let s = setup().await;
    let bearer = s.idp.token().sign();
    let bound = s.bound();
    let strict = app_strict(&s);
    let a = call(
        &strict,
        "GET",
        "/me",
        &[("authorization", &format!("Bearer {bearer}"))],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get_me(&strict, &bound, Some(&s.proof(&bound))).await.status,
        StatusCode::OK
    );

    let app = api(&s.builder().build().unwrap());
    let with_bearer = |path: &'static str| {
        let app = app.clone();
        let bearer = bearer.clone();
        async move {
            call(
                &app,
                "GET",
                path,
                &[("authorization", &format!("Bearer {bearer}"))],
            )
            .await
        }
    };
    assert_eq!(with_bearer("/me").await.status, StatusCode::OK);
    let a = with_bearer("/strict").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        a.challenges[0].starts_with("DPoP error=\"invalid_token\""),
        "{:?}",
        a.challenges
    );
    let proof = s
        .key
        .proof("GET", "https://api.test/strict", &bound)
        .issued_at(s.now())
        .sign();
    let a = with_dpop(&app, "/strict", &bound, &[&proof]).await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn server_nonces_are_required_rotated_and_live_through_one_rotation() {
    let s = setup().await;
    let secret = [7u8; 32];
    let app = api(&s
        .builder()
        .dpop(Dpop::allowed().nonces(secret, Duration::from_secs(60)))
        .build()
        .unwrap());
    let token = s.bound();
    let first = get_me(&app, &token, Some(&s.proof(&token))).await;
    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    assert!(first.challenges[0].starts_with("DPoP error=\"use_dpop_nonce\""));
    let nonce = first.nonce.expect("a DPoP-Nonce header");
    let with_nonce = |nonce: &str| {
        s.key
            .proof("GET", HTU, &token)
            .issued_at(s.now())
            .nonce(nonce)
            .sign()
    };
    assert_eq!(
        get_me(&app, &token, Some(&with_nonce(&nonce))).await.status,
        StatusCode::OK
    );
    // One rotation on, the nonce still works, and the answer brings the
    // new one; two on, the old one is refused with a new one.
    s.clock.advance(Duration::from_secs(60));
    let ok = get_me(&app, &token, Some(&with_nonce(&nonce))).await;
    assert_eq!(ok.status, StatusCode::OK);
    let rotated = ok.nonce.expect("a DPoP-Nonce on success");
    assert_ne!(rotated, nonce);
    s.clock.advance(Duration::from_secs(60));
    let stale = get_me(&app, &token, Some(&with_nonce(&nonce))).await;
    assert!(stale.challenges[0].starts_with("DPoP error=\"use_dpop_nonce\""));
    let fresh = stale.nonce.unwrap();
    assert!(fresh != nonce && fresh != rotated, "a rotation later still");
    assert_eq!(
        get_me(&app, &token, Some(&with_nonce(&fresh))).await.status,
        StatusCode::OK
    );
    // A made-up nonce is no nonce.
    assert!(
        get_me(&app, &token, Some(&with_nonce("bm9uY2U")))
            .await
            .challenges[0]
            .contains("use_dpop_nonce")
    );
}

#[tokio::test]
async fn the_proof_names_the_public_origin_or_the_host_with_the_configured_scheme() {
    let s = setup().await;
    let token = s.bound();
    let proof_for = |htu: &str| s.key.proof("GET", htu, &token).issued_at(s.now()).sign();
    let status = |app: Router, proof: String, extra: Vec<(&'static str, &'static str)>| {
        let token = token.clone();
        async move {
            let auth = format!("DPoP {token}");
            let mut headers = vec![("authorization", auth.as_str()), ("dpop", proof.as_str())];
            headers.extend(extra);
            call(&app, "GET", "/me", &headers).await.status
        }
    };
    let public = api(&s
        .builder()
        .public_origin("https://api.example.com")
        .build()
        .unwrap());
    assert_eq!(
        status(
            public.clone(),
            proof_for("https://api.example.com/me"),
            vec![]
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        status(public, proof_for(HTU), vec![]).await,
        StatusCode::UNAUTHORIZED,
        "the Host is not the origin"
    );

    let plain = api(&s.builder().request_scheme("http").build().unwrap());
    assert_eq!(
        status(plain.clone(), proof_for("http://api.test/me"), vec![]).await,
        StatusCode::OK
    );
    assert_eq!(
        status(plain, proof_for(HTU), vec![]).await,
        StatusCode::UNAUTHORIZED
    );

    // X-Forwarded-* only when trusted.
    let forwarded = vec![
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "edge.test"),
    ];
    let default = api(&s.builder().build().unwrap());
    assert_eq!(
        status(default, proof_for("http://edge.test/me"), forwarded.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    let trusting = api(&s.builder().trust_forwarded_headers().build().unwrap());
    assert_eq!(
        status(trusting, proof_for("http://edge.test/me"), forwarded).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_full_replay_cache_refuses_new_proofs() {
    let s = setup().await;
    let app = api(&s
        .builder()
        .dpop(Dpop::allowed().max_replay_entries(2))
        .build()
        .unwrap());
    let token = s.bound();
    for _ in 0..2 {
        assert_eq!(
            get_me(&app, &token, Some(&s.proof(&token))).await.status,
            StatusCode::OK
        );
    }
    let a = get_me(&app, &token, Some(&s.proof(&token))).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.challenges[0].contains("too many DPoP proofs"));
    // Once the remembered proofs are past any window, there is room again.
    s.clock.advance(Duration::from_secs(241));
    assert_eq!(
        get_me(&app, &token, Some(&s.proof(&token))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_introspected_token_bound_to_a_key_needs_its_proof() {
    let s = setup().await;
    let (id, secret) = TestIssuer::INTROSPECTION_CLIENT;
    let auth = s
        .builder()
        .introspection(
            tower_bearer::ClientId::new(id),
            tower_bearer::ClientSecret::new(secret),
        )
        .build()
        .unwrap();
    let app = api(&auth.clone().into());
    let opaque = s.idp.token().bound_to(&s.key).opaque();
    assert_eq!(
        get_me(&app, &opaque, Some(&s.proof(&opaque))).await.status,
        StatusCode::OK
    );
    let bearer = call(
        &app,
        "GET",
        "/me",
        &[("authorization", &format!("Bearer {opaque}"))],
    )
    .await;
    assert_eq!(bearer.status, StatusCode::UNAUTHORIZED);
    let other = DpopKey::generate(Algorithm::ES256).unwrap();
    let proof = other.proof("GET", HTU, &opaque).issued_at(s.now()).sign();
    assert_eq!(
        get_me(&app, &opaque, Some(&proof)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_certificate_bound_token_needs_that_certificate() {
    let s = setup().await;
    let cert = ClientCertificate::from_der(&[0x30, 0x03, 0x02, 0x01, 0x07][..]);
    let other = ClientCertificate::from_der(&[0x30, 0x03, 0x02, 0x01, 0x08][..]);
    let token = s.idp.token().bound_to_certificate(&cert).sign();
    let app = api(&s.builder().build().unwrap());
    let with = |cert: Option<ClientCertificate>| {
        let app = app.clone();
        let token = token.clone();
        async move {
            let mut req = Request::get("/me")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            if let Some(cert) = cert {
                req.extensions_mut().insert(cert);
            }
            app.oneshot(req).await.unwrap().status()
        }
    };
    assert_eq!(with(Some(cert.clone())).await, StatusCode::OK);
    assert_eq!(with(Some(other)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(with(None).await, StatusCode::UNAUTHORIZED);

    // From a trusted proxy's header, only when configured.
    let encoded = common::url_encoded(&common::pem_certificate(cert.der()));
    let header = CertificateHeader::new("x-client-cert", CertificateFormat::UrlEncodedPem).unwrap();
    let proxied = api(&s
        .builder()
        .client_certificate_header(header)
        .build()
        .unwrap());
    let status = |app: &Router| {
        let app = app.clone();
        let token = token.clone();
        let encoded = encoded.clone();
        async move {
            call(
                &app,
                "GET",
                "/me",
                &[
                    ("authorization", &format!("Bearer {token}")),
                    ("x-client-cert", &encoded),
                ],
            )
            .await
            .status
        }
    };
    assert_eq!(status(&proxied).await, StatusCode::OK);
    let unconfigured = api(&s.builder().build().unwrap());
    assert_eq!(
        status(&unconfigured).await,
        StatusCode::UNAUTHORIZED,
        "the header is not trusted"
    );
}

#[test]
fn inconsistent_sender_constraint_settings_are_refused() {
    let base = || {
        BearerAuthLayer::builder()
            .issuer("https://idp.example.com")
            .audience("api")
    };
    for (case, result) in [
        (
            "no algorithms",
            base().dpop(Dpop::allowed().algorithms([])).build(),
        ),
        (
            "HS256",
            base()
                .dpop(Dpop::allowed().algorithms([Algorithm::HS256]))
                .build(),
        ),
        (
            "short secret",
            base()
                .dpop(Dpop::allowed().nonces([1u8; 8], Duration::from_secs(60)))
                .build(),
        ),
        (
            "no rotation",
            base()
                .dpop(Dpop::allowed().nonces([1u8; 32], Duration::ZERO))
                .build(),
        ),
        (
            "a path",
            base().public_origin("https://api.example.com/v1").build(),
        ),
        (
            "not https",
            base().public_origin("http://api.example.com").build(),
        ),
        ("a scheme", base().request_scheme("ftp").build()),
    ] {
        assert!(
            matches!(result, Err(ConfigError::SenderConstraint(_))),
            "{case}: {result:?}"
        );
    }
    assert!(matches!(
        base()
            .dpop(Dpop::allowed().iat_window(Duration::from_secs(3600)))
            .build(),
        Err(ConfigError::TooLong { .. })
    ));
}

#[tokio::test]
async fn sender_constraint_claims_are_read_strictly() {
    let s = setup().await;
    let auth = s.builder().build().unwrap();
    for cnf in [
        json!({ "jwk": { "kty": "EC" } }),
        json!({ "kid": "k1" }),
        json!({}),
        json!({ "jkt": 5 }),
        json!("jkt"),
        json!({ "jkt": s.key.thumbprint(), "x5u": "https://evil.test/cert" }),
    ] {
        let token = s.idp.token().claim("cnf", cnf.clone()).sign();
        assert_eq!(
            auth.validate(&token).await.unwrap_err(),
            tower_bearer::AuthError::InvalidToken(tower_bearer::TokenError::InvalidClaim("cnf")),
            "{cnf}"
        );
    }
    // Bound to a key and a certificate: both are needed.
    let cert = ClientCertificate::from_der(&[0x30, 0x03, 0x02, 0x01, 0x07][..]);
    let token = s
        .idp
        .token()
        .claim(
            "cnf",
            json!({ "jkt": s.key.thumbprint(), "x5t#S256": cert.thumbprint() }),
        )
        .sign();
    let app = api(&auth);
    let proof = s.proof(&token);
    assert_eq!(
        get_me(&app, &token, Some(&proof)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let mut req = Request::get("/me")
        .header(header::HOST, "api.test")
        .header(header::AUTHORIZATION, format!("DPoP {token}"))
        .header("dpop", s.proof(&token))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(cert);
    assert_eq!(app.oneshot(req).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn validate_refuses_bound_tokens_and_validate_request_checks_their_binding() {
    let s = setup().await;
    let auth = s.builder().build().unwrap();
    let token = s.bound();
    assert_eq!(
        auth.validate(&token).await.unwrap_err(),
        tower_bearer::AuthError::InvalidToken(tower_bearer::TokenError::DpopBound)
    );
    let cert = ClientCertificate::from_der(&[0x30, 0x03, 0x02, 0x01, 0x07][..]);
    let cert_bound = s.idp.token().bound_to_certificate(&cert).sign();
    assert_eq!(
        auth.validate(&cert_bound).await.unwrap_err(),
        tower_bearer::AuthError::InvalidToken(tower_bearer::TokenError::CertificateMismatch)
    );
    let request = |proof: Option<String>| {
        let mut req = Request::get("/me")
            .header(header::HOST, "api.test")
            .header(header::AUTHORIZATION, format!("DPoP {token}"));
        if let Some(p) = proof {
            req = req.header("dpop", p);
        }
        req.body(()).unwrap()
    };
    let p = auth
        .validate_request(&request(Some(s.proof(&token))))
        .await
        .unwrap();
    assert_eq!(
        p.confirmation().and_then(|c| c.jkt.as_deref()),
        Some(s.key.thumbprint())
    );
    assert!(auth.validate_request(&request(None)).await.is_err());
    let mut with_cert = Request::get("/me")
        .header(header::AUTHORIZATION, format!("Bearer {cert_bound}"))
        .body(())
        .unwrap();
    assert!(auth.validate_request(&with_cert).await.is_err());
    with_cert.extensions_mut().insert(cert);
    auth.validate_request(&with_cert).await.unwrap();
}
