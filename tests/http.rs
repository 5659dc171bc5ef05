//! The layer as an HTTP client sees it: RFC 6750 statuses and challenges,
//! per-route scopes, optional authentication, and keys fetched on demand.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use tower_bearer::testing::TestIssuer;
use tower_bearer::{
    AuthError, BearerAuthLayer, ManualClock, Principal, RequireScopesLayer, ScopePolicy,
};

use common::{Answer, send};

async fn call(app: &Router, path: &str, auth: &[&str]) -> Answer {
    let mut req = Request::get(path);
    for a in auth {
        req = req.header(header::AUTHORIZATION, *a);
    }
    send(app, req.body(Body::empty()).unwrap()).await
}

fn app(auth: &BearerAuthLayer) -> Router {
    Router::new()
        .route(
            "/me",
            get(|p: Principal| async move { p.subject().unwrap_or_default().to_owned() }),
        )
        .route(
            "/read",
            get(|| async { "read" }).route_layer(auth.require_all(["read"])),
        )
        .route(
            "/read-write",
            get(|| async { "rw" }).route_layer(auth.require_all(["read", "write"])),
        )
        .route(
            "/any",
            get(|| async { "any" }).route_layer(auth.require_any(["admin", "ops"])),
        )
        .layer(auth.clone())
}

async fn setup() -> (TestIssuer, BearerAuthLayer) {
    let idp = TestIssuer::start().await.unwrap();
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .build()
        .unwrap();
    (idp, auth)
}

#[tokio::test]
async fn no_credentials_get_a_bare_bearer_challenge() {
    let (_idp, auth) = setup().await;
    let app = app(&auth);
    for creds in [&[][..], &["Basic dXNlcjpwYXNz"], &["Digest username=\"a\""]] {
        let a = call(&app, "/me", creds).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.challenge.as_deref(), Some("Bearer"), "{creds:?}");
        assert!(a.body.get("error").is_none());
    }
}

#[tokio::test]
async fn a_realm_is_named_in_every_challenge() {
    let idp = TestIssuer::start().await.unwrap();
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .realm("docs")
        .build()
        .unwrap();
    let a = call(&app(&auth), "/me", &[]).await;
    assert_eq!(a.challenge.as_deref(), Some("Bearer realm=\"docs\""));
    let a = call(&app(&auth), "/me", &["Bearer x.y.z"]).await;
    assert!(
        a.challenge
            .unwrap()
            .starts_with("Bearer realm=\"docs\", error=\"invalid_token\"")
    );
}

#[tokio::test]
async fn invalid_tokens_get_invalid_token_without_echoing_the_token() {
    let (idp, auth) = setup().await;
    let app = app(&auth);
    let expired = idp.token().expires_in(-3600).sign();
    let a = call(&app, "/me", &[&format!("Bearer {expired}")]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.challenge.as_deref(),
        Some("Bearer error=\"invalid_token\", error_description=\"the token has expired\"")
    );
    assert_eq!(
        a.body,
        json!({ "error": "invalid_token", "error_description": "the token has expired" })
    );

    let garbage = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
    let a = call(&app, "/me", &[&format!("Bearer {garbage}")]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let challenge = a.challenge.unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""),
        "{challenge}"
    );
    for part in garbage.split('.').filter(|p| !p.is_empty()) {
        assert!(!challenge.contains(part) && !a.body.to_string().contains(part));
    }
}

#[tokio::test]
async fn malformed_requests_get_invalid_request() {
    let (idp, auth) = setup().await;
    let app = app(&auth);
    let token = idp.token().sign();
    let challenge =
        |d: &str| format!("Bearer error=\"invalid_request\", error_description=\"{d}\"");
    for (creds, want) in [
        (
            vec!["Bearer".to_owned()],
            challenge("the Bearer credentials are empty"),
        ),
        (
            vec!["bearer    ".to_owned()],
            challenge("the Bearer credentials are empty"),
        ),
        (
            vec!["Bearer a b".to_owned()],
            challenge("the Bearer credentials are malformed"),
        ),
        (
            vec!["Bearer a\"b".to_owned()],
            challenge("the Bearer credentials are malformed"),
        ),
        (
            vec![format!("Bearer {token}"), format!("Bearer {token}")],
            challenge("the request has more than one Authorization header"),
        ),
    ] {
        let refs: Vec<&str> = creds.iter().map(String::as_str).collect();
        let a = call(&app, "/me", &refs).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{creds:?}");
        assert_eq!(a.challenge.as_deref(), Some(want.as_str()), "{creds:?}");
        assert_eq!(a.body["error"], "invalid_request");
    }
}

