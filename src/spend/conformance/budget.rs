//! Budgets: the exact boundary, the parent cap, settlement below and above the hold, windows.

use chrono::Duration;
use uuid::Uuid;

use super::*;
use crate::core::decision::DenyReason;
use crate::spend::{HoldKey, SpendError};

pub async fn the_limit_is_reachable_exactly_and_one_micro_more_is_denied<H: Harness>() {
    let (_h, spend) = H::open().await;
    let spend = spend.as_ref();
    let now = utc("2026-03-10T12:00:00Z");
    let chain = child(2);
    let policies = [daily(10, 2, 1_000_000)];

    let first = reserved(spend, request(&chain, &policies, 400_000, now)).await;
    spend
        .settle(&first.key(), Micros(400_000), now)
        .await
        .unwrap();
    reserved(spend, request(&chain, &policies, 250_000, now)).await;
    // settled 400_000 + reserved 250_000 + 350_000 == 1_000_000: allowed.
    let exact = reserved(spend, request(&chain, &policies, 350_000, now)).await;
    assert_eq!(exact.decision.remaining, Some(Micros(350_000)));
    spend.settle(&exact.key(), Micros::ZERO, now).await.unwrap();

    let over = spend
        .reserve(request(&chain, &policies, 350_001, now))
        .await
        .unwrap();
    let ReserveOutcome::Denied(decision) = over else {
        panic!("one micro over the limit must be denied");
    };
    assert_eq!(decision.reason, Some(DenyReason::BudgetExceeded));
    assert_eq!(decision.policy_id, Some(policies[0].id));
    assert_eq!(usage(spend, &policies, now).await, vec![(400_000, 250_000)]);
}

pub async fn a_parent_policy_caps_its_children_together<H: Harness>() {
    let (_h, spend) = H::open().await;
    let spend = spend.as_ref();
    let now = utc("2026-03-10T12:00:00Z");
    let team_policy = daily(11, 1, 1_000);
    let policies = [daily(12, 2, 800), daily(13, 3, 800), team_policy.clone()];
    let (two, three) = (
        of_chain(&policies, &child(2)),
        of_chain(&policies, &child(3)),
    );
    assert!(is_allowed(spend, request(&child(2), &two, 600, now)).await);
    // The second child's own budget has room (400 <= 800), the team's has not (600 + 401 > 1000).
    let outcome = spend
        .reserve(request(&child(3), &three, 401, now))
        .await
        .unwrap();
    let ReserveOutcome::Denied(decision) = outcome else {
        panic!("the team budget must cap both children");
    };
    assert_eq!(decision.policy_id, Some(team_policy.id));
    assert!(is_allowed(spend, request(&child(3), &three, 400, now)).await);
    assert_eq!(
        usage(spend, &policies, now).await,
        vec![(0, 600), (0, 400), (0, 1_000)]
    );
}

pub async fn settle_posts_the_actual_cost_below_or_above_the_hold<H: Harness>() {
    let (_h, spend) = H::open().await;
    let spend = spend.as_ref();
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000), daily(11, 1, 5_000)];

    let hold = reserved(spend, request(&child(2), &policies, 900, now)).await;
    assert_eq!(hold.charged.len(), 2);
    let settlement = spend.settle(&hold.key(), Micros(300), now).await.unwrap();
    assert_eq!(
        (settlement.reserved, settlement.posted),
        (Micros(900), Micros(300))
    );
    assert_eq!(usage(spend, &policies, now).await, vec![(300, 0), (300, 0)]);
    assert!(is_allowed(spend, request(&child(2), &policies, 700, now)).await);

    // A settle above the hold posts the actual cost in full (the provider billed it).
    let (_h2, other) = H::open().await;
    let other = other.as_ref();
    let hold = reserved(other, request(&child(2), &policies, 100, now)).await;
    other.settle(&hold.key(), Micros(1_200), now).await.unwrap();
    assert_eq!(
        usage(other, &policies, now).await,
        vec![(1_200, 0), (1_200, 0)]
    );
    assert!(!is_allowed(other, request(&child(2), &policies, 0, now)).await);
    assert!(!is_allowed(other, request(&child(2), &policies, 1, now)).await);
}

