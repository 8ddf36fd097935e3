//! The request path of `/mcp/{server}`, as phases over one context: admit the request (server,
//! Origin, in-flight slot, bounded body) → authenticate → open the session → read the message
//! and check its headers → by method: a `tools/call` is priced, reserved and metered; a
//! `tools/list` is filtered to the agent's allow list; everything else passes through,
//! authenticated. From the reservation on, the call's `PendingCharge` owns the hold: if the
//! client goes away while a phase awaits, dropping it settles the hold.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, Response};
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use super::body::{AnswerWatch, Metered, RelayBody};
use super::error::McpError;
use super::message::{self, Inbound, Kind};
use super::upstream::{self, Server, SESSION_HEADER};
use super::{McpAdapter, McpBody};
use crate::admission::{CallFacts, ClientIdentity, Finished, PendingCharge, Priced};
use crate::core::agent::AgentId;
use crate::core::events::{Outcome, Source};
use crate::core::pricing::{Price, Usage, MCP_PROVIDER};

/// What one request knows as it moves through the phases.
pub struct RequestCtx<'a> {
    pub server: &'a Server,
    pub request_id: Uuid,
    pub correlation_id: String,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub agent: AgentId,
    /// The upstream's own session id, from the client's sealed one.
    pub upstream_session: Option<String>,
    permit: OwnedSemaphorePermit,
}

/// A failure, with the id of the JSON-RPC request it answers (when it was read).
pub struct Failed(pub McpError, pub Option<Value>);

impl<E: Into<McpError>> From<E> for Failed {
    fn from(e: E) -> Failed {
        Failed(e.into(), None)
    }
}

pub async fn handle(
    adapter: &Arc<McpAdapter>,
    server_name: &str,
    req: Request<Incoming>,
    identity: ClientIdentity,
) -> Result<Response<McpBody>, Failed> {
    let server = adapter
        .servers
        .get(server_name)
        .ok_or_else(|| McpError::NoServer(server_name.to_owned()))?;
    check_origin(adapter, req.headers())?;
    let permit = Arc::clone(&adapter.in_flight)
        .try_acquire_owned()
        .map_err(|_| McpError::Overloaded)?;
    let method = req.method().clone();
    if ![Method::POST, Method::GET, Method::DELETE].contains(&method) {
        return Err(McpError::MethodNotAllowed(method.to_string()).into());
    }
    let (parts, body) = req.into_parts();
    let body = read_body(body, adapter.limits.body_bytes_max).await?;
    let agent = authenticate(adapter, &parts.headers, identity).await?;
    let upstream_session = open_session(adapter, server, &parts.headers, agent)?;
    let ctx = RequestCtx {
        server,
        request_id: Uuid::now_v7(),
        correlation_id: correlation_id(&parts.headers),
        method,
        headers: parts.headers,
        body,
        agent,
        upstream_session,
        permit,
    };
    if ctx.method != Method::POST {
        let idle = (ctx.method != Method::GET).then_some(adapter.limits.request_timeout);
        return pass(adapter, ctx, idle).await;
    }
    let inbound = message::parse(&ctx.body)?;
    let id = inbound.id.clone();
    dispatch(adapter, ctx, inbound)
        .await
        .map_err(|e| Failed(e, id))
}

async fn dispatch(
    adapter: &Arc<McpAdapter>,
    ctx: RequestCtx<'_>,
    inbound: Inbound,
) -> Result<Response<McpBody>, McpError> {
    message::check_headers(&ctx.headers, &inbound)?;
    match (inbound.kind, inbound.method.as_deref()) {
        (Kind::Request, Some("tools/call")) => call_tool(adapter, ctx, &inbound).await,
        (Kind::Request, Some("tools/list")) => list_tools(adapter, ctx).await,
        _ => pass(adapter, ctx, Some(adapter.limits.request_timeout))
            .await
            .map_err(|Failed(e, _)| e),
    }
}

