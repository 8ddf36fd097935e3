//! `AuditStore` on Postgres: the `audit_log` rows, appended with the consumer's offset in one
//! fenced transaction, the `audit_exports` cursors, retention deletes and the range query.
//! Appends take a transaction-scoped advisory lock after the fence, so ids become visible in
//! id order (exports read `id > cursor` and must never skip a record committed late).

use async_trait::async_trait;
use tokio_postgres::types::Type;
use tokio_postgres::{Row, Transaction};

use super::leases::check_fence;
use super::{col, map_err, PgStore, TxMode};
use crate::store::audit::{AuditEntry, AuditRecord, AuditStore, RETENTION_DELETE_ROWS_MAX};
use crate::store::leases::Fence;
use crate::store::StoreError;

/// Serialises audit appends (see the module doc).
const AUDIT_APPEND_LOCK: i64 = 0x6361_7261_6361_6c02;

const COLUMNS: &str = r#"id, topic, "partition", "offset", event_id, event_type, occurred_at,
    agent_id, root_agent_id, record, logged_at"#;

fn record_from(r: &Row) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        id: col(r, 0)?,
        entry: AuditEntry {
            topic: col(r, 1)?,
            partition: col(r, 2)?,
            offset: col(r, 3)?,
            event_id: col(r, 4)?,
            event_type: col(r, 5)?,
            occurred_at_micros: col(r, 6)?,
            agent_id: col(r, 7)?,
            root_agent_id: col(r, 8)?,
            record: col(r, 9)?,
        },
        logged_at_micros: col(r, 10)?,
    })
}

async fn append(
    tx: &Transaction<'_>,
    fence: &Fence,
    entries: &[AuditEntry],
    next_offset: i64,
    logged_at: i64,
) -> Result<usize, StoreError> {
    check_fence(tx, fence, Some(next_offset)).await?;
    if entries.is_empty() {
        return Ok(0);
    }
    tx.execute_typed(
        "SELECT pg_advisory_xact_lock($1)",
        &[(&AUDIT_APPEND_LOCK, Type::INT8)],
    )
    .await
    .map_err(map_err)?;
    debug_assert!(
        entries.iter().all(|e| e.topic == fence.topic
            && e.partition == fence.partition
            && e.offset < next_offset),
        "an audit entry from outside the fenced batch"
    );
    let offsets: Vec<i64> = entries.iter().map(|e| e.offset).collect();
    let event_ids: Vec<Option<String>> = entries.iter().map(|e| e.event_id.clone()).collect();
    let types: Vec<&str> = entries.iter().map(|e| e.event_type.as_str()).collect();
    let times: Vec<i64> = entries.iter().map(|e| e.occurred_at_micros).collect();
    let agents: Vec<Option<&str>> = entries.iter().map(|e| e.agent_id.as_deref()).collect();
    let roots: Vec<Option<&str>> = entries.iter().map(|e| e.root_agent_id.as_deref()).collect();
    let records: Vec<&str> = entries.iter().map(|e| e.record.as_str()).collect();
    // WITH ORDINALITY keeps the input order, so ids follow log order.
    let inserted = tx
        .execute_typed(
            r#"INSERT INTO audit_log (topic, "partition", "offset", event_id, event_type,
                 occurred_at, agent_id, root_agent_id, record, logged_at)
               SELECT $1, $2, o, e, t, at, a, r, rec, $10
               FROM unnest($3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::text[],
                           $8::text[], $9::text[])
                    WITH ORDINALITY AS u(o, e, t, at, a, r, rec, n)
               ORDER BY n
               ON CONFLICT DO NOTHING"#,
            &[
                (&fence.topic, Type::TEXT),
                (&fence.partition, Type::INT4),
                (&offsets, Type::INT8_ARRAY),
                (&event_ids, Type::TEXT_ARRAY),
                (&types, Type::TEXT_ARRAY),
                (&times, Type::INT8_ARRAY),
                (&agents, Type::TEXT_ARRAY),
                (&roots, Type::TEXT_ARRAY),
                (&records, Type::TEXT_ARRAY),
                (&logged_at, Type::INT8),
            ],
        )
        .await
        .map_err(map_err)?;
    Ok(usize::try_from(inserted).unwrap_or(usize::MAX))
}

