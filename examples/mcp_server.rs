//! An MCP server (the `rmcp` crate's streamable-HTTP transport) behind
//! tower-bearer, as the Model Context Protocol's authorization spec asks
//! of a protected server: tokens are checked on every request, their
//! audience must be this server's resource identifier (RFC 8707), every
//! 401 points to the protected resource metadata (RFC 9728), and that
//! document names the authorization server to get a token from.
//!
//! ```text
//! ISSUER=https://idp.example cargo run --example mcp_server --features mcp
//! ```
//!
//! | variable | meaning |
//! |---|---|
//! | `ISSUER` | required: the authorization server's issuer URL (keys by discovery) |
//! | `RESOURCE` | the resource identifier clients call, default `http://LISTEN_ADDR/mcp` |
//! | `LISTEN_ADDR` | default `127.0.0.1:3001` |
//!
//! Routes: `POST /mcp` (MCP; scope `mcp:tools`), and the metadata document
//! at `/.well-known/oauth-protected-resource/mcp` (open). One tool,
//! `whoami`, answers with the calling client's id.

use std::process::ExitCode;

use axum::Router;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use tower_bearer::{BearerAuthLayer, Principal, ProtectedResource};

/// The MCP server: one tool.
#[derive(Debug, Clone)]
struct Tools {
    #[allow(dead_code, reason = "read by the code #[tool_handler] writes")]
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Tools {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    /// The layer put the token's [`Principal`] into the HTTP request, and
    /// rmcp hands the request's parts to the tool.
    #[tool(description = "Who is calling: the client id of the access token")]
    async fn whoami(&self, Extension(parts): Extension<http::request::Parts>) -> String {
        let client = parts
            .extensions
            .get::<Principal>()
            .and_then(Principal::client_id);
        format!("client_id: {}", client.unwrap_or("(none)"))
    }
}

#[tool_handler]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp_server: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<(), String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let issuer = var("ISSUER").ok_or("ISSUER is required")?;
    let listen = var("LISTEN_ADDR").unwrap_or_else(|| "127.0.0.1:3001".into());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let resource = var("RESOURCE").unwrap_or_else(|| format!("http://{addr}/mcp"));

    // The resource identifier is also the audience tokens must carry.
    let auth = BearerAuthLayer::builder()
        .issuer(issuer)
        .protected_resource(
            ProtectedResource::new(&resource)
                .scopes_supported(["mcp:tools"])
                .name("tower-bearer MCP example"),
        )
        .build()
        .map_err(|e| e.to_string())?;
    let metadata = auth
        .resource_metadata()
        .ok_or("the metadata is configured above")?;

    // Stateless: every request carries its token and is checked on its
    // own, so no session outlives the token that opened it.
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true);
    let host = url::Url::parse(&resource)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .ok_or("RESOURCE is not a URL")?;
    config = config.with_allowed_hosts([host]);
    let mcp = StreamableHttpService::new(
        || Ok(Tools::new()),
        NeverSessionManager::default().into(),
        config,
    );

    let app = Router::new()
        .route_service("/mcp", mcp)
        .route_layer(auth.require_all(["mcp:tools"]))
        .layer(auth)
        // After the layer: the document is for clients without a token.
        .route_service(metadata.path(), metadata.clone());

    println!("listening on http://{addr}");
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}
