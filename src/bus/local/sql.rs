//! The embedded log's SQLite file: schema and migrations, topics, the header codec and the
//! read queries (fetch by offset, high watermark, cursors). Writes of messages are
//! `writer.rs`'s alone; nothing here knows about queues or waiters.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::bus::{BusError, ConsumedMessage};
use crate::core::events::TOPICS;

/// How long a connection waits for another one (a CLI beside the server) to release the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page cache of the writer connection (SQLite's default is 2 MiB). Measured: 32 MiB published
/// no faster than 8 MiB (200 000 events: 1.6–2.2 s either way) but filled up in a running
/// gateway, which then used 58 MB of RSS at 5 000 requests/s instead of 32 MB.
const WRITER_CACHE_KIB: i64 = 8 * 1024;

/// The log's own migrations, in order; each runs once, recorded in `bus_migrations`.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "init",
    r#"
CREATE TABLE topics (
    name          TEXT PRIMARY KEY,
    partitions    INTEGER NOT NULL CHECK (partitions > 0),
    created_at_ms INTEGER NOT NULL
);
-- The next offset of every partition: the high watermark. Offsets never go back, even if
-- old messages are one day deleted by retention.
CREATE TABLE partitions (
    topic       TEXT NOT NULL REFERENCES topics (name),
    "partition" INTEGER NOT NULL,
    next_offset INTEGER NOT NULL CHECK (next_offset >= 0),
    PRIMARY KEY (topic, "partition")
) WITHOUT ROWID;
-- Kafka's record shape; offsets are contiguous from 0 within a partition.
CREATE TABLE messages (
    topic        TEXT NOT NULL,
    "partition"  INTEGER NOT NULL,
    "offset"     INTEGER NOT NULL,
    key          BLOB NOT NULL,
    value        BLOB NOT NULL,
    headers      BLOB NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, "partition", "offset")
);
-- Relay cursors, written in the same transaction as the messages they account for.
CREATE TABLE cursors (
    name          TEXT PRIMARY KEY,
    value         INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
"#,
)];

pub(super) fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Corrupt(format!("{what}: {e}"))
}

/// Opens a read-write connection in WAL mode with `synchronous=NORMAL`: a commit survives a
/// crash of the process; a power loss may take the last commits back (SQLite's WAL contract).
pub(super) fn open_writer(path: &Path) -> Result<Connection, BusError> {
    let conn = Connection::open(path).map_err(unavailable)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(unavailable)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(unavailable)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(unavailable)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(unavailable)?;
    // Checkpoints (each one syncs the file) run on the checkpointer thread; only the log's
    // writer adds one of its own when the WAL is long (`open_log_writer`).
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
        .map_err(unavailable)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(unavailable)?;
    crate::embedded_db::stable_plans(&conn).map_err(unavailable)?;
    Ok(conn)
}

/// WAL frames (pages) after which the log's writer checkpoints the WAL itself, right after a
/// commit, so that its next transaction starts the WAL over from its beginning. The checkpointer
/// thread's passive checkpoints alone never let it start over under steady load (the writer
/// always commits new frames while one runs): the WAL then grew without bound (94 MB after 9 s
/// at 1 000 requests/s) and every commit appended new pages to a growing file. 1 000 frames is
/// SQLite's own default, about 4 MiB.
pub(super) const WAL_RESTART_FRAMES: i64 = 1_000;

/// Bytes a WAL file is cut back to when it starts over (it is otherwise kept at its largest
/// size, for reuse): a WAL left large by an earlier version or a long reader shrinks again.
const WAL_KEPT_BYTES: i64 = 16 * 1024 * 1024;

/// The connection of the log's one writer thread: `open_writer`, plus a checkpoint of its own
/// once the WAL holds `WAL_RESTART_FRAMES` frames (SQLite's automatic checkpoint, passive: it
/// copies what the checkpointer thread has not yet copied and syncs, on the writer thread).
pub(super) fn open_log_writer(path: &Path) -> Result<Connection, BusError> {
    let conn = open_writer(path)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_RESTART_FRAMES)
        .map_err(unavailable)?;
    conn.pragma_update(None, "journal_size_limit", WAL_KEPT_BYTES)
        .map_err(unavailable)?;
    Ok(conn)
}

/// A read-only connection for fetches; WAL lets it read while the writer commits.
pub(super) fn open_reader(path: &Path) -> Result<Connection, BusError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(unavailable)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(unavailable)?;
    crate::embedded_db::stable_plans(&conn).map_err(unavailable)?;
    Ok(conn)
}

/// Applies pending migrations and creates `TOPICS` that are missing; returns every topic.
pub(super) fn prepare(conn: &mut Connection) -> Result<HashMap<String, i32>, BusError> {
    crate::embedded_db::migrate(conn, "bus_migrations", MIGRATIONS).map_err(unavailable)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    for spec in TOPICS {
        let existing = insert_topic(&tx, spec.name, spec.partitions)?;
        if existing != spec.partitions {
            // Changing the count would move keys between partitions: keep what is on disk.
            tracing::warn!(
                topic = spec.name,
                on_disk = existing,
                designed = spec.partitions,
                "embedded log keeps the partition count it was created with"
            );
        }
    }
    let topics = load_topics(&tx)?;
    tx.commit().map_err(unavailable)?;
    Ok(topics)
}

