//! Protected resource metadata (RFC 9728): the document, member by member
//! against the RFC's definitions; the service that serves it; the
//! `resource_metadata` pointer in every challenge (HTTP Bearer and DPoP,
//! gRPC); the resource identifier as the default audience (RFC 8707); and
//! every configuration `build()` refuses.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use tower_bearer::testing::TestIssuer;
use tower_bearer::{
    Algorithm, BearerAuthLayer, Builder, CertificateFormat, CertificateHeader, ConfigError, Dpop,
    ProtectedResource, ResourceMetadata, StepUp, TokenError, TrustedIssuer, WELL_KNOWN_PATH,
};

const ISSUER: &str = "https://login.example.com";

fn builder() -> Builder {
    BearerAuthLayer::builder().issuer(ISSUER)
}

fn metadata(b: Builder) -> ResourceMetadata {
    b.build().unwrap().resource_metadata().unwrap()
}

fn document(m: &ResourceMetadata) -> Value {
    serde_json::from_str(m.json()).unwrap()
}

/// The resource identifier RFC 9728 §3.1 says a metadata URL was made
/// from: the well-known path taken out again.
fn resource_of(metadata_url: &str) -> String {
    let url = url::Url::parse(metadata_url).unwrap();
    let rest = url.path().strip_prefix(WELL_KNOWN_PATH).unwrap();
    let origin = url.origin().ascii_serialization();
    if rest.is_empty() {
        origin
    } else {
        format!("{origin}{rest}")
    }
}

