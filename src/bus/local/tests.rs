//! Behaviour of the embedded log beyond the shared conformance suite: durability across
//! reopen, the bounded queue, deadlines, cursors, limits and Avro bytes on disk.
//! Test code only, plus an ignored throughput probe (`cargo test --release -- --ignored`).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::*;
use crate::bus::avro::{self, tests::all_samples, Framing};
use crate::bus::conformance::message;
use crate::bus::{event_message, header, HEADER_EVENT_ID};
use crate::core::events::{topic_partitions, TOPIC_METERING_EVENTS};

fn open(dir: &Path) -> LocalBus {
    LocalBus::open(dir, LocalBusLimits::default()).unwrap()
}

fn small_queue(messages_max: usize) -> LocalBusLimits {
    LocalBusLimits {
        publish_queue_messages_max: messages_max,
        publish_timeout_ms: 200,
        ..LocalBusLimits::default()
    }
}

/// Holds SQLite's write lock on the log from another connection, so the writer stalls.
fn lock_the_file(dir: &Path) -> Connection {
    let conn = Connection::open(dir.join(EVENTS_DB_FILE)).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

async fn total(bus: &LocalBus, topic: &str) -> i64 {
    let mut sum = 0;
    for p in 0..bus.partition_count(topic).await.unwrap() {
        sum += bus.high_watermark(topic, p).await.unwrap();
    }
    sum
}

#[tokio::test]
async fn the_designed_topics_exist_with_their_partition_counts() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    for spec in crate::core::events::TOPICS {
        assert_eq!(
            bus.partition_count(spec.name).await.unwrap(),
            spec.partitions
        );
        assert_eq!(bus.high_watermark(spec.name, 0).await.unwrap(), 0);
    }
    assert_eq!(bus.path(), dir.path().join("events.db"));
}

#[tokio::test]
async fn published_messages_survive_close_and_reopen_and_offsets_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    let first = bus
        .publish(vec![message(TOPIC_METERING_EVENTS, "tree", "one")])
        .await
        .unwrap();
    for i in 0..100 {
        bus.enqueue(vec![message(TOPIC_METERING_EVENTS, "tree", &i.to_string())])
            .unwrap();
    }
    bus.close().await.unwrap();
    drop(bus);

    let bus = open(dir.path());
    let (partition, offset) = first[0];
    assert_eq!(offset, 0);
    assert_eq!(
        bus.high_watermark(TOPIC_METERING_EVENTS, partition)
            .await
            .unwrap(),
        101
    );
    let got = bus
        .fetch(TOPIC_METERING_EVENTS, partition, 0, 1)
        .await
        .unwrap();
    assert_eq!(got[0].value, b"one");
    let next = bus
        .publish(vec![message(TOPIC_METERING_EVENTS, "tree", "after")])
        .await
        .unwrap();
    assert_eq!(next[0], (partition, 101), "offsets continue after a reopen");
}

#[tokio::test]
async fn close_commits_everything_queued_then_refuses_more() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    for i in 0..1_000 {
        bus.enqueue(vec![message(TOPIC_METERING_EVENTS, &format!("t{i}"), "v")])
            .unwrap();
    }
    bus.close().await.unwrap();
    let refused = bus.enqueue(vec![message(TOPIC_METERING_EVENTS, "t", "v")]);
    assert!(matches!(refused, Err(BusError::Closed)), "{refused:?}");
    let refused = bus
        .publish(vec![message(TOPIC_METERING_EVENTS, "t", "v")])
        .await;
    assert!(matches!(refused, Err(BusError::Closed)), "{refused:?}");
    assert!(matches!(bus.ping().await, Err(BusError::Closed)));
    bus.close().await.unwrap();
    assert_eq!(
        total(&bus, TOPIC_METERING_EVENTS).await,
        1_000,
        "reads still work"
    );
}

