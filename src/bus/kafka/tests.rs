//! Behaviour of the Kafka bus beyond the shared conformance suite, against a real tansu
//! broker: reads of a partition holding more than one fetch's bytes. Test code only.
#![allow(clippy::unwrap_used, clippy::panic)]

use super::test_broker::TestBroker;
use super::*;
use crate::bus::conformance::message;

/// A broker, a new one-partition topic named after `prefix`, and a bus on it with short fetch
/// waits and `tune` applied to its consumer settings.
async fn one_partition_bus(
    prefix: &str,
    tune: impl FnOnce(&mut KafkaConsumerConfig),
) -> (TestBroker, String, KafkaBus) {
    let broker = TestBroker::start();
    let topic = format!("{prefix}.{}", uuid::Uuid::new_v4());
    broker.create_topic(&topic, 1).await;
    let mut config = KafkaConfig {
        brokers: vec![broker.address.clone()],
        compression: CompressionSetting::Lz4,
        ..Default::default()
    };
    config.consumer.fetch_max_wait_ms = 50;
    tune(&mut config.consumer);
    let bus = KafkaBus::connect(&config).await.unwrap();
    (broker, topic, bus)
}

#[tokio::test]
async fn a_partition_larger_than_one_fetch_is_read_whole_in_order() {
    let (_broker, topic, bus) = one_partition_bus("large", |c| {
        c.max_partition_fetch_bytes = 64 * 1024;
    })
    .await;
    let filler = "x".repeat(600);
    for round in 0..6 {
        let batch = (0..100)
            .map(|i| message(&topic, "one-tree", &format!("{round}-{i}-{filler}")))
            .collect();
        bus.publish(batch).await.unwrap();
    }
    let mut offset = 0;
    while offset < 600 {
        let (got, high_watermark) = bus
            .fetch_with_watermark(&topic, 0, offset, 1_000)
            .await
            .unwrap();
        assert_eq!(high_watermark, 600);
        assert!(!got.is_empty(), "stuck at {offset}");
        for m in &got {
            assert_eq!(m.offset, offset);
            offset += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_publishers_of_one_key_are_all_written_and_read_back() {
    let broker = TestBroker::start();
    let topic = format!("hot.{}", uuid::Uuid::new_v4());
    broker.create_topic(&topic, 3).await;
    let config = KafkaConfig {
        brokers: vec![broker.address.clone()],
        compression: CompressionSetting::Lz4,
        ..Default::default()
    };
    let bus = Arc::new(KafkaBus::connect(&config).await.unwrap());
    let filler = "y".repeat(500);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..32 {
        let (bus, topic, filler) = (Arc::clone(&bus), topic.clone(), filler.clone());
        tasks.spawn(async move {
            for i in 0..60 {
                let m = message(&topic, "one-tree", &format!("{task}-{i}-{filler}"));
                bus.publish(vec![m]).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let partition = partition_for_key(b"one-tree", 3);
    assert_eq!(
        bus.high_watermark(&topic, partition).await.unwrap(),
        32 * 60
    );
    let mut offset = 0;
    let started = std::time::Instant::now();
    while offset < 32 * 60 {
        let (got, _) = bus
            .fetch_with_watermark(&topic, partition, offset, 500)
            .await
            .unwrap();
        assert!(!got.is_empty(), "stuck at {offset}");
        offset = got.last().unwrap().offset + 1;
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn reads_capped_by_max_poll_records_hand_out_every_message_once_in_order_and_rewind() {
    let (_broker, topic, bus) = one_partition_bus("poll", |c| c.max_poll_records = 40).await;
    let batch = (0..300)
        .map(|i| message(&topic, "one-tree", &format!("m{i}")))
        .collect();
    bus.publish(batch).await.unwrap();
    let mut offset = 0;
    while offset < 300 {
        let (got, _) = bus.fetch_now(&topic, 0, offset, 1_000).await.unwrap();
        assert!((1..=40).contains(&got.len()), "{} at {offset}", got.len());
        for m in &got {
            assert_eq!(m.offset, offset);
            assert_eq!(m.value, format!("m{offset}").into_bytes());
            offset += 1;
        }
    }
    // A reader that moves back (a lease taken over) reads from where it asks, not what is kept.
    let (again, _) = bus.fetch_now(&topic, 0, 7, 3).await.unwrap();
    let offsets: Vec<i64> = again.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, vec![7, 8, 9]);
    let (next, _) = bus.fetch_now(&topic, 0, 10, 2).await.unwrap();
    assert_eq!(
        next.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![10, 11]
    );
}