/// An `Origin` header must name an allowed origin (DNS-rebinding protection); requests
/// without one (SDKs, agents) are not browsers.
fn check_origin(adapter: &McpAdapter, headers: &HeaderMap) -> Result<(), McpError> {
    let Some(origin) = headers.get(hyper::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    if adapter.allowed_origins.iter().any(|o| o == origin) {
        Ok(())
    } else {
        Err(McpError::ForbiddenOrigin(origin.to_owned()))
    }
}

async fn read_body(body: Incoming, bytes_max: usize) -> Result<Bytes, McpError> {
    crate::http::read_body(body, bytes_max)
        .await
        .map_err(|e| match e {
            crate::http::BodyError::TooLarge(n) => McpError::PayloadTooLarge(n),
            crate::http::BodyError::Read(m) => McpError::InvalidRequest(m),
        })
}

/// The calling agent, by the gateway's modes, and replay protection when it is on.
async fn authenticate(
    adapter: &McpAdapter,
    headers: &HeaderMap,
    identity: ClientIdentity,
) -> Result<AgentId, McpError> {
    let credentials = crate::http::credentials(headers, identity);
    let agent = adapter.admission.authenticate(&credentials).await?;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    adapter
        .admission
        .check_replay(agent, text("x-caracal-nonce"), text("x-caracal-timestamp"))
        .await?;
    Ok(agent)
}

/// The upstream session behind the client's `Mcp-Session-Id`, which must have been sealed for
/// this server and this agent (by any replica sharing the key).
fn open_session(
    adapter: &McpAdapter,
    server: &Server,
    headers: &HeaderMap,
    agent: AgentId,
) -> Result<Option<String>, McpError> {
    let Some(sealed) = headers.get(SESSION_HEADER) else {
        return Ok(None);
    };
    let sealed = sealed.to_str().map_err(|_| McpError::SessionNotFound)?;
    adapter
        .sessions
        .open(sealed, &server.name, agent)
        .map(Some)
        .ok_or(McpError::SessionNotFound)
}

fn correlation_id(headers: &HeaderMap) -> String {
    headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned)
}

/// Sends the request upstream and waits for its response headers (bounded).
async fn send(
    adapter: &McpAdapter,
    ctx: &RequestCtx<'_>,
) -> Result<Response<Incoming>, (McpError, Outcome)> {
    let request = ctx.server.request(
        ctx.method.clone(),
        &ctx.headers,
        ctx.upstream_session.as_deref(),
        &ctx.correlation_id,
        ctx.body.clone(),
    );
    let sent = tokio::time::timeout(
        adapter.limits.request_timeout,
        adapter.client.request(request),
    );
    match sent.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err((
            McpError::UpstreamUnreachable(e.to_string()),
            Outcome::UpstreamError,
        )),
        Err(_) => Err((McpError::UpstreamTimeout, Outcome::Timeout)),
    }
}

/// The client's view of the server's response head (session sealed for this agent).
fn head(
    adapter: &McpAdapter,
    ctx: &RequestCtx<'_>,
    upstream: &hyper::http::response::Parts,
) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = upstream.status;
    *response.headers_mut() = upstream::response_headers(&upstream.headers, |session| {
        adapter.sessions.seal(&ctx.server.name, ctx.agent, session)
    });
    if let Ok(value) = HeaderValue::from_str(&ctx.request_id.to_string()) {
        response.headers_mut().insert("x-caracal-request-id", value);
    }
    response
}

/// Everything but `tools/call` and `tools/list`: forwarded as it is, authenticated.
async fn pass(
    adapter: &McpAdapter,
    ctx: RequestCtx<'_>,
    idle: Option<std::time::Duration>,
) -> Result<Response<McpBody>, Failed> {
    let upstream = send(adapter, &ctx)
        .await
        .map_err(|(e, _)| Failed(e, None))?;
    let (parts, body) = upstream.into_parts();
    let (head, ()) = head(adapter, &ctx, &parts).into_parts();
    let relay = RelayBody::new(
        body,
        idle,
        adapter.limits.stream_bytes_max,
        None,
        Some(ctx.permit),
    );
    Ok(Response::from_parts(head, boxed(relay)))
}

/// `tools/call`: priced from the body's tool, reserved against every policy of the chain,
/// forwarded, and settled when its answer ends (or the stream is closed, or fails).
async fn call_tool(
    adapter: &Arc<McpAdapter>,
    ctx: RequestCtx<'_>,
    inbound: &Inbound,
) -> Result<Response<McpBody>, McpError> {
    let tool = inbound.name.clone().unwrap_or_default();
    let pending = admit(adapter, &ctx, &tool).await?;
    let (upstream, pending) = forward_call(adapter, &ctx, pending).await?;
    let (parts, body) = upstream.into_parts();
    let content_type = header_text(&parts.headers, CONTENT_TYPE);
    let limits = &adapter.limits;
    let id = inbound.id.clone().unwrap_or(Value::Null);
    let watch = AnswerWatch::new(
        id,
        content_type,
        limits.sse_event_bytes_max,
        limits.response_bytes_max,
    );
    let metered = Metered {
        pending,
        watch,
        status: parts.status.as_u16(),
    };
    let (head, ()) = head(adapter, &ctx, &parts).into_parts();
    let relay = RelayBody::new(
        body,
        Some(limits.request_timeout),
        limits.stream_bytes_max,
        Some(metered),
        Some(ctx.permit),
    );
    Ok(Response::from_parts(head, boxed(relay)))
}

