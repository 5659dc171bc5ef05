//! The reference deployment: a small document API protected by
//! tower-bearer, configured only by environment variables.
//!
//! ```text
//! ISSUER=https://idp.example/realms/acme AUDIENCE=documents-api \
//!     cargo run --example resource_server --features axum
//! ```
//!
//! | variable | meaning |
//! |---|---|
//! | `ISSUER` | required; one or more issuer URLs separated by spaces, each may contain `{tenant}` (a template); keys by discovery unless `JWKS_URI` is set |
//! | `TENANTS` | optional space-separated allowlist for templates; absent: any tenant, within the bounds |
//! | `AUDIENCE` | required, shared by every issuer |
//! | `JWKS_URI` | optional override of discovery, for a single issuer without `{tenant}` only |
//! | `INTROSPECTION_URI`, `INTROSPECTION_CLIENT_ID`, `INTROSPECTION_CLIENT_SECRET` | optional; opaque tokens are then accepted through RFC 7662 introspection, at the first issuer without `{tenant}` |
//! | `ROLES_CLAIM` | claim path for roles (`realm_access.roles`, `https://example.com/roles`), default `roles` |
//! | `DPOP` | `allowed` (default: bearer and DPoP-bound tokens), `required` or `off` |
//! | `PUBLIC_ORIGIN` | optional origin DPoP proofs name (`https://api.example.com`); without it, `http://` and the request's `Host` |
//! | `DPOP_NONCE` | `1`: DPoP server nonces on (a random secret per process) |
//! | `CLIENT_CERT_HEADER` | optional header carrying the client certificate as URL-encoded PEM, from a TLS-terminating proxy, for certificate-bound tokens |
//! | `RESOURCE` | optional RFC 9728 resource identifier (`https://api.example.com`): serves `/.well-known/oauth-protected-resource` (with the identifier's path, if any, after it), and every 401 names it in `resource_metadata` |
//! | `METRICS` | `1`: the validator's metrics in the Prometheus text format at `GET /metrics` (open) |
//! | `SSF_ISSUER`, `SSF_PUSH_AUTHORIZATION` | together: a Shared Signals receiver at `POST /ssf/events` (RFC 8935 push) for the transmitter `SSF_ISSUER` (keys from its `/.well-known/ssf-configuration`), which must send this `Authorization` value; its audience is `AUDIENCE`, and subjects without an issuer of their own are the first `ISSUER`'s |
//! | `REDIS_URL` | revocations shared with every replica of the same `REDIS_URL` (`redis://`, `rediss://`, a password in the URL); serving starts once the retained ones are replayed, or after `REDIS_REPLAY_WAIT` seconds (default 10) with an error log |
//! | `REDIS_CACHE_KEY` | with `REDIS_URL` and introspection: introspection answers shared by the replicas, authenticated with this key (at least 32 bytes, the same on every replica) |
//! | `LISTEN_ADDR` | default `127.0.0.1:3000` |
//!
//! Routes: `GET /healthz` (open, liveness), `GET /readyz` (open,
//! readiness: 200 while every issuer has usable keys, else 503 with the
//! reason), `GET /me` (any valid token),
//! `GET /documents` (scope `read`), `POST /documents` (scope `write`, 201),
//! `GET /admin` (scope `admin`), `GET /reports` (role `auditor`),
//! `GET /sensitive` (`acr` `phr` and `auth_time` within 600 s, RFC 9470),
//! `POST /admin/revocations` (scope `admin`; JSON `{"jti": …}` revokes
//! that token, `{"iss": …, "sub": …}` every token of that subject issued
//! until now; 204), and with `RESOURCE` the metadata document (open).