#[tokio::test]
async fn a_full_queue_refuses_enqueue_until_the_writer_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let bus = LocalBus::open(dir.path(), small_queue(10)).unwrap();
    let lock = lock_the_file(dir.path());
    for i in 0..10 {
        bus.enqueue(vec![message(TOPIC_METERING_EVENTS, &i.to_string(), "v")])
            .unwrap();
    }
    let full = bus.enqueue(vec![message(TOPIC_METERING_EVENTS, "k", "v")]);
    assert!(
        matches!(full, Err(BusError::QueueFull { messages_max: 10 })),
        "{full:?}"
    );
    drop(lock);
    let deadline = Instant::now() + Duration::from_secs(5);
    while bus
        .enqueue(vec![message(TOPIC_METERING_EVENTS, "k", "v")])
        .is_err()
    {
        assert!(Instant::now() < deadline, "queue never drained");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bus.flush().await.unwrap();
    assert_eq!(total(&bus, TOPIC_METERING_EVENTS).await, 11);
}

#[tokio::test]
async fn a_publish_that_is_not_committed_in_time_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let bus = LocalBus::open(dir.path(), small_queue(10)).unwrap();
    let lock = lock_the_file(dir.path());
    let late = bus
        .publish(vec![message(TOPIC_METERING_EVENTS, "k", "v")])
        .await;
    assert!(
        matches!(late, Err(BusError::Timeout { timeout_ms: 200 })),
        "{late:?}"
    );
    drop(lock);
    bus.flush().await.unwrap();
    assert_eq!(
        total(&bus, TOPIC_METERING_EVENTS).await,
        1,
        "a timed-out publish may still land"
    );
}

#[tokio::test]
async fn batches_and_messages_beyond_the_limits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let limits = LocalBusLimits {
        message_bytes_max: 100,
        ..small_queue(10)
    };
    let bus = LocalBus::open(dir.path(), limits).unwrap();
    let eleven: Vec<_> = (0..11)
        .map(|_| message(TOPIC_METERING_EVENTS, "k", "v"))
        .collect();
    assert!(matches!(
        bus.enqueue(eleven.clone()),
        Err(BusError::BatchTooLarge {
            messages: 11,
            messages_max: 10
        })
    ));
    assert!(matches!(
        bus.publish(eleven).await,
        Err(BusError::BatchTooLarge { .. })
    ));
    let big = message(TOPIC_METERING_EVENTS, "k", &"x".repeat(100));
    assert!(matches!(
        bus.publish(vec![big]).await,
        Err(BusError::MessageTooLarge { bytes_max: 100, .. })
    ));
    assert_eq!(total(&bus, TOPIC_METERING_EVENTS).await, 0);
    let zero = LocalBusLimits {
        write_batch_messages_max: 0,
        ..LocalBusLimits::default()
    };
    assert!(LocalBus::open(dir.path(), zero).is_err());
}

#[tokio::test]
async fn a_fetch_never_returns_more_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = LocalBusLimits {
        fetch_messages_max: 3,
        ..LocalBusLimits::default()
    };
    let bus = LocalBus::open(dir.path(), limits).unwrap();
    let batch = (0..5)
        .map(|_| message(TOPIC_METERING_EVENTS, "k", "v"))
        .collect();
    let placed = bus.publish(batch).await.unwrap();
    let got = bus
        .fetch(TOPIC_METERING_EVENTS, placed[0].0, 0, 100)
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
}

#[tokio::test]
async fn published_events_decode_back_with_avro() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    let events = all_samples();
    let messages = events
        .iter()
        .map(|e| event_message(e, Framing::SingleObject).unwrap())
        .collect();
    let placed = bus.publish(messages).await.unwrap();
    for (event, (partition, offset)) in events.iter().zip(placed) {
        let topic = event.kind().topic();
        assert_eq!(
            partition,
            partition_for_key(
                event.partition_key().to_string().as_bytes(),
                topic_partitions(topic).unwrap()
            )
        );
        let got = bus.fetch(topic, partition, offset, 1).await.unwrap();
        let decoded = avro::decode_framed(&got[0].value, |_| None).unwrap();
        assert_eq!(&decoded.event, event);
        assert_eq!(
            header(&got[0].headers, HEADER_EVENT_ID),
            Some(event.event_id().to_string().as_bytes())
        );
    }
}

