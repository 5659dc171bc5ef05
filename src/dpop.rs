//! DPoP (RFC 9449): an access token bound to a key the client holds, sent
//! with a fresh proof of possession on every request.
//!
//! [`Verifier::check`] runs every check of §4.3 on the `DPoP` header: a
//! compact JWS of `typ` `dpop+jwt`, signed with an allowed asymmetric
//! algorithm by the public key in its `jwk` header (a key with private
//! parts is refused); `htm` and `htu` naming this request; `iat` within the
//! window around now; `ath` the hash of the access token; the server's
//! nonce when nonces are on; and a `jti` not seen before within the window
//! ([`ReplayCache`]); and first of all, a key whose RFC 7638 thumbprint is
//! the token's `cnf.jkt`, so that a proof made with another key costs no
//! signature check. Synchronous and free of I/O.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aws_lc_rs::{constant_time, digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use crate::alg::Algorithm;
use crate::config::Limits;
use crate::error::ProofError;
use crate::jwks::{proof_key, verify};

/// The largest DPoP proof read: a proof holds one public key (an RSA 4096
/// key is about 700 bytes in base64url) and a few short claims.
pub(crate) const MAX_PROOF_BYTES: usize = 8 * 1024;

/// The refusal of a proof used before.
pub(crate) const REPLAYED: ProofError = ProofError("the DPoP proof was used before");

/// The longest `jti` kept for replay detection.
const MAX_JTI_BYTES: usize = 256;

/// What a proof must match: the request it came with.
#[derive(Debug)]
pub(crate) struct Expected<'a> {
    /// The request method, as sent (`GET`).
    pub(crate) method: &'a str,
    /// The request's URI without query and fragment, as this server is
    /// reached: `https://api.example.com/orders`.
    pub(crate) htu: &'a Url,
    /// The access token sent with the proof, as sent.
    pub(crate) access_token: &'a [u8],
    /// The thumbprint of the key the token is bound to (its `cnf.jkt`).
    pub(crate) jkt: &'a str,
    /// Seconds since the Unix epoch, by the validator's clock.
    pub(crate) now: i64,
}

/// The outcome of a proof check.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every check passed.
    Proven,
    /// The proof is refused.
    Invalid(ProofError),
    /// Nonces are on and the proof lacks the current one: the client
    /// retries with the nonce sent back (`use_dpop_nonce`).
    NeedsNonce,
}

/// Checks DPoP proofs for one validator.
pub(crate) struct Verifier {
    algorithms: Box<[Algorithm]>,
    /// How far `iat` may be from now, either way.
    window_secs: i64,
    limits: Limits,
    nonces: Option<Nonces>,
    replay: ReplayCache,
}

