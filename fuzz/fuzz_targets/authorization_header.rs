//! Authorization and Cookie header parsing, through the layer itself: any
//! header bytes give 200 (with a principal), 400, 401 or 403 — never a
//! panic and never a 5xx for a client's mistake.
#![no_main]

use std::convert::Infallible;
use std::sync::OnceLock;

use http::{HeaderValue, Request, Response, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use tower::{Service, ServiceExt, service_fn};
use tower_bearer::{BearerAuthLayer, ManualClock, Principal};

fn fixture() -> &'static (tokio::runtime::Runtime, BearerAuthLayer) {
    static F: OnceLock<(tokio::runtime::Runtime, BearerAuthLayer)> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let idp = rt.block_on(tower_bearer::testing::TestIssuer::start()).unwrap();
        let auth = BearerAuthLayer::builder()
            .issuer(idp.issuer())
            .audience(idp.audience())
            .jwks_json(idp.jwks_json())
            .token_cookie("access_token")
            .clock(ManualClock::at_unix(1_700_000_000))
            .build()
            .unwrap();
        (rt, auth)
    })
}

fuzz_target!(|data: &[u8]| {
    let (rt, auth) = fixture();
    let mut req = Request::new(());
    // Up to three header values, split at NUL; odd ones as Authorization,
    // even ones as Cookie.
    for (i, part) in data.split(|b| *b == 0).take(3).enumerate() {
        if let Ok(v) = HeaderValue::from_bytes(part) {
            let name = if i % 2 == 0 { header::AUTHORIZATION } else { header::COOKIE };
            req.headers_mut().append(name, v);
        }
    }
    let inner = service_fn(|req: Request<()>| async move {
        assert!(req.extensions().get::<Principal>().is_some());
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let mut svc = tower::Layer::layer(auth, inner);
    let status = rt.block_on(async { svc.ready().await.unwrap().call(req).await.unwrap().status() });
    assert!(
        matches!(status, StatusCode::OK | StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED),
        "{status}"
    );
});