#[tokio::test]
async fn a_cursor_moves_with_its_messages_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    assert_eq!(bus.committed_cursor("relay").await.unwrap(), None);
    let update = |expected, next| CursorUpdate {
        name: "relay".into(),
        expected,
        next,
    };
    let one = vec![message(TOPIC_METERING_EVENTS, "k", "1")];
    bus.publish_with_cursor(one.clone(), update(0, 5))
        .await
        .unwrap();
    assert_eq!(bus.committed_cursor("relay").await.unwrap(), Some(5));
    let stale = bus.publish_with_cursor(one.clone(), update(0, 6)).await;
    assert!(
        matches!(
            stale,
            Err(BusError::CursorConflict {
                expected: 0,
                found: 5,
                ..
            })
        ),
        "{stale:?}"
    );
    assert_eq!(
        total(&bus, TOPIC_METERING_EVENTS).await,
        1,
        "nothing written"
    );
    bus.publish_with_cursor(one, update(5, 9)).await.unwrap();
    assert_eq!(bus.committed_cursor("relay").await.unwrap(), Some(9));
    assert_eq!(total(&bus, TOPIC_METERING_EVENTS).await, 2);
}

#[tokio::test]
async fn created_topics_keep_their_first_partition_count() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    assert_eq!(bus.create_topic("t", 4).await.unwrap(), 4);
    assert_eq!(bus.create_topic("t", 9).await.unwrap(), 4);
    assert!(bus.create_topic("u", 0).await.is_err());
    bus.close().await.unwrap();
    let bus = open(dir.path());
    assert_eq!(bus.partition_count("t").await.unwrap(), 4);
}

#[test]
fn headers_round_trip_through_their_stored_form() {
    let headers = vec![
        ("a".to_owned(), vec![0, 1, 2]),
        (String::new(), Vec::new()),
        ("é".to_owned(), b"x".to_vec()),
    ];
    let bytes = sql::encode_headers(&headers).unwrap();
    assert_eq!(sql::decode_headers(&bytes).unwrap(), headers);
    assert!(sql::decode_headers(&bytes[..bytes.len() - 1]).is_err());
    assert!(sql::decode_headers(&[0, 0]).is_err());
    assert!(sql::decode_headers(&[]).unwrap().is_empty());
}

#[tokio::test]
async fn repeated_header_names_are_kept_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    let topic = "headers.repeated";
    bus.create_topic(topic, 1).await.unwrap();
    let mut sent = message(topic, "root", "value");
    sent.headers = vec![
        ("event_type".into(), b"MeteringEvent".to_vec()),
        ("empty".into(), Vec::new()),
        ("event_type".into(), b"duplicate names are kept".to_vec()),
    ];
    bus.publish(vec![sent.clone()]).await.unwrap();
    let got = bus.fetch(topic, 0, 0, 1).await.unwrap();
    assert_eq!(got[0].headers, sent.headers);
}

#[tokio::test]
async fn the_wal_starts_over_under_steady_publishing() {
    // One commit per publish, with the checkpointer thread running beside them: its passive
    // checkpoints alone never caught up here (0 restarts, a WAL of 172 MB). The writer's own
    // checkpoint lets it start over every WAL_RESTART_FRAMES pages or so (later when the
    // checkpointer thread holds the checkpoint at that moment): 13 to 41 times here.
    let dir = tempfile::tempdir().unwrap();
    let limits = LocalBusLimits {
        write_linger_us: 0,
        ..LocalBusLimits::default()
    };
    let bus = LocalBus::open(dir.path(), limits).unwrap();
    let value = "v".repeat(1024);
    let published = 8_000;
    for _ in 0..published {
        bus.publish(vec![message(TOPIC_METERING_EVENTS, "tree", &value)])
            .await
            .unwrap();
    }
    // The WAL header's checkpoint sequence number counts the times the WAL started over.
    let header = std::fs::read(dir.path().join("events.db-wal")).unwrap();
    let restarts = u32::from_be_bytes(header[12..16].try_into().unwrap());
    assert!(restarts >= 3, "the WAL started over {restarts} times");
    assert_eq!(total(&bus, TOPIC_METERING_EVENTS).await, published);
    bus.close().await.unwrap();
}
