//! The metrics consumer's partition leases in Redis, with the same fair split and epochs as the
//! stores' (`store::leases::plan_acquisition`): the plan is made from the lease hashes as read,
//! and each step is one script on one partition's hash that applies only if the hash still
//! says what was read (a renewal checks owner and epoch, a takeover the epoch it replaces), so
//! two replicas racing for a partition cannot both own it. The committed offset lives in the
//! lease hash, beside the fence the commit script checks. DLQ replay records stay in the
//! system of record (`dlq_records`).

use async_trait::async_trait;
use fred::prelude::Value;

use super::{lease_key, pairs, RedisAggregates, MEMBERS, TOPICS};
use crate::store::leases::{
    plan_acquisition, CurrentLease, Fence, Lease, LeasePlan, LeaseRequest, LeaseRow, LeaseStore,
};
use crate::store::StoreError;

/// A lease hash as read: `(owner, epoch, expires, offset)`, `None` when absent.
fn parse_lease(reply: Value) -> Option<CurrentLease> {
    let fields = reply.into_array();
    let text = |i: usize| fields.get(i).and_then(Value::as_string);
    let number = |i: usize| text(i).and_then(|t| t.parse::<i64>().ok());
    let epoch = number(1)?;
    Some((
        text(0),
        epoch,
        number(2).unwrap_or(0),
        number(3).unwrap_or(0),
    ))
}

impl RedisAggregates {
    /// Carries out an acquisition plan step by step; returns `(partition, epoch, offset)` of
    /// every lease this owner holds afterwards (a step whose hash changed since it was read
    /// is skipped: another replica got there first).
    async fn carry_out(
        &self,
        req: &LeaseRequest,
        plan: &LeasePlan,
        current: &[Option<CurrentLease>],
        expires: i64,
    ) -> Result<Vec<(i32, i64, i64)>, StoreError> {
        for partition in &plan.release {
            let args = vec![req.owner.clone()];
            self.run(&self.scripts.release, vec![lease_key(*partition)], args)
                .await?;
        }
        let mut owned = Vec::new();
        for (partition, epoch, _) in &plan.keep {
            let args = vec![req.owner.clone(), epoch.to_string(), expires.to_string()];
            if let Some(offset) = self.step(&self.scripts.renew, *partition, args).await? {
                owned.push((*partition, *epoch, offset));
            }
        }
        for (partition, epoch, _) in &plan.take {
            let observed = current
                .get(usize::try_from(*partition).unwrap_or(usize::MAX))
                .cloned()
                .flatten()
                .map_or(0, |(_, e, _, _)| e);
            let args = vec![
                req.owner.clone(),
                observed.to_string(),
                epoch.to_string(),
                req.now_micros.to_string(),
                expires.to_string(),
            ];
            if let Some(offset) = self.step(&self.scripts.take, *partition, args).await? {
                owned.push((*partition, *epoch, offset));
            }
        }
        Ok(owned)
    }

    async fn read_lease(&self, partition: i32) -> Result<Option<CurrentLease>, StoreError> {
        let reply = self
            .run(&self.scripts.read_lease, vec![lease_key(partition)], vec![])
            .await?;
        Ok(parse_lease(reply))
    }

    /// Runs a renew or take script; the committed offset when it applied.
    async fn step(
        &self,
        script: &fred::types::scripts::Script,
        partition: i32,
        args: Vec<String>,
    ) -> Result<Option<i64>, StoreError> {
        let reply = self.run(script, vec![lease_key(partition)], args).await?;
        Ok(reply.as_i64().filter(|offset| *offset >= 0))
    }
}

#[async_trait]
impl LeaseStore for RedisAggregates {
    async fn acquire_leases(&self, req: &LeaseRequest) -> Result<Vec<Lease>, StoreError> {
        let expires = req.now_micros.saturating_add(req.ttl_micros);
        let args = vec![
            req.owner.clone(),
            req.now_micros.to_string(),
            expires.to_string(),
            req.topic.clone(),
            req.partitions.to_string(),
        ];
        let keys = vec![MEMBERS.to_owned(), TOPICS.to_owned()];
        let members = self.run(&self.scripts.member, keys, args).await?;
        let live = members.as_i64().unwrap_or(1);
        let mut current = Vec::new();
        for partition in 0..req.partitions {
            current.push(self.read_lease(partition).await?);
        }
        let plan = plan_acquisition(req, live, |p| {
            Ok(usize::try_from(p)
                .ok()
                .and_then(|i| current.get(i).cloned())
                .flatten())
        })?;
        let mut owned = self.carry_out(req, &plan, &current, expires).await?;
        owned.sort_unstable();
        Ok(owned
            .into_iter()
            .map(|(partition, epoch, next_offset)| Lease {
                fence: Fence {
                    consumer: req.consumer.clone(),
                    topic: req.topic.clone(),
                    partition,
                    owner: req.owner.clone(),
                    epoch,
                },
                next_offset,
            })
            .collect())
    }

    async fn release_leases(&self, _consumer: &str, owner: &str) -> Result<(), StoreError> {
        let keys = vec![MEMBERS.to_owned(), TOPICS.to_owned()];
        let topics = self
            .run(&self.scripts.leave, keys, vec![owner.to_owned()])
            .await?;
        let partitions = pairs(topics.into_array())
            .into_iter()
            .map(|(_, n)| n)
            .max()
            .unwrap_or(0);
        for partition in 0..i32::try_from(partitions).unwrap_or(0) {
            let args = vec![owner.to_owned()];
            self.run(&self.scripts.release, vec![lease_key(partition)], args)
                .await?;
        }
        Ok(())
    }

    async fn list_leases(&self, _consumer: Option<&str>) -> Result<Vec<LeaseRow>, StoreError> {
        let mut rows = Vec::new();
        for (topic, partitions) in self.topics().await? {
            for partition in 0..partitions {
                if let Some((owner, epoch, expires, offset)) = self.read_lease(partition).await? {
                    rows.push(LeaseRow {
                        consumer: crate::aggregate::sink::CONSUMER.to_owned(),
                        topic: topic.clone(),
                        partition,
                        owner,
                        epoch,
                        expires_at_micros: expires,
                        next_offset: offset,
                    });
                }
            }
        }
        Ok(rows)
    }

    async fn commit_offset(&self, fence: &Fence, next_offset: i64) -> Result<(), StoreError> {
        use crate::aggregate::AggregateStore;
        self.apply(fence, Vec::new(), next_offset).await.map(drop)
    }

    async fn record_dlq_replay(
        &self,
        partition: i32,
        offset: i64,
        at_micros: i64,
    ) -> Result<bool, StoreError> {
        self.dlq_records
            .record_dlq_replay(partition, offset, at_micros)
            .await
    }

    async fn dlq_replays(&self) -> Result<Vec<(i32, i64)>, StoreError> {
        self.dlq_records.dlq_replays().await
    }

    async fn dlq_replay_count(&self) -> Result<i64, StoreError> {
        self.dlq_records.dlq_replay_count().await
    }
}
