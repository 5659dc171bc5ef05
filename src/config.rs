//! The validated configuration, every default, and the errors of a
//! configuration. What [`Builder::build`](crate::Builder::build) produces
//! and the pipeline reads; it holds no runtime state (counters, caches and
//! key stores live with the validator in `auth`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;

use crate::alg::Algorithm;
use crate::clock::Clock;
use crate::error::AuthError;
use crate::metadata::ResourceMetadata;

/// Leeway applied to `exp` and `nbf`: 60 s, as Envoy and Spring use.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Minimum time between two refetches triggered by unknown `kid`s: 30 s.
pub const DEFAULT_REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
/// Timeout for one discovery or JWKS fetch: 5 s.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Freshness of a JWK set whose response has no `max-age`: 10 minutes.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// `max-age` is clamped to at least this: 60 s.
pub const MIN_JWKS_MAX_AGE: Duration = Duration::from_secs(60);
/// `max-age` is clamped to at most this: 24 h.
pub const MAX_JWKS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long past its expiry a key set is still used while the issuer
/// cannot be reached: 24 h.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// How often the discovery document is fetched again: 24 h.
pub const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Entries of the verified-token cache: 10 000.
pub const DEFAULT_TOKEN_CACHE_ENTRIES: u64 = 10_000;
/// Longest a verified token is served from the cache (never past its
/// `exp`): 5 min.
pub const DEFAULT_TOKEN_CACHE_TTL: Duration = Duration::from_secs(300);
/// Longest an introspection answer is reused for opaque tokens (never past
/// the token's `exp`): 60 s.
pub const DEFAULT_INTROSPECTION_MAX_AGE: Duration = Duration::from_secs(60);
/// Longest an introspection answer is reused on `require_active` routes: 5 s.
pub const DEFAULT_ACTIVE_CHECK_MAX_AGE: Duration = Duration::from_secs(5);

/// Tenants each issuer template holds at once, and new tenants whose keys
/// it fetches per refetch cooldown: 1 000.
pub const DEFAULT_MAX_TENANTS: u64 = 1_000;

/// Calls to the introspection endpoint in flight at once: 64.
pub const DEFAULT_INTROSPECTION_CONCURRENCY: usize = 64;

/// The largest [`Builder::leeway`](crate::Builder::leeway): 10 min. A longer one would keep
/// expired tokens alive for that long (and `Duration::MAX` would switch the
/// `exp` check off).
pub const MAX_LEEWAY: Duration = Duration::from_secs(600);
/// The largest [`Builder::fetch_timeout`](crate::Builder::fetch_timeout): 5 min.
pub const MAX_FETCH_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest value of every lifetime setting (token cache TTL,
/// introspection cache ages, `max_stale`, the `jwks_max_age` bounds,
/// `refetch_cooldown`): 365 days. Longer ones would overflow the clock's
/// arithmetic or the caches' limits.
pub const MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// The largest `max_entries` of
/// [`Builder::token_cache`](crate::Builder::token_cache): 16,777,216. The
/// cache's table is allocated whole when the validator is built, 32 bytes
/// an entry (512 MiB at this bound), before any token is in it.
pub const MAX_TOKEN_CACHE_ENTRIES: u64 = 1 << 24;

/// How many claims `require_claims` may name (they are tracked in a bitmask).
pub(crate) const MAX_REQUIRED_CLAIMS: usize = 64;

/// Size and shape limits, checked before (or while) anything is parsed.
///
/// Change one with struct update syntax:
/// `Limits { max_token_bytes: 8 * 1024, ..Limits::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted token, in bytes: 16 KiB. Checked before decoding.
    pub max_token_bytes: usize,
    /// Deepest JSON nesting in the header or claims: 16.
    pub max_json_depth: usize,
    /// Longest accepted `kid`, in bytes: 256.
    pub max_kid_bytes: usize,
    /// Most members in the JOSE header: 32 (issuers send a handful). Each
    /// member costs more to parse than its bytes, so without a bound a
    /// header of short members would cost several times its size.
    pub max_header_members: usize,
    /// Most entries in an `aud` array: 32.
    pub max_audiences: usize,
    /// Most scopes a token may carry: 256.
    pub max_scopes: usize,
    /// Most roles read from a token's role claims, all paths together:
    /// 256.
    pub max_roles: usize,
    /// Longest tenant in an issuer template's `{tenant}` part, in bytes:
    /// 128. A longer one is an unknown issuer.
    pub max_tenant_bytes: usize,
    /// Most keys in a JWK set: 100; a larger set is refused whole.
    pub max_jwks_keys: usize,
    /// Largest discovery or JWKS response body: 256 KiB.
    pub max_document_bytes: usize,
    /// Smallest RSA modulus accepted in a JWK: 2048 bits.
    pub min_rsa_bits: usize,
    /// Largest RSA modulus accepted in a JWK: 8192 bits, so a hostile key
    /// cannot make each verification a CPU burden.
    pub max_rsa_bits: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_token_bytes: 16 * 1024,
            max_json_depth: 16,
            max_kid_bytes: 256,
            max_header_members: 32,
            max_audiences: 32,
            max_scopes: 256,
            max_roles: 256,
            max_tenant_bytes: 128,
            max_jwks_keys: 100,
            max_document_bytes: 256 * 1024,
            min_rsa_bits: 2048,
            max_rsa_bits: 8192,
        }
    }
}

/// Which `typ` header values are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokenTypePolicy {
    /// `at+jwt`, `application/at+jwt`, `JWT`, or no `typ` at all; anything
    /// else (such as `dpop+jwt` or `id_token+jwt`) is refused. The default.
    #[default]
    AccessTokenOrJwt,
    /// RFC 9068 strictly: `typ` must be `at+jwt` (or `application/at+jwt`)
    /// and the claims `iss`, `exp`, `aud`, `sub`, `client_id`, `iat` and
    /// `jti` must be present.
    Rfc9068,
}

/// Rewrites the default error response; see [`Builder::on_error`](crate::Builder::on_error).
pub type ErrorResponder = Arc<dyn Fn(&AuthError, Response<Bytes>) -> Response<Bytes> + Send + Sync>;

/// The validated configuration shared by every clone of the layer.
/// What applies to every issuer; each issuer's own claim rules are
/// [`jwt::Rules`](crate::jwt::Rules).
pub(crate) struct Config {
    /// Every algorithm some issuer accepts: a token with another `alg` is
    /// refused before anything else is read. The chosen issuer's own list
    /// is checked once the issuer is known.
    pub algorithms: Box<[Algorithm]>,
    pub typ: TokenTypePolicy,
    pub required_claims: Box<[Arc<str>]>,
    pub scope_claims: Box<[Box<str>]>,
    pub limits: Limits,
    pub clock: Arc<dyn Clock>,
    pub realm: Option<Box<str>>,
    pub cookie: Option<Box<str>>,
    pub responder: Option<ErrorResponder>,
    /// The protected resource metadata, whose URL challenges name.
    pub metadata: Option<ResourceMetadata>,
    /// Record the subject on validation spans (`enduser.id`).
    pub trace_subject: bool,
}
