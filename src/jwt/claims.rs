//! Claims: one pass over the payload JSON that picks out the registered
//! claims and the scope claims, type-checks them, and skips everything else
//! without allocating for it.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::alg::Algorithm;
use crate::error::TokenError;
use crate::jwt::header::{Names, Str};

/// The registered and widely used claims of a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RegisteredClaims {
    /// `iss`: who issued the token.
    pub iss: Option<String>,
    /// `sub`: whom the token is about.
    pub sub: Option<String>,
    /// `aud`: for whom it is meant (a lone string becomes one entry).
    pub aud: Vec<String>,
    /// `exp`: expiry, seconds since the Unix epoch. Always present in a
    /// JWT; an introspection answer without `exp` gets `i64::MAX`.
    pub exp: i64,
    /// `nbf`: not before, seconds since the Unix epoch.
    pub nbf: Option<i64>,
    /// `iat`: issued at, seconds since the Unix epoch.
    pub iat: Option<i64>,
    /// `jti`: the token's unique identifier.
    pub jti: Option<String>,
    /// `client_id`: the OAuth client the token was issued to (RFC 9068).
    pub client_id: Option<String>,
    /// `azp`: authorized party (OpenID Connect; Keycloak, Auth0).
    pub azp: Option<String>,
}

/// The scopes a token grants: from `scope` (space-separated) and `scp`
/// (string or array) by default. Comparison is exact: `read` is not granted
/// by `read:all` or `reader`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(Box<[Box<str>]>);

impl Scopes {
    /// Whether `scope` is granted, by exact match.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| &**s == scope)
    }

    /// The granted scopes, in token order, without duplicates.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|s| &**s)
    }

    /// How many scopes are granted.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no scope is granted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A verified token: its claims and scopes. Put into request extensions by
/// the layer; cheap to clone.
#[derive(Clone)]
pub struct Principal(Arc<Inner>);

struct Inner {
    claims: RegisteredClaims,
    scopes: Scopes,
    payload: Box<str>,
    /// `None` for a token accepted through introspection.
    alg: Option<Algorithm>,
    kid: Option<Box<str>>,
}

impl Principal {
    /// The registered claims.
    pub fn claims(&self) -> &RegisteredClaims {
        &self.0.claims
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.0.scopes
    }

    /// Whether `scope` is granted (exact match).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.0.scopes.contains(scope)
    }

    /// `sub`, if present.
    pub fn subject(&self) -> Option<&str> {
        self.0.claims.sub.as_deref()
    }

    /// `client_id`, falling back to `azp`.
    pub fn client_id(&self) -> Option<&str> {
        self.0
            .claims
            .client_id
            .as_deref()
            .or(self.0.claims.azp.as_deref())
    }

    /// The algorithm the token was signed with; `None` when it was
    /// accepted through introspection.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.0.alg
    }

    /// Whether the token was accepted through RFC 7662 introspection
    /// rather than validated locally.
    pub fn is_introspected(&self) -> bool {
        self.0.alg.is_none()
    }

    /// The `kid` of the key that verified the token.
    pub fn key_id(&self) -> Option<&str> {
        self.0.kid.as_deref()
    }

    /// Deserializes the whole claim set into your own type, for claims this
    /// crate does not model (roles, tenant ids, …).
    pub fn deserialize_claims<T: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.0.payload)
    }
}

impl fmt::Debug for Principal {
    // Deliberately not the full claim set: principals end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("sub", &self.0.claims.sub)
            .field("client_id", &self.client_id())
            .field("scopes", &self.0.scopes.0)
            .finish_non_exhaustive()
    }
}

/// What claim parsing needs from the configuration.
pub(crate) struct ClaimRules<'a> {
    /// `exp` must be present (JWTs); introspection answers may omit it.
    pub require_exp: bool,
    pub scope_claims: &'a [Box<str>],
    pub required: &'a [Arc<str>],
    pub max_audiences: usize,
    pub max_scopes: usize,
}

