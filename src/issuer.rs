//! Trusted issuers: the settings of each, as given ([`TrustedIssuer`]),
//! and at run time the issuer a token is checked against
//! ([`Issuers::choose`]). The token's `iss` is read unverified only to
//! choose among the configured issuers; the token is then verified with
//! that issuer's keys alone, and its claims, `iss` among them, with that
//! issuer's rules.
//!
//! An issuer template (`https://kc.example.com/realms/{tenant}`) makes a
//! concrete issuer per tenant on first use, held in a bounded cache; the
//! first discoveries of the issuers it makes share one [`FetchBudget`].
//!
//! [`FetchBudget`]: crate::jwks::FetchBudget

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::alg::Algorithm;
use crate::error::Refusal;
use crate::introspect::{ClientId, ClientSecret, Introspector};
use crate::jwks::{KeyHealth, KeyStore};
use crate::jwt::claims::{ClaimPath, Principal, unverified_iss};
use crate::jwt::{ClaimsValidator, Parsed, Rules};

/// The tenant part of an issuer template.
pub(crate) const TENANT: &str = "{tenant}";

/// One trusted issuer and the settings that differ for it, for
/// [`Builder::trusted_issuer`](crate::Builder::trusted_issuer). Every
/// setting not given here is the builder's, which applies to all issuers.
///
/// The issuer may be a template with one `{tenant}` part, for IdPs where
/// every tenant (realm, directory) is its own issuer:
/// `https://login.microsoftonline.com/{tenant}/v2.0`. The tenant of a
/// token's `iss` must then be one path segment of at most
/// [`Limits::max_tenant_bytes`](crate::Limits::max_tenant_bytes) letters,
/// digits, `-`, `_`, `.` or `~` (never `.` or `..`), and, when
/// [`tenants`](Self::tenants) is given, one of them.
///
/// ```
/// use tower_bearer::{BearerAuthLayer, ClaimPath, TrustedIssuer};
/// let auth = BearerAuthLayer::builder()
///     .audience("orders-api")
///     .trusted_issuer(TrustedIssuer::keycloak_realm("https://kc.example.com", "acme"))
///     .trusted_issuer(
///         TrustedIssuer::new("https://old-idp.example.com")
///             .audience("https://orders.example.com")
///             .jwks_uri("https://old-idp.example.com/keys"),
///     )
///     .build()?;
/// # let _ = auth;
/// # Ok::<(), tower_bearer::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct TrustedIssuer {
    pub(crate) iss: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) algorithms: Option<Vec<Algorithm>>,
    pub(crate) leeway: Option<Duration>,
    pub(crate) keys: Option<KeysFrom>,
    /// `Some(None)`: explicitly without introspection.
    pub(crate) introspection: Option<Option<(ClientId, ClientSecret)>>,
    pub(crate) introspection_endpoint: Option<String>,
    pub(crate) opaque_tokens: Option<bool>,
    pub(crate) role_claims: Option<Vec<ClaimPath>>,
    pub(crate) validators: Vec<ClaimsValidator>,
    pub(crate) allowed_clients: Option<Vec<String>>,
    pub(crate) tenants: Option<Vec<String>>,
    pub(crate) tenant_claim: Option<String>,
}

/// Where an issuer's keys come from when not by discovery.
#[derive(Clone)]
pub(crate) enum KeysFrom {
    JwksUri(String),
    Json(Vec<u8>),
}

impl std::fmt::Debug for TrustedIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedIssuer")
            .field("issuer", &self.iss)
            .field("audiences", &self.audiences)
            .field("tenants", &self.tenants)
            .finish_non_exhaustive()
    }
}

