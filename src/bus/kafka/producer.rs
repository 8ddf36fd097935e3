//! The Kafka producer: a bounded buffer (records and bytes, `buffer.memory`) in front of one
//! sender task per partition that batches (`batch.size`, `linger.ms`), compresses, produces
//! with acks from all in-sync replicas, and retries until each record's delivery deadline.
//! One produce in flight per partition keeps one key's records in order. It never decides
//! where a record goes (the bus does) and never drops a record before its deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rskafka::client::partition::{Compression, PartitionClient};
use rskafka::record::Record;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;

use super::{map_error, Partitions};
use crate::bus::BusError;
use crate::config::KafkaProducerConfig;

/// Where a record landed, or why it did not.
pub(super) type Delivery = Result<i64, BusError>;

/// One record in the buffer, holding its share of the buffer until it is answered.
pub(super) struct Pending {
    pub record: Record,
    pub reply: Option<oneshot::Sender<Delivery>>,
    pub deadline: Instant,
    pub _room: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

enum Item {
    Record(Pending),
    /// Answered once every record queued before it is acknowledged or given up.
    Barrier(oneshot::Sender<()>),
}

/// Whether the brokers answered the last request; `enqueue` refuses while they do not, so
/// the gateway answers 503 instead of forwarding calls it could not record.
#[derive(Default)]
pub(super) struct Health {
    down: AtomicBool,
    reason: Mutex<String>,
}

impl Health {
    pub fn up(&self) {
        self.down.store(false, Ordering::Release);
    }

    pub fn down(&self, reason: &str) {
        if let Ok(mut r) = self.reason.lock() {
            reason.clone_into(&mut r);
        }
        self.down.store(true, Ordering::Release);
    }

    /// The reason the brokers are out of reach, if they are.
    pub fn failure(&self) -> Option<String> {
        if !self.down.load(Ordering::Acquire) {
            return None;
        }
        Some(self.reason.lock().map(|r| r.clone()).unwrap_or_default())
    }
}

/// The buffer and the per-partition senders.
pub(super) struct Producer {
    config: KafkaProducerConfig,
    compression: Compression,
    messages: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    senders: Mutex<HashMap<(String, i32), mpsc::UnboundedSender<Item>>>,
    partitions: Arc<Partitions>,
    health: Arc<Health>,
    closed: AtomicBool,
}

impl Producer {
    pub fn new(
        config: KafkaProducerConfig,
        compression: Compression,
        partitions: Arc<Partitions>,
        health: Arc<Health>,
    ) -> Producer {
        Producer {
            messages: Arc::new(Semaphore::new(config.buffer_messages)),
            bytes: Arc::new(Semaphore::new(config.buffer_memory)),
            config,
            compression,
            senders: Mutex::new(HashMap::new()),
            partitions,
            health,
            closed: AtomicBool::new(false),
        }
    }

    pub fn delivery_timeout(&self) -> Duration {
        Duration::from_millis(self.config.delivery_timeout_ms)
    }

    fn full(&self) -> BusError {
        BusError::QueueFull {
            messages_max: self.config.buffer_messages,
        }
    }

    /// Room for records of `sizes` bytes, at once (`wait` false) or within the deadline.
    pub async fn room(
        &self,
        sizes: &[usize],
        wait: bool,
    ) -> Result<Vec<(OwnedSemaphorePermit, OwnedSemaphorePermit)>, BusError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        let mut room = Vec::with_capacity(sizes.len());
        let deadline = Instant::now() + self.delivery_timeout();
        for &size in sizes {
            let bytes = u32::try_from(size.max(1)).map_err(|_| self.full())?;
            let (m, b) = (Arc::clone(&self.messages), Arc::clone(&self.bytes));
            let permits = if wait {
                let got = tokio::time::timeout_at(deadline, async {
                    Ok::<_, tokio::sync::AcquireError>((
                        m.acquire_owned().await?,
                        b.acquire_many_owned(bytes).await?,
                    ))
                })
                .await
                .map_err(|_| self.full())?;
                got.map_err(|_| BusError::Closed)?
            } else {
                let refuse = |e: TryAcquireError| match e {
                    TryAcquireError::NoPermits => self.full(),
                    TryAcquireError::Closed => BusError::Closed,
                };
                (
                    m.try_acquire_owned().map_err(refuse)?,
                    b.try_acquire_many_owned(bytes).map_err(refuse)?,
                )
            };
            room.push(permits);
        }
        Ok(room)
    }

    /// Hands a record to its partition's sender (started on first use).
    pub fn send(&self, topic: &str, partition: i32, pending: Pending) -> Result<(), BusError> {
        self.sender(topic, partition)?
            .send(Item::Record(pending))
            .map_err(|_| BusError::Closed)
    }

    fn sender(&self, topic: &str, partition: i32) -> Result<mpsc::UnboundedSender<Item>, BusError> {
        let mut senders = self
            .senders
            .lock()
            .map_err(|_| BusError::Unavailable("kafka producer lock poisoned".into()))?;
        let key = (topic.to_owned(), partition);
        if let Some(sender) = senders.get(&key) {
            return Ok(sender.clone());
        }
        let (sender, items) = mpsc::unbounded_channel();
        let task = PartitionSender {
            topic: topic.to_owned(),
            partition,
            config: self.config.clone(),
            compression: self.compression,
            partitions: Arc::clone(&self.partitions),
            health: Arc::clone(&self.health),
        };
        tokio::spawn(task.run(items));
        senders.insert(key, sender.clone());
        Ok(sender)
    }

