//! gRPC over real loopback HTTP/2: the built `grpc_server` example called
//! with a tonic client, with bare `h2` frames, and with Python's grpcio
//! (gRPC C-core, an implementation that shares no code with tonic); and the
//! layer's gRPC answers next to its HTTP ones.
//!
//! `./scripts/test` installs grpcio into a venv under `target/` from the
//! hash-pinned `tests/python/requirements.txt` and sets
//! `TOWER_BEARER_PYTHON` to its Python; a plain `cargo test` without it
//! prints `skipped: grpcio not installed`.

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
use tower_bearer::{AuthError, Principal, TokenError};

struct Server {
    _child: Child,
    client: HealthClient<Channel>,
    /// `127.0.0.1:PORT`.
    addr: String,
}

async fn grpc_server(idp: &TestIssuer) -> Server {
    grpc_server_for(idp.issuer(), idp.audience()).await
}

async fn grpc_server_for(issuer: &str, audience: &str) -> Server {
    let mut child = Command::new(common::example("grpc_server"))
        .env_clear()
        .env("ISSUER", issuer)
        .env("AUDIENCE", audience)
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
    let addr = url.strip_prefix("http://").unwrap().to_owned();
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    Server {
        _child: child,
        client: HealthClient::new(channel),
        addr,
    }
}

/// What a gRPC call looked like on the wire, read with bare `h2`.
struct Frames {
    head: http::response::Parts,
    /// The HEADERS frame carried END_STREAM: a trailers-only answer.
    headers_end_stream: bool,
    /// Every DATA frame that followed, empty ones included.
    data: Vec<bytes::Bytes>,
    trailers: Option<http::HeaderMap>,
}

/// Sends one unary gRPC request (an empty message) to `path` over a fresh
/// HTTP/2 connection and records the frames of the answer.
async fn h2_call(addr: &str, path: &str, token: Option<&str>) -> Frames {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut req = Request::post(format!("http://{addr}{path}"))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let (response, mut send) = client.send_request(req.body(()).unwrap(), false).unwrap();
    // An empty HealthCheckRequest: uncompressed, zero bytes long.
    send.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let (head, mut body) = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .unwrap()
        .unwrap()
        .into_parts();
    // Settled when the head arrives: h2 closes the receiving side with the
    // HEADERS frame that ends the stream, and queues any DATA frame, even
    // an empty one that ends it.
    let headers_end_stream = body.is_end_stream();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        data.push(chunk.unwrap());
    }
    let trailers = body.trailers().await.unwrap();
    Frames {
        head,
        headers_end_stream,
        data,
        trailers,
    }
}

/// Asserts a trailers-only refusal: one HEADERS frame that ends the stream,
/// HTTP 200, `grpc-status` `code`, `cache-control: no-store`.
fn assert_trailers_only(f: &Frames, code: &str, what: &str) {
    assert!(f.headers_end_stream, "{what}: HEADERS without END_STREAM");
    assert!(f.data.is_empty(), "{what}: DATA frames {:?}", f.data);
    assert!(f.trailers.is_none(), "{what}: a separate trailers frame");
    assert_eq!(f.head.status, StatusCode::OK, "{what}");
    assert_eq!(f.head.headers["grpc-status"], code, "{what}");
    assert_eq!(f.head.headers[header::CACHE_CONTROL], "no-store", "{what}");
    assert_eq!(
        f.head.headers[header::CONTENT_TYPE],
        "application/grpc",
        "{what}"
    );
}

