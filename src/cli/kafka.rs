//! `caracal kafka create-topics|list-topics|describe-topic|register-schemas`: the topic
//! administration of the seeds' runbook, on the configured brokers or a Java client
//! `.properties` file, and the value schemas in the configured Schema Registry.
//! Argument handling and printing only; the requests are `kafka::Admin`'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use argh::FromArgs;

use super::output::{print_json, print_table, Output};
use crate::config::Config;
use crate::kafka::create::{self, Action};
use crate::kafka::registry::Registry;
use crate::kafka::{properties, topics, Admin, ClientSettings};

/// administer Caracal's Kafka topics
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "kafka")]
pub struct KafkaCmd {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Sub {
    CreateTopics(CreateTopics),
    ListTopics(ListTopics),
    DescribeTopic(DescribeTopic),
    RegisterSchemas(RegisterSchemas),
}

/// register the four event value schemas in kafka.schemaRegistry under <topic>-value, with
/// compatibility BACKWARD
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "register-schemas")]
struct RegisterSchemas {
    /// deadline of each registry request in milliseconds (default 30000)
    #[argh(option, default = "30_000")]
    timeout_ms: u64,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// create the five topics (partitions 10/5/3/3/3, kafka.config replication and min ISR, 30-day
/// retention, kafka.compression); report the ones that exist and how they differ
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "create-topics")]
struct CreateTopics {
    /// show what would be created; change nothing
    #[argh(switch)]
    dry_run: bool,
    /// a Java client .properties (bootstrap.servers, security.protocol, sasl.*, ssl.*) instead of
    /// the kafka section of the config
    #[argh(option)]
    config_file: Option<PathBuf>,
    /// deadline of each connection and request in milliseconds (default 30000)
    #[argh(option, default = "30_000")]
    timeout_ms: u64,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// list the topics
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list-topics")]
struct ListTopics {
    /// only topics whose name starts with this
    #[argh(option)]
    filter: Option<String>,
    /// a Java client .properties instead of the kafka section of the config
    #[argh(option)]
    config_file: Option<PathBuf>,
    /// deadline of each connection and request in milliseconds (default 30000)
    #[argh(option, default = "30_000")]
    timeout_ms: u64,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// partitions (leader, replicas, ISR, high watermark) and configs of one topic
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "describe-topic")]
struct DescribeTopic {
    /// the topic
    #[argh(positional)]
    name: String,
    /// a Java client .properties instead of the kafka section of the config
    #[argh(option)]
    config_file: Option<PathBuf>,
    /// deadline of each connection and request in milliseconds (default 30000)
    #[argh(option, default = "30_000")]
    timeout_ms: u64,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

pub async fn run(cmd: KafkaCmd, config: &Config) -> anyhow::Result<()> {
    match cmd.cmd {
        Sub::CreateTopics(c) => {
            let settings = client_settings(config, c.config_file.as_deref(), c.timeout_ms)?;
            create_topics(c, settings, config).await
        }
        Sub::ListTopics(c) => {
            let settings = client_settings(config, c.config_file.as_deref(), c.timeout_ms)?;
            list_topics(c, settings).await
        }
        Sub::DescribeTopic(c) => {
            let settings = client_settings(config, c.config_file.as_deref(), c.timeout_ms)?;
            describe_topic(c, settings).await
        }
        Sub::RegisterSchemas(c) => register_schemas(c, config).await,
    }
}

fn client_settings(
    config: &Config,
    file: Option<&Path>,
    timeout_ms: u64,
) -> anyhow::Result<ClientSettings> {
    let timeout = Duration::from_millis(timeout_ms.max(1));
    let Some(file) = file else {
        return Ok(ClientSettings::from_config(&config.kafka, timeout)?);
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let props = properties::parse(&text);
    Ok(properties::settings(
        &props,
        dir,
        &config.kafka.brokers,
        timeout,
    )?)
}

async fn create_topics(
    c: CreateTopics,
    settings: ClientSettings,
    config: &Config,
) -> anyhow::Result<()> {
    let plans = topics::plans(&config.kafka.config, config.kafka.compression);
    let mut admin = Admin::connect(settings).await?;
    let outcomes = create::ensure(&mut admin, &plans, c.dry_run).await?;
    if c.output == Output::Json {
        print_json(&outcomes)?;
    } else {
        let rows: Vec<Vec<String>> = outcomes
            .iter()
            .zip(&plans)
            .map(|(o, p)| {
                let differences: Vec<String> = o
                    .differences
                    .iter()
                    .map(|d| {
                        let actual = d.actual.as_deref().unwrap_or("not reported");
                        format!("{} {} (expected {})", d.setting, actual, d.expected)
                    })
                    .collect();
                vec![
                    o.topic.clone(),
                    p.partitions.to_string(),
                    p.replication_factor.to_string(),
                    action_text(o.action).to_owned(),
                    differences.join("; "),
                ]
            })
            .collect();
        print_table(
            &[
                "TOPIC",
                "PARTITIONS",
                "REPLICATION",
                "ACTION",
                "DIFFERENCES",
            ],
            &rows,
        );
    }
    let differing = outcomes
        .iter()
        .filter(|o| o.action == Action::Differs)
        .count();
    if differing > 0 {
        anyhow::bail!(
            "{differing} existing topic(s) differ from what create-topics would make (listed \
             above); Caracal never alters an existing topic: change them with kafka-configs / \
             kafka-topics --alter, or accept the difference"
        );
    }
    Ok(())
}

fn action_text(a: Action) -> &'static str {
    match a {
        Action::Created => "created",
        Action::WouldCreate => "would create (dry run)",
        Action::Exists => "exists",
        Action::Differs => "exists, differs",
    }
}

async fn list_topics(c: ListTopics, settings: ClientSettings) -> anyhow::Result<()> {
    let mut admin = Admin::connect(settings).await?;
    let mut found = admin.list_topics().await?;
    if let Some(prefix) = &c.filter {
        found.retain(|t| t.name.starts_with(prefix.as_str()));
    }
    if c.output == Output::Json {
        return print_json(&found);
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.partitions.to_string(),
                t.replication_factor.to_string(),
            ]
        })
        .collect();
    print_table(&["TOPIC", "PARTITIONS", "REPLICATION"], &rows);
    Ok(())
}

