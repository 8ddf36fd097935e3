//! Errors are one line naming the key path and where the value came from (file or env var).
#![allow(clippy::unwrap_used)]

use super::{error_line, load_env, load_yaml, YamlFile};
use crate::config::load_with_env;

#[test]
fn an_unknown_file_key_names_its_path_and_the_file() {
    let file = YamlFile::new("gateway:\n  foo: 1\n");
    let line = error_line(load_with_env(
        Some(&file.path()),
        Vec::<(String, String)>::new(),
    ));
    assert_eq!(
        line,
        format!(
            "invalid config: unknown key \"gateway.foo\" in {}",
            file.path().display()
        )
    );
}

#[test]
fn an_unknown_key_with_a_near_spelling_gets_a_hint() {
    let line = error_line(load_yaml(
        "gateway:\n  config:\n    policyCacheTtl: 5\n",
        &[],
    ));
    assert!(
        line.contains("unknown key \"gateway.config.policyCacheTtl\""),
        "{line}"
    );
    assert!(
        line.ends_with("(did you mean \"policyCacheTTL\"?)"),
        "{line}"
    );
}

#[test]
fn an_unknown_key_inside_a_list_item_names_its_index() {
    let yaml = "mcpAdapter:\n  servers:\n    - name: fs\n      url: http://fs:3000/mcp\n      headers: {}\n";
    let line = error_line(load_yaml(yaml, &[]));
    assert!(
        line.contains("unknown key \"mcpAdapter.servers[0].headers\""),
        "{line}"
    );
}

#[test]
fn an_unknown_env_key_is_an_error_like_an_unknown_file_key() {
    let line = error_line(load_env(&[("CARACAL_GATEWAY__FOO", "1")]));
    assert_eq!(
        line,
        "invalid config: unknown key \"gateway.foo\" (from env CARACAL_GATEWAY__FOO)"
    );
    let line = error_line(load_env(&[("CARACAL_DATA_DIR__X", "1")]));
    assert!(line.contains("\"dataDir.x\""), "{line}");
}

#[test]
fn a_wrong_type_from_env_names_key_expectation_value_and_variable() {
    let var = "CARACAL_GATEWAY__CONFIG__MAXCONCURRENTREQUESTS";
    let line = error_line(load_env(&[(var, "many")]));
    assert_eq!(
        line,
        format!(
            "invalid config: gateway.config.maxConcurrentRequests: expected an integer from 0 to 4294967295, found string \"many\" (from env {var})"
        )
    );
}

#[test]
fn a_wrong_type_in_the_file_names_key_and_file() {
    let file = YamlFile::new("gateway:\n  config:\n    maxConcurrentRequests: many\n");
    let line = error_line(load_with_env(
        Some(&file.path()),
        Vec::<(String, String)>::new(),
    ));
    assert!(
        line.starts_with(
            "invalid config: gateway.config.maxConcurrentRequests: expected an integer"
        ),
        "{line}"
    );
    assert!(
        line.ends_with(&format!("in {}", file.path().display())),
        "{line}"
    );
}

#[test]
fn an_out_of_range_port_is_refused() {
    let line = error_line(load_env(&[("DB_PORT", "70000")]));
    assert!(
        line.contains("postgresql.port: expected an integer from 0 to 65535"),
        "{line}"
    );
    assert!(line.ends_with("(from env DB_PORT)"), "{line}");
    let line = error_line(load_yaml("admin:\n  port: 0\n", &[]));
    assert!(
        line.contains("admin.port: must be a port from 1 to 65535 in "),
        "{line}"
    );
}

#[test]
fn an_unknown_enum_value_lists_the_accepted_ones() {
    let line = error_line(load_yaml("gateway:\n  authMode: oauth\n", &[]));
    assert!(line.contains("gateway.authMode: unknown value \"oauth\", expected one of \"jwt\", \"mtls\", \"api_key\""), "{line}");
    let line = error_line(load_yaml(
        "postgresql:\n  ssl:\n    mode: verify_full\n",
        &[],
    ));
    assert!(line.contains("\"verify-full\""), "{line}");
}