/// Creates a topic with `partitions` partitions unless it exists; returns its partition count.
pub(super) fn insert_topic(
    tx: &rusqlite::Transaction<'_>,
    name: &str,
    partitions: i32,
) -> Result<i32, BusError> {
    let existing: Option<i32> = tx
        .query_row(
            "SELECT partitions FROM topics WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()
        .map_err(unavailable)?;
    if let Some(existing) = existing {
        return Ok(existing);
    }
    tx.execute(
        "INSERT INTO topics (name, partitions, created_at_ms) VALUES (?1, ?2, ?3)",
        params![name, partitions, Utc::now().timestamp_millis()],
    )
    .map_err(unavailable)?;
    for partition in 0..partitions {
        tx.execute(
            r#"INSERT INTO partitions (topic, "partition", next_offset) VALUES (?1, ?2, 0)"#,
            params![name, partition],
        )
        .map_err(unavailable)?;
    }
    Ok(partitions)
}

fn load_topics(conn: &Connection) -> Result<HashMap<String, i32>, BusError> {
    let mut stmt = conn
        .prepare("SELECT name, partitions FROM topics")
        .map_err(unavailable)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i32>(1)?)))
        .map_err(unavailable)?;
    rows.collect::<Result<_, _>>().map_err(unavailable)
}

/// Headers as stored: for each, a big-endian u32 length and the name, then the same for the value.
pub(super) fn encode_headers(headers: &[(String, Vec<u8>)]) -> Result<Vec<u8>, BusError> {
    let mut out = Vec::new();
    for (name, value) in headers {
        for part in [name.as_bytes(), value.as_slice()] {
            let len =
                u32::try_from(part.len()).map_err(|_| corrupt("header", "longer than 4 GiB"))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    Ok(out)
}

pub(super) fn decode_headers(mut bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, BusError> {
    fn take<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], BusError> {
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("headers", "truncated length"))?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(corrupt("headers", "truncated value"));
        }
        let (part, rest) = rest.split_at(len);
        *bytes = rest;
        Ok(part)
    }
    let mut headers = Vec::new();
    while !bytes.is_empty() {
        let name =
            String::from_utf8(take(&mut bytes)?.to_vec()).map_err(|e| corrupt("header name", e))?;
        headers.push((name, take(&mut bytes)?.to_vec()));
    }
    Ok(headers)
}

/// The next offset of a partition, or `None` for a partition that does not exist.
pub(super) fn next_offset(
    conn: &Connection,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>, rusqlite::Error> {
    conn.prepare_cached(
        r#"SELECT next_offset FROM partitions WHERE topic = ?1 AND "partition" = ?2"#,
    )?
    .query_row(params![topic, partition], |r| r.get(0))
    .optional()
}

pub(super) fn high_watermark(
    conn: &Connection,
    topic: &str,
    partition: i32,
) -> Result<i64, BusError> {
    next_offset(conn, topic, partition)
        .map_err(unavailable)?
        .ok_or_else(|| BusError::UnknownPartition {
            topic: topic.to_owned(),
            partition,
        })
}

/// Up to `max_messages` messages from `offset` on, read in one snapshot.
pub(super) fn fetch(
    conn: &mut Connection,
    topic: &str,
    partition: i32,
    offset: i64,
    max_messages: usize,
) -> Result<Vec<ConsumedMessage>, BusError> {
    let tx = conn.transaction().map_err(unavailable)?;
    let high_watermark = high_watermark(&tx, topic, partition)?;
    if offset < 0 || offset > high_watermark {
        return Err(BusError::OffsetOutOfRange {
            topic: topic.to_owned(),
            partition,
            offset,
            high_watermark,
        });
    }
    let limit = i64::try_from(max_messages).unwrap_or(i64::MAX);
    let mut stmt = tx
        .prepare_cached(
            r#"SELECT "offset", key, value, headers, timestamp_ms FROM messages
               WHERE topic = ?1 AND "partition" = ?2 AND "offset" >= ?3
               ORDER BY "offset" LIMIT ?4"#,
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(params![topic, partition, offset, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .map_err(unavailable)?;
    let mut messages = Vec::with_capacity(max_messages.min(1024));
    for row in rows {
        let (at, key, value, headers, timestamp_ms) = row.map_err(unavailable)?;
        // Relied on by every consumer: offsets are contiguous (the writer assigns them so).
        debug_assert_eq!(at, offset + messages.len() as i64, "offset gap in the log");
        messages.push(ConsumedMessage {
            topic: topic.to_owned(),
            partition,
            offset: at,
            key,
            value,
            headers: decode_headers(&headers)?,
            timestamp: timestamp(timestamp_ms)?,
        });
    }
    Ok(messages)
}

fn timestamp(ms: i64) -> Result<DateTime<Utc>, BusError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt("timestamp", ms))
}

/// A cursor's value, or `None` when it was never written.
pub(super) fn cursor(conn: &Connection, name: &str) -> Result<Option<i64>, rusqlite::Error> {
    conn.prepare_cached("SELECT value FROM cursors WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()
}
