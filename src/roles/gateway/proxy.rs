//! The request path, as phases over one context: authenticate → route → estimate → reserve →
//! forward (stream + meter) → settle → emit. Each phase returns `Result<_, GatewayError>`;
//! settlement hangs off the response body (see `meter.rs`), not off this function.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::{Duration as ChronoDuration, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response};
use uuid::Uuid;

use super::error::GatewayError;
use super::meter::{MeteredBody, UsageTap};
use super::settle::{decision_event, PendingCharge};
use super::upstream::{response_headers, Route};
use super::GatewayState;
use crate::core::decision::DenyReason;
use crate::core::estimate::{ensure_stream_usage, estimate_cost, request_facts};
use crate::core::money::Money;
use crate::core::pricing::Price;
use crate::core::usage::Provider as UsageProvider;
use crate::http::read_body;
use crate::spend::{HoldId, ReserveOutcome, ReserveRequest};
use crate::store::ChainPolicies;

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
    pub started: Instant,
}

pub async fn handle(
    state: Arc<GatewayState>,
    req: Request<Incoming>,
    client_identity: super::identity::ClientIdentity,
) -> Result<Response<GatewayBody>, GatewayError> {
    let ctx = RequestCtx {
        request_id: Uuid::now_v7(),
        correlation_id: req
            .headers()
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned),
        started: Instant::now(),
    };
    let permit = Arc::clone(&state.in_flight)
        .try_acquire_owned()
        .map_err(|_| GatewayError::Overloaded)?;

    // The body is read (bounded) before anything can refuse the request, so an early answer
    // never resets an HTTP/2 stream that the client is still sending.
    let (parts, body) = req.into_parts();
    let mut body = read_body(body, state.limits.body_bytes_max)
        .await
        .map_err(|e| match e {
            crate::http::BodyError::TooLarge(n) => GatewayError::PayloadTooLarge(n),
            crate::http::BodyError::Read(m) => GatewayError::InvalidRequest(m),
        })?;

    // authenticate
    let agent_id = state
        .auth
        .authenticate(&parts.headers, &client_identity)
        .await?;
    if let Some(window) = state.limits.replay_window {
        check_replay(&state, agent_id, &parts.headers, window).await?;
    }

    // route
    let path = parts.uri.path().to_owned();
    let (route, rest) = state
        .routes
        .resolve(&path)
        .map(|(r, rest)| (r.clone(), rest.to_owned()))
        .ok_or_else(|| GatewayError::NoRoute(path.clone()))?;
    let query = parts.uri.query().map(str::to_owned);

    // estimate
    let chain = state.chain(agent_id).await?;
    let facts =
        request_facts(&rest, &body).map_err(|e| GatewayError::InvalidRequest(e.to_string()))?;
    let provider = route.provider_name();
    let model = facts
        .model
        .clone()
        .unwrap_or_else(|| route.prefix.trim_start_matches('/').to_owned());
    let book = state.pricebook();
    let price = book.get(provider, &model).cloned();
    let (price, estimate) = match price {
        Some(price) => {
            let estimate = estimate_cost(&price, &facts)
                .map_err(|e| GatewayError::InvalidRequest(format!("cannot estimate cost: {e}")))?;
            (price, estimate)
        }
        None if state.allow_unknown_price => {
            (Price::free(chain_currency(&chain)), Default::default())
        }
        None => {
            state.emit_denied(&ctx, &chain, provider, &model, DenyReason::UnknownPrice)?;
            return Err(GatewayError::Denied {
                reason: DenyReason::UnknownPrice,
                policy_id: None,
                remaining: None,
            });
        }
    };
    if facts.stream && route.provider == crate::config::Provider::Openai {
        if let Some(rewritten) = ensure_stream_usage(&body) {
            body = Bytes::from(rewritten);
        }
    }

    // reserve
    let now = Utc::now();
    let hold_id = HoldId(Uuid::now_v7());
    let evaluation_started = Instant::now();
    let outcome = state
        .spend
        .reserve(ReserveRequest {
            hold_id,
            chain: chain.chain.clone(),
            policies: chain.policies.clone(),
            resource: format!("{provider}:{model}"),
            estimate: Money {
                micros: estimate,
                currency: price.currency,
            },
            now,
            expires_at: now + ChronoDuration::seconds(state.limits.hold_seconds),
        })
        .await
        .map_err(|e| GatewayError::DependencyUnavailable {
            what: "spend cache",
            detail: e.to_string(),
        })?;
    let evaluation = evaluation_started.elapsed();
    metrics::histogram!("caracal_policy_evaluation_seconds").record(evaluation.as_secs_f64());
    let decision = match &outcome {
        ReserveOutcome::Denied(decision) => decision,
        ReserveOutcome::Reserved(reservation) => &reservation.decision,
    };
    let event = decision_event(
        &ctx,
        &chain,
        provider,
        &model,
        estimate,
        price.currency,
        decision,
        evaluation,
    );
    let reservation = match outcome {
        ReserveOutcome::Denied(decision) => {
            state.emit(event)?;
            return Err(GatewayError::Denied {
                reason: decision.reason.unwrap_or(DenyReason::BudgetExceeded),
                policy_id: decision.policy_id,
                remaining: decision.remaining,
            });
        }
        ReserveOutcome::Reserved(reservation) => reservation,
    };
    let pending = PendingCharge::new(
        Arc::clone(&state),
        &ctx,
        &chain,
        &route,
        &rest,
        model.clone(),
        price.clone(),
        estimate,
        &reservation,
        book.version,
        permit,
    );
    if let Err(e) = state.emit(event) {
        pending.release();
        return Err(e);
    }

    // forward
    let forward = forward(
        &state,
        &route,
        &rest,
        query.as_deref(),
        &parts.headers,
        parts.method,
        body,
        &ctx,
    )
    .await;
    let (upstream_parts, upstream_body) = match forward {
        Ok(response) => response.into_parts(),
        Err(e) => {
            pending.upstream_failed(&e);
            return Err(e);
        }
    };
    let content_type = upstream_parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let usage_provider = match route.provider {
        crate::config::Provider::Openai => UsageProvider::OpenAi,
        crate::config::Provider::Anthropic => UsageProvider::Anthropic,
        crate::config::Provider::Generic => UsageProvider::Generic,
    };
    let tap = UsageTap::for_response(
        usage_provider,
        &content_type,
        route.provider != crate::config::Provider::Generic,
    );
    let upstream_status = upstream_parts.status;
    let settle = pending.into_settle(upstream_status.as_u16(), ctx.started.elapsed());
    let metered = MeteredBody::new(
        upstream_body,
        tap,
        state.limits.request_timeout,
        Box::new(settle),
    );

    let mut response = Response::new(
        metered
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            .boxed(),
    );
    *response.status_mut() = upstream_status;
    *response.headers_mut() = response_headers(&upstream_parts.headers);
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id.to_string()) {
        headers.insert("x-caracal-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.correlation_id) {
        headers.insert("x-correlation-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&estimate.to_string()) {
        headers.insert("x-caracal-reserved", v);
    }
    if let Some(remaining) = reservation.decision.remaining {
        if let Ok(v) = HeaderValue::from_str(&remaining.to_string()) {
            headers.insert("x-caracal-budget-remaining", v);
        }
    }
    Ok(response)
}

/// Replay protection: a fresh `X-Caracal-Timestamp` (Unix seconds, within the window) and an
/// `X-Caracal-Nonce` this agent has not used within the window, remembered in the spend cache
/// so every replica sees it.
async fn check_replay(
    state: &GatewayState,
    agent: crate::core::agent::AgentId,
    headers: &hyper::HeaderMap,
    window: std::time::Duration,
) -> Result<(), GatewayError> {
    use crate::spend::nonces::{NONCE_BYTES_MAX, NONCE_BYTES_MIN};
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let nonce = header("x-caracal-nonce")
        .filter(|n| (NONCE_BYTES_MIN..=NONCE_BYTES_MAX).contains(&n.len()))
        .ok_or(GatewayError::Unauthenticated(
            "replay protection: send X-Caracal-Nonce (16 to 128 characters)",
        ))?;
    let timestamp: i64 = header("x-caracal-timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or(GatewayError::Unauthenticated(
            "replay protection: send X-Caracal-Timestamp (Unix seconds)",
        ))?;
    let now = Utc::now();
    let window_seconds = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    if (now.timestamp() - timestamp).abs() > window_seconds {
        return Err(GatewayError::Unauthenticated(
            "replay protection: X-Caracal-Timestamp is outside the accepted window",
        ));
    }
    let expires = now + ChronoDuration::seconds(window_seconds.saturating_mul(2));
    let fresh = state
        .spend
        .remember_nonce(&format!("{agent}:{nonce}"), expires, now)
        .await
        .map_err(|e| GatewayError::DependencyUnavailable {
            what: "spend cache",
            detail: e.to_string(),
        })?;
    if fresh {
        Ok(())
    } else {
        Err(GatewayError::Unauthenticated(
            "replay protection: this nonce was already used",
        ))
    }
}

fn chain_currency(chain: &ChainPolicies) -> crate::core::money::Currency {
    chain
        .policies
        .first()
        .map_or(crate::core::money::Currency::USD, |p| p.spec.currency)
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    state: &GatewayState,
    route: &Route,
    rest: &str,
    query: Option<&str>,
    headers: &hyper::HeaderMap,
    method: hyper::Method,
    body: Bytes,
    ctx: &RequestCtx,
) -> Result<Response<Incoming>, GatewayError> {
    let uri = route
        .upstream_uri(rest, query)
        .map_err(GatewayError::UpstreamUnreachable)?;
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    let correlation =
        HeaderValue::from_str(&ctx.correlation_id).unwrap_or(HeaderValue::from_static("invalid"));
    *request.headers_mut() = route.upstream_headers(headers, &[("x-correlation-id", correlation)]);
    match tokio::time::timeout(state.limits.request_timeout, state.client.request(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(GatewayError::UpstreamUnreachable(e.to_string())),
        Err(_) => Err(GatewayError::UpstreamTimeout),
    }
}
