//! The behaviour every `SpendCache` must show, written once against the trait and instantiated
//! per implementation with `spend_conformance!` (the local cache in `local/tests`; Redis next),
//! so the embedded default cannot drift from production. Knows no implementation: a `Harness`
//! opens a fresh cache and restarts it.
#![allow(clippy::unwrap_used, clippy::panic)]

pub mod budget;
pub mod expiry;
pub mod race;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::core::agent::{Agent, AgentChain, AgentId, AgentStatus};
use crate::core::events::Source;
use crate::core::money::{Currency, Micros, Money};
use crate::core::policy::{BudgetPolicy, PolicyId, PolicySpec, TimeWindow, WindowType};
use crate::spend::{HoldId, Reservation, ReserveOutcome, ReserveRequest, SpendCache};

/// How the suite gets a cache of one implementation.
#[async_trait]
pub trait Harness: Send + Sync + Sized + 'static {
    /// A fresh, empty cache that no other test sees.
    async fn open() -> (Self, Arc<dyn SpendCache>);
    /// The same cache as a new process finds it after this one stopped (`cache` is the last
    /// handle): every acknowledged change is still there.
    async fn restart(&self, cache: Arc<dyn SpendCache>) -> Arc<dyn SpendCache>;
}

/// Instantiates every conformance test for one `Harness` type, as a module named `$name`.
#[macro_export]
macro_rules! spend_conformance {
    ($name:ident, $harness:ty) => {
        mod $name {
            use $crate::spend::conformance::{budget, expiry, race};
            $crate::spend_conformance!(@tests $harness;
                budget::the_limit_is_reachable_exactly_and_one_micro_more_is_denied,
                budget::a_parent_policy_caps_its_children_together,
                budget::settle_posts_the_actual_cost_below_or_above_the_hold,
                budget::settling_twice_or_an_unknown_hold_posts_nothing,
                budget::a_rolling_window_ages_spend_out_bucket_by_bucket,
                budget::a_calendar_daily_budget_resets_at_utc_midnight,
                budget::an_agent_without_active_policies_is_allowed_and_settles,
                budget::malformed_calls_change_nothing,
                expiry::expired_holds_are_read_not_removed_oldest_first,
                expiry::an_expired_hold_settles_exactly_once,
                expiry::extend_keeps_a_hold_alive_past_its_original_expiry,
                expiry::a_restart_keeps_settled_spend_and_live_holds,
                expiry::holds_carry_their_source_and_operation,
                expiry::reasserting_a_hold_never_doubles_or_resurrects_it);
            $crate::spend_conformance!(@races $harness;
                race::exactly_n_of_1000_concurrent_reservations_win_on_agent_and_parent,
                race::concurrent_reserves_and_settles_never_push_a_budget_over_its_limit);
        }
    };
    (@tests $harness:ty; $($test:ident :: $case:ident),+) => {
        $(
            #[tokio::test]
            async fn $case() {
                $test::$case::<$harness>().await
            }
        )+
    };
    (@races $harness:ty; $($test:ident :: $case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $test::$case::<$harness>().await
            }
        )+
    };
}

pub fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

pub fn agent(id: u128, parent: Option<u128>) -> Agent {
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
pub fn child(id: u128) -> AgentChain {
    AgentChain::new(vec![agent(id, Some(1)), agent(1, None)]).unwrap()
}

pub fn policy(
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

pub fn daily(id: u128, agent: u128, limit: i64) -> BudgetPolicy {
    policy(id, agent, limit, TimeWindow::Daily, WindowType::Calendar)
}

pub fn request(
    chain: &AgentChain,
    policies: &[BudgetPolicy],
    estimate: i64,
    now: DateTime<Utc>,
) -> ReserveRequest {
    ReserveRequest {
        hold_id: HoldId(Uuid::now_v7()),
        chain: chain.clone(),
        policies: policies.to_vec(),
        resource: "openai:gpt-4o".into(),
        source: Source::Gateway,
        operation: "chat.completions".into(),
        estimate: Money {
            micros: Micros(estimate),
            currency: Currency::USD,
        },
        now,
        expires_at: now + Duration::seconds(300),
    }
}

/// Reserves and expects the hold to be recorded.
pub async fn reserved(spend: &dyn SpendCache, req: ReserveRequest) -> Reservation {
    match spend.reserve(req).await.unwrap() {
        ReserveOutcome::Reserved(r) => r,
        ReserveOutcome::Denied(d) => panic!("expected a reservation, got {d:?}"),
    }
}

pub async fn is_allowed(spend: &dyn SpendCache, req: ReserveRequest) -> bool {
    matches!(
        spend.reserve(req).await.unwrap(),
        ReserveOutcome::Reserved(_)
    )
}

/// `(settled, reserved)` of each policy at `now`, in the order given.
pub async fn usage(
    spend: &dyn SpendCache,
    policies: &[BudgetPolicy],
    now: DateTime<Utc>,
) -> Vec<(i64, i64)> {
    spend
        .spent(agent(1, None).id, policies, now)
        .await
        .unwrap()
        .iter()
        .map(|u| (u.settled.get(), u.reserved.get()))
        .collect()
}

/// The policies of `chain`'s members: what the store's `load_chain` hands the admission core.
pub fn of_chain(all: &[BudgetPolicy], chain: &AgentChain) -> Vec<BudgetPolicy> {
    all.iter()
        .filter(|p| chain.members().iter().any(|a| a.id == p.agent_id))
        .cloned()
        .collect()
}

/// A record with nothing in it: a cache rebuilt from it starts every policy at zero.
pub struct NothingRecorded;

#[async_trait]
impl crate::spend::SpendRecord for NothingRecorded {
    async fn recorded(
        &self,
        _policy: &BudgetPolicy,
        _now: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, Micros)>, crate::spend::SpendError> {
        Ok(Vec::new())
    }
}

/// Every expired hold of every shard at `now`.
pub async fn all_expired(
    spend: &dyn SpendCache,
    now: DateTime<Utc>,
) -> Vec<crate::spend::HoldInfo> {
    let mut due = Vec::new();
    for shard in 0..spend.expiry_shards() {
        due.extend(spend.expired(shard, now, 10_000).await.unwrap());
    }
    due.sort_by_key(|h| (h.expires_at, h.hold_id));
    due
}
