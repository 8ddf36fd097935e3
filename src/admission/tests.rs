//! Expiry publishes before it releases: with the bus down an expired hold stays held and is
//! charged once the bus is back; a process that dies between publishing and settling charges
//! the hold exactly once after restart (the ledger keeps one row per event id). Real adapters
//! (the local spend journal, the embedded log, the SQLite store, the ledger consumer); the only
//! fault injected is a bus that refuses to publish while switched off.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;

use super::{Admission, Swept};
use crate::bus::local::{LocalBus, LocalBusLimits};
use crate::bus::{BusError, ConsumedMessage, EventBus, OutgoingMessage};
use crate::config::{Config, GatewayConfig};
use crate::core::events::{Event, Source, TOPIC_METERING_EVENTS};
use crate::http::Shutdown;
use crate::spend::conformance::{child, daily, request, reserved, usage};
use crate::spend::local::{LocalLimits, LocalSpend};
use crate::spend::{HoldInfo, SpendCache};
use crate::store::sqlite::SqliteStore;

/// The embedded log, with a switch that makes publishing fail as a broker out of reach would.
struct SwitchedBus {
    inner: Arc<LocalBus>,
    down: AtomicBool,
}

impl SwitchedBus {
    fn check(&self) -> Result<(), BusError> {
        match self.down.load(Ordering::SeqCst) {
            true => Err(BusError::Unavailable("switched off by the test".into())),
            false => Ok(()),
        }
    }
}

#[async_trait]
impl EventBus for SwitchedBus {
    async fn publish(&self, messages: Vec<OutgoingMessage>) -> Result<Vec<(i32, i64)>, BusError> {
        self.check()?;
        self.inner.publish(messages).await
    }
    fn enqueue(&self, messages: Vec<OutgoingMessage>) -> Result<(), BusError> {
        self.check()?;
        self.inner.enqueue(messages)
    }
    async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_messages: usize,
    ) -> Result<Vec<ConsumedMessage>, BusError> {
        self.inner
            .fetch(topic, partition, offset, max_messages)
            .await
    }
    async fn high_watermark(&self, topic: &str, partition: i32) -> Result<i64, BusError> {
        self.inner.high_watermark(topic, partition).await
    }
    async fn partition_count(&self, topic: &str) -> Result<i32, BusError> {
        self.inner.partition_count(topic).await
    }
    async fn ping(&self) -> Result<(), BusError> {
        self.check()
    }
    async fn flush(&self) -> Result<(), BusError> {
        self.inner.flush().await
    }
    async fn close(&self) -> Result<(), BusError> {
        self.inner.close().await
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    bus: Arc<SwitchedBus>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let inner = Arc::new(LocalBus::open(dir.path(), LocalBusLimits::default()).unwrap());
        let bus = Arc::new(SwitchedBus {
            inner,
            down: AtomicBool::new(false),
        });
        Fixture { dir, store, bus }
    }

    fn spend(&self) -> Arc<LocalSpend> {
        Arc::new(LocalSpend::open(self.dir.path(), LocalLimits::default()).unwrap())
    }

    async fn admission(&self, spend: Arc<LocalSpend>) -> Arc<Admission> {
        let bus: Arc<dyn EventBus> = Arc::clone(&self.bus) as _;
        Admission::open(
            &GatewayConfig::default(),
            Arc::clone(&self.store) as _,
            spend,
            bus,
        )
        .await
        .unwrap()
    }

    /// The metering events on the log: (event id, cost, estimated, source, operation).
    async fn charges(&self) -> Vec<(uuid::Uuid, i64, bool, Source, String)> {
        let mut found = Vec::new();
        let partitions = self
            .bus
            .partition_count(TOPIC_METERING_EVENTS)
            .await
            .unwrap();
        for partition in 0..partitions {
            let messages = self
                .bus
                .fetch(TOPIC_METERING_EVENTS, partition, 0, 10_000)
                .await
                .unwrap();
            for m in messages {
                if let Event::Metering(e) = crate::bus::avro::decode_framed(&m.value, |_| None)
                    .unwrap()
                    .event
                {
                    found.push((
                        e.event_id,
                        e.cost_micros.get(),
                        e.estimated,
                        e.source,
                        e.operation,
                    ));
                }
            }
        }
        found
    }
}

/// One MCP hold of 300 micros, reserved an hour ago, long expired.
async fn expired_hold(spend: &LocalSpend) -> HoldInfo {
    let then = Utc::now() - chrono::Duration::hours(1);
    let mut req = request(&child(2), &[daily(10, 2, 1_000)], 300, then);
    req.source = Source::Mcp;
    req.operation = "tools/call".into();
    req.resource = "mcp:search/web".into();
    reserved(spend, req).await;
    spend.list_holds(10).await.unwrap().remove(0)
}

