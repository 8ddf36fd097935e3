//! The durable journal of `LocalSpend`: `<data_dir>/spend.db` (SQLite, WAL), its migrations, the
//! rebuild of the in-memory state at open, and the group-commit `Writer` that applies queued
//! operations in order, many per transaction, answering each waiter only after its commit.
//! Holds no budget logic: it stores what `state.rs` decided, exactly in the order it decided it.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, Transaction};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::state::State;
use crate::core::agent::AgentId;
use crate::core::money::{Currency, Micros};
use crate::core::policy::{PolicyId, TimeWindow, WindowType};
use crate::spend::{HoldId, HoldInfo, SpendError};

const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "init",
    "CREATE TABLE spend_settled (
        policy_id TEXT NOT NULL,
        bucket_start INTEGER NOT NULL,      -- unix micros
        settled_micros INTEGER NOT NULL,
        PRIMARY KEY (policy_id, bucket_start)
    ) WITHOUT ROWID;
    CREATE TABLE spend_windows (
        policy_id TEXT PRIMARY KEY,
        time_window TEXT NOT NULL,
        window_type TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE spend_holds (
        hold_id TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        ancestor_ids TEXT NOT NULL,         -- JSON array of agent ids, nearest first
        root_agent_id TEXT NOT NULL,
        resource TEXT NOT NULL,
        amount_micros INTEGER NOT NULL,
        currency TEXT NOT NULL,
        charged TEXT NOT NULL,              -- JSON [[policy_id, bucket_start micros], ...]
        reserved_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;",
)];

/// One durable change, as decided under the state lock.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Op {
    PutHold(HoldInfo),
    DeleteHold(HoldId),
    SetExpiry(HoldId, DateTime<Utc>),
    SetSettled {
        policy: PolicyId,
        bucket: DateTime<Utc>,
        micros: Micros,
    },
    DeleteSettled {
        policy: PolicyId,
        bucket: DateTime<Utc>,
    },
    SetWindow {
        policy: PolicyId,
        window: TimeWindow,
        kind: WindowType,
    },
    DeleteWindow(PolicyId),
}

/// The operations of one call, committed together; the waiter hears the commit's outcome.
pub(super) struct Entry {
    pub(super) ops: Vec<Op>,
    pub(super) waiter: Option<oneshot::Sender<Result<(), SpendError>>>,
}

/// Where a caller hears that its entry was committed (or why not).
pub(super) type Commit = oneshot::Receiver<Result<(), SpendError>>;

/// Set once, by the writer, when a commit fails: from then on the cache refuses to serve, since
/// memory holds changes the file does not. A restart rebuilds from the file.
pub(super) type Failure = Arc<OnceLock<String>>;

/// How often a waiting opener retries the owner lock.
const LOCK_RETRY: Duration = Duration::from_millis(10);

/// Proof that this process owns the journal: an OS lock on `<journal>.lock`, released when the
/// file is closed (also when the process is killed).
pub(super) struct OwnerLock(#[allow(dead_code)] std::fs::File);

/// Takes the journal for this process alone, waiting up to `wait` for a previous owner (a
/// `LocalSpend` being dropped) to let go: a second live owner would keep its own budgets beside
/// ours, so it is refused.
pub(super) fn lock_owner(path: &Path, wait: Duration) -> Result<OwnerLock, SpendError> {
    let lock_path = path.with_extension("db.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            SpendError::Unavailable(format!("cannot open {}: {e}", lock_path.display()))
        })?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(OwnerLock(file)),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(LOCK_RETRY);
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(SpendError::Unavailable(format!(
                    "{} is in use by another process (one process owns the spend journal)",
                    path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(SpendError::Unavailable(format!(
                    "cannot lock {}: {e}",
                    lock_path.display()
                )))
            }
        }
    }
}

fn connect(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    crate::embedded_db::stable_plans(&conn)?;
    Ok(conn)
}

