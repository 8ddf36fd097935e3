//! `LocalSpend`, the in-process spend cache of the embedded default: one mutex-guarded state (one
//! critical section per operation, so N racing reservations for N slots all agree) and a durable
//! append-only journal file, so kill -9 and restart continue every budget. Names no HTTP, Kafka
//! or Redis.
//!
//! Ordering: under the state lock an operation checks for room in the journal queue (none →
//! `Overloaded`, nothing changed), changes memory, and queues its journal operations; the lock
//! is released before the operation commits the queue itself (or finds another caller doing it,
//! see `writer::Writer`) and waits for its commit. So the journal applies operations in exactly
//! the order memory did, and an operation is answered `Ok` only once it is committed. If a commit
//! fails the cache refuses every later call (`Unavailable`) until a restart rebuilds it from the
//! file, because memory then holds changes that the file lacks.

mod codec;
mod journal;
mod legacy;
mod state;
#[cfg(test)]
mod tests;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};

use self::journal::Op;
use self::state::State;
use self::writer::{Commit, Failure, Writer};
use super::nonces::NonceSet;
use super::{
    HoldInfo, HoldKey, ReserveOutcome, ReserveRequest, Settlement, SpendCache, SpendError,
};
use crate::core::decision::PolicyUsage;
use crate::core::money::Micros;
use crate::core::policy::BudgetPolicy;

/// File name of the spend journal inside the data directory.
pub const JOURNAL_FILE: &str = journal::FILE;

/// Every bound of `LocalSpend` (`embedded.spendCache.*`, documented and defaulted there).
/// Reaching a memory bound is `SpendError::Full`, a full journal queue `SpendError::Overloaded`;
/// the gateway answers both with 503.
pub use crate::config::EmbeddedSpendLimits as LocalLimits;

impl LocalLimits {
    fn validate(&self) -> Result<(), SpendError> {
        let named = [
            ("holds_max", self.holds_max),
            ("buckets_max", self.buckets_max),
            ("hold_policies_max", self.hold_policies_max),
            ("resource_bytes_max", self.resource_bytes_max),
            ("journal_queue_max", self.journal_queue_max),
            ("journal_batch_max", self.journal_batch_max),
            ("nonces_max", self.nonces_max),
        ];
        match named.iter().find(|(_, value)| *value == 0) {
            Some((name, _)) => Err(SpendError::Invalid(format!("{name} must be at least 1"))),
            None if self.commit_timeout_ms == 0 => Err(SpendError::Invalid(
                "commit_timeout_ms must be at least 1".into(),
            )),
            None if self.journal_compact_bytes == 0 => Err(SpendError::Invalid(
                "journal_compact_bytes must be at least 1".into(),
            )),
            None => Ok(()),
        }
    }
}

pub struct LocalSpend {
    state: Mutex<State>,
    /// Replay-protection nonces: in memory only (a restart forgets them; see ARCHITECTURE.md).
    nonces: Mutex<NonceSet>,
    writer: Writer,
    failure: Failure,
    limits: LocalLimits,
    path: PathBuf,
}

