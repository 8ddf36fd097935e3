//! The relay against the real embedded store and log: every admin change appears exactly once,
//! on its topic, keyed by its root, decodable, across restarts, races and a bus without cursors.
//! Test code only.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;

use super::*;
use crate::bus::avro::decode_framed;
use crate::bus::local::{LocalBus, LocalBusLimits};
use crate::bus::{ConsumedMessage, HEADER_EVENT_ID};
use crate::core::agent::{AgentId, AgentStatus};
use crate::core::events::{AdminEvent, Event, UnixMicros};
use crate::core::money::{Currency, Micros};
use crate::core::policy::{PolicyId, PolicySpec, TimeWindow, WindowType};
use crate::store::sqlite::SqliteStore;
use crate::store::{Audit, NewAgent};

fn audit() -> Audit {
    Audit {
        actor: "test".into(),
        reason: None,
    }
}

fn config(batch_events_max: usize) -> RelayConfig {
    RelayConfig {
        poll_interval_ms: 10,
        batch_events_max,
        error_backoff_ms: 10,
        wire: WireFormat::SingleObject,
    }
}

fn open_bus(dir: &Path) -> Arc<LocalBus> {
    Arc::new(LocalBus::open(dir, LocalBusLimits::default()).unwrap())
}

/// A root with a child, each with a policy; the child is suspended. Returns the root.
async fn make_changes(store: &SqliteStore) -> AgentId {
    let root = new_agent(store, None).await;
    let child = new_agent(store, Some(root)).await;
    for agent in [root, child] {
        let spec = PolicySpec {
            limit_micros: Micros(5_000_000),
            currency: Currency::USD,
            time_window: TimeWindow::Daily,
            window_type: WindowType::Calendar,
            allow: vec![],
            active: true,
        };
        store
            .create_policy(PolicyId::new(), agent, spec, Utc::now(), &audit())
            .await
            .unwrap();
    }
    store
        .set_agent_status(child, AgentStatus::Suspended, Utc::now(), &audit())
        .await
        .unwrap();
    root
}

async fn new_agent(store: &SqliteStore, parent_id: Option<AgentId>) -> AgentId {
    let new = NewAgent {
        id: AgentId::new(),
        name: format!("agent-{}", uuid::Uuid::new_v4()),
        agent_type: "worker".into(),
        parent_id,
        metadata: serde_json::Map::new(),
        at: Utc::now(),
    };
    store.create_agent(new, &audit()).await.unwrap().id
}

async fn outbox(store: &SqliteStore) -> Vec<OutboxRecord> {
    store.outbox_after(0, 10_000).await.unwrap()
}

async fn topic_messages(bus: &dyn EventBus, topic: &str) -> Vec<ConsumedMessage> {
    let mut all = Vec::new();
    for partition in 0..bus.partition_count(topic).await.unwrap() {
        all.extend(bus.fetch(topic, partition, 0, 10_000).await.unwrap());
    }
    all
}

/// Checks that every outbox row is on the bus exactly once, where and as it should be.
async fn assert_relayed_exactly_once(store: &SqliteStore, bus: &dyn EventBus) {
    let records = outbox(store).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for topic in RELAY_TOPICS {
        for m in topic_messages(bus, topic).await {
            let id = String::from_utf8(header(&m.headers, HEADER_EVENT_ID).unwrap().to_vec());
            *seen.entry(id.unwrap()).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), records.len(), "every change is relayed");
    assert!(seen.values().all(|n| *n == 1), "none twice: {seen:?}");
    for record in &records {
        let topic = record.event.topic();
        let key = record.event.partition_key().to_string();
        let found: Vec<_> = topic_messages(bus, topic)
            .await
            .into_iter()
            .filter(|m| {
                header(&m.headers, HEADER_OUTBOX_ID) == Some(record.id.to_string().as_bytes())
            })
            .collect();
        assert_eq!(found.len(), 1, "outbox row {} on {topic}", record.id);
        assert_eq!(found[0].key, key.as_bytes(), "keyed by the root");
        let decoded = decode_framed(&found[0].value, |_| None).unwrap();
        assert_eq!(decoded.event, Event::from(record.event.clone()));
    }
}

