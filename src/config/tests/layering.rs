//! Layering: defaults < file < `CARACAL_*` env < the seeds' `DB_*`; env names matched to keys
//! ignoring case and underscores; file discovery; derived listen addresses.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::net::SocketAddr;

use super::super::load::load_in;
use super::super::*;
use super::{error_line, load_env, load_yaml, YamlFile};

#[test]
fn an_empty_config_is_the_embedded_default() {
    let none = load_env(&[]).unwrap();
    assert_eq!(none, Config::default());
    assert_eq!(none.gateway.auth_mode, AuthMode::ApiKey);
    assert_eq!(none.file(), None);
    let empty = load_yaml("", &[]).unwrap();
    assert_eq!(empty.gateway, Config::default().gateway);
    let comments_only = load_yaml("# nothing here\n", &[]).unwrap();
    assert_eq!(
        comments_only.data_dir,
        std::path::PathBuf::from("./caracal-data")
    );
}

#[test]
fn the_defaults_listen_on_loopback_without_tls() {
    let config = Config::default();
    assert!(!config.gateway.tls_enabled());
    assert_eq!(
        config.gateway_addr(),
        "127.0.0.1:8443".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        config.mcp_addr(),
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        config.admin_addr(),
        "127.0.0.1:8081".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.telemetry_addr(false).port(), 9090);
    assert_eq!(config.telemetry_addr(true).port(), 9091);
    assert!(!config.postgresql.is_configured());
    assert!(!config.redis.is_configured());
    assert!(!config.kafka.is_configured());
}

#[test]
fn a_certificate_moves_the_default_listen_address_to_all_interfaces() {
    let yaml = "gateway:\n  tls:\n    certFile: /c.pem\n    keyFile: /k.pem\n";
    let config = load_yaml(yaml, &[]).unwrap();
    assert!(config.gateway.tls_enabled());
    assert_eq!(config.gateway_addr().to_string(), "0.0.0.0:8443");
    let off = load_yaml(&format!("{yaml}    enabled: false\n"), &[]).unwrap();
    assert_eq!(off.gateway_addr().to_string(), "127.0.0.1:8443");
}

#[test]
fn plain_http_on_a_public_address_needs_tls_explicitly_off() {
    let line = error_line(load_env(&[("CARACAL_GATEWAY__LISTEN_ADDRESS", "0.0.0.0")]));
    assert!(line.contains("gateway.listenAddress"), "{line}");
    assert!(
        line.contains("(from env CARACAL_GATEWAY__LISTEN_ADDRESS)"),
        "{line}"
    );
    let config = load_env(&[
        ("CARACAL_GATEWAY__LISTEN_ADDRESS", "0.0.0.0"),
        ("CARACAL_GATEWAY__TLS__ENABLED", "false"),
    ])
    .unwrap();
    assert_eq!(config.gateway_addr().to_string(), "0.0.0.0:8443");
}

#[test]
fn env_overrides_the_file_and_db_vars_override_both() {
    let yaml = "postgresql:\n  host: from-file\n  port: 1111\n  database: filedb\n";
    let file_only = load_yaml(yaml, &[]).unwrap();
    assert_eq!(file_only.postgresql.host.as_deref(), Some("from-file"));
    let env = [
        ("CARACAL_POSTGRESQL__HOST", "from-caracal-env"),
        ("CARACAL_POSTGRESQL__PORT", "2222"),
    ];
    let with_env = load_yaml(yaml, &env).unwrap();
    assert_eq!(
        with_env.postgresql.host.as_deref(),
        Some("from-caracal-env")
    );
    assert_eq!(with_env.postgresql.port, 2222);
    assert_eq!(
        with_env.postgresql.database, "filedb",
        "untouched keys keep the file's value"
    );
    let seeds = [
        env[0],
        env[1],
        ("DB_HOST", "localhost"),
        ("DB_PORT", "5432"),
        ("DB_NAME", "caracal"),
        ("DB_USER", "caracal"),
    ];
    let with_db = load_yaml(yaml, &seeds).unwrap();
    let pg = &with_db.postgresql;
    assert_eq!(pg.host.as_deref(), Some("localhost"));
    assert_eq!(
        (pg.port, pg.database.as_str(), pg.username.as_str()),
        (5432, "caracal", "caracal")
    );
    assert!(pg.is_configured());
}

