//! `RedisAggregates`: the metrics role's aggregates, offsets and partition leases in Redis.
//! A consumed partition's lease (owner, epoch, committed offset), its dedupe marks and its
//! aggregates share the hash tag `{m<partition>}`, so one Lua script per batch checks the fence
//! and writes the aggregates and the offset atomically (and Redis Cluster accepts it). Readers
//! sum an agent's aggregate over every partition. Redis is a cache here: the ledger is the
//! record. Knows no HTTP and no budget rules.

mod leases;

use std::sync::Arc;

use async_trait::async_trait;
use fred::prelude::{ClientLike, Pool, Value};
use fred::types::scripts::Script;

use super::keys::{aggregate_key, partition_prefix, Period, Scope, Totals};
use super::{scripts, AggregateSettings, AggregateStore, EventIncrements};
use crate::core::agent::AgentId;
use crate::core::events::TOPIC_METERING_EVENTS;
use crate::spend::redis::{RedisLimits, RedisTarget};
use crate::store::leases::{Fence, LeaseStore};
use crate::store::StoreError;

/// The members sorted set and the topics hash of the metrics consumer (their own slot).
const MEMBERS: &str = "caracal:agg:{members}";
const TOPICS: &str = "caracal:agg:{members}:topics";

struct Scripts {
    member: Script,
    leave: Script,
    read_lease: Script,
    renew: Script,
    release: Script,
    take: Script,
    commit: Script,
    read: Script,
}

pub struct RedisAggregates {
    pool: Pool,
    scripts: Scripts,
    settings: AggregateSettings,
    /// Where DLQ replays are recorded (the system of record's lease store): the DLQ is shared
    /// by every consumer, so its bookkeeping stays in one place.
    dlq_records: Arc<dyn LeaseStore>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

impl RedisAggregates {
    /// Connects (the same `redis.*` settings as the spend cache) and refuses a server that may
    /// evict keys (an evicted aggregate or offset would be silently lost or counted twice).
    pub async fn open(
        target: &RedisTarget,
        limits: &RedisLimits,
        settings: AggregateSettings,
        dlq_records: Arc<dyn LeaseStore>,
    ) -> Result<RedisAggregates, crate::spend::SpendError> {
        let pool = crate::spend::redis::connect::connect(target, limits).await?;
        crate::spend::redis::refuse_eviction(&pool).await?;
        Ok(RedisAggregates {
            pool,
            scripts: Scripts {
                member: Script::from_lua(scripts::MEMBER),
                leave: Script::from_lua(scripts::LEAVE),
                read_lease: Script::from_lua(scripts::READ_LEASE),
                renew: Script::from_lua(scripts::RENEW),
                release: Script::from_lua(scripts::RELEASE),
                take: Script::from_lua(scripts::TAKE),
                commit: Script::from_lua(scripts::COMMIT),
                read: Script::from_lua(scripts::READ),
            },
            settings,
            dlq_records,
        })
    }

