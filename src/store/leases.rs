//! Partition leases with fencing epochs: how replicas of a consumer (ledger, audit) split a
//! topic's partitions between them without Kafka consumer groups, and how a replica that lost
//! a partition is kept from committing. Owns the types and the trait; each store implements it
//! and checks the fence inside the same transaction as the consumer's output.

use async_trait::async_trait;
use serde::Serialize;

use super::StoreError;

/// The right to commit one partition's output: valid while the lease row still names this
/// owner and epoch. Taking over a partition bumps its epoch, fencing the old owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fence {
    pub consumer: String,
    pub topic: String,
    pub partition: i32,
    pub owner: String,
    pub epoch: i64,
}

/// A partition this replica owns, and where its consumption resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub fence: Fence,
    /// The offset of the next message to consume (everything before it is committed).
    pub next_offset: i64,
}

/// One replica's request for its share of a topic's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    pub consumer: String,
    pub topic: String,
    pub partitions: i32,
    pub owner: String,
    /// Unix microseconds now, and how long a lease (and a membership) lasts unrenewed.
    pub now_micros: i64,
    pub ttl_micros: i64,
}

/// A lease row as `consumers status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseRow {
    pub consumer: String,
    pub topic: String,
    pub partition: i32,
    /// `None` once released.
    pub owner: Option<String>,
    pub epoch: i64,
    pub expires_at_micros: i64,
    pub next_offset: i64,
}

#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Renews this replica's membership and leases and returns the partitions it owns now:
    /// it keeps at most ⌈partitions / live replicas⌉ (releasing the rest), and takes free or
    /// expired partitions up to that share, each with a new epoch. One transaction.
    async fn acquire_leases(&self, request: &LeaseRequest) -> Result<Vec<Lease>, StoreError>;

    /// Gives up every lease and the membership of `owner` (on shutdown), so another replica
    /// can take over at once instead of after the lease expires.
    async fn release_leases(&self, consumer: &str, owner: &str) -> Result<(), StoreError>;

    /// Every lease row (of one consumer, or all), for `consumers status`.
    async fn list_leases(&self, consumer: Option<&str>) -> Result<Vec<LeaseRow>, StoreError>;

    /// Moves the committed offset of `fence`'s partition to `next_offset` with no other
    /// output (for a batch that was all DLQ entries). `Fenced` when the lease was lost.
    async fn commit_offset(&self, fence: &Fence, next_offset: i64) -> Result<(), StoreError>;

    /// Records that DLQ entry `(partition, offset)` was re-published; `false` if it already was.
    async fn record_dlq_replay(
        &self,
        partition: i32,
        offset: i64,
        at_micros: i64,
    ) -> Result<bool, StoreError>;

    /// The DLQ entries already re-published, as `(partition, offset)`.
    async fn dlq_replays(&self) -> Result<Vec<(i32, i64)>, StoreError>;

    /// How many DLQ entries were re-published (each counted once): the DLQ backlog is its
    /// size less this.
    async fn dlq_replay_count(&self) -> Result<i64, StoreError>;
}

/// A lease row as an acquisition reads it: `(owner, epoch, expires_at_micros, next_offset)`.
pub type CurrentLease = (Option<String>, i64, i64, i64);

/// What one acquisition does to a topic's leases; every store carries it out in one
/// transaction after reading the rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeasePlan {
    /// `(partition, epoch, next_offset)` this owner holds and keeps: renewed.
    pub keep: Vec<(i32, i64, i64)>,
    /// Partitions this owner holds beyond its share (a replica joined): released.
    pub release: Vec<i32>,
    /// `(partition, new epoch, next_offset)` free or expired partitions this owner takes.
    pub take: Vec<(i32, i64, i64)>,
}

impl LeasePlan {
    /// The leases the owner has once the plan is carried out, by partition.
    pub fn leases(&self, req: &LeaseRequest) -> Vec<Lease> {
        let mut owned: Vec<(i32, i64, i64)> = self.keep.iter().chain(&self.take).copied().collect();
        owned.sort_by_key(|(partition, _, _)| *partition);
        owned
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
            .collect()
    }
}

