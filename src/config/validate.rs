//! Post-load checks across keys: ports, limits, URLs, TLS and auth coherence. Pure functions of a
//! `Config`; the first problem wins. A message never quotes a secret (URLs included).

use std::collections::BTreeSet;

use super::gateway::{AuthMode, GatewayConfig};
use super::{AuditDestination, Config, KafkaConfig, PgSslMode};

/// The smallest syslog message every RFC 5424 receiver must accept.
const SYSLOG_MESSAGE_BYTES_MIN: usize = 480;

/// A failed check: the key it is about and what is wrong.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) key: String,
    pub(crate) message: String,
}

type Checked = Result<(), Problem>;

fn fail(key: impl Into<String>, message: impl Into<String>) -> Checked {
    Err(Problem {
        key: key.into(),
        message: message.into(),
    })
}

/// Runs every check.
pub(crate) fn check(c: &Config) -> Checked {
    ports(c)?;
    limits(c)?;
    gateway(&c.gateway)?;
    routes(&c.gateway)?;
    services(c)?;
    databases(c)?;
    kafka(&c.kafka)?;
    if c.data_dir.as_os_str().is_empty() {
        return fail("dataDir", "must not be empty");
    }
    Ok(())
}

fn ports(c: &Config) -> Checked {
    let ports = [
        (
            "gateway.service.httpsPort",
            Some(c.gateway.service.https_port),
        ),
        (
            "gateway.service.metricsPort",
            Some(c.gateway.service.metrics_port),
        ),
        ("mcpAdapter.port", Some(c.mcp_adapter.port)),
        ("admin.port", Some(c.admin.port)),
        ("telemetry.port", c.telemetry.port),
        ("postgresql.port", Some(c.postgresql.port)),
        ("redis.port", Some(c.redis.port)),
        (
            "consumers.metricsAggregator.metricsPort",
            Some(c.consumers.metrics_aggregator.metrics_port),
        ),
    ];
    match ports.iter().find(|(_, port)| *port == Some(0)) {
        Some((key, _)) => fail(*key, "must be a port from 1 to 65535"),
        None => Ok(()),
    }
}

fn limits(c: &Config) -> Checked {
    positive(&gateway_limits(c))?;
    positive(&consumer_limits(c))?;
    let t = &c.gateway.config;
    if t.provisional_charge_cleanup_interval > t.provisional_charge_expiration {
        return fail(
            "gateway.config.provisionalChargeCleanupInterval",
            "must not exceed gateway.config.provisionalChargeExpiration",
        );
    }
    Ok(())
}

