//! The end-to-end benchmark target of `scripts/bench-report`: an axum
//! server with an open route (`/open`) and an authenticated one (`/auth`)
//! behind tower-bearer, keys from a loopback `TestIssuer`. It writes
//! `TOKENS` distinct tokens (default 10,000), one per line, to the file
//! named by `TOKENS_FILE`, then prints `issuer URL` (the `TestIssuer`,
//! whose discovery and keys `examples/resource_server` can use, audience
//! `documents-api`) and `listening on http://ADDR`.

use axum::Router;
use axum::routing::get;
use tower_bearer::testing::TestIssuer;
use tower_bearer::{BearerAuthLayer, Principal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let idp = TestIssuer::builder()
        .audience("documents-api")
        .start()
        .await?;
    let count: usize = std::env::var("TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .jwks_json(idp.jwks_json())
        // Room for every token with a margin: the cache's shards fill
        // unevenly, and each token must stay cached after its first use.
        .token_cache(2 * count as u64, std::time::Duration::from_secs(300))
        .build()?;
    let tokens: Vec<String> = (0..count)
        .map(|i| {
            idp.token()
                .scope("read write")
                .claim("n", i)
                .expires_in(86_400)
                .sign()
        })
        .collect();
    std::fs::write(std::env::var("TOKENS_FILE")?, tokens.join("\n") + "\n")?;

    let app = Router::new()
        .route(
            "/auth",
            get(|p: Principal| async move { if p.has_scope("read") { "ok" } else { "no" } }),
        )
        .layer(auth)
        .route("/open", get(|| async { "ok" }));
    let listener =
        tokio::net::TcpListener::bind(std::env::var("LISTEN_ADDR").unwrap_or("127.0.0.1:0".into()))
            .await?;
    println!("issuer {}", idp.issuer());
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
