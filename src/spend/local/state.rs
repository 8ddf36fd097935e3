//! The in-memory spend state of `LocalSpend`: settled micros per (policy, bucket), live holds and
//! the per-bucket sums of what they reserve. Pure: no I/O, no lock, no clock. Every change appends
//! the journal operations that make it durable, in order, and validates before it mutates.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};

use super::journal::Op;
use super::LocalLimits;
use crate::core::decision::{decide, Decision, PolicyUsage};
use crate::core::money::Micros;
use crate::core::policy::{BudgetPolicy, PolicyId, TimeWindow, WindowType};
use crate::core::window::{charge_bucket, current_frame};
use crate::spend::{
    HoldId, HoldInfo, Reservation, ReserveOutcome, ReserveRequest, Settlement, SpendError,
};

/// Buckets are pruned against the frame at `now - PRUNE_LAG_SECS`, so an operation that carries a
/// slightly older `now` (it queued for the lock) still finds every bucket its frame counts.
const PRUNE_LAG_SECS: i64 = 300;

/// What live holds reserve in one bucket, and how many of them do (an estimate may be zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reserved {
    micros: Micros,
    holds: usize,
}

/// One policy's spend. Invariant: every bucket in `reserved` is also a key of `settled` (with
/// zero until something settles), so settling never needs room that was not counted.
#[derive(Debug, Default)]
struct PolicySpend {
    /// The window last seen for this policy; buckets are pruned against its frame.
    window: Option<(TimeWindow, WindowType)>,
    settled: BTreeMap<DateTime<Utc>, Micros>,
    reserved: BTreeMap<DateTime<Utc>, Reserved>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    policies: HashMap<PolicyId, PolicySpend>,
    holds: HashMap<HoldId, HoldInfo>,
    /// `(expires_at, hold)` for every live hold: the sweeper's order.
    expiry: BTreeSet<(DateTime<Utc>, HoldId)>,
    /// Number of `settled` entries over all policies: the quantity `buckets_max` bounds.
    buckets: usize,
}

impl State {
    /// Usage of `policy` in its frame at `now`: settled in the frame + reserved by live holds
    /// whose bucket lies in the frame.
    pub(super) fn usage(&self, policy: &BudgetPolicy, now: DateTime<Utc>) -> PolicyUsage {
        let frame = current_frame(policy.spec.time_window, policy.spec.window_type, now);
        let (mut settled, mut reserved) = (Micros::ZERO, Micros::ZERO);
        if let Some(spend) = self.policies.get(&policy.id) {
            for amount in spend.settled.range(frame.start..frame.end).map(|(_, m)| *m) {
                settled = Micros(settled.get().saturating_add(amount.get()));
            }
            for held in spend.reserved.range(frame.start..frame.end).map(|(_, r)| r) {
                reserved = Micros(reserved.get().saturating_add(held.micros.get()));
            }
        }
        PolicyUsage {
            policy: policy.clone(),
            frame,
            settled,
            reserved,
        }
    }

    /// The atomic check-and-hold (see `SpendCache::reserve`). A denial changes nothing.
    pub(super) fn reserve(
        &mut self,
        req: &ReserveRequest,
        limits: &LocalLimits,
        ops: &mut Vec<Op>,
    ) -> Result<ReserveOutcome, SpendError> {
        req.check(limits.resource_bytes_max, limits.hold_policies_max)?;
        if self.holds.contains_key(&req.hold_id) {
            return Err(SpendError::DuplicateHold(req.hold_id));
        }
        let usages: Vec<PolicyUsage> = req
            .policies
            .iter()
            .map(|p| self.usage(p, req.now))
            .collect();
        let decision = decide(&req.chain, &usages, &req.resource, req.estimate);
        if !decision.allowed {
            return Ok(ReserveOutcome::Denied(decision));
        }
        if self.holds.len() >= limits.holds_max {
            return Err(SpendError::Full {
                what: "live holds",
                max: limits.holds_max,
            });
        }
        let charged = charged_buckets(&decision, &req.policies, req.now);
        self.make_room(req, &charged, limits, ops)?;
        let amount = req.estimate.micros.max(Micros::ZERO);
        self.add_reserved(&charged, amount)?;
        let info = hold_info(req, amount, &charged);
        ops.push(Op::PutHold(info.clone()));
        self.insert_hold(info);
        self.assert_within_limits(req);
        Ok(ReserveOutcome::Reserved(Reservation {
            hold_id: req.hold_id,
            root_agent_id: req.chain.root().id,
            decision,
            charged,
            amount,
        }))
    }

    /// Prunes and tracks the windows of the request's active policies, and refuses (`Full`) when
    /// the buckets the hold adds would exceed `buckets_max`.
    fn make_room(
        &mut self,
        req: &ReserveRequest,
        charged: &[(PolicyId, DateTime<Utc>)],
        limits: &LocalLimits,
        ops: &mut Vec<Op>,
    ) -> Result<(), SpendError> {
        for policy in req.policies.iter().filter(|p| p.spec.active) {
            // Prune first: it may forget an emptied policy, which tracking then re-creates.
            self.prune_policy(policy.id, req.now, ops);
            self.track_window(policy, ops);
        }
        let new_buckets = charged
            .iter()
            .filter(|(id, b)| {
                !self
                    .policies
                    .get(id)
                    .is_some_and(|s| s.settled.contains_key(b))
            })
            .count();
        if self.buckets.saturating_add(new_buckets) > limits.buckets_max {
            return Err(SpendError::Full {
                what: "settled buckets",
                max: limits.buckets_max,
            });
        }
        Ok(())
    }

