//! `LeaseStore` on Postgres: NOT IMPLEMENTED YET. Every call fails with `Unavailable`, so the
//! consumers refuse to run on Postgres instead of pretending. The tables (`consumer_leases`,
//! `consumer_members`, `dlq_replays`) are in `migrations/postgres/0002_ledger.sql`; replace
//! this file with the real implementation (one transaction per acquire, fenced commits).

use async_trait::async_trait;

use super::PgStore;
use crate::store::leases::{Fence, Lease, LeaseRequest, LeaseRow, LeaseStore};
use crate::store::StoreError;

fn not_yet() -> StoreError {
    StoreError::Unavailable(
        "consumer leases are not implemented on Postgres yet; use the embedded store for \
         consumer roles"
            .into(),
    )
}

#[async_trait]
impl LeaseStore for PgStore {
    async fn acquire_leases(&self, _request: &LeaseRequest) -> Result<Vec<Lease>, StoreError> {
        Err(not_yet())
    }

    async fn release_leases(&self, _consumer: &str, _owner: &str) -> Result<(), StoreError> {
        Err(not_yet())
    }

    async fn list_leases(&self, _consumer: Option<&str>) -> Result<Vec<LeaseRow>, StoreError> {
        Err(not_yet())
    }

    async fn commit_offset(&self, _fence: &Fence, _next_offset: i64) -> Result<(), StoreError> {
        Err(not_yet())
    }

    async fn record_dlq_replay(
        &self,
        _partition: i32,
        _offset: i64,
        _at_micros: i64,
    ) -> Result<bool, StoreError> {
        Err(not_yet())
    }

    async fn dlq_replays(&self) -> Result<Vec<(i32, i64)>, StoreError> {
        Err(not_yet())
    }
}
