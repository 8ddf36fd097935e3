//! `LeaseStore` on SQLite: lease rows with fencing epochs and committed offsets, membership
//! rows for the fair split, and `check_fence`, which every fenced write calls inside its own
//! transaction before it commits.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Transaction};

use super::{map_err, SqliteStore};
use crate::store::leases::{plan_acquisition, Fence, Lease, LeaseRequest, LeaseRow, LeaseStore};
use crate::store::StoreError;

/// Moves the committed offset of `fence`'s partition, inside the caller's transaction, if the
/// lease still names this owner and epoch; otherwise `Fenced` (the caller's transaction then
/// rolls back, output included).
pub(super) fn check_fence(
    tx: &Transaction<'_>,
    fence: &Fence,
    next_offset: Option<i64>,
) -> Result<(), StoreError> {
    let changed = match next_offset {
        Some(offset) => tx
            .prepare_cached(
                r#"UPDATE consumer_leases SET next_offset = ?6
                   WHERE consumer = ?1 AND topic = ?2 AND "partition" = ?3 AND owner = ?4
                     AND epoch = ?5"#,
            )
            .and_then(|mut s| {
                s.execute(params![
                    fence.consumer,
                    fence.topic,
                    fence.partition,
                    fence.owner,
                    fence.epoch,
                    offset
                ])
                .map(|n| n as i64)
            }),
        None => tx
            .prepare_cached(
                r#"SELECT count(*) FROM consumer_leases
                   WHERE consumer = ?1 AND topic = ?2 AND "partition" = ?3 AND owner = ?4
                     AND epoch = ?5"#,
            )
            .and_then(|mut s| {
                s.query_row(
                    params![
                        fence.consumer,
                        fence.topic,
                        fence.partition,
                        fence.owner,
                        fence.epoch
                    ],
                    |r| r.get::<_, i64>(0),
                )
            }),
    }
    .map_err(map_err)?;
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::Fenced(format!(
            "{} lost {}/{} (epoch {})",
            fence.consumer, fence.topic, fence.partition, fence.epoch
        )))
    }
}

fn acquire(tx: &Transaction<'_>, req: &LeaseRequest) -> Result<Vec<Lease>, StoreError> {
    let expires = req.now_micros.saturating_add(req.ttl_micros);
    tx.execute(
        "INSERT INTO consumer_members (consumer, owner, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (consumer, owner) DO UPDATE SET expires_at = excluded.expires_at",
        params![req.consumer, req.owner, expires],
    )
    .map_err(map_err)?;
    tx.execute(
        "DELETE FROM consumer_members WHERE consumer = ?1 AND expires_at < ?2",
        params![req.consumer, req.now_micros],
    )
    .map_err(map_err)?;
    let members: i64 = tx
        .query_row(
            "SELECT count(*) FROM consumer_members WHERE consumer = ?1",
            params![req.consumer],
            |r| r.get(0),
        )
        .map_err(map_err)?;
    let plan = plan_acquisition(req, members, |partition| {
        tx.prepare_cached(
            r#"SELECT owner, epoch, expires_at, next_offset FROM consumer_leases
               WHERE consumer = ?1 AND topic = ?2 AND "partition" = ?3"#,
        )
        .and_then(|mut s| {
            s.query_row(params![req.consumer, req.topic, partition], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(map_err)
    })?;
    for partition in &plan.release {
        tx.execute(
            r#"UPDATE consumer_leases SET owner = NULL, expires_at = 0
               WHERE consumer = ?1 AND topic = ?2 AND "partition" = ?3 AND owner = ?4"#,
            params![req.consumer, req.topic, partition, req.owner],
        )
        .map_err(map_err)?;
    }
    for (partition, _, _) in &plan.keep {
        tx.execute(
            r#"UPDATE consumer_leases SET expires_at = ?5
               WHERE consumer = ?1 AND topic = ?2 AND "partition" = ?3 AND owner = ?4"#,
            params![req.consumer, req.topic, partition, req.owner, expires],
        )
        .map_err(map_err)?;
    }
    for (partition, epoch, offset) in &plan.take {
        tx.execute(
            r#"INSERT INTO consumer_leases
                 (consumer, topic, "partition", owner, epoch, expires_at, next_offset)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
               ON CONFLICT (consumer, topic, "partition") DO UPDATE SET
                 owner = excluded.owner, epoch = excluded.epoch, expires_at = excluded.expires_at"#,
            params![
                req.consumer,
                req.topic,
                partition,
                req.owner,
                epoch,
                expires,
                offset
            ],
        )
        .map_err(map_err)?;
    }
    Ok(plan.leases(req))
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn acquire_leases(&self, request: &LeaseRequest) -> Result<Vec<Lease>, StoreError> {
        let request = request.clone();
        self.write(move |tx| acquire(tx, &request)).await
    }

    async fn release_leases(&self, consumer: &str, owner: &str) -> Result<(), StoreError> {
        let (consumer, owner) = (consumer.to_owned(), owner.to_owned());
        self.write(move |tx| {
            tx.execute(
                "UPDATE consumer_leases SET owner = NULL, expires_at = 0
                 WHERE consumer = ?1 AND owner = ?2",
                params![consumer, owner],
            )
            .map_err(map_err)?;
            tx.execute(
                "DELETE FROM consumer_members WHERE consumer = ?1 AND owner = ?2",
                params![consumer, owner],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn list_leases(&self, consumer: Option<&str>) -> Result<Vec<LeaseRow>, StoreError> {
        let consumer = consumer.map(str::to_owned);
        self.read(move |tx| {
            let mut stmt = tx
                .prepare(
                    r#"SELECT consumer, topic, "partition", owner, epoch, expires_at, next_offset
                       FROM consumer_leases WHERE ?1 IS NULL OR consumer = ?1
                       ORDER BY consumer, topic, "partition""#,
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![consumer], |r| {
                    Ok(LeaseRow {
                        consumer: r.get(0)?,
                        topic: r.get(1)?,
                        partition: r.get(2)?,
                        owner: r.get(3)?,
                        epoch: r.get(4)?,
                        expires_at_micros: r.get(5)?,
                        next_offset: r.get(6)?,
                    })
                })
                .map_err(map_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
        })
        .await
    }

    async fn commit_offset(&self, fence: &Fence, next_offset: i64) -> Result<(), StoreError> {
        let fence = fence.clone();
        self.write(move |tx| check_fence(tx, &fence, Some(next_offset)))
            .await
    }

    async fn record_dlq_replay(
        &self,
        partition: i32,
        offset: i64,
        at_micros: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            tx.execute(
                r#"INSERT INTO dlq_replays ("partition", "offset", replayed_at) VALUES (?1, ?2, ?3)
                   ON CONFLICT ("partition", "offset") DO NOTHING"#,
                params![partition, offset, at_micros],
            )
            .map(|n| n == 1)
            .map_err(map_err)
        })
        .await
    }

    async fn dlq_replays(&self) -> Result<Vec<(i32, i64)>, StoreError> {
        self.read(|tx| {
            tx.prepare(r#"SELECT "partition", "offset" FROM dlq_replays ORDER BY 1, 2"#)
                .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                .map_err(map_err)
        })
        .await
    }

    async fn dlq_replay_count(&self) -> Result<i64, StoreError> {
        self.read(|tx| {
            tx.query_row("SELECT count(*) FROM dlq_replays", [], |r| r.get(0))
                .map_err(map_err)
        })
        .await
    }
}
