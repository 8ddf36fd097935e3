//! The lease and ledger store contracts, as cases over trait objects so every store runs the
//! same ones: fair splits and takeovers with fencing, exactly-once appends, batches that must
//! follow each other, queries with totals.

use std::sync::Arc;

use caracal::core::agent::AgentId;
use caracal::core::checkpoint::BatchHeader;
use caracal::ledger::verify;
use caracal::store::leases::{Fence, LeaseRequest, LeaseStore};
use caracal::store::ledger::{
    LedgerColumns, LedgerEntry, LedgerQuery, LedgerStore, SealedBatch, SeqRange, Visit,
};
use caracal::store::StoreError;

use crate::harness::events::metering;

const TOPIC: &str = "caracal.metering.events";
const SECOND: i64 = 1_000_000;

pub struct Stores {
    pub leases: Arc<dyn LeaseStore>,
    pub ledger: Arc<dyn LedgerStore>,
}

fn request(owner: &str, now: i64) -> LeaseRequest {
    LeaseRequest {
        consumer: "ledger".into(),
        topic: TOPIC.into(),
        partitions: 10,
        owner: owner.into(),
        now_micros: now,
        ttl_micros: 10 * SECOND,
    }
}

fn entry(root: AgentId, agent: AgentId, cost: i64, offset: i64) -> LedgerEntry {
    let event = metering(root, agent, cost);
    LedgerEntry {
        columns: LedgerColumns::from_event(&event),
        datum: caracal::bus::avro::encode_datum(&event).unwrap(),
        source_offset: offset,
    }
}

fn fenced<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(matches!(result, Err(StoreError::Fenced(_))), "{result:?}");
}

pub async fn replicas_split_partitions_and_a_lost_lease_writes_nothing(s: &Stores) {
    let t0 = 1_000 * SECOND;
    let a = s.leases.acquire_leases(&request("a", t0)).await.unwrap();
    assert_eq!(a.len(), 10, "a lone replica owns every partition");
    assert!(a.iter().all(|l| l.fence.epoch == 1 && l.next_offset == 0));

    // B joins: A gives up half on its next renewal, B takes them on its next.
    let b = s
        .leases
        .acquire_leases(&request("b", t0 + SECOND))
        .await
        .unwrap();
    assert!(b.is_empty(), "nothing is free yet");
    let a2 = s
        .leases
        .acquire_leases(&request("a", t0 + 2 * SECOND))
        .await
        .unwrap();
    assert_eq!(a2.len(), 5);
    let b2 = s
        .leases
        .acquire_leases(&request("b", t0 + 3 * SECOND))
        .await
        .unwrap();
    assert_eq!(b2.len(), 5);
    let (mut mine, theirs): (Vec<i32>, Vec<i32>) = (
        a2.iter().map(|l| l.fence.partition).collect(),
        b2.iter().map(|l| l.fence.partition).collect(),
    );
    mine.extend(&theirs);
    mine.sort_unstable();
    assert_eq!(
        mine,
        (0..10).collect::<Vec<_>>(),
        "every partition has one owner"
    );
    assert!(
        b2.iter().all(|l| l.fence.epoch == 2),
        "taking a partition bumps its epoch"
    );

    // A's old fence on a partition B now owns: its append writes nothing.
    let moved = b2[0].fence.partition;
    let stale = a.iter().find(|l| l.fence.partition == moved).unwrap();
    let root = AgentId::new();
    fenced(
        s.ledger
            .append_ledger(&stale.fence, vec![entry(root, root, 5, 0)], 1)
            .await,
    );
    assert_eq!(s.ledger.ledger_head(moved).await.unwrap().next_seq, 0);
    fenced(s.leases.commit_offset(&stale.fence, 1).await);

    // B's fence works, and the committed offset is what B resumes from.
    let done = s
        .ledger
        .append_ledger(&b2[0].fence, vec![entry(root, root, 5, 0)], 1)
        .await
        .unwrap();
    assert_eq!(done.inserted, 1);
    let again = s
        .leases
        .acquire_leases(&request("b", t0 + 4 * SECOND))
        .await
        .unwrap();
    let resumed = again.iter().find(|l| l.fence.partition == moved).unwrap();
    assert_eq!(resumed.next_offset, 1);
    assert_eq!(
        resumed.fence.epoch, b2[0].fence.epoch,
        "renewal keeps the epoch"
    );
}

