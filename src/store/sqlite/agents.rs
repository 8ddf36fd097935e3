//! SQLite rows for agents and API keys, and the lifecycle events their changes write.
//! Called inside a transaction opened by `mod.rs`; never opens one itself.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row, Transaction};
use uuid::Uuid;

use super::{corrupt, from_micros, map_err, micros};
use crate::core::agent::{Agent, AgentId, AgentStatus, HIERARCHY_DEPTH_MAX};
use crate::core::events::LifecycleAction;
use crate::store::outbox;
use crate::store::{
    AgentFilter, AgentPatch, ApiKeyId, ApiKeyInfo, Audit, NewAgent, NewApiKey, StoreError,
    LIST_ROWS_MAX,
};

const AGENT_COLUMNS: &str =
    "id, name, agent_type, parent_id, status, metadata, created_at, updated_at";
const KEY_COLUMNS: &str =
    "id, agent_id, name, prefix, key_hash, created_at, expires_at, revoked_at";

fn agent_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Agent, StoreError>> {
    let id: String = row.get(0)?;
    let parent: Option<String> = row.get(3)?;
    let status: String = row.get(4)?;
    let metadata: String = row.get(5)?;
    let created: i64 = row.get(6)?;
    let updated: i64 = row.get(7)?;
    let name: String = row.get(1)?;
    let agent_type: String = row.get(2)?;
    Ok((|| {
        Ok(Agent {
            id: parse_agent_id(&id)?,
            name,
            agent_type,
            parent_id: parent.as_deref().map(parse_agent_id).transpose()?,
            status: status.parse().map_err(|e| corrupt("agent status", e))?,
            metadata: serde_json::from_str(&metadata).map_err(|e| corrupt("agent metadata", e))?,
            created_at: from_micros(created)?,
            updated_at: from_micros(updated)?,
        })
    })())
}

pub(super) fn parse_agent_id(text: &str) -> Result<AgentId, StoreError> {
    text.parse().map_err(|e| corrupt("agent id", e))
}

pub(super) fn get(tx: &Transaction<'_>, id: AgentId) -> Result<Option<Agent>, StoreError> {
    tx.query_row(
        &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"),
        [id.to_string()],
        agent_from_row,
    )
    .optional()
    .map_err(map_err)?
    .transpose()
}

fn must_get(tx: &Transaction<'_>, id: AgentId) -> Result<Agent, StoreError> {
    get(tx, id)?.ok_or_else(|| StoreError::NotFound {
        kind: "agent",
        id: id.to_string(),
    })
}

/// The agent and its ancestors, nearest first, bounded by `HIERARCHY_DEPTH_MAX`.
pub(super) fn chain(tx: &Transaction<'_>, id: AgentId) -> Result<Option<Vec<Agent>>, StoreError> {
    let mut members = Vec::new();
    let mut next = Some(id);
    while let Some(current) = next {
        if members.len() >= HIERARCHY_DEPTH_MAX {
            return Err(StoreError::Corrupt(format!(
                "agent {id}: hierarchy too deep or cyclic"
            )));
        }
        let Some(agent) = get(tx, current)? else {
            if members.is_empty() {
                return Ok(None);
            }
            return Err(StoreError::Corrupt(format!(
                "agent {current} missing from a chain"
            )));
        };
        next = agent.parent_id;
        members.push(agent);
    }
    Ok(Some(members))
}

fn root_of(tx: &Transaction<'_>, agent: &Agent) -> Result<AgentId, StoreError> {
    match agent.parent_id {
        None => Ok(agent.id),
        Some(parent) => chain(tx, parent)?
            .and_then(|c| c.last().map(|root| root.id))
            .ok_or_else(|| StoreError::Corrupt(format!("agent {} has a missing parent", agent.id))),
    }
}

