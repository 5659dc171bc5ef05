//! Claims: one pass over the payload JSON that picks out the registered
//! claims and the scope claims, type-checks them, and skips everything else
//! without allocating for it.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Weak};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::alg::Algorithm;
use crate::error::TokenError;
use crate::jwks::{Key, KeyStore};
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
    /// `acr`: the class of the user's authentication (OpenID Connect;
    /// RFC 9470 step-up).
    pub acr: Option<String>,
    /// `auth_time`: when the user last authenticated, seconds since the
    /// Unix epoch (OpenID Connect; RFC 9470 step-up).
    pub auth_time: Option<i64>,
    /// `sid`: the user's session at the issuer (OpenID Connect Front- and
    /// Back-Channel Logout; Keycloak, Entra and others put it in access
    /// tokens), which a session revocation names.
    pub sid: Option<String>,
    /// `email`: the user's e-mail address (OpenID Connect), which a
    /// revocation by e-mail names.
    pub email: Option<String>,
}

/// What a sender-constrained token is bound to: its `cnf` claim (RFC 7800),
/// or the `cnf` of its introspection answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Confirmation {
    /// `jkt`: the RFC 7638 SHA-256 thumbprint (base64url) of the key whose
    /// DPoP proofs must come with the token (RFC 9449 §6).
    pub jkt: Option<String>,
    /// `x5t#S256`: the SHA-256 thumbprint (base64url) of the TLS client
    /// certificate the token must come over (RFC 8705 §3.1).
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: Option<String>,
}

/// Defines a set of names a token grants, read from configured claims.
macro_rules! granted_names {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name(Box<[Box<str>]>);

        impl $name {
            #[doc = concat!("Whether `", $what, "` is granted, by exact match.")]
            pub fn contains(&self, name: &str) -> bool {
                self.0.iter().any(|s| &**s == name)
            }

            #[doc = concat!("The granted ", $what, "s, in token order, without duplicates.")]
            pub fn iter(&self) -> impl Iterator<Item = &str> {
                self.0.iter().map(|s| &**s)
            }

            #[doc = concat!("How many ", $what, "s are granted.")]
            pub fn len(&self) -> usize {
                self.0.len()
            }

            #[doc = concat!("Whether no ", $what, " is granted.")]
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }
    };
}

granted_names!(
    /// The scopes a token grants: from `scope` (space-separated) and `scp`
    /// (string or array) by default. Comparison is exact: `read` is not
    /// granted by `read:all` or `reader`.
    Scopes,
    "scope"
);

granted_names!(
    /// The roles (or groups, or permissions) a token grants, read from the
    /// claims configured with
    /// [`Builder::role_claims`](crate::Builder::role_claims); none are read
    /// by default. Comparison is exact and case-sensitive.
    Roles,
    "role"
);

/// Where in the claims roles are found: a top-level claim, or a path into
/// nested objects. The value found there is a string (space-separated),
/// or an array of strings.
///
/// ```
/// use tower_bearer::ClaimPath;
/// // Keycloak's realm roles, as "realm_access.roles" says:
/// assert_eq!(ClaimPath::parse("realm_access.roles"), ClaimPath::keycloak_realm_roles());
/// // A namespaced claim (Auth0 Actions) is one name, dots and all:
/// assert_eq!(
///     ClaimPath::parse("https://example.com/roles"),
///     ClaimPath::claim("https://example.com/roles"),
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimPath(Box<[Box<str>]>);

impl ClaimPath {
    /// One top-level claim, its name taken whole.
    pub fn claim(name: impl Into<String>) -> Self {
        Self(Box::new([name.into().into_boxed_str()]))
    }

    /// A path of member names from the top-level object down.
    pub fn nested<I, S>(segments: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(
            segments
                .into_iter()
                .map(|s| s.into().into_boxed_str())
                .collect(),
        )
    }

    /// A path as configuration files write it: names separated by `.`
    /// (`resource_access.orders-api.roles`), except that a name with
    /// `://` in it is a namespaced claim and taken whole.
    pub fn parse(path: &str) -> Self {
        if path.contains("://") {
            Self::claim(path)
        } else {
            Self::nested(path.split('.'))
        }
    }

