//! SQLite rows for versioned policies, the pricebook and the outbox, and the chain loader.
//! Called inside a transaction opened by `mod.rs`; never opens one itself.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row, Transaction};

use super::agents::{chain, parse_agent_id};
use super::{corrupt, from_micros, map_err, micros};
use crate::core::agent::{AgentChain, AgentId, AgentStatus};
use crate::core::events::{AdminEvent, ChangeAction};
use crate::core::policy::{BudgetPolicy, PolicyId, PolicySpec};
use crate::core::pricing::{Price, PriceEntry, Pricebook};
use crate::store::outbox;
use crate::store::{
    Audit, ChainPolicies, ChangeKind, OutboxRecord, PolicyVersion, StoreError, LIST_ROWS_MAX,
};

const POLICY_COLUMNS: &str = "id, agent_id, version, limit_micros, currency, time_window, \
     window_type, allow, active, created_at, updated_at";

fn policy_from_row(row: &Row<'_>) -> rusqlite::Result<Result<BudgetPolicy, StoreError>> {
    let id: String = row.get(0)?;
    let agent_id: String = row.get(1)?;
    let version: i64 = row.get(2)?;
    let limit: i64 = row.get(3)?;
    let currency: String = row.get(4)?;
    let window: String = row.get(5)?;
    let window_type: String = row.get(6)?;
    let allow: String = row.get(7)?;
    let active: bool = row.get(8)?;
    let created: i64 = row.get(9)?;
    let updated: i64 = row.get(10)?;
    Ok((|| {
        Ok(BudgetPolicy {
            id: id.parse().map_err(|e| corrupt("policy id", e))?,
            agent_id: parse_agent_id(&agent_id)?,
            version,
            spec: PolicySpec {
                limit_micros: crate::core::money::Micros(limit),
                currency: currency
                    .parse()
                    .map_err(|e| corrupt("policy currency", e))?,
                time_window: window.parse().map_err(|e| corrupt("policy window", e))?,
                window_type: window_type
                    .parse()
                    .map_err(|e| corrupt("policy window type", e))?,
                allow: serde_json::from_str(&allow).map_err(|e| corrupt("policy allow", e))?,
                active,
            },
            created_at: from_micros(created)?,
            updated_at: from_micros(updated)?,
        })
    })())
}

pub(super) fn get(tx: &Transaction<'_>, id: PolicyId) -> Result<Option<BudgetPolicy>, StoreError> {
    tx.query_row(
        &format!("SELECT {POLICY_COLUMNS} FROM policies WHERE id = ?1 AND deleted = 0"),
        [id.to_string()],
        policy_from_row,
    )
    .optional()
    .map_err(map_err)?
    .transpose()
}

fn must_get(tx: &Transaction<'_>, id: PolicyId) -> Result<BudgetPolicy, StoreError> {
    get(tx, id)?.ok_or_else(|| StoreError::NotFound {
        kind: "policy",
        id: id.to_string(),
    })
}

pub(super) fn list(
    tx: &Transaction<'_>,
    agent_id: Option<AgentId>,
) -> Result<Vec<BudgetPolicy>, StoreError> {
    let mut stmt = tx
        .prepare(&format!(
            "SELECT {POLICY_COLUMNS} FROM policies
             WHERE deleted = 0 AND (?1 IS NULL OR agent_id = ?1)
             ORDER BY created_at, id LIMIT ?2"
        ))
        .map_err(map_err)?;
    let rows = stmt
        .query_map(
            params![agent_id.map(|a| a.to_string()), LIST_ROWS_MAX as i64],
            policy_from_row,
        )
        .map_err(map_err)?;
    rows.map(|r| r.map_err(map_err)?).collect()
}