async fn select(
    tx: &Transaction<'_>,
    sql_where: &str,
    params: &[(&(dyn tokio_postgres::types::ToSql + Sync), Type)],
) -> Result<Vec<AuditRecord>, StoreError> {
    tx.query_typed(
        &format!("SELECT {COLUMNS} FROM audit_log WHERE {sql_where}"),
        params,
    )
    .await
    .map_err(map_err)?
    .iter()
    .map(record_from)
    .collect()
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(
        &self,
        fence: &Fence,
        entries: Vec<AuditEntry>,
        next_offset: i64,
        logged_at_micros: i64,
    ) -> Result<usize, StoreError> {
        let fence = fence.clone();
        self.transaction(TxMode::Write, move |tx| {
            Box::pin(
                async move { append(tx, &fence, &entries, next_offset, logged_at_micros).await },
            )
        })
        .await
    }

    async fn audit_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = sql_limit(limit);
        self.read(move |tx| {
            Box::pin(async move {
                select(
                    tx,
                    "id > $1 ORDER BY id LIMIT $2",
                    &[(&after_id, Type::INT8), (&limit, Type::INT8)],
                )
                .await
            })
        })
        .await
    }

    async fn audit_in_range(
        &self,
        start_micros: i64,
        end_micros: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = sql_limit(limit);
        self.read(move |tx| {
            Box::pin(async move {
                select(
                    tx,
                    "occurred_at >= $1 AND occurred_at < $2 AND id > $3 ORDER BY id LIMIT $4",
                    &[
                        (&start_micros, Type::INT8),
                        (&end_micros, Type::INT8),
                        (&after_id, Type::INT8),
                        (&limit, Type::INT8),
                    ],
                )
                .await
            })
        })
        .await
    }

    async fn audit_cursor(&self, destination: &str) -> Result<i64, StoreError> {
        let destination = destination.to_owned();
        self.read(move |tx| {
            Box::pin(async move {
                let row = tx
                    .query_typed_opt(
                        "SELECT after_id FROM audit_exports WHERE destination = $1",
                        &[(&destination, Type::TEXT)],
                    )
                    .await
                    .map_err(map_err)?;
                row.map_or(Ok(0), |r| col(&r, 0))
            })
        })
        .await
    }

    async fn move_audit_cursor(&self, destination: &str, after_id: i64) -> Result<(), StoreError> {
        let destination = destination.to_owned();
        self.transaction(TxMode::Write, move |tx| {
            Box::pin(async move {
                tx.execute_typed(
                    "INSERT INTO audit_exports (destination, after_id) VALUES ($1, $2)
                     ON CONFLICT (destination) DO UPDATE
                     SET after_id = greatest(audit_exports.after_id, excluded.after_id)",
                    &[(&destination, Type::TEXT), (&after_id, Type::INT8)],
                )
                .await
                .map(|_| ())
                .map_err(map_err)
            })
        })
        .await
    }

    async fn delete_audit_before(&self, before_micros: i64) -> Result<usize, StoreError> {
        let limit = sql_limit(RETENTION_DELETE_ROWS_MAX);
        self.transaction(TxMode::Write, move |tx| {
            Box::pin(async move {
                tx.execute_typed(
                    "DELETE FROM audit_log WHERE id IN
                       (SELECT id FROM audit_log WHERE occurred_at < $1 ORDER BY id LIMIT $2)",
                    &[(&before_micros, Type::INT8), (&limit, Type::INT8)],
                )
                .await
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                .map_err(map_err)
            })
        })
        .await
    }
}
