//! `LedgerStore` on SQLite: ledger rows with per-partition sequence numbers, sealed batches,
//! signing keys and the ledger query. Appends and seals check the consumer's fence in the
//! same transaction as their rows.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row, Transaction};

use super::leases::check_fence;
use super::ledger_rows::{self, join_ids, rows, ROW_COLUMNS};
use super::{corrupt, map_err, SqliteStore};
use crate::core::checkpoint::BatchHeader;
use crate::store::leases::Fence;
use crate::store::ledger::{
    AppendOutcome, CurrencyTotal, LedgerEntry, LedgerQuery, LedgerStore, PartitionHead,
    RangesVisitor, SealedBatch, SeqRange, StoredRow, Visit,
};
use crate::store::StoreError;

const BATCH_COLUMNS: &str = r#""partition", batch_number, first_seq, last_seq, count, root,
    prev_root, first_time, last_time, key_id, signature, sealed_at"#;

fn hash_from(bytes: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| corrupt(what, format!("{} bytes, not 32", bytes.len())))
}

type BatchRow = (
    i32,
    i64,
    i64,
    i64,
    i64,
    Vec<u8>,
    Vec<u8>,
    i64,
    i64,
    String,
    Vec<u8>,
    i64,
);

fn batch_row(r: &Row<'_>) -> rusqlite::Result<BatchRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
    ))
}

fn batch_from(row: BatchRow) -> Result<SealedBatch, StoreError> {
    let (partition, batch_number, first_seq, last_seq, count, root, prev_root, first, last) = (
        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8,
    );
    Ok(SealedBatch {
        header: BatchHeader {
            partition,
            batch_number,
            first_seq,
            last_seq,
            count,
            root: hash_from(root, "merkle_batches.root")?,
            prev_root: hash_from(prev_root, "merkle_batches.prev_root")?,
            first_time_micros: first,
            last_time_micros: last,
            key_id: row.9,
        },
        signature: row.10,
        sealed_at_micros: row.11,
    })
}

fn query_batches(
    tx: &Transaction<'_>,
    sql_where: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<SealedBatch>, StoreError> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {BATCH_COLUMNS} FROM merkle_batches WHERE {sql_where}"
        ))
        .map_err(map_err)?;
    let rows = stmt
        .query_map(args, batch_row)
        .map_err(map_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_err)?;
    rows.into_iter().map(batch_from).collect()
}

fn last_batch(tx: &Transaction<'_>, partition: i32) -> Result<Option<SealedBatch>, StoreError> {
    Ok(query_batches(
        tx,
        r#""partition" = ?1 ORDER BY batch_number DESC LIMIT 1"#,
        params![partition],
    )?
    .pop())
}

fn next_seq(tx: &Transaction<'_>, partition: i32) -> Result<i64, StoreError> {
    tx.prepare_cached(r#"SELECT max(seq) FROM ledger_events WHERE "partition" = ?1"#)
        .and_then(|mut s| s.query_row(params![partition], |r| r.get::<_, Option<i64>>(0)))
        .map_err(map_err)
        .map(|max| max.map_or(0, |m| m.saturating_add(1)))
}

fn head(tx: &Transaction<'_>, partition: i32) -> Result<PartitionHead, StoreError> {
    Ok(PartitionHead {
        partition,
        next_seq: next_seq(tx, partition)?,
        last_batch: last_batch(tx, partition)?,
    })
}

fn append(
    tx: &Transaction<'_>,
    fence: &Fence,
    entries: &[LedgerEntry],
    next_offset: i64,
) -> Result<AppendOutcome, StoreError> {
    check_fence(tx, fence, Some(next_offset))?;
    let mut seq = next_seq(tx, fence.partition)?;
    let mut outcome = AppendOutcome {
        seqs: Vec::with_capacity(entries.len()),
        ..AppendOutcome::default()
    };
    let mut insert = tx
        .prepare_cached(&format!(
            "INSERT INTO ledger_events ({ROW_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                     ?18, ?19, ?20, ?21, ?22, ?23)
             ON CONFLICT (event_id) DO NOTHING"
        ))
        .map_err(map_err)?;
    for entry in entries {
        let c = &entry.columns;
        let inserted = insert
            .execute(params![
                fence.partition,
                seq,
                entry.source_offset,
                c.event_id,
                c.occurred_at_micros,
                c.request_id,
                c.agent_id,
                c.parent_id,
                c.root_agent_id,
                join_ids(&c.ancestor_ids),
                c.provider,
                c.resource,
                c.operation,
                c.input_tokens,
                c.cached_input_tokens,
                c.output_tokens,
                c.calls,
                c.cost_micros,
                c.reserved_micros,
                c.currency,
                c.estimated,
                c.outcome,
                entry.datum,
            ])
            .map_err(map_err)?;
        if inserted == 1 {
            outcome.seqs.push(Some(seq));
            seq = seq.saturating_add(1);
            outcome.inserted += 1;
        } else {
            outcome.seqs.push(None);
            outcome.duplicates += 1;
        }
    }
    Ok(outcome)
}

fn seal(
    tx: &Transaction<'_>,
    fence: Option<&Fence>,
    batch: &SealedBatch,
) -> Result<(), StoreError> {
    if let Some(fence) = fence {
        check_fence(tx, fence, None)?;
    }
    let h = &batch.header;
    let expected = head(tx, h.partition)?;
    expected.check_next_batch(h)?;
    tx.prepare_cached(&format!(
        "INSERT INTO merkle_batches ({BATCH_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            h.partition,
            h.batch_number,
            h.first_seq,
            h.last_seq,
            h.count,
            h.root.as_slice(),
            h.prev_root.as_slice(),
            h.first_time_micros,
            h.last_time_micros,
            h.key_id,
            batch.signature,
            batch.sealed_at_micros,
        ])
    })
    .map_err(map_err)?;
    Ok(())
}

