//! [`TestIssuer`]: a loopback authorization server for tests.
//!
//! It serves OpenID discovery and a JWKS on `127.0.0.1`, holds RSA, EC and
//! Ed25519 signing keys, mints tokens with any claims, and rotates keys on
//! demand. Use it to test your own handlers end to end:
//!
//! ```no_run
//! # async fn t() -> Result<(), Box<dyn std::error::Error>> {
//! use tower_bearer::{BearerAuthLayer, testing::TestIssuer};
//!
//! let idp = TestIssuer::start().await?;
//! let auth = BearerAuthLayer::builder().issuer(idp.issuer()).audience(idp.audience()).build()?;
//! let token = idp.token().scope("read").sign();
//! let principal = auth.validate(&token).await?;
//! assert!(principal.has_scope("read"));
//! # Ok(()) }
//! ```

/// The verified-token cache's table, for `benches/peer/caches.rs` to
/// measure beside other caches; not part of the API.
#[doc(hidden)]
pub use crate::cache::table::Table as TokenTable;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::alg::{Algorithm, Family};
use crate::clock::{Clock, SystemClock, unix_seconds};

/// A loopback OpenID provider for tests. Dropping it stops the server.
pub struct TestIssuer {
    state: Arc<State>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuer")
            .field("issuer", &self.state.issuer)
            .finish_non_exhaustive()
    }
}

struct State {
    issuer: String,
    audience: String,
    clock: Arc<dyn Clock>,
    keys: Mutex<Keys>,
    faults: Mutex<Faults>,
    jwks_fetches: AtomicUsize,
    jwks_not_modified: AtomicUsize,
    discovery_fetches: AtomicUsize,
    introspections: AtomicUsize,
    /// Introspection requests being answered now, and the most ever.
    introspections_in_flight: AtomicUsize,
    max_introspections_in_flight: AtomicUsize,
    next_id: AtomicU64,
    /// Opaque tokens minted, with their claims.
    opaque: Mutex<HashMap<String, Map<String, Value>>>,
    /// Revoked opaque tokens and `jti`s.
    revoked: Mutex<HashSet<String>>,
    /// Tenants served under `/realms/{tenant}`.
    tenants: Mutex<HashSet<String>>,
}

#[derive(Default)]
struct Faults {
    jwks: EndpointFault,
    introspection: EndpointFault,
    cache_control: Option<String>,
    /// JWKS answers carry no `ETag` (and ignore `If-None-Match`).
    no_etag: bool,
    /// How long each introspection answer takes.
    introspection_delay: Duration,
    /// The `jwks_uri` discovery names instead of this issuer's own.
    discovered_jwks_uri: Option<String>,
}

/// How an endpoint of the test issuer misbehaves; see
/// [`TestIssuer::set_jwks_fault`] and [`TestIssuer::set_introspection_fault`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointFault {
    /// Serve the keys. The default.
    #[default]
    None,
    /// Answer with this status and no body.
    Status(u16),
    /// Answer 200 with a truncated JSON document.
    InvalidJson,
    /// Answer 200 with a body of this many bytes, with `Content-Length`.
    HugeBody(usize),
    /// Answer 200 with a body of this many bytes, streamed without a length.
    HugeStream(usize),
    /// Answer 200 with exactly this body: a JWK set of the test's own,
    /// such as `{"keys":[]}`.
    Document(String),
    /// Accept the request and never answer.
    Hang,
}

#[derive(Default)]
struct Keys {
    all: Vec<SigningKey>,
    /// Index into `all` of the key new tokens are signed with.
    current: usize,
}

struct SigningKey {
    kid: String,
    alg: Algorithm,
    pair: Pair,
    published: bool,
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// Could not start a [`TestIssuer`].
#[derive(Debug)]
pub struct StartError(String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot start the test issuer: {}", self.0)
    }
}

impl std::error::Error for StartError {}

/// Options for [`TestIssuer::builder`].
pub struct TestIssuerBuilder {
    audience: String,
    alg: Algorithm,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for TestIssuerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuerBuilder")
            .field("audience", &self.audience)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl TestIssuerBuilder {
    /// The `aud` of minted tokens. Default: `test-api`.
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audience = aud.into();
        self
    }

    /// The algorithm of the first signing key. Default: RS256.
    pub fn algorithm(mut self, alg: Algorithm) -> Self {
        self.alg = alg;
        self
    }