impl TrustedIssuer {
    /// An issuer, or an issuer template with one `{tenant}` part; `iss`
    /// must equal it exactly (the template with its tenant filled in).
    /// Keys are found by its discovery document unless
    /// [`jwks_uri`](Self::jwks_uri) or [`jwks_json`](Self::jwks_json) is
    /// given.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            iss: issuer.into(),
            audiences: Vec::new(),
            algorithms: None,
            leeway: None,
            keys: None,
            introspection: None,
            introspection_endpoint: None,
            opaque_tokens: None,
            role_claims: None,
            validators: Vec::new(),
            allowed_clients: None,
            tenants: None,
            tenant_claim: None,
        }
    }

    /// One Keycloak realm: issuer `{base}/realms/{realm}`, roles from
    /// `realm_access.roles`.
    pub fn keycloak_realm(base: &str, realm: &str) -> Self {
        Self::new(format!("{}/realms/{realm}", base.trim_end_matches('/')))
            .role_claims([ClaimPath::keycloak_realm_roles()])
    }

    /// Every realm of one Keycloak (or those [`tenants`](Self::tenants)
    /// names): the template `{base}/realms/{tenant}`, each realm found by
    /// its own discovery document, roles from `realm_access.roles`.
    pub fn keycloak_realms(base: &str) -> Self {
        Self::keycloak_realm(base, TENANT)
    }

    /// A multi-tenant Microsoft Entra ID application (v2.0 tokens): the
    /// template `https://login.microsoftonline.com/{tenant}/v2.0`, whose
    /// tokens must carry a `tid` claim equal to the tenant of `iss`
    /// (Microsoft's own issuer validation). Every tenant shares the one
    /// common key set, `https://login.microsoftonline.com/common/discovery/v2.0/keys`.
    /// Roles from `roles`. Limit the tenants with
    /// [`tenants`](Self::tenants).
    pub fn entra() -> Self {
        Self::new(format!("https://login.microsoftonline.com/{TENANT}/v2.0"))
            .jwks_uri("https://login.microsoftonline.com/common/discovery/v2.0/keys")
            .tenant_claim("tid")
            .role_claims([ClaimPath::entra_roles()])
    }

    /// An Auth0 tenant: issuer `https://{domain}/` (with the trailing
    /// slash Auth0 puts in `iss`), roles from `permissions` (RBAC with
    /// "Add Permissions in the Access Token"). For roles in a namespaced
    /// claim, set [`role_claims`](Self::role_claims) to
    /// `ClaimPath::claim("https://example.com/roles")`.
    pub fn auth0(domain: &str) -> Self {
        Self::new(format!("https://{}/", domain.trim_end_matches('/')))
            .role_claims([ClaimPath::auth0_permissions()])
    }

    /// An audience of this issuer's tokens, instead of the builder's. May
    /// be called several times.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The algorithm allow-list of this issuer, instead of the builder's.
    pub fn algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algs.into_iter().collect());
        self
    }

    /// The leeway on `exp`, `nbf` and `iat` of this issuer's tokens,
    /// instead of the builder's; at most
    /// [`MAX_LEEWAY`](crate::MAX_LEEWAY).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// Fetch this issuer's keys from this JWKS URL instead of discovery.
    /// Default: discovery. Issuers (and a template's tenants) with the same
    /// URL, given here or named by their discovery, and the same
    /// algorithms share one key store: one fetch, one set.
    pub fn jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.keys = Some(KeysFrom::JwksUri(uri.into()));
        self
    }

    /// Use this JWKS document for this issuer and never fetch its keys.
    pub fn jwks_json(mut self, json: impl Into<Vec<u8>>) -> Self {
        self.keys = Some(KeysFrom::Json(json.into()));
        self
    }

    /// Introspection with these client credentials for this issuer,
    /// instead of the builder's. Default: the builder's, if any.
    ///
    /// On its own this introspects the issuer's opaque tokens. Routes
    /// that need `require_active` need a validator built with
    /// [`Builder::introspection`](crate::Builder::introspection) (it is in
    /// the validator's type); use [`without_introspection`](Self::without_introspection)
    /// for the issuers that should not introspect.
    pub fn introspection(mut self, client_id: ClientId, client_secret: ClientSecret) -> Self {
        self.introspection = Some(Some((client_id, client_secret)));
        self
    }

    /// This issuer's introspection endpoint, instead of its discovery
    /// document's `introspection_endpoint`.
    pub fn introspection_endpoint(mut self, url: impl Into<String>) -> Self {
        self.introspection_endpoint = Some(url.into());
        self
    }

    /// No introspection for this issuer, even when the builder has it:
    /// `require_active` routes then refuse its tokens (`invalid_token`).
    pub fn without_introspection(mut self) -> Self {
        self.introspection = Some(None);
        self
    }

    /// Whether opaque tokens (which name no issuer) are introspected at
    /// this issuer. Default: yes when it is the only issuer with
    /// introspection. With several, say which: opaque tokens go to those
    /// that say yes, in the order they were added, and the first that
    /// calls a token active accepts it. Several introspecting issuers and
    /// none chosen is a [`ConfigError`](crate::ConfigError). Not for
    /// templates: an opaque token names no tenant.
    pub fn opaque_tokens(mut self, yes: bool) -> Self {
        self.opaque_tokens = Some(yes);
        self
    }

    /// Where this issuer's tokens carry roles, instead of the builder's
    /// [`role_claims`](crate::Builder::role_claims).
    pub fn role_claims(mut self, paths: impl IntoIterator<Item = ClaimPath>) -> Self {
        self.role_claims = Some(paths.into_iter().collect());
        self
    }

    /// A rule this issuer's tokens must also meet, after the builder's
    /// [`claims_validator`](crate::Builder::claims_validator)s.
    pub fn claims_validator<F>(mut self, rule: F) -> Self
    where
        F: Fn(&Principal) -> Result<(), Refusal> + Send + Sync + 'static,
    {
        self.validators.push(Arc::new(rule));
        self
    }

    /// The clients (`client_id`, or `azp` without it) whose tokens from
    /// this issuer are accepted, instead of the builder's
    /// [`allowed_clients`](crate::Builder::allowed_clients).
    pub fn allowed_clients<I, S>(mut self, clients: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_clients = Some(clients.into_iter().map(Into::into).collect());
        self
    }

    /// For a template: the tenants accepted. Default: any tenant, within
    /// the bounds of [`Builder::max_tenants`](crate::Builder::max_tenants).
    pub fn tenants<I, S>(mut self, tenants: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tenants = Some(tenants.into_iter().map(Into::into).collect());
        self
    }

    /// For a template: a claim that must be present and equal the tenant
    /// of `iss` (Entra's `tid`); otherwise the token is refused as from a
    /// wrong issuer. Default: none.
    pub fn tenant_claim(mut self, claim: impl Into<String>) -> Self {
        self.tenant_claim = Some(claim.into());
        self
    }

    pub(crate) fn is_template(&self) -> bool {
        self.iss.contains(TENANT)
    }
}

