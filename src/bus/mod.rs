//! The event bus: the `EventBus` trait every adapter implements (embedded log, Kafka), the
//! message types, the partitioner, the Avro encoding (`avro`) and the outbox relay.
//! Nothing here decides what an event means (`core::events` owns that) or names an adapter's
//! configuration source (`roles` does).

pub mod avro;
pub mod kafka;
pub mod local;
mod message;
mod partitioner;
pub mod relay;

#[cfg(test)]
mod conformance;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use message::{
    admin_message, event_message, header, HEADER_CORRELATION_ID, HEADER_EVENT_ID,
    HEADER_EVENT_TYPE, HEADER_OUTBOX_ID,
};
pub use partitioner::{murmur2, partition_for_key};

/// A message to publish. The bus picks the partition from `key` (Kafka's default partitioner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub topic: String,
    /// The agent tree's root id as UTF-8, so one tree's events stay ordered in one partition.
    pub key: Vec<u8>,
    /// Framed Avro (single-object encoding or Confluent wire format).
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Kafka's CreateTime; kept to the millisecond, as Kafka does.
    pub timestamp: DateTime<Utc>,
}

impl OutgoingMessage {
    /// Key + value + header bytes: what a message-size limit counts.
    pub fn size_bytes(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.key.len() + self.value.len() + headers
    }
}

/// A message read back from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Millisecond precision.
    pub timestamp: DateTime<Utc>,
}

/// A relay cursor to move together with a publish: compare-and-set from `expected` to `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorUpdate {
    pub name: String,
    /// The value the cursor must hold now (0 for a cursor never written).
    pub expected: i64,
    pub next: i64,
}

/// Everything that can go wrong between a producer or consumer and the log.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bounded publish buffer is full: the caller fails closed (503).
    #[error("event bus publish queue is full ({messages_max} messages)")]
    QueueFull { messages_max: usize },
    #[error(
        "a batch of {messages} messages can never fit the {messages_max}-message publish queue"
    )]
    BatchTooLarge {
        messages: usize,
        messages_max: usize,
    },
    #[error("message of {bytes} bytes exceeds the {bytes_max}-byte limit")]
    MessageTooLarge { bytes: usize, bytes_max: usize },
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("topic {topic} has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error(
        "offset {offset} is out of range for {topic}/{partition} (high watermark {high_watermark})"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: i32,
        offset: i64,
        high_watermark: i64,
    },
    /// Another relay moved the cursor first; nothing was written. Reload and go on.
    #[error("cursor {name} holds {found}, not the expected {expected}; nothing was written")]
    CursorConflict {
        name: String,
        expected: i64,
        found: i64,
    },
    /// The deadline passed; the messages may or may not have been written.
    #[error("publish not confirmed within {timeout_ms} ms; it may still be written")]
    Timeout { timeout_ms: u64 },
    #[error("event bus is closed")]
    Closed,
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    #[error("event bus data is inconsistent: {0}")]
    Corrupt(String),
    #[error("cannot encode event: {0}")]
    Encode(#[from] avro::AvroError),
}

/// A partitioned, offset-addressed log with Kafka's shape. No consumer groups: readers own
/// partitions by their own leases and read by offset, as with rskafka.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Appends `messages` and resolves once they are durable; returns each message's
    /// `(partition, offset)` in input order. Messages of one key keep their order.
    async fn publish(&self, messages: Vec<OutgoingMessage>) -> Result<Vec<(i32, i64)>, BusError>;

    /// Puts `messages` into the bounded publish buffer and returns at once. `QueueFull` when
    /// the buffer has no room: the caller must fail closed rather than drop the event.
    fn enqueue(&self, messages: Vec<OutgoingMessage>) -> Result<(), BusError>;

    /// Up to `max_messages` messages of one partition from `offset` on, oldest first. Empty at
    /// the high watermark; `OffsetOutOfRange` beyond it or below the log start.
    async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_messages: usize,
    ) -> Result<Vec<ConsumedMessage>, BusError>;

    /// `fetch`, and the partition's high watermark as of the read (Kafka returns it with the
    /// fetch; the default asks for it after).
    async fn fetch_with_watermark(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_messages: usize,
    ) -> Result<(Vec<ConsumedMessage>, i64), BusError> {
        let messages = self.fetch(topic, partition, offset, max_messages).await?;
        let high_watermark = self.high_watermark(topic, partition).await?;
        Ok((messages, high_watermark))
    }

    /// `fetch_with_watermark` answered at once with what is there, never held by the broker
    /// for more: for a consumer whose other partitions are behind (a wait on an idle partition
    /// would hold up their reads). The default is `fetch_with_watermark` (no wait to skip).
    async fn fetch_now(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_messages: usize,
    ) -> Result<(Vec<ConsumedMessage>, i64), BusError> {
        self.fetch_with_watermark(topic, partition, offset, max_messages)
            .await
    }

    /// The oldest offset still held (retention moves it on Kafka; the embedded log keeps all).
    async fn log_start(&self, topic: &str, partition: i32) -> Result<i64, BusError> {
        self.partition_count(topic).await?;
        let _ = partition;
        Ok(0)
    }

    /// The offset the next message of the partition will get.
    async fn high_watermark(&self, topic: &str, partition: i32) -> Result<i64, BusError>;

    /// How many partitions `topic` has.
    async fn partition_count(&self, topic: &str) -> Result<i32, BusError>;

    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> Result<(), BusError>;

    /// Resolves once everything enqueued before the call is durable.
    async fn flush(&self) -> Result<(), BusError>;

    /// Flushes, then refuses further messages (`Closed`). Call it on shutdown.
    async fn close(&self) -> Result<(), BusError>;

    /// Publishes `messages` and moves `cursor` from `expected` to `next`, both or neither.
    ///
    /// The default, for a log without transactions (Kafka via rskafka): publish one message
    /// at a time, in order, each awaited, and keep no cursor. The relay then finds its place
    /// from the `outbox_id` header of the last message of each partition (everything before
    /// it was acknowledged first), and readers dedupe the rare retried duplicate on
    /// `event_id` (DESIGN.md §5).
    async fn publish_with_cursor(
        &self,
        messages: Vec<OutgoingMessage>,
        cursor: CursorUpdate,
    ) -> Result<Vec<(i32, i64)>, BusError> {
        let _ = cursor;
        let mut placed = Vec::with_capacity(messages.len());
        for message in messages {
            placed.extend(self.publish(vec![message]).await?);
        }
        Ok(placed)
    }

    /// The cursor last committed by `publish_with_cursor`, or `None` when this bus keeps no
    /// cursors (or none was written yet): the relay then recovers it from the topics.
    async fn committed_cursor(&self, name: &str) -> Result<Option<i64>, BusError> {
        let _ = name;
        Ok(None)
    }
}
