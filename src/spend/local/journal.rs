//! The durable journal of `LocalSpend`: `<data_dir>/spend.journal`, an append-only file of
//! checksummed records (`codec.rs`), one per commit. Owns the file: the rebuild of the in-memory
//! state at open (replay, then a torn tail from a power loss cut off), the group-commit `Writer`
//! that appends queued operations in order, many per record, answering each waiter only after
//! its record is written, and compaction (the file rewritten as a snapshot once it grows).
//! Holds no budget logic: it stores what `state.rs` decided, exactly in the order it decided it.
//!
//! Durability: a record is written with one `write` before its waiters are answered, so a
//! process that is killed loses nothing acknowledged (the kernel has the bytes). Like SQLite's
//! `synchronous=NORMAL`, appends are not fsynced: a power loss may cut the newest records, and
//! the torn record is dropped at the next open. A compaction fsyncs its snapshot before it
//! replaces the file.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::codec::{self, Record};
use super::state::State;
use super::{legacy, LocalLimits};
use crate::core::money::Micros;
use crate::core::policy::{PolicyId, TimeWindow, WindowType};
use crate::spend::{HoldId, HoldInfo, SpendError};

/// File name of the spend journal inside the data directory.
pub(super) const FILE: &str = "spend.journal";
/// Operations per record when a snapshot is written (keeps records far below the reader's cap).
pub(super) const SNAPSHOT_OPS_PER_RECORD: usize = 4_096;

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

/// Proof that this process owns the journal: OS locks on `<data_dir>/spend.lock` and on
/// `spend.db.lock` (the lock of earlier versions, so an old and a new process never both own the
/// budgets), released when the files are closed (also when the process is killed).
pub(super) struct OwnerLock(#[allow(dead_code)] [File; 2]);

/// Takes the journal for this process alone, waiting up to `wait` for a previous owner (a
/// `LocalSpend` being dropped) to let go: a second live owner would keep its own budgets beside
/// ours, so it is refused.
pub(super) fn lock_owner(data_dir: &Path, wait: Duration) -> Result<OwnerLock, SpendError> {
    let deadline = std::time::Instant::now() + wait;
    let current = lock_file(data_dir, &data_dir.join("spend.lock"), deadline)?;
    let legacy = lock_file(data_dir, &data_dir.join(legacy::LOCK_FILE), deadline)?;
    Ok(OwnerLock([current, legacy]))
}

fn lock_file(
    data_dir: &Path,
    lock_path: &Path,
    deadline: std::time::Instant,
) -> Result<File, SpendError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(|e| io_error("cannot open", lock_path, e))?;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(LOCK_RETRY);
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(SpendError::Unavailable(format!(
                    "{} is in use by another process (one process owns the spend journal)",
                    data_dir.join(FILE).display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_error("cannot lock", lock_path, e))
            }
        }
    }
}

/// The rows the journal's operations describe, as of its last written record: what a snapshot
/// writes, and what the state is rebuilt from. Kept beside `State` rather than derived from it
/// because memory runs ahead of the file (changes queued but not yet written): a snapshot taken
/// from memory would hold changes whose waiters were never answered, out of queue order.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Tables {
    windows: HashMap<PolicyId, (TimeWindow, WindowType)>,
    settled: HashMap<(PolicyId, DateTime<Utc>), Micros>,
    holds: HashMap<HoldId, HoldInfo>,
}

impl Tables {
    pub(super) fn apply(&mut self, op: Op) {
        match op {
            Op::PutHold(info) => {
                self.holds.insert(info.hold_id, info);
            }
            Op::DeleteHold(id) => {
                self.holds.remove(&id);
            }
            Op::SetExpiry(id, at) => {
                if let Some(hold) = self.holds.get_mut(&id) {
                    hold.expires_at = at;
                }
            }
            Op::SetSettled {
                policy,
                bucket,
                micros,
            } => {
                self.settled.insert((policy, bucket), micros);
            }
            Op::DeleteSettled { policy, bucket } => {
                self.settled.remove(&(policy, bucket));
            }
            Op::SetWindow {
                policy,
                window,
                kind,
            } => {
                self.windows.insert(policy, (window, kind));
            }
            Op::DeleteWindow(policy) => {
                self.windows.remove(&policy);
            }
        }
    }

    /// The state these rows describe: windows, then settled buckets, then live holds.
    fn to_state(&self) -> Result<State, SpendError> {
        let mut state = State::default();
        for (policy, (window, kind)) in &self.windows {
            state.restore_window(*policy, *window, *kind);
        }
        for ((policy, bucket), micros) in &self.settled {
            state.restore_settled(*policy, *bucket, *micros);
        }
        for hold in self.holds.values() {
            state.restore_hold(hold.clone())?;
        }
        Ok(state)
    }

    /// The operations that rebuild these rows from nothing.
    fn snapshot(&self) -> Vec<Op> {
        let windows = self
            .windows
            .iter()
            .map(|(policy, (window, kind))| Op::SetWindow {
                policy: *policy,
                window: *window,
                kind: *kind,
            });
        let settled = self
            .settled
            .iter()
            .map(|((policy, bucket), micros)| Op::SetSettled {
                policy: *policy,
                bucket: *bucket,
                micros: *micros,
            });
        let holds = self.holds.values().map(|hold| Op::PutHold(hold.clone()));
        windows.chain(settled).chain(holds).collect()
    }
}

