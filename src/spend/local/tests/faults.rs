//! Faults: a full journal queue, a commit that does not come in time, a commit that fails.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::super::journal::{self, JournalFile};
use super::super::state::State;
use super::super::writer::{Failure, Writer};
use super::*;
use crate::spend::SpendError;

/// A `LocalSpend` in `dir` writing to `file` (which may be broken).
fn with_writer(limits: LocalLimits, failure: Failure, file: JournalFile, dir: &Path) -> LocalSpend {
    let owner = journal::lock_owner(dir, std::time::Duration::ZERO).unwrap();
    let writer = Writer::new(
        file,
        limits.journal_queue_max,
        limits.journal_batch_max,
        Arc::clone(&failure),
        owner,
    );
    LocalSpend {
        state: Mutex::new(State::default()),
        nonces: Mutex::new(crate::spend::nonces::NonceSet::new(limits.nonces_max)),
        writer,
        failure,
        limits,
        path: PathBuf::new(),
    }
}

#[tokio::test]
// The stall is a std mutex held across the awaits on purpose: no commit may run meanwhile.
#[allow(clippy::await_holding_lock)]
async fn a_full_journal_queue_is_overloaded_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let limits = LocalLimits {
        journal_queue_max: 1,
        commit_timeout_ms: 50,
        ..LocalLimits::default()
    };
    let spend = LocalSpend::open(dir.path(), limits.clone()).unwrap();
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000)];

    {
        // No commit can run: the first call times out, but its hold is queued and counts.
        let _stalled = spend.writer.stall();
        let first = spend.reserve(request(&child(2), &policies, 100, now)).await;
        assert!(
            matches!(first, Err(SpendError::Unavailable(_))),
            "{first:?}"
        );
        assert_eq!(
            spend.reserve(request(&child(2), &policies, 100, now)).await,
            Err(SpendError::Overloaded { max: 1 })
        );
        assert_eq!(usage(&spend, &policies, now).await, vec![(0, 100)]);
    }
    // Once commits run again the queued hold is committed: it survives a reopen.
    spend.ping().await.unwrap();
    spend.close().await.unwrap();
    let reopened = LocalSpend::open(dir.path(), limits).unwrap();
    assert_eq!(usage(&reopened, &policies, now).await, vec![(0, 100)]);
    assert_eq!(reopened.list_holds(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_failed_commit_makes_the_cache_refuse_every_later_call() {
    let dir = tempfile::tempdir().unwrap();
    let failure: Failure = Arc::new(OnceLock::new());
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    let full = std::fs::OpenOptions::new()
        .append(true)
        .open("/dev/full")
        .unwrap();
    let spend = with_writer(
        LocalLimits::default(),
        failure,
        JournalFile::failing(full),
        dir.path(),
    );
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000)];

    let first = spend.reserve(request(&child(2), &policies, 100, now)).await;
    assert!(
        matches!(first, Err(SpendError::Unavailable(_))),
        "{first:?}"
    );
    for refused in [
        spend
            .reserve(request(&child(2), &policies, 1, now))
            .await
            .err(),
        spend.spent(team().id, &policies, now).await.err(),
        spend.ping().await.err(),
    ] {
        assert!(
            matches!(refused, Some(SpendError::Unavailable(_))),
            "{refused:?}"
        );
    }
}
