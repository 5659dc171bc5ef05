//! [`Builder`]: settings in any order, every check in [`Builder::build`],
//! which assembles the validator in small named steps. Nothing here is
//! read per request.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use url::Url;

use crate::alg::Algorithm;
use crate::auth::{BearerAuthLayer, LocalOnly, WithIntrospection};
use crate::cache::TokenCache;
use crate::clock::{Clock, SystemClock};
use crate::config::{
    Config, DEFAULT_ACTIVE_CHECK_MAX_AGE, DEFAULT_FETCH_TIMEOUT, DEFAULT_INTROSPECTION_CONCURRENCY,
    DEFAULT_INTROSPECTION_MAX_AGE, DEFAULT_JWKS_MAX_AGE, DEFAULT_LEEWAY, DEFAULT_MAX_STALE,
    DEFAULT_MAX_TENANTS, DEFAULT_REFETCH_COOLDOWN, DEFAULT_TOKEN_CACHE_ENTRIES,
    DEFAULT_TOKEN_CACHE_TTL, DISCOVERY_MAX_AGE, ErrorResponder, Limits, MAX_FETCH_TIMEOUT,
    MAX_JWKS_MAX_AGE, MAX_LEEWAY, MAX_LIFETIME, MAX_REQUIRED_CLAIMS, MAX_TOKEN_CACHE_ENTRIES,
    MIN_JWKS_MAX_AGE, TokenTypePolicy,
};
use crate::dpop::{self, Nonces};
use crate::error::{AuthError, Refusal};
use crate::fetch::{FetchError, Fetcher, acceptable_url, loggable};
use crate::introspect::{
    ClientAuth, ClientId, ClientSecret, IntrospectionConfig, Introspector, SharedAnswers,
};
use crate::issuer::{Issuer, Issuers, KeysFrom, TENANT, Template, TrustedIssuer, is_tenant};
use crate::jwks::{FetchBudget, JwksError, KeyPolicy, KeySet, KeyStore, Source, StorePool};
use crate::jwt::claims::{ClaimPath, Principal};
use crate::jwt::{ClaimsValidator, Rules};
use crate::metadata::{ProtectedResource, ResourceMetadata};
use crate::mtls::CertificateHeader;
use crate::revocation::{RevocationCheck, RevocationList};
use crate::sender::{Binding, Dpop, DpopMode, MAX_DPOP_WINDOW, Origin};

