//! Kafka administration for operators: the topics Caracal needs (create, list, describe) over a
//! small admin connection of its own (kafka-protocol encodes the requests), the client settings
//! of a Java `.properties` file, SASL (PLAIN, SCRAM) and TLS for that connection.
//! Not the event bus (`bus::kafka` produces and consumes): nothing here reads or writes records.

pub mod admin;
pub mod conn;
pub mod create;
pub mod error;
pub mod pkcs12;
pub mod properties;
pub mod registry;
pub mod scram;
pub mod settings;
pub mod tls;
pub mod topics;

pub use admin::Admin;
pub use error::KafkaError;
pub use settings::ClientSettings;