fn query(
    tx: &Transaction<'_>,
    q: &LedgerQuery,
) -> Result<(Vec<StoredRow>, Vec<CurrencyTotal>), StoreError> {
    let pattern = format!("%,{},%", q.agent_id);
    let filter = "(agent_id = ?1 OR (?2 AND ancestor_ids LIKE ?3))
                  AND occurred_at >= ?4 AND occurred_at < ?5";
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    let found = rows(
        tx,
        &format!(r#"{filter} ORDER BY occurred_at, "partition", seq LIMIT ?6"#),
        params![
            q.agent_id,
            q.include_children,
            pattern,
            q.start_micros,
            q.end_micros,
            limit
        ],
    )?;
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT currency, count(*), sum(cost_micros) FROM ledger_events WHERE {filter}
             GROUP BY currency ORDER BY currency"
        ))
        .map_err(map_err)?;
    let totals = stmt
        .query_map(
            params![
                q.agent_id,
                q.include_children,
                pattern,
                q.start_micros,
                q.end_micros
            ],
            |r| {
                Ok(CurrencyTotal {
                    currency: r.get(0)?,
                    events: r.get(1)?,
                    cost_micros: r.get(2)?,
                })
            },
        )
        .map_err(map_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_err)?;
    Ok((found, totals))
}

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn append_ledger(
        &self,
        fence: &Fence,
        entries: Vec<LedgerEntry>,
        next_offset: i64,
    ) -> Result<AppendOutcome, StoreError> {
        let fence = fence.clone();
        self.write(move |tx| append(tx, &fence, &entries, next_offset))
            .await
    }

    async fn ledger_heads(&self) -> Result<Vec<PartitionHead>, StoreError> {
        self.read(|tx| {
            // One index seek per partition (a skip scan), not a scan of every row.
            let mut heads = Vec::new();
            let mut after = i32::MIN;
            loop {
                let next: Option<i32> = tx
                    .prepare_cached(
                        r#"SELECT "partition" FROM ledger_events WHERE "partition" > ?1
                           ORDER BY "partition" LIMIT 1"#,
                    )
                    .and_then(|mut s| s.query_row(params![after], |r| r.get(0)).optional())
                    .map_err(map_err)?;
                let Some(partition) = next else { break };
                heads.push(head(tx, partition)?);
                after = partition;
            }
            Ok(heads)
        })
        .await
    }

    async fn ledger_head(&self, partition: i32) -> Result<PartitionHead, StoreError> {
        self.read(move |tx| head(tx, partition)).await
    }

    async fn ledger_rows(
        &self,
        partition: i32,
        first: i64,
        last: i64,
    ) -> Result<Vec<StoredRow>, StoreError> {
        self.read(move |tx| {
            rows(
                tx,
                r#""partition" = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq"#,
                params![partition, first, last],
            )
        })
        .await
    }

    async fn visit_ledger_ranges(
        &self,
        ranges: Vec<SeqRange>,
        mut visit: RangesVisitor,
    ) -> Result<(), StoreError> {
        self.read(move |tx| {
            for (i, range) in ranges.iter().enumerate() {
                ledger_rows::visit(tx, *range, |row| visit(Visit::Row(i, row)))?;
                visit(Visit::End(i));
            }
            Ok(())
        })
        .await
    }

    async fn ledger_datums(
        &self,
        partition: i32,
        first: i64,
        last: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        self.read(move |tx| {
            tx.prepare_cached(
                r#"SELECT seq, datum FROM ledger_events
                   WHERE "partition" = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq"#,
            )
            .and_then(|mut s| {
                s.query_map(params![partition, first, last], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect()
            })
            .map_err(map_err)
        })
        .await
    }

    async fn ledger_event(&self, event_id: &str) -> Result<Option<StoredRow>, StoreError> {
        let event_id = event_id.to_owned();
        self.read(move |tx| Ok(rows(tx, "event_id = ?1", params![event_id])?.pop()))
            .await
    }

    async fn seal_batch(
        &self,
        fence: Option<&Fence>,
        batch: &SealedBatch,
    ) -> Result<(), StoreError> {
        let (fence, batch) = (fence.cloned(), batch.clone());
        self.write(move |tx| seal(tx, fence.as_ref(), &batch)).await
    }

    async fn seal_batches(
        &self,
        fence: Option<&Fence>,
        batches: &[SealedBatch],
    ) -> Result<(), StoreError> {
        let (fence, batches) = (fence.cloned(), batches.to_vec());
        self.write(move |tx| {
            for batch in &batches {
                seal(tx, fence.as_ref(), batch)?;
            }
            Ok(())
        })
        .await
    }

    async fn merkle_batch(
        &self,
        partition: i32,
        batch_number: i64,
    ) -> Result<Option<SealedBatch>, StoreError> {
        self.read(move |tx| {
            Ok(query_batches(
                tx,
                r#""partition" = ?1 AND batch_number = ?2"#,
                params![partition, batch_number],
            )?
            .pop())
        })
        .await
    }

    async fn batch_covering(
        &self,
        partition: i32,
        seq: i64,
    ) -> Result<Option<SealedBatch>, StoreError> {
        self.read(move |tx| {
            Ok(query_batches(
                tx,
                r#""partition" = ?1 AND first_seq <= ?2 AND last_seq >= ?2"#,
                params![partition, seq],
            )?
            .pop())
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
            query_batches(
                tx,
                r#"last_time >= ?1 AND first_time < ?2
                   AND ("partition" > ?3 OR ("partition" = ?3 AND batch_number > ?4))
                   ORDER BY "partition", batch_number LIMIT ?5"#,
                params![
                    start_micros,
                    end_micros,
                    after_partition,
                    after_number,
                    limit
                ],
            )
        })
        .await
    }

    async fn count_batches_in_range(
        &self,
        start_micros: i64,
        end_micros: i64,
    ) -> Result<u64, StoreError> {
        self.read(move |tx| {
            tx.prepare_cached(
                "SELECT count(*) FROM merkle_batches WHERE last_time >= ?1 AND first_time < ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![start_micros, end_micros], |r| r.get::<_, i64>(0))
            })
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(map_err)
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
        self.write(move |tx| {
            let existing: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT public_key FROM signing_keys WHERE key_id = ?1",
                    params![key_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(map_err)?;
            match existing {
                Some(stored) if stored == public_key => Ok(()),
                Some(_) => Err(StoreError::Conflict(format!(
                    "signing key {key_id} is already stored with a different public key"
                ))),
                None => tx
                    .execute(
                        "INSERT INTO signing_keys (key_id, algorithm, public_key, created_at)
                         VALUES (?1, 'ECDSA_P256_SHA256', ?2, ?3)",
                        params![key_id, public_key, at_micros],
                    )
                    .map(|_| ())
                    .map_err(map_err),
            }
        })
        .await
    }

    async fn signing_keys(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read(|tx| {
            tx.prepare("SELECT key_id, public_key FROM signing_keys ORDER BY created_at")
                .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                .map_err(map_err)
        })
        .await
    }

    async fn query_ledger(
        &self,
        query: &LedgerQuery,
    ) -> Result<(Vec<StoredRow>, Vec<CurrencyTotal>), StoreError> {
        let query = query.clone();
        self.read(move |tx| self::query(tx, &query)).await
    }
}
