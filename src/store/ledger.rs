//! The ledger's storage contract: metering events numbered per partition with their canonical
//! bytes, sealed Merkle batches, signing keys, and the queries the CLI and verifier need.
//! Owns the row types and the trait; knows nothing of how a batch is built or verified
//! (`ledger` does that) and enforces only what keeps the tables consistent: contiguous
//! sequences, one batch per range, output and offset in one fenced transaction.

use async_trait::async_trait;
use serde::Serialize;

use super::leases::Fence;
use super::StoreError;
use crate::core::checkpoint::BatchHeader;
use crate::core::events::MeteringEvent;

/// The decoded columns of a ledger row. Verification recomputes them from the row's datum
/// and compares, so a column edited behind the datum's back is caught.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerColumns {
    pub event_id: String,
    pub occurred_at_micros: i64,
    pub request_id: String,
    pub agent_id: String,
    pub parent_id: Option<String>,
    pub root_agent_id: String,
    /// Nearest first; the last is the root.
    pub ancestor_ids: Vec<String>,
    pub provider: String,
    pub resource: String,
    pub operation: String,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    pub calls: i64,
    pub cost_micros: i64,
    pub reserved_micros: i64,
    pub currency: String,
    pub estimated: bool,
    pub outcome: String,
}

impl LedgerColumns {
    /// The columns a metering event is stored with.
    pub fn from_event(event: &MeteringEvent) -> LedgerColumns {
        LedgerColumns {
            event_id: event.event_id.to_string(),
            occurred_at_micros: event.occurred_at.0,
            request_id: event.request_id.to_string(),
            agent_id: event.agent_id.to_string(),
            parent_id: event.parent_id.map(|id| id.to_string()),
            root_agent_id: event.root_agent_id.to_string(),
            ancestor_ids: event.ancestor_ids.iter().map(|id| id.to_string()).collect(),
            provider: event.provider.clone(),
            resource: event.resource.clone(),
            operation: event.operation.clone(),
            input_tokens: saturating_i64(event.input_tokens),
            cached_input_tokens: saturating_i64(event.cached_input_tokens),
            output_tokens: saturating_i64(event.output_tokens),
            calls: saturating_i64(event.calls),
            cost_micros: event.cost_micros.0,
            reserved_micros: event.reserved_micros.0,
            currency: event.currency.to_string(),
            estimated: event.estimated,
            outcome: event.outcome.as_str().to_owned(),
        }
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A metering event to append: decoded, with its datum and where it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub columns: LedgerColumns,
    /// The Avro binary datum as published (unframed): the Merkle leaf's bytes.
    pub datum: Vec<u8>,
    pub source_offset: i64,
}

/// A ledger row as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredRow {
    pub partition: i32,
    pub seq: i64,
    pub source_offset: i64,
    pub columns: LedgerColumns,
    #[serde(skip)]
    pub datum: Vec<u8>,
}

impl StoredRow {
    /// The row lent as a `RowRef`.
    pub fn view(&self) -> RowRef<'_> {
        let c = &self.columns;
        RowRef {
            seq: self.seq,
            columns: ColumnsView {
                event_id: &c.event_id,
                occurred_at_micros: c.occurred_at_micros,
                request_id: &c.request_id,
                agent_id: &c.agent_id,
                parent_id: c.parent_id.as_deref(),
                root_agent_id: &c.root_agent_id,
                ancestor_ids: AncestorsView::List(&c.ancestor_ids),
                provider: &c.provider,
                resource: &c.resource,
                operation: &c.operation,
                input_tokens: c.input_tokens,
                cached_input_tokens: c.cached_input_tokens,
                output_tokens: c.output_tokens,
                calls: c.calls,
                cost_micros: c.cost_micros,
                reserved_micros: c.reserved_micros,
                currency: &c.currency,
                estimated: c.estimated,
                outcome: &c.outcome,
            },
            datum: &self.datum,
        }
    }
}

/// A ledger row lent by the store for one call of a `RangesVisitor`: verification reads every row
/// of a range, and copying each out of the store would cost more than checking it.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    pub seq: i64,
    pub columns: ColumnsView<'a>,
    pub datum: &'a [u8],
}

impl ColumnsView<'_> {
    /// The owned columns.
    pub fn to_columns(&self) -> LedgerColumns {
        LedgerColumns {
            event_id: self.event_id.to_owned(),
            occurred_at_micros: self.occurred_at_micros,
            request_id: self.request_id.to_owned(),
            agent_id: self.agent_id.to_owned(),
            parent_id: self.parent_id.map(str::to_owned),
            root_agent_id: self.root_agent_id.to_owned(),
            ancestor_ids: self.ancestor_ids.iter().map(str::to_owned).collect(),
            provider: self.provider.to_owned(),
            resource: self.resource.to_owned(),
            operation: self.operation.to_owned(),
            input_tokens: self.input_tokens,
            cached_input_tokens: self.cached_input_tokens,
            output_tokens: self.output_tokens,
            calls: self.calls,
            cost_micros: self.cost_micros,
            reserved_micros: self.reserved_micros,
            currency: self.currency.to_owned(),
            estimated: self.estimated,
            outcome: self.outcome.to_owned(),
        }
    }
}

