//! Sender-constrained tokens: the binding of a token to whoever may send
//! it, checked on every request once the token itself is valid (also when
//! it came from the verified-token cache). A token bound to a DPoP key
//! (`cnf.jkt`, RFC 9449) needs the `DPoP` scheme and a proof made with that
//! key ([`crate::dpop`]); a token bound to a TLS client certificate
//! (`cnf["x5t#S256"]`, RFC 8705) needs a connection that showed it
//! ([`crate::mtls`]). A bound token is never accepted as a bearer token,
//! whatever the configuration.

use std::fmt;
use std::time::Duration;

use http::{Extensions, HeaderMap, HeaderValue, Method, Uri, header};
use url::Url;

use crate::alg::Algorithm;
use crate::dpop::{self, Expected, Verdict};
use crate::error::{AuthError, ProofError, TokenError};
use crate::jwt::claims::Principal;
use crate::mtls::{CertificateHeader, ClientCertificate};

/// How long around now a DPoP proof's `iat` may be: 60 s either way.
pub const DEFAULT_DPOP_WINDOW: Duration = Duration::from_secs(60);
/// The longest [`Dpop::iat_window`]: 10 min.
pub const MAX_DPOP_WINDOW: Duration = Duration::from_secs(600);
/// Proofs remembered at once to refuse replays: 100 000 (about 5 MB).
pub const DEFAULT_DPOP_REPLAY_ENTRIES: usize = 100_000;

/// How the layer treats DPoP (RFC 9449) and its proofs; give it to
/// [`Builder::dpop`](crate::Builder::dpop). Default: [`Dpop::allowed`].
#[derive(Clone)]
pub struct Dpop {
    pub(crate) mode: DpopMode,
    pub(crate) window: Duration,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) nonces: Option<(Vec<u8>, Duration)>,
    pub(crate) max_replay_entries: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DpopMode {
    Off,
    Allowed,
    Required,
}

impl fmt::Debug for Dpop {
    // Not the nonce secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dpop")
            .field("mode", &self.mode)
            .field("window", &self.window)
            .field("algorithms", &self.algorithms)
            .field("nonces", &self.nonces.as_ref().map(|(_, every)| every))
            .field("max_replay_entries", &self.max_replay_entries)
            .finish()
    }
}

impl Default for Dpop {
    fn default() -> Self {
        Self::allowed()
    }
}

impl Dpop {
    /// Tokens come with the `Bearer` scheme, or with `DPoP` and a proof.
    /// The default.
    pub fn allowed() -> Self {
        Self {
            mode: DpopMode::Allowed,
            window: DEFAULT_DPOP_WINDOW,
            algorithms: vec![
                Algorithm::ES256,
                Algorithm::ES384,
                Algorithm::EdDSA,
                Algorithm::PS256,
                Algorithm::RS256,
            ],
            nonces: None,
            max_replay_entries: DEFAULT_DPOP_REPLAY_ENTRIES,
        }
    }

    /// Only DPoP-bound tokens, with the `DPoP` scheme and a proof: a
    /// bearer token is refused (401 `invalid_token`, with a `DPoP`
    /// challenge only).
    pub fn required() -> Self {
        Self {
            mode: DpopMode::Required,
            ..Self::allowed()
        }
    }

    /// The `DPoP` scheme is not accepted. A DPoP-bound token is still
    /// refused with the `Bearer` scheme.
    pub fn off() -> Self {
        Self {
            mode: DpopMode::Off,
            ..Self::allowed()
        }
    }

