//! Wiring of the Schema Registry: with `kafka.schemaRegistry.url`, registers the four value
//! schemas when the process starts and installs the Confluent wire format with their ids for
//! every encoder and decoder of the process; without it, single-object encoding. No fallback.

use crate::bus::avro::WireFormat;
use crate::config::Config;
use crate::kafka::registry::Registry;

use super::ServeError;

/// The process's wire format: with `kafka.schemaRegistry.url`, the four schemas registered
/// (idempotently) and their ids; a registry out of reach or refusing a schema stops the start.
pub async fn install(config: &Config) -> Result<WireFormat, ServeError> {
    let registry = &config.kafka.schema_registry;
    let wire = match registry.url {
        None => WireFormat::SingleObject,
        Some(_) => {
            let timeout = std::time::Duration::from_millis(registry.timeout_ms.max(1));
            let wire = Registry::new(registry, timeout)?.wire_format().await?;
            tracing::info!(?wire, "event schemas registered: Confluent wire format");
            wire
        }
    };
    crate::bus::avro::wire::install(wire)
        .map_err(|current| ServeError::Config(format!("the wire format is already {current:?}")))?;
    Ok(wire)
}
