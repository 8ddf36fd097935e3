//! Verification of sealed batches: given a batch, the rows it covers as stored, the batch
//! before it and the known public keys, every way the ledger can disagree with what was
//! signed, each named precisely. `check_batch` is pure; `verify_range` drives it over a store.

mod range;

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use super::columns::columns_ref;
use super::row_match::stored_matches_sealed;
use crate::core::checkpoint::{BatchHeader, VerifyingKey};
use crate::core::merkle::{self, Hash};
use crate::store::ledger::{hex, LedgerStore, RowRef, SealedBatch, StoredRow};

pub use self::range::{
    chunk_sizes, verify_range, RangeSummary, VERIFY_CHUNKS_IN_FLIGHT, VERIFY_CHUNK_BATCHES,
    VERIFY_PAGE_BATCHES,
};
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
