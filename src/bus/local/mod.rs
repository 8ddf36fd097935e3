//! The embedded event log: Kafka's shape (topics, partitions, contiguous offsets) in its own
//! SQLite file, `<data_dir>/events.db`, written by one group-commit thread and read by offset.
//! Owns the bounded publish queue and the relay cursors; knows nothing of what events mean.

mod sql;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, Semaphore, TryAcquireError};

use self::writer::{Health, Placed, Placement, Request};
use super::{
    partition_for_key, BusError, ConsumedMessage, CursorUpdate, EventBus, OutgoingMessage,
};

/// File name of the embedded log inside the data directory.
pub const EVENTS_DB_FILE: &str = "events.db";

/// The embedded log's limits (`embedded.eventLog.*`, documented and defaulted there). Every one
/// must be positive.
pub use crate::config::EmbeddedLogLimits as LocalBusLimits;

impl LocalBusLimits {
    fn check(&self) -> Result<(), BusError> {
        let zero = [
            (
                "publish_queue_messages_max",
                self.publish_queue_messages_max,
            ),
            ("write_batch_messages_max", self.write_batch_messages_max),
            ("message_bytes_max", self.message_bytes_max),
            ("fetch_messages_max", self.fetch_messages_max),
            ("publish_timeout_ms", self.publish_timeout_ms as usize),
        ]
        .into_iter()
        .find(|(_, v)| *v == 0);
        if let Some((name, _)) = zero {
            return Err(BusError::Unavailable(format!("{name} must be positive")));
        }
        // The queue is a semaphore of u32 permits.
        if u32::try_from(self.publish_queue_messages_max).is_err() {
            return Err(BusError::Unavailable(
                "publish_queue_messages_max must fit in 32 bits".into(),
            ));
        }
        Ok(())
    }
}

/// The embedded `EventBus`. Share it as `Arc<dyn EventBus>`; call `close` on shutdown.
pub struct LocalBus {
    path: PathBuf,
    limits: LocalBusLimits,
    topics: RwLock<HashMap<String, i32>>,
    /// `None` once closed. Requests are sent under the read lock, so `close` (write lock)
    /// knows that nothing can slip in behind its barrier.
    sender: RwLock<Option<mpsc::Sender<Request>>>,
    /// One permit per message in the queue: the publish queue's bound.
    room: Arc<Semaphore>,
    reader: Arc<Mutex<Connection>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    health: Arc<Health>,
}

