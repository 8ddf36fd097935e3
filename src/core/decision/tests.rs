//! Tests of `decide`: the precedence of deny reasons, exact limits, the chain's budgets and
//! allowlists, and a property that an allowed call fits every active policy.
//! Fixtures only build plain data; nothing here reads a clock or a store.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::core::agent::{Agent, AgentStatus};
use crate::core::money::Currency;
use crate::core::policy::{PolicySpec, WindowType};
use crate::core::window::current_frame;
use proptest::prelude::*;
use uuid::Uuid;

const CHILD: u128 = 3;
const TEAM: u128 = 2;
const ORG: u128 = 1;
const MODEL: &str = "openai:gpt-4o-mini";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-10T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn agent(id: u128, parent: Option<u128>, status: AgentStatus) -> Agent {
    Agent {
        id: AgentId(Uuid::from_u128(id)),
        name: format!("agent-{id}"),
        agent_type: "worker".into(),
        parent_id: parent.map(|p| AgentId(Uuid::from_u128(p))),
        status,
        metadata: Default::default(),
        created_at: now(),
        updated_at: now(),
    }
}

/// child → team → org, all active unless `suspended` names one of them.
fn chain_with(suspended: Option<u128>) -> AgentChain {
    let status = |id| {
        if suspended == Some(id) {
            AgentStatus::Suspended
        } else {
            AgentStatus::Active
        }
    };
    AgentChain::new(vec![
        agent(CHILD, Some(TEAM), status(CHILD)),
        agent(TEAM, Some(ORG), status(TEAM)),
        agent(ORG, None, status(ORG)),
    ])
    .unwrap()
}

fn chain() -> AgentChain {
    chain_with(None)
}

/// An active daily USD policy `id` of agent `owner` with `limit` and `settled` spend.
fn usage(id: u128, owner: u128, limit: i64, settled: i64, reserved: i64) -> PolicyUsage {
    let spec = PolicySpec {
        limit_micros: Micros(limit),
        currency: Currency::USD,
        time_window: TimeWindow::Daily,
        window_type: WindowType::Calendar,
        allow: vec![],
        active: true,
    };
    PolicyUsage {
        policy: BudgetPolicy {
            id: PolicyId(Uuid::from_u128(id)),
            agent_id: AgentId(Uuid::from_u128(owner)),
            version: 1,
            spec,
            created_at: now(),
            updated_at: now(),
        },
        frame: current_frame(TimeWindow::Daily, WindowType::Calendar, now()),
        settled: Micros(settled),
        reserved: Micros(reserved),
    }
}

fn with_allow(mut u: PolicyUsage, allow: &[&str]) -> PolicyUsage {
    u.policy.spec.allow = allow.iter().map(|s| s.to_string()).collect();
    u
}

fn usd(micros: i64) -> Money {
    Money {
        micros: Micros(micros),
        currency: Currency::USD,
    }
}

fn pid(id: u128) -> Option<PolicyId> {
    Some(PolicyId(Uuid::from_u128(id)))
}

#[test]
fn allows_the_call_that_lands_exactly_on_the_limit() {
    let d = decide(
        &chain(),
        &[usage(10, CHILD, 1_000, 600, 300)],
        MODEL,
        usd(100),
    );
    assert!(d.allowed);
    assert_eq!((d.reason, d.policy_id), (None, None));
    assert_eq!(d.remaining, Some(Micros(100)));
}

#[test]
fn denies_the_call_one_micro_over_the_limit() {
    let d = decide(
        &chain(),
        &[usage(10, CHILD, 1_000, 600, 300)],
        MODEL,
        usd(101),
    );
    assert!(!d.allowed);
    assert_eq!(d.reason, Some(DenyReason::BudgetExceeded));
    assert_eq!(d.policy_id, pid(10));
    assert_eq!(d.remaining, Some(Micros(100)));
}

#[test]
fn denies_the_call_that_would_cross_the_parent_budget() {
    let policies = [
        usage(10, CHILD, 10_000_000, 0, 0),
        usage(20, TEAM, 5_000_000, 4_900_000, 50_000),
    ];
    let d = decide(&chain(), &policies, MODEL, usd(60_000));
    assert_eq!(d.reason, Some(DenyReason::BudgetExceeded));
    assert_eq!(d.policy_id, pid(20));
    assert_eq!(d.remaining, Some(Micros(50_000)));
    assert!(decide(&chain(), &policies, MODEL, usd(50_000)).allowed);
}

