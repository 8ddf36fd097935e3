//! The `postgresql`, `redis` and `kafka` sections: the distributed engines, each unset by default
//! (the embedded default uses SQLite, an in-process cache and an embedded log). Types only.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::secret::{Secret, SecretUrl};

/// `postgresql`: the system of record. Configured by `url` or by parts (`host`, ...; the
/// seeds' `DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD`), not both. The chart's
/// `postgresql.enabled`, `auth.*`, `persistence` and `resources` are not application config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PostgresConfig {
    /// Connection URL (`postgres://user:pw@host:5432/db?sslmode=require`); a secret since it may
    /// hold a password. `password`, when set, replaces the URL's password.
    pub url: Option<SecretUrl>,
    /// File holding the connection URL (exclusive with `url`).
    pub url_file: Option<PathBuf>,
    /// Server host name or address (env `DB_HOST`). Setting it (or `url`) selects Postgres
    /// over the embedded SQLite store.
    pub host: Option<String>,
    /// Server port (env `DB_PORT`, default 5432).
    pub port: u16,
    /// Database name (env `DB_NAME`, default `caracal`).
    pub database: String,
    /// User name (env `DB_USER`, default `caracal`).
    pub username: String,
    /// Password (env `DB_PASSWORD`). Passed as a connection parameter, never pasted into a URL,
    /// so `/`, `+`, `=` need no escaping.
    pub password: Option<Secret>,
    /// File holding the password (env `DB_PASSWORD_FILE`; exclusive with `password`).
    pub password_file: Option<PathBuf>,
    /// TLS to the server.
    pub ssl: PgSsl,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            host: None,
            port: 5432,
            database: "caracal".into(),
            username: "caracal".into(),
            password: None,
            password_file: None,
            ssl: PgSsl::default(),
        }
    }
}

impl PostgresConfig {
    /// Whether Postgres is configured (`url` or `host` set); otherwise the embedded store is used.
    pub fn is_configured(&self) -> bool {
        self.url.is_some() || self.host.is_some()
    }
}

/// libpq's `sslmode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PgSslMode {
    /// No TLS.
    Disable,
    /// TLS, server certificate not verified.
    Require,
    /// TLS, server certificate verified against `rootCert`.
    VerifyCa,
    /// TLS, certificate verified and its name matched to the host.
    VerifyFull,
}

/// `postgresql.ssl`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PgSsl {
    /// Use TLS. Unset: on iff `mode` is set to something other than `disable`.
    pub enabled: Option<bool>,
    /// `disable`, `require`, `verify-ca` or `verify-full`. Unset: `require` when enabled.
    pub mode: Option<PgSslMode>,
    /// PEM client certificate, for client-certificate authentication.
    pub cert: Option<PathBuf>,
    /// PEM client private key (with `cert`).
    pub key: Option<PathBuf>,
    /// PEM CA bundle that verifies the server (`verify-ca`, `verify-full`).
    pub root_cert: Option<PathBuf>,
}

impl PgSsl {
    /// The sslmode to use, from `enabled` and `mode`.
    pub fn effective_mode(&self) -> PgSslMode {
        match (self.enabled, self.mode) {
            (Some(false), _) => PgSslMode::Disable,
            (_, Some(mode)) => mode,
            (Some(true), None) => PgSslMode::Require,
            (None, None) => PgSslMode::Disable,
        }
    }
}

/// `redis`: the shared spend cache. Configured by `url` or `host`, not both. The chart's
/// `redis.enabled`, `auth.password`, `persistence` and `resources` are not application config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RedisConfig {
    /// Connection URL (`redis://:pw@host:6379/0`, `rediss://` for TLS); a secret since it may
    /// hold a password. `password`, when set, replaces the URL's password.
    pub url: Option<SecretUrl>,
    /// File holding the connection URL (exclusive with `url`).
    pub url_file: Option<PathBuf>,
    /// Server host name or address. Setting it (or `url`) selects Redis over the in-process cache.
    pub host: Option<String>,
    /// Server port (default 6379).
    pub port: u16,
    /// Password (env `REDIS_PASSWORD`).
    pub password: Option<Secret>,
    /// File holding the password (env `REDIS_PASSWORD_FILE`; exclusive with `password`).
    pub password_file: Option<PathBuf>,
    /// TLS to the server.
    pub tls: RedisTls,
    /// `host`:`port` is a node of a Redis Cluster; the other nodes are discovered from it.
    pub cluster: bool,
    /// Longest wait for one command or script, in ms, before the gateway fails closed (503).
    pub command_timeout_ms: u64,
    /// Longest wait to connect at start, in ms.
    pub connect_timeout_ms: u64,
    /// Connections each process keeps to Redis (commands are pipelined over each).
    pub connections: usize,
    /// Sorted sets the hold expiry index is spread over (every sweeper reads all of them; more
    /// shards spread a Cluster's load). Changing it orphans the index of live holds: set it once.
    pub expiry_shards: u32,
    /// How often each gateway reads the epoch key that finds a Redis which lost its data, in ms.
    pub epoch_check_ms: u64,
    /// After Redis lost its data, how long every gateway waits (503) before it reserves again,
    /// so every live replica has re-asserted its holds, in ms. Keep it above
    /// `epochCheckMs + commandTimeoutMs`.
    pub rebuild_grace_ms: u64,
    /// How long a settled hold is remembered, so a re-assertion after a data loss never brings
    /// it back, in ms.
    pub settled_tombstone_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            host: None,
            port: 6379,
            password: None,
            password_file: None,
            tls: RedisTls::default(),
            cluster: false,
            command_timeout_ms: 1_000,
            connect_timeout_ms: 5_000,
            connections: 4,
            expiry_shards: 16,
            epoch_check_ms: 250,
            rebuild_grace_ms: 2_000,
            settled_tombstone_ms: 60_000,
        }
    }
}