pub(super) fn create(
    tx: &Transaction<'_>,
    new: &NewAgent,
    audit: &Audit,
) -> Result<Agent, StoreError> {
    if let Some(parent_id) = new.parent_id {
        let parent = must_get(tx, parent_id)?;
        if parent.status == AgentStatus::Deleted {
            return Err(StoreError::Conflict(format!(
                "parent agent {parent_id} is deleted"
            )));
        }
        let depth = chain(tx, parent_id)?.map_or(0, |c| c.len());
        if depth + 1 > HIERARCHY_DEPTH_MAX {
            return Err(StoreError::Conflict(format!(
                "hierarchy would be deeper than {HIERARCHY_DEPTH_MAX} levels"
            )));
        }
    }
    let metadata = serde_json::to_string(&new.metadata).map_err(|e| corrupt("metadata", e))?;
    tx.execute(
        &format!(
            "INSERT INTO agents ({AGENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, ?6)"
        ),
        params![
            new.id.to_string(),
            new.name,
            new.agent_type,
            new.parent_id.map(|p| p.to_string()),
            metadata,
            micros(new.at)
        ],
    )
    .map_err(map_err)?;
    let agent = must_get(tx, new.id)?;
    let root = root_of(tx, &agent)?;
    let event = outbox::agent_event(
        LifecycleAction::Created,
        None,
        Some(&agent),
        root,
        audit,
        new.at,
    )?;
    super::push_outbox(tx, &event, new.at)?;
    Ok(agent)
}

pub(super) fn list(tx: &Transaction<'_>, filter: &AgentFilter) -> Result<Vec<Agent>, StoreError> {
    let mut stmt = tx
        .prepare(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents
             WHERE (?1 IS NULL OR parent_id = ?1) AND (?2 OR status != 'deleted')
             ORDER BY created_at, id LIMIT ?3"
        ))
        .map_err(map_err)?;
    let rows = stmt
        .query_map(
            params![
                filter.parent_id.map(|p| p.to_string()),
                filter.include_deleted,
                LIST_ROWS_MAX as i64
            ],
            agent_from_row,
        )
        .map_err(map_err)?;
    rows.map(|r| r.map_err(map_err)?).collect()
}

pub(super) fn update(
    tx: &Transaction<'_>,
    id: AgentId,
    patch: &AgentPatch,
    at: DateTime<Utc>,
    audit: &Audit,
) -> Result<Agent, StoreError> {
    let before = must_get(tx, id)?;
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
    tx.execute(
        "UPDATE agents SET name = ?2, agent_type = ?3, metadata = ?4, updated_at = ?5 WHERE id = ?1",
        params![id.to_string(), after.name, after.agent_type, metadata, micros(at)],
    )
    .map_err(map_err)?;
    let root = root_of(tx, &after)?;
    let event = outbox::agent_event(
        LifecycleAction::Updated,
        Some(&before),
        Some(&after),
        root,
        audit,
        at,
    )?;
    super::push_outbox(tx, &event, at)?;
    Ok(after)
}

pub(super) fn set_status(
    tx: &Transaction<'_>,
    id: AgentId,
    status: AgentStatus,
    at: DateTime<Utc>,
    audit: &Audit,
) -> Result<Agent, StoreError> {
    let before = must_get(tx, id)?;
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
            let live_children: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM agents WHERE parent_id = ?1 AND status != 'deleted'",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .map_err(map_err)?;
            if live_children > 0 {
                return Err(StoreError::Conflict(format!(
                    "agent {id} has {live_children} child agent(s); delete them first"
                )));
            }
            LifecycleAction::Deleted
        }
    };
    tx.execute(
        "UPDATE agents SET status = ?2, updated_at = ?3 WHERE id = ?1",
        params![id.to_string(), status.as_str(), micros(at)],
    )
    .map_err(map_err)?;
    let after = Agent {
        status,
        updated_at: at,
        ..before.clone()
    };
    let root = root_of(tx, &after)?;
    let event = outbox::agent_event(action, Some(&before), Some(&after), root, audit, at)?;
    super::push_outbox(tx, &event, at)?;
    Ok(after)
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<Result<ApiKeyInfo, StoreError>> {
    let id: String = row.get(0)?;
    let agent_id: String = row.get(1)?;
    let name: String = row.get(2)?;
    let prefix: String = row.get(3)?;
    let hash: Vec<u8> = row.get(4)?;
    let created: i64 = row.get(5)?;
    let expires: Option<i64> = row.get(6)?;
    let revoked: Option<i64> = row.get(7)?;
    Ok((|| {
        Ok(ApiKeyInfo {
            id: ApiKeyId(Uuid::parse_str(&id).map_err(|e| corrupt("key id", e))?),
            agent_id: parse_agent_id(&agent_id)?,
            name,
            prefix,
            created_at: from_micros(created)?,
            expires_at: expires.map(from_micros).transpose()?,
            revoked_at: revoked.map(from_micros).transpose()?,
            hash: hash
                .try_into()
                .map_err(|_| StoreError::Corrupt("key hash length".into()))?,
        })
    })())
}

