//! The validation pipeline against good and hostile tokens, through the
//! public `BearerAuthLayer::validate` entry point and a real loopback issuer.

mod common;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use common::{Setup, assemble, b64, claims_of, unb64};
use serde_json::{Value, json};
use tower_bearer::testing::TestIssuer;
use tower_bearer::{Algorithm, AuthError, BearerAuthLayer, Limits, TokenError};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn accepts_every_asymmetric_algorithm_found_by_discovery() {
    let s = Setup::new().await;
    for (alg, kid) in &s.kids {
        let token = s.idp.token().signed_by(kid).scope("read").sign();
        let p = s
            .auth
            .validate(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(p.algorithm(), Some(*alg));
        assert_eq!(p.key_id(), Some(kid.as_str()));
        assert_eq!(p.subject(), Some("test-user"));
    }
    // Discovery and one JWKS fetch served every key.
    assert_eq!(s.idp.jwks_fetches(), 1);
}

#[tokio::test]
async fn the_principal_names_the_key_that_verified_it_not_the_header() {
    let s = Setup::new().await;
    let rs256 = s.kid(Algorithm::RS256).to_owned();
    let claims = claims_of(&s.idp.token().sign());
    // No kid: the one RS256 key verifies it, and is named.
    let no_kid = s.idp.sign_raw(&json!({ "alg": "RS256" }), &claims, &rs256);
    let p = s.auth.validate(&no_kid).await.unwrap();
    assert_eq!(p.key_id(), Some(rs256.as_str()));
    let jws = s.auth.verify_signature_only(&no_kid).await.unwrap();
    assert_eq!(jws.kid.as_deref(), Some(rs256.as_str()));
}

#[tokio::test]
async fn accepts_rs256_ps256_and_rs512_with_a_jwk_that_has_no_alg() {
    let idp = TestIssuer::start().await.unwrap();
    let kid = idp.current_kid();
    let mut jwk = idp.public_jwk(&kid).unwrap();
    jwk.as_object_mut().unwrap().remove("alg");
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .jwks_json(json!({ "keys": [jwk] }).to_string())
        .build()
        .unwrap();
    for alg in ["RS256", "PS256", "RS512"] {
        let token = idp.token().header("alg", alg).sign();
        let p = auth
            .validate(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(p.algorithm().map(|a| a.as_str()), Some(alg));
    }
}

#[tokio::test]
async fn rejects_alg_none_in_any_letter_case() {
    let s = Setup::new().await;
    let claims = claims_of(&s.idp.token().sign());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({ "alg": alg, "kid": s.kid(Algorithm::RS256) });
        for token in [
            assemble(&header, &claims, b""),
            format!("{}.", assemble(&header, &claims, b"").trim_end_matches('.')),
        ] {
            assert_eq!(
                s.refused(&token).await,
                TokenError::AlgorithmNotAllowed,
                "{alg}"
            );
        }
    }
}

#[tokio::test]
async fn rejects_lowercase_or_unknown_algorithm_names() {
    let s = Setup::new().await;
    for alg in ["rs256", "RS256 ", "ES512", "HS256", "EdDSA25519", ""] {
        let token = s.idp.token().header("alg", alg).sign();
        assert_eq!(
            s.refused(&token).await,
            TokenError::AlgorithmNotAllowed,
            "{alg:?}"
        );
    }
}

fn hs256(secret: &[u8], input: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes())
        .as_ref()
        .to_vec()
}

fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

