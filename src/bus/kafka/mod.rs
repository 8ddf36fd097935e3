//! The Kafka `EventBus` over rskafka: records keyed by the agent tree's root and placed by
//! Kafka's murmur2 partitioner, produced through a bounded, batching buffer (`producer`), read
//! by offset with a fetch that waits on the broker. No consumer groups and no idempotent
//! producer: readers own partitions by leases and dedupe on `event_id` (DESIGN.md §5).
//! Owns the client, the partition clients and the topic metadata it caches; knows nothing of
//! what events mean.

mod client;
mod fetch_size;
mod producer;

#[cfg(test)]
pub(crate) mod test_broker;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rskafka::client::error::{Error as KafkaError, ProtocolError, ServerErrorResponse};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::Client;
use rskafka::record::{Record, RecordAndOffset};
use tokio::time::Instant;

use self::fetch_size::FetchSizes;
use self::producer::{Health, Pending, Producer};
use super::{partition_for_key, BusError, ConsumedMessage, EventBus, OutgoingMessage};
use crate::config::{Compression as CompressionSetting, KafkaConfig, KafkaConsumerConfig};

/// The client, its partition clients and the partition counts it has seen.
pub(super) struct Partitions {
    client: Client,
    clients: tokio::sync::Mutex<HashMap<(String, i32), Arc<PartitionClient>>>,
    counts: std::sync::RwLock<HashMap<String, i32>>,
    request_timeout: Duration,
}

impl Partitions {
    /// The partition client of `topic`/`partition`, connected to its leader (rskafka moves it
    /// to the new leader when leadership moves).
    async fn client(&self, topic: &str, partition: i32) -> Result<Arc<PartitionClient>, BusError> {
        let key = (topic.to_owned(), partition);
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&key) {
            return Ok(Arc::clone(c));
        }
        let made = self
            .client
            .partition_client(topic, partition, UnknownTopicHandling::Error);
        let made = tokio::time::timeout(self.request_timeout, made)
            .await
            .map_err(|_| unreachable_within(self.request_timeout))?
            .map_err(|e| map_error(e, topic, partition))?;
        let made = Arc::new(made);
        clients.insert(key, Arc::clone(&made));
        Ok(made)
    }

    /// How many partitions `topic` has: cached, else read from the brokers' metadata.
    async fn count(&self, topic: &str) -> Result<i32, BusError> {
        if let Some(n) = self.cached(topic) {
            return Ok(n);
        }
        self.refresh(topic).await?;
        self.cached(topic)
            .ok_or_else(|| BusError::UnknownTopic(topic.to_owned()))
    }

    /// Reads every topic's partition count from the brokers (`topic` names the error).
    async fn refresh(&self, topic: &str) -> Result<(), BusError> {
        let topics = tokio::time::timeout(self.request_timeout, self.client.list_topics())
            .await
            .map_err(|_| unreachable_within(self.request_timeout))?
            .map_err(|e| map_error(e, topic, -1))?;
        let mut counts = self
            .counts
            .write()
            .map_err(|_| BusError::Unavailable("kafka metadata lock poisoned".into()))?;
        for t in topics {
            let n = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
            if n > 0 {
                counts.insert(t.name, n);
            }
        }
        Ok(())
    }

    fn cached(&self, topic: &str) -> Option<i32> {
        self.counts.read().ok()?.get(topic).copied()
    }

    async fn check(&self, topic: &str, partition: i32) -> Result<(), BusError> {
        if (0..self.count(topic).await?).contains(&partition) {
            Ok(())
        } else {
            Err(BusError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            })
        }
    }
}

fn unreachable_within(timeout: Duration) -> BusError {
    BusError::Unavailable(format!(
        "kafka did not answer within {} ms",
        timeout.as_millis()
    ))
}

/// A Kafka error as the bus reports it: refusals by name, the rest `Unavailable`.
pub(super) fn map_error(e: KafkaError, topic: &str, partition: i32) -> BusError {
    match &e {
        KafkaError::ServerError { protocol_error, .. } => match protocol_error {
            ProtocolError::UnknownTopicOrPartition if partition < 0 => {
                BusError::UnknownTopic(topic.to_owned())
            }
            ProtocolError::UnknownTopicOrPartition => BusError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            },
            ProtocolError::MessageTooLarge
            | ProtocolError::RecordListTooLarge
            | ProtocolError::CorruptMessage
            | ProtocolError::InvalidRecord
            | ProtocolError::TopicAuthorizationFailed => {
                BusError::Corrupt(format!("{topic}/{partition}: {}", client::one_line(&e)))
            }
            _ => BusError::Unavailable(format!("{topic}/{partition}: {}", client::one_line(&e))),
        },
        _ => BusError::Unavailable(format!("{topic}/{partition}: {}", client::one_line(&e))),
    }
}

