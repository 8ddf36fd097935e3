//! `AuditStore` on Postgres: NOT IMPLEMENTED YET. Every call fails with `Unavailable`, so the
//! audit role refuses to run on Postgres instead of pretending. The tables (`audit_log`,
//! `audit_exports`) are in `migrations/postgres/0002_ledger.sql`; replace this file with the
//! real implementation (fenced appends, ids visible in id order).

use async_trait::async_trait;

use super::PgStore;
use crate::store::audit::{AuditEntry, AuditRecord, AuditStore};
use crate::store::leases::Fence;
use crate::store::StoreError;

fn not_yet() -> StoreError {
    StoreError::Unavailable(
        "the audit log is not implemented on Postgres yet; use the embedded store for the \
         audit role"
            .into(),
    )
}

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(
        &self,
        _fence: &Fence,
        _entries: Vec<AuditEntry>,
        _next_offset: i64,
        _logged_at_micros: i64,
    ) -> Result<usize, StoreError> {
        Err(not_yet())
    }

    async fn audit_after(
        &self,
        _after_id: i64,
        _limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        Err(not_yet())
    }

    async fn audit_in_range(
        &self,
        _start_micros: i64,
        _end_micros: i64,
        _after_id: i64,
        _limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        Err(not_yet())
    }

    async fn audit_cursor(&self, _destination: &str) -> Result<i64, StoreError> {
        Err(not_yet())
    }

    async fn move_audit_cursor(
        &self,
        _destination: &str,
        _after_id: i64,
    ) -> Result<(), StoreError> {
        Err(not_yet())
    }

    async fn delete_audit_before(&self, _before_micros: i64) -> Result<usize, StoreError> {
        Err(not_yet())
    }
}