    /// Keycloak's realm roles: `realm_access.roles`.
    pub fn keycloak_realm_roles() -> Self {
        Self::nested(["realm_access", "roles"])
    }

    /// Keycloak's roles of one client: `resource_access.{client}.roles`.
    pub fn keycloak_client_roles(client: impl Into<String>) -> Self {
        Self::nested([
            "resource_access".to_owned(),
            client.into(),
            "roles".to_owned(),
        ])
    }

    /// Microsoft Entra's app roles: `roles`.
    pub fn entra_roles() -> Self {
        Self::claim("roles")
    }

    /// Microsoft Entra's group ids: `groups`.
    pub fn entra_groups() -> Self {
        Self::claim("groups")
    }

    /// Auth0's RBAC permissions: `permissions`.
    pub fn auth0_permissions() -> Self {
        Self::claim("permissions")
    }

    /// The member names, from the top level down.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|s| &**s)
    }

    pub(crate) fn depth(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn head(&self) -> Option<&str> {
        self.0.first().map(|s| &**s)
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// A verified token: its claims and scopes. Put into request extensions by
/// the layer; cheap to clone.
#[derive(Clone)]
pub struct Principal(Arc<Inner>);

struct Inner {
    claims: RegisteredClaims,
    scopes: Scopes,
    roles: Roles,
    /// Boxed: most tokens have none, and a cached entry pays for the slot.
    cnf: Option<Box<Confirmation>>,
    payload: Payload,
    /// `None` for a token accepted through introspection.
    alg: Option<Algorithm>,
    kid: Option<Box<str>>,
    /// For a token the verified-token cache holds.
    stamp: Option<Stamp>,
}

/// What the verified-token cache keeps with a principal to judge a hit by
/// itself: the key that verified the token, and the seconds in which it
/// holds. In the principal's own allocation, so that a hit reads one
/// entry, not an entry and then its principal.
pub(crate) struct Stamp {
    /// The issuer's key store, and the key of it that verified the token.
    pub(crate) keys: Arc<KeyStore>,
    pub(crate) key: Weak<Key>,
    /// The id of the key set that held the key, when known: while that
    /// set is current, so is the key, and no lookup is needed.
    pub(crate) set_id: Option<u64>,
    /// The token holds while `from <= now < until` (Unix seconds): its
    /// time claims under its issuer's rules, and the cache's lifetime.
    pub(crate) from: i64,
    pub(crate) until: i64,
    /// The issuer's label, for spans and metrics.
    pub(crate) issuer: u16,
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

    /// The granted roles, from the configured
    /// [`role_claims`](crate::Builder::role_claims).
    pub fn roles(&self) -> &Roles {
        &self.0.roles
    }

    /// Whether `role` is granted (exact match).
    pub fn has_role(&self, role: &str) -> bool {
        self.0.roles.contains(role)
    }

    /// What the token is bound to (its `cnf` claim, RFC 7800): a DPoP key
    /// or a TLS client certificate. `None` for a bearer token, which
    /// whoever holds it may use. The layer has checked the binding before
    /// a handler sees the principal.
    pub fn confirmation(&self) -> Option<&Confirmation> {
        self.0.cnf.as_deref()
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
    /// crate does not model (roles, tenant ids, …). Each call parses it
    /// (and, for a token the verified-token cache holds, decodes it from
    /// the token first): call it once per request, not once per claim.
    pub fn deserialize_claims<T: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<T, serde_json::Error> {
        match &self.0.payload {
            Payload::Json(json) => serde_json::from_str(json),
            Payload::Token(token) => {
                let segment = token.split('.').nth(1).unwrap_or_default();
                let json = URL_SAFE_NO_PAD.decode(segment).map_err(de::Error::custom)?;
                serde_json::from_slice(&json)
            }
        }
    }

    /// The same principal for the verified-token cache, stamped, its claim
    /// set read from `token` when asked for rather than kept decoded: the
    /// cache holds the token anyway. Unchanged, and so never cached, if
    /// the principal is shared already.
    pub(crate) fn stamped(mut self, token: &Arc<str>, stamp: Stamp) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            inner.payload = Payload::Token(token.clone());
            inner.stamp = Some(stamp);
        }
        self
    }

    /// Its stamp, if the verified-token cache may hold it.
    pub(crate) fn stamp(&self) -> Option<&Stamp> {
        self.0.stamp.as_ref()
    }

    /// Whether `self` and `other` are the same principal, not only equal.
    pub(crate) fn is(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A principal's claim set.
enum Payload {
    /// As JSON text: introspection answers, and tokens no cache keeps.
    Json(Box<str>),
    /// The verified JWS itself, whose payload is decoded when asked for:
    /// a cached token's claims are not kept twice.
    Token(Arc<str>),
}

impl fmt::Debug for Principal {
    // Deliberately not the full claim set: principals end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("sub", &self.0.claims.sub)
            .field("client_id", &self.client_id())
            .field("scopes", &self.0.scopes.0)
            .field("roles", &self.0.roles.0)
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
    /// Where roles are read from, and how many may be read.
    pub roles: &'a [ClaimPath],
    pub max_roles: usize,
    /// A claim that must be present and equal this value: Entra's `tid`,
    /// against the tenant of `iss`.
    pub tenant: Option<(&'a str, &'a str)>,
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
    if let Some((claim, _)) = rules.tenant
        && !out.tenant_seen
    {
        return Err(TokenError::MissingClaim(Arc::from(claim)));
    }
    let scopes = without_repeats(out.scopes);
    let roles = without_repeats(out.roles);
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
            acr: out.acr,
            auth_time: out.auth_time,
            sid: out.sid,
            email: out.email,
        },
        scopes: Scopes(scopes.into()),
        roles: Roles(roles.into()),
        cnf: out.cnf.map(Box::new),
        payload: Payload::Json(payload.into()),
        alg,
        kid,
        stamp: None,
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
    acr: Option<String>,
    auth_time: Option<i64>,
    sid: Option<String>,
    email: Option<String>,
    cnf: Option<Confirmation>,
    scopes: Vec<Box<str>>,
    roles: Vec<Box<str>>,
    /// The tenant claim was present (and matched).
    tenant_seen: bool,
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
                "acr" => out.acr = Some(string(&mut map, "acr", failure)?),
                "auth_time" => out.auth_time = Some(number(&mut map, "auth_time", failure)?),
                "sid" => out.sid = Some(string(&mut map, "sid", failure)?),
                "email" => out.email = Some(string(&mut map, "email", failure)?),
                "cnf" => out.cnf = Some(confirmation(&mut map, failure)?),
                // A Security Event Token (RFC 8417) is not an access token,
                // whatever its `typ` says (RFC 8417 §4.3: SETs and other JWTs
                // must not be confused).
                "events" => {
                    *failure = Some(TokenError::WrongType);
                    return Err(de::Error::custom("events"));
                }
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
                _ if rules_tenant_is(self.rules, &name) => {
                    let (_, want) = self.rules.tenant.unwrap_or_default();
                    if string(&mut map, "tenant", failure)? != want {
                        *failure = Some(TokenError::WrongIssuer);
                        return Err(de::Error::custom("tenant"));
                    }
                    out.tenant_seen = true;
                }
                _ if self.rules.roles.iter().any(|p| p.head() == Some(&*name)) => {
                    let paths: Vec<&[Box<str>]> = self
                        .rules
                        .roles
                        .iter()
                        .filter(|p| p.head() == Some(&*name))
                        .map(|p| &p.0[1..])
                        .collect();
                    map.next_value_seed(RolesSeed {
                        paths,
                        out: &mut out.roles,
                        max: self.rules.max_roles,
                        failure,
                    })?;
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

fn rules_tenant_is(rules: &ClaimRules<'_>, name: &str) -> bool {
    rules.tenant.is_some_and(|(claim, _)| claim == name)
}

/// Reads roles at the end of the `paths` that lead to this value: one
/// with no names left is the roles claim itself; the others go into
/// nested objects. A value of another shape refuses the token, as a
/// malformed `scope` does; `null` holds no roles.
struct RolesSeed<'p, 'o> {
    paths: Vec<&'p [Box<str>]>,
    out: &'o mut Vec<Box<str>>,
    max: usize,
    failure: &'o mut Option<TokenError>,
}

impl RolesSeed<'_, '_> {
    fn ends_here(&self) -> bool {
        self.paths.iter().any(|p| p.is_empty())
    }

    fn push<E: de::Error>(&mut self, role: &str) -> Result<(), E> {
        self.out.push(Box::from(role));
        if self.out.len() > self.max {
            *self.failure = Some(TokenError::LimitExceeded("roles"));
            return Err(E::custom("limit"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for RolesSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RolesSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("roles: a string, an array of strings, or an object")
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        if !self.ends_here() {
            return Err(invalid("roles", self.failure));
        }
        for role in v.split(' ').filter(|r| !r.is_empty()) {
            self.push(role)?;
        }
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        if !self.ends_here() {
            return Err(invalid("roles", self.failure));
        }
        while let Some(v) = seq.next_element::<Value>()? {
            match v {
                Value::Str(role) => self.push(&role)?,
                _ => return Err(invalid("roles", self.failure)),
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.paths.iter().all(|p| p.is_empty()) {
            return Err(invalid("roles", self.failure));
        }
        let mut names = Names::default();
        while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
            let paths: Vec<&[Box<str>]> = self
                .paths
                .iter()
                .filter_map(|p| p.split_first())
                .filter(|(head, _)| ***head == *name)
                .map(|(_, rest)| rest)
                .collect();
            if paths.is_empty() {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(RolesSeed {
                    paths,
                    out: &mut *self.out,
                    max: self.max,
                    failure: &mut *self.failure,
                })?;
            }
            // As at the top level: a name given twice is ambiguous.
            if !names.insert(name) {
                return Err(invalid("roles", self.failure));
            }
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(invalid("roles", self.failure))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(invalid("roles", self.failure))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(invalid("roles", self.failure))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(invalid("roles", self.failure))
    }
}

/// The `iss` of a payload not verified yet, only to choose among the
/// configured issuers: the first top-level `iss` string, borrowed from the
/// payload unless it holds escapes. Reading stops there; the whole payload
/// is parsed, and `iss` checked against the chosen issuer, once the
/// signature verified.
pub(crate) fn unverified_iss(payload: &[u8]) -> Option<Cow<'_, str>> {
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(payload);
    // Stopping early is an error to serde_json; `found` says what it read.
    let _ = de::Deserializer::deserialize_map(&mut de, IssSeek(&mut found));
    found
}

struct IssSeek<'a, 'de>(&'a mut Option<Cow<'de, str>>);

impl<'de> Visitor<'de> for IssSeek<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
            if name == "iss" {
                *self.0 = Some(map.next_value::<Str<'de>>()?.0);
                return Err(de::Error::custom("found"));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

/// Records that `claim` has the wrong type and stops parsing.
fn invalid<E: de::Error>(claim: &'static str, failure: &mut Option<TokenError>) -> E {
    *failure = Some(TokenError::InvalidClaim(claim));
    E::custom("claim")
}

/// `cnf`: an object naming a DPoP key thumbprint, a certificate
/// thumbprint, or both. Any other confirmation method (`jwk`, `kid`, …)
/// refuses the token: it is bound in a way this crate cannot check, and
/// must not pass as a bearer token.
fn confirmation<'de, A: MapAccess<'de>>(
    map: &mut A,
    failure: &mut Option<TokenError>,
) -> Result<Confirmation, A::Error> {
    match map.next_value::<Confirmation>() {
        Ok(c) if c.jkt.is_some() || c.x5t_s256.is_some() => Ok(c),
        _ => Err(invalid("cnf", failure)),
    }
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
