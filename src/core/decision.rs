//! The budget decision over an agent's whole chain: given each policy's spend in its current
//! frame, may a call to `resource` costing about `estimate` go ahead, and if not, why.
//! Pure: reads no clock, no store and no cache; callers load the usage and reserve afterwards.
//!
//! Rules, in order of precedence (the first that fails names the reason):
//! 1. every agent on the chain is active, else `agent_suspended` (no deciding policy);
//! 2. every active policy with a non-empty allowlist has a pattern matching `resource`, else
//!    `resource_not_allowed` naming the first such policy in evaluation order;
//! 3. every active policy is in the estimate's currency, else `currency_mismatch`;
//! 4. every active policy satisfies `settled + reserved + estimate <= limit` (checked i64
//!    arithmetic; an overflow fails), else `budget_exceeded` naming the tightest failing policy
//!    (least `limit - settled - reserved`, first in evaluation order on a tie).
//!
//! Inactive policies are ignored entirely. Policies of every chain member count; a policy whose
//! agent is not on the chain is still counted (fail closed) and ordered after the chain's. An
//! agent with no active policy is allowed: budgets are opt-in (DESIGN §3, "for every policy").
//! A negative estimate is treated as zero, so it can never make room under a limit.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::core::agent::{AgentChain, AgentId};
use crate::core::glob::glob_match_any;
use crate::core::money::{Micros, Money};
use crate::core::policy::{BudgetPolicy, PolicyId, TimeWindow};
use crate::core::window::WindowFrame;

/// One policy of the chain with the spend already counted in its current frame.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyUsage {
    pub policy: BudgetPolicy,
    pub frame: WindowFrame,
    /// Settled spend in `frame`.
    pub settled: Micros,
    /// Spend reserved by calls in flight in `frame`.
    pub reserved: Micros,
}

/// Why a call is denied; `as_str` is the machine code clients and metrics see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    BudgetExceeded,
    ResourceNotAllowed,
    AgentSuspended,
    UnknownPrice,
    Unauthenticated,
    CurrencyMismatch,
}

impl DenyReason {
    pub const ALL: [DenyReason; 6] = [
        DenyReason::BudgetExceeded,
        DenyReason::ResourceNotAllowed,
        DenyReason::AgentSuspended,
        DenyReason::UnknownPrice,
        DenyReason::Unauthenticated,
        DenyReason::CurrencyMismatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::BudgetExceeded => "budget_exceeded",
            DenyReason::ResourceNotAllowed => "resource_not_allowed",
            DenyReason::AgentSuspended => "agent_suspended",
            DenyReason::UnknownPrice => "unknown_price",
            DenyReason::Unauthenticated => "unauthenticated",
            DenyReason::CurrencyMismatch => "currency_mismatch",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One active policy as evaluated; mirrors an entry of the PolicyDecision event's `policies[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyEvaluation {
    pub policy_id: PolicyId,
    pub policy_version: i64,
    pub agent_id: AgentId,
    pub time_window: TimeWindow,
    pub window_start: DateTime<Utc>,
    pub limit: Micros,
    /// Settled spend in the frame.
    pub spent: Micros,
    pub reserved: Micros,
    /// `limit - spent - reserved` before this call's estimate, clamped to `0..=i64::MAX`: an
    /// overspent policy (settlement above its reservations) reports 0, not a negative budget;
    /// the overspend stays visible as `spent + reserved > limit`.
    pub remaining: Micros,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    /// Why the call is denied; `None` when allowed.
    pub reason: Option<DenyReason>,
    /// The policy that decided a denial; `None` when allowed or when the agent is suspended.
    pub policy_id: Option<PolicyId>,
    /// The smallest `remaining` over the evaluations; `None` when no active policy applies.
    pub remaining: Option<Micros>,
    /// Active policies in evaluation order: chain order (agent first), then policy id.
    pub evaluations: Vec<PolicyEvaluation>,
    /// `None` when no active policy has an allowlist, else whether every allowlist matched.
    pub allowlist_match: Option<bool>,
}

/// Decides a call by `chain.agent()` to `resource` ("provider:model" or "mcp:server/tool")
/// estimated at `estimate`, against `policies` of every chain member (see the module doc).
pub fn decide(
    chain: &AgentChain,
    policies: &[PolicyUsage],
    resource: &str,
    estimate: Money,
) -> Decision {
    let active = ordered_active(chain, policies);
    let evaluations: Vec<PolicyEvaluation> = active.iter().map(|u| evaluate(u)).collect();
    let remaining = evaluations.iter().map(|e| e.remaining).min();
    let (allowlist_match, not_allowed_by) = allowlist_verdict(&active, resource);
    let deny = |reason, policy_id| Decision {
        allowed: false,
        reason: Some(reason),
        policy_id,
        remaining,
        evaluations: evaluations.clone(),
        allowlist_match,
    };

    if chain.first_inactive().is_some() {
        return deny(DenyReason::AgentSuspended, None);
    }
    if let Some(id) = not_allowed_by {
        return deny(DenyReason::ResourceNotAllowed, Some(id));
    }
    if let Some(u) = active
        .iter()
        .find(|u| u.policy.spec.currency != estimate.currency)
    {
        return deny(DenyReason::CurrencyMismatch, Some(u.policy.id));
    }
    let cost = estimate.micros.max(Micros::ZERO);
    if let Some(id) = tightest_failing(&active, cost) {
        return deny(DenyReason::BudgetExceeded, Some(id));
    }

    debug_assert!(
        active.iter().all(|u| fits(u, cost)),
        "an allowed call must fit every active policy"
    );
    Decision {
        allowed: true,
        reason: None,
        policy_id: None,
        remaining,
        evaluations,
        allowlist_match,
    }
}

/// Active policies ordered by their agent's position on the chain (policies of agents not on
/// the chain last, by agent id), then by policy id.
fn ordered_active<'a>(chain: &AgentChain, policies: &'a [PolicyUsage]) -> Vec<&'a PolicyUsage> {
    let members = chain.members();
    let position = |agent: AgentId| {
        members
            .iter()
            .position(|a| a.id == agent)
            .unwrap_or(members.len())
    };
    let mut active: Vec<&PolicyUsage> = policies.iter().filter(|u| u.policy.spec.active).collect();
    active.sort_by_key(|u| (position(u.policy.agent_id), u.policy.agent_id, u.policy.id));
    active
}

