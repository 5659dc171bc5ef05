//! Step-up authentication (RFC 9470) through axum: routes that need an
//! `acr` from a list and an `auth_time` within a maximum age, and the
//! `insufficient_user_authentication` answer that tells the client what to
//! ask the user for. Time is a `ManualClock`.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower_bearer::{AuthError, BearerAuthLayer, StepUp, TokenError};

fn app(auth: &BearerAuthLayer) -> Router {
    Router::new()
        .route(
            "/mfa",
            get(|| async { "mfa" }).route_layer(auth.require_acr(["phr", "urn:example:mfa"])),
        )
        .route(
            "/sensitive",
            get(|| async { "sensitive" }).route_layer(auth.require_step_up(
                StepUp::acr_values(["phr"]).and_max_age(Duration::from_secs(600)),
            )),
        )
        .layer(auth.clone())
}

async fn fetch(app: &Router, path: &str, token: &str) -> (StatusCode, Option<String>, Value) {
    let req = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let a = common::send(app, req).await;
    (a.status, a.challenge, a.body)
}

#[tokio::test]
async fn routes_ask_for_an_acr_and_a_recent_login_and_say_what_they_need() {
    let (clock, idp) = common::issuer_on_a_manual_clock().await;
    let app = app(&common::validator_on(&idp, &clock));
    let now = 1_800_000_000i64;
    let token = |acr: Option<&str>, auth_time: Option<i64>| {
        let mut t = idp.token();
        if let Some(a) = acr {
            t = t.claim("acr", a);
        }
        if let Some(at) = auth_time {
            t = t.claim("auth_time", at);
        }
        t.sign()
    };

    assert_eq!(
        fetch(&app, "/mfa", &token(Some("phr"), None)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        fetch(&app, "/mfa", &token(Some("urn:example:mfa"), None))
            .await
            .0,
        StatusCode::OK
    );
    for weak in [token(Some("pwd"), None), token(None, None)] {
        let (status, challenge, body) = fetch(&app, "/mfa", &weak).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenge.as_deref(),
            Some(
                "Bearer error=\"insufficient_user_authentication\", error_description=\"the user's authentication is not strong or recent enough for this request\", acr_values=\"phr urn:example:mfa\""
            )
        );
        assert_eq!(body["error"], "insufficient_user_authentication");
        assert_eq!(body["acr_values"], "phr urn:example:mfa");
        assert!(body.get("max_age").is_none());
    }

    // Both: the acr and a login within 600 s.
    assert_eq!(
        fetch(&app, "/sensitive", &token(Some("phr"), Some(now - 600)))
            .await
            .0,
        StatusCode::OK
    );
    for stale in [
        token(Some("phr"), Some(now - 601)),
        token(Some("phr"), None),
        token(Some("pwd"), Some(now)),
    ] {
        let (status, challenge, body) = fetch(&app, "/sensitive", &stale).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let challenge = challenge.unwrap();
        assert!(
            challenge.ends_with("acr_values=\"phr\", max_age=\"600\""),
            "{challenge}"
        );
        assert_eq!(body["max_age"], json!(600));
        assert_eq!(body["acr_values"], "phr");
    }
    // The login ages with the clock.
    let fresh = token(Some("phr"), Some(now));
    assert_eq!(fetch(&app, "/sensitive", &fresh).await.0, StatusCode::OK);
    clock.advance(Duration::from_secs(601));
    assert_eq!(
        fetch(&app, "/sensitive", &fresh).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn acr_and_auth_time_of_the_wrong_type_are_invalid_tokens() {
    let (clock, idp) = common::issuer_on_a_manual_clock().await;
    let auth = common::validator_on(&idp, &clock);
    for (claim, value, name) in [
        ("acr", json!(2), "acr"),
        ("acr", json!(["phr"]), "acr"),
        ("auth_time", json!("1800000000"), "auth_time"),
    ] {
        let token = idp.token().claim(claim, value.clone()).sign();
        assert_eq!(
            auth.validate(&token).await.unwrap_err(),
            AuthError::InvalidToken(TokenError::InvalidClaim(name)),
            "{claim}: {value}"
        );
    }
    let p = auth
        .validate(
            &idp.token()
                .claim("acr", "phr")
                .claim("auth_time", 1_799_999_000)
                .sign(),
        )
        .await
        .unwrap();
    assert_eq!(p.claims().acr.as_deref(), Some("phr"));
    assert_eq!(p.claims().auth_time, Some(1_799_999_000));
}