/// The state of one issuer's keys, from
/// [`BearerAuthLayer::issuers_key_health`](crate::BearerAuthLayer::issuers_key_health).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuerHealth {
    /// The issuer (a template's with the tenant filled in).
    pub issuer: String,
    /// The tenant, for an issuer a template made.
    pub tenant: Option<String>,
    /// Its keys.
    pub keys: KeyHealth,
}

/// One trusted issuer at run time: its rules, its keys, and its
/// introspection endpoint.
pub(crate) struct Issuer {
    pub(crate) rules: Rules,
    pub(crate) keys: Arc<KeyStore>,
    pub(crate) introspector: Option<Arc<Introspector>>,
    /// The tenant, when a template made it.
    pub(crate) tenant: Option<Box<str>>,
    /// Its index among the trusted issuers, from 1, for metrics and
    /// spans: a template's tenants share the template's.
    pub(crate) label: u16,
}

impl Issuer {
    fn health(&self) -> IssuerHealth {
        IssuerHealth {
            issuer: self.rules.iss.as_deref().unwrap_or_default().to_owned(),
            tenant: self.tenant.as_deref().map(str::to_owned),
            keys: self.keys.health().borrow().clone(),
        }
    }
}

/// Makes the issuer of one tenant of a template: from the tenant and the
/// concrete issuer. `None` when that issuer cannot be made (its URL is
/// not acceptable).
pub(crate) type MakeIssuer = Box<dyn Fn(&str, &str) -> Option<Issuer> + Send + Sync>;

