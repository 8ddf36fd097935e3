//! The request path, as phases over one context: read → authenticate → route → estimate →
//! reserve → forward → respond (stream + meter). Each phase is a short function returning
//! `Result<_, GatewayError>`. From `reserve` on, the call's `PendingCharge` owns the hold: if the
//! client goes away while a phase awaits (hyper drops this future), dropping it settles the hold.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{HeaderMap, Request, Response};
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use super::error::GatewayError;
use super::meter::{MeteredBody, UsageTap};
use super::upstream::{response_headers, Route};
use super::GatewayState;
use crate::admission::{CallFacts, ClientIdentity, Finished, PendingCharge, Priced};
use crate::config::Provider;
use crate::core::agent::AgentId;
use crate::core::estimate::{ensure_stream_usage, estimate_cost, request_facts};
use crate::core::events::{Outcome, Source};
use crate::core::money::Micros;
use crate::core::usage::Provider as UsageProvider;
use crate::http::read_body;

/// The body type of every gateway response.
pub type GatewayBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A response Caracal built itself, as a gateway response.
pub fn full(response: Response<crate::http::Body>) -> Response<GatewayBody> {
    response.map(|body| body.map_err(|never| match never {}).boxed())
}

/// What one request knows as it moves through the phases.
pub struct RequestCtx {
    pub request_id: Uuid,
    pub correlation_id: String,
    parts: hyper::http::request::Parts,
    body: Bytes,
    /// The gateway added `stream_options.include_usage` the client did not ask for.
    usage_injected: bool,
    /// The in-flight slot, released when the response body is gone.
    permit: OwnedSemaphorePermit,
}

/// Where and what: the route, the path below its prefix, and the priced call.
struct Routed {
    route: Arc<Route>,
    rest: String,
}

struct Estimated {
    call: CallFacts,
    priced: Priced,
    estimate: Micros,
}

pub async fn handle(
    state: Arc<GatewayState>,
    req: Request<Incoming>,
    identity: ClientIdentity,
) -> Result<Response<GatewayBody>, GatewayError> {
    let mut ctx = read(&state, req).await?;
    let agent = authenticate(&state, &ctx, identity).await?;
    let routed = route(&state, &ctx)?;
    let estimated = estimate(&state, &mut ctx, &routed, agent).await?;
    let pending = state
        .admission
        .admit(estimated.call, estimated.priced, estimated.estimate)
        .await?;
    let (upstream, pending) = forward(&state, &ctx, &routed, pending).await?;
    Ok(respond(&state, ctx, &routed, pending, upstream))
}

/// Takes an in-flight slot and reads the body (bounded) before anything can refuse the
/// request, so an early answer never resets an HTTP/2 stream the client is still sending.
async fn read(state: &GatewayState, req: Request<Incoming>) -> Result<RequestCtx, GatewayError> {
    let correlation_id = req
        .headers()
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned);
    let permit = Arc::clone(&state.in_flight)
        .try_acquire_owned()
        .map_err(|_| GatewayError::Overloaded)?;
    let (parts, body) = req.into_parts();
    let body = read_body(body, state.limits.body_bytes_max)
        .await
        .map_err(|e| match e {
            crate::http::BodyError::TooLarge(n) => GatewayError::PayloadTooLarge(n),
            crate::http::BodyError::Read(m) => GatewayError::InvalidRequest(m),
        })?;
    Ok(RequestCtx {
        request_id: Uuid::now_v7(),
        correlation_id,
        parts,
        body,
        usage_injected: false,
        permit,
    })
}

/// The calling agent, and replay protection when it is on.
async fn authenticate(
    state: &GatewayState,
    ctx: &RequestCtx,
    identity: ClientIdentity,
) -> Result<AgentId, GatewayError> {
    let headers = &ctx.parts.headers;
    let credentials = crate::http::credentials(headers, identity);
    let agent = state.admission.authenticate(&credentials).await?;
    state
        .admission
        .check_replay(
            agent,
            header(headers, "x-caracal-nonce"),
            header(headers, "x-caracal-timestamp"),
        )
        .await?;
    Ok(agent)
}

fn route(state: &GatewayState, ctx: &RequestCtx) -> Result<Routed, GatewayError> {
    let path = ctx.parts.uri.path();
    let (route, rest) = state
        .routes
        .resolve(path)
        .ok_or_else(|| GatewayError::NoRoute(path.to_owned()))?;
    Ok(Routed {
        route: Arc::clone(route),
        rest: rest.to_owned(),
    })
}