#[tokio::test]
async fn every_kind_of_bad_token_gets_its_exact_challenge() {
    let (idp, auth) = setup().await;
    let app = app(&auth);
    let good = idp.token().sign();
    let (input, sig) = good.rsplit_once('.').unwrap();
    let mut sig = common::unb64(sig);
    sig[0] ^= 0x80;
    let flipped = format!("{input}.{}", common::b64(&sig));
    let cases = [
        (
            "eyJhbGciOiJub25lIn0.e30.".to_owned(),
            "the token's signing algorithm is not accepted",
        ),
        (
            idp.token().expires_in(-3600).sign(),
            "the token has expired",
        ),
        (
            idp.token().claim("nbf", 4_000_000_000i64).sign(),
            "the token is not valid yet",
        ),
        (
            idp.token().claim("aud", "other").sign(),
            "the token is not meant for this audience",
        ),
        (
            idp.token().claim("iss", "https://evil.example").sign(),
            "the token was issued by an untrusted issuer",
        ),
        (
            idp.token().without("exp").sign(),
            "the token lacks a required claim",
        ),
        (
            idp.token().claim("exp", "soon").sign(),
            "the token has a malformed claim",
        ),
        (
            idp.token().header("typ", "dpop+jwt").sign(),
            "the token type is not accepted",
        ),
        (
            idp.token().header("crit", json!(["x"])).sign(),
            "the token uses an unsupported JWS extension",
        ),
        (
            idp.token().header("jku", "http://127.0.0.1:1/").sign(),
            "the token names a key source that is not trusted",
        ),
        (
            idp.token().header("kid", "nope").sign(),
            "the token was signed with an unknown key",
        ),
        (
            idp.token().header("alg", "ES256").sign(),
            "the token's algorithm does not match its key",
        ),
        (flipped, "the token signature is invalid"),
        ("a.b".to_owned(), "the token is not a well-formed JWT"),
        ("a.b.c.d.e".to_owned(), "encrypted tokens are not accepted"),
        ("a".repeat(17_000), "the token is too large"),
    ];
    for (token, description) in cases {
        let a = call(&app, "/me", &[&format!("Bearer {token}")]).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{description}");
        let want = format!("Bearer error=\"invalid_token\", error_description=\"{description}\"");
        assert_eq!(a.challenge.as_deref(), Some(want.as_str()));
        assert_eq!(
            a.body,
            json!({ "error": "invalid_token", "error_description": description })
        );
    }
}

