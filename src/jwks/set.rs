//! A key set: JWKs turned into ready-to-use verifying keys, indexed by `kid`.
//!
//! Keys are parsed once, when the set is built, into `aws-lc-rs`
//! [`ParsedPublicKey`]s, so verifying a token never rebuilds a key.
//! Unusable keys are skipped with a warning instead of failing the set: one
//! exotic key at the issuer must not take the API down.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use aws_lc_rs::{digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use serde::Deserialize;

use crate::alg::{Algorithm, Family};
use crate::config::Limits;

/// One verifying key, ready for every allowed algorithm it can serve.
pub(crate) struct Key {
    kid: Option<Box<str>>,
    verifiers: Vec<(Algorithm, Verifier)>,
    /// SHA-256 of the JWK it was parsed from (all its members), so that a
    /// refetched set keeps this very `Arc` for an unchanged JWK; `None`
    /// for configured secrets.
    fingerprint: Option<[u8; 32]>,
}

enum Verifier {
    Public(ParsedPublicKey),
    Hmac(Box<hmac::Key>),
}

impl Key {
    /// The verifier for `alg`, if this key may be used with it.
    fn verifier(&self, alg: Algorithm) -> Option<&Verifier> {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }

    pub(crate) fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

/// Verifies `signature` over `message` with `key` under `alg`.
pub(crate) fn verify(key: &Key, alg: Algorithm, message: &[u8], sig: &[u8]) -> bool {
    match key.verifier(alg) {
        Some(Verifier::Public(k)) => k.verify_sig(message, sig).is_ok(),
        Some(Verifier::Hmac(k)) => hmac::verify(k, message, sig).is_ok(),
        None => false,
    }
}

/// The outcome of looking a key up for a token.
pub(crate) enum Lookup<'a> {
    Found(&'a Arc<Key>),
    /// Keys exist under this `kid` (or, without a `kid`, at all), but none
    /// fits the token's algorithm.
    Mismatch,
    /// Nothing under this `kid`.
    Unknown,
}

/// A set of verifying keys, as published by an issuer's JWKS endpoint or
/// given statically.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<Arc<Key>>,
    by_kid: HashMap<Box<str>, Vec<usize>>,
    /// Only the configured shared secrets, before the first JWKS fetch:
    /// an asymmetric token cannot be judged yet.
    partial: bool,
}

/// Why a JWKS document was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksError {
    /// Not a JSON object with a `keys` array.
    NotAJwks,
    /// More keys than the configured limit.
    TooManyKeys {
        /// How many keys the document holds.
        found: usize,
        /// The configured limit.
        limit: usize,
    },
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAJwks => f.write_str("the document is not a JWK set"),
            Self::TooManyKeys { found, limit } => {
                write!(
                    f,
                    "the JWK set holds {found} keys, more than the limit of {limit}"
                )
            }
        }
    }
}

impl std::error::Error for JwksError {}

