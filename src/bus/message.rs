//! Turns an event into the message that carries it: topic, key (the tree's root), framed Avro
//! value, headers (`event_type`, `event_id`, `correlation_id`, and `outbox_id` from the relay).
//! Pure: no I/O and no clock; the message time is the event's `occurred_at`.

use chrono::{DateTime, Utc};

use super::avro::{self, Framing};
use super::{BusError, OutgoingMessage};
use crate::core::events::{AdminEvent, Event, UnixMicros};

/// Header naming the Avro record (`MeteringEvent`, `PolicyChange`, ...).
pub const HEADER_EVENT_TYPE: &str = "event_type";
/// Header holding the event's UUID; readers dedupe on it.
pub const HEADER_EVENT_ID: &str = "event_id";
/// Header holding the request's `x-correlation-id`, when the event has one.
pub const HEADER_CORRELATION_ID: &str = "correlation_id";
/// Header holding the outbox row id (decimal) of a relayed admin event.
pub const HEADER_OUTBOX_ID: &str = "outbox_id";

/// The value of the first header called `name`.
pub fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_slice())
}

fn occurred_at(event: &Event) -> UnixMicros {
    match event {
        Event::Metering(e) => e.occurred_at,
        Event::Decision(e) => e.occurred_at,
        Event::Lifecycle(e) => e.occurred_at,
        Event::Change(e) => e.occurred_at,
    }
}

fn correlation_id(event: &Event) -> Option<&str> {
    match event {
        Event::Metering(e) => e.correlation_id.as_deref(),
        Event::Decision(e) => e.correlation_id.as_deref(),
        Event::Lifecycle(_) | Event::Change(_) => None,
    }
}

fn timestamp(at: UnixMicros) -> Result<DateTime<Utc>, BusError> {
    at.to_datetime()
        .ok_or_else(|| BusError::Corrupt(format!("occurred_at {} is out of range", at.0)))
}

/// The message for `event` on its topic, keyed by its root agent, valued by its framed datum.
pub fn event_message(event: &Event, framing: Framing) -> Result<OutgoingMessage, BusError> {
    let kind = event.kind();
    let value = avro::encode_event_framed(event, Some(framing))?;
    let mut headers = vec![
        (
            HEADER_EVENT_TYPE.to_owned(),
            kind.name().as_bytes().to_vec(),
        ),
        (
            HEADER_EVENT_ID.to_owned(),
            event.event_id().to_string().into_bytes(),
        ),
    ];
    if let Some(id) = correlation_id(event) {
        headers.push((HEADER_CORRELATION_ID.to_owned(), id.as_bytes().to_vec()));
    }
    Ok(OutgoingMessage {
        topic: kind.topic().to_owned(),
        key: event.partition_key().to_string().into_bytes(),
        value,
        headers,
        timestamp: timestamp(occurred_at(event))?,
    })
}

/// The message for an admin event relayed from outbox row `outbox_id`.
pub fn admin_message(
    event: &AdminEvent,
    outbox_id: i64,
    framing: Framing,
) -> Result<OutgoingMessage, BusError> {
    let mut message = event_message(&Event::from(event.clone()), framing)?;
    message.headers.push((
        HEADER_OUTBOX_ID.to_owned(),
        outbox_id.to_string().into_bytes(),
    ));
    Ok(message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::bus::avro::tests::all_samples;
    use crate::core::events::EventKind;

    #[test]
    fn every_event_becomes_a_keyed_message_that_decodes_back() {
        for event in all_samples() {
            let message = event_message(&event, Framing::SingleObject).unwrap();
            assert_eq!(message.topic, event.kind().topic());
            assert_eq!(
                message.key,
                event.partition_key().to_string().as_bytes(),
                "key is the root agent id as text"
            );
            let decoded = avro::decode_framed(&message.value, |_| None).unwrap();
            assert_eq!(decoded.event, event);
            assert_eq!(decoded.framing, Framing::SingleObject);
            let headers = &message.headers;
            assert_eq!(
                header(headers, HEADER_EVENT_TYPE),
                Some(event.kind().name().as_bytes())
            );
            assert_eq!(
                header(headers, HEADER_EVENT_ID),
                Some(event.event_id().to_string().as_bytes())
            );
            assert_eq!(header(headers, HEADER_OUTBOX_ID), None);
        }
    }

    #[test]
    fn the_correlation_id_header_is_present_only_when_the_event_has_one() {
        let with: Vec<_> = all_samples()
            .into_iter()
            .filter_map(|e| Some((correlation_id(&e)?.to_owned(), e)))
            .collect();
        assert!(!with.is_empty());
        for (id, event) in with {
            let message = event_message(&event, Framing::SingleObject).unwrap();
            assert_eq!(
                header(&message.headers, HEADER_CORRELATION_ID),
                Some(id.as_bytes())
            );
        }
        let minimal = all_samples()
            .into_iter()
            .find(|e| e.kind() == EventKind::MeteringEvent && correlation_id(e).is_none())
            .unwrap();
        let message = event_message(&minimal, Framing::SingleObject).unwrap();
        assert_eq!(header(&message.headers, HEADER_CORRELATION_ID), None);
    }

    #[test]
    fn admin_messages_carry_their_outbox_id_and_time() {
        let event = all_samples()
            .into_iter()
            .find_map(|e| match e {
                Event::Change(c) => Some(AdminEvent::PolicyChange(c)),
                _ => None,
            })
            .unwrap();
        let message = admin_message(&event, 42, Framing::Confluent { schema_id: 7 }).unwrap();
        assert_eq!(message.topic, "caracal.policy.changes");
        assert_eq!(header(&message.headers, HEADER_OUTBOX_ID), Some(&b"42"[..]));
        assert_eq!(&message.value[..5], &[0, 0, 0, 0, 7]);
        let AdminEvent::PolicyChange(change) = &event else {
            panic!("not a change")
        };
        assert_eq!(message.timestamp.timestamp_micros(), change.occurred_at.0);
    }

    #[test]
    fn an_event_time_beyond_the_calendar_is_refused() {
        let mut event = all_samples().remove(0);
        if let Event::Metering(e) = &mut event {
            e.occurred_at = UnixMicros(i64::MAX);
        }
        assert!(matches!(
            event_message(&event, Framing::SingleObject),
            Err(BusError::Corrupt(_))
        ));
    }
}
