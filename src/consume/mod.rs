//! The consumer runtime shared by the ledger and audit roles: owns partitions through leases
//! with fencing epochs, reads them by offset, hands each message to a `Sink`, sends what the
//! sink cannot take to `caracal.dlq`, and lets the sink commit its output together with the
//! next offset. It never decides what an event means and never commits an offset itself
//! except through the sink's fenced transaction (or, for an all-DLQ batch, the fenced offset
//! commit), so a replica that lost its lease writes nothing.

pub mod dlq;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;

use crate::bus::{BusError, ConsumedMessage, EventBus};
use crate::core::events::TOPIC_DLQ;
use crate::http::Shutdown;
use crate::store::leases::{Fence, Lease, LeaseRequest, LeaseStore};
use crate::store::StoreError;

/// A consumer's settings. Every limit is explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// `ledger` or `audit`: the lease namespace and the `consumer` metric label.
    pub name: String,
    pub topics: Vec<String>,
    /// This replica's identity in the lease table (unique per process).
    pub owner: String,
    /// How long a lease lasts unrenewed: a crashed replica's partitions move after this.
    pub lease_ttl: Duration,
    /// How often leases are renewed and the partition split rebalanced.
    pub renew_every: Duration,
    /// Most messages read (and committed) per partition per round.
    pub fetch_messages_max: usize,
    /// Owned partitions read and committed at the same time (at least 1).
    pub partitions_in_flight: usize,
    /// Pause when a round found nothing to do.
    pub idle_poll: Duration,
    /// Pause after a store or bus error before retrying.
    pub error_backoff: Duration,
}

impl ConsumerConfig {
    pub fn new(name: &str, topics: Vec<String>) -> ConsumerConfig {
        ConsumerConfig {
            name: name.to_owned(),
            topics,
            owner: instance_owner(),
            lease_ttl: Duration::from_secs(10),
            renew_every: Duration::from_secs(3),
            fetch_messages_max: 5_000,
            partitions_in_flight: 4,
            idle_poll: Duration::from_millis(50),
            error_backoff: Duration::from_millis(500),
        }
    }
}

/// `host:pid:random`: unique per process, readable in `consumers status`.
pub fn instance_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &nonce[..8])
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Where a consumer's output goes. `Item` is one message made ready for the sink.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    type Item: Send;

    /// Turns one message into output, or says why it cannot be applied (it then goes to the
    /// DLQ and the consumer moves on).
    fn accept(&self, message: &ConsumedMessage) -> Result<Self::Item, String>;

    /// Writes `items` (possibly none) and moves the committed offset of `fence`'s partition to
    /// `next_offset`, in one transaction that fails with `StoreError::Fenced` if the lease was
    /// lost. Returns how many items were new (not duplicates).
    async fn commit(
        &self,
        fence: &Fence,
        items: Vec<Self::Item>,
        next_offset: i64,
    ) -> Result<usize, StoreError>;

    /// Runs after every round with the partitions owned now (the ledger seals batches here).
    async fn after_round(&self, leases: &[Lease]) -> Result<(), ConsumeError> {
        let _ = leases;
        Ok(())
    }

    /// Runs once when the consumer stops, after the last commit.
    async fn on_stop(&self, leases: &[Lease]) {
        let _ = leases;
    }
}

/// One partition's read and commit in a round, its index among the owned partitions, and
/// whether the read left it behind its high watermark.
type PartitionRound<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = (usize, Result<bool, ConsumeError>, bool)> + Send + 'a>,
>;