/// Opens the writer's connection and applies pending migrations. Commits never checkpoint on
/// this connection (`wal_autocheckpoint=0`): checkpoints, and the fsyncs they carry, run on the
/// checkpointer thread, so a reservation never waits behind one.
pub(super) fn open(path: &Path, busy_timeout: Duration) -> Result<Connection, SpendError> {
    let open = || -> rusqlite::Result<Connection> {
        let mut conn = connect(path, busy_timeout)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        crate::embedded_db::migrate(&mut conn, "spend_migrations", MIGRATIONS)?;
        Ok(conn)
    };
    open().map_err(unavailable)
}

/// Starts the journal's checkpointer (see `embedded_db::spawn_checkpointer`).
pub(super) fn spawn_checkpointer(
    path: &Path,
    busy_timeout: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), SpendError> {
    let conn = connect(path, busy_timeout).map_err(unavailable)?;
    crate::embedded_db::spawn_checkpointer(conn, "spend", stop)
        .map_err(|e| SpendError::Unavailable(format!("cannot start the journal checkpointer: {e}")))
}

/// Rebuilds the state from the file: windows, settled buckets, then live holds.
pub(super) fn load(conn: &Connection) -> Result<State, SpendError> {
    let mut state = State::default();
    let mut windows = conn
        .prepare("SELECT policy_id, time_window, window_type FROM spend_windows")
        .map_err(unavailable)?;
    let rows = windows
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(unavailable)?;
    for row in rows {
        let (policy, window, kind) = row.map_err(unavailable)?;
        let window: TimeWindow = window.parse().map_err(|e| corrupt("time_window", e))?;
        let kind: WindowType = kind.parse().map_err(|e| corrupt("window_type", e))?;
        state.restore_window(PolicyId(uuid(&policy)?), window, kind);
    }
    let mut settled = conn
        .prepare("SELECT policy_id, bucket_start, settled_micros FROM spend_settled")
        .map_err(unavailable)?;
    let rows = settled
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(unavailable)?;
    for row in rows {
        let (policy, bucket, micros) = row.map_err(unavailable)?;
        state.restore_settled(PolicyId(uuid(&policy)?), instant(bucket)?, Micros(micros));
    }
    let mut holds = conn
        .prepare(
            "SELECT hold_id, agent_id, ancestor_ids, root_agent_id, resource, amount_micros,
                    currency, charged, reserved_at, expires_at FROM spend_holds",
        )
        .map_err(unavailable)?;
    let rows = holds.query_map([], hold_row).map_err(unavailable)?;
    for row in rows {
        state.restore_hold(parse_hold(row.map_err(unavailable)?)?)?;
    }
    Ok(state)
}

type HoldRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    i64,
    i64,
);

fn hold_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HoldRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

fn parse_hold(row: HoldRow) -> Result<HoldInfo, SpendError> {
    let (id, agent, ancestors, root, resource, amount, currency, charged, reserved_at, expires_at) =
        row;
    let ancestor_ids: Vec<AgentId> =
        serde_json::from_str(&ancestors).map_err(|e| corrupt("ancestor_ids", e))?;
    let charged: Vec<(PolicyId, i64)> =
        serde_json::from_str(&charged).map_err(|e| corrupt("charged", e))?;
    Ok(HoldInfo {
        hold_id: HoldId(uuid(&id)?),
        agent_id: AgentId(uuid(&agent)?),
        ancestor_ids,
        root_agent_id: AgentId(uuid(&root)?),
        resource,
        amount: Micros(amount),
        currency: Currency::parse(&currency).map_err(|e| corrupt("currency", e))?,
        charged: charged
            .into_iter()
            .map(|(p, b)| instant(b).map(|at| (p, at)))
            .collect::<Result<_, _>>()?,
        reserved_at: instant(reserved_at)?,
        expires_at: instant(expires_at)?,
    })
}

