//! `AuditStore` on SQLite: the `audit_log` rows, appended with the consumer's offset in one
//! fenced transaction, the `audit_exports` cursors, retention deletes and the range query.
//! Knows nothing of record contents beyond the indexed columns.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row, Transaction};

use super::leases::check_fence;
use super::{map_err, SqliteStore};
use crate::store::audit::{AuditEntry, AuditRecord, AuditStore, RETENTION_DELETE_ROWS_MAX};
use crate::store::leases::Fence;
use crate::store::StoreError;

const COLUMNS: &str = r#"id, topic, "partition", "offset", event_id, event_type, occurred_at,
    agent_id, root_agent_id, record, logged_at"#;

fn record_from(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        id: r.get(0)?,
        entry: AuditEntry {
            topic: r.get(1)?,
            partition: r.get(2)?,
            offset: r.get(3)?,
            event_id: r.get(4)?,
            event_type: r.get(5)?,
            occurred_at_micros: r.get(6)?,
            agent_id: r.get(7)?,
            root_agent_id: r.get(8)?,
            record: r.get(9)?,
        },
        logged_at_micros: r.get(10)?,
    })
}

fn append(
    tx: &Transaction<'_>,
    fence: &Fence,
    entries: &[AuditEntry],
    next_offset: i64,
    logged_at: i64,
) -> Result<usize, StoreError> {
    check_fence(tx, fence, Some(next_offset))?;
    let mut insert = tx
        .prepare_cached(
            r#"INSERT INTO audit_log (topic, "partition", "offset", event_id, event_type,
                 occurred_at, agent_id, root_agent_id, record, logged_at)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
               ON CONFLICT DO NOTHING"#,
        )
        .map_err(map_err)?;
    let mut inserted = 0;
    for e in entries {
        debug_assert!(
            e.topic == fence.topic && e.partition == fence.partition && e.offset < next_offset,
            "an audit entry from outside the fenced batch"
        );
        inserted += insert
            .execute(params![
                e.topic,
                e.partition,
                e.offset,
                e.event_id,
                e.event_type,
                e.occurred_at_micros,
                e.agent_id,
                e.root_agent_id,
                e.record,
                logged_at,
            ])
            .map_err(map_err)?;
    }
    Ok(inserted)
}

fn select(
    tx: &Transaction<'_>,
    sql_where: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<AuditRecord>, StoreError> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE {sql_where}"
        ))
        .map_err(map_err)?;
    let rows = stmt
        .query_map(args, record_from)
        .map_err(map_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_err);
    rows
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(
        &self,
        fence: &Fence,
        entries: Vec<AuditEntry>,
        next_offset: i64,
        logged_at_micros: i64,
    ) -> Result<usize, StoreError> {
        let fence = fence.clone();
        self.write(move |tx| append(tx, &fence, &entries, next_offset, logged_at_micros))
            .await
    }

    async fn audit_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = sql_limit(limit);
        self.read(move |tx| select(tx, "id > ?1 ORDER BY id LIMIT ?2", params![after_id, limit]))
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
            select(
                tx,
                "occurred_at >= ?1 AND occurred_at < ?2 AND id > ?3 ORDER BY id LIMIT ?4",
                params![start_micros, end_micros, after_id, limit],
            )
        })
        .await
    }

    async fn audit_cursor(&self, destination: &str) -> Result<i64, StoreError> {
        let destination = destination.to_owned();
        self.read(move |tx| {
            tx.query_row(
                "SELECT after_id FROM audit_exports WHERE destination = ?1",
                params![destination],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|id| id.unwrap_or(0))
            .map_err(map_err)
        })
        .await
    }

    async fn move_audit_cursor(&self, destination: &str, after_id: i64) -> Result<(), StoreError> {
        let destination = destination.to_owned();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO audit_exports (destination, after_id) VALUES (?1, ?2)
                 ON CONFLICT (destination) DO UPDATE
                 SET after_id = max(after_id, excluded.after_id)",
                params![destination, after_id],
            )
            .map(|_| ())
            .map_err(map_err)
        })
        .await
    }

    async fn delete_audit_before(&self, before_micros: i64) -> Result<usize, StoreError> {
        let limit = sql_limit(RETENTION_DELETE_ROWS_MAX);
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM audit_log WHERE id IN
                   (SELECT id FROM audit_log WHERE occurred_at < ?1 ORDER BY id LIMIT ?2)",
                params![before_micros, limit],
            )
            .map_err(map_err)
        })
        .await
    }
}