    /// The clock for `iat`/`exp` of minted tokens. Default: system clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start(self) -> Result<TestIssuer, StartError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| StartError(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError(e.to_string()))?;
        let state = Arc::new(State {
            issuer: format!("http://{addr}"),
            audience: self.audience,
            clock: self.clock,
            keys: Mutex::new(Keys::default()),
            faults: Mutex::new(Faults::default()),
            jwks_fetches: AtomicUsize::new(0),
            jwks_not_modified: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            introspections: AtomicUsize::new(0),
            introspections_in_flight: AtomicUsize::new(0),
            max_introspections_in_flight: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            opaque: Mutex::new(HashMap::new()),
            revoked: Mutex::new(HashSet::new()),
            tenants: Mutex::new(HashSet::new()),
        });
        state.add_key(self.alg, true).map_err(StartError)?;
        let server = tokio::spawn(serve(listener, state.clone()));
        Ok(TestIssuer {
            state,
            addr,
            server,
        })
    }
}

impl TestIssuer {
    /// Starts an issuer with one RS256 key and audience `test-api`.
    pub async fn start() -> Result<Self, StartError> {
        Self::builder().start().await
    }

    /// Options: audience, first algorithm, clock.
    pub fn builder() -> TestIssuerBuilder {
        TestIssuerBuilder {
            audience: "test-api".into(),
            alg: Algorithm::RS256,
            clock: Arc::new(SystemClock),
        }
    }

