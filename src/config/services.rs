//! The `mcpAdapter`, `admin`, `telemetry` and `consumers` sections: the other roles' settings.
//! Types, defaults and derived values only; loading is in `load.rs`, checks in `validate.rs`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::audit_s3::{bucket_and_prefix, AuditS3Config};
use super::resolve::Unresolved;
use super::secret::Secret;

/// `mcpAdapter`: the MCP role (Streamable HTTP JSON-RPC on `/mcp`). The chart's `autoscaling`,
/// `replicaCount` and `resources` are not application config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct McpAdapterConfig {
    /// Port of the MCP listener (default 8080).
    pub port: u16,
    /// IP address the MCP listener binds. Unset: the gateway's listen address (see
    /// `gateway.listenAddress`).
    pub listen_address: Option<IpAddr>,
    /// Upstream MCP servers whose tools are offered (as `server/tool`) and metered.
    pub servers: Vec<McpServer>,
    /// Browser origins allowed to call the adapter (exact `scheme://host[:port]`). A request
    /// carrying any other `Origin` header is refused (DNS-rebinding protection); requests without
    /// one (SDKs, agents) are not affected. Default: none.
    pub allowed_origins: Vec<String>,
    /// Largest request body accepted, in bytes (default 4 MiB).
    pub body_bytes_max: usize,
    /// Largest upstream response read whole (a JSON answer, a `tools/list` being filtered), in
    /// bytes (default 16 MiB).
    pub response_bytes_max: usize,
    /// Largest number of bytes one response stream may carry before the adapter ends it
    /// (default 64 MiB; an SSE client reconnects).
    pub stream_bytes_max: u64,
    /// Largest single SSE event of a `tools/call` stream, in bytes (default 1 MiB).
    pub sse_event_bytes_max: usize,
    /// Seconds to wait for the upstream's response headers, and between two chunks of a
    /// response (default 300: tools can be slow; never a cap on a healthy stream's length).
    pub request_timeout_seconds: u64,
    /// Requests in flight at most; over it: 503 with `Retry-After` (default 1000).
    pub max_concurrent_requests: u64,
    /// File holding the key (at least 32 bytes) that signs `Mcp-Session-Id` values. Every
    /// replica must use the same key so a session continues through any of them. Unset: a key
    /// kept in `dataDir/mcp-session-key` (made on first start, mode 0600).
    pub session_key_file: Option<PathBuf>,
}

impl Default for McpAdapterConfig {
    fn default() -> Self {
        Self {
            port: 8080,
            listen_address: None,
            servers: Vec::new(),
            allowed_origins: Vec::new(),
            body_bytes_max: 4 * 1024 * 1024,
            response_bytes_max: 16 * 1024 * 1024,
            stream_bytes_max: 64 * 1024 * 1024,
            sse_event_bytes_max: 1024 * 1024,
            request_timeout_seconds: 300,
            max_concurrent_requests: 1000,
            session_key_file: None,
        }
    }
}

/// One entry of `mcpAdapter.servers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpServer {
    /// Server name: the `server` of `mcp:server/tool` in prices and allowlists. Unique.
    pub name: String,
    /// Streamable HTTP endpoint of the server, `http://` or `https://`.
    pub url: String,
    /// File holding a bearer credential sent to the server (exclusive with `credentialEnv`).
    pub credential_file: Option<PathBuf>,
    /// Name of the environment variable holding that credential. Only the MCP role needs it
    /// set (it refuses to start without it).
    pub credential_env: Option<String>,
    /// Header that carries the credential, verbatim (e.g. `X-API-Key`). Unset: sent as
    /// `Authorization: Bearer <credential>`.
    pub credential_header: Option<String>,
    /// The credential read from `credentialFile` or `credentialEnv` at load time.
    #[serde(skip)]
    pub(crate) credential: Option<Secret>,
    /// Why the credential could not be read at load time, if it could not.
    #[serde(skip)]
    pub(crate) unresolved: Option<Unresolved>,
}

impl McpServer {
    /// The bearer credential for the server, read at load time.
    pub fn credential(&self) -> Option<&Secret> {
        self.credential.as_ref()
    }

    /// A server with every key present: the template for checking list items' keys.
    pub(crate) fn template() -> Self {
        Self {
            name: "x".into(),
            url: "https://example.com".into(),
            credential_file: None,
            credential_env: None,
            credential_header: None,
            credential: None,
            unresolved: None,
        }
    }
}

/// `admin`: the admin HTTP API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct AdminConfig {
    /// Port of the admin API (default 8081; the seeds' local Schema Registry also uses 8081).
    pub port: u16,
    /// IP address the admin API binds (default `127.0.0.1`). A non-loopback address requires
    /// `token` or `tokenFile`.
    pub listen_address: IpAddr,
    /// Bearer token required by the admin API.
    pub token: Option<Secret>,
    /// File holding the bearer token (exclusive with `token`).
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            port: 8081,
            listen_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            token: None,
            token_file: None,
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line (containers).
    Json,
}

