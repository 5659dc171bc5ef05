//! Local validation of a compact JWS access token, in two stages that a
//! request may run apart: [`parse`] (limits, header rules, decoding) once,
//! then key lookup and signature ([`Parsed::key`], [`Parsed::signed_by`])
//! with whatever key set is at hand, before and after a refetch; then
//! [`principal`] checks the claims. Synchronous and free of I/O: keys are
//! handed in by the caller, and the caller counts the work.

pub(crate) mod claims;
mod header;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::alg::Algorithm;
use crate::clock::unix_seconds;
use crate::config::{Config, Limits, TokenTypePolicy};
use crate::error::{Refusal, TokenError};
use crate::jwks::{Key, KeySet, Lookup, verify as verify_signature};
use claims::{ClaimPath, ClaimRules, Principal};

/// A rule of yours on a verified principal; see
/// [`Builder::claims_validator`](crate::Builder::claims_validator).
pub(crate) type ClaimsValidator = Arc<dyn Fn(&Principal) -> Result<(), Refusal> + Send + Sync>;

/// What one trusted issuer's tokens must satisfy beyond the signature:
/// the claim checks, with the settings given for that issuer or, where it
/// gave none, for all.
pub(crate) struct Rules {
    /// The `iss` its tokens carry; `None` when the issuer check is
    /// explicitly skipped.
    pub iss: Option<Box<str>>,
    pub audiences: Option<Box<[Box<str>]>>,
    pub algorithms: Box<[Algorithm]>,
    pub leeway_secs: i64,
    /// `iat` may be at most this many seconds old, when set.
    pub max_token_age_secs: Option<i64>,
    pub roles: Box<[ClaimPath]>,
    /// A claim that must equal the tenant of `iss` (Entra's `tid`), and
    /// that tenant.
    pub tenant: Option<(Box<str>, Box<str>)>,
    /// Every claims rule, the validator-wide ones first.
    pub validators: Box<[ClaimsValidator]>,
}

/// Why local validation stopped.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The token is refused.
    Token(TokenError),
    /// The token names a `kid` the key set does not hold: a refetch may
    /// help.
    UnknownKey,
    /// No key set has been loaded yet.
    NoKeys,
}

impl From<TokenError> for Failure {
    fn from(e: TokenError) -> Self {
        Self::Token(e)
    }
}

/// A compact JWS whose header passed every rule, decoded; its signature
/// is not checked yet. Owned, so that a request waiting for keys carries
/// it instead of parsing the token again.
#[derive(Debug)]
pub(crate) struct Parsed {
    alg: Algorithm,
    kid: Option<Box<str>>,
    /// Length of `header.payload` at the start of the token: the signing
    /// input.
    signed_len: usize,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

/// A compact JWS whose header passed every rule and whose signature
/// verified; the claims are not checked yet. What the test and fuzz hook
/// `BearerAuthLayer::verify_signature_only` returns.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Jws {
    /// The algorithm it was signed with.
    pub alg: Algorithm,
    /// The `kid` of the key that verified it.
    pub kid: Option<String>,
    /// The decoded payload.
    pub payload: Vec<u8>,
}

impl Jws {
    /// `p`, which `key` verified.
    pub(crate) fn verified(p: Parsed, key: &Key) -> Self {
        Self {
            alg: p.alg,
            kid: key_kid(p.kid, key).map(String::from),
            payload: p.payload,
        }
    }
}

/// Limits, header rules and decoding: everything that needs no key.
pub(crate) fn parse(cfg: &Config, token: &str) -> Result<Parsed, TokenError> {
    parse_jws(&cfg.limits, &cfg.algorithms, token, |typ| {
        check_type(typ, cfg.typ)
    })
}

/// [`parse`] with the limits, algorithms and `typ` rule of another kind of
/// JWT than an access token (a Security Event Token, say).
pub(crate) fn parse_jws(
    limits: &Limits,
    algorithms: &[Algorithm],
    token: &str,
    check_typ: impl FnOnce(Option<&str>) -> Result<(), TokenError>,
) -> Result<Parsed, TokenError> {
    if token.len() > limits.max_token_bytes {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(if token.split('.').count() == 5 {
            TokenError::Encrypted
        } else {
            TokenError::Malformed
        });
    };

    let header_json = b64_decode(h64)?;
    check_depth(&header_json, limits.max_json_depth)?;
    let header = header::parse(&header_json, limits.max_header_members)?;
    let alg = Algorithm::from_name(&header.alg)
        .filter(|a| algorithms.contains(a))
        .ok_or(TokenError::AlgorithmNotAllowed)?;
    if let Some(name) = header.untrusted {
        return Err(TokenError::UntrustedKeySource(name));
    }
    // No JWS extension is understood, so any `crit` must be refused
    // (RFC 7515 §4.1.11); an unencoded payload (RFC 7797) likewise.
    if header.crit || header.b64 == Some(false) {
        return Err(TokenError::UnsupportedExtension);
    }
    check_typ(header.typ.as_deref())?;
    if header
        .kid
        .as_ref()
        .is_some_and(|k| k.len() > limits.max_kid_bytes)
    {
        return Err(TokenError::LimitExceeded("kid length"));
    }
    Ok(Parsed {
        alg,
        // Boxed once: it moves into the principal.
        kid: header.kid.map(|k| Box::from(&*k)),
        signed_len: h64.len() + 1 + p64.len(),
        signature: b64_decode(s64)?,
        payload: b64_decode(p64)?,
    })
}