fn compression(setting: CompressionSetting) -> Compression {
    match setting {
        CompressionSetting::Uncompressed => Compression::NoCompression,
        CompressionSetting::Gzip => Compression::Gzip,
        CompressionSetting::Snappy => Compression::Snappy,
        CompressionSetting::Lz4 => Compression::Lz4,
        CompressionSetting::Zstd => Compression::Zstd,
    }
}

/// The Kafka `EventBus`. Share it as `Arc<dyn EventBus>`; call `close` on shutdown.
pub struct KafkaBus {
    partitions: Arc<Partitions>,
    producer: Producer,
    consumer: KafkaConsumerConfig,
    health: Arc<Health>,
    message_bytes_max: usize,
    /// Each partition's high watermark in its last fetch answer: below it a read does not wait.
    watermarks: std::sync::Mutex<HashMap<(String, i32), i64>>,
    /// The bytes each partition's next fetch request asks for.
    fetch_sizes: FetchSizes,
    /// Per partition, what the last read fetched beyond its `max.poll.records` (at most one
    /// read's `maxPartitionFetchBytes`): handed out by the next read from that offset, as the
    /// Java consumer does, instead of being fetched again.
    surplus: std::sync::Mutex<HashMap<(String, i32), Vec<ConsumedMessage>>>,
    probe: tokio::task::JoinHandle<()>,
}

impl KafkaBus {
    /// Connects to `config.brokers` (one metadata round trip, within the request timeout)
    /// and starts the broker health probe.
    pub async fn connect(config: &KafkaConfig) -> Result<KafkaBus, BusError> {
        let client = client::connect(config).await?;
        let request_timeout = Duration::from_millis(config.producer.request_timeout_ms);
        let partitions = Arc::new(Partitions {
            client,
            clients: tokio::sync::Mutex::new(HashMap::new()),
            counts: std::sync::RwLock::new(HashMap::new()),
            request_timeout,
        });
        let health = Arc::new(Health::default());
        let producer = Producer::new(
            config.producer.clone(),
            compression(config.compression),
            Arc::clone(&partitions),
            Arc::clone(&health),
        );
        // Every topic's partition count, so `enqueue` can place records without a round trip.
        partitions.refresh("(metadata)").await?;
        let every = Duration::from_millis(config.producer.broker_check_interval_ms);
        let probe = tokio::spawn(probe(Arc::clone(&partitions), Arc::clone(&health), every));
        Ok(KafkaBus {
            partitions,
            producer,
            consumer: config.consumer.clone(),
            health,
            message_bytes_max: config.producer.max_request_size,
            watermarks: std::sync::Mutex::new(HashMap::new()),
            fetch_sizes: FetchSizes::new(config.consumer.fetch_request_max_bytes),
            surplus: std::sync::Mutex::new(HashMap::new()),
            probe,
        })
    }

