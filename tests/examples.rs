//! The examples as their users run them: real processes, real loopback
//! HTTP. `cargo test` builds the examples before running this file.

mod common;

use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;
use tower_bearer::Algorithm;
use tower_bearer::testing::{DpopKey, TestIssuer};

#[tokio::test]
async fn quickstart_exits_zero() {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(common::example("quickstart"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("quickstart finished in time")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "quickstart failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("every step behaved as expected"));
    assert!(!stdout.contains("UNEXPECTED"));
}

#[tokio::test]
async fn resource_server_serves_its_contract_over_loopback() {
    let idp = TestIssuer::builder()
        .audience("documents-api")
        .start()
        .await
        .unwrap();
    let server =
        common::resource_server(&[("ISSUER", idp.issuer()), ("AUDIENCE", "documents-api")]).await;
    let client = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut req = client.get(format!("{}{path}", server.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };

    let res = get("/healthz", None).await.unwrap();
    assert_eq!(res.status(), 200);

    let res = get("/me", None).await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");

    let token = idp
        .token()
        .scope("read profile")
        .claim("sub", "alice")
        .sign();
    let res = get("/me", Some(&token)).await.unwrap();
    assert_eq!(res.status(), 200);
    let me: Value = res.json().await.unwrap();
    assert_eq!(
        me,
        serde_json::json!({ "sub": "alice", "client_id": "test-client", "scopes": ["read", "profile"] })
    );

    assert_eq!(get("/documents", Some(&token)).await.unwrap().status(), 200);
    let res = get("/admin", Some(&token)).await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"admin\"")
    );
    let admin = idp.token().scope("admin").sign();
    assert_eq!(get("/admin", Some(&admin)).await.unwrap().status(), 200);
    assert_eq!(get("/documents", Some(&admin)).await.unwrap().status(), 403);

    let post = |token: &str| {
        client
            .post(format!("{}/documents", server.base))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(post(&token).await.unwrap().status(), 403);
    assert_eq!(
        post(&idp.token().scope("write").sign())
            .await
            .unwrap()
            .status(),
        201
    );

    let expired = idp.token().scope("read").expires_in(-3600).sign();
    let res = get("/documents", Some(&expired)).await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
}

#[tokio::test]
async fn resource_server_takes_a_jwks_uri_override() {
    let idp = TestIssuer::start().await.unwrap();
    let jwks = idp.jwks_uri();
    let server = common::resource_server(&[
        ("ISSUER", "https://issuer.invalid"),
        ("AUDIENCE", idp.audience()),
        ("JWKS_URI", &jwks),
    ])
    .await;
    let token = idp.token().claim("iss", "https://issuer.invalid").sign();
    let res = reqwest::Client::new()
        .get(format!("{}/me", server.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(idp.jwks_fetches(), 1);
}

#[tokio::test]
async fn resource_server_accepts_opaque_tokens_through_introspection() {
    let idp = TestIssuer::builder()
        .audience("documents-api")
        .start()
        .await
        .unwrap();
    let endpoint = idp.introspection_endpoint();
    let (id, secret) = TestIssuer::INTROSPECTION_CLIENT;
    let server = common::resource_server(&[
        ("ISSUER", idp.issuer()),
        ("AUDIENCE", "documents-api"),
        ("INTROSPECTION_URI", &endpoint),
        ("INTROSPECTION_CLIENT_ID", id),
        ("INTROSPECTION_CLIENT_SECRET", secret),
    ])
    .await;
    let client = reqwest::Client::new();
    let get = |path: &str, token: &str| {
        client
            .get(format!("{}{path}", server.base))
            .bearer_auth(token)
            .send()
    };
    let opaque = idp.token().scope("read").claim("sub", "carol").opaque();
    let res = get("/me", &opaque).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["sub"], "carol");
    assert_eq!(get("/documents", &opaque).await.unwrap().status(), 200);
    assert_eq!(get("/admin", &opaque).await.unwrap().status(), 403);
    let revoked = idp.token().scope("read").opaque();
    idp.revoke(&revoked);
    assert_eq!(get("/documents", &revoked).await.unwrap().status(), 401);
    assert_eq!(idp.introspections(), 2, "one call per token");
}

#[tokio::test]
async fn resource_server_trusts_several_issuers_tenants_and_roles() {
    let (a, b) = (
        TestIssuer::start().await.unwrap(),
        TestIssuer::start().await.unwrap(),
    );
    b.add_tenant("acme");
    b.add_tenant("globex");
    let issuers = format!("{} {}/realms/{{tenant}}", a.issuer(), b.issuer());
    let server = common::resource_server(&[
        ("ISSUER", &issuers),
        ("TENANTS", "acme initech"),
        ("AUDIENCE", "test-api"),
        ("ROLES_CLAIM", "realm_access.roles"),
    ])
    .await;
    let client = reqwest::Client::new();
    let get = |path: &str, token: &str| {
        client
            .get(format!("{}{path}", server.base))
            .bearer_auth(token)
            .send()
    };
    let from_a = a.token().scope("read").sign();
    assert_eq!(get("/documents", &from_a).await.unwrap().status(), 200);
    let acme = b.token().tenant("acme").scope("read").sign();
    assert_eq!(get("/documents", &acme).await.unwrap().status(), 200);
    let globex = b.token().tenant("globex").scope("read").sign();
    assert_eq!(get("/documents", &globex).await.unwrap().status(), 401);
    assert_eq!(b.discovery_fetches(), 1, "acme's only");

    let auditor = b
        .token()
        .tenant("acme")
        .claim("realm_access", serde_json::json!({ "roles": ["auditor"] }))
        .sign();
    let res = get("/reports", &auditor).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        serde_json::json!({ "ok": true })
    );
    // Step-up: `acr` phr and a login at most 600 s old.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let strong = a
        .token()
        .claim("acr", "phr")
        .claim("auth_time", now - 60)
        .sign();
    let res = get("/sensitive", &strong).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        serde_json::json!({ "ok": true })
    );
    let stale = a
        .token()
        .claim("acr", "phr")
        .claim("auth_time", now - 3600)
        .sign();
    let res = get("/sensitive", &stale).await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains(r#"error="insufficient_user_authentication""#)
    );
    let res = get("/reports", &from_a).await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains(r#"error="insufficient_scope""#)
    );
}

#[tokio::test]
async fn resource_server_takes_dpop_and_certificate_bound_tokens() {
    let idp = TestIssuer::start().await.unwrap();
    let key = DpopKey::generate(Algorithm::ES256).unwrap();
    let client = reqwest::Client::new();
    let bound = idp.token().bound_to(&key).sign();
    let bearer = idp.token().sign();
    // With DPoP off, the DPoP scheme is not taken at all.
    let off = common::resource_server(&[
        ("ISSUER", idp.issuer()),
        ("AUDIENCE", "test-api"),
        ("DPOP", "off"),
    ])
    .await;
    let url = format!("{}/me", off.base);
    let res = client
        .get(&url)
        .header("authorization", format!("DPoP {bound}"))
        .header("dpop", key.proof("GET", &url, &bound).sign())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = client.get(&url).bearer_auth(&bearer).send().await.unwrap();
    assert_eq!(res.status(), 200);
    for (mode, bearer_status) in [("allowed", 200), ("required", 401)] {
        let server = common::resource_server(&[
            ("ISSUER", idp.issuer()),
            ("AUDIENCE", "test-api"),
            ("DPOP", mode),
        ])
        .await;
        let url = format!("{}/me", server.base);
        // Without PUBLIC_ORIGIN, proofs name http:// and the Host.
        let proof = key.proof("GET", &url, &bound).sign();
        for (what, status) in [("fresh", 200), ("replayed", 401)] {
            let res = client
                .get(&url)
                .header("authorization", format!("DPoP {bound}"))
                .header("dpop", &proof)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), status, "{mode}, {what}");
        }
        let res = client.get(&url).bearer_auth(&bearer).send().await.unwrap();
        assert_eq!(res.status(), bearer_status, "{mode}");
    }

    // Server nonces: the first proof is answered with one.
    let server = common::resource_server(&[
        ("ISSUER", idp.issuer()),
        ("AUDIENCE", "test-api"),
        ("DPOP_NONCE", "1"),
        ("PUBLIC_ORIGIN", "https://api.example.com"),
    ])
    .await;
    let url = format!("{}/me", server.base);
    let send = |proof: String| {
        client
            .get(&url)
            .header("authorization", format!("DPoP {bound}"))
            .header("dpop", proof)
            .send()
    };
    let htu = "https://api.example.com/me";
    let res = send(key.proof("GET", htu, &bound).sign()).await.unwrap();
    assert_eq!(res.status(), 401);
    let nonce = res.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    let res = send(key.proof("GET", htu, &bound).nonce(&nonce).sign())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // A certificate from the proxy's header.
    let server = common::resource_server(&[
        ("ISSUER", idp.issuer()),
        ("AUDIENCE", "test-api"),
        ("CLIENT_CERT_HEADER", "x-client-cert"),
    ])
    .await;
    let der = [0x30, 0x03, 0x02, 0x01, 0x07];
    let cert = tower_bearer::ClientCertificate::from_der(der.to_vec());
    let token = idp.token().bound_to_certificate(&cert).sign();
    let pem = common::pem_certificate(&der);
    let url = format!("{}/me", server.base);
    let with = |header: Option<String>| {
        let mut req = client.get(&url).bearer_auth(&token);
        if let Some(h) = header {
            req = req.header("x-client-cert", h);
        }
        req.send()
    };
    let shown = common::url_encoded(&pem);
    assert_eq!(with(Some(shown)).await.unwrap().status(), 200);
    let other = common::url_encoded(&common::pem_certificate(&[0x30, 0x03, 0x02, 0x01, 0x08]));
    assert_eq!(with(Some(other)).await.unwrap().status(), 401);
    assert_eq!(with(None).await.unwrap().status(), 401);
}