pub async fn an_expired_replica_is_taken_over_and_fenced(s: &Stores) {
    let t0 = 5_000 * SECOND;
    let a = s.leases.acquire_leases(&request("a", t0)).await.unwrap();
    // A stops renewing (killed). After the TTL, B takes everything over.
    let b = s
        .leases
        .acquire_leases(&request("b", t0 + 11 * SECOND))
        .await
        .unwrap();
    assert_eq!(b.len(), 10);
    assert!(b.iter().all(|l| l.fence.epoch == a[0].fence.epoch + 1));
    let root = AgentId::new();
    fenced(
        s.ledger
            .append_ledger(&a[3].fence, vec![entry(root, root, 1, 0)], 1)
            .await,
    );
    // A clean release frees partitions at once.
    s.leases.release_leases("ledger", "b").await.unwrap();
    let c = s
        .leases
        .acquire_leases(&request("c", t0 + 12 * SECOND))
        .await
        .unwrap();
    assert_eq!(c.len(), 10);
    let rows = s.leases.list_leases(Some("ledger")).await.unwrap();
    assert!(rows.iter().all(|r| r.owner.as_deref() == Some("c")));
}

pub async fn appends_are_idempotent_and_batches_must_follow_each_other(s: &Stores) {
    let lease = s
        .leases
        .acquire_leases(&request("a", 9_000 * SECOND))
        .await
        .unwrap();
    let fence: &Fence = &lease[7].fence;
    let (root, child) = (AgentId::new(), AgentId::new());
    let first = vec![
        entry(root, root, 100, 0),
        entry(root, child, 20, 1),
        entry(root, child, 3, 2),
    ];
    let outcome = s
        .ledger
        .append_ledger(fence, first.clone(), 3)
        .await
        .unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (3, 0));
    // A retried publish of the same events, plus one new: only the new one gets a number.
    let mut retry = first.clone();
    retry.push(entry(root, child, 4_000, 3));
    let outcome = s.ledger.append_ledger(fence, retry, 4).await.unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (1, 3));
    let rows = s.ledger.ledger_rows(fence.partition, 0, 100).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );

    let header = |number: i64, first_seq: i64, last_seq: i64| BatchHeader {
        partition: fence.partition,
        batch_number: number,
        first_seq,
        last_seq,
        count: last_seq - first_seq + 1,
        root: [7; 32],
        prev_root: [0; 32],
        first_time_micros: 0,
        last_time_micros: 0,
        key_id: "k".into(),
    };
    let batch = |h: BatchHeader| SealedBatch {
        header: h,
        signature: vec![1, 2, 3],
        sealed_at_micros: 0,
    };
    let conflict =
        |r: Result<(), StoreError>| assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    conflict(
        s.ledger
            .seal_batch(Some(fence), &batch(header(1, 0, 1)))
            .await,
    );
    conflict(
        s.ledger
            .seal_batch(Some(fence), &batch(header(0, 1, 2)))
            .await,
    );
    conflict(
        s.ledger
            .seal_batch(Some(fence), &batch(header(0, 0, 4)))
            .await,
    );
    s.ledger
        .seal_batch(Some(fence), &batch(header(0, 0, 1)))
        .await
        .unwrap();
    conflict(
        s.ledger
            .seal_batch(Some(fence), &batch(header(0, 0, 1)))
            .await,
    );
    s.ledger
        .seal_batch(None, &batch(header(1, 2, 3)))
        .await
        .unwrap();
    let head = s.ledger.ledger_head(fence.partition).await.unwrap();
    assert_eq!((head.next_seq, head.unsealed()), (4, 0));
    assert_eq!(
        s.ledger
            .count_batches_in_range(i64::MIN, i64::MAX)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.ledger.count_batches_in_range(1, i64::MAX).await.unwrap(),
        0
    );
    // Several batches in one call: all of them or, when one does not follow, none.
    let more: Vec<LedgerEntry> = (4..8).map(|o| entry(root, child, 1, o)).collect();
    s.ledger.append_ledger(fence, more, 8).await.unwrap();
    conflict(
        s.ledger
            .seal_batches(
                Some(fence),
                &[batch(header(2, 4, 5)), batch(header(4, 6, 7))],
            )
            .await,
    );
    assert_eq!(
        s.ledger
            .ledger_head(fence.partition)
            .await
            .unwrap()
            .unsealed(),
        4,
        "a refused group stores none of its batches"
    );
    s.ledger
        .seal_batches(
            Some(fence),
            &[batch(header(2, 4, 5)), batch(header(3, 6, 7))],
        )
        .await
        .unwrap();
    let head = s.ledger.ledger_head(fence.partition).await.unwrap();
    assert_eq!((head.next_seq, head.unsealed()), (8, 0));
    assert_eq!(
        s.ledger
            .batch_covering(fence.partition, 2)
            .await
            .unwrap()
            .unwrap()
            .header
            .batch_number,
        1
    );

    // The query: the root alone, the whole tree, totals over the range.
    let query = |agent: AgentId, include_children: bool| LedgerQuery {
        agent_id: agent.to_string(),
        include_children,
        start_micros: i64::MIN,
        end_micros: i64::MAX,
        limit: 2,
    };
    let (rows, totals) = s.ledger.query_ledger(&query(root, false)).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((totals[0].events, totals[0].cost_micros), (1, 100));
    let (rows, totals) = s.ledger.query_ledger(&query(root, true)).await.unwrap();
    assert_eq!(rows.len(), 2, "rows are capped by the limit");
    assert_eq!(
        (totals[0].events, totals[0].cost_micros),
        (8, 4_127),
        "totals are not"
    );
    let id = &first[1].columns.event_id;
    let row = s.ledger.ledger_event(id).await.unwrap().unwrap();
    assert_eq!(row.columns, first[1].columns);
    assert_eq!(row.datum, first[1].datum);
}