#[test]
fn names_the_tightest_of_several_failing_policies() {
    let policies = [
        usage(10, CHILD, 1_000, 900, 0),
        usage(20, TEAM, 1_000, 990, 0),
        usage(30, ORG, 1_000, 950, 0),
    ];
    let d = decide(&chain(), &policies, MODEL, usd(200));
    assert_eq!(
        (d.reason, d.policy_id),
        (Some(DenyReason::BudgetExceeded), pid(20))
    );
}

#[test]
fn a_suspended_parent_suspends_the_agent_whatever_its_budget() {
    let d = decide(
        &chain_with(Some(TEAM)),
        &[usage(10, CHILD, 1_000, 0, 0)],
        MODEL,
        usd(1),
    );
    assert!(!d.allowed);
    assert_eq!(
        (d.reason, d.policy_id),
        (Some(DenyReason::AgentSuspended), None)
    );
    assert_eq!(d.evaluations.len(), 1);
}

#[test]
fn an_allowlist_on_the_parent_binds_the_child() {
    let policies = [
        usage(10, CHILD, 1_000, 0, 0),
        with_allow(usage(20, ORG, 1_000, 0, 0), &["anthropic:*"]),
    ];
    let d = decide(&chain(), &policies, MODEL, usd(1));
    assert_eq!(
        (d.reason, d.policy_id),
        (Some(DenyReason::ResourceNotAllowed), pid(20))
    );
    assert_eq!(d.allowlist_match, Some(false));
    let d = decide(&chain(), &policies, "anthropic:claude-sonnet-4", usd(1));
    assert!(d.allowed);
    assert_eq!(d.allowlist_match, Some(true));
}

#[test]
fn every_allowlist_on_the_chain_must_match() {
    let policies = [
        with_allow(usage(10, CHILD, 1_000, 0, 0), &["openai:*", "mcp:search/*"]),
        with_allow(usage(20, TEAM, 1_000, 0, 0), &["*:gpt-4o*"]),
    ];
    assert!(decide(&chain(), &policies, MODEL, usd(1)).allowed);
    let d = decide(&chain(), &policies, "mcp:search/web", usd(1));
    assert_eq!(
        (d.reason, d.policy_id),
        (Some(DenyReason::ResourceNotAllowed), pid(20))
    );
}

#[test]
fn without_any_allowlist_the_match_is_not_reported() {
    let d = decide(
        &chain(),
        &[usage(10, CHILD, 1_000, 0, 0)],
        "mcp:files/read",
        usd(1),
    );
    assert!(d.allowed);
    assert_eq!(d.allowlist_match, None);
}

#[test]
fn an_inactive_policy_is_ignored() {
    let mut exhausted = with_allow(usage(20, TEAM, 1_000, 1_000, 0), &["anthropic:*"]);
    exhausted.policy.spec.active = false;
    let d = decide(
        &chain(),
        &[usage(10, CHILD, 1_000, 0, 0), exhausted],
        MODEL,
        usd(500),
    );
    assert!(d.allowed);
    assert_eq!(d.evaluations.len(), 1);
    assert_eq!(d.allowlist_match, None);
}

#[test]
fn a_policy_in_another_currency_denies_with_currency_mismatch() {
    let mut eur = usage(20, TEAM, 1_000_000, 0, 0);
    eur.policy.spec.currency = Currency::parse("EUR").unwrap();
    let d = decide(
        &chain(),
        &[usage(10, CHILD, 1_000_000, 0, 0), eur],
        MODEL,
        usd(1),
    );
    assert_eq!(
        (d.reason, d.policy_id),
        (Some(DenyReason::CurrencyMismatch), pid(20))
    );
}

#[test]
fn a_forbidden_resource_outranks_an_exhausted_budget() {
    let policies = [with_allow(
        usage(10, CHILD, 1_000, 1_000, 0),
        &["anthropic:*"],
    )];
    let d = decide(&chain(), &policies, MODEL, usd(1));
    assert_eq!(d.reason, Some(DenyReason::ResourceNotAllowed));
}

#[test]
fn an_overflowing_sum_is_denied_not_wrapped() {
    let d = decide(
        &chain(),
        &[usage(10, CHILD, i64::MAX, i64::MAX, 0)],
        MODEL,
        usd(1),
    );
    assert_eq!(
        (d.reason, d.policy_id),
        (Some(DenyReason::BudgetExceeded), pid(10))
    );
    let d = decide(
        &chain(),
        &[usage(10, CHILD, i64::MAX, i64::MAX - 1, 0)],
        MODEL,
        usd(1),
    );
    assert!(d.allowed);
}

#[test]
fn a_negative_estimate_makes_no_room_under_a_limit() {
    let d = decide(
        &chain(),
        &[usage(10, CHILD, 1_000, 1_001, 0)],
        MODEL,
        usd(-5),
    );
    assert_eq!(d.reason, Some(DenyReason::BudgetExceeded));
}