/// Fails on the first `(key, value)` that is 0.
fn positive(limits: &[(&'static str, u64)]) -> Checked {
    match limits.iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => fail(*key, "must be greater than 0"),
        None => Ok(()),
    }
}

/// The gateway's limits that must be positive.
fn gateway_limits(c: &Config) -> [(&'static str, u64); 10] {
    let t = &c.gateway.config;
    [
        ("gateway.bodyBytesMax", c.gateway.body_bytes_max as u64),
        (
            "gateway.replayProtection.windowSeconds",
            c.gateway.replay_protection.window_seconds,
        ),
        ("gateway.config.dbPoolSize", u64::from(t.db_pool_size)),
        ("gateway.config.dbPoolTimeout", t.db_pool_timeout),
        (
            "gateway.config.maxConcurrentRequests",
            u64::from(t.max_concurrent_requests),
        ),
        ("gateway.config.requestTimeout", t.request_timeout),
        ("gateway.config.policyCacheTTL", t.policy_cache_ttl),
        ("gateway.config.policyCacheMaxSize", t.policy_cache_max_size),
        (
            "gateway.config.provisionalChargeExpiration",
            t.provisional_charge_expiration,
        ),
        (
            "gateway.config.provisionalChargeCleanupInterval",
            t.provisional_charge_cleanup_interval,
        ),
    ]
}

/// The consumers' limits that must be positive.
fn consumer_limits(c: &Config) -> [(&'static str, u64); 13] {
    let m = &c.consumers.ledger_writer.merkle;
    let a = &c.consumers.metrics_aggregator;
    [
        (
            "consumers.ledgerWriter.merkle.batchSizeLimit",
            u64::from(m.batch_size_limit),
        ),
        (
            "consumers.ledgerWriter.merkle.batchTimeoutSeconds",
            m.batch_timeout_seconds,
        ),
        (
            "consumers.ledgerWriter.merkle.reverifyIntervalSeconds",
            m.reverify_interval_seconds,
        ),
        (
            "consumers.ledgerWriter.merkle.reverifyBatches",
            u64::from(m.reverify_batches),
        ),
        ("consumers.leaseTtlSeconds", c.consumers.lease_ttl_seconds),
        (
            "consumers.partitionsInFlight",
            c.consumers.partitions_in_flight,
        ),
        (
            "consumers.auditLogger.retentionDays",
            u64::from(c.consumers.audit_logger.retention_days),
        ),
        (
            "consumers.metricsAggregator.dedupeWindowSeconds",
            a.dedupe_window_seconds,
        ),
        (
            "consumers.metricsAggregator.hourlyRetentionHours",
            a.hourly_retention_hours,
        ),
        (
            "consumers.metricsAggregator.dailyRetentionDays",
            a.daily_retention_days,
        ),
        (
            "consumers.metricsAggregator.gaugeRefreshSeconds",
            a.gauge_refresh_seconds,
        ),
        (
            "consumers.metricsAggregator.policyGaugesMax",
            a.policy_gauges_max,
        ),
        (
            "consumers.metricsAggregator.batchEventsMax",
            a.batch_events_max,
        ),
    ]
}

fn gateway(g: &GatewayConfig) -> Checked {
    let tls = &g.tls;
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        return fail(
            "gateway.tls.keyFile",
            "gateway.tls.certFile and keyFile go together",
        );
    }
    if tls.enabled == Some(true) && tls.cert_file.is_none() {
        return fail(
            "gateway.tls.enabled",
            "TLS is enabled but gateway.tls.certFile and keyFile are not set",
        );
    }
    if let Some(ip) = g.listen_address {
        if !ip.is_loopback() && !g.tls_enabled() && g.tls.enabled != Some(false) {
            return fail(
                "gateway.listenAddress",
                format!("serving plain HTTP on {ip} needs an explicit gateway.tls.enabled: false (or a certificate)"),
            );
        }
    }
    match g.auth_mode {
        AuthMode::Mtls if !g.tls_enabled() => fail(
            "gateway.authMode",
            "mtls needs TLS (gateway.tls.certFile and keyFile)",
        ),
        AuthMode::Mtls if tls.client_ca_file.is_none() => fail(
            "gateway.tls.clientCaFile",
            "required when gateway.authMode is mtls",
        ),
        AuthMode::Jwt => match (&g.jwt.public_key_file, &g.jwt.jwks_file) {
            (None, None) => fail(
                "gateway.jwt",
                "authMode jwt needs gateway.jwt.publicKeyFile or jwksFile",
            ),
            (Some(_), Some(_)) => fail(
                "gateway.jwt",
                "set gateway.jwt.publicKeyFile or jwksFile, not both",
            ),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

fn routes(g: &GatewayConfig) -> Checked {
    let mut prefixes = BTreeSet::new();
    for (i, route) in g.routes.iter().enumerate() {
        let key = |k: &str| format!("gateway.routes[{i}].{k}");
        if !route.prefix.starts_with('/') {
            return fail(key("prefix"), "must start with '/'");
        }
        if route.prefix.len() > 1 && route.prefix.ends_with('/') {
            return fail(key("prefix"), "must not end with '/'");
        }
        if !prefixes.insert(route.prefix.as_str()) {
            return fail(
                key("prefix"),
                format!("{} is used by another route", route.prefix),
            );
        }
        http_url(&route.upstream).or_else(|m| fail(key("upstream"), m))?;
    }
    for (i, host) in g.target_url_allowlist.iter().enumerate() {
        if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
            return fail(
                format!("gateway.targetUrlAllowlist[{i}]"),
                "must be a host name or host:port, without scheme or path",
            );
        }
    }
    Ok(())
}

fn services(c: &Config) -> Checked {
    let mut names = BTreeSet::new();
    for (i, server) in c.mcp_adapter.servers.iter().enumerate() {
        let key = |k: &str| format!("mcpAdapter.servers[{i}].{k}");
        if server.name.is_empty() || server.name.contains('/') {
            return fail(key("name"), "must be non-empty and without '/'");
        }
        if !names.insert(server.name.as_str()) {
            return fail(
                key("name"),
                format!("{} is used by another server", server.name),
            );
        }
        http_url(&server.url).or_else(|m| fail(key("url"), m))?;
        if let Some(header) = &server.credential_header {
            if hyper::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return fail(key("credentialHeader"), "must be an HTTP header name");
            }
        }
    }
    let mcp = &c.mcp_adapter;
    for (key, value) in [
        ("mcpAdapter.bodyBytesMax", mcp.body_bytes_max as u64),
        ("mcpAdapter.responseBytesMax", mcp.response_bytes_max as u64),
        ("mcpAdapter.streamBytesMax", mcp.stream_bytes_max),
        (
            "mcpAdapter.sseEventBytesMax",
            mcp.sse_event_bytes_max as u64,
        ),
        (
            "mcpAdapter.requestTimeoutSeconds",
            mcp.request_timeout_seconds,
        ),
        (
            "mcpAdapter.maxConcurrentRequests",
            mcp.max_concurrent_requests,
        ),
    ] {
        if value == 0 {
            return fail(key, "must be greater than 0");
        }
    }
    let ip = c.admin.listen_address;
    if !ip.is_loopback() && c.admin.token.is_none() {
        return fail(
            "admin.token",
            format!("the admin API on {ip} needs admin.token or admin.tokenFile"),
        );
    }
    let audit = &c.consumers.audit_logger;
    for (i, dest) in audit.destinations.iter().enumerate() {
        AuditDestination::parse(dest)
            .map(|_| ())
            .or_else(|m| fail(format!("consumers.auditLogger.destinations[{i}]"), m))?;
    }
    if audit.syslog_udp_message_bytes_max < SYSLOG_MESSAGE_BYTES_MIN {
        return fail(
            "consumers.auditLogger.syslogUdpMessageBytesMax",
            format!("must be at least {SYSLOG_MESSAGE_BYTES_MIN} (RFC 5424's minimum)"),
        );
    }
    if let Some((key, message)) = audit.s3.problem() {
        return fail(format!("consumers.auditLogger.s3.{key}"), message);
    }
    Ok(())
}

fn databases(c: &Config) -> Checked {
    let pg = &c.postgresql;
    if pg.url.is_some() && pg.host.is_some() {
        return fail(
            "postgresql.url",
            "set postgresql.url or postgresql.host, not both",
        );
    }
    if let Some(url) = &pg.url {
        scheme(url.expose(), &["postgres", "postgresql"]).or_else(|m| fail("postgresql.url", m))?;
    }
    match (pg.ssl.enabled, pg.ssl.mode) {
        (Some(true), Some(PgSslMode::Disable)) => {
            return fail(
                "postgresql.ssl.mode",
                "is disable but postgresql.ssl.enabled is true",
            )
        }
        (Some(false), Some(mode)) if mode != PgSslMode::Disable => {
            return fail(
                "postgresql.ssl.mode",
                "requires TLS but postgresql.ssl.enabled is false",
            )
        }
        _ => {}
    }
    if pg.ssl.cert.is_some() != pg.ssl.key.is_some() {
        return fail(
            "postgresql.ssl.key",
            "postgresql.ssl.cert and key go together",
        );
    }
    let redis = &c.redis;
    if redis.url.is_some() && redis.host.is_some() {
        return fail("redis.url", "set redis.url or redis.host, not both");
    }
    if let Some(url) = &redis.url {
        scheme(url.expose(), &["redis", "rediss"]).or_else(|m| fail("redis.url", m))?;
    }
    if redis.tls.cert_file.is_some() != redis.tls.key_file.is_some() {
        return fail(
            "redis.tls.keyFile",
            "redis.tls.certFile and keyFile go together",
        );
    }
    Ok(())
}

fn kafka(k: &KafkaConfig) -> Checked {
    for (i, broker) in k.brokers.iter().enumerate() {
        let port = broker.rsplit_once(':').and_then(|(host, port)| {
            (!host.is_empty())
                .then(|| port.parse::<u16>().ok())
                .flatten()
        });
        if !matches!(port, Some(p) if p > 0) {
            return fail(format!("kafka.brokers[{i}]"), "must be host:port");
        }
    }
    let tuning = k.producer.limits().into_iter().chain(k.consumer.limits());
    if let Some((key, _)) = tuning.into_iter().find(|(_, v)| *v == 0) {
        return fail(key, "must be greater than 0");
    }
    let s = &k.security;
    if s.protocol.uses_sasl() {
        if s.sasl_mechanism.is_none() {
            return fail(
                "kafka.security.saslMechanism",
                "required with a SASL_* protocol",
            );
        }
        if s.sasl_username.is_none() {
            return fail(
                "kafka.security.saslUsername",
                "required with a SASL_* protocol",
            );
        }
        if s.sasl_password.is_none() {
            return fail(
                "kafka.security.saslPassword",
                "required (or saslPasswordFile) with a SASL_* protocol",
            );
        }
    } else if s.sasl_mechanism.is_some() || s.sasl_username.is_some() || s.sasl_password.is_some() {
        return fail(
            "kafka.security.protocol",
            "SASL settings are given but the protocol is not SASL_PLAINTEXT or SASL_SSL",
        );
    }
    if k.ssl.cert_file.is_some() != k.ssl.key_file.is_some() {
        return fail(
            "kafka.ssl.keyFile",
            "kafka.ssl.certFile and keyFile go together",
        );
    }
    let t = &k.config;
    if t.default_replication_factor == 0 || t.default_replication_factor > i16::MAX as u16 {
        return fail(
            "kafka.config.defaultReplicationFactor",
            "must be from 1 to 32767",
        );
    }
    if t.min_insync_replicas == 0 || t.min_insync_replicas > t.default_replication_factor {
        return fail(
            "kafka.config.minInsyncReplicas",
            "must be from 1 to kafka.config.defaultReplicationFactor",
        );
    }
    if let Some(url) = &k.schema_registry.url {
        http_url(url).or_else(|m| fail("kafka.schemaRegistry.url", m))?;
    }
    if k.schema_registry.timeout_ms == 0 {
        return fail("kafka.schemaRegistry.timeoutMs", "must be positive");
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host. The message never repeats the URL.
fn http_url(url: &str) -> Result<(), String> {
    scheme(url, &["http", "https"])
}

fn scheme(url: &str, allowed: &[&str]) -> Result<(), String> {
    let expected = || {
        let list: Vec<String> = allowed.iter().map(|s| format!("{s}://")).collect();
        format!(
            "must be a URL starting with {} and naming a host",
            list.join(" or ")
        )
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(expected());
    };
    let host = rest.rsplit('@').next().unwrap_or(rest);
    let host_end = host.find(['/', '?', '#']).unwrap_or(host.len());
    let ok = allowed.contains(&scheme) && host_end > 0 && !url.contains(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(expected())
    }
}