    /// Checks sizes and topics; each message's partition and record.
    async fn place(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<(String, i32, Record)>, BusError> {
        let mut placed = Vec::with_capacity(messages.len());
        for m in messages {
            let count = self.partitions.count(&m.topic).await?;
            placed.push(self.record(m, count)?);
        }
        Ok(placed)
    }

    /// The record of `m` and its partition among `count`.
    fn record(&self, m: OutgoingMessage, count: i32) -> Result<(String, i32, Record), BusError> {
        let bytes = m.size_bytes();
        if bytes > self.message_bytes_max {
            return Err(BusError::MessageTooLarge {
                bytes,
                bytes_max: self.message_bytes_max,
            });
        }
        let partition = partition_for_key(&m.key, count);
        let record = Record {
            key: Some(m.key),
            value: Some(m.value),
            headers: m.headers.into_iter().collect::<BTreeMap<_, _>>(),
            timestamp: m.timestamp,
        };
        Ok((m.topic, partition, record))
    }

    /// Buffers `placed` records; their answers, in order, when asked for.
    async fn submit(
        &self,
        placed: Vec<(String, i32, Record)>,
        wait: bool,
    ) -> Result<Vec<tokio::sync::oneshot::Receiver<producer::Delivery>>, BusError> {
        let sizes: Vec<usize> = placed
            .iter()
            .map(|(_, _, r)| r.approximate_size())
            .collect();
        let room = self.producer.room(&sizes, wait).await?;
        let deadline = Instant::now() + self.producer.delivery_timeout();
        let mut answers = Vec::new();
        for ((topic, partition, record), room) in placed.into_iter().zip(room) {
            let (reply, answer) = tokio::sync::oneshot::channel();
            answers.push(answer);
            let pending = Pending {
                record,
                reply: wait.then_some(reply),
                deadline,
                _room: room,
            };
            self.producer.send(&topic, partition, pending)?;
        }
        Ok(answers)
    }

    fn records(topic: &str, partition: i32, got: Vec<RecordAndOffset>) -> Vec<ConsumedMessage> {
        got.into_iter()
            .map(|r| ConsumedMessage {
                topic: topic.to_owned(),
                partition,
                offset: r.offset,
                key: r.record.key.unwrap_or_default(),
                value: r.record.value.unwrap_or_default(),
                headers: r.record.headers.into_iter().collect(),
                timestamp: r.record.timestamp,
            })
            .collect()
    }

    async fn offset(&self, topic: &str, partition: i32, at: OffsetAt) -> Result<i64, BusError> {
        self.partitions.check(topic, partition).await?;
        let client = self.partitions.client(topic, partition).await?;
        let timeout = self.partitions.request_timeout;
        tokio::time::timeout(timeout, client.get_offset(at))
            .await
            .map_err(|_| unreachable_within(timeout))?
            .map_err(|e| map_error(e, topic, partition))
    }

    /// Up to `max_messages` from `offset`, with the high watermark. Held by the broker until
    /// `min_bytes` are there or `fetch.max.wait.ms` passed only when `wait` and the partition
    /// is caught up (`offset` at the high watermark of its last answer): a reader that is
    /// behind is answered at once with what is there.
    async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_messages: usize,
        wait: Option<usize>,
    ) -> Result<(Vec<ConsumedMessage>, i64), BusError> {
        self.partitions.check(topic, partition).await?;
        let c = &self.consumer;
        let limit = max_messages.min(c.max_poll_records);
        if let Some(kept) = self.take_surplus(topic, partition, offset, limit) {
            return Ok((kept, self.known_watermark(topic, partition)));
        }
        let client = self.partitions.client(topic, partition).await?;
        if offset < 0 {
            let high_watermark = self.high_watermark(topic, partition).await?;
            return Err(out_of_range(topic, partition, offset, high_watermark));
        }
        let (got, high_watermark) = self
            .first_fetch(&client, topic, partition, offset, wait)
            .await?;
        let max = i32::try_from(c.max_partition_fetch_bytes).unwrap_or(i32::MAX);
        let mut messages = Self::records(topic, partition, got);
        let high_watermark = self
            .read_on(&client, &mut messages, limit, max, high_watermark)
            .await;
        let rest = messages.split_off(limit.min(messages.len()));
        self.keep_surplus(topic, partition, rest);
        self.remember_watermark(topic, partition, high_watermark);
        Ok((messages, high_watermark))
    }

