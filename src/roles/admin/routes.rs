//! Admin API routing: method + path → one `ops` call, JSON in and out. Every error is built by
//! `http::error` from an `OpsError`, so codes and statuses match the CLI's exit paths.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;

use super::ADMIN_BODY_BYTES_MAX;
use crate::bus::EventBus;
use crate::core::agent::AgentStatus;
use crate::http::{self, Body};
use crate::ops::{
    audit, AgentInput, AgentUpdateInput, KeyInput, Ops, OpsError, PolicyInput, PolicyUpdateInput,
    PriceInput,
};
use crate::store::Audit;

/// Most outbox events one `GET /v1/outbox` returns.
const OUTBOX_PAGE_MAX: usize = 1000;
/// Most events one `GET /v1/events/{topic}` returns.
const EVENTS_PAGE_MAX: usize = 10_000;

type Reply = Result<Response<Body>, OpsError>;

pub(super) async fn route(
    ops: &Ops,
    bus: &Arc<dyn EventBus>,
    req: Request<Incoming>,
) -> Response<Body> {
    match dispatch(ops, bus, req).await {
        Ok(response) => response,
        Err(e) => {
            let status =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status.is_server_error() {
                tracing::warn!(error = %e, "admin request failed");
            }
            http::error(status, e.code(), &e.to_string())
        }
    }
}

async fn dispatch(ops: &Ops, bus: &Arc<dyn EventBus>, req: Request<Incoming>) -> Reply {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let query = Query::parse(req.uri().query().unwrap_or(""));
    let audit = audit_of(&req);
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["v1", "agents"]) => {
            let include_deleted = query.get("include_deleted") == Some("true");
            ok(&ops
                .list_agents(query.get("parent"), include_deleted)
                .await?)
        }
        (&Method::POST, ["v1", "agents"]) => {
            let input: AgentInput = body(req).await?;
            created(&ops.create_agent(input, &audit).await?)
        }
        (&Method::GET, ["v1", "agents", id]) => ok(&ops.get_agent(id).await?),
        (&Method::PATCH, ["v1", "agents", id]) => {
            let id = (*id).to_owned();
            let input: AgentUpdateInput = body(req).await?;
            ok(&ops.update_agent(&id, input, &audit).await?)
        }
        (&Method::DELETE, ["v1", "agents", id]) => ok(&ops
            .set_agent_status(id, AgentStatus::Deleted, &audit)
            .await?),
        (&Method::POST, ["v1", "agents", id, "suspend"]) => ok(&ops
            .set_agent_status(id, AgentStatus::Suspended, &audit)
            .await?),
        (&Method::POST, ["v1", "agents", id, "reactivate"]) => ok(&ops
            .set_agent_status(id, AgentStatus::Active, &audit)
            .await?),
        (&Method::GET, ["v1", "keys"]) => ok(&ops.list_keys(query.get("agent_id")).await?),
        (&Method::POST, ["v1", "keys"]) => {
            let input: KeyInput = body(req).await?;
            created(&ops.create_key(input, &audit).await?)
        }
        (&Method::DELETE, ["v1", "keys", id]) => ok(&ops.revoke_key(id, &audit).await?),
        (&Method::GET, ["v1", "policies"]) => ok(&ops.list_policies(query.get("agent_id")).await?),
        (&Method::POST, ["v1", "policies"]) => {
            let input: PolicyInput = body(req).await?;
            created(&ops.create_policy(input, &audit).await?)
        }
        (&Method::GET, ["v1", "policies", id]) => ok(&ops.get_policy(id).await?),
        (&Method::PATCH, ["v1", "policies", id]) => {
            let id = (*id).to_owned();
            let input: PolicyUpdateInput = body(req).await?;
            ok(&ops.update_policy(&id, input, &audit).await?)
        }
        (&Method::DELETE, ["v1", "policies", id]) => ok(&ops.delete_policy(id, &audit).await?),
        (&Method::GET, ["v1", "policies", id, "history"]) => ok(&ops.policy_history(id).await?),
        (&Method::GET, ["v1", "prices"]) => prices(ops, &query).await,
        (&Method::PUT, ["v1", "prices"]) => {
            let input: PriceInput = body(req).await?;
            let (version, price) = ops.set_price(input).await?;
            ok(&serde_json::json!({ "pricebook_version": version, "price": price }))
        }
        (&Method::POST, ["v1", "prices", "import"]) => import_prices(ops, req).await,
        (&Method::GET, ["v1", "outbox"]) => outbox(ops, &query).await,
        (&Method::GET, ["v1", "events", topic]) => events(bus, topic, &query).await,
        _ => Ok(http::error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no route {method} {path}"),
        )),
    }
}

/// `GET /v1/prices`: one price (`provider` and `model`) or the whole pricebook.
async fn prices(ops: &Ops, query: &Query) -> Reply {
    match (query.get("provider"), query.get("model")) {
        (Some(provider), Some(model)) => ok(&ops.get_price(provider, model).await?),
        (None, None) => ok(&ops.list_prices().await?),
        _ => Err(OpsError::Invalid(
            "give both provider and model, or neither".into(),
        )),
    }
}

