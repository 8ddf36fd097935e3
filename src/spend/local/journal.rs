//! The durable journal of `LocalSpend`: `<data_dir>/spend.journal`, an append-only file of
//! checksummed records (`codec.rs`), one per commit. Owns the file: the rebuild of the in-memory
//! state at open (replay, then a torn tail from a power loss cut off), appending a record (for
//! the group commit of `writer.rs`), and compaction (the file rewritten as a snapshot once it
//! grows, on a thread of its own so commits go on meanwhile).
//! Holds no budget logic: it stores what `state.rs` decided, exactly in the order it decided it.
//!
//! Durability: a record is written with one `write` before its waiters are answered, so a
//! process that is killed loses nothing acknowledged (the kernel has the bytes). Like SQLite's
//! `synchronous=NORMAL`, appends are not fsynced: a power loss may cut the newest records, and
//! the torn record is dropped at the next open. A compaction fsyncs its snapshot before it
//! replaces the file; the records appended while it ran are copied behind the snapshot when it
//! is swapped in, so the new file holds everything the old one did.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::codec::{self, Record};
use super::state::State;
use super::writer::Entry;
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
    /// The length at which the next compaction starts.
    compact_at: u64,
    compact_bytes: u64,
    /// The compaction writing its snapshot right now, if one is.
    compaction: Option<Compaction>,
    /// The record being written (kept to reuse its allocation).
    buf: Vec<u8>,
}

/// A compaction under way: a thread writing (and fsyncing) the snapshot of the rows as they
/// stood when the journal was `from_len` bytes long to the temporary file. The records appended
/// after `from_len` are copied behind the snapshot when it is swapped in.
struct Compaction {
    from_len: u64,
    thread: std::thread::JoinHandle<Result<(File, u64), SpendError>>,
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
            let (file, len) = write_temp(&temp_path(&path), tables.snapshot())?;
            install(&path)?;
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
            compaction: None,
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

/// Where a snapshot is written before it replaces the journal at `path`.
fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("journal.tmp")
}

/// Writes `ops` as a whole journal file at `tmp` and fsyncs it; returns the file, open for
/// appending, with its length. `install` then puts it in the journal's place.
fn write_temp(tmp: &Path, ops: Vec<Op>) -> Result<(File, u64), SpendError> {
    let mut bytes = codec::MAGIC.to_vec();
    for chunk in ops.chunks(SNAPSHOT_OPS_PER_RECORD) {
        codec::put_record(&mut bytes, chunk.iter()).map_err(|len| {
            SpendError::Unavailable(format!("spend journal: a snapshot record of {len} bytes"))
        })?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(tmp)
        .map_err(|e| io_error("cannot create", tmp, e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("cannot write", tmp, e))?;
    Ok((file, bytes.len() as u64))
}

/// Renames the written temporary file over the journal at `path`, so `path` is always either
/// the old file or the whole new one. Once the rename is done the new file is the journal: a
/// failure to sync the directory after it only warns (the rename may then not survive a power
/// loss, which leaves the old, complete file).
fn install(path: &Path) -> Result<(), SpendError> {
    let tmp = temp_path(path);
    std::fs::rename(&tmp, path).map_err(|e| io_error("cannot rename", &tmp, e))?;
    if let Some(dir) = path.parent() {
        if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot sync the journal's directory");
        }
    }
    Ok(())
}

impl JournalFile {
    /// Appends one record holding every operation of `batch` (the waiters are not touched).
    pub(super) fn append(&mut self, batch: &mut [Entry]) -> std::io::Result<()> {
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

    /// Starts a compaction once the file has grown by `compact_bytes` since the last one, and
    /// swaps a finished one in. Never waits for the snapshot to be written: the thread that
    /// writes it is only joined once it is done. A failed compaction leaves the old file whole
    /// and in use; it is retried after the next `compact_bytes`.
    pub(super) fn compact_if_due(&mut self) {
        match &self.compaction {
            Some(running) if running.thread.is_finished() => self.finish_compaction(),
            Some(_) => {}
            None if self.len >= self.compact_at => self.start_compaction(),
            None => {}
        }
    }

    fn start_compaction(&mut self) {
        let ops = self.tables.snapshot();
        let tmp = temp_path(&self.path);
        let spawned = std::thread::Builder::new()
            .name("caracal-spend-compact".into())
            .spawn(move || write_temp(&tmp, ops));
        match spawned {
            Ok(thread) => {
                self.compaction = Some(Compaction {
                    from_len: self.len,
                    thread,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a spend journal compaction; retrying later");
                self.compact_at = self.len.saturating_add(self.compact_bytes);
            }
        }
    }

    /// Waits for the compaction under way (if any) and swaps its file in.
    pub(super) fn finish_compaction(&mut self) {
        let Some(compaction) = self.compaction.take() else {
            return;
        };
        let before = self.len;
        let swapped = compaction
            .thread
            .join()
            .unwrap_or_else(|_| {
                Err(SpendError::Unavailable(
                    "the spend journal compaction panicked".into(),
                ))
            })
            .and_then(|(file, len)| self.swap_in(file, len, compaction.from_len));
        match swapped {
            Ok(()) => tracing::debug!(before, after = self.len, "spend journal compacted"),
            Err(e) => tracing::warn!(error = %e, "spend journal compaction failed; retrying later"),
        }
        self.compact_at = self.len.saturating_add(self.compact_bytes);
    }

    /// Copies the records appended since the snapshot of `new` was taken (the old file's bytes
    /// from `from_len` on) behind it, then installs it as the journal and appends to it.
    fn swap_in(&mut self, mut new: File, new_len: u64, from_len: u64) -> Result<(), SpendError> {
        let tail_len = self.len.checked_sub(from_len).ok_or_else(|| {
            SpendError::Unavailable(format!(
                "spend journal shrank from {from_len} to {} bytes during a compaction",
                self.len
            ))
        })?;
        let tail_len_usize = usize::try_from(tail_len).map_err(|_| {
            SpendError::Unavailable(format!("spend journal: {tail_len} bytes to carry over"))
        })?;
        let mut tail = vec![0u8; tail_len_usize];
        File::open(&self.path)
            .and_then(|old| old.read_exact_at(&mut tail, from_len))
            .map_err(|e| io_error("cannot read the records to carry over from", &self.path, e))?;
        let tmp = temp_path(&self.path);
        new.write_all(&tail)
            .map_err(|e| io_error("cannot carry records over to", &tmp, e))?;
        install(&self.path)?;
        self.file = new;
        self.len = new_len.saturating_add(tail_len);
        Ok(())
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
            compaction: None,
            buf: Vec::new(),
        }
    }

    /// Whether a compaction is under way (tests).
    #[cfg(test)]
    pub(super) fn compacting(&self) -> bool {
        self.compaction.is_some()
    }
}

impl Drop for JournalFile {
    /// Waits for a compaction under way without swapping it in (the old file is complete), so
    /// its thread never writes the temporary file while a later owner writes one.
    fn drop(&mut self) {
        if let Some(compaction) = self.compaction.take() {
            let _ = compaction.thread.join();
        }
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> SpendError {
    SpendError::Unavailable(format!("spend journal: {what} {}: {e}", path.display()))
}