#[tokio::test]
async fn with_the_bus_down_an_expired_hold_stays_held_and_is_charged_once_it_is_back() {
    let f = Fixture::new();
    let spend = f.spend();
    let hold = expired_hold(&spend).await;
    let admission = f.admission(Arc::clone(&spend)).await;
    let policies = [daily(10, 2, 1_000)];
    let at = hold.reserved_at;

    f.bus.down.store(true, Ordering::SeqCst);
    let swept = admission.sweep_expired(Utc::now()).await.unwrap();
    assert_eq!(swept.deferred, 1);
    assert_eq!(usage(spend.as_ref(), &policies, at).await, vec![(0, 300)]);
    assert_eq!(spend.list_holds(10).await.unwrap(), vec![hold.clone()]);

    f.bus.down.store(false, Ordering::SeqCst);
    let swept = admission.sweep_expired(Utc::now()).await.unwrap();
    assert_eq!(
        swept,
        Swept {
            charged: 1,
            ..Swept::default()
        }
    );
    assert_eq!(usage(spend.as_ref(), &policies, at).await, vec![(300, 0)]);
    assert_eq!(
        f.charges().await,
        vec![(hold.hold_id.0, 300, true, Source::Mcp, "tools/call".into())]
    );
    assert_eq!(
        admission.sweep_expired(Utc::now()).await.unwrap(),
        Swept::default()
    );
    assert_eq!(f.charges().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_dies_between_publish_and_settle_charges_the_hold_once_after_restart() {
    let f = Fixture::new();
    let spend = f.spend();
    let hold = expired_hold(&spend).await;
    let policies = [daily(10, 2, 1_000)];
    // The first process publishes the expired hold's charge, then dies before settling it.
    f.bus
        .publish(vec![crate::bus::event_message(
            &super::expired_event(&hold, "dead-process"),
            crate::bus::avro::Framing::SingleObject,
        )
        .unwrap()])
        .await
        .unwrap();
    drop(spend);

    // The next process finds the hold in the journal and sweeps it.
    let spend = f.spend();
    assert_eq!(
        usage(spend.as_ref(), &policies, hold.reserved_at).await,
        vec![(0, 300)]
    );
    let admission = f.admission(Arc::clone(&spend)).await;
    let swept = admission.sweep_expired(Utc::now()).await.unwrap();
    assert_eq!(swept.charged, 1);
    assert_eq!(
        usage(spend.as_ref(), &policies, hold.reserved_at).await,
        vec![(300, 0)]
    );
    assert_eq!(
        admission.sweep_expired(Utc::now()).await.unwrap(),
        Swept::default()
    );
    let charges = f.charges().await;
    assert_eq!(charges.len(), 2, "published once by each process");
    assert!(charges.iter().all(|c| c.0 == hold.hold_id.0));

    // The ledger keeps one row for the two messages of the same charge.
    let mut config = Config::default();
    config.data_dir = f.dir.path().to_owned();
    let (stop, shutdown) = Shutdown::new();
    let bus: Arc<dyn EventBus> = Arc::clone(&f.bus) as _;
    let ledger = crate::roles::ledger::prepare(
        &config,
        Arc::clone(&f.store) as _,
        Arc::clone(&f.store) as _,
        bus,
        shutdown,
    )
    .await
    .unwrap();
    let running = tokio::spawn(ledger);
    let query = crate::store::ledger::LedgerQuery {
        agent_id: hold.agent_id.to_string(),
        include_children: false,
        start_micros: 0,
        end_micros: i64::MAX,
        limit: 100,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let rows = loop {
        // Both messages read (offsets first: rows committed with them are then visible).
        let leases =
            crate::store::leases::LeaseStore::list_leases(f.store.as_ref(), Some("ledger"))
                .await
                .unwrap();
        let read: i64 = leases.iter().map(|l| l.next_offset).sum();
        let (rows, _) = crate::store::ledger::LedgerStore::query_ledger(f.store.as_ref(), &query)
            .await
            .unwrap();
        if read == 2 || tokio::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].columns.cost_micros, 300);
}

#[tokio::test]
async fn a_poisoned_pricebook_refuses_calls_instead_of_pricing_them_at_nothing() {
    let f = Fixture::new();
    let admission = f.admission(f.spend()).await;
    let call = super::CallFacts {
        request_id: uuid::Uuid::now_v7(),
        correlation_id: "c".into(),
        chain: Arc::new(crate::store::ChainPolicies {
            chain: child(2),
            policies: vec![],
        }),
        source: Source::Gateway,
        provider: "openai".into(),
        resource: "gpt-4o-mini".into(),
        operation: "chat.completions".into(),
        per_call: false,
    };
    // Unpoisoned, the call is priced or denied for want of a price, by the pricebook's content.
    assert!(!matches!(
        admission.price(&call),
        Err(super::Refusal::Unavailable { .. })
    ));
    let poisoner = Arc::clone(&admission);
    let panicked = std::thread::spawn(move || {
        let _held = poisoner.pricebook.write();
        panic!("a panic while the pricebook is held");
    })
    .join();
    assert!(panicked.is_err());
    match admission.price(&call) {
        Err(super::Refusal::Unavailable { what, .. }) => assert_eq!(what, "pricebook"),
        other => panic!(
            "expected the call refused, got {:?}",
            other.map(|p| p.price)
        ),
    }
}
