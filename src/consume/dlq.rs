//! Dead letters: the `caracal.dlq` message for a message a consumer could not decode or apply
//! (its key, value and headers unchanged, plus where it came from and why), and the reverse:
//! the original message back from a DLQ entry, for `dlq replay`. Pure, no I/O.

use chrono::Utc;
use serde::Serialize;

use crate::bus::{header, ConsumedMessage, OutgoingMessage};
use crate::core::events::TOPIC_DLQ;

/// Header naming the topic the message was read from.
pub const HEADER_SOURCE_TOPIC: &str = "dlq_source_topic";
/// Header with the source partition (decimal).
pub const HEADER_SOURCE_PARTITION: &str = "dlq_source_partition";
/// Header with the source offset (decimal).
pub const HEADER_SOURCE_OFFSET: &str = "dlq_source_offset";
/// Header with why the consumer refused the message.
pub const HEADER_ERROR: &str = "dlq_error";
/// Header naming the consumer that refused it.
pub const HEADER_CONSUMER: &str = "dlq_consumer";
/// Longest error text kept in a header.
pub const ERROR_BYTES_MAX: usize = 1_024;

const DLQ_HEADERS: [&str; 5] = [
    HEADER_SOURCE_TOPIC,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_OFFSET,
    HEADER_ERROR,
    HEADER_CONSUMER,
];

/// The DLQ message for `message`, refused by `consumer` because of `reason`.
pub fn dead_letter(message: &ConsumedMessage, consumer: &str, reason: &str) -> OutgoingMessage {
    let mut error = reason.to_owned();
    if error.len() > ERROR_BYTES_MAX {
        let mut cut = ERROR_BYTES_MAX;
        while !error.is_char_boundary(cut) {
            cut -= 1;
        }
        error.truncate(cut);
    }
    let mut headers = message.headers.clone();
    headers.extend([
        (
            HEADER_SOURCE_TOPIC.to_owned(),
            message.topic.clone().into_bytes(),
        ),
        (
            HEADER_SOURCE_PARTITION.to_owned(),
            message.partition.to_string().into_bytes(),
        ),
        (
            HEADER_SOURCE_OFFSET.to_owned(),
            message.offset.to_string().into_bytes(),
        ),
        (HEADER_ERROR.to_owned(), error.into_bytes()),
        (HEADER_CONSUMER.to_owned(), consumer.as_bytes().to_vec()),
    ]);
    OutgoingMessage {
        topic: TOPIC_DLQ.to_owned(),
        key: message.key.clone(),
        value: message.value.clone(),
        headers,
        timestamp: message.timestamp,
    }
}

/// A DLQ entry as `dlq list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub source_topic: String,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub consumer: String,
    pub error: String,
    pub value_bytes: usize,
    pub timestamp: chrono::DateTime<Utc>,
}

fn text(message: &ConsumedMessage, name: &str) -> String {
    header(&message.headers, name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

impl DeadLetter {
    pub fn from_message(message: &ConsumedMessage) -> DeadLetter {
        DeadLetter {
            partition: message.partition,
            offset: message.offset,
            source_topic: text(message, HEADER_SOURCE_TOPIC),
            source_partition: text(message, HEADER_SOURCE_PARTITION).parse().ok(),
            source_offset: text(message, HEADER_SOURCE_OFFSET).parse().ok(),
            consumer: text(message, HEADER_CONSUMER),
            error: text(message, HEADER_ERROR),
            value_bytes: message.value.len(),
            timestamp: message.timestamp,
        }
    }
}

/// The original message of a DLQ entry, to publish again on its source topic. `None` when
/// the entry names no source topic.
pub fn original(message: &ConsumedMessage) -> Option<OutgoingMessage> {
    let topic = header(&message.headers, HEADER_SOURCE_TOPIC)?;
    let topic = String::from_utf8(topic.to_vec()).ok()?;
    Some(OutgoingMessage {
        topic,
        key: message.key.clone(),
        value: message.value.clone(),
        headers: message
            .headers
            .iter()
            .filter(|(name, _)| !DLQ_HEADERS.contains(&name.as_str()))
            .cloned()
            .collect(),
        timestamp: message.timestamp,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn consumed() -> ConsumedMessage {
        ConsumedMessage {
            topic: "caracal.metering.events".into(),
            partition: 4,
            offset: 77,
            key: b"root".to_vec(),
            value: vec![0xde, 0xad],
            headers: vec![("event_type".into(), b"MeteringEvent".to_vec())],
            timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
        }
    }

    #[test]
    fn a_dead_letter_says_where_it_came_from_and_why_and_replays_unchanged() {
        let source = consumed();
        let dead = dead_letter(&source, "ledger", "bad magic byte");
        assert_eq!(dead.topic, TOPIC_DLQ);
        assert_eq!(dead.value, source.value);
        let as_read = ConsumedMessage {
            topic: dead.topic.clone(),
            partition: 1,
            offset: 9,
            key: dead.key.clone(),
            value: dead.value.clone(),
            headers: dead.headers.clone(),
            timestamp: dead.timestamp,
        };
        let shown = DeadLetter::from_message(&as_read);
        assert_eq!(shown.source_topic, "caracal.metering.events");
        assert_eq!(shown.source_partition, Some(4));
        assert_eq!(shown.source_offset, Some(77));
        assert_eq!(shown.error, "bad magic byte");
        assert_eq!(shown.consumer, "ledger");
        let back = original(&as_read).unwrap();
        assert_eq!(back.topic, source.topic);
        assert_eq!(back.key, source.key);
        assert_eq!(back.value, source.value);
        assert_eq!(back.headers, source.headers);
    }

    #[test]
    fn a_long_error_is_cut_on_a_character_boundary() {
        let reason = "é".repeat(ERROR_BYTES_MAX);
        let dead = dead_letter(&consumed(), "audit", &reason);
        let error = header(&dead.headers, HEADER_ERROR).unwrap();
        assert!(error.len() <= ERROR_BYTES_MAX);
        assert!(std::str::from_utf8(error).is_ok());
    }
}
