//! Verification of sealed batches: given a batch, the rows it covers as stored, the batch
//! before it and the known public keys, every way the ledger can disagree with what was
//! signed, each named precisely. `check_batch` is pure; `verify_range` drives it over a store.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use futures_util::StreamExt;
use serde::Serialize;

use super::columns::columns_ref;
use super::row_match::stored_matches_sealed;
use crate::core::checkpoint::{BatchHeader, VerifyingKey};
use crate::core::merkle::{self, Hash};
use crate::store::ledger::{hex, LedgerStore, RowRef, SealedBatch, SeqRange, StoredRow, Visit};
use crate::store::StoreError;

/// One thing wrong with a sealed batch or a row in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Failure {
    /// A stored column no longer matches the row's sealed bytes.
    RowAltered {
        seq: i64,
        event_id: String,
        column: String,
        stored: String,
        sealed: String,
    },
    /// The row's sealed bytes no longer decode as a metering event.
    RowUndecodable { seq: i64, error: String },
    /// Rows the batch covers are missing.
    SequenceGap { missing: Vec<i64> },
    /// The batch's count disagrees with its sequence range.
    CountMismatch {
        count: i64,
        first_seq: i64,
        last_seq: i64,
    },
    /// The root recomputed from the rows differs from the sealed root.
    RootMismatch { computed: String, sealed: String },
    /// The previous batch's root, or its sequence range, does not lead into this batch.
    BrokenChain { detail: String },
    /// The signature does not verify under the named key.
    BadSignature { key_id: String },
    /// No public key with this id is known.
    UnknownKey { key_id: String },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::RowAltered {
                seq,
                event_id,
                column,
                stored,
                sealed,
            } => write!(
                f,
                "row altered: seq {seq} (event {event_id}) column {column} is {stored} but the sealed bytes say {sealed}"
            ),
            Failure::RowUndecodable { seq, error } => {
                write!(f, "row altered: seq {seq} sealed bytes do not decode: {error}")
            }
            Failure::SequenceGap { missing } => {
                let shown: Vec<String> = missing.iter().take(10).map(i64::to_string).collect();
                let more = missing.len().saturating_sub(10);
                write!(f, "sequence gap: missing seq {}", shown.join(", "))?;
                if more > 0 {
                    write!(f, " and {more} more")?;
                }
                Ok(())
            }
            Failure::CountMismatch {
                count,
                first_seq,
                last_seq,
            } => write!(
                f,
                "count mismatch: header says {count} rows for seq {first_seq}..={last_seq}"
            ),
            Failure::RootMismatch { computed, sealed } => {
                write!(f, "root mismatch: computed {computed}, sealed {sealed}")
            }
            Failure::BrokenChain { detail } => write!(f, "broken chain: {detail}"),
            Failure::BadSignature { key_id } => write!(f, "bad signature (key {key_id})"),
            Failure::UnknownKey { key_id } => write!(f, "unknown key {key_id}"),
        }
    }
}

/// The outcome of checking one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchReport {
    pub partition: i32,
    pub batch_number: i64,
    pub first_seq: i64,
    pub last_seq: i64,
    pub failures: Vec<Failure>,
}

impl BatchReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Public keys by key id.
pub type KeyRing = HashMap<String, VerifyingKey>;

/// Builds the key ring from stored `(key_id, public point)` pairs; a stored key that does not
/// parse, or whose id is not its own, is left out (its batches then fail as `UnknownKey`).
pub fn key_ring(stored: Vec<(String, Vec<u8>)>) -> KeyRing {
    stored
        .into_iter()
        .filter_map(|(id, point)| {
            let key = VerifyingKey::from_point(&point).ok()?;
            (key.key_id() == id).then_some((id, key))
        })
        .collect()
}

/// Checks one batch against its rows (as stored, in sequence order), the batch before it
/// (`None` for batch 0, or when it is missing, which is reported) and the key ring: the seal
/// (`check_sealed`) and every row's columns against its sealed bytes (`check_row`).
pub fn check_batch(
    batch: &SealedBatch,
    rows: &[StoredRow],
    previous: Option<&SealedBatch>,
    keys: &KeyRing,
) -> BatchReport {
    let mut checks = RowChecks::default();
    for row in rows {
        checks.check(row.view());
    }
    checks.report(batch, previous, keys)
}

/// What checking a batch's rows one at a time collects: each row's leaf hash and the rows whose
/// columns disagree with their sealed bytes. Rows are seen once and never kept.
#[derive(Debug, Default)]
pub struct RowChecks {
    leaves: Vec<(i64, Hash)>,
    failures: Vec<Failure>,
}

impl RowChecks {
    pub fn check(&mut self, row: RowRef<'_>) {
        self.leaves.push((row.seq, merkle::leaf_hash(row.datum)));
        if let Some(failure) = check_row(&row) {
            self.failures.push(failure);
        }
    }

    /// The batch's report: its seal (`check_sealed_leaves`), then its rows.
    pub fn report(
        self,
        batch: &SealedBatch,
        previous: Option<&SealedBatch>,
        keys: &KeyRing,
    ) -> BatchReport {
        let mut report = check_sealed_leaves(batch, &self.leaves, previous, keys);
        report.failures.extend(self.failures);
        report
    }
}

