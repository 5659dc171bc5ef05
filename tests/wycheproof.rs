//! C2SP/wycheproof JWS and JWK vectors, run through tower-bearer's key-set
//! parsing and signature verification (`BearerAuthLayer::verify_signature_only`, the same
//! code the layer runs before it checks claims).
//!
//! The vectors are read in place from `$TOWER_BEARER_VECTORS/wycheproof`
//! (`../shared/vectors` when unset); without them the tests print
//! `skipped: vectors not found` and pass.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tower_bearer::{Algorithm, BearerAuthLayer, KeySet, Limits};

fn vectors(file: &str) -> Option<Value> {
    let dir = match std::env::var_os("TOWER_BEARER_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors"),
    };
    let path = dir.join("wycheproof").join(file);
    match std::fs::read(&path) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).expect("vector file is JSON")),
        Err(_) if std::env::var_os("TOWER_BEARER_VECTORS").is_some() => {
            panic!(
                "TOWER_BEARER_VECTORS is set but {} cannot be read",
                path.display()
            )
        }
        Err(_) => {
            println!("skipped: vectors not found");
            None
        }
    }
}

/// Valid vectors this crate refuses on purpose, with the reason.
const DELIBERATE_REFUSALS: &[(u64, &str)] = &[
    (
        346,
        "PS384 token under a JWK whose alg is PS256: one algorithm per key",
    ),
    (
        350,
        "PS384 token under a JWK whose alg is PS256: one algorithm per key",
    ),
    (
        347,
        "ES512 (P-521) is not supported, and the JWK names the unregistered alg ES521",
    ),
    (
        351,
        "ES512 (P-521) is not supported, and the JWK names the unregistered alg ES521",
    ),
    (
        372,
        "strict base64url (RFC 7515 §2): a '?' in the header segment is refused",
    ),
    (
        373,
        "strict base64url (RFC 7515 §2): a '?' in the payload segment is refused",
    ),
];

/// Invalid vectors that are byte for byte the same input as a valid one
/// (same keys, same token), so no verifier can satisfy both: they are
/// reported, not asserted.
const CONTRADICTORY: &[(u64, u64)] = &[(367, 357), (370, 357)];

const JWK_DELIBERATE_REFUSALS: &[(u64, &str)] = &[
    (2, "symmetric (oct) keys are never taken from a JWK set"),
    (
        13,
        "symmetric (oct) keys are never taken from a JWK set; accepted through shared_secret",
    ),
    (
        14,
        "symmetric (oct) keys are never taken from a JWK set; accepted through shared_secret",
    ),
    (
        15,
        "symmetric (oct) keys are never taken from a JWK set; accepted through shared_secret",
    ),
];

fn hs_alg(name: &str) -> Option<Algorithm> {
    Algorithm::from_name(name).filter(|a| a.is_symmetric())
}

/// A validator over one group's keys: the public JWK set, or, for HMAC
/// groups, the secret configured explicitly.
fn verifier(
    public: Option<Value>,
    secret: Option<(Algorithm, Vec<u8>)>,
) -> Result<BearerAuthLayer, String> {
    let mut b = BearerAuthLayer::builder()
        .insecure_skip_issuer_check()
        .insecure_skip_audience_check();
    match (public, secret) {
        (Some(jwks), _) => b = b.jwks_json(jwks.to_string()),
        (None, Some((alg, k))) => b = b.shared_secret(alg, k),
        (None, None) => return Err("no key".into()),
    }
    b.build().map_err(|e| e.to_string())
}

/// The `k` of a group's only HMAC key, if that is what the group holds.
fn single_secret(private: &Value) -> Option<(Algorithm, Vec<u8>)> {
    let keys: Vec<&Value> = match private.get("keys") {
        Some(Value::Array(keys)) => keys.iter().collect(),
        _ => vec![private],
    };
    match keys.as_slice() {
        [key] if key["kty"] == "oct" => Some((
            hs_alg(key["alg"].as_str()?)?,
            URL_SAFE_NO_PAD.decode(key["k"].as_str()?).ok()?,
        )),
        _ => None,
    }
}

