//! The audit log: every message of every topic (the DLQ included) recorded once, through the
//! consumer runtime's fenced commits (`record` builds the rows), shipped to files and syslog
//! (`export`, `syslog`) and objects in S3-compatible stores (`object`), and deleted after retention (`retention`). Exports and retention run
//! only on the replica that owns the leader partition, and never hold up consumption.

pub mod export;
pub mod object;
pub mod record;
pub mod retention;
pub mod syslog;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::bus::ConsumedMessage;
use crate::consume::{ConsumeError, Sink};
use crate::core::events::{TOPICS, TOPIC_AGENT_LIFECYCLE};
use crate::http::Shutdown;
use crate::store::audit::{AuditEntry, AuditStore};
use crate::store::leases::{Fence, Lease};
use crate::store::StoreError;

/// The partition whose owner exports and applies retention: one replica does, so replicas
/// never ship the same records twice, and leadership moves with the lease.
pub const LEADER_TOPIC: &str = TOPIC_AGENT_LIFECYCLE;
pub const LEADER_PARTITION: i32 = 0;

/// Every topic the audit role consumes: all of them, `caracal.dlq` included.
pub fn topics() -> Vec<String> {
    TOPICS.iter().map(|t| t.name.to_owned()).collect()
}

/// The audit consumer's sink. Publishes whether this replica leads (the leader partition's
/// fence, or `None`) for the export and retention loops.
pub struct AuditSink {
    store: Arc<dyn AuditStore>,
    leader: watch::Sender<Option<Fence>>,
}

impl AuditSink {
    pub fn new(store: Arc<dyn AuditStore>, leader: watch::Sender<Option<Fence>>) -> AuditSink {
        AuditSink { store, leader }
    }

    fn set_leader(&self, fence: Option<Fence>) {
        self.leader.send_if_modified(|current| {
            let changed = *current != fence;
            if changed {
                tracing::info!(leading = fence.is_some(), "audit export leadership changed");
                *current = fence;
            }
            changed
        });
    }
}

#[async_trait]
impl Sink for AuditSink {
    type Item = AuditEntry;

    fn accept(&self, message: &ConsumedMessage) -> Result<AuditEntry, String> {
        record::entry(message)
    }

    async fn commit(
        &self,
        fence: &Fence,
        items: Vec<AuditEntry>,
        next_offset: i64,
    ) -> Result<usize, StoreError> {
        let now = chrono::Utc::now().timestamp_micros();
        self.store
            .append_audit(fence, items, next_offset, now)
            .await
    }

    async fn after_round(&self, leases: &[Lease]) -> Result<(), ConsumeError> {
        let leader = leases
            .iter()
            .find(|l| l.fence.topic == LEADER_TOPIC && l.fence.partition == LEADER_PARTITION)
            .map(|l| l.fence.clone());
        self.set_leader(leader);
        Ok(())
    }

    async fn on_stop(&self, _leases: &[Lease]) {
        self.set_leader(None);
    }
}

/// `true` when this replica leads now; otherwise waits for a change (or shutdown) and
/// returns `false` so the caller checks again.
pub(crate) async fn wait_for_leadership(
    leader: &mut watch::Receiver<Option<Fence>>,
    shutdown: &mut Shutdown,
) -> bool {
    if leader.borrow_and_update().is_some() {
        return true;
    }
    tokio::select! {
        changed = leader.changed() => {
            if changed.is_err() {
                // The consumer is gone: nothing will lead again in this process.
                shutdown.wait().await;
            }
        }
        () = shutdown.wait() => {}
    }
    false
}

/// Sleeps for `duration` or until shutdown.
pub(crate) async fn pause(duration: Duration, shutdown: &mut Shutdown) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = shutdown.wait() => {}
    }
}
