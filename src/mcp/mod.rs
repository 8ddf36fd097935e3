//! The MCP adapter: Streamable HTTP JSON-RPC in front of upstream MCP servers (`/mcp/{server}`),
//! both protocol eras the official SDK speaks (2026-07-28, stateless with routing headers, and
//! 2025-11-25, with `initialize`, `Mcp-Session-Id`, the GET stream and DELETE). Every
//! `tools/call` goes through the admission core like a model call; `tools/list` is filtered by
//! the agent's allow list; the rest passes through, authenticated. Owns the protocol only: the
//! listener and TLS are the role's (`roles/mcp.rs`), budgets and events are `admission`'s.

mod body;
pub mod error;
mod filter;
mod forward;
pub mod message;
pub mod session;
mod upstream;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::sync::Semaphore;

use self::error::McpError;
use self::session::{SessionKey, SessionKeyError};
use self::upstream::{Server, ServerError, UpstreamClient};
use crate::admission::{Admission, ClientIdentity};
use crate::config::McpAdapterConfig;
use crate::core::glob::glob_match_any;
use crate::core::money::Currency;
use crate::store::ChainPolicies;

/// The body of every adapter response.
pub type McpBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The path prefix of the per-server endpoints.
pub const PATH_PREFIX: &str = "/mcp/";

/// The bounds of the request path, from `mcpAdapter.*`.
#[derive(Debug, Clone)]
pub struct McpLimits {
    pub body_bytes_max: usize,
    pub response_bytes_max: usize,
    pub stream_bytes_max: u64,
    pub sse_event_bytes_max: usize,
    /// To the upstream's response headers, and between two chunks of a call's response.
    pub request_timeout: Duration,
}

impl McpLimits {
    pub fn from_config(config: &McpAdapterConfig) -> McpLimits {
        McpLimits {
            body_bytes_max: config.body_bytes_max,
            response_bytes_max: config.response_bytes_max,
            stream_bytes_max: config.stream_bytes_max,
            sse_event_bytes_max: config.sse_event_bytes_max,
            request_timeout: Duration::from_secs(config.request_timeout_seconds),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum McpSetupError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    SessionKey(#[from] SessionKeyError),
}

/// The adapter's state, shared by every request of a process.
pub struct McpAdapter {
    admission: Arc<Admission>,
    servers: HashMap<String, Server>,
    client: UpstreamClient,
    sessions: SessionKey,
    allowed_origins: Vec<String>,
    in_flight: Arc<Semaphore>,
    limits: McpLimits,
}

impl McpAdapter {
    pub fn new(
        config: &McpAdapterConfig,
        data_dir: &Path,
        admission: Arc<Admission>,
    ) -> Result<McpAdapter, McpSetupError> {
        Ok(McpAdapter {
            admission,
            servers: upstream::table(&config.servers)?,
            client: upstream::client(),
            sessions: SessionKey::load(config.session_key_file.as_deref(), data_dir)?,
            allowed_origins: config.allowed_origins.clone(),
            in_flight: Arc::new(Semaphore::new(
                usize::try_from(config.max_concurrent_requests).unwrap_or(usize::MAX),
            )),
            limits: McpLimits::from_config(config),
        })
    }

    pub fn server_names(&self) -> Vec<&str> {
        self.servers.keys().map(String::as_str).collect()
    }
}

/// Every request on the adapter's port: `/health`, `/ready`, `/metrics`, `/mcp/{server}`.
pub async fn handle(
    adapter: Arc<McpAdapter>,
    req: Request<Incoming>,
    identity: ClientIdentity,
) -> Response<McpBody> {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/health" => {
            let ok = serde_json::json!({ "status": "ok" });
            return forward::own(crate::http::json(StatusCode::OK, &ok));
        }
        "/ready" => {
            let (body, ok) = crate::telemetry::run_checks(&adapter.admission.ready_checks()).await;
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            return forward::own(crate::http::json(status, &body));
        }
        "/metrics" => {
            let text = crate::telemetry::render_metrics();
            let content_type = "text/plain; version=0.0.4";
            return forward::own(crate::http::text(StatusCode::OK, content_type, text));
        }
        _ => {}
    }
    let server = path.strip_prefix(PATH_PREFIX).unwrap_or("").to_owned();
    let result = match server.is_empty() || server.contains('/') {
        true => Err(forward::Failed(McpError::NoServer(path.clone()), None)),
        false => forward::handle(&adapter, &server, req, identity).await,
    };
    let (response, decision) = match result {
        Ok(response) => (response, "allow"),
        Err(forward::Failed(e, id)) => refused(e, id.as_ref()),
    };
    let status = if response.status().is_server_error() {
        "error"
    } else {
        "ok"
    };
    let route = if adapter.servers.contains_key(&server) {
        server
    } else {
        "none".into()
    };
    metrics::counter!("caracal_mcp_requests_total", "status" => status, "server" => route, "decision" => decision)
        .increment(1);
    metrics::histogram!("caracal_mcp_response_header_seconds")
        .record(started.elapsed().as_secs_f64());
    response
}

/// The response of a refused or failed request; a failure of ours is logged here, once.
fn refused(e: McpError, id: Option<&serde_json::Value>) -> (Response<McpBody>, &'static str) {
    let decision = match &e {
        McpError::Refused(crate::admission::Refusal::Denied { .. }) => "deny",
        _ => "none",
    };
    if e.status().is_server_error() {
        tracing::warn!(error = %e, code = e.code(), "MCP request failed");
    }
    metrics::counter!("caracal_mcp_errors_total", "code" => e.code()).increment(1);
    (forward::own(e.into_response(id)), decision)
}

/// Whether every active policy of the chain that has an allow list lets the agent call
/// `server/tool` (the rule the reservation applies, here to filter `tools/list`).
pub fn tool_allowed(chain: &ChainPolicies, server_tool: &str) -> bool {
    let resource = format!("{}:{server_tool}", crate::core::pricing::MCP_PROVIDER);
    chain
        .policies
        .iter()
        .filter(|p| p.spec.active && !p.spec.allow.is_empty())
        .all(|p| glob_match_any(&p.spec.allow, &resource))
}

fn chain_currency(chain: &ChainPolicies) -> Currency {
    chain
        .policies
        .first()
        .map_or(Currency::USD, |p| p.spec.currency)
}