impl LocalSpend {
    /// Opens (creating if needed) `<data_dir>/spend.journal`, takes it for this process alone,
    /// and rebuilds settled spend and live holds from it (importing an earlier `spend.db` once).
    /// Holds of a previous process stay live until they are settled or expire (then
    /// `take_expired` posts them). Blocks while loading.
    pub fn open(data_dir: &Path, limits: LocalLimits) -> Result<LocalSpend, SpendError> {
        limits.validate()?;
        std::fs::create_dir_all(data_dir).map_err(|e| {
            SpendError::Unavailable(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(JOURNAL_FILE);
        let owner =
            journal::lock_owner(data_dir, Duration::from_millis(limits.open_busy_timeout_ms))?;
        let (file, state) = journal::open(data_dir, &limits)?;
        if state.holds_len() > limits.holds_max || state.buckets_len() > limits.buckets_max {
            tracing::warn!(
                holds = state.holds_len(),
                buckets = state.buckets_len(),
                "the spend journal holds more than the configured limits; new holds are refused \
                 until it drains"
            );
        }
        let failure: Failure = Arc::new(OnceLock::new());
        let writer = Writer::new(
            file,
            limits.journal_queue_max,
            limits.journal_batch_max,
            Arc::clone(&failure),
            owner,
        );
        Ok(LocalSpend {
            state: Mutex::new(state),
            nonces: Mutex::new(NonceSet::new(limits.nonces_max)),
            failure,
            writer,
            limits,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn limits(&self) -> &LocalLimits {
        &self.limits
    }

    /// Commits everything still queued, then closes the file. Dropping a `LocalSpend` does the
    /// same (and every `Ok` was committed before it was answered).
    pub async fn close(self) -> Result<(), SpendError> {
        tokio::task::spawn_blocking(move || drop(self))
            .await
            .map_err(|e| SpendError::Unavailable(format!("closing the spend journal failed: {e}")))
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, SpendError> {
        if let Some(failure) = self.failure.get() {
            return Err(SpendError::Unavailable(failure.clone()));
        }
        self.state
            .lock()
            .map_err(|_| SpendError::Unavailable("spend state poisoned by an earlier panic".into()))
    }

    /// Runs `change` in the critical section with a journal slot already taken, and queues the
    /// journal operations it produced (even when it then fails: they describe what it did).
    /// Returns the change's value and, if anything was queued, the commit to wait for.
    fn submit<T>(
        &self,
        change: impl FnOnce(&mut State, &mut Vec<Op>) -> Result<T, SpendError>,
    ) -> Result<(T, Option<Commit>), SpendError> {
        let mut state = self.lock()?;
        self.writer.check_room()?;
        let mut ops = Vec::new();
        let result = change(&mut state, &mut ops);
        let commit = if ops.is_empty() {
            None
        } else {
            Some(self.writer.enqueue(ops)?)
        };
        drop(state);
        result.map(|value| (value, commit))
    }

    /// Commits the queue (unless another caller is committing it) and waits for this change's
    /// commit.
    async fn committed(&self, commit: Option<Commit>) -> Result<(), SpendError> {
        let Some(commit) = commit else {
            return Ok(());
        };
        self.writer.drive();
        let timeout = Duration::from_millis(self.limits.commit_timeout_ms);
        match tokio::time::timeout(timeout, commit).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(SpendError::Unavailable(
                "the spend journal closed before committing".into(),
            )),
            Err(_) => Err(SpendError::Unavailable(format!(
                "the spend journal did not commit within {} ms",
                self.limits.commit_timeout_ms
            ))),
        }
    }
}

#[async_trait]
impl SpendCache for LocalSpend {
    async fn reserve(&self, mut req: ReserveRequest) -> Result<ReserveOutcome, SpendError> {
        // The journal keeps microseconds; memory keeps the same instants, so a reopen is exact.
        req.now = req.now.trunc_subsecs(6);
        req.expires_at = req.expires_at.trunc_subsecs(6);
        let limits = &self.limits;
        let (outcome, commit) = self.submit(|state, ops| state.reserve(&req, limits, ops))?;
        self.committed(commit).await?;
        Ok(outcome)
    }

    async fn settle(
        &self,
        hold: &HoldKey,
        actual: Micros,
        _at: DateTime<Utc>,
    ) -> Result<Settlement, SpendError> {
        let id = hold.hold_id;
        let (settlement, commit) = self.submit(|state, ops| state.settle(id, actual, ops))?;
        self.committed(commit).await?;
        Ok(settlement)
    }

    async fn extend(&self, hold: &HoldKey, expires_at: DateTime<Utc>) -> Result<(), SpendError> {
        let (id, expires_at) = (hold.hold_id, expires_at.trunc_subsecs(6));
        let ((), commit) = self.submit(|state, ops| state.extend(id, expires_at, ops))?;
        self.committed(commit).await
    }

    /// One shard: a single process owns the journal, so there is nothing to spread.
    async fn expired(
        &self,
        _shard: u32,
        now: DateTime<Utc>,
        max: usize,
    ) -> Result<Vec<HoldInfo>, SpendError> {
        let (due, commit) = self.submit(|state, ops| Ok(state.expired(now, max, ops)))?;
        self.committed(commit).await?;
        Ok(due)
    }

    async fn spent(
        &self,
        _root: crate::core::agent::AgentId,
        policies: &[BudgetPolicy],
        now: DateTime<Utc>,
    ) -> Result<Vec<PolicyUsage>, SpendError> {
        let state = self.lock()?;
        Ok(policies.iter().map(|p| state.usage(p, now)).collect())
    }

    async fn list_holds(&self, max: usize) -> Result<Vec<HoldInfo>, SpendError> {
        Ok(self.lock()?.list_holds(max))
    }

    async fn remember_nonce(
        &self,
        nonce: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, SpendError> {
        let mut nonces = self
            .nonces
            .lock()
            .map_err(|_| SpendError::Unavailable("nonce set poisoned".into()))?;
        nonces.remember(nonce, expires_at, now)
    }

    async fn ping(&self) -> Result<(), SpendError> {
        // An empty entry still passes through a commit: the disk is checked too.
        let commit = {
            let _state = self.lock()?;
            self.writer.check_room()?;
            self.writer.enqueue(Vec::new())?
        };
        self.committed(Some(commit)).await
    }
}
