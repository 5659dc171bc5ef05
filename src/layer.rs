//! The tower [`Layer`], its [`Service`], and the named response future and
//! body they return.
//!
//! A request whose token verifies with a key already in memory is
//! authenticated synchronously inside `call`; only a request that needs a
//! key fetch waits, in a boxed future that exists for that case alone.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::{BearerAuthLayer, Quick, Shared};
use crate::error::{AuthError, Challenge, Protocol};
use crate::jwt::claims::Principal;
use crate::sender::{DPOP_NONCE, Scheme};
use crate::telemetry::{self, Path, Reason, Tally, Watch};
use crate::token;
use tracing::Instrument as _;

impl<S, M> Layer<S> for BearerAuthLayer<M> {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            shared: self.shared.clone(),
            optional: self.optional,
        }
    }
}

/// The service made by the [`BearerAuthLayer`] layer: authenticates each
/// request, puts the [`Principal`] into its extensions, and answers
/// failures itself (RFC 6750).
#[derive(Clone)]
pub struct BearerAuth<S> {
    inner: S,
    shared: Arc<Shared>,
    /// Requests without credentials pass unauthenticated.
    optional: bool,
}

impl<S: std::fmt::Debug> std::fmt::Debug for BearerAuth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("inner", &self.inner)
            .field("optional", &self.optional)
            .finish_non_exhaustive()
    }
}

pub(crate) type Validation = Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BearerAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let mut watch = Watch::start(shared.timed());
        // Only a refusal needs the protocol: work it out then.
        let refuse = |e: &AuthError, req: &Request<ReqBody>, watch: &mut Watch| {
            ResponseFuture::refused_with(shared.refusal(watch, e, Protocol::of(req.headers())))
        };
        let dpop = shared.binding.accepts_dpop();
        let (scheme, raw) =
            match token::locate(req.headers(), shared.config.cookie.as_deref(), dpop) {
                Ok(Some(found)) => found,
                Ok(None) if self.optional => return ResponseFuture::inner(self.inner.call(req)),
                Ok(None) => return refuse(&AuthError::MissingToken, &req, &mut watch),
                Err(e) => return refuse(&e, &req, &mut watch),
            };
        // A repeated token is found by its bytes as sent; only a new one is
        // checked for syntax and verified.
        let outcome = match shared.validate_cached(raw, &mut watch.seen) {
            Some(outcome) => outcome,
            None => match token::check(raw) {
                Err(e) => Err(e),
                Ok(token) => match shared.validate_uncached(token, &mut watch.seen) {
                    Quick::Done(outcome) => outcome,
                    Quick::Pending(pending) => {
                        // The wait resumes from what this pass learned.
                        let token: Arc<str> = Arc::from(token);
                        let task = shared.clone();
                        let held = token.clone();
                        let check: Validation = Box::pin(
                            async move { task.resume(&held, pending).await }
                                .instrument(watch.span.clone()),
                        );
                        // Keep the instance that poll_ready drove to readiness.
                        let clone = self.inner.clone();
                        let inner = mem::replace(&mut self.inner, clone);
                        let mut future = ResponseFuture::validating(
                            check,
                            inner,
                            req,
                            shared.clone(),
                            Some(watch),
                        );
                        future.bind_to(scheme, token);
                        return future;
                    }
                },
            },
        };
        let outcome = outcome.and_then(|p| {
            let nonce = shared.check_binding(&p, scheme, raw, &req)?;
            Ok((p, nonce))
        });
        match outcome {
            Ok((principal, nonce)) => {
                let tally = shared.observe(&mut watch, Ok(&principal));
                req.extensions_mut().insert(principal);
                ResponseFuture::accepted(self.inner.call(req), nonce, tally)
            }
            Err(e) => refuse(&e, &req, &mut watch),
        }
    }
}

