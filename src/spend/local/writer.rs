//! The group commit of the spend journal: the queue of entries waiting for the file and the
//! caller-led `Writer` that appends them in queue order, many per record, answering each waiter
//! only after its record is written (`journal.rs` owns the file and its compaction). Knows no
//! budgets and no file format.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};

use tokio::sync::oneshot;

use super::journal::{JournalFile, Op, OwnerLock};
use crate::spend::SpendError;

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
    /// The journal stays ours while the writer lives. Declared last, so it is released only
    /// after `file` is closed (and a compaction under way has been waited for).
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
    /// Commits whatever is still queued (a caller that stopped waiting), starting no
    /// compaction; the owner lock goes with the writer, after the file (and any compaction
    /// under way) is closed.
    fn drop(&mut self) {
        self.drive_with(false);
    }
}
