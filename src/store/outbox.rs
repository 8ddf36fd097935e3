//! Builders of the admin events every store writes into its outbox, so SQLite and Postgres
//! produce byte-identical events for the same change. Pure: the caller supplies before/after.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{ApiKeyInfo, Audit, StoreError};
use crate::core::agent::{Agent, AgentId};
use crate::core::events::{
    agent_json, AdminEvent, AgentLifecycle, ChangeAction, LifecycleAction, PolicyChange, UnixMicros,
};
use crate::core::policy::{BudgetPolicy, PolicySpec};

fn json_of(agent: Option<&Agent>) -> Result<Option<String>, StoreError> {
    agent
        .map(agent_json)
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("agent json: {e}")))
}

/// An AgentLifecycle event for a change to an agent.
pub fn agent_event(
    action: LifecycleAction,
    before: Option<&Agent>,
    after: Option<&Agent>,
    root: AgentId,
    audit: &Audit,
    at: DateTime<Utc>,
) -> Result<AdminEvent, StoreError> {
    let subject = after
        .or(before)
        .ok_or_else(|| StoreError::Corrupt("event without agent".into()))?;
    Ok(AdminEvent::AgentLifecycle(AgentLifecycle {
        event_id: Uuid::now_v7(),
        occurred_at: UnixMicros::from_datetime(at),
        agent_id: subject.id,
        parent_id: subject.parent_id,
        root_agent_id: root,
        action,
        before: json_of(before)?,
        after: json_of(after)?,
        reason: audit.reason.clone(),
        actor: audit.actor.clone(),
    }))
}

/// An AgentLifecycle event for a key created or revoked: `after` describes the key (id, name,
/// prefix, expiry, revocation), never its secret or hash.
pub fn key_event(
    action: LifecycleAction,
    agent: &Agent,
    key: &ApiKeyInfo,
    root: AgentId,
    audit: &Audit,
    at: DateTime<Utc>,
) -> Result<AdminEvent, StoreError> {
    let key_json =
        serde_json::to_string(key).map_err(|e| StoreError::Corrupt(format!("key json: {e}")))?;
    Ok(AdminEvent::AgentLifecycle(AgentLifecycle {
        event_id: Uuid::now_v7(),
        occurred_at: UnixMicros::from_datetime(at),
        agent_id: agent.id,
        parent_id: agent.parent_id,
        root_agent_id: root,
        action,
        before: None,
        after: Some(key_json),
        reason: audit.reason.clone(),
        actor: audit.actor.clone(),
    }))
}

/// A PolicyChange event for a new version of `policy`.
pub fn policy_event(
    action: ChangeAction,
    policy: &BudgetPolicy,
    root: AgentId,
    before: Option<&PolicySpec>,
    after: Option<&PolicySpec>,
    audit: &Audit,
    at: DateTime<Utc>,
) -> AdminEvent {
    AdminEvent::PolicyChange(PolicyChange {
        event_id: Uuid::now_v7(),
        occurred_at: UnixMicros::from_datetime(at),
        policy_id: policy.id,
        agent_id: policy.agent_id,
        root_agent_id: root,
        version: policy.version,
        action,
        before: before.cloned(),
        after: after.cloned(),
        reason: audit.reason.clone(),
        actor: audit.actor.clone(),
    })
}