/// Runs a consumer until shutdown; releases its leases on the way out.
pub async fn run<S: Sink>(
    config: ConsumerConfig,
    leases: Arc<dyn LeaseStore>,
    bus: Arc<dyn EventBus>,
    sink: Arc<S>,
    mut shutdown: Shutdown,
) {
    tracing::debug!(consumer = %config.name, owner = %config.owner, topics = ?config.topics, "consumer starting");
    let mut owned: Vec<Lease> = Vec::new();
    let mut renewed_at: Option<Instant> = None;
    // What the last ownership line said; one INFO line per change, none per partition.
    let mut reported: Option<String> = None;
    // Some partition was left behind its high watermark by the last round: read without
    // waiting on the broker, or idle partitions' waits would hold up its reads.
    let mut behind = false;
    loop {
        if shutdown.is_requested() {
            break;
        }
        if renewed_at.is_none_or(|at| at.elapsed() >= config.renew_every) {
            match renew(&config, leases.as_ref(), bus.as_ref(), &owned).await {
                Ok(now) => {
                    let summary = ownership(&now);
                    if reported.as_ref() != Some(&summary) {
                        tracing::info!(consumer = %config.name, owner = %config.owner, partitions = %summary, "consumer owns partitions");
                        reported = Some(summary);
                    }
                    owned = now;
                    renewed_at = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(consumer = %config.name, error = %e, "cannot renew leases; retrying");
                    pause(config.error_backoff, &mut shutdown).await;
                    continue;
                }
            }
        }
        let Round {
            progressed,
            lost,
            failed,
            left_behind,
        } = round(&config, bus.as_ref(), sink.as_ref(), &mut owned, behind).await;
        behind = left_behind;
        if failed {
            pause(config.error_backoff, &mut shutdown).await;
        }
        if lost {
            renewed_at = None;
        }
        if let Err(e) = sink.after_round(&owned).await {
            tracing::warn!(consumer = %config.name, error = %e, "after-round work failed; retrying");
            if matches!(e, ConsumeError::Store(StoreError::Fenced(_))) {
                renewed_at = None;
            }
        }
        if !progressed {
            pause(config.idle_poll, &mut shutdown).await;
        }
    }
    sink.on_stop(&owned).await;
    if let Err(e) = leases.release_leases(&config.name, &config.owner).await {
        tracing::warn!(consumer = %config.name, error = %e, "cannot release leases; they expire by themselves");
    }
    tracing::info!(consumer = %config.name, "consumer stopped");
}

/// What one round over the owned partitions did.
struct Round {
    /// Some partition moved its offset.
    progressed: bool,
    /// Some lease was taken over (renew at once).
    lost: bool,
    /// Some partition failed otherwise (back off).
    failed: bool,
    /// Some partition read without error is still behind its high watermark.
    left_behind: bool,
}

/// Reads and commits every owned partition once, up to `partitions_in_flight` at a time, so the
/// log, the store and the sink's CPU work overlap. Reads wait on the broker unless `behind`.
async fn round<S: Sink>(
    config: &ConsumerConfig,
    bus: &dyn EventBus,
    sink: &S,
    owned: &mut [Lease],
    behind: bool,
) -> Round {
    let rounds: Vec<PartitionRound<'_>> = owned
        .iter_mut()
        .enumerate()
        .map(|(i, lease)| -> PartitionRound<'_> {
            Box::pin(async move {
                let mut left_behind = false;
                let result = match fetch(config, bus, lease, behind).await {
                    Ok(batch) => {
                        let result = apply(config, bus, sink, lease, batch.messages).await;
                        left_behind = result.is_ok() && batch.high_watermark > lease.next_offset;
                        record_lag(
                            config,
                            &lease.fence,
                            batch.high_watermark - lease.next_offset,
                        );
                        result
                    }
                    Err(ConsumeError::Bus(BusError::OffsetOutOfRange { .. })) => {
                        reset_below_log_start(config, bus, sink, lease).await
                    }
                    Err(e) => Err(e),
                };
                (i, result, left_behind)
            })
        })
        .collect();
    let results: Vec<(usize, Result<bool, ConsumeError>, bool)> =
        futures_util::stream::iter(rounds)
            .buffer_unordered(config.partitions_in_flight.max(1))
            .collect()
            .await;
    let mut outcome = Round {
        progressed: false,
        lost: false,
        failed: false,
        left_behind: false,
    };
    for (i, result, left_behind) in results {
        outcome.left_behind |= left_behind;
        let Some(lease) = owned.get(i) else { continue };
        match result {
            Ok(moved) => outcome.progressed |= moved,
            Err(ConsumeError::Store(StoreError::Fenced(why))) => {
                tracing::warn!(consumer = %config.name, %why, "lease lost; stopping that partition");
                outcome.lost = true;
            }
            Err(e) => {
                tracing::warn!(consumer = %config.name, topic = %lease.fence.topic, partition = lease.fence.partition, error = %e, "consume failed; retrying");
                outcome.failed = true;
            }
        }
    }
    outcome
}