#[derive(Deserialize)]
struct Header {
    typ: String,
    alg: String,
    jwk: Map<String, Value>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Claims {
    jti: String,
    htm: String,
    htu: String,
    iat: serde_json::Number,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

/// JWK members that only a private key has (RFC 7518 §6).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

impl Verifier {
    pub(crate) fn new(
        algorithms: Box<[Algorithm]>,
        window: Duration,
        limits: Limits,
        nonces: Option<Nonces>,
        max_replay_entries: usize,
    ) -> Self {
        let window_secs = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        Self {
            algorithms,
            window_secs,
            limits,
            nonces,
            // A proof is accepted while its `iat` is within the window of
            // now: from `window` before it was made to `window` after.
            replay: ReplayCache::new(2 * window_secs.max(1), max_replay_entries),
        }
    }

    /// The algorithms proofs may use, for the challenge's `algs`.
    pub(crate) fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The nonce to send now, when nonces are on.
    pub(crate) fn current_nonce(&self, now: i64) -> Option<String> {
        self.nonces.as_ref().map(|n| n.current(now))
    }

    /// Every check of RFC 9449 §4.3 on `proof`, the value of the request's
    /// one `DPoP` header.
    pub(crate) fn check(&self, proof: &str, expected: &Expected<'_>) -> Verdict {
        match self.checked(proof, expected) {
            Ok(()) => Verdict::Proven,
            Err(Refused::Proof(e)) => Verdict::Invalid(e),
            Err(Refused::Nonce) => Verdict::NeedsNonce,
        }
    }

    fn checked(&self, proof: &str, expected: &Expected<'_>) -> Result<(), Refused> {
        if proof.len() > MAX_PROOF_BYTES {
            return Err(bad("the DPoP proof is too large"));
        }
        let mut parts = proof.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("the DPoP proof is not a compact JWS"));
        };
        let header: Header = serde_json::from_slice(&decode(h64)?)
            .map_err(|_| bad("the DPoP proof's header is malformed"))?;
        if !header.typ.eq_ignore_ascii_case("dpop+jwt") {
            return Err(bad("the DPoP proof's typ is not dpop+jwt"));
        }
        // RFC 9864's fully-specified name for EdDSA with Ed25519, which
        // DPoP clients may use (oidc-provider and the dpop package do).
        let alg = match header.alg.as_str() {
            "Ed25519" => Some(Algorithm::EdDSA),
            name => Algorithm::from_name(name),
        };
        let alg = alg
            .filter(|a| !a.is_symmetric() && self.algorithms.contains(a))
            .ok_or(bad("the DPoP proof's alg is not allowed"))?;
        if header.crit.is_some() {
            return Err(bad(
                "the DPoP proof names extensions this server does not know",
            ));
        }
        if PRIVATE_MEMBERS.iter().any(|m| header.jwk.contains_key(*m)) {
            return Err(bad("the DPoP proof's jwk holds a private key"));
        }
        let jkt = thumbprint(&header.jwk).ok_or(bad("the DPoP proof's jwk is malformed"))?;
        if jkt != expected.jkt {
            return Err(bad(
                "the DPoP proof's key is not the one the token is bound to",
            ));
        }
        let key = proof_key(Value::Object(header.jwk), alg, &self.limits)
            .map_err(|_| bad("the DPoP proof's jwk is not a usable key"))?;
        let signed = &proof[..h64.len() + 1 + p64.len()];
        if !verify(&key, alg, signed.as_bytes(), &decode(s64)?) {
            return Err(bad("the DPoP proof's signature does not verify"));
        }
        let claims: Claims = serde_json::from_slice(&decode(p64)?)
            .map_err(|_| bad("the DPoP proof's claims are malformed"))?;
        if claims.htm != expected.method {
            return Err(bad("the DPoP proof is for another method"));
        }
        if !same_htu(&claims.htu, expected.htu) {
            return Err(bad("the DPoP proof is for another URI"));
        }
        let iat = claims
            .iat
            .as_i64()
            .or_else(|| claims.iat.as_f64().map(|f| f as i64))
            .ok_or(bad("the DPoP proof's iat is not a number"))?;
        if iat.abs_diff(expected.now) > self.window_secs.unsigned_abs() {
            return Err(bad("the DPoP proof's iat is outside the accepted window"));
        }
        let ath = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, expected.access_token));
        if claims.ath.as_deref() != Some(ath.as_str()) {
            return Err(bad("the DPoP proof's ath is not the access token's hash"));
        }
        if let Some(nonces) = &self.nonces
            && !claims
                .nonce
                .as_deref()
                .is_some_and(|n| nonces.is_valid(n, expected.now))
        {
            return Err(Refused::Nonce);
        }
        if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_BYTES {
            return Err(bad("the DPoP proof's jti is empty or too long"));
        }
        // Last: only a proof that passed everything else takes a place.
        self.replay
            .insert(&jkt, &claims.jti, expected.now)
            .map_err(Refused::Proof)?;
        Ok(())
    }
}

enum Refused {
    Proof(ProofError),
    Nonce,
}

fn bad(description: &'static str) -> Refused {
    Refused::Proof(ProofError(description))
}

fn decode(part: &str) -> Result<Vec<u8>, Refused> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| bad("the DPoP proof is not base64url"))
}

/// The RFC 7638 thumbprint of a public JWK: SHA-256 of its required
/// members, in lexicographic order, without whitespace; base64url.
pub(crate) fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let member = |name: &str| -> Option<String> {
        let value = jwk.get(name)?.as_str()?;
        serde_json::to_string(value).ok()
    };
    let canonical = match jwk.get("kty")?.as_str()? {
        "RSA" => format!(
            r#"{{"e":{},"kty":"RSA","n":{}}}"#,
            member("e")?,
            member("n")?
        ),
        "EC" => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            member("crv")?,
            member("x")?,
            member("y")?
        ),
        "OKP" => format!(
            r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
            member("crv")?,
            member("x")?
        ),
        _ => return None,
    };
    Some(URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes())))
}

