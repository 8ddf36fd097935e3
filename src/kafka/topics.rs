//! The topics Caracal needs as `kafka create-topics` makes them (the seeds' five, with their
//! partition counts, replication, min ISR, 30-day retention and compression), and how an
//! existing topic differs from that. Pure: no broker here.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{Compression, KafkaTopicConfig};
use crate::core::events::TOPICS;

/// Retention of every topic: 30 days, as the seeds (`log.retention.hours: 720`).
pub const RETENTION_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// A topic as Caracal wants it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopicPlan {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Topic configs sent with CreateTopics and compared on existing topics.
    pub configs: BTreeMap<String, String>,
}

/// What the broker says about an existing topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExistingTopic {
    pub partitions: i32,
    pub replication_factor: i16,
    /// Every config the broker returned (a missing key was not reported).
    pub configs: BTreeMap<String, String>,
}

/// One setting of an existing topic that is not what Caracal would create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub setting: String,
    pub expected: String,
    /// `None`: the broker did not report this setting.
    pub actual: Option<String>,
}

/// The topic config value of a compression codec.
pub fn compression_type(c: Compression) -> &'static str {
    match c {
        Compression::Uncompressed => "uncompressed",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    }
}

/// The five topics with the configured replication, min ISR and compression.
pub fn plans(t: &KafkaTopicConfig, compression: Compression) -> Vec<TopicPlan> {
    let replication_factor = i16::try_from(t.default_replication_factor).unwrap_or(i16::MAX);
    TOPICS
        .iter()
        .map(|topic| TopicPlan {
            name: topic.name.to_owned(),
            partitions: topic.partitions,
            replication_factor,
            configs: BTreeMap::from([
                ("retention.ms".to_owned(), RETENTION_MS.to_string()),
                (
                    "min.insync.replicas".to_owned(),
                    t.min_insync_replicas.to_string(),
                ),
                (
                    "compression.type".to_owned(),
                    compression_type(compression).to_owned(),
                ),
            ]),
        })
        .collect()
}

/// How `have` differs from `want`: partitions, replication factor, then each config.
pub fn differences(want: &TopicPlan, have: &ExistingTopic) -> Vec<Difference> {
    let mut out = Vec::new();
    if have.partitions != want.partitions {
        out.push(Difference {
            setting: "partitions".into(),
            expected: want.partitions.to_string(),
            actual: Some(have.partitions.to_string()),
        });
    }
    if have.replication_factor != want.replication_factor {
        out.push(Difference {
            setting: "replication factor".into(),
            expected: want.replication_factor.to_string(),
            actual: Some(have.replication_factor.to_string()),
        });
    }
    for (key, value) in &want.configs {
        let actual = have.configs.get(key);
        if actual != Some(value) {
            out.push(Difference {
                setting: key.clone(),
                expected: value.clone(),
                actual: actual.cloned(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_five_topics_of_the_seeds_with_their_partitions_and_configs() {
        let plans = plans(&KafkaTopicConfig::default(), Compression::Snappy);
        let shape: Vec<(&str, i32, i16)> = plans
            .iter()
            .map(|p| (p.name.as_str(), p.partitions, p.replication_factor))
            .collect();
        assert_eq!(
            shape,
            [
                ("caracal.metering.events", 10, 3),
                ("caracal.policy.decisions", 5, 3),
                ("caracal.agent.lifecycle", 3, 3),
                ("caracal.policy.changes", 3, 3),
                ("caracal.dlq", 3, 3),
            ]
        );
        let configs = &plans[0].configs;
        assert_eq!(configs["retention.ms"], "2592000000");
        assert_eq!(configs["min.insync.replicas"], "2");
        assert_eq!(configs["compression.type"], "snappy");
    }

    #[test]
    fn differences_name_each_setting_that_drifted() {
        let want = &plans(&KafkaTopicConfig::default(), Compression::Lz4)[0];
        let mut have = ExistingTopic {
            partitions: 10,
            replication_factor: 3,
            configs: want.configs.clone(),
        };
        assert!(differences(want, &have).is_empty());
        have.partitions = 6;
        have.configs.insert("retention.ms".into(), "1000".into());
        have.configs.remove("compression.type");
        let found = differences(want, &have);
        let settings: Vec<&str> = found.iter().map(|d| d.setting.as_str()).collect();
        assert_eq!(settings, ["partitions", "compression.type", "retention.ms"]);
        assert_eq!(found[0].actual.as_deref(), Some("6"));
        assert_eq!(found[1].actual, None);
    }
}
