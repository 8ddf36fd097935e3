//! Redis is a cache, the record (ledger and unapplied metering events) is the truth: how a
//! Redis that lost its data is found and rebuilt. An epoch key, started by whoever finds it
//! absent, names the data's lifetime; each policy hash carries the epoch it was seeded in, and a
//! reservation on a policy not seeded in the current epoch seeds it from the record first (one
//! script, once per epoch, never added on top). After a new epoch every process waits
//! `rebuild_grace_ms` before it reserves, so every live replica has re-asserted its holds.
//! Owns the epoch view and the seeding; knows nothing of where the record comes from.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fred::prelude::Value;
use uuid::Uuid;

use super::codec::info_fields;
use super::{exact, hold_key, micros, policy_prefix, unavailable, RedisSpend};
use crate::core::agent::AgentId;
use crate::core::policy::BudgetPolicy;
use crate::spend::{EpochState, HoldInfo, HoldKey, SpendError};

/// The key naming the lifetime of the data in Redis.
pub(super) const EPOCH_KEY: &str = "caracal:epoch";
/// Reads of the record per policy before a seeding that keeps being overtaken by settlements
/// gives up (the call is refused with 503; the next one tries again).
const SEED_ATTEMPTS_MAX: usize = 5;

/// What this process knows of the epoch.
#[derive(Debug)]
pub(super) struct EpochView {
    known: Option<String>,
    generation: u64,
    admit_after: Instant,
}

impl EpochView {
    pub(super) fn new() -> EpochView {
        EpochView {
            known: None,
            generation: 0,
            admit_after: Instant::now(),
        }
    }

    /// Takes in the epoch read from Redis (`started` when this read began it); a new one moves
    /// the generation and, unless it is the first this process sees of an epoch it did not
    /// start, holds reservations back for `grace`.
    pub(super) fn observe(&mut self, epoch: &str, started: bool, grace: Duration) -> EpochState {
        if self.known.as_deref() != Some(epoch) {
            let first = self.known.is_none();
            self.known = Some(epoch.to_owned());
            self.generation += 1;
            if started || !first {
                self.admit_after = Instant::now() + grace;
            }
        }
        self.state()
    }

    pub(super) fn state(&self) -> EpochState {
        EpochState {
            generation: self.generation,
            admitting: self.known.is_some() && Instant::now() >= self.admit_after,
        }
    }

    /// The epoch to reserve in, if reservations are allowed now.
    pub(super) fn admitting(&self) -> Option<String> {
        self.state().admitting.then(|| self.known.clone()).flatten()
    }
}

fn view(lock: &Mutex<EpochView>) -> std::sync::MutexGuard<'_, EpochView> {
    lock.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a reservation is refused while the data is rebuilt.
pub(super) fn rebuilding() -> SpendError {
    SpendError::Unavailable(
        "redis lost its data (new epoch): waiting for every gateway to re-assert its holds before \
         spend is rebuilt from the ledger"
            .into(),
    )
}

impl RedisSpend {
    /// Reads the epoch (starting one when Redis has none) and takes it in.
    pub(super) async fn observe_epoch(&self) -> Result<EpochState, SpendError> {
        let fresh = Uuid::now_v7().to_string();
        let reply = self
            .run(&self.scripts.epoch, vec![EPOCH_KEY.into()], vec![fresh])
            .await?
            .into_array();
        let epoch = reply.first().and_then(Value::as_string).unwrap_or_default();
        if epoch.is_empty() {
            return Err(SpendError::Corrupt("redis epoch key is empty".into()));
        }
        let started = reply.get(1).and_then(Value::as_i64) == Some(1);
        let grace = Duration::from_millis(self.limits.rebuild_grace_ms);
        let state = view(&self.epoch).observe(&epoch, started, grace);
        if started {
            tracing::warn!(%epoch, "redis has no spend epoch (new, or it lost its data): spend is rebuilt from the ledger");
        }
        Ok(state)
    }

    /// The epoch to reserve in; `Unavailable` while the data is being rebuilt.
    pub(super) fn admitting_epoch(&self) -> Result<String, SpendError> {
        view(&self.epoch).admitting().ok_or_else(rebuilding)
    }

