//! Postgres rows for agents and API keys, and the lifecycle events their changes write; the
//! same rules, row for row, as `store/sqlite/agents.rs`. Runs inside a transaction opened by
//! `mod.rs` (admin writes hold the admin write lock); never opens one itself.

use chrono::{DateTime, Utc};
use tokio_postgres::types::Type;
use tokio_postgres::{Row, Transaction};
use uuid::Uuid;

use super::{col, corrupt, from_micros, list_limit, map_err, micros, push_outbox};
use crate::core::agent::{Agent, AgentId, AgentStatus, HIERARCHY_DEPTH_MAX};
use crate::core::events::LifecycleAction;
use crate::store::outbox;
use crate::store::{
    AgentFilter, AgentPatch, ApiKeyId, ApiKeyInfo, Audit, NewAgent, NewApiKey, StoreError,
};

const AGENT_COLUMNS: &str =
    "id, name, agent_type, parent_id, status, metadata, created_at, updated_at";
const KEY_COLUMNS: &str =
    "id, agent_id, name, prefix, key_hash, created_at, expires_at, revoked_at";

fn agent_from_row(row: &Row) -> Result<Agent, StoreError> {
    let status: String = col(row, 4)?;
    let metadata: String = col(row, 5)?;
    Ok(Agent {
        id: AgentId(col(row, 0)?),
        name: col(row, 1)?,
        agent_type: col(row, 2)?,
        parent_id: col::<Option<Uuid>>(row, 3)?.map(AgentId),
        status: status.parse().map_err(|e| corrupt("agent status", e))?,
        metadata: serde_json::from_str(&metadata).map_err(|e| corrupt("agent metadata", e))?,
        created_at: from_micros(col(row, 6)?)?,
        updated_at: from_micros(col(row, 7)?)?,
    })
}

pub(super) async fn get(tx: &Transaction<'_>, id: AgentId) -> Result<Option<Agent>, StoreError> {
    tx.query_typed_opt(
        &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1"),
        &[(&id.0, Type::UUID)],
    )
    .await
    .map_err(map_err)?
    .as_ref()
    .map(agent_from_row)
    .transpose()
}

async fn must_get(tx: &Transaction<'_>, id: AgentId) -> Result<Agent, StoreError> {
    get(tx, id).await?.ok_or_else(|| StoreError::NotFound {
        kind: "agent",
        id: id.to_string(),
    })
}

