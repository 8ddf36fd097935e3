//! The ledger's append transaction on Postgres: the fence, duplicate detection through the
//! unique index of `ledger_event_ids`, contiguous numbering, the batch's monthly partitions, and
//! the rows by binary `COPY`. Runs inside the transaction `ledger.rs` opens; opens none itself.
//!
//! The ids go in by binary `COPY` under a savepoint: the unique index refuses the whole COPY if
//! any event is already present (a retried publish), and only then are they inserted again one
//! by one (`ON CONFLICT DO NOTHING RETURNING`) to learn which ones are new. Either way the
//! index decides, so duplicates are found exactly as before; the common case costs what a bare
//! COPY costs.

use std::collections::HashSet;

use chrono::Datelike;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::leases::check_fence;
use super::ledger::next_seq;
use super::ledger_rows::{Ids, COPY_TYPES, ROW_COLUMNS};
use super::{col, map_err};
use crate::store::leases::Fence;
use crate::store::ledger::{AppendOutcome, LedgerEntry};
use crate::store::StoreError;

/// Creates the monthly partitions of `ledger_events` the entries fall in (a catalog lookup
/// when they exist).
async fn ensure_months(tx: &Transaction<'_>, entries: &[LedgerEntry]) -> Result<(), StoreError> {
    let mut seen = HashSet::new();
    let mut instants = Vec::new();
    for entry in entries {
        let at = entry.columns.occurred_at_micros;
        let month = chrono::DateTime::from_timestamp_micros(at).map(|t| (t.year(), t.month()));
        if seen.insert(month) {
            instants.push(at);
        }
    }
    tx.execute_typed(
        "SELECT caracal_ensure_ledger_partition(at) FROM unnest($1::bigint[]) AS at",
        &[(&instants, Type::INT8_ARRAY)],
    )
    .await
    .map_err(map_err)?;
    Ok(())
}

/// Writes the `ledger_event_ids` rows of `fresh` (event, seq, time), numbered from `first_seq`
/// in order, by one binary COPY under a savepoint. `Ok(false)` when the unique index refused
/// it (some event, or number, is already present): the savepoint is rolled back, nothing of
/// the COPY remains, and the caller inserts them one by one (`insert_ids`).
async fn copy_ids(
    tx: &Transaction<'_>,
    partition: i32,
    first_seq: i64,
    fresh: &[(Uuid, i64)],
) -> Result<bool, StoreError> {
    tx.batch_execute("SAVEPOINT ledger_ids")
        .await
        .map_err(map_err)?;
    let copied = async {
        let sink = tx
            .copy_in(r#"COPY ledger_event_ids (event_id, "partition", seq, occurred_at) FROM STDIN (FORMAT binary)"#)
            .await?;
        let types = [Type::UUID, Type::INT4, Type::INT8, Type::INT8];
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
        let mut seq = first_seq;
        for (event, at) in fresh {
            let values: [&(dyn ToSql + Sync); 4] = [event, &partition, &seq, at];
            writer.as_mut().write(&values).await?;
            seq = seq.saturating_add(1);
        }
        writer.finish().await
    }
    .await;
    match copied {
        Ok(n) if n == fresh.len() as u64 => {
            tx.batch_execute("RELEASE SAVEPOINT ledger_ids")
                .await
                .map_err(map_err)?;
            Ok(true)
        }
        Ok(n) => Err(StoreError::Unavailable(format!(
            "copied {n} ledger event ids, expected {}",
            fresh.len()
        ))),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT ledger_ids")
                .await
                .map_err(map_err)?;
            Ok(false)
        }
        Err(e) => Err(map_err(e)),
    }
}

/// Inserts the `ledger_event_ids` rows of `fresh` (event, seq, time), numbered from `first_seq`
/// in order, skipping events already present; returns the events that were new. The unique
/// index does the duplicate check, one probe per event.
async fn insert_ids(
    tx: &Transaction<'_>,
    partition: i32,
    first_seq: i64,
    fresh: &[(Uuid, i64)],
) -> Result<HashSet<Uuid>, StoreError> {
    let events: Vec<Uuid> = fresh.iter().map(|(e, _)| *e).collect();
    let times: Vec<i64> = fresh.iter().map(|(_, t)| *t).collect();
    let inserted = tx
        .query_typed(
            r#"INSERT INTO ledger_event_ids (event_id, "partition", seq, occurred_at)
               SELECT e, $2, $3 + n - 1, t
               FROM unnest($1::uuid[], $4::bigint[]) WITH ORDINALITY AS u(e, t, n)
               ON CONFLICT (event_id) DO NOTHING
               RETURNING event_id"#,
            &[
                (&events, Type::UUID_ARRAY),
                (&partition, Type::INT4),
                (&first_seq, Type::INT8),
                (&times, Type::INT8_ARRAY),
            ],
        )
        .await
        .map_err(map_err)?;
    inserted.iter().map(|r| col::<Uuid>(r, 0)).collect()
}