    /// Seeds each of `policies` of `root`'s tree from the record, after checking that the epoch
    /// did not change under this process (then it refuses, and waits out the grace first).
    pub(super) async fn seed(
        &self,
        root: AgentId,
        policies: &[BudgetPolicy],
        now: DateTime<Utc>,
    ) -> Result<(), SpendError> {
        // One seeding at a time in this process: a burst of calls on an unseeded policy reads
        // the record once, the others find the policy seeded.
        let _one = self.seeding.lock().await;
        if !self.observe_epoch().await?.admitting {
            return Err(rebuilding());
        }
        let epoch = self.admitting_epoch()?;
        for policy in policies {
            self.seed_policy(root, policy, &epoch, now).await?;
        }
        Ok(())
    }

    async fn seed_policy(
        &self,
        root: AgentId,
        policy: &BudgetPolicy,
        epoch: &str,
        now: DateTime<Utc>,
    ) -> Result<(), SpendError> {
        let key = format!("{}{}", policy_prefix(root), policy.id);
        for _ in 0..SEED_ATTEMPTS_MAX {
            let state = self
                .run(&self.scripts.version, vec![key.clone()], vec![])
                .await?
                .into_array();
            let text = |i: usize| state.get(i).and_then(Value::as_string).unwrap_or_default();
            if text(1) == epoch {
                return Ok(());
            }
            let version = text(0);
            let recorded = self.record.recorded(policy, now).await?;
            let mut args = vec![epoch.to_owned(), version];
            for (bucket, amount) in recorded.iter().filter(|(_, a)| a.get() > 0) {
                args.push(micros(*bucket).to_string());
                args.push(exact("recorded spend", amount.get())?);
            }
            let reply = self
                .run(&self.scripts.seed, vec![key.clone()], args)
                .await?;
            match reply.as_string().as_deref() {
                Some("done") => {
                    tracing::info!(policy = %policy.id, buckets = recorded.len(), "policy spend rebuilt from the record");
                    return Ok(());
                }
                Some("seeded") => return Ok(()),
                _ => continue, // settled meanwhile: read the record again
            }
        }
        Err(unavailable(format!(
            "policy {} kept being settled while its spend was rebuilt; try again",
            policy.id
        )))
    }

    /// Records `hold` again unless it is there or was settled lately; its expiry entry first.
    pub(super) async fn reassert_hold(&self, hold: &HoldInfo) -> Result<bool, SpendError> {
        let key = hold.key();
        let client = self.pool.next();
        let mut args = vec![policy_prefix(key.root_agent_id)];
        args.extend(info_fields(hold));
        let keys = vec![hold_key(&key), tombstone_key(&key)];
        let (indexed, reply) = tokio::join!(
            self.set_index_on(client, &key, micros(hold.expires_at)),
            super::run_on(client, &self.scripts.reassert, keys, args)
        );
        indexed?;
        Ok(reply?.as_i64() == Some(1))
    }
}

/// The tombstone a settlement leaves for a while.
pub(super) fn tombstone_key(key: &HoldKey) -> String {
    format!("{}:t:{}", super::tree(key.root_agent_id), key.hold_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_epoch_holds_reservations_back_unless_it_is_the_first_one_seen_and_not_started_here() {
        let grace = Duration::from_secs(60);
        let mut joined = EpochView::new();
        assert!(!joined.state().admitting, "no epoch known yet");
        let state = joined.observe("a", false, grace);
        assert_eq!(state.generation, 1);
        assert!(state.admitting, "joining a live epoch waits for nothing");
        assert_eq!(joined.observe("a", false, grace).generation, 1);
        let lost = joined.observe("b", false, grace);
        assert_eq!(lost.generation, 2);
        assert!(!lost.admitting, "a changed epoch waits for the holds");
        assert_eq!(joined.admitting(), None);

        let mut starter = EpochView::new();
        assert!(!starter.observe("c", true, grace).admitting);
        let mut quick = EpochView::new();
        assert!(quick.observe("d", true, Duration::ZERO).admitting);
        assert_eq!(quick.admitting().as_deref(), Some("d"));
    }
}
