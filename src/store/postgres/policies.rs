//! Postgres rows for versioned policies, the pricebook and the outbox, and the chain loader;
//! the same rules, row for row, as `store/sqlite/policies.rs`. Runs inside a transaction
//! opened by `mod.rs` (admin writes hold the admin write lock); never opens one itself.

use chrono::{DateTime, Utc};
use tokio_postgres::types::Type;
use tokio_postgres::{Row, Transaction};

use super::agents::chain;
use super::{col, corrupt, from_micros, list_limit, map_err, micros, push_outbox};
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

fn policy_from_row(row: &Row) -> Result<BudgetPolicy, StoreError> {
    let currency: String = col(row, 4)?;
    let window: String = col(row, 5)?;
    let window_type: String = col(row, 6)?;
    let allow: String = col(row, 7)?;
    Ok(BudgetPolicy {
        id: PolicyId(col(row, 0)?),
        agent_id: AgentId(col(row, 1)?),
        version: col(row, 2)?,
        spec: PolicySpec {
            limit_micros: crate::core::money::Micros(col(row, 3)?),
            currency: currency
                .parse()
                .map_err(|e| corrupt("policy currency", e))?,
            time_window: window.parse().map_err(|e| corrupt("policy window", e))?,
            window_type: window_type
                .parse()
                .map_err(|e| corrupt("policy window type", e))?,
            allow: serde_json::from_str(&allow).map_err(|e| corrupt("policy allow", e))?,
            active: col(row, 8)?,
        },
        created_at: from_micros(col(row, 9)?)?,
        updated_at: from_micros(col(row, 10)?)?,
    })
}

pub(super) async fn get(
    tx: &Transaction<'_>,
    id: PolicyId,
) -> Result<Option<BudgetPolicy>, StoreError> {
    tx.query_typed_opt(
        &format!("SELECT {POLICY_COLUMNS} FROM policies WHERE id = $1 AND NOT deleted"),
        &[(&id.0, Type::UUID)],
    )
    .await
    .map_err(map_err)?
    .as_ref()
    .map(policy_from_row)
    .transpose()
}

async fn must_get(tx: &Transaction<'_>, id: PolicyId) -> Result<BudgetPolicy, StoreError> {
    get(tx, id).await?.ok_or_else(|| StoreError::NotFound {
        kind: "policy",
        id: id.to_string(),
    })
}

pub(super) async fn list(
    tx: &Transaction<'_>,
    agent_id: Option<AgentId>,
) -> Result<Vec<BudgetPolicy>, StoreError> {
    let agent = agent_id.map(|a| a.0);
    let rows = tx
        .query_typed(
            &format!(
                "SELECT {POLICY_COLUMNS} FROM policies
                 WHERE NOT deleted AND ($1::uuid IS NULL OR agent_id = $1)
                 ORDER BY created_at, id LIMIT $2"
            ),
            &[(&agent, Type::UUID), (&list_limit(), Type::INT8)],
        )
        .await
        .map_err(map_err)?;
    rows.iter().map(policy_from_row).collect()
}

async fn write_row(
    tx: &Transaction<'_>,
    policy: &BudgetPolicy,
    deleted: bool,
) -> Result<(), StoreError> {
    let allow = serde_json::to_string(&policy.spec.allow).map_err(|e| corrupt("allow", e))?;
    tx.execute_typed(
        &format!(
            "INSERT INTO policies ({POLICY_COLUMNS}, deleted)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version,
               limit_micros = excluded.limit_micros, currency = excluded.currency,
               time_window = excluded.time_window, window_type = excluded.window_type,
               allow = excluded.allow, active = excluded.active,
               updated_at = excluded.updated_at, deleted = excluded.deleted"
        ),
        &[
            (&policy.id.0, Type::UUID),
            (&policy.agent_id.0, Type::UUID),
            (&policy.version, Type::INT8),
            (&policy.spec.limit_micros.get(), Type::INT8),
            (&policy.spec.currency.as_str(), Type::TEXT),
            (&policy.spec.time_window.as_str(), Type::TEXT),
            (&policy.spec.window_type.as_str(), Type::TEXT),
            (&allow, Type::TEXT),
            (&policy.spec.active, Type::BOOL),
            (&micros(policy.created_at), Type::INT8),
            (&micros(policy.updated_at), Type::INT8),
            (&deleted, Type::BOOL),
        ],
    )
    .await
    .map_err(map_err)?;
    Ok(())
}

