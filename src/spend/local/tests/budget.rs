//! Budget behaviour: boundaries, the parent cap, settlement, expiry, extension and windows.

use chrono::Duration;
use uuid::Uuid;

use super::*;
use crate::core::decision::DenyReason;
use crate::spend::SpendError;

#[tokio::test]
async fn a_reservation_that_reaches_the_limit_exactly_is_allowed_and_one_micro_more_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let spend = open(&dir);
    let now = utc("2026-03-10T12:00:00Z");
    let chain = child(2);
    let policies = [daily(10, 2, 1_000_000)];

    let first = reserved(&spend, request(&chain, &policies, 400_000, now)).await;
    spend
        .settle(first.hold_id, Micros(400_000), now)
        .await
        .unwrap();
    reserved(&spend, request(&chain, &policies, 250_000, now)).await;
    // settled 400_000 + reserved 250_000 + 350_000 == 1_000_000: allowed.
    let exact = reserved(&spend, request(&chain, &policies, 350_000, now)).await;
    assert_eq!(exact.decision.remaining, Some(Micros(350_000)));
    spend
        .settle(exact.hold_id, Micros::ZERO, now)
        .await
        .unwrap();

    let over = spend
        .reserve(request(&chain, &policies, 350_001, now))
        .await
        .unwrap();
    let ReserveOutcome::Denied(decision) = over else {
        panic!("one micro over the limit must be denied");
    };
    assert_eq!(decision.reason, Some(DenyReason::BudgetExceeded));
    assert_eq!(decision.policy_id, Some(policies[0].id));
    assert_eq!(
        usage(&spend, &policies, now).await,
        vec![(400_000, 250_000)]
    );
}

#[tokio::test]
async fn a_parent_policy_caps_its_children_together() {
    let dir = tempfile::tempdir().unwrap();
    let spend = open(&dir);
    let now = utc("2026-03-10T12:00:00Z");
    let team_policy = daily(11, 1, 1_000);
    let policies = [daily(12, 2, 800), daily(13, 3, 800), team_policy.clone()];

    let (two, three) = (
        of_chain(&policies, &child(2)),
        of_chain(&policies, &child(3)),
    );
    assert!(is_allowed(&spend, request(&child(2), &two, 600, now)).await);
    // The second child's own budget has room (400 <= 800), the team's has not (600 + 401 > 1000).
    let outcome = spend
        .reserve(request(&child(3), &three, 401, now))
        .await
        .unwrap();
    let ReserveOutcome::Denied(decision) = outcome else {
        panic!("the team budget must cap both children");
    };
    assert_eq!(decision.policy_id, Some(team_policy.id));
    assert!(is_allowed(&spend, request(&child(3), &three, 400, now)).await);
    assert_eq!(
        usage(&spend, &policies, now).await,
        vec![(0, 600), (0, 400), (0, 1_000)]
    );
}

#[tokio::test]
async fn settle_posts_the_actual_cost_and_frees_the_rest_of_the_hold() {
    let dir = tempfile::tempdir().unwrap();
    let spend = open(&dir);
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000), daily(11, 1, 5_000)];

    let hold = reserved(&spend, request(&child(2), &policies, 900, now)).await;
    assert_eq!(hold.charged.len(), 2);
    let settlement = spend.settle(hold.hold_id, Micros(300), now).await.unwrap();
    assert_eq!(
        (settlement.reserved, settlement.posted),
        (Micros(900), Micros(300))
    );
    assert_eq!(
        usage(&spend, &policies, now).await,
        vec![(300, 0), (300, 0)]
    );
    assert!(is_allowed(&spend, request(&child(2), &policies, 700, now)).await);

    // A settle above the hold posts the actual cost in full.
    let dir = tempfile::tempdir().unwrap();
    let spend = open(&dir);
    let hold = reserved(&spend, request(&child(2), &policies, 100, now)).await;
    spend
        .settle(hold.hold_id, Micros(1_200), now)
        .await
        .unwrap();
    assert_eq!(
        usage(&spend, &policies, now).await,
        vec![(1_200, 0), (1_200, 0)]
    );
    assert!(!is_allowed(&spend, request(&child(2), &policies, 0, now)).await);
    assert!(!is_allowed(&spend, request(&child(2), &policies, 1, now)).await);
}