async fn describe_topic(c: DescribeTopic, settings: ClientSettings) -> anyhow::Result<()> {
    let mut admin = Admin::connect(settings).await?;
    let topic = admin.describe_topic(&c.name).await?;
    if c.output == Output::Json {
        return print_json(&topic);
    }
    let ids = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let rows: Vec<Vec<String>> = topic
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.leader.to_string(),
                ids(&p.replicas),
                ids(&p.isr),
                p.high_watermark.to_string(),
            ]
        })
        .collect();
    println!("topic: {}", topic.name);
    print_table(
        &["PARTITION", "LEADER", "REPLICAS", "ISR", "HIGH WATERMARK"],
        &rows,
    );
    println!();
    let configs: Vec<Vec<String>> = topic
        .configs
        .iter()
        .map(|(k, v)| vec![k.clone(), v.clone()])
        .collect();
    print_table(&["CONFIG", "VALUE"], &configs);
    Ok(())
}

async fn register_schemas(c: RegisterSchemas, config: &Config) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(c.timeout_ms.max(1));
    let registry = Registry::new(&config.kafka.schema_registry, timeout)?;
    let registered = registry.register_all().await?;
    if c.output == Output::Json {
        return print_json(&registered);
    }
    let rows: Vec<Vec<String>> = registered
        .iter()
        .map(|r| {
            vec![
                r.subject.clone(),
                r.id.to_string(),
                r.compatibility.to_owned(),
            ]
        })
        .collect();
    print_table(&["SUBJECT", "SCHEMA ID", "COMPATIBILITY"], &rows);
    Ok(())
}