/// Parses a payload; `payload` is the decoded JSON text.
pub(crate) fn parse(
    payload: String,
    rules: &ClaimRules<'_>,
    alg: Option<Algorithm>,
    kid: Option<Box<str>>,
) -> Result<Principal, TokenError> {
    let mut out = Parsed::default();
    let mut failure = None;
    let seed = ClaimsSeed {
        rules,
        out: &mut out,
        failure: &mut failure,
    };
    let mut de = serde_json::Deserializer::from_str(&payload);
    let outcome = seed.deserialize(&mut de).and_then(|()| de.end());
    if let Some(e) = failure {
        return Err(e);
    }
    outcome.map_err(|_| TokenError::Malformed)?;
    let exp = match (out.exp, rules.require_exp) {
        (Some(exp), _) => exp,
        (None, false) => i64::MAX,
        (None, true) => return Err(TokenError::MissingClaim(Arc::from("exp"))),
    };
    if let Some(missing) = rules
        .required
        .iter()
        .enumerate()
        .find(|(i, _)| out.seen & (1 << i) == 0)
    {
        return Err(TokenError::MissingClaim(missing.1.clone()));
    }
    let scopes = without_repeats(out.scopes);
    Ok(Principal(Arc::new(Inner {
        claims: RegisteredClaims {
            iss: out.iss,
            sub: out.sub,
            aud: out.aud,
            exp,
            nbf: out.nbf,
            iat: out.iat,
            jti: out.jti,
            client_id: out.client_id,
            azp: out.azp,
        },
        scopes: Scopes(scopes.into()),
        payload: payload.into(),
        alg,
        kid,
    })))
}