/// The call's resource, price and estimated cost; for an OpenAI stream, asks the upstream to
/// report usage in its last chunk (and remembers to take that chunk out again for a client that
/// did not ask for it).
async fn estimate(
    state: &GatewayState,
    ctx: &mut RequestCtx,
    routed: &Routed,
    agent: AgentId,
) -> Result<Estimated, GatewayError> {
    let chain = state.admission.chain(agent).await?;
    let facts = request_facts(&routed.rest, &ctx.body)
        .map_err(|e| GatewayError::InvalidRequest(e.to_string()))?;
    let route = &routed.route;
    let call = CallFacts {
        request_id: ctx.request_id,
        correlation_id: ctx.correlation_id.clone(),
        chain,
        source: Source::Gateway,
        provider: route.provider_name().to_owned(),
        resource: facts
            .model
            .clone()
            .unwrap_or_else(|| route.prefix.trim_start_matches('/').to_owned()),
        operation: operation_of(&routed.rest),
        per_call: route.provider == Provider::Generic,
    };
    let priced = state.admission.price(&call)?;
    let estimate = estimate_cost(&priced.price, &facts)
        .map_err(|e| GatewayError::InvalidRequest(format!("cannot estimate cost: {e}")))?;
    if facts.stream && route.provider == Provider::Openai {
        if let Some(rewritten) = ensure_stream_usage(&ctx.body) {
            ctx.body = Bytes::from(rewritten);
            ctx.usage_injected = true;
        }
    }
    Ok(Estimated {
        call,
        priced,
        estimate,
    })
}

/// Sends the call upstream and waits for its response headers (bounded by `requestTimeout`).
/// An upstream that cannot be reached or does not answer is settled here as such.
async fn forward(
    state: &GatewayState,
    ctx: &RequestCtx,
    routed: &Routed,
    mut pending: PendingCharge,
) -> Result<(Response<Incoming>, PendingCharge), GatewayError> {
    let route = &routed.route;
    let uri = route
        .upstream_uri(&routed.rest, ctx.parts.uri.query())
        .map_err(GatewayError::UpstreamUnreachable)?;
    let mut request = Request::new(Full::new(ctx.body.clone()));
    *request.method_mut() = ctx.parts.method.clone();
    *request.uri_mut() = uri;
    let correlation =
        HeaderValue::from_str(&ctx.correlation_id).unwrap_or(HeaderValue::from_static("invalid"));
    *request.headers_mut() =
        route.upstream_headers(&ctx.parts.headers, &[("x-correlation-id", correlation)]);
    pending.forwarding();
    let sent = tokio::time::timeout(state.limits.request_timeout, state.client.request(request));
    let (error, outcome) = match sent.await {
        Ok(Ok(response)) => return Ok((response, pending)),
        Ok(Err(e)) => (
            GatewayError::UpstreamUnreachable(e.to_string()),
            Outcome::UpstreamError,
        ),
        Err(_) => (GatewayError::UpstreamTimeout, Outcome::Timeout),
    };
    pending.finish(Finished {
        outcome,
        usage: None,
        bytes: 0,
    });
    Err(error)
}

/// The upstream's response, streamed through untouched while the usage tap reads it; the
/// `PendingCharge` moves into the body, which settles it however the body ends.
fn respond(
    state: &GatewayState,
    ctx: RequestCtx,
    routed: &Routed,
    mut pending: PendingCharge,
    upstream: Response<Incoming>,
) -> Response<GatewayBody> {
    let (parts, body) = upstream.into_parts();
    pending.answered(parts.status.as_u16());
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let provider = routed.route.provider;
    let tap = UsageTap::for_response(
        usage_provider(provider),
        content_type,
        provider != Provider::Generic,
    );
    let (reserved, remaining) = (pending.reserved(), pending.remaining());
    let timeout = state.limits.request_timeout;
    let metered = MeteredBody::new(body, tap, timeout, pending, ctx.permit, ctx.usage_injected);
    let mut response = Response::new(
        metered
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            .boxed(),
    );
    *response.status_mut() = parts.status;
    *response.headers_mut() = response_headers(&parts.headers);
    let headers = response.headers_mut();
    let mut put = |name: &'static str, value: String| {
        // Takes the string's buffer as the value: no copy.
        if let Ok(v) = HeaderValue::try_from(value) {
            headers.insert(name, v);
        }
    };
    put("x-caracal-request-id", ctx.request_id.to_string());
    put("x-correlation-id", ctx.correlation_id);
    put("x-caracal-reserved", reserved.to_string());
    if let Some(remaining) = remaining {
        put("x-caracal-budget-remaining", remaining.to_string());
    }
    response
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn usage_provider(provider: Provider) -> UsageProvider {
    match provider {
        Provider::Openai => UsageProvider::OpenAi,
        Provider::Anthropic => UsageProvider::Anthropic,
        Provider::Generic => UsageProvider::Generic,
    }
}

/// `chat.completions` from `/v1/chat/completions`: the operation label of an event.
fn operation_of(rest: &str) -> String {
    let trimmed = rest.trim_start_matches('/');
    let without_version = trimmed.strip_prefix("v1/").unwrap_or(trimmed);
    without_version.replace('/', ".")
}

#[cfg(test)]
mod tests {
    use super::operation_of;

    #[test]
    fn operations_are_named_after_the_endpoint() {
        assert_eq!(operation_of("/v1/chat/completions"), "chat.completions");
        assert_eq!(operation_of("/v1/messages"), "messages");
        assert_eq!(operation_of("/embeddings"), "embeddings");
    }
}