const CHECK: &str = "/grpc.health.v1.Health/Check";
const WATCH: &str = "/grpc.health.v1.Health/Watch";

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
async fn sender_constrained_refusals_carry_both_challenges_as_metadata() {
    let idp = TestIssuer::start().await.unwrap();
    let mut s = grpc_server(&idp).await;
    let key = tower_bearer::testing::DpopKey::generate(tower_bearer::Algorithm::ES256).unwrap();
    let bound = idp.token().scope("read").bound_to(&key).sign();
    let challenges = |status: &tonic::Status| -> Vec<String> {
        status
            .metadata()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    let algs = "DPoP algs=\"ES256 ES384 EdDSA PS256 RS256\"";
    // A DPoP-bound token sent as a bearer token.
    let status = s.client.check(check(Some(&bound))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        challenges(&status),
        [
            "Bearer error=\"invalid_token\", error_description=\"the token is bound to a DPoP key: send it with the DPoP scheme and a proof\"".to_owned(),
            algs.to_owned(),
        ]
    );
    // With the DPoP scheme and no proof: the error in the DPoP challenge.
    let mut req = check(None);
    req.metadata_mut()
        .insert("authorization", format!("DPoP {bound}").parse().unwrap());
    let status = s.client.check(req).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        status.message(),
        "the request needs exactly one DPoP header"
    );
    let got = challenges(&status);
    assert!(
        got[0].starts_with("DPoP error=\"invalid_dpop_proof\"") && got[0].ends_with(&algs[5..]),
        "{got:?}"
    );
    assert_eq!(got[1], "Bearer");
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
    let auth = common::validator(&idp);
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

#[tokio::test]
async fn every_refusal_through_a_tonic_server_is_one_headers_frame_that_ends_the_stream() {
    let idp = TestIssuer::start().await.unwrap();
    let s = grpc_server(&idp).await;
    let read = idp.token().scope("read").sign();
    let expired = idp.token().scope("read admin").expires_in(-3600).sign();
    for (path, token, code, what) in [
        (CHECK, None, "16", "no token"),
        (CHECK, Some(expired.as_str()), "16", "expired"),
        (WATCH, None, "16", "no token, stream"),
        (WATCH, Some(read.as_str()), "7", "missing scope, stream"),
        (
            CHECK,
            Some(idp.token().sign().as_str()),
            "7",
            "missing scope",
        ),
    ] {
        let f = h2_call(&s.addr, path, token).await;
        assert_trailers_only(&f, code, what);
    }
    // The same method served: a DATA frame with the message, then trailers.
    let f = h2_call(&s.addr, CHECK, Some(&read)).await;
    assert!(!f.headers_end_stream && !f.data.is_empty());
    assert_eq!(f.trailers.unwrap()["grpc-status"], "0");

    let down = grpc_server_for("http://127.0.0.1:9", "api").await;
    let f = h2_call(&down.addr, CHECK, Some(&read)).await;
    assert_trailers_only(&f, "14", "issuer unreachable");
}

#[tokio::test]
async fn every_refusal_through_axum_is_one_headers_frame_that_ends_the_stream() {
    let idp = TestIssuer::start().await.unwrap();
    let auth = common::validator(&idp);
    let app = Router::new()
        .route(CHECK, post(|| async { "served" }))
        .layer(
            auth.method_scopes()
                .method(CHECK, tower_bearer::ScopePolicy::all(["read"])),
        )
        .layer(auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let expired = idp.token().scope("read").expires_in(-3600).sign();
    let no_scope = idp.token().sign();
    for (token, code, what) in [
        (None, "16", "no token"),
        (Some(expired.as_str()), "16", "expired"),
        (Some("not a token"), "16", "malformed"),
        (Some(no_scope.as_str()), "7", "missing scope"),
    ] {
        let f = h2_call(&addr, CHECK, token).await;
        assert_trailers_only(&f, code, what);
    }
}

/// What grpcio reported for one call (`tests/python/health_client.py`).
#[derive(Debug, serde::Deserialize, PartialEq, Eq)]
struct GrpcioResult {
    code: String,
    details: Option<String>,
    www_authenticate: Option<String>,
    status: Option<String>,
}

/// Runs the grpcio client against `addr` for `cases` (method, token).
async fn grpcio(
    python: &std::path::Path,
    addr: &str,
    cases: &[(&str, Option<&str>)],
) -> Vec<GrpcioResult> {
    let input: Vec<serde_json::Value> = cases
        .iter()
        .map(|(method, token)| serde_json::json!({ "method": method, "token": token }))
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/health_client.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stdin,
        serde_json::to_string(&input).unwrap().as_bytes(),
    )
    .await
    .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "health_client.py failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn grpc_c_core_reads_every_refusal_and_its_challenge() {
    let Some(python) = common::python() else {
        return;
    };
    let idp = TestIssuer::start().await.unwrap();
    let s = grpc_server(&idp).await;
    let read = idp.token().scope("read").sign();
    let admin = idp.token().scope("admin").sign();
    let expired = idp.token().scope("read admin").expires_in(-3600).sign();
    let key = tower_bearer::testing::DpopKey::generate(tower_bearer::Algorithm::ES256).unwrap();
    let bound = idp.token().scope("read").bound_to(&key).sign();
    let unsigned = format!(
        "{}.{}.",
        common::b64(r#"{"alg":"none","typ":"JWT"}"#),
        read.split('.').nth(1).unwrap()
    );
    let refused = |code: &str, details: &str, challenge: &str| GrpcioResult {
        code: code.into(),
        details: Some(details.into()),
        www_authenticate: Some(challenge.into()),
        status: None,
    };
    let invalid = |why: &str| {
        refused(
            "UNAUTHENTICATED",
            why,
            &format!("Bearer error=\"invalid_token\", error_description=\"{why}\""),
        )
    };
    let scope = |needed: &str| {
        refused(
            "PERMISSION_DENIED",
            "the token lacks a scope this request needs",
            &format!(
                "Bearer error=\"insufficient_scope\", error_description=\"the token lacks a scope this request needs\", scope=\"{needed}\""
            ),
        )
    };
    let served = GrpcioResult {
        code: "OK".into(),
        details: None,
        www_authenticate: None,
        status: Some("SERVING".into()),
    };
    let missing = refused("UNAUTHENTICATED", "a bearer token is required", "Bearer");
    let cases: Vec<((&str, Option<&str>), GrpcioResult)> = vec![
        (("Check", None), missing),
        (
            ("Watch", None),
            refused("UNAUTHENTICATED", "a bearer token is required", "Bearer"),
        ),
        (("Check", Some(&expired)), invalid("the token has expired")),
        (("Watch", Some(&expired)), invalid("the token has expired")),
        (
            ("Check", Some(&unsigned)),
            invalid("the token's signing algorithm is not accepted"),
        ),
        (
            ("Watch", Some(&unsigned)),
            invalid("the token's signing algorithm is not accepted"),
        ),
        (
            ("Check", Some(&bound)),
            invalid("the token is bound to a DPoP key: send it with the DPoP scheme and a proof"),
        ),
        (("Check", Some(&admin)), scope("read")),
        (("Watch", Some(&read)), scope("admin")),
        (("Check", Some(&read)), served),
        (
            ("Watch", Some(&admin)),
            GrpcioResult {
                code: "OK".into(),
                details: None,
                www_authenticate: None,
                status: Some("SERVING".into()),
            },
        ),
    ];
    let (calls, want): (Vec<_>, Vec<_>) = cases.into_iter().unzip();
    assert_eq!(grpcio(&python, &s.addr, &calls).await, want);

    let down = grpc_server_for("http://127.0.0.1:9", "api").await;
    let got = grpcio(
        &python,
        &down.addr,
        &[("Check", Some(&read)), ("Watch", Some(&read))],
    )
    .await;
    for r in got {
        assert_eq!(r.code, "UNAVAILABLE", "{r:?}");
        assert_eq!(
            r.details.as_deref(),
            Some("the token cannot be checked right now; retry later")
        );
    }
}

#[tokio::test]
async fn the_layer_can_wrap_a_single_service_given_to_add_service() {
    let idp = TestIssuer::start().await.unwrap();
    let auth = common::validator(&idp);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    // add_service needs NamedService, which the layers' services pass on.
    let guarded = tower::Layer::layer(
        &auth,
        tower::Layer::layer(
            &auth
                .method_scopes()
                .method(CHECK, tower_bearer::ScopePolicy::all(["read"])),
            health,
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(guarded)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let status = client.check(check(None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let token = idp.token().scope("read").sign();
    let res = client.check(check(Some(&token))).await.unwrap();
    assert_eq!(res.into_inner().status(), ServingStatus::Serving);
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
        tower_bearer::tonic::principal(&req).unwrap_err().code(),
        Code::Unauthenticated
    );
}