    /// The issuer identifier, e.g. `http://127.0.0.1:41234`.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The audience minted tokens carry.
    pub fn audience(&self) -> &str {
        &self.state.audience
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many JWKS requests were answered 304 Not Modified (the JWKS
    /// carries an `ETag` and honours `If-None-Match`).
    pub fn jwks_not_modified(&self) -> usize {
        self.state.jwks_not_modified.load(Ordering::SeqCst)
    }

    /// Serves a tenant: the issuer [`tenant_issuer`](Self::tenant_issuer)
    /// with its own discovery document, whose `jwks_uri` is this issuer's
    /// one JWKS (as Keycloak realms would be if they shared keys). An
    /// issuer template `{issuer}/realms/{tenant}` covers every tenant.
    pub fn add_tenant(&self, tenant: &str) {
        lock(&self.state.tenants).insert(tenant.to_owned());
    }

    /// Makes every discovery document of this issuer (its tenants' too)
    /// name `uri` as its `jwks_uri`, such as another issuer's; `None`
    /// restores its own.
    pub fn set_discovered_jwks_uri(&self, uri: Option<&str>) {
        self.state.faults().discovered_jwks_uri = uri.map(str::to_owned);
    }

    /// The issuer of a tenant: `{issuer}/realms/{tenant}`.
    pub fn tenant_issuer(&self, tenant: &str) -> String {
        format!("{}/realms/{tenant}", self.state.issuer)
    }

    /// How many times a discovery document was fetched (any tenant's
    /// too, served or not).
    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    /// How many introspection requests were answered (or faulted).
    pub fn introspections(&self) -> usize {
        self.state.introspections.load(Ordering::SeqCst)
    }

    /// The introspection endpoint (`{issuer}/introspect`, also in the
    /// discovery document). It accepts the client
    /// [`INTROSPECTION_CLIENT`](Self::INTROSPECTION_CLIENT) with Basic or
    /// form credentials.
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/introspect", self.state.issuer)
    }

    /// The client id and secret the introspection endpoint accepts.
    pub const INTROSPECTION_CLIENT: (&'static str, &'static str) =
        ("test-resource-server", "test-resource-server-secret");

    /// Revokes a token: introspection answers `active: false` for it from
    /// now on. Works for opaque tokens and for JWTs (by their `jti`).
    pub fn revoke(&self, token: &str) {
        let key = self.state.opaque_or_jti(token);
        lock(&self.state.revoked).insert(key);
    }

    /// Makes the introspection endpoint misbehave.
    pub fn set_introspection_fault(&self, fault: EndpointFault) {
        self.state.faults().introspection = fault;
    }

    /// Makes the JWKS endpoint misbehave (or behave again, with
    /// [`EndpointFault::None`]).
    pub fn set_jwks_fault(&self, fault: EndpointFault) {
        self.state.faults().jwks = fault;
    }

    /// The `Cache-Control` header of JWKS answers (none by default).
    pub fn set_jwks_cache_control(&self, value: Option<&str>) {
        self.state.faults().cache_control = value.map(str::to_owned);
    }

    /// Whether JWKS answers carry an `ETag` and honour `If-None-Match`
    /// (the default), or are plain 200s every time, as some issuers send.
    pub fn set_jwks_etag(&self, on: bool) {
        self.state.faults().no_etag = !on;
    }

    /// Makes every introspection answer take this long (none by default),
    /// so that calls overlap.
    pub fn set_introspection_delay(&self, delay: Duration) {
        self.state.faults().introspection_delay = delay;
    }

    /// The most introspection requests that were being answered at once.
    pub fn max_introspections_in_flight(&self) -> usize {
        self.state
            .max_introspections_in_flight
            .load(Ordering::SeqCst)
    }

    /// The JWKS document currently served.
    pub fn jwks_json(&self) -> String {
        self.state.jwks().to_string()
    }

    /// The public JWK of key `kid`, as published (also if unpublished).
    pub fn public_jwk(&self, kid: &str) -> Option<Value> {
        self.state
            .keys()
            .all
            .iter()
            .find(|k| k.kid == kid)
            .map(public_jwk)
    }

    /// The DER SubjectPublicKeyInfo of key `kid`.
    pub fn public_key_der(&self, kid: &str) -> Option<Vec<u8>> {
        use aws_lc_rs::encoding::AsDer;
        let keys = self.state.keys();
        let key = keys.all.iter().find(|k| k.kid == kid)?;
        match &key.pair {
            Pair::Rsa(k) => k.public_key().as_der().ok().map(|d| d.as_ref().to_vec()),
            Pair::Ec(k) => k.public_key().as_der().ok().map(|d| d.as_ref().to_vec()),
            Pair::Ed(k) => k.public_key().as_der().ok().map(|d| d.as_ref().to_vec()),
        }
    }

    /// The `kid` new tokens are signed with.
    pub fn current_kid(&self) -> String {
        let keys = self.state.keys();
        keys.all[keys.current].kid.clone()
    }

    /// Adds and publishes a key for `alg` without signing with it yet;
    /// returns its `kid`.
    pub fn add_key(&self, alg: Algorithm) -> String {
        self.state.add_key(alg, false).unwrap_or_default()
    }

    /// Adds and publishes a key for `alg` and signs new tokens with it
    /// from now on; the old keys stay published. Returns the new `kid`.
    pub fn rotate(&self, alg: Algorithm) -> String {
        self.state.add_key(alg, true).unwrap_or_default()
    }

    /// Gives key `kid` new key material of the same algorithm, published
    /// under the same `kid`: what an issuer that reuses `kid`s does.
    pub fn rekey(&self, kid: &str) {
        let Some(alg) = self
            .state
            .keys()
            .all
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| k.alg)
        else {
            return;
        };
        let Ok(pair) = new_pair(alg) else { return };
        let mut keys = self.state.keys();
        if let Some(k) = keys.all.iter_mut().find(|k| k.kid == kid) {
            k.pair = pair;
        }
    }

    /// Stops publishing key `kid` (it can still sign, to test removal).
    pub fn unpublish(&self, kid: &str) {
        let mut keys = self.state.keys();
        for k in keys.all.iter_mut().filter(|k| k.kid == kid) {
            k.published = false;
        }
    }