async fn run_until_caught_up(store: &Arc<SqliteStore>, bus: Arc<dyn EventBus>, relays: usize) {
    let (stop, shutdown) = Shutdown::new();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..relays {
        let store: Arc<dyn Store> = Arc::clone(store) as Arc<dyn Store>;
        tasks.spawn(run(store, Arc::clone(&bus), config(1), shutdown.clone()));
    }
    let wanted = outbox(store).await.len();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut total = 0;
        for topic in RELAY_TOPICS {
            total += topic_messages(bus.as_ref(), topic).await.len();
        }
        if total >= wanted {
            break;
        }
        assert!(Instant::now() < deadline, "relay did not catch up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

#[tokio::test]
async fn each_admin_change_appears_once_on_its_topic_keyed_by_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let root = make_changes(&store).await;
    let bus = open_bus(dir.path());
    run_until_caught_up(&store, bus.clone(), 1).await;
    assert_relayed_exactly_once(&store, bus.as_ref()).await;
    let lifecycle = topic_messages(bus.as_ref(), TOPIC_AGENT_LIFECYCLE).await;
    let changes = topic_messages(bus.as_ref(), TOPIC_POLICY_CHANGES).await;
    assert_eq!((lifecycle.len(), changes.len()), (3, 2));
    assert!(lifecycle
        .iter()
        .chain(&changes)
        .all(|m| m.key == root.to_string().as_bytes()));
    let outbox_ids: Vec<i64> = lifecycle
        .iter()
        .map(|m| std::str::from_utf8(header(&m.headers, HEADER_OUTBOX_ID).unwrap()).unwrap())
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        outbox_ids.windows(2).all(|w| w[0] < w[1]),
        "one tree stays in order"
    );
}

#[tokio::test]
async fn a_relay_restarted_mid_way_neither_repeats_nor_skips() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    make_changes(&store).await;
    let bus = open_bus(dir.path());
    let cursor = recover_cursor(bus.as_ref()).await.unwrap();
    let (cursor, n) = relay_once(store.as_ref(), bus.as_ref(), cursor, &config(2))
        .await
        .unwrap();
    assert_eq!(n, 2);
    // The relay "crashed" here, after its commit: a stale copy of it is refused.
    let stale = relay_once(store.as_ref(), bus.as_ref(), 0, &config(2)).await;
    assert!(matches!(
        stale,
        Err(RelayError::Bus(BusError::CursorConflict { .. }))
    ));
    bus.close().await.unwrap();
    drop(bus);

    make_changes(&store).await;
    let bus = open_bus(dir.path());
    assert_eq!(recover_cursor(bus.as_ref()).await.unwrap(), cursor);
    run_until_caught_up(&store, bus.clone(), 1).await;
    assert_relayed_exactly_once(&store, bus.as_ref()).await;
}

#[tokio::test]
async fn two_relays_racing_publish_each_change_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    for _ in 0..5 {
        make_changes(&store).await;
    }
    let bus = open_bus(dir.path());
    run_until_caught_up(&store, bus.clone(), 2).await;
    assert_relayed_exactly_once(&store, bus.as_ref()).await;
}

/// A bus with no transactions and no cursors, as Kafka through rskafka: only the required
/// methods, so the relay goes through the trait's default path.
struct WithoutCursors(Arc<LocalBus>);