/// The reservation of one call of `server/tool`. A tool outside the allow list is refused by
/// the reservation itself (at price zero, so the reason is `resource_not_allowed` even for an
/// unpriced tool); an unpriced tool follows `gateway.unknownPrice`.
async fn admit(
    adapter: &Arc<McpAdapter>,
    ctx: &RequestCtx<'_>,
    tool: &str,
) -> Result<PendingCharge, McpError> {
    let admission = &adapter.admission;
    let chain = admission.chain(ctx.agent).await?;
    let resource = format!("{}/{tool}", ctx.server.name);
    let allowed = super::tool_allowed(&chain, &resource);
    let call = CallFacts {
        request_id: ctx.request_id,
        correlation_id: ctx.correlation_id.clone(),
        chain,
        source: Source::Mcp,
        provider: MCP_PROVIDER.to_owned(),
        resource,
        operation: "tools/call".to_owned(),
        per_call: true,
    };
    let priced = match allowed {
        true => admission.price(&call)?,
        false => Priced {
            price: Price::free(super::chain_currency(&call.chain)),
            pricebook_version: 0,
        },
    };
    let one_call = Usage {
        calls: 1,
        ..Usage::default()
    };
    let estimate = priced
        .price
        .cost(&one_call)
        .map_err(|e| McpError::InvalidRequest(format!("cannot price the call: {e}")))?;
    Ok(admission.admit(call, priced, estimate).await?)
}

/// Sends the call; an upstream that cannot be reached or does not answer is settled here.
async fn forward_call(
    adapter: &McpAdapter,
    ctx: &RequestCtx<'_>,
    mut pending: PendingCharge,
) -> Result<(Response<Incoming>, PendingCharge), McpError> {
    pending.forwarding();
    match send(adapter, ctx).await {
        Ok(response) => Ok((response, pending)),
        Err((error, outcome)) => {
            pending.finish(Finished {
                outcome,
                usage: None,
                bytes: 0,
            });
            Err(error)
        }
    }
}

/// `tools/list`: the whole answer (bounded) with the tools the agent may not call removed.
async fn list_tools(
    adapter: &Arc<McpAdapter>,
    ctx: RequestCtx<'_>,
) -> Result<Response<McpBody>, McpError> {
    let chain = adapter.admission.chain(ctx.agent).await?;
    let upstream = send(adapter, &ctx).await.map_err(|(e, _)| e)?;
    let (parts, body) = upstream.into_parts();
    let limits = &adapter.limits;
    let read = Limited::new(body, limits.response_bytes_max).collect();
    let bytes = match tokio::time::timeout(limits.request_timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) => return Err(McpError::UpstreamUnreachable(e.to_string())),
        Err(_) => return Err(McpError::UpstreamTimeout),
    };
    let content_type = header_text(&parts.headers, CONTENT_TYPE);
    let server = &ctx.server.name;
    let allowed = |tool: &str| super::tool_allowed(&chain, &format!("{server}/{tool}"));
    let filtered = if parts.status.is_success() {
        super::filter::filter_tools_list(&bytes, content_type, limits.sse_event_bytes_max, &allowed)
            .map(|(body, _)| body)
            .ok_or_else(|| McpError::UpstreamUnreachable("unreadable tools/list answer".into()))?
    } else {
        bytes.to_vec()
    };
    let (mut head, ()) = head(adapter, &ctx, &parts).into_parts();
    head.headers.remove(CONTENT_LENGTH);
    let body = Full::new(Bytes::from(filtered)).map_err(|never| match never {});
    Ok(Response::from_parts(head, body.boxed()))
}

fn header_text(headers: &HeaderMap, name: hyper::header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn boxed(body: RelayBody) -> McpBody {
    body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .boxed()
}

/// A response the adapter built itself.
pub fn own(response: Response<crate::http::Body>) -> Response<McpBody> {
    response.map(|body| body.map_err(|never| match never {}).boxed())
}
