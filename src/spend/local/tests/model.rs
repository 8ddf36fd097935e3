//! A property test against a plain model: random sequences of reserve, settle, extend, expire and
//! clock moves. `spent` always equals the model, no policy is ever over its limit unless a settle
//! posted more than its hold, and a reopen restores the same state.

use std::collections::HashMap;

use chrono::Duration;
use proptest::prelude::*;

use super::*;
use crate::core::window::current_frame;

#[derive(Debug, Clone)]
enum Step {
    Reserve {
        agent: u128,
        estimate: i64,
    },
    /// Settle the `pick`-th live hold at `percent` of its amount.
    Settle {
        pick: usize,
        percent: i64,
    },
    Extend {
        pick: usize,
        secs: i64,
    },
    Expire,
    Advance {
        secs: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (2u128..4, 0i64..3_000).prop_map(|(agent, estimate)| Step::Reserve { agent, estimate }),
        3 => (0usize..16, 0i64..130).prop_map(|(pick, percent)| Step::Settle { pick, percent }),
        1 => (0usize..16, 1i64..900).prop_map(|(pick, secs)| Step::Extend { pick, secs }),
        1 => Just(Step::Expire),
        2 => (1i64..1_800).prop_map(|secs| Step::Advance { secs }),
    ]
}

/// The team's rolling hour, child 2's calendar hour, child 3's calendar day.
fn policies() -> Vec<BudgetPolicy> {
    vec![
        policy(11, 1, 8_000, TimeWindow::Hourly, WindowType::Rolling),
        policy(12, 2, 5_000, TimeWindow::Hourly, WindowType::Calendar),
        daily(13, 3, 6_000),
    ]
}

struct ModelHold {
    amount: i64,
    charged: Vec<(PolicyId, DateTime<Utc>)>,
    expires_at: DateTime<Utc>,
}

#[derive(Default)]
struct Model {
    holds: Vec<(HoldId, ModelHold)>,
    /// Settled micros and the part of them posted above a hold, per (policy, bucket).
    settled: HashMap<(PolicyId, DateTime<Utc>), (i64, i64)>,
}

impl Model {
    fn post(&mut self, hold: &ModelHold, actual: i64) {
        for key in &hold.charged {
            let entry = self.settled.entry(*key).or_default();
            entry.0 += actual;
            entry.1 += (actual - hold.amount).max(0);
        }
    }

    /// `(settled, reserved, overposted)` of `policy` in its frame at `now`.
    fn usage(&self, policy: &BudgetPolicy, now: DateTime<Utc>) -> (i64, i64, i64) {
        let frame = current_frame(policy.spec.time_window, policy.spec.window_type, now);
        let in_frame = |(id, bucket): &(PolicyId, DateTime<Utc>)| {
            *id == policy.id && frame.counts_bucket(*bucket)
        };
        let (mut settled, mut over) = (0, 0);
        for (key, (amount, above)) in &self.settled {
            if in_frame(key) {
                settled += amount;
                over += above;
            }
        }
        let reserved = self
            .holds
            .iter()
            .filter(|(_, h)| h.charged.iter().any(in_frame))
            .map(|(_, h)| h.amount)
            .sum();
        (settled, reserved, over)
    }
}

async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let spend = open(&dir);
    let policies = policies();
    let mut model = Model::default();
    let mut now = utc("2026-03-10T22:40:00Z");
    for step in steps {
        match step {
            Step::Reserve { agent, estimate } => {
                let chain = child(agent);
                let req = request(&chain, &of_chain(&policies, &chain), estimate, now);
                let fits = policies
                    .iter()
                    .filter(|p| p.agent_id.0.as_u128() == agent || p.agent_id.0.as_u128() == 1)
                    .all(|p| {
                        let (settled, reserved, _) = model.usage(p, now);
                        settled + reserved + estimate <= p.spec.limit_micros.get()
                    });
                match spend.reserve(req.clone()).await.unwrap() {
                    ReserveOutcome::Reserved(r) => {
                        prop_assert!(fits, "allowed a call the model denies");
                        let hold = ModelHold {
                            amount: estimate,
                            charged: r.charged,
                            expires_at: req.expires_at,
                        };
                        model.holds.push((r.hold_id, hold));
                    }
                    ReserveOutcome::Denied(_) => prop_assert!(!fits, "denied a call that fits"),
                }
            }
            Step::Settle { pick, percent } if !model.holds.is_empty() => {
                let (id, hold) = model.holds.remove(pick % model.holds.len());
                let actual = hold.amount * percent / 100;
                let settlement = spend.settle(&key(id), Micros(actual), now).await.unwrap();
                prop_assert_eq!(settlement.posted, Micros(actual));
                model.post(&hold, actual);
            }
            Step::Extend { pick, secs } if !model.holds.is_empty() => {
                let index = pick % model.holds.len();
                let expires_at = now + Duration::seconds(secs);
                spend
                    .extend(&key(model.holds[index].0), expires_at)
                    .await
                    .unwrap();
                model.holds[index].1.expires_at = expires_at;
            }
            Step::Expire => {
                let taken = take_expired(&spend, now, usize::MAX).await.unwrap();
                let (due, live): (Vec<_>, Vec<_>) = std::mem::take(&mut model.holds)
                    .into_iter()
                    .partition(|(_, h)| h.expires_at <= now);
                prop_assert_eq!(taken.len(), due.len());
                for (_, hold) in &due {
                    model.post(hold, hold.amount);
                }
                model.holds = live;
            }
            Step::Advance { secs } => now += Duration::seconds(secs),
            Step::Settle { .. } | Step::Extend { .. } => {}
        }
        let seen = usage(&spend, &policies, now).await;
        for (p, (settled, reserved)) in policies.iter().zip(seen) {
            let (m_settled, m_reserved, over) = model.usage(p, now);
            prop_assert_eq!((settled, reserved), (m_settled, m_reserved));
            prop_assert!(settled + reserved <= p.spec.limit_micros.get() + over);
        }
    }
    let before = (
        usage(&spend, &policies, now).await,
        spend.list_holds(usize::MAX).await.unwrap(),
    );
    spend.close().await.unwrap();
    let reopened = open(&dir);
    let after = (
        usage(&reopened, &policies, now).await,
        reopened.list_holds(usize::MAX).await.unwrap(),
    );
    prop_assert_eq!(before, after);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_sequences_never_leave_a_policy_over_its_limit_unless_a_settle_posted_more(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(steps))?;
    }
}
