//! Audit retention: every `RETENTION_EVERY`, while this replica leads the audit consumer,
//! deletes records that occurred more than `retentionDays` ago, in bounded transactions.
//! Deletes nothing else; export cursors are ids, so deleting old rows never moves them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{pause, wait_for_leadership};
use crate::http::Shutdown;
use crate::store::audit::{AuditStore, RETENTION_DELETE_ROWS_MAX};
use crate::store::leases::Fence;
use crate::store::StoreError;

/// How often old records are deleted.
pub const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// Pause before retrying a failed purge.
const RETRY_AFTER: Duration = Duration::from_secs(60);
const DAY_MICROS: i64 = 86_400_000_000;

/// Records that occurred before this instant are past retention.
pub fn cutoff_micros(now_micros: i64, retention_days: u32) -> i64 {
    now_micros.saturating_sub(i64::from(retention_days).saturating_mul(DAY_MICROS))
}

/// Deletes every record before `before_micros`, one bounded transaction at a time; returns
/// how many. Stops early (the rest waits for the next run) when shutdown is requested.
pub async fn purge(
    store: &dyn AuditStore,
    before_micros: i64,
    shutdown: &Shutdown,
) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let deleted = store.delete_audit_before(before_micros).await?;
        total += deleted;
        if deleted < RETENTION_DELETE_ROWS_MAX || shutdown.is_requested() {
            return Ok(total);
        }
    }
}

/// Runs retention until shutdown.
pub async fn run(
    store: Arc<dyn AuditStore>,
    retention_days: u32,
    mut leader: watch::Receiver<Option<Fence>>,
    mut shutdown: Shutdown,
) {
    while !shutdown.is_requested() {
        if !wait_for_leadership(&mut leader, &mut shutdown).await {
            continue;
        }
        let before = cutoff_micros(chrono::Utc::now().timestamp_micros(), retention_days);
        let wait = match purge(store.as_ref(), before, &shutdown).await {
            Ok(deleted) => {
                if deleted > 0 {
                    tracing::info!(
                        deleted,
                        retention_days,
                        "audit records past retention deleted"
                    );
                }
                metrics::counter!("caracal_audit_retention_deleted_total")
                    .increment(deleted as u64);
                RETENTION_EVERY
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit retention failed; retrying");
                RETRY_AFTER
            }
        };
        pause(wait, &mut shutdown).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_whole_days_before_now_and_never_overflows() {
        assert_eq!(cutoff_micros(10 * DAY_MICROS, 3), 7 * DAY_MICROS);
        assert_eq!(cutoff_micros(0, 2555), -2555 * DAY_MICROS);
        assert_eq!(cutoff_micros(i64::MIN + 1, u32::MAX), i64::MIN);
    }
}