/// `LedgerColumns`, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct ColumnsView<'a> {
    pub event_id: &'a str,
    pub occurred_at_micros: i64,
    pub request_id: &'a str,
    pub agent_id: &'a str,
    pub parent_id: Option<&'a str>,
    pub root_agent_id: &'a str,
    pub ancestor_ids: AncestorsView<'a>,
    pub provider: &'a str,
    pub resource: &'a str,
    pub operation: &'a str,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    pub calls: i64,
    pub cost_micros: i64,
    pub reserved_micros: i64,
    pub currency: &'a str,
    pub estimated: bool,
    pub outcome: &'a str,
}

/// A row's ancestor ids as its store keeps them, nearest first.
#[derive(Debug, Clone, Copy)]
pub enum AncestorsView<'a> {
    /// `",a,b,"`: every id wrapped in commas (the embedded store's column).
    Joined(&'a str),
    List(&'a [String]),
}

impl<'a> AncestorsView<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let (joined, list): (Option<&'a str>, &'a [String]) = match *self {
            AncestorsView::Joined(text) => (Some(text), &[]),
            AncestorsView::List(list) => (None, list),
        };
        joined
            .into_iter()
            .flat_map(|t| t.split(',').filter(|s| !s.is_empty()))
            .chain(list.iter().map(String::as_str))
    }
}

/// What `LedgerStore::visit_ledger_ranges` lends its visitor: a row of range `i` (in sequence
/// order), or the end of range `i` (after its last row, also when it had none).
#[derive(Debug, Clone, Copy)]
// Lent by value for one call and never stored: boxing the row would allocate once per row.
#[allow(clippy::large_enum_variant)]
pub enum Visit<'a> {
    Row(usize, RowRef<'a>),
    End(usize),
}

/// Called once per row and once per range end by `LedgerStore::visit_ledger_ranges`.
pub type RangesVisitor = Box<dyn FnMut(Visit<'_>) + Send>;

/// Rows `first..=last` of `partition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    pub partition: i32,
    pub first: i64,
    pub last: i64,
}

/// What an append did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub inserted: usize,
    /// Events already in the ledger (a retried publish): skipped, no sequence number used.
    pub duplicates: usize,
    /// Per entry, in input order: the sequence number it got, or `None` for a duplicate.
    pub seqs: Vec<Option<i64>>,
}

/// A sealed batch: its signed header and signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SealedBatch {
    pub header: BatchHeader,
    #[serde(serialize_with = "serialize_hex")]
    pub signature: Vec<u8>,
    pub sealed_at_micros: i64,
}

fn serialize_hex<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex(bytes))
}

pub use crate::core::hex::encode as hex;

/// Where a partition's ledger stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionHead {
    pub partition: i32,
    /// The sequence number the next row will get (rows are 0..next_seq).
    pub next_seq: i64,
    /// The newest sealed batch, if any.
    pub last_batch: Option<SealedBatch>,
}

impl PartitionHead {
    /// The first sequence number no batch covers.
    pub fn first_unsealed(&self) -> i64 {
        self.last_batch
            .as_ref()
            .map_or(0, |b| b.header.last_seq.saturating_add(1))
    }

    /// Rows no batch covers yet.
    pub fn unsealed(&self) -> i64 {
        self.next_seq.saturating_sub(self.first_unsealed()).max(0)
    }
}

impl PartitionHead {
    /// `Conflict` unless `header` is the batch that comes next: the number after the last
    /// batch's, from the first unsealed row, over rows that exist. Every store checks this inside
    /// its sealing transaction.
    pub fn check_next_batch(&self, header: &BatchHeader) -> Result<(), StoreError> {
        let h = header;
        let (number, first) = match &self.last_batch {
            Some(last) => (
                last.header.batch_number.saturating_add(1),
                last.header.last_seq.saturating_add(1),
            ),
            None => (0, 0),
        };
        if h.batch_number != number || h.first_seq != first {
            return Err(StoreError::Conflict(format!(
                "partition {} expects batch {number} from seq {first}, not batch {} from seq {}",
                h.partition, h.batch_number, h.first_seq
            )));
        }
        if h.last_seq >= self.next_seq || h.last_seq < h.first_seq {
            return Err(StoreError::Conflict(format!(
                "batch {} of partition {} covers seq {}..={} but the ledger ends at {}",
                h.batch_number, h.partition, h.first_seq, h.last_seq, self.next_seq
            )));
        }
        Ok(())
    }
}