fn action_text(action: ChangeKind) -> &'static str {
    match action {
        ChangeKind::Created => "created",
        ChangeKind::Updated => "updated",
        ChangeKind::Deleted => "deleted",
    }
}

/// Records the version row and the PolicyChange outbox event of one change.
async fn record_change(
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
    let (before_json, after_json) = (to_json(before)?, to_json(after)?);
    tx.execute_typed(
        "INSERT INTO policy_versions (policy_id, version, action, before, after, actor, reason, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            (&policy.id.0, Type::UUID),
            (&policy.version, Type::INT8),
            (&action_text(action), Type::TEXT),
            (&before_json, Type::TEXT),
            (&after_json, Type::TEXT),
            (&audit.actor, Type::TEXT),
            (&audit.reason, Type::TEXT),
            (&micros(policy.updated_at), Type::INT8),
        ],
    )
    .await
    .map_err(map_err)?;
    let members = chain(tx, policy.agent_id).await?.unwrap_or_default();
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
    push_outbox(tx, &event, policy.updated_at).await
}

pub(super) async fn create(
    tx: &Transaction<'_>,
    id: PolicyId,
    agent_id: AgentId,
    spec: &PolicySpec,
    at: DateTime<Utc>,
    audit: &Audit,
) -> Result<BudgetPolicy, StoreError> {
    let members = chain(tx, agent_id)
        .await?
        .ok_or_else(|| StoreError::NotFound {
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
    // A new id must not silently overwrite an existing (or deleted) policy's row.
    let existing = tx
        .query_typed_opt(
            "SELECT 1 FROM policies WHERE id = $1",
            &[(&id.0, Type::UUID)],
        )
        .await
        .map_err(map_err)?;
    if existing.is_some() {
        return Err(StoreError::Conflict(format!("policy {id} already exists")));
    }
    write_row(tx, &policy, false).await?;
    record_change(tx, &policy, ChangeKind::Created, None, Some(spec), audit).await?;
    Ok(policy)
}

pub(super) async fn update(
    tx: &Transaction<'_>,
    id: PolicyId,
    spec: &PolicySpec,
    expected_version: Option<i64>,
    at: DateTime<Utc>,
    audit: &Audit,
) -> Result<BudgetPolicy, StoreError> {
    let before = must_get(tx, id).await?;
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
    write_row(tx, &after, false).await?;
    record_change(
        tx,
        &after,
        ChangeKind::Updated,
        Some(&before.spec),
        Some(spec),
        audit,
    )
    .await?;
    Ok(after)
}

pub(super) async fn delete(
    tx: &Transaction<'_>,
    id: PolicyId,
    at: DateTime<Utc>,
    audit: &Audit,
) -> Result<BudgetPolicy, StoreError> {
    let before = must_get(tx, id).await?;
    let after = BudgetPolicy {
        version: before.version + 1,
        updated_at: at,
        ..before.clone()
    };
    write_row(tx, &after, true).await?;
    record_change(
        tx,
        &after,
        ChangeKind::Deleted,
        Some(&before.spec),
        None,
        audit,
    )
    .await?;
    Ok(after)
}

pub(super) async fn history(
    tx: &Transaction<'_>,
    id: PolicyId,
) -> Result<Vec<PolicyVersion>, StoreError> {
    let rows = tx
        .query_typed(
            "SELECT version, action, before, after, actor, reason, at FROM policy_versions
             WHERE policy_id = $1 ORDER BY version LIMIT $2",
            &[(&id.0, Type::UUID), (&list_limit(), Type::INT8)],
        )
        .await
        .map_err(map_err)?;
    let parse_spec = |s: Option<String>| -> Result<Option<PolicySpec>, StoreError> {
        s.map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| corrupt("policy spec", e))
    };
    let mut versions = Vec::new();
    for row in &rows {
        let action: String = col(row, 1)?;
        let action = match action.as_str() {
            "created" => ChangeKind::Created,
            "updated" => ChangeKind::Updated,
            "deleted" => ChangeKind::Deleted,
            other => return Err(corrupt("policy version action", other)),
        };
        versions.push(PolicyVersion {
            policy_id: id,
            version: col(row, 0)?,
            action,
            before: parse_spec(col(row, 2)?)?,
            after: parse_spec(col(row, 3)?)?,
            actor: col(row, 4)?,
            reason: col(row, 5)?,
            at: from_micros(col(row, 6)?)?,
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

pub(super) async fn load_chain(
    tx: &Transaction<'_>,
    agent_id: AgentId,
) -> Result<Option<ChainPolicies>, StoreError> {
    let Some(members) = chain(tx, agent_id).await? else {
        return Ok(None);
    };
    // Every member's live policies in one query, in chain order, each member's by creation.
    let ids: Vec<uuid::Uuid> = members.iter().map(|m| m.id.0).collect();
    let rows = tx
        .query_typed(
            &format!(
                "SELECT {POLICY_COLUMNS} FROM policies
                 WHERE NOT deleted AND agent_id = ANY($1)
                 ORDER BY array_position($1, agent_id), created_at, id LIMIT $2"
            ),
            &[(&ids, Type::UUID_ARRAY), (&list_limit(), Type::INT8)],
        )
        .await
        .map_err(map_err)?;
    let policies = rows
        .iter()
        .map(policy_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let chain = AgentChain::new(members).map_err(|e| corrupt("agent chain", e))?;
    Ok(Some(ChainPolicies { chain, policies }))
}

pub(super) async fn set_prices(
    tx: &Transaction<'_>,
    entries: &[PriceEntry],
    at: DateTime<Utc>,
) -> Result<i64, StoreError> {
    for entry in entries {
        let price = serde_json::to_string(&entry.price).map_err(|e| corrupt("price", e))?;
        tx.execute_typed(
            "INSERT INTO prices (provider, resource, price, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (provider, resource) DO UPDATE SET price = excluded.price,
               updated_at = excluded.updated_at",
            &[
                (&entry.provider, Type::TEXT),
                (&entry.resource, Type::TEXT),
                (&price, Type::TEXT),
                (&micros(at), Type::INT8),
            ],
        )
        .await
        .map_err(map_err)?;
    }
    let row = tx
        .query_typed_one(
            "UPDATE pricebook_meta SET version = version + 1 WHERE id = 1 RETURNING version",
            &[],
        )
        .await
        .map_err(map_err)?;
    col(&row, 0)
}

pub(super) async fn list_prices(tx: &Transaction<'_>) -> Result<Vec<PriceEntry>, StoreError> {
    let rows = tx
        .query_typed(
            "SELECT provider, resource, price FROM prices ORDER BY provider, resource LIMIT $1",
            &[(&list_limit(), Type::INT8)],
        )
        .await
        .map_err(map_err)?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in &rows {
        let price: String = col(row, 2)?;
        let price: Price = serde_json::from_str(&price).map_err(|e| corrupt("price", e))?;
        entries.push(PriceEntry {
            provider: col(row, 0)?,
            resource: col(row, 1)?,
            price,
        });
    }
    Ok(entries)
}

pub(super) async fn pricebook(tx: &Transaction<'_>) -> Result<Pricebook, StoreError> {
    let row = tx
        .query_typed_one("SELECT version FROM pricebook_meta WHERE id = 1", &[])
        .await
        .map_err(map_err)?;
    let version: i64 = col(&row, 0)?;
    Ok(Pricebook::new(version, list_prices(tx).await?))
}

pub(super) async fn outbox_after(
    tx: &Transaction<'_>,
    after_id: i64,
    limit: usize,
) -> Result<Vec<OutboxRecord>, StoreError> {
    let limit = i64::try_from(limit.min(LIST_ROWS_MAX)).unwrap_or(0);
    let rows = tx
        .query_typed(
            "SELECT id, event, created_at FROM outbox WHERE id > $1 ORDER BY id LIMIT $2",
            &[(&after_id, Type::INT8), (&limit, Type::INT8)],
        )
        .await
        .map_err(map_err)?;
    let mut records = Vec::with_capacity(rows.len());
    for row in &rows {
        let event: String = col(row, 1)?;
        let event: AdminEvent = serde_json::from_str(&event).map_err(|e| corrupt("outbox", e))?;
        records.push(OutboxRecord {
            id: col(row, 0)?,
            event,
            created_at: from_micros(col(row, 2)?)?,
        });
    }
    Ok(records)
}
