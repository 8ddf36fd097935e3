//! The wire format of this process: Avro single-object encoding, or the Confluent wire format
//! with the ids a Schema Registry gave our four schemas when the process registered them at
//! start. Set once per process (by `roles`, before any role runs) and read by every encoder and
//! decoder. No registry I/O here, and no fallback: once set it never changes.

use std::sync::OnceLock;

use super::Framing;
use crate::core::events::EventKind;

/// How every message of this process is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireFormat {
    /// No Schema Registry configured.
    #[default]
    SingleObject,
    /// `ids[i]` is the registry id of the schema of `EventKind::ALL[i]`.
    Confluent { ids: [u32; 4] },
}

impl WireFormat {
    /// The framing of a message carrying an event of `kind`.
    pub fn framing(&self, kind: EventKind) -> Framing {
        match self {
            WireFormat::SingleObject => Framing::SingleObject,
            WireFormat::Confluent { ids } => {
                let schema_id = EventKind::ALL
                    .iter()
                    .zip(ids)
                    .find(|(k, _)| **k == kind)
                    .map_or(0, |(_, id)| *id);
                Framing::Confluent { schema_id }
            }
        }
    }

    /// The kind whose schema the registry numbered `id`; `None` for any other id (a schema
    /// this version does not have, or no registry at all).
    pub fn kind_of_id(&self, id: u32) -> Option<EventKind> {
        match self {
            WireFormat::SingleObject => None,
            WireFormat::Confluent { ids } => EventKind::ALL
                .iter()
                .zip(ids)
                .find(|(_, known)| **known == id)
                .map(|(kind, _)| *kind),
        }
    }
}

static PROCESS: OnceLock<WireFormat> = OnceLock::new();

/// Sets the process's wire format. Refused (returns the format in force) once set to another.
pub fn install(format: WireFormat) -> Result<(), WireFormat> {
    let current = *PROCESS.get_or_init(|| format);
    match current == format {
        true => Ok(()),
        false => Err(current),
    }
}

/// The process's wire format: single-object until `install` is called.
pub fn current() -> WireFormat {
    PROCESS.get().copied().unwrap_or_default()
}

/// The registry-id lookup every decoder passes to `unframe` / `decode_framed`.
pub fn registered_kind(id: u32) -> Option<EventKind> {
    current().kind_of_id(id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::bus::avro::{decode_framed, tests::all_samples, AvroError};
    use crate::bus::event_message;

    #[test]
    fn confluent_messages_decode_through_the_ids_and_an_unknown_id_is_refused() {
        let wire = WireFormat::Confluent {
            ids: [21, 22, 23, 24],
        };
        for event in all_samples() {
            let message = event_message(&event, wire.framing(event.kind())).unwrap();
            assert_eq!(message.value[0], 0);
            let decoded = decode_framed(&message.value, |id| wire.kind_of_id(id)).unwrap();
            assert_eq!(decoded.event, event);
            let other = WireFormat::Confluent {
                ids: [31, 32, 33, 34],
            };
            let refused = decode_framed(&message.value, |id| other.kind_of_id(id));
            assert!(matches!(refused, Err(AvroError::UnknownSchemaId(_))));
        }
    }

    #[test]
    fn each_kind_is_framed_with_its_own_id_and_ids_map_back() {
        let wire = WireFormat::Confluent {
            ids: [11, 12, 13, 14],
        };
        for (kind, id) in EventKind::ALL.iter().zip([11, 12, 13, 14]) {
            assert_eq!(wire.framing(*kind), Framing::Confluent { schema_id: id });
            assert_eq!(wire.kind_of_id(id), Some(*kind));
        }
        assert_eq!(wire.kind_of_id(15), None);
        assert_eq!(WireFormat::SingleObject.kind_of_id(11), None);
        assert_eq!(
            WireFormat::SingleObject.framing(EventKind::PolicyChange),
            Framing::SingleObject
        );
    }
}