pub(super) async fn append(
    tx: &Transaction<'_>,
    fence: &Fence,
    entries: &[LedgerEntry],
    next_offset: i64,
) -> Result<AppendOutcome, StoreError> {
    let ids = entries
        .iter()
        .map(|e| Ids::parse(&e.columns))
        .collect::<Result<Vec<_>, _>>()?;
    // Sent together, run in this order by the server: the fence (which locks the lease row
    // until commit) first, then the numbering and the months.
    let ((), first_seq, ()) = futures_util::try_join!(
        check_fence(tx, fence, Some(next_offset)),
        next_seq(tx, fence.partition),
        ensure_months(tx, entries),
    )?;
    let mut new = register_ids(tx, fence.partition, first_seq, entries, &ids).await?;

    let mut seq = first_seq;
    let mut outcome = AppendOutcome {
        seqs: Vec::with_capacity(entries.len()),
        ..AppendOutcome::default()
    };
    let mut fresh = Vec::with_capacity(new.len());
    for (entry, ids) in entries.iter().zip(&ids) {
        if new.remove(&ids.event) {
            outcome.seqs.push(Some(seq));
            fresh.push((seq, entry, ids));
            seq = seq.saturating_add(1);
        } else {
            outcome.seqs.push(None);
        }
    }
    outcome.inserted = fresh.len();
    outcome.duplicates = entries.len() - fresh.len();
    if fresh.is_empty() {
        return Ok(outcome);
    }

    copy_rows(tx, fence.partition, &fresh).await?;
    Ok(outcome)
}

/// Numbers the batch's new events from `first_seq` in `ledger_event_ids` (events repeated
/// inside the batch count once, the first; events already in the ledger, from a retried
/// publish, are left out so sequences stay contiguous). Returns the new events' ids.
async fn register_ids(
    tx: &Transaction<'_>,
    partition: i32,
    first_seq: i64,
    entries: &[LedgerEntry],
    ids: &[Ids],
) -> Result<HashSet<Uuid>, StoreError> {
    let mut in_batch = HashSet::with_capacity(entries.len());
    let mut candidates: Vec<(Uuid, i64)> = entries
        .iter()
        .zip(ids)
        .filter(|(_, i)| in_batch.insert(i.event))
        .map(|(e, i)| (i.event, e.columns.occurred_at_micros))
        .collect();
    let mut new: HashSet<Uuid> = if copy_ids(tx, partition, first_seq, &candidates).await? {
        candidates.iter().map(|(e, _)| *e).collect()
    } else {
        insert_ids(tx, partition, first_seq, &candidates).await?
    };
    if new.len() != candidates.len() {
        // Some were already in the ledger (a retried publish): number only the new ones, so
        // sequences stay contiguous.
        tx.execute_typed(
            r#"DELETE FROM ledger_event_ids WHERE "partition" = $1 AND seq >= $2"#,
            &[(&partition, Type::INT4), (&first_seq, Type::INT8)],
        )
        .await
        .map_err(map_err)?;
        candidates.retain(|(e, _)| new.contains(e));
        new = insert_ids(tx, partition, first_seq, &candidates).await?;
        if new.len() != candidates.len() {
            return Err(StoreError::Conflict(format!(
                "partition {}: ledger events appeared while appending",
                partition
            )));
        }
    }
    Ok(new)
}

/// The new rows by one binary `COPY` into `ledger_events`.
async fn copy_rows(
    tx: &Transaction<'_>,
    partition: i32,
    fresh: &[(i64, &LedgerEntry, &Ids)],
) -> Result<(), StoreError> {
    let sink = tx
        .copy_in(&format!(
            "COPY ledger_events ({ROW_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await
        .map_err(map_err)?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    let mut writer = std::pin::pin!(writer);
    for (seq, entry, ids) in fresh {
        let c = &entry.columns;
        let values: [&(dyn ToSql + Sync); 23] = [
            &partition,
            seq,
            &entry.source_offset,
            &ids.event,
            &c.occurred_at_micros,
            &ids.request,
            &ids.agent,
            &ids.parent,
            &ids.root,
            &ids.ancestors,
            &c.provider,
            &c.resource,
            &c.operation,
            &c.input_tokens,
            &c.cached_input_tokens,
            &c.output_tokens,
            &c.calls,
            &c.cost_micros,
            &c.reserved_micros,
            &c.currency,
            &c.estimated,
            &c.outcome,
            &entry.datum,
        ];
        writer.as_mut().write(&values).await.map_err(map_err)?;
    }
    let copied = writer.finish().await.map_err(map_err)?;
    if copied != fresh.len() as u64 {
        return Err(StoreError::Unavailable(format!(
            "copied {copied} ledger rows, expected {}",
            fresh.len()
        )));
    }
    Ok(())
}
