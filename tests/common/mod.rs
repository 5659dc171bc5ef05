//! Shared helpers for the integration tests.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use tower_bearer::testing::TestIssuer;
use tower_bearer::{Algorithm, AuthError, BearerAuthLayer, ManualClock, TokenError};

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("base64url")
}

/// `header.claims.signature` from JSON values and raw signature bytes.
pub fn assemble(header: &Value, claims: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string()),
        b64(claims.to_string()),
        b64(sig)
    )
}

/// The decoded claims of a compact JWS.
pub fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&unb64(token.split('.').nth(1).unwrap())).unwrap()
}

/// A clock at a fixed instant, and an issuer whose tokens' `iat` and
/// `exp` follow it.
pub async fn issuer_on_a_manual_clock() -> (ManualClock, TestIssuer) {
    let clock = ManualClock::at_unix(1_800_000_000);
    let idp = TestIssuer::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    (clock, idp)
}

/// A validator for `idp`'s tokens, keys by discovery.
pub fn validator(idp: &TestIssuer) -> BearerAuthLayer {
    BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .build()
        .unwrap()
}

/// The same on `clock`.
pub fn validator_on(idp: &TestIssuer, clock: &ManualClock) -> BearerAuthLayer {
    BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// An issuer with one key per asymmetric algorithm family, and a validator
/// for it that found its keys by discovery.
pub struct Setup {
    pub idp: TestIssuer,
    pub auth: BearerAuthLayer,
    /// `kid` per algorithm.
    pub kids: Vec<(Algorithm, String)>,
}

impl Setup {
    pub async fn new() -> Self {
        let idp = TestIssuer::start().await.unwrap();
        let mut kids = vec![(Algorithm::RS256, idp.current_kid())];
        for alg in [
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ] {
            kids.push((alg, idp.add_key(alg)));
        }
        let auth = BearerAuthLayer::builder()
            .issuer(idp.issuer())
            .audience(idp.audience())
            .build()
            .unwrap();
        Self { idp, auth, kids }
    }

    pub fn kid(&self, alg: Algorithm) -> &str {
        &self.kids.iter().find(|(a, _)| *a == alg).unwrap().1
    }

    /// Validates and expects an `invalid_token` refusal; returns why.
    pub async fn refused(&self, token: &str) -> TokenError {
        match self.auth.validate(token).await {
            Err(AuthError::InvalidToken(e)) => e,
            other => panic!("expected invalid_token, got {other:?}"),
        }
    }
}

/// A built example binary: `cargo test` builds the examples before it runs
/// the tests (target/<profile>/deps/<test> → target/<profile>/examples/).
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test`, which builds the examples",
        path.display()
    );
    path
}

/// As nginx's `$ssl_client_escaped_cert`: every byte but the unreserved
/// ones percent-encoded.
pub fn url_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A PEM `CERTIFICATE` block around `der`.
pub fn pem_certificate(der: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        STANDARD.encode(der)
    )
}

/// A response as the tests read it: status, first challenge, and body (the
/// JSON, or the text as a JSON string).
pub struct Answer {
    pub status: http::StatusCode,
    pub challenge: Option<String>,
    pub body: Value,
}

/// `req` through `app`, read as an [`Answer`].
pub async fn send(app: &axum::Router, req: http::Request<axum::body::Body>) -> Answer {
    use tower::ServiceExt as _;
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let challenge = res
        .headers()
        .get(http::header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    Answer {
        status,
        challenge,
        body,
    }
}

/// A server process started from `cmd`, and the base URL of its first
/// stdout line, `listening on URL`. Its stdout and stderr are read to the
/// end (a child that logs dies of EPIPE if nobody does); when it does not
/// announce itself, the panic carries what it said on stderr.
pub async fn listening(mut cmd: tokio::process::Command) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?} did not start: {e}"));
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line()).await;
    let base = match &first {
        Ok(Ok(Some(line))) => line.strip_prefix("listening on ").map(str::to_owned),
        _ => None,
    };
    let Some(base) = base else {
        let mut said = String::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            stderr.read_to_string(&mut said),
        )
        .await;
        panic!("{cmd:?} did not announce itself ({first:?}); its stderr: {said}");
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
    });
    (child, base)
}

/// A running `examples/resource_server`.
pub struct Server {
    pub child: tokio::process::Child,
    pub base: String,
}

/// `examples/resource_server` on a free loopback port, with only `env`.
pub async fn resource_server(env: &[(&str, &str)]) -> Server {
    let mut cmd = tokio::process::Command::new(example("resource_server"));
    cmd.env_clear().env("LISTEN_ADDR", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (child, base) = listening(cmd).await;
    Server { child, base }
}

/// `tests/interop`, where `npm ci` installed the Node packages the
/// interop tests run (oidc-provider, jose, …), or `None` (skipped) when
/// they are not installed and `./scripts/test` did not ask for them.
pub fn interop_dir() -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
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

/// The Python of the test venv (`tests/python`: grpcio, prometheus_client),
/// or `None` (skipped) when it is not installed and `./scripts/test` did
/// not ask for it: under `./scripts/test` (which sets
/// `TOWER_BEARER_INTEROP`) a missing venv fails the test.
pub fn python() -> Option<std::path::PathBuf> {
    match std::env::var_os("TOWER_BEARER_PYTHON") {
        Some(python) => Some(python.into()),
        None => {
            assert!(
                std::env::var_os("TOWER_BEARER_INTEROP").is_none(),
                "./scripts/test runs the interop tests but TOWER_BEARER_PYTHON is unset"
            );
            println!("skipped: the Python venv is not installed (./scripts/test installs it)");
            None
        }
    }
}