/// `POST /v1/prices/import`: a pricebook YAML body.
async fn import_prices(ops: &Ops, req: Request<Incoming>) -> Reply {
    let bytes = raw_body(req).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| OpsError::Invalid("pricebook must be UTF-8 YAML".into()))?;
    let (version, count) = ops.import_prices(text).await?;
    ok(&serde_json::json!({ "pricebook_version": version, "imported": count }))
}

/// `GET /v1/outbox?after=&limit=`: outbox records after an id, at most `OUTBOX_PAGE_MAX`.
async fn outbox(ops: &Ops, query: &Query) -> Reply {
    let after = query.parse_or("after", 0i64)?;
    let limit = query.parse_or("limit", 100usize)?.min(OUTBOX_PAGE_MAX);
    let records = ops
        .store()
        .outbox_after(after, limit)
        .await
        .map_err(OpsError::from)?;
    let events: Vec<serde_json::Value> = records
        .iter()
        .map(|r| serde_json::json!({ "id": r.id, "created_at": r.created_at, "event": r.event }))
        .collect();
    ok(&events)
}

/// `GET /v1/events/{topic}?partition=&offset=&limit=`: decoded events from the bus, in offset
/// order per partition (every partition when none is given). What a console consumer shows.
async fn events(bus: &Arc<dyn EventBus>, topic: &str, query: &Query) -> Reply {
    let partitions =
        crate::core::events::topic_partitions(topic).ok_or_else(|| OpsError::NotFound {
            kind: "topic",
            id: topic.to_owned(),
        })?;
    let limit = query.parse_or("limit", 100usize)?.min(EVENTS_PAGE_MAX);
    let offset = query.parse_or("offset", 0i64)?;
    let selected: Vec<i32> = match query.get("partition") {
        Some(_) => vec![query.parse_or("partition", 0i32)?],
        None => (0..partitions).collect(),
    };
    let mut out = Vec::new();
    for partition in selected {
        let messages = bus
            .fetch(topic, partition, offset, limit.saturating_sub(out.len()))
            .await
            .map_err(|e| OpsError::Unavailable(format!("event bus: {e}")))?;
        for message in messages {
            let decoded =
                crate::bus::avro::decode_framed(&message.value, crate::bus::avro::registered_kind)
                    .map(|d| event_json(&d.event))
                    .unwrap_or_else(|e| serde_json::json!({ "undecodable": e.to_string() }));
            out.push(decoded);
        }
    }
    ok(&out)
}

fn event_json(event: &crate::core::events::Event) -> serde_json::Value {
    use crate::core::events::Event;
    let value = match event {
        Event::Metering(e) => serde_json::to_value(e),
        Event::Decision(e) => serde_json::to_value(e),
        Event::Lifecycle(e) => serde_json::to_value(e),
        Event::Change(e) => serde_json::to_value(e),
    };
    value.unwrap_or(serde_json::Value::Null)
}

fn ok<T: serde::Serialize>(value: &T) -> Reply {
    Ok(http::json_of(StatusCode::OK, value))
}

fn created<T: serde::Serialize>(value: &T) -> Reply {
    Ok(http::json_of(StatusCode::CREATED, value))
}

/// Actor and reason of a change: `X-Caracal-Actor` (prefixed `api:`) and `X-Caracal-Reason`.
fn audit_of(req: &Request<Incoming>) -> Audit {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_owned())
    };
    let actor = header("x-caracal-actor")
        .filter(|a| !a.is_empty())
        .map_or_else(|| "api".to_owned(), |a| format!("api:{a}"));
    audit(actor, header("x-caracal-reason"))
}

async fn raw_body(req: Request<Incoming>) -> Result<bytes::Bytes, OpsError> {
    http::read_body(req.into_body(), ADMIN_BODY_BYTES_MAX)
        .await
        .map_err(|e| OpsError::Invalid(e.to_string()))
}

async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, OpsError> {
    let bytes = raw_body(req).await?;
    serde_json::from_slice(&bytes).map_err(|e| OpsError::Invalid(format!("invalid JSON body: {e}")))
}

/// Decoded query parameters.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(text: &str) -> Query {
        Query(
            text.split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, OpsError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                OpsError::Invalid(format!("query parameter {key}={v:?} is malformed"))
            }),
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, escaped) {
            (_, Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (other, None) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        let q = Query::parse("model=gpt-4o%2Bmini&provider=open+ai&bad=%zz&tail=%4");
        assert_eq!(q.get("model"), Some("gpt-4o+mini"));
        assert_eq!(q.get("provider"), Some("open ai"));
        assert_eq!(q.get("bad"), Some("%zz"));
        assert_eq!(q.get("tail"), Some("%4"));
        assert_eq!(q.get("missing"), None);
    }
}
