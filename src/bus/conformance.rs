//! One body per `EventBus` behaviour, instantiated for every implementation (the embedded log,
//! and Kafka against a real tansu broker), so the embedded mode cannot drift from production.
//! Test code only; each test gets its own topic.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};

use super::local::{LocalBus, LocalBusLimits};
use super::{partition_for_key, BusError, EventBus, OutgoingMessage};

/// A bus with a fresh topic of the asked partition count, and whatever must outlive it.
pub(crate) struct Harness {
    pub bus: Arc<dyn EventBus>,
    pub topic: String,
    pub partitions: i32,
    pub _guard: Box<dyn Any + Send + Sync>,
}

pub(crate) async fn local_harness(partitions: i32) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let bus = LocalBus::open(dir.path(), LocalBusLimits::default()).unwrap();
    let topic = format!("conformance.{}", uuid::Uuid::new_v4());
    assert_eq!(
        bus.create_topic(&topic, partitions).await.unwrap(),
        partitions
    );
    Harness {
        bus: Arc::new(bus),
        topic,
        partitions,
        _guard: Box::new(dir),
    }
}

/// A fresh tansu broker with the topic, and the Kafka bus on it (lz4: tansu's sqlite engine
/// cannot read snappy batches back).
pub(crate) async fn kafka_harness(partitions: i32) -> Harness {
    let broker = super::kafka::test_broker::TestBroker::start();
    let topic = format!("conformance.{}", uuid::Uuid::new_v4());
    broker.create_topic(&topic, partitions).await;
    let mut config = crate::config::KafkaConfig {
        brokers: vec![broker.address.clone()],
        compression: crate::config::Compression::Lz4,
        ..Default::default()
    };
    config.producer.linger_ms = 2;
    config.consumer.fetch_max_wait_ms = 50;
    config.consumer.fetch_min_bytes = 1;
    let bus = super::kafka::KafkaBus::connect(&config).await.unwrap();
    Harness {
        bus: Arc::new(bus),
        topic,
        partitions,
        _guard: Box::new(broker),
    }
}

pub(crate) fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).unwrap()
}

pub(crate) fn message(topic: &str, key: &str, value: &str) -> OutgoingMessage {
    OutgoingMessage {
        topic: topic.to_owned(),
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        headers: vec![("n".into(), value.as_bytes().to_vec())],
        timestamp: at(1_700_000_000_123),
    }
}

/// Every message of every partition, by partition.
pub(crate) async fn read_all(h: &Harness) -> BTreeMap<i32, Vec<super::ConsumedMessage>> {
    let mut all = BTreeMap::new();
    for partition in 0..h.partitions {
        let high_watermark = h.bus.high_watermark(&h.topic, partition).await.unwrap();
        let mut messages = Vec::new();
        while (messages.len() as i64) < high_watermark {
            let got = h
                .bus
                .fetch(&h.topic, partition, messages.len() as i64, 1_000)
                .await
                .unwrap();
            assert!(!got.is_empty());
            messages.extend(got);
        }
        all.insert(partition, messages);
    }
    all
}

