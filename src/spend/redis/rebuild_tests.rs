//! The rebuild of a Redis that lost its data, on a real `redis-server` emptied with `FLUSHALL`:
//! policies are seeded from the record once per epoch (two caches rebuilding at once do not add
//! up), live holds are re-asserted, a settled one is not brought back, and a new epoch holds
//! reservations back for the grace.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::tests::{limits, RedisServer};
use super::{RedisLimits, RedisSpend};
use crate::core::money::Micros;
use crate::core::policy::{BudgetPolicy, PolicyId};
use crate::spend::conformance::{self, child, daily, request, reserved, usage, utc};
use crate::spend::{SpendCache, SpendError, SpendRecord};

/// A record that says a fixed amount per policy, in the bucket of `now`.
struct Fixed(HashMap<PolicyId, i64>);

#[async_trait]
impl SpendRecord for Fixed {
    async fn recorded(
        &self,
        policy: &BudgetPolicy,
        now: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, Micros)>, SpendError> {
        let spec = &policy.spec;
        let bucket = crate::core::window::charge_bucket(spec.time_window, spec.window_type, now);
        Ok(self
            .0
            .get(&policy.id)
            .map(|m| vec![(bucket, Micros(*m))])
            .unwrap_or_default())
    }
}

fn flush(server: &RedisServer) {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &server.port.to_string(), "FLUSHALL"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

async fn open_with(server: &RedisServer, record: &Arc<Fixed>, limits: RedisLimits) -> RedisSpend {
    let record: Arc<dyn SpendRecord> = Arc::clone(record) as Arc<dyn SpendRecord>;
    RedisSpend::open(&server.target(), limits, record)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_emptied_redis_is_rebuilt_from_the_record_once_however_many_caches_rebuild_it() {
    let server = RedisServer::start(&[]);
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000), daily(11, 1, 5_000)];
    let record = Arc::new(Fixed(HashMap::from([
        (policies[0].id, 600),
        (policies[1].id, 2_000),
    ])));
    let a = Arc::new(open_with(&server, &record, limits()).await);
    let b = Arc::new(open_with(&server, &record, limits()).await);
    // A new Redis: the first reservation seeds each policy from the record.
    let held = reserved(a.as_ref(), request(&child(2), &policies, 300, now)).await;
    let info = a.list_holds(10).await.unwrap().pop().unwrap();
    assert_eq!(
        usage(b.as_ref(), &policies, now).await,
        vec![(600, 300), (2_000, 300)]
    );

    flush(&server);
    // Both caches rebuild at once; the hold in flight is re-asserted by its owner.
    assert!(a.reassert(&info).await.unwrap());
    assert!(!b.reassert(&info).await.unwrap(), "recreated once");
    let (x, y) = tokio::join!(
        a.reserve(request(&child(2), &policies, 50, now)),
        b.reserve(request(&child(2), &policies, 50, now)),
    );
    for outcome in [x, y] {
        assert!(
            matches!(outcome, Ok(crate::spend::ReserveOutcome::Reserved(_))),
            "{outcome:?}"
        );
    }
    assert_eq!(
        usage(a.as_ref(), &policies, now).await,
        vec![(600, 400), (2_000, 400)],
        "seeded once, not once per cache"
    );
    // The re-asserted hold settles as before; settled, it cannot be re-asserted again.
    a.settle(&held.key(), Micros(100), now).await.unwrap();
    assert!(!a.reassert(&info).await.unwrap());
    assert_eq!(
        usage(b.as_ref(), &policies, now).await,
        vec![(700, 100), (2_100, 100)]
    );
    // Budgets continue from the record: 700 + 100 held + 200 = the limit; one more is denied.
    reserved(b.as_ref(), request(&child(2), &policies, 200, now)).await;
    assert!(!conformance::is_allowed(a.as_ref(), request(&child(2), &policies, 1, now)).await);
}

#[tokio::test]
async fn after_a_loss_reservations_wait_out_the_grace_and_readiness_says_why() {
    let server = RedisServer::start(&[]);
    let now = utc("2026-03-10T12:00:00Z");
    let policies = [daily(10, 2, 1_000)];
    let record = Arc::new(Fixed(HashMap::new()));
    let grace = RedisLimits {
        rebuild_grace_ms: 60_000,
        ..limits()
    };
    let first = open_with(&server, &record, limits()).await;
    reserved(&first, request(&child(2), &policies, 10, now)).await;
    let joined = open_with(&server, &record, grace.clone()).await;
    assert!(
        joined.check_epoch().await.unwrap().admitting,
        "a live epoch"
    );
    reserved(&joined, request(&child(2), &policies, 10, now)).await;

    flush(&server);
    let seen = joined.check_epoch().await.unwrap().generation;
    let state = joined.check_epoch().await.unwrap();
    assert_eq!(state.generation, seen, "one new epoch, seen once");
    assert!(!state.admitting);
    let refused = joined.reserve(request(&child(2), &policies, 10, now)).await;
    assert!(
        matches!(refused, Err(SpendError::Unavailable(_))),
        "{refused:?}"
    );
    let not_ready = joined.ping().await.unwrap_err().to_string();
    assert!(not_ready.contains("lost its data"), "{not_ready}");
    // The other cache, whose grace is zero, finds the new epoch through its next reservation.
    reserved(&first, request(&child(2), &policies, 10, now)).await;
    assert_eq!(usage(&first, &policies, now).await, vec![(0, 10)]);
}
