//! Settlement and the gateway's events: a reserved request becomes a `PendingCharge`; when its
//! response ends (or fails, or the client leaves) a task posts the actual cost — the upstream's
//! reported usage priced by the pricebook, or the reservation when usage is unknown — publishes
//! the MeteringEvent durably, and only then settles the hold. Runs outside the response body.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use super::error::GatewayError;
use super::meter::{Finished, Settle};
use super::proxy::RequestCtx;
use super::upstream::Route;
use super::GatewayState;
use crate::core::decision::Decision;
use crate::core::events::{
    DecisionKind, Event, MeteringEvent, Outcome, PolicyDecision, PolicyEvaluationRecord, Source,
    UnixMicros,
};
use crate::core::money::{Currency, Micros};
use crate::core::policy::PolicyId;
use crate::core::pricing::{Price, Usage};
use crate::spend::{HoldId, Reservation};
use crate::store::ChainPolicies;

/// Attempts to publish a MeteringEvent before giving up (the hold then expires and the
/// sweeper posts the reservation, so the charge is still not lost).
const PUBLISH_ATTEMPTS_MAX: u32 = 5;
const PUBLISH_RETRY_BASE: Duration = Duration::from_millis(50);

/// The fixed facts of one metered request.
struct ChargeFacts {
    request_id: Uuid,
    correlation_id: String,
    agent_id: crate::core::agent::AgentId,
    parent_id: Option<crate::core::agent::AgentId>,
    root_agent_id: crate::core::agent::AgentId,
    ancestor_ids: Vec<crate::core::agent::AgentId>,
    provider: String,
    resource: String,
    operation: String,
    price: Price,
    reserved: Micros,
    hold_id: HoldId,
    policy_ids: Vec<PolicyId>,
    pricebook_version: i64,
    generic: bool,
}

/// A reserved request whose response has not started yet.
pub struct PendingCharge {
    state: Arc<GatewayState>,
    facts: ChargeFacts,
    _permit: OwnedSemaphorePermit,
}

impl PendingCharge {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        state: Arc<GatewayState>,
        ctx: &RequestCtx,
        chain: &ChainPolicies,
        route: &Route,
        rest: &str,
        resource: String,
        price: Price,
        reserved: Micros,
        reservation: &Reservation,
        pricebook_version: i64,
        permit: OwnedSemaphorePermit,
    ) -> PendingCharge {
        let agent = chain.chain.agent();
        let mut policy_ids: Vec<PolicyId> = reservation.charged.iter().map(|(id, _)| *id).collect();
        policy_ids.dedup();
        state.track_hold(reservation.hold_id);
        PendingCharge {
            facts: ChargeFacts {
                request_id: ctx.request_id,
                correlation_id: ctx.correlation_id.clone(),
                agent_id: agent.id,
                parent_id: agent.parent_id,
                root_agent_id: chain.chain.root().id,
                ancestor_ids: chain.chain.ancestors().iter().map(|a| a.id).collect(),
                provider: route.provider_name().to_owned(),
                resource,
                operation: operation_of(rest),
                price,
                reserved,
                hold_id: reservation.hold_id,
                policy_ids,
                pricebook_version,
                generic: route.provider == crate::config::Provider::Generic,
            },
            state,
            _permit: permit,
        }
    }

    /// The request will not be forwarded: void the hold, charge nothing.
    pub fn release(self) {
        let state = Arc::clone(&self.state);
        let hold = self.facts.hold_id;
        tokio::spawn(async move {
            state.untrack_hold(hold);
            if let Err(e) = state
                .spend
                .settle(hold, Micros::ZERO, chrono::Utc::now())
                .await
            {
                tracing::warn!(error = %e, "could not void a hold; it will expire");
            }
        });
    }

    /// The upstream never answered: nothing is reported, nothing is charged; the attempt is
    /// still recorded.
    pub fn upstream_failed(self, error: &GatewayError) {
        let outcome = match error {
            GatewayError::UpstreamTimeout => Outcome::Timeout,
            _ => Outcome::UpstreamError,
        };
        let task = SettleTask {
            pending: self,
            upstream_status: None,
            upstream_latency: Duration::ZERO,
        };
        task.spawn(Finished {
            outcome,
            usage: None,
            bytes: 0,
        });
    }

    pub fn into_settle(self, upstream_status: u16, upstream_latency: Duration) -> SettleTask {
        SettleTask {
            pending: self,
            upstream_status: Some(upstream_status),
            upstream_latency,
        }
    }
}

