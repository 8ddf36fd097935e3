//! Where Redis is (`RedisTarget`, its TLS files) and the limits of talking to it
//! (`RedisLimits`): plain settings the roles build from configuration. No I/O here.

/// Where Redis is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    /// `redis://` or `rediss://` URL, or None to use `host`/`port`.
    pub url: Option<String>,
    pub host: String,
    pub port: u16,
    pub password: Option<String>,
    /// `host`:`port` is one node of a Redis Cluster (the others are discovered).
    pub cluster: bool,
    /// TLS to the server (also on for a `rediss://` URL).
    pub tls: Option<RedisTlsFiles>,
}

/// The PEM files of a TLS connection to Redis.
#[derive(Debug, Clone, Default)]
pub struct RedisTlsFiles {
    /// The CA that signs the server's certificate (else the system's roots).
    pub ca_cert_file: Option<std::path::PathBuf>,
    /// A client certificate and its key, when the server asks for one.
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
}

/// Every bound of `RedisSpend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisLimits {
    /// Longest wait for one command or script before the call fails closed (503).
    pub command_timeout_ms: u64,
    /// Longest wait to connect at start.
    pub connect_timeout_ms: u64,
    /// Connections kept to Redis (commands are pipelined over each).
    pub connections: usize,
    /// Sorted sets the expiry index is spread over (each sweeper reads all of them).
    pub expiry_shards: u32,
    /// Active policies one hold may charge.
    pub hold_policies_max: usize,
    /// Longest resource name a hold may carry, in bytes.
    pub resource_bytes_max: usize,
    /// How often each process reads the epoch key (finds a Redis that lost its data).
    pub epoch_check_ms: u64,
    /// How long reservations wait after a new epoch, so every live replica re-asserts its
    /// holds first; keep it above `epoch_check_ms + command_timeout_ms`.
    pub rebuild_grace_ms: u64,
    /// How long a settled hold's tombstone is kept (a re-assertion never brings it back).
    pub tombstone_ms: u64,
}

impl Default for RedisLimits {
    fn default() -> Self {
        RedisLimits {
            command_timeout_ms: 1_000,
            connect_timeout_ms: 5_000,
            connections: 4,
            expiry_shards: 16,
            hold_policies_max: 256,
            resource_bytes_max: 512,
            epoch_check_ms: 250,
            rebuild_grace_ms: 2_000,
            tombstone_ms: 60_000,
        }
    }
}
