//! Every application-config snippet of the seeds, verbatim, loads with the strict loader.
//! Helm values (001's `my-values.yaml`: replicaCount, resources, autoscaling, service.type,
//! tls.secretName, postgresql.auth, ...) are the chart's, not the binary's, and are not loaded.
#![allow(clippy::unwrap_used)]

use super::super::*;
use super::{error_line, load_yaml};

/// 002, "1. Gateway Proxy Tuning" (blank lines keep the seed's trailing spaces).
const GATEWAY_TUNING: &str = "gateway:
  config:
    # Connection pooling
    dbPoolSize: 20
    dbMaxOverflow: 10
    dbPoolTimeout: 30
    
    # Request handling
    maxConcurrentRequests: 1000
    requestTimeout: 30
    
    # Cache tuning
    policyCacheTTL: 60
    policyCacheMaxSize: 50000
    
    # Provisional charges
    provisionalChargeExpiration: 300
    provisionalChargeCleanupInterval: 30
";

/// 002, "Kafka SASL/SSL".
const KAFKA_SECURITY: &str = "kafka:
  security:
    protocol: SASL_SSL
    saslMechanism: SCRAM-SHA-512
    saslUsername: caracal-producer
    saslPassword: <from-secret>
  ssl:
    truststoreLocation: /etc/kafka/secrets/truststore.jks
    keystoreLocation: /etc/kafka/secrets/keystore.jks
";

/// 002, "PostgreSQL SSL".
const POSTGRES_SSL: &str = "postgresql:
  ssl:
    enabled: true
    mode: require
    cert: /etc/ssl/certs/client-cert.pem
    key: /etc/ssl/private/client-key.pem
    rootCert: /etc/ssl/certs/ca-cert.pem
";

/// 002, "Redis TLS".
const REDIS_TLS: &str = "redis:
  tls:
    enabled: true
    certFile: /etc/redis/certs/redis.crt
    keyFile: /etc/redis/certs/redis.key
    caCertFile: /etc/redis/certs/ca.crt
";

/// 002, "5. Audit Logging": a top-level `auditLogger`, read as `consumers.auditLogger`.
const AUDIT_LOGGER: &str = "auditLogger:
  enabled: true
  retentionDays: 2555  # 7 years
  exportFormats:
    - json
    - syslog
  destinations:
    - s3://audit-logs-bucket/caracal/
    - syslog://siem.example.com:514
";

/// 002, "5. Merkle Batch Tuning" as printed: two alternatives in one block, so the keys repeat.
/// YAML forbids duplicate keys; each alternative is tested on its own below.
const MERKLE_BOTH: &str = "consumers:
  ledgerWriter:
    merkle:
      # Adjust based on event rate
      batchSizeLimit: 10000  # Larger batches for high throughput
      batchTimeoutSeconds: 600  # 10 minutes
      
      # Or smaller batches for faster tamper detection
      batchSizeLimit: 1000
      batchTimeoutSeconds: 300  # 5 minutes
";

/// The first alternative of the Merkle block (high throughput).
const MERKLE_LARGE: &str = "consumers:
  ledgerWriter:
    merkle:
      # Adjust based on event rate
      batchSizeLimit: 10000  # Larger batches for high throughput
      batchTimeoutSeconds: 600  # 10 minutes
";

/// The second alternative of the Merkle block (faster tamper detection).
const MERKLE_SMALL: &str = "consumers:
  ledgerWriter:
    merkle:
      # Or smaller batches for faster tamper detection
      batchSizeLimit: 1000
      batchTimeoutSeconds: 300  # 5 minutes
";

/// 001's values table, the rows that are application config (the others are the chart's).
const HELM_TABLE_APP_KEYS: &str = "gateway:
  authMode: jwt
  service:
    httpsPort: 8443
    metricsPort: 9090
  tls:
    enabled: true
    certFile: /etc/caracal/tls/server.crt
    keyFile: /etc/caracal/tls/server.key
  jwt:
    publicKeyFile: /etc/caracal/tls/jwt_public.pem
kafka:
  config:
    defaultReplicationFactor: 3
    minInsyncReplicas: 2
consumers:
  ledgerWriter:
    merkle:
      batchSizeLimit: 1000
      batchTimeoutSeconds: 300
  metricsAggregator:
    metricsPort: 9091
";

#[test]
fn loads_the_gateway_tuning_block_with_its_exact_key_names() {
    let config = load_yaml(GATEWAY_TUNING, &[]).unwrap();
    let t = &config.gateway.config;
    assert_eq!(
        (t.db_pool_size, t.db_max_overflow, t.db_pool_timeout),
        (20, 10, 30)
    );
    assert_eq!((t.max_concurrent_requests, t.request_timeout), (1000, 30));
    assert_eq!((t.policy_cache_ttl, t.policy_cache_max_size), (60, 50_000));
    assert_eq!(
        (
            t.provisional_charge_expiration,
            t.provisional_charge_cleanup_interval
        ),
        (300, 30)
    );
    assert_eq!(
        *t,
        GatewayTuning::default(),
        "the seed's values are the defaults"
    );
}

