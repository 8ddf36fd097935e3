//! The outbox relay: moves admin events (AgentLifecycle, PolicyChange) from the store's outbox
//! to their topics, each exactly once, keeping its cursor with the bus (`publish_with_cursor`).
//! It reads the outbox and writes the bus; it never changes the store or decides anything.

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use super::avro::WireFormat;
use super::{admin_message, header, BusError, CursorUpdate, EventBus, OutgoingMessage};
use super::{HEADER_EVENT_ID, HEADER_EVENT_TYPE, HEADER_OUTBOX_ID};
use crate::core::events::{TOPIC_AGENT_LIFECYCLE, TOPIC_DLQ, TOPIC_POLICY_CHANGES};
use crate::http::Shutdown;
use crate::store::{OutboxRecord, Store, StoreError};

/// Name of the relay's cursor: the id of the last outbox row published.
pub const ADMIN_OUTBOX_CURSOR: &str = "admin-outbox";
/// The topics the relay writes, and the only writer they have.
pub const RELAY_TOPICS: [&str; 2] = [TOPIC_AGENT_LIFECYCLE, TOPIC_POLICY_CHANGES];
/// DLQ header: the topic the event was meant for.
pub const HEADER_DLQ_TOPIC: &str = "dlq_topic";
/// DLQ header: why the event could not be published.
pub const HEADER_DLQ_ERROR: &str = "dlq_error";

/// How the relay paces itself. Every value must be positive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Pause between outbox polls when the last one found less than a full batch.
    pub poll_interval_ms: u64,
    /// Outbox rows read and published per step (one bus transaction on the embedded log).
    pub batch_events_max: usize,
    /// Pause after a failed step before trying again.
    pub error_backoff_ms: u64,
    /// How values are framed: single-object unless a Schema Registry gave ids.
    pub wire: WireFormat,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            poll_interval_ms: 200,
            batch_events_max: 500,
            error_backoff_ms: 1_000,
            wire: WireFormat::SingleObject,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Where the relay left off: the bus's committed cursor or, on a bus that keeps none, the
/// largest `outbox_id` at the tail of the relay's partitions. Every row up to it was
/// acknowledged before it was sent (the default `publish_with_cursor` sends one at a time).
pub async fn recover_cursor(bus: &dyn EventBus) -> Result<i64, BusError> {
    if let Some(cursor) = bus.committed_cursor(ADMIN_OUTBOX_CURSOR).await? {
        return Ok(cursor);
    }
    let mut cursor = 0;
    for topic in RELAY_TOPICS {
        for partition in 0..bus.partition_count(topic).await? {
            let high_watermark = bus.high_watermark(topic, partition).await?;
            if high_watermark == 0 {
                continue;
            }
            for message in bus.fetch(topic, partition, high_watermark - 1, 1).await? {
                let id = header(&message.headers, HEADER_OUTBOX_ID)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<i64>().ok());
                cursor = cursor.max(id.unwrap_or(0));
            }
        }
    }
    Ok(cursor)
}

/// The message for one outbox row: its admin event, or a DLQ entry when it cannot be encoded
/// (so one bad row never stops cache invalidation for everything behind it).
pub fn relay_message(record: &OutboxRecord, wire: WireFormat) -> OutgoingMessage {
    let framing = wire.framing(record.event.kind());
    match admin_message(&record.event, record.id, framing) {
        Ok(message) => message,
        Err(e) => {
            tracing::error!(outbox_id = record.id, error = %e, "admin event sent to the DLQ");
            let kind = record.event.kind();
            OutgoingMessage {
                topic: TOPIC_DLQ.to_owned(),
                key: record.event.partition_key().to_string().into_bytes(),
                value: record.event.to_json().unwrap_or_default().into_bytes(),
                headers: vec![
                    (
                        HEADER_EVENT_TYPE.to_owned(),
                        kind.name().as_bytes().to_vec(),
                    ),
                    (
                        HEADER_EVENT_ID.to_owned(),
                        record.event.event_id().to_string().into_bytes(),
                    ),
                    (
                        HEADER_OUTBOX_ID.to_owned(),
                        record.id.to_string().into_bytes(),
                    ),
                    (
                        HEADER_DLQ_TOPIC.to_owned(),
                        kind.topic().as_bytes().to_vec(),
                    ),
                    (HEADER_DLQ_ERROR.to_owned(), e.to_string().into_bytes()),
                ],
                timestamp: record.created_at,
            }
        }
    }
}