/// `scopes` with repeats dropped, first occurrences kept in order, in time
/// linear in their number.
fn without_repeats(scopes: Vec<Box<str>>) -> Vec<Box<str>> {
    if scopes.len() <= Names::FEW {
        let mut out: Vec<Box<str>> = Vec::with_capacity(scopes.len());
        for s in scopes {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        return out;
    }
    let first: Vec<bool> = {
        let mut seen = Names::default();
        scopes
            .iter()
            .map(|s| seen.insert(Cow::Borrowed(&**s)))
            .collect()
    };
    scopes
        .into_iter()
        .zip(first)
        .filter_map(|(s, first)| first.then_some(s))
        .collect()
}

#[derive(Default)]
struct Parsed {
    iss: Option<String>,
    sub: Option<String>,
    aud: Vec<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
    client_id: Option<String>,
    azp: Option<String>,
    scopes: Vec<Box<str>>,
    /// Bit i set when `rules.required[i]` was present.
    seen: u64,
}

struct ClaimsSeed<'r, 'o> {
    rules: &'r ClaimRules<'r>,
    out: &'o mut Parsed,
    failure: &'o mut Option<TokenError>,
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut names = Names::default();
        while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
            // The builder caps required claims at 64 and removes duplicates.
            if let Some(i) = self.rules.required.iter().position(|r| **r == *name) {
                self.out.seen |= 1 << i;
            }
            let is_scope = self.rules.scope_claims.iter().any(|s| **s == *name);
            let failure = &mut *self.failure;
            let out = &mut *self.out;
            match &*name {
                "exp" => out.exp = Some(number(&mut map, "exp", failure)?),
                "nbf" => out.nbf = Some(number(&mut map, "nbf", failure)?),
                "iat" => out.iat = Some(number(&mut map, "iat", failure)?),
                "iss" => out.iss = Some(string(&mut map, "iss", failure)?),
                "sub" => out.sub = Some(string(&mut map, "sub", failure)?),
                "jti" => out.jti = Some(string(&mut map, "jti", failure)?),
                "client_id" => out.client_id = Some(string(&mut map, "client_id", failure)?),
                "azp" => out.azp = Some(string(&mut map, "azp", failure)?),
                "aud" => {
                    let aud = match map.next_value::<Value>()? {
                        Value::Str(s) => vec![s],
                        Value::Strings(v) if !v.is_empty() => v,
                        _ => return Err(invalid("aud", failure)),
                    };
                    if aud.len() > self.rules.max_audiences {
                        *failure = Some(TokenError::LimitExceeded("aud entries"));
                        return Err(de::Error::custom("limit"));
                    }
                    out.aud = aud;
                }
                _ if is_scope => {
                    let scopes: Vec<Box<str>> = match map.next_value::<Value>()? {
                        Value::Str(s) => s
                            .split(' ')
                            .filter(|s| !s.is_empty())
                            .map(Box::from)
                            .collect(),
                        Value::Strings(v) => v.into_iter().map(Box::from).collect(),
                        _ => return Err(invalid("scope", failure)),
                    };
                    out.scopes.extend(scopes);
                    if out.scopes.len() > self.rules.max_scopes {
                        *failure = Some(TokenError::LimitExceeded("scopes"));
                        return Err(de::Error::custom("limit"));
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            // Duplicate claim names are ambiguous: RFC 7519 §4 lets a parser
            // reject them, and accepting them invites parser differentials.
            if !names.insert(name) {
                return Err(de::Error::custom("duplicate claim"));
            }
        }
        Ok(())
    }
}

/// Records that `claim` has the wrong type and stops parsing.
fn invalid<E: de::Error>(claim: &'static str, failure: &mut Option<TokenError>) -> E {
    *failure = Some(TokenError::InvalidClaim(claim));
    E::custom("claim")
}

/// A NumericDate: must be a JSON number (RFC 7519 §2), never a string.
fn number<'de, A: MapAccess<'de>>(
    map: &mut A,
    claim: &'static str,
    failure: &mut Option<TokenError>,
) -> Result<i64, A::Error> {
    match map.next_value::<Value>()? {
        Value::Number(n) => Ok(n),
        _ => Err(invalid(claim, failure)),
    }
}

fn string<'de, A: MapAccess<'de>>(
    map: &mut A,
    claim: &'static str,
    failure: &mut Option<TokenError>,
) -> Result<String, A::Error> {
    match map.next_value::<Value>()? {
        Value::Str(s) => Ok(s),
        _ => Err(invalid(claim, failure)),
    }
}

/// The shape of one claim value, as far as claim checks care.
enum Value {
    /// A JSON number, floored to whole seconds (NumericDate may be
    /// fractional, RFC 7519 §2).
    Number(i64),
    Str(String),
    /// An array whose elements are all strings.
    Strings(Vec<String>),
    /// Anything else: booleans, null, objects, mixed arrays.
    Other,
}

impl<'de> de::Deserialize<'de> for Value {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(i64::try_from(v).unwrap_or(i64::MAX)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // `as` saturates; JSON has no NaN or infinity.
        Ok(Value::Number(v.floor() as i64))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Other)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        let mut all_strings = true;
        while let Some(v) = seq.next_element::<Value>()? {
            match v {
                Value::Str(s) if all_strings => out.push(s),
                _ => all_strings = false,
            }
        }
        Ok(if all_strings {
            Value::Strings(out)
        } else {
            Value::Other
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_scopes_are_dropped_keeping_the_first_in_order() {
        let boxed = |v: &[&str]| v.iter().map(|s| Box::from(*s)).collect::<Vec<Box<str>>>();
        assert_eq!(
            without_repeats(boxed(&["b", "a", "b", "c", "a"])),
            boxed(&["b", "a", "c"])
        );
        let many: Vec<String> = (0..40).map(|i| format!("s{}", i % 25)).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let want: Vec<String> = (0..25).map(|i| format!("s{i}")).collect();
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        assert_eq!(without_repeats(boxed(&many)), boxed(&want));
    }
}