/// The open journal file and what it holds.
pub(super) struct JournalFile {
    /// Positioned at the end: every write appends.
    file: File,
    path: PathBuf,
    len: u64,
    tables: Tables,
    /// The length at which the next compaction runs.
    compact_at: u64,
    compact_bytes: u64,
    /// The record being written (kept to reuse its allocation).
    buf: Vec<u8>,
}

/// Opens (creating if needed) the journal in `data_dir`, replays it, and returns it with the state
/// it describes. With no journal but an earlier SQLite one (`spend.db`), imports that first.
pub(super) fn open(
    data_dir: &Path,
    limits: &LocalLimits,
) -> Result<(JournalFile, State), SpendError> {
    let path = data_dir.join(FILE);
    let (file, tables, valid_len) = match std::fs::read(&path) {
        Ok(bytes) => {
            let (tables, valid_len) = replay(&path, &bytes)?;
            let file = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| io_error("cannot open", &path, e))?;
            if (valid_len as usize) < bytes.len() {
                // Only a write cut short is ever cut off (see `replay`).
                file.set_len(valid_len)
                    .map_err(|e| io_error("cannot cut the torn record off", &path, e))?;
            }
            (file, tables, valid_len)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let imported = import_legacy(data_dir)?;
            let is_import = imported.is_some();
            let tables = imported.unwrap_or_default();
            let (file, len) = write_snapshot(&path, &tables)?;
            if is_import {
                retire_legacy(data_dir);
            }
            (file, tables, len)
        }
        Err(e) => return Err(io_error("cannot read", &path, e)),
    };
    let state = tables.to_state()?;
    let compact_bytes = limits.journal_compact_bytes.max(1);
    Ok((
        JournalFile {
            file,
            path,
            len: valid_len,
            tables,
            compact_at: valid_len.saturating_add(compact_bytes),
            compact_bytes,
            buf: Vec::new(),
        },
        state,
    ))
}

/// The rows of an earlier version's SQLite journal, if there is one.
fn import_legacy(data_dir: &Path) -> Result<Option<Tables>, SpendError> {
    let legacy_path = data_dir.join(legacy::FILE);
    match std::fs::metadata(&legacy_path) {
        Ok(_) => {
            let tables = legacy::read(&legacy_path)?;
            tracing::info!(from = %legacy_path.display(), "imported the SQLite spend journal");
            Ok(Some(tables))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("cannot stat", &legacy_path, e)),
    }
}

/// Renames the imported SQLite journal out of the way (`spend.db.imported`), so it is never
/// imported again; a failure only warns, since the new journal already holds everything.
fn retire_legacy(data_dir: &Path) {
    let from = data_dir.join(legacy::FILE);
    let to = data_dir.join(legacy::RETIRED_FILE);
    if let Err(e) = std::fs::rename(&from, &to) {
        tracing::warn!(error = %e, from = %from.display(), "cannot rename the imported spend.db");
    }
}

/// Applies every record of `bytes` (a whole journal file) and returns the rows with the length
/// of the valid part. Only a write cut short by a power loss is cut off, with a warning: a record
/// whose header is whole and valid but whose bytes end early or fail their checksum at the very
/// end of the file, a header cut short, or a tail of zero bytes (space the file system allocated
/// before the data reached it). Anything else is damage: refused, never guessed around.
fn replay(path: &Path, bytes: &[u8]) -> Result<(Tables, u64), SpendError> {
    let Some(mut rest) = bytes.strip_prefix(codec::MAGIC.as_slice()) else {
        return Err(SpendError::Corrupt(format!(
            "{} is not a spend journal (wrong magic)",
            path.display()
        )));
    };
    let mut tables = Tables::default();
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let damage = match codec::take_record(rest) {
            Record::Ops(ops, framed) => {
                for op in ops {
                    tables.apply(op);
                }
                rest = &rest[framed..];
                continue;
            }
            Record::Torn => None,
            Record::BadPayload { framed } if framed == rest.len() => None,
            Record::BadPayload { .. } => Some("record checksum mismatch".to_owned()),
            Record::Corrupt(why) => Some(why),
        };
        match damage {
            Some(why) if rest.iter().any(|b| *b != 0) => {
                return Err(SpendError::Corrupt(format!(
                    "{} is damaged at byte {offset}: {why} (not a write cut short at its end; \
                     restore the file, or remove it to start every budget from zero)",
                    path.display()
                )))
            }
            _ => {
                tracing::warn!(
                    path = %path.display(),
                    offset,
                    dropped_bytes = rest.len(),
                    "the spend journal ends in a write cut short (power loss?); it is cut off"
                );
                return Ok((tables, offset as u64));
            }
        }
    }
    Ok((tables, bytes.len() as u64))
}

