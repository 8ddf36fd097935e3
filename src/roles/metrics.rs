//! Wiring of the metrics role: the Redis aggregate store (its leases and offsets included), the
//! aggregate sink under the consumer runtime on `caracal.metering.events`, and the policy
//! gauges. No aggregation logic here (`aggregate` owns it).

use std::sync::Arc;
use std::time::Duration;

use crate::aggregate::gauges::{self, GaugeSettings};
use crate::aggregate::keys::Retention;
use crate::aggregate::redis::RedisAggregates;
use crate::aggregate::sink::{AggregateSink, CONSUMER};
use crate::aggregate::{AggregateSettings, AggregateStore};
use crate::bus::EventBus;
use crate::config::Config;
use crate::consume::{self, ConsumerConfig};
use crate::core::events::TOPIC_METERING_EVENTS;
use crate::http::Shutdown;
use crate::store::leases::LeaseStore;
use crate::store::Store;

use super::ServeError;

/// The metrics role keeps everything in Redis: without it, it cannot run.
pub fn require_redis(config: &Config) -> Result<(), ServeError> {
    if config.redis.is_configured() {
        return Ok(());
    }
    Err(ServeError::Config(
        "the metrics role keeps its aggregates and offsets in Redis: set redis.host or redis.url \
         (`--role all` without Redis runs every other role)"
            .into(),
    ))
}

fn settings(config: &Config) -> AggregateSettings {
    let a = &config.consumers.metrics_aggregator;
    let secs =
        |value: u64, unit: u64| i64::try_from(value.saturating_mul(unit)).unwrap_or(i64::MAX);
    AggregateSettings {
        dedupe_window_secs: secs(a.dedupe_window_seconds, 1),
        retention: Retention {
            hour_secs: secs(a.hourly_retention_hours, 3_600),
            day_secs: secs(a.daily_retention_days, 86_400),
            month_secs: secs(a.daily_retention_days, 86_400),
        },
    }
}

/// The aggregates in the configured Redis; DLQ replay records stay in `dlq_records` (the
/// system of record's lease store). The one place `RedisAggregates` is chosen.
pub async fn open_aggregates(
    config: &Config,
    dlq_records: Arc<dyn LeaseStore>,
) -> Result<Arc<RedisAggregates>, ServeError> {
    require_redis(config)?;
    let (target, limits) = super::redis_settings(&config.redis);
    let store = RedisAggregates::open(&target, &limits, settings(config), dlq_records).await?;
    Ok(Arc::new(store))
}

/// The metrics consumer's settings from config.
pub fn consumer_config(config: &Config) -> ConsumerConfig {
    let mut consumer = ConsumerConfig::new(CONSUMER, vec![TOPIC_METERING_EVENTS.to_owned()]);
    consumer.lease_ttl = Duration::from_secs(config.consumers.lease_ttl_seconds);
    consumer.renew_every = consumer.lease_ttl / 3;
    consumer.partitions_in_flight =
        usize::try_from(config.consumers.partitions_in_flight).unwrap_or(usize::MAX);
    consumer.fetch_messages_max =
        usize::try_from(config.consumers.metrics_aggregator.batch_events_max).unwrap_or(500);
    consumer
}

/// The role's task: the consumer and the gauge refresher, until shutdown.
pub fn prepare(
    config: &Config,
    store: Arc<dyn Store>,
    aggregates: Arc<RedisAggregates>,
    bus: Arc<dyn EventBus>,
    shutdown: Shutdown,
) -> impl std::future::Future<Output = std::io::Result<()>> {
    let a = &config.consumers.metrics_aggregator;
    let gauge_settings = GaugeSettings {
        refresh: Duration::from_secs(a.gauge_refresh_seconds),
        policies_max: usize::try_from(a.policy_gauges_max).unwrap_or(usize::MAX),
    };
    let consumer = consumer_config(config);
    let sink = Arc::new(AggregateSink::new(
        Arc::clone(&aggregates) as Arc<dyn AggregateStore>
    ));
    let leases = Arc::clone(&aggregates) as Arc<dyn LeaseStore>;
    let gauges = gauges::run(store, aggregates, gauge_settings, shutdown.clone());
    async move {
        tokio::join!(consume::run(consumer, leases, bus, sink, shutdown), gauges);
        Ok(())
    }
}