#[test]
fn invalid_yaml_names_the_file_line_and_column() {
    let file = YamlFile::new("gateway:\n  config:\n    maxConcurrentRequests: [\n");
    let line = error_line(load_with_env(
        Some(&file.path()),
        Vec::<(String, String)>::new(),
    ));
    let at = format!("invalid config: {}:4:1: ", file.path().display());
    assert!(line.starts_with(&at), "{line}");
    let line = error_line(load_yaml("gateway:\n\tauthMode: jwt\n", &[]));
    assert!(line.contains(".yaml:2:"), "{line}");
}

#[test]
fn a_top_level_that_is_not_a_mapping_is_refused() {
    let line = error_line(load_yaml("- gateway\n", &[]));
    assert!(line.contains("the top level must be a mapping"), "{line}");
}

#[test]
fn a_missing_required_route_key_is_named() {
    let line = error_line(load_yaml(
        "gateway:\n  routes:\n    - prefix: /x\n      upstream: https://x\n",
        &[],
    ));
    assert!(
        line.contains("gateway.routes[0]: missing required key \"provider\""),
        "{line}"
    );
}

#[test]
fn checks_route_prefixes_and_upstreams() {
    let route = |prefix: &str, upstream: &str| {
        format!("gateway:\n  routes:\n    - prefix: {prefix}\n      upstream: {upstream}\n      provider: openai\n")
    };
    let line = error_line(load_yaml(&route("openai", "https://api.openai.com"), &[]));
    assert!(
        line.contains("gateway.routes[0].prefix: must start with '/'"),
        "{line}"
    );
    let line = error_line(load_yaml(&route("/openai", "ftp://api.openai.com"), &[]));
    assert!(
        line.contains(
            "gateway.routes[0].upstream: must be a URL starting with http:// or https://"
        ),
        "{line}"
    );
    let two = format!(
        "{}{}",
        route("/a", "https://a"),
        "    - {prefix: /a, upstream: 'https://b', provider: generic}\n"
    );
    let line = error_line(load_yaml(&two, &[]));
    assert!(
        line.contains("gateway.routes[1].prefix: /a is used by another route"),
        "{line}"
    );
}

#[test]
fn checks_limits_and_auth_coherence() {
    let line = error_line(load_env(&[(
        "CARACAL_GATEWAY__CONFIG__REQUEST_TIMEOUT",
        "0",
    )]));
    assert!(
        line.contains("gateway.config.requestTimeout: must be greater than 0"),
        "{line}"
    );
    let line = error_line(load_yaml("gateway:\n  authMode: jwt\n", &[]));
    assert!(
        line.contains("gateway.jwt: authMode jwt needs gateway.jwt.publicKeyFile or jwksFile"),
        "{line}"
    );
    let line = error_line(load_yaml("gateway:\n  authMode: mtls\n", &[]));
    assert!(line.contains("gateway.authMode: mtls needs TLS"), "{line}");
    let line = error_line(load_yaml("kafka:\n  brokers: [kafka]\n", &[]));
    assert!(
        line.contains("kafka.brokers[0]: must be host:port"),
        "{line}"
    );
    let line = error_line(load_yaml(
        "kafka:\n  security:\n    protocol: SASL_SSL\n",
        &[],
    ));
    assert!(
        line.contains("kafka.security.saslMechanism: required"),
        "{line}"
    );
    let line = error_line(load_yaml(
        "kafka:\n  config:\n    minInsyncReplicas: 4\n",
        &[],
    ));
    assert!(line.contains("kafka.config.minInsyncReplicas"), "{line}");
    let line = error_line(load_env(&[("CARACAL_ADMIN__LISTEN_ADDRESS", "0.0.0.0")]));
    assert!(
        line.contains("admin.token: the admin API on 0.0.0.0 needs admin.token"),
        "{line}"
    );
}

#[test]
fn url_and_host_are_alternatives() {
    let line = error_line(load_env(&[
        ("CARACAL_POSTGRESQL__URL", "postgres://u:pw@db/caracal"),
        ("DB_HOST", "db"),
    ]));
    assert!(
        line.contains("postgresql.url: set postgresql.url or postgresql.host, not both"),
        "{line}"
    );
    assert!(!line.contains("pw@"), "{line}");
}