impl Parsed {
    /// The key of `keys` that must have signed this token.
    pub(crate) fn key<'k>(&self, keys: Option<&'k KeySet>) -> Result<&'k Arc<Key>, Failure> {
        let keys = keys.ok_or(Failure::NoKeys)?;
        match keys.find(self.kid.as_deref(), self.alg) {
            Lookup::Found(key) => Ok(key),
            // Only shared secrets are loaded so far: the issuer's keys are
            // still to be fetched.
            _ if keys.is_partial() => Err(Failure::NoKeys),
            Lookup::Mismatch => Err(TokenError::KeyAlgorithmMismatch.into()),
            Lookup::Unknown => Err(Failure::UnknownKey),
        }
    }

    /// Whether `key` signed `token`, the text this was parsed from.
    pub(crate) fn signed_by(&self, token: &str, key: &Key) -> bool {
        token
            .as_bytes()
            .get(..self.signed_len)
            .is_some_and(|input| verify_signature(key, self.alg, input, &self.signature))
    }
}

impl Parsed {
    /// The decoded payload, not verified yet.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.payload
    }

    pub(crate) fn alg(&self) -> Algorithm {
        self.alg
    }
}

/// The claims of a token that `key` verified, checked against the rules
/// of the issuer whose key it is. The principal names the key's `kid`,
/// which a token without one, or an HMAC token, may not.
pub(crate) fn principal(
    cfg: &Config,
    rules: &Rules,
    jws: Parsed,
    key: &Key,
) -> Result<Principal, TokenError> {
    let kid = key_kid(jws.kid, key);
    principal_from_claims(cfg, rules, jws.payload, Some(jws.alg), kid, true)
}

/// The `kid` of `key`, reusing the token's own when they are the same.
fn key_kid(token_kid: Option<Box<str>>, key: &Key) -> Option<Box<str>> {
    match (token_kid, key.kid()) {
        (Some(kid), Some(k)) if *kid == *k => Some(kid),
        (_, k) => k.map(Box::from),
    }
}

/// Parses and checks a claim set (a JWT payload or an introspection
/// answer): depth limit, types, required claims, `exp`/`nbf`/`iss`/`aud`,
/// maximum age, the tenant claim, then the claims rules.
pub(crate) fn principal_from_claims(
    cfg: &Config,
    rules: &Rules,
    json: Vec<u8>,
    alg: Option<Algorithm>,
    kid: Option<Box<str>>,
    require_exp: bool,
) -> Result<Principal, TokenError> {
    let limits = &cfg.limits;
    check_depth(&json, limits.max_json_depth)?;
    let json = String::from_utf8(json).map_err(|_| TokenError::Malformed)?;
    let claim_rules = ClaimRules {
        require_exp,
        scope_claims: &cfg.scope_claims,
        required: &cfg.required_claims,
        max_audiences: limits.max_audiences,
        max_scopes: limits.max_scopes,
        roles: &rules.roles,
        max_roles: limits.max_roles,
        tenant: rules.tenant.as_ref().map(|(c, t)| (&**c, &**t)),
    };
    let principal = claims::parse(json, &claim_rules, alg, kid)?;
    let now = unix_seconds(cfg.clock.now());
    check_claims(rules, principal.claims(), require_exp, now)?;
    for validator in &rules.validators {
        validator(&principal).map_err(TokenError::Refused)?;
    }
    Ok(principal)
}