/// The verifier's row reader lends each range's rows in order, each followed by its end, with
/// exactly the stored columns (which match the sealed bytes), across adjacent ranges, a range
/// past the last row and a range that goes back.
pub async fn ranges_are_lent_row_by_row_as_stored(s: &Stores) {
    let lease = s
        .leases
        .acquire_leases(&request("a", 9_000 * SECOND))
        .await
        .unwrap();
    let fence: &Fence = &lease[3].fence;
    let (root, child) = (AgentId::new(), AgentId::new());
    let entries: Vec<_> = (0..6).map(|i| entry(root, child, 10 + i, i)).collect();
    s.ledger.append_ledger(fence, entries, 6).await.unwrap();
    let stored = s.ledger.ledger_rows(fence.partition, 0, 5).await.unwrap();
    assert!(stored.iter().all(|r| !r.columns.ancestor_ids.is_empty()));
    let p = fence.partition;
    let ranges = vec![
        SeqRange {
            partition: p,
            first: 0,
            last: 1,
        },
        SeqRange {
            partition: p,
            first: 2,
            last: 3,
        },
        SeqRange {
            partition: p,
            first: 4,
            last: 9,
        },
        SeqRange {
            partition: p,
            first: 1,
            last: 2,
        },
    ];
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = Arc::clone(&seen);
    s.ledger
        .visit_ledger_ranges(
            ranges,
            Box::new(move |visit| {
                let mut out = out.lock().unwrap();
                match visit {
                    Visit::Row(i, row) => {
                        assert!(verify::check_row(&row).is_none(), "seq {}", row.seq);
                        out.push((
                            i,
                            Some((row.seq, row.columns.to_columns(), row.datum.to_vec())),
                        ));
                    }
                    Visit::End(i) => out.push((i, None)),
                }
            }),
        )
        .await
        .unwrap();
    let row = |i: usize, seq: usize| {
        let r = &stored[seq];
        (i, Some((r.seq, r.columns.clone(), r.datum.clone())))
    };
    let expected = vec![
        row(0, 0),
        row(0, 1),
        (0, None),
        row(1, 2),
        row(1, 3),
        (1, None),
        row(2, 4),
        row(2, 5),
        (2, None),
        row(3, 1),
        row(3, 2),
        (3, None),
    ];
    assert_eq!(*seen.lock().unwrap(), expected);
}

macro_rules! every_case {
    ($backend:ident, $make:path) => {
        mod $backend {
            use super::*;

            async fn run<F, Fut>(case: F)
            where
                F: FnOnce(Stores) -> Fut,
                Fut: std::future::Future<Output = ()>,
            {
                let fixture = $make().await;
                let stores = Stores {
                    leases: Arc::clone(&fixture.store.leases),
                    ledger: Arc::clone(&fixture.store.ledger),
                };
                case(stores).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn replicas_split_partitions_and_a_lost_lease_writes_nothing() {
                run(|s| async move {
                    super::replicas_split_partitions_and_a_lost_lease_writes_nothing(&s).await
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_expired_replica_is_taken_over_and_fenced() {
                run(
                    |s| async move { super::an_expired_replica_is_taken_over_and_fenced(&s).await },
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn appends_are_idempotent_and_batches_must_follow_each_other() {
                run(|s| async move {
                    super::appends_are_idempotent_and_batches_must_follow_each_other(&s).await
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ranges_are_lent_row_by_row_as_stored() {
                run(|s| async move { super::ranges_are_lent_row_by_row_as_stored(&s).await }).await;
            }
        }
    };
}

every_case!(sqlite, crate::harness::postgres::sqlite_fixture);
every_case!(postgres, crate::harness::postgres::postgres_fixture);
every_case!(pgbouncer, crate::harness::postgres::pgbouncer_fixture);