/// Checks the seal of one batch against its rows' sealed bytes (`(seq, datum)` in sequence
/// order): signature and key, chain, count, contiguity, root. Not the rows' columns.
pub fn check_sealed(
    batch: &SealedBatch,
    rows: &[(i64, &[u8])],
    previous: Option<&SealedBatch>,
    keys: &KeyRing,
) -> BatchReport {
    let leaves: Vec<(i64, Hash)> = rows
        .iter()
        .map(|(seq, datum)| (*seq, merkle::leaf_hash(datum)))
        .collect();
    check_sealed_leaves(batch, &leaves, previous, keys)
}

/// `check_sealed` from the rows' leaf hashes (`(seq, leaf)` in sequence order).
pub fn check_sealed_leaves(
    batch: &SealedBatch,
    rows: &[(i64, Hash)],
    previous: Option<&SealedBatch>,
    keys: &KeyRing,
) -> BatchReport {
    let h = &batch.header;
    let mut failures = Vec::new();
    match keys.get(&h.key_id) {
        None => failures.push(Failure::UnknownKey {
            key_id: h.key_id.clone(),
        }),
        Some(key) => {
            if key.verify(h, &batch.signature).is_err() {
                failures.push(Failure::BadSignature {
                    key_id: h.key_id.clone(),
                });
            }
        }
    }
    if let Some(detail) = chain_break(h, previous.map(|p| &p.header)) {
        failures.push(Failure::BrokenChain { detail });
    }
    if h.last_seq
        .checked_sub(h.first_seq)
        .and_then(|d| d.checked_add(1))
        != Some(h.count)
    {
        failures.push(Failure::CountMismatch {
            count: h.count,
            first_seq: h.first_seq,
            last_seq: h.last_seq,
        });
    }
    let missing = missing_seqs(h, rows.iter().map(|(seq, _)| *seq));
    if !missing.is_empty() {
        failures.push(Failure::SequenceGap { missing });
    }
    let leaves: Vec<Hash> = rows
        .iter()
        .filter(|(seq, _)| *seq >= h.first_seq && *seq <= h.last_seq)
        .map(|(_, leaf)| *leaf)
        .collect();
    let computed = merkle::root(&leaves);
    if computed != Some(h.root) {
        failures.push(Failure::RootMismatch {
            computed: computed.map_or_else(|| "(no rows)".to_owned(), |r| hex(&r)),
            sealed: hex(&h.root),
        });
    }
    BatchReport {
        partition: h.partition,
        batch_number: h.batch_number,
        first_seq: h.first_seq,
        last_seq: h.last_seq,
        failures,
    }
}

fn chain_break(h: &BatchHeader, previous: Option<&BatchHeader>) -> Option<String> {
    match previous {
        None if h.batch_number == 0 => {
            if h.prev_root != [0u8; 32] || h.first_seq != 0 {
                Some("batch 0 must start at seq 0 with an all-zero previous root".to_owned())
            } else {
                None
            }
        }
        None => Some(format!("batch {} is missing", h.batch_number - 1)),
        Some(p) if p.root != h.prev_root => Some(format!(
            "previous root {} is not batch {}'s root {}",
            hex(&h.prev_root),
            p.batch_number,
            hex(&p.root)
        )),
        Some(p) if p.last_seq.checked_add(1) != Some(h.first_seq) => Some(format!(
            "batch {} ends at seq {} but this batch starts at {}",
            p.batch_number, p.last_seq, h.first_seq
        )),
        Some(_) => None,
    }
}

fn missing_seqs(h: &BatchHeader, seqs: impl Iterator<Item = i64>) -> Vec<i64> {
    let mut missing = Vec::new();
    let mut present = seqs.peekable();
    let mut seq = h.first_seq;
    while seq <= h.last_seq {
        while present.next_if(|s| *s < seq).is_some() {}
        if present.next_if_eq(&seq).is_none() {
            missing.push(seq);
            if missing.len() >= 1_000 {
                break;
            }
        }
        seq += 1;
    }
    missing
}

/// A row whose columns disagree with its sealed bytes.
pub fn check_row(row: &RowRef<'_>) -> Option<Failure> {
    if stored_matches_sealed(row.datum, &row.columns) {
        return None;
    }
    let sealed = match columns_ref(row.datum) {
        Ok(columns) => columns,
        Err(e) => {
            return Some(Failure::RowUndecodable {
                seq: row.seq,
                error: e.to_string(),
            })
        }
    };
    sealed
        .first_difference(&row.columns)
        .map(|(column, stored, sealed)| Failure::RowAltered {
            seq: row.seq,
            event_id: row.columns.event_id.to_owned(),
            column: column.to_owned(),
            stored,
            sealed,
        })
}

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

/// Verifies one batch, fetching its rows and (unless `previous` is it) the batch before it.
pub async fn verify_one(
    store: &dyn LedgerStore,
    batch: &SealedBatch,
    previous: Option<&SealedBatch>,
    keys: &KeyRing,
) -> Result<BatchReport, StoreError> {
    let h = &batch.header;
    let rows = store
        .ledger_rows(h.partition, h.first_seq, h.last_seq)
        .await?;
    let fetched;
    let previous = match previous {
        Some(p)
            if p.header.partition == h.partition && p.header.batch_number + 1 == h.batch_number =>
        {
            Some(p)
        }
        _ if h.batch_number == 0 => None,
        _ => {
            fetched = store.merkle_batch(h.partition, h.batch_number - 1).await?;
            fetched.as_ref()
        }
    };
    Ok(check_batch(batch, &rows, previous, keys))
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
