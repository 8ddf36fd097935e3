//! The four `.avsc` files, compiled into the binary, parsed once on first use, with their
//! parsing canonical forms and CRC-64-AVRO fingerprints. A schema that fails to parse is an
//! `AvroError::Schema` at every use (and at `check_schemas()` on start-up), never a panic.

use std::sync::LazyLock;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::Schema;

use super::{canonical, AvroError};
use crate::core::events::EventKind;

const METERING_EVENT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schemas/metering-event.avsc"
));
const POLICY_DECISION: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schemas/policy-decision.avsc"
));
const AGENT_LIFECYCLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schemas/agent-lifecycle.avsc"
));
const POLICY_CHANGE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schemas/policy-change.avsc"
));

/// The file name under `schemas/` of the schema of `kind`.
pub(super) fn file_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::MeteringEvent => "metering-event.avsc",
        EventKind::PolicyDecision => "policy-decision.avsc",
        EventKind::AgentLifecycle => "agent-lifecycle.avsc",
        EventKind::PolicyChange => "policy-change.avsc",
    }
}

/// The schema of `kind` as written in its `.avsc` (what is registered in a Schema Registry).
pub fn schema_json(kind: EventKind) -> &'static str {
    match kind {
        EventKind::MeteringEvent => METERING_EVENT,
        EventKind::PolicyDecision => POLICY_DECISION,
        EventKind::AgentLifecycle => AGENT_LIFECYCLE,
        EventKind::PolicyChange => POLICY_CHANGE,
    }
}

struct Parsed {
    schema: Schema,
    canonical: String,
    fingerprint: [u8; 8],
}

/// What a datum reader needs, built once per schema.
struct Codec {
    reader: GenericDatumReader<'static>,
}

type Loaded<T> = LazyLock<Vec<Result<T, String>>>;

/// Parsed schemas, in `EventKind::ALL` order.
static PARSED: Loaded<Parsed> =
    LazyLock::new(|| EventKind::ALL.iter().map(|k| parse(*k)).collect());

static CODECS: Loaded<Codec> = LazyLock::new(|| PARSED.iter().map(codec).collect());

fn parse(kind: EventKind) -> Result<Parsed, String> {
    let schema = Schema::parse_str(schema_json(kind)).map_err(|e| e.to_string())?;
    let canonical = parsing_canonical_form(&schema);
    let fingerprint = canonical::rabin_fingerprint(canonical.as_bytes());
    Ok(Parsed {
        schema,
        canonical,
        fingerprint,
    })
}

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The Parsing Canonical Form as Java's `SchemaNormalization`, fastavro and the other SDKs
/// write it. apache-avro 0.22 keeps `{"type":"string"}` where a primitive carried a
/// `logicalType` (uuid, timestamp-micros); the others write `"string"`, and a single-object
/// fingerprint must match theirs. The rewrite is exact: names and symbols cannot hold `{` or `"`.
pub(super) fn parsing_canonical_form(schema: &Schema) -> String {
    let mut form = schema.canonical_form();
    for primitive in PRIMITIVES {
        form = form.replace(
            &format!(r#"{{"type":"{primitive}"}}"#),
            &format!(r#""{primitive}""#),
        );
    }
    form
}

fn codec(parsed: &'static Result<Parsed, String>) -> Result<Codec, String> {
    let parsed = parsed.as_ref().map_err(Clone::clone)?;
    let reader = GenericDatumReader::builder(&parsed.schema)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Codec { reader })
}

fn slot<T>(all: &'static [Result<T, String>], kind: EventKind) -> Result<&'static T, AvroError> {
    let file = file_name(kind);
    let position = EventKind::ALL.iter().position(|k| *k == kind);
    match position.and_then(|p| all.get(p)) {
        Some(Ok(item)) => Ok(item),
        Some(Err(detail)) => Err(AvroError::Schema {
            file,
            detail: detail.clone(),
        }),
        None => Err(AvroError::Schema {
            file,
            detail: "not loaded".into(),
        }),
    }
}

fn parsed(kind: EventKind) -> Result<&'static Parsed, AvroError> {
    slot(&PARSED, kind)
}

/// The parsed schema of `kind`.
pub fn schema(kind: EventKind) -> Result<&'static Schema, AvroError> {
    Ok(&parsed(kind)?.schema)
}

/// The schema's Parsing Canonical Form (Avro specification), the input of its fingerprint.
pub fn canonical_form(kind: EventKind) -> Result<&'static str, AvroError> {
    Ok(&parsed(kind)?.canonical)
}

/// CRC-64-AVRO (Rabin) fingerprint of the canonical form, little-endian, as written after the
/// single-object marker.
pub fn fingerprint(kind: EventKind) -> Result<[u8; 8], AvroError> {
    Ok(parsed(kind)?.fingerprint)
}

/// Parses every schema and builds its reader; call on start-up to fail before serving.
pub fn check_schemas() -> Result<(), AvroError> {
    for kind in EventKind::ALL {
        slot(&CODECS, kind)?;
    }
    Ok(())
}

/// The kind whose schema has this fingerprint.
pub(super) fn kind_of_fingerprint(fingerprint: &[u8; 8]) -> Option<EventKind> {
    EventKind::ALL
        .into_iter()
        .find(|k| parsed(*k).is_ok_and(|p| &p.fingerprint == fingerprint))
}

/// Reads one datum of `kind`; every byte must belong to it.
pub(super) fn read(kind: EventKind, datum: &[u8]) -> Result<Value, AvroError> {
    let codec = slot(&CODECS, kind)?;
    let record = kind.name();
    let mut rest = datum;
    let value = codec
        .reader
        .read_value(&mut rest)
        .map_err(|e| AvroError::Datum {
            record,
            detail: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(AvroError::TrailingBytes {
            record,
            count: rest.len(),
        });
    }
    Ok(value)
}
