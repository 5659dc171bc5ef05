//! The Shared Signals receiver against an independent transmitter:
//! `tests/interop/transmitter.mjs` signs Security Event Tokens with the
//! `jose` package and delivers them by push (its own HTTP client) and by
//! poll (its own poll endpoint). Skipped like the other interop tests when
//! the Node packages are not installed.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::process::Command;
use tower::ServiceExt as _;
use tower_bearer::ssf::{SetError, SsfReceiver};
use tower_bearer::testing::TestIssuer;
use tower_bearer::{BearerAuthLayer, RevocationList, Revoke};

const AUDIENCE: &str = "https://api.example";
const PUSH_AUTHORIZATION: &str = "Bearer push-secret";
const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

struct Transmitter {
    _child: tokio::process::Child,
    issuer: String,
    http: reqwest::Client,
}

impl Transmitter {
    async fn start() -> Option<Self> {
        let dir = common::interop_dir()?;
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("transmitter.mjs")).env("PORT", "0");
        let (child, issuer) = common::listening(cmd).await;
        Some(Self {
            _child: child,
            issuer,
            http: reqwest::Client::new(),
        })
    }

    async fn call(&self, path: &str, body: Value) -> Value {
        let res = self
            .http
            .post(format!("{}{path}", self.issuer))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap()
    }

    /// `payload` signed as given, with header overrides (`typ`, `kid`,
    /// `alg`).
    async fn sign(&self, payload: Value, header: Value) -> String {
        let mut req = header;
        req["payload"] = payload;
        self.call("/test/sign", req).await["set"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A SET to this receiver with one event, its `jti` fresh.
    async fn event(&self, event: &str, payload: Value, sub_id: Option<Value>) -> String {
        let mut claims = set_claims(&self.issuer, json!({ event: payload }));
        if let Some(sub_id) = sub_id {
            claims["sub_id"] = sub_id;
        }
        self.sign(claims, json!({})).await
    }

    /// What the receiver at `endpoint` answered the transmitter's push.
    async fn push(&self, endpoint: &str, set: &str, authorization: Option<&str>) -> (u16, Value) {
        let mut req = json!({"endpoint": endpoint, "set": set});
        if let Some(a) = authorization {
            req["authorization"] = a.into();
        }
        let answer = self.call("/test/push", req).await;
        let status = u16::try_from(answer["status"].as_u64().unwrap()).unwrap();
        let body = answer["body"].as_str().unwrap();
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).unwrap()
        };
        (status, body)
    }
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn set_claims(iss: &str, events: Value) -> Value {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    json!({
        "iss": iss,
        "aud": AUDIENCE,
        "iat": now(),
        "jti": format!("set-{n}-{}", now()),
        "events": events,
    })
}

/// A receiver behind a loopback HTTP server, the validator its list
/// feeds, and the issuer of the access tokens.
struct Receiver {
    endpoint: String,
    receiver: SsfReceiver,
    auth: BearerAuthLayer,
    idp: TestIssuer,
}

impl Receiver {
    async fn start(transmitter: &Transmitter) -> Self {
        let idp = TestIssuer::start().await.unwrap();
        let revoked = RevocationList::new();
        let receiver = SsfReceiver::builder(&transmitter.issuer, AUDIENCE, revoked.clone())
            .token_issuer(idp.issuer())
            .build()
            .unwrap();
        let app = axum::Router::new().route_service(
            "/ssf/events",
            receiver.push_endpoint(PUSH_AUTHORIZATION).unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}/ssf/events", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let auth = BearerAuthLayer::builder()
            .issuer(idp.issuer())
            .audience(idp.audience())
            .revocation_list(revoked)
            .build()
            .unwrap();
        Self {
            endpoint,
            receiver,
            auth,
            idp,
        }
    }

    /// A token of `sub`, issued `age` seconds ago (negative: from now),
    /// with more claims.
    fn token(&self, sub: &str, age: i64, claims: &[(&str, &str)]) -> String {
        let mut t = self.idp.token().claim("sub", sub).claim("iat", now() - age);
        for (name, value) in claims {
            t = t.claim(name, *value);
        }
        t.sign()
    }

    async fn accepts(&self, token: &str) -> bool {
        self.auth.validate(token).await.is_ok()
    }
}