#[tokio::test]
async fn insufficient_scope_names_what_is_missing() {
    let (idp, auth) = setup().await;
    let app = app(&auth);
    let read_only = format!("Bearer {}", idp.token().scope("read").sign());
    assert_eq!(
        call(&app, "/read", &[&read_only]).await.status,
        StatusCode::OK
    );

    let a = call(&app, "/read-write", &[&read_only]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        a.challenge.as_deref(),
        Some(
            "Bearer error=\"insufficient_scope\", error_description=\"the token lacks a scope this request needs\", scope=\"read write\""
        )
    );
    assert_eq!(a.body["scope"], "read write");

    let a = call(&app, "/any", &[&read_only]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.challenge.unwrap().ends_with("scope=\"admin ops\""));
    let ops = format!("Bearer {}", idp.token().scope("ops").sign());
    assert_eq!(call(&app, "/any", &[&ops]).await.status, StatusCode::OK);
    let both = format!(
        "Bearer {}",
        idp.token().claim("scp", json!(["write", "read"])).sign()
    );
    assert_eq!(
        call(&app, "/read-write", &[&both]).await.status,
        StatusCode::OK
    );
    // Substrings never match.
    let near = format!("Bearer {}", idp.token().scope("reader read:all").sign());
    assert_eq!(
        call(&app, "/read", &[&near]).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_principal_reaches_the_handler() {
    let (idp, auth) = setup().await;
    let token = format!("Bearer {}", idp.token().claim("sub", "alice").sign());
    let a = call(&app(&auth), "/me", &[&token]).await;
    assert_eq!(
        (a.status, a.body),
        (StatusCode::OK, Value::String("alice".into()))
    );
}

#[tokio::test]
async fn a_token_in_the_query_string_is_ignored() {
    let (idp, auth) = setup().await;
    let token = idp.token().sign();
    let a = call(&app(&auth), &format!("/me?access_token={token}"), &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.challenge.as_deref(), Some("Bearer"));
}

#[tokio::test]
async fn optional_mode_lets_anonymous_requests_through_but_not_bad_tokens() {
    let (idp, auth) = setup().await;
    let app = Router::new()
        .route(
            "/",
            get(|p: Option<Principal>| async move {
                p.and_then(|p| p.subject().map(str::to_owned))
                    .unwrap_or("anonymous".into())
            }),
        )
        .route(
            "/scoped",
            get(|| async { "x" }).route_layer(auth.require_all(["read"])),
        )
        .layer(auth.optional());
    let a = call(&app, "/", &[]).await;
    assert_eq!(
        (a.status, a.body),
        (StatusCode::OK, Value::String("anonymous".into()))
    );
    let a = call(&app, "/", &[&format!("Bearer {}", idp.token().sign())]).await;
    assert_eq!(
        (a.status, a.body),
        (StatusCode::OK, Value::String("test-user".into()))
    );
    let a = call(
        &app,
        "/",
        &[&format!("Bearer {}", idp.token().expires_in(-3600).sign())],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // A scope requirement still demands a token.
    let a = call(&app, "/scoped", &[]).await;
    assert_eq!(
        (a.status, a.challenge.as_deref()),
        (StatusCode::UNAUTHORIZED, Some("Bearer"))
    );
}

#[tokio::test]
async fn tokens_can_come_from_a_configured_cookie() {
    let idp = TestIssuer::start().await.unwrap();
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .token_cookie("access_token")
        .build()
        .unwrap();
    let req = Request::get("/me")
        .header(
            header::COOKIE,
            format!("theme=dark; access_token={}", idp.token().sign()),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app(&auth), req).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_error_hook_can_rewrite_responses() {
    let idp = TestIssuer::start().await.unwrap();
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .on_error(|err: &AuthError, mut res| {
            res.headers_mut().insert(
                "x-auth-error",
                err.error_code().unwrap_or("none").parse().unwrap(),
            );
            res
        })
        .build()
        .unwrap();
    let res = app(&auth)
        .oneshot(
            Request::get("/read")
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", idp.token().sign()),
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.headers()["x-auth-error"], "insufficient_scope");
}

#[tokio::test]
async fn a_standalone_scope_layer_without_auth_refuses_with_401() {
    let app = Router::new()
        .route("/", get(|| async { "x" }))
        .layer(RequireScopesLayer::policy(ScopePolicy::all(["read"])));
    let a = call(&app, "/", &[]).await;
    assert_eq!(
        (a.status, a.challenge.as_deref()),
        (StatusCode::UNAUTHORIZED, Some("Bearer"))
    );
}

#[tokio::test]
async fn an_unreachable_issuer_answers_503_and_never_lets_a_token_through() {
    // Bind a port and close it: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let idp = TestIssuer::start().await.unwrap();
    let auth = BearerAuthLayer::builder()
        .issuer(format!("http://127.0.0.1:{port}"))
        .audience(idp.audience())
        .build()
        .unwrap();
    let token = idp
        .token()
        .claim("iss", format!("http://127.0.0.1:{port}"))
        .sign();
    let a = call(&app(&auth), "/me", &[&format!("Bearer {token}")]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(a.challenge.is_none());
    assert_eq!(a.body["error"], "temporarily_unavailable");
    assert!(auth.prefetch_keys().await.is_err());
}

#[tokio::test]
async fn retry_after_tells_when_the_next_fetch_may_happen() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let clock = ManualClock::now();
    let issuer = format!("http://127.0.0.1:{port}");
    let auth = BearerAuthLayer::builder()
        .issuer(&issuer)
        .audience("api")
        .clock(clock.clone())
        .refetch_cooldown(Duration::from_secs(30))
        .build()
        .unwrap();
    let idp = TestIssuer::start().await.unwrap();
    let token = idp.token().claim("iss", issuer).sign();
    let retry_after = |res: &http::Response<Body>| {
        res.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let req = || {
        Request::get("/me")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };

    let res = app(&auth).oneshot(req()).await.unwrap();
    assert_eq!(
        (res.status(), retry_after(&res)),
        (StatusCode::SERVICE_UNAVAILABLE, "30".to_owned())
    );
    clock.advance(Duration::from_secs(12));
    let res = app(&auth).oneshot(req()).await.unwrap();
    assert_eq!(
        retry_after(&res),
        "18",
        "the remaining cooldown, not a fixed value"
    );
}

#[tokio::test]
async fn shared_secret_tokens_work_before_and_without_a_jwks_fetch() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let secret = [9u8; 32];
    let auth = BearerAuthLayer::builder()
        .issuer(&issuer)
        .audience("api")
        .shared_secret(tower_bearer::Algorithm::HS256, secret.to_vec())
        .build()
        .unwrap();
    let claims = json!({ "iss": issuer, "aud": "api", "exp": 4_000_000_000i64 });
    let input = format!(
        "{}.{}",
        common::b64(r#"{"alg":"HS256"}"#),
        common::b64(claims.to_string())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
    let token = format!(
        "{input}.{}",
        common::b64(aws_lc_rs::hmac::sign(&key, input.as_bytes()))
    );
    assert!(
        auth.validate(&token).await.is_ok(),
        "the issuer is unreachable, the secret is not"
    );
    // An RS256 token still needs the issuer's keys: 503, not 401.
    let idp = TestIssuer::start().await.unwrap();
    let rs = idp.token().claim("iss", issuer).claim("aud", "api").sign();
    assert!(matches!(
        auth.validate(&rs).await,
        Err(AuthError::TemporarilyUnavailable { .. })
    ));
}