#[tokio::test]
async fn rejects_hs256_signed_with_the_rsa_public_key_as_pem_or_jwk() {
    let s = Setup::new().await;
    let kid = s.kid(Algorithm::RS256).to_owned();
    let secrets = [
        pem(&s.idp.public_key_der(&kid).unwrap()).into_bytes(),
        s.idp.public_jwk(&kid).unwrap().to_string().into_bytes(),
        s.idp.public_key_der(&kid).unwrap(),
    ];
    let claims = claims_of(&s.idp.token().sign());
    let header = json!({ "alg": "HS256", "kid": kid, "typ": "JWT" });
    for secret in &secrets {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let token = format!("{input}.{}", b64(hs256(secret, &input)));
        assert_eq!(s.refused(&token).await, TokenError::AlgorithmNotAllowed);
    }

    // Even where HS256 is allowed with a configured secret, the RSA key's
    // kid never turns into an HMAC key: only the configured secret is used.
    let auth = BearerAuthLayer::builder()
        .issuer(s.idp.issuer())
        .audience(s.idp.audience())
        .shared_secret(Algorithm::HS256, vec![7u8; 32])
        .build()
        .unwrap();
    for secret in &secrets {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let token = format!("{input}.{}", b64(hs256(secret, &input)));
        let err = auth.validate(&token).await.unwrap_err();
        assert_eq!(err, AuthError::InvalidToken(TokenError::BadSignature));
    }
}

#[tokio::test]
async fn accepts_hs256_only_with_the_configured_secret() {
    let idp = TestIssuer::start().await.unwrap();
    let secret = b"0123456789abcdef0123456789abcdef";
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .shared_secret(Algorithm::HS256, secret.to_vec())
        .build()
        .unwrap();
    let claims = claims_of(&idp.token().sign());
    let header = json!({ "alg": "HS256", "typ": "JWT" });
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let good = format!("{input}.{}", b64(hs256(secret, &input)));
    assert_eq!(
        auth.validate(&good).await.unwrap().algorithm(),
        Some(Algorithm::HS256)
    );
    let bad = format!(
        "{input}.{}",
        b64(hs256(b"another secret of thirty-two by", &input))
    );
    assert_eq!(
        auth.validate(&bad).await.unwrap_err(),
        AuthError::InvalidToken(TokenError::BadSignature)
    );
}

