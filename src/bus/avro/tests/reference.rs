//! The reference writer the direct datum writer (`writers::DatumWriter`) is checked against:
//! a walk over the `Value` that `AvroRecord::to_avro` builds (schema-validated), writing the
//! Avro binary encoding deterministically (one block per array or map, map keys in ascending
//! byte order). It was the production writer before the direct one; the bytes are Merkle
//! leaves, so the two must agree on every event.

#![allow(clippy::unwrap_used, clippy::panic)]

use apache_avro::types::Value;
use proptest::prelude::*;

use super::{all_samples, arb_metering, metering_full};
use crate::bus::avro::*;
use crate::core::events::{Event, MeteringEvent};

/// Encodes a value that was validated against its schema. Our schemas carry uuids as strings
/// and timestamps as longs, so the value alone determines the bytes. apache-avro's own writer
/// walks `Value::Map` (a HashMap) in random order; this one sorts, so equal events always
/// produce equal bytes.
pub(crate) fn encode(record: &'static str, value: &Value) -> Result<Vec<u8>, AvroError> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out).map_err(|detail| AvroError::Mismatch {
        record,
        field: "(encoding)",
        detail,
    })?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match value {
        Value::Null => {}
        Value::Boolean(b) => out.push(u8::from(*b)),
        Value::Int(n) => write_long(i64::from(*n), out),
        Value::Long(n) | Value::TimestampMicros(n) => write_long(*n, out),
        Value::String(s) => write_bytes(s.as_bytes(), out)?,
        Value::Uuid(u) => write_bytes(u.hyphenated().to_string().as_bytes(), out)?,
        Value::Enum(index, _) => write_long(i64::from(*index), out),
        Value::Union(index, inner) => {
            write_long(i64::from(*index), out);
            write(inner, out)?;
        }
        Value::Array(items) => {
            if !items.is_empty() {
                write_long(length(items.len())?, out);
                for item in items {
                    write(item, out)?;
                }
            }
            out.push(0);
        }
        Value::Map(entries) => {
            let mut sorted: Vec<(&String, &Value)> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            if !sorted.is_empty() {
                write_long(length(sorted.len())?, out);
                for (key, item) in sorted {
                    write_bytes(key.as_bytes(), out)?;
                    write(item, out)?;
                }
            }
            out.push(0);
        }
        Value::Record(fields) => {
            for (_, field) in fields {
                write(field, out)?;
            }
        }
        other => return Err(format!("no canonical encoding for {other:?}")),
    }
    Ok(())
}

fn length(len: usize) -> Result<i64, String> {
    i64::try_from(len).map_err(|_| format!("length {len} does not fit an Avro long"))
}

fn write_bytes(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    write_long(length(bytes.len())?, out);
    out.extend_from_slice(bytes);
    Ok(())
}

/// Zig-zag, then base-128 varint, least significant group first.
fn write_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z & 0x7f) as u8 | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// The `Value` of `event`, checked against its schema.
fn validated_value(event: &Event) -> Value {
    let value = match event {
        Event::Metering(e) => e.to_avro(),
        Event::Decision(e) => e.to_avro(),
        Event::Lifecycle(e) => e.to_avro(),
        Event::Change(e) => e.to_avro(),
    }
    .unwrap();
    assert!(
        value.validate(schema(event.kind()).unwrap()),
        "{:?} does not match its schema",
        event.kind()
    );
    value
}

/// Samples with several metadata keys, given in an order that is not the key order.
fn samples_with_maps() -> Vec<Event> {
    let mut events = all_samples();
    let keys = ["zeta", "alpha", "mu", "k10", "k2", "k1"];
    events.push(Event::Metering(MeteringEvent {
        metadata: keys
            .iter()
            .map(|k| ((*k).to_owned(), k.to_uppercase()))
            .collect(),
        ..metering_full()
    }));
    events
}

#[test]
fn direct_datums_equal_the_reference_writer_on_every_event_shape() {
    for event in samples_with_maps() {
        let reference = encode(event.kind().name(), &validated_value(&event)).unwrap();
        assert_eq!(
            encode_event(&event).unwrap(),
            reference,
            "{:?}",
            event.kind()
        );
    }
}

#[test]
fn a_refused_field_fails_the_whole_datum_naming_it() {
    let event = MeteringEvent {
        cached_input_tokens: u64::MAX,
        output_tokens: u64::MAX,
        ..metering_full()
    };
    match encode_event(&Event::Metering(event)) {
        Err(AvroError::Mismatch { record, field, .. }) => {
            assert_eq!((record, field), ("MeteringEvent", "cached_input_tokens"));
        }
        other => panic!("expected the first refused field, got {other:?}"),
    }
}

proptest! {
    #[test]
    fn any_metering_event_is_written_as_the_reference_writes_it(event in arb_metering()) {
        let event = Event::Metering(event);
        let reference = encode(event.kind().name(), &validated_value(&event)).unwrap();
        prop_assert_eq!(encode_event(&event).unwrap(), reference);
    }
}