#[tokio::test]
async fn resource_server_serves_its_metadata_and_names_it_in_challenges() {
    let idp = TestIssuer::builder()
        .audience("documents-api")
        .start()
        .await
        .unwrap();
    let resource = "https://api.example.com/docs";
    let url = "https://api.example.com/.well-known/oauth-protected-resource/docs";
    let server = common::resource_server(&[
        ("ISSUER", idp.issuer()),
        ("AUDIENCE", "documents-api"),
        ("RESOURCE", resource),
    ])
    .await;
    let client = reqwest::Client::new();
    let res = client
        .get(format!(
            "{}/.well-known/oauth-protected-resource/docs?x=1",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["resource"], resource);
    assert_eq!(
        doc["authorization_servers"],
        serde_json::json!([idp.issuer()])
    );
    assert_eq!(
        doc["scopes_supported"],
        serde_json::json!(["read", "write", "admin"])
    );

    let res = client
        .get(format!("{}/me", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        format!("Bearer resource_metadata=\"{url}\"").as_str()
    );
    let expired = idp.token().claim("exp", 1_000_000).sign();
    let res = client
        .get(format!("{}/me", server.base))
        .bearer_auth(expired)
        .send()
        .await
        .unwrap();
    let challenge = res.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with(&format!(
            "Bearer resource_metadata=\"{url}\", error=\"invalid_token\""
        )),
        "{challenge}"
    );
    // The document is not behind the layer, the API still is.
    let token = idp.token().sign();
    let res = client
        .get(format!("{}/me", server.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn resource_server_serves_metrics_and_readiness() {
    let idp = TestIssuer::builder()
        .audience("documents-api")
        .start()
        .await
        .unwrap();
    let server = common::resource_server(&[
        ("ISSUER", idp.issuer()),
        ("AUDIENCE", "documents-api"),
        ("METRICS", "1"),
    ])
    .await;
    let client = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut req = client.get(format!("{}{path}", server.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        async move { req.send().await.unwrap() }
    };
    let token = idp.token().sign();
    assert_eq!(get("/me", Some(&token)).await.status(), 200);
    assert_eq!(get("/me", None).await.status(), 401);

    // Open routes, as a probe and a scraper reach them.
    let res = get("/readyz", None).await;
    assert_eq!(res.status(), 200);
    let ready: Value = res.json().await.unwrap();
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["issuers"][0]["issuer"], idp.issuer());

    let res = get("/metrics", None).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    let line = |series: &str| {
        text.lines()
            .find(|l| l.starts_with(series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    let iss = idp.issuer();
    assert_eq!(
        line(&format!(
            "tower_bearer_requests_total{{outcome=\"accepted\",reason=\"ok\",issuer=\"{iss}\"}}"
        )),
        "1"
    );
    assert_eq!(
        line(
            "tower_bearer_requests_total{outcome=\"refused\",reason=\"missing_token\",issuer=\"\"}"
        ),
        "1"
    );
    assert_eq!(
        line(&format!(
            "tower_bearer_key_fetches_total{{issuer=\"{iss}\",result=\"updated\"}}"
        )),
        "1"
    );
    assert!(text.contains("tower_bearer_validation_duration_seconds_bucket{path=\"verified\""));

    // Without METRICS no /metrics: an unknown path, behind the layer.
    let plain =
        common::resource_server(&[("ISSUER", idp.issuer()), ("AUDIENCE", "documents-api")]).await;
    let res = client
        .get(format!("{}/metrics", plain.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn resource_server_refuses_to_start_without_issuer_or_audience() {
    for env in [
        &[("AUDIENCE", "a")][..],
        &[("ISSUER", "https://idp.example")],
        &[("ISSUER", "http://idp.example"), ("AUDIENCE", "a")],
        &[
            ("ISSUER", "https://a.example https://b.example"),
            ("AUDIENCE", "a"),
            ("JWKS_URI", "https://a.example/keys"),
        ],
        &[
            ("ISSUER", "https://kc.example/realms/{tenant}"),
            ("AUDIENCE", "a"),
            ("JWKS_URI", "https://kc.example/keys"),
        ],
        &[
            ("ISSUER", "https://idp.example"),
            ("AUDIENCE", "a"),
            ("DPOP", "sometimes"),
        ],
        &[
            ("ISSUER", "https://idp.example"),
            ("AUDIENCE", "a"),
            ("PUBLIC_ORIGIN", "https://api.example/v1"),
        ],
        &[
            ("ISSUER", "https://idp.example"),
            ("AUDIENCE", "a"),
            ("RESOURCE", "https://api.example/docs?v=1"),
        ],
    ] {
        let mut cmd = Command::new(common::example("resource_server"));
        cmd.env_clear().kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{env:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
}