async fn pause(duration: Duration, shutdown: &mut Shutdown) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = shutdown.wait() => {}
    }
}

/// Renews membership and leases for every topic; reports lag gauges for partitions given up.
async fn renew(
    config: &ConsumerConfig,
    store: &dyn LeaseStore,
    bus: &dyn EventBus,
    previous: &[Lease],
) -> Result<Vec<Lease>, ConsumeError> {
    let now_micros = chrono::Utc::now().timestamp_micros();
    let ttl_micros = i64::try_from(config.lease_ttl.as_micros()).unwrap_or(i64::MAX);
    let mut owned = Vec::new();
    for topic in &config.topics {
        let partitions = bus.partition_count(topic).await?;
        let request = LeaseRequest {
            consumer: config.name.clone(),
            topic: topic.clone(),
            partitions,
            owner: config.owner.clone(),
            now_micros,
            ttl_micros,
        };
        owned.extend(store.acquire_leases(&request).await?);
    }
    record_dlq_size(bus, store).await?;
    for lease in &owned {
        if !previous.iter().any(|p| p.fence == lease.fence) {
            tracing::debug!(consumer = %config.name, topic = %lease.fence.topic, partition = lease.fence.partition, epoch = lease.fence.epoch, offset = lease.next_offset, "partition acquired");
        }
    }
    Ok(owned)
}

/// The owned partitions in one line, per topic in ranges: `caracal.metering.events 0-4,7`;
/// `none` when this replica owns nothing (another replica has them all).
fn ownership(leases: &[Lease]) -> String {
    let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for lease in leases {
        by_topic
            .entry(lease.fence.topic.as_str())
            .or_default()
            .push(lease.fence.partition);
    }
    let topics: Vec<String> = by_topic
        .into_iter()
        .map(|(topic, mut partitions)| {
            partitions.sort_unstable();
            format!("{topic} {}", ranges(&partitions))
        })
        .collect();
    if topics.is_empty() {
        "none".to_owned()
    } else {
        topics.join("; ")
    }
}

