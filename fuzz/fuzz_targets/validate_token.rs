//! Token validation against a fixed key set. Two modes, chosen by the
//! first byte: the rest as a raw token string, or as a JOSE header and a
//! claim set (split at the first newline) that are signed with the
//! configured HS256 secret, so that fuzzed claims get past the signature
//! and reach claims parsing.
#![no_main]

use std::sync::OnceLock;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use tower_bearer::{Algorithm, BearerAuthLayer, ManualClock};

const SECRET: &[u8; 32] = b"fuzzing-secret-fuzzing-secret-32";

struct Fixture {
    rt: tokio::runtime::Runtime,
    auth: BearerAuthLayer,
    key: hmac::Key,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // An RSA and an EC key as well, so RS*/ES* headers find keys.
        let idp = rt.block_on(tower_bearer::testing::TestIssuer::start()).unwrap();
        idp.add_key(Algorithm::ES256);
        let auth = BearerAuthLayer::builder()
            .issuer("https://issuer.example")
            .audience("api")
            .jwks_json(idp.jwks_json())
            .shared_secret(Algorithm::HS256, SECRET.to_vec())
            .clock(ManualClock::at_unix(1_700_000_000))
            .build()
            .unwrap();
        Fixture { rt, auth, key: hmac::Key::new(hmac::HMAC_SHA256, SECRET) }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else { return };
    let token = if mode & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let split = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let (header, claims) = rest.split_at(split);
        let claims = claims.get(1..).unwrap_or_default();
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let tag = hmac::sign(&f.key, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag))
    };
    if let Ok(p) = f.rt.block_on(f.auth.validate(&token)) {
        // Whatever got through really satisfies the configuration.
        assert_eq!(p.claims().iss.as_deref(), Some("https://issuer.example"));
        assert!(p.claims().aud.iter().any(|a| a == "api"));
        assert!(p.claims().exp > 1_700_000_000 - 60);
        assert_eq!(p.algorithm(), Some(Algorithm::HS256));
    }
});