/// Whether the proof's `htu` names `expected`, after RFC 3986 syntax- and
/// scheme-based normalisation (§6.2.2, §6.2.3): case of scheme and host,
/// default ports, dot segments, percent-encoding. Query and fragment are
/// ignored (RFC 9449 §4.3).
pub(crate) fn same_htu(htu: &str, expected: &Url) -> bool {
    // WHATWG parsing would read a backslash as a slash; RFC 3986 does not.
    let Ok(given) = Url::parse(htu).map_err(drop).and_then(|u| {
        (!htu.contains('\\') && u.username().is_empty() && u.password().is_none())
            .then_some(u)
            .ok_or(())
    }) else {
        return false;
    };
    matches!(given.scheme(), "http" | "https")
        && given.scheme() == expected.scheme()
        && given.host() == expected.host()
        && given.port_or_known_default() == expected.port_or_known_default()
        && normalized_path(given.path()) == normalized_path(expected.path())
}

/// A path with every percent-encoded unreserved character decoded and
/// every other percent-encoding in upper case.
fn normalized_path(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                b.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            let byte = (hi * 16 + lo) as u8;
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                out.push(byte as char);
            } else {
                out.push('%');
                out.push_str(&format!("{byte:02X}"));
            }
            i += 3;
            continue;
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// Server nonces (RFC 9449 §8), made from the time and a secret and never
/// stored: the nonce of interval `n` is `n` and an HMAC of it. The nonces
/// of the current, the previous and the next interval are valid, so a
/// nonce lives through one rotation and replicas whose clocks differ a
/// little agree. Replicas that share the secret and the interval accept
/// each other's nonces.
pub(crate) struct Nonces {
    key: hmac::Key,
    interval_secs: i64,
}

/// Bytes of the HMAC kept in a nonce.
const NONCE_MAC_BYTES: usize = 16;

