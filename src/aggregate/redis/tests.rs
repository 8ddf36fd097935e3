//! The aggregate store on a real `redis-server`: a batch and its offset move together, a stale
//! lease holder's batch is refused by the script and writes nothing, a redelivered event adds
//! nothing, and two replicas split the partitions; on one server and on a Redis Cluster.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use uuid::Uuid;

use super::RedisAggregates;
use crate::aggregate::keys::{aggregate_key, Increment, Period, Retention, Scope};
use crate::aggregate::{AggregateSettings, AggregateStore, EventIncrements};
use crate::core::agent::AgentId;
use crate::spend::redis::tests::{RedisCluster, RedisServer};
use crate::spend::redis::{RedisLimits, RedisTarget};
use crate::store::leases::{Fence, Lease, LeaseRequest, LeaseRow, LeaseStore};
use crate::store::StoreError;

/// DLQ bookkeeping is not under test here.
struct NoDlq;

#[async_trait]
impl LeaseStore for NoDlq {
    async fn acquire_leases(&self, _: &LeaseRequest) -> Result<Vec<Lease>, StoreError> {
        Ok(vec![])
    }
    async fn release_leases(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
    async fn list_leases(&self, _: Option<&str>) -> Result<Vec<LeaseRow>, StoreError> {
        Ok(vec![])
    }
    async fn commit_offset(&self, _: &Fence, _: i64) -> Result<(), StoreError> {
        Ok(())
    }
    async fn record_dlq_replay(&self, _: i32, _: i64, _: i64) -> Result<bool, StoreError> {
        Ok(true)
    }
    async fn dlq_replays(&self) -> Result<Vec<(i32, i64)>, StoreError> {
        Ok(vec![])
    }
    async fn dlq_replay_count(&self) -> Result<i64, StoreError> {
        Ok(0)
    }
}

async fn open(target: &RedisTarget) -> RedisAggregates {
    let settings = AggregateSettings {
        dedupe_window_secs: 3_600,
        retention: Retention {
            hour_secs: 3_600,
            day_secs: 86_400,
            month_secs: 86_400,
        },
    };
    RedisAggregates::open(target, &RedisLimits::default(), settings, Arc::new(NoDlq))
        .await
        .unwrap()
}

const SECOND: i64 = 1_000_000;

fn request(owner: &str, now_micros: i64) -> LeaseRequest {
    LeaseRequest {
        consumer: "metrics".into(),
        topic: "caracal.metering.events".into(),
        partitions: 4,
        owner: owner.into(),
        now_micros,
        ttl_micros: 10 * SECOND,
    }
}

fn day() -> Period {
    Period::day(Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap())
}

fn charge(partition: i32, agent: AgentId, id: u128, micros: i64) -> EventIncrements {
    EventIncrements {
        event_id: Uuid::from_u128(id),
        increments: vec![Increment {
            key: aggregate_key(partition, Scope::Own, agent, &day()),
            field: "s.USD".into(),
            delta: micros,
        }],
    }
}

async fn spent(store: &RedisAggregates, agent: AgentId) -> i64 {
    let totals = store.read(Scope::Own, agent, &[day()]).await.unwrap();
    totals.spend_micros.get("USD").copied().unwrap_or(0)
}

#[tokio::test]
async fn a_stale_holder_writes_nothing_and_redelivered_events_add_nothing() {
    let server = RedisServer::start(&[]);
    scenario(&server.target()).await;
}

/// Every script keeps to one hash slot: the same scenario on a three-primary Redis Cluster.
#[tokio::test]
async fn the_same_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    scenario(&cluster.target()).await;
}

async fn scenario(target: &RedisTarget) {
    let (a, b) = (open(target).await, open(target).await);
    let agent = AgentId::new();
    let mine = a.acquire_leases(&request("a", 0)).await.unwrap();
    assert_eq!(mine.len(), 4, "alone, a owns every partition");
    let fence = mine[0].fence.clone();
    let batch = vec![charge(0, agent, 1, 700), charge(0, agent, 1, 700)];
    assert_eq!(a.apply(&fence, batch, 2).await.unwrap(), 1, "one id, once");
    let again = vec![charge(0, agent, 1, 700), charge(0, agent, 2, 5)];
    assert_eq!(a.apply(&fence, again, 4).await.unwrap(), 1);
    assert_eq!(spent(&a, agent).await, 705);

    // a stops renewing; after its lease expires b takes every partition with a new epoch.
    let theirs = b.acquire_leases(&request("b", 30 * SECOND)).await.unwrap();
    assert_eq!(theirs.len(), 4);
    assert_eq!(theirs[0].fence.epoch, fence.epoch + 1);
    assert_eq!(
        theirs[0].next_offset, 4,
        "the offset written with the aggregates"
    );
    let stale = a.apply(&fence, vec![charge(0, agent, 3, 1_000)], 5).await;
    assert!(matches!(stale, Err(StoreError::Fenced(_))), "{stale:?}");
    assert_eq!(spent(&b, agent).await, 705, "the stale batch wrote nothing");
    assert_eq!(theirs[0].next_offset, 4);
    let fresh = b.apply(&theirs[0].fence, vec![charge(0, agent, 3, 1_000)], 5);
    assert_eq!(fresh.await.unwrap(), 1);
    assert_eq!(spent(&b, agent).await, 1_705);

    // a comes back: it renews its membership and gets half, released by b on its next renewal.
    let back = a.acquire_leases(&request("a", 31 * SECOND)).await.unwrap();
    assert!(back.is_empty(), "b's leases are live");
    let kept = b.acquire_leases(&request("b", 32 * SECOND)).await.unwrap();
    assert_eq!(kept.len(), 2, "b keeps its fair share of two replicas");
    let share = a.acquire_leases(&request("a", 33 * SECOND)).await.unwrap();
    assert_eq!(share.len(), 2);
    let rows = a.list_leases(None).await.unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0].next_offset, 5);
}
