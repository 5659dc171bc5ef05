//! Interop with a real, certified authorization server: panva's
//! oidc-provider (`tests/interop/idp.mjs`), run with Node on loopback.
//! `./scripts/test` installs it from the committed lockfile (`npm ci`) and
//! sets `TOWER_BEARER_INTEROP=1`; a plain `cargo test` without it installed
//! prints `skipped: interop IdP not installed`.

use std::path::{Path, PathBuf};
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

fn interop_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    if dir.join("node_modules/oidc-provider").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("TOWER_BEARER_INTEROP").is_none(),
        "TOWER_BEARER_INTEROP is set but tests/interop/node_modules is missing: run `npm ci` there"
    );
    println!("skipped: interop IdP not installed (./scripts/test installs it)");
    None
}

struct Idp {
    _child: Child,
    issuer: String,
}

impl Idp {
    async fn start(dir: &Path) -> Self {
        let mut child = Command::new("node")
            .arg(dir.join("idp.mjs"))
            .env("PORT", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = child.stderr.take().unwrap();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        let Ok(Ok(Some(line))) = first else {
            // Whatever it said on its way out, for the failure message.
            let mut said = String::new();
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut said),
            )
            .await;
            panic!("the IdP did not start ({first:?}); its stderr: {said}");
        };
        let issuer = line
            .strip_prefix("listening on ")
            .expect("the listening line")
            .to_owned();
        // Keep reading both: a child that logs dies of EPIPE if nobody does.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        });
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
        let res = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth("interop-client", Some("interop-client-secret"))
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
        let body: Value = res.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }
}

fn validator(idp: &Idp) -> BearerAuthLayer {
    let mut b = BearerAuthLayer::builder().issuer(&idp.issuer);
    for (resource, _) in RESOURCES {
        b = b.audience(resource);
    }
    b.build().unwrap()
}

#[tokio::test]
async fn real_idp_tokens_of_every_algorithm_are_accepted_through_discovery_alone() {
    let Some(dir) = interop_dir() else { return };
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
    let Some(dir) = interop_dir() else { return };
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
    let Some(dir) = interop_dir() else { return };
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
    let Some(dir) = interop_dir() else { return };
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
    let Some(dir) = interop_dir() else { return };
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
