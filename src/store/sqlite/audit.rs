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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::leases::{LeaseRequest, LeaseStore};

    fn entry(offset: i64, event_id: Option<&str>, occurred_at_micros: i64) -> AuditEntry {
        AuditEntry {
            topic: "caracal.agent.lifecycle".into(),
            partition: 0,
            offset,
            event_id: event_id.map(str::to_owned),
            event_type: "AgentLifecycle".into(),
            occurred_at_micros,
            agent_id: Some("a".into()),
            root_agent_id: Some("a".into()),
            record: format!(r#"{{"offset":{offset}}}"#),
        }
    }

    async fn lease(store: &SqliteStore, owner: &str, now_micros: i64) -> Fence {
        let request = LeaseRequest {
            consumer: "audit".into(),
            topic: "caracal.agent.lifecycle".into(),
            partitions: 1,
            owner: owner.into(),
            now_micros,
            ttl_micros: 1_000,
        };
        let mut leases = store.acquire_leases(&request).await.unwrap();
        assert_eq!(leases.len(), 1, "{owner} gets the partition");
        leases.remove(0).fence
    }

    async fn committed_offset(store: &SqliteStore) -> i64 {
        store.list_leases(Some("audit")).await.unwrap()[0].next_offset
    }

    #[tokio::test]
    async fn a_stale_fence_writes_neither_records_nor_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let old = lease(&store, "replica-a", 0).await;
        let fresh = store
            .append_audit(&old, vec![entry(0, Some("e0"), 10)], 1, 1)
            .await
            .unwrap();
        assert_eq!(fresh, 1);
        // replica-a's lease expires and replica-b takes the partition with a new epoch.
        let new = lease(&store, "replica-b", 1_000_000).await;
        assert!(new.epoch > old.epoch);
        let stale = store
            .append_audit(&old, vec![entry(1, Some("e1"), 11)], 2, 2)
            .await;
        assert!(matches!(stale, Err(StoreError::Fenced(_))), "{stale:?}");
        assert_eq!(store.audit_after(0, 10).await.unwrap().len(), 1);
        assert_eq!(committed_offset(&store).await, 1);
        let taken = store
            .append_audit(&new, vec![entry(1, Some("e1"), 11)], 2, 2)
            .await
            .unwrap();
        assert_eq!(taken, 1);
        assert_eq!(committed_offset(&store).await, 2);
    }

    #[tokio::test]
    async fn appends_are_idempotent_on_place_and_on_event_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let fence = lease(&store, "replica-a", 0).await;
        let batch = vec![entry(0, Some("e0"), 10), entry(1, None, 11)];
        assert_eq!(
            store
                .append_audit(&fence, batch.clone(), 2, 1)
                .await
                .unwrap(),
            2
        );
        assert_eq!(store.append_audit(&fence, batch, 2, 1).await.unwrap(), 0);
        // The same event again at a later offset (a retried publish): logged once.
        let again = vec![entry(2, Some("e0"), 10), entry(3, None, 12)];
        assert_eq!(store.append_audit(&fence, again, 4, 1).await.unwrap(), 1);
        let ids: Vec<i64> = store
            .audit_after(0, 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.entry.offset)
            .collect();
        assert_eq!(ids, vec![0, 1, 3]);
    }

    #[tokio::test]
    async fn cursors_only_move_forward_and_retention_deletes_old_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let fence = lease(&store, "replica-a", 0).await;
        let batch = (0..3).map(|i| entry(i, None, 100 * i)).collect();
        store.append_audit(&fence, batch, 3, 1).await.unwrap();
        assert_eq!(store.audit_cursor("file:///x").await.unwrap(), 0);
        store.move_audit_cursor("file:///x", 2).await.unwrap();
        store.move_audit_cursor("file:///x", 1).await.unwrap();
        assert_eq!(store.audit_cursor("file:///x").await.unwrap(), 2);
        let in_range = store.audit_in_range(100, 201, 0, 10).await.unwrap();
        assert_eq!(in_range.len(), 2);
        assert_eq!(store.delete_audit_before(150).await.unwrap(), 2);
        assert_eq!(store.delete_audit_before(150).await.unwrap(), 0);
        let left = store.audit_after(0, 10).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].entry.occurred_at_micros, 200);
    }
}