    /// Starts a token with the default claims: `iss`, `aud`, `sub`
    /// (`test-user`), `client_id` (`test-client`), `iat`, `exp` (in 5
    /// minutes) and a fresh `jti`, signed with the current key.
    pub fn token(&self) -> TokenBuilder<'_> {
        let now = unix_seconds(self.state.clock.now());
        let id = self.state.next_id.fetch_add(1, Ordering::SeqCst);
        let claims = json!({
            "iss": self.state.issuer,
            "aud": self.state.audience,
            "sub": "test-user",
            "client_id": "test-client",
            "iat": now,
            "exp": now + 300,
            "jti": format!("jti-{id}"),
        });
        let (kid, alg) = {
            let keys = self.state.keys();
            let k = &keys.all[keys.current];
            (k.kid.clone(), k.alg)
        };
        let header = json!({ "alg": alg.as_str(), "kid": kid, "typ": "at+jwt" });
        TokenBuilder {
            issuer: self,
            header: as_object(header),
            claims: as_object(claims),
            kid,
        }
    }

    /// Signs `header.claims` with key `kid`, exactly as given: for tokens
    /// no well-behaved issuer would mint. The signature uses the header's
    /// `alg` when it fits the key's type, else the key's own algorithm.
    pub fn sign_raw(&self, header: &Value, claims: &Value, kid: &str) -> String {
        self.sign_raw_bytes(header, claims.to_string().as_bytes(), kid)
    }

    /// Like [`sign_raw`](Self::sign_raw), with the payload given as exact
    /// bytes (for payloads no JSON serialiser would produce).
    pub fn sign_raw_bytes(&self, header: &Value, payload: &[u8], kid: &str) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let keys = self.state.keys();
        let Some(key) = keys.all.iter().find(|k| k.kid == kid) else {
            return format!("{input}.");
        };
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(Algorithm::from_name)
            .filter(|a| a.family() == key.alg.family())
            .unwrap_or(key.alg);
        let sig = sign(&key.pair, alg, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The setters a JWS being made has: any claim, no claim, any header
/// parameter (for `TokenBuilder` and `ProofBuilder`).
macro_rules! jws_setters {
    () => {
        /// Sets any claim.
        pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
            self.claims.insert(name.into(), value.into());
            self
        }

        /// Removes a claim.
        pub fn without(mut self, name: &str) -> Self {
            self.claims.remove(name);
            self
        }

        /// Sets any header parameter.
        pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
            self.header.insert(name.into(), value.into());
            self
        }
    };
}

/// A token being minted by [`TestIssuer::token`].
#[derive(Debug)]
pub struct TokenBuilder<'a> {
    issuer: &'a TestIssuer,
    header: Map<String, Value>,
    claims: Map<String, Value>,
    kid: String,
}

impl TokenBuilder<'_> {
    /// Sets `scope` (space-separated).
    pub fn scope(self, scope: &str) -> Self {
        self.claim("scope", scope)
    }

    /// Sets `iss` to a tenant's issuer (see [`TestIssuer::add_tenant`]).
    pub fn tenant(self, tenant: &str) -> Self {
        let iss = self.issuer.tenant_issuer(tenant);
        self.claim("iss", iss)
    }

    /// Binds the token to a DPoP key: `cnf.jkt` is its thumbprint
    /// (RFC 9449 §6.1).
    pub fn bound_to(self, key: &DpopKey) -> Self {
        self.claim("cnf", json!({ "jkt": key.thumbprint() }))
    }

    /// Binds the token to a TLS client certificate: `cnf["x5t#S256"]` is
    /// its thumbprint (RFC 8705 §3.1).
    pub fn bound_to_certificate(self, cert: &crate::ClientCertificate) -> Self {
        self.claim("cnf", json!({ "x5t#S256": cert.thumbprint() }))
    }

    jws_setters!();

    /// Sets `exp` to `secs` seconds from now (negative: in the past).
    pub fn expires_in(self, secs: i64) -> Self {
        let now = unix_seconds(self.issuer.state.clock.now());
        self.claim("exp", now + secs)
    }

    /// Signs with key `kid` (and its algorithm) instead of the current key.
    pub fn signed_by(mut self, kid: &str) -> Self {
        let alg = self
            .issuer
            .state
            .keys()
            .all
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| k.alg);
        if let Some(alg) = alg {
            self.header.insert("alg".into(), alg.as_str().into());
        }
        self.header.insert("kid".into(), kid.into());
        self.kid = kid.to_owned();
        self
    }

    /// An opaque token (a random string) carrying these claims, which the
    /// issuer's introspection endpoint reports; the header is ignored.
    pub fn opaque(self) -> String {
        let mut bytes = [0u8; 24];
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        lock(&self.issuer.state.opaque).insert(token.clone(), self.claims);
        token
    }

    /// The compact JWS.
    pub fn sign(self) -> String {
        self.issuer.sign_raw(
            &Value::Object(self.header),
            &Value::Object(self.claims),
            &self.kid,
        )
    }
}