    /// Waits until everything queued before the call is acknowledged or given up.
    pub async fn flush(&self) -> Result<(), BusError> {
        let senders: Vec<_> = match self.senders.lock() {
            Ok(s) => s.values().cloned().collect(),
            Err(_) => return Err(BusError::Unavailable("kafka producer lock poisoned".into())),
        };
        let mut waits = Vec::new();
        for sender in senders {
            let (done, wait) = oneshot::channel();
            if sender.send(Item::Barrier(done)).is_ok() {
                waits.push(wait);
            }
        }
        let deadline = self.delivery_timeout() + Duration::from_millis(self.config.linger_ms);
        let timeout_ms = deadline.as_millis() as u64;
        tokio::time::timeout(deadline, futures_util::future::join_all(waits))
            .await
            .map_err(|_| BusError::Timeout { timeout_ms })?;
        Ok(())
    }

    /// Refuses new records; what is queued still goes out.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// The task that owns one partition's queue.
struct PartitionSender {
    topic: String,
    partition: i32,
    config: KafkaProducerConfig,
    compression: Compression,
    partitions: Arc<Partitions>,
    health: Arc<Health>,
}

impl PartitionSender {
    async fn run(self, mut items: mpsc::UnboundedReceiver<Item>) {
        let mut barriers = Vec::new();
        while let Some(first) = items.recv().await {
            let mut batch = Vec::new();
            match first {
                Item::Barrier(done) => {
                    let _ = done.send(());
                    continue;
                }
                Item::Record(p) => batch.push(p),
            }
            self.linger(&mut items, &mut batch, &mut barriers).await;
            self.deliver(batch).await;
            for done in barriers.drain(..) {
                let _ = done.send(());
            }
        }
    }

    /// Adds records to `batch` until `batch.size` bytes or `linger.ms` (a barrier ends it).
    async fn linger(
        &self,
        items: &mut mpsc::UnboundedReceiver<Item>,
        batch: &mut Vec<Pending>,
        barriers: &mut Vec<oneshot::Sender<()>>,
    ) {
        let until = Instant::now() + Duration::from_millis(self.config.linger_ms);
        let mut bytes: usize = batch.iter().map(|p| p.record.approximate_size()).sum();
        while bytes < self.config.batch_size {
            let next = tokio::select! {
                item = items.recv() => item,
                () = tokio::time::sleep_until(until) => None,
            };
            match next {
                Some(Item::Record(p)) => {
                    bytes += p.record.approximate_size();
                    batch.push(p);
                }
                Some(Item::Barrier(done)) => {
                    barriers.push(done);
                    return;
                }
                None => return,
            }
        }
    }

    /// Produces `batch` until it is acknowledged, answering each record; a record whose
    /// deadline passes is answered `Timeout` and left out of the next attempt.
    async fn deliver(&self, mut batch: Vec<Pending>) {
        let mut pause = Duration::from_millis(self.config.retry_backoff_ms);
        let request_timeout = Duration::from_millis(self.config.request_timeout_ms);
        loop {
            let now = Instant::now();
            batch.retain_mut(|p| {
                if p.deadline > now {
                    return true;
                }
                let timeout_ms = self.config.delivery_timeout_ms;
                tracing::warn!(topic = %self.topic, partition = self.partition, "kafka record not acknowledged before its delivery deadline");
                metrics::counter!("caracal_bus_publish_failures_total", "reason" => "timeout")
                    .increment(1);
                if let Some(reply) = p.reply.take() {
                    let _ = reply.send(Err(BusError::Timeout { timeout_ms }));
                }
                false
            });
            if batch.is_empty() {
                return;
            }
            let records: Vec<Record> = batch.iter().map(|p| p.record.clone()).collect();
            let attempt = tokio::time::timeout(request_timeout, self.produce(records)).await;
            match attempt {
                Ok(Ok(offsets)) => {
                    self.health.up();
                    for (p, offset) in batch.iter_mut().zip(offsets) {
                        if let Some(reply) = p.reply.take() {
                            let _ = reply.send(Ok(offset));
                        }
                    }
                    return;
                }
                Ok(Err(e)) if !retriable(&e) => {
                    tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "kafka refused a batch");
                    metrics::counter!("caracal_bus_publish_failures_total", "reason" => "refused")
                        .increment(batch.len() as u64);
                    for p in &mut batch {
                        if let Some(reply) = p.reply.take() {
                            let _ = reply.send(Err(BusError::Unavailable(e.to_string())));
                        }
                    }
                    return;
                }
                Ok(Err(e)) => self.health.down(&e.to_string()),
                Err(_) => self.health.down("a produce request timed out"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    async fn produce(&self, records: Vec<Record>) -> Result<Vec<i64>, BusError> {
        let client: Arc<PartitionClient> =
            self.partitions.client(&self.topic, self.partition).await?;
        client
            .produce(records, self.compression)
            .await
            .map_err(|e| map_error(e, &self.topic, self.partition))
    }
}

/// Whether a produce failure may pass by itself (the broker out of reach or moving leaders),
/// rather than be a refusal of these records.
fn retriable(e: &BusError) -> bool {
    matches!(e, BusError::Unavailable(_) | BusError::Timeout { .. })
}
