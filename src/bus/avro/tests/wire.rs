//! Wire-level tests: the pinned bytes of one MeteringEvent (a Merkle leaf), fingerprints
//! against apache-avro's, both framings and every way a message can be refused.
//! A change to GOLDEN_* is a change to sealed bytes: make it only with a schema version bump.

use std::collections::BTreeMap;

use apache_avro::rabin::Rabin;
use uuid::Uuid;

use super::*;

/// A MeteringEvent fixed forever; edit it and GOLDEN_DATUM_HEX breaks, as it should.
fn golden_event() -> MeteringEvent {
    MeteringEvent {
        event_id: Uuid::from_u128(0x0190_f3a2_5b1c_7d4e_8f00_1122_3344_5566),
        occurred_at: UnixMicros(1_719_792_000_000_001),
        request_id: Uuid::from_u128(0xa1),
        correlation_id: Some("req-42".into()),
        agent_id: AgentId(Uuid::from_u128(0xa2)),
        parent_id: Some(AgentId(Uuid::from_u128(0xa3))),
        root_agent_id: AgentId(Uuid::from_u128(0xa3)),
        ancestor_ids: vec![AgentId(Uuid::from_u128(0xa3))],
        source: Source::Gateway,
        provider: "openai".into(),
        resource: "gpt-4o".into(),
        operation: "chat.completions".into(),
        input_tokens: 1000,
        cached_input_tokens: 200,
        cache_write_input_tokens: 0,
        output_tokens: 500,
        calls: 1,
        cost_micros: Micros(7_750),
        reserved_micros: Micros(170_000),
        currency: Currency::USD,
        estimated: false,
        outcome: Outcome::Completed,
        upstream_status: Some(200),
        reservation_id: Uuid::from_u128(0xa4),
        policy_ids: vec![PolicyId(Uuid::from_u128(0xa5))],
        pricebook_version: 3,
        instance: "gw-1".into(),
        upstream_latency_micros: 250_000,
        metadata: BTreeMap::from([
            ("team".to_owned(), "ml".to_owned()),
            ("env".to_owned(), "prod".to_owned()),
        ]),
    }
}

/// Also what fastavro's `schemaless_writer` produces for the same record (checked by hand).
const GOLDEN_DATUM_HEX: &str = concat!(
    "4830313930663361322d356231632d376434652d386630302d3131323233333434353536368280fb",
    "f388898e064830303030303030302d303030302d303030302d303030302d30303030303030303030",
    "6131020c7265712d34324830303030303030302d303030302d303030302d303030302d3030303030",
    "30303030306132024830303030303030302d303030302d303030302d303030302d30303030303030",
    "30303061334830303030303030302d303030302d303030302d303030302d30303030303030303030",
    "6133024830303030303030302d303030302d303030302d303030302d303030303030303030306133",
    "00000c6f70656e61690c6770742d346f20636861742e636f6d706c6574696f6e73d00f900300e807",
    "028c79a0e0140655534400000290034830303030303030302d303030302d303030302d303030302d",
    "303030303030303030306134024830303030303030302d303030302d303030302d303030302d3030",
    "3030303030303030613500060867772d31a0c21e0406656e760870726f64087465616d046d6c00",
);

