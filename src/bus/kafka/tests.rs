//! Behaviour of the Kafka bus beyond the shared conformance suite, against a real tansu
//! broker: reads of a partition holding more than one fetch's bytes. Test code only.
#![allow(clippy::unwrap_used, clippy::panic)]

use super::test_broker::TestBroker;
use super::*;
use crate::bus::conformance::message;

#[tokio::test]
async fn a_partition_larger_than_one_fetch_is_read_whole_in_order() {
    let broker = TestBroker::start();
    let topic = format!("large.{}", uuid::Uuid::new_v4());
    broker.create_topic(&topic, 1).await;
    let mut config = KafkaConfig {
        brokers: vec![broker.address.clone()],
        compression: CompressionSetting::Lz4,
        ..Default::default()
    };
    config.consumer.fetch_max_wait_ms = 50;
    config.consumer.max_partition_fetch_bytes = 64 * 1024;
    let bus = KafkaBus::connect(&config).await.unwrap();
    let filler = "x".repeat(600);
    for round in 0..6 {
        let batch = (0..100)
            .map(|i| message(&topic, "one-tree", &format!("{round}-{i}-{filler}")))
            .collect();
        bus.publish(batch).await.unwrap();
    }
    let mut offset = 0;
    while offset < 600 {
        let (got, high_watermark) = bus.fetch_with_watermark(&topic, 0, offset, 1_000).await.unwrap();
        assert_eq!(high_watermark, 600);
        assert!(!got.is_empty(), "stuck at {offset}");
        for m in &got {
            assert_eq!(m.offset, offset);
            offset += 1;
        }
    }
}
