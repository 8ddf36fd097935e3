//! `LedgerStore` on Postgres: ledger rows numbered per partition (uniqueness kept by
//! `ledger_event_ids`, rows written by binary COPY into the month-partitioned `ledger_events`),
//! sealed batches, signing keys and the ledger query. Appends and seals check the consumer's
//! fence first in their own transaction. The append transaction lives in `ledger_append.rs`,
//! row conversion and SQL text in `ledger_rows.rs`, the verifier's row reader in
//! `ledger_visit.rs`.

use async_trait::async_trait;
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::leases::check_fence;
use super::ledger_rows::{batch_from, query_batches, row_from, rows, BATCH_COLUMNS, ROW_COLUMNS};
use super::{col, map_err, PgStore, TxMode};
use super::{ledger_append, ledger_visit};
use crate::store::leases::Fence;
use crate::store::ledger::{
    AppendOutcome, CurrencyTotal, LedgerEntry, LedgerQuery, LedgerStore, PartitionHead,
    RangesVisitor, SealedBatch, SeqRange, StoredRow,
};
use crate::store::StoreError;

pub(super) async fn next_seq(tx: &Transaction<'_>, partition: i32) -> Result<i64, StoreError> {
    let row = tx
        .query_typed(
            r#"SELECT max(seq) FROM ledger_event_ids WHERE "partition" = $1"#,
            &[(&partition, Type::INT4)],
        )
        .await
        .map_err(map_err)?;
    let max: Option<i64> = col(&row[0], 0)?;
    Ok(max.map_or(0, |m| m.saturating_add(1)))
}

async fn last_batch(
    tx: &Transaction<'_>,
    partition: i32,
) -> Result<Option<SealedBatch>, StoreError> {
    Ok(query_batches(
        tx,
        r#""partition" = $1 ORDER BY batch_number DESC LIMIT 1"#,
        &[(&partition, Type::INT4)],
    )
    .await?
    .pop())
}

async fn head(tx: &Transaction<'_>, partition: i32) -> Result<PartitionHead, StoreError> {
    Ok(PartitionHead {
        partition,
        next_seq: next_seq(tx, partition).await?,
        last_batch: last_batch(tx, partition).await?,
    })
}

/// Stores `batches` (consecutive, of one partition): the fence once, the head once, each
/// batch checked to follow the one before it (the first the stored head), then all inserted.
async fn seal(
    tx: &Transaction<'_>,
    fence: Option<&Fence>,
    batches: &[SealedBatch],
) -> Result<(), StoreError> {
    if let Some(fence) = fence {
        check_fence(tx, fence, None).await?;
    }
    let mut expected: Option<PartitionHead> = None;
    for batch in batches {
        let h = &batch.header;
        let known = match expected.take() {
            Some(head) if head.partition == h.partition => head,
            _ => head(tx, h.partition).await?,
        };
        known.check_next_batch(h)?;
        expected = Some(PartitionHead {
            last_batch: Some(batch.clone()),
            ..known
        });
    }
    // Sent together; the server runs them one after the other.
    futures_util::future::try_join_all(batches.iter().map(|b| insert_batch(tx, b))).await?;
    Ok(())
}