impl LocalBus {
    /// Opens (creating if needed) `<data_dir>/events.db`, applies its migrations, creates the
    /// designed topics and starts the writer. Blocking: call it from `spawn_blocking`.
    pub fn open(data_dir: &Path, limits: LocalBusLimits) -> Result<LocalBus, BusError> {
        limits.check()?;
        std::fs::create_dir_all(data_dir).map_err(|e| {
            BusError::Unavailable(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(EVENTS_DB_FILE);
        let mut writer_conn = sql::open_log_writer(&path)?;
        let topics = sql::prepare(&mut writer_conn)?;
        let reader = sql::open_reader(&path)?;
        let (sender, requests) = mpsc::channel(limits.publish_queue_messages_max);
        let health = Arc::new(Health::default());
        let stop_checkpoints = Arc::new(std::sync::atomic::AtomicBool::new(false));
        crate::embedded_db::spawn_checkpointer(
            sql::open_writer(&path)?,
            "events",
            Arc::clone(&stop_checkpoints),
        )
        .map_err(|e| BusError::Unavailable(format!("cannot start the log checkpointer: {e}")))?;
        let thread = writer::spawn(
            writer_conn,
            requests,
            limits.write_batch_messages_max,
            std::time::Duration::from_micros(limits.write_linger_us),
            Arc::clone(&health),
            stop_checkpoints,
        )?;
        Ok(LocalBus {
            path,
            room: Arc::new(Semaphore::new(limits.publish_queue_messages_max)),
            limits,
            topics: RwLock::new(topics),
            sender: RwLock::new(Some(sender)),
            reader: Arc::new(Mutex::new(reader)),
            writer_thread: Mutex::new(Some(thread)),
            health,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn limits(&self) -> &LocalBusLimits {
        &self.limits
    }

    /// Creates a topic unless it exists; returns its partition count (the existing one, if
    /// it was there already: partitions are never re-counted, or keys would move).
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<i32, BusError> {
        if partitions <= 0 {
            return Err(BusError::Unavailable(format!(
                "topic {name}: partitions must be positive"
            )));
        }
        let path = self.path.clone();
        let owned = name.to_owned();
        let count = blocking(move || {
            let mut conn = sql::open_writer(&path)?;
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sql::unavailable)?;
            let count = sql::insert_topic(&tx, &owned, partitions)?;
            tx.commit().map_err(sql::unavailable)?;
            Ok(count)
        })
        .await?;
        self.topics
            .write()
            .map_err(|_| poisoned())?
            .insert(name.to_owned(), count);
        Ok(count)
    }

    fn partitions(&self, topic: &str) -> Result<i32, BusError> {
        self.topics
            .read()
            .map_err(|_| poisoned())?
            .get(topic)
            .copied()
            .ok_or_else(|| BusError::UnknownTopic(topic.to_owned()))
    }

    fn check_partition(&self, topic: &str, partition: i32) -> Result<(), BusError> {
        if (0..self.partitions(topic)?).contains(&partition) {
            Ok(())
        } else {
            Err(BusError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            })
        }
    }

    /// Checks sizes and topics and picks each message's partition.
    fn place(&self, messages: Vec<OutgoingMessage>) -> Result<Vec<Placed>, BusError> {
        let bytes_max = self.limits.message_bytes_max;
        messages
            .into_iter()
            .map(|m| {
                let bytes = m.size_bytes();
                if bytes > bytes_max {
                    return Err(BusError::MessageTooLarge { bytes, bytes_max });
                }
                let partition = partition_for_key(&m.key, self.partitions(&m.topic)?);
                Ok(Placed {
                    headers: sql::encode_headers(&m.headers)?,
                    partition,
                    timestamp_ms: m.timestamp.timestamp_millis(),
                    topic: m.topic,
                    key: m.key,
                    value: m.value,
                })
            })
            .collect()
    }

    fn permits(&self, messages: usize) -> Result<u32, BusError> {
        let messages_max = self.limits.publish_queue_messages_max;
        match u32::try_from(messages.max(1)) {
            Ok(n) if messages <= messages_max => Ok(n),
            _ => Err(BusError::BatchTooLarge {
                messages,
                messages_max,
            }),
        }
    }

    /// Hands a request to the writer. Never blocks: the permit it holds guarantees a slot.
    fn send(&self, request: Request) -> Result<(), BusError> {
        let guard = self.sender.read().map_err(|_| poisoned())?;
        let sender = guard.as_ref().ok_or(BusError::Closed)?;
        sender.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => BusError::QueueFull {
                messages_max: self.limits.publish_queue_messages_max,
            },
            mpsc::error::TrySendError::Closed(_) => writer_gone(),
        })
    }

    /// Queues `messages` (none: a barrier) and waits for their commit, within the deadline.
    async fn submit(
        &self,
        messages: Vec<Placed>,
        cursor: Option<CursorUpdate>,
    ) -> Result<Vec<(i32, i64)>, BusError> {
        let permits = self.permits(messages.len())?;
        let timeout_ms = self.limits.publish_timeout_ms;
        let work = async {
            let permit = Arc::clone(&self.room)
                .acquire_many_owned(permits)
                .await
                .map_err(|_| BusError::Closed)?;
            let (reply, answer) = oneshot::channel::<Placement>();
            self.send(Request {
                messages,
                cursor,
                reply: Some(reply),
                _permit: permit,
            })?;
            answer.await.map_err(|_| writer_gone())?
        };
        tokio::time::timeout(Duration::from_millis(timeout_ms), work)
            .await
            .map_err(|_| BusError::Timeout { timeout_ms })?
    }

    /// Runs `f` on the read connection, on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, BusError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, BusError> + Send + 'static,
    {
        let reader = Arc::clone(&self.reader);
        blocking(move || {
            let mut conn = reader.lock().map_err(|_| poisoned())?;
            f(&mut conn)
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BusError> + Send + 'static,
) -> Result<T, BusError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BusError::Unavailable(format!("event log task failed: {e}")))?
}

fn poisoned() -> BusError {
    BusError::Unavailable("event log lock poisoned by an earlier panic".into())
}

fn writer_gone() -> BusError {
    BusError::Unavailable("the event log writer has stopped".into())
}

#[async_trait]
impl EventBus for LocalBus {
    async fn publish(&self, messages: Vec<OutgoingMessage>) -> Result<Vec<(i32, i64)>, BusError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let placed = self.place(messages)?;
        self.submit(placed, None).await
    }

    fn enqueue(&self, messages: Vec<OutgoingMessage>) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        let placed = self.place(messages)?;
        let messages_max = self.limits.publish_queue_messages_max;
        let permit = Arc::clone(&self.room)
            .try_acquire_many_owned(self.permits(placed.len())?)
            .map_err(|e| match e {
                TryAcquireError::NoPermits => BusError::QueueFull { messages_max },
                TryAcquireError::Closed => BusError::Closed,
            })?;
        self.send(Request {
            messages: placed,
            cursor: None,
            reply: None,
            _permit: permit,
        })
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_messages: usize,
    ) -> Result<Vec<ConsumedMessage>, BusError> {
        self.check_partition(topic, partition)?;
        let max_messages = max_messages.min(self.limits.fetch_messages_max);
        let topic = topic.to_owned();
        self.read(move |conn| sql::fetch(conn, &topic, partition, offset, max_messages))
            .await
    }

    async fn high_watermark(&self, topic: &str, partition: i32) -> Result<i64, BusError> {
        self.check_partition(topic, partition)?;
        let topic = topic.to_owned();
        self.read(move |conn| sql::high_watermark(conn, &topic, partition))
            .await
    }

    async fn partition_count(&self, topic: &str) -> Result<i32, BusError> {
        self.partitions(topic)
    }

    async fn ping(&self) -> Result<(), BusError> {
        if self.sender.read().map_err(|_| poisoned())?.is_none() {
            return Err(BusError::Closed);
        }
        if self.health.is_failing() {
            return Err(BusError::Unavailable(
                "the last commit of the event log failed".into(),
            ));
        }
        self.read(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(sql::unavailable)
        })
        .await
    }