#[test]
fn an_audit_destination_of_an_unknown_shape_names_its_index() {
    let yaml = "auditLogger:\n  destinations:\n    - file:///var/log/a.jsonl\n    - kafka://x\n";
    let line = error_line(load_yaml(yaml, &[]));
    assert!(
        line.contains("consumers.auditLogger.destinations[1]: must be a URI such as"),
        "{line}"
    );
    for bad in [
        "file://relative/path",
        "syslog://",
        "syslog+tcp://h:0",
        "syslog://u@h:514",
    ] {
        let yaml = format!("auditLogger:\n  destinations:\n    - \"{bad}\"\n");
        let line = error_line(load_yaml(&yaml, &[]));
        assert!(line.contains("destinations[0]"), "{bad}: {line}");
    }
}

#[test]
fn audit_destinations_parse_to_files_and_syslog_over_udp_or_tcp() {
    use crate::config::AuditDestination as D;
    let parsed = |uri: &str| D::parse(uri).unwrap();
    assert_eq!(parsed("file:///var/log/a"), D::File("/var/log/a".into()));
    assert_eq!(parsed("file://localhost/a"), D::File("/a".into()));
    let udp = |host: &str, port| D::SyslogUdp {
        host: host.into(),
        port,
    };
    assert_eq!(
        parsed("syslog://siem.example.com:514"),
        udp("siem.example.com", 514)
    );
    assert_eq!(parsed("syslog+udp://10.0.0.1"), udp("10.0.0.1", 514));
    assert_eq!(parsed("syslog://[::1]:1514/"), udp("::1", 1514));
    assert_eq!(
        parsed("syslog+tcp://h:601"),
        D::SyslogTcp {
            host: "h".into(),
            port: 601
        }
    );
    assert_eq!(
        parsed("s3://audit-logs-bucket/caracal/"),
        D::S3 {
            bucket: "audit-logs-bucket".into(),
            prefix: "caracal/".into()
        }
    );
    assert!(D::parse("s3://Bad_Bucket/x").is_err());
}

#[test]
fn s3_credentials_are_masked_and_a_zero_object_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("s3-secret");
    std::fs::write(&key_file, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n").unwrap();
    let yaml = format!(
        "auditLogger:\n  destinations: [s3://audit-logs-bucket/caracal/]\n  s3:\n    \
         region: eu-west-1\n    accessKeyId: AKIAIOSFODNN7EXAMPLE\n    secretAccessKeyFile: {}\n",
        key_file.display()
    );
    let config = load_yaml(&yaml, &[]).unwrap();
    let s3 = &config.consumers.audit_logger.s3;
    assert_eq!(
        s3.secret_access_key.as_ref().unwrap().expose(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    );
    let shown = serde_yaml::to_string(&config).unwrap();
    assert!(
        !shown.contains("EXAMPLEKEY") && !shown.contains("AKIAIOSFODNN7"),
        "{shown}"
    );
    let env = [(
        "CARACAL_CONSUMERS__AUDIT_LOGGER__S3__FLUSH_INTERVAL_SECONDS",
        "0",
    )];
    let line = error_line(load_yaml(&yaml, &env));
    assert!(
        line.contains("consumers.auditLogger.s3.flushIntervalSeconds: must be greater than 0"),
        "{line}"
    );
}

#[test]
fn a_udp_syslog_cap_below_the_rfc_minimum_is_refused() {
    let yaml = "auditLogger:\n  syslogUdpMessageBytesMax: 100\n";
    let line = error_line(load_yaml(yaml, &[]));
    assert!(
        line.contains("consumers.auditLogger.syslogUdpMessageBytesMax: must be at least 480"),
        "{line}"
    );
}

#[test]
fn kafka_client_tuning_defaults_to_the_seeds_and_takes_env_overrides() {
    let config = load_env(&[
        ("CARACAL_KAFKA__PRODUCER__LINGERMS", "3"),
        ("CARACAL_KAFKA__CONSUMER__FETCH_MAX_WAIT_MS", "100"),
    ])
    .unwrap();
    let (p, c) = (&config.kafka.producer, &config.kafka.consumer);
    // The seeds' producer and consumer properties.
    assert_eq!((p.batch_size, p.buffer_memory), (32_768, 67_108_864));
    assert_eq!((c.fetch_min_bytes, c.max_poll_records), (1_024, 500));
    assert_eq!((p.linger_ms, c.fetch_max_wait_ms), (3, 100));
    let line = error_line(load_yaml("kafka:\n  producer:\n    bufferMemory: 0\n", &[]));
    assert!(line.contains("kafka.producer.bufferMemory"), "{line}");
    assert!(line.contains("greater than 0"), "{line}");
}