    /// The invariant `reserve` establishes, checked again in debug builds.
    fn assert_within_limits(&self, req: &ReserveRequest) {
        if cfg!(debug_assertions) {
            for policy in req.policies.iter().filter(|p| p.spec.active) {
                let after = self.usage(policy, req.now);
                debug_assert!(
                    i128::from(after.settled.get()) + i128::from(after.reserved.get())
                        <= i128::from(policy.spec.limit_micros.get()),
                    "reserve broke the limit of {}",
                    policy.id
                );
            }
        }
    }

    /// Posts `actual` to every bucket of the hold and removes it.
    pub(super) fn settle(
        &mut self,
        hold: HoldId,
        actual: Micros,
        ops: &mut Vec<Op>,
    ) -> Result<Settlement, SpendError> {
        if actual.is_negative() {
            return Err(SpendError::Invalid(format!(
                "actual cost {actual} is negative"
            )));
        }
        let info = self
            .remove_hold(hold)
            .ok_or(SpendError::HoldNotFound(hold))?;
        ops.push(Op::DeleteHold(hold));
        self.post(&info, actual, ops);
        Ok(Settlement {
            hold_id: hold,
            reserved: info.amount,
            posted: actual,
        })
    }

    pub(super) fn extend(
        &mut self,
        hold: HoldId,
        expires_at: DateTime<Utc>,
        ops: &mut Vec<Op>,
    ) -> Result<(), SpendError> {
        let info = self
            .holds
            .get_mut(&hold)
            .ok_or(SpendError::HoldNotFound(hold))?;
        self.expiry.remove(&(info.expires_at, hold));
        info.expires_at = expires_at;
        self.expiry.insert((expires_at, hold));
        ops.push(Op::SetExpiry(hold, expires_at));
        Ok(())
    }

    /// Up to `max` holds expired at `now`, earliest first (nothing is removed or posted), after
    /// pruning every policy's aged-out buckets.
    pub(super) fn expired(
        &mut self,
        now: DateTime<Utc>,
        max: usize,
        ops: &mut Vec<Op>,
    ) -> Vec<HoldInfo> {
        let ids: Vec<PolicyId> = self.policies.keys().copied().collect();
        for id in ids {
            self.prune_policy(id, now, ops);
        }
        self.expiry
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(max)
            .filter_map(|(_, id)| self.holds.get(id).cloned())
            .collect()
    }

    pub(super) fn list_holds(&self, max: usize) -> Vec<HoldInfo> {
        self.expiry
            .iter()
            .take(max)
            .filter_map(|(_, id)| self.holds.get(id).cloned())
            .collect()
    }

    pub(super) fn holds_len(&self) -> usize {
        self.holds.len()
    }

    pub(super) fn buckets_len(&self) -> usize {
        self.buckets
    }

    /// Rebuilding from the journal: a policy's window.
    pub(super) fn restore_window(
        &mut self,
        policy: PolicyId,
        window: TimeWindow,
        kind: WindowType,
    ) {
        self.policies.entry(policy).or_default().window = Some((window, kind));
    }

    /// Rebuilding from the journal: one settled bucket.
    pub(super) fn restore_settled(
        &mut self,
        policy: PolicyId,
        bucket: DateTime<Utc>,
        micros: Micros,
    ) {
        let spend = self.policies.entry(policy).or_default();
        if spend.settled.insert(bucket, micros).is_none() {
            self.buckets += 1;
        }
    }

    /// Rebuilding from the journal: one live hold (its buckets are created if absent).
    pub(super) fn restore_hold(&mut self, info: HoldInfo) -> Result<(), SpendError> {
        if self.holds.contains_key(&info.hold_id) {
            return Err(SpendError::Corrupt(format!("hold {} twice", info.hold_id)));
        }
        self.add_reserved(&info.charged, info.amount)?;
        self.insert_hold(info);
        Ok(())
    }

    fn insert_hold(&mut self, info: HoldInfo) {
        self.expiry.insert((info.expires_at, info.hold_id));
        self.holds.insert(info.hold_id, info);
    }

    /// Removes a hold and its reservations; `None` if it is not live.
    fn remove_hold(&mut self, hold: HoldId) -> Option<HoldInfo> {
        let info = self.holds.remove(&hold)?;
        self.expiry.remove(&(info.expires_at, hold));
        for (policy, bucket) in &info.charged {
            let Some(spend) = self.policies.get_mut(policy) else {
                debug_assert!(false, "a live hold's policy is tracked");
                continue;
            };
            if let Some(held) = spend.reserved.get_mut(bucket) {
                debug_assert!(held.micros >= info.amount && held.holds > 0);
                held.micros = Micros(held.micros.get().saturating_sub(info.amount.get()));
                held.holds = held.holds.saturating_sub(1);
                if held.holds == 0 {
                    spend.reserved.remove(bucket);
                }
            }
        }
        Some(info)
    }

