//! Sealing: turns the next unsealed rows of a partition into a signed Merkle batch, stores it,
//! and reads it back to verify it. Used by the ledger role (full or timed-out batches) and by
//! `merkle backfill` (everything unsealed). Never alters a row.

use crate::core::checkpoint::{BatchHeader, SigningKey};
use crate::core::merkle::{self, Hash};
use crate::store::leases::Fence;
use crate::store::ledger::{LedgerStore, PartitionHead, SealedBatch};
use crate::store::StoreError;

use super::verify::{self, BatchReport, KeyRing};

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot sign batch {batch} of partition {partition}: {reason}")]
    Sign {
        partition: i32,
        batch: i64,
        reason: String,
    },
    #[error("partition {partition}: rows {first}..={last} are not all present ({found} found)")]
    Incomplete {
        partition: i32,
        first: i64,
        last: i64,
        found: usize,
    },
}

/// A row as sealing needs it: its leaf hash and its time.
pub type SealInput = (Hash, i64);

/// Seals the next `count` unsealed rows after `head` (count ≥ 1). `known` may hold those rows'
/// leaves and times in sequence order (kept by the writer that just appended them); otherwise
/// the rows are read from the store. Returns the stored batch.
#[allow(clippy::too_many_arguments)]
pub async fn seal_next(
    store: &dyn LedgerStore,
    key: &SigningKey,
    key_id: &str,
    fence: Option<&Fence>,
    head: &PartitionHead,
    count: i64,
    now_micros: i64,
    known: Option<Vec<SealInput>>,
) -> Result<SealedBatch, SealError> {
    let inputs = inputs_of(store, head, count, known).await?;
    let batch = sign_next(key, key_id, head, &inputs, now_micros)?;
    store_sealed(store, fence, std::slice::from_ref(&batch)).await?;
    Ok(batch)
}

/// The leaves and times of the next `count` unsealed rows after `head` (count ≥ 1): `known`
/// when it holds exactly them, else read from the store.
pub async fn inputs_of(
    store: &dyn LedgerStore,
    head: &PartitionHead,
    count: i64,
    known: Option<Vec<SealInput>>,
) -> Result<Vec<SealInput>, SealError> {
    let partition = head.partition;
    let first = head.first_unsealed();
    let last = first.saturating_add(count.max(1)).saturating_sub(1);
    let wanted = usize::try_from(last - first + 1).unwrap_or(0);
    if let Some(known) = known.filter(|k| k.len() == wanted) {
        return Ok(known);
    }
    let rows = store.ledger_rows(partition, first, last).await?;
    let contiguous = rows.iter().zip(first..).all(|(row, seq)| row.seq == seq);
    if !contiguous || rows.len() != wanted {
        return Err(SealError::Incomplete {
            partition,
            first,
            last,
            found: rows.len(),
        });
    }
    Ok(rows
        .iter()
        .map(|r| (merkle::leaf_hash(&r.datum), r.columns.occurred_at_micros))
        .collect())
}

/// The signed batch of the rows `inputs` describes (the next unsealed rows after `head`, in
/// sequence order), chained to `head`'s last batch. Nothing is stored.
pub fn sign_next(
    key: &SigningKey,
    key_id: &str,
    head: &PartitionHead,
    inputs: &[SealInput],
    now_micros: i64,
) -> Result<SealedBatch, SealError> {
    let partition = head.partition;
    let first = head.first_unsealed();
    let count = i64::try_from(inputs.len()).unwrap_or(i64::MAX);
    let last = first.saturating_add(count).saturating_sub(1);
    let leaves: Vec<Hash> = inputs.iter().map(|(leaf, _)| *leaf).collect();
    let (batch_number, prev_root) = match &head.last_batch {
        Some(b) => (b.header.batch_number.saturating_add(1), b.header.root),
        None => (0, [0u8; 32]),
    };
    let root = merkle::root(&leaves).ok_or(SealError::Incomplete {
        partition,
        first,
        last,
        found: 0,
    })?;
    let times = inputs.iter().map(|(_, at)| *at);
    let header = BatchHeader {
        partition,
        batch_number,
        first_seq: first,
        last_seq: last,
        count: last - first + 1,
        root,
        prev_root,
        first_time_micros: times.clone().min().unwrap_or(now_micros),
        last_time_micros: times.max().unwrap_or(now_micros),
        key_id: key_id.to_owned(),
    };
    let signing = std::time::Instant::now();
    let signature = key.sign(&header).map_err(|e| SealError::Sign {
        partition,
        batch: batch_number,
        reason: e.to_string(),
    })?;
    metrics::histogram!("caracal_merkle_sign_seconds").record(signing.elapsed().as_secs_f64());
    Ok(SealedBatch {
        header,
        signature,
        sealed_at_micros: now_micros,
    })
}

