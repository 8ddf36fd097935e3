//! `LeaseStore` on Postgres: lease rows with fencing epochs and committed offsets, membership
//! rows for the fair split, and `check_fence`, which every fenced write runs first inside its
//! own transaction. The fence check updates the lease row, so the row stays locked until the
//! write commits: a takeover (which updates the same row) waits for it, and a write that
//! starts after a takeover sees the new epoch and fails with `Fenced`. Acquisitions of one
//! consumer are serialised by a transaction-scoped advisory lock (no session state, so
//! PgBouncer in transaction mode is fine).

use async_trait::async_trait;
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

use super::{col, map_err, PgStore, TxMode};
use crate::store::leases::{
    plan_acquisition, CurrentLease, Fence, Lease, LeasePlan, LeaseRequest, LeaseRow, LeaseStore,
};
use crate::store::StoreError;

/// Moves the committed offset of `fence`'s partition (or, with `None`, only locks its lease
/// row) inside the caller's transaction, if the lease still names this owner and epoch;
/// otherwise `Fenced` (the caller's transaction then rolls back, output included).
pub(super) async fn check_fence(
    tx: &Transaction<'_>,
    fence: &Fence,
    next_offset: Option<i64>,
) -> Result<(), StoreError> {
    let changed = tx
        .execute_typed(
            r#"UPDATE consumer_leases SET next_offset = coalesce($6, next_offset)
               WHERE consumer = $1 AND topic = $2 AND "partition" = $3 AND owner = $4
                 AND epoch = $5"#,
            &[
                (&fence.consumer, Type::TEXT),
                (&fence.topic, Type::TEXT),
                (&fence.partition, Type::INT4),
                (&fence.owner, Type::TEXT),
                (&fence.epoch, Type::INT8),
                (&next_offset, Type::INT8),
            ],
        )
        .await
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

async fn acquire(tx: &Transaction<'_>, req: &LeaseRequest) -> Result<Vec<Lease>, StoreError> {
    let lock_key = format!("caracal.leases.{}", req.consumer);
    tx.execute_typed(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[(&lock_key, Type::TEXT)],
    )
    .await
    .map_err(map_err)?;
    let expires = req.now_micros.saturating_add(req.ttl_micros);
    let members = join_members(tx, req, expires).await?;
    let mut current = current_leases(tx, req).await?;
    let plan = plan_acquisition(req, members, |partition| Ok(current.remove(&partition)))?;
    carry_out(tx, req, &plan, expires).await?;
    Ok(plan.leases(req))
}

/// Renews this replica's membership, forgets expired members, and counts the live ones.
async fn join_members(
    tx: &Transaction<'_>,
    req: &LeaseRequest,
    expires: i64,
) -> Result<i64, StoreError> {
    tx.execute_typed(
        "INSERT INTO consumer_members (consumer, owner, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (consumer, owner) DO UPDATE SET expires_at = excluded.expires_at",
        &[
            (&req.consumer, Type::TEXT),
            (&req.owner, Type::TEXT),
            (&expires, Type::INT8),
        ],
    )
    .await
    .map_err(map_err)?;
    tx.execute_typed(
        "DELETE FROM consumer_members WHERE consumer = $1 AND expires_at < $2",
        &[(&req.consumer, Type::TEXT), (&req.now_micros, Type::INT8)],
    )
    .await
    .map_err(map_err)?;
    let members: i64 = col(
        &tx.query_typed(
            "SELECT count(*) FROM consumer_members WHERE consumer = $1",
            &[(&req.consumer, Type::TEXT)],
        )
        .await
        .map_err(map_err)?[0],
        0,
    )?;
    Ok(members)
}

/// The consumer's current leases of the topic, locked for this transaction, by partition.
async fn current_leases(
    tx: &Transaction<'_>,
    req: &LeaseRequest,
) -> Result<std::collections::HashMap<i32, CurrentLease>, StoreError> {
    let rows = tx
        .query_typed(
            r#"SELECT "partition", owner, epoch, expires_at, next_offset FROM consumer_leases
               WHERE consumer = $1 AND topic = $2 AND "partition" < $3 FOR UPDATE"#,
            &[
                (&req.consumer, Type::TEXT),
                (&req.topic, Type::TEXT),
                (&req.partitions, Type::INT4),
            ],
        )
        .await
        .map_err(map_err)?;
    let mut current = std::collections::HashMap::new();
    for row in &rows {
        let partition: i32 = col(row, 0)?;
        current.insert(
            partition,
            (col(row, 1)?, col(row, 2)?, col(row, 3)?, col(row, 4)?),
        );
    }
    Ok(current)
}

/// Writes the plan: releases, renews what is kept, takes new partitions with their epochs.
async fn carry_out(
    tx: &Transaction<'_>,
    req: &LeaseRequest,
    plan: &LeasePlan,
    expires: i64,
) -> Result<(), StoreError> {
    for partition in &plan.release {
        tx.execute_typed(
            r#"UPDATE consumer_leases SET owner = NULL, expires_at = 0
               WHERE consumer = $1 AND topic = $2 AND "partition" = $3 AND owner = $4"#,
            &[
                (&req.consumer, Type::TEXT),
                (&req.topic, Type::TEXT),
                (partition, Type::INT4),
                (&req.owner, Type::TEXT),
            ],
        )
        .await
        .map_err(map_err)?;
    }
    tx.execute_typed(
        "UPDATE consumer_leases SET expires_at = $4
         WHERE consumer = $1 AND topic = $2 AND owner = $3",
        &[
            (&req.consumer, Type::TEXT),
            (&req.topic, Type::TEXT),
            (&req.owner, Type::TEXT),
            (&expires, Type::INT8),
        ],
    )
    .await
    .map_err(map_err)?;
    for (partition, epoch, offset) in &plan.take {
        tx.execute_typed(
            r#"INSERT INTO consumer_leases
                 (consumer, topic, "partition", owner, epoch, expires_at, next_offset)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (consumer, topic, "partition") DO UPDATE SET
                 owner = excluded.owner, epoch = excluded.epoch, expires_at = excluded.expires_at"#,
            &[
                (&req.consumer, Type::TEXT),
                (&req.topic, Type::TEXT),
                (partition, Type::INT4),
                (&req.owner, Type::TEXT),
                (epoch, Type::INT8),
                (&expires, Type::INT8),
                (offset, Type::INT8),
            ],
        )
        .await
        .map_err(map_err)?;
    }
    Ok(())
}

#[async_trait]
impl LeaseStore for PgStore {
    async fn acquire_leases(&self, request: &LeaseRequest) -> Result<Vec<Lease>, StoreError> {
        let request = request.clone();
        self.transaction(TxMode::Write, move |tx| {
            Box::pin(async move { acquire(tx, &request).await })
        })
        .await
    }

    async fn release_leases(&self, consumer: &str, owner: &str) -> Result<(), StoreError> {
        let (consumer, owner) = (consumer.to_owned(), owner.to_owned());
        self.transaction(TxMode::Write, move |tx| {
            Box::pin(async move {
                let args: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 2] =
                    [(&consumer, Type::TEXT), (&owner, Type::TEXT)];
                tx.execute_typed(
                    "UPDATE consumer_leases SET owner = NULL, expires_at = 0
                     WHERE consumer = $1 AND owner = $2",
                    &args,
                )
                .await
                .map_err(map_err)?;
                tx.execute_typed(
                    "DELETE FROM consumer_members WHERE consumer = $1 AND owner = $2",
                    &args,
                )
                .await
                .map_err(map_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn list_leases(&self, consumer: Option<&str>) -> Result<Vec<LeaseRow>, StoreError> {
        let consumer = consumer.map(str::to_owned);
        self.read(move |tx| {
            Box::pin(async move {
                let rows = tx
                    .query_typed(
                        r#"SELECT consumer, topic, "partition", owner, epoch, expires_at,
                                  next_offset
                           FROM consumer_leases WHERE $1::text IS NULL OR consumer = $1
                           ORDER BY consumer, topic, "partition""#,
                        &[(&consumer, Type::TEXT)],
                    )
                    .await
                    .map_err(map_err)?;
                rows.iter()
                    .map(|r| {
                        Ok(LeaseRow {
                            consumer: col(r, 0)?,
                            topic: col(r, 1)?,
                            partition: col(r, 2)?,
                            owner: col(r, 3)?,
                            epoch: col(r, 4)?,
                            expires_at_micros: col(r, 5)?,
                            next_offset: col(r, 6)?,
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    async fn commit_offset(&self, fence: &Fence, next_offset: i64) -> Result<(), StoreError> {
        let fence = fence.clone();
        self.transaction(TxMode::Write, move |tx| {
            Box::pin(async move { check_fence(tx, &fence, Some(next_offset)).await })
        })
        .await
    }

    async fn record_dlq_replay(
        &self,
        partition: i32,
        offset: i64,
        at_micros: i64,
    ) -> Result<bool, StoreError> {
        self.transaction(TxMode::Write, move |tx| {
            Box::pin(async move {
                tx.execute_typed(
                    r#"INSERT INTO dlq_replays ("partition", "offset", replayed_at)
                       VALUES ($1, $2, $3) ON CONFLICT ("partition", "offset") DO NOTHING"#,
                    &[
                        (&partition, Type::INT4),
                        (&offset, Type::INT8),
                        (&at_micros, Type::INT8),
                    ],
                )
                .await
                .map(|n| n == 1)
                .map_err(map_err)
            })
        })
        .await
    }

    async fn dlq_replays(&self) -> Result<Vec<(i32, i64)>, StoreError> {
        self.read(|tx| {
            Box::pin(async move {
                let rows = tx
                    .query_typed(
                        r#"SELECT "partition", "offset" FROM dlq_replays ORDER BY 1, 2"#,
                        &[],
                    )
                    .await
                    .map_err(map_err)?;
                rows.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect()
            })
        })
        .await
    }

    async fn dlq_replay_count(&self) -> Result<i64, StoreError> {
        self.read(|tx| {
            Box::pin(async move {
                let rows = tx
                    .query_typed("SELECT count(*) FROM dlq_replays", &[])
                    .await
                    .map_err(map_err)?;
                match rows.first() {
                    Some(row) => col(row, 0),
                    None => Ok(0),
                }
            })
        })
        .await
    }
}
