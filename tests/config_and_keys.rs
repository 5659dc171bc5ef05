//! Configuration mistakes are caught by `build()`, and JWK sets keep their
//! usable keys while skipping the rest.

use std::time::Duration;

use serde_json::{Value, json};
use tower_bearer::testing::TestIssuer;
use tower_bearer::{
    Algorithm, BearerAuthLayer, ClientId, ClientSecret, ConfigError, JwksError, KeySet, Limits,
    MAX_LEEWAY, MAX_LIFETIME, MAX_TOKEN_CACHE_ENTRIES,
};

fn base() -> tower_bearer::Builder {
    BearerAuthLayer::builder()
        .issuer("https://idp.example")
        .audience("api")
}

#[test]
fn issuer_and_audience_are_required_unless_explicitly_skipped() {
    let e = BearerAuthLayer::builder()
        .audience("api")
        .build()
        .unwrap_err();
    assert_eq!(e, ConfigError::MissingIssuer);
    assert!(e.to_string().contains("insecure_skip_issuer_check"));
    assert_eq!(
        BearerAuthLayer::builder()
            .issuer("https://idp.example")
            .build()
            .unwrap_err(),
        ConfigError::MissingAudience
    );
    assert_eq!(
        base().audience("").build().unwrap_err(),
        ConfigError::EmptyValue("audience")
    );
    assert_eq!(
        BearerAuthLayer::builder()
            .issuer("")
            .audience("a")
            .build()
            .unwrap_err(),
        ConfigError::EmptyValue("issuer")
    );
    // Skipping the issuer check leaves nothing to discover keys from.
    let e = BearerAuthLayer::builder()
        .insecure_skip_issuer_check()
        .audience("a")
        .build()
        .unwrap_err();
    assert_eq!(e, ConfigError::NoKeySource);
    assert!(
        BearerAuthLayer::builder()
            .insecure_skip_issuer_check()
            .insecure_skip_audience_check()
            .jwks_uri("https://idp.example/jwks")
            .build()
            .is_ok()
    );
}

#[test]
fn urls_must_be_https_unless_loopback() {
    for bad in [
        "http://idp.example",
        "ftp://idp.example",
        "not a url",
        "http://10.0.0.1",
        "http://localhost.evil.example",
    ] {
        let e = BearerAuthLayer::builder()
            .issuer(bad)
            .audience("a")
            .build()
            .unwrap_err();
        assert!(matches!(e, ConfigError::InsecureUrl(_)), "{bad}: {e:?}");
    }
    // The error names the URL without the credentials it may carry.
    let e = base()
        .jwks_uri("http://ops:pa55@idp.example/jwks?key=s3cret")
        .build()
        .unwrap_err();
    assert_eq!(
        e,
        ConfigError::InsecureUrl("http://idp.example/jwks".into())
    );
    let debug = format!("{:?}", base().jwks_uri("https://ops:pa55@idp.example/jwks"));
    assert!(!debug.contains("pa55"), "{debug}");
    for good in [
        "https://idp.example",
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:9",
        "http://127.9.9.9",
    ] {
        assert!(
            BearerAuthLayer::builder()
                .issuer(good)
                .audience("a")
                .build()
                .is_ok(),
            "{good}"
        );
    }
    let e = base()
        .jwks_uri("http://idp.example/jwks")
        .build()
        .unwrap_err();
    assert!(matches!(e, ConfigError::InsecureUrl(_)));
}

#[test]
fn algorithm_and_secret_mistakes_are_refused() {
    assert_eq!(
        base().algorithms([]).build().unwrap_err(),
        ConfigError::NoAlgorithms
    );
    assert!(matches!(
        base().algorithms([Algorithm::HS256]).build(),
        Err(ConfigError::Secret(_))
    ));
    assert!(matches!(
        base().shared_secret(Algorithm::HS256, vec![1; 31]).build(),
        Err(ConfigError::Secret(_))
    ));
    assert!(matches!(
        base().shared_secret(Algorithm::HS512, vec![1; 63]).build(),
        Err(ConfigError::Secret(_))
    ));
    assert!(matches!(
        base().shared_secret(Algorithm::RS256, vec![1; 64]).build(),
        Err(ConfigError::Secret(_))
    ));
    assert!(
        base()
            .shared_secret(Algorithm::HS384, vec![1; 48])
            .build()
            .is_ok()
    );
}

#[test]
fn required_claims_are_deduplicated_and_capped() {
    assert!(
        base()
            .require_claims(["sub", "sub", "tenant"])
            .build()
            .is_ok()
    );
    let many: Vec<String> = (0..65).map(|i| format!("c{i}")).collect();
    assert!(matches!(
        base().require_claims(many).build(),
        Err(ConfigError::InvalidLimit(_))
    ));
}

