//! Expiry and durability: expired holds are read, charged once by whoever settles them first,
//! kept alive by extension, and a restart keeps everything acknowledged.

use chrono::Duration;

use super::*;
use crate::spend::SpendError;

pub async fn expired_holds_are_read_not_removed_oldest_first<H: Harness>() {
    let (_h, spend) = H::open().await;
    let spend = spend.as_ref();
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000_000), daily(11, 1, 5_000_000)];
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut req = request(&child(2), &policies, 10 + i, now);
        req.expires_at = now + Duration::seconds(10 - i);
        ids.push(reserved(spend, req).await);
    }
    let mut later = request(&child(2), &policies, 200, now);
    later.expires_at = now + Duration::seconds(600);
    reserved(spend, later).await;

    assert!(all_expired(spend, now + Duration::seconds(5))
        .await
        .is_empty());
    let due = all_expired(spend, now + Duration::seconds(300)).await;
    let order: Vec<HoldId> = due.iter().map(|h| h.hold_id).collect();
    let expected: Vec<HoldId> = ids.iter().rev().map(|r| r.hold_id).collect();
    assert_eq!(order, expected);
    let first = &due[0];
    assert_eq!((first.amount, first.currency), (Micros(14), Currency::USD));
    assert_eq!(first.agent_id, AgentId(Uuid::from_u128(2)));
    assert_eq!(first.root_agent_id, AgentId(Uuid::from_u128(1)));
    assert_eq!(first.ancestor_ids, vec![AgentId(Uuid::from_u128(1))]);
    assert_eq!(first.charged, ids[4].charged);
    assert_eq!(first.resource, "openai:gpt-4o");
    // Reading changed nothing: all six holds still count as reserved, nothing is settled.
    assert_eq!(
        usage(spend, &policies, now).await,
        vec![(0, 60 + 200), (0, 60 + 200)]
    );
    assert_eq!(all_expired(spend, now + Duration::seconds(300)).await, due);
    for shard in 0..spend.expiry_shards() {
        assert!(
            spend
                .expired(shard, now + Duration::hours(1), 2)
                .await
                .unwrap()
                .len()
                <= 2
        );
    }
}

pub async fn an_expired_hold_settles_exactly_once<H: Harness>() {
    let (_h, spend) = H::open().await;
    let spend = spend.as_ref();
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000)];
    let hold = reserved(spend, request(&child(2), &policies, 300, now)).await;
    let due = all_expired(spend, now + Duration::seconds(300)).await;
    assert_eq!(due.len(), 1);

    // Two sweepers read the same hold; the first settle charges it, the second finds it gone.
    let key = due[0].key();
    assert_eq!(key, hold.key());
    let first = spend.settle(&key, due[0].amount, now).await.unwrap();
    assert_eq!(first.posted, Micros(300));
    assert_eq!(
        spend.settle(&key, due[0].amount, now).await,
        Err(SpendError::HoldNotFound(hold.hold_id))
    );
    assert!(all_expired(spend, now + Duration::hours(1))
        .await
        .is_empty());
    assert_eq!(usage(spend, &policies, now).await, vec![(300, 0)]);
    assert!(spend.list_holds(10).await.unwrap().is_empty());
}

pub async fn extend_keeps_a_hold_alive_past_its_original_expiry<H: Harness>() {
    let (_h, spend) = H::open().await;
    let spend = spend.as_ref();
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000)];
    let hold = reserved(spend, request(&child(2), &policies, 400, now)).await;

    spend
        .extend(&hold.key(), now + Duration::seconds(900))
        .await
        .unwrap();
    assert!(all_expired(spend, now + Duration::seconds(600))
        .await
        .is_empty());
    assert_eq!(usage(spend, &policies, now).await, vec![(0, 400)]);
    assert_eq!(
        all_expired(spend, now + Duration::seconds(900)).await.len(),
        1
    );
    let settled = spend
        .settle(&hold.key(), Micros(350), now + Duration::seconds(700))
        .await
        .unwrap();
    assert_eq!(settled.posted, Micros(350));
    assert_eq!(usage(spend, &policies, now).await, vec![(350, 0)]);
}

pub async fn a_restart_keeps_settled_spend_and_live_holds<H: Harness>() {
    let (h, spend) = H::open().await;
    let now = utc("2026-03-10T12:00:00Z");
    let policies = vec![
        policy(10, 2, 100_000, TimeWindow::Hourly, WindowType::Rolling),
        daily(11, 1, 1_000_000),
    ];
    let mut live = Vec::new();
    for i in 0..20 {
        let at = now + Duration::seconds(i * 7);
        let hold = reserved(spend.as_ref(), request(&child(2), &policies, 1_000 + i, at)).await;
        if i % 3 == 0 {
            live.push(hold);
        } else {
            spend
                .settle(&hold.key(), Micros(900 + i), at)
                .await
                .unwrap();
        }
    }
    spend
        .extend(&live[0].key(), now + Duration::hours(2))
        .await
        .unwrap();
    let look = now + Duration::minutes(30);
    let before = (
        usage(spend.as_ref(), &policies, look).await,
        spend.list_holds(1_000).await.unwrap(),
    );
    assert_eq!(before.1.len(), live.len());

    let spend = h.restart(spend).await;
    let after = (
        usage(spend.as_ref(), &policies, look).await,
        spend.list_holds(1_000).await.unwrap(),
    );
    assert_eq!(after, before);
    // The restored holds are live: they settle once, and the rest expire (not the extended one).
    spend.settle(&live[1].key(), Micros(5), look).await.unwrap();
    let due = all_expired(spend.as_ref(), look + Duration::minutes(30)).await;
    assert_eq!(due.len(), live.len() - 2);
}

pub async fn holds_carry_their_source_and_operation<H: Harness>() {
    let (h, spend) = H::open().await;
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000)];
    let mut req = request(&child(2), &policies, 7, now);
    req.resource = "mcp:search/web".into();
    req.source = Source::Mcp;
    req.operation = "tools/call".into();
    reserved(spend.as_ref(), req).await;
    let spend = h.restart(spend).await;
    let due = all_expired(spend.as_ref(), now + Duration::seconds(300)).await;
    let held: Vec<_> = due
        .iter()
        .map(|h| (h.source, h.operation.as_str(), h.resource.as_str()))
        .collect();
    assert_eq!(held, vec![(Source::Mcp, "tools/call", "mcp:search/web")]);
}

/// A hold re-asserted (a replica's answer to a cache that lost its data) is never recorded
/// twice while it is there, and never brought back once settled.
pub async fn reasserting_a_hold_never_doubles_or_resurrects_it<H: Harness>() {
    let (_h, spend) = H::open().await;
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000), daily(11, 1, 5_000)];
    let held = reserved(spend.as_ref(), request(&child(2), &policies, 300, now)).await;
    let info = spend
        .list_holds(10)
        .await
        .unwrap()
        .into_iter()
        .find(|h| h.hold_id == held.hold_id)
        .unwrap();
    assert!(!spend.reassert(&info).await.unwrap(), "the hold is there");
    assert_eq!(
        usage(spend.as_ref(), &policies, now).await,
        vec![(0, 300), (0, 300)]
    );
    spend.settle(&held.key(), Micros(200), now).await.unwrap();
    assert!(!spend.reassert(&info).await.unwrap(), "settled: not back");
    assert_eq!(
        usage(spend.as_ref(), &policies, now).await,
        vec![(200, 0), (200, 0)]
    );
    assert_eq!(spend.list_holds(10).await.unwrap(), vec![]);
    assert!(spend.check_epoch().await.unwrap().admitting);
}
