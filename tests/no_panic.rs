//! Whatever arrives, the validator answers with a verdict and never panics:
//! arbitrary strings, arbitrary `Authorization` headers through the layer,
//! and validly signed tokens with arbitrary JSON headers and claims. And
//! whatever durations it is configured with, `build()` answers Ok or Err
//! and a built validator answers its first request.

use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, Value};
use tower_bearer::testing::TestIssuer;
use tower_bearer::{
    AuthError, BearerAuthLayer, ClientId, ClientSecret, ConfigError, MAX_LIFETIME, ManualClock,
};

struct Fixture {
    rt: tokio::runtime::Runtime,
    idp: TestIssuer,
    auth: BearerAuthLayer,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let idp = rt.block_on(TestIssuer::start()).unwrap();
        // What the duration property fetches: the longest `max-age` there is.
        idp.set_jwks_cache_control(Some("max-age=18446744073709551615"));
        let auth = BearerAuthLayer::builder()
            .issuer(idp.issuer())
            .audience(idp.audience())
            .jwks_json(idp.jwks_json())
            .clock(ManualClock::at_unix(1_700_000_000))
            .build()
            .unwrap();
        Fixture { rt, idp, auth }
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-zA-Z0-9 +/=._:-]{0,12}".prop_map(Value::String),
        // Any Unicode, long enough to cross the `application/` prefix.
        "\\PC{0,20}".prop_map(Value::String),
        Just(Value::String("application/at+jwt".into())),
        Just(Value::String("RS256".into())),
        Just(Value::String("key-1".into())),
        (1_600_000_000i64..1_800_000_000).prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{1,4}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn object(names: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(names), json_value()), 0..8).prop_map(|kv| {
        Value::Object(
            kv.into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<Map<_, _>>(),
        )
    })
}

const HEADER_NAMES: &[&str] = &[
    "alg", "kid", "typ", "crit", "b64", "jwk", "jku", "x5u", "x5c", "cty", "zip", "x",
];
const CLAIM_NAMES: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "scope",
    "scp",
    "client_id",
    "azp",
    "roles",
    "x",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_get_a_verdict(token in ".{0,400}") {
        let f = fixture();
        let _ = f.rt.block_on(f.auth.validate(&token));
    }

    #[test]
    fn arbitrary_authorization_headers_get_a_client_error(
        bearer in any::<bool>(),
        spaces in 0usize..3,
        bytes in prop::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..300),
    ) {
        use tower::{Service, ServiceExt};
        let f = fixture();
        let mut value = if bearer { b"Bearer".to_vec() } else { Vec::new() };
        value.extend(std::iter::repeat_n(b' ', spaces));
        value.extend(&bytes);
        let Ok(value) = http::HeaderValue::from_bytes(&value) else { return Ok(()) };
        let req = http::Request::get("/").header("authorization", value).body(()).unwrap();
        let mut svc = tower::Layer::layer(&f.auth, tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }));
        let status = f.rt.block_on(async { svc.ready().await.unwrap().call(req).await.unwrap() }).status();
        prop_assert!(status == 400 || status == 401, "{status}");
    }

    #[test]
    fn arbitrary_dotted_base64_gets_a_verdict(parts in prop::collection::vec("[A-Za-z0-9_=-]{0,80}", 0..7)) {
        let f = fixture();
        let _ = f.rt.block_on(f.auth.validate(&parts.join(".")));
    }

    #[test]
    fn arbitrary_unicode_in_header_strings_gets_a_verdict(typ in "\\PC{0,30}", kid in "\\PC{0,30}", use_kid in any::<bool>()) {
        let f = fixture();
        let key = f.idp.current_kid();
        let header = serde_json::json!({ "alg": "RS256", "kid": if use_kid { key.clone() } else { kid }, "typ": typ });
        let claims = serde_json::json!({ "iss": f.idp.issuer(), "aud": f.idp.audience(), "exp": 1_700_000_100 });
        let _ = f.rt.block_on(f.auth.validate(&f.idp.sign_raw(&header, &claims, &key)));
    }

    #[test]
    fn arbitrary_json_in_a_validly_signed_token_gets_a_verdict(
        header in object(HEADER_NAMES),
        claims in object(CLAIM_NAMES),
        raw_claims in prop::option::of(json_value()),
    ) {
        let f = fixture();
        let kid = f.idp.current_kid();
        let mut header = header;
        // Mostly keep a usable alg and kid so the signature passes and the
        // claims are reached.
        if let Value::Object(h) = &mut header {
            h.entry("alg").or_insert("RS256".into());
            h.entry("kid").or_insert(kid.clone().into());
        }
        let claims = raw_claims.unwrap_or(claims);
        let token = f.idp.sign_raw(&header, &claims, &kid);
        let verdict = f.rt.block_on(f.auth.validate(&token));
        // Nothing random can carry the right iss, aud and exp at once.
        prop_assert!(verdict.is_err());
    }
}