/// `exp`, `nbf`, `iat` age, `iss` (against the token's issuer, `iss`) and
/// `aud` against the configuration and the clock. `strict` (JWTs)
/// requires `iss` and `aud`; an introspection answer may omit them
/// (RFC 7662 §2.2), and they are checked if present.
pub(crate) fn check_claims(
    rules: &Rules,
    c: &claims::RegisteredClaims,
    strict: bool,
    now: i64,
) -> Result<(), TokenError> {
    check_time_claims(rules, c, now)?;
    if let Some(issuer) = rules.iss.as_deref()
        && (strict || c.iss.is_some())
        && c.iss.as_deref() != Some(issuer)
    {
        return Err(TokenError::WrongIssuer);
    }
    if let Some(audiences) = &rules.audiences
        && (strict || !c.aud.is_empty())
        && !c
            .aud
            .iter()
            .any(|a| audiences.iter().any(|want| **want == **a))
    {
        return Err(TokenError::WrongAudience);
    }
    Ok(())
}

/// The claims that depend on the time: `exp`, `nbf`, and the maximum token
/// age. Checked at validation and again on every cache hit.
pub(crate) fn check_time_claims(
    rules: &Rules,
    c: &claims::RegisteredClaims,
    now: i64,
) -> Result<(), TokenError> {
    check_times(now, rules.leeway_secs, c.exp, c.nbf)?;
    if let Some(max_age) = rules.max_token_age_secs {
        // Without `iat` the age is unknown, so the token cannot pass.
        let iat = c
            .iat
            .ok_or_else(|| TokenError::MissingClaim(Arc::from("iat")))?;
        if now.saturating_sub(iat) > max_age.saturating_add(rules.leeway_secs) {
            return Err(TokenError::TooOld);
        }
        // An `iat` in the future would stretch the age bound by as much.
        if iat > now.saturating_add(rules.leeway_secs) {
            return Err(TokenError::NotYetValid);
        }
    }
    Ok(())
}

/// The seconds in which [`check_time_claims`] passes, as `from <= now <
/// until`: what the verified-token cache checks a hit against, without
/// the rules. `None` if it never passes.
pub(crate) fn time_window(rules: &Rules, c: &claims::RegisteredClaims) -> Option<(i64, i64)> {
    let leeway = rules.leeway_secs;
    let mut from = c.nbf.map_or(i64::MIN, |nbf| nbf.saturating_sub(leeway));
    let mut until = c.exp.saturating_add(leeway);
    if let Some(max_age) = rules.max_token_age_secs {
        let iat = c.iat?;
        // `now - iat <= max_age + leeway`, and `iat <= now + leeway`.
        let age = max_age.saturating_add(leeway);
        if age < i64::MAX {
            until = until.min(iat.saturating_add(age).saturating_add(1));
        }
        from = from.max(iat.saturating_sub(leeway));
    }
    (from < until).then_some((from, until))
}

/// RFC 7519 §4.1.4–4.1.5 with leeway: valid while `nbf - leeway <= now < exp + leeway`.
pub(crate) fn check_times(
    now: i64,
    leeway: i64,
    exp: i64,
    nbf: Option<i64>,
) -> Result<(), TokenError> {
    if now >= exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if nbf.is_some_and(|nbf| now < nbf.saturating_sub(leeway)) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// `typ` is a media type: compared case-insensitively, with the
/// `application/` prefix optional (RFC 7515 §4.1.9).
fn check_type(typ: Option<&str>, policy: TokenTypePolicy) -> Result<(), TokenError> {
    let short = typ.map(subtype);
    let ok = match (short, policy) {
        (Some(t), _) if t.eq_ignore_ascii_case("at+jwt") => true,
        (None, TokenTypePolicy::AccessTokenOrJwt) => true,
        (Some(t), TokenTypePolicy::AccessTokenOrJwt) => t.eq_ignore_ascii_case("jwt"),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(TokenError::WrongType)
    }
}

/// A `typ` without its optional `application/` prefix.
fn subtype(typ: &str) -> &str {
    match typ.split_at_checked(12) {
        Some((prefix, rest)) if prefix.eq_ignore_ascii_case("application/") => rest,
        _ => typ,
    }
}

/// A Security Event Token's `typ` (RFC 8417 §2.3): `secevent+jwt`, with
/// the `application/` prefix optional. Without it a JWT could be some
/// other token posted as an event.
pub(crate) fn check_set_type(typ: Option<&str>) -> Result<(), TokenError> {
    match typ.map(subtype) {
        Some(t) if t.eq_ignore_ascii_case("secevent+jwt") => Ok(()),
        _ => Err(TokenError::WrongType),
    }
}

/// Strict base64url without padding (RFC 7515 §2); `=` and non-canonical
/// trailing bits are refused.
fn b64_decode(s: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| TokenError::Malformed)
}