/// Why one JWK was left out of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// The key's `kid`, if it had a readable one.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub reason: &'static str,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.kids().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`), keeping every key usable
    /// with one of `allowed` and reporting the others.
    ///
    /// Skipped: keys whose `use` is not `sig`, whose `key_ops` lack
    /// `verify`, symmetric (`oct`) keys, keys carrying private parameters,
    /// unknown key types or curves, RSA moduli outside the configured size
    /// range, malformed parameters, and keys whose own `alg` is not allowed.
    pub fn parse(
        json: &[u8],
        allowed: &[Algorithm],
        limits: &Limits,
    ) -> Result<(Self, Vec<SkippedKey>), JwksError> {
        Self::parse_reusing(json, allowed, limits, None)
    }

    /// [`parse`](Self::parse), taking from `previous` every key whose JWK
    /// is unchanged, member for member: the same `Arc`, so verifications
    /// cached with it stay valid. A `kid` alone never matches; a `kid`
    /// reused for new key material gets a new key.
    fn parse_reusing(
        json: &[u8],
        allowed: &[Algorithm],
        limits: &Limits,
        previous: Option<&KeySet>,
    ) -> Result<(Self, Vec<SkippedKey>), JwksError> {
        let raw: RawJwks = serde_json::from_slice(json).map_err(|_| JwksError::NotAJwks)?;
        if raw.keys.len() > limits.max_jwks_keys {
            return Err(JwksError::TooManyKeys {
                found: raw.keys.len(),
                limit: limits.max_jwks_keys,
            });
        }
        let mut set = Self::default();
        let mut skipped = Vec::new();
        for value in raw.keys {
            // `Value` serialises its members in one canonical order.
            let fingerprint = serde_json::to_vec(&value).map(|bytes| {
                let mut out = [0u8; 32];
                out.copy_from_slice(digest::digest(&digest::SHA256, &bytes).as_ref());
                out
            });
            let unchanged = fingerprint.as_ref().ok().and_then(|fp| {
                previous?
                    .keys
                    .iter()
                    .find(|k| k.fingerprint.as_ref() == Some(fp))
            });
            if let Some(key) = unchanged {
                set.insert_arc(key.clone());
                continue;
            }
            let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            match key_from_jwk(value, allowed, limits) {
                Ok(mut key) => {
                    key.fingerprint = fingerprint.ok();
                    set.insert_arc(Arc::new(key));
                }
                Err(reason) => skipped.push(SkippedKey { kid, reason }),
            }
        }
        Ok((set, skipped))
    }

    /// [`parse`](Self::parse) reusing the keys of `previous`, logging each
    /// skipped key as a warning; also returns how many were skipped.
    pub(crate) fn parse_logged(
        json: &[u8],
        allowed: &[Algorithm],
        limits: &Limits,
        previous: Option<&KeySet>,
    ) -> Result<(Self, usize), JwksError> {
        let (set, skipped) = Self::parse_reusing(json, allowed, limits, previous)?;
        for s in &skipped {
            tracing::warn!(
                kid = s.kid.as_deref(),
                reason = s.reason,
                "skipping unusable JWK"
            );
        }
        Ok((set, skipped.len()))
    }

    /// A set holding one shared secret for HMAC algorithms.
    pub(crate) fn insert_secret(&mut self, alg: Algorithm, secret: &[u8]) {
        let hmac_alg = match alg {
            Algorithm::HS256 => hmac::HMAC_SHA256,
            Algorithm::HS384 => hmac::HMAC_SHA384,
            _ => hmac::HMAC_SHA512,
        };
        self.insert_arc(Arc::new(Key {
            kid: None,
            verifiers: vec![(
                alg,
                Verifier::Hmac(Box::new(hmac::Key::new(hmac_alg, secret))),
            )],
            fingerprint: None,
        }));
    }

    fn insert_arc(&mut self, key: Arc<Key>) {
        let idx = self.keys.len();
        if let Some(kid) = &key.kid {
            self.by_kid.entry(kid.clone()).or_default().push(idx);
        }
        self.keys.push(key);
    }

    /// Adds every key of `other` to this set.
    pub(crate) fn extend(&mut self, other: &KeySet) {
        for key in &other.keys {
            self.insert_arc(key.clone());
        }
    }

    /// The configured secrets, standing in until the first fetch; `None`
    /// when there are none.
    pub(crate) fn as_partial(&self) -> Option<KeySet> {
        (!self.is_empty()).then(|| KeySet {
            partial: true,
            ..self.clone()
        })
    }

    pub(crate) fn is_partial(&self) -> bool {
        self.partial
    }

    /// How many of its keys came from a JWK set (configured shared secrets
    /// not counted).
    pub(crate) fn published_len(&self) -> usize {
        self.keys.iter().filter(|k| k.fingerprint.is_some()).count()
    }

    /// How many usable keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `kid`s of the keys in the set.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|k| k.kid())
    }

    /// Finds the key for a token's `kid` and `alg`. Without a `kid`, the
    /// one key that serves `alg` is used; if several do, none is. HMAC
    /// algorithms use the configured secret whatever the `kid` says: the
    /// secret is configured per algorithm, never published under a `kid`.
    pub(crate) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        let kid = if alg.is_symmetric() { None } else { kid };
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                None => Lookup::Unknown,
                Some(idxs) => idxs
                    .iter()
                    .map(|&i| &self.keys[i])
                    .find(|k| k.verifier(alg).is_some())
                    .map_or(Lookup::Mismatch, Lookup::Found),
            },
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.verifier(alg).is_some());
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Lookup::Found(key),
                    (None, _) if self.keys.is_empty() => Lookup::Unknown,
                    _ => Lookup::Mismatch,
                }
            }
        }
    }
}

/// The public key of a DPoP proof's `jwk` header, for `alg` alone, with
/// the same rules as a published key (RSA size, curves, ROCA).
pub(crate) fn proof_key(
    value: serde_json::Value,
    alg: Algorithm,
    limits: &Limits,
) -> Result<Key, &'static str> {
    key_from_jwk(value, &[alg], limits)
}