#[tokio::test]
async fn rejects_es256_zero_and_r_equals_s_equals_n_signatures() {
    let s = Setup::new().await;
    let token = s.idp.token().signed_by(s.kid(Algorithm::ES256)).sign();
    let input = token.rsplit_once('.').unwrap().0;
    let n = hex("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
    let mut r_s_n = n.clone();
    r_s_n.extend_from_slice(&n);
    let mut one_zero = vec![0u8; 63];
    one_zero.push(1);
    for sig in [vec![0u8; 64], r_s_n, one_zero, vec![0u8; 0], vec![0u8; 65]] {
        let forged = format!("{input}.{}", b64(&sig));
        assert_eq!(s.refused(&forged).await, TokenError::BadSignature);
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn attacker_es256_token(header: Value, claims: &Value) -> (String, Value) {
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = key.public_key().as_ref();
    let jwk =
        json!({ "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]) });
    let mut header = header;
    if header.get("jwk").is_some() {
        header["jwk"] = jwk.clone();
    }
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let sig = key.sign(&rng, input.as_bytes()).unwrap();
    (format!("{input}.{}", b64(sig.as_ref())), jwk)
}

#[tokio::test]
async fn rejects_a_key_embedded_in_the_jwk_header() {
    let s = Setup::new().await;
    let claims = claims_of(&s.idp.token().sign());
    let (token, _) = attacker_es256_token(json!({ "alg": "ES256", "jwk": {} }), &claims);
    assert_eq!(
        s.refused(&token).await,
        TokenError::UntrustedKeySource("jwk")
    );
    let (token, _) = attacker_es256_token(
        json!({ "alg": "ES256", "kid": s.kid(Algorithm::ES256), "jwk": {} }),
        &claims,
    );
    assert_eq!(
        s.refused(&token).await,
        TokenError::UntrustedKeySource("jwk")
    );
}

#[tokio::test]
async fn rejects_jku_and_x5u_headers_without_fetching_them() {
    let s = Setup::new().await;
    let decoy = TestIssuer::start().await.unwrap();
    for (name, want) in [("jku", "jku"), ("x5u", "x5u")] {
        let token = s.idp.token().header(name, decoy.jwks_uri()).sign();
        assert_eq!(
            s.refused(&token).await,
            TokenError::UntrustedKeySource(want)
        );
        let (token, _) = attacker_es256_token(
            json!({ "alg": "ES256", "kid": "attacker", name: decoy.jwks_uri() }),
            &claims_of(&token),
        );
        assert_eq!(
            s.refused(&token).await,
            TokenError::UntrustedKeySource(want)
        );
    }
    assert_eq!(
        decoy.jwks_fetches(),
        0,
        "a URL from a token header was fetched"
    );
}

#[tokio::test]
async fn rejects_hostile_kids() {
    let s = Setup::new().await;
    let long = "k".repeat(10_000);
    for kid in [
        "../../../../etc/passwd",
        "/dev/zero",
        "' OR '1'='1' --",
        "$(curl 127.0.0.1)",
        "{{7*7}}",
        "\u{0}",
        "key-1\u{0}",
        "key-1\n",
        "\u{1b}[31m",
        "KEY-1",
        long.as_str(),
    ] {
        let token = s.idp.token().header("kid", kid).sign();
        let why = s.refused(&token).await;
        assert!(
            matches!(why, TokenError::UnknownKey | TokenError::LimitExceeded(_)),
            "{kid:?}: {why:?}"
        );
    }
    // The non-string kid is malformed.
    let token = s.idp.token().header("kid", 1).sign();
    assert_eq!(s.refused(&token).await, TokenError::Malformed);
}

#[tokio::test]
async fn rejects_flipped_bits_swapped_payloads_and_foreign_keys() {
    let s = Setup::new().await;
    for (alg, kid) in &s.kids {
        let token = s.idp.token().signed_by(kid).sign();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let mut sig = unb64(sig);
        sig[5] ^= 0x01;
        assert_eq!(
            s.refused(&format!("{input}.{}", b64(&sig))).await,
            TokenError::BadSignature,
            "{alg}"
        );

        let other = s.idp.token().signed_by(kid).claim("sub", "admin").sign();
        let parts: Vec<&str> = token.split('.').collect();
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            other.split('.').nth(1).unwrap(),
            parts[2]
        );
        assert_eq!(s.refused(&swapped).await, TokenError::BadSignature, "{alg}");
    }
    // A key the issuer never published, under a kid it did publish.
    let rogue = TestIssuer::start().await.unwrap();
    let claims = claims_of(&s.idp.token().sign());
    let header = json!({ "alg": "RS256", "kid": s.kid(Algorithm::RS256), "typ": "at+jwt" });
    let token = rogue.sign_raw(&header, &claims, &rogue.current_kid());
    assert_eq!(s.refused(&token).await, TokenError::BadSignature);
}

#[tokio::test]
async fn rejects_algorithms_that_do_not_fit_the_key() {
    let s = Setup::new().await;
    let rsa = s.kid(Algorithm::RS256).to_owned();
    let ec = s.kid(Algorithm::ES256).to_owned();
    for (kid, alg, what) in [
        (
            &rsa,
            "RS512",
            "RS512 on a key published as RS256 (really signed with RS512)",
        ),
        (&rsa, "PS256", "PS256 on an RS256 key"),
        (&ec, "RS256", "RS256 header on an EC key"),
        (&ec, "ES384", "ES384 header on a P-256 key"),
        (&ec, "EdDSA", "EdDSA header on an EC key"),
    ] {
        let token = s.idp.token().signed_by(kid).header("alg", alg).sign();
        assert_eq!(
            s.refused(&token).await,
            TokenError::KeyAlgorithmMismatch,
            "{what}"
        );
    }
}

#[tokio::test]
async fn ignores_keys_published_for_encryption() {
    let idp = TestIssuer::start().await.unwrap();
    let enc_kid = idp.add_key(Algorithm::RS256);
    let mut keys = Vec::new();
    for kid in [idp.current_kid(), enc_kid.clone()] {
        let mut jwk = idp.public_jwk(&kid).unwrap();
        if kid == enc_kid {
            jwk["use"] = "enc".into();
        }
        keys.push(jwk);
    }
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .jwks_json(json!({ "keys": keys }).to_string())
        .build()
        .unwrap();
    assert!(auth.validate(&idp.token().sign()).await.is_ok());
    let token = idp.token().signed_by(&enc_kid).sign();
    assert_eq!(
        auth.validate(&token).await.unwrap_err(),
        AuthError::InvalidToken(TokenError::UnknownKey)
    );
}

#[tokio::test]
async fn checks_exp_and_nbf_with_leeway() {
    let s = Setup::new().await;
    assert!(
        s.auth
            .validate(&s.idp.token().expires_in(-30).sign())
            .await
            .is_ok(),
        "within leeway"
    );
    assert_eq!(
        s.refused(&s.idp.token().expires_in(-61).sign()).await,
        TokenError::Expired
    );
    assert_eq!(
        s.refused(&s.idp.token().claim("nbf", now() + 120).sign())
            .await,
        TokenError::NotYetValid
    );
    assert!(
        s.auth
            .validate(&s.idp.token().claim("nbf", now() + 30).sign())
            .await
            .is_ok()
    );
    assert!(
        s.auth
            .validate(&s.idp.token().claim("exp", (now() + 60) as f64 + 0.5).sign())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn rejects_missing_or_non_numeric_exp() {
    let s = Setup::new().await;
    assert!(
        matches!(s.refused(&s.idp.token().without("exp").sign()).await, TokenError::MissingClaim(c) if &*c == "exp")
    );
    for bad in [
        json!((now() + 300).to_string()),
        json!(true),
        json!(null),
        json!([now() + 300]),
        json!({}),
    ] {
        assert_eq!(
            s.refused(&s.idp.token().claim("exp", bad.clone()).sign())
                .await,
            TokenError::InvalidClaim("exp"),
            "{bad}"
        );
    }
    assert_eq!(
        s.refused(&s.idp.token().claim("nbf", "0").sign()).await,
        TokenError::InvalidClaim("nbf")
    );
}

#[tokio::test]
async fn rejects_wrong_missing_empty_or_non_string_audiences() {
    let s = Setup::new().await;
    assert_eq!(
        s.refused(&s.idp.token().claim("aud", "other-api").sign())
            .await,
        TokenError::WrongAudience
    );
    assert_eq!(
        s.refused(&s.idp.token().claim("aud", "TEST-API").sign())
            .await,
        TokenError::WrongAudience
    );
    assert_eq!(
        s.refused(&s.idp.token().without("aud").sign()).await,
        TokenError::WrongAudience
    );
    for bad in [
        json!([]),
        json!([1]),
        json!(5),
        json!(["test-api", 5]),
        json!({"test-api": true}),
    ] {
        assert_eq!(
            s.refused(&s.idp.token().claim("aud", bad.clone()).sign())
                .await,
            TokenError::InvalidClaim("aud"),
            "{bad}"
        );
    }
    let ok = s
        .idp
        .token()
        .claim("aud", json!(["other-api", "test-api"]))
        .sign();
    assert!(s.auth.validate(&ok).await.is_ok());
}

#[tokio::test]
async fn rejects_wrong_issuer_including_trailing_slash_and_case() {
    let s = Setup::new().await;
    let iss = s.idp.issuer().to_owned();
    for bad in [
        json!(format!("{iss}/")),
        json!(iss.to_uppercase()),
        json!("http://127.0.0.1:1"),
        json!(format!("{iss} ")),
    ] {
        assert_eq!(
            s.refused(&s.idp.token().claim("iss", bad.clone()).sign())
                .await,
            TokenError::WrongIssuer,
            "{bad}"
        );
    }
    assert_eq!(
        s.refused(&s.idp.token().without("iss").sign()).await,
        TokenError::WrongIssuer
    );
    assert_eq!(
        s.refused(&s.idp.token().claim("iss", 5).sign()).await,
        TokenError::InvalidClaim("iss")
    );
}

#[tokio::test]
async fn rejects_unknown_crit_and_unencoded_payloads() {
    let s = Setup::new().await;
    for crit in [json!(["exp"]), json!(["b64"]), json!([]), json!("x")] {
        let token = s
            .idp
            .token()
            .header("crit", crit.clone())
            .header("exp", 1)
            .sign();
        assert_eq!(
            s.refused(&token).await,
            TokenError::UnsupportedExtension,
            "{crit}"
        );
    }
    let token = s
        .idp
        .token()
        .header("b64", false)
        .header("crit", json!(["b64"]))
        .sign();
    assert_eq!(s.refused(&token).await, TokenError::UnsupportedExtension);
    let token = s.idp.token().header("b64", false).sign();
    assert_eq!(s.refused(&token).await, TokenError::UnsupportedExtension);
}

#[tokio::test]
async fn rejects_other_token_types() {
    let s = Setup::new().await;
    for typ in [
        "dpop+jwt",
        "id_token+jwt",
        "application/dpop+jwt",
        "JOSE",
        "secevent+jwt",
        // Present but empty is not absent.
        "",
        "application/",
        " ",
    ] {
        let token = s.idp.token().header("typ", typ).sign();
        assert_eq!(s.refused(&token).await, TokenError::WrongType, "{typ}");
    }
    for typ in ["JWT", "at+jwt", "application/at+jwt", "AT+JWT"] {
        assert!(
            s.auth
                .validate(&s.idp.token().header("typ", typ).sign())
                .await
                .is_ok(),
            "{typ}"
        );
        // A Security Event Token passed off as an access token: its
        // `events` claim gives it away, whatever the `typ`.
        let set = s
            .idp
            .token()
            .header("typ", typ)
            .claim("events", json!({ "https://schemas.openid.net/secevent/caep/event-type/session-revoked": {} }))
            .sign();
        assert_eq!(s.refused(&set).await, TokenError::WrongType, "SET as {typ}");
    }
    let mut header = json!({ "alg": "RS256", "kid": s.kid(Algorithm::RS256) });
    let claims = claims_of(&s.idp.token().sign());
    assert!(
        s.auth
            .validate(&s.idp.sign_raw(&header, &claims, s.kid(Algorithm::RS256)))
            .await
            .is_ok(),
        "no typ"
    );
    header["typ"] = json!(1);
    assert_eq!(
        s.refused(&s.idp.sign_raw(&header, &claims, s.kid(Algorithm::RS256)))
            .await,
        TokenError::Malformed
    );
}

#[tokio::test]
async fn non_ascii_header_values_get_a_verdict_not_a_panic() {
    let s = Setup::new().await;
    for typ in [
        "aaaaaaaaaaaé",
        "applicationé/at+jwt",
        "ééééééé",
        "application/é",
    ] {
        let token = s.idp.token().header("typ", typ).sign();
        assert_eq!(s.refused(&token).await, TokenError::WrongType, "{typ}");
    }
    let token = s.idp.token().header("kid", "ключ").sign();
    assert_eq!(s.refused(&token).await, TokenError::UnknownKey);
}

#[tokio::test]
async fn null_untrusted_members_still_refuse_the_token() {
    let s = Setup::new().await;
    for (name, want) in [
        ("jku", TokenError::UntrustedKeySource("jku")),
        ("x5u", TokenError::UntrustedKeySource("x5u")),
        ("jwk", TokenError::UntrustedKeySource("jwk")),
        ("crit", TokenError::UnsupportedExtension),
    ] {
        let token = s.idp.token().header(name, Value::Null).sign();
        assert_eq!(s.refused(&token).await, want, "{name}");
    }
}

#[tokio::test]
async fn rejects_tokens_of_the_wrong_shape() {
    let s = Setup::new().await;
    let token = s.idp.token().sign();
    let p: Vec<&str> = token.split('.').collect();
    let cases = [
        (format!("{}.{}", p[0], p[1]), TokenError::Malformed),
        (
            format!("{}.{}.{}.{}", p[0], p[1], p[2], p[2]),
            TokenError::Malformed,
        ),
        (
            format!("{}.{}.{}.{}.{}", p[0], "", p[1], p[1], p[2]),
            TokenError::Encrypted,
        ),
        (
            format!("{}=.{}.{}", p[0], p[1], p[2]),
            TokenError::Malformed,
        ),
        (
            format!("{}.{}=.{}", p[0], p[1], p[2]),
            TokenError::Malformed,
        ),
        (
            format!("{}.{}.{}==", p[0], p[1], p[2]),
            TokenError::Malformed,
        ),
        // Characters of the standard base64 alphabet, not base64url.
        (
            format!("{}.{}.+{}", p[0], p[1], &p[2][1..]),
            TokenError::Malformed,
        ),
        (
            format!("{}.{}.{}/", p[0], p[1], &p[2][..p[2].len() - 1]),
            TokenError::Malformed,
        ),
        ("..".to_owned(), TokenError::Malformed),
        (String::new(), TokenError::Malformed),
        (
            format!("{}.{}.{}", b64("not json"), p[1], p[2]),
            TokenError::Malformed,
        ),
        (
            format!("{}.{}.{}", b64("[1,2]"), p[1], p[2]),
            TokenError::Malformed,
        ),
    ];
    for (token, want) in cases {
        assert_eq!(s.refused(&token).await, want, "{token}");
    }
    // A valid signature over claims that are not a JSON object.
    let header = json!({ "alg": "RS256", "kid": s.kid(Algorithm::RS256) });
    for claims in [json!([1]), json!("claims"), json!(null)] {
        let token = s.idp.sign_raw(&header, &claims, s.kid(Algorithm::RS256));
        assert_eq!(s.refused(&token).await, TokenError::Malformed);
    }
}

#[tokio::test]
async fn rejects_duplicate_header_parameters_and_claims() {
    let s = Setup::new().await;
    let kid = s.kid(Algorithm::RS256);
    let claims = claims_of(&s.idp.token().sign());
    let header_json = format!(r#"{{"alg":"RS256","kid":"{kid}","alg":"none"}}"#);
    let input = format!("{}.{}", b64(&header_json), b64(claims.to_string()));
    let token = format!("{input}.{}", b64("x"));
    assert_eq!(s.refused(&token).await, TokenError::Malformed);

    // A payload naming `sub` twice, validly signed.
    let body = claims.to_string();
    let dup = format!(r#"{{"sub":"admin",{}"#, &body[1..]);
    let header = json!({ "alg": "RS256", "kid": kid });
    let token = s.idp.sign_raw_bytes(&header, dup.as_bytes(), kid);
    assert_eq!(s.refused(&token).await, TokenError::Malformed);
}

#[tokio::test]
async fn rejects_deeply_nested_json_and_oversized_tokens() {
    let s = Setup::new().await;
    let deep = (0..40).fold(json!(1), |acc, _| json!([acc]));
    let token = s.idp.token().claim("nested", deep).sign();
    assert!(matches!(
        s.refused(&token).await,
        TokenError::LimitExceeded(_)
    ));
    let deep_header = (0..40).fold(json!(1), |acc, _| json!({ "a": acc }));
    let token = s.idp.token().header("x", deep_header).sign();
    assert!(matches!(
        s.refused(&token).await,
        TokenError::LimitExceeded(_)
    ));

    let big = s.idp.token().claim("pad", "x".repeat(17 * 1024)).sign();
    assert_eq!(s.refused(&big).await, TokenError::TooLarge);
    // The limit is checked before decoding: garbage of that size is "too
    // large", not "malformed".
    assert_eq!(s.refused(&"!".repeat(20_000)).await, TokenError::TooLarge);

    let strict = BearerAuthLayer::builder()
        .issuer(s.idp.issuer())
        .audience(s.idp.audience())
        .limits(Limits {
            max_token_bytes: 200,
            ..Limits::default()
        })
        .build()
        .unwrap();
    let token = s.idp.token().sign();
    assert_eq!(
        strict.validate(&token).await.unwrap_err(),
        AuthError::InvalidToken(TokenError::TooLarge)
    );

    // 1,600 distinct two-letter header members fit in 16 KiB; more than 32
    // members are refused before they cost anything.
    let mut header = s.idp.token();
    for a in 'a'..='z' {
        for b in 'a'..='z' {
            header = header.header(&format!("{a}{b}"), 0);
        }
    }
    let crowded = header.sign();
    assert!(crowded.len() < 16 * 1024);
    assert_eq!(
        s.refused(&crowded).await,
        TokenError::LimitExceeded("header members")
    );
    let mut header = s.idp.token();
    for i in 0..29 {
        header = header.header(&format!("m{i}"), 0);
    }
    assert!(s.auth.validate(&header.sign()).await.is_ok(), "32 members");
}

#[tokio::test]
async fn every_limit_is_configurable() {
    let s = Setup::new().await;
    let tight = Limits {
        max_json_depth: 2,
        max_kid_bytes: 5, // "key-1" fits
        max_header_members: 3,
        max_audiences: 1,
        max_scopes: 2,
        ..Limits::default()
    };
    let auth = BearerAuthLayer::builder()
        .issuer(s.idp.issuer())
        .audience(s.idp.audience())
        .limits(tight.clone())
        .build()
        .unwrap();
    let refused = |t: String| {
        let auth = auth.clone();
        async move {
            match auth.validate(&t).await {
                Err(AuthError::InvalidToken(e)) => e,
                other => panic!("{other:?}"),
            }
        }
    };
    assert!(matches!(
        refused(s.idp.token().claim("x", json!([[1]])).sign()).await,
        TokenError::LimitExceeded(_)
    ));
    assert!(matches!(
        refused(s.idp.token().header("kid", "key-12").sign()).await,
        TokenError::LimitExceeded(_)
    ));
    let two_auds = s
        .idp
        .token()
        .claim("aud", json!([s.idp.audience(), "b"]))
        .sign();
    assert_eq!(
        refused(two_auds).await,
        TokenError::LimitExceeded("aud entries")
    );
    assert_eq!(
        refused(s.idp.token().scope("a b c").sign()).await,
        TokenError::LimitExceeded("scopes")
    );
    assert_eq!(
        refused(s.idp.token().header("x5t", "a").sign()).await,
        TokenError::LimitExceeded("header members")
    );
    // The JWKS limit, at parse time.
    let jwks = s.idp.jwks_json();
    let one_key = Limits {
        max_jwks_keys: 1,
        ..Limits::default()
    };
    assert!(
        tower_bearer::KeySet::parse(jwks.as_bytes(), &Algorithm::DEFAULT_ALLOWED, &one_key)
            .is_err()
    );
}

#[tokio::test]
async fn audience_and_scope_counts_are_limited() {
    let s = Setup::new().await;
    let auds: Vec<String> = (0..33).map(|i| format!("aud-{i}")).collect();
    let token = s.idp.token().claim("aud", json!(auds)).sign();
    assert_eq!(
        s.refused(&token).await,
        TokenError::LimitExceeded("aud entries")
    );
    let scopes: Vec<String> = (0..257).map(|i| format!("s{i}")).collect();
    let token = s.idp.token().scope(&scopes.join(" ")).sign();
    assert_eq!(s.refused(&token).await, TokenError::LimitExceeded("scopes"));
    let token = s.idp.token().scope(&scopes[..256].join(" ")).sign();
    assert_eq!(s.auth.validate(&token).await.unwrap().scopes().len(), 256);
}

#[tokio::test]
async fn scopes_match_exactly_from_scope_and_scp() {
    let s = Setup::new().await;
    let p = s
        .auth
        .validate(&s.idp.token().scope("read:all reader  write").sign())
        .await
        .unwrap();
    assert!(p.has_scope("read:all") && p.has_scope("reader") && p.has_scope("write"));
    assert!(
        !p.has_scope("read")
            && !p.has_scope("rea")
            && !p.has_scope("")
            && !p.has_scope("read:all reader")
    );

    let p = s
        .auth
        .validate(&s.idp.token().claim("scp", "a b").sign())
        .await
        .unwrap();
    assert_eq!(p.scopes().iter().collect::<Vec<_>>(), ["a", "b"]);
    let p = s
        .auth
        .validate(
            &s.idp
                .token()
                .claim("scp", json!(["x", "y z"]))
                .scope("x w")
                .sign(),
        )
        .await
        .unwrap();
    assert!(p.has_scope("x") && p.has_scope("y z") && p.has_scope("w") && !p.has_scope("y"));
    assert_eq!(p.scopes().len(), 3, "duplicates are folded");

    assert_eq!(
        s.refused(&s.idp.token().claim("scope", json!(5)).sign())
            .await,
        TokenError::InvalidClaim("scope")
    );
    assert_eq!(
        s.refused(&s.idp.token().claim("scp", json!(["a", 1])).sign())
            .await,
        TokenError::InvalidClaim("scope")
    );

    let auth0 = BearerAuthLayer::builder()
        .issuer(s.idp.issuer())
        .audience(s.idp.audience())
        .scope_claims(["permissions"])
        .build()
        .unwrap();
    let p = auth0
        .validate(
            &s.idp
                .token()
                .claim("permissions", json!(["read:docs"]))
                .scope("ignored")
                .sign(),
        )
        .await
        .unwrap();
    assert!(p.has_scope("read:docs") && !p.has_scope("ignored"));
}

#[tokio::test]
async fn required_claims_and_strict_rfc9068_mode() {
    let s = Setup::new().await;
    let auth = BearerAuthLayer::builder()
        .issuer(s.idp.issuer())
        .audience(s.idp.audience())
        .require_claims(["tenant"])
        .build()
        .unwrap();
    assert!(
        matches!(auth.validate(&s.idp.token().sign()).await, Err(AuthError::InvalidToken(TokenError::MissingClaim(c))) if &*c == "tenant")
    );
    assert!(
        auth.validate(&s.idp.token().claim("tenant", "acme").sign())
            .await
            .is_ok()
    );

    let strict = BearerAuthLayer::builder()
        .issuer(s.idp.issuer())
        .audience(s.idp.audience())
        .token_type(tower_bearer::TokenTypePolicy::Rfc9068)
        .build()
        .unwrap();
    assert!(strict.validate(&s.idp.token().sign()).await.is_ok());
    assert_eq!(
        strict
            .validate(&s.idp.token().header("typ", "JWT").sign())
            .await
            .unwrap_err(),
        AuthError::InvalidToken(TokenError::WrongType)
    );
    assert!(matches!(
        strict.validate(&s.idp.token().without("client_id").sign()).await,
        Err(AuthError::InvalidToken(TokenError::MissingClaim(c))) if &*c == "client_id"
    ));
}

#[tokio::test]
async fn typed_claims_are_available_to_the_application() {
    #[derive(serde::Deserialize)]
    struct Mine {
        tenant: String,
        roles: Vec<String>,
    }
    let s = Setup::new().await;
    let token = s
        .idp
        .token()
        .claim("tenant", "acme")
        .claim("roles", json!(["a"]))
        .sign();
    // Verified, then a cache hit (which reads the claim set from the
    // cached token), then by a validator without a cache.
    let uncached = BearerAuthLayer::builder()
        .issuer(s.idp.issuer())
        .audience(s.idp.audience())
        .jwks_json(s.idp.jwks_json())
        .no_token_cache()
        .build()
        .unwrap();
    let p = s.auth.validate(&token).await.unwrap();
    let hit = s.auth.validate(&token).await.unwrap();
    let fresh = uncached.validate(&token).await.unwrap();
    for p in [&p, &hit, &fresh] {
        let mine: Mine = p.deserialize_claims().unwrap();
        assert_eq!((mine.tenant.as_str(), mine.roles.len()), ("acme", 1));
    }
    assert_eq!(p.claims().client_id.as_deref(), Some("test-client"));
    assert!(p.claims().jti.is_some() && p.claims().iat.is_some());
    // Debug output never holds the whole claim set.
    let debug = format!("{p:?}");
    assert!(!debug.contains("acme") && !debug.contains("jti"), "{debug}");
}