/// Refuses JSON nested deeper than `max` before a parser sees it.
pub(crate) fn check_depth(json: &[u8], max: usize) -> Result<(), TokenError> {
    // No deeper than it has brackets: a count the compiler vectorises
    // settles ordinary tokens without the byte-by-byte walk below.
    if json.iter().filter(|&&b| b == b'{' || b == b'[').count() <= max {
        return Ok(());
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(TokenError::LimitExceeded("JSON nesting depth"));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        assert!(check_depth(br#"{"a":[[1]]}"#, 3).is_ok());
        assert!(check_depth(br#"{"a":[[[1]]]}"#, 3).is_err());
        assert!(check_depth(br#"{"a":"[[[[\"[[[["}"#, 1).is_ok());
        assert!(check_depth(br#"[{"a":[]},{"b":[]},{"c":[]}]"#, 3).is_ok());
        assert!(check_depth(br#"[[[[]]]]"#, 3).is_err());
    }

    #[test]
    fn type_policy() {
        use TokenTypePolicy::*;
        for t in [
            None,
            Some("JWT"),
            Some("jwt"),
            Some("at+jwt"),
            Some("application/at+JWT"),
        ] {
            assert!(check_type(t, AccessTokenOrJwt).is_ok(), "{t:?}");
        }
        for t in [
            Some("dpop+jwt"),
            Some("application/jwt+x"),
            Some(""),
            Some("id_token+jwt"),
        ] {
            assert!(check_type(t, AccessTokenOrJwt).is_err(), "{t:?}");
        }
        assert!(check_type(Some("at+jwt"), Rfc9068).is_ok());
        assert!(check_type(None, Rfc9068).is_err());
        assert!(check_type(Some("JWT"), Rfc9068).is_err());
        assert!(check_type(Some("secevent+jwt"), AccessTokenOrJwt).is_err());
    }

    #[test]
    fn an_event_token_must_say_it_is_one() {
        for t in ["secevent+jwt", "application/secevent+jwt", "SecEvent+JWT"] {
            assert!(check_set_type(Some(t)).is_ok(), "{t}");
        }
        for t in [None, Some("JWT"), Some("at+jwt"), Some("secevent")] {
            assert!(check_set_type(t).is_err(), "{t:?}");
        }
    }

    #[test]
    fn times_honour_leeway_on_both_sides() {
        assert!(check_times(1000, 60, 1059, None).is_ok());
        assert_eq!(check_times(1000, 60, 940, None), Err(TokenError::Expired));
        assert!(check_times(1000, 0, 1001, Some(1000)).is_ok());
        assert_eq!(
            check_times(1000, 60, 2000, Some(1061)),
            Err(TokenError::NotYetValid)
        );
        assert!(check_times(i64::MAX, 60, i64::MAX, Some(i64::MIN)).is_err());
    }

    /// A cache hit checks the window instead of the claims: the two must
    /// agree at every second, edges and saturation included.
    #[test]
    fn the_time_window_is_where_the_time_claims_pass() {
        let edges = [
            i64::MIN,
            i64::MIN + 1,
            -61,
            0,
            59,
            940,
            1000,
            1061,
            i64::MAX - 1,
            i64::MAX,
        ];
        let times = [
            None,
            Some(0),
            Some(1000),
            Some(1060),
            Some(i64::MIN),
            Some(i64::MAX),
        ];
        for leeway in [0, 60] {
            for max_age in [None, Some(0), Some(100), Some(i64::MAX)] {
                let rules = Rules {
                    iss: None,
                    audiences: None,
                    algorithms: Box::new([]),
                    leeway_secs: leeway,
                    max_token_age_secs: max_age,
                    roles: Box::new([]),
                    tenant: None,
                    validators: Box::new([]),
                };
                for exp in [0, 1000, 1100, i64::MAX] {
                    for nbf in times {
                        for iat in times {
                            let c = claims::RegisteredClaims {
                                exp,
                                nbf,
                                iat,
                                ..Default::default()
                            };
                            let window = time_window(&rules, &c);
                            // Each bound, and the second either side of it.
                            let bounds = [
                                Some(exp),
                                nbf,
                                iat,
                                iat.zip(max_age).and_then(|(i, a)| i.checked_add(a)),
                            ];
                            let near = bounds.into_iter().flatten().flat_map(|b| {
                                [
                                    -leeway - 1,
                                    -leeway,
                                    1 - leeway,
                                    leeway - 1,
                                    leeway,
                                    leeway + 1,
                                ]
                                .into_iter()
                                .filter_map(move |d| b.checked_add(d))
                            });
                            for now in edges.into_iter().chain(near) {
                                let pass = check_time_claims(&rules, &c, now).is_ok();
                                let within = window.is_some_and(|(f, u)| f <= now && now < u);
                                assert_eq!(pass, within, "{leeway} {max_age:?} {c:?} at {now}");
                            }
                        }
                    }
                }
            }
        }
    }
}