pub(super) fn create_key(
    tx: &Transaction<'_>,
    key: &NewApiKey,
    audit: &Audit,
) -> Result<ApiKeyInfo, StoreError> {
    let agent = must_get(tx, key.agent_id)?;
    if agent.status == AgentStatus::Deleted {
        return Err(StoreError::Conflict(format!(
            "agent {} is deleted",
            agent.id
        )));
    }
    tx.execute(
        &format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)"),
        params![
            key.id.0.to_string(),
            key.agent_id.to_string(),
            key.name,
            key.prefix,
            key.hash.to_vec(),
            micros(key.at),
            key.expires_at.map(micros)
        ],
    )
    .map_err(map_err)?;
    let info = must_get_key(tx, key.id)?;
    let root = root_of(tx, &agent)?;
    let event = outbox::key_event(
        LifecycleAction::KeyCreated,
        &agent,
        &info,
        root,
        audit,
        key.at,
    )?;
    super::push_outbox(tx, &event, key.at)?;
    Ok(info)
}

fn must_get_key(tx: &Transaction<'_>, id: ApiKeyId) -> Result<ApiKeyInfo, StoreError> {
    tx.query_row(
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"),
        [id.0.to_string()],
        key_from_row,
    )
    .optional()
    .map_err(map_err)?
    .transpose()?
    .ok_or_else(|| StoreError::NotFound {
        kind: "api key",
        id: id.0.to_string(),
    })
}

pub(super) fn list_keys(
    tx: &Transaction<'_>,
    agent_id: Option<AgentId>,
) -> Result<Vec<ApiKeyInfo>, StoreError> {
    let mut stmt = tx
        .prepare(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE (?1 IS NULL OR agent_id = ?1)
             ORDER BY created_at, id LIMIT ?2"
        ))
        .map_err(map_err)?;
    let rows = stmt
        .query_map(
            params![agent_id.map(|a| a.to_string()), LIST_ROWS_MAX as i64],
            key_from_row,
        )
        .map_err(map_err)?;
    rows.map(|r| r.map_err(map_err)?).collect()
}

pub(super) fn revoke_key(
    tx: &Transaction<'_>,
    id: ApiKeyId,
    at: DateTime<Utc>,
    audit: &Audit,
) -> Result<ApiKeyInfo, StoreError> {
    let before = must_get_key(tx, id)?;
    if before.revoked_at.is_some() {
        return Err(StoreError::Conflict(format!(
            "api key {} is already revoked",
            id.0
        )));
    }
    tx.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1",
        params![id.0.to_string(), micros(at)],
    )
    .map_err(map_err)?;
    let info = ApiKeyInfo {
        revoked_at: Some(at),
        ..before
    };
    let agent = must_get(tx, info.agent_id)?;
    let root = root_of(tx, &agent)?;
    let event = outbox::key_event(LifecycleAction::KeyRevoked, &agent, &info, root, audit, at)?;
    super::push_outbox(tx, &event, at)?;
    Ok(info)
}

pub(super) fn find_key(
    tx: &Transaction<'_>,
    hash: &[u8; 32],
) -> Result<Option<ApiKeyInfo>, StoreError> {
    tx.query_row(
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1"),
        [hash.to_vec()],
        key_from_row,
    )
    .optional()
    .map_err(map_err)?
    .transpose()
}