/// A DPoP client's key pair, for tests: it makes proofs (RFC 9449 §4)
/// and tokens are bound to it with [`TokenBuilder::bound_to`].
pub struct DpopKey {
    alg: Algorithm,
    pair: Pair,
    jwk: Value,
    thumbprint: String,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &self.alg)
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A new key pair for `alg` (asymmetric).
    pub fn generate(alg: Algorithm) -> Result<Self, StartError> {
        let pair = new_pair(alg).map_err(StartError)?;
        let jwk = pair_jwk(&pair);
        let thumbprint = match &jwk {
            Value::Object(m) => crate::dpop::thumbprint(m),
            _ => None,
        }
        .ok_or_else(|| StartError("no thumbprint for this key".into()))?;
        Ok(Self {
            alg,
            pair,
            jwk,
            thumbprint,
        })
    }

    /// The RFC 7638 thumbprint of its public key: what `cnf.jkt` names.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Its public key, as the proofs' `jwk` header carries it.
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// A proof for a request with `method` to `htu` (without query),
    /// carrying `access_token`'s hash, made now: change anything before
    /// [`sign`](ProofBuilder::sign).
    pub fn proof(&self, method: &str, htu: &str, access_token: &str) -> ProofBuilder<'_> {
        let mut jti = [0u8; 16];
        let _ = aws_lc_rs::rand::fill(&mut jti);
        let ath = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            access_token.as_bytes(),
        ));
        let header = json!({ "typ": "dpop+jwt", "alg": self.alg.as_str(), "jwk": self.jwk });
        let claims = json!({
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "htm": method,
            "htu": htu,
            "iat": unix_seconds(SystemClock.now()),
            "ath": ath,
        });
        ProofBuilder {
            key: self,
            header: as_object(header),
            claims: as_object(claims),
        }
    }
}

/// A DPoP proof being made by [`DpopKey::proof`].
#[derive(Debug)]
pub struct ProofBuilder<'a> {
    key: &'a DpopKey,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl ProofBuilder<'_> {
    /// Sets `iat`, seconds since the Unix epoch (for a manual clock).
    pub fn issued_at(self, iat: i64) -> Self {
        self.claim("iat", iat)
    }

    /// Sets the server's nonce.
    pub fn nonce(self, nonce: &str) -> Self {
        self.claim("nonce", nonce)
    }

    jws_setters!();

    /// The compact JWS, signed with the key.
    pub fn sign(self) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(Value::Object(self.header).to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(self.claims).to_string())
        );
        let sig = sign(&self.key.pair, self.key.alg, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

impl State {
    fn keys(&self) -> MutexGuard<'_, Keys> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn discovered_jwks_uri(&self) -> String {
        self.faults()
            .discovered_jwks_uri
            .clone()
            .unwrap_or_else(|| format!("{}/jwks", self.issuer))
    }

    fn add_key(&self, alg: Algorithm, make_current: bool) -> Result<String, String> {
        let pair = new_pair(alg)?;
        let mut keys = self.keys();
        let kid = format!("key-{}", keys.all.len() + 1);
        keys.all.push(SigningKey {
            kid: kid.clone(),
            alg,
            pair,
            published: true,
        });
        if make_current {
            keys.current = keys.all.len() - 1;
        }
        Ok(kid)
    }

    fn jwks(&self) -> Value {
        let keys = self.keys();
        let list: Vec<Value> = keys
            .all
            .iter()
            .filter(|k| k.published)
            .map(public_jwk)
            .collect();
        json!({ "keys": list })
    }
}

/// A fresh key pair for `alg`.
fn new_pair(alg: Algorithm) -> Result<Pair, String> {
    Ok(match alg.family() {
        Family::Rsa => {
            Pair::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| e.to_string())?)
        }
        Family::P256 => Pair::Ec(
            EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|e| e.to_string())?,
        ),
        Family::P384 => Pair::Ec(
            EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING)
                .map_err(|e| e.to_string())?,
        ),
        Family::Ed25519 => Pair::Ed(Ed25519KeyPair::generate().map_err(|e| e.to_string())?),
        Family::Hmac => return Err("the test issuer signs with asymmetric keys only".into()),
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl State {
    /// What revocation is keyed by: the opaque token, or a JWT's `jti`.
    fn opaque_or_jti(&self, token: &str) -> String {
        if lock(&self.opaque).contains_key(token) {
            return token.to_owned();
        }
        jwt_claims(token)
            .and_then(|c| {
                c.get("jti")
                    .and_then(Value::as_str)
                    .map(|j| format!("jti:{j}"))
            })
            .unwrap_or_else(|| token.to_owned())
    }

    /// The RFC 7662 answer for `token`.
    fn introspect(&self, token: &str) -> Value {
        let claims = lock(&self.opaque)
            .get(token)
            .cloned()
            .or_else(|| jwt_claims(token));
        let revoked = lock(&self.revoked).contains(&self.opaque_or_jti(token));
        let now = unix_seconds(self.clock.now());
        match claims {
            Some(claims)
                if !revoked
                    && claims
                        .get("exp")
                        .and_then(Value::as_i64)
                        .is_none_or(|exp| now < exp) =>
            {
                let mut answer = claims;
                answer.insert("active".into(), true.into());
                answer.entry("token_type").or_insert("Bearer".into());
                Value::Object(answer)
            }
            _ => json!({ "active": false }),
        }
    }
}

