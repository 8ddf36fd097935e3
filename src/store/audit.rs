//! The audit log's storage contract: one record per message of every topic (exactly once,
//! appended with the consumer's offset in one fenced transaction), export cursors per
//! destination, retention and the range query of `caracal audit export`. Owns the row types
//! and the trait; knows nothing of what a record says or where it is shipped (`audit` does).

use async_trait::async_trait;
use serde::Serialize;

use super::leases::Fence;
use super::StoreError;

/// Most rows one retention transaction deletes (the rest go in the next one).
pub const RETENTION_DELETE_ROWS_MAX: usize = 10_000;

/// A record to append: where it was read from, its indexed columns and the record JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// `None` for a record that is not one of our events (a DLQ entry).
    pub event_id: Option<String>,
    pub event_type: String,
    pub occurred_at_micros: i64,
    pub agent_id: Option<String>,
    pub root_agent_id: Option<String>,
    /// The whole record as JSON text, exported verbatim.
    pub record: String,
}

/// A record as stored: its entry and its place in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Increases in commit order: the export cursors are ids.
    pub id: i64,
    pub entry: AuditEntry,
    pub logged_at_micros: i64,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends `entries` (all from `fence`'s partition), skipping any whose
    /// (topic, partition, offset) or event_id is already logged, and moves the committed offset
    /// to `next_offset`: one transaction, which fails with `Fenced` if the lease was lost.
    /// Returns how many were new.
    ///
    /// Ids must become visible in id order (no record may commit with an id below one already
    /// readable), or exports would skip it: SQLite has one writer; a Postgres implementation
    /// must serialize appends (e.g. a transaction-scoped advisory lock).
    async fn append_audit(
        &self,
        fence: &Fence,
        entries: Vec<AuditEntry>,
        next_offset: i64,
        logged_at_micros: i64,
    ) -> Result<usize, StoreError>;

    /// Records with id greater than `after_id`, in id order, at most `limit`.
    async fn audit_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// Records whose `occurred_at` is in `[start, end)` and whose id is greater than
    /// `after_id`, in id order, at most `limit` (page with the last id returned).
    async fn audit_in_range(
        &self,
        start_micros: i64,
        end_micros: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// The last id shipped to `destination` (0 when it never shipped anything).
    async fn audit_cursor(&self, destination: &str) -> Result<i64, StoreError>;

    /// Moves `destination`'s cursor forward to `after_id`; never moves it back.
    async fn move_audit_cursor(&self, destination: &str, after_id: i64) -> Result<(), StoreError>;

    /// Deletes up to `RETENTION_DELETE_ROWS_MAX` records that occurred before `before_micros`;
    /// returns how many (call again while it returns the maximum).
    async fn delete_audit_before(&self, before_micros: i64) -> Result<usize, StoreError>;
}