/// The journal's writing side: the connection and the entries waiting for it. There is no
/// writer thread: whoever queued an entry commits the queue itself (`drive`) when no one else
/// is committing, taking every entry queued so far into one transaction (group commit led by a
/// caller, so a reservation does not wait for another thread to wake up). A committer takes
/// entries until the queue is empty and checks it again after letting go, so an entry queued
/// while a commit runs is never left behind.
pub(super) struct Writer {
    conn: Mutex<Connection>,
    queue: Mutex<VecDeque<Entry>>,
    queue_max: usize,
    batch_max: usize,
    failure: Failure,
    /// The journal stays ours while the writer lives.
    _owner: OwnerLock,
    stop_checkpoints: Arc<AtomicBool>,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        queue_max: usize,
        batch_max: usize,
        failure: Failure,
        owner: OwnerLock,
        stop_checkpoints: Arc<AtomicBool>,
    ) -> Writer {
        Writer {
            conn: Mutex::new(conn),
            queue: Mutex::new(VecDeque::new()),
            queue_max: queue_max.max(1),
            batch_max: batch_max.max(1),
            failure,
            _owner: owner,
            stop_checkpoints,
        }
    }

    /// The queue. A poisoned queue may have lost an entry whose change memory already holds,
    /// so it fails the journal like a failed commit: the cache refuses until a restart.
    fn queue(&self) -> Result<MutexGuard<'_, VecDeque<Entry>>, SpendError> {
        self.queue.lock().map_err(|_| {
            let message = "spend journal queue poisoned by a panic, restart to recover";
            let _ = self.failure.set(message.into());
            SpendError::Unavailable(message.into())
        })
    }

    /// Fails `Overloaded` when the queue is full even after committing it (when no one else is).
    /// Called under the state lock before a change, so a change is never made that cannot be
    /// queued.
    pub(super) fn check_room(&self) -> Result<(), SpendError> {
        if self.queue()?.len() < self.queue_max {
            return Ok(());
        }
        self.drive();
        if self.queue()?.len() >= self.queue_max {
            return Err(SpendError::Overloaded {
                max: self.queue_max,
            });
        }
        Ok(())
    }

    /// Queues `ops` (under the state lock, so the queue's order is the order memory changed
    /// in) and returns where to hear of their commit. Commits nothing: see `drive`.
    pub(super) fn enqueue(&self, ops: Vec<Op>) -> Result<Commit, SpendError> {
        let (waiter, commit) = oneshot::channel();
        self.queue()?.push_back(Entry {
            ops,
            waiter: Some(waiter),
        });
        Ok(commit)
    }

    /// Commits everything queued unless another caller is committing right now (it then takes
    /// this caller's entries too). Blocks the calling thread for the commits it runs.
    pub(super) fn drive(&self) {
        loop {
            let mut conn = match self.conn.try_lock() {
                Ok(conn) => conn,
                Err(TryLockError::WouldBlock) => return,
                Err(TryLockError::Poisoned(poisoned)) => {
                    let _ = self
                        .failure
                        .set("the spend journal writer panicked; restart to recover".into());
                    poisoned.into_inner()
                }
            };
            let mut batch = Vec::with_capacity(self.batch_max);
            loop {
                match self.queue() {
                    Ok(mut queue) => {
                        let n = queue.len().min(self.batch_max);
                        batch.extend(queue.drain(..n));
                    }
                    Err(_) => return,
                }
                if batch.is_empty() {
                    break;
                }
                self.commit(&mut conn, &mut batch);
            }
            drop(conn);
            match self.queue() {
                Ok(queue) if !queue.is_empty() => continue,
                _ => return,
            }
        }
    }

    /// Writes one batch in one transaction and answers each of its waiters.
    fn commit(&self, conn: &mut Connection, batch: &mut Vec<Entry>) {
        let outcome = match self.failure.get() {
            Some(earlier) => Err(SpendError::Unavailable(earlier.clone())),
            None => write_batch(conn, batch).map_err(|e| {
                let message = format!("spend journal write failed, restart to recover: {e}");
                tracing::error!(error = %e, "spend journal write failed; the spend cache stops serving");
                let _ = self.failure.set(message.clone());
                SpendError::Unavailable(message)
            }),
        };
        for entry in batch.drain(..) {
            if let Some(waiter) = entry.waiter {
                // A caller that gave up (timeout, disconnect) no longer listens; its change is
                // still durable.
                let _ = waiter.send(outcome.clone());
            }
        }
    }

    /// Stalls every commit while the guard lives (tests of a writer that does not answer).
    #[cfg(test)]
    pub(super) fn stall(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Writer {
    /// Commits whatever is still queued (a caller that stopped waiting), then lets the
    /// checkpointer stop; the owner lock goes with the writer.
    fn drop(&mut self) {
        self.drive();
        self.stop_checkpoints.store(true, Ordering::Release);
    }
}

fn write_batch(conn: &mut Connection, batch: &[Entry]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for op in batch.iter().flat_map(|entry| entry.ops.iter()) {
        apply(&tx, op)?;
    }
    tx.commit()
}

fn apply(tx: &Transaction<'_>, op: &Op) -> rusqlite::Result<()> {
    match op {
        Op::PutHold(info) => put_hold(tx, info),
        Op::DeleteHold(id) => tx
            .prepare_cached("DELETE FROM spend_holds WHERE hold_id = ?1")?
            .execute([id.0.to_string()])
            .map(drop),
        Op::SetExpiry(id, at) => tx
            .prepare_cached("UPDATE spend_holds SET expires_at = ?2 WHERE hold_id = ?1")?
            .execute(params![id.0.to_string(), micros(*at)])
            .map(drop),
        Op::SetSettled {
            policy,
            bucket,
            micros: amount,
        } => tx
            .prepare_cached(
                "INSERT INTO spend_settled (policy_id, bucket_start, settled_micros)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (policy_id, bucket_start) DO UPDATE SET settled_micros = ?3",
            )?
            .execute(params![policy.0.to_string(), micros(*bucket), amount.get()])
            .map(drop),
        Op::DeleteSettled { policy, bucket } => tx
            .prepare_cached("DELETE FROM spend_settled WHERE policy_id = ?1 AND bucket_start = ?2")?
            .execute(params![policy.0.to_string(), micros(*bucket)])
            .map(drop),
        Op::SetWindow {
            policy,
            window,
            kind,
        } => tx
            .prepare_cached(
                "INSERT INTO spend_windows (policy_id, time_window, window_type) VALUES (?1, ?2, ?3)
                 ON CONFLICT (policy_id) DO UPDATE SET time_window = ?2, window_type = ?3",
            )?
            .execute(params![policy.0.to_string(), window.as_str(), kind.as_str()])
            .map(drop),
        Op::DeleteWindow(policy) => tx
            .prepare_cached("DELETE FROM spend_windows WHERE policy_id = ?1")?
            .execute([policy.0.to_string()])
            .map(drop),
    }
}

fn put_hold(tx: &Transaction<'_>, info: &HoldInfo) -> rusqlite::Result<()> {
    let to_json = |e: serde_json::Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
    let ancestors = serde_json::to_string(&info.ancestor_ids).map_err(to_json)?;
    let charged: Vec<(PolicyId, i64)> =
        info.charged.iter().map(|(p, b)| (*p, micros(*b))).collect();
    let charged = serde_json::to_string(&charged).map_err(to_json)?;
    tx.prepare_cached(
        "INSERT INTO spend_holds (hold_id, agent_id, ancestor_ids, root_agent_id, resource,
             amount_micros, currency, charged, reserved_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        info.hold_id.0.to_string(),
        info.agent_id.0.to_string(),
        ancestors,
        info.root_agent_id.0.to_string(),
        info.resource,
        info.amount.get(),
        info.currency.as_str(),
        charged,
        micros(info.reserved_at),
        micros(info.expires_at),
    ])
    .map(drop)
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn instant(value: i64) -> Result<DateTime<Utc>, SpendError> {
    DateTime::<Utc>::from_timestamp_micros(value)
        .ok_or_else(|| SpendError::Corrupt(format!("timestamp {value} out of range")))
}

fn uuid(text: &str) -> Result<Uuid, SpendError> {
    Uuid::parse_str(text).map_err(|e| corrupt("id", e))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> SpendError {
    SpendError::Corrupt(format!("{what}: {e}"))
}

fn unavailable(e: rusqlite::Error) -> SpendError {
    SpendError::Unavailable(format!("spend journal: {e}"))
}