    /// How far a proof's `iat` may be from now, either way, by the
    /// validator's clock. Default: [`DEFAULT_DPOP_WINDOW`]; at most
    /// [`MAX_DPOP_WINDOW`]. A proof's `jti` is remembered for twice this.
    pub fn iat_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The algorithms a proof may be signed with; asymmetric only. Default:
    /// ES256, ES384, EdDSA, PS256, RS256.
    pub fn algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algs.into_iter().collect();
        self
    }

    /// Server nonces (RFC 9449 §8): a proof must carry a nonce this server
    /// gave out, or is answered 401 `use_dpop_nonce` with the nonce in the
    /// `DPoP-Nonce` header. A new nonce every `rotation`; the previous
    /// and the next rotation's are accepted too, so a nonce lives through
    /// one rotation and replicas whose clocks differ a little agree.
    /// Nonces are derived from the time and `secret` (at least 32 bytes),
    /// never stored: replicas that share the secret and the rotation accept
    /// each other's nonces. A nonce is shared by every client: it bounds
    /// how far ahead a proof can be made, it does not make a proof
    /// single-use. Default: off.
    pub fn nonces(mut self, secret: impl Into<Vec<u8>>, rotation: Duration) -> Self {
        self.nonces = Some((secret.into(), rotation));
        self
    }

    /// How many proofs are remembered at once, to refuse replays. When
    /// full, a new proof is refused (401 `invalid_dpop_proof`) rather than
    /// let through unchecked. Default: [`DEFAULT_DPOP_REPLAY_ENTRIES`].
    pub fn max_replay_entries(mut self, max: usize) -> Self {
        self.max_replay_entries = max;
        self
    }
}

/// Where the URI a DPoP proof's `htu` must name comes from.
pub(crate) struct Origin {
    /// The configured public origin, `https://api.example.com`.
    pub(crate) public: Option<Url>,
    /// Without one: this scheme and the request's `Host` (`:authority`).
    pub(crate) scheme: &'static str,
    /// `X-Forwarded-Proto` and `X-Forwarded-Host` are believed.
    pub(crate) forwarded: bool,
}

impl Origin {
    /// The request's URI without query and fragment, as the client reached
    /// this server.
    fn htu(&self, req: &Parts<'_>) -> Result<Url, ProofError> {
        let no_host = ProofError("the request names no host to check the DPoP proof's htu against");
        let path = req.uri.path();
        // The router sees the path as sent: one that normalisation would
        // change (dot segments, backslashes) could name another resource
        // than the proof's.
        if !is_plain_path(path) {
            return Err(ProofError(
                "the request path has dot segments or backslashes; a DPoP proof cannot name it",
            ));
        }
        let url = match &self.public {
            Some(origin) => format!("{}{path}", origin.as_str().trim_end_matches('/')),
            None => {
                let forwarded = |name: &str| {
                    self.forwarded
                        .then(|| req.headers.get(name)?.to_str().ok())
                        .flatten()
                        .and_then(|v| v.split(',').next())
                        .map(str::trim)
                };
                let scheme = match forwarded("x-forwarded-proto") {
                    Some(p) if p.eq_ignore_ascii_case("https") => "https",
                    Some(p) if p.eq_ignore_ascii_case("http") => "http",
                    _ => self.scheme,
                };
                let host = forwarded("x-forwarded-host")
                    .or_else(|| req.uri.authority().map(|a| a.as_str()))
                    .or_else(|| req.headers.get(header::HOST)?.to_str().ok())
                    .ok_or(no_host)?;
                if host.is_empty() || host.contains(['/', '\\', '@', '?', '#', ' ']) {
                    return Err(no_host);
                }
                format!("{scheme}://{host}{path}")
            }
        };
        Url::parse(&url).map_err(|_| no_host)
    }
}

/// Whether `path` is as RFC 3986 normalisation would leave it: no `.` or
/// `..` segment (percent-encoded or not), no backslash.
fn is_plain_path(path: &str) -> bool {
    !path.contains('\\')
        && path.split('/').all(|segment| {
            let segment = segment.to_ascii_lowercase().replace("%2e", ".");
            segment != "." && segment != ".."
        })
}

/// What the binding checks read of a request.
pub(crate) struct Parts<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) extensions: &'a Extensions,
}

impl<'a> Parts<'a> {
    pub(crate) fn of<B>(req: &'a http::Request<B>) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }
}

/// Where a server nonce goes (RFC 9449 §8).
pub(crate) const DPOP_NONCE: http::HeaderName = http::HeaderName::from_static("dpop-nonce");

/// How the credentials came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Bearer,
    Dpop,
}

/// The binding checks of one validator.
pub(crate) struct Binding {
    /// `None` when DPoP is off.
    dpop: Option<DpopCheck>,
    certificate_header: Option<CertificateHeader>,
    origin: Origin,
}

struct DpopCheck {
    required: bool,
    verifier: dpop::Verifier,
    /// The proof algorithms, space-separated, for the challenge's `algs`.
    algs: Box<str>,
}

