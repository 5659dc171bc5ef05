//! Certificate-bound tokens (RFC 8705) over real TLS on loopback, with
//! certificates made in the test (rcgen): an axum app behind a tokio-rustls
//! server that asks for client certificates and puts the one it got into
//! each request's extensions as a `ClientCertificate`, and a tonic server
//! with TLS whose `TlsConnectInfo::peer_certs` a one-line `map_request`
//! layer hands over the same way. Clients: reqwest (rustls) and tonic.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Server, ServerTlsConfig};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceExt as _;
use tower_bearer::testing::TestIssuer;
use tower_bearer::{BearerAuthLayer, ClientCertificate, Principal};

/// A CA, and leaf certificates it signs.
struct Pki {
    ca: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM.
struct Leaf {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        Self {
            ca,
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert, key }
    }

    fn server(&self) -> Leaf {
        self.leaf("api.test", ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn client(&self) -> Leaf {
        self.leaf("client.test", ExtendedKeyUsagePurpose::ClientAuth)
    }
}

impl Leaf {
    fn identity_pem(&self) -> String {
        format!("{}{}", self.key.serialize_pem(), self.cert.pem())
    }

    /// The certificate as the server sees it.
    fn shown(&self) -> ClientCertificate {
        ClientCertificate::from_der(self.cert.der().to_vec())
    }
}

/// Serves `app` over TLS on loopback, asking every client for a
/// certificate signed by `pki`'s CA (a client without one still gets
/// through the handshake), and putting the one it got into each request.
async fn serve_tls(pki: &Pki, app: Router) -> SocketAddr {
    let server = pki.server();
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    let provider = Arc::new(crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key.serialize_der()));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server.cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                // What the handshake saw: the client's certificate, if any.
                let shown = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .map(|c: &CertificateDer<'_>| ClientCertificate::from_der(c.to_vec()));
                let service = hyper::service::service_fn(move |mut req| {
                    if let Some(cert) = &shown {
                        req.extensions_mut().insert(cert.clone());
                    }
                    app.clone().oneshot(req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

fn validator(idp: &TestIssuer) -> BearerAuthLayer {
    BearerAuthLayer::builder()
        .issuer(idp.issuer())
        .audience(idp.audience())
        .build()
        .unwrap()
}

#[tokio::test]
async fn over_tls_with_axum_a_certificate_bound_token_needs_its_certificate() {
    let idp = TestIssuer::start().await.unwrap();
    let pki = Pki::new();
    let (mine, other) = (pki.client(), pki.client());
    let auth = validator(&idp);
    let app = Router::new()
        .route(
            "/me",
            get(|p: Principal| async move { p.subject().unwrap_or_default().to_owned() }),
        )
        .layer(auth);
    let addr = serve_tls(&pki, app).await;
    let token = idp.token().bound_to_certificate(&mine.shown()).sign();
    let status = |client: Option<&Leaf>| {
        let mut builder = reqwest::Client::builder()
            .resolve("api.test", addr)
            .tls_certs_only([reqwest::Certificate::from_der(pki.ca.der()).unwrap()]);
        if let Some(leaf) = client {
            builder = builder
                .identity(reqwest::Identity::from_pem(leaf.identity_pem().as_bytes()).unwrap());
        }
        let client = builder.build().unwrap();
        let token = token.clone();
        async move {
            client
                .get(format!("https://api.test:{}/me", addr.port()))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(status(Some(&mine)).await, 200);
    assert_eq!(status(Some(&other)).await, 401, "another certificate");
    assert_eq!(status(None).await, 401, "no certificate");
    // A bearer token needs no certificate.
    let bearer = reqwest::Client::builder()
        .resolve("api.test", addr)
        .tls_certs_only([reqwest::Certificate::from_der(pki.ca.der()).unwrap()])
        .build()
        .unwrap()
        .get(format!("https://api.test:{}/me", addr.port()))
        .bearer_auth(idp.token().sign())
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
}

#[tokio::test]
async fn over_tls_with_tonic_a_certificate_bound_token_needs_its_certificate() {
    let idp = TestIssuer::start().await.unwrap();
    let pki = Pki::new();
    let (mine, other) = (pki.client(), pki.client());
    let server = pki.server();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            server.cert.pem(),
            server.key.serialize_pem(),
        ))
        .client_ca_root(Certificate::from_pem(pki.ca.pem()))
        .client_auth_optional(true);
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = validator(&idp);
    // tonic's TLS names the client's certificate in the request's
    // extensions; hand it to the validator as a `ClientCertificate`.
    let layers = tower::ServiceBuilder::new()
        .map_request(|mut req: http::Request<_>| {
            let shown = req
                .extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.peer_certs())
                .and_then(|certs| {
                    certs
                        .first()
                        .map(|c| ClientCertificate::from_der(c.to_vec()))
                });
            if let Some(cert) = shown {
                req.extensions_mut().insert(cert);
            }
            req
        })
        .layer(auth);
    tokio::spawn(
        Server::builder()
            .tls_config(tls)
            .unwrap()
            .layer(layers)
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let token = idp.token().bound_to_certificate(&mine.shown()).sign();
    let code = |client: Option<&Leaf>| {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pki.ca.pem()))
            .domain_name("api.test");
        if let Some(leaf) = client {
            tls = tls.identity(Identity::from_pem(
                leaf.cert.pem(),
                leaf.key.serialize_pem(),
            ));
        }
        let token = token.clone();
        async move {
            let channel = Channel::from_shared(format!("https://127.0.0.1:{}", addr.port()))
                .unwrap()
                .tls_config(tls)
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut req = tonic::Request::new(HealthCheckRequest::default());
            req.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            match HealthClient::new(channel).check(req).await {
                Ok(_) => tonic::Code::Ok,
                Err(status) => status.code(),
            }
        }
    };
    assert_eq!(code(Some(&mine)).await, tonic::Code::Ok);
    assert_eq!(code(Some(&other)).await, tonic::Code::Unauthenticated);
    assert_eq!(code(None).await, tonic::Code::Unauthenticated);
}