#[tokio::test]
async fn settling_an_unknown_or_swept_hold_is_hold_not_found_and_posts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spend = open(&dir);
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000)];

    let unknown = HoldId(Uuid::new_v4());
    assert_eq!(
        spend.settle(unknown, Micros(5), now).await,
        Err(SpendError::HoldNotFound(unknown))
    );
    let hold = reserved(&spend, request(&child(2), &policies, 100, now)).await;
    spend.settle(hold.hold_id, Micros(60), now).await.unwrap();
    assert_eq!(
        spend.settle(hold.hold_id, Micros(60), now).await,
        Err(SpendError::HoldNotFound(hold.hold_id))
    );

    let late = reserved(&spend, request(&child(2), &policies, 200, now)).await;
    let swept = spend
        .take_expired(now + Duration::seconds(300), 10)
        .await
        .unwrap();
    assert_eq!(swept.len(), 1);
    assert_eq!(
        spend.settle(late.hold_id, Micros(7), now).await,
        Err(SpendError::HoldNotFound(late.hold_id))
    );
    assert_eq!(
        spend.extend(late.hold_id, now + Duration::hours(1)).await,
        Err(SpendError::HoldNotFound(late.hold_id))
    );
    assert_eq!(usage(&spend, &policies, now).await, vec![(60 + 200, 0)]);
}

#[tokio::test]
async fn take_expired_posts_the_reservation_and_returns_what_to_meter() {
    let dir = tempfile::tempdir().unwrap();
    let spend = open(&dir);
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000), daily(11, 1, 5_000)];
    let first = reserved(&spend, request(&child(2), &policies, 300, now)).await;
    let mut later = request(&child(2), &policies, 200, now);
    later.expires_at = now + Duration::seconds(600);
    reserved(&spend, later).await;

    assert!(spend
        .take_expired(now + Duration::seconds(299), 10)
        .await
        .unwrap()
        .is_empty());
    let expired = spend
        .take_expired(now + Duration::seconds(300), 10)
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    let hold = &expired[0];
    assert_eq!(hold.hold_id, first.hold_id);
    assert_eq!((hold.amount, hold.currency), (Micros(300), Currency::USD));
    assert_eq!(hold.agent_id, AgentId(Uuid::from_u128(2)));
    assert_eq!(hold.root_agent_id, AgentId(Uuid::from_u128(1)));
    assert_eq!(hold.ancestor_ids, vec![AgentId(Uuid::from_u128(1))]);
    assert_eq!(hold.charged, first.charged);
    assert_eq!(hold.resource, "openai:gpt-4o");
    assert_eq!(
        usage(&spend, &policies, now).await,
        vec![(300, 200), (300, 200)]
    );
    assert_eq!(spend.list_holds(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn take_expired_takes_at_most_max_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let spend = open(&dir);
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000_000)];
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut req = request(&child(2), &policies, 10, now);
        req.expires_at = now + Duration::seconds(10 - i);
        ids.push(reserved(&spend, req).await.hold_id);
    }
    let later = now + Duration::minutes(1);
    let first = spend.take_expired(later, 2).await.unwrap();
    assert_eq!(
        first.iter().map(|h| h.hold_id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    assert_eq!(spend.take_expired(later, 10).await.unwrap().len(), 3);
    assert_eq!(usage(&spend, &policies, now).await, vec![(50, 0)]);
}

#[tokio::test]
async fn extend_keeps_a_hold_alive_past_its_original_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let spend = open(&dir);
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000)];
    let hold = reserved(&spend, request(&child(2), &policies, 400, now)).await;

    spend
        .extend(hold.hold_id, now + Duration::seconds(900))
        .await
        .unwrap();
    assert!(spend
        .take_expired(now + Duration::seconds(600), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(usage(&spend, &policies, now).await, vec![(0, 400)]);
    let settled = spend
        .settle(hold.hold_id, Micros(350), now + Duration::seconds(700))
        .await
        .unwrap();
    assert_eq!(settled.posted, Micros(350));
    assert_eq!(usage(&spend, &policies, now).await, vec![(350, 0)]);
}

#[tokio::test]
async fn a_rolling_window_ages_spend_out_bucket_by_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let spend = open(&dir);
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
        let hold = reserved(&spend, request(&child(2), &policies, 100, at)).await;
        spend.settle(hold.hold_id, Micros(100), at).await.unwrap();
    }
    let settled_at = |minutes: i64| {
        let now = start + Duration::minutes(minutes);
        let spend = &spend;
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
    assert!(is_allowed(&spend, request(&child(2), &policies, 800, at)).await);
    assert!(!is_allowed(&spend, request(&child(2), &policies, 1, at)).await);
}