/// One step: publishes the outbox rows after `cursor` (at most a batch) and moves the cursor
/// with them. Returns the new cursor and how many rows were published.
pub async fn relay_once(
    store: &dyn Store,
    bus: &dyn EventBus,
    cursor: i64,
    config: &RelayConfig,
) -> Result<(i64, usize), RelayError> {
    let records = store
        .outbox_after(cursor, config.batch_events_max.max(1))
        .await?;
    if records.is_empty() {
        return Ok((cursor, 0));
    }
    // A log without cursors (Kafka) is shared by every process's relay: another may have
    // published these rows already; its tail says how far.
    let (cursor, records) = match bus.committed_cursor(ADMIN_OUTBOX_CURSOR).await? {
        Some(_) => (cursor, records),
        None => {
            let tail = recover_cursor(bus).await?.max(cursor);
            (tail, records.into_iter().filter(|r| r.id > tail).collect())
        }
    };
    let Some(last) = records.last().map(|r| r.id) else {
        return Ok((cursor, 0));
    };
    debug_assert!(
        records.windows(2).all(|w| w[0].id < w[1].id) && records[0].id > cursor,
        "outbox rows come after the cursor, oldest first"
    );
    let messages = records
        .iter()
        .map(|r| relay_message(r, config.wire))
        .collect();
    let update = CursorUpdate {
        name: ADMIN_OUTBOX_CURSOR.to_owned(),
        expected: cursor,
        next: last,
    };
    bus.publish_with_cursor(messages, update).await?;
    metrics::counter!("caracal_outbox_relayed_total").increment(records.len() as u64);
    Ok((last, records.len()))
}

/// Relays until shutdown. Errors are logged and retried after `error_backoff_ms`; after any
/// bus error the cursor is recovered again, since a failed publish may have landed.
pub async fn run(
    store: Arc<dyn Store>,
    bus: Arc<dyn EventBus>,
    config: RelayConfig,
    mut shutdown: Shutdown,
) {
    let poll = Duration::from_millis(config.poll_interval_ms);
    let backoff = Duration::from_millis(config.error_backoff_ms);
    let mut cursor: Option<i64> = None;
    while !stop_requested(&mut shutdown).await {
        let pause = match step(store.as_ref(), bus.as_ref(), &mut cursor, &config).await {
            Ok(published) if published >= config.batch_events_max => Duration::ZERO,
            Ok(_) => poll,
            Err(RelayError::Bus(BusError::CursorConflict { found, .. })) => {
                tracing::info!(cursor = found, "another relay moved the outbox cursor");
                cursor = None;
                Duration::ZERO
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay step failed; retrying");
                if matches!(e, RelayError::Bus(_)) {
                    cursor = None;
                }
                backoff
            }
        };
        if pause.is_zero() {
            continue;
        }
        tokio::select! {
            () = shutdown.wait() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    tracing::debug!("outbox relay stopped");
}

async fn step(
    store: &dyn Store,
    bus: &dyn EventBus,
    cursor: &mut Option<i64>,
    config: &RelayConfig,
) -> Result<usize, RelayError> {
    let at = match *cursor {
        Some(at) => at,
        None => {
            let at = recover_cursor(bus).await?;
            tracing::info!(cursor = at, "outbox relay resumes");
            *cursor = Some(at);
            at
        }
    };
    let (next, published) = relay_once(store, bus, at, config).await?;
    *cursor = Some(next);
    Ok(published)
}

async fn stop_requested(shutdown: &mut Shutdown) -> bool {
    tokio::select! {
        biased;
        () = shutdown.wait() => true,
        () = std::future::ready(()) => false,
    }
}
