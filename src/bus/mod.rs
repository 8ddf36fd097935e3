//! The event bus: topics, the wire encoding of events (Avro) and, later, the producer and
//! consumer adapters. Nothing here decides what an event means; `core::events` owns that.

pub mod avro;