#[test]
fn other_nonsense_is_refused() {
    assert_eq!(
        base().realm("a\"b").build().unwrap_err(),
        ConfigError::InvalidRealm
    );
    assert_eq!(
        base().realm("a\nb").build().unwrap_err(),
        ConfigError::InvalidRealm
    );
    assert_eq!(
        base().scope_claims([""]).build().unwrap_err(),
        ConfigError::EmptyValue("claim name")
    );
    let zero = Limits {
        max_token_bytes: 0,
        ..Limits::default()
    };
    assert_eq!(
        base().limits(zero).build().unwrap_err(),
        ConfigError::InvalidLimit("max_token_bytes")
    );
    let inverted = Limits {
        min_rsa_bits: 4096,
        max_rsa_bits: 2048,
        ..Limits::default()
    };
    assert!(matches!(
        base().limits(inverted).build(),
        Err(ConfigError::InvalidLimit(_))
    ));
    assert_eq!(
        base().jwks_json("{}").build().unwrap_err(),
        ConfigError::Jwks(JwksError::NotAJwks)
    );
    assert_eq!(
        base().jwks_json(r#"{"keys":[]}"#).build().unwrap_err(),
        ConfigError::NoUsableKeys
    );
}

#[test]
fn durations_past_their_bounds_are_refused_naming_the_bound() {
    let centuries = Duration::from_secs(500 * 365 * 24 * 3600);
    let d = Duration::from_secs(600);
    let cases = [
        (
            base().token_cache(10, centuries).build().map(drop),
            "token_cache (max_ttl)",
            "365 days",
        ),
        (
            base()
                .introspection(ClientId::new("rs"), ClientSecret::new("secret"))
                .introspection_max_age(Duration::MAX)
                .build()
                .map(drop),
            "introspection_max_age",
            "365 days",
        ),
        // The order of the setters does not matter.
        (
            base()
                .active_check_max_age(Duration::MAX)
                .introspection(ClientId::new("rs"), ClientSecret::new("secret"))
                .build()
                .map(drop),
            "active_check_max_age",
            "365 days",
        ),
        (
            base().max_stale(Duration::MAX).build().map(drop),
            "max_stale",
            "365 days",
        ),
        (
            base()
                .jwks_max_age_range(d..=Duration::MAX)
                .build()
                .map(drop),
            "jwks_max_age_range (end)",
            "365 days",
        ),
        (
            base().leeway(Duration::MAX).build().map(drop),
            "leeway",
            "10 min",
        ),
        (
            base()
                .leeway(MAX_LEEWAY + Duration::from_nanos(1))
                .build()
                .map(drop),
            "leeway",
            "10 min",
        ),
        (
            base().fetch_timeout(Duration::MAX).build().map(drop),
            "fetch_timeout",
            "5 min",
        ),
        (
            base().refetch_cooldown(Duration::MAX).build().map(drop),
            "refetch_cooldown",
            "365 days",
        ),
    ];
    // Each built at once: with introspection, a builder is of another type.
    for (built, setting, bound) in cases {
        let e = built.unwrap_err();
        assert!(
            matches!(e, ConfigError::TooLong { setting: s, .. } if s == setting),
            "{setting}: {e:?}"
        );
        assert_eq!(e.to_string(), format!("{setting} must be at most {bound}"));
    }
    assert!(
        base()
            .leeway(MAX_LEEWAY)
            .max_stale(MAX_LIFETIME)
            .token_cache(10, MAX_LIFETIME)
            .jwks_max_age(MAX_LIFETIME)
            .jwks_max_age_range(MAX_LIFETIME..=MAX_LIFETIME)
            .build()
            .is_ok(),
        "the bounds themselves are accepted"
    );
    assert_eq!(
        base().fetch_timeout(Duration::ZERO).build().unwrap_err(),
        ConfigError::InvalidLimit("fetch_timeout")
    );
    // The cache's table is allocated when built: past its bound, refused
    // (not an allocation that aborts the process).
    for entries in [MAX_TOKEN_CACHE_ENTRIES + 1, u64::MAX] {
        let e = base()
            .token_cache(entries, Duration::from_secs(60))
            .build()
            .unwrap_err();
        assert_eq!(
            e,
            ConfigError::TooMany {
                setting: "token_cache (max_entries)",
                max: MAX_TOKEN_CACHE_ENTRIES
            }
        );
        assert_eq!(
            e.to_string(),
            "token_cache (max_entries) must be at most 16777216"
        );
    }
    assert_eq!(
        base()
            .introspection(ClientId::new("rs"), ClientSecret::new("secret"))
            .introspection_concurrency(0)
            .build()
            .unwrap_err(),
        ConfigError::InvalidLimit("introspection_concurrency")
    );
}

async fn issuer_with_all_families() -> (TestIssuer, Vec<String>) {
    let idp = TestIssuer::start().await.unwrap();
    let mut kids = vec![idp.current_kid()];
    for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
        kids.push(idp.add_key(alg));
    }
    (idp, kids)
}