impl Binding {
    pub(crate) fn new(
        dpop: Option<(bool, dpop::Verifier)>,
        certificate_header: Option<CertificateHeader>,
        origin: Origin,
    ) -> Self {
        let dpop = dpop.map(|(required, verifier)| {
            let algs = verifier
                .algorithms()
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            DpopCheck {
                required,
                verifier,
                algs: algs.into(),
            }
        });
        Self {
            dpop,
            certificate_header,
            origin,
        }
    }

    /// Whether the `DPoP` scheme is accepted.
    pub(crate) fn accepts_dpop(&self) -> bool {
        self.dpop.is_some()
    }

    /// Whether the `Bearer` scheme is offered in challenges.
    pub(crate) fn accepts_bearer(&self) -> bool {
        !self.dpop.as_ref().is_some_and(|d| d.required)
    }

    /// The `algs` of the `DPoP` challenge, when DPoP is on.
    pub(crate) fn dpop_algs(&self) -> Option<&str> {
        self.dpop.as_ref().map(|d| &*d.algs)
    }

    /// The `DPoP-Nonce` header value at `now`, when nonces are on.
    pub(crate) fn nonce(&self, now: i64) -> Option<HeaderValue> {
        let nonce = self.dpop.as_ref()?.verifier.current_nonce(now)?;
        HeaderValue::from_str(&nonce).ok()
    }

    /// Every binding check for `p`, whose token `token` came with `scheme`
    /// on `req`; `now` (Unix seconds) is read only for a proof. With
    /// nonces on, a request proven by DPoP gets the current nonce back to
    /// send (RFC 9449 §8.2), so that its client need not wait for a
    /// `use_dpop_nonce` to learn of a rotation.
    pub(crate) fn check(
        &self,
        p: &Principal,
        scheme: Scheme,
        token: &[u8],
        req: &Parts<'_>,
        now: impl FnOnce() -> i64,
    ) -> Result<Option<HeaderValue>, AuthError> {
        let cnf = p.confirmation();
        if let Some(x5t) = cnf.and_then(|c| c.x5t_s256.as_deref()) {
            let shown = req
                .extensions
                .get::<ClientCertificate>()
                .cloned()
                .or_else(|| {
                    self.certificate_header
                        .as_ref()
                        .and_then(|h| h.certificate(req.headers))
                });
            if shown.is_none_or(|c| c.thumbprint() != x5t) {
                return Err(AuthError::InvalidToken(TokenError::CertificateMismatch));
            }
        }
        let jkt = cnf.and_then(|c| c.jkt.as_deref());
        let (dpop, jkt) = match (scheme, &self.dpop, jkt) {
            (Scheme::Bearer, _, Some(_)) => {
                return Err(AuthError::InvalidToken(TokenError::DpopBound));
            }
            (Scheme::Bearer, Some(d), None) if d.required => {
                return Err(AuthError::InvalidToken(TokenError::DpopRequired));
            }
            (Scheme::Bearer, _, None) => return Ok(None),
            (Scheme::Dpop, _, None) => {
                return Err(AuthError::InvalidToken(TokenError::NotDpopBound));
            }
            // The `DPoP` scheme is not even read when DPoP is off.
            (Scheme::Dpop, None, Some(_)) => {
                return Err(AuthError::InvalidToken(TokenError::DpopBound));
            }
            (Scheme::Dpop, Some(d), Some(jkt)) => (d, jkt),
        };
        let mut proofs = req.headers.get_all("dpop").iter();
        let (Some(proof), None) = (proofs.next(), proofs.next()) else {
            return Err(AuthError::InvalidDpopProof(ProofError(
                "the request needs exactly one DPoP header",
            )));
        };
        let proof = proof.to_str().map_err(|_| {
            AuthError::InvalidDpopProof(ProofError("the DPoP proof is not a compact JWS"))
        })?;
        let htu = self.origin.htu(req).map_err(AuthError::InvalidDpopProof)?;
        let now = now();
        let expected = Expected {
            method: req.method.as_str(),
            htu: &htu,
            access_token: token,
            jkt,
            now,
        };
        match dpop.verifier.check(proof, &expected) {
            Verdict::Proven => Ok(self.nonce(now)),
            Verdict::Invalid(e) => Err(AuthError::InvalidDpopProof(e)),
            Verdict::NeedsNonce => Err(AuthError::UseDpopNonce),
        }
    }
}