#[tokio::test]
async fn a_calendar_daily_budget_resets_at_utc_midnight() {
    let dir = tempfile::tempdir().unwrap();
    let spend = open(&dir);
    let policies = [daily(10, 2, 1_000)];
    let evening = utc("2026-03-10T23:59:59Z");
    let hold = reserved(&spend, request(&child(2), &policies, 1_000, evening)).await;
    assert!(!is_allowed(&spend, request(&child(2), &policies, 1, evening)).await);

    // The hold stays in the day it was made: settling after midnight charges yesterday.
    let midnight = utc("2026-03-11T00:00:00Z");
    spend
        .settle(hold.hold_id, Micros(1_000), midnight)
        .await
        .unwrap();
    assert_eq!(usage(&spend, &policies, evening).await, vec![(1_000, 0)]);
    assert_eq!(usage(&spend, &policies, midnight).await, vec![(0, 0)]);
    assert!(is_allowed(&spend, request(&child(2), &policies, 1_000, midnight)).await);
}

#[tokio::test]
async fn an_agent_without_policies_is_allowed_and_its_hold_settles() {
    let dir = tempfile::tempdir().unwrap();
    let spend = open(&dir);
    let now = utc("2026-03-10T12:00:00Z");
    let mut inactive = daily(10, 2, 0);
    inactive.spec.active = false;
    let hold = reserved(&spend, request(&child(2), &[inactive.clone()], 500, now)).await;
    assert!(hold.charged.is_empty());
    spend.settle(hold.hold_id, Micros(500), now).await.unwrap();
    assert_eq!(usage(&spend, &[inactive], now).await, vec![(0, 0)]);
}

#[tokio::test]
async fn malformed_calls_are_rejected_without_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let spend = open(&dir);
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000)];
    let hold = reserved(&spend, request(&child(2), &policies, 100, now)).await;

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
    let mut long = request(&child(2), &policies, 100, now);
    long.resource = "x".repeat(513);
    assert!(matches!(
        spend.reserve(long).await,
        Err(SpendError::Invalid(_))
    ));
    assert!(matches!(
        spend.settle(hold.hold_id, Micros(-1), now).await,
        Err(SpendError::Invalid(_))
    ));
    assert_eq!(usage(&spend, &policies, now).await, vec![(0, 100)]);
}

#[tokio::test]
async fn the_hold_table_at_its_limit_is_full_not_a_denial() {
    let dir = tempfile::tempdir().unwrap();
    let limits = LocalLimits {
        holds_max: 3,
        ..LocalLimits::default()
    };
    let spend = LocalSpend::open(dir.path(), limits).unwrap();
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000)];
    let mut holds = Vec::new();
    for _ in 0..3 {
        holds.push(reserved(&spend, request(&child(2), &policies, 1, now)).await);
    }
    assert_eq!(
        spend.reserve(request(&child(2), &policies, 1, now)).await,
        Err(SpendError::Full {
            what: "live holds",
            max: 3
        })
    );
    spend
        .settle(holds[0].hold_id, Micros(1), now)
        .await
        .unwrap();
    assert!(is_allowed(&spend, request(&child(2), &policies, 1, now)).await);
    spend.ping().await.unwrap();
}

#[tokio::test]
async fn aged_out_buckets_are_pruned_so_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // A rolling hourly frame spans 60 buckets, plus 5 of pruning lag.
    let limits = LocalLimits {
        buckets_max: 70,
        ..LocalLimits::default()
    };
    let spend = LocalSpend::open(dir.path(), limits.clone()).unwrap();
    let policies = [policy(
        10,
        2,
        1_000_000,
        TimeWindow::Hourly,
        WindowType::Rolling,
    )];
    let start = utc("2026-03-10T12:00:00Z");
    for minute in 0..300 {
        let at = start + Duration::minutes(minute);
        let hold = reserved(&spend, request(&child(2), &policies, 10, at)).await;
        spend.settle(hold.hold_id, Micros(10), at).await.unwrap();
    }
    let end = start + Duration::minutes(299);
    assert_eq!(usage(&spend, &policies, end).await, vec![(600, 0)]);
    assert!(spend.state.lock().unwrap().buckets_len() <= 66);
    // Forgotten entirely once everything has aged out, in memory and in the journal.
    spend
        .take_expired(end + Duration::hours(2), 10)
        .await
        .unwrap();
    assert_eq!(spend.state.lock().unwrap().buckets_len(), 0);
    spend.close().await.unwrap();
    let reopened = LocalSpend::open(dir.path(), limits).unwrap();
    assert_eq!(reopened.state.lock().unwrap().buckets_len(), 0);
}
