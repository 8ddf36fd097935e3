//! Admission's background work: extending the holds of calls still running here, charging
//! expired holds (their event published durably before the hold is released), refreshing the
//! pricebook, and dropping cached keys and chains that admin events touch.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{events, Admission};
use crate::core::agent::AgentId;
use crate::core::events::{Event, TOPIC_AGENT_LIFECYCLE, TOPIC_POLICY_CHANGES};
use crate::http::Shutdown;
use crate::spend::{HoldInfo, HoldKey, SpendError};

/// How often the pricebook is re-read from the store.
const PRICEBOOK_REFRESH: Duration = Duration::from_secs(10);
/// How often the admin topics are polled for cache invalidations.
const INVALIDATION_POLL: Duration = Duration::from_millis(100);
/// Most admin events read per poll and partition.
const INVALIDATION_BATCH_MAX: usize = 500;

/// What one expiry sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Holds charged by this sweep (event published, then hold settled).
    pub charged: usize,
    /// Holds whose event was published but that another process had settled meanwhile.
    pub already_settled: usize,
    /// Holds left held because their event could not be published (retried next sweep).
    pub deferred: usize,
}

impl Admission {
    /// Runs every background loop until shutdown.
    pub async fn run_background(self: Arc<Self>, shutdown: Shutdown) {
        tokio::join!(
            Arc::clone(&self).epoch_loop(shutdown.clone()),
            Arc::clone(&self).sweep_loop(shutdown.clone()),
            Arc::clone(&self).pricebook_loop(shutdown.clone()),
            self.invalidation_loop(shutdown),
        );
    }

    /// Watches a shared spend cache's epoch: when it finds the cache lost its data, every hold
    /// whose call still runs here is recorded again (before the cache lets anyone reserve).
    async fn epoch_loop(self: Arc<Self>, mut shutdown: Shutdown) {
        let Some(every) = self.spend.epoch_check_every() else {
            return;
        };
        let mut reasserted = self.spend.check_epoch().await.map_or(0, |s| s.generation);
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.wait() => return,
            }
            match self.spend.check_epoch().await {
                Ok(state) if state.generation != reasserted => {
                    if self.reassert_live().await {
                        reasserted = state.generation;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "spend cache epoch not read"),
            }
        }
    }

    /// Records every live hold again where the spend cache lost it; false if one could not
    /// be (tried again on the next tick).
    async fn reassert_live(&self) -> bool {
        let expires = Utc::now() + chrono::Duration::seconds(self.limits.hold_seconds);
        let live: Vec<HoldInfo> = self
            .live()
            .values()
            .map(|h| HoldInfo {
                expires_at: expires,
                ..h.clone()
            })
            .collect();
        let mut recreated = 0;
        for hold in &live {
            match self.spend.reassert(hold).await {
                Ok(true) => recreated += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, hold = %hold.key(), "a live hold could not be re-asserted; retrying");
                    return false;
                }
            }
        }
        tracing::warn!(
            live = live.len(),
            recreated,
            "the spend cache lost its data: live holds re-asserted"
        );
        true
    }

    async fn sweep_loop(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval(self.limits.cleanup_interval);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.wait() => return,
            }
            self.extend_live().await;
            if let Err(e) = self.sweep_expired(Utc::now()).await {
                tracing::warn!(error = %e, "expired holds sweep failed");
            }
        }
    }

    /// Moves the expiry of every hold whose call is still running here one hold lifetime ahead,
    /// so the sweeper never frees the budget of a live stream.
    async fn extend_live(&self) {
        let live: Vec<HoldKey> = self.live().values().map(HoldInfo::key).collect();
        let expires = Utc::now() + chrono::Duration::seconds(self.limits.hold_seconds);
        for key in live {
            if let Err(e) = self.spend.extend(&key, expires).await {
                tracing::debug!(error = %e, "hold not extended (settled meanwhile?)");
            }
        }
    }

    /// Charges the holds expired at `now`: for each, publish its `estimated` MeteringEvent and
    /// wait until it is durable, then settle the hold at its full amount. A publish that fails
    /// leaves the hold (and the rest of the sweep) for the next sweep; a hold that another
    /// process settled meanwhile is not charged twice (its event id is its hold id).
    pub async fn sweep_expired(&self, now: DateTime<Utc>) -> Result<Swept, SpendError> {
        let mut swept = Swept::default();
        for shard in 0..self.spend.expiry_shards() {
            let due = self
                .spend
                .expired(shard, now, self.limits.expired_per_sweep_max)
                .await?;
            for (i, hold) in due.iter().enumerate() {
                if self.live().contains_key(&hold.hold_id) {
                    continue; // still running here; extended on the next tick
                }
                if let Err(e) = self
                    .publish(&events::expired_event(hold, &self.instance))
                    .await
                {
                    tracing::warn!(error = %e, hold = %hold.key(),
                        "an expired hold's charge could not be published; it stays held");
                    swept.deferred += due.len() - i;
                    return Ok(swept);
                }
                match self.spend.settle(&hold.key(), hold.amount, now).await {
                    Ok(_) => {
                        swept.charged += 1;
                        metrics::counter!("caracal_reservations_expired_total").increment(1);
                    }
                    Err(SpendError::HoldNotFound(_)) => swept.already_settled += 1,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(swept)
    }

    async fn pricebook_loop(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval(PRICEBOOK_REFRESH);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.wait() => return,
            }
            match self.store.pricebook().await {
                Ok(book) => match self.pricebook.write() {
                    Ok(mut current) => *current = Arc::new(book),
                    Err(_) => tracing::error!("pricebook lock poisoned; calls are refused"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "pricebook refresh failed; keeping the last one")
                }
            }
        }
    }

    /// Tails the admin topics from their current end and drops cached keys and chains that an
    /// AgentLifecycle or PolicyChange event touches.
    async fn invalidation_loop(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut cursors = Vec::new();
        for topic in [TOPIC_AGENT_LIFECYCLE, TOPIC_POLICY_CHANGES] {
            for partition in 0..crate::core::events::topic_partitions(topic).unwrap_or(1) {
                let start = self.bus.high_watermark(topic, partition).await.unwrap_or(0);
                cursors.push((topic, partition, start));
            }
        }
        let mut tick = tokio::time::interval(INVALIDATION_POLL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.wait() => return,
            }
            // All partitions at once: a Kafka fetch waits on the broker when there is nothing.
            let reads = cursors.iter().map(|(topic, partition, offset)| {
                self.bus
                    .fetch(topic, *partition, *offset, INVALIDATION_BATCH_MAX)
            });
            let results = futures_util::future::join_all(reads).await;
            for ((_, _, offset), result) in cursors.iter_mut().zip(results) {
                let Ok(messages) = result else { continue };
                for message in messages {
                    *offset = message.offset + 1;
                    if let Some(agent) = admin_event_agent(&message.value) {
                        self.invalidate_agent(agent);
                    }
                }
            }
        }
    }

    /// Forgets every cached key and chain that involves `agent`.
    pub fn invalidate_agent(&self, agent: AgentId) {
        self.auth.invalidate_agent(agent);
        self.chains
            .invalidate_where(|_, chain| chain.chain.members().iter().any(|a| a.id == agent));
    }
}

/// The agent an admin event (AgentLifecycle or PolicyChange) is about.
fn admin_event_agent(value: &[u8]) -> Option<AgentId> {
    match crate::bus::avro::decode_framed(value, crate::bus::avro::registered_kind)
        .ok()?
        .event
    {
        Event::Lifecycle(e) => Some(e.agent_id),
        Event::Change(e) => Some(e.agent_id),
        _ => None,
    }
}
