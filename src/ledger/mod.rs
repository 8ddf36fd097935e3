//! The ledger: metering events from the log into numbered rows (exactly once, through the
//! consumer runtime's fenced commits), sealed into signed Merkle batches, verified on sealing
//! and re-verified on a timer. `verify` checks batches, `seal` makes them, `keys` loads the
//! signing key. The sink never changes a stored row and never seals a row twice.

pub mod columns;
pub mod keys;
pub mod recorded;
pub mod row_match;
pub mod seal;
pub mod verify;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::Mutex;

use crate::bus::avro;
use crate::bus::ConsumedMessage;
use crate::consume::{ConsumeError, Sink};
use crate::core::checkpoint::SigningKey;
use crate::core::events::{EventKind, TOPIC_METERING_EVENTS};
use crate::core::merkle;
use crate::store::leases::{Fence, Lease};
use crate::store::ledger::{LedgerEntry, LedgerStore, SealedBatch};
use crate::store::StoreError;

use self::verify::KeyRing;

/// Most batches of a partition the sink stores in one sealing transaction (and reads back by
/// one query): what one round's append usually completes, bounded so a partition that fell
/// far behind is sealed in steps.
pub const SEAL_GROUP_BATCHES: usize = 8;

/// The ledger role's batching and re-verification settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSettings {
    /// Rows per sealed batch.
    pub batch_size_limit: i64,
    /// A non-empty batch older than this is sealed even if not full.
    pub batch_timeout: Duration,
    /// How often recent batches are verified again.
    pub reverify_every: Duration,
    /// How many of each owned partition's newest batches a re-verification covers.
    pub reverify_batches: i64,
    /// Owned partitions sealed at the same time (at least 1).
    pub partitions_in_flight: usize,
}

/// The ledger's consumer sink.
pub struct LedgerSink {
    store: Arc<dyn LedgerStore>,
    key: SigningKey,
    key_id: String,
    keys: KeyRing,
    settings: LedgerSettings,
    state: Mutex<SealState>,
    appended: std::sync::Mutex<Appended>,
}

#[derive(Default)]
struct SealState {
    /// When each partition's open (unsealed, non-empty) batch was first seen.
    opened: HashMap<i32, Instant>,
    reverified_at: Option<Instant>,
}

/// Leaves and times of rows this sink appended and has not sealed yet, per partition, in
/// sequence order from `first`: sealing then needs no read of rows it just wrote. A cache
/// only: when it does not cover a batch exactly (after a restart, a takeover), rows are read.
#[derive(Default)]
struct Appended {
    by_partition: HashMap<i32, (i64, VecDeque<seal::SealInput>)>,
}

impl Appended {
    fn record(
        &mut self,
        partition: i32,
        appended: impl Iterator<Item = (i64, seal::SealInput)>,
        cap: usize,
    ) {
        for (seq, input) in appended {
            let (first, inputs) = self
                .by_partition
                .entry(partition)
                .or_insert_with(|| (seq, VecDeque::new()));
            if *first + inputs.len() as i64 != seq || inputs.len() >= cap {
                // Not contiguous with what is kept (or too much kept): start over from here.
                *first = seq;
                inputs.clear();
            }
            inputs.push_back(input);
        }
    }

    /// The inputs of rows `first..first + count`, removed from the cache, if it holds exactly
    /// them at its front.
    fn take(&mut self, partition: i32, first: i64, count: i64) -> Option<Vec<seal::SealInput>> {
        let (start, inputs) = self.by_partition.get_mut(&partition)?;
        let count = usize::try_from(count).ok()?;
        if *start != first || inputs.len() < count {
            if *start < first {
                // Rows sealed elsewhere (backfill): drop what they covered.
                let sealed = usize::try_from(first - *start).unwrap_or(usize::MAX);
                inputs.drain(..sealed.min(inputs.len()));
                *start = first;
            }
            return None;
        }
        *start += count as i64;
        Some(inputs.drain(..count).collect())
    }
}

fn seal_error(e: seal::SealError) -> ConsumeError {
    match e {
        seal::SealError::Store(s) => ConsumeError::Store(s),
        other => ConsumeError::Store(StoreError::Corrupt(other.to_string())),
    }
}

impl LedgerSink {
    /// Registers the signing key's public half in the store (so its batches verify forever)
    /// and builds the sink.
    pub async fn new(
        store: Arc<dyn LedgerStore>,
        key: SigningKey,
        settings: LedgerSettings,
    ) -> Result<LedgerSink, StoreError> {
        let public = key.verifying_key();
        let key_id = public.key_id();
        store
            .put_signing_key(
                &key_id,
                public.point(),
                chrono::Utc::now().timestamp_micros(),
            )
            .await?;
        let keys = verify::key_ring(store.signing_keys().await?);
        // Present from the start, so the alert `> 0` has a series to watch.
        metrics::counter!("caracal_merkle_verification_failures_total").increment(0);
        Ok(LedgerSink {
            store,
            key,
            key_id,
            keys,
            settings,
            state: Mutex::new(SealState::default()),
            appended: std::sync::Mutex::new(Appended::default()),
        })
    }

