//! Interop with a real, certified authorization server: panva's
//! oidc-provider (`tests/interop/idp.mjs`), run with Node on loopback.
//! `./scripts/test` installs it from the committed lockfile (`npm ci`) and
//! sets `TOWER_BEARER_INTEROP=1`; a plain `cargo test` without it installed
//! prints `skipped: interop IdP not installed`.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tower_bearer::{Algorithm, AuthError, BearerAuthLayer, ClientId, ClientSecret, TokenError};

const RESOURCES: [(&str, Algorithm); 4] = [
    ("urn:tower-bearer:rs256", Algorithm::RS256),
    ("urn:tower-bearer:ps256", Algorithm::PS256),
    ("urn:tower-bearer:es256", Algorithm::ES256),
    ("urn:tower-bearer:eddsa", Algorithm::EdDSA),
];

struct Idp {
    _child: Child,
    issuer: String,
}

impl Idp {
    async fn start(dir: &Path) -> Self {
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("idp.mjs")).env("PORT", "0");
        let (child, issuer) = common::listening(cmd).await;
        Self {
            _child: child,
            issuer,
        }
    }

    /// A new RS256 signing key in front of the old ones, on the same
    /// address.
    async fn rotate(&self) {
        let res = reqwest::Client::new()
            .post(format!("{}/test/rotate", self.issuer))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }

    async fn token(&self, resource: &str, scope: &str) -> String {
        let body = self.grant(INTEROP_CLIENT, resource, scope, None).await;
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// The token endpoint's answer to a client credentials grant for
    /// `client` (id, secret), with one more request header when given (a
    /// DPoP proof, a client certificate).
    async fn grant(
        &self,
        client: (&str, &str),
        resource: &str,
        scope: &str,
        header: Option<(&str, &str)>,
    ) -> Value {
        let mut req = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client.0, Some(client.1));
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        let res = req
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_success(),
            "token request failed: {}",
            res.text().await.unwrap()
        );
        res.json().await.unwrap()
    }
}

const INTEROP_CLIENT: (&str, &str) = ("interop-client", "interop-client-secret");

fn validator(idp: &Idp) -> BearerAuthLayer {
    let mut b = BearerAuthLayer::builder().issuer(&idp.issuer);
    for (resource, _) in RESOURCES {
        b = b.audience(resource);
    }
    b.build().unwrap()
}

#[tokio::test]
async fn real_idp_tokens_of_every_algorithm_are_accepted_through_discovery_alone() {
    let Some(dir) = common::interop_dir() else {
        return;
    };
    let idp = Idp::start(&dir).await;
    let auth = validator(&idp);
    for (resource, alg) in RESOURCES {
        let token = idp.token(resource, "read write").await;
        let p = auth
            .validate(&token)
            .await
            .unwrap_or_else(|e| panic!("{resource}: {e}"));
        assert_eq!(p.algorithm(), Some(alg));
        assert_eq!(p.client_id(), Some("interop-client"));
        assert!(p.has_scope("read") && p.has_scope("write") && !p.has_scope("admin"));
        assert_eq!(p.claims().aud, [resource]);
    }
    let health = auth.key_health();
    assert_eq!(health.key_count, 4, "{health:?}");
}

#[tokio::test]
async fn a_real_idp_token_for_another_audience_is_refused() {
    let Some(dir) = common::interop_dir() else {
        return;
    };
    let idp = Idp::start(&dir).await;
    let auth = validator(&idp);
    let token = idp.token("urn:other-api", "read").await;
    assert_eq!(
        auth.validate(&token).await.unwrap_err(),
        AuthError::InvalidToken(TokenError::WrongAudience)
    );
}

#[tokio::test]
async fn a_key_rotation_at_the_real_idp_is_picked_up_without_a_restart() {
    let Some(dir) = common::interop_dir() else {
        return;
    };
    let idp = Idp::start(&dir).await;
    let auth = validator(&idp);
    let before = idp.token("urn:tower-bearer:rs256", "read").await;
    let old_kid = auth
        .validate(&before)
        .await
        .unwrap()
        .key_id()
        .unwrap()
        .to_owned();

    idp.rotate().await;
    let after = idp.token("urn:tower-bearer:rs256", "read").await;
    let p = auth
        .validate(&after)
        .await
        .expect("the new key is fetched on first sight");
    assert_ne!(p.key_id(), Some(old_kid.as_str()));
    assert_eq!(auth.key_health().key_count, 5);
    assert!(
        auth.validate(&before).await.is_ok(),
        "the old key is still published"
    );
}

