//! What an operator sees besides metrics: the validation spans, carried to
//! OpenTelemetry by `tracing-opentelemetry` (the crate depends on
//! `tracing` alone), and the readiness probe.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tower_bearer::testing::{EndpointFault, TestIssuer};
use tower_bearer::{BearerAuthLayer, Builder, ClientId, ClientSecret};
use tracing_subscriber::layer::SubscriberExt as _;

/// Runs `requests` (tokens, `None` for none) through the layer `build`
/// makes of a builder for `idp`, with an OpenTelemetry pipeline as the thread's
/// subscriber, and returns the spans it exported.
async fn exported(
    idp: &TestIssuer,
    build: impl FnOnce(Builder) -> BearerAuthLayer,
    requests: &[Option<&str>],
) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tests")));
    // The test runs on one thread (tokio's current-thread runtime), so the
    // thread's subscriber sees every span.
    let _default = tracing::subscriber::set_default(subscriber);
    let auth = build(
        BearerAuthLayer::builder()
            .issuer(idp.issuer())
            .audience(idp.audience()),
    );
    let app = axum::Router::new()
        .route("/me", axum::routing::get(|| async { "ok" }))
        .layer(auth);
    for token in requests {
        let mut req = http::Request::get("/me");
        if let Some(token) = token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        common::send(&app, req.body(Body::empty()).unwrap()).await;
    }
    provider.force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

/// A span's attributes as strings.
fn attributes(span: &SpanData) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test]
async fn validation_spans_reach_opentelemetry_with_their_fields_and_never_the_token() {
    let idp = TestIssuer::start().await.unwrap();
    let valid = idp.token().claim("sub", "alice").sign();
    let expired = idp.token().expires_in(-600).sign();
    let spans = exported(
        &idp,
        |b| b.build().unwrap(),
        &[Some(&valid), Some(&valid), Some(&expired), None],
    )
    .await;

    let validations = named(&spans, "tower_bearer.validate");
    assert_eq!(validations.len(), 4, "one span per validation");
    let fields: Vec<_> = validations.iter().map(|s| attributes(s)).collect();
    let kid = idp.current_kid();
    for (f, cached) in [(&fields[0], "false"), (&fields[1], "true")] {
        assert_eq!(f["outcome"], "accepted");
        assert_eq!(f["reason"], "ok");
        assert_eq!(f["iss"], idp.issuer());
        assert_eq!(f["kid"], kid);
        assert_eq!(f["alg"], "RS256");
        assert_eq!(f["cached"], cached);
        assert!(!f.contains_key("enduser.id"), "the subject is opt-in");
    }
    assert_eq!(fields[2]["outcome"], "refused");
    assert_eq!(fields[2]["reason"], "expired");
    assert_eq!(fields[2]["iss"], idp.issuer());
    assert_eq!(fields[3]["reason"], "missing_token");
    assert!(!fields[3].contains_key("iss"));

    // The first request waited for the keys: the discovery and the key
    // fetch are children of its validation span.
    let validation = validations[0].span_context.span_id();
    for name in ["tower_bearer.discovery", "tower_bearer.key_fetch"] {
        let [fetch] = named(&spans, name)[..] else {
            panic!("one {name} span in {spans:?}");
        };
        assert_eq!(fetch.parent_span_id, validation, "{name}");
    }

    // No attribute anywhere holds a token, or any part of one.
    for span in &spans {
        for value in attributes(span).values() {
            for token in [&valid, &expired] {
                for part in token.split('.') {
                    assert!(!value.contains(part), "{} holds a token part", span.name);
                }
            }
        }
    }
}

#[tokio::test]
async fn an_introspection_call_is_a_span_inside_its_validation() {
    let idp = TestIssuer::start().await.unwrap();
    let opaque = idp.token().opaque();
    let (id, secret) = TestIssuer::INTROSPECTION_CLIENT;
    let introspecting = |b: Builder| {
        b.introspection(ClientId::new(id), ClientSecret::new(secret))
            .build()
            .unwrap()
            .into()
    };
    let spans = exported(&idp, introspecting, &[Some(&opaque)]).await;
    let [validation] = named(&spans, "tower_bearer.validate")[..] else {
        panic!("{spans:?}");
    };
    let fields = attributes(validation);
    assert_eq!(fields["outcome"], "accepted");
    assert_eq!(fields["cached"], "false");
    assert!(
        !fields.contains_key("alg"),
        "an introspected token has none"
    );
    let [call] = named(&spans, "tower_bearer.introspect")[..] else {
        panic!("{spans:?}");
    };
    assert_eq!(call.parent_span_id, validation.span_context.span_id());
    assert_eq!(
        attributes(call)["endpoint"],
        idp.introspection_endpoint(),
        "the endpoint, without credentials"
    );
}

#[tokio::test]
async fn the_subject_is_recorded_only_when_asked_for() {
    let idp = TestIssuer::start().await.unwrap();
    let token = idp.token().claim("sub", "alice").sign();
    let spans = exported(
        &idp,
        |b| b.trace_subject(true).build().unwrap(),
        &[Some(&token)],
    )
    .await;
    let [validation] = named(&spans, "tower_bearer.validate")[..] else {
        panic!("{spans:?}");
    };
    assert_eq!(attributes(validation)["enduser.id"], "alice");
}

#[tokio::test]
async fn readiness_follows_the_key_sets_of_the_configured_issuers() {
    use tower::ServiceExt as _;
    let (clock, idp) = common::issuer_on_a_manual_clock().await;
    let auth = common::validator_on(&idp, &clock);
    let probe = |method: http::Method| {
        let readiness = auth.readiness();
        async move {
            let req = http::Request::builder()
                .method(method)
                .uri("/readyz?verbose")
                .body(())
                .unwrap();
            let res = readiness.oneshot(req).await.unwrap();
            let body: serde_json::Value =
                serde_json::from_str(res.body()).unwrap_or(serde_json::Value::Null);
            (res.status(), res.headers().clone(), body)
        }
    };

    let (status, headers, body) = probe(http::Method::GET).await;
    assert_eq!(status, 503);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["ready"], false);
    assert_eq!(body["issuers"][0]["issuer"], idp.issuer());
    assert_eq!(body["issuers"][0]["reason"], "no key set fetched yet");

    auth.prefetch_keys().await.unwrap();
    let (status, _, body) = probe(http::Method::GET).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert!(body["issuers"][0]["keys"].as_u64().unwrap() >= 1);
    assert!(body["issuers"][0].get("reason").is_none());
    assert_eq!(probe(http::Method::HEAD).await.0, 200);
    let (status, headers, _) = probe(http::Method::POST).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET, HEAD");

    // The IdP goes away. Through the set's lifetime and the stale-if-error
    // window the keys serve; after them, not ready.
    idp.set_jwks_fault(EndpointFault::Status(503));
    let health = auth.key_health();
    let usable_until = health.usable_until.unwrap();
    clock.advance(
        usable_until
            .duration_since(clock_now(&clock))
            .unwrap()
            .saturating_sub(Duration::from_secs(1)),
    );
    assert_eq!(
        probe(http::Method::GET).await.0,
        200,
        "still within the window"
    );
    clock.advance(Duration::from_secs(2));
    let (status, _, body) = probe(http::Method::GET).await;
    assert_eq!(status, 503);
    assert_eq!(
        body["issuers"][0]["reason"],
        "the key set expired and no newer one was fetched"
    );
}

fn clock_now(clock: &tower_bearer::ManualClock) -> std::time::SystemTime {
    tower_bearer::Clock::now(clock)
}