/// Sorted numbers as ranges: `[0, 1, 2, 5]` → `0-2,5`.
fn ranges(sorted: &[i32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(&start) = sorted.get(i) {
        let mut end = start;
        while sorted.get(i + 1) == Some(&(end + 1)) {
            end += 1;
            i += 1;
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// One partition's read: its messages from the lease's offset on, and its high watermark.
struct Fetched {
    messages: Vec<ConsumedMessage>,
    high_watermark: i64,
}

async fn fetch(
    config: &ConsumerConfig,
    bus: &dyn EventBus,
    lease: &Lease,
    now: bool,
) -> Result<Fetched, ConsumeError> {
    let (topic, partition) = (&lease.fence.topic, lease.fence.partition);
    let (offset, max) = (lease.next_offset, config.fetch_messages_max);
    let (messages, high_watermark) = if now {
        bus.fetch_now(topic, partition, offset, max).await?
    } else {
        bus.fetch_with_watermark(topic, partition, offset, max)
            .await?
    };
    Ok(Fetched {
        messages,
        high_watermark,
    })
}

/// The committed offset fell below the log start (retention deleted messages never read):
/// those messages are gone, so the partition moves to the log start, loudly, in the sink's
/// fenced transaction (Kafka's `auto.offset.reset=earliest`). An offset beyond the high
/// watermark is not skipped over: it stays an error (the log lost acknowledged messages).
async fn reset_below_log_start<S: Sink>(
    config: &ConsumerConfig,
    bus: &dyn EventBus,
    sink: &S,
    lease: &mut Lease,
) -> Result<bool, ConsumeError> {
    let fence = &lease.fence;
    let log_start = bus.log_start(&fence.topic, fence.partition).await?;
    if lease.next_offset >= log_start {
        return Err(ConsumeError::Bus(BusError::OffsetOutOfRange {
            topic: fence.topic.clone(),
            partition: fence.partition,
            offset: lease.next_offset,
            high_watermark: bus.high_watermark(&fence.topic, fence.partition).await?,
        }));
    }
    let skipped = log_start - lease.next_offset;
    tracing::error!(consumer = %config.name, topic = %fence.topic, partition = fence.partition, offset = lease.next_offset, log_start, skipped, "messages were deleted by retention before they were read; moving to the log start");
    metrics::counter!("caracal_consumer_skipped_messages_total", "consumer" => config.name.clone(), "topic" => fence.topic.clone())
        .increment(u64::try_from(skipped).unwrap_or(0));
    sink.commit(fence, Vec::new(), log_start).await?;
    lease.next_offset = log_start;
    Ok(true)
}

/// Applies one fetched batch of a partition and commits it. `Ok(true)` when the offset moved.
async fn apply<S: Sink>(
    config: &ConsumerConfig,
    bus: &dyn EventBus,
    sink: &S,
    lease: &mut Lease,
    messages: Vec<ConsumedMessage>,
) -> Result<bool, ConsumeError> {
    let fence = &lease.fence;
    let Some(last) = messages.last() else {
        return Ok(false);
    };
    let next_offset = last.offset.saturating_add(1);
    let mut items = Vec::with_capacity(messages.len());
    let mut dead = Vec::new();
    for message in &messages {
        match sink.accept(message) {
            Ok(item) => items.push(item),
            Err(reason) => {
                tracing::warn!(consumer = %config.name, topic = %message.topic, partition = message.partition, offset = message.offset, %reason, "message sent to the DLQ");
                dead.push(dlq::dead_letter(message, &config.name, &reason));
            }
        }
    }
    // The DLQ entries are durable before the offset moves past them: nothing is lost.
    if !dead.is_empty() {
        let count = dead.len() as u64;
        bus.publish(dead).await?;
        metrics::counter!("caracal_dlq_messages_total", "consumer" => config.name.clone())
            .increment(count);
    }
    let accepted = items.len() as u64;
    let inserted = sink.commit(fence, items, next_offset).await?;
    lease.next_offset = next_offset;
    metrics::counter!("caracal_consumer_events_total", "consumer" => config.name.clone(), "topic" => fence.topic.clone())
        .increment(accepted);
    if (inserted as u64) < accepted {
        metrics::counter!("caracal_consumer_duplicates_total", "consumer" => config.name.clone())
            .increment(accepted - inserted as u64);
    }
    Ok(true)
}

/// `caracal_dlq_size`: the DLQ backlog, entries not replayed yet (the seeds alert above 1000,
/// so it must fall when entries are replayed); `caracal_dlq_entries_total`: every entry ever
/// written to the dead-letter topic (a counter, read from the topic's end offsets).
async fn record_dlq_size(bus: &dyn EventBus, store: &dyn LeaseStore) -> Result<(), ConsumeError> {
    let mut written = 0i64;
    for partition in 0..bus.partition_count(TOPIC_DLQ).await? {
        written = written.saturating_add(bus.high_watermark(TOPIC_DLQ, partition).await?);
    }
    let replayed = store.dlq_replay_count().await?;
    metrics::gauge!("caracal_dlq_size").set(dlq_backlog(written, replayed) as f64);
    metrics::counter!("caracal_dlq_entries_total").absolute(u64::try_from(written).unwrap_or(0));
    Ok(())
}

/// Entries written to the DLQ and not replayed yet (never negative).
pub fn dlq_backlog(written: i64, replayed: i64) -> i64 {
    written.saturating_sub(replayed).max(0)
}

fn record_lag(config: &ConsumerConfig, fence: &Fence, lag: i64) {
    metrics::gauge!(
        "kafka_consumer_lag",
        "topic" => fence.topic.clone(),
        "partition" => fence.partition.to_string(),
        "consumer" => config.name.clone()
    )
    .set(lag.max(0) as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(topic: &str, partition: i32) -> Lease {
        Lease {
            fence: Fence {
                consumer: "audit".into(),
                topic: topic.into(),
                partition,
                owner: "o".into(),
                epoch: 1,
            },
            next_offset: 0,
        }
    }

    #[test]
    fn ownership_is_one_line_of_ranges_per_topic() {
        let leases: Vec<Lease> = [4, 0, 1, 2, 7, 8]
            .into_iter()
            .map(|p| lease("caracal.metering.events", p))
            .chain([lease("caracal.dlq", 0)])
            .collect();
        assert_eq!(
            ownership(&leases),
            "caracal.dlq 0; caracal.metering.events 0-2,4,7-8"
        );
        assert_eq!(ownership(&[]), "none");
    }
}