#[tokio::test]
async fn every_event_and_subject_format_revokes_what_it_names_and_no_later_token() {
    let Some(tx) = Transmitter::start().await else {
        return;
    };
    let rx = Receiver::start(&tx).await;
    let iss = rx.idp.issuer().to_owned();
    let user = |sub: &str| json!({"format": "iss_sub", "iss": iss, "sub": sub});
    // (event, its payload, sub_id, the token it must revoke, one it must
    // not: another session, or a later login)
    let cases: Vec<(String, Value, Value, String, String)> = vec![
        (
            format!("{CAEP}session-revoked"),
            json!({"event_timestamp": now()}),
            json!({"format": "complex", "user": user("u1"), "session": {"format": "opaque", "id": "s-1"}}),
            rx.token("u1", 30, &[("sid", "s-1")]),
            rx.token("u1", 30, &[("sid", "s-2")]),
        ),
        (
            format!("{CAEP}session-revoked"),
            json!({}),
            user("u2"),
            rx.token("u2", 30, &[("sid", "s-3")]),
            // Issued after the event: a new login.
            rx.token("u2", -5, &[("sid", "s-4")]),
        ),
        (
            format!("{CAEP}credential-change"),
            json!({"credential_type": "password", "change_type": "update"}),
            json!({"format": "opaque", "id": "u3"}),
            rx.token("u3", 30, &[]),
            rx.token("u3", -5, &[]),
        ),
        (
            format!("{RISC}account-disabled"),
            json!({"reason": "hijacking"}),
            json!({"format": "email", "email": "U4@Example.com"}),
            rx.token("u4", 30, &[("email", "u4@example.com")]),
            rx.token("u4b", 30, &[("email", "u4b@example.com")]),
        ),
        (
            format!("{RISC}account-purged"),
            json!({}),
            json!({"format": "aliases", "identifiers": [user("u5"), {"format": "phone_number", "phone_number": "+15551234567"}]}),
            rx.token("u5", 30, &[]),
            rx.token("u5", -5, &[]),
        ),
        (
            format!("{RISC}credential-compromise"),
            json!({"credential_type": "password"}),
            json!({"format": "complex", "user": {"format": "opaque", "id": "u6"}}),
            rx.token("u6", 30, &[]),
            rx.token("u6", -5, &[]),
        ),
        (
            format!("{RISC}sessions-revoked"),
            json!({}),
            user("u7"),
            rx.token("u7", 30, &[("sid", "s-7")]),
            rx.token("u7", -5, &[("sid", "s-8")]),
        ),
    ];
    for (event, payload, sub_id, revoked, kept) in &cases {
        assert!(rx.accepts(revoked).await, "{event}: valid before");
        let set = tx.event(event, payload.clone(), Some(sub_id.clone())).await;
        let (status, body) = tx.push(&rx.endpoint, &set, Some(PUSH_AUTHORIZATION)).await;
        assert_eq!(status, 202, "{event} {sub_id}: {body}");
        assert!(
            !rx.accepts(revoked).await,
            "{event} {sub_id}: still accepted"
        );
        assert!(rx.accepts(kept).await, "{event} {sub_id}: over-revoked");
    }

    // The subject inside the event (RISC's and older CAEP's form).
    let token = rx.token("u8", 30, &[]);
    let set = tx
        .event(
            &format!("{RISC}account-disabled"),
            json!({"subject": user("u8")}),
            None,
        )
        .await;
    assert_eq!(
        tx.push(&rx.endpoint, &set, Some(PUSH_AUTHORIZATION))
            .await
            .0,
        202
    );
    assert!(!rx.accepts(&token).await);

    // A created credential, an unknown event and verification: accepted,
    // nothing revoked.
    let token = rx.token("u9", 30, &[]);
    for (event, payload) in [
        (
            format!("{CAEP}credential-change"),
            json!({"credential_type": "fido2-roaming", "change_type": "create"}),
        ),
        (
            "https://example.com/events/unknown".to_owned(),
            json!({"x": 1}),
        ),
        (
            VERIFICATION.to_owned(),
            json!({"state": "VGhpcyBpcyBhbiBleGFtcGxl"}),
        ),
    ] {
        let set = tx
            .event(
                &event,
                payload,
                Some(json!({"format": "opaque", "id": "u9"})),
            )
            .await;
        assert_eq!(
            tx.push(&rx.endpoint, &set, Some(PUSH_AUTHORIZATION))
                .await
                .0,
            202,
            "{event}"
        );
    }
    assert!(rx.accepts(&token).await);
    let verification = rx.receiver.last_verification().unwrap();
    assert_eq!(
        verification.state.as_deref(),
        Some("VGhpcyBpcyBhbiBleGFtcGxl")
    );
}