fn jws_text(case: &Value) -> String {
    match &case["jws"] {
        Value::String(s) => s.clone(),
        other => other.to_string(), // JSON serialization: never a compact JWS
    }
}

struct Tally {
    ran: usize,
    contradictory: usize,
    agreed: usize,
    refused_on_purpose: BTreeMap<u64, String>,
}

async fn run_case(
    auth: &Result<BearerAuthLayer, String>,
    case: &Value,
    t: &mut Tally,
    deliberate: &[(u64, &str)],
) {
    let id = case["tcId"].as_u64().unwrap();
    let expected = case["result"].as_str().unwrap();
    let verdict = match auth {
        Ok(auth) => auth
            .verify_signature_only(&jws_text(case))
            .await
            .map_err(|e| e.to_string()),
        Err(why) => Err(format!("key refused: {why}")),
    };
    t.ran += 1;
    if let Some((_, twin)) = CONTRADICTORY.iter().find(|(c, _)| *c == id) {
        println!("  tcId {id}: marked {expected} but identical to tcId {twin}; ours: {verdict:?}");
        t.contradictory += 1;
        return;
    }
    match (expected, &verdict) {
        ("invalid", Ok(_)) => panic!(
            "tcId {id} ({}) is invalid but was accepted",
            case["comment"]
        ),
        ("valid", Err(why)) => {
            let reason = deliberate
                .iter()
                .find(|(d, _)| *d == id)
                .unwrap_or_else(|| {
                    panic!(
                        "tcId {id} ({}) is valid but was refused: {why}",
                        case["comment"]
                    )
                });
            t.refused_on_purpose
                .insert(id, format!("{} — {why}", reason.1));
        }
        ("valid", Ok(_)) => {
            assert!(
                !deliberate.iter().any(|(d, _)| *d == id),
                "tcId {id} listed as refused but accepted"
            );
            t.agreed += 1;
        }
        ("acceptable", _) => t.agreed += 1,
        _ => t.agreed += 1,
    }
}