fn write_row(tx: &Transaction<'_>, policy: &BudgetPolicy, deleted: bool) -> Result<(), StoreError> {
    let allow = serde_json::to_string(&policy.spec.allow).map_err(|e| corrupt("allow", e))?;
    tx.execute(
        &format!(
            "INSERT INTO policies ({POLICY_COLUMNS}, deleted)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version,
               limit_micros = excluded.limit_micros, currency = excluded.currency,
               time_window = excluded.time_window, window_type = excluded.window_type,
               allow = excluded.allow, active = excluded.active,
               updated_at = excluded.updated_at, deleted = excluded.deleted"
        ),
        params![
            policy.id.to_string(),
            policy.agent_id.to_string(),
            policy.version,
            policy.spec.limit_micros.get(),
            policy.spec.currency.as_str(),
            policy.spec.time_window.as_str(),
            policy.spec.window_type.as_str(),
            allow,
            policy.spec.active,
            micros(policy.created_at),
            micros(policy.updated_at),
            deleted
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

/// Records the version row and the PolicyChange outbox event of one change.
fn record_change(
    tx: &Transaction<'_>,
    policy: &BudgetPolicy,
    action: ChangeKind,
    before: Option<&PolicySpec>,
    after: Option<&PolicySpec>,
    audit: &Audit,
) -> Result<(), StoreError> {
    let to_json = |s: Option<&PolicySpec>| {
        s.map(serde_json::to_string)
            .transpose()
            .map_err(|e| corrupt("policy spec", e))
    };
    let action_text = match action {
        ChangeKind::Created => "created",
        ChangeKind::Updated => "updated",
        ChangeKind::Deleted => "deleted",
    };
    tx.execute(
        "INSERT INTO policy_versions (policy_id, version, action, before, after, actor, reason, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            policy.id.to_string(),
            policy.version,
            action_text,
            to_json(before)?,
            to_json(after)?,
            audit.actor,
            audit.reason,
            micros(policy.updated_at)
        ],
    )
    .map_err(map_err)?;
    let members = chain(tx, policy.agent_id)?.unwrap_or_default();
    let root = members.last().map_or(policy.agent_id, |a| a.id);
    let change = match action {
        ChangeKind::Created => ChangeAction::Created,
        ChangeKind::Updated => ChangeAction::Updated,
        ChangeKind::Deleted => ChangeAction::Deleted,
    };
    let event = outbox::policy_event(
        change,
        policy,
        root,
        before,
        after,
        audit,
        policy.updated_at,
    );
    super::push_outbox(tx, &event, policy.updated_at)
}

pub(super) fn create(
    tx: &Transaction<'_>,
    id: PolicyId,
    agent_id: AgentId,
    spec: &PolicySpec,
    at: DateTime<Utc>,
    audit: &Audit,
) -> Result<BudgetPolicy, StoreError> {
    let members = chain(tx, agent_id)?.ok_or_else(|| StoreError::NotFound {
        kind: "agent",
        id: agent_id.to_string(),
    })?;
    if members
        .first()
        .is_some_and(|a| a.status == AgentStatus::Deleted)
    {
        return Err(StoreError::Conflict(format!("agent {agent_id} is deleted")));
    }
    let policy = BudgetPolicy {
        id,
        agent_id,
        version: 1,
        spec: spec.clone(),
        created_at: at,
        updated_at: at,
    };
    write_row(tx, &policy, false)?;
    record_change(tx, &policy, ChangeKind::Created, None, Some(spec), audit)?;
    Ok(policy)
}

pub(super) fn update(
    tx: &Transaction<'_>,
    id: PolicyId,
    spec: &PolicySpec,
    expected_version: Option<i64>,
    at: DateTime<Utc>,
    audit: &Audit,
) -> Result<BudgetPolicy, StoreError> {
    let before = must_get(tx, id)?;
    if let Some(expected) = expected_version {
        if expected != before.version {
            return Err(StoreError::Conflict(format!(
                "policy {id} is at version {}, not {expected}",
                before.version
            )));
        }
    }
    let after = BudgetPolicy {
        version: before.version + 1,
        spec: spec.clone(),
        updated_at: at,
        ..before.clone()
    };
    write_row(tx, &after, false)?;
    record_change(
        tx,
        &after,
        ChangeKind::Updated,
        Some(&before.spec),
        Some(spec),
        audit,
    )?;
    Ok(after)
}

pub(super) fn delete(
    tx: &Transaction<'_>,
    id: PolicyId,
    at: DateTime<Utc>,
    audit: &Audit,
) -> Result<BudgetPolicy, StoreError> {
    let before = must_get(tx, id)?;
    let after = BudgetPolicy {
        version: before.version + 1,
        updated_at: at,
        ..before.clone()
    };
    write_row(tx, &after, true)?;
    record_change(
        tx,
        &after,
        ChangeKind::Deleted,
        Some(&before.spec),
        None,
        audit,
    )?;
    Ok(after)
}

pub(super) fn history(
    tx: &Transaction<'_>,
    id: PolicyId,
) -> Result<Vec<PolicyVersion>, StoreError> {
    let mut stmt = tx
        .prepare(
            "SELECT version, action, before, after, actor, reason, at FROM policy_versions
             WHERE policy_id = ?1 ORDER BY version LIMIT ?2",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map(params![id.to_string(), LIST_ROWS_MAX as i64], |row| {
            let version: i64 = row.get(0)?;
            let action: String = row.get(1)?;
            let before: Option<String> = row.get(2)?;
            let after: Option<String> = row.get(3)?;
            let actor: String = row.get(4)?;
            let reason: Option<String> = row.get(5)?;
            let at: i64 = row.get(6)?;
            Ok((version, action, before, after, actor, reason, at))
        })
        .map_err(map_err)?;
    let parse_spec = |s: Option<String>| -> Result<Option<PolicySpec>, StoreError> {
        s.map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| corrupt("policy spec", e))
    };
    let mut versions = Vec::new();
    for row in rows {
        let (version, action, before, after, actor, reason, at) = row.map_err(map_err)?;
        let action = match action.as_str() {
            "created" => ChangeKind::Created,
            "updated" => ChangeKind::Updated,
            "deleted" => ChangeKind::Deleted,
            other => return Err(corrupt("policy version action", other)),
        };
        versions.push(PolicyVersion {
            policy_id: id,
            version,
            action,
            before: parse_spec(before)?,
            after: parse_spec(after)?,
            actor,
            reason,
            at: from_micros(at)?,
        });
    }
    if versions.is_empty() {
        return Err(StoreError::NotFound {
            kind: "policy",
            id: id.to_string(),
        });
    }
    Ok(versions)
}

