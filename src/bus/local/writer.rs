//! The embedded log's one writer: a thread that drains the bounded request channel and commits
//! whole requests in group transactions (offsets, cursors, messages), then answers the waiters.
//! Woken by a request, it lingers (`write_linger_us`) for more before committing a batch that
//! is not full.
//! It never splits a request across transactions and never assigns an offset twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use super::sql;
use crate::bus::{BusError, CursorUpdate};

/// A message whose partition is chosen and whose headers are encoded.
pub(super) struct Placed {
    pub topic: String,
    pub partition: i32,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<u8>,
    pub timestamp_ms: i64,
}

pub(super) type Placement = Result<Vec<(i32, i64)>, BusError>;

/// One caller's messages, committed all together or not at all. A request without messages is
/// a barrier: it is answered once everything queued before it is committed.
pub(super) struct Request {
    pub messages: Vec<Placed>,
    pub cursor: Option<CursorUpdate>,
    /// `None` for `enqueue`d messages: nobody waits.
    pub reply: Option<oneshot::Sender<Placement>>,
    /// Room in the publish queue, given back when the request is dropped after its commit.
    pub _permit: OwnedSemaphorePermit,
}

/// Whether the last commit failed; `ping` reports it so `/ready` goes red.
#[derive(Default)]
pub(super) struct Health {
    failing: AtomicBool,
}

impl Health {
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }
}

/// Starts the writer thread; it stops once every sender is dropped and the queue is drained.
pub(super) fn spawn(
    conn: Connection,
    requests: mpsc::Receiver<Request>,
    batch_messages_max: usize,
    linger: Duration,
    health: Arc<Health>,
    stop_checkpoints: Arc<std::sync::atomic::AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, BusError> {
    std::thread::Builder::new()
        .name("caracal-bus-writer".into())
        .spawn(move || {
            run(conn, requests, batch_messages_max, linger, &health);
            stop_checkpoints.store(true, std::sync::atomic::Ordering::Release);
        })
        .map_err(|e| BusError::Unavailable(format!("cannot start the log writer: {e}")))
}

type Receiver = mpsc::Receiver<Request>;

fn run(
    mut conn: Connection,
    mut requests: Receiver,
    batch_messages_max: usize,
    linger: Duration,
    health: &Health,
) {
    while let Some(first) = requests.blocking_recv() {
        let mut messages = first.messages.len();
        let mut batch = vec![first];
        let take = |batch: &mut Vec<Request>, messages: &mut usize, requests: &mut Receiver| {
            while *messages < batch_messages_max {
                match requests.try_recv() {
                    Ok(request) => {
                        *messages += request.messages.len();
                        batch.push(request);
                    }
                    Err(_) => break,
                }
            }
        };
        take(&mut batch, &mut messages, &mut requests);
        if messages < batch_messages_max && !linger.is_zero() {
            // Asleep, not waiting on the channel: senders meanwhile wake no one.
            std::thread::sleep(linger);
            take(&mut batch, &mut messages, &mut requests);
        }
        commit(&mut conn, batch, messages, health);
    }
    // Dropping `conn` here checkpoints the WAL when it is the last connection.
}

fn commit(conn: &mut Connection, batch: Vec<Request>, messages: usize, health: &Health) {
    match write(conn, &batch) {
        Ok(results) => {
            health.failing.store(false, Ordering::Relaxed);
            metrics::counter!("caracal_bus_messages_written_total").increment(messages as u64);
            for (request, result) in batch.into_iter().zip(results) {
                match request.reply {
                    Some(reply) => {
                        let _ = reply.send(result);
                    }
                    None => {
                        if let Err(e) = result {
                            tracing::error!(error = %e, "enqueued messages refused by the log");
                        }
                    }
                }
            }
        }
        Err(e) => {
            health.failing.store(true, Ordering::Relaxed);
            let dropped: usize = batch
                .iter()
                .filter(|r| r.reply.is_none())
                .map(|r| r.messages.len())
                .sum();
            metrics::counter!("caracal_bus_messages_dropped_total").increment(dropped as u64);
            tracing::error!(error = %e, messages, dropped, "embedded log commit failed");
            for request in batch {
                if let Some(reply) = request.reply {
                    let _ = reply.send(Err(sql::unavailable(&e)));
                }
            }
        }
    }
}

/// Writes a batch in one transaction. A request whose cursor moved or whose partition is
/// unknown gets its own error and writes nothing; a SQLite failure fails the whole batch.
fn write(conn: &mut Connection, batch: &[Request]) -> Result<Vec<Placement>, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // (topic, partition) -> (next offset on disk, next offset after this batch)
    let mut offsets: HashMap<(&str, i32), (i64, i64)> = HashMap::new();
    let mut results = Vec::with_capacity(batch.len());
    let now_ms = chrono::Utc::now().timestamp_millis();
    for request in batch {
        if let Some(refusal) = check(&tx, request, &mut offsets)? {
            results.push(Err(refusal));
            continue;
        }
        if let Some(cursor) = &request.cursor {
            tx.prepare_cached(
                "INSERT INTO cursors (name, value, updated_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value,
                     updated_at_ms = excluded.updated_at_ms",
            )?
            .execute(params![cursor.name, cursor.next, now_ms])?;
        }
        let mut insert = tx.prepare_cached(
            r#"INSERT INTO messages
                 (topic, "partition", "offset", key, value, headers, timestamp_ms)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"#,
        )?;
        let mut placed = Vec::with_capacity(request.messages.len());
        for m in &request.messages {
            let Some((_, next)) = offsets.get_mut(&(m.topic.as_str(), m.partition)) else {
                // Unreachable: `check` resolved every partition of the request.
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("partition {}/{} not resolved", m.topic, m.partition).into(),
                ));
            };
            let offset = *next;
            insert.execute(params![
                m.topic,
                m.partition,
                offset,
                m.key,
                m.value,
                m.headers,
                m.timestamp_ms
            ])?;
            *next += 1;
            placed.push((m.partition, offset));
        }
        results.push(Ok(placed));
    }
    for ((topic, partition), (start, next)) in &offsets {
        // Established here, relied on by every fetch: offsets only grow, one by one.
        debug_assert!(next >= start, "offsets went back");
        if next > start {
            tx.prepare_cached(
                r#"UPDATE partitions SET next_offset = ?3 WHERE topic = ?1 AND "partition" = ?2"#,
            )?
            .execute(params![topic, partition, next])?;
        }
    }
    tx.commit()?;
    Ok(results)
}

/// Resolves the partitions of `request` and checks its cursor; `Some` refuses the request.
fn check<'a>(
    tx: &rusqlite::Transaction<'_>,
    request: &'a Request,
    offsets: &mut HashMap<(&'a str, i32), (i64, i64)>,
) -> Result<Option<BusError>, rusqlite::Error> {
    for m in &request.messages {
        let key = (m.topic.as_str(), m.partition);
        if offsets.contains_key(&key) {
            continue;
        }
        match sql::next_offset(tx, &m.topic, m.partition)? {
            Some(next) => {
                offsets.insert(key, (next, next));
            }
            None => {
                return Ok(Some(BusError::UnknownPartition {
                    topic: m.topic.clone(),
                    partition: m.partition,
                }))
            }
        }
    }
    if let Some(cursor) = &request.cursor {
        let found = sql::cursor(tx, &cursor.name)?.unwrap_or(0);
        if found != cursor.expected {
            return Ok(Some(BusError::CursorConflict {
                name: cursor.name.clone(),
                expected: cursor.expected,
                found,
            }));
        }
    }
    Ok(None)
}
