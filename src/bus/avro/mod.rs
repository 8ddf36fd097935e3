//! Avro wire encoding of the four events: the schemas under `schemas/`, struct <-> datum, and
//! the two framings on Kafka (single-object encoding, Confluent wire format).
//! Owns byte stability (datums are Merkle leaves); knows nothing of Kafka clients or the ledger.

mod canonical;
mod fields;
mod framing;
mod records;
mod schemas;
pub mod wire;
mod writers;

#[cfg(test)]
pub(crate) mod tests;

use apache_avro::types::Value;

use crate::core::events::{
    AgentLifecycle, Event, EventKind, MeteringEvent, PolicyChange, PolicyDecision,
};

pub use canonical::rabin_fingerprint;
pub use framing::{
    decode_framed, frame, unframe, Decoded, Framing, Unframed, CONFLUENT_HEADER_BYTES,
    CONFLUENT_MAGIC, SINGLE_OBJECT_HEADER_BYTES, SINGLE_OBJECT_MAGIC,
};
pub use schemas::{canonical_form, check_schemas, fingerprint, schema, schema_json};
pub use wire::{registered_kind, WireFormat};

/// Everything that can go wrong between an event and its bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvroError {
    #[error("schema {file} does not parse: {detail}")]
    Schema { file: &'static str, detail: String },
    #[error("not an Avro message: unknown magic bytes {found:02x?}")]
    BadMagic { found: Vec<u8> },
    #[error("message truncated: {needed} bytes needed, {got} present")]
    Truncated { needed: usize, got: usize },
    #[error("no known schema has fingerprint {}", hex(.0))]
    UnknownFingerprint([u8; 8]),
    #[error("schema registry id {0} is not the id of one of our event schemas (this process learnt its ids by registering them in kafka.schemaRegistry at start)")]
    UnknownSchemaId(u32),
    #[error("{record}.{field}: {detail}")]
    Mismatch {
        record: &'static str,
        field: &'static str,
        detail: String,
    },
    #[error("{record}: value does not match its schema")]
    Invalid { record: &'static str },
    #[error("{record}: datum does not decode: {detail}")]
    Datum {
        record: &'static str,
        detail: String,
    },
    #[error("{record}: {count} bytes left after the datum")]
    TrailingBytes { record: &'static str, count: usize },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A struct that is one of our Avro records.
pub trait AvroRecord: Sized {
    const KIND: EventKind;
    /// The struct as a `Value::Record` in schema field order (for schema checks and tests).
    fn to_avro(&self) -> Result<Value, AvroError>;
    /// `prefix`, then the struct's Avro binary datum, written directly (the same bytes the
    /// tests' reference writer makes of `to_avro`).
    fn write_datum(&self, prefix: &[u8]) -> Result<Vec<u8>, AvroError>;
    /// The struct from a decoded `Value::Record`, checking every field (ids, currency, ranges).
    fn from_avro(value: Value) -> Result<Self, AvroError>;
}

/// The Avro binary datum of `event`: the bytes the ledger stores and seals.
pub fn encode_datum<E: AvroRecord>(event: &E) -> Result<Vec<u8>, AvroError> {
    event.write_datum(&[])
}

/// Decodes a datum written with our schema of `E`, rejecting trailing bytes.
pub fn decode_datum<E: AvroRecord>(datum: &[u8]) -> Result<E, AvroError> {
    E::from_avro(schemas::read(E::KIND, datum)?)
}

/// `encode_datum` for whichever event `event` is.
pub fn encode_event(event: &Event) -> Result<Vec<u8>, AvroError> {
    encode_event_framed(event, None)
}

/// The message value for `event`: its datum behind the header of `framing` (if any), written
/// into one buffer.
pub fn encode_event_framed(event: &Event, framing: Option<Framing>) -> Result<Vec<u8>, AvroError> {
    let header = match framing {
        Some(framing) => framing::header(event.kind(), framing)?,
        None => framing::Header::default(),
    };
    match event {
        Event::Metering(e) => e.write_datum(header.bytes()),
        Event::Decision(e) => e.write_datum(header.bytes()),
        Event::Lifecycle(e) => e.write_datum(header.bytes()),
        Event::Change(e) => e.write_datum(header.bytes()),
    }
}

/// `decode_datum` for the event of `kind`.
pub fn decode_event(kind: EventKind, datum: &[u8]) -> Result<Event, AvroError> {
    Ok(match kind {
        EventKind::MeteringEvent => Event::Metering(decode_datum::<MeteringEvent>(datum)?),
        EventKind::PolicyDecision => Event::Decision(decode_datum::<PolicyDecision>(datum)?),
        EventKind::AgentLifecycle => Event::Lifecycle(decode_datum::<AgentLifecycle>(datum)?),
        EventKind::PolicyChange => Event::Change(decode_datum::<PolicyChange>(datum)?),
    })
}