pin_project! {
    /// The response future of [`BearerAuth`],
    /// [`RequireScopes`](crate::RequireScopes) and
    /// [`RequireActive`](crate::RequireActive).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Inner { #[pin] fut: S::Future, nonce: Option<HeaderValue>, tally: Tally },
        Validating { check: Validation, pending: Option<(S, Request<B>)>, shared: Arc<Shared>, protocol: Protocol, binding: Option<(Scheme, Arc<str>)>, watch: Option<Watch> },
        Refused { response: Option<Response<Bytes>> },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn inner(fut: S::Future) -> Self {
        Self::accepted(fut, None, Tally::default())
    }

    /// The inner service's answer to an accepted request, with a
    /// `DPoP-Nonce` header when given; counted with `tally` once it comes.
    fn accepted(fut: S::Future, nonce: Option<HeaderValue>, tally: Tally) -> Self {
        Self {
            state: State::Inner { fut, nonce, tally },
        }
    }

    /// Waits for `check`, then calls `inner` with the principal it yields
    /// in the request's extensions, or answers its error. With a `watch`,
    /// the validation the layer began, observed once it ends; without,
    /// a route layer's check (`require_active`, at the introspection
    /// endpoint), whose refusal the layer around counts.
    pub(crate) fn validating(
        check: Validation,
        inner: S,
        req: Request<B>,
        shared: Arc<Shared>,
        watch: Option<Watch>,
    ) -> Self {
        let protocol = Protocol::of(req.headers());
        Self {
            state: State::Validating {
                check,
                pending: Some((inner, req)),
                shared,
                protocol,
                binding: None,
                watch,
            },
        }
    }

    /// Once `check` yields a principal, its binding to the sender is
    /// checked too: the token came with `scheme`.
    fn bind_to(&mut self, scheme: Scheme, token: Arc<str>) {
        if let State::Validating { binding, .. } = &mut self.state {
            *binding = Some((scheme, token));
        }
    }

    /// A route layer's refusal, marked for the layer around to count
    /// (see `telemetry::settle`); `shared: None` for a route layer made
    /// without a validator.
    pub(crate) fn refused(shared: Option<&Shared>, err: &AuthError, protocol: Protocol) -> Self {
        let mut res = match shared {
            Some(shared) => shared.error_response(err, protocol),
            None => err.respond(Challenge::default(), protocol),
        };
        telemetry::mark(&mut res, Reason::of(err, None), false);
        Self::refused_with(res)
    }

    pub(crate) fn refused_with(response: Response<Bytes>) -> Self {
        Self {
            state: State::Refused {
                response: Some(response),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    #[allow(clippy::expect_used)] // only reachable by polling after completion
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                StateProj::Inner { fut, nonce, tally } => {
                    let mut res = ready!(fut.poll(cx))?.map(ResponseBody::inner);
                    if let Some(nonce) = nonce.take() {
                        res.headers_mut().insert(DPOP_NONCE, nonce);
                    }
                    telemetry::settle(tally, &mut res);
                    return Poll::Ready(Ok(res));
                }
                StateProj::Refused { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::error)));
                }
                StateProj::Validating {
                    check,
                    pending,
                    shared,
                    protocol,
                    binding,
                    watch,
                } => {
                    let outcome = ready!(check.as_mut().poll(cx));
                    let (mut inner, mut req) = pending
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let outcome = outcome.and_then(|p| match binding {
                        Some((scheme, token)) => {
                            let nonce =
                                shared.check_binding(&p, *scheme, token.as_bytes(), &req)?;
                            Ok((p, nonce))
                        }
                        None => Ok((p, None)),
                    });
                    match (outcome, watch) {
                        (Ok((principal, nonce)), watch) => {
                            let tally = match watch {
                                Some(watch) => shared.observe(watch, Ok(&principal)),
                                None => Tally::default(),
                            };
                            req.extensions_mut().insert(principal);
                            State::Inner {
                                fut: inner.call(req),
                                nonce,
                                tally,
                            }
                        }
                        (Err(e), Some(watch)) => State::Refused {
                            response: Some(shared.refusal(watch, &e, *protocol)),
                        },
                        (Err(e), None) => {
                            let mut response = shared.error_response(&e, *protocol);
                            let reason = Reason::of(&e, Some(Path::Introspected));
                            telemetry::mark(&mut response, reason, false);
                            State::Refused {
                                response: Some(response),
                            }
                        }
                    }
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}

pin_project! {
    /// The response body: the inner service's, or the JSON of an error
    /// answered by this crate.
    pub struct ResponseBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

pin_project! {
    #[project = BodyProj]
    enum BodyKind<B> {
        Inner { #[pin] body: B },
        Refusal { data: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    fn inner(body: B) -> Self {
        Self {
            kind: BodyKind::Inner { body },
        }
    }

    /// An empty refusal (gRPC's) holds no data frame, so `is_end_stream`
    /// is true at once and the server ends the stream with the HEADERS
    /// frame: a trailers-only answer, as gRPC requires.
    fn error(data: Bytes) -> Self {
        Self {
            kind: BodyKind::Refusal {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            BodyProj::Inner { body } => body.poll_frame(cx),
            BodyProj::Refusal { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner { body } => body.is_end_stream(),
            BodyKind::Refusal { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Inner { body } => body.size_hint(),
            BodyKind::Refusal { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