async fn insert_batch(tx: &Transaction<'_>, batch: &SealedBatch) -> Result<(), StoreError> {
    let h = &batch.header;
    let (root, prev_root) = (h.root.to_vec(), h.prev_root.to_vec());
    tx.execute_typed(
        &format!(
            "INSERT INTO merkle_batches ({BATCH_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ),
        &[
            (&h.partition, Type::INT4),
            (&h.batch_number, Type::INT8),
            (&h.first_seq, Type::INT8),
            (&h.last_seq, Type::INT8),
            (&h.count, Type::INT8),
            (&root, Type::BYTEA),
            (&prev_root, Type::BYTEA),
            (&h.first_time_micros, Type::INT8),
            (&h.last_time_micros, Type::INT8),
            (&h.key_id, Type::TEXT),
            (&batch.signature, Type::BYTEA),
            (&batch.sealed_at_micros, Type::INT8),
        ],
    )
    .await
    .map_err(map_err)?;
    Ok(())
}

async fn query(
    tx: &Transaction<'_>,
    q: &LedgerQuery,
) -> Result<(Vec<StoredRow>, Vec<CurrencyTotal>), StoreError> {
    let Ok(agent) = Uuid::parse_str(&q.agent_id) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let filter = "(agent_id = $1 OR ($2 AND $1 = ANY(ancestor_ids)))
                  AND occurred_at >= $3 AND occurred_at < $4";
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    let found = rows(
        tx,
        &format!(r#"{filter} ORDER BY occurred_at, "partition", seq LIMIT $5"#),
        &[
            (&agent, Type::UUID),
            (&q.include_children, Type::BOOL),
            (&q.start_micros, Type::INT8),
            (&q.end_micros, Type::INT8),
            (&limit, Type::INT8),
        ],
    )
    .await?;
    let totals = tx
        .query_typed(
            &format!(
                "SELECT currency, count(*), sum(cost_micros)::bigint FROM ledger_events
                 WHERE {filter} GROUP BY currency ORDER BY currency"
            ),
            &[
                (&agent, Type::UUID),
                (&q.include_children, Type::BOOL),
                (&q.start_micros, Type::INT8),
                (&q.end_micros, Type::INT8),
            ],
        )
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| {
            Ok(CurrencyTotal {
                currency: col(r, 0)?,
                events: col(r, 1)?,
                cost_micros: col(r, 2)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((found, totals))
}

async fn event(tx: &Transaction<'_>, event_id: &str) -> Result<Option<StoredRow>, StoreError> {
    let Ok(id) = Uuid::parse_str(event_id) else {
        return Ok(None);
    };
    let place = tx
        .query_typed_opt(
            r#"SELECT "partition", seq, occurred_at FROM ledger_event_ids WHERE event_id = $1"#,
            &[(&id, Type::UUID)],
        )
        .await
        .map_err(map_err)?;
    let Some(place) = place else {
        return Ok(None);
    };
    let (partition, seq, at): (i32, i64, i64) = (col(&place, 0)?, col(&place, 1)?, col(&place, 2)?);
    Ok(rows(
        tx,
        r#""partition" = $1 AND seq = $2 AND occurred_at = $3"#,
        &[
            (&partition, Type::INT4),
            (&seq, Type::INT8),
            (&at, Type::INT8),
        ],
    )
    .await?
    .pop())
}

async fn put_key(
    tx: &Transaction<'_>,
    key_id: &str,
    public_key: &[u8],
    at_micros: i64,
) -> Result<(), StoreError> {
    let key_id = key_id.to_owned();
    let public_key = public_key.to_vec();
    let inserted = tx
        .execute_typed(
            "INSERT INTO signing_keys (key_id, algorithm, public_key, created_at)
             VALUES ($1, 'ECDSA_P256_SHA256', $2, $3) ON CONFLICT (key_id) DO NOTHING",
            &[
                (&key_id, Type::TEXT),
                (&public_key, Type::BYTEA),
                (&at_micros, Type::INT8),
            ],
        )
        .await
        .map_err(map_err)?;
    if inserted == 1 {
        return Ok(());
    }
    let stored = tx
        .query_typed(
            "SELECT public_key FROM signing_keys WHERE key_id = $1",
            &[(&key_id, Type::TEXT)],
        )
        .await
        .map_err(map_err)?;
    match stored.first().map(|r| col::<Vec<u8>>(r, 0)).transpose()? {
        Some(stored) if stored == public_key => Ok(()),
        _ => Err(StoreError::Conflict(format!(
            "signing key {key_id} is already stored with a different public key"
        ))),
    }
}

#[async_trait]
impl LedgerStore for PgStore {
    async fn append_ledger(
        &self,
        fence: &Fence,
        entries: Vec<LedgerEntry>,
        next_offset: i64,
    ) -> Result<AppendOutcome, StoreError> {
        let fence = fence.clone();
        self.transaction(TxMode::Write, move |tx| {
            Box::pin(async move { ledger_append::append(tx, &fence, &entries, next_offset).await })
        })
        .await
    }

    async fn ledger_heads(&self) -> Result<Vec<PartitionHead>, StoreError> {
        self.read(|tx| {
            Box::pin(async move {
                // One index seek per partition (a skip scan), not a scan of every row.
                let mut heads = Vec::new();
                let mut after = i32::MIN;
                loop {
                    let next = tx
                        .query_typed(
                            r#"SELECT min("partition") FROM ledger_event_ids
                               WHERE "partition" > $1"#,
                            &[(&after, Type::INT4)],
                        )
                        .await
                        .map_err(map_err)?;
                    let Some(partition) = col::<Option<i32>>(&next[0], 0)? else {
                        break;
                    };
                    heads.push(head(tx, partition).await?);
                    after = partition;
                }
                Ok(heads)
            })
        })
        .await
    }

    async fn ledger_head(&self, partition: i32) -> Result<PartitionHead, StoreError> {
        self.read(move |tx| Box::pin(head(tx, partition))).await
    }

    async fn ledger_rows(
        &self,
        partition: i32,
        first: i64,
        last: i64,
    ) -> Result<Vec<StoredRow>, StoreError> {
        self.query_once(
            &format!(
                r#"SELECT {ROW_COLUMNS} FROM ledger_events
                   WHERE "partition" = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq"#
            ),
            &[
                (&partition, Type::INT4),
                (&first, Type::INT8),
                (&last, Type::INT8),
            ],
        )
        .await?
        .iter()
        .map(row_from)
        .collect()
    }

    async fn visit_ledger_ranges(
        &self,
        ranges: Vec<SeqRange>,
        visit: RangesVisitor,
    ) -> Result<(), StoreError> {
        ledger_visit::visit_ranges(self, ranges, visit).await
    }

    async fn ledger_datums(
        &self,
        partition: i32,
        first: i64,
        last: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        self.read(move |tx| {
            Box::pin(async move {
                let found = tx
                    .query_typed(
                        r#"SELECT seq, datum FROM ledger_events
                           WHERE "partition" = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq"#,
                        &[
                            (&partition, Type::INT4),
                            (&first, Type::INT8),
                            (&last, Type::INT8),
                        ],
                    )
                    .await
                    .map_err(map_err)?;
                found.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect()
            })
        })
        .await
    }

    async fn ledger_event(&self, event_id: &str) -> Result<Option<StoredRow>, StoreError> {
        let event_id = event_id.to_owned();
        self.read(move |tx| Box::pin(async move { event(tx, &event_id).await }))
            .await
    }

    async fn seal_batch(
        &self,
        fence: Option<&Fence>,
        batch: &SealedBatch,
    ) -> Result<(), StoreError> {
        self.seal_batches(fence, std::slice::from_ref(batch)).await
    }

    async fn seal_batches(
        &self,
        fence: Option<&Fence>,
        batches: &[SealedBatch],
    ) -> Result<(), StoreError> {
        let (fence, batches) = (fence.cloned(), batches.to_vec());
        self.transaction(TxMode::Write, move |tx| {
            Box::pin(async move { seal(tx, fence.as_ref(), &batches).await })
        })
        .await
    }

    async fn merkle_batch(
        &self,
        partition: i32,
        batch_number: i64,
    ) -> Result<Option<SealedBatch>, StoreError> {
        self.query_once(
            &format!(
                r#"SELECT {BATCH_COLUMNS} FROM merkle_batches
                   WHERE "partition" = $1 AND batch_number = $2"#
            ),
            &[(&partition, Type::INT4), (&batch_number, Type::INT8)],
        )
        .await?
        .first()
        .map(batch_from)
        .transpose()
    }

    async fn batch_covering(
        &self,
        partition: i32,
        seq: i64,
    ) -> Result<Option<SealedBatch>, StoreError> {
        self.read(move |tx| {
            Box::pin(async move {
                Ok(query_batches(
                    tx,
                    r#""partition" = $1 AND first_seq <= $2 AND last_seq >= $2
                       ORDER BY first_seq DESC LIMIT 1"#,
                    &[(&partition, Type::INT4), (&seq, Type::INT8)],
                )
                .await?
                .pop())
            })
        })
        .await
    }

    async fn batches_in_range(
        &self,
        start_micros: i64,
        end_micros: i64,
        after: Option<(i32, i64)>,
        limit: usize,
    ) -> Result<Vec<SealedBatch>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (after_partition, after_number) = after.unwrap_or((i32::MIN, i64::MIN));
        self.read(move |tx| {
            Box::pin(async move {
                query_batches(
                    tx,
                    r#"last_time >= $1 AND first_time < $2
                       AND ("partition", batch_number) > ($3, $4)
                       ORDER BY "partition", batch_number LIMIT $5"#,
                    &[
                        (&start_micros, Type::INT8),
                        (&end_micros, Type::INT8),
                        (&after_partition, Type::INT4),
                        (&after_number, Type::INT8),
                        (&limit, Type::INT8),
                    ],
                )
                .await
            })
        })
        .await
    }

    async fn count_batches_in_range(
        &self,
        start_micros: i64,
        end_micros: i64,
    ) -> Result<u64, StoreError> {
        self.read(move |tx| {
            Box::pin(async move {
                let row = tx
                    .query_typed(
                        "SELECT count(*) FROM merkle_batches
                         WHERE last_time >= $1 AND first_time < $2",
                        &[(&start_micros, Type::INT8), (&end_micros, Type::INT8)],
                    )
                    .await
                    .map_err(map_err)?;
                Ok(u64::try_from(col::<i64>(&row[0], 0)?).unwrap_or(0))
            })
        })
        .await
    }

    async fn put_signing_key(
        &self,
        key_id: &str,
        public_key: &[u8],
        at_micros: i64,
    ) -> Result<(), StoreError> {
        let (key_id, public_key) = (key_id.to_owned(), public_key.to_vec());
        self.transaction(TxMode::Write, move |tx| {
            Box::pin(async move { put_key(tx, &key_id, &public_key, at_micros).await })
        })
        .await
    }

    async fn signing_keys(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read(|tx| {
            Box::pin(async move {
                let found = tx
                    .query_typed(
                        "SELECT key_id, public_key FROM signing_keys ORDER BY created_at, key_id",
                        &[],
                    )
                    .await
                    .map_err(map_err)?;
                found.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect()
            })
        })
        .await
    }

    async fn query_ledger(
        &self,
        query: &LedgerQuery,
    ) -> Result<(Vec<StoredRow>, Vec<CurrencyTotal>), StoreError> {
        let query = query.clone();
        self.read(move |tx| Box::pin(async move { self::query(tx, &query).await }))
            .await
    }
}