    /// The read's first request, asking for the partition's fetch size; it waits on the broker
    /// only when `wait` and the partition is caught up. An offset the broker does not hold is
    /// `OffsetOutOfRange` with the high watermark.
    async fn first_fetch(
        &self,
        client: &PartitionClient,
        topic: &str,
        partition: i32,
        offset: i64,
        wait: Option<usize>,
    ) -> Result<(Vec<RecordAndOffset>, i64), BusError> {
        let c = &self.consumer;
        let behind = self.known_watermark(topic, partition) > offset;
        let (min_bytes, wait_ms) = match wait {
            Some(min_bytes) if !behind => (min_bytes, c.fetch_max_wait_ms),
            _ => (1, 0),
        };
        let min = i32::try_from(min_bytes).unwrap_or(i32::MAX);
        let max = i32::try_from(c.max_partition_fetch_bytes).unwrap_or(i32::MAX);
        let ask = self.fetch_sizes.ask(topic, partition).min(max);
        let timeout = self.partitions.request_timeout + Duration::from_millis(wait_ms);
        let wait_ms = i32::try_from(wait_ms).unwrap_or(i32::MAX);
        let started = Instant::now();
        let fetched = tokio::time::timeout(
            timeout,
            client.fetch_records(offset, min..ask.max(min + 1), wait_ms),
        )
        .await
        .map_err(|_| {
            self.fetch_sizes.timed_out(topic, partition);
            unreachable_within(timeout)
        })?;
        if matches!(&fetched, Ok((got, _)) if !got.is_empty()) {
            self.fetch_sizes
                .answered(topic, partition, started.elapsed(), timeout);
        }
        let (got, high_watermark) = match fetched {
            Ok(got) => got,
            Err(KafkaError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                response,
                ..
            }) => {
                let high_watermark = match response {
                    Some(ServerErrorResponse::PartitionFetchState { high_watermark, .. }) => {
                        high_watermark
                    }
                    _ => self.high_watermark(topic, partition).await?,
                };
                return Err(out_of_range(topic, partition, offset, high_watermark));
            }
            Err(e) => return Err(map_error(e, topic, partition)),
        };
        if got.is_empty() && offset > high_watermark {
            return Err(out_of_range(topic, partition, offset, high_watermark));
        }
        Ok((got, high_watermark))
    }

    /// A broker may answer a fetch with one record batch (tansu does), and each request asks
    /// for at most the partition's fetch size: while the high watermark says more is there,
    /// read on without waiting until `limit` messages or `max_bytes` are read (each answer
    /// holds at least one message, so at most `limit` requests; an error ends the read with
    /// what it has). Returns the latest high watermark.
    async fn read_on(
        &self,
        client: &PartitionClient,
        messages: &mut Vec<ConsumedMessage>,
        limit: usize,
        max_bytes: i32,
        mut high_watermark: i64,
    ) -> i64 {
        let timeout = self.partitions.request_timeout;
        let budget = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let mut bytes: usize = messages.iter().map(message_bytes).sum();
        while let Some(last) = messages.last() {
            let next = last.offset + 1;
            if messages.len() >= limit || next >= high_watermark || bytes >= budget {
                break;
            }
            let (topic, partition) = (last.topic.clone(), last.partition);
            let room = i32::try_from(budget - bytes).unwrap_or(i32::MAX).max(1);
            let ask = room.min(self.fetch_sizes.ask(&topic, partition));
            let started = Instant::now();
            let more = tokio::time::timeout(
                timeout,
                client.fetch_records(next, 1..ask.saturating_add(1), 0),
            );
            match more.await {
                Ok(Ok((got, hw))) if !got.is_empty() => {
                    let elapsed = started.elapsed();
                    self.fetch_sizes
                        .answered(&topic, partition, elapsed, timeout);
                    high_watermark = hw;
                    let got = Self::records(&topic, partition, got);
                    bytes = bytes.saturating_add(got.iter().map(message_bytes).sum());
                    messages.extend(got);
                }
                Err(_) => {
                    self.fetch_sizes.timed_out(&topic, partition);
                    break;
                }
                _ => break,
            }
        }
        high_watermark
    }

    /// Up to `limit` kept messages when the partition's surplus starts at `offset` (the rest
    /// stays kept); a surplus from another offset is dropped (the reader moved).
    fn take_surplus(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limit: usize,
    ) -> Option<Vec<ConsumedMessage>> {
        let mut surplus = self.surplus.lock().ok()?;
        let key = (topic.to_owned(), partition);
        let mut kept = surplus.remove(&key)?;
        if kept.first().map(|m| m.offset) != Some(offset) {
            return None;
        }
        let rest = kept.split_off(limit.max(1).min(kept.len()));
        if !rest.is_empty() {
            surplus.insert(key, rest);
        }
        Some(kept)
    }

    fn keep_surplus(&self, topic: &str, partition: i32, rest: Vec<ConsumedMessage>) {
        if let Ok(mut surplus) = self.surplus.lock() {
            let key = (topic.to_owned(), partition);
            if rest.is_empty() {
                surplus.remove(&key);
            } else {
                surplus.insert(key, rest);
            }
        }
    }

    /// The high watermark of `topic`/`partition` in its last fetch answer (0 before any).
    fn known_watermark(&self, topic: &str, partition: i32) -> i64 {
        self.watermarks
            .lock()
            .ok()
            .and_then(|w| w.get(&(topic.to_owned(), partition)).copied())
            .unwrap_or(0)
    }

    fn remember_watermark(&self, topic: &str, partition: i32, high_watermark: i64) {
        if let Ok(mut w) = self.watermarks.lock() {
            w.insert((topic.to_owned(), partition), high_watermark);
        }
    }
}

fn out_of_range(topic: &str, partition: i32, offset: i64, high_watermark: i64) -> BusError {
    BusError::OffsetOutOfRange {
        topic: topic.to_owned(),
        partition,
        offset,
        high_watermark,
    }
}