#[test]
fn env_names_match_camel_case_keys_with_or_without_underscores() {
    let key = [("CARACAL_GATEWAY__JWT__PUBLIC_KEY_FILE", "/jwt.pem")];
    for name in ["CARACAL_GATEWAY__AUTHMODE", "CARACAL_GATEWAY__AUTH_MODE"] {
        let config = load_env(&[(name, "jwt"), key[0]]).unwrap();
        assert_eq!(config.gateway.auth_mode, AuthMode::Jwt, "{name}");
    }
    let config = load_env(&[
        ("CARACAL_GATEWAY__CONFIG__MAXCONCURRENTREQUESTS", "5"),
        ("CARACAL_GATEWAY__CONFIG__POLICY_CACHE_TTL", "7"),
        (
            "CARACAL_CONSUMERS__LEDGER_WRITER__MERKLE__BATCH_SIZE_LIMIT",
            "10",
        ),
        ("CARACAL_DATA_DIR", "/var/lib/caracal"),
        ("CARACAL_GATEWAY__REPLAY_PROTECTION__ENABLED", "true"),
    ])
    .unwrap();
    assert_eq!(config.gateway.config.max_concurrent_requests, 5);
    assert_eq!(config.gateway.config.policy_cache_ttl, 7);
    assert_eq!(config.consumers.ledger_writer.merkle.batch_size_limit, 10);
    assert_eq!(
        config.data_dir,
        std::path::PathBuf::from("/var/lib/caracal")
    );
    assert!(config.gateway.replay_protection.enabled);
}

#[test]
fn two_env_spellings_of_one_key_are_an_error() {
    let line = error_line(load_env(&[
        ("CARACAL_GATEWAY__AUTHMODE", "jwt"),
        ("CARACAL_GATEWAY__AUTH_MODE", "mtls"),
    ]));
    assert!(line.contains("gateway.authMode: set by both CARACAL_GATEWAY__AUTHMODE and CARACAL_GATEWAY__AUTH_MODE"), "{line}");
}