use std::process::ExitCode;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tower_bearer::fleet::{RedisFanout, SharedIntrospectionCache};
use tower_bearer::ssf::SsfReceiver;
use tower_bearer::{
    BearerAuthLayer, CertificateFormat, CertificateHeader, ClaimPath, ClientId, ClientSecret, Dpop,
    Principal, ProtectedResource, RevocationList, Revoke, StepUp, TrustedIssuer,
};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("resource_server: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<(), String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let issuers = var("ISSUER").ok_or("ISSUER is required")?;
    let issuers: Vec<&str> = issuers.split_whitespace().collect();
    let audience = var("AUDIENCE").ok_or("AUDIENCE is required")?;
    let listen = var("LISTEN_ADDR").unwrap_or_else(|| "127.0.0.1:3000".into());
    let tenants = var("TENANTS");
    let roles = var("ROLES_CLAIM").unwrap_or_else(|| "roles".into());
    // Installed before build(), which resolves the validator's metrics
    // from the recorder in effect.
    let prometheus = match var("METRICS").as_deref() {
        None | Some("0") => None,
        Some("1") => Some(
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&[
                    0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
                ])
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| format!("cannot install the metrics recorder: {e}"))?,
        ),
        Some(_) => return Err("METRICS is 1 or unset".into()),
    };
    let revoked = RevocationList::new();
    let mut builder = BearerAuthLayer::builder()
        .audience(&audience)
        .role_claims([ClaimPath::parse(&roles)])
        .revocation_list(revoked.clone());
    let mut dpop = match var("DPOP").as_deref() {
        None | Some("allowed") => Dpop::allowed(),
        Some("required") => Dpop::required(),
        Some("off") => Dpop::off(),
        Some(_) => return Err("DPOP is allowed, required or off".into()),
    };
    if var("DPOP_NONCE").as_deref() == Some("1") {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).map_err(|_| "no randomness for the nonce secret")?;
        dpop = dpop.nonces(secret, Duration::from_secs(300));
    }
    builder = builder.dpop(dpop);
    builder = match var("PUBLIC_ORIGIN") {
        Some(origin) => builder.public_origin(origin),
        // Loopback and tests: no TLS in front of this server.
        None => builder.request_scheme("http"),
    };
    if let Some(name) = var("CLIENT_CERT_HEADER") {
        let header = CertificateHeader::new(&name, CertificateFormat::UrlEncodedPem)
            .ok_or("CLIENT_CERT_HEADER is not a header name")?;
        builder = builder.client_certificate_header(header);
    }
    if let Some(resource) = var("RESOURCE") {
        builder = builder.protected_resource(
            ProtectedResource::new(resource)
                .scopes_supported(["read", "write", "admin"])
                .name("tower-bearer example documents API"),
        );
    }
    let introspection_uri = var("INTROSPECTION_URI");
    // Opaque tokens name no issuer (nor tenant): they go to the first
    // issuer that is not a template.
    let introspecting = issuers.iter().position(|iss| !iss.contains("{tenant}"));
    if introspection_uri.is_some() && introspecting.is_none() {
        return Err("INTROSPECTION_URI needs an ISSUER without {tenant}".into());
    }
    for (i, iss) in issuers.iter().enumerate() {
        let mut issuer = TrustedIssuer::new(*iss);
        if let Some(tenants) = tenants.as_deref().filter(|_| iss.contains("{tenant}")) {
            issuer = issuer.tenants(tenants.split_whitespace());
        }
        match &introspection_uri {
            Some(uri) if Some(i) == introspecting => issuer = issuer.introspection_endpoint(uri),
            _ => issuer = issuer.without_introspection(),
        }
        builder = builder.trusted_issuer(issuer);
    }
    if let Some(jwks) = var("JWKS_URI") {
        if issuers.len() != 1 || issuers[0].contains("{tenant}") {
            return Err("JWKS_URI needs a single ISSUER without {tenant}".into());
        }
        builder = builder.jwks_uri(jwks);
    }
    // With introspection the validator is of another type; `into` keeps
    // one type for both, as no route here needs `require_active`.
    let auth: BearerAuthLayer = match introspection_uri {
        Some(_) => {
            let id = var("INTROSPECTION_CLIENT_ID")
                .ok_or("INTROSPECTION_URI needs INTROSPECTION_CLIENT_ID")?;
            let secret = var("INTROSPECTION_CLIENT_SECRET")
                .ok_or("INTROSPECTION_URI needs INTROSPECTION_CLIENT_SECRET")?;
            if let Some(key) = var("REDIS_CACHE_KEY") {
                let url = var("REDIS_URL").ok_or("REDIS_CACHE_KEY needs REDIS_URL")?;
                let cache = SharedIntrospectionCache::new(&url, key.as_bytes())
                    .map_err(|e| e.to_string())?;
                builder = builder.shared_introspection_cache(cache);
            }
            builder
                .introspection(ClientId::new(id), ClientSecret::new(secret))
                .build()
                .map(Into::into)
        }
        None => builder.build(),
    }
    .map_err(|e| e.to_string())?;

    let metadata = auth.resource_metadata();
    let readiness = auth.readiness();
    // Fetch the keys now rather than on the first request, so that the
    // readiness probe can pass before traffic comes; a failure is logged
    // and retried on demand.
    let prefetch = auth.clone();
    tokio::spawn(async move {
        if let Err(e) = prefetch.prefetch_keys().await {
            tracing::warn!(error = %e, "prefetching the issuers' keys failed");
        }
    });
    // Before serving: what the fleet revoked is refused from the first
    // request on.
    let _fanout = match var("REDIS_URL") {
        Some(url) => {
            let fanout = RedisFanout::builder(url)
                .start(&revoked)
                .map_err(|e| e.to_string())?;
            let wait = var("REDIS_REPLAY_WAIT").map_or(Ok(10), |s| s.parse::<u64>());
            let wait = wait.map_err(|_| "REDIS_REPLAY_WAIT is a number of seconds")?;
            fanout.wait_replayed(Duration::from_secs(wait)).await;
            Some(fanout)
        }
        None => None,
    };
    let ssf = match (var("SSF_ISSUER"), var("SSF_PUSH_AUTHORIZATION")) {
        (Some(transmitter), Some(authorization)) => {
            let receiver = SsfReceiver::builder(transmitter, &audience, revoked.clone())
                .token_issuer(issuers[0])
                .build()
                .map_err(|e| e.to_string())?;
            Some(
                receiver
                    .push_endpoint(&authorization)
                    .map_err(|e| e.to_string())?,
            )
        }
        (None, None) => None,
        _ => return Err("SSF_ISSUER and SSF_PUSH_AUTHORIZATION go together".into()),
    };
    let mut app = Router::new()
        .route("/me", get(me))
        .route(
            "/documents",
            get(list_documents).route_layer(auth.require_all(["read"])),
        )
        .route(
            "/documents",
            post(create_document).route_layer(auth.require_all(["write"])),
        )
        .route(
            "/admin",
            get(admin).route_layer(auth.require_all(["admin"])),
        )
        .route(
            "/admin/revocations",
            post(revoke)
                .route_layer(auth.require_all(["admin"]))
                .with_state(revoked),
        )
        .route(
            "/reports",
            get(reports).route_layer(auth.require_all_roles(["auditor"])),
        )
        .route(
            "/sensitive",
            // Step-up (RFC 9470): a phishing-resistant login, at most ten
            // minutes old.
            get(reports).route_layer(auth.require_step_up(
                StepUp::acr_values(["phr"]).and_max_age(Duration::from_secs(600)),
            )),
        )
        .layer(auth)
        .route("/healthz", get(|| async { "ok" }))
        .route_service("/readyz", readiness);
    if let Some(prometheus) = prometheus {
        let render = move || {
            let text = prometheus.render();
            async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
        };
        app = app.route("/metrics", get(render));
    }
    if let Some(ssf) = ssf {
        // The transmitter authenticates with its own credential.
        app = app.route_service("/ssf/events", ssf);
    }
    if let Some(metadata) = metadata {
        // After the layer: the document is for clients without a token.
        app = app.route_service(metadata.path(), metadata.clone());
    }

    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{addr}");
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

async fn me(p: Principal) -> Json<Value> {
    Json(json!({
        "sub": p.subject(),
        "client_id": p.client_id(),
        "scopes": p.scopes().iter().collect::<Vec<_>>(),
    }))
}

async fn list_documents(p: Principal) -> Json<Value> {
    Json(json!({ "owner": p.subject(), "documents": [] }))
}

async fn create_document() -> (StatusCode, Json<Value>) {
    (StatusCode::CREATED, Json(json!({ "id": 1 })))
}

async fn admin() -> Json<Value> {
    Json(json!({ "admin": true }))
}

/// What an administrator revokes: one token, or a subject's tokens so far.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Revocation {
    Token { jti: String },
    Subject { iss: String, sub: String },
}

async fn revoke(State(list): State<RevocationList>, Json(what): Json<Revocation>) -> StatusCode {
    list.revoke(match what {
        Revocation::Token { jti } => Revoke::TokenId(jti),
        Revocation::Subject { iss, sub } => Revoke::SubjectBefore {
            issuer: iss,
            subject: sub,
            before: std::time::SystemTime::now(),
        },
    });
    StatusCode::NO_CONTENT
}

async fn reports() -> Json<Value> {
    Json(json!({ "ok": true }))
}
