//! `caracal dlq list|count|replay`: the dead-letter topic. Replay re-publishes an entry's
//! original message to its source topic (once; `--force` to repeat), after the consumer that
//! refused it was fixed. Reads and writes go through the configured event bus.

use std::collections::HashSet;

use anyhow::{bail, Context};
use argh::FromArgs;

use super::output::{print_json, print_table, Output};
use crate::bus::EventBus;
use crate::config::Config;
use crate::consume::dlq::{original, DeadLetter};
use crate::core::events::TOPIC_DLQ;

/// inspect and replay the dead-letter queue
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "dlq")]
pub struct DlqCmd {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Sub {
    List(List),
    Count(Count),
    Replay(Replay),
}

/// list DLQ entries, oldest first
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
struct List {
    /// most entries to list (default 100)
    #[argh(option, default = "100")]
    limit: usize,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// count DLQ entries (all, and not yet replayed)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "count")]
struct Count {
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// re-publish a DLQ entry to its source topic
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "replay")]
struct Replay {
    /// the entry as PARTITION:OFFSET (from `dlq list`)
    #[argh(positional)]
    entry: String,
    /// replay even if it was replayed before
    #[argh(switch)]
    force: bool,
}

/// Every DLQ entry, up to `limit`, oldest first per partition.
async fn entries(
    bus: &dyn EventBus,
    limit: usize,
) -> anyhow::Result<Vec<crate::bus::ConsumedMessage>> {
    let mut found = Vec::new();
    for partition in 0..bus.partition_count(TOPIC_DLQ).await? {
        let mut offset = 0;
        while found.len() < limit {
            let batch = bus
                .fetch(TOPIC_DLQ, partition, offset, limit - found.len())
                .await?;
            let Some(last) = batch.last() else { break };
            offset = last.offset + 1;
            found.extend(batch);
        }
    }
    Ok(found)
}

pub async fn run(cmd: DlqCmd, config: &Config) -> anyhow::Result<()> {
    let bus = crate::roles::open_bus(config).await?;
    let outcome = run_with(cmd, config, bus.as_ref()).await;
    bus.close().await?;
    outcome
}

async fn run_with(cmd: DlqCmd, config: &Config, bus: &dyn EventBus) -> anyhow::Result<()> {
    let stores = crate::roles::open_stores(config).await?;
    let replayed: HashSet<(i32, i64)> = stores.leases.dlq_replays().await?.into_iter().collect();
    match cmd.cmd {
        Sub::List(c) => list(c, bus, &replayed).await,
        Sub::Count(c) => count(c, bus, &replayed).await,
        Sub::Replay(c) => replay(c, bus, &stores, &replayed).await,
    }
}

/// `dlq list`: the entries, oldest first, each marked replayed or not.
async fn list(c: List, bus: &dyn EventBus, replayed: &HashSet<(i32, i64)>) -> anyhow::Result<()> {
    let listed: Vec<(DeadLetter, bool)> =
        entries(bus, c.limit.clamp(1, crate::store::LIST_ROWS_MAX))
            .await?
            .iter()
            .map(|m| {
                (
                    DeadLetter::from_message(m),
                    replayed.contains(&(m.partition, m.offset)),
                )
            })
            .collect();
    match c.output {
        Output::Json => {
            let json: Vec<serde_json::Value> = listed
                .iter()
                .map(|(d, r)| {
                    let mut v = serde_json::to_value(d).unwrap_or_default();
                    if let Some(map) = v.as_object_mut() {
                        map.insert("replayed".into(), (*r).into());
                    }
                    v
                })
                .collect();
            print_json(&json)
        }
        Output::Table => {
            let rows: Vec<Vec<String>> = listed
                .iter()
                .map(|(d, r)| {
                    vec![
                        format!("{}:{}", d.partition, d.offset),
                        format!(
                            "{}/{}@{}",
                            d.source_topic,
                            d.source_partition.map_or("?".into(), |p| p.to_string()),
                            d.source_offset.map_or("?".into(), |o| o.to_string())
                        ),
                        d.consumer.clone(),
                        if *r { "yes".into() } else { "no".into() },
                        d.error.clone(),
                    ]
                })
                .collect();
            print_table(&["ENTRY", "SOURCE", "CONSUMER", "REPLAYED", "ERROR"], &rows);
            Ok(())
        }
    }
}

/// `dlq count`: every entry ever written, and those not replayed yet.
async fn count(c: Count, bus: &dyn EventBus, replayed: &HashSet<(i32, i64)>) -> anyhow::Result<()> {
    let mut total = 0i64;
    for partition in 0..bus.partition_count(TOPIC_DLQ).await? {
        total += bus.high_watermark(TOPIC_DLQ, partition).await?;
    }
    let replayed = i64::try_from(replayed.len()).unwrap_or(i64::MAX);
    let pending = crate::consume::dlq_backlog(total, replayed);
    match c.output {
        Output::Json => print_json(&serde_json::json!({"total": total, "pending": pending})),
        Output::Table => {
            println!("{total} entries ({pending} not replayed)");
            Ok(())
        }
    }
}

/// `dlq replay`: publishes an entry's original message again to its source topic, once.
async fn replay(
    c: Replay,
    bus: &dyn EventBus,
    stores: &crate::roles::Stores,
    replayed: &HashSet<(i32, i64)>,
) -> anyhow::Result<()> {
    let (partition, offset) = c
        .entry
        .split_once(':')
        .and_then(|(p, o)| Some((p.parse::<i32>().ok()?, o.parse::<i64>().ok()?)))
        .with_context(|| format!("{:?} is not PARTITION:OFFSET", c.entry))?;
    if replayed.contains(&(partition, offset)) && !c.force {
        bail!(
            "DLQ entry {partition}:{offset} was already replayed; use --force to replay it again"
        );
    }
    let message = bus
        .fetch(TOPIC_DLQ, partition, offset, 1)
        .await?
        .into_iter()
        .next()
        .filter(|m| m.offset == offset)
        .with_context(|| format!("no DLQ entry {partition}:{offset}"))?;
    let again = original(&message)
        .with_context(|| format!("DLQ entry {partition}:{offset} names no source topic"))?;
    let topic = again.topic.clone();
    let placed = bus.publish(vec![again]).await?;
    stores
        .leases
        .record_dlq_replay(partition, offset, chrono::Utc::now().timestamp_micros())
        .await?;
    for (p, o) in placed {
        println!("replayed {partition}:{offset} to {topic} partition {p} offset {o}");
    }
    Ok(())
}
