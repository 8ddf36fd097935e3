//! The two framings of an Avro datum in a Kafka message value: single-object encoding
//! (`C3 01`, 8-byte little-endian CRC-64-AVRO fingerprint, datum) and the Confluent wire format
//! (`00`, 4-byte big-endian Schema Registry id, datum). Readers accept both; no registry I/O here.

use super::{decode_event, schemas, AvroError};
use crate::core::events::{Event, EventKind};

/// Marker of Avro single-object encoding.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
/// Marker + fingerprint.
pub const SINGLE_OBJECT_HEADER_BYTES: usize = 10;
/// First byte of the Confluent wire format.
pub const CONFLUENT_MAGIC: u8 = 0x00;
/// Magic byte + schema id.
pub const CONFLUENT_HEADER_BYTES: usize = 5;

/// How a datum is framed in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Used when no Schema Registry is configured.
    SingleObject,
    /// `schema_id` is the id the Schema Registry gave our schema of the event's kind.
    Confluent { schema_id: u32 },
}

/// A framed message, taken apart but not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unframed<'a> {
    pub kind: EventKind,
    pub framing: Framing,
    /// The Avro binary datum: the bytes the ledger stores and seals.
    pub datum: &'a [u8],
}

/// A framed message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub framing: Framing,
    pub datum: &'a [u8],
    pub event: Event,
}

impl Decoded<'_> {
    /// Which schema the message was written with.
    pub fn kind(&self) -> EventKind {
        self.event.kind()
    }
}

/// The header of either framing, on the stack.
#[derive(Default)]
pub(super) struct Header {
    bytes: [u8; SINGLE_OBJECT_HEADER_BYTES],
    len: usize,
}

impl Header {
    pub(super) fn bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// The header of `framing` for a datum of `kind`.
pub(super) fn header(kind: EventKind, framing: Framing) -> Result<Header, AvroError> {
    let mut bytes = [0u8; SINGLE_OBJECT_HEADER_BYTES];
    let len = match framing {
        Framing::SingleObject => {
            let (magic, fingerprint) = bytes.split_at_mut(SINGLE_OBJECT_MAGIC.len());
            magic.copy_from_slice(&SINGLE_OBJECT_MAGIC);
            fingerprint.copy_from_slice(&schemas::fingerprint(kind)?);
            SINGLE_OBJECT_HEADER_BYTES
        }
        Framing::Confluent { schema_id } => {
            let (magic, rest) = bytes.split_at_mut(1);
            magic.copy_from_slice(&[CONFLUENT_MAGIC]);
            let (id, _) = rest.split_at_mut(4);
            id.copy_from_slice(&schema_id.to_be_bytes());
            CONFLUENT_HEADER_BYTES
        }
    };
    Ok(Header { bytes, len })
}

/// Puts the header of `framing` in front of a datum of `kind` (a datum already written).
pub fn frame(kind: EventKind, framing: Framing, datum: &[u8]) -> Result<Vec<u8>, AvroError> {
    let header = header(kind, framing)?;
    let mut out = Vec::with_capacity(header.len + datum.len());
    out.extend_from_slice(header.bytes());
    out.extend_from_slice(datum);
    Ok(out)
}

/// Reads the header of either framing. `registry_lookup` maps a Schema Registry id to the kind
/// of event registered under it (our current schema of that kind is used as writer schema).
pub fn unframe<'a>(
    bytes: &'a [u8],
    registry_lookup: impl Fn(u32) -> Option<EventKind>,
) -> Result<Unframed<'a>, AvroError> {
    let truncated = |needed: usize| AvroError::Truncated {
        needed,
        got: bytes.len(),
    };
    match bytes.first() {
        None => Err(truncated(1)),
        Some(&CONFLUENT_MAGIC) => {
            let (header, datum) = bytes
                .split_first_chunk::<CONFLUENT_HEADER_BYTES>()
                .ok_or_else(|| truncated(CONFLUENT_HEADER_BYTES))?;
            let [_, id @ ..] = *header;
            let schema_id = u32::from_be_bytes(id);
            let kind = registry_lookup(schema_id).ok_or(AvroError::UnknownSchemaId(schema_id))?;
            Ok(Unframed {
                kind,
                framing: Framing::Confluent { schema_id },
                datum,
            })
        }
        Some(&first) if first == SINGLE_OBJECT_MAGIC[0] => {
            if let Some(&second) = bytes.get(1) {
                if second != SINGLE_OBJECT_MAGIC[1] {
                    return Err(AvroError::BadMagic {
                        found: vec![first, second],
                    });
                }
            }
            let (header, datum) = bytes
                .split_first_chunk::<SINGLE_OBJECT_HEADER_BYTES>()
                .ok_or_else(|| truncated(SINGLE_OBJECT_HEADER_BYTES))?;
            let [_, _, fingerprint @ ..] = *header;
            let kind = schemas::kind_of_fingerprint(&fingerprint)
                .ok_or(AvroError::UnknownFingerprint(fingerprint))?;
            Ok(Unframed {
                kind,
                framing: Framing::SingleObject,
                datum,
            })
        }
        Some(&first) => Err(AvroError::BadMagic { found: vec![first] }),
    }
}

/// Takes apart and decodes a message value in either framing.
pub fn decode_framed<'a>(
    bytes: &'a [u8],
    registry_lookup: impl Fn(u32) -> Option<EventKind>,
) -> Result<Decoded<'a>, AvroError> {
    let Unframed {
        kind,
        framing,
        datum,
    } = unframe(bytes, registry_lookup)?;
    let event = decode_event(kind, datum)?;
    Ok(Decoded {
        framing,
        datum,
        event,
    })
}