/// An issuer template and the issuers it made.
pub(crate) struct Template {
    prefix: Box<str>,
    suffix: Box<str>,
    tenants: Option<HashSet<Box<str>>>,
    max_tenant_bytes: usize,
    known: moka::sync::Cache<String, Arc<Issuer>>,
    make: MakeIssuer,
    /// The key store all its tenants share, when its JWKS URL is given.
    shared_keys: Option<Arc<KeyStore>>,
}

impl Template {
    pub(crate) fn new(
        pattern: &str,
        tenants: Option<Vec<String>>,
        max_tenant_bytes: usize,
        max_tenants: u64,
        make: MakeIssuer,
        shared_keys: Option<Arc<KeyStore>>,
    ) -> Self {
        let (prefix, suffix) = pattern.split_once(TENANT).unwrap_or((pattern, ""));
        Self {
            prefix: prefix.into(),
            suffix: suffix.into(),
            tenants: tenants.map(|t| t.into_iter().map(Box::from).collect()),
            max_tenant_bytes,
            known: moka::sync::Cache::new(max_tenants),
            make,
            shared_keys,
        }
    }

    /// The issuer of `iss`, if it is this template with an acceptable
    /// tenant: the one made before, or a new one.
    fn issuer_for(&self, iss: &str) -> Option<Arc<Issuer>> {
        let tenant = iss
            .strip_prefix(&*self.prefix)?
            .strip_suffix(&*self.suffix)?;
        if !is_tenant(tenant, self.max_tenant_bytes)
            || self.tenants.as_ref().is_some_and(|t| !t.contains(tenant))
        {
            return None;
        }
        self.known
            .optionally_get_with_by_ref(tenant, || (self.make)(tenant, iss).map(Arc::new))
    }
}

