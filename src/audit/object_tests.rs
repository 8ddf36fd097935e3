//! Unit tests of the object destination's cutting, naming and retry rules, over an in-memory
//! object store and an in-memory audit log (the real S3 path is tests/it/audit_s3.rs).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use object_store::memory::InMemory;
use object_store::ObjectStoreExt;

use super::*;
use crate::store::audit::AuditEntry;
use crate::store::leases::Fence;
use crate::store::StoreError;

/// An audit log of `records` and forward-only cursors.
#[derive(Default)]
struct Log {
    records: Mutex<Vec<AuditRecord>>,
    cursors: Mutex<BTreeMap<String, i64>>,
}

impl Log {
    fn add(&self, logged_at_micros: i64) {
        let mut records = self.records.lock().unwrap();
        let id = records.len() as i64 + 1;
        records.push(AuditRecord {
            id,
            logged_at_micros,
            entry: AuditEntry {
                topic: "caracal.agent.lifecycle".into(),
                partition: 0,
                offset: id - 1,
                event_id: Some(format!("e-{id}")),
                event_type: "AgentLifecycle".into(),
                occurred_at_micros: logged_at_micros,
                agent_id: None,
                root_agent_id: None,
                record: format!(r#"{{"event_id":"e-{id}"}}"#),
            },
        });
    }

    fn set_cursor(&self, key: &str, id: i64) {
        self.cursors.lock().unwrap().insert(key.to_owned(), id);
    }
}

#[async_trait]
impl AuditStore for Log {
    async fn append_audit(
        &self,
        _: &Fence,
        _: Vec<AuditEntry>,
        _: i64,
        _: i64,
    ) -> Result<usize, StoreError> {
        Ok(0)
    }

    async fn audit_after(&self, after: i64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let records = self.records.lock().unwrap();
        Ok(records
            .iter()
            .filter(|r| r.id > after)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn audit_in_range(
        &self,
        _: i64,
        _: i64,
        _: i64,
        _: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(Vec::new())
    }

    async fn audit_cursor(&self, destination: &str) -> Result<i64, StoreError> {
        Ok(*self.cursors.lock().unwrap().get(destination).unwrap_or(&0))
    }

    async fn move_audit_cursor(&self, destination: &str, id: i64) -> Result<(), StoreError> {
        let mut cursors = self.cursors.lock().unwrap();
        let at = cursors.entry(destination.to_owned()).or_insert(0);
        *at = (*at).max(id);
        Ok(())
    }

    async fn delete_audit_before(&self, _: i64) -> Result<usize, StoreError> {
        Ok(0)
    }
}

const URI: &str = "s3://bkt/caracal/";
const DAY_MICROS: i64 = 1_700_000_000_000_000; // 2023-11-14

fn limits(records_max: usize, bytes_max: usize, flush_seconds: u64) -> ObjectLimits {
    ObjectLimits {
        records_max,
        bytes_max,
        flush_interval: Duration::from_secs(flush_seconds),
        request_timeout: Duration::from_secs(5),
    }
}

/// Every object under the prefix: name → body.
async fn objects(store: &InMemory) -> BTreeMap<String, String> {
    let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
    let mut out = BTreeMap::new();
    for meta in listed {
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        out.insert(
            meta.location.to_string(),
            String::from_utf8(bytes.to_vec()).unwrap(),
        );
    }
    out
}

fn line_of(text: &str) -> Line {
    Line {
        id: 1,
        logged_at_micros: 0,
        text: text.to_owned(),
    }
}

#[test]
fn an_object_is_cut_when_full_by_count_or_bytes_or_when_its_oldest_record_is_due() {
    let l = |n: usize| (0..n).map(|_| line_of("0123456789")).collect::<Vec<_>>();
    let lim = limits(3, 25, 60);
    assert_eq!(cut(&l(0), &lim, 0), None);
    assert_eq!(cut(&l(2), &lim, 0), None, "20 bytes, 2 records, not due");
    assert_eq!(
        cut(&l(3), &lim, 0),
        Some(2),
        "a third line would pass 25 bytes"
    );
    assert_eq!(cut(&l(3), &limits(3, 100, 60), 0), Some(3), "three records");
    assert_eq!(cut(&l(1), &lim, 60_000_000), Some(1), "due after 60 s");
    assert_eq!(cut(&l(1), &lim, 59_999_999), None);
    let big = vec![line_of(&"x".repeat(30)), line_of("y")];
    assert_eq!(
        cut(&big, &lim, 0),
        Some(1),
        "a line over the cap goes alone"
    );
}

#[test]
fn object_names_sort_by_day_then_id() {
    let lines = [
        Line {
            id: 7,
            logged_at_micros: DAY_MICROS,
            text: String::new(),
        },
        Line {
            id: 42,
            logged_at_micros: DAY_MICROS,
            text: String::new(),
        },
    ];
    assert_eq!(
        object_name("caracal/", ExportFormat::Json, &lines).unwrap(),
        "caracal/2023/11/14/00000000000000000007-00000000000000000042.jsonl"
    );
    assert_eq!(
        object_name("", ExportFormat::Syslog, &lines[..1]).unwrap(),
        "2023/11/14/00000000000000000007-00000000000000000007.log"
    );
    assert!(object_name("p/", ExportFormat::Json, &[]).is_none());
}

#[tokio::test]
async fn records_go_out_in_full_objects_once_and_a_replayed_plan_rewrites_the_same_bytes() {
    let log = Log::default();
    for _ in 0..5 {
        log.add(DAY_MICROS);
    }
    let bucket = Arc::new(InMemory::new());
    let mut target = ObjectTarget::new(
        bucket.clone(),
        "caracal/",
        ExportFormat::Json,
        limits(2, 1 << 20, 3600),
    );
    assert_eq!(target.ship_once(URI, &log).await.unwrap(), 2);
    assert_eq!(target.ship_once(URI, &log).await.unwrap(), 2);
    // One record left, logged long ago: due now.
    assert_eq!(target.ship_once(URI, &log).await.unwrap(), 1);
    assert_eq!(target.ship_once(URI, &log).await.unwrap(), 0);
    let first = objects(&bucket).await;
    let names: Vec<&str> = first.keys().map(|k| &k[19..]).collect();
    assert_eq!(
        names,
        [
            "00000000000000000001-00000000000000000002.jsonl",
            "00000000000000000003-00000000000000000004.jsonl",
            "00000000000000000005-00000000000000000005.jsonl"
        ]
    );
    let all: String = first.values().map(String::as_str).collect();
    let expected: String = (1..=5)
        .map(|i| format!("{{\"event_id\":\"e-{i}\"}}\n"))
        .collect();
    assert_eq!(all, expected);

    // A crash after the PUT of 3-4 but before its cursor moved, with more records logged and
    // a larger object allowed after the restart: the plan is replayed, same key, same bytes.
    let replay = Log::default();
    for _ in 0..8 {
        replay.add(DAY_MICROS);
    }
    replay.set_cursor(URI, 2);
    replay.set_cursor(&plan_key(URI), 4);
    let mut restarted = ObjectTarget::new(
        bucket.clone(),
        "caracal/",
        ExportFormat::Json,
        limits(100, 1 << 20, 3600),
    );
    assert_eq!(restarted.ship_once(URI, &replay).await.unwrap(), 2);
    assert_eq!(
        objects(&bucket).await,
        first,
        "the replay rewrote the same object unchanged"
    );
    assert_eq!(replay.audit_cursor(URI).await.unwrap(), 4);
}