    async fn run(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, StoreError> {
        script
            .evalsha_with_reload(self.pool.next(), keys, args)
            .await
            .map_err(unavailable)
    }

    /// Partitions per topic, as the metrics consumer last recorded them.
    async fn topics(&self) -> Result<Vec<(String, i32)>, StoreError> {
        let reply = self
            .run(&self.scripts.read, vec![TOPICS.to_owned()], vec![])
            .await?
            .into_array();
        let flat = reply.into_iter().next().map(Value::into_array);
        Ok(pairs(flat.unwrap_or_default())
            .into_iter()
            .map(|(topic, n)| (topic, i32::try_from(n).unwrap_or(0)))
            .collect())
    }

    async fn metering_partitions(&self) -> Result<i32, StoreError> {
        Ok(self
            .topics()
            .await?
            .into_iter()
            .find(|(topic, _)| topic == TOPIC_METERING_EVENTS)
            .map_or(0, |(_, n)| n))
    }
}

/// A flat `[name, value, name, value…]` reply as pairs; values that are not integers are skipped.
fn pairs(flat: Vec<Value>) -> Vec<(String, i64)> {
    flat.chunks(2)
        .filter_map(|pair| {
            let name = pair.first()?.as_string()?;
            let value = pair.get(1)?.as_string()?.parse().ok()?;
            Some((name, value))
        })
        .collect()
}

/// The commit script's arguments for one batch.
fn commit_call(
    fence: &Fence,
    events: &[EventIncrements],
    next_offset: i64,
    settings: &AggregateSettings,
) -> (Vec<String>, Vec<String>) {
    let prefix = partition_prefix(fence.partition);
    let mut keys = vec![lease_key(fence.partition)];
    keys.extend(
        events
            .iter()
            .map(|e| format!("{prefix}:seen:{}", e.event_id)),
    );
    let mut index: std::collections::HashMap<&str, usize> = Default::default();
    let mut aggregates: Vec<&str> = Vec::new();
    for inc in events.iter().flat_map(|e| &e.increments) {
        if !index.contains_key(inc.key.as_str()) {
            index.insert(&inc.key, aggregates.len());
            aggregates.push(&inc.key);
        }
    }
    let mut args = vec![
        fence.owner.clone(),
        fence.epoch.to_string(),
        next_offset.to_string(),
        settings.dedupe_window_secs.max(1).to_string(),
        events.len().to_string(),
        aggregates.len().to_string(),
    ];
    args.extend(
        aggregates
            .iter()
            .map(|key| ttl_of(key, settings).to_string()),
    );
    for event in events {
        args.push(event.increments.len().to_string());
        for inc in &event.increments {
            let k = index.get(inc.key.as_str()).copied().unwrap_or(0);
            args.extend([k.to_string(), inc.field.clone(), inc.delta.to_string()]);
        }
    }
    keys.extend(aggregates.into_iter().map(str::to_owned));
    (keys, args)
}

/// The retention of an aggregate key from its period suffix (0: kept forever).
fn ttl_of(key: &str, settings: &AggregateSettings) -> i64 {
    let period = Period(key.rsplit(':').next().unwrap_or_default().to_owned());
    period.ttl_secs(&settings.retention).unwrap_or(0).max(0)
}

fn lease_key(partition: i32) -> String {
    format!("{}:lease", partition_prefix(partition))
}

#[async_trait]
impl AggregateStore for RedisAggregates {
    async fn apply(
        &self,
        fence: &Fence,
        events: Vec<EventIncrements>,
        next_offset: i64,
    ) -> Result<usize, StoreError> {
        let (keys, args) = commit_call(fence, &events, next_offset, &self.settings);
        let reply = self.run(&self.scripts.commit, keys, args).await?;
        match reply.as_i64() {
            Some(applied) if applied >= 0 => Ok(usize::try_from(applied).unwrap_or(0)),
            _ => Err(StoreError::Fenced(format!(
                "metrics partition {} is no longer {}'s at epoch {}",
                fence.partition, fence.owner, fence.epoch
            ))),
        }
    }

    async fn read(
        &self,
        scope: Scope,
        agent: AgentId,
        periods: &[Period],
    ) -> Result<Totals, StoreError> {
        let mut totals = Totals::default();
        for partition in 0..self.metering_partitions().await? {
            let keys: Vec<String> = periods
                .iter()
                .map(|p| aggregate_key(partition, scope, agent, p))
                .collect();
            let reply = self.run(&self.scripts.read, keys, vec![]).await?;
            for flat in reply.into_array() {
                for (field, value) in pairs(flat.into_array()) {
                    totals.add_field(&field, value);
                }
            }
        }
        Ok(totals)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.pool
            .next()
            .ping::<String>(None)
            .await
            .map(drop)
            .map_err(unavailable)
    }
}

/// A pool to the configured Redis (standalone, Cluster, TLS), as the spend cache connects.
#[cfg(test)]
mod tests;