/// The settlement of one response, run when the body ends however it ends.
pub struct SettleTask {
    pending: PendingCharge,
    upstream_status: Option<u16>,
    upstream_latency: Duration,
}

impl Settle for SettleTask {
    fn settle(self: Box<Self>, finished: Finished) {
        (*self).spawn(finished);
    }
}

impl SettleTask {
    fn spawn(self, finished: Finished) {
        tokio::spawn(async move { self.run(finished).await });
    }

    /// What to charge: the reported usage priced; no usage on a successful response → the
    /// reservation (`estimated`); no usage on a failed or absent response → nothing.
    fn cost(&self, finished: &Finished) -> (Usage, Micros, bool) {
        let facts = &self.pending.facts;
        let success = self
            .upstream_status
            .is_some_and(|s| (200..300).contains(&s));
        let usage = match (finished.usage, facts.generic && success) {
            (Some(usage), _) => Some(Usage {
                calls: usage.calls.max(1),
                ..usage
            }),
            (None, true) => Some(Usage {
                calls: 1,
                ..Usage::default()
            }),
            (None, false) => None,
        };
        match usage {
            Some(usage) => match facts.price.cost(&usage) {
                Ok(cost) => (usage, cost, false),
                Err(_) => (usage, facts.reserved, true),
            },
            None if success => (Usage::default(), facts.reserved, true),
            None => (Usage::default(), Micros::ZERO, false),
        }
    }

    async fn run(self, finished: Finished) {
        let (usage, cost, estimated) = self.cost(&finished);
        let facts = &self.pending.facts;
        let state = &self.pending.state;
        let event = MeteringEvent {
            event_id: facts.hold_id.0,
            occurred_at: UnixMicros::from_datetime(chrono::Utc::now()),
            request_id: facts.request_id,
            correlation_id: Some(facts.correlation_id.clone()),
            agent_id: facts.agent_id,
            parent_id: facts.parent_id,
            root_agent_id: facts.root_agent_id,
            ancestor_ids: facts.ancestor_ids.clone(),
            source: Source::Gateway,
            provider: facts.provider.clone(),
            resource: facts.resource.clone(),
            operation: facts.operation.clone(),
            input_tokens: usage.input_tokens,
            cached_input_tokens: usage.cached_input_tokens,
            cache_write_input_tokens: usage.cache_write_input_tokens,
            output_tokens: usage.output_tokens,
            calls: usage.calls,
            cost_micros: cost,
            reserved_micros: facts.reserved,
            currency: facts.price.currency,
            estimated,
            outcome: finished.outcome,
            upstream_status: self.upstream_status,
            reservation_id: facts.hold_id.0,
            policy_ids: facts.policy_ids.clone(),
            pricebook_version: facts.pricebook_version,
            instance: state.instance.clone(),
            upstream_latency_micros: u64::try_from(self.upstream_latency.as_micros())
                .unwrap_or(u64::MAX),
            metadata: BTreeMap::new(),
        };
        let mut attempt = 0;
        loop {
            match state.publish(Event::Metering(event.clone())).await {
                Ok(()) => break,
                Err(e) if attempt + 1 < PUBLISH_ATTEMPTS_MAX => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "metering event not yet published; retrying");
                    tokio::time::sleep(PUBLISH_RETRY_BASE * 2u32.pow(attempt)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, hold = %facts.hold_id.0,
                        "metering event could not be published; the hold stays and expires into an estimated charge");
                    state.untrack_hold(facts.hold_id);
                    return;
                }
            }
        }
        state.untrack_hold(facts.hold_id);
        if let Err(e) = state
            .spend
            .settle(facts.hold_id, cost, chrono::Utc::now())
            .await
        {
            tracing::warn!(error = %e, hold = %facts.hold_id.0, "settle after publish failed");
        }
        metrics::counter!("caracal_gateway_response_bytes_total").increment(finished.bytes);
        let outcome = finished.outcome.as_str();
        metrics::counter!("caracal_settlements_total", "outcome" => outcome).increment(1);
        metrics::counter!("caracal_metered_micros_total", "currency" => facts.price.currency.to_string())
            .increment(u64::try_from(cost.get()).unwrap_or(0));
    }
}

