//! gRPC over real loopback HTTP/2 with a tonic client: the built
//! `grpc_server` example, and the layer's gRPC answers next to its HTTP
//! ones.

mod common;

use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use http::{Request, StatusCode, header};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tower::ServiceExt as _;
use tower_bearer::testing::TestIssuer;
use tower_bearer::{AuthError, BearerAuth, Principal, TokenError};

struct Server {
    _child: Child,
    client: HealthClient<Channel>,
}

async fn grpc_server(idp: &TestIssuer) -> Server {
    let mut child = Command::new(common::example("grpc_server"))
        .env_clear()
        .env("ISSUER", idp.issuer())
        .env("AUDIENCE", idp.audience())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .kill_on_drop(true)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = line.strip_prefix("listening on ").unwrap().to_owned();
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    Server {
        _child: child,
        client: HealthClient::new(channel),
    }
}

fn with_token<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    req
}

fn check(token: Option<&str>) -> tonic::Request<HealthCheckRequest> {
    with_token(
        HealthCheckRequest {
            service: String::new(),
        },
        token,
    )
}

#[tokio::test]
async fn a_valid_token_with_the_method_scope_is_served() {
    let idp = TestIssuer::start().await.unwrap();
    let mut s = grpc_server(&idp).await;
    let token = idp.token().scope("read").sign();
    let res = s.client.check(check(Some(&token))).await.unwrap();
    assert_eq!(res.into_inner().status(), ServingStatus::Serving);
}

#[tokio::test]
async fn missing_expired_and_forged_tokens_are_unauthenticated() {
    let idp = TestIssuer::start().await.unwrap();
    let mut s = grpc_server(&idp).await;
    let good = idp.token().scope("read").sign();
    let (input, _) = good.rsplit_once('.').unwrap();
    let forged = format!(
        "{input}.{}",
        idp.token()
            .scope("read admin")
            .sign()
            .rsplit_once('.')
            .unwrap()
            .1
    );
    let cases = [
        (None, "a bearer token is required", "Bearer".to_owned()),
        (
            Some(idp.token().scope("read").expires_in(-3600).sign()),
            "the token has expired",
            "Bearer error=\"invalid_token\", error_description=\"the token has expired\""
                .to_owned(),
        ),
        (
            Some(forged),
            "the token signature is invalid",
            "Bearer error=\"invalid_token\", error_description=\"the token signature is invalid\""
                .to_owned(),
        ),
    ];
    for (token, message, challenge) in cases {
        let status = s.client.check(check(token.as_deref())).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{message}");
        assert_eq!(status.message(), message);
        assert_eq!(
            status
                .metadata()
                .get("www-authenticate")
                .unwrap()
                .to_str()
                .unwrap(),
            challenge
        );
        if let Some(t) = &token {
            assert!(!status.message().contains(t.as_str()));
        }
    }
}

#[tokio::test]
async fn each_method_has_its_own_scope_and_the_stream_is_guarded_too() {
    let idp = TestIssuer::start().await.unwrap();
    let mut s = grpc_server(&idp).await;
    let admin_only = idp.token().scope("admin").sign();
    let read_only = idp.token().scope("read").sign();

    let status = s.client.check(check(Some(&admin_only))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status
            .metadata()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("scope=\"read\"")
    );

    let watch = |t: &str| {
        with_token(
            HealthCheckRequest {
                service: String::new(),
            },
            Some(t),
        )
    };
    let status = s.client.watch(watch(&read_only)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status
            .metadata()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("scope=\"admin\"")
    );

    let mut stream = s
        .client
        .watch(watch(&admin_only))
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
}

#[tokio::test]
async fn the_same_layer_answers_http_the_http_way_and_grpc_the_grpc_way() {
    let idp = TestIssuer::start().await.unwrap();
    let auth = BearerAuth::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/pkg.Svc/Method",
            post(|p: Principal| async move { p.subject().unwrap_or_default().to_owned() }),
        )
        .layer(
            auth.method_scopes()
                .method("/pkg.Svc/Method", tower_bearer::ScopePolicy::all(["x"])),
        )
        .layer(auth);
    let send = |grpc: bool, token: Option<String>| {
        let mut req = Request::post("/pkg.Svc/Method");
        if grpc {
            req = req.header(header::CONTENT_TYPE, "application/grpc+proto");
        }
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        app.clone().oneshot(req.body(Body::empty()).unwrap())
    };

    let res = send(false, None).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");

    let res = send(true, None).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "16");
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/grpc");
    assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer");
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    assert!(body.is_empty(), "trailers-only");

    let no_scope = idp.token().sign();
    let res = send(true, Some(no_scope.clone())).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "7");
    let res = send(false, Some(no_scope)).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let res = send(
        true,
        Some(idp.token().scope("x").claim("sub", "dora").sign()),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("grpc-status").is_none());
}

#[test]
fn auth_errors_become_tonic_statuses() {
    let s = tonic::Status::from(AuthError::InvalidToken(TokenError::Expired));
    assert_eq!(
        (s.code(), s.message()),
        (Code::Unauthenticated, "the token has expired")
    );
    let s = tonic::Status::from(AuthError::TemporarilyUnavailable {
        retry_after: Duration::from_secs(5),
    });
    assert_eq!(s.code(), Code::Unavailable);
    let req = tonic::Request::new(());
    assert_eq!(
        tower_bearer::grpc::principal(&req).unwrap_err().code(),
        Code::Unauthenticated
    );
}
