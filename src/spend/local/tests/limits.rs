//! Limits of the local cache: a full hold table, a resource name over its cap, and aged-out
//! buckets pruned from memory and from the journal. (Budget behaviour every implementation
//! shares is in `spend::conformance`.)

use chrono::Duration;

use super::*;
use crate::spend::SpendError;

#[tokio::test]
async fn a_resource_name_over_its_cap_is_invalid_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spend = open(&dir);
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000)];
    let mut long = request(&child(2), &policies, 100, now);
    long.resource = "x".repeat(LocalLimits::default().resource_bytes_max + 1);
    assert!(matches!(
        spend.reserve(long).await,
        Err(SpendError::Invalid(_))
    ));
    assert_eq!(usage(&spend, &policies, now).await, vec![(0, 0)]);
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
        .settle(&key(holds[0].hold_id), Micros(1), now)
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
        spend
            .settle(&key(hold.hold_id), Micros(10), at)
            .await
            .unwrap();
    }
    let end = start + Duration::minutes(299);
    assert_eq!(usage(&spend, &policies, end).await, vec![(600, 0)]);
    assert!(spend.state.lock().unwrap().buckets_len() <= 66);
    // Forgotten entirely once everything has aged out, in memory and in the journal.
    take_expired(&spend, end + Duration::hours(2), 10)
        .await
        .unwrap();
    assert_eq!(spend.state.lock().unwrap().buckets_len(), 0);
    spend.close().await.unwrap();
    let reopened = LocalSpend::open(dir.path(), limits).unwrap();
    assert_eq!(reopened.state.lock().unwrap().buckets_len(), 0);
}
