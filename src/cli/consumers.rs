//! `caracal consumers status`: for each consumer and partition, the owner, fencing epoch,
//! committed offset, high watermark and lag (what `kafka-consumer-groups --describe` shows
//! for Kafka groups; leases replace groups here).

use argh::FromArgs;
use serde::Serialize;

use std::sync::Arc;

use super::output::{print_json, print_table, Output};
use super::time::show;
use crate::config::Config;
use crate::store::leases::LeaseStore;

/// inspect the consumers (ledger, audit, and metrics when Redis is configured)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "consumers")]
pub struct ConsumersCmd {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Sub {
    Status(Status),
}

/// owner, epoch, committed offset, high watermark and lag of every partition
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
struct Status {
    /// only this consumer (ledger, audit or metrics)
    #[argh(option)]
    consumer: Option<String>,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

#[derive(Serialize)]
struct Row {
    consumer: String,
    topic: String,
    partition: i32,
    owner: Option<String>,
    epoch: i64,
    lease_expires_at: String,
    lease_live: bool,
    committed_offset: i64,
    high_watermark: i64,
    lag: i64,
}

pub async fn run(cmd: ConsumersCmd, config: &Config) -> anyhow::Result<()> {
    let Sub::Status(c) = cmd.cmd;
    let stores = crate::roles::open_stores(config).await?;
    let bus = crate::roles::open_bus(config).await?;
    let now = chrono::Utc::now().timestamp_micros();
    let mut rows = Vec::new();
    let mut leases = stores.leases.list_leases(c.consumer.as_deref()).await?;
    // The metrics role's leases and offsets live in Redis, beside its aggregates.
    let metrics = crate::aggregate::sink::CONSUMER;
    if config.redis.is_configured() && c.consumer.as_deref().is_none_or(|n| n == metrics) {
        let aggregates =
            crate::roles::metrics::open_aggregates(config, Arc::clone(&stores.leases)).await?;
        leases.extend(aggregates.list_leases(Some(metrics)).await?);
    }
    for lease in leases {
        let high_watermark = bus.high_watermark(&lease.topic, lease.partition).await?;
        rows.push(Row {
            lag: (high_watermark - lease.next_offset).max(0),
            lease_live: lease.owner.is_some() && lease.expires_at_micros >= now,
            lease_expires_at: show(lease.expires_at_micros),
            consumer: lease.consumer,
            topic: lease.topic,
            partition: lease.partition,
            owner: lease.owner,
            epoch: lease.epoch,
            committed_offset: lease.next_offset,
            high_watermark,
        });
    }
    bus.close().await?;
    match c.output {
        Output::Json => print_json(&rows),
        Output::Table => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.consumer.clone(),
                        r.topic.clone(),
                        r.partition.to_string(),
                        match (&r.owner, r.lease_live) {
                            (Some(o), true) => o.clone(),
                            (Some(o), false) => format!("{o} (expired)"),
                            (None, _) => "-".into(),
                        },
                        r.epoch.to_string(),
                        r.committed_offset.to_string(),
                        r.high_watermark.to_string(),
                        r.lag.to_string(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "CONSUMER",
                    "TOPIC",
                    "PARTITION",
                    "OWNER",
                    "EPOCH",
                    "COMMITTED",
                    "HIGH_WATERMARK",
                    "LAG",
                ],
                &table,
            );
            Ok(())
        }
    }
}