/// Any duration, with the edges (zero, the largest, around the bounds)
/// drawn often.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(tower_bearer::MAX_LEEWAY),
        Just(tower_bearer::MAX_LIFETIME),
        Just(tower_bearer::MAX_LIFETIME + Duration::from_nanos(1)),
        (0u64..100_000).prop_map(Duration::from_secs),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_durations_build_or_fail_and_never_panic_at_the_first_request(
        d in prop::collection::vec(duration(), 11),
    ) {
        let Fixture { rt, idp, .. } = fixture();
        let built = BearerAuthLayer::builder()
            .issuer(idp.issuer())
            .audience(idp.audience())
            .jwks_uri(idp.jwks_uri())
            .leeway(d[0])
            .fetch_timeout(d[1])
            .refetch_cooldown(d[2])
            .jwks_max_age(d[3])
            .jwks_max_age_range(d[4].min(d[5])..=d[4].max(d[5]))
            .max_stale(d[6])
            .max_token_age(d[7])
            .token_cache(100, d[8])
            .introspection(ClientId::new("rs"), ClientSecret::new("secret"))
            .introspection_max_age(d[9])
            .active_check_max_age(d[10])
            .build();
        if let Ok(auth) = built {
            let token = idp.token().sign();
            let _ = rt.block_on(auth.validate(&token));
            let _ = rt.block_on(auth.validate(&token));
        }
    }

    /// One setting at a time, the others at their defaults, so that most
    /// cases build: then a valid token is accepted, or answered 503 when
    /// the fetch timeout is too short to fetch the keys, never refused.
    #[test]
    fn any_duration_in_one_setting_builds_or_fails_and_a_valid_token_is_never_refused(
        which in 0usize..11,
        d in duration(),
    ) {
        let Fixture { rt, idp, .. } = fixture();
        let base = || {
            BearerAuthLayer::builder()
                .issuer(idp.issuer())
                .audience(idp.audience())
                .jwks_uri(idp.jwks_uri())
        };
        let introspecting =
            || base().introspection(ClientId::new("rs"), ClientSecret::new("secret"));
        let built: Result<BearerAuthLayer, ConfigError> = match which {
            0 => base().leeway(d).build(),
            1 => base().fetch_timeout(d).build(),
            2 => base().refetch_cooldown(d).build(),
            3 => base().jwks_max_age(d).build(),
            4 => base().jwks_max_age_range(Duration::ZERO..=d).build(),
            5 => base().jwks_max_age_range(d..=MAX_LIFETIME).build(),
            6 => base().max_stale(d).build(),
            7 => base().max_token_age(d).build(),
            8 => base().token_cache(100, d).build(),
            9 => introspecting().introspection_max_age(d).build().map(Into::into),
            _ => introspecting().active_check_max_age(d).build().map(Into::into),
        };
        if let Ok(auth) = built {
            let token = idp.token().sign();
            for _ in 0..2 {
                let verdict = rt.block_on(auth.validate(&token));
                prop_assert!(
                    matches!(verdict, Ok(_) | Err(AuthError::TemporarilyUnavailable { .. })),
                    "setting {which}, {d:?}: {verdict:?}"
                );
            }
        }
    }
}