/// The claims of a JWT this issuer could have minted (signature unchecked:
/// the issuer's own endpoint, for tests).
fn jwt_claims(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The client credentials of an introspection request: Basic, or form.
fn client_credentials(
    req: &Request<()>,
    form: &HashMap<String, String>,
) -> Option<(String, String)> {
    if let Some(basic) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let dec = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return Some((dec(id)?, dec(secret)?));
    }
    Some((
        form.get("client_id")?.clone(),
        form.get("client_secret")?.clone(),
    ))
}

fn as_object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn public_jwk(k: &SigningKey) -> Value {
    let mut jwk = pair_jwk(&k.pair);
    if let Value::Object(m) = &mut jwk {
        m.insert("kid".into(), k.kid.clone().into());
        m.insert("use".into(), "sig".into());
        m.insert("alg".into(), k.alg.as_str().into());
    }
    jwk
}

/// The public key of `pair` as a JWK, with only the members of its type.
fn pair_jwk(pair: &Pair) -> Value {
    match pair {
        Pair::Rsa(pair) => {
            let public = pair.public_key();
            json!({
                "kty": "RSA",
                "n": b64(public.modulus().big_endian_without_leading_zero()),
                "e": b64(public.exponent().big_endian_without_leading_zero()),
            })
        }
        Pair::Ec(pair) => {
            let point = pair.public_key().as_ref();
            let len = (point.len() - 1) / 2;
            let crv = if len == 32 { "P-256" } else { "P-384" };
            json!({
                "kty": "EC",
                "crv": crv,
                "x": b64(&point[1..1 + len]),
                "y": b64(&point[1 + len..]),
            })
        }
        Pair::Ed(pair) => {
            json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()) })
        }
    }
}

fn sign(pair: &Pair, alg: Algorithm, msg: &[u8]) -> Vec<u8> {
    let rng = SystemRandom::new();
    match pair {
        Pair::Rsa(k) => {
            let padding: &'static dyn signature::RsaEncoding = match alg {
                Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                Algorithm::PS384 => &signature::RSA_PSS_SHA384,
                Algorithm::PS512 => &signature::RSA_PSS_SHA512,
                _ => &signature::RSA_PKCS1_SHA256,
            };
            let mut sig = vec![0; k.public_modulus_len()];
            match k.sign(padding, &rng, msg, &mut sig) {
                Ok(()) => sig,
                Err(_) => Vec::new(),
            }
        }
        Pair::Ec(k) => k
            .sign(&rng, msg)
            .map(|s| s.as_ref().to_vec())
            .unwrap_or_default(),
        Pair::Ed(k) => k.sign(msg).as_ref().to_vec(),
    }
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    use http_body_util::BodyExt as _;
    http_body_util::Full::new(bytes.into()).boxed()
}