/// A message's key, value and header bytes: what the fetch byte budget counts.
fn message_bytes(m: &ConsumedMessage) -> usize {
    let headers: usize = m.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    m.key.len() + m.value.len() + headers
}

impl Drop for KafkaBus {
    fn drop(&mut self) {
        self.probe.abort();
    }
}

/// Asks the brokers for metadata every `every`; marks them down (new events refused) or up.
async fn probe(partitions: Arc<Partitions>, health: Arc<Health>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let asked = tokio::time::timeout(every.max(Duration::from_millis(100)), async {
            partitions.client.list_topics().await
        })
        .await;
        match asked {
            Ok(Ok(_)) => health.up(),
            Ok(Err(e)) => health.down(&client::one_line(&e)),
            Err(_) => health.down("no metadata answer from the brokers"),
        }
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    async fn publish(&self, messages: Vec<OutgoingMessage>) -> Result<Vec<(i32, i64)>, BusError> {
        let placed = self.place(messages).await?;
        let partitions: Vec<i32> = placed.iter().map(|(_, p, _)| *p).collect();
        let answers = self.submit(placed, true).await?;
        let mut out = Vec::with_capacity(answers.len());
        for (partition, answer) in partitions.into_iter().zip(answers) {
            let offset = answer.await.map_err(|_| BusError::Closed)??;
            out.push((partition, offset));
        }
        Ok(out)
    }

    fn enqueue(&self, messages: Vec<OutgoingMessage>) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        if let Some(reason) = self.health.failure() {
            return Err(BusError::Unavailable(format!(
                "kafka is out of reach: {reason}"
            )));
        }
        // Placement needs the topics' partition counts: read at connect, and on first use.
        let mut placed = Vec::with_capacity(messages.len());
        for m in messages {
            let count = self
                .partitions
                .cached(&m.topic)
                .ok_or_else(|| BusError::UnknownTopic(m.topic.clone()))?;
            placed.push(self.record(m, count)?);
        }
        let sizes: Vec<usize> = placed
            .iter()
            .map(|(_, _, r)| r.approximate_size())
            .collect();
        let room = futures_util::FutureExt::now_or_never(self.producer.room(&sizes, false))
            .unwrap_or(Err(BusError::Closed))?;
        let deadline = Instant::now() + self.producer.delivery_timeout();
        for ((topic, partition, record), room) in placed.into_iter().zip(room) {
            let pending = Pending {
                record,
                reply: None,
                deadline,
                _room: room,
            };
            self.producer.send(&topic, partition, pending)?;
        }
        Ok(())
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_messages: usize,
    ) -> Result<Vec<ConsumedMessage>, BusError> {
        // Answered as soon as anything is there: one-off reads (the relay's tail, the
        // invalidation tail, the CLI) wait for no batch to fill.
        Ok(self
            .read(topic, partition, offset, max_messages, Some(1))
            .await?
            .0)
    }

    async fn fetch_with_watermark(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_messages: usize,
    ) -> Result<(Vec<ConsumedMessage>, i64), BusError> {
        let min_bytes = self.consumer.fetch_min_bytes;
        self.read(topic, partition, offset, max_messages, Some(min_bytes))
            .await
    }

    async fn fetch_now(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_messages: usize,
    ) -> Result<(Vec<ConsumedMessage>, i64), BusError> {
        self.read(topic, partition, offset, max_messages, None)
            .await
    }

    async fn high_watermark(&self, topic: &str, partition: i32) -> Result<i64, BusError> {
        self.offset(topic, partition, OffsetAt::Latest).await
    }

    async fn log_start(&self, topic: &str, partition: i32) -> Result<i64, BusError> {
        self.offset(topic, partition, OffsetAt::Earliest).await
    }

    async fn partition_count(&self, topic: &str) -> Result<i32, BusError> {
        self.partitions.count(topic).await
    }

    async fn ping(&self) -> Result<(), BusError> {
        let timeout = self.partitions.request_timeout;
        tokio::time::timeout(timeout, self.partitions.client.list_topics())
            .await
            .map_err(|_| unreachable_within(timeout))?
            .map(|_| ())
            .map_err(|e| BusError::Unavailable(client::one_line(&e)))
    }

    async fn flush(&self) -> Result<(), BusError> {
        self.producer.flush().await
    }

    async fn close(&self) -> Result<(), BusError> {
        self.producer.close();
        self.producer.flush().await
    }
}