/// `telemetry`: the one `/metrics` `/health` `/ready` listener per process, and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct TelemetryConfig {
    /// Port of the telemetry listener. Unset: `gateway.service.metricsPort` (9090), or
    /// `consumers.metricsAggregator.metricsPort` (9091) in a process running only the metrics role.
    pub port: Option<u16>,
    /// IP address the telemetry listener binds. Unset: the gateway's listen address.
    pub listen_address: Option<IpAddr>,
    /// `text` (default) or `json`.
    pub log_format: LogFormat,
}

/// `consumers`: the ledger, metrics and audit roles. The chart's `replicaCount` is not
/// application config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsumersConfig {
    /// The ledger role.
    pub ledger_writer: LedgerWriterConfig,
    /// The metrics role.
    pub metrics_aggregator: MetricsAggregatorConfig,
    /// The audit role. The seeds' top-level `auditLogger` block is read into this one.
    pub audit_logger: AuditLoggerConfig,
    /// Seconds a consumer replica's partition lease lasts unrenewed (default 10): a crashed
    /// replica's partitions move to another after at most this long.
    pub lease_ttl_seconds: u64,
    /// How many owned partitions a consumer replica reads and commits at the same time
    /// (default 4). More overlap the log, the store and the CPU; the embedded store still
    /// commits one transaction at a time.
    pub partitions_in_flight: u64,
}

impl Default for ConsumersConfig {
    fn default() -> Self {
        Self {
            ledger_writer: LedgerWriterConfig::default(),
            metrics_aggregator: MetricsAggregatorConfig::default(),
            audit_logger: AuditLoggerConfig::default(),
            lease_ttl_seconds: 10,
            partitions_in_flight: 4,
        }
    }
}

/// `consumers.ledgerWriter`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LedgerWriterConfig {
    /// Whether `--role all` starts the ledger role (default true); `--role ledger` always does.
    pub enabled: bool,
    /// Merkle batching and signing.
    pub merkle: MerkleConfig,
}

impl Default for LedgerWriterConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            merkle: MerkleConfig::default(),
        }
    }
}

/// `consumers.ledgerWriter.merkle`. The chart's `signingKeySecretName` is not application
/// config: the chart mounts the secret and renders `signingKeyFile`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct MerkleConfig {
    /// Events per sealed batch (default 1000).
    pub batch_size_limit: u32,
    /// Seconds after which a non-empty batch is sealed even if not full (default 300).
    pub batch_timeout_seconds: u64,
    /// PEM ECDSA P-256 private key (SEC1 or PKCS#8) that signs batch headers. Unset: the
    /// ledger role keeps a key under `dataDir` (embedded default).
    pub signing_key_file: Option<PathBuf>,
    /// Seconds between re-verifications of recent batches by the ledger role (default 60).
    pub reverify_interval_seconds: u64,
    /// How many of each partition's newest batches a re-verification covers (default 16).
    pub reverify_batches: u32,
}

impl Default for MerkleConfig {
    fn default() -> Self {
        Self {
            batch_size_limit: 1000,
            batch_timeout_seconds: 300,
            signing_key_file: None,
            reverify_interval_seconds: 60,
            reverify_batches: 16,
        }
    }
}

/// `consumers.metricsAggregator`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsAggregatorConfig {
    /// Whether `--role all` starts the metrics role (default true); `--role metrics` always does.
    pub enabled: bool,
    /// Telemetry port of a process that runs only the metrics role (default 9091).
    pub metrics_port: u16,
    /// Seconds an event id is remembered to drop a redelivered copy of the event (default
    /// 86400). A copy arriving later than this after the first would be counted again.
    pub dedupe_window_seconds: u64,
    /// Hours an hourly aggregate is kept after its last write (default 192: a rolling weekly
    /// window needs 168).
    pub hourly_retention_hours: u64,
    /// Days a daily, weekly or monthly aggregate is kept after its last write (default 400).
    pub daily_retention_days: u64,
    /// Seconds between refreshes of the policy gauges (default 15).
    pub gauge_refresh_seconds: u64,
    /// Most active policies given spend/limit gauges (default 10000; two series each).
    pub policy_gauges_max: u64,
    /// Most events read and applied per partition in one batch, one script each (default 500).
    pub batch_events_max: u64,
}

impl Default for MetricsAggregatorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            metrics_port: 9091,
            dedupe_window_seconds: 86_400,
            hourly_retention_hours: 192,
            daily_retention_days: 400,
            gauge_refresh_seconds: 15,
            policy_gauges_max: 10_000,
            batch_events_max: 500,
        }
    }
}