#[test]
fn kubernetes_service_link_variables_are_ignored() {
    let config = load_env(&[
        ("CARACAL_GATEWAY_PORT", "tcp://10.0.0.1:8443"),
        ("CARACAL_GATEWAY_SERVICE_HOST", "10.0.0.1"),
        ("CARACAL_POSTGRES_PORT_5432_TCP", "tcp://10.0.0.2:5432"),
        ("CARACAL_PORT", "tcp://10.0.0.3:80"),
    ])
    .unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn lists_come_from_env_as_commas_or_brackets() {
    let config = load_env(&[
        ("CARACAL_KAFKA__BROKERS", "k1:9092, k2:9092"),
        (
            "CARACAL_GATEWAY__TARGET_URL_ALLOWLIST",
            "[api.example.com, other.example.com:8443]",
        ),
        (
            "CARACAL_CONSUMERS__AUDIT_LOGGER__EXPORT_FORMATS",
            "json,syslog",
        ),
    ])
    .unwrap();
    assert_eq!(config.kafka.brokers, vec!["k1:9092", "k2:9092"]);
    assert_eq!(
        config.gateway.target_url_allowlist,
        vec!["api.example.com", "other.example.com:8443"]
    );
    assert_eq!(
        config.consumers.audit_logger.export_formats,
        vec![ExportFormat::Json, ExportFormat::Syslog]
    );
}

#[test]
fn routes_come_from_env_as_a_whole_list() {
    let routes = r#"[{prefix="/openai", upstream="https://api.openai.com", provider="openai", credentialEnv="OPENAI_API_KEY"}]"#;
    let config = load_env(&[
        ("CARACAL_GATEWAY__ROUTES", routes),
        ("OPENAI_API_KEY", "sk-test"),
    ])
    .unwrap();
    let route = &config.gateway.routes[0];
    assert_eq!(
        (route.prefix.as_str(), route.provider),
        ("/openai", Provider::Openai)
    );
    assert_eq!(route.credential().unwrap().expose(), "sk-test");
    let line = error_line(load_env(&[("CARACAL_GATEWAY__ROUTES__0__PREFIX", "/x")]));
    assert!(
        line.contains("gateway.routes: list items cannot be set one by one"),
        "{line}"
    );
    let typo = r#"[{prefix="/a", upstream="https://a", provider="generic", upstrem="x"}]"#;
    let line = error_line(load_env(&[("CARACAL_GATEWAY__ROUTES", typo)]));
    assert!(
        line.contains("unknown key \"gateway.routes[0].upstrem\""),
        "{line}"
    );
}

#[test]
fn the_audit_logger_alias_is_also_reachable_from_env() {
    let config = load_env(&[("CARACAL_AUDIT_LOGGER__RETENTION_DAYS", "30")]).unwrap();
    assert_eq!(config.consumers.audit_logger.retention_days, 30);
}

#[test]
fn the_audit_logger_alias_and_its_target_must_not_both_set_a_key() {
    let yaml =
        "auditLogger:\n  retentionDays: 1\nconsumers:\n  auditLogger:\n    retentionDays: 2\n";
    let line = error_line(load_yaml(yaml, &[]));
    assert!(
        line.contains("auditLogger.retentionDays: also set as consumers.auditLogger.retentionDays"),
        "{line}"
    );
    let merged =
        "auditLogger:\n  retentionDays: 1\nconsumers:\n  auditLogger:\n    enabled: false\n";
    let audit = load_yaml(merged, &[]).unwrap().consumers.audit_logger;
    assert_eq!((audit.retention_days, audit.enabled), (1, false));
}

#[test]
fn finds_caracal_yaml_before_config_yaml_and_caracal_config_before_both() {
    let dir = tempfile::tempdir().unwrap();
    let load = |vars: Vec<(&str, &str)>| {
        let vars = vars.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned()));
        load_in(None, vars.collect(), dir.path()).unwrap()
    };
    fs::write(dir.path().join("config.yaml"), "admin:\n  port: 1\n").unwrap();
    assert_eq!(load(vec![]).admin.port, 1);
    fs::write(dir.path().join("caracal.yaml"), "admin:\n  port: 2\n").unwrap();
    assert_eq!(load(vec![]).admin.port, 2);
    assert_eq!(
        load(vec![]).file(),
        Some(dir.path().join("caracal.yaml").as_path())
    );
    let named = YamlFile::new("admin:\n  port: 3\n");
    let named_path = named.path().display().to_string();
    assert_eq!(load(vec![("CARACAL_CONFIG", &named_path)]).admin.port, 3);
    let explicit = YamlFile::new("admin:\n  port: 4\n");
    let config = load_in(
        Some(&explicit.path()),
        [("CARACAL_CONFIG".to_owned(), named_path.clone())].into(),
        dir.path(),
    )
    .unwrap();
    assert_eq!(config.admin.port, 4);
}

#[test]
fn a_named_config_file_that_is_missing_is_an_error() {
    let line = error_line(load_env(&[("CARACAL_CONFIG", "/nonexistent/caracal.yaml")]));
    assert!(
        line.contains("cannot read config file /nonexistent/caracal.yaml"),
        "{line}"
    );
}

#[test]
fn the_rendered_config_loads_back_to_the_same_config() {
    let yaml = "gateway:\n  authMode: api_key\n  routes:\n    - prefix: /anthropic\n      upstream: https://api.anthropic.com\n      provider: anthropic\nkafka:\n  brokers: [k:9092]\n";
    let config = load_yaml(yaml, &[]).unwrap();
    let rendered = render_effective(&config);
    let again = load_yaml(&rendered, &[]).unwrap();
    assert_eq!(again.gateway, config.gateway);
    assert_eq!(again.kafka, config.kafka);
}

#[test]
fn an_env_list_replaces_the_files_list() {
    let yaml = "kafka:\n  brokers: [a:9092, b:9092]\n";
    let config = load_yaml(yaml, &[("CARACAL_KAFKA__BROKERS", "c:9092")]).unwrap();
    assert_eq!(config.kafka.brokers, vec!["c:9092"]);
}

#[test]
fn a_config_built_in_code_is_checked_by_validate() {
    let mut config = Config::default();
    assert!(config.validate().is_ok());
    config.gateway.config.max_concurrent_requests = 0;
    let line = config.validate().unwrap_err().to_string();
    assert_eq!(
        line,
        "invalid config: gateway.config.maxConcurrentRequests: must be greater than 0"
    );
}