#[test]
fn loads_the_kafka_sasl_ssl_block() {
    let config = load_yaml(KAFKA_SECURITY, &[]).unwrap();
    let s = &config.kafka.security;
    assert_eq!(s.protocol, KafkaProtocol::SaslSsl);
    assert_eq!(s.sasl_mechanism, Some(SaslMechanism::ScramSha512));
    assert_eq!(s.sasl_username.as_deref(), Some("caracal-producer"));
    assert_eq!(s.sasl_password.as_ref().unwrap().expose(), "<from-secret>");
    assert_eq!(
        config.kafka.ssl.truststore_location.as_deref(),
        Some(std::path::Path::new("/etc/kafka/secrets/truststore.jks"))
    );
    assert!(config.kafka.ssl.keystore_location.is_some());
}

#[test]
fn loads_the_postgresql_ssl_block() {
    let config = load_yaml(POSTGRES_SSL, &[]).unwrap();
    let ssl = &config.postgresql.ssl;
    assert_eq!(ssl.effective_mode(), PgSslMode::Require);
    assert_eq!(
        ssl.root_cert.as_deref(),
        Some(std::path::Path::new("/etc/ssl/certs/ca-cert.pem"))
    );
    assert!(ssl.cert.is_some() && ssl.key.is_some());
}

#[test]
fn loads_the_redis_tls_block() {
    let config = load_yaml(REDIS_TLS, &[]).unwrap();
    assert!(config.redis.tls_enabled());
    assert_eq!(
        config.redis.tls.ca_cert_file.as_deref(),
        Some(std::path::Path::new("/etc/redis/certs/ca.crt"))
    );
}

#[test]
fn loads_the_top_level_audit_logger_block_as_consumers_audit_logger() {
    let config = load_yaml(AUDIT_LOGGER, &[]).unwrap();
    let audit = &config.consumers.audit_logger;
    assert!(audit.enabled);
    assert_eq!(audit.retention_days, 2555);
    assert_eq!(
        audit.export_formats,
        vec![ExportFormat::Json, ExportFormat::Syslog]
    );
    assert_eq!(
        audit.destinations,
        vec![
            "s3://audit-logs-bucket/caracal/",
            "syslog://siem.example.com:514"
        ]
    );
}

#[test]
fn loads_the_large_batch_alternative_of_the_merkle_block() {
    let merkle = load_yaml(MERKLE_LARGE, &[])
        .unwrap()
        .consumers
        .ledger_writer
        .merkle;
    assert_eq!(
        (merkle.batch_size_limit, merkle.batch_timeout_seconds),
        (10_000, 600)
    );
}

#[test]
fn loads_the_small_batch_alternative_of_the_merkle_block() {
    let merkle = load_yaml(MERKLE_SMALL, &[])
        .unwrap()
        .consumers
        .ledger_writer
        .merkle;
    assert_eq!(
        (merkle.batch_size_limit, merkle.batch_timeout_seconds),
        (1000, 300)
    );
}

#[test]
fn rejects_the_merkle_block_as_printed_because_its_keys_repeat() {
    let line = error_line(load_yaml(MERKLE_BOTH, &[]));
    assert!(
        line.contains("duplicate entry with key \"batchSizeLimit\""),
        "{line}"
    );
    assert!(line.contains(".yaml:"), "names the file and line: {line}");
}

#[test]
fn loads_the_helm_tables_application_keys_and_their_defaults_match() {
    let config = load_yaml(HELM_TABLE_APP_KEYS, &[]).unwrap();
    assert_eq!(config.gateway.auth_mode, AuthMode::Jwt);
    assert!(config.gateway.tls_enabled());
    assert_eq!(config.gateway_addr().to_string(), "0.0.0.0:8443");
    let merkle = &config.consumers.ledger_writer.merkle;
    assert_eq!(
        (merkle.batch_size_limit, merkle.batch_timeout_seconds),
        (1000, 300)
    );
    let defaults = Config::default();
    assert_eq!(
        config.consumers.ledger_writer.merkle,
        defaults.consumers.ledger_writer.merkle
    );
    assert_eq!(config.kafka.config, defaults.kafka.config);
    assert_eq!(config.gateway.service, defaults.gateway.service);
    assert_eq!(
        config.consumers.metrics_aggregator,
        defaults.consumers.metrics_aggregator
    );
}

#[test]
fn all_seed_snippets_load_together_in_one_file() {
    let all = [
        GATEWAY_TUNING,
        KAFKA_SECURITY,
        POSTGRES_SSL,
        REDIS_TLS,
        AUDIT_LOGGER,
    ]
    .concat();
    let config = load_yaml(&all, &[]).unwrap();
    assert_eq!(config.consumers.audit_logger.retention_days, 2555);
}

#[test]
fn names_a_chart_only_key_as_such() {
    let line = error_line(load_yaml("gateway:\n  replicaCount: 3\n", &[]));
    assert!(
        line.contains("unknown key \"gateway.replicaCount\""),
        "{line}"
    );
    assert!(line.contains("Helm chart value"), "{line}");
    let line = error_line(load_yaml("postgresql:\n  auth:\n    password: x\n", &[]));
    assert!(line.contains("\"postgresql.auth\""), "{line}");
}