#[tokio::test]
async fn bad_sets_get_their_rfc_8935_codes() {
    let Some(tx) = Transmitter::start().await else {
        return;
    };
    let rx = Receiver::start(&tx).await;
    let event = json!({ format!("{RISC}account-disabled"): {} });
    let sub = json!({"format": "opaque", "id": "victim"});
    let claims = || {
        let mut c = set_claims(&tx.issuer, event.clone());
        c["sub_id"] = sub.clone();
        c
    };
    let with = |name: &str, value: Value| {
        let mut c = claims();
        if value.is_null() {
            c.as_object_mut().unwrap().remove(name);
        } else {
            c[name] = value;
        }
        c
    };
    let access_token = rx.idp.token().sign();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "typ JWT",
            tx.sign(claims(), json!({"typ": "JWT"})).await,
            "invalid_request",
        ),
        (
            "no typ",
            tx.sign(claims(), json!({"typ": null})).await,
            "invalid_request",
        ),
        (
            "typ at+jwt",
            tx.sign(claims(), json!({"typ": "at+jwt"})).await,
            "invalid_request",
        ),
        ("an access token", access_token, "invalid_request"),
        (
            "wrong aud",
            tx.sign(with("aud", json!("https://other.example")), json!({}))
                .await,
            "invalid_audience",
        ),
        (
            "aud among others",
            tx.sign(with("aud", json!(["https://other.example"])), json!({}))
                .await,
            "invalid_audience",
        ),
        (
            "wrong iss",
            tx.sign(with("iss", json!("https://evil.example")), json!({}))
                .await,
            "invalid_issuer",
        ),
        (
            "no iat",
            tx.sign(with("iat", Value::Null), json!({})).await,
            "invalid_request",
        ),
        (
            "no jti",
            tx.sign(with("jti", Value::Null), json!({})).await,
            "invalid_request",
        ),
        (
            "no events",
            tx.sign(with("events", Value::Null), json!({})).await,
            "invalid_request",
        ),
        (
            "expired",
            tx.sign(with("exp", json!(now() - 3600)), json!({})).await,
            "invalid_request",
        ),
        (
            "unknown kid",
            tx.sign(claims(), json!({"kid": "stranger"})).await,
            "invalid_key",
        ),
        (
            "RSA under an EC kid",
            tx.sign(claims(), json!({"alg": "RS256"})).await,
            "invalid_key",
        ),
        ("not a JWT", "not.a.jwt".to_owned(), "invalid_request"),
    ];
    let victim = rx.token("victim", 30, &[]);
    for (what, set, code) in &cases {
        let (status, body) = tx.push(&rx.endpoint, set, Some(PUSH_AUTHORIZATION)).await;
        assert_eq!(
            (status, body["err"].as_str()),
            (400, Some(*code)),
            "{what}: {body}"
        );
        let description = body["description"].as_str().unwrap();
        assert!(
            !description.is_empty() && !description.contains("victim"),
            "{what}"
        );
    }
    assert!(rx.accepts(&victim).await, "a refused SET revoked something");

    let good = tx.sign(claims(), json!({})).await;
    for (what, authorization) in [("none", None), ("wrong", Some("Bearer guess"))] {
        let (status, body) = tx.push(&rx.endpoint, &good, authorization).await;
        assert_eq!(
            (status, body["err"].as_str()),
            (400, Some("authentication_failed")),
            "{what}"
        );
    }
    assert!(rx.accepts(&victim).await);
    assert_eq!(
        tx.push(&rx.endpoint, &good, Some(PUSH_AUTHORIZATION))
            .await
            .0,
        202
    );
    let (status, body) = tx.push(&rx.endpoint, &good, Some(PUSH_AUTHORIZATION)).await;
    assert_eq!(
        (status, body["err"].as_str()),
        (400, Some("invalid_request")),
        "replayed jti"
    );
    assert!(!rx.accepts(&victim).await);

    // And a SET is no access token.
    assert!(matches!(
        rx.auth.validate(&good).await,
        Err(tower_bearer::AuthError::InvalidToken(_))
    ));
}

