//! Typed, strict, layered configuration: defaults < YAML file < `CARACAL_*` env < `DB_*` env.
//! Owns the key vocabulary (the seeds' names), defaults, secrets and checks; it opens no sockets
//! and starts nothing. Every field's `///` comment is its reference documentation.
//!
//! Helm chart-only keys (`replicaCount`, `resources`, `autoscaling`, `persistence`,
//! `service.type`, `tls.secretName`, `postgresql.auth`, `redis.auth`, `*.enabled` of the
//! bundled databases, `signingKeySecretName`) are deployment settings, not binary config: the
//! loader rejects them like any unknown key, with a hint saying so.

mod audit_s3;
mod backends;
mod embedded;
mod env;
mod error;
mod gateway;
mod kafka_client;
mod load;
mod resolve;
mod schema;
mod secret;
mod services;
pub mod startup;
mod validate;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use audit_s3::AuditS3Config;
pub use backends::{
    Compression, KafkaConfig, KafkaProtocol, KafkaSecurity, KafkaSsl, KafkaTopicConfig, PgSsl,
    PgSslMode, PostgresConfig, RedisConfig, RedisTls, SaslMechanism, SchemaRegistry,
};
pub use embedded::{EmbeddedConfig, EmbeddedLogLimits, EmbeddedSpendLimits};
pub use error::{ConfigError, Origin};
pub use gateway::{
    AuthMode, GatewayConfig, GatewayService, GatewayTls, GatewayTuning, JwtConfig, Provider,
    ReplayProtection, Route, UnknownPrice,
};
pub use kafka_client::{KafkaConsumerConfig, KafkaProducerConfig};
pub use load::{load, load_with_env};
pub use secret::{mask_url, Secret, SecretUrl, MASK};
pub use services::{
    AdminConfig, AuditDestination, AuditLoggerConfig, ConsumersConfig, ExportFormat,
    LedgerWriterConfig, LogFormat, McpAdapterConfig, McpServer, MerkleConfig,
    MetricsAggregatorConfig, TelemetryConfig,
};

/// The whole application configuration. `Config::default()` is the embedded default: every
/// role in one process, SQLite under `./caracal-data`, no Kafka, no Redis, `api_key` auth.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The LLM gateway role.
    pub gateway: GatewayConfig,
    /// The MCP role.
    pub mcp_adapter: McpAdapterConfig,
    /// The admin API role.
    pub admin: AdminConfig,
    /// Metrics/health listener and log format.
    pub telemetry: TelemetryConfig,
    /// Directory of the embedded store, event log and local keys (default `./caracal-data`).
    pub data_dir: PathBuf,
    /// Postgres (unset: embedded SQLite).
    pub postgresql: PostgresConfig,
    /// Redis (unset: in-process spend cache).
    pub redis: RedisConfig,
    /// Kafka (unset: embedded event log).
    pub kafka: KafkaConfig,
    /// The consumer roles: ledger, metrics, audit.
    pub consumers: ConsumersConfig,
    /// Limits of the embedded default's spend cache and event log.
    pub embedded: EmbeddedConfig,
    /// The file the configuration was read from, if any.
    #[serde(skip)]
    loaded_from: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            gateway: GatewayConfig::default(),
            mcp_adapter: McpAdapterConfig::default(),
            admin: AdminConfig::default(),
            telemetry: TelemetryConfig::default(),
            data_dir: PathBuf::from("./caracal-data"),
            postgresql: PostgresConfig::default(),
            redis: RedisConfig::default(),
            kafka: KafkaConfig::default(),
            consumers: ConsumersConfig::default(),
            embedded: EmbeddedConfig::default(),
            loaded_from: None,
        }
    }
}

impl Config {
    /// The configuration file that was read, if any (for the startup log line).
    pub fn file(&self) -> Option<&Path> {
        self.loaded_from.as_deref()
    }

    /// Checks the cross-key rules (ports, limits, URLs, TLS coherence). `load` already calls
    /// it; call it on a config built in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::check(self).map_err(|p| ConfigError::invalid(p.key, p.message))
    }

    /// Address of the gateway listener.
    pub fn gateway_addr(&self) -> SocketAddr {
        SocketAddr::new(self.gateway.listen_ip(), self.gateway.service.https_port)
    }

    /// Address of the MCP listener.
    pub fn mcp_addr(&self) -> SocketAddr {
        let ip = self
            .mcp_adapter
            .listen_address
            .unwrap_or(self.gateway.listen_ip());
        SocketAddr::new(ip, self.mcp_adapter.port)
    }

    /// Address of the admin API listener.
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::new(self.admin.listen_address, self.admin.port)
    }

    /// Address of the process's one telemetry listener. `metrics_role_only`: the process runs
    /// only the metrics role (it then uses `consumers.metricsAggregator.metricsPort`, 9091).
    pub fn telemetry_addr(&self, metrics_role_only: bool) -> SocketAddr {
        let ip: IpAddr = self
            .telemetry
            .listen_address
            .unwrap_or(self.gateway.listen_ip());
        let port = match (self.telemetry.port, metrics_role_only) {
            (Some(port), _) => port,
            (None, true) => self.consumers.metrics_aggregator.metrics_port,
            (None, false) => self.gateway.service.metrics_port,
        };
        SocketAddr::new(ip, port)
    }

    /// Checks that every gateway route's credential was read. Only the gateway role needs
    /// them: it calls this before starting; admin commands and the other roles never do.
    pub fn gateway_credentials(&self) -> Result<(), ConfigError> {
        match self
            .gateway
            .routes
            .iter()
            .find_map(|r| r.unresolved.as_ref())
        {
            Some(unresolved) => Err(unresolved.error()),
            None => Ok(()),
        }
    }

    /// Checks that every MCP server's credential was read (the MCP role needs them).
    pub fn mcp_credentials(&self) -> Result<(), ConfigError> {
        match self
            .mcp_adapter
            .servers
            .iter()
            .find_map(|s| s.unresolved.as_ref())
        {
            Some(unresolved) => Err(unresolved.error()),
            None => Ok(()),
        }
    }

    pub(crate) fn set_loaded_from(&mut self, path: Option<PathBuf>) {
        self.loaded_from = path;
    }
}

/// The effective configuration as YAML, every secret masked as `***` and passwords inside
/// URLs masked (`postgres://u:***@h/db`). What `caracal config show` prints.
pub fn render_effective(config: &Config) -> String {
    let mut out = String::new();
    if let Some(file) = config.file() {
        out.push_str(&format!("# loaded from {}\n", file.display()));
    }
    match serde_yaml::to_string(config) {
        Ok(yaml) => out.push_str(&yaml),
        Err(e) => out.push_str(&format!("# cannot render the configuration: {e}\n")),
    }
    out
}