/// A configuration mistake found by [`Builder::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No issuer was set and the issuer check was not explicitly disabled.
    MissingIssuer,
    /// No audience was set and the audience check was not explicitly
    /// disabled.
    MissingAudience,
    /// An audience or scope claim name is empty.
    EmptyValue(&'static str),
    /// The algorithm allow-list is empty.
    NoAlgorithms,
    /// An HMAC algorithm is allowed without a configured secret, or a secret
    /// is shorter than the algorithm's hash output (RFC 7518 §3.2).
    Secret(&'static str),
    /// A URL does not parse, or is not https and not on a loopback host.
    InsecureUrl(String),
    /// No way to find keys: discovery needs an issuer.
    NoKeySource,
    /// A static JWKS is unusable.
    Jwks(JwksError),
    /// A static JWKS holds no usable key.
    NoUsableKeys,
    /// The realm contains quotes, backslashes or non-visible characters.
    InvalidRealm,
    /// A limit is zero or otherwise impossible (or more than 64 required
    /// claims).
    InvalidLimit(&'static str),
    /// The HTTP client could not be built.
    HttpClient(String),
    /// Introspection is configured inconsistently (an endpoint without
    /// client credentials).
    Introspection(&'static str),
    /// The trusted issuers are configured inconsistently: the same issuer
    /// twice, a malformed template, a key source or introspection
    /// endpoint given for all of several issuers, or several issuers for
    /// opaque tokens without saying which.
    Issuers(&'static str),
    /// A role claim path is empty, too deep, or names a claim this crate
    /// reads for something else (`iss`, `aud`, `scope`, …).
    RoleClaim(&'static str),
    /// Sender-constrained tokens are configured inconsistently: DPoP proof
    /// algorithms empty or symmetric, a nonce secret shorter than 32
    /// bytes, a public origin that is not an origin, a request scheme
    /// other than `http` or `https`.
    SenderConstraint(&'static str),
    /// The protected resource metadata is unusable: a resource identifier
    /// that is not an https URL in normal form (or not on the public
    /// origin), a scope or URL member that is malformed, or an additional
    /// member that repeats one this crate writes.
    ResourceMetadata(&'static str),
    /// A duration setting is longer than its bound.
    TooLong {
        /// The builder method.
        setting: &'static str,
        /// The largest value it accepts.
        max: Duration,
    },
    /// A count setting is larger than its bound.
    TooMany {
        /// The builder method.
        setting: &'static str,
        /// The largest value it accepts.
        max: u64,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingIssuer => f.write_str(
                "no issuer configured; set one, or call insecure_skip_issuer_check() to opt out",
            ),
            Self::MissingAudience => f.write_str(
                "no audience configured; set one, or call insecure_skip_audience_check() to opt out",
            ),
            Self::EmptyValue(what) => write!(f, "{what} must not be empty"),
            Self::NoAlgorithms => f.write_str("the algorithm allow-list is empty"),
            Self::Secret(why) => f.write_str(why),
            Self::InsecureUrl(url) => {
                write!(f, "{url} is not a valid https URL (plain http is only for loopback hosts)")
            }
            Self::NoKeySource => {
                f.write_str("no key source: configure an issuer for discovery, a JWKS URL or a static JWKS")
            }
            Self::Jwks(e) => write!(f, "static JWKS: {e}"),
            Self::NoUsableKeys => f.write_str("the static JWKS holds no usable key"),
            Self::InvalidRealm => f.write_str("the realm must be visible ASCII without quotes or backslashes"),
            Self::InvalidLimit(what) => write!(f, "limit {what} must be greater than zero"),
            Self::HttpClient(e) => write!(f, "cannot build the HTTP client: {e}"),
            Self::Introspection(why)
            | Self::Issuers(why)
            | Self::SenderConstraint(why)
            | Self::ResourceMetadata(why) => f.write_str(why),
            Self::RoleClaim(why) => write!(f, "role claim: {why}"),
            Self::TooLong { setting, max } => {
                write!(f, "{setting} must be at most {}", human(*max))
            }
            Self::TooMany { setting, max } => write!(f, "{setting} must be at most {max}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A bound as an operator writes it: `10 min`, `365 days`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s >= 86_400 && s.is_multiple_of(86_400) => format!("{} days", s / 86_400),
        _ if s >= 3600 && s.is_multiple_of(3600) => format!("{} h", s / 3600),
        _ if s >= 60 && s.is_multiple_of(60) => format!("{} min", s / 60),
        _ => format!("{s} s"),
    }
}

impl BearerAuthLayer {
    /// Starts a configuration. Issuer and audience are required.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

/// Builds a [`BearerAuthLayer`]. Start with [`BearerAuthLayer::builder`].
///
/// Issuer and audience are required: a validator that accepts tokens from
/// anyone, for anyone, is refused unless the opt-out is spelled out with an
/// `insecure_*` call (RFC 8725 §3.8–3.9).
pub struct Builder<M = LocalOnly> {
    s: Settings,
    mode: PhantomData<fn() -> M>,
}

impl Builder {
    /// Enables RFC 7662 introspection with these client credentials: for
    /// opaque tokens (anything that is not a three-part JWS), and for
    /// [`BearerAuthLayer::require_active`] routes. The endpoint comes from the
    /// discovery document (`introspection_endpoint`) unless
    /// [`introspection_endpoint`](Self::introspection_endpoint) is given.
    /// Without introspection, an opaque token is `invalid_token`.
    ///
    /// The validator built then is a
    /// `BearerAuthLayer<WithIntrospection>`, which also makes
    /// `require_active` route layers.
    ///
    /// ```
    /// use tower_bearer::{BearerAuthLayer, ClientId, ClientSecret};
    /// let builder = BearerAuthLayer::builder()
    ///     .introspection(ClientId::new("orders-api"), ClientSecret::new("s3cret"));
    /// # let _ = builder;
    /// ```
    pub fn introspection(
        mut self,
        client_id: ClientId,
        client_secret: ClientSecret,
    ) -> Builder<WithIntrospection> {
        self.s.introspection = Some((client_id, client_secret));
        Builder::with(self.s)
    }
}

/// Every setting of a [`Builder`], as given.
struct Settings {
    issuer: Option<String>,
    skip_issuer: bool,
    audiences: Vec<String>,
    skip_audience: bool,
    jwks_uri: Option<String>,
    static_jwks: Option<Vec<u8>>,
    algorithms: Option<Vec<Algorithm>>,
    secrets: Vec<(Algorithm, Vec<u8>)>,
    leeway: Duration,
    typ: TokenTypePolicy,
    required_claims: Vec<String>,
    scope_claims: Vec<String>,
    limits: Limits,
    clock: Arc<dyn Clock>,
    refetch_cooldown: Duration,
    fetch_timeout: Duration,
    jwks_max_age: (Duration, Duration, Duration),
    max_stale: Duration,
    max_token_age: Option<Duration>,
    token_cache: Option<(u64, Duration)>,
    /// Client id and secret; introspection is on when set.
    introspection: Option<(ClientId, ClientSecret)>,
    introspection_endpoint: Option<String>,
    introspection_auth: ClientAuth,
    /// `max_age` and `active_check_max_age`.
    introspection_max_age: (Duration, Duration),
    introspection_concurrency: usize,
    shared_introspection: Option<Arc<dyn SharedAnswers>>,
    /// Every check given, the lists among them too.
    revocation: Vec<Arc<dyn RevocationCheck>>,
    /// The lists, whose revocations also drop cached verifications.
    revocation_lists: Vec<RevocationList>,
    realm: Option<String>,
    trace_subject: bool,
    #[cfg(feature = "metrics")]
    metrics: bool,
    cookie: Option<String>,
    responder: Option<ErrorResponder>,
    /// The issuers added with `trusted_issuer`, after `issuer`'s.
    issuers: Vec<TrustedIssuer>,
    role_claims: Vec<ClaimPath>,
    validators: Vec<ClaimsValidator>,
    allowed_clients: Option<Vec<String>>,
    max_tenants: u64,
    dpop: Dpop,
    public_origin: Option<String>,
    request_scheme: &'static str,
    trust_forwarded: bool,
    certificate_header: Option<CertificateHeader>,
    resource: Option<ProtectedResource>,
}

impl<M> fmt::Debug for Builder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("issuer", &self.s.issuer)
            .field("audiences", &self.s.audiences)
            .field("jwks_uri", &self.s.jwks_uri.as_deref().map(shown))
            .field("trusted_issuers", &self.s.issuers)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::with(Settings {
            issuer: None,
            skip_issuer: false,
            audiences: Vec::new(),
            skip_audience: false,
            jwks_uri: None,
            static_jwks: None,
            algorithms: None,
            secrets: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            typ: TokenTypePolicy::default(),
            required_claims: Vec::new(),
            scope_claims: vec!["scope".into(), "scp".into()],
            limits: Limits::default(),
            clock: Arc::new(SystemClock),
            refetch_cooldown: DEFAULT_REFETCH_COOLDOWN,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            jwks_max_age: (DEFAULT_JWKS_MAX_AGE, MIN_JWKS_MAX_AGE, MAX_JWKS_MAX_AGE),
            max_stale: DEFAULT_MAX_STALE,
            max_token_age: None,
            token_cache: Some((DEFAULT_TOKEN_CACHE_ENTRIES, DEFAULT_TOKEN_CACHE_TTL)),
            introspection: None,
            introspection_endpoint: None,
            introspection_auth: ClientAuth::default(),
            introspection_max_age: (DEFAULT_INTROSPECTION_MAX_AGE, DEFAULT_ACTIVE_CHECK_MAX_AGE),
            introspection_concurrency: DEFAULT_INTROSPECTION_CONCURRENCY,
            shared_introspection: None,
            revocation: Vec::new(),
            revocation_lists: Vec::new(),
            realm: None,
            trace_subject: false,
            #[cfg(feature = "metrics")]
            metrics: true,
            cookie: None,
            responder: None,
            issuers: Vec::new(),
            role_claims: Vec::new(),
            validators: Vec::new(),
            allowed_clients: None,
            max_tenants: DEFAULT_MAX_TENANTS,
            dpop: Dpop::default(),
            public_origin: None,
            request_scheme: "https",
            trust_forwarded: false,
            certificate_header: None,
            resource: None,
        })
    }
}

impl<M> Builder<M> {
    fn with(s: Settings) -> Self {
        Self {
            s,
            mode: PhantomData,
        }
    }
}

impl<M> Builder<M> {
    /// The issuer: `iss` must equal it exactly (case-sensitive, no
    /// normalisation of trailing slashes), and keys are found through its
    /// discovery document unless [`jwks_uri`](Self::jwks_uri) or
    /// [`jwks_json`](Self::jwks_json) is given. It may be a template with
    /// a `{tenant}` part, as [`TrustedIssuer::new`] says. An issuer (this
    /// one, or one from [`trusted_issuer`](Self::trusted_issuer)) is
    /// required. Calling it again replaces the issuer set before.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.s.issuer = Some(issuer.into());
        self
    }

    /// Another trusted issuer, with settings of its own; every setting it
    /// does not give is this builder's. Tokens are verified with the keys
    /// of the issuer their `iss` names, and only those: a token whose
    /// `iss` names no trusted issuer is refused (401 `invalid_token`)
    /// without any fetch. May be called several times; see
    /// [`TrustedIssuer`] for templates and presets.
    ///
    /// With several issuers, [`jwks_uri`](Self::jwks_uri),
    /// [`jwks_json`](Self::jwks_json) and
    /// [`introspection_endpoint`](Self::introspection_endpoint) belong to
    /// one issuer each: give them on its `TrustedIssuer`.
    pub fn trusted_issuer(mut self, issuer: TrustedIssuer) -> Self {
        self.s.issuers.push(issuer);
        self
    }

    /// How many tenants each issuer template holds at once. Default:
    /// 1 000. Older ones are dropped from a bounded cache (and made again
    /// on their next token). A tenant's first discovery is allowed once
    /// per [`refetch_cooldown`](Self::refetch_cooldown) per tenant, and
    /// for at most this many new tenants per cooldown in all (beyond that,
    /// 503 with `Retry-After`); a tenant whose discovery succeeded is not
    /// counted again. So a flood of made-up tenants costs bounded memory
    /// and bounded fetches. A dropped tenant lives on only while entries
    /// of the verified-token cache ([`token_cache`](Self::token_cache))
    /// still hold its tokens: at most this many tenants plus that cache's
    /// entries are in memory.
    pub fn max_tenants(mut self, max: u64) -> Self {
        self.s.max_tenants = max;
        self
    }

    /// Where tokens carry roles (or groups, or permissions), read into
    /// [`Principal::roles`] for
    /// [`require_all_roles`](BearerAuthLayer::require_all_roles) and
    /// [`require_any_role`](BearerAuthLayer::require_any_role). Each path
    /// holds a space-separated string or an array of strings; roles from
    /// every path are read, at most
    /// [`Limits::max_roles`](crate::Limits::max_roles). A value of another
    /// shape refuses the token. Default: none. Presets:
    /// [`ClaimPath::keycloak_realm_roles`],
    /// [`ClaimPath::keycloak_client_roles`], [`ClaimPath::entra_roles`],
    /// [`ClaimPath::auth0_permissions`].
    pub fn role_claims(mut self, paths: impl IntoIterator<Item = ClaimPath>) -> Self {
        self.s.role_claims = paths.into_iter().collect();
        self
    }

    /// A rule of yours every token must meet once its signature and
    /// claims checked out: return `Err(Refusal::new("..."))` to refuse it
    /// with 401 `invalid_token` and that fixed description. It runs once
    /// per token, before the verdict is cached, so it must depend on the
    /// claims alone. May be called several times; the rules of a
    /// [`TrustedIssuer`] run after these.
    ///
    /// ```
    /// use tower_bearer::{BearerAuthLayer, Refusal};
    /// let builder = BearerAuthLayer::builder().claims_validator(|p| {
    ///     match p.subject() {
    ///         Some(sub) if !sub.starts_with("service-account-") => Ok(()),
    ///         _ => Err(Refusal::new("service accounts are not accepted")),
    ///     }
    /// });
    /// # let _ = builder;
    /// ```
    pub fn claims_validator<F>(mut self, rule: F) -> Self
    where
        F: Fn(&Principal) -> Result<(), Refusal> + Send + Sync + 'static,
    {
        self.s.validators.push(Arc::new(rule));
        self
    }

    /// Only tokens issued to these clients are accepted: `client_id`
    /// (RFC 9068), or `azp` when it is absent, must be one of them.
    /// Others get 401 `invalid_token`. Default: any client.
    pub fn allowed_clients<I, S>(mut self, clients: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.s.allowed_clients = Some(clients.into_iter().map(Into::into).collect());
        self
    }

    /// Accepts tokens from any issuer. Only for keys given statically or by
    /// JWKS URL that belong to a single issuer; never with discovery.
    pub fn insecure_skip_issuer_check(mut self) -> Self {
        self.s.skip_issuer = true;
        self
    }

    /// An audience this API answers to; `aud` must contain it. May be
    /// called several times: a token naming any one of them is accepted.
    /// Required.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.s.audiences.push(audience.into());
        self
    }

    /// Accepts tokens meant for any audience, so a token issued for another
    /// API of the same issuer is accepted here too.
    pub fn insecure_skip_audience_check(mut self) -> Self {
        self.s.skip_audience = true;
        self
    }

    /// Fetch keys from this JWKS URL instead of using discovery.
    pub fn jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.s.jwks_uri = Some(uri.into());
        self
    }

    /// Use this JWKS document and never fetch keys (air-gapped use, tests).
    pub fn jwks_json(mut self, json: impl Into<Vec<u8>>) -> Self {
        self.s.static_jwks = Some(json.into());
        self
    }

    /// The algorithm allow-list. Default: [`Algorithm::DEFAULT_ALLOWED`]
    /// (asymmetric only). A token whose `alg` is not listed is refused
    /// before any key is looked up.
    pub fn algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        self.s.algorithms = Some(algs.into_iter().collect());
        self
    }

    /// A shared secret for an HMAC algorithm, which is also added to the
    /// allow-list. The secret must be at least as long as the hash output
    /// (32, 48 or 64 bytes). HMAC keys are never taken from a JWKS.
    ///
    /// A secret is for a validator with a single issuer: with several (or
    /// a template), whoever holds it could sign tokens in any issuer's
    /// name, so [`build`](Self::build) refuses it ([`ConfigError::Issuers`]).
    pub fn shared_secret(mut self, alg: Algorithm, secret: impl Into<Vec<u8>>) -> Self {
        self.s.secrets.push((alg, secret.into()));
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat`. Default: 60 s; at
    /// most [`MAX_LEEWAY`].
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.s.leeway = leeway;
        self
    }

    /// Which `typ` header values are accepted. Default:
    /// [`TokenTypePolicy::AccessTokenOrJwt`].
    pub fn token_type(mut self, policy: TokenTypePolicy) -> Self {
        self.s.typ = policy;
        self
    }

    /// Claims that must be present (beyond `exp`, which always is).
    pub fn require_claims<I, S>(mut self, claims: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.s
            .required_claims
            .extend(claims.into_iter().map(Into::into));
        self
    }

    /// Claims read for scopes, each a space-separated string or an array of
    /// strings. Default: `scope` and `scp`. Auth0's RBAC puts permissions in
    /// `permissions`, for example.
    pub fn scope_claims<I, S>(mut self, claims: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.s.scope_claims = claims.into_iter().map(Into::into).collect();
        self
    }

    /// Size and shape limits. Default: [`Limits::default`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.s.limits = limits;
        self
    }

    /// The clock for `exp`, `nbf` and cooldowns. Default: the system clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.s.clock = Arc::new(clock);
        self
    }

    /// Minimum time between refetches triggered by a token with an unknown
    /// `kid` (and between retries while no key set could be fetched).
    /// Default: 30 s.
    pub fn refetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.s.refetch_cooldown = cooldown;
        self
    }

    /// Timeout of one discovery, JWKS or introspection request, and the
    /// longest a request waits for an introspection call to be let out
    /// (see [`introspection_concurrency`](Self::introspection_concurrency)).
    /// Default: 5 s; more than zero and at most [`MAX_FETCH_TIMEOUT`].
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.s.fetch_timeout = timeout;
        self
    }

    /// How long a fetched JWK set stays fresh when the response gives no
    /// `Cache-Control: max-age`. The set is refreshed in the background at
    /// 80–100 % of its freshness. Default: 10 min; at most
    /// [`MAX_LIFETIME`].
    pub fn jwks_max_age(mut self, when_unspecified: Duration) -> Self {
        self.s.jwks_max_age.0 = when_unspecified;
        self
    }

    /// The range the response's `max-age` (minus `Age`) is clamped to.
    /// Default: `60 s..=24 h`; each end at most [`MAX_LIFETIME`].
    pub fn jwks_max_age_range(mut self, range: std::ops::RangeInclusive<Duration>) -> Self {
        let (min, max) = range.into_inner();
        self.s.jwks_max_age.1 = min;
        self.s.jwks_max_age.2 = max;
        self
    }

    /// How long past its expiry the last good key set is still used while
    /// the issuer cannot be reached (stale-if-error). After that, requests
    /// get 503 until a fetch succeeds. Default: 24 h; at most
    /// [`MAX_LIFETIME`].
    ///
    /// Only failures count: a transport error, a status other than 200 or
    /// 304, or a body that is not a JWK set. A well-formed set replaces
    /// the old one even when it holds no usable key: it is the issuer's
    /// word on its keys.
    pub fn max_stale(mut self, window: Duration) -> Self {
        self.s.max_stale = window;
        self
    }

    /// Refuse tokens whose `iat` is older than this (401 `invalid_token`),
    /// even before their `exp`: a bound on the revocation window for
    /// issuers that mint long-lived access tokens. Tokens without `iat`,
    /// and tokens whose `iat` is later than now plus the leeway (which
    /// would defeat the bound), are then refused. Default: no limit.
    pub fn max_token_age(mut self, age: Duration) -> Self {
        self.s.max_token_age = Some(age);
        self
    }

    /// The verified-token cache: a repeated JWT skips the signature check.
    /// At most `max_entries` tokens, each for at most `max_ttl` and never
    /// past its `exp`. A token may sit in either of two sets of 8 places
    /// that its hash picks, so near the bound a set can be full while
    /// others have room: for every one of N clients' tokens to stay
    /// cached, give room for about 2 N. A token seen once is evicted
    /// before those seen again; an entry past its lifetime is dropped at
    /// its next lookup or pushed out by new tokens. The cache's table is
    /// allocated when the validator is built, 32 bytes an entry, so
    /// `max_entries` is at most [`MAX_TOKEN_CACHE_ENTRIES`]; `max_entries`
    /// 0 turns the cache off, as [`no_token_cache`](Self::no_token_cache)
    /// does. Defaults: 10 000, 5 min; `max_ttl` at most [`MAX_LIFETIME`].
    pub fn token_cache(mut self, max_entries: u64, max_ttl: Duration) -> Self {
        self.s.token_cache = Some((max_entries, max_ttl));
        self
    }

    /// Verifies every token's signature, every time.
    pub fn no_token_cache(mut self) -> Self {
        self.s.token_cache = None;
        self
    }

    /// The introspection endpoint, instead of discovery.
    pub fn introspection_endpoint(mut self, url: impl Into<String>) -> Self {
        self.s.introspection_endpoint = Some(url.into());
        self
    }

    /// How the resource server authenticates to the introspection
    /// endpoint. Default: [`ClientAuth::Basic`].
    pub fn introspection_client_auth(mut self, auth: ClientAuth) -> Self {
        self.s.introspection_auth = auth;
        self
    }

    /// How long an active introspection answer is reused for opaque
    /// tokens. Never past the token's `exp`; inactive answers for 10 s.
    /// Default: 60 s; at most [`MAX_LIFETIME`].
    pub fn introspection_max_age(mut self, max_age: Duration) -> Self {
        self.s.introspection_max_age.0 = max_age;
        self
    }

    /// How long an active introspection answer is reused on
    /// [`require_active`](BearerAuthLayer::require_active) routes. Default:
    /// 5 s; at most [`MAX_LIFETIME`].
    pub fn active_check_max_age(mut self, max_age: Duration) -> Self {
        self.s.introspection_max_age.1 = max_age;
        self
    }

    /// How many calls to the introspection endpoint may be in flight at
    /// once, for opaque tokens and, separately, for `require_active`
    /// checks (so a flood of made-up opaque tokens cannot starve the
    /// routes whose tokens already validated). A request beyond that waits
    /// for one to finish, at most the
    /// [`fetch_timeout`](Self::fetch_timeout), and then gets 503 with
    /// `Retry-After`: a flood of distinct opaque tokens cannot become a
    /// flood at the authorization server. Default: 64 each.
    pub fn introspection_concurrency(mut self, max_in_flight: usize) -> Self {
        self.s.introspection_concurrency = max_in_flight;
        self
    }

    /// Shares introspection answers with the other replicas through
    /// Redis, so that N replicas make about one call per token instead of
    /// N. Entries are authenticated with the cache's key: a bad one is a
    /// miss (logged), so a write to Redis cannot grant access; an answer
    /// read is checked like one from the endpoint. See
    /// [`fleet::SharedIntrospectionCache`](crate::fleet::SharedIntrospectionCache).
    #[cfg(feature = "redis")]
    pub fn shared_introspection_cache(
        mut self,
        cache: crate::fleet::SharedIntrospectionCache,
    ) -> Self {
        self.s.shared_introspection = Some(Arc::new(cache));
        self
    }

    /// A revocation check consulted on every request after the signature
    /// (or the cache); see [`RevocationCheck`]. May be called several
    /// times, with [`revocation_list`](Self::revocation_list) too: any one
    /// check can revoke.
    pub fn revocation(mut self, check: impl RevocationCheck) -> Self {
        self.s.revocation.push(Arc::new(check));
        self
    }

    /// Like [`revocation`](Self::revocation) for the in-memory
    /// [`RevocationList`], which also drops matching entries of this
    /// validator's verified-token cache when it revokes.
    pub fn revocation_list(mut self, list: RevocationList) -> Self {
        self.s.revocation.push(Arc::new(list.clone()));
        self.s.revocation_lists.push(list);
        self
    }

    /// Records the subject (`sub`) of each accepted token on its
    /// validation span, as `enduser.id` (OpenTelemetry's name). Off by
    /// default: a subject identifies a person, and traces often travel
    /// further than logs.
    pub fn trace_subject(mut self, yes: bool) -> Self {
        self.s.trace_subject = yes;
        self
    }

    /// Whether this validator reports metrics (the `metrics` feature):
    /// on by default. Their handles are resolved by `build()`, from the
    /// recorder in effect then: install yours before.
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, on: bool) -> Self {
        self.s.metrics = on;
        self
    }

    /// A `realm` for the `WWW-Authenticate` challenge. Default: none.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.s.realm = Some(realm.into());
        self
    }

    /// Also read the token from this cookie when there is no
    /// `Authorization` header. Default: header only.
    pub fn token_cookie(mut self, name: impl Into<String>) -> Self {
        self.s.cookie = Some(name.into());
        self
    }

    /// Rewrites error responses. The function gets the error and the
    /// default response (status, headers, JSON body) and returns the one to
    /// send.
    pub fn on_error<F>(mut self, f: F) -> Self
    where
        F: Fn(&AuthError, Response<Bytes>) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.s.responder = Some(Arc::new(f));
        self
    }

    /// How DPoP (RFC 9449) is treated. Default: [`Dpop::allowed`]: bearer
    /// tokens with the `Bearer` scheme, DPoP-bound tokens with the `DPoP`
    /// scheme and a proof. A DPoP-bound token is refused with the `Bearer`
    /// scheme or without a valid proof whatever this says.
    pub fn dpop(mut self, dpop: Dpop) -> Self {
        self.s.dpop = dpop;
        self
    }

    /// The origin clients reach this API at, `https://api.example.com`:
    /// what a DPoP proof's `htu` must name, with the request's path.
    /// Default: none; then the request's `Host` (or `:authority`) with
    /// [`request_scheme`](Self::request_scheme).
    pub fn public_origin(mut self, origin: impl Into<String>) -> Self {
        self.s.public_origin = Some(origin.into());
        self
    }

    /// The scheme of the request URIs DPoP proofs name, when no
    /// [`public_origin`](Self::public_origin) is set: `"https"` (the
    /// default, as TLS usually ends in front of the app) or `"http"`.
    pub fn request_scheme(mut self, scheme: &str) -> Self {
        self.s.request_scheme = match scheme {
            "https" => "https",
            "http" => "http",
            _ => "",
        };
        self
    }

    /// Believe `X-Forwarded-Proto` and `X-Forwarded-Host` for the request
    /// URI a DPoP proof names, when no public origin is set. Only behind a
    /// proxy that sets them and drops the client's. Default: never.
    pub fn trust_forwarded_headers(mut self) -> Self {
        self.s.trust_forwarded = true;
        self
    }

    /// Where a trusted TLS-terminating proxy passes on the client's
    /// certificate, for certificate-bound tokens (RFC 8705). Without it,
    /// only a [`ClientCertificate`](crate::ClientCertificate) the server
    /// put into the request's extensions counts. Default: none.
    pub fn client_certificate_header(mut self, header: CertificateHeader) -> Self {
        self.s.certificate_header = Some(header);
        self
    }

    /// Serve this API's protected resource metadata (RFC 9728) with
    /// [`BearerAuthLayer::resource_metadata`], and name it in every
    /// challenge (`resource_metadata`, §5.1). Its resource identifier is
    /// also the audience when no [`audience`](Self::audience) is given
    /// (RFC 8707). Default: none.
    pub fn protected_resource(mut self, resource: ProtectedResource) -> Self {
        self.s.resource = Some(resource);
        self
    }

    /// Checks the configuration and builds the validator.
    ///
    /// Keys are not fetched here: the first request that needs them fetches
    /// them (all requests arriving meanwhile share that one fetch), so a
    /// service can start while its issuer is briefly unreachable. Call
    /// [`BearerAuthLayer::prefetch_keys`] at start-up to fail fast instead.
    pub fn build(self) -> Result<BearerAuthLayer<M>, ConfigError> {
        self.check_durations()?;
        self.check_limits()?;
        self.check_realm()?;
        if let Some(resource) = &self.s.resource {
            resource.resource().map_err(ConfigError::ResourceMetadata)?;
        }
        let required_claims = self.required_claims()?;
        let trusted = self.trusted_issuers()?;
        let pool = Arc::new(StorePool::default());
        let fetcher = Fetcher::new(self.s.fetch_timeout, self.s.limits.max_document_bytes)
            .map_err(client_error)?;
        let mut algorithms: Vec<Algorithm> = Vec::new();
        let (mut fixed, mut templates, mut opaque) = (Vec::new(), Vec::new(), Vec::new());
        // Metrics and spans name an issuer by its configuration alone.
        let labels: Box<[Box<str>]> = std::iter::once("")
            .chain(trusted.iter().map(|(ti, _)| ti.iss.as_str()))
            .map(Box::from)
            .collect();
        for (i, (ti, iss)) in trusted.iter().enumerate() {
            let label = u16::try_from(i + 1)
                .map_err(|_| ConfigError::Issuers("more than 65535 trusted issuers"))?;
            let recipe = self.recipe(ti, iss.as_deref(), &pool, &fetcher, label)?;
            for alg in &recipe.algorithms {
                if !algorithms.contains(alg) {
                    algorithms.push(*alg);
                }
            }
            if ti.is_template() {
                templates.push(self.template(ti, recipe)?);
                continue;
            }
            let issuer = Arc::new(recipe.make(iss.as_deref(), None)?);
            if issuer.introspector.is_none() && ti.opaque_tokens == Some(true) {
                return Err(ConfigError::Issuers(
                    "opaque_tokens(true) on an issuer without introspection",
                ));
            }
            if issuer.introspector.is_some() && ti.opaque_tokens != Some(false) {
                opaque.push((issuer.clone(), ti.opaque_tokens == Some(true)));
            }
            fixed.push(issuer);
        }
        let opaque = opaque_issuers(opaque)?;
        let cache = self
            .s
            .token_cache
            .filter(|&(entries, _)| entries > 0)
            .map(|(entries, ttl)| Arc::new(TokenCache::new(entries, ttl)));
        if let Some(cache) = &cache {
            for list in &self.s.revocation_lists {
                list.attach(cache);
            }
        }
        let binding = self.binding()?;
        let metadata = self.metadata(&fixed)?;
        let config = Config {
            algorithms: algorithms.into(),
            typ: self.s.typ,
            required_claims,
            scope_claims: self.s.scope_claims.into_iter().map(Box::from).collect(),
            limits: self.s.limits,
            clock: self.s.clock,
            realm: self.s.realm.map(Box::from),
            cookie: self.s.cookie.map(Box::from),
            responder: self.s.responder,
            metadata,
            trace_subject: self.s.trace_subject,
        };
        #[cfg(feature = "metrics")]
        let metrics = self
            .s
            .metrics
            .then(|| crate::telemetry::metrics::Metrics::new(&labels));
        let lifetimes = self
            .s
            .revocation_lists
            .iter()
            .map(RevocationList::lifetimes)
            .collect();
        Ok(BearerAuthLayer::new(
            config,
            binding,
            Issuers::new(fixed, templates, opaque, labels),
            cache,
            self.s.revocation.into(),
            lifetimes,
            #[cfg(feature = "metrics")]
            metrics,
        ))
    }
}

impl<M> Builder<M> {
    /// The protected resource metadata, from what is configured and the
    /// `fixed` issuers (templates have no one issuer to name).
    fn metadata(&self, fixed: &[Arc<Issuer>]) -> Result<Option<ResourceMetadata>, ConfigError> {
        let Some(resource) = &self.s.resource else {
            return Ok(None);
        };
        let issuers: Vec<&str> = fixed
            .iter()
            .filter_map(|i| i.rules.iss.as_deref())
            .collect();
        let d = &self.s.dpop;
        let dpop =
            (d.mode != DpopMode::Off).then(|| (&d.algorithms[..], d.mode == DpopMode::Required));
        let origin = match &self.s.public_origin {
            Some(o) => Some(checked_url(o)?),
            None => None,
        };
        resource
            .build(
                &issuers,
                dpop,
                self.s.certificate_header.is_some(),
                origin.as_ref(),
            )
            .map(Some)
            .map_err(ConfigError::ResourceMetadata)
    }

    /// The sender-constraint checks: DPoP's proof verifier and where the
    /// request URI comes from, and the certificate header.
    fn binding(&self) -> Result<Binding, ConfigError> {
        let d = &self.s.dpop;
        if d.window > MAX_DPOP_WINDOW {
            return Err(ConfigError::TooLong {
                setting: "Dpop::iat_window",
                max: MAX_DPOP_WINDOW,
            });
        }
        if d.algorithms.is_empty() || d.algorithms.iter().any(|a| a.is_symmetric()) {
            return Err(ConfigError::SenderConstraint(
                "DPoP proofs take asymmetric algorithms only, at least one",
            ));
        }
        if d.max_replay_entries == 0 {
            return Err(ConfigError::InvalidLimit("Dpop::max_replay_entries"));
        }
        let nonces = match &d.nonces {
            Some((secret, _)) if secret.len() < 32 => {
                return Err(ConfigError::SenderConstraint(
                    "the DPoP nonce secret must be at least 32 bytes",
                ));
            }
            Some((_, rotation)) if rotation.is_zero() || *rotation > MAX_LIFETIME => {
                return Err(ConfigError::SenderConstraint(
                    "the DPoP nonce rotation must be between 1 s and 365 days",
                ));
            }
            Some((secret, rotation)) => Some(Nonces::new(secret, *rotation)),
            None => None,
        };
        let verifier = dpop::Verifier::new(
            d.algorithms.clone().into(),
            d.window,
            self.s.limits.clone(),
            nonces,
            d.max_replay_entries,
        );
        let public = match &self.s.public_origin {
            None => None,
            Some(origin) => {
                let url = checked_url(origin).map_err(|_| {
                    ConfigError::SenderConstraint("public_origin must be an https origin")
                })?;
                if !matches!(url.path(), "" | "/")
                    || url.query().is_some()
                    || url.fragment().is_some()
                    || !url.username().is_empty()
                {
                    return Err(ConfigError::SenderConstraint(
                        "public_origin is scheme, host and port only, such as https://api.example.com",
                    ));
                }
                Some(url)
            }
        };
        if self.s.request_scheme.is_empty() {
            return Err(ConfigError::SenderConstraint(
                "request_scheme is http or https",
            ));
        }
        let origin = Origin {
            public,
            scheme: self.s.request_scheme,
            forwarded: self.s.trust_forwarded,
        };
        let dpop = match d.mode {
            DpopMode::Off => None,
            DpopMode::Allowed => Some((false, verifier)),
            DpopMode::Required => Some((true, verifier)),
        };
        Ok(Binding::new(
            dpop,
            self.s.certificate_header.clone(),
            origin,
        ))
    }
}

/// A token whose claims name no allowed client.
const CLIENT_NOT_ALLOWED: Refusal =
    Refusal::new("the token was issued to a client this API does not accept");

/// The issuers for opaque tokens: those chosen, in order; or, when none
/// was, the only one that introspects.
fn opaque_issuers(candidates: Vec<(Arc<Issuer>, bool)>) -> Result<Vec<Arc<Issuer>>, ConfigError> {
    let chosen: Vec<Arc<Issuer>> = candidates
        .iter()
        .filter(|(_, chosen)| *chosen)
        .map(|(i, _)| i.clone())
        .collect();
    match (chosen.is_empty(), candidates.len()) {
        (false, _) => Ok(chosen),
        (true, 0 | 1) => Ok(candidates.into_iter().map(|(i, _)| i).collect()),
        (true, _) => Err(ConfigError::Issuers(
            "several issuers introspect: say which take opaque tokens with TrustedIssuer::opaque_tokens",
        )),
    }
}

/// Everything that makes one issuer: its rules, where its keys come
/// from, and its introspection, with every builder-wide setting it did
/// not override filled in. A template keeps it to make each tenant's
/// issuer on first use.
struct Recipe {
    audiences: Option<Box<[Box<str>]>>,
    algorithms: Vec<Algorithm>,
    leeway_secs: i64,
    max_token_age_secs: Option<i64>,
    roles: Box<[ClaimPath]>,
    tenant_claim: Option<Box<str>>,
    validators: Box<[ClaimsValidator]>,
    keys: RecipeKeys,
    introspection: Option<IntrospectionConfig>,
    limits: Limits,
    clock: Arc<dyn Clock>,
    policy: KeyPolicy,
    fetcher: Fetcher,
    timeout: Duration,
    pool: Arc<StorePool>,
    budget: Option<Arc<FetchBudget>>,
    /// The issuer's index among the trusted ones, from 1.
    label: u16,
    /// `None`: metrics off.
    #[cfg(feature = "metrics")]
    key_metrics: Option<Arc<crate::telemetry::metrics::KeyMetrics>>,
}

enum RecipeKeys {
    /// Made when the recipe was: static, or a JWKS URL.
    Store(Arc<KeyStore>),
    /// Found by the issuer's discovery, with the configured secrets.
    Discover(KeySet),
}

impl Recipe {
    /// The issuer `iss` (`None`: the issuer check skipped), or a
    /// template's for `tenant`.
    fn make(&self, iss: Option<&str>, tenant: Option<&str>) -> Result<Issuer, ConfigError> {
        let keys = match &self.keys {
            RecipeKeys::Store(store) => store.clone(),
            RecipeKeys::Discover(secrets) => {
                let url = checked_url(iss.ok_or(ConfigError::NoKeySource)?)?;
                let store = KeyStore::new(
                    Source::Discovery(url, secrets.clone(), self.pool.clone()),
                    iss.map(str::to_owned),
                    self.algorithms.clone(),
                    self.limits.clone(),
                    self.clock.clone(),
                    self.policy.clone(),
                    &self.fetcher,
                    self.budget.clone().zip(tenant.map(Box::from)),
                );
                // A tenant's key count is not its template's.
                #[cfg(feature = "metrics")]
                if let Some(m) = &self.key_metrics {
                    store.observe_with(match tenant {
                        Some(_) => m.counters_only(),
                        None => m.clone(),
                    });
                }
                store
            }
        };
        let introspector = match &self.introspection {
            None => None,
            Some(cfg) => {
                let discovery = iss
                    .map(|iss| Ok::<_, ConfigError>((checked_url(iss)?, iss.to_owned())))
                    .transpose()?;
                if cfg.endpoint.is_none() && discovery.is_none() {
                    return Err(ConfigError::NoKeySource);
                }
                #[allow(unused_mut)] // set only with the metrics feature
                let mut introspector =
                    Introspector::new(cfg.clone(), discovery, &self.fetcher, self.timeout);
                #[cfg(feature = "metrics")]
                if self.key_metrics.is_some() {
                    introspector.measure();
                }
                Some(Arc::new(introspector))
            }
        };
        let rules = Rules {
            iss: iss.map(Box::from),
            audiences: self.audiences.clone(),
            algorithms: self.algorithms.clone().into(),
            leeway_secs: self.leeway_secs,
            max_token_age_secs: self.max_token_age_secs,
            roles: self.roles.clone(),
            tenant: self.tenant_claim.clone().zip(tenant.map(Box::from)),
            validators: self.validators.clone(),
        };
        Ok(Issuer {
            rules,
            keys,
            introspector,
            tenant: tenant.map(Box::from),
            label: self.label,
        })
    }
}

impl<M> Builder<M> {
    /// Every limit positive, the RSA bounds in order, claim names given.
    fn check_limits(&self) -> Result<(), ConfigError> {
        let l = &self.s.limits;
        for (v, name) in [
            (l.max_token_bytes, "max_token_bytes"),
            (l.max_json_depth, "max_json_depth"),
            (l.max_kid_bytes, "max_kid_bytes"),
            (l.max_header_members, "max_header_members"),
            (l.max_audiences, "max_audiences"),
            (l.max_scopes, "max_scopes"),
            (l.max_roles, "max_roles"),
            (l.max_tenant_bytes, "max_tenant_bytes"),
            (l.max_jwks_keys, "max_jwks_keys"),
            (l.max_document_bytes, "max_document_bytes"),
        ] {
            if v == 0 {
                return Err(ConfigError::InvalidLimit(name));
            }
        }
        if l.min_rsa_bits > l.max_rsa_bits {
            return Err(ConfigError::InvalidLimit("min_rsa_bits <= max_rsa_bits"));
        }
        let (_, min_max_age, max_max_age) = self.s.jwks_max_age;
        if min_max_age > max_max_age {
            return Err(ConfigError::InvalidLimit("jwks_max_age_range start <= end"));
        }
        if self
            .s
            .scope_claims
            .iter()
            .chain(&self.s.required_claims)
            .any(String::is_empty)
        {
            return Err(ConfigError::EmptyValue("claim name"));
        }
        Ok(())
    }

    /// The realm goes into a quoted header parameter as it is.
    fn check_realm(&self) -> Result<(), ConfigError> {
        match &self.s.realm {
            Some(realm)
                if !realm.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
                    || realm.contains(['"', '\\']) =>
            {
                Err(ConfigError::InvalidRealm)
            }
            _ => Ok(()),
        }
    }

    /// Every trusted issuer with its `iss` (`None` when the issuer check
    /// is explicitly skipped): `issuer`'s first, then `trusted_issuer`'s.
    /// The builder-wide key source and introspection endpoint go to the
    /// only issuer; with several they are a mistake.
    fn trusted_issuers(&self) -> Result<Vec<(TrustedIssuer, Option<String>)>, ConfigError> {
        let mut all: Vec<TrustedIssuer> = Vec::new();
        if let Some(iss) = &self.s.issuer {
            all.push(TrustedIssuer::new(iss.clone()));
        }
        all.extend(self.s.issuers.iter().cloned());
        let keys = match (&self.s.static_jwks, &self.s.jwks_uri) {
            (Some(json), _) => Some(KeysFrom::Json(json.clone())),
            (None, Some(uri)) => Some(KeysFrom::JwksUri(uri.clone())),
            (None, None) => None,
        };
        let endpoint = &self.s.introspection_endpoint;
        if (all.len() > 1 || all.iter().any(TrustedIssuer::is_template))
            && !self.s.secrets.is_empty()
        {
            return Err(ConfigError::Issuers(
                "a shared secret would let every issuer sign for every other: shared_secret is for a single issuer",
            ));
        }
        if all.len() > 1 && (keys.is_some() || endpoint.is_some()) {
            return Err(ConfigError::Issuers(
                "with several issuers, give jwks_uri, jwks_json and introspection_endpoint on each TrustedIssuer",
            ));
        }
        if all.iter().any(|ti| ti.iss.is_empty()) {
            return Err(ConfigError::EmptyValue("issuer"));
        }
        if all.is_empty() {
            if !self.s.skip_issuer {
                return Err(ConfigError::MissingIssuer);
            }
            all.push(TrustedIssuer::new(String::new()));
        }
        if let [only] = all.as_mut_slice() {
            only.keys = only.keys.take().or(keys);
            only.introspection_endpoint = only.introspection_endpoint.take().or(endpoint.clone());
        }
        for (i, ti) in all.iter().enumerate() {
            if !ti.is_template() && ti.iss.contains(['{', '}']) {
                return Err(ConfigError::Issuers(
                    "an issuer holds no braces; a template holds one {tenant}",
                ));
            }
            if all[..i].iter().any(|other| other.iss == ti.iss) {
                return Err(ConfigError::Issuers("the same issuer is trusted twice"));
            }
        }
        Ok(all
            .into_iter()
            .map(|ti| {
                let iss = (!ti.iss.is_empty()).then(|| ti.iss.clone());
                (ti, iss)
            })
            .collect())
    }

    /// What makes the issuer `ti` (whose `iss` is `iss`), with the
    /// builder's settings where it gives none.
    fn recipe(
        &self,
        ti: &TrustedIssuer,
        iss: Option<&str>,
        pool: &Arc<StorePool>,
        fetcher: &Fetcher,
        label: u16,
    ) -> Result<Recipe, ConfigError> {
        let audiences = self.audiences_for(ti)?;
        let (algorithms, secrets) = self.algorithms_and_secrets(ti.algorithms.as_deref())?;
        let leeway = ti.leeway.unwrap_or(self.s.leeway);
        if leeway > MAX_LEEWAY {
            return Err(ConfigError::TooLong {
                setting: "TrustedIssuer::leeway",
                max: MAX_LEEWAY,
            });
        }
        let roles = ti
            .role_claims
            .clone()
            .unwrap_or_else(|| self.s.role_claims.clone());
        self.check_role_claims(&roles)?;
        if ti.tenant_claim.is_some() && !ti.is_template() {
            return Err(ConfigError::Issuers("tenant_claim is for issuer templates"));
        }
        let keys = match &ti.keys {
            Some(KeysFrom::Json(json)) => RecipeKeys::Store(self.key_store(
                Source::Static(self.static_set(json, &algorithms, &secrets)?),
                iss,
                &algorithms,
                fetcher,
            )),
            Some(KeysFrom::JwksUri(uri)) => {
                let url = checked_url(uri)?;
                RecipeKeys::Store(pool.get_or_insert(&url, &algorithms, || {
                    self.key_store(
                        Source::Jwks(url.clone(), secrets.clone()),
                        iss,
                        &algorithms,
                        fetcher,
                    )
                }))
            }
            None if iss.is_some() => RecipeKeys::Discover(secrets),
            None if !secrets.is_empty() => RecipeKeys::Store(self.key_store(
                Source::Static(secrets),
                None,
                &algorithms,
                fetcher,
            )),
            None => return Err(ConfigError::NoKeySource),
        };
        #[cfg(feature = "metrics")]
        let key_metrics = self
            .s
            .metrics
            .then(|| crate::telemetry::metrics::Metrics::keys(&ti.iss));
        #[cfg(feature = "metrics")]
        if let (RecipeKeys::Store(store), Some(m)) = (&keys, &key_metrics) {
            store.observe_with(m.clone());
        }
        let mut validators = self.s.validators.clone();
        if let Some(clients) = ti
            .allowed_clients
            .as_ref()
            .or(self.s.allowed_clients.as_ref())
        {
            let clients: Box<[Box<str>]> = clients.iter().map(|c| Box::from(c.as_str())).collect();
            validators.push(Arc::new(move |p: &Principal| match p.client_id() {
                Some(c) if clients.iter().any(|a| **a == *c) => Ok(()),
                _ => Err(CLIENT_NOT_ALLOWED),
            }));
        }
        validators.extend(ti.validators.iter().cloned());
        Ok(Recipe {
            audiences,
            algorithms,
            leeway_secs: whole_seconds(leeway),
            max_token_age_secs: self.s.max_token_age.map(whole_seconds),
            roles: roles.into(),
            tenant_claim: ti.tenant_claim.as_deref().map(Box::from),
            validators: validators.into(),
            keys,
            introspection: self.introspection_config(ti)?,
            limits: self.s.limits.clone(),
            clock: self.s.clock.clone(),
            policy: self.key_policy(),
            fetcher: fetcher.clone(),
            timeout: self.s.fetch_timeout,
            pool: pool.clone(),
            budget: None,
            label,
            #[cfg(feature = "metrics")]
            key_metrics,
        })
    }

    /// An issuer template, which makes each tenant's issuer with `recipe`
    /// on first use.
    fn template(&self, ti: &TrustedIssuer, mut recipe: Recipe) -> Result<Template, ConfigError> {
        let pattern = ti.iss.as_str();
        if pattern.matches(TENANT).count() != 1 || pattern.replace(TENANT, "").contains(['{', '}'])
        {
            return Err(ConfigError::Issuers(
                "an issuer template holds exactly one {tenant} and no other braces",
            ));
        }
        checked_url(&pattern.replace(TENANT, "tenant"))?;
        if ti.opaque_tokens == Some(true) {
            return Err(ConfigError::Issuers(
                "opaque tokens name no tenant: an issuer template cannot take them",
            ));
        }
        let max_bytes = self.s.limits.max_tenant_bytes;
        if ti
            .tenants
            .iter()
            .flatten()
            .any(|t| !is_tenant(t, max_bytes))
        {
            return Err(ConfigError::Issuers(
                "a tenant is one path segment of letters, digits, -, _, . or ~",
            ));
        }
        if self.s.max_tenants == 0 {
            return Err(ConfigError::InvalidLimit("max_tenants"));
        }
        let per_window = usize::try_from(self.s.max_tenants).unwrap_or(usize::MAX);
        recipe.budget = Some(Arc::new(FetchBudget::new(
            self.s.refetch_cooldown,
            per_window,
        )));
        let shared_keys = match &recipe.keys {
            RecipeKeys::Store(store) => Some(store.clone()),
            RecipeKeys::Discover(_) => None,
        };
        Ok(Template::new(
            pattern,
            ti.tenants.clone(),
            max_bytes,
            self.s.max_tenants,
            Box::new(move |tenant, iss| recipe.make(Some(iss), Some(tenant)).ok()),
            shared_keys,
        ))
    }

    /// The audiences of `ti`, or the builder's, or else the protected
    /// resource's identifier (RFC 8707); `None` when their check is
    /// explicitly skipped.
    fn audiences_for(&self, ti: &TrustedIssuer) -> Result<Option<Box<[Box<str>]>>, ConfigError> {
        let resource: Vec<String> = (self.s.resource.as_ref())
            .and_then(|r| r.resource().ok())
            .map(|r| vec![r.to_owned()])
            .unwrap_or_default();
        let given = [&ti.audiences, &self.s.audiences, &resource]
            .into_iter()
            .find(|list| !list.is_empty())
            .unwrap_or(&resource);
        if given.iter().any(String::is_empty) {
            return Err(ConfigError::EmptyValue("audience"));
        }
        match (given.is_empty(), self.s.skip_audience) {
            (false, _) => Ok(Some(given.iter().map(|a| Box::from(a.as_str())).collect())),
            (true, true) => Ok(None),
            (true, false) => Err(ConfigError::MissingAudience),
        }
    }

    /// Role paths that can be read: given, not deeper than the JSON
    /// depth limit (nor 8), and not a claim read for something else.
    fn check_role_claims(&self, paths: &[ClaimPath]) -> Result<(), ConfigError> {
        const RESERVED: [&str; 13] = [
            "iss",
            "sub",
            "aud",
            "exp",
            "nbf",
            "iat",
            "jti",
            "client_id",
            "azp",
            "cnf",
            "acr",
            "auth_time",
            "sid",
        ];
        for path in paths {
            if path.depth() == 0 || path.segments().any(str::is_empty) {
                return Err(ConfigError::RoleClaim(
                    "a path is empty or has an empty name",
                ));
            }
            if path.depth() > self.s.limits.max_json_depth.min(8) {
                return Err(ConfigError::RoleClaim(
                    "a path is deeper than 8 or the JSON depth limit",
                ));
            }
            let head = path.head().unwrap_or_default();
            if RESERVED.contains(&head) || self.s.scope_claims.iter().any(|s| s == head) {
                return Err(ConfigError::RoleClaim(
                    "a path starts at a registered or scope claim",
                ));
            }
        }
        Ok(())
    }

    /// Required claims without repeats, with RFC 9068's in its mode.
    fn required_claims(&self) -> Result<Box<[Arc<str>]>, ConfigError> {
        let strict: &[&str] = match self.s.typ {
            TokenTypePolicy::Rfc9068 => &["iss", "aud", "sub", "client_id", "iat", "jti"],
            _ => &[],
        };
        let mut required: Vec<Arc<str>> = Vec::new();
        for claim in self
            .s
            .required_claims
            .iter()
            .map(String::as_str)
            .chain(strict.iter().copied())
        {
            if !required.iter().any(|r| **r == *claim) {
                required.push(Arc::from(claim));
            }
        }
        if required.len() > MAX_REQUIRED_CLAIMS {
            return Err(ConfigError::InvalidLimit("at most 64 required claims"));
        }
        Ok(required.into())
    }

    /// The allow-list, with each configured secret's algorithm added, and
    /// the secrets as keys.
    fn algorithms_and_secrets(
        &self,
        issuer_algorithms: Option<&[Algorithm]>,
    ) -> Result<(Vec<Algorithm>, KeySet), ConfigError> {
        let mut algorithms = issuer_algorithms
            .or(self.s.algorithms.as_deref())
            .unwrap_or(&Algorithm::DEFAULT_ALLOWED)
            .to_vec();
        let mut secrets = KeySet::default();
        for (alg, secret) in &self.s.secrets {
            let min = match alg {
                Algorithm::HS256 => 32,
                Algorithm::HS384 => 48,
                Algorithm::HS512 => 64,
                _ => return Err(ConfigError::Secret("shared_secret takes an HS* algorithm")),
            };
            if self.s.secrets.iter().filter(|(a, _)| a == alg).count() > 1 {
                return Err(ConfigError::Secret("one shared secret per HS* algorithm"));
            }
            if secret.len() < min {
                return Err(ConfigError::Secret(
                    "the shared secret is shorter than the algorithm's hash output",
                ));
            }
            secrets.insert_secret(*alg, secret);
            if !algorithms.contains(alg) {
                algorithms.push(*alg);
            }
        }
        if algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithms);
        }
        if algorithms
            .iter()
            .any(|a| a.is_symmetric() && !self.s.secrets.iter().any(|(s, _)| s == a))
        {
            return Err(ConfigError::Secret(
                "an HS* algorithm is allowed but no shared secret is configured for it",
            ));
        }
        algorithms.dedup();
        Ok((algorithms, secrets))
    }

    /// A static JWKS with the configured secrets added.
    fn static_set(
        &self,
        json: &[u8],
        algorithms: &[Algorithm],
        secrets: &KeySet,
    ) -> Result<KeySet, ConfigError> {
        let (mut set, _) = KeySet::parse_logged(json, algorithms, &self.s.limits, None)
            .map_err(ConfigError::Jwks)?;
        if set.is_empty() {
            return Err(ConfigError::NoUsableKeys);
        }
        set.extend(secrets);
        Ok(set)
    }

    /// The introspection settings of `ti`, or the builder's.
    fn introspection_config(
        &self,
        ti: &TrustedIssuer,
    ) -> Result<Option<IntrospectionConfig>, ConfigError> {
        let credentials = match &ti.introspection {
            Some(given) => given.clone(),
            None => self.s.introspection.clone(),
        };
        let Some((client_id, client_secret)) = credentials else {
            if ti.introspection_endpoint.is_some() {
                return Err(ConfigError::Introspection(
                    "introspection_endpoint needs introspection(client_id, client_secret)",
                ));
            }
            return Ok(None);
        };
        if self.s.introspection_concurrency == 0 {
            return Err(ConfigError::InvalidLimit("introspection_concurrency"));
        }
        let (max_age, active_check_max_age) = self.s.introspection_max_age;
        Ok(Some(IntrospectionConfig {
            client_id: client_id.0,
            client_secret: client_secret.0,
            endpoint: ti
                .introspection_endpoint
                .as_deref()
                .map(checked_url)
                .transpose()?,
            auth: self.s.introspection_auth,
            max_age,
            active_check_max_age,
            max_entries: DEFAULT_TOKEN_CACHE_ENTRIES,
            max_in_flight: self.s.introspection_concurrency,
            shared: self.s.shared_introspection.clone(),
        }))
    }

    /// How fetched key sets age.
    fn key_policy(&self) -> KeyPolicy {
        let (default_max_age, min_max_age, max_max_age) = self.s.jwks_max_age;
        KeyPolicy {
            default_max_age,
            min_max_age,
            max_max_age,
            max_stale: self.s.max_stale,
            cooldown: self.s.refetch_cooldown,
            discovery_max_age: DISCOVERY_MAX_AGE,
        }
    }

    /// A key store made up front (static, or a JWKS URL).
    fn key_store(
        &self,
        source: Source,
        issuer: Option<&str>,
        algorithms: &[Algorithm],
        fetcher: &Fetcher,
    ) -> Arc<KeyStore> {
        KeyStore::new(
            source,
            issuer.map(str::to_owned),
            algorithms.to_vec(),
            self.s.limits.clone(),
            self.s.clock.clone(),
            self.key_policy(),
            fetcher,
            None,
        )
    }
}

/// Whole seconds as the claims count them, saturating.
fn whole_seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl<M> Builder<M> {
    /// Every duration setting within its bound: past them, the clock's
    /// arithmetic overflows, a cache refuses its TTL, or a check is
    /// switched off.
    fn check_durations(&self) -> Result<(), ConfigError> {
        let (jwks_default, jwks_min, jwks_max) = self.s.jwks_max_age;
        let (intro_max_age, intro_active) = self.s.introspection_max_age;
        let token_ttl = self.s.token_cache.map_or(Duration::ZERO, |(_, ttl)| ttl);
        for (value, setting, max) in [
            (self.s.leeway, "leeway", MAX_LEEWAY),
            (self.s.fetch_timeout, "fetch_timeout", MAX_FETCH_TIMEOUT),
            (self.s.refetch_cooldown, "refetch_cooldown", MAX_LIFETIME),
            (jwks_default, "jwks_max_age", MAX_LIFETIME),
            (jwks_min, "jwks_max_age_range (start)", MAX_LIFETIME),
            (jwks_max, "jwks_max_age_range (end)", MAX_LIFETIME),
            (self.s.max_stale, "max_stale", MAX_LIFETIME),
            (token_ttl, "token_cache (max_ttl)", MAX_LIFETIME),
            (intro_max_age, "introspection_max_age", MAX_LIFETIME),
            (intro_active, "active_check_max_age", MAX_LIFETIME),
        ] {
            if value > max {
                return Err(ConfigError::TooLong { setting, max });
            }
        }
        if self.s.fetch_timeout.is_zero() {
            return Err(ConfigError::InvalidLimit("fetch_timeout"));
        }
        if let Some((entries, _)) = self.s.token_cache
            && entries > MAX_TOKEN_CACHE_ENTRIES
        {
            return Err(ConfigError::TooMany {
                setting: "token_cache (max_entries)",
                max: MAX_TOKEN_CACHE_ENTRIES,
            });
        }
        Ok(())
    }
}

/// Parses `s` and accepts it only if the URL policy does (https, or http
/// on a loopback host).
fn checked_url(s: &str) -> Result<Url, ConfigError> {
    acceptable_url(s).ok_or_else(|| ConfigError::InsecureUrl(shown(s)))
}

/// A configured URL as errors and `Debug` show it: without userinfo,
/// query or fragment, which may carry credentials.
fn shown(s: &str) -> String {
    Url::parse(s).map_or_else(|_| "(not a URL)".to_owned(), |u| loggable(&u))
}

/// The HTTP client could not be built.
fn client_error(e: FetchError) -> ConfigError {
    ConfigError::HttpClient(e.to_string())
}
