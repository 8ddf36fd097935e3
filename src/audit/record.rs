//! One consumed message as an audit record: the decoded event (or, on `caracal.dlq`, the dead
//! letter's headers and raw bytes) as JSON with where it was read from. Pure: no I/O, no clock.
//! Refuses only an undecodable message on an event topic; a DLQ entry is always recorded.

use serde::Serialize;
use serde_json::{json, Value};

use crate::bus::avro;
use crate::bus::ConsumedMessage;
use crate::consume::dlq;
use crate::core::events::{Event, UnixMicros, TOPIC_DLQ};
use crate::store::audit::AuditEntry;
use crate::store::ledger::hex;

/// `event_type` of a record made from a `caracal.dlq` entry.
pub const EVENT_TYPE_DEAD_LETTER: &str = "DeadLetter";

/// The record JSON, fields in this order. `event` is the event as the admin API shows it, or
/// for a dead letter what is known of the refused message.
#[derive(Serialize)]
struct Record<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    event_type: &'a str,
    event_id: Option<&'a str>,
    occurred_at: String,
    agent_id: Option<&'a str>,
    root_agent_id: Option<&'a str>,
    event: Value,
}

/// RFC 3339 in UTC with microseconds (`2026-01-02T03:04:05.000006Z`).
pub fn rfc3339(micros: i64) -> Option<String> {
    UnixMicros(micros)
        .to_datetime()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// The audit entry of `message`, or why it cannot be recorded (it then goes to the DLQ).
pub fn entry(message: &ConsumedMessage) -> Result<AuditEntry, String> {
    if message.topic == TOPIC_DLQ {
        return Ok(dead_letter(message));
    }
    let decoded =
        avro::decode_framed(&message.value, avro::registered_kind).map_err(|e| e.to_string())?;
    event_entry(message, &decoded.event)
}

fn event_entry(message: &ConsumedMessage, event: &Event) -> Result<AuditEntry, String> {
    let (occurred_at, agent_id, root_agent_id, body) = match event {
        Event::Metering(e) => (e.occurred_at, e.agent_id, e.root_agent_id, json_of(e)),
        Event::Decision(e) => (e.occurred_at, e.agent_id, e.root_agent_id, json_of(e)),
        Event::Lifecycle(e) => (e.occurred_at, e.agent_id, e.root_agent_id, json_of(e)),
        Event::Change(e) => (e.occurred_at, e.agent_id, e.root_agent_id, json_of(e)),
    };
    let occurred = rfc3339(occurred_at.0)
        .ok_or_else(|| format!("occurred_at {} is out of range", occurred_at.0))?;
    let (event_id, agent_id, root_agent_id) = (
        event.event_id().to_string(),
        agent_id.to_string(),
        root_agent_id.to_string(),
    );
    let event_type = event.kind().name();
    let record = Record {
        topic: &message.topic,
        partition: message.partition,
        offset: message.offset,
        event_type,
        event_id: Some(&event_id),
        occurred_at: occurred,
        agent_id: Some(&agent_id),
        root_agent_id: Some(&root_agent_id),
        event: body?,
    };
    Ok(AuditEntry {
        topic: message.topic.clone(),
        partition: message.partition,
        offset: message.offset,
        event_id: Some(event_id.clone()),
        event_type: event_type.to_owned(),
        occurred_at_micros: occurred_at.0,
        agent_id: Some(agent_id.clone()),
        root_agent_id: Some(root_agent_id.clone()),
        record: serde_json::to_string(&record).map_err(|e| e.to_string())?,
    })
}

fn json_of<T: Serialize>(event: &T) -> Result<Value, String> {
    serde_json::to_value(event).map_err(|e| e.to_string())
}

/// Bytes as `{"<name>": text}` when they are UTF-8, else `{"<name>_hex": hex}`.
fn bytes_field(object: &mut serde_json::Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => object.insert(name.to_owned(), Value::from(text)),
        Err(_) => object.insert(format!("{name}_hex"), Value::from(hex(bytes))),
    };
}