fn evaluate(usage: &PolicyUsage) -> PolicyEvaluation {
    let policy = &usage.policy;
    PolicyEvaluation {
        policy_id: policy.id,
        policy_version: policy.version,
        agent_id: policy.agent_id,
        time_window: policy.spec.time_window,
        window_start: usage.frame.start,
        limit: policy.spec.limit_micros,
        spent: usage.settled,
        reserved: usage.reserved,
        remaining: Micros(clamp_to_i64(headroom(usage).max(0))),
    }
}

/// `(allowlist_match, first policy whose allowlist rejects resource)`.
fn allowlist_verdict(active: &[&PolicyUsage], resource: &str) -> (Option<bool>, Option<PolicyId>) {
    let mut listed = active
        .iter()
        .filter(|u| !u.policy.spec.allow.is_empty())
        .peekable();
    if listed.peek().is_none() {
        return (None, None);
    }
    let rejecting = listed
        .find(|u| !glob_match_any(&u.policy.spec.allow, resource))
        .map(|u| u.policy.id);
    (Some(rejecting.is_none()), rejecting)
}

/// Whether `settled + reserved + cost <= limit`, in checked arithmetic (overflow does not fit).
fn fits(usage: &PolicyUsage, cost: Micros) -> bool {
    usage
        .settled
        .checked_add(usage.reserved)
        .and_then(|sum| sum.checked_add(cost))
        .is_ok_and(|total| total <= usage.policy.spec.limit_micros)
}

/// The failing policy with the least headroom; the first in order on a tie.
fn tightest_failing(active: &[&PolicyUsage], cost: Micros) -> Option<PolicyId> {
    let mut tightest: Option<(i128, PolicyId)> = None;
    for usage in active.iter().filter(|u| !fits(u, cost)) {
        let room = headroom(usage);
        if tightest.is_none_or(|(least, _)| room < least) {
            tightest = Some((room, usage.policy.id));
        }
    }
    tightest.map(|(_, id)| id)
}

/// `limit - settled - reserved`, exact (i128 cannot overflow on three i64s).
fn headroom(usage: &PolicyUsage) -> i128 {
    i128::from(usage.policy.spec.limit_micros.get())
        - i128::from(usage.settled.get())
        - i128::from(usage.reserved.get())
}

fn clamp_to_i64(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests;
