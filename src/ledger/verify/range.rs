//! Verification of a time range over a store: the sealed batches listed page by page, each with
//! the batch before it, cut into even chunks read and checked several at a time, reports handed
//! on in batch order. The checks themselves are `verify.rs`'s; this file only drives them.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use serde::Serialize;

use super::{key_ring, BatchReport, KeyRing, RowChecks};
use crate::store::ledger::{LedgerStore, SealedBatch, SeqRange, Visit};
use crate::store::StoreError;

/// Totals of a verification run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RangeSummary {
    pub batches: u64,
    pub rows: u64,
    pub failed_batches: u64,
}

/// Most batches read from the store per page.
pub const VERIFY_PAGE_BATCHES: usize = 256;
/// Batches whose rows one call to the store reads and checks, one after the other.
pub const VERIFY_CHUNK_BATCHES: usize = 8;
/// Chunks `verify_range` reads and checks at the same time.
pub const VERIFY_CHUNKS_IN_FLIGHT: usize = 3;

/// Verifies every batch whose time range meets `[start, end)`, calling `on_batch` with each
/// report as it goes, in order (for a progress bar and for naming failures). Batches go to the
/// store in chunks: each chunk is one call that lends its rows, and each batch is checked
/// (rows, then seal) on the store's reading thread as soon as its last row is seen, so a store
/// thread moves from batch to batch without waiting to be handed the next one. Several chunks
/// are in flight at once.
pub async fn verify_range(
    store: &dyn LedgerStore,
    start_micros: i64,
    end_micros: i64,
    mut on_batch: impl FnMut(&BatchReport),
) -> Result<RangeSummary, StoreError> {
    let keys = Arc::new(key_ring(store.signing_keys().await?));
    let mut summary = RangeSummary::default();
    let mut after = None;
    let mut previous: Option<SealedBatch> = None;
    loop {
        let page = store
            .batches_in_range(start_micros, end_micros, after, VERIFY_PAGE_BATCHES)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some((last.header.partition, last.header.batch_number));
        // Each batch with the one before it, for the chain check.
        let mut work = Vec::with_capacity(page.len());
        for batch in page {
            let h = &batch.header;
            let before = match previous.take() {
                Some(p) if follows(&p, &batch) => Some(p),
                _ if h.batch_number == 0 => None,
                _ => store.merkle_batch(h.partition, h.batch_number - 1).await?,
            };
            previous = Some(batch.clone());
            work.push((batch, before));
        }
        let mut chunks = Vec::new();
        for size in chunk_sizes(work.len()) {
            let rest = work.split_off(size.min(work.len()));
            chunks.push(std::mem::replace(&mut work, rest));
        }
        let checks = chunks.into_iter().enumerate().map(|(i, chunk)| {
            let keys = Arc::clone(&keys);
            async move { (i, check_chunk(store, chunk, keys).await) }
        });
        // Chunks finish in any order (a free slot takes the next chunk at once); their reports
        // are handed on in batch order.
        let mut done = futures_util::stream::iter(checks).buffer_unordered(VERIFY_CHUNKS_IN_FLIGHT);
        let mut finished = BTreeMap::new();
        let mut next = 0;
        while let Some((i, chunk)) = done.next().await {
            finished.insert(i, chunk?);
            while let Some(chunk) = finished.remove(&next) {
                next += 1;
                for report in chunk {
                    summary.batches += 1;
                    summary.rows +=
                        u64::try_from(report.last_seq - report.first_seq + 1).unwrap_or(0);
                    if !report.ok() {
                        summary.failed_batches += 1;
                    }
                    on_batch(&report);
                }
            }
        }
    }
    Ok(summary)
}

/// How `n` batches are cut into chunks: at most `VERIFY_CHUNK_BATCHES` each, as many chunks as
/// a multiple of `VERIFY_CHUNKS_IN_FLIGHT` (so the chunks in flight end together, not one
/// chunk read alone at the end), sizes differing by at most one. Sizes in order; they sum to `n`.
pub fn chunk_sizes(n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let lanes = VERIFY_CHUNKS_IN_FLIGHT.max(1);
    let chunks = n
        .div_ceil(VERIFY_CHUNK_BATCHES.max(1))
        .div_ceil(lanes)
        .saturating_mul(lanes)
        .min(n);
    let (base, extra) = (n / chunks, n % chunks);
    (0..chunks).map(|i| base + usize::from(i < extra)).collect()
}

/// The reports of a chunk of batches (each with the batch before it), in order: one call to
/// the store; each batch is checked on the store's side as soon as its rows are seen.
async fn check_chunk(
    store: &dyn LedgerStore,
    chunk: Vec<(SealedBatch, Option<SealedBatch>)>,
    keys: Arc<KeyRing>,
) -> Result<Vec<BatchReport>, StoreError> {
    let expected = chunk.len();
    let ranges = chunk
        .iter()
        .map(|(batch, _)| SeqRange {
            partition: batch.header.partition,
            first: batch.header.first_seq,
            last: batch.header.last_seq,
        })
        .collect();
    let reports = Arc::new(std::sync::Mutex::new(Vec::with_capacity(chunk.len())));
    let out = Arc::clone(&reports);
    let mut checks = RowChecks::default();
    store
        .visit_ledger_ranges(
            ranges,
            Box::new(move |visit| match visit {
                Visit::Row(_, row) => checks.check(row),
                Visit::End(i) => {
                    let done = std::mem::take(&mut checks);
                    if let (Some((batch, before)), Ok(mut out)) = (chunk.get(i), out.lock()) {
                        out.push(done.report(batch, before.as_ref(), &keys));
                    }
                }
            }),
        )
        .await?;
    let reports = std::mem::take(
        &mut *reports
            .lock()
            .map_err(|_| StoreError::Unavailable("verification reports poisoned".into()))?,
    );
    if reports.len() != expected {
        return Err(StoreError::Unavailable(format!(
            "the store ended {} of {expected} ranges it was asked for",
            reports.len()
        )));
    }
    Ok(reports)
}

fn follows(previous: &SealedBatch, batch: &SealedBatch) -> bool {
    previous.header.partition == batch.header.partition
        && previous.header.batch_number + 1 == batch.header.batch_number
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_even_at_most_the_chunk_size_and_a_multiple_of_the_chunks_in_flight() {
        assert!(chunk_sizes(0).is_empty());
        assert_eq!(chunk_sizes(1), vec![1]);
        assert_eq!(chunk_sizes(2), vec![1, 1]);
        for n in 1..600 {
            let sizes = chunk_sizes(n);
            assert_eq!(sizes.iter().sum::<usize>(), n, "n = {n}");
            assert!(sizes.iter().all(|s| (1..=VERIFY_CHUNK_BATCHES).contains(s)));
            let (min, max) = (sizes.iter().min(), sizes.iter().max());
            assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "n = {n}");
            if n >= VERIFY_CHUNKS_IN_FLIGHT {
                assert_eq!(sizes.len() % VERIFY_CHUNKS_IN_FLIGHT, 0, "n = {n}");
            }
        }
        // The bench's 197 batches: 27 chunks of 7 or 8, nine for each of the three in flight.
        assert_eq!(chunk_sizes(197).len(), 27);
    }
}