/// One path segment: `[A-Za-z0-9._~-]`, never `.` or `..`, so that the
/// concrete issuer, and the discovery URL made from it, stay below the
/// template's path. `%` is refused, so an encoded `/` cannot slip in.
pub(crate) fn is_tenant(tenant: &str, max_bytes: usize) -> bool {
    !tenant.is_empty()
        && tenant.len() <= max_bytes
        && tenant != "."
        && tenant != ".."
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// Every trusted issuer of a validator.
pub(crate) struct Issuers {
    /// The issuers named in full, in the order they were configured.
    fixed: Box<[Arc<Issuer>]>,
    templates: Box<[Template]>,
    /// The issuers that introspect opaque tokens, in order.
    opaque: Box<[Arc<Issuer>]>,
    /// By [`Issuer::label`]: `""` at 0 (no issuer), then each trusted
    /// issuer's `iss`, or its template.
    labels: Box<[Box<str>]>,
}

impl Issuers {
    pub(crate) fn new(
        fixed: Vec<Arc<Issuer>>,
        templates: Vec<Template>,
        opaque: Vec<Arc<Issuer>>,
        labels: Box<[Box<str>]>,
    ) -> Self {
        Self {
            fixed: fixed.into(),
            templates: templates.into(),
            opaque: opaque.into(),
            labels,
        }
    }

    /// The configured issuer (or template) of label `i`; `""` for none.
    pub(crate) fn label(&self, i: u16) -> &str {
        self.labels.get(usize::from(i)).map_or("", |l| l)
    }

    /// The label of the issuer that accepted `p` (0 when none is found).
    pub(crate) fn label_of(&self, p: &Principal) -> u16 {
        self.of(p).map_or(0, |i| i.label)
    }

    /// The issuer whose keys must have signed `jws`, chosen by its
    /// unverified `iss`; `None` for an `iss` no configured issuer has.
    /// With a single issuer named in full, that one, without reading
    /// `iss` (its claims check refuses any other).
    pub(crate) fn choose(&self, jws: &Parsed) -> Option<Arc<Issuer>> {
        if let ([only], []) = (&*self.fixed, &*self.templates) {
            return Some(only.clone());
        }
        self.find(&unverified_iss(jws.payload())?)
    }

    /// The issuer whose `iss` this is.
    pub(crate) fn find(&self, iss: &str) -> Option<Arc<Issuer>> {
        if let Some(issuer) = self
            .fixed
            .iter()
            .find(|i| i.rules.iss.as_deref() == Some(iss))
        {
            return Some(issuer.clone());
        }
        self.templates.iter().find_map(|t| t.issuer_for(iss))
    }

    /// The issuer that accepted `p`: by its `iss`, or, for an opaque
    /// token whose answer named none, the first that introspects opaque
    /// tokens.
    pub(crate) fn of(&self, p: &Principal) -> Option<Arc<Issuer>> {
        if let ([only], []) = (&*self.fixed, &*self.templates) {
            return Some(only.clone());
        }
        match p.claims().iss.as_deref() {
            Some(iss) => self.find(iss),
            None => self.opaque.first().cloned(),
        }
    }

    /// The issuers opaque tokens are introspected at, in order.
    pub(crate) fn opaque(&self) -> &[Arc<Issuer>] {
        &self.opaque
    }

    /// The key stores configured up front: every fixed issuer's, and the
    /// shared one of each template that has one.
    /// Each store once, though issuers may share it.
    pub(crate) fn configured_keys(&self) -> Vec<&Arc<KeyStore>> {
        let mut stores: Vec<&Arc<KeyStore>> = Vec::new();
        let all = self
            .fixed
            .iter()
            .map(|i| &i.keys)
            .chain(self.templates.iter().filter_map(|t| t.shared_keys.as_ref()));
        for store in all {
            if !stores.iter().any(|s| Arc::ptr_eq(s, store)) {
                stores.push(store);
            }
        }
        stores
    }

    /// The issuers known now: every fixed one, then each template's
    /// tenants seen so far.
    pub(crate) fn known(&self) -> Vec<Arc<Issuer>> {
        let mut all: Vec<Arc<Issuer>> = self.fixed.to_vec();
        for t in self.templates.iter() {
            t.known.run_pending_tasks();
            let mut made: Vec<Arc<Issuer>> = t.known.iter().map(|(_, i)| i).collect();
            made.sort_by(|a, b| a.tenant.cmp(&b.tenant));
            all.extend(made);
        }
        all
    }

    /// The key health of each configured issuer (by its `iss`), and of
    /// each template's shared key set (by the template), in the order
    /// configured; not the tenants templates made.
    pub(crate) fn configured_health(&self) -> Vec<(String, KeyHealth)> {
        let fixed = self.fixed.iter().map(|i| {
            let iss = i.rules.iss.as_deref().unwrap_or_default().to_owned();
            (iss, i.keys.health().borrow().clone())
        });
        let templates = self.templates.iter().filter_map(|t| {
            let keys = t.shared_keys.as_ref()?;
            let pattern = format!("{}{TENANT}{}", t.prefix, t.suffix);
            Some((pattern, keys.health().borrow().clone()))
        });
        fixed.chain(templates).collect()
    }

    /// The health of every known issuer.
    pub(crate) fn health(&self) -> Vec<IssuerHealth> {
        self.known().iter().map(|i| i.health()).collect()
    }

    /// The first configured issuer's `iss`, for `Debug`.
    pub(crate) fn first_iss(&self) -> Option<&str> {
        self.fixed.first().and_then(|i| i.rules.iss.as_deref())
    }
}