    async fn flush(&self) -> Result<(), BusError> {
        self.submit(Vec::new(), None).await.map(|_| ())
    }

    async fn close(&self) -> Result<(), BusError> {
        let timeout_ms = self.limits.publish_timeout_ms;
        let deadline = Duration::from_millis(timeout_ms);
        let permit = tokio::time::timeout(deadline, Arc::clone(&self.room).acquire_owned())
            .await
            .map_err(|_| BusError::Timeout { timeout_ms })?;
        let Ok(permit) = permit else {
            return Ok(()); // closed already
        };
        let (reply, answer) = oneshot::channel::<Placement>();
        {
            let mut guard = self.sender.write().map_err(|_| poisoned())?;
            let Some(sender) = guard.take() else {
                return Ok(());
            };
            let barrier = Request {
                messages: Vec::new(),
                cursor: None,
                reply: Some(reply),
                _permit: permit,
            };
            sender.try_send(barrier).map_err(|_| writer_gone())?;
            // `sender` drops here: the writer drains the queue, then stops.
        }
        self.room.close();
        tokio::time::timeout(deadline, answer)
            .await
            .map_err(|_| BusError::Timeout { timeout_ms })?
            .map_err(|_| writer_gone())??;
        let thread = self.writer_thread.lock().map_err(|_| poisoned())?.take();
        if let Some(thread) = thread {
            blocking(move || thread.join().map_err(|_| writer_gone())).await?;
        }
        Ok(())
    }

    async fn publish_with_cursor(
        &self,
        messages: Vec<OutgoingMessage>,
        cursor: CursorUpdate,
    ) -> Result<Vec<(i32, i64)>, BusError> {
        let placed = self.place(messages)?;
        self.submit(placed, Some(cursor)).await
    }

    async fn committed_cursor(&self, name: &str) -> Result<Option<i64>, BusError> {
        let name = name.to_owned();
        self.read(move |conn| sql::cursor(conn, &name).map_err(sql::unavailable))
            .await
    }
}