#[async_trait]
impl EventBus for WithoutCursors {
    async fn publish(&self, messages: Vec<OutgoingMessage>) -> Result<Vec<(i32, i64)>, BusError> {
        self.0.publish(messages).await
    }
    fn enqueue(&self, messages: Vec<OutgoingMessage>) -> Result<(), BusError> {
        self.0.enqueue(messages)
    }
    async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_messages: usize,
    ) -> Result<Vec<ConsumedMessage>, BusError> {
        self.0.fetch(topic, partition, offset, max_messages).await
    }
    async fn high_watermark(&self, topic: &str, partition: i32) -> Result<i64, BusError> {
        self.0.high_watermark(topic, partition).await
    }
    async fn partition_count(&self, topic: &str) -> Result<i32, BusError> {
        self.0.partition_count(topic).await
    }
    async fn ping(&self) -> Result<(), BusError> {
        self.0.ping().await
    }
    async fn flush(&self) -> Result<(), BusError> {
        self.0.flush().await
    }
    async fn close(&self) -> Result<(), BusError> {
        self.0.close().await
    }
}

#[tokio::test]
async fn without_bus_cursors_a_restarted_relay_resumes_from_the_outbox_id_headers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    make_changes(&store).await;
    make_changes(&store).await;
    let bus = WithoutCursors(open_bus(dir.path()));
    assert_eq!(recover_cursor(&bus).await.unwrap(), 0);
    let (cursor, _) = relay_once(store.as_ref(), &bus, 0, &config(3))
        .await
        .unwrap();
    assert_eq!(recover_cursor(&bus).await.unwrap(), cursor);
    let bus: Arc<dyn EventBus> = Arc::new(bus);
    run_until_caught_up(&store, Arc::clone(&bus), 1).await;
    assert_relayed_exactly_once(&store, bus.as_ref()).await;
    let last = outbox(&store).await.last().unwrap().id;
    assert_eq!(recover_cursor(bus.as_ref()).await.unwrap(), last);
}

#[tokio::test]
async fn an_event_that_cannot_be_encoded_goes_to_the_dlq_and_the_relay_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    make_changes(&store).await;
    let mut bad = outbox(&store).await.remove(0).event;
    if let AdminEvent::AgentLifecycle(e) = &mut bad {
        e.occurred_at = UnixMicros(i64::MAX);
    }
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    conn.execute(
        "INSERT INTO outbox (event, created_at) VALUES (?1, ?2)",
        rusqlite::params![bad.to_json().unwrap(), Utc::now().timestamp_micros()],
    )
    .unwrap();
    let bad_id = conn.last_insert_rowid();
    make_changes(&store).await;

    let bus = open_bus(dir.path());
    let (cursor, n) = relay_once(store.as_ref(), bus.as_ref(), 0, &config(100))
        .await
        .unwrap();
    assert_eq!(n, outbox(&store).await.len());
    assert_eq!(cursor, outbox(&store).await.last().unwrap().id);
    let dlq = topic_messages(bus.as_ref(), TOPIC_DLQ).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        header(&dlq[0].headers, HEADER_OUTBOX_ID),
        Some(bad_id.to_string().as_bytes())
    );
    assert_eq!(
        header(&dlq[0].headers, HEADER_DLQ_TOPIC),
        Some(TOPIC_AGENT_LIFECYCLE.as_bytes())
    );
    assert_eq!(
        AdminEvent::from_json(std::str::from_utf8(&dlq[0].value).unwrap()).unwrap(),
        bad
    );
    let relayed: usize = {
        let mut n = 0;
        for topic in RELAY_TOPICS {
            n += topic_messages(bus.as_ref(), topic).await.len();
        }
        n
    };
    assert_eq!(relayed, outbox(&store).await.len() - 1);
}

#[tokio::test]
async fn the_relay_stops_promptly_on_shutdown_even_mid_poll() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let bus: Arc<dyn EventBus> = open_bus(dir.path());
    let slow = RelayConfig {
        poll_interval_ms: 3_600_000,
        ..RelayConfig::default()
    };
    let (stop, shutdown) = Shutdown::new();
    let task = tokio::spawn(run(store, bus, slow, shutdown));
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}
