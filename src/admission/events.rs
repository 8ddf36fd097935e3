//! The events admission writes: the PolicyDecision of every call, the MeteringEvent of every
//! settled charge, and the MeteringEvent of a hold that expired unsettled. Builders only: they
//! publish nothing. A charge's event id is its hold id, so a sink that sees one charge twice
//! (a settlement and an expiry, or a retried publish) keeps it once.

use std::collections::BTreeMap;
use std::time::Duration;

use uuid::Uuid;

use super::CallFacts;
use crate::core::decision::Decision;
use crate::core::events::{
    DecisionKind, Event, MeteringEvent, Outcome, PolicyDecision, PolicyEvaluationRecord, UnixMicros,
};
use crate::core::money::{Currency, Micros};
use crate::core::policy::PolicyId;
use crate::core::pricing::Usage;
use crate::spend::HoldInfo;
use crate::store::ChainPolicies;

/// The PolicyDecision of one call.
pub(super) fn decision(
    call: &CallFacts,
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
    let chain = &call.chain;
    Event::Decision(PolicyDecision {
        event_id: Uuid::now_v7(),
        occurred_at: UnixMicros::from_datetime(chrono::Utc::now()),
        request_id: call.request_id,
        correlation_id: Some(call.correlation_id.clone()),
        agent_id: chain.chain.agent().id,
        root_agent_id: chain.chain.root().id,
        decision: if decision.allowed {
            DecisionKind::Allow
        } else {
            DecisionKind::Deny
        },
        reason: decision.reason.map(|r| r.as_str().to_owned()),
        provider: call.provider.clone(),
        resource: call.resource.clone(),
        estimated_cost_micros: estimate,
        currency,
        policies,
        allowlist_match: matched_pattern(chain, &call.provider, &call.resource, decision),
        evaluation_micros: u64::try_from(evaluation.as_micros()).unwrap_or(u64::MAX),
    })
}

/// What a settlement charges, beside the call's fixed facts.
pub(super) struct Charged {
    pub usage: Usage,
    pub cost: Micros,
    pub estimated: bool,
    pub outcome: Outcome,
    pub upstream_status: Option<u16>,
    pub upstream_latency: Duration,
}

/// The MeteringEvent of a settled call.
pub(super) fn metering(
    call: &CallFacts,
    charge: &super::charge::ChargeFacts,
    charged: &Charged,
    instance: &str,
) -> MeteringEvent {
    let chain = &call.chain.chain;
    let agent = chain.agent();
    MeteringEvent {
        event_id: charge.key.hold_id.0,
        occurred_at: UnixMicros::from_datetime(chrono::Utc::now()),
        request_id: call.request_id,
        correlation_id: Some(call.correlation_id.clone()),
        agent_id: agent.id,
        parent_id: agent.parent_id,
        root_agent_id: chain.root().id,
        ancestor_ids: chain.ancestors().iter().map(|a| a.id).collect(),
        source: call.source,
        provider: call.provider.clone(),
        resource: call.resource.clone(),
        operation: call.operation.clone(),
        input_tokens: charged.usage.input_tokens,
        cached_input_tokens: charged.usage.cached_input_tokens,
        cache_write_input_tokens: charged.usage.cache_write_input_tokens,
        output_tokens: charged.usage.output_tokens,
        calls: charged.usage.calls,
        cost_micros: charged.cost,
        reserved_micros: charge.reserved,
        currency: charge.priced.price.currency,
        estimated: charged.estimated,
        outcome: charged.outcome,
        upstream_status: charged.upstream_status,
        reservation_id: charge.key.hold_id.0,
        policy_ids: charge.policy_ids.clone(),
        pricebook_version: charge.priced.pricebook_version,
        instance: instance.to_owned(),
        upstream_latency_micros: u64::try_from(charged.upstream_latency.as_micros())
            .unwrap_or(u64::MAX),
        metadata: BTreeMap::new(),
    }
}

/// The MeteringEvent of a hold that expired unsettled: its call died with its process (or its
/// settlement failed), so the reservation is charged, marked `estimated`, as the source and
/// operation that reserved it. The event id is the hold id, as for a normal settlement.
pub fn expired_event(hold: &HoldInfo, instance: &str) -> Event {
    let (provider, resource) = hold
        .resource
        .split_once(':')
        .unwrap_or(("unknown", hold.resource.as_str()));
    let mut policy_ids: Vec<PolicyId> = hold.charged.iter().map(|(id, _)| *id).collect();
    policy_ids.dedup();
    let metadata = BTreeMap::from([("settled_by".to_owned(), "expiry".to_owned())]);
    Event::Metering(MeteringEvent {
        event_id: hold.hold_id.0,
        occurred_at: UnixMicros::from_datetime(chrono::Utc::now()),
        request_id: hold.hold_id.0,
        correlation_id: None,
        agent_id: hold.agent_id,
        parent_id: hold.ancestor_ids.first().copied(),
        root_agent_id: hold.root_agent_id,
        ancestor_ids: hold.ancestor_ids.clone(),
        source: hold.source,
        provider: provider.to_owned(),
        resource: resource.to_owned(),
        operation: hold.operation.clone(),
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
        instance: instance.to_owned(),
        upstream_latency_micros: 0,
        metadata,
    })
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