macro_rules! bus_conformance {
    ($name:ident, $make:path) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn offsets_are_contiguous_per_partition_under_concurrent_publishers() {
                let h = $make(3).await;
                let mut tasks = tokio::task::JoinSet::new();
                for publisher in 0..8 {
                    let bus = Arc::clone(&h.bus);
                    let topic = h.topic.clone();
                    tasks.spawn(async move {
                        let mut placed = Vec::new();
                        for round in 0..25 {
                            let batch: Vec<_> = (0..4)
                                .map(|i| {
                                    let key = format!("tree-{}", (publisher + round + i) % 11);
                                    message(&topic, &key, &format!("{publisher}/{round}/{i}"))
                                })
                                .collect();
                            let values: Vec<_> = batch.iter().map(|m| m.value.clone()).collect();
                            let at = bus.publish(batch).await.unwrap();
                            placed.extend(values.into_iter().zip(at));
                        }
                        placed
                    });
                }
                let mut placed = Vec::new();
                while let Some(done) = tasks.join_next().await {
                    placed.extend(done.unwrap());
                }
                assert_eq!(placed.len(), 8 * 25 * 4);
                let all = read_all(&h).await;
                let total: usize = all.values().map(Vec::len).sum();
                assert_eq!(total, placed.len(), "every message once");
                for (partition, messages) in &all {
                    for (i, m) in messages.iter().enumerate() {
                        assert_eq!(m.offset, i as i64, "contiguous from 0");
                        assert_eq!(m.partition, *partition);
                    }
                }
                for (value, (partition, offset)) in placed {
                    let m = &all[&partition][offset as usize];
                    assert_eq!(m.value, value, "publish returned where the message is");
                }
            }

            #[tokio::test]
            async fn messages_of_one_key_land_in_its_kafka_partition_in_order() {
                let h = $make(5).await;
                for key in ["root-a", "root-b", "root-c"] {
                    let expected = partition_for_key(key.as_bytes(), h.partitions);
                    let mut last = -1;
                    for i in 0..5 {
                        let placed = h
                            .bus
                            .publish(vec![message(&h.topic, key, &i.to_string())])
                            .await
                            .unwrap();
                        let (partition, offset) = placed[0];
                        assert_eq!(partition, expected);
                        assert!(offset > last, "one key's messages keep their order");
                        last = offset;
                    }
                }
            }

            #[tokio::test]
            async fn fetch_from_the_middle_returns_the_rest_in_order() {
                let h = $make(1).await;
                let batch = (0..10)
                    .map(|i| message(&h.topic, "k", &i.to_string()))
                    .collect();
                h.bus.publish(batch).await.unwrap();
                let got = h.bus.fetch(&h.topic, 0, 4, 3).await.unwrap();
                let offsets: Vec<_> = got.iter().map(|m| m.offset).collect();
                assert_eq!(offsets, [4, 5, 6]);
                assert_eq!(got[0].value, b"4");
                let rest = h.bus.fetch(&h.topic, 0, 4, 100).await.unwrap();
                assert_eq!(rest.len(), 6);
                assert_eq!(h.bus.high_watermark(&h.topic, 0).await.unwrap(), 10);
                assert!(h.bus.fetch(&h.topic, 0, 10, 5).await.unwrap().is_empty());
                for beyond in [11, -1] {
                    let err = h.bus.fetch(&h.topic, 0, beyond, 5).await.unwrap_err();
                    assert!(matches!(err, BusError::OffsetOutOfRange { .. }), "{err}");
                }
            }

            #[tokio::test]
            async fn keys_values_headers_and_times_come_back_as_sent() {
                let h = $make(2).await;
                let mut sent = message(&h.topic, "root", "value");
                // Names in order and unique: rskafka keeps one value per header name, sorted.
                sent.headers = vec![
                    ("empty".into(), Vec::new()),
                    (
                        "event_id".into(),
                        b"0190b3a0-0000-7000-8000-000000000001".to_vec(),
                    ),
                    ("event_type".into(), b"MeteringEvent".to_vec()),
                ];
                sent.timestamp = at(1_714_000_000_123);
                let placed = h.bus.publish(vec![sent.clone()]).await.unwrap();
                let (partition, offset) = placed[0];
                let got = h.bus.fetch(&h.topic, partition, offset, 1).await.unwrap();
                assert_eq!(got.len(), 1);
                assert_eq!(got[0].topic, h.topic);
                assert_eq!(got[0].key, sent.key);
                assert_eq!(got[0].value, sent.value);
                assert_eq!(got[0].headers, sent.headers);
                assert_eq!(got[0].timestamp, sent.timestamp);
            }

            #[tokio::test]
            async fn enqueued_messages_are_readable_after_flush() {
                let h = $make(2).await;
                for i in 0..50 {
                    h.bus
                        .enqueue(vec![message(&h.topic, &format!("k{i}"), "v")])
                        .unwrap();
                }
                h.bus.flush().await.unwrap();
                let total: usize = read_all(&h).await.values().map(Vec::len).sum();
                assert_eq!(total, 50);
            }

            #[tokio::test]
            async fn unknown_topics_and_partitions_are_errors_not_empty_reads() {
                let h = $make(2).await;
                let missing = format!("{}-missing", h.topic);
                let err = h.bus.publish(vec![message(&missing, "k", "v")]).await;
                assert!(matches!(err, Err(BusError::UnknownTopic(_))), "{err:?}");
                let err = h.bus.fetch(&h.topic, 2, 0, 1).await.unwrap_err();
                assert!(matches!(err, BusError::UnknownPartition { .. }), "{err}");
                let err = h.bus.high_watermark(&missing, 0).await.unwrap_err();
                assert!(matches!(err, BusError::UnknownTopic(_)), "{err}");
                assert_eq!(h.bus.partition_count(&h.topic).await.unwrap(), 2);
            }

            #[tokio::test]
            async fn an_empty_publish_writes_nothing() {
                let h = $make(1).await;
                assert!(h.bus.publish(Vec::new()).await.unwrap().is_empty());
                h.bus.enqueue(Vec::new()).unwrap();
                h.bus.flush().await.unwrap();
                assert_eq!(h.bus.high_watermark(&h.topic, 0).await.unwrap(), 0);
                h.bus.ping().await.unwrap();
            }
        }
    };
}

bus_conformance!(local, local_harness);
bus_conformance!(kafka, kafka_harness);
