//! Faults: a full journal queue, a commit that does not come in time, a commit that fails.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use super::super::journal::{self, Entry, Failure, Op};
use super::super::state::State;
use super::*;
use crate::spend::SpendError;

/// A `LocalSpend` whose journal queue is read by `writer` (or by nobody).
fn with_queue(limits: LocalLimits, failure: Failure) -> (LocalSpend, mpsc::Receiver<Entry>) {
    let (queue, receiver) = mpsc::channel(limits.journal_queue_max);
    let spend = LocalSpend {
        state: Mutex::new(State::default()),
        nonces: Mutex::new(crate::spend::nonces::NonceSet::new(limits.nonces_max)),
        queue,
        failure,
        writer: std::thread::spawn(|| ()),
        limits,
        path: PathBuf::new(),
    };
    (spend, receiver)
}

#[tokio::test]
async fn a_full_journal_queue_is_overloaded_and_changes_nothing() {
    let limits = LocalLimits {
        journal_queue_max: 1,
        commit_timeout_ms: 50,
        ..LocalLimits::default()
    };
    let (spend, mut stalled) = with_queue(limits, Arc::new(OnceLock::new()));
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000)];

    // The writer never answers: the first call times out, but its hold is queued and counts.
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
    let queued = stalled.try_recv().unwrap();
    assert!(matches!(queued.ops.last(), Some(Op::PutHold(h)) if h.amount == Micros(100)));
    assert!(stalled.try_recv().is_err());
}

#[tokio::test]
async fn a_failed_commit_makes_the_cache_refuse_every_later_call() {
    let dir = tempfile::tempdir().unwrap();
    let failure: Failure = Arc::new(OnceLock::new());
    let (spend, receiver) = with_queue(LocalLimits::default(), Arc::clone(&failure));
    // A journal file without its tables: the first write fails as a full disk would.
    let conn = rusqlite::Connection::open(dir.path().join("broken.db")).unwrap();
    let owner =
        journal::lock_owner(&dir.path().join("broken.db"), std::time::Duration::ZERO).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _writer = journal::spawn_writer(conn, receiver, 8, failure, owner, stop).unwrap();
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
        spend.spent(&policies, now).await.err(),
        spend.ping().await.err(),
    ] {
        assert!(
            matches!(refused, Some(SpendError::Unavailable(_))),
            "{refused:?}"
        );
    }
}