fn parse(keys: Vec<Value>) -> (KeySet, Vec<tower_bearer::SkippedKey>) {
    KeySet::parse(
        json!({ "keys": keys }).to_string().as_bytes(),
        &Algorithm::DEFAULT_ALLOWED,
        &Limits::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn unusable_keys_are_skipped_and_usable_ones_kept() {
    let (idp, kids) = issuer_with_all_families().await;
    let good: Vec<Value> = kids.iter().map(|k| idp.public_jwk(k).unwrap()).collect();
    let rsa = good[0].clone();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = rsa.clone();
        v["kid"] = "bad".into();
        f(&mut v);
        v
    };
    let bad = vec![
        with(&|v| v["use"] = "enc".into()),
        with(&|v| v["key_ops"] = json!(["encrypt"])),
        with(&|v| v["alg"] = "RSA-OAEP".into()),
        with(&|v| v["alg"] = "HS256".into()),
        with(&|v| v["alg"] = "ES256".into()),
        with(&|v| v["d"] = "AQAB".into()),
        with(&|v| v["n"] = "AQAB".into()),
        with(&|v| v["n"] = "not base64!".into()),
        with(&|v| v["e"] = "AAAA".into()),
        with(&|v| v["e"] = "AQ".into()),
        with(&|v| v["n"] = "".into()),
        with(&|v| v["n"] = "AAAA".into()),
        with(&|v| v["kty"] = "RSA-X".into()),
        with(&|v| {
            v.as_object_mut().unwrap().remove("n");
        }),
        json!({ "kty": "oct", "kid": "bad", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0" }),
        json!({ "kty": "EC", "kid": "bad", "crv": "P-256", "x": "AAAA", "y": "AAAA" }),
        json!({ "kty": "EC", "kid": "bad", "crv": "P-256", "x": "", "y": "" }),
        json!({ "kty": "EC", "kid": "bad", "crv": "secp256k1", "x": "AAAA", "y": "AAAA" }),
        json!({ "kty": "OKP", "kid": "bad", "crv": "Ed448", "x": "AAAA" }),
        json!({ "kty": "OKP", "kid": "bad", "crv": "Ed25519", "x": "AAAA" }),
        json!({ "kid": 7 }),
        json!("not an object"),
    ];
    let n_bad = bad.len();
    let mut all = bad;
    all.extend(good.clone());
    let (set, skipped) = parse(all);
    assert_eq!(set.len(), good.len());
    assert_eq!(skipped.len(), n_bad);
    let mut got: Vec<&str> = set.kids().collect();
    got.sort_unstable();
    let mut want: Vec<&str> = kids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[tokio::test]
async fn rsa_moduli_outside_the_limits_are_refused() {
    let idp = TestIssuer::start().await.unwrap();
    let jwk = idp.public_jwk(&idp.current_kid()).unwrap();
    let strict = Limits {
        min_rsa_bits: 3072,
        ..Limits::default()
    };
    let (set, skipped) = KeySet::parse(
        json!({ "keys": [jwk.clone()] }).to_string().as_bytes(),
        &Algorithm::DEFAULT_ALLOWED,
        &strict,
    )
    .unwrap();
    assert!(set.is_empty());
    assert_eq!(
        skipped[0].reason,
        "RSA modulus size outside the accepted range"
    );

    let mut small = jwk;
    small["n"] = common_b64(&[0xC5; 128]).into(); // 1024 bits
    let (set, _) = parse(vec![small]);
    assert!(set.is_empty());
}

fn common_b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[test]
fn a_set_with_too_many_keys_is_refused_whole() {
    let keys: Vec<Value> = (0..101)
        .map(|i| json!({ "kty": "oct", "kid": i.to_string(), "k": "AAAA" }))
        .collect();
    let e = KeySet::parse(
        json!({ "keys": keys }).to_string().as_bytes(),
        &Algorithm::DEFAULT_ALLOWED,
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        JwksError::TooManyKeys {
            found: 101,
            limit: 100
        }
    );
}

#[tokio::test]
async fn keys_outside_the_allow_list_are_skipped() {
    let (idp, kids) = issuer_with_all_families().await;
    let keys: Vec<Value> = kids.iter().map(|k| idp.public_jwk(k).unwrap()).collect();
    let (set, skipped) = KeySet::parse(
        json!({ "keys": keys }).to_string().as_bytes(),
        &[Algorithm::ES256],
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(set.kids().collect::<Vec<_>>(), [kids[1].as_str()]);
    assert_eq!(skipped.len(), 3);
}
