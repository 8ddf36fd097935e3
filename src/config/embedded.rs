//! The `embedded` section: the limits of the embedded default's own adapters (the in-process
//! spend cache and its journal, the embedded event log). Types and defaults only; `roles` turns
//! them into the adapters' limits. Ignored once Redis or Kafka replace them.

use serde::{Deserialize, Serialize};

/// `embedded`: limits of the adapters used when no Redis or Kafka is configured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct EmbeddedConfig {
    /// The in-process spend cache (`<dataDir>/spend.journal`).
    pub spend_cache: EmbeddedSpendLimits,
    /// The embedded event log (`<dataDir>/events.db`).
    pub event_log: EmbeddedLogLimits,
}

/// `embedded.spendCache`: every bound of the in-process spend cache. Reaching a memory bound or a
/// full journal queue makes the gateway answer 503, never grow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct EmbeddedSpendLimits {
    /// Live holds (reservations in flight). Default 100000.
    pub holds_max: usize,
    /// Settled (policy, bucket) entries kept in memory over all policies. Default 1000000.
    pub buckets_max: usize,
    /// Active policies one hold may charge (a chain's policies together). Default 256.
    pub hold_policies_max: usize,
    /// Longest resource name a hold may carry, in bytes. Default 512.
    pub resource_bytes_max: usize,
    /// Operations waiting for their journal commit. Default 16384.
    pub journal_queue_max: usize,
    /// Queued operations committed in one journal record. Default 1024.
    pub journal_batch_max: usize,
    /// Journal growth in bytes after which it is rewritten as a snapshot. Default 64 MiB.
    pub journal_compact_bytes: u64,
    /// Longest wait for an operation's commit, in ms. Default 5000.
    pub commit_timeout_ms: u64,
    /// Longest wait at start for a previous owner of the journal to let go, in ms. Default 5000.
    pub open_busy_timeout_ms: u64,
    /// Replay-protection nonces remembered at once. Default 1000000.
    pub nonces_max: usize,
}

impl Default for EmbeddedSpendLimits {
    fn default() -> Self {
        EmbeddedSpendLimits {
            holds_max: 100_000,
            buckets_max: 1_000_000,
            hold_policies_max: 256,
            resource_bytes_max: 512,
            journal_queue_max: 16_384,
            journal_batch_max: 1_024,
            journal_compact_bytes: 64 << 20,
            commit_timeout_ms: 5_000,
            open_busy_timeout_ms: 5_000,
            nonces_max: 1_000_000,
        }
    }
}

/// `embedded.eventLog`: every bound of the embedded event log. A full queue makes the gateway
/// answer 503.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct EmbeddedLogLimits {
    /// Messages accepted but not yet committed. Default 100000.
    pub publish_queue_messages_max: usize,
    /// Messages committed per transaction. Default 2000.
    pub write_batch_messages_max: usize,
    /// Key + value + header bytes of one message. Default 1048588 (Kafka's `message.max.bytes`).
    pub message_bytes_max: usize,
    /// Most messages one fetch returns. Default 10000.
    pub fetch_messages_max: usize,
    /// How long a publish waits for queue room and its commit, in ms. Default 10000.
    pub publish_timeout_ms: u64,
    /// How long the writer waits for more messages before committing a partial batch, in µs
    /// (Kafka's `linger.ms`). Default 2000.
    pub write_linger_us: u64,
}

impl Default for EmbeddedLogLimits {
    fn default() -> Self {
        EmbeddedLogLimits {
            publish_queue_messages_max: 100_000,
            write_batch_messages_max: 2_000,
            message_bytes_max: 1_048_588,
            fetch_messages_max: 10_000,
            publish_timeout_ms: 10_000,
            write_linger_us: 2_000,
        }
    }
}
