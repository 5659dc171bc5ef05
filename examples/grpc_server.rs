//! A tonic gRPC server protected by tower-bearer, configured only by
//! environment variables: the standard `grpc.health.v1.Health` service,
//! where `Check` requires scope `read` and `Watch` (a server stream)
//! requires scope `admin`.
//!
//! ```text
//! ISSUER=https://idp.example/realms/acme AUDIENCE=health-api \
//!     cargo run --example grpc_server
//! ```
//!
//! | variable | meaning |
//! |---|---|
//! | `ISSUER` | required; keys are found by discovery unless `JWKS_URI` is set |
//! | `AUDIENCE` | required |
//! | `JWKS_URI` | optional override of discovery |
//! | `LISTEN_ADDR` | default `127.0.0.1:50051` |
//!
//! Prints `listening on http://ADDR` once it accepts connections.

use std::process::ExitCode;

use tonic::transport::Server;
use tonic_health::ServingStatus;
use tower_bearer::{BearerAuthLayer, ScopePolicy};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grpc_server: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<(), String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let issuer = var("ISSUER").ok_or("ISSUER is required")?;
    let audience = var("AUDIENCE").ok_or("AUDIENCE is required")?;
    let listen = var("LISTEN_ADDR").unwrap_or_else(|| "127.0.0.1:50051".into());

    let mut builder = BearerAuthLayer::builder().issuer(issuer).audience(audience);
    if let Some(jwks) = var("JWKS_URI") {
        builder = builder.jwks_uri(jwks);
    }
    let auth = builder.build().map_err(|e| e.to_string())?;
    let scopes = auth
        .method_scopes()
        .method("/grpc.health.v1.Health/Check", ScopePolicy::all(["read"]))
        .method("/grpc.health.v1.Health/Watch", ScopePolicy::all(["admin"]));

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;

    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{addr}");
    Server::builder()
        .layer(tower::ServiceBuilder::new().layer(auth).layer(scopes))
        .add_service(health)
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await
        .map_err(|e| e.to_string())
}
