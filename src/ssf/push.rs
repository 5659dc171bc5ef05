//! The push endpoint (RFC 8935): a tower service that takes one SET per
//! `POST`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};

use super::{MAX_SET_BYTES, SetError, SsfReceiver};
use crate::builder::ConfigError;
use crate::introspect::digest as sha256;

/// The push endpoint of an [`SsfReceiver`]; from
/// [`SsfReceiver::push_endpoint`].
///
/// `POST` with `Content-Type: application/secevent+jwt` and the
/// configured `Authorization`: 202 when the SET was applied; 400 with
/// `{"err": …, "description": …}` (RFC 8935 §2.4) when it is refused; 503
/// with `Retry-After` while the transmitter's keys cannot be loaded (the
/// transmitter retries); 405 for other methods.
#[derive(Clone)]
pub struct SsfPush {
    receiver: SsfReceiver,
    /// SHA-256 of the expected `Authorization` value: digests of equal
    /// length, compared in constant time.
    authorization: [u8; 32],
}

impl std::fmt::Debug for SsfPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsfPush")
            .field("receiver", &self.receiver)
            .finish_non_exhaustive()
    }
}

impl SsfPush {
    pub(super) fn new(receiver: SsfReceiver, authorization: &str) -> Result<Self, ConfigError> {
        if authorization.trim().is_empty() || HeaderValue::from_str(authorization).is_err() {
            return Err(ConfigError::EmptyValue("push authorization"));
        }
        Ok(Self {
            receiver,
            authorization: sha256(authorization.as_bytes()),
        })
    }

    fn authenticated(&self, given: Option<&HeaderValue>) -> bool {
        let Some(given) = given else { return false };
        let given = sha256(given.as_bytes());
        let diff = given
            .iter()
            .zip(&self.authorization)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }

    async fn answer<B>(self, req: Request<B>) -> Response<String>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if req.method() != Method::POST {
            let mut res = Response::new(String::new());
            *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return res;
        }
        if !self.authenticated(req.headers().get(header::AUTHORIZATION)) {
            return refused(&SetError::AuthenticationFailed);
        }
        if !is_set_media_type(req.headers().get(header::CONTENT_TYPE)) {
            return refused(&SetError::InvalidRequest(
                "Content-Type is not application/secevent+jwt",
            ));
        }
        let body = match Limited::new(req.into_body(), MAX_SET_BYTES).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return refused(&SetError::InvalidRequest("the body is too large or broken")),
        };
        let Ok(set) = std::str::from_utf8(&body) else {
            return refused(&SetError::InvalidRequest("the body is not text"));
        };
        match self.receiver.receive(set).await {
            Ok(_) => {
                let mut res = Response::new(String::new());
                *res.status_mut() = StatusCode::ACCEPTED;
                res
            }
            Err(e) => {
                tracing::warn!(error = %e, "SET refused");
                refused(&e)
            }
        }
    }
}

/// `application/secevent+jwt`, parameters allowed.
fn is_set_media_type(v: Option<&HeaderValue>) -> bool {
    v.and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/secevent+jwt"))
}

/// RFC 8935 §2.4's error answer, or 503 for keys not loadable now.
fn refused(e: &SetError) -> Response<String> {
    let body = serde_json::json!({"err": e.code(), "description": e.description()});
    let mut res = Response::new(body.to_string());
    let status = match e {
        SetError::KeysUnavailable { retry_after } => {
            let secs = retry_after.as_secs().max(1);
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::BAD_REQUEST,
    };
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

impl<B> tower_service::Service<Request<B>> for SsfPush
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<String>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.answer(req).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_media_type_may_carry_parameters() {
        let v = |s: &'static str| Some(HeaderValue::from_static(s));
        assert!(is_set_media_type(v("application/secevent+jwt").as_ref()));
        assert!(is_set_media_type(
            v("Application/SecEvent+JWT; charset=utf-8").as_ref()
        ));
        assert!(!is_set_media_type(v("application/jwt").as_ref()));
        assert!(!is_set_media_type(None));
    }
}