    /// Adds `amount` to each settled bucket of a hold that was just removed.
    fn post(&mut self, info: &HoldInfo, amount: Micros, ops: &mut Vec<Op>) {
        for (policy, bucket) in &info.charged {
            let spend = self.policies.entry(*policy).or_default();
            // The bucket exists (a live hold keeps it); should it not, the charge is still kept.
            let slot = spend.settled.entry(*bucket).or_insert_with(|| {
                self.buckets += 1;
                Micros::ZERO
            });
            *slot = Micros(slot.get().saturating_add(amount.get()));
            ops.push(Op::SetSettled {
                policy: *policy,
                bucket: *bucket,
                micros: *slot,
            });
        }
    }

    /// Counts `amount` as reserved in each bucket, creating empty settled buckets as needed. Checks
    /// every sum before changing anything.
    fn add_reserved(
        &mut self,
        charged: &[(PolicyId, DateTime<Utc>)],
        amount: Micros,
    ) -> Result<(), SpendError> {
        for (policy, bucket) in charged {
            let held = self
                .policies
                .get(policy)
                .and_then(|s| s.reserved.get(bucket))
                .map_or(Micros::ZERO, |r| r.micros);
            held.checked_add(amount)
                .map_err(|_| SpendError::Invalid("reserved amount overflows".into()))?;
        }
        for (policy, bucket) in charged {
            let spend = self.policies.entry(*policy).or_default();
            spend.settled.entry(*bucket).or_insert_with(|| {
                self.buckets += 1;
                Micros::ZERO
            });
            let held = spend.reserved.entry(*bucket).or_default();
            held.micros = Micros(held.micros.get().saturating_add(amount.get()));
            held.holds += 1;
        }
        Ok(())
    }

    /// Records the policy's current window if it changed, so pruning follows it.
    fn track_window(&mut self, policy: &BudgetPolicy, ops: &mut Vec<Op>) {
        let window = (policy.spec.time_window, policy.spec.window_type);
        let spend = self.policies.entry(policy.id).or_default();
        if spend.window != Some(window) {
            spend.window = Some(window);
            ops.push(Op::SetWindow {
                policy: policy.id,
                window: window.0,
                kind: window.1,
            });
        }
    }

    /// Drops the policy's settled buckets that lie before its frame (at `now` minus the lag) and
    /// that no live hold counts in; forgets the policy once it has no bucket left.
    fn prune_policy(&mut self, id: PolicyId, now: DateTime<Utc>, ops: &mut Vec<Op>) {
        let Some(spend) = self.policies.get_mut(&id) else {
            return;
        };
        let Some((window, kind)) = spend.window else {
            return;
        };
        let lagged = now - Duration::seconds(PRUNE_LAG_SECS);
        let before = current_frame(window, kind, lagged).start;
        let dead: Vec<DateTime<Utc>> = spend
            .settled
            .range(..before)
            .map(|(b, _)| *b)
            .filter(|b| !spend.reserved.contains_key(b))
            .collect();
        for bucket in dead {
            spend.settled.remove(&bucket);
            self.buckets = self.buckets.saturating_sub(1);
            ops.push(Op::DeleteSettled { policy: id, bucket });
        }
        if spend.settled.is_empty() && spend.reserved.is_empty() {
            self.policies.remove(&id);
            ops.push(Op::DeleteWindow(id));
        }
    }
}

/// The record of a new hold.
fn hold_info(
    req: &ReserveRequest,
    amount: Micros,
    charged: &[(PolicyId, DateTime<Utc>)],
) -> HoldInfo {
    HoldInfo {
        hold_id: req.hold_id,
        agent_id: req.chain.agent().id,
        ancestor_ids: req.chain.members().iter().skip(1).map(|a| a.id).collect(),
        root_agent_id: req.chain.root().id,
        resource: req.resource.clone(),
        source: req.source,
        operation: req.operation.clone(),
        amount,
        currency: req.estimate.currency,
        charged: charged.to_vec(),
        reserved_at: req.now,
        expires_at: req.expires_at,
    }
}

fn charged_buckets(
    decision: &Decision,
    policies: &[BudgetPolicy],
    now: DateTime<Utc>,
) -> Vec<(PolicyId, DateTime<Utc>)> {
    let mut charged: Vec<(PolicyId, DateTime<Utc>)> =
        Vec::with_capacity(decision.evaluations.len());
    for evaluation in &decision.evaluations {
        if charged.iter().any(|(id, _)| *id == evaluation.policy_id) {
            continue;
        }
        let policy = policies
            .iter()
            .find(|p| p.id == evaluation.policy_id && p.spec.active);
        if let Some(p) = policy {
            let bucket = charge_bucket(p.spec.time_window, p.spec.window_type, now);
            charged.push((p.id, bucket));
        }
    }
    charged
}