/// Stores signed batches, each following the one before it, in one transaction
/// (`LedgerStore::seal_batches`). Each batch counts in `caracal_merkle_seal_seconds` with its
/// share of the transaction's time.
pub async fn store_sealed(
    store: &dyn LedgerStore,
    fence: Option<&Fence>,
    batches: &[SealedBatch],
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    store.seal_batches(fence, batches).await?;
    let share = started.elapsed().as_secs_f64() / batches.len().max(1) as f64;
    for batch in batches {
        metrics::histogram!("caracal_merkle_seal_seconds").record(share);
        metrics::histogram!("caracal_merkle_batch_size").record(batch.header.count as f64);
    }
    Ok(())
}

/// Reads a just-sealed batch and its rows' sealed bytes back from the store and checks the
/// seal (signature, chain, contiguity, root); a failure counts in
/// `caracal_merkle_verification_failures_total`. The rows' columns were decoded from those
/// bytes a moment ago; the timed re-verification checks them.
pub async fn read_back(
    store: &dyn LedgerStore,
    sealed: &SealedBatch,
    previous: Option<&SealedBatch>,
    keys: &KeyRing,
) -> Result<BatchReport, StoreError> {
    let mut reports = read_back_all(store, std::slice::from_ref(sealed), previous, keys).await?;
    reports
        .pop()
        .ok_or_else(|| StoreError::Corrupt("reading back a sealed batch gave no report".to_owned()))
}

/// `read_back` of consecutive batches of one partition (each following the one before it,
/// the first following `previous`), their rows' sealed bytes read by one query.
pub async fn read_back_all(
    store: &dyn LedgerStore,
    sealed: &[SealedBatch],
    previous: Option<&SealedBatch>,
    keys: &KeyRing,
) -> Result<Vec<BatchReport>, StoreError> {
    let (Some(first), Some(last)) = (sealed.first(), sealed.last()) else {
        return Ok(Vec::new());
    };
    let partition = first.header.partition;
    let datums = store
        .ledger_datums(partition, first.header.first_seq, last.header.last_seq)
        .await?;
    let rows: Vec<(i64, &[u8])> = datums.iter().map(|(seq, d)| (*seq, d.as_slice())).collect();
    let mut reports = Vec::with_capacity(sealed.len());
    let mut before = previous.cloned();
    for batch in sealed {
        let h = &batch.header;
        let stored = store
            .merkle_batch(h.partition, h.batch_number)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "batch {} of partition {} vanished after sealing",
                    h.batch_number, h.partition
                ))
            })?;
        // The rows of this batch's range (rows are in sequence order).
        let from = rows.partition_point(|(seq, _)| *seq < stored.header.first_seq);
        let to = rows.partition_point(|(seq, _)| *seq <= stored.header.last_seq);
        let mine = rows.get(from..to.max(from)).unwrap_or_default();
        let report = verify::check_sealed(&stored, mine, before.as_ref(), keys);
        record(&report);
        reports.push(report);
        before = Some(stored);
    }
    Ok(reports)
}

/// Counts and logs a failed verification.
pub fn record(report: &BatchReport) {
    if report.ok() {
        return;
    }
    metrics::counter!("caracal_merkle_verification_failures_total").increment(1);
    for failure in &report.failures {
        tracing::error!(
            partition = report.partition,
            batch = report.batch_number,
            %failure,
            "merkle verification failed"
        );
    }
}
