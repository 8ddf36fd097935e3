//! Admin operations on a cluster: list and describe topics (partitions, leaders, replicas, ISR,
//! configs, high watermarks) and create the ones Caracal needs, reporting drift on the rest.
//! Opens one connection per broker it needs; never deletes or alters an existing topic.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DescribeConfigsRequest, ListOffsetsRequest, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use super::conn::{refused, BrokerConn};
use super::error::error_code;
use super::topics::{ExistingTopic, TopicPlan};
use super::{ClientSettings, KafkaError};

/// Kafka's `UNKNOWN_TOPIC_OR_PARTITION`.
const UNKNOWN_TOPIC: i16 = 3;
/// Kafka's `TOPIC_ALREADY_EXISTS`.
const TOPIC_EXISTS: i16 = 36;
/// DescribeConfigs resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;

/// One partition of a described topic.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub high_watermark: i64,
}

/// A topic as `describe-topic` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
    pub configs: BTreeMap<String, String>,
}

/// A topic as `list-topics` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
}

/// Connections to a cluster, opened as needed.
pub struct Admin {
    settings: ClientSettings,
    bootstrap: BrokerConn,
    /// Broker id → `host:port` from the last Metadata answer.
    brokers: HashMap<i32, String>,
    others: HashMap<i32, BrokerConn>,
    controller: i32,
}