/// As fastavro computes them (`fingerprint(parsing_canonical_form(s), "CRC-64-AVRO")`).
const GOLDEN_FINGERPRINTS_HEX: [(EventKind, &str); 4] = [
    (EventKind::MeteringEvent, "728c5dadb484bbe4"),
    (EventKind::PolicyDecision, "84554fba9a1c3bc1"),
    (EventKind::AgentLifecycle, "b417575a9d5a4a85"),
    (EventKind::PolicyChange, "02bcdb13f3ef094c"),
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_golden_metering_event_encodes_to_its_pinned_bytes() {
    let datum = encode_datum(&golden_event()).unwrap();
    assert_eq!(hex(&datum), GOLDEN_DATUM_HEX);
    assert_eq!(
        decode_datum::<MeteringEvent>(&datum).unwrap(),
        golden_event()
    );
}

#[test]
fn fingerprints_are_pinned_and_match_apache_avros_rabin_over_the_canonical_form() {
    for (kind, pinned) in GOLDEN_FINGERPRINTS_HEX {
        let form = canonical_form(kind).unwrap();
        // The canonical form is itself a schema, and its own canonical form.
        let reparsed = Schema::parse_str(form).unwrap();
        assert_eq!(reparsed.canonical_form(), form, "{kind:?}");
        let ours = fingerprint(kind).unwrap();
        assert_eq!(
            ours.to_vec(),
            reparsed.fingerprint::<Rabin>().bytes,
            "{kind:?}"
        );
        assert_eq!(hex(&ours), pinned, "{kind:?}");
    }
}

#[test]
fn canonical_forms_write_logical_types_as_their_primitive_like_java_and_fastavro() {
    for kind in EventKind::ALL {
        let apache = schema(kind).unwrap().canonical_form();
        let ours = canonical_form(kind).unwrap();
        let expected = apache
            .replace(r#"{"type":"string"}"#, r#""string""#)
            .replace(r#"{"type":"long"}"#, r#""long""#);
        assert_eq!(ours, expected, "{kind:?}");
    }
    let form = canonical_form(EventKind::MeteringEvent).unwrap();
    assert!(
        form.contains(r#"{"name":"event_id","type":"string"}"#),
        "{form}"
    );
    assert!(
        form.contains(r#"{"name":"occurred_at","type":"long"}"#),
        "{form}"
    );
}

#[test]
fn rabin_matches_the_reference_vector() {
    // From apache-avro's documentation of its Rabin digest.
    assert_eq!(hex(&rabin_fingerprint(b"hello world")), "60335ba6d0415528");
    // The fingerprint of the canonical form `"null"` in the Avro specification's test suite.
    assert_eq!(
        u64::from_le_bytes(rabin_fingerprint(br#""null""#)),
        7_195_948_357_588_979_594
    );
}

#[test]
fn canonical_forms_drop_docs_and_logical_types() {
    let form = canonical_form(EventKind::PolicyChange).unwrap();
    assert!(
        form.starts_with(r#"{"name":"caracal.v1.PolicyChange","type":"record""#),
        "{form}"
    );
    assert!(!form.contains("doc") && !form.contains("logicalType") && !form.contains("default"));
}

fn no_registry(_: u32) -> Option<EventKind> {
    None
}

#[test]
fn single_object_messages_decode_to_their_kind() {
    for event in all_samples() {
        let datum = encode_event(&event).unwrap();
        let bytes = encode_event_framed(&event, Some(Framing::SingleObject)).unwrap();
        assert_eq!(bytes[..2], SINGLE_OBJECT_MAGIC);
        assert_eq!(bytes[2..10], fingerprint(event.kind()).unwrap());
        let decoded = decode_framed(&bytes, no_registry).unwrap();
        assert_eq!(decoded.kind(), event.kind());
        assert_eq!(decoded.framing, Framing::SingleObject);
        assert_eq!(decoded.datum, &datum[..]);
        assert_eq!(decoded.event, event);
    }
}

#[test]
fn confluent_messages_decode_through_the_registry_lookup() {
    let lookup = |id: u32| match id {
        7 => Some(EventKind::MeteringEvent),
        0x0102_0304 => Some(EventKind::PolicyChange),
        _ => None,
    };
    let event = metering_full();
    let bytes = encode_event_framed(
        &Event::Metering(event.clone()),
        Some(Framing::Confluent { schema_id: 7 }),
    )
    .unwrap();
    assert_eq!(bytes[..5], [0, 0, 0, 0, 7]);
    let decoded = decode_framed(&bytes, lookup).unwrap();
    assert_eq!(decoded.framing, Framing::Confluent { schema_id: 7 });
    assert_eq!(decoded.event, Event::Metering(event));

    let change = change_full();
    let bytes = encode_event_framed(
        &Event::Change(change.clone()),
        Some(Framing::Confluent {
            schema_id: 0x0102_0304,
        }),
    )
    .unwrap();
    assert_eq!(bytes[..5], [0, 1, 2, 3, 4]);
    let unframed = unframe(&bytes, lookup).unwrap();
    assert_eq!(unframed.kind, EventKind::PolicyChange);
    assert_eq!(unframed.datum, &encode_datum(&change).unwrap()[..]);
}

#[test]
fn messages_that_are_not_ours_are_refused_with_the_reason() {
    let datum = encode_datum(&lifecycle_full()).unwrap();
    let single = frame(EventKind::AgentLifecycle, Framing::SingleObject, &datum).unwrap();
    let cases: Vec<(Vec<u8>, AvroError)> = vec![
        (vec![], AvroError::Truncated { needed: 1, got: 0 }),
        (vec![0x7b, 0x22], AvroError::BadMagic { found: vec![0x7b] }),
        (
            vec![0xC3, 0x02, 1, 2],
            AvroError::BadMagic {
                found: vec![0xC3, 0x02],
            },
        ),
        (vec![0xC3], AvroError::Truncated { needed: 10, got: 1 }),
        (
            single[..9].to_vec(),
            AvroError::Truncated { needed: 10, got: 9 },
        ),
        (vec![0, 0, 0], AvroError::Truncated { needed: 5, got: 3 }),
        (vec![0, 0, 0, 0, 9, 1], AvroError::UnknownSchemaId(9)),
        (
            [&[0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8][..], &datum].concat(),
            AvroError::UnknownFingerprint([1, 2, 3, 4, 5, 6, 7, 8]),
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(
            decode_framed(&bytes, no_registry).unwrap_err(),
            expected,
            "{bytes:02x?}"
        );
    }
}

#[test]
fn datums_that_do_not_fit_the_schema_are_refused() {
    let datum = encode_datum(&metering_full()).unwrap();
    // Cut short.
    let short = decode_datum::<MeteringEvent>(&datum[..datum.len() - 3]).unwrap_err();
    assert!(
        matches!(
            short,
            AvroError::Datum {
                record: "MeteringEvent",
                ..
            }
        ),
        "{short}"
    );
    // One byte too many.
    let long = decode_datum::<MeteringEvent>(&[&datum[..], &[0]].concat()).unwrap_err();
    assert_eq!(
        long,
        AvroError::TrailingBytes {
            record: "MeteringEvent",
            count: 1
        }
    );
    // Another kind's datum.
    let decision = encode_datum(&decision_full()).unwrap();
    assert!(decode_datum::<MeteringEvent>(&decision).is_err());
}

/// Encodes a MeteringEvent whose field `name` is replaced by `value`, bypassing the struct.
fn datum_with(name: &str, value: Value) -> Vec<u8> {
    let Value::Record(mut fields) = metering_full().to_avro().unwrap() else {
        panic!("not a record")
    };
    for (field, slot) in &mut fields {
        if field == name {
            *slot = value.clone();
        }
    }
    super::reference::encode("test", &Value::Record(fields)).unwrap()
}

#[test]
fn values_the_struct_cannot_hold_are_refused_naming_the_field() {
    let cases = [
        ("input_tokens", Value::Long(-1)),
        ("currency", Value::String("DOGE".into())),
        (
            "upstream_status",
            Value::Union(1, Box::new(Value::Int(70_000))),
        ),
    ];
    for (field, value) in cases {
        let err = decode_datum::<MeteringEvent>(&datum_with(field, value)).unwrap_err();
        assert!(
            matches!(err, AvroError::Mismatch { field: f, .. } if f == field),
            "{field}: {err}"
        );
    }
}
