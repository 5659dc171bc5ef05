//! Introspection answer parsing: any bytes give a principal, a refusal, or
//! "endpoint broken" — never a panic — and whatever is accepted says
//! `active: true` and passes the configured audience.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tower_bearer::{BearerAuthLayer, ManualClock, WithIntrospection};

fn auth() -> &'static BearerAuthLayer<WithIntrospection> {
    static A: OnceLock<BearerAuthLayer<WithIntrospection>> = OnceLock::new();
    A.get_or_init(|| {
        BearerAuthLayer::builder()
            .issuer("https://issuer.example")
            .audience("api")
            .introspection(
                tower_bearer::ClientId::new("rs"),
                tower_bearer::ClientSecret::new("secret"),
            )
            .introspection_endpoint("https://issuer.example/introspect")
            .clock(ManualClock::at_unix(1_700_000_000))
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = auth().parse_introspection_answer(data) {
        // Members the parser skips are not range-checked, so the answer may
        // hold numbers serde_json::Value refuses (fuzz finding 1).
        if let Ok(answer) = serde_json::from_slice::<serde_json::Value>(data) {
            assert_eq!(answer["active"], serde_json::Value::Bool(true));
        }
        let aud = &p.claims().aud;
        assert!(aud.is_empty() || aud.iter().any(|a| a == "api"));
    }
});
