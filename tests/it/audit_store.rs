//! The audit store contract as cases every store runs: fenced appends, idempotence on the
//! message's place and on the event id, export cursors that only move forward, retention.

use caracal::roles::Stores;
use caracal::store::audit::AuditEntry;
use caracal::store::leases::{Fence, LeaseRequest};
use caracal::store::StoreError;

fn entry(offset: i64, event_id: Option<&str>, occurred_at_micros: i64) -> AuditEntry {
    AuditEntry {
        topic: "caracal.agent.lifecycle".into(),
        partition: 0,
        offset,
        event_id: event_id.map(str::to_owned),
        event_type: "AgentLifecycle".into(),
        occurred_at_micros,
        agent_id: Some("a".into()),
        root_agent_id: Some("a".into()),
        record: format!(r#"{{"offset":{offset}}}"#),
    }
}

async fn lease(store: &Stores, owner: &str, now_micros: i64) -> Fence {
    let request = LeaseRequest {
        consumer: "audit".into(),
        topic: "caracal.agent.lifecycle".into(),
        partitions: 1,
        owner: owner.into(),
        now_micros,
        ttl_micros: 1_000,
    };
    let mut leases = store.leases.acquire_leases(&request).await.unwrap();
    assert_eq!(leases.len(), 1, "{owner} gets the partition");
    leases.remove(0).fence
}

async fn committed_offset(store: &Stores) -> i64 {
    store.leases.list_leases(Some("audit")).await.unwrap()[0].next_offset
}

pub async fn a_stale_fence_writes_neither_records_nor_the_offset(store: &Stores) {
    let old = lease(store, "replica-a", 0).await;
    let fresh = store
        .audit
        .append_audit(&old, vec![entry(0, Some("e0"), 10)], 1, 1)
        .await
        .unwrap();
    assert_eq!(fresh, 1);
    // replica-a's lease expires and replica-b takes the partition with a new epoch.
    let new = lease(store, "replica-b", 1_000_000).await;
    assert!(new.epoch > old.epoch);
    let stale = store
        .audit
        .append_audit(&old, vec![entry(1, Some("e1"), 11)], 2, 2)
        .await;
    assert!(matches!(stale, Err(StoreError::Fenced(_))), "{stale:?}");
    assert_eq!(store.audit.audit_after(0, 10).await.unwrap().len(), 1);
    assert_eq!(committed_offset(store).await, 1);
    let taken = store
        .audit
        .append_audit(&new, vec![entry(1, Some("e1"), 11)], 2, 2)
        .await
        .unwrap();
    assert_eq!(taken, 1);
    assert_eq!(committed_offset(store).await, 2);
}

pub async fn appends_are_idempotent_on_place_and_on_event_id(store: &Stores) {
    let fence = lease(store, "replica-a", 0).await;
    let batch = vec![entry(0, Some("e0"), 10), entry(1, None, 11)];
    assert_eq!(
        store
            .audit
            .append_audit(&fence, batch.clone(), 2, 1)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.audit.append_audit(&fence, batch, 2, 1).await.unwrap(),
        0
    );
    // The same event again at a later offset (a retried publish): logged once.
    let again = vec![entry(2, Some("e0"), 10), entry(3, None, 12)];
    assert_eq!(
        store.audit.append_audit(&fence, again, 4, 1).await.unwrap(),
        1
    );
    let ids: Vec<i64> = store
        .audit
        .audit_after(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.entry.offset)
        .collect();
    assert_eq!(ids, vec![0, 1, 3]);
}

pub async fn cursors_only_move_forward_and_retention_deletes_old_records(store: &Stores) {
    let fence = lease(store, "replica-a", 0).await;
    let batch = (0..3).map(|i| entry(i, None, 100 * i)).collect();
    store.audit.append_audit(&fence, batch, 3, 1).await.unwrap();
    assert_eq!(store.audit.audit_cursor("file:///x").await.unwrap(), 0);
    store.audit.move_audit_cursor("file:///x", 2).await.unwrap();
    store.audit.move_audit_cursor("file:///x", 1).await.unwrap();
    assert_eq!(store.audit.audit_cursor("file:///x").await.unwrap(), 2);
    let in_range = store.audit.audit_in_range(100, 201, 0, 10).await.unwrap();
    assert_eq!(in_range.len(), 2);
    assert_eq!(store.audit.delete_audit_before(150).await.unwrap(), 2);
    assert_eq!(store.audit.delete_audit_before(150).await.unwrap(), 0);
    let left = store.audit.audit_after(0, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].entry.occurred_at_micros, 200);
}

macro_rules! every_case {
    ($backend:ident, $make:path, [$($case:ident),+ $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let fixture = $make().await;
                    super::$case(&fixture.store).await;
                }
            )+
        }
    };
}

macro_rules! every_backend {
    ($($backend:ident => $make:path),+ $(,)?) => {
        $(every_case!(
            $backend,
            $make,
            [
                a_stale_fence_writes_neither_records_nor_the_offset,
                appends_are_idempotent_on_place_and_on_event_id,
                cursors_only_move_forward_and_retention_deletes_old_records,
            ]
        );)+
    };
}

every_backend!(
    sqlite => crate::harness::postgres::sqlite_fixture,
    postgres => crate::harness::postgres::postgres_fixture,
    pgbouncer => crate::harness::postgres::pgbouncer_fixture,
);