/// The MeteringEvent of a hold that expired unsettled: its request died with its process (or
/// its settlement failed), so the reservation is charged, marked `estimated`. The event id is
/// the hold id, as for a normal settlement, so a sink that already has that charge drops it.
pub fn expired_event(state: &GatewayState, hold: &crate::spend::ExpiredHold) -> Option<Event> {
    let (provider, resource) = hold
        .resource
        .split_once(':')
        .unwrap_or(("unknown", hold.resource.as_str()));
    let mut policy_ids: Vec<PolicyId> = hold.charged.iter().map(|(id, _)| *id).collect();
    policy_ids.dedup();
    Some(Event::Metering(MeteringEvent {
        event_id: hold.hold_id.0,
        occurred_at: UnixMicros::from_datetime(chrono::Utc::now()),
        request_id: hold.hold_id.0,
        correlation_id: None,
        agent_id: hold.agent_id,
        parent_id: hold.ancestor_ids.first().copied(),
        root_agent_id: hold.root_agent_id,
        ancestor_ids: hold.ancestor_ids.clone(),
        source: Source::Gateway,
        provider: provider.to_owned(),
        resource: resource.to_owned(),
        operation: "expired_hold".to_owned(),
        input_tokens: 0,
        cached_input_tokens: 0,
        cache_write_input_tokens: 0,
        output_tokens: 0,
        calls: 0,
        cost_micros: hold.amount,
        reserved_micros: hold.amount,
        currency: hold.currency,
        estimated: true,
        outcome: Outcome::Timeout,
        upstream_status: None,
        reservation_id: hold.hold_id.0,
        policy_ids,
        pricebook_version: 0,
        instance: state.instance.clone(),
        upstream_latency_micros: 0,
        metadata: BTreeMap::new(),
    }))
}

/// `chat/completions` from `/v1/chat/completions`: the operation label of an event.
fn operation_of(rest: &str) -> String {
    let trimmed = rest.trim_start_matches('/');
    let without_version = trimmed.strip_prefix("v1/").unwrap_or(trimmed);
    without_version.replace('/', ".")
}

/// The allow pattern that admitted `provider:resource`, when some active policy restricts
/// resources and the resource was allowed.
fn matched_pattern(
    chain: &ChainPolicies,
    provider: &str,
    resource: &str,
    decision: &Decision,
) -> Option<String> {
    if decision.allowlist_match != Some(true) {
        return None;
    }
    let subject = format!("{provider}:{resource}");
    chain
        .policies
        .iter()
        .filter(|p| p.spec.active)
        .flat_map(|p| p.spec.allow.iter())
        .find(|pattern| crate::core::glob::glob_match(pattern, &subject))
        .cloned()
}

/// The PolicyDecision event of one request.
#[allow(clippy::too_many_arguments)]
pub fn decision_event(
    ctx: &RequestCtx,
    chain: &ChainPolicies,
    provider: &str,
    resource: &str,
    estimate: Micros,
    currency: Currency,
    decision: &Decision,
    evaluation: Duration,
) -> Event {
    let policies = decision
        .evaluations
        .iter()
        .map(|e| PolicyEvaluationRecord {
            policy_id: e.policy_id,
            policy_version: e.policy_version,
            agent_id: e.agent_id,
            time_window: e.time_window,
            window_start: UnixMicros::from_datetime(e.window_start),
            limit_micros: e.limit,
            spent_micros: e.spent,
            reserved_micros: e.reserved,
            remaining_micros: e.remaining,
        })
        .collect();
    Event::Decision(PolicyDecision {
        event_id: Uuid::now_v7(),
        occurred_at: UnixMicros::from_datetime(chrono::Utc::now()),
        request_id: ctx.request_id,
        correlation_id: Some(ctx.correlation_id.clone()),
        agent_id: chain.chain.agent().id,
        root_agent_id: chain.chain.root().id,
        decision: if decision.allowed {
            DecisionKind::Allow
        } else {
            DecisionKind::Deny
        },
        reason: decision.reason.map(|r| r.as_str().to_owned()),
        provider: provider.to_owned(),
        resource: resource.to_owned(),
        estimated_cost_micros: estimate,
        currency,
        policies,
        allowlist_match: matched_pattern(chain, provider, resource, decision),
        evaluation_micros: u64::try_from(evaluation.as_micros()).unwrap_or(u64::MAX),
    })
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