/// The agent and its ancestors, nearest first, bounded by `HIERARCHY_DEPTH_MAX`: one
/// recursive query (a cache miss on the gateway's path costs one round trip, not one per level).
pub(super) async fn chain(
    tx: &Transaction<'_>,
    id: AgentId,
) -> Result<Option<Vec<Agent>>, StoreError> {
    let depth_max = i32::try_from(HIERARCHY_DEPTH_MAX).unwrap_or(i32::MAX);
    let rows = tx
        .query_typed(
            &format!(
                "WITH RECURSIVE chain AS (
                    SELECT {AGENT_COLUMNS}, 1 AS depth FROM agents WHERE id = $1
                    UNION ALL
                    SELECT {columns}, c.depth + 1 FROM agents a JOIN chain c ON a.id = c.parent_id
                    WHERE c.depth <= $2)
                 SELECT {AGENT_COLUMNS} FROM chain ORDER BY depth",
                columns = AGENT_COLUMNS
                    .split(", ")
                    .map(|c| format!("a.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            &[(&id.0, Type::UUID), (&depth_max, Type::INT4)],
        )
        .await
        .map_err(map_err)?;
    let members = rows
        .iter()
        .map(agent_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let Some(last) = members.last() else {
        return Ok(None);
    };
    if members.len() > HIERARCHY_DEPTH_MAX {
        return Err(StoreError::Corrupt(format!(
            "agent {id}: hierarchy too deep or cyclic"
        )));
    }
    if let Some(missing) = last.parent_id {
        return Err(StoreError::Corrupt(format!(
            "agent {missing} missing from a chain"
        )));
    }
    Ok(Some(members))
}

async fn root_of(tx: &Transaction<'_>, agent: &Agent) -> Result<AgentId, StoreError> {
    match agent.parent_id {
        None => Ok(agent.id),
        Some(parent) => chain(tx, parent)
            .await?
            .and_then(|c| c.last().map(|root| root.id))
            .ok_or_else(|| StoreError::Corrupt(format!("agent {} has a missing parent", agent.id))),
    }
}

pub(super) async fn create(
    tx: &Transaction<'_>,
    new: &NewAgent,
    audit: &Audit,
) -> Result<Agent, StoreError> {
    if let Some(parent_id) = new.parent_id {
        let parent = must_get(tx, parent_id).await?;
        if parent.status == AgentStatus::Deleted {
            return Err(StoreError::Conflict(format!(
                "parent agent {parent_id} is deleted"
            )));
        }
        let depth = chain(tx, parent_id).await?.map_or(0, |c| c.len());
        if depth + 1 > HIERARCHY_DEPTH_MAX {
            return Err(StoreError::Conflict(format!(
                "hierarchy would be deeper than {HIERARCHY_DEPTH_MAX} levels"
            )));
        }
    }
    let metadata = serde_json::to_string(&new.metadata).map_err(|e| corrupt("metadata", e))?;
    let parent = new.parent_id.map(|p| p.0);
    tx.execute_typed(
        &format!(
            "INSERT INTO agents ({AGENT_COLUMNS}) VALUES ($1, $2, $3, $4, 'active', $5, $6, $6)"
        ),
        &[
            (&new.id.0, Type::UUID),
            (&new.name, Type::TEXT),
            (&new.agent_type, Type::TEXT),
            (&parent, Type::UUID),
            (&metadata, Type::TEXT),
            (&micros(new.at), Type::INT8),
        ],
    )
    .await
    .map_err(map_err)?;
    let agent = must_get(tx, new.id).await?;
    let root = root_of(tx, &agent).await?;
    let event = outbox::agent_event(
        LifecycleAction::Created,
        None,
        Some(&agent),
        root,
        audit,
        new.at,
    )?;
    push_outbox(tx, &event, new.at).await?;
    Ok(agent)
}

pub(super) async fn list(
    tx: &Transaction<'_>,
    filter: &AgentFilter,
) -> Result<Vec<Agent>, StoreError> {
    let parent = filter.parent_id.map(|p| p.0);
    let rows = tx
        .query_typed(
            &format!(
                "SELECT {AGENT_COLUMNS} FROM agents
                 WHERE ($1::uuid IS NULL OR parent_id = $1) AND ($2 OR status <> 'deleted')
                 ORDER BY created_at, id LIMIT $3"
            ),
            &[
                (&parent, Type::UUID),
                (&filter.include_deleted, Type::BOOL),
                (&list_limit(), Type::INT8),
            ],
        )
        .await
        .map_err(map_err)?;
    rows.iter().map(agent_from_row).collect()
}

pub(super) async fn update(
    tx: &Transaction<'_>,
    id: AgentId,
    patch: &AgentPatch,
    at: DateTime<Utc>,
    audit: &Audit,
) -> Result<Agent, StoreError> {
    let before = must_get(tx, id).await?;
    if before.status == AgentStatus::Deleted {
        return Err(StoreError::Conflict(format!("agent {id} is deleted")));
    }
    let mut after = before.clone();
    if let Some(name) = &patch.name {
        after.name = name.clone();
    }
    if let Some(agent_type) = &patch.agent_type {
        after.agent_type = agent_type.clone();
    }
    if let Some(metadata) = &patch.metadata {
        after.metadata = metadata.clone();
    }
    after.updated_at = at;
    let metadata = serde_json::to_string(&after.metadata).map_err(|e| corrupt("metadata", e))?;
    tx.execute_typed(
        "UPDATE agents SET name = $2, agent_type = $3, metadata = $4, updated_at = $5 WHERE id = $1",
        &[
            (&id.0, Type::UUID),
            (&after.name, Type::TEXT),
            (&after.agent_type, Type::TEXT),
            (&metadata, Type::TEXT),
            (&micros(at), Type::INT8),
        ],
    )
    .await
    .map_err(map_err)?;
    let root = root_of(tx, &after).await?;
    let event = outbox::agent_event(
        LifecycleAction::Updated,
        Some(&before),
        Some(&after),
        root,
        audit,
        at,
    )?;
    push_outbox(tx, &event, at).await?;
    Ok(after)
}

async fn live_children(tx: &Transaction<'_>, id: AgentId) -> Result<i64, StoreError> {
    let row = tx
        .query_typed_one(
            "SELECT COUNT(*) FROM agents WHERE parent_id = $1 AND status <> 'deleted'",
            &[(&id.0, Type::UUID)],
        )
        .await
        .map_err(map_err)?;
    col(&row, 0)
}

pub(super) async fn set_status(
    tx: &Transaction<'_>,
    id: AgentId,
    status: AgentStatus,
    at: DateTime<Utc>,
    audit: &Audit,
) -> Result<Agent, StoreError> {
    let before = must_get(tx, id).await?;
    if before.status == AgentStatus::Deleted {
        return Err(StoreError::Conflict(format!("agent {id} is deleted")));
    }
    if before.status == status {
        return Err(StoreError::Conflict(format!(
            "agent {id} is already {}",
            status.as_str()
        )));
    }
    let action = match status {
        AgentStatus::Active => LifecycleAction::Reactivated,
        AgentStatus::Suspended => LifecycleAction::Suspended,
        AgentStatus::Deleted => {
            let live = live_children(tx, id).await?;
            if live > 0 {
                return Err(StoreError::Conflict(format!(
                    "agent {id} has {live} child agent(s); delete them first"
                )));
            }
            LifecycleAction::Deleted
        }
    };
    tx.execute_typed(
        "UPDATE agents SET status = $2, updated_at = $3 WHERE id = $1",
        &[
            (&id.0, Type::UUID),
            (&status.as_str(), Type::TEXT),
            (&micros(at), Type::INT8),
        ],
    )
    .await
    .map_err(map_err)?;
    let after = Agent {
        status,
        updated_at: at,
        ..before.clone()
    };
    let root = root_of(tx, &after).await?;
    let event = outbox::agent_event(action, Some(&before), Some(&after), root, audit, at)?;
    push_outbox(tx, &event, at).await?;
    Ok(after)
}

fn key_from_row(row: &Row) -> Result<ApiKeyInfo, StoreError> {
    let hash: Vec<u8> = col(row, 4)?;
    Ok(ApiKeyInfo {
        id: ApiKeyId(col(row, 0)?),
        agent_id: AgentId(col(row, 1)?),
        name: col(row, 2)?,
        prefix: col(row, 3)?,
        created_at: from_micros(col(row, 5)?)?,
        expires_at: col::<Option<i64>>(row, 6)?.map(from_micros).transpose()?,
        revoked_at: col::<Option<i64>>(row, 7)?.map(from_micros).transpose()?,
        hash: hash
            .try_into()
            .map_err(|_| StoreError::Corrupt("key hash length".into()))?,
    })
}

pub(super) async fn create_key(
    tx: &Transaction<'_>,
    key: &NewApiKey,
    audit: &Audit,
) -> Result<ApiKeyInfo, StoreError> {
    let agent = must_get(tx, key.agent_id).await?;
    if agent.status == AgentStatus::Deleted {
        return Err(StoreError::Conflict(format!(
            "agent {} is deleted",
            agent.id
        )));
    }
    let hash = key.hash.to_vec();
    let expires = key.expires_at.map(micros);
    tx.execute_typed(
        &format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)"),
        &[
            (&key.id.0, Type::UUID),
            (&key.agent_id.0, Type::UUID),
            (&key.name, Type::TEXT),
            (&key.prefix, Type::TEXT),
            (&hash, Type::BYTEA),
            (&micros(key.at), Type::INT8),
            (&expires, Type::INT8),
        ],
    )
    .await
    .map_err(map_err)?;
    let info = must_get_key(tx, key.id).await?;
    let root = root_of(tx, &agent).await?;
    let event = outbox::key_event(
        LifecycleAction::KeyCreated,
        &agent,
        &info,
        root,
        audit,
        key.at,
    )?;
    push_outbox(tx, &event, key.at).await?;
    Ok(info)
}

async fn must_get_key(tx: &Transaction<'_>, id: ApiKeyId) -> Result<ApiKeyInfo, StoreError> {
    tx.query_typed_opt(
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"),
        &[(&id.0, Type::UUID)],
    )
    .await
    .map_err(map_err)?
    .as_ref()
    .map(key_from_row)
    .transpose()?
    .ok_or_else(|| StoreError::NotFound {
        kind: "api key",
        id: id.0.to_string(),
    })
}

pub(super) async fn list_keys(
    tx: &Transaction<'_>,
    agent_id: Option<AgentId>,
) -> Result<Vec<ApiKeyInfo>, StoreError> {
    let agent = agent_id.map(|a| a.0);
    let rows = tx
        .query_typed(
            &format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE ($1::uuid IS NULL OR agent_id = $1)
                 ORDER BY created_at, id LIMIT $2"
            ),
            &[(&agent, Type::UUID), (&list_limit(), Type::INT8)],
        )
        .await
        .map_err(map_err)?;
    rows.iter().map(key_from_row).collect()
}

pub(super) async fn revoke_key(
    tx: &Transaction<'_>,
    id: ApiKeyId,
    at: DateTime<Utc>,
    audit: &Audit,
) -> Result<ApiKeyInfo, StoreError> {
    let before = must_get_key(tx, id).await?;
    if before.revoked_at.is_some() {
        return Err(StoreError::Conflict(format!(
            "api key {} is already revoked",
            id.0
        )));
    }
    tx.execute_typed(
        "UPDATE api_keys SET revoked_at = $2 WHERE id = $1",
        &[(&id.0, Type::UUID), (&micros(at), Type::INT8)],
    )
    .await
    .map_err(map_err)?;
    let info = ApiKeyInfo {
        revoked_at: Some(at),
        ..before
    };
    let agent = must_get(tx, info.agent_id).await?;
    let root = root_of(tx, &agent).await?;
    let event = outbox::key_event(LifecycleAction::KeyRevoked, &agent, &info, root, audit, at)?;
    push_outbox(tx, &event, at).await?;
    Ok(info)
}

pub(super) async fn find_key(
    tx: &Transaction<'_>,
    hash: &[u8; 32],
) -> Result<Option<ApiKeyInfo>, StoreError> {
    let hash = hash.to_vec();
    tx.query_typed_opt(
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"),
        &[(&hash, Type::BYTEA)],
    )
    .await
    .map_err(map_err)?
    .as_ref()
    .map(key_from_row)
    .transpose()
}