/// Writes `tables` as a whole journal file at `path` (through a fsynced temporary file and a
/// rename, so `path` is always either the old file or the whole new one) and returns the new file,
/// open for appending, with its length. Once the rename is done the new file is the journal:
/// a failure to sync the directory after it only warns (the rename may then not survive a power
/// loss, which leaves the old, complete file).
fn write_snapshot(path: &Path, tables: &Tables) -> Result<(File, u64), SpendError> {
    let tmp = path.with_extension("journal.tmp");
    let mut bytes = codec::MAGIC.to_vec();
    for chunk in tables.snapshot().chunks(SNAPSHOT_OPS_PER_RECORD) {
        codec::put_record(&mut bytes, chunk.iter()).map_err(|len| {
            SpendError::Unavailable(format!("spend journal: a snapshot record of {len} bytes"))
        })?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io_error("cannot create", &tmp, e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error("cannot rename", &tmp, e))?;
    if let Some(dir) = path.parent() {
        if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot sync the journal's directory");
        }
    }
    Ok((file, bytes.len() as u64))
}

impl JournalFile {
    /// Appends one record holding every operation of `batch` (the waiters are not touched).
    fn append(&mut self, batch: &mut [Entry]) -> std::io::Result<()> {
        self.buf.clear();
        codec::put_record(&mut self.buf, batch.iter().flat_map(|e| e.ops.iter())).map_err(
            |len| {
                std::io::Error::other(format!(
                    "a record of {len} bytes is over {}",
                    codec::RECORD_BYTES_MAX
                ))
            },
        )?;
        self.file.write_all(&self.buf)?;
        self.len += self.buf.len() as u64;
        for op in batch.iter_mut().flat_map(|e| e.ops.drain(..)) {
            self.tables.apply(op);
        }
        Ok(())
    }

    /// Rewrites the file as a snapshot of its rows once it has grown by `compact_bytes` since
    /// the last one. A failed compaction leaves the old file whole and in use; it is retried
    /// after the next `compact_bytes`.
    fn compact_if_due(&mut self) {
        if self.len < self.compact_at {
            return;
        }
        match write_snapshot(&self.path, &self.tables) {
            Ok((file, len)) => {
                tracing::debug!(before = self.len, after = len, "spend journal compacted");
                self.file = file;
                self.len = len;
            }
            Err(e) => tracing::warn!(error = %e, "spend journal compaction failed; retrying later"),
        }
        self.compact_at = self.len.saturating_add(self.compact_bytes);
    }

    /// A journal whose every write fails (tests of a failing disk).
    #[cfg(test)]
    pub(super) fn failing(file: File) -> JournalFile {
        JournalFile {
            file,
            path: PathBuf::from("/dev/full"),
            len: 0,
            tables: Tables::default(),
            compact_at: u64::MAX,
            compact_bytes: u64::MAX,
            buf: Vec::new(),
        }
    }
}

/// The journal's writing side: the file and the entries waiting for it. There is no writer
/// thread: whoever queued an entry commits the queue itself (`drive`) when no one else is
/// committing, taking every entry queued so far into one record (group commit led by a caller,
/// so a reservation does not wait for another thread to wake up). A committer takes entries
/// until the queue is empty and checks it again after letting go, so an entry queued while a
/// commit runs is never left behind.
pub(super) struct Writer {
    file: Mutex<JournalFile>,
    queue: Mutex<VecDeque<Entry>>,
    queue_max: usize,
    batch_max: usize,
    failure: Failure,
    /// The journal stays ours while the writer lives.
    _owner: OwnerLock,
}

impl Writer {
    pub(super) fn new(
        file: JournalFile,
        queue_max: usize,
        batch_max: usize,
        failure: Failure,
        owner: OwnerLock,
    ) -> Writer {
        Writer {
            file: Mutex::new(file),
            queue: Mutex::new(VecDeque::new()),
            queue_max: queue_max.max(1),
            batch_max: batch_max.max(1),
            failure,
            _owner: owner,
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
        // Under the state lock: commit, but leave a due compaction to the next `drive`.
        self.drive_with(false);
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
        self.drive_with(true);
    }

    /// `drive`, compacting the file afterwards if it is due and `compact` allows.
    fn drive_with(&self, compact: bool) {
        loop {
            let mut file = match self.file.try_lock() {
                Ok(file) => file,
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
                self.commit(&mut file, &mut batch);
            }
            if compact {
                file.compact_if_due();
            }
            drop(file);
            match self.queue() {
                Ok(queue) if !queue.is_empty() => continue,
                _ => return,
            }
        }
    }

    /// Writes one batch as one record and answers each of its waiters.
    fn commit(&self, file: &mut JournalFile, batch: &mut Vec<Entry>) {
        let outcome = match self.failure.get() {
            Some(earlier) => Err(SpendError::Unavailable(earlier.clone())),
            None => file.append(batch).map_err(|e| {
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
    pub(super) fn stall(&self) -> MutexGuard<'_, JournalFile> {
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Writer {
    /// Commits whatever is still queued (a caller that stopped waiting); the owner lock goes
    /// with the writer.
    fn drop(&mut self) {
        self.drive();
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> SpendError {
    SpendError::Unavailable(format!("spend journal: {what} {}: {e}", path.display()))
}
