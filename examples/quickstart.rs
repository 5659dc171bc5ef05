//! The tour: an authorization server and a protected API in one process,
//! and a scripted client that shows what tower-bearer lets through.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Exits 0 when every step behaved as expected.

use std::process::ExitCode;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_bearer::testing::TestIssuer;
use tower_bearer::{Algorithm, BearerAuthLayer, ClientId, ClientSecret, Principal};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("quickstart: {e}");
            ExitCode::from(2)
        }
    }
}

struct Step<'a> {
    what: &'a str,
    token: Option<String>,
    path: &'a str,
    expect: u16,
    expect_error: Option<&'a str>,
}

async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    // 1. An authorization server on loopback: discovery, JWKS, signing keys.
    let idp = TestIssuer::builder()
        .audience("documents-api")
        .start()
        .await?;

    // 2. The protected API: one layer, an issuer and an audience. With
    //    introspection configured it also takes opaque tokens, and routes
    //    that cannot accept the revocation window ask the issuer each time.
    let (client_id, client_secret) = TestIssuer::INTROSPECTION_CLIENT;
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience("documents-api")
        .introspection(ClientId::new(client_id), ClientSecret::new(client_secret))
        .build()?;
    let app = Router::new()
        .route(
            "/me",
            get(|p: Principal| async move { Json(json!({ "sub": p.subject() })) }),
        )
        .route(
            "/documents",
            get(|| async { Json(json!([])) }).route_layer(auth.require_all(["read"])),
        )
        .route(
            "/payments",
            get(|| async { Json(json!([])) })
                .route_layer(auth.require_active())
                .route_layer(auth.require_all(["read"])),
        )
        .layer(auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    println!("issuer {}  ·  API {api}\n", idp.issuer());
    println!(
        "{:<3} {:<48} {:<22} {:<22} result",
        "#", "step", "expected", "got"
    );

    let client = reqwest::Client::new();
    let old_kid = idp.current_kid();
    let mut steps = vec![
        Step {
            what: "no token at all",
            token: None,
            path: "/me",
            expect: 401,
            expect_error: None,
        },
        Step {
            what: "valid token with scope `read`",
            token: Some(idp.token().scope("read").sign()),
            path: "/documents",
            expect: 200,
            expect_error: None,
        },
        Step {
            what: "expired token (exp 5 minutes ago)",
            token: Some(idp.token().scope("read").expires_in(-300).sign()),
            path: "/documents",
            expect: 401,
            expect_error: Some("invalid_token"),
        },
        Step {
            what: "… the client gets a fresh token and retries",
            token: Some(idp.token().scope("read").sign()),
            path: "/documents",
            expect: 200,
            expect_error: None,
        },
        Step {
            what: "token without the `read` scope",
            token: Some(idp.token().scope("profile").sign()),
            path: "/documents",
            expect: 403,
            expect_error: Some("insufficient_scope"),
        },
        Step {
            what: "forged token (payload changed after signing)",
            token: Some(forge(
                &idp.token().scope("read").sign(),
                &idp.token().scope("read admin").sign(),
            )),
            path: "/documents",
            expect: 401,
            expect_error: Some("invalid_token"),
        },
        Step {
            what: "token for another API (wrong audience)",
            token: Some(idp.token().scope("read").claim("aud", "billing-api").sign()),
            path: "/documents",
            expect: 401,
            expect_error: Some("invalid_token"),
        },
    ];
    let mut all_ok = run_steps(&client, &api, 1, &steps).await?;

    // 3. The issuer rotates to a new ES256 key: the first token signed with
    //    it makes the API refetch the JWKS once, and it is accepted.
    let fetches_before = idp.jwks_fetches();
    let new_kid = idp.rotate(Algorithm::ES256);
    println!("\n    the issuer rotates its signing key: {old_kid} (RS256) → {new_kid} (ES256)");
    steps = vec![
        Step {
            what: "token signed with the new key",
            token: Some(idp.token().scope("read").sign()),
            path: "/documents",
            expect: 200,
            expect_error: None,
        },
        Step {
            what: "token signed with the old key, still published",
            token: Some(idp.token().scope("read").signed_by(&old_kid).sign()),
            path: "/documents",
            expect: 200,
            expect_error: None,
        },
    ];
    all_ok &= run_steps(&client, &api, 8, &steps).await?;
    let refetches = idp.jwks_fetches() - fetches_before;
    println!("    JWKS fetched {refetches} time(s) for the rotation (expected 1)");
    all_ok &= refetches == 1;

    // 4. The revocation window. The issuer revokes a grant: its JWT is still
    //    accepted on an ordinary route until it expires (no call to the
    //    issuer), and refused at once on a require_active route, which asks
    //    the issuer through introspection. Opaque tokens always ask.
    let jwt = idp.token().scope("read").sign();
    let opaque = idp.token().scope("read").opaque();
    let revoked_opaque = idp.token().scope("read").opaque();
    idp.revoke(&jwt);
    idp.revoke(&revoked_opaque);
    println!(
        "\n    the issuer revokes a grant: its JWT stays valid until exp, except where a route asks"
    );
    steps = vec![
        Step {
            what: "revoked JWT, ordinary route (the window)",
            token: Some(jwt.clone()),
            path: "/documents",
            expect: 200,
            expect_error: None,
        },
        Step {
            what: "revoked JWT, require_active route",
            token: Some(jwt),
            path: "/payments",
            expect: 401,
            expect_error: Some("invalid_token"),
        },
        Step {
            what: "opaque token, checked through introspection",
            token: Some(opaque),
            path: "/documents",
            expect: 200,
            expect_error: None,
        },
        Step {
            what: "revoked opaque token",
            token: Some(revoked_opaque),
            path: "/documents",
            expect: 401,
            expect_error: Some("invalid_token"),
        },
    ];
    all_ok &= run_steps(&client, &api, 10, &steps).await?;

    println!(
        "\n{}",
        if all_ok {
            "every step behaved as expected"
        } else {
            "SOME STEPS FAILED"
        }
    );
    Ok(all_ok)
}

async fn run_steps(
    client: &reqwest::Client,
    api: &str,
    first: usize,
    steps: &[Step<'_>],
) -> Result<bool, reqwest::Error> {
    let mut all_ok = true;
    for (i, step) in steps.iter().enumerate() {
        let mut req = client.get(format!("{api}{}", step.path));
        if let Some(token) = &step.token {
            req = req.bearer_auth(token);
        }
        let res = req.send().await?;
        let status = res.status().as_u16();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let error = challenge
            .split("error=\"")
            .nth(1)
            .and_then(|s| s.split('"').next());
        let ok = status == step.expect && error == step.expect_error;
        all_ok &= ok;
        let expected = format!(
            "{} {}",
            step.expect,
            step.expect_error
                .unwrap_or(if step.expect == 401 { "(no error)" } else { "" })
        );
        let got = format!(
            "{status} {}",
            error.unwrap_or(if status == 401 { "(no error)" } else { "" })
        );
        println!(
            "{:<3} {:<48} {:<22} {:<22} {}",
            first + i,
            step.what,
            expected.trim(),
            got.trim(),
            if ok { "ok" } else { "UNEXPECTED" }
        );
    }
    Ok(all_ok)
}

/// Puts the payload of `other` under the signature of `token`.
fn forge(token: &str, other: &str) -> String {
    let a: Vec<&str> = token.split('.').collect();
    let b: Vec<&str> = other.split('.').collect();
    format!("{}.{}.{}", a[0], b[1], a[2])
}