impl Admin {
    /// Connects to the first bootstrap broker that answers (each tried in order).
    pub async fn connect(settings: ClientSettings) -> Result<Self, KafkaError> {
        let mut last = KafkaError::Settings("no Kafka brokers configured".into());
        for broker in &settings.brokers {
            match BrokerConn::open(broker, &settings).await {
                Ok(bootstrap) => {
                    return Ok(Admin {
                        settings,
                        bootstrap,
                        brokers: HashMap::new(),
                        others: HashMap::new(),
                        controller: -1,
                    })
                }
                // A refused login is not a reason to try the next broker.
                Err(e @ KafkaError::Auth { .. }) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Metadata of `topics` (all topics when `None`); remembers the brokers and controller.
    async fn metadata(&mut self, topics: Option<&[&str]>) -> Result<MetadataResponse, KafkaError> {
        let topics = topics.map(|names| {
            names
                .iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                .collect()
        });
        let request = MetadataRequest::default()
            .with_topics(topics)
            .with_allow_auto_topic_creation(false);
        let answer = self.bootstrap.send(&request, 12).await?;
        self.brokers = answer
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        self.controller = answer.controller_id.0;
        Ok(answer)
    }

    /// The connection to broker `id` (the bootstrap connection when it is that broker or the
    /// broker is unknown).
    async fn conn(&mut self, id: i32) -> Result<&mut BrokerConn, KafkaError> {
        let Some(address) = self.brokers.get(&id).cloned() else {
            return Ok(&mut self.bootstrap);
        };
        if address == self.bootstrap.broker() {
            return Ok(&mut self.bootstrap);
        }
        if !self.others.contains_key(&id) {
            let conn = BrokerConn::open(&address, &self.settings).await?;
            self.others.insert(id, conn);
        }
        match self.others.get_mut(&id) {
            Some(conn) => Ok(conn),
            None => Ok(&mut self.bootstrap),
        }
    }

    /// Every topic, by name.
    pub async fn list_topics(&mut self) -> Result<Vec<TopicSummary>, KafkaError> {
        let answer = self.metadata(None).await?;
        let mut topics: Vec<TopicSummary> = answer
            .topics
            .iter()
            .filter(|t| !t.is_internal)
            .filter_map(|t| {
                let name = t.name.as_ref()?.0.as_str().to_owned();
                Some(TopicSummary {
                    name,
                    partitions: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
                    replication_factor: replication_factor(&t.partitions),
                })
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Partitions (leader, replicas, ISR, high watermark) and configs of one topic.
    pub async fn describe_topic(&mut self, name: &str) -> Result<TopicDescription, KafkaError> {
        let answer = self.metadata(Some(&[name][..])).await?;
        let broker = self.bootstrap.broker().to_owned();
        let topic =
            answer.topics.into_iter().next().ok_or_else(|| {
                refused(&broker, "Metadata", format!("no answer for topic {name}"))
            })?;
        if topic.error_code == UNKNOWN_TOPIC {
            return Err(refused(
                &broker,
                "Metadata",
                format!("topic {name} does not exist"),
            ));
        }
        if let Some(cause) = error_code(topic.error_code) {
            return Err(refused(
                &broker,
                "Metadata",
                format!("topic {name}: {cause}"),
            ));
        }
        let mut partitions: Vec<PartitionInfo> = topic
            .partitions
            .iter()
            .map(|p| PartitionInfo {
                partition: p.partition_index,
                leader: p.leader_id.0,
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                high_watermark: -1,
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        self.fill_high_watermarks(name, &mut partitions).await?;
        let configs = self
            .topic_configs(&[name])
            .await?
            .remove(name)
            .unwrap_or_default();
        Ok(TopicDescription {
            name: name.to_owned(),
            partitions,
            configs,
        })
    }

    /// The latest offset of each partition, asked of its leader.
    async fn fill_high_watermarks(
        &mut self,
        topic: &str,
        partitions: &mut [PartitionInfo],
    ) -> Result<(), KafkaError> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in partitions.iter() {
            by_leader.entry(p.leader).or_default().push(p.partition);
        }
        for (leader, ids) in by_leader {
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        ids.iter()
                            .map(|&i| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(i)
                                    .with_current_leader_epoch(-1)
                                    .with_timestamp(-1)
                            })
                            .collect(),
                    )]);
            let conn = self.conn(leader).await?;
            let answer = conn.send(&request, 7).await?;
            for t in answer.topics {
                for r in t.partitions {
                    let found = partitions
                        .iter_mut()
                        .find(|p| p.partition == r.partition_index);
                    if let (Some(p), None) = (found, error_code(r.error_code)) {
                        p.high_watermark = r.offset;
                    }
                }
            }
        }
        Ok(())
    }

    /// The configs of `topics` as the broker reports them, by topic.
    pub async fn topic_configs(
        &mut self,
        topics: &[&str],
    ) -> Result<HashMap<String, BTreeMap<String, String>>, KafkaError> {
        let resources = topics
            .iter()
            .map(|t| {
                DescribeConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(StrBytes::from_string((*t).to_owned()))
                    .with_configuration_keys(None)
            })
            .collect();
        let request = DescribeConfigsRequest::default().with_resources(resources);
        let answer = self.bootstrap.send(&request, 4).await?;
        let broker = self.bootstrap.broker().to_owned();
        let mut out = HashMap::new();
        for result in answer.results {
            let name = result.resource_name.as_str().to_owned();
            if let Some(cause) = error_code(result.error_code) {
                let message = result.error_message.as_ref().map_or("", |m| m.as_str());
                let cause = format!("configs of {name}: {cause} {message}");
                return Err(refused(
                    &broker,
                    "DescribeConfigs",
                    cause.trim_end().to_owned(),
                ));
            }
            let configs = result
                .configs
                .iter()
                .filter_map(|c| {
                    Some((
                        c.name.as_str().to_owned(),
                        c.value.as_ref()?.as_str().to_owned(),
                    ))
                })
                .collect();
            out.insert(name, configs);
        }
        Ok(out)
    }

    /// What the broker says about each of `names` that exists (partitions, replication, configs).
    pub async fn existing(
        &mut self,
        names: &[&str],
    ) -> Result<BTreeMap<String, ExistingTopic>, KafkaError> {
        let answer = self.metadata(Some(names)).await?;
        let mut found = BTreeMap::new();
        for t in &answer.topics {
            let Some(name) = t.name.as_ref().map(|n| n.0.as_str().to_owned()) else {
                continue;
            };
            if t.error_code == UNKNOWN_TOPIC {
                continue;
            }
            if let Some(cause) = error_code(t.error_code) {
                let broker = self.bootstrap.broker().to_owned();
                return Err(refused(
                    &broker,
                    "Metadata",
                    format!("topic {name}: {cause}"),
                ));
            }
            let existing = ExistingTopic {
                partitions: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
                replication_factor: replication_factor(&t.partitions),
                configs: BTreeMap::new(),
            };
            found.insert(name, existing);
        }
        if !found.is_empty() {
            let names: Vec<&str> = found.keys().map(String::as_str).collect();
            let mut configs = self.topic_configs(&names).await?;
            for (name, topic) in found.iter_mut() {
                topic.configs = configs.remove(name).unwrap_or_default();
            }
        }
        Ok(found)
    }

    /// Creates `plans` on the controller. A topic that appeared meanwhile is not an error.
    pub async fn create_topics(&mut self, plans: &[TopicPlan]) -> Result<(), KafkaError> {
        if plans.is_empty() {
            return Ok(());
        }
        if self.brokers.is_empty() {
            self.metadata(Some(&[][..])).await?;
        }
        let timeout_ms = i32::try_from(self.settings.timeout.as_millis()).unwrap_or(i32::MAX);
        let request = CreateTopicsRequest::default()
            .with_topics(plans.iter().map(creatable).collect())
            .with_timeout_ms(timeout_ms);
        let controller = self.controller;
        let conn = self.conn(controller).await?;
        let broker = conn.broker().to_owned();
        let answer = conn.send(&request, 5).await?;
        let failures: Vec<String> = answer
            .topics
            .iter()
            .filter(|t| t.error_code != TOPIC_EXISTS)
            .filter_map(|t| {
                let cause = error_code(t.error_code)?;
                let message = t.error_message.as_ref().map_or("", |m| m.as_str());
                Some(
                    format!("{}: {cause} {message}", t.name.0.as_str())
                        .trim_end()
                        .to_owned(),
                )
            })
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(refused(&broker, "CreateTopics", failures.join("; ")))
        }
    }
}

fn creatable(plan: &TopicPlan) -> CreatableTopic {
    let configs = plan
        .configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_value(Some(StrBytes::from_string(v.clone())))
        })
        .collect();
    CreatableTopic::default()
        .with_name(topic_name(&plan.name))
        .with_num_partitions(plan.partitions)
        .with_replication_factor(plan.replication_factor)
        .with_configs(configs)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// The replication factor of a topic: the replica count of its first partition.
fn replication_factor(
    partitions: &[kafka_protocol::messages::metadata_response::MetadataResponsePartition],
) -> i16 {
    let replicas = partitions.first().map_or(0, |p| p.replica_nodes.len());
    i16::try_from(replicas).unwrap_or(i16::MAX)
}
