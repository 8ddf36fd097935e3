//! `kafka.producer` and `kafka.consumer`: the Kafka client's tuning, named after the seeds' Java
//! client properties (`batch.size` → `batchSize`, `linger.ms` → `lingerMs`, ...). Values only;
//! the bus adapter applies them.

use serde::{Deserialize, Serialize};

/// `kafka.producer`: batching, the bounded buffer and the delivery deadline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct KafkaProducerConfig {
    /// `batch.size`: bytes of records sent to one partition in one produce request. Default
    /// 32768.
    pub batch_size: usize,
    /// `linger.ms`: how long a partition's batch waits for more records before it is sent.
    /// Default 10.
    pub linger_ms: u64,
    /// `buffer.memory`: bytes of records accepted but not yet acknowledged; past it a publish
    /// is refused (the gateway answers 503). Default 67108864.
    pub buffer_memory: usize,
    /// Records accepted but not yet acknowledged, whatever their size. Default 100000.
    pub buffer_messages: usize,
    /// `max.request.size`: the largest record (key + value + headers) accepted. Default
    /// 1048576.
    pub max_request_size: usize,
    /// `delivery.timeout.ms`: how long a publish may take, retries included, before it is
    /// reported failed. Default 30000.
    pub delivery_timeout_ms: u64,
    /// `request.timeout.ms`: how long one produce request may take. Default 10000.
    pub request_timeout_ms: u64,
    /// `retry.backoff.ms`: the first pause before a retry (doubling, capped at one second).
    /// Default 100.
    pub retry_backoff_ms: u64,
    /// How often the brokers are asked for metadata; while they do not answer, new events
    /// are refused (the gateway answers 503 and forwards nothing). Default 1000.
    pub broker_check_interval_ms: u64,
}

impl Default for KafkaProducerConfig {
    fn default() -> Self {
        KafkaProducerConfig {
            batch_size: 32_768,
            linger_ms: 10,
            buffer_memory: 67_108_864,
            buffer_messages: 100_000,
            max_request_size: 1_048_576,
            delivery_timeout_ms: 30_000,
            request_timeout_ms: 10_000,
            retry_backoff_ms: 100,
            broker_check_interval_ms: 1_000,
        }
    }
}

/// `kafka.consumer`: how a partition is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct KafkaConsumerConfig {
    /// `fetch.min.bytes`: the broker holds a fetch until this many bytes are there (or
    /// `fetchMaxWaitMs` passed). Default 1024.
    pub fetch_min_bytes: usize,
    /// `fetch.max.wait.ms`: the longest the broker holds a fetch. Default 500.
    pub fetch_max_wait_ms: u64,
    /// `max.poll.records`: most records one fetch hands the consumer. Default 500.
    pub max_poll_records: usize,
    /// `max.partition.fetch.bytes`: most bytes one read of a partition gathers (over one or
    /// more fetch requests). Default 1048576.
    pub max_partition_fetch_bytes: usize,
    /// Most bytes one fetch request asks the broker for (halved for a partition after a
    /// request timed out, grown back after quick answers). Not a Java client setting: a read
    /// of `maxPartitionFetchBytes` is made of requests of at most this size, so a broker too
    /// slow to serve it within the request timeout is asked for less. Default 1048576.
    pub fetch_request_max_bytes: usize,
}

impl Default for KafkaConsumerConfig {
    fn default() -> Self {
        KafkaConsumerConfig {
            fetch_min_bytes: 1_024,
            fetch_max_wait_ms: 500,
            max_poll_records: 500,
            max_partition_fetch_bytes: 1_048_576,
            fetch_request_max_bytes: 1_048_576,
        }
    }
}

impl KafkaProducerConfig {
    /// Every limit with its key, for the positive-value check.
    pub(crate) fn limits(&self) -> [(&'static str, u64); 9] {
        [
            ("kafka.producer.batchSize", self.batch_size as u64),
            ("kafka.producer.lingerMs", self.linger_ms.max(1)),
            ("kafka.producer.bufferMemory", self.buffer_memory as u64),
            ("kafka.producer.bufferMessages", self.buffer_messages as u64),
            (
                "kafka.producer.maxRequestSize",
                self.max_request_size as u64,
            ),
            ("kafka.producer.deliveryTimeoutMs", self.delivery_timeout_ms),
            ("kafka.producer.requestTimeoutMs", self.request_timeout_ms),
            ("kafka.producer.retryBackoffMs", self.retry_backoff_ms),
            (
                "kafka.producer.brokerCheckIntervalMs",
                self.broker_check_interval_ms,
            ),
        ]
    }
}

impl KafkaConsumerConfig {
    /// Every limit with its key, for the positive-value check.
    pub(crate) fn limits(&self) -> [(&'static str, u64); 5] {
        [
            ("kafka.consumer.fetchMinBytes", self.fetch_min_bytes as u64),
            ("kafka.consumer.fetchMaxWaitMs", self.fetch_max_wait_ms),
            (
                "kafka.consumer.maxPollRecords",
                self.max_poll_records as u64,
            ),
            (
                "kafka.consumer.maxPartitionFetchBytes",
                self.max_partition_fetch_bytes as u64,
            ),
            (
                "kafka.consumer.fetchRequestMaxBytes",
                self.fetch_request_max_bytes as u64,
            ),
        ]
    }
}