pub async fn settling_twice_or_an_unknown_hold_posts_nothing<H: Harness>() {
    let (_h, spend) = H::open().await;
    let spend = spend.as_ref();
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000)];

    let unknown = HoldKey {
        root_agent_id: AgentId(Uuid::from_u128(1)),
        hold_id: HoldId(Uuid::now_v7()),
    };
    assert_eq!(
        spend.settle(&unknown, Micros(5), now).await,
        Err(SpendError::HoldNotFound(unknown.hold_id))
    );
    let hold = reserved(spend, request(&child(2), &policies, 100, now)).await;
    spend.settle(&hold.key(), Micros(60), now).await.unwrap();
    assert_eq!(
        spend.settle(&hold.key(), Micros(60), now).await,
        Err(SpendError::HoldNotFound(hold.hold_id))
    );
    assert_eq!(
        spend.extend(&hold.key(), now + Duration::hours(1)).await,
        Err(SpendError::HoldNotFound(hold.hold_id))
    );
    assert_eq!(usage(spend, &policies, now).await, vec![(60, 0)]);
}

pub async fn a_rolling_window_ages_spend_out_bucket_by_bucket<H: Harness>() {
    let (_h, spend) = H::open().await;
    let spend = spend.as_ref();
    // Rolling hourly: 60 sub-buckets of 60 s.
    let policies = [policy(
        10,
        2,
        1_000,
        TimeWindow::Hourly,
        WindowType::Rolling,
    )];
    let start = utc("2026-03-10T12:00:30Z");
    for minute in 0..3 {
        let at = start + Duration::minutes(minute);
        let hold = reserved(spend, request(&child(2), &policies, 100, at)).await;
        spend.settle(&hold.key(), Micros(100), at).await.unwrap();
    }
    let settled_at = |minutes: i64| {
        let now = start + Duration::minutes(minutes);
        let policies = &policies;
        async move { usage(spend, policies, now).await[0].0 }
    };
    assert_eq!(settled_at(59).await, 300);
    // 12:00 leaves the frame when 13:00 begins, then 12:01, then 12:02.
    assert_eq!(settled_at(60).await, 200);
    assert_eq!(settled_at(61).await, 100);
    assert_eq!(settled_at(62).await, 0);
    // The room comes back one bucket at a time.
    let at = start + Duration::minutes(60);
    assert!(is_allowed(spend, request(&child(2), &policies, 800, at)).await);
    assert!(!is_allowed(spend, request(&child(2), &policies, 1, at)).await);
}

pub async fn a_calendar_daily_budget_resets_at_utc_midnight<H: Harness>() {
    let (_h, spend) = H::open().await;
    let spend = spend.as_ref();
    let policies = [daily(10, 2, 1_000)];
    let evening = utc("2026-03-10T23:59:59Z");
    let hold = reserved(spend, request(&child(2), &policies, 1_000, evening)).await;
    assert!(!is_allowed(spend, request(&child(2), &policies, 1, evening)).await);

    // The hold stays in the day it was made: settling after midnight charges yesterday.
    let midnight = utc("2026-03-11T00:00:00Z");
    spend
        .settle(&hold.key(), Micros(1_000), midnight)
        .await
        .unwrap();
    assert_eq!(usage(spend, &policies, evening).await, vec![(1_000, 0)]);
    assert_eq!(usage(spend, &policies, midnight).await, vec![(0, 0)]);
    assert!(is_allowed(spend, request(&child(2), &policies, 1_000, midnight)).await);
}

pub async fn an_agent_without_active_policies_is_allowed_and_settles<H: Harness>() {
    let (_h, spend) = H::open().await;
    let spend = spend.as_ref();
    let now = utc("2026-03-10T12:00:00Z");
    let mut inactive = daily(10, 2, 0);
    inactive.spec.active = false;
    let hold = reserved(spend, request(&child(2), &[inactive.clone()], 500, now)).await;
    assert!(hold.charged.is_empty());
    spend.settle(&hold.key(), Micros(500), now).await.unwrap();
    assert_eq!(usage(spend, &[inactive], now).await, vec![(0, 0)]);
}

pub async fn malformed_calls_change_nothing<H: Harness>() {
    let (_h, spend) = H::open().await;
    let spend = spend.as_ref();
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000)];
    let hold = reserved(spend, request(&child(2), &policies, 100, now)).await;

    let mut again = request(&child(2), &policies, 100, now);
    again.hold_id = hold.hold_id;
    assert_eq!(
        spend.reserve(again).await,
        Err(SpendError::DuplicateHold(hold.hold_id))
    );
    let mut expired = request(&child(2), &policies, 100, now);
    expired.expires_at = now;
    assert!(matches!(
        spend.reserve(expired).await,
        Err(SpendError::Invalid(_))
    ));
    assert!(matches!(
        spend.settle(&hold.key(), Micros(-1), now).await,
        Err(SpendError::Invalid(_))
    ));
    assert_eq!(usage(spend, &policies, now).await, vec![(0, 100)]);
}