#[tokio::test]
async fn real_idp_opaque_tokens_are_introspected_and_refused_after_revocation_once_the_cache_expires()
 {
    let Some(dir) = common::interop_dir() else {
        return;
    };
    let idp = Idp::start(&dir).await;
    let clock = tower_bearer::ManualClock::now();
    let auth = BearerAuthLayer::builder()
        .issuer(&idp.issuer)
        .audience("urn:tower-bearer:opaque")
        .introspection(
            ClientId::new("resource-server"),
            ClientSecret::new("resource-server-secret"),
        )
        .clock(clock.clone())
        .build()
        .unwrap();
    let token = idp.token("urn:tower-bearer:opaque", "read").await;
    assert!(!token.contains('.'), "an opaque token");
    let p = auth.validate(&token).await.unwrap();
    assert!(p.is_introspected() && p.has_scope("read") && !p.has_scope("write"));
    assert_eq!(p.client_id(), Some("interop-client"));

    // Revoked at the IdP (RFC 7009): still accepted from the cache until its
    // answer is older than the configured 60 s, then refused.
    let res = reqwest::Client::new()
        .post(format!("{}/token/revocation", idp.issuer))
        .basic_auth("interop-client", Some("interop-client-secret"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert!(auth.validate(&token).await.is_ok(), "the cached answer");
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        auth.validate(&token).await.unwrap_err(),
        AuthError::InvalidToken(TokenError::Revoked)
    );
    assert_eq!(auth.stats().introspection_calls, 2);
}

/// `token` with its header's `kid` replaced (the signature no longer
/// matters: the key lookup comes first).
fn with_kid(token: &str, kid: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (header, rest) = token.split_once('.').unwrap();
    let mut header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"] = kid.into();
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn two_real_idps_each_verify_their_own_tokens_with_their_own_keys() {
    let Some(dir) = common::interop_dir() else {
        return;
    };
    let (a, b) = (Idp::start(&dir).await, Idp::start(&dir).await);
    let mut builder = BearerAuthLayer::builder()
        .trusted_issuer(tower_bearer::TrustedIssuer::new(&a.issuer))
        .trusted_issuer(tower_bearer::TrustedIssuer::new(&b.issuer));
    for (resource, _) in RESOURCES {
        builder = builder.audience(resource);
    }
    let auth = builder.build().unwrap();
    let (from_a, from_b) = (
        a.token("urn:tower-bearer:es256", "read").await,
        b.token("urn:tower-bearer:es256", "read").await,
    );
    for (token, idp) in [(&from_a, &a), (&from_b, &b)] {
        let p = auth.validate(token).await.unwrap();
        assert_eq!(p.claims().iss.as_deref(), Some(idp.issuer.as_str()));
        assert_eq!(p.algorithm(), Some(Algorithm::ES256));
    }
    // Each IdP made its own keys: a kid of B's is unknown at A, and the
    // other way round, though both sets are loaded.
    assert_eq!(
        auth.validate(&with_kid(&from_a, &kid_of(&from_b)))
            .await
            .unwrap_err(),
        AuthError::InvalidToken(TokenError::UnknownKey)
    );
    assert_eq!(
        auth.validate(&with_kid(&from_b, &kid_of(&from_a)))
            .await
            .unwrap_err(),
        AuthError::InvalidToken(TokenError::UnknownKey)
    );
    let health = auth.issuers_key_health();
    assert_eq!(health.len(), 2);
    assert!(health.iter().all(|h| h.keys.key_count == 4), "{health:?}");
}

/// A DPoP client made of panva's `dpop` package (`tests/interop/dpop-client.mjs`):
/// it holds a key pair and makes the proofs.
struct DpopClient {
    _child: Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    /// The RFC 7638 thumbprint of its current key, as the package says.
    jkt: String,
}

impl DpopClient {
    async fn start(dir: &Path) -> Self {
        let mut child = Command::new("node")
            .arg(dir.join("dpop-client.mjs"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut client = Self {
            _child: child,
            stdin,
            lines,
            jkt: String::new(),
        };
        client.jkt = client.key_line().await;
        client
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("the DPoP client answered in time")
            .unwrap()
            .expect("a line")
    }

    async fn key_line(&mut self) -> String {
        let line = self.line().await;
        line.strip_prefix("key ").expect("a key line").to_owned()
    }

    async fn send(&mut self, request: Value) {
        use tokio::io::AsyncWriteExt as _;
        let mut line = request.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
    }

    /// A fresh proof for `htm` `htu`, with the access token's hash when
    /// given.
    async fn proof(&mut self, htm: &str, htu: &str, access_token: Option<&str>) -> String {
        self.send(serde_json::json!({ "htm": htm, "htu": htu, "accessToken": access_token }))
            .await;
        self.line().await
    }

    /// Switches to a new key pair for `alg`.
    async fn new_key(&mut self, alg: &str) {
        self.send(serde_json::json!({ "newKey": alg })).await;
        self.jkt = self.key_line().await;
    }

    /// A token from `idp` bound to the current key.
    async fn bound_token(&mut self, idp: &Idp) -> Value {
        let proof = self
            .proof("POST", &format!("{}/token", idp.issuer), None)
            .await;
        idp.grant(
            INTEROP_CLIENT,
            "urn:tower-bearer:es256",
            "read",
            Some(("dpop", &proof)),
        )
        .await
    }
}

/// The API, in process, as reached at `http://api.test`.
fn api(auth: &BearerAuthLayer) -> axum::Router {
    axum::Router::new()
        .route(
            "/me",
            axum::routing::get(|p: tower_bearer::Principal| async move {
                p.client_id().unwrap_or_default().to_owned()
            }),
        )
        .layer(auth.clone())
}

async fn call_api(
    app: &axum::Router,
    method: &str,
    authorization: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, Vec<String>) {
    use tower::ServiceExt as _;
    let mut req = http::Request::builder()
        .method(method)
        .uri("/me")
        .header(http::header::HOST, "api.test")
        .header(http::header::AUTHORIZATION, authorization);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = app
        .clone()
        .oneshot(req.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let challenges = res
        .headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (res.status(), challenges)
}

#[tokio::test]
async fn real_dpop_bound_tokens_pass_with_an_independent_client_s_proofs_and_nothing_else() {
    let Some(dir) = common::interop_dir() else {
        return;
    };
    let idp = Idp::start(&dir).await;
    let mut client = DpopClient::start(&dir).await;
    let body = client.bound_token(&idp).await;
    assert_eq!(body["token_type"], "DPoP", "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();

    let auth = BearerAuthLayer::builder()
        .issuer(&idp.issuer)
        .audience("urn:tower-bearer:es256")
        .request_scheme("http")
        .build()
        .unwrap();
    let dpop = format!("DPoP {token}");
    let htu = "http://api.test/me";
    let proof = client.proof("GET", htu, Some(&token)).await;
    let req = http::Request::get("/me")
        .header(http::header::HOST, "api.test")
        .header(http::header::AUTHORIZATION, &dpop)
        .header("dpop", proof)
        .body(())
        .unwrap();
    let p = auth.validate_request(&req).await.unwrap();
    assert_eq!(
        p.confirmation().and_then(|c| c.jkt.as_deref()),
        Some(client.jkt.as_str()),
        "our thumbprint of the client's key is the IdP's and the package's"
    );
    let app = api(&auth);

    let proof = client.proof("GET", htu, Some(&token)).await;
    let (status, _) = call_api(&app, "GET", &dpop, &[("dpop", &proof)]).await;
    assert_eq!(status, http::StatusCode::OK);
    // The same proof again: a replay.
    let (status, challenges) = call_api(&app, "GET", &dpop, &[("dpop", &proof)]).await;
    assert_eq!(status, http::StatusCode::UNAUTHORIZED);
    assert!(
        challenges[0].starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{challenges:?}"
    );
    // Another method, another URL.
    for (htm, url) in [("POST", htu), ("GET", "http://api.test/other")] {
        let proof = client.proof(htm, url, Some(&token)).await;
        let (status, challenges) = call_api(&app, "GET", &dpop, &[("dpop", &proof)]).await;
        assert_eq!(status, http::StatusCode::UNAUTHORIZED, "{htm} {url}");
        assert!(
            challenges[0].contains("invalid_dpop_proof"),
            "{challenges:?}"
        );
    }
    // The bound token as a bearer token.
    let (status, _) = call_api(&app, "GET", &format!("Bearer {token}"), &[]).await;
    assert_eq!(status, http::StatusCode::UNAUTHORIZED);
    // Another client's proof (another key) with this token.
    client.new_key("ES256").await;
    let proof = client.proof("GET", htu, Some(&token)).await;
    let (status, challenges) = call_api(&app, "GET", &dpop, &[("dpop", &proof)]).await;
    assert_eq!(status, http::StatusCode::UNAUTHORIZED);
    assert!(
        challenges[0].contains("not the one the token is bound to"),
        "{challenges:?}"
    );

    // Proofs of the package's other algorithms, for tokens bound to them.
    for alg in ["Ed25519", "PS256", "RS256"] {
        client.new_key(alg).await;
        let body = client.bound_token(&idp).await;
        let token = body["access_token"].as_str().expect("a token").to_owned();
        let proof = client.proof("GET", htu, Some(&token)).await;
        let (status, challenges) =
            call_api(&app, "GET", &format!("DPoP {token}"), &[("dpop", &proof)]).await;
        assert_eq!(status, http::StatusCode::OK, "{alg}: {challenges:?}");
    }
}

#[tokio::test]
async fn real_certificate_bound_tokens_pass_with_their_certificate_only() {
    let Some(dir) = common::interop_dir() else {
        return;
    };
    let idp = Idp::start(&dir).await;
    let (cert, other) = (test_certificate(), test_certificate());
    let shown = common::url_encoded(&cert.cert.pem());
    let body = idp
        .grant(
            ("mtls-client", "mtls-client-secret"),
            "urn:tower-bearer:es256",
            "read",
            Some(("x-client-cert", &shown)),
        )
        .await;
    let token = body["access_token"].as_str().expect("a token").to_owned();

    let header = tower_bearer::CertificateHeader::new(
        "x-client-cert",
        tower_bearer::CertificateFormat::UrlEncodedPem,
    )
    .unwrap();
    let auth = BearerAuthLayer::builder()
        .issuer(&idp.issuer)
        .audience("urn:tower-bearer:es256")
        .client_certificate_header(header)
        .build()
        .unwrap();
    let app = api(&auth);
    let bearer = format!("Bearer {token}");
    let shown = |c: &rcgen::CertifiedKey<rcgen::KeyPair>| common::url_encoded(&c.cert.pem());
    let (status, _) = call_api(&app, "GET", &bearer, &[("x-client-cert", &shown(&cert))]).await;
    assert_eq!(status, http::StatusCode::OK);
    let (status, _) = call_api(&app, "GET", &bearer, &[("x-client-cert", &shown(&other))]).await;
    assert_eq!(status, http::StatusCode::UNAUTHORIZED);
    let (status, _) = call_api(&app, "GET", &bearer, &[]).await;
    assert_eq!(status, http::StatusCode::UNAUTHORIZED);
}

/// A self-signed client certificate made for the test.
fn test_certificate() -> rcgen::CertifiedKey<rcgen::KeyPair> {
    rcgen::generate_simple_self_signed(vec!["client.test".to_owned()]).unwrap()
}

/// Runs one of the Node scripts in `tests/interop` with `env`, and returns
/// its stdout, trimmed; a failure panics with its stderr.
async fn node(dir: &Path, script: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("node");
    cmd.arg(dir.join(script)).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{script} finished in time"))
        .expect("node is installed");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An access token from the authorization code flow of a user who logged
/// in `auth_age` seconds ago with `acr` (`tests/interop/user-token.mjs`):
/// oidc-provider's own `acr` and `auth_time`.
async fn user_token(dir: &Path, idp: &Idp, acr: Option<&str>, auth_age: u64) -> String {
    let auth_age = auth_age.to_string();
    let mut env = vec![
        ("ISSUER", idp.issuer.as_str()),
        ("RESOURCE", "urn:tower-bearer:rs256"),
        ("SCOPE", "read"),
        ("AUTH_AGE", auth_age.as_str()),
    ];
    if let Some(acr) = acr {
        env.push(("ACR", acr));
    }
    node(dir, "user-token.mjs", &env).await
}

#[tokio::test]
async fn step_up_routes_judge_a_real_idp_s_acr_and_auth_time() {
    let Some(dir) = common::interop_dir() else {
        return;
    };
    let idp = Idp::start(&dir).await;
    let auth = validator(&idp);
    let me = axum::routing::get(|p: tower_bearer::Principal| async move {
        p.subject().unwrap_or_default().to_owned()
    });
    let app = axum::Router::new()
        .route("/me", me)
        .route_layer(auth.require_step_up(
            tower_bearer::StepUp::acr_values(["phr"]).and_max_age(Duration::from_secs(600)),
        ))
        .layer(auth.clone());

    let fresh_phr = user_token(&dir, &idp, Some("phr"), 30).await;
    let claims = common::claims_of(&fresh_phr);
    assert_eq!(claims["acr"], "phr", "{claims}");
    let age = claims["iat"].as_i64().unwrap() - claims["auth_time"].as_i64().unwrap();
    assert!((30..60).contains(&age), "auth_time is {age} s before iat");
    let (status, challenges) = call_api(&app, "GET", &format!("Bearer {fresh_phr}"), &[]).await;
    assert_eq!(status, http::StatusCode::OK, "{challenges:?}");

    for (acr, auth_age, why) in [
        (None, 30, "the IdP's default acr"),
        (Some("urn:example:other"), 30, "another acr"),
        (Some("phr"), 3_600, "a login an hour old"),
    ] {
        let token = user_token(&dir, &idp, acr, auth_age).await;
        let (status, challenges) = call_api(&app, "GET", &format!("Bearer {token}"), &[]).await;
        assert_eq!(status, http::StatusCode::UNAUTHORIZED, "{why}");
        assert!(
            challenges[0].starts_with("Bearer error=\"insufficient_user_authentication\"")
                && challenges[0].contains("acr_values=\"phr\"")
                && challenges[0].contains("max_age=\"600\""),
            "{why}: {challenges:?}"
        );
    }

    // Client credentials: no user, no acr, no auth_time.
    let (status, _) = call_api(
        &app,
        "GET",
        &format!(
            "Bearer {}",
            idp.token("urn:tower-bearer:rs256", "read").await
        ),
        &[],
    )
    .await;
    assert_eq!(status, http::StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_mcp_sdk_discovers_authenticates_and_calls_the_mcp_example() {
    let Some(dir) = common::interop_dir() else {
        return;
    };
    let idp = Idp::start(&dir).await;
    let mut cmd = Command::new(common::example("mcp_server"));
    cmd.env_clear()
        .env("ISSUER", &idp.issuer)
        .env("LISTEN_ADDR", "127.0.0.1:0");
    let (_server, base) = common::listening(cmd).await;
    let mcp_url = format!("{base}/mcp");
    // A token with the right scope, from the right IdP, for another
    // audience.
    let other = idp
        .grant(MCP_CLIENT, "urn:other-api", "mcp:tools", None)
        .await;
    let other = other["access_token"].as_str().unwrap();

    let out = node(
        &dir,
        "mcp-client.mjs",
        &[
            ("MCP_URL", &mcp_url),
            ("CLIENT_ID", MCP_CLIENT.0),
            ("CLIENT_SECRET", MCP_CLIENT.1),
            ("OTHER_TOKEN", other),
        ],
    )
    .await;
    let report: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let metadata_url = format!("{base}/.well-known/oauth-protected-resource/mcp");

    // 1. The 401 names the metadata, which names the IdP.
    assert_eq!(report["unauthenticated_status"], 401, "{report}");
    assert_eq!(report["resource_metadata_url"], metadata_url.as_str());
    let metadata = &report["resource_metadata"];
    assert_eq!(metadata["resource"], mcp_url.as_str());
    assert_eq!(metadata["authorization_servers"][0], idp.issuer.as_str());
    assert_eq!(metadata["scopes_supported"][0], "mcp:tools");
    assert_eq!(report["authorization_server_issuer"], idp.issuer.as_str());

    // 2. The SDK asked for a token for the MCP server's URL (RFC 8707),
    // and got one with that audience.
    let token = &report["token_request"];
    assert_eq!(token["grant_type"], "client_credentials", "{report}");
    assert_eq!(token["resource"][0], mcp_url.as_str(), "{report}");
    assert_eq!(report["token_claims"]["aud"], mcp_url.as_str());

    // 3. It listed the tool and called it, as the client it is.
    assert_eq!(report["tools"], serde_json::json!(["whoami"]), "{report}");
    assert_eq!(report["call"]["isError"], false, "{report}");
    assert_eq!(
        report["call"]["content"][0]["text"],
        "client_id: mcp-client"
    );

    // 4. Another audience: 401, pointing at the metadata again.
    assert_eq!(report["other_audience_status"], 401, "{report}");
    let challenge = report["other_audience_challenge"].as_str().unwrap();
    assert!(
        challenge.starts_with(&format!(
            "Bearer resource_metadata=\"{metadata_url}\", error=\"invalid_token\""
        )),
        "{challenge}"
    );
}

const MCP_CLIENT: (&str, &str) = ("mcp-client", "mcp-client-secret");