impl Nonces {
    pub(crate) fn new(secret: &[u8], interval: Duration) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            interval_secs: i64::try_from(interval.as_secs()).unwrap_or(i64::MAX).max(1),
        }
    }

    fn nonce_of(&self, interval: i64) -> String {
        let n = interval.to_be_bytes();
        let tag = hmac::sign(&self.key, &n);
        let mut bytes = [0u8; 8 + NONCE_MAC_BYTES];
        bytes[..8].copy_from_slice(&n);
        bytes[8..].copy_from_slice(&tag.as_ref()[..NONCE_MAC_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub(crate) fn current(&self, now: i64) -> String {
        self.nonce_of(now.div_euclid(self.interval_secs))
    }

    pub(crate) fn is_valid(&self, nonce: &str, now: i64) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let Ok(interval) = <[u8; 8]>::try_from(bytes.get(..8).unwrap_or_default()) else {
            return false;
        };
        let interval = i64::from_be_bytes(interval);
        let current = now.div_euclid(self.interval_secs);
        // The previous interval's, so that a nonce lives through one
        // rotation; the next one's, so that replicas whose clocks differ a
        // little agree.
        if interval.abs_diff(current) > 1 {
            return false;
        }
        let tag = hmac::sign(&self.key, &interval.to_be_bytes());
        bytes.len() == 8 + NONCE_MAC_BYTES
            && constant_time::verify_slices_are_equal(&bytes[8..], &tag.as_ref()[..NONCE_MAC_BYTES])
                .is_ok()
    }
}

/// The `jti`s of accepted proofs, by key, for as long as a proof can be
/// accepted: a new entry is kept at least `lifetime` seconds. At most
/// `max` entries; when full, a proof is refused rather than let through
/// unchecked.
///
/// Two generations of one `lifetime` each: an entry goes into the current
/// one, which becomes the previous one when its time is up, and is dropped
/// one generation later. Unlike a cache with an admission policy, this
/// never forgets an entry early to make room.
pub(crate) struct ReplayCache {
    lifetime: i64,
    max: usize,
    state: Mutex<Generations>,
}

struct Generations {
    start: i64,
    current: HashSet<[u8; 16]>,
    previous: HashSet<[u8; 16]>,
}

impl ReplayCache {
    pub(crate) fn new(lifetime_secs: i64, max: usize) -> Self {
        Self {
            lifetime: lifetime_secs,
            max,
            state: Mutex::new(Generations {
                start: i64::MIN,
                current: HashSet::new(),
                previous: HashSet::new(),
            }),
        }
    }

    /// Records the proof `jti` of key `jkt` at `now`; an error if it was
    /// seen, or there is no room. Out of line (one call per proof), so that
    /// an instruction profile names its cost.
    #[inline(never)]
    pub(crate) fn insert(&self, jkt: &str, jti: &str, now: i64) -> Result<(), ProofError> {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(jkt.as_bytes());
        ctx.update(b".");
        ctx.update(jti.as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&ctx.finish().as_ref()[..16]);

        let mut g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // A clock stepped back: the current generation starts again from
        // now, keeping what it holds (nothing is forgotten early), so that
        // the generations keep turning.
        if now < g.start {
            g.start = now;
        }
        let elapsed = now.saturating_sub(g.start);
        if elapsed >= self.lifetime {
            // The current generation's time is up; after a quiet spell of
            // two lifetimes nothing is left to remember.
            g.previous = if elapsed < self.lifetime.saturating_mul(2) {
                std::mem::take(&mut g.current)
            } else {
                HashSet::new()
            };
            g.current.clear();
            g.start = now;
        }
        if g.current.contains(&id) || g.previous.contains(&id) {
            return Err(REPLAYED);
        }
        if g.current.len() + g.previous.len() >= self.max {
            return Err(ProofError(
                "too many DPoP proofs at once; try again with a new proof",
            ));
        }
        g.current.insert(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_jti_is_refused_for_a_whole_lifetime_and_a_full_cache_refuses() {
        let cache = ReplayCache::new(120, 3);
        cache.insert("k", "a", 1000).unwrap();
        assert!(cache.insert("k", "a", 1001).is_err());
        cache.insert("other-key", "a", 1001).unwrap();
        // A generation on, `a` is in the previous one: still refused.
        assert!(cache.insert("k", "a", 1119).is_err());
        assert!(cache.insert("k", "a", 1125).is_err());
        cache.insert("k", "b", 1125).unwrap();
        assert!(
            cache.insert("k", "c", 1126).is_err(),
            "full: refused, not forgotten"
        );
        // Two generations on, `a` may be used again: its proof's iat is long
        // outside the window.
        cache.insert("k", "a", 1250).unwrap();
        // A clock stepped back keeps what was seen, and the generations
        // turn again from there.
        assert!(cache.insert("k", "a", 900).is_err());
        cache.insert("k", "d", 1021).unwrap();
        assert!(cache.insert("k", "a", 1021).is_err(), "previous generation");
    }

    #[test]
    fn nonces_live_through_one_rotation_and_need_the_secret() {
        let nonces = Nonces::new(
            b"a secret shared by every replica!",
            Duration::from_secs(60),
        );
        let n = nonces.current(6_000);
        assert!(nonces.is_valid(&n, 6_059));
        assert!(nonces.is_valid(&n, 6_119), "the previous interval's");
        assert!(!nonces.is_valid(&n, 6_120));
        assert!(nonces.is_valid(&n, 5_999), "a replica a second behind");
        assert!(!nonces.is_valid(&n, 5_939));
        assert_ne!(nonces.current(6_060), n, "rotated");
        let other = Nonces::new(b"another secret, another server!!", Duration::from_secs(60));
        assert!(!other.is_valid(&n, 6_000));
        assert!(!nonces.is_valid("not-a-nonce", 6_000));
        assert!(!nonces.is_valid("", 6_000));
    }

    #[test]
    fn htu_is_compared_after_normalisation() {
        let expected = Url::parse("https://api.example.com/orders/a~b").unwrap();
        for same in [
            "https://api.example.com/orders/a~b",
            "HTTPS://API.Example.COM/orders/a~b",
            "https://api.example.com:443/orders/a~b",
            "https://api.example.com/orders/a%7Eb",
            "https://api.example.com/orders/./a%7eb",
            "https://api.example.com/orders/a~b?q=1#f",
        ] {
            assert!(same_htu(same, &expected), "{same}");
        }
        for other in [
            "http://api.example.com/orders/a~b",
            "https://api.example.com:8443/orders/a~b",
            "https://api.example.org/orders/a~b",
            "https://api.example.com/orders/a~b/",
            "https://api.example.com/Orders/a~b",
            "not a url",
            "ftp://api.example.com/orders/a~b",
            "https://api.example.com\\orders/a~b",
            "https://user@api.example.com/orders/a~b",
        ] {
            assert!(!same_htu(other, &expected), "{other}");
        }
        let encoded = Url::parse("https://api.example.com/a%2fb").unwrap();
        assert!(same_htu("https://api.example.com/a%2Fb", &encoded));
        assert!(!same_htu("https://api.example.com/a/b", &encoded));
    }

    #[test]
    fn thumbprints_match_rfc_7638() {
        // RFC 7638 §3.1's example key and thumbprint.
        let jwk: Map<String, Value> = serde_json::from_str(
            r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
        )
        .unwrap();
        assert_eq!(
            thumbprint(&jwk).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        let unknown: Map<String, Value> =
            serde_json::from_str(r#"{"kty":"oct","k":"AA"}"#).unwrap();
        assert_eq!(thumbprint(&unknown), None);
    }
}
