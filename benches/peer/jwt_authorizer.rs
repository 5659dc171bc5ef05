//! jwt-authorizer 0.15 through its tower service, configured as
//! tower-bearer is in `benches/validate.rs` (a static JWKS, iss and aud
//! checked), on the same tokens and the same drivers:
//!
//! - criterion bench `ALG/jwt-authorizer` (every request verifies: the crate
//!   has no verified-token cache);
//! - then, with the runs interleaved, the ratio of its time per request to
//!   tower-bearer's cold path, printed as `ALG jwt-authorizer/cold MEDIAN
//!   MIN MAX BEST` for `scripts/bench-report`, as `benches/ratios.rs` does.

#[path = "../common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::time::Duration;

use common::{ALGORITHMS, Case, Fixture, Paired, paired_settings, serve};
use criterion::Criterion;
use http::{Request, Response};
use jwt_authorizer::{IntoLayer, JwtAuthorizer, RegisteredClaims, Validation};

type PeerHandler =
    fn(Request<()>) -> std::future::Ready<Result<axum::response::Response, Infallible>>;

fn ok(_: Request<()>) -> std::future::Ready<Result<axum::response::Response, Infallible>> {
    std::future::ready(Ok(Response::new(axum::body::Body::empty())))
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut criterion = Criterion::default().configure_from_args();
    let mut ratios = Vec::new();
    for alg in ALGORITHMS {
        let fx = Fixture::new(&rt, alg);
        let authorizer = rt
            .block_on(
                JwtAuthorizer::<RegisteredClaims>::from_jwks_text(&fx.idp.jwks_json().to_string())
                    .validation(
                        Validation::new()
                            .iss(&[fx.idp.issuer()])
                            .aud(&[fx.idp.audience()]),
                    )
                    .build(),
            )
            .unwrap();
        let layer = [authorizer].into_layer();
        let peer = |threads, n| {
            serve(
                threads,
                n,
                || tower::Layer::layer(&layer, tower::service_fn(ok as PeerHandler)),
                |t, k| fx.requests(Case::Cold, t, k),
            )
        };
        criterion
            .benchmark_group(format!("{alg}"))
            .bench_function("jwt-authorizer", |b| b.iter_custom(|n| peer(1, n)));

        let (count, round) = paired_settings();
        let ours = |n| fx.time(Case::Cold, 1, n);
        let theirs = |n| peer(1, n);
        let runs: [&dyn Fn(u64) -> Duration; 2] = [&theirs, &ours];
        let p = Paired::run(&runs, count, round);
        let ((median, lo, hi), best) = (p.ratio(0, 1), p.best_ratio(0, 1));
        ratios.push(format!(
            "{alg} jwt-authorizer/cold {median:.4} {lo:.4} {hi:.4} {best:.4}"
        ));
    }
    criterion.final_summary();
    for line in ratios {
        println!("{line}");
    }
}