fn key_from_jwk(
    value: serde_json::Value,
    allowed: &[Algorithm],
    limits: &Limits,
) -> Result<Key, &'static str> {
    if value.get("d").is_some() || value.get("p").is_some() {
        return Err("the JWK carries private key material");
    }
    if value.get("kty").and_then(|k| k.as_str()) == Some("oct") {
        return Err("symmetric keys are never taken from a JWK set");
    }
    let jwk: Jwk = serde_json::from_value(value).map_err(|_| "malformed JWK")?;
    let common = &jwk.common;
    if common
        .key_id
        .as_ref()
        .is_some_and(|kid| kid.len() > limits.max_kid_bytes)
    {
        return Err("kid too long");
    }
    match &common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("use is not \"sig\""),
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| matches!(op, KeyOperations::Verify)))
    {
        return Err("key_ops does not include \"verify\"");
    }
    let published_alg = match &common.key_algorithm {
        None => None,
        Some(a) => Some(jwk_alg(a).ok_or("the JWK's alg is not a supported signature algorithm")?),
    };
    // The algorithms this key may serve: those of its family that are
    // allowed, narrowed to the JWK's own `alg` when it names one.
    let candidates = |family: Family| -> Vec<Algorithm> {
        allowed
            .iter()
            .copied()
            .filter(|a| a.family() == family && published_alg.is_none_or(|p| p == *a))
            .collect()
    };
    let verifiers: Vec<(Algorithm, Verifier)> = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = strip_leading_zeros(b64(&p.n)?);
            let e = strip_leading_zeros(b64(&p.e)?);
            // `n` has no leading zero bytes, so its first byte sets the size.
            let bits = n
                .first()
                .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
            if bits < limits.min_rsa_bits || bits > limits.max_rsa_bits {
                return Err("RSA modulus size outside the accepted range");
            }
            if has_roca_fingerprint(&n) {
                return Err("RSA modulus has the ROCA fingerprint (CVE-2017-15361)");
            }
            // An odd exponent of at least 3 that fits 32 bits; e = 1 would
            // make every "signature" its own message.
            let e_value = e.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
            if e.len() > 4 || e_value < 3 || e_value % 2 == 0 {
                return Err("unusual RSA public exponent");
            }
            let components = RsaPublicKeyComponents {
                n: &n[..],
                e: &e[..],
            };
            candidates(Family::Rsa)
                .into_iter()
                .map(|alg| {
                    let params = rsa_params(alg);
                    components
                        .to_parsed_public_key(params)
                        .map(|k| (alg, Verifier::Public(k)))
                        .map_err(|_| "invalid RSA public key")
                })
                .collect::<Result<_, _>>()?
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let (family, len, verify_alg): (_, _, &'static signature::EcdsaVerificationAlgorithm) =
                match p.curve {
                    EllipticCurve::P256 => (Family::P256, 32, &signature::ECDSA_P256_SHA256_FIXED),
                    EllipticCurve::P384 => (Family::P384, 48, &signature::ECDSA_P384_SHA384_FIXED),
                    _ => return Err("unsupported elliptic curve"),
                };
            let (x, y) = (b64(&p.x)?, b64(&p.y)?);
            if x.len() != len || y.len() != len {
                return Err("EC coordinates have the wrong length");
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let parsed = ParsedPublicKey::new(verify_alg, &point)
                .map_err(|_| "EC point not on the curve")?;
            candidates(family)
                .into_iter()
                .map(|a| (a, Verifier::Public(parsed.clone())))
                .collect()
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err("unsupported OKP curve");
            }
            let x = b64(&p.x)?;
            if x.len() != 32 {
                return Err("Ed25519 key has the wrong length");
            }
            let parsed =
                ParsedPublicKey::new(&signature::ED25519, &x).map_err(|_| "invalid Ed25519 key")?;
            candidates(Family::Ed25519)
                .into_iter()
                .map(|a| (a, Verifier::Public(parsed.clone())))
                .collect()
        }
        _ => return Err("unsupported key type"),
    };
    if verifiers.is_empty() {
        return Err("no allowed algorithm fits this key");
    }
    Ok(Key {
        kid: common.key_id.as_deref().map(Box::from),
        verifiers,
        fingerprint: None,
    })
}

/// ROCA (CVE-2017-15361): the Infineon library built primes as
/// `k * M + (65537^a mod M)`, with `M` a product of the first small
/// primes, so for each such prime `p` the modulus is a power of 65537
/// modulo `p`. A random modulus passes this test for all 38 odd primes up
/// to 167 with negligible probability; a ROCA modulus always does.
fn has_roca_fingerprint(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n
            .iter()
            .fold(0u32, |acc, &b| (acc * 256 + u32::from(b)) % p);
        let generator = 65537 % p;
        let mut power = 1;
        loop {
            if power == residue {
                return true;
            }
            power = power * generator % p;
            if power == 1 {
                return false;
            }
        }
    })
}

fn jwk_alg(a: &KeyAlgorithm) -> Option<Algorithm> {
    Algorithm::from_name(&a.to_string()).filter(|a| !a.is_symmetric())
}

fn rsa_params(alg: Algorithm) -> &'static signature::RsaParameters {
    match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        _ => &signature::RSA_PSS_2048_8192_SHA512,
    }
}

fn b64(s: &str) -> Result<Vec<u8>, &'static str> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| "JWK parameter is not base64url")
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}