#[tokio::test]
async fn polling_applies_pages_and_acknowledges_what_it_applied() {
    let Some(tx) = Transmitter::start().await else {
        return;
    };
    let rx = Receiver::start(&tx).await;
    let mut sets = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..5 {
        let sub = format!("p{i}");
        tokens.push(rx.token(&sub, 30, &[]));
        sets.push(
            tx.event(
                &format!("{RISC}account-disabled"),
                json!({}),
                Some(json!({"format": "opaque", "id": sub})),
            )
            .await,
        );
    }
    let mut wrong_aud = set_claims(&tx.issuer, json!({ format!("{RISC}account-disabled"): {} }));
    wrong_aud["aud"] = "https://other.example".into();
    wrong_aud["sub_id"] = json!({"format": "opaque", "id": "p0"});
    let bad_jti = wrong_aud["jti"].as_str().unwrap().to_owned();
    sets.push(tx.sign(wrong_aud, json!({})).await);
    tx.call("/test/queue", json!({ "sets": sets })).await;

    let mut poll = rx
        .receiver
        .poller(&format!("{}/poll", tx.issuer), "Bearer poll-secret")
        .unwrap()
        .max_events(2);
    let (mut applied, mut refused, mut polls) = (0, 0, 0);
    loop {
        let p = poll.poll_once().await.unwrap();
        polls += 1;
        applied += p.applied;
        refused += p.refused;
        if !p.more_available && p.applied + p.refused == 0 {
            break;
        }
        assert!(polls < 10, "polling does not end");
    }
    assert_eq!((applied, refused), (5, 1));
    for token in &tokens {
        assert!(!rx.accepts(token).await);
    }
    let acks = reqwest::get(format!("{}/test/acks", tx.issuer))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(acks["acks"].as_array().unwrap().len(), 5, "{acks}");
    assert_eq!(acks["errs"][&bad_jti]["err"], "invalid_audience", "{acks}");

    // A wrong poll credential is a failed poll, not a panic.
    let mut wrong = rx
        .receiver
        .poller(&format!("{}/poll", tx.issuer), "Bearer guess")
        .unwrap();
    assert!(wrong.poll_once().await.is_err());
}

#[tokio::test]
async fn a_transmitter_whose_keys_cannot_be_loaded_gets_503_with_retry_after() {
    // Nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let receiver = SsfReceiver::builder(&issuer, AUDIENCE, RevocationList::new())
        .build()
        .unwrap();
    // A SET-shaped token, not signed by anyone in particular.
    let header = json!({"alg": "ES256", "kid": "t1", "typ": "secevent+jwt"});
    let set = common::assemble(&header, &set_claims(&issuer, json!({"x": {}})), &[0; 64]);
    assert!(matches!(
        receiver.receive(&set).await,
        Err(SetError::KeysUnavailable { .. })
    ));
    let push = receiver.push_endpoint(PUSH_AUTHORIZATION).unwrap();
    let req = http::Request::post("/ssf/events")
        .header("authorization", PUSH_AUTHORIZATION)
        .header("content-type", "application/secevent+jwt")
        .body(axum::body::Body::from(set))
        .unwrap();
    let res = push.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 503);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");

    let get = http::Request::get("/ssf/events")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = push.clone().oneshot(get).await.unwrap();
    assert_eq!(
        (
            res.status().as_u16(),
            res.headers()["allow"].to_str().unwrap()
        ),
        (405, "POST")
    );
    let wrong_type = http::Request::post("/ssf/events")
        .header("authorization", PUSH_AUTHORIZATION)
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{}"))
        .unwrap();
    assert_eq!(push.oneshot(wrong_type).await.unwrap().status(), 400);
}

#[test]
fn an_email_revocation_ignores_case_and_the_issuer_scopes_it() {
    let list = RevocationList::new();
    list.revoke(Revoke::EmailBefore {
        issuer: "https://idp.example".into(),
        email: "Alice@Example.COM".into(),
        before: SystemTime::now() + Duration::from_secs(60),
    });
    assert_eq!(list.len(), 1);
    list.unrevoke(&Revoke::EmailBefore {
        issuer: "https://idp.example".into(),
        email: "alice@example.com".into(),
        before: SystemTime::now(),
    });
    assert!(list.is_empty());
}
