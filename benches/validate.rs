//! Per-token cost of local validation, next to the cost of the bare
//! signature check it is built on (the floor), measured in the same run.
//!
//! `cargo bench --bench validate`

use std::hint::black_box;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::Value;
use tower_bearer::testing::TestIssuer;
use tower_bearer::{Algorithm, BearerAuth};

fn b64d(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// The pre-parsed aws-lc-rs key for the issuer's current JWK.
fn floor_key(jwk: &Value, alg: Algorithm) -> ParsedPublicKey {
    let s = |k: &str| b64d(jwk[k].as_str().unwrap());
    match alg {
        Algorithm::RS256 => RsaPublicKeyComponents {
            n: s("n"),
            e: s("e"),
        }
        .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
        .unwrap(),
        Algorithm::ES256 => {
            let mut point = vec![4];
            point.extend(s("x"));
            point.extend(s("y"));
            ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).unwrap()
        }
        _ => ParsedPublicKey::new(&signature::ED25519, s("x")).unwrap(),
    }
}

fn validate(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let idp = rt
            .block_on(TestIssuer::builder().algorithm(alg).start())
            .unwrap();
        let auth = BearerAuth::builder()
            .issuer(idp.issuer())
            .audience(idp.audience())
            .jwks_json(idp.jwks_json())
            .build()
            .unwrap();
        // A realistic access token: about 900 bytes for RS256.
        let token = idp
            .token()
            .scope("openid profile email documents:read documents:write")
            .claim("azp", "web-frontend")
            .claim(
                "realm_access",
                serde_json::json!({ "roles": ["offline_access", "uma_authorization", "editor"] }),
            )
            .claim("sid", "5f8c3a8e-2f8e-4b7a-9a2e-0c7f9e3d1b2a")
            .sign();
        let key = floor_key(&idp.public_jwk(&idp.current_kid()).unwrap(), alg);
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = b64d(sig);

        let mut group = c.benchmark_group(format!("{alg} ({} byte token)", token.len()));
        group.bench_function("floor: aws-lc-rs verify, pre-parsed key", |b| {
            b.iter(|| {
                key.verify_sig(black_box(input.as_bytes()), black_box(&sig))
                    .unwrap()
            })
        });
        group.bench_function("tower-bearer validate", |b| {
            b.iter(|| rt.block_on(auth.validate(black_box(&token))).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, validate);
criterion_main!(benches);