fn report(name: &str, t: &Tally, deliberate: &[(u64, &str)]) {
    println!(
        "wycheproof {name}: {} cases ran, {} agreed with the expected verdict, {} valid cases refused on purpose, {} contradictory vectors",
        t.ran,
        t.agreed,
        t.refused_on_purpose.len(),
        t.contradictory
    );
    for (id, why) in &t.refused_on_purpose {
        println!("  tcId {id}: {why}");
    }
    assert_eq!(
        t.agreed + t.refused_on_purpose.len() + t.contradictory,
        t.ran
    );
    let listed: Vec<u64> = deliberate.iter().map(|(id, _)| *id).collect();
    let seen: Vec<u64> = t.refused_on_purpose.keys().copied().collect();
    assert_eq!(
        seen,
        listed
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn wycheproof_json_web_signature_vectors() {
    let Some(file) = vectors("json_web_signature_test.json") else {
        return;
    };
    // The contradictory pairs really are identical.
    let all: Vec<&Value> = file["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tests"].as_array().unwrap())
        .collect();
    let jws = |id: u64| all.iter().find(|c| c["tcId"] == id).unwrap()["jws"].clone();
    for (a, b) in CONTRADICTORY {
        assert_eq!(jws(*a), jws(*b));
    }
    let mut t = Tally {
        ran: 0,
        contradictory: 0,
        agreed: 0,
        refused_on_purpose: BTreeMap::new(),
    };
    for group in file["testGroups"].as_array().unwrap() {
        let public = group.get("public").map(|jwk| json!({ "keys": [jwk] }));
        let secret = if public.is_none() {
            group.get("private").and_then(single_secret)
        } else {
            None
        };
        let auth = verifier(public, secret);
        for case in group["tests"].as_array().unwrap() {
            run_case(&auth, case, &mut t, DELIBERATE_REFUSALS).await;
        }
    }
    assert_eq!(t.ran, file["numberOfTests"].as_u64().unwrap() as usize);
    report("json_web_signature_test.json", &t, DELIBERATE_REFUSALS);
}

#[tokio::test]
async fn wycheproof_json_web_key_vectors() {
    let Some(file) = vectors("json_web_key_test.json") else {
        return;
    };
    let mut t = Tally {
        ran: 0,
        contradictory: 0,
        agreed: 0,
        refused_on_purpose: BTreeMap::new(),
    };
    for group in file["testGroups"].as_array().unwrap() {
        // Through the key-set parser, as a JWKS endpoint would serve it.
        let set = group
            .get("public")
            .or_else(|| group.get("private"))
            .unwrap();
        let auth = verifier(Some(set.clone()), None);
        for case in group["tests"].as_array().unwrap() {
            run_case(&auth, case, &mut t, JWK_DELIBERATE_REFUSALS).await;
        }
        // Single HMAC keys also through the explicit-secret path: short and
        // empty keys are refused by the builder, long keys work.
        if let Some(secret) = group.get("private").and_then(single_secret) {
            let auth = verifier(None, Some(secret));
            for case in group["tests"].as_array().unwrap() {
                let expected = case["result"].as_str().unwrap();
                let verdict = match &auth {
                    Ok(a) => a
                        .verify_signature_only(case["jws"].as_str().unwrap())
                        .await
                        .is_ok(),
                    Err(_) => false,
                };
                assert_eq!(
                    verdict,
                    expected == "valid",
                    "tcId {} via shared_secret",
                    case["tcId"]
                );
            }
        }
    }
    assert_eq!(t.ran, file["numberOfTests"].as_u64().unwrap() as usize);
    report("json_web_key_test.json", &t, JWK_DELIBERATE_REFUSALS);
}

#[test]
fn wycheproof_key_sets_skip_what_must_be_skipped() {
    let Some(file) = vectors("json_web_key_test.json") else {
        return;
    };
    let mut reasons = BTreeMap::new();
    for group in file["testGroups"].as_array().unwrap() {
        let Some(set) = group.get("private") else {
            continue;
        };
        let (parsed, skipped) = KeySet::parse(
            set.to_string().as_bytes(),
            &Algorithm::DEFAULT_ALLOWED,
            &Limits::default(),
        )
        .unwrap();
        // Keys with private material and symmetric keys are never kept.
        let forbidden: Vec<&str> = set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["kty"] == "oct" || k.get("d").is_some())
            .filter_map(|k| k["kid"].as_str())
            .collect();
        assert!(!forbidden.is_empty());
        assert!(
            parsed.kids().all(|kid| !forbidden.contains(&kid)),
            "{}: a private or symmetric key was kept",
            group["comment"]
        );
        for s in skipped {
            reasons.insert(group["comment"].as_str().unwrap().to_owned(), s.reason);
        }
    }
    println!("wycheproof json_web_key_test.json private sets: {reasons:#?}");
    assert!(!reasons.is_empty());

    // Public sets that must be refused, each for its own reason.
    let mut public_reasons = BTreeMap::new();
    for group in file["testGroups"].as_array().unwrap() {
        let Some(set) = group.get("public") else {
            continue;
        };
        let (parsed, skipped) = KeySet::parse(
            set.to_string().as_bytes(),
            &Algorithm::DEFAULT_ALLOWED,
            &Limits::default(),
        )
        .unwrap();
        if let Some(s) = skipped.first() {
            assert!(parsed.is_empty());
            public_reasons.insert(group["comment"].as_str().unwrap().to_owned(), s.reason);
        }
    }
    println!("wycheproof json_web_key_test.json public sets refused: {public_reasons:#?}");
    for (group, want) in [
        ("jws_rsa_roca_key", "ROCA"),
        ("keysize_too_small", "modulus size"),
        ("exponentOne", "exponent"),
        ("invalid_use", "use"),
        ("invalid_point", "not on the curve"),
        ("wrong_curve", "wrong length"),
        ("wrong_algorithm", "alg"),
        ("invalid_algorithm", "alg"),
    ] {
        let got = public_reasons
            .get(group)
            .unwrap_or_else(|| panic!("{group} was not refused"));
        assert!(got.contains(want), "{group}: {got}");
    }
}