/// A DLQ entry's record. Infallible: refusing a DLQ message would send it to the DLQ again.
/// It has no `event_id` (the refused message may be replayed and logged as its event later);
/// its time is the message's, its root agent the key when the key is an id.
fn dead_letter(message: &ConsumedMessage) -> AuditEntry {
    let shown = dlq::DeadLetter::from_message(message);
    let headers: Vec<Value> = message
        .headers
        .iter()
        .map(|(name, value)| {
            let mut header = serde_json::Map::new();
            header.insert("name".to_owned(), Value::from(name.as_str()));
            bytes_field(&mut header, "value", value);
            Value::Object(header)
        })
        .collect();
    let mut event = serde_json::Map::new();
    event.insert("source_topic".to_owned(), json!(shown.source_topic));
    event.insert("source_partition".to_owned(), json!(shown.source_partition));
    event.insert("source_offset".to_owned(), json!(shown.source_offset));
    event.insert("consumer".to_owned(), json!(shown.consumer));
    event.insert("error".to_owned(), json!(shown.error));
    bytes_field(&mut event, "key", &message.key);
    event.insert("headers".to_owned(), Value::Array(headers));
    event.insert("value_bytes".to_owned(), json!(message.value.len()));
    event.insert("value_hex".to_owned(), json!(hex(&message.value)));

    let root = std::str::from_utf8(&message.key)
        .ok()
        .and_then(|k| uuid::Uuid::parse_str(k).ok())
        .map(|id| id.to_string());
    let micros = message.timestamp.timestamp_micros();
    let record = Record {
        topic: &message.topic,
        partition: message.partition,
        offset: message.offset,
        event_type: EVENT_TYPE_DEAD_LETTER,
        event_id: None,
        occurred_at: rfc3339(micros).unwrap_or_default(),
        agent_id: None,
        root_agent_id: root.as_deref(),
        event: Value::Object(event),
    };
    AuditEntry {
        topic: message.topic.clone(),
        partition: message.partition,
        offset: message.offset,
        event_id: None,
        event_type: EVENT_TYPE_DEAD_LETTER.to_owned(),
        occurred_at_micros: micros,
        agent_id: None,
        root_agent_id: root.clone(),
        // A `Value` always serializes; the fallback only keeps this function total.
        record: serde_json::to_string(&record).unwrap_or_else(|_| "{}".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn message(topic: &str, value: Vec<u8>) -> ConsumedMessage {
        ConsumedMessage {
            topic: topic.into(),
            partition: 2,
            offset: 41,
            key: b"0190b2a4-0000-7000-8000-000000000001".to_vec(),
            value,
            headers: vec![("event_type".into(), b"MeteringEvent".to_vec())],
            timestamp: chrono::DateTime::from_timestamp_micros(1_700_000_000_000_001).unwrap(),
        }
    }

    #[test]
    fn every_event_is_recorded_with_its_place_ids_and_full_body() {
        for event in crate::bus::avro::tests::all_samples() {
            let out = crate::bus::event_message(&event, avro::Framing::SingleObject).unwrap();
            let e = entry(&message(&out.topic, out.value)).unwrap();
            let id = event.event_id().to_string();
            assert_eq!(e.event_id.as_deref(), Some(id.as_str()));
            assert_eq!(e.event_type, event.kind().name());
            let record: Value = serde_json::from_str(&e.record).unwrap();
            assert_eq!(record["topic"], event.kind().topic());
            assert_eq!(
                (record["partition"].clone(), record["offset"].clone()),
                (json!(2), json!(41))
            );
            assert_eq!(record["event_id"], id);
            assert_eq!(record["event"]["event_id"], id);
            assert_eq!(record["root_agent_id"], event.partition_key().to_string());
            let at = record["occurred_at"].as_str().unwrap();
            assert_eq!(rfc3339(e.occurred_at_micros).as_deref(), Some(at));
            assert!(at.ends_with('Z'), "{at}");
        }
    }

    #[test]
    fn an_undecodable_event_is_refused_so_it_goes_to_the_dlq() {
        let refused = entry(&message("caracal.metering.events", vec![1, 2, 3]));
        assert!(refused.is_err());
    }

    #[test]
    fn a_dead_letter_is_recorded_with_its_headers_and_raw_value() {
        let source = message("caracal.metering.events", vec![0xff, 0x00]);
        let dead = dlq::dead_letter(&source, "audit", "bad magic");
        let as_read = ConsumedMessage {
            topic: dead.topic.clone(),
            partition: 0,
            offset: 7,
            key: dead.key.clone(),
            value: dead.value.clone(),
            headers: dead.headers.clone(),
            timestamp: dead.timestamp,
        };
        let e = entry(&as_read).unwrap();
        assert_eq!(e.event_type, EVENT_TYPE_DEAD_LETTER);
        assert_eq!(e.event_id, None);
        assert_eq!(
            e.root_agent_id.as_deref(),
            Some("0190b2a4-0000-7000-8000-000000000001")
        );
        let record: Value = serde_json::from_str(&e.record).unwrap();
        assert_eq!(record["topic"], "caracal.dlq");
        assert_eq!(record["occurred_at"], "2023-11-14T22:13:20.000001Z");
        assert_eq!(record["event"]["source_topic"], "caracal.metering.events");
        assert_eq!(record["event"]["source_offset"], 41);
        assert_eq!(record["event"]["error"], "bad magic");
        assert_eq!(record["event"]["value_hex"], "ff00");
        assert_eq!(record["event"]["headers"][0]["value"], "MeteringEvent");
    }
}
