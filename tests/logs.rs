//! What the crate logs: never a token, and no URL with credentials in its
//! userinfo or query string.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower_bearer::BearerAuthLayer;
use tower_bearer::testing::EndpointFault;

/// Everything logged at any level while it is the default subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// One thread: the background refresh logs through the same subscriber.
#[tokio::test(flavor = "current_thread")]
async fn logged_urls_carry_no_userinfo_or_query_and_tokens_are_never_logged() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (clock, idp) = common::issuer_on_a_manual_clock().await;
    let jwks = idp
        .jwks_uri()
        .replace("http://", "http://operator:pa55word@")
        + "?api_key=s3cret-key";
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .jwks_uri(jwks)
        .clock(clock.clone())
        .build()
        .unwrap();
    let good = idp.token().expires_in(100_000).sign();
    assert!(auth.validate(&good).await.is_ok());
    let expired = idp.token().expires_in(-3600).sign();
    assert!(auth.validate(&expired).await.is_err());
    // A failing fetch, through a background refresh.
    idp.set_jwks_fault(EndpointFault::Status(500));
    let mut health = auth.watch_key_health();
    clock.advance(Duration::from_secs(600));
    assert!(auth.validate(&good).await.is_ok());
    tokio::time::timeout(Duration::from_secs(20), health.changed())
        .await
        .unwrap()
        .unwrap();
    assert!(auth.key_health().last_error.is_some());

    let text = logs.text();
    assert!(text.contains("JWK set fetched"), "{text}");
    assert!(text.contains("fetching the JWK set failed"), "{text}");
    assert!(text.contains(&format!("{}/jwks", idp.issuer())), "{text}");
    for secret in [
        "operator",
        "pa55word",
        "api_key",
        "s3cret-key",
        &good,
        &expired,
    ] {
        assert!(!text.contains(secret), "{secret} was logged:\n{text}");
    }
    for token in [&good, &expired] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!text.contains(signature), "a signature was logged");
    }
}