/// Decides an acquisition: `req.owner` keeps at most its fair share among `live_members`
/// replicas (releasing its highest partitions beyond it) and takes free or expired partitions,
/// lowest first, up to that share. `current(p)` is partition `p`'s row, if any.
pub fn plan_acquisition(
    req: &LeaseRequest,
    live_members: i64,
    mut current: impl FnMut(i32) -> Result<Option<CurrentLease>, StoreError>,
) -> Result<LeasePlan, StoreError> {
    let share = fair_share(req.partitions, usize::try_from(live_members).unwrap_or(1));
    let mut plan = LeasePlan::default();
    let mut free = Vec::new();
    for partition in 0..req.partitions {
        match current(partition)? {
            Some((Some(owner), epoch, _, offset)) if owner == req.owner => {
                plan.keep.push((partition, epoch, offset));
            }
            Some((Some(_), _, expires_at, _)) if expires_at >= req.now_micros => {}
            Some((_, epoch, _, offset)) => free.push((partition, Some(epoch), offset)),
            None => free.push((partition, None, 0)),
        }
    }
    while plan.keep.len() > share {
        if let Some((partition, _, _)) = plan.keep.pop() {
            plan.release.push(partition);
        }
    }
    let room = share.saturating_sub(plan.keep.len());
    plan.take = free
        .into_iter()
        .take(room)
        .map(|(partition, epoch, offset)| (partition, next_epoch(epoch), offset))
        .collect();
    Ok(plan)
}

/// The epoch a partition's lease gets when `owner` takes it, given the row it replaces.
pub fn next_epoch(current: Option<i64>) -> i64 {
    current.map_or(1, |epoch| epoch.saturating_add(1))
}

/// How many partitions each of `members` live replicas may own: ⌈partitions / members⌉.
pub fn fair_share(partitions: i32, members: usize) -> usize {
    let partitions = usize::try_from(partitions.max(0)).unwrap_or(0);
    let members = members.max(1);
    partitions.div_ceil(members)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fair_share_covers_every_partition() {
        assert_eq!(fair_share(10, 1), 10);
        assert_eq!(fair_share(10, 2), 5);
        assert_eq!(fair_share(10, 3), 4);
        assert_eq!(fair_share(3, 5), 1);
        assert_eq!(fair_share(0, 2), 0);
        assert_eq!(fair_share(5, 0), 5);
        for partitions in 0..40 {
            for members in 1..12 {
                assert!(fair_share(partitions, members) * members >= partitions as usize);
            }
        }
    }

    fn req(owner: &str, partitions: i32) -> LeaseRequest {
        LeaseRequest {
            consumer: "ledger".into(),
            topic: "t".into(),
            partitions,
            owner: owner.into(),
            now_micros: 1_000,
            ttl_micros: 100,
        }
    }

    #[test]
    fn a_replica_over_its_share_releases_its_highest_partitions() {
        let plan = plan_acquisition(&req("a", 4), 2, |p| {
            Ok(Some((Some("a".into()), 3, 2_000, i64::from(p) * 10)))
        })
        .unwrap();
        assert_eq!(plan.keep, vec![(0, 3, 0), (1, 3, 10)]);
        assert_eq!(plan.release, vec![3, 2]);
        assert!(plan.take.is_empty());
    }

    #[test]
    fn free_and_expired_partitions_are_taken_with_a_new_epoch_live_ones_are_not() {
        let rows = |p: i32| -> Result<Option<CurrentLease>, StoreError> {
            Ok(match p {
                0 => Some((Some("b".into()), 4, 5_000, 70)), // b's, live
                1 => Some((Some("b".into()), 4, 999, 80)),   // b's, expired
                2 => Some((None, 9, 0, 90)),                 // released
                _ => None,                                   // never leased
            })
        };
        let plan = plan_acquisition(&req("a", 4), 1, rows).unwrap();
        assert_eq!(plan.take, vec![(1, 5, 80), (2, 10, 90), (3, 1, 0)]);
        let leases = plan.leases(&req("a", 4));
        assert_eq!(
            leases.iter().map(|l| l.fence.partition).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn taking_a_partition_always_moves_its_epoch() {
        assert_eq!(next_epoch(None), 1);
        assert_eq!(next_epoch(Some(1)), 2);
        assert_eq!(next_epoch(Some(i64::MAX)), i64::MAX);
    }
}
