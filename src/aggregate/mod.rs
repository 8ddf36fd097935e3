//! The metrics role's logic: metering events → real-time spend and token aggregates (per agent
//! and agent tree, per UTC hour, day, week, month and in total, per provider and model), applied
//! exactly once through the consumer runtime (`sink.rs`), read back for `spend show` and for the
//! policy gauges (`gauges.rs`). `keys.rs` is the pure key/window arithmetic; `redis/` the one
//! store of aggregates. Knows nothing of HTTP; never decides a budget (the admission core does).

pub mod gauges;
pub mod keys;
pub mod redis;
mod scripts;
pub mod sink;

use async_trait::async_trait;

use crate::core::agent::AgentId;
use crate::store::leases::Fence;
use crate::store::StoreError;

use self::keys::{Increment, Period, Scope, Totals};

/// One metering event made ready for the aggregate store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventIncrements {
    /// Dedupe key: an event seen before (within the dedupe window) adds nothing.
    pub event_id: uuid::Uuid,
    pub increments: Vec<Increment>,
}

/// Where aggregates live. `apply` is all or nothing and fenced: the increments of the events
/// not seen before and the partition's next offset are written together, or nothing is.
#[async_trait]
pub trait AggregateStore: Send + Sync {
    /// Applies one batch of `fence`'s partition and moves its offset to `next_offset`.
    /// Returns how many events were new; `StoreError::Fenced` if the lease was lost.
    async fn apply(
        &self,
        fence: &Fence,
        events: Vec<EventIncrements>,
        next_offset: i64,
    ) -> Result<usize, StoreError>;

    /// The totals of `agent` (`scope`) summed over `periods` and every consumed partition.
    async fn read(
        &self,
        scope: Scope,
        agent: AgentId,
        periods: &[Period],
    ) -> Result<Totals, StoreError>;

    /// Reachability, for `/ready`.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// The settings of the aggregates (`consumers.metricsAggregator.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateSettings {
    /// How long an event id is remembered to drop a redelivered copy (seconds).
    pub dedupe_window_secs: i64,
    pub retention: keys::Retention,
}
