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

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{LocalLimits, LocalSpend};
use crate::core::agent::{Agent, AgentChain, AgentId, AgentStatus};
use crate::core::money::{Currency, Micros, Money};
use crate::core::policy::{BudgetPolicy, PolicyId, PolicySpec, TimeWindow, WindowType};
use crate::spend::{HoldId, Reservation, ReserveOutcome, ReserveRequest, SpendCache};

pub(super) fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

pub(super) fn agent(id: u128, parent: Option<u128>) -> Agent {
    Agent {
        id: AgentId(Uuid::from_u128(id)),
        name: format!("agent-{id}"),
        agent_type: "worker".into(),
        parent_id: parent.map(|p| AgentId(Uuid::from_u128(p))),
        status: AgentStatus::Active,
        metadata: Default::default(),
        created_at: DateTime::<Utc>::UNIX_EPOCH,
        updated_at: DateTime::<Utc>::UNIX_EPOCH,
    }
}

/// Agent `1` is the root (team); `2` and `3` are its children.
pub(super) fn team() -> Agent {
    agent(1, None)
}

pub(super) fn child(id: u128) -> AgentChain {
    AgentChain::new(vec![agent(id, Some(1)), team()]).unwrap()
}

pub(super) fn policy(
    id: u128,
    agent: u128,
    limit: i64,
    window: TimeWindow,
    kind: WindowType,
) -> BudgetPolicy {
    BudgetPolicy {
        id: PolicyId(Uuid::from_u128(id)),
        agent_id: AgentId(Uuid::from_u128(agent)),
        version: 1,
        spec: PolicySpec {
            limit_micros: Micros(limit),
            currency: Currency::USD,
            time_window: window,
            window_type: kind,
            allow: vec![],
            active: true,
        },
        created_at: DateTime::<Utc>::UNIX_EPOCH,
        updated_at: DateTime::<Utc>::UNIX_EPOCH,
    }
}

pub(super) fn daily(id: u128, agent: u128, limit: i64) -> BudgetPolicy {
    policy(id, agent, limit, TimeWindow::Daily, WindowType::Calendar)
}

pub(super) fn usd(micros: i64) -> Money {
    Money {
        micros: Micros(micros),
        currency: Currency::USD,
    }
}

pub(super) fn request(
    chain: &AgentChain,
    policies: &[BudgetPolicy],
    estimate: i64,
    now: DateTime<Utc>,
) -> ReserveRequest {
    ReserveRequest {
        hold_id: HoldId(Uuid::new_v4()),
        chain: chain.clone(),
        policies: policies.to_vec(),
        resource: "openai:gpt-4o".into(),
        source: crate::core::events::Source::Gateway,
        operation: "chat.completions".into(),
        estimate: usd(estimate),
        now,
        expires_at: now + Duration::seconds(300),
    }
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

/// Reserves and expects the hold to be recorded.
pub(super) async fn reserved(spend: &LocalSpend, req: ReserveRequest) -> Reservation {
    match spend.reserve(req).await.unwrap() {
        ReserveOutcome::Reserved(r) => r,
        ReserveOutcome::Denied(d) => panic!("expected a reservation, got {d:?}"),
    }
}

pub(super) async fn is_allowed(spend: &LocalSpend, req: ReserveRequest) -> bool {
    matches!(
        spend.reserve(req).await.unwrap(),
        ReserveOutcome::Reserved(_)
    )
}

/// `(settled, reserved)` of each policy at `now`, in the order given.
pub(super) async fn usage(
    spend: &LocalSpend,
    policies: &[BudgetPolicy],
    now: DateTime<Utc>,
) -> Vec<(i64, i64)> {
    spend
        .spent(team().id, policies, now)
        .await
        .unwrap()
        .iter()
        .map(|u| (u.settled.get(), u.reserved.get()))
        .collect()
}

/// The policies of `chain`'s members: what the store's `load_chain` hands the gateway.
pub(super) fn of_chain(all: &[BudgetPolicy], chain: &AgentChain) -> Vec<BudgetPolicy> {
    all.iter()
        .filter(|p| chain.members().iter().any(|a| a.id == p.agent_id))
        .cloned()
        .collect()
}