/// Audit log export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One JSON object per record.
    Json,
    /// RFC 5424 syslog lines.
    Syslog,
}

/// `consumers.auditLogger` (also accepted as the seeds' top-level `auditLogger`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditLoggerConfig {
    /// Whether `--role all` starts the audit role (default true); `--role audit` always does.
    pub enabled: bool,
    /// Days audit records are kept before housekeeping deletes them (default 2555, 7 years).
    pub retention_days: u32,
    /// The line format of `file://` destinations: `json` or `syslog` (default `[json]`; from
    /// env: comma-separated). A file is written in one format, so the audit role refuses a list
    /// of several when a `file://` destination is configured; `syslog://` destinations always
    /// receive RFC 5424, whatever this says.
    pub export_formats: Vec<ExportFormat>,
    /// Export destinations as URIs: `file:///absolute/path` (lines appended, fsynced),
    /// `syslog://host:514` or `syslog+udp://host:514` (RFC 5424, one datagram per record),
    /// `syslog+tcp://host:port` (RFC 5424 with RFC 6587 octet counting); the port defaults to
    /// 514; `s3://bucket/prefix/` (objects of JSON lines, or syslog lines when `exportFormats`
    /// does not list json, reached as `s3` says). Empty (default): records stay in the store.
    pub destinations: Vec<String>,
    /// Largest syslog message sent over UDP, in bytes (default 8192, at least 480). A longer
    /// record is sent without its `event` body (`"truncated": true`); its `event_id` names it.
    pub syslog_udp_message_bytes_max: usize,
    /// How `s3://` destinations are reached and cut into objects.
    pub s3: AuditS3Config,
}

impl Default for AuditLoggerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retention_days: 2555,
            export_formats: vec![ExportFormat::Json],
            destinations: Vec::new(),
            syslog_udp_message_bytes_max: 8192,
            s3: AuditS3Config::default(),
        }
    }
}

/// One audit export destination, parsed from its URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditDestination {
    /// `file:///absolute/path`.
    File(PathBuf),
    /// `syslog://` or `syslog+udp://`: one datagram per record.
    SyslogUdp { host: String, port: u16 },
    /// `syslog+tcp://`: octet-counted frames on one connection.
    SyslogTcp { host: String, port: u16 },
    /// `s3://bucket/prefix/`: objects under `prefix` (empty, or ending with `/`) in `bucket`.
    S3 { bucket: String, prefix: String },
}

/// The syslog port when a URI names none.
pub const SYSLOG_DEFAULT_PORT: u16 = 514;

impl AuditDestination {
    /// Parses a destination URI; the error says what shape was expected.
    pub fn parse(uri: &str) -> Result<AuditDestination, String> {
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(DESTINATION_SHAPES.to_owned());
        };
        if uri.contains(char::is_whitespace) {
            return Err(DESTINATION_SHAPES.to_owned());
        }
        match scheme {
            "file" => {
                let path = rest.strip_prefix("localhost").unwrap_or(rest);
                if !path.starts_with('/') || path.len() < 2 {
                    return Err("must be file:///absolute/path".to_owned());
                }
                Ok(AuditDestination::File(PathBuf::from(path)))
            }
            "syslog" | "syslog+udp" | "syslog+tcp" => {
                let (host, port) = host_port(rest.strip_suffix('/').unwrap_or(rest))
                    .ok_or_else(|| format!("must be {scheme}://host:port"))?;
                Ok(if scheme == "syslog+tcp" {
                    AuditDestination::SyslogTcp { host, port }
                } else {
                    AuditDestination::SyslogUdp { host, port }
                })
            }
            "s3" => {
                let (bucket, prefix) = bucket_and_prefix(rest).ok_or_else(|| {
                    "must be s3://bucket/prefix/ (a bucket name of 3 to 63 lowercase letters, \
                     digits, '-' or '.')"
                        .to_owned()
                })?;
                Ok(AuditDestination::S3 { bucket, prefix })
            }
            _ => Err(DESTINATION_SHAPES.to_owned()),
        }
    }
}

const DESTINATION_SHAPES: &str = "must be a URI such as file:///var/log/caracal/audit.jsonl, \
     syslog://host:514, syslog+tcp://host:601 or s3://bucket/prefix/";

/// `host`, `host:port`, `[v6]` or `[v6]:port`; no path, user or query.
fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = match text.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':')?)),
            }
        }
        None => match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        },
    };
    let bad = |c: char| matches!(c, '/' | '@' | '?' | '#' | '[' | ']');
    if host.is_empty() || host.contains(bad) {
        return None;
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0)?,
        None => SYSLOG_DEFAULT_PORT,
    };
    Some((host.to_owned(), port))
}