fn respond(status: StatusCode, body: Body) -> Response<Body> {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

async fn route(state: &State, req: Request<Incoming>) -> Response<Body> {
    if let Some(tenant) = req
        .uri()
        .path()
        .strip_prefix("/realms/")
        .and_then(|p| p.strip_suffix("/.well-known/openid-configuration"))
    {
        state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
        if !lock(&state.tenants).contains(tenant) {
            return respond(StatusCode::NOT_FOUND, full(""));
        }
        let doc = json!({
            "issuer": format!("{}/realms/{tenant}", state.issuer),
            "jwks_uri": state.discovered_jwks_uri(),
        });
        return respond(StatusCode::OK, full(doc.to_string()));
    }
    match req.uri().path() {
        "/introspect" => {
            state.introspections.fetch_add(1, Ordering::SeqCst);
            let _in_flight = InFlight::enter(state);
            introspect(state, req).await
        }
        "/.well-known/openid-configuration" => {
            state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            let doc = json!({
                "issuer": state.issuer,
                "jwks_uri": state.discovered_jwks_uri(),
                "introspection_endpoint": format!("{}/introspect", state.issuer),
                "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "ES384", "EdDSA"],
            });
            respond(StatusCode::OK, full(doc.to_string()))
        }
        "/jwks" => {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let (fault, cache_control, no_etag) = {
                let f = state.faults();
                (f.jwks.clone(), f.cache_control.clone(), f.no_etag)
            };
            if let Some(res) = fault_response(&fault).await {
                return res;
            }
            let body = state.jwks().to_string();
            let etag = format!("\"{:016x}\"", fnv1a(body.as_bytes()));
            let mut res = if !no_etag
                && req
                    .headers()
                    .get(header::IF_NONE_MATCH)
                    .is_some_and(|v| v.as_bytes() == etag.as_bytes())
            {
                state.jwks_not_modified.fetch_add(1, Ordering::SeqCst);
                respond(StatusCode::NOT_MODIFIED, full(""))
            } else {
                respond(StatusCode::OK, full(body))
            };
            if let Ok(v) = http::HeaderValue::from_str(&etag)
                && !no_etag
            {
                res.headers_mut().insert(header::ETAG, v);
            }
            if let Some(cc) =
                cache_control.and_then(|cc: String| http::HeaderValue::from_str(&cc).ok())
            {
                res.headers_mut().insert(header::CACHE_CONTROL, cc);
            }
            res
        }
        _ => respond(StatusCode::NOT_FOUND, full("")),
    }
}

/// Counts an introspection request as in flight until it is answered or
/// its connection dropped.
struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> Self {
        let now = state
            .introspections_in_flight
            .fetch_add(1, Ordering::SeqCst)
            + 1;
        state
            .max_introspections_in_flight
            .fetch_max(now, Ordering::SeqCst);
        Self(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .introspections_in_flight
            .fetch_sub(1, Ordering::SeqCst);
    }
}

/// The introspection endpoint: client authentication, then the answer.
async fn introspect(state: &State, req: Request<Incoming>) -> Response<Body> {
    let (fault, delay) = {
        let f = state.faults();
        (f.introspection.clone(), f.introspection_delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(res) = fault_response(&fault).await {
        return res;
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = http_body_util::BodyExt::collect(body).await else {
        return respond(StatusCode::BAD_REQUEST, full(""));
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body.to_bytes())
        .into_owned()
        .collect();
    let req = Request::from_parts(parts, ());
    let (id, secret) = TestIssuer::INTROSPECTION_CLIENT;
    if client_credentials(&req, &form) != Some((id.to_owned(), secret.to_owned())) {
        return respond(
            StatusCode::UNAUTHORIZED,
            full(r#"{"error":"invalid_client"}"#),
        );
    }
    let Some(token) = form.get("token") else {
        return respond(
            StatusCode::BAD_REQUEST,
            full(r#"{"error":"invalid_request"}"#),
        );
    };
    respond(StatusCode::OK, full(state.introspect(token).to_string()))
}

/// The misbehaving answer for `fault`, or `None` to answer normally.
async fn fault_response(fault: &EndpointFault) -> Option<Response<Body>> {
    Some(match fault {
        EndpointFault::None => return None,
        EndpointFault::Status(code) => respond(
            StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            full(""),
        ),
        EndpointFault::InvalidJson => respond(StatusCode::OK, full("{\"keys\": [")),
        EndpointFault::HugeBody(len) => respond(StatusCode::OK, full(vec![b' '; *len])),
        EndpointFault::HugeStream(len) => respond(StatusCode::OK, Body::new(Chunks { left: *len })),
        EndpointFault::Document(body) => respond(StatusCode::OK, full(body.clone())),
        EndpointFault::Hang => std::future::pending().await,
    })
}

/// A body of `left` bytes sent in 64 KiB frames without a length, so the
/// client only learns its size by reading it.
struct Chunks {
    left: usize,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let n = self.left.min(64 * 1024);
        self.left -= n;
        std::task::Poll::Ready(
            (n > 0).then(|| Ok(http_body::Frame::data(Bytes::from(vec![b' '; n])))),
        )
    }
}

/// A stable fingerprint of the JWKS for its `ETag`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