/// Which ledger rows `ledger query` wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerQuery {
    pub agent_id: String,
    /// Also the events of every descendant of the agent.
    pub include_children: bool,
    /// `[start, end)` in Unix microseconds.
    pub start_micros: i64,
    pub end_micros: i64,
    pub limit: usize,
}

/// Cost per currency over a query's whole range (not only the rows returned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrencyTotal {
    pub currency: String,
    pub events: i64,
    pub cost_micros: i64,
}

#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Appends `entries` (all from `fence`'s partition, in log order) with the next sequence
    /// numbers, skipping events already present, and moves the committed offset to
    /// `next_offset`: all in one transaction, which fails with `Fenced` if the lease was lost.
    async fn append_ledger(
        &self,
        fence: &Fence,
        entries: Vec<LedgerEntry>,
        next_offset: i64,
    ) -> Result<AppendOutcome, StoreError>;

    /// Every partition that has rows, with its head.
    async fn ledger_heads(&self) -> Result<Vec<PartitionHead>, StoreError>;

    /// The head of one partition (`next_seq` 0 and no batch when it has no rows).
    async fn ledger_head(&self, partition: i32) -> Result<PartitionHead, StoreError>;

    /// Rows `first..=last` of a partition, in sequence order, as stored (gaps show as missing).
    async fn ledger_rows(
        &self,
        partition: i32,
        first: i64,
        last: i64,
    ) -> Result<Vec<StoredRow>, StoreError>;

    /// Lends the rows of each range to `visit`, range after range as given, each in sequence
    /// order (gaps show as missing) and followed by its `Visit::End`; without copying rows out
    /// of the store where it can, and in one call to the store where it can (verification
    /// hands a store several batches at once, not one thread hand-off per batch). The default
    /// reads each range with `ledger_rows`.
    async fn visit_ledger_ranges(
        &self,
        ranges: Vec<SeqRange>,
        mut visit: RangesVisitor,
    ) -> Result<(), StoreError> {
        for (i, range) in ranges.iter().enumerate() {
            for row in self
                .ledger_rows(range.partition, range.first, range.last)
                .await?
            {
                visit(Visit::Row(i, row.view()));
            }
            visit(Visit::End(i));
        }
        Ok(())
    }

    /// `(seq, datum)` of rows `first..=last` of a partition, in sequence order: what checking a
    /// seal needs, without the decoded columns.
    async fn ledger_datums(
        &self,
        partition: i32,
        first: i64,
        last: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError>;

    /// The row of one event.
    async fn ledger_event(&self, event_id: &str) -> Result<Option<StoredRow>, StoreError>;

    /// Stores a sealed batch. `Conflict` unless it directly follows the partition's last batch
    /// (number and sequence) and covers only existing rows; with a fence, `Fenced` if the
    /// partition's lease was lost.
    async fn seal_batch(
        &self,
        fence: Option<&Fence>,
        batch: &SealedBatch,
    ) -> Result<(), StoreError>;

    /// Stores consecutive sealed batches of one partition (each following the one before it)
    /// as `seal_batch` does, in one transaction where the store can. The default seals them
    /// one by one.
    async fn seal_batches(
        &self,
        fence: Option<&Fence>,
        batches: &[SealedBatch],
    ) -> Result<(), StoreError> {
        for batch in batches {
            self.seal_batch(fence, batch).await?;
        }
        Ok(())
    }

    /// One batch.
    async fn merkle_batch(
        &self,
        partition: i32,
        batch_number: i64,
    ) -> Result<Option<SealedBatch>, StoreError>;

    /// The batch that covers `seq` of `partition`.
    async fn batch_covering(
        &self,
        partition: i32,
        seq: i64,
    ) -> Result<Option<SealedBatch>, StoreError>;

    /// Batches whose time range meets `[start, end)`, by partition then number, after the
    /// `(partition, batch_number)` cursor `after`, at most `limit`.
    async fn batches_in_range(
        &self,
        start_micros: i64,
        end_micros: i64,
        after: Option<(i32, i64)>,
        limit: usize,
    ) -> Result<Vec<SealedBatch>, StoreError>;

    /// How many batches `batches_in_range` would list in all (for a progress bar).
    async fn count_batches_in_range(
        &self,
        start_micros: i64,
        end_micros: i64,
    ) -> Result<u64, StoreError>;

    /// Records a public key (idempotent).
    async fn put_signing_key(
        &self,
        key_id: &str,
        public_key: &[u8],
        at_micros: i64,
    ) -> Result<(), StoreError>;

    /// Every public key by id.
    async fn signing_keys(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Rows of a query, oldest first, at most `query.limit`, and totals over the whole range.
    async fn query_ledger(
        &self,
        query: &LedgerQuery,
    ) -> Result<(Vec<StoredRow>, Vec<CurrencyTotal>), StoreError>;
}
