//! Tests of `LocalSpend`: the shared `SpendCache` conformance suite instantiated on it, plus what
//! only the local cache has (its limits, its journal file, kill -9, a model check).
//! Shared fixtures live here; each file covers one kind of behaviour.
#![allow(clippy::unwrap_used, clippy::panic)]

mod durability;
mod faults;
mod journal_file;
mod limits;
mod model;

use std::sync::Arc;

use async_trait::async_trait;

use crate::spend::conformance::Harness;
use crate::spend::{HoldInfo, HoldKey, SpendError};

/// `LocalSpend` in a temporary data directory; a restart drops it and opens the same journal.
pub(super) struct LocalHarness {
    dir: tempfile::TempDir,
}

#[async_trait]
impl Harness for LocalHarness {
    async fn open() -> (Self, Arc<dyn SpendCache>) {
        let dir = tempfile::tempdir().unwrap();
        let spend = open(&dir);
        (LocalHarness { dir }, Arc::new(spend))
    }

    async fn restart(&self, cache: Arc<dyn SpendCache>) -> Arc<dyn SpendCache> {
        drop(cache);
        Arc::new(open(&self.dir))
    }
}

crate::spend_conformance!(conformance, super::LocalHarness);

pub(super) use chrono::{DateTime, Utc};
pub(super) use uuid::Uuid;

use super::{LocalLimits, LocalSpend};
use crate::core::agent::Agent;
pub(super) use crate::core::money::Micros;
pub(super) use crate::core::policy::{BudgetPolicy, PolicyId, TimeWindow, WindowType};
pub(super) use crate::spend::conformance::{
    agent, child, daily, is_allowed, of_chain, policy, request, reserved, usage, utc,
};
pub(super) use crate::spend::{HoldId, ReserveOutcome, SpendCache};

/// Agent `1` is the root (team); `2` and `3` are its children.
pub(super) fn team() -> Agent {
    agent(1, None)
}

/// How the local tests address a hold: every chain here has agent `1` as its root.
pub(super) fn key(hold_id: HoldId) -> HoldKey {
    HoldKey {
        root_agent_id: team().id,
        hold_id,
    }
}

/// What a sweeper does with expired holds: reads them and settles each at its full amount.
pub(super) async fn take_expired(
    spend: &LocalSpend,
    now: DateTime<Utc>,
    max: usize,
) -> Result<Vec<HoldInfo>, SpendError> {
    let due = spend.expired(0, now, max).await?;
    for hold in &due {
        spend.settle(&hold.key(), hold.amount, now).await?;
    }
    Ok(due)
}

pub(super) fn open(dir: &tempfile::TempDir) -> LocalSpend {
    LocalSpend::open(dir.path(), LocalLimits::default()).unwrap()
}