impl RedisConfig {
    /// Whether Redis is configured (`url` or `host` set); otherwise the in-process cache is used.
    pub fn is_configured(&self) -> bool {
        self.url.is_some() || self.host.is_some()
    }

    /// Whether to use TLS: `tls.enabled`, or a `rediss://` URL.
    pub fn tls_enabled(&self) -> bool {
        self.tls.enabled
            || self
                .url
                .as_ref()
                .is_some_and(|u| u.expose().starts_with("rediss://"))
    }
}

/// `redis.tls`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RedisTls {
    /// Use TLS (default false; a `rediss://` URL turns it on too).
    pub enabled: bool,
    /// PEM client certificate.
    pub cert_file: Option<PathBuf>,
    /// PEM client private key (with `certFile`).
    pub key_file: Option<PathBuf>,
    /// PEM CA bundle that verifies the server.
    pub ca_cert_file: Option<PathBuf>,
}

/// Kafka `security.protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KafkaProtocol {
    /// No TLS, no SASL (default).
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl KafkaProtocol {
    /// Whether the protocol authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, KafkaProtocol::SaslPlaintext | KafkaProtocol::SaslSsl)
    }

    /// Whether the protocol uses TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, KafkaProtocol::Ssl | KafkaProtocol::SaslSsl)
    }
}

/// Kafka `sasl.mechanism`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    /// SASL PLAIN (only over TLS in production).
    #[serde(rename = "PLAIN")]
    Plain,
    /// SCRAM-SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM-SHA-512 (the seeds' choice).
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// Producer compression codec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    #[serde(rename = "none")]
    Uncompressed,
    /// gzip.
    Gzip,
    /// snappy (default, as in the seeds).
    #[default]
    Snappy,
    /// lz4.
    Lz4,
    /// zstd.
    Zstd,
}

/// `kafka`: the event bus. Unset `brokers` means the embedded event log. The chart's
/// `kafka.enabled`, `replicaCount`, `persistence` and `resources` are not application config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct KafkaConfig {
    /// Bootstrap brokers as `host:port`. From env: a comma-separated list.
    pub brokers: Vec<String>,
    /// Authentication.
    pub security: KafkaSecurity,
    /// TLS files.
    pub ssl: KafkaSsl,
    /// Confluent Schema Registry; when `url` is set, values use the Confluent wire format.
    pub schema_registry: SchemaRegistry,
    /// Topic settings used by `kafka create-topics`.
    pub config: KafkaTopicConfig,
    /// Producer compression: `none`, `gzip`, `snappy` (default), `lz4` or `zstd`.
    pub compression: Compression,
    /// Producer tuning (`batch.size`, `linger.ms`, `buffer.memory`, ...).
    pub producer: super::KafkaProducerConfig,
    /// Consumer tuning (`fetch.min.bytes`, `fetch.max.wait.ms`, `max.poll.records`, ...).
    pub consumer: super::KafkaConsumerConfig,
}

impl KafkaConfig {
    /// Whether Kafka is configured; otherwise the embedded event log is used.
    pub fn is_configured(&self) -> bool {
        !self.brokers.is_empty()
    }
}

/// `kafka.security`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct KafkaSecurity {
    /// `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub protocol: KafkaProtocol,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; required with a `SASL_*` protocol.
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name; required with a `SASL_*` protocol.
    pub sasl_username: Option<String>,
    /// SASL password; required (or `saslPasswordFile`) with a `SASL_*` protocol.
    pub sasl_password: Option<Secret>,
    /// File holding the SASL password (exclusive with `saslPassword`).
    pub sasl_password_file: Option<PathBuf>,
}

/// `kafka.ssl`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct KafkaSsl {
    /// PEM CA bundle that verifies the brokers. Unset: the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (mutual TLS).
    pub cert_file: Option<PathBuf>,
    /// PEM client private key (with `certFile`).
    pub key_file: Option<PathBuf>,
    /// Java truststore path, accepted as the seeds write it. Caracal's client reads PEM: give
    /// the same CA as `caFile` (`keytool -exportcert -rfc`).
    pub truststore_location: Option<PathBuf>,
    /// Java keystore path, accepted as the seeds write it. Caracal's client reads PEM: give the
    /// same certificate and key as `certFile` and `keyFile`.
    pub keystore_location: Option<PathBuf>,
}

/// `kafka.schemaRegistry`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct SchemaRegistry {
    /// Base URL (`http://schema-registry:8081`). Unset: Avro single-object encoding.
    pub url: Option<String>,
    /// Basic-auth user name.
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<Secret>,
    /// File holding the basic-auth password (exclusive with `password`).
    pub password_file: Option<PathBuf>,
    /// Deadline of each registry request made when a role starts (default 10 000 ms).
    pub timeout_ms: u64,
}

impl Default for SchemaRegistry {
    fn default() -> Self {
        SchemaRegistry {
            url: None,
            username: None,
            password: None,
            password_file: None,
            timeout_ms: 10_000,
        }
    }
}

/// `kafka.config`: topic settings for `kafka create-topics`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct KafkaTopicConfig {
    /// Replication factor of created topics (default 3).
    pub default_replication_factor: u16,
    /// `min.insync.replicas` of created topics (default 2; at most the replication factor).
    pub min_insync_replicas: u16,
}

impl Default for KafkaTopicConfig {
    fn default() -> Self {
        Self {
            default_replication_factor: 3,
            min_insync_replicas: 2,
        }
    }
}
