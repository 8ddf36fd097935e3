//! Wiring of the ledger role: the signing key, the ledger sink and the consumer runtime on
//! `caracal.metering.events`. No ledger logic here (`ledger` owns it).

use std::sync::Arc;
use std::time::Duration;

use crate::bus::EventBus;
use crate::config::Config;
use crate::consume::{self, ConsumerConfig};
use crate::core::events::TOPIC_METERING_EVENTS;
use crate::http::Shutdown;
use crate::ledger::{keys, LedgerSettings, LedgerSink};
use crate::store::leases::LeaseStore;
use crate::store::ledger::LedgerStore;

use super::ServeError;

/// The consumer name of the ledger role in the lease table and metrics.
pub const CONSUMER: &str = "ledger";

/// The ledger's consumer settings from config.
pub fn consumer_config(config: &Config) -> ConsumerConfig {
    let mut consumer = ConsumerConfig::new(CONSUMER, vec![TOPIC_METERING_EVENTS.to_owned()]);
    consumer.lease_ttl = Duration::from_secs(config.consumers.lease_ttl_seconds);
    consumer.renew_every = consumer.lease_ttl / 3;
    consumer.partitions_in_flight =
        usize::try_from(config.consumers.partitions_in_flight).unwrap_or(usize::MAX);
    consumer
}

/// Where the signing key may come from: a key is made only in the embedded default.
pub fn key_source(config: &Config) -> keys::KeySource {
    if config.postgresql.is_configured() {
        keys::KeySource::Shared
    } else {
        keys::KeySource::Embedded
    }
}

/// Loads the key, registers it, and returns the role's task.
pub async fn prepare(
    config: &Config,
    ledger: Arc<dyn LedgerStore>,
    leases: Arc<dyn LeaseStore>,
    bus: Arc<dyn EventBus>,
    shutdown: Shutdown,
) -> Result<impl std::future::Future<Output = std::io::Result<()>>, ServeError> {
    let merkle = &config.consumers.ledger_writer.merkle;
    let key = keys::signing_key(
        merkle.signing_key_file.as_deref(),
        &config.data_dir,
        key_source(config),
    )
    .map_err(|e| ServeError::Config(e.to_string()))?;
    let settings = LedgerSettings {
        batch_size_limit: i64::from(merkle.batch_size_limit),
        batch_timeout: Duration::from_secs(merkle.batch_timeout_seconds),
        reverify_every: Duration::from_secs(merkle.reverify_interval_seconds),
        reverify_batches: i64::from(merkle.reverify_batches),
        partitions_in_flight: consumer_config(config).partitions_in_flight,
    };
    let sink = Arc::new(LedgerSink::new(ledger, key, settings).await?);
    let consumer = consumer_config(config);
    Ok(async move {
        consume::run(consumer, leases, bus, sink, shutdown).await;
        Ok(())
    })
}