pub(super) fn load_chain(
    tx: &Transaction<'_>,
    agent_id: AgentId,
) -> Result<Option<ChainPolicies>, StoreError> {
    let Some(members) = chain(tx, agent_id)? else {
        return Ok(None);
    };
    let mut policies = Vec::new();
    for member in &members {
        policies.extend(list(tx, Some(member.id))?);
    }
    let chain = AgentChain::new(members).map_err(|e| corrupt("agent chain", e))?;
    Ok(Some(ChainPolicies { chain, policies }))
}

pub(super) fn set_prices(
    tx: &Transaction<'_>,
    entries: &[PriceEntry],
    at: DateTime<Utc>,
) -> Result<i64, StoreError> {
    for entry in entries {
        let price = serde_json::to_string(&entry.price).map_err(|e| corrupt("price", e))?;
        tx.execute(
            "INSERT INTO prices (provider, resource, price, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (provider, resource) DO UPDATE SET price = excluded.price,
               updated_at = excluded.updated_at",
            params![entry.provider, entry.resource, price, micros(at)],
        )
        .map_err(map_err)?;
    }
    tx.execute(
        "UPDATE pricebook_meta SET version = version + 1 WHERE id = 1",
        [],
    )
    .map_err(map_err)?;
    tx.query_row("SELECT version FROM pricebook_meta WHERE id = 1", [], |r| {
        r.get(0)
    })
    .map_err(map_err)
}

pub(super) fn list_prices(tx: &Transaction<'_>) -> Result<Vec<PriceEntry>, StoreError> {
    let mut stmt = tx
        .prepare(
            "SELECT provider, resource, price FROM prices ORDER BY provider, resource LIMIT ?1",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map([LIST_ROWS_MAX as i64], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })
        .map_err(map_err)?;
    let mut entries = Vec::new();
    for row in rows {
        let (provider, resource, price) = row.map_err(map_err)?;
        let price: Price = serde_json::from_str(&price).map_err(|e| corrupt("price", e))?;
        entries.push(PriceEntry {
            provider,
            resource,
            price,
        });
    }
    Ok(entries)
}

pub(super) fn pricebook(tx: &Transaction<'_>) -> Result<Pricebook, StoreError> {
    let version: i64 = tx
        .query_row("SELECT version FROM pricebook_meta WHERE id = 1", [], |r| {
            r.get(0)
        })
        .map_err(map_err)?;
    Ok(Pricebook::new(version, list_prices(tx)?))
}

pub(super) fn outbox_after(
    tx: &Transaction<'_>,
    after_id: i64,
    limit: usize,
) -> Result<Vec<OutboxRecord>, StoreError> {
    let limit = limit.min(LIST_ROWS_MAX) as i64;
    let mut stmt = tx
        .prepare("SELECT id, event, created_at FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2")
        .map_err(map_err)?;
    let rows = stmt
        .query_map(params![after_id, limit], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .map_err(map_err)?;
    let mut records = Vec::new();
    for row in rows {
        let (id, event, created) = row.map_err(map_err)?;
        let event: AdminEvent = serde_json::from_str(&event).map_err(|e| corrupt("outbox", e))?;
        records.push(OutboxRecord {
            id,
            event,
            created_at: from_micros(created)?,
        });
    }
    Ok(records)
}