    /// Seals what is due on one owned partition: every full batch, and the open batch once it
    /// is older than the timeout.
    /// `opened` is when the partition's open batch was first seen (`None`: no open batch).
    async fn seal_due(
        &self,
        fence: &Fence,
        opened: &mut Option<Instant>,
    ) -> Result<(), ConsumeError> {
        let partition = fence.partition;
        let mut head = self.store.ledger_head(partition).await?;
        let mut previous = head.last_batch.clone();
        // Signed here one after the other, then stored in one transaction and read back, up
        // to `SEAL_GROUP_BATCHES` at a time.
        let mut signed = Vec::new();
        loop {
            let unsealed = head.unsealed();
            if unsealed == 0 {
                *opened = None;
                break;
            }
            let since = *opened.get_or_insert_with(Instant::now);
            let full = unsealed >= self.settings.batch_size_limit;
            if !full && since.elapsed() < self.settings.batch_timeout {
                break;
            }
            let count = unsealed.min(self.settings.batch_size_limit);
            let now = chrono::Utc::now().timestamp_micros();
            let known = self
                .appended
                .lock()
                .ok()
                .and_then(|mut a| a.take(partition, head.first_unsealed(), count));
            let inputs = seal::inputs_of(self.store.as_ref(), &head, count, known)
                .await
                .map_err(seal_error)?;
            let batch = seal::sign_next(&self.key, &self.key_id, &head, &inputs, now)
                .map_err(seal_error)?;
            *opened = Some(Instant::now());
            head.last_batch = Some(batch.clone());
            signed.push(batch);
            if signed.len() >= SEAL_GROUP_BATCHES {
                self.store_group(fence, &mut signed, &mut previous).await?;
            }
        }
        self.store_group(fence, &mut signed, &mut previous).await
    }

    /// Stores the batches of `signed` (which follow `previous`) in one transaction, reads
    /// them back, and leaves `signed` empty and `previous` at the last of them.
    async fn store_group(
        &self,
        fence: &Fence,
        signed: &mut Vec<SealedBatch>,
        previous: &mut Option<SealedBatch>,
    ) -> Result<(), ConsumeError> {
        if signed.is_empty() {
            return Ok(());
        }
        let store = self.store.as_ref();
        seal::store_sealed(store, Some(fence), signed).await?;
        seal::read_back_all(store, signed, previous.as_ref(), &self.keys).await?;
        *previous = signed.pop();
        signed.clear();
        Ok(())
    }

    /// Verifies again the newest batches of every owned partition.
    async fn reverify(&self, leases: &[Lease]) -> Result<(), StoreError> {
        for lease in leases {
            let head = self.store.ledger_head(lease.fence.partition).await?;
            let Some(last) = head.last_batch else {
                continue;
            };
            let newest = last.header.batch_number;
            let oldest = newest
                .saturating_sub(self.settings.reverify_batches.saturating_sub(1))
                .max(0);
            let mut previous: Option<SealedBatch> = None;
            for number in oldest..=newest {
                let Some(batch) = self.store.merkle_batch(head.partition, number).await? else {
                    continue;
                };
                let report =
                    verify::verify_one(self.store.as_ref(), &batch, previous.as_ref(), &self.keys)
                        .await?;
                seal::record(&report);
                previous = Some(batch);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for LedgerSink {
    type Item = LedgerEntry;

    fn accept(&self, message: &ConsumedMessage) -> Result<LedgerEntry, String> {
        let unframed =
            avro::unframe(&message.value, avro::registered_kind).map_err(|e| e.to_string())?;
        if unframed.kind != EventKind::MeteringEvent {
            return Err(format!(
                "expected a MeteringEvent on {TOPIC_METERING_EVENTS}, found a {}",
                unframed.kind.name()
            ));
        }
        let columns = columns::columns_of(unframed.datum).map_err(|e| e.to_string())?;
        Ok(LedgerEntry {
            columns,
            datum: unframed.datum.to_vec(),
            source_offset: message.offset,
        })
    }

    async fn commit(
        &self,
        fence: &Fence,
        items: Vec<LedgerEntry>,
        next_offset: i64,
    ) -> Result<usize, StoreError> {
        let inputs: Vec<seal::SealInput> = items
            .iter()
            .map(|e| (merkle::leaf_hash(&e.datum), e.columns.occurred_at_micros))
            .collect();
        let outcome = self.store.append_ledger(fence, items, next_offset).await?;
        let cap =
            usize::try_from(self.settings.batch_size_limit.saturating_mul(4)).unwrap_or(4_000);
        if let Ok(mut appended) = self.appended.lock() {
            let fresh = outcome
                .seqs
                .iter()
                .zip(inputs)
                .filter_map(|(seq, input)| seq.map(|seq| (seq, input)));
            appended.record(fence.partition, fresh, cap);
        }
        Ok(outcome.inserted)
    }

    async fn after_round(&self, leases: &[Lease]) -> Result<(), ConsumeError> {
        let mut state = self.state.lock().await;
        let mut opened: Vec<Option<Instant>> = leases
            .iter()
            .map(|l| state.opened.get(&l.fence.partition).copied())
            .collect();
        type Seal<'a> = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), ConsumeError>> + Send + 'a>,
        >;
        let seals: Vec<Seal<'_>> = leases
            .iter()
            .zip(opened.iter_mut())
            .map(|(lease, opened)| -> Seal<'_> { Box::pin(self.seal_due(&lease.fence, opened)) })
            .collect();
        let sealed: Vec<Result<(), ConsumeError>> = futures_util::stream::iter(seals)
            .buffer_unordered(self.settings.partitions_in_flight.max(1))
            .collect()
            .await;
        for (lease, opened) in leases.iter().zip(opened) {
            let partition = lease.fence.partition;
            match opened {
                Some(at) => state.opened.insert(partition, at),
                None => state.opened.remove(&partition),
            };
        }
        sealed.into_iter().collect::<Result<(), _>>()?;
        let due = state
            .reverified_at
            .is_none_or(|at| at.elapsed() >= self.settings.reverify_every);
        if due {
            state.reverified_at = Some(Instant::now());
            drop(state);
            self.reverify(leases).await?;
        }
        Ok(())
    }
}