#[test]
fn an_overspent_policy_reports_zero_remaining() {
    let d = decide(
        &chain(),
        &[usage(10, CHILD, 1_000, 1_200, 300)],
        MODEL,
        usd(0),
    );
    assert_eq!(d.evaluations[0].remaining, Micros::ZERO);
    assert_eq!(d.remaining, Some(Micros::ZERO));
    assert!(!d.allowed);
}

#[test]
fn an_agent_without_active_policies_is_allowed() {
    let d = decide(&chain(), &[], MODEL, usd(1_000_000));
    assert!(d.allowed);
    assert_eq!((d.remaining, d.allowlist_match), (None, None));
}

#[test]
fn evaluations_follow_the_chain_then_the_policy_id() {
    let policies = [
        usage(31, ORG, 1, 0, 0),
        usage(12, CHILD, 1, 0, 0),
        usage(99, 77, 1, 0, 0),
        usage(21, TEAM, 1, 0, 0),
        usage(11, CHILD, 1, 0, 0),
    ];
    let d = decide(&chain(), &policies, MODEL, usd(0));
    let order: Vec<PolicyId> = d.evaluations.iter().map(|e| e.policy_id).collect();
    let expected: Vec<PolicyId> = [11, 12, 21, 31, 99]
        .map(|i| PolicyId(Uuid::from_u128(i)))
        .to_vec();
    assert_eq!(order, expected);
}

#[test]
fn an_evaluation_mirrors_the_policy_decision_event_entry() {
    let d = decide(&chain(), &[usage(10, TEAM, 1_000, 250, 125)], MODEL, usd(1));
    let e = &d.evaluations[0];
    assert_eq!(
        (e.policy_id, e.policy_version, e.agent_id),
        (pid(10).unwrap(), 1, AgentId(Uuid::from_u128(TEAM)))
    );
    assert_eq!(
        (e.time_window, e.window_start),
        (TimeWindow::Daily, now() - chrono::Duration::hours(12))
    );
    assert_eq!(
        (e.limit, e.spent, e.reserved, e.remaining),
        (Micros(1_000), Micros(250), Micros(125), Micros(625))
    );
}

#[test]
fn deny_reasons_have_their_machine_codes() {
    let codes = [
        "budget_exceeded",
        "resource_not_allowed",
        "agent_suspended",
        "unknown_price",
        "unauthenticated",
        "currency_mismatch",
    ];
    for (reason, code) in DenyReason::ALL.into_iter().zip(codes) {
        assert_eq!(reason.as_str(), code);
        assert_eq!(reason.to_string(), code);
        assert_eq!(
            serde_json::to_value(reason).unwrap(),
            serde_json::json!(code)
        );
        assert_eq!(
            serde_json::from_value::<DenyReason>(serde_json::json!(code)).unwrap(),
            reason
        );
    }
}

/// Up to 7 policies with distinct ids spread over the chain, some inactive, some at i64::MAX.
fn arb_policies() -> impl Strategy<Value = Vec<PolicyUsage>> {
    let amount = prop_oneof![0i64..2_000, Just(i64::MAX), Just(i64::MAX - 1)];
    let one = (
        prop::sample::select(vec![CHILD, TEAM, ORG]),
        amount,
        0i64..2_000,
        0i64..2_000,
        any::<bool>(),
    );
    prop::collection::vec(one, 0..8).prop_map(|specs| {
        let numbered = specs.into_iter().zip(100u128..);
        numbered
            .map(|((owner, limit, settled, reserved, active), id)| {
                let mut u = usage(id, owner, limit, settled, reserved);
                u.policy.spec.active = active;
                u
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn an_allowed_call_keeps_every_active_policy_within_its_limit(
        policies in arb_policies(),
        estimate in prop_oneof![0i64..3_000, Just(i64::MAX)],
    ) {
        let d = decide(&chain(), &policies, MODEL, usd(estimate));
        let within = |u: &PolicyUsage| {
            i128::from(u.settled.get()) + i128::from(u.reserved.get()) + i128::from(estimate)
                <= i128::from(u.policy.spec.limit_micros.get())
        };
        let all_within = policies.iter().filter(|u| u.policy.spec.active).all(within);
        prop_assert_eq!(d.allowed, all_within);
        prop_assert_eq!(d.allowed, d.reason.is_none());
        prop_assert_eq!(d.evaluations.len(), policies.iter().filter(|u| u.policy.spec.active).count());
        if !d.allowed {
            let decider = policies.iter().find(|u| Some(u.policy.id) == d.policy_id && u.policy.spec.active);
            prop_assert!(decider.is_some_and(|u| !within(u)));
        }
    }
}