/// An https URL, or http on a loopback host (RFC 9728 §2, §7.2).
fn is_https_or_loopback(s: &str) -> bool {
    let url = url::Url::parse(s).unwrap();
    url.scheme() == "https"
        || (url.scheme() == "http"
            && matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")))
}

#[test]
fn every_member_has_the_type_and_value_rfc_9728_defines() {
    let cert = CertificateHeader::new("x-client-cert", CertificateFormat::UrlEncodedPem).unwrap();
    let m = metadata(
        builder()
            .trusted_issuer(TrustedIssuer::new("https://b.example.com/oauth"))
            .trusted_issuer(TrustedIssuer::new("https://kc.example.com/realms/{tenant}"))
            .dpop(Dpop::required().algorithms([Algorithm::ES256, Algorithm::EdDSA]))
            .client_certificate_header(cert)
            .protected_resource(
                ProtectedResource::new("https://api.example.com/v1")
                    .authorization_server("https://kc.example.com/realms/acme")
                    // Already there: named once.
                    .authorization_server(ISSUER)
                    .scopes_supported(["read", "mcp:tools"])
                    .name("Example API")
                    .documentation("https://docs.example.com/api")
                    .policy_uri("https://example.com/privacy")
                    .tos_uri("https://example.com/terms")
                    .member("authorization_details_types_supported", json!(["payment"])),
            ),
    );
    let doc = document(&m);
    let members: Vec<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(members.len(), 12, "{members:?}");

    // resource: REQUIRED, the identifier the URL was made from (§3.3).
    assert_eq!(doc["resource"], "https://api.example.com/v1");
    assert_eq!(
        m.url(),
        "https://api.example.com/.well-known/oauth-protected-resource/v1"
    );
    assert_eq!(resource_of(m.url()), doc["resource"]);
    assert_eq!(m.path(), "/.well-known/oauth-protected-resource/v1");

    // authorization_servers: issuer identifiers (RFC 8414), JSON array
    // of https URLs; the template has no one issuer and is left out.
    assert_eq!(
        doc["authorization_servers"],
        json!([
            ISSUER,
            "https://b.example.com/oauth",
            "https://kc.example.com/realms/acme"
        ])
    );
    // scopes_supported, bearer_methods_supported: arrays of strings.
    assert_eq!(doc["scopes_supported"], json!(["read", "mcp:tools"]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    // The DPoP members (RFC 9728 §2, RFC 9449): an array of JWS alg
    // names, and a boolean.
    assert_eq!(
        doc["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA"])
    );
    assert_eq!(doc["dpop_bound_access_tokens_required"], json!(true));
    // RFC 8705 binding: a boolean.
    assert_eq!(
        doc["tls_client_certificate_bound_access_tokens"],
        json!(true)
    );
    // Human-readable name, URLs of pages for people.
    assert_eq!(doc["resource_name"], "Example API");
    for member in [
        "resource_documentation",
        "resource_policy_uri",
        "resource_tos_uri",
    ] {
        assert!(
            doc[member].as_str().is_some_and(is_https_or_loopback),
            "{member}"
        );
    }
    // The user's own member, as given.
    assert_eq!(
        doc["authorization_details_types_supported"],
        json!(["payment"])
    );
    for url in doc["authorization_servers"].as_array().unwrap() {
        assert!(is_https_or_loopback(url.as_str().unwrap()));
    }
}

#[test]
fn optional_members_follow_the_configuration() {
    // Default DPoP (allowed): its members say so; no certificate header:
    // no certificate member (false when absent); no scopes, no name.
    let doc = document(&metadata(
        builder().protected_resource(ProtectedResource::new("https://api.example.com")),
    ));
    assert_eq!(doc["dpop_bound_access_tokens_required"], json!(false));
    assert!(doc["dpop_signing_alg_values_supported"].is_array());
    for absent in [
        "tls_client_certificate_bound_access_tokens",
        "scopes_supported",
        "resource_name",
        "resource_documentation",
    ] {
        assert!(doc.get(absent).is_none(), "{absent}");
    }

    let doc = document(&metadata(builder().dpop(Dpop::off()).protected_resource(
        ProtectedResource::new("https://api.example.com").certificate_bound_tokens(true),
    )));
    assert!(doc.get("dpop_signing_alg_values_supported").is_none());
    assert!(doc.get("dpop_bound_access_tokens_required").is_none());
    assert_eq!(
        doc["tls_client_certificate_bound_access_tokens"],
        json!(true)
    );

    // Skipping the issuer check names no authorization server.
    let doc = document(&metadata(
        BearerAuthLayer::builder()
            .insecure_skip_issuer_check()
            .jwks_uri("https://login.example.com/jwks")
            .protected_resource(ProtectedResource::new("https://api.example.com")),
    ));
    assert!(doc.get("authorization_servers").is_none());
}

#[test]
fn the_document_url_is_made_from_the_resource_identifier() {
    for (resource, url) in [
        (
            "https://api.example.com",
            "https://api.example.com/.well-known/oauth-protected-resource",
        ),
        (
            "https://api.example.com/",
            "https://api.example.com/.well-known/oauth-protected-resource",
        ),
        (
            "https://api.example.com:8443/tenant/mcp",
            "https://api.example.com:8443/.well-known/oauth-protected-resource/tenant/mcp",
        ),
        (
            "http://127.0.0.1:3000/mcp",
            "http://127.0.0.1:3000/.well-known/oauth-protected-resource/mcp",
        ),
    ] {
        let m = metadata(builder().protected_resource(ProtectedResource::new(resource)));
        assert_eq!(m.url(), url);
        // The document names the resource exactly as configured.
        assert_eq!(document(&m)["resource"], resource);
        assert_eq!(
            resource_of(m.url()).trim_end_matches('/'),
            resource.trim_end_matches('/')
        );
    }
}

#[test]
fn build_refuses_metadata_a_client_could_not_use() {
    let refused = |b: Builder| match b.build() {
        Err(ConfigError::ResourceMetadata(why)) => why,
        other => panic!("expected a metadata error, got {other:?}"),
    };
    let with = |r: ProtectedResource| builder().protected_resource(r);
    for resource in [
        "api.example.com",
        "http://api.example.com/",
        "https://api.example.com/v1?tenant=a",
        "https://api.example.com/#top",
        "https://user:pw@api.example.com/",
        "https://API.example.com/",
        "https://api.example.com:443/",
        "https://api.example.com/a/../b",
        "",
    ] {
        refused(with(ProtectedResource::new(resource)));
    }
    let r = || ProtectedResource::new("https://api.example.com/mcp");
    refused(with(r().scopes_supported(["read write"])));
    refused(with(r().scopes_supported([""])));
    refused(with(r().documentation("javascript:alert(1)")));
    refused(with(r().policy_uri("not a url")));
    refused(with(r().authorization_server("http://idp.example.com")));
    refused(with(r().name(" ")));
    refused(with(r().cache_max_age(Duration::from_secs(400 * 86_400))));
    for own in [
        "resource",
        "authorization_servers",
        "dpop_bound_access_tokens_required",
        "",
    ] {
        refused(with(r().member(own, json!(1))));
    }
    refused(with(r().member("x", json!(1)).member("x", json!(2))));
    // Served at this API's public origin only (§3.3: the document is the
    // one of the URL the client called).
    refused(
        builder()
            .public_origin("https://other.example.com")
            .protected_resource(r()),
    );
    assert!(
        builder()
            .public_origin("https://api.example.com")
            .protected_resource(r())
            .build()
            .is_ok()
    );
}

fn app(auth: &BearerAuthLayer) -> Router {
    let metadata = auth.resource_metadata().unwrap();
    Router::new()
        .route("/mcp", get(|| async { "ok" }))
        .route(
            "/admin",
            get(|| async { "admin" }).route_layer(auth.require_all(["admin"])),
        )
        .route(
            "/sensitive",
            get(|| async { "sensitive" })
                .route_layer(auth.require_step_up(StepUp::acr_values(["phr"]))),
        )
        .layer(auth.clone())
        .route_service(metadata.path(), metadata.clone())
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    (parts.status, parts.headers, bytes.to_vec())
}

#[tokio::test]
async fn the_service_answers_get_and_head_with_the_document_and_405_otherwise() {
    let auth = builder()
        .protected_resource(
            ProtectedResource::new("https://api.example.com/mcp")
                .cache_max_age(Duration::from_secs(600)),
        )
        .build()
        .unwrap();
    let metadata = auth.resource_metadata().unwrap();
    let path = metadata.path();
    let router = app(&auth);
    for uri in [path.to_owned(), format!("{path}?a=1&b"), format!("{path}?")] {
        let (status, headers, body) =
            call(&router, Request::get(&uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=600");
        assert_eq!(body, metadata.json().as_bytes());
    }
    let (status, headers, _) =
        call(&router, Request::head(path).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    for method in [
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
    ] {
        let (status, headers, body) = call(
            &router,
            Request::builder()
                .method(method.clone())
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(headers[header::ALLOW], "GET, HEAD");
        assert!(body.is_empty());
    }
    // The default lifetime.
    let auth = builder()
        .protected_resource(ProtectedResource::new("https://api.example.com/mcp"))
        .build()
        .unwrap();
    let (_, headers, _) = call(&app(&auth), Request::get(path).body(Body::empty()).unwrap()).await;
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=3600");
}

/// Every `WWW-Authenticate` value of `headers`.
fn challenges(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_challenge_names_the_metadata_document() {
    let idp = TestIssuer::builder()
        .audience("https://api.example.com/mcp")
        .start()
        .await
        .unwrap();
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .realm("api")
        .protected_resource(ProtectedResource::new("https://api.example.com/mcp"))
        .build()
        .unwrap();
    let url = auth.resource_metadata().unwrap().url().to_owned();
    let pointer = format!("resource_metadata=\"{url}\"");
    let app = app(&auth);
    let get = |path: &str, auth: Option<String>| {
        let mut req = Request::get(path);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        req.body(Body::empty()).unwrap()
    };

    // No token: both schemes offered, each with the pointer, no error.
    let (status, headers, _) = call(&app, get("/mcp", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let all = challenges(&headers);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], format!("Bearer realm=\"api\", {pointer}"));
    assert!(
        all[1].starts_with(&format!("DPoP realm=\"api\", {pointer}, algs=\"")),
        "{all:?}"
    );

    // An invalid token, a DPoP proof error, a missing scope, a step-up.
    let expired = idp.token().expires_in(-3600).sign();
    let (status, headers, _) = call(&app, get("/mcp", Some(format!("Bearer {expired}")))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let all = challenges(&headers);
    assert!(
        all[0].starts_with(&format!(
            "Bearer realm=\"api\", {pointer}, error=\"invalid_token\""
        )),
        "{all:?}"
    );
    assert!(
        all[1].starts_with(&format!("DPoP realm=\"api\", {pointer}")),
        "{all:?}"
    );

    let token = idp.token().sign();
    let (status, headers, _) = call(&app, get("/mcp", Some(format!("DPoP {token}")))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let all = challenges(&headers);
    assert!(all.iter().all(|c| c.contains(&pointer)), "{all:?}");
    assert!(
        all[0].starts_with("DPoP ") && all[0].contains("error="),
        "{all:?}"
    );

    let (status, headers, _) = call(&app, get("/admin", Some(format!("Bearer {token}")))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(challenges(&headers)[0].contains(&pointer));

    let (status, headers, _) = call(&app, get("/sensitive", Some(format!("Bearer {token}")))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let first = &challenges(&headers)[0];
    assert!(
        first.contains(&pointer) && first.contains("insufficient_user_authentication"),
        "{first}"
    );

    // gRPC refusals carry it in their www-authenticate metadata.
    let req = Request::post("/mcp")
        .header(header::CONTENT_TYPE, "application/grpc")
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = call(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["grpc-status"], "16");
    assert!(challenges(&headers)[0].contains(&pointer));

    // The document stays reachable without a token, the API does not.
    let (status, _, _) = call(&app, get("/mcp", Some(format!("Bearer {token}")))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn without_metadata_challenges_are_as_before() {
    let idp = TestIssuer::builder().start().await.unwrap();
    let auth = common::validator(&idp);
    assert!(auth.resource_metadata().is_none());
    let app = Router::new()
        .route("/mcp", get(|| async { "ok" }))
        .layer(auth);
    let (_, headers, _) = call(&app, Request::get("/mcp").body(Body::empty()).unwrap()).await;
    assert!(
        challenges(&headers)
            .iter()
            .all(|c| !c.contains("resource_metadata"))
    );
}

#[tokio::test]
async fn the_resource_identifier_is_the_audience_unless_one_is_given() {
    let resource = "https://api.example.com/mcp";
    let idp = TestIssuer::builder()
        .audience(resource)
        .start()
        .await
        .unwrap();
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .protected_resource(ProtectedResource::new(resource))
        .build()
        .unwrap();
    assert!(auth.validate(&idp.token().sign()).await.is_ok());
    let other = idp.token().claim("aud", "https://other.example.com").sign();
    assert_eq!(
        auth.validate(&other).await.unwrap_err(),
        tower_bearer::AuthError::InvalidToken(TokenError::WrongAudience)
    );

    // An audience given explicitly replaces it.
    let auth = BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience("orders-api")
        .protected_resource(ProtectedResource::new(resource))
        .build()
        .unwrap();
    assert_eq!(
        auth.validate(&idp.token().sign()).await.unwrap_err(),
        tower_bearer::AuthError::InvalidToken(TokenError::WrongAudience)
    );
    let orders = idp.token().claim("aud", "orders-api").sign();
    assert!(auth.validate(&orders).await.is_ok());
}
