//! `LedgerStore` on Postgres: NOT IMPLEMENTED YET. Every call fails with `Unavailable`, so the
//! ledger role and the ledger/merkle commands refuse to run on Postgres instead of pretending.
//! The tables are in `migrations/postgres/0002_ledger.sql`; replace this file with the real
//! implementation (bulk inserts, `caracal_ensure_ledger_partition`, fenced commits).

use async_trait::async_trait;

use super::PgStore;
use crate::store::leases::Fence;
use crate::store::ledger::{
    AppendOutcome, CurrencyTotal, LedgerEntry, LedgerQuery, LedgerStore, PartitionHead,
    SealedBatch, StoredRow,
};
use crate::store::StoreError;

fn not_yet() -> StoreError {
    StoreError::Unavailable(
        "the ledger is not implemented on Postgres yet; use the embedded store for ledger roles"
            .into(),
    )
}

#[async_trait]
impl LedgerStore for PgStore {
    async fn append_ledger(
        &self,
        _fence: &Fence,
        _entries: Vec<LedgerEntry>,
        _next_offset: i64,
    ) -> Result<AppendOutcome, StoreError> {
        Err(not_yet())
    }

    async fn ledger_heads(&self) -> Result<Vec<PartitionHead>, StoreError> {
        Err(not_yet())
    }

    async fn ledger_head(&self, _partition: i32) -> Result<PartitionHead, StoreError> {
        Err(not_yet())
    }

    async fn ledger_rows(
        &self,
        _partition: i32,
        _first: i64,
        _last: i64,
    ) -> Result<Vec<StoredRow>, StoreError> {
        Err(not_yet())
    }

    async fn ledger_datums(
        &self,
        _partition: i32,
        _first: i64,
        _last: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        Err(not_yet())
    }

    async fn count_batches_in_range(
        &self,
        _start_micros: i64,
        _end_micros: i64,
    ) -> Result<u64, StoreError> {
        Err(not_yet())
    }

    async fn ledger_event(&self, _event_id: &str) -> Result<Option<StoredRow>, StoreError> {
        Err(not_yet())
    }

    async fn seal_batch(
        &self,
        _fence: Option<&Fence>,
        _batch: &SealedBatch,
    ) -> Result<(), StoreError> {
        Err(not_yet())
    }

    async fn merkle_batch(
        &self,
        _partition: i32,
        _batch_number: i64,
    ) -> Result<Option<SealedBatch>, StoreError> {
        Err(not_yet())
    }

    async fn batch_covering(
        &self,
        _partition: i32,
        _seq: i64,
    ) -> Result<Option<SealedBatch>, StoreError> {
        Err(not_yet())
    }

    async fn batches_in_range(
        &self,
        _start_micros: i64,
        _end_micros: i64,
        _after: Option<(i32, i64)>,
        _limit: usize,
    ) -> Result<Vec<SealedBatch>, StoreError> {
        Err(not_yet())
    }

    async fn put_signing_key(
        &self,
        _key_id: &str,
        _public_key: &[u8],
        _at_micros: i64,
    ) -> Result<(), StoreError> {
        Err(not_yet())
    }

    async fn signing_keys(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Err(not_yet())
    }

    async fn query_ledger(
        &self,
        _query: &LedgerQuery,
    ) -> Result<(Vec<StoredRow>, Vec<CurrencyTotal>), StoreError> {
        Err(not_yet())
    }
}
