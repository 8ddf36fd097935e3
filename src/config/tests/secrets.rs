//! Secrets: verbatim from env, read from files, masked in Debug, Display and `config show`, and
//! never quoted in an error.
#![allow(clippy::unwrap_used)]

use std::fs;

use super::super::*;
use super::{error_line, load_env, load_yaml};

const PW: &str = "q+Zx/9Lk=AbC/dEf+gh==";

#[test]
fn a_db_password_with_slash_plus_equals_survives_verbatim() {
    for pw in [PW, "0123", "true", "1e5", "[not, a, list]", " spaced "] {
        let config = load_env(&[("DB_PASSWORD", pw), ("REDIS_PASSWORD", pw)]).unwrap();
        assert_eq!(config.postgresql.password.as_ref().unwrap().expose(), pw);
        assert_eq!(config.redis.password.as_ref().unwrap().expose(), pw);
    }
}

#[test]
fn a_secret_written_as_a_yaml_number_is_read_as_its_text() {
    let config = load_yaml("kafka:\n  schemaRegistry:\n    password: 12345\n", &[]).unwrap();
    assert_eq!(
        config.kafka.schema_registry.password.unwrap().expose(),
        "12345"
    );
}

#[test]
fn secrets_are_read_from_files_without_the_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db-password");
    fs::write(&db, format!("{PW}\n")).unwrap();
    let token = dir.path().join("admin-token");
    fs::write(&token, "tok-en\r\n").unwrap();
    let yaml = format!("admin:\n  tokenFile: {}\n", token.display());
    let db_path = db.display().to_string();
    let config = load_yaml(&yaml, &[("DB_PASSWORD_FILE", &db_path)]).unwrap();
    assert_eq!(config.postgresql.password.unwrap().expose(), PW);
    assert_eq!(config.admin.token.unwrap().expose(), "tok-en");
    let via_caracal_env = load_env(&[("CARACAL_REDIS__PASSWORD_FILE", &db_path)]).unwrap();
    assert_eq!(via_caracal_env.redis.password.unwrap().expose(), PW);
}

#[test]
fn the_higher_layer_chooses_between_a_secret_and_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    fs::write(&file, "from-file\n").unwrap();
    let path = file.display().to_string();
    let yaml_file = format!("postgresql:\n  passwordFile: {path}\n");
    let config = load_yaml(&yaml_file, &[("DB_PASSWORD", "from-env")]).unwrap();
    assert_eq!(config.postgresql.password.unwrap().expose(), "from-env");
    assert_eq!(config.postgresql.password_file, None);
    let yaml_value = "postgresql:\n  password: from-yaml\n";
    let config = load_yaml(yaml_value, &[("DB_PASSWORD_FILE", &path)]).unwrap();
    assert_eq!(config.postgresql.password.unwrap().expose(), "from-file");
}

#[test]
fn a_secret_and_its_file_in_the_same_layer_are_an_error() {
    let line = error_line(load_yaml(
        "redis:\n  password: a\n  passwordFile: /x\n",
        &[],
    ));
    assert!(
        line.contains("redis.password: set both redis.password in"),
        "{line}"
    );
    let line = error_line(load_env(&[
        ("DB_PASSWORD", "a"),
        ("DB_PASSWORD_FILE", "/x"),
    ]));
    assert!(
        line.contains(
            "(from env DB_PASSWORD) and postgresql.passwordFile (from env DB_PASSWORD_FILE)"
        ),
        "{line}"
    );
    assert!(!line.contains(" a "), "{line}");
}

#[test]
fn an_unreadable_secret_file_names_key_and_path_but_not_content() {
    let line = error_line(load_env(&[("DB_PASSWORD_FILE", "/nonexistent/pw")]));
    assert!(line.starts_with("invalid config: postgresql.passwordFile: cannot read secret file /nonexistent/pw (from env DB_PASSWORD_FILE): "), "{line}");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    fs::write(&empty, "\n").unwrap();
    let yaml = format!(
        "kafka:\n  security:\n    saslPasswordFile: {}\n",
        empty.display()
    );
    let line = error_line(load_yaml(&yaml, &[]));
    assert!(
        line.contains("kafka.security.saslPasswordFile: cannot read secret file"),
        "{line}"
    );
    assert!(line.ends_with("the file is empty"), "{line}");
    let binary = dir.path().join("binary");
    fs::write(&binary, [0xff, 0xfe, b's', b'e', b'c']).unwrap();
    let line = error_line(load_env(&[(
        "REDIS_PASSWORD_FILE",
        binary.to_str().unwrap(),
    )]));
    assert!(line.ends_with("the file is not UTF-8"), "{line}");
}

#[test]
fn route_credentials_come_from_a_file_or_a_variable() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("anthropic-key");
    fs::write(&key, "sk-ant-file\n").unwrap();
    let yaml = format!(
        "gateway:\n  routes:\n    - {{prefix: /openai, upstream: 'https://api.openai.com', provider: openai, credentialEnv: OPENAI_API_KEY}}\n    - {{prefix: /anthropic, upstream: 'https://api.anthropic.com', provider: anthropic, credentialFile: {}}}\n",
        key.display()
    );
    let config = load_yaml(&yaml, &[("OPENAI_API_KEY", "sk-env")]).unwrap();
    assert_eq!(
        config.gateway.routes[0].credential().unwrap().expose(),
        "sk-env"
    );
    assert_eq!(
        config.gateway.routes[1].credential().unwrap().expose(),
        "sk-ant-file"
    );
    // Without the variable the config still loads (admin commands need no upstream
    // credential); the gateway role's check refuses with one line naming the key.
    let config = load_yaml(&yaml, &[]).unwrap();
    assert!(config.gateway.routes[0].credential().is_none());
    let line = config.gateway_credentials().unwrap_err().to_string();
    assert!(
        line.contains(
            "gateway.routes[0].credentialEnv: environment variable OPENAI_API_KEY is not set in "
        ),
        "{line}"
    );
    assert!(load_yaml(&yaml, &[("OPENAI_API_KEY", "sk-env")])
        .unwrap()
        .gateway_credentials()
        .is_ok());
}

#[test]
fn an_unreadable_credential_file_is_refused_only_by_the_role_that_sends_it() {
    let yaml = "gateway:\n  routes:\n    - {prefix: /a, upstream: 'https://a', provider: anthropic, credentialFile: /nonexistent/key}\nmcpAdapter:\n  servers:\n    - {name: tools, url: 'https://t', credentialEnv: TOOLS_TOKEN}\n";
    let config = load_yaml(yaml, &[]).unwrap();
    let line = config.gateway_credentials().unwrap_err().to_string();
    assert!(
        line.contains("gateway.routes[0].credentialFile: cannot read secret file /nonexistent/key"),
        "{line}"
    );
    let line = config.mcp_credentials().unwrap_err().to_string();
    assert!(
        line.contains("mcpAdapter.servers[0].credentialEnv: environment variable TOOLS_TOKEN"),
        "{line}"
    );
}

#[test]
fn secrets_never_appear_in_debug_or_the_rendered_config() {
    let secrets = [
        (
            "CARACAL_POSTGRESQL__URL",
            "postgres://caracal:pg-url-secret@db:5432/caracal?password=q-secret",
        ),
        ("DB_PASSWORD", "db-pass-secret"),
        (
            "CARACAL_REDIS__URL",
            "rediss://:redis-url-secret@cache:6379/0",
        ),
        ("REDIS_PASSWORD", "redis-pass-secret"),
        ("CARACAL_KAFKA__SECURITY__PROTOCOL", "SASL_SSL"),
        ("CARACAL_KAFKA__SECURITY__SASL_MECHANISM", "SCRAM-SHA-512"),
        ("CARACAL_KAFKA__SECURITY__SASL_USERNAME", "caracal-producer"),
        ("CARACAL_KAFKA__SECURITY__SASL_PASSWORD", "sasl-secret"),
        (
            "CARACAL_KAFKA__SCHEMA_REGISTRY__PASSWORD",
            "registry-secret",
        ),
        ("CARACAL_ADMIN__TOKEN", "admin-token-secret"),
        (
            "CARACAL_GATEWAY__ROUTES",
            r#"[{prefix="/o", upstream="https://o", provider="openai", credentialEnv="K"}]"#,
        ),
        ("K", "route-credential-secret"),
        (
            "CARACAL_CONSUMERS__AUDIT_LOGGER__S3__ACCESS_KEY_ID",
            "s3-id-secret",
        ),
        (
            "CARACAL_CONSUMERS__AUDIT_LOGGER__S3__SECRET_ACCESS_KEY",
            "s3-key-secret",
        ),
        (
            "CARACAL_CONSUMERS__AUDIT_LOGGER__S3__SESSION_TOKEN",
            "s3-token-secret",
        ),
    ];
    let config = load_env(&secrets).unwrap();
    let debug = format!("{config:?}");
    let rendered = render_effective(&config);
    // Every value above ends in `-secret` (key names such as `secretAccessKey` do not).
    for needle in ["-secret", "q-secret"] {
        assert!(!debug.contains(needle), "Debug leaks: {debug}");
        assert!(!rendered.contains(needle), "render leaks: {rendered}");
    }
    assert!(
        rendered.contains("url: postgres://caracal:***@db:5432/caracal?password=***"),
        "{rendered}"
    );
    assert!(
        rendered.contains("url: rediss://:***@cache:6379/0"),
        "{rendered}"
    );
    assert!(rendered.contains("saslPassword: '***'"), "{rendered}");
    assert!(rendered.contains("token: '***'"), "{rendered}");
    assert_eq!(
        config.postgresql.password.as_ref().unwrap().to_string(),
        MASK
    );
    assert_eq!(
        config.admin.token.as_ref().unwrap().expose(),
        "admin-token-secret"
    );
}

#[test]
fn a_secret_of_the_wrong_type_is_refused_without_quoting_it() {
    let line = error_line(load_yaml("admin:\n  token: {value: not-shown}\n", &[]));
    assert!(
        line.contains("admin.token: expected a string, found map"),
        "{line}"
    );
    assert!(!line.contains("not-shown"), "{line}");
}

#[test]
fn masks_passwords_in_urls() {
    let cases = [
        ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
        (
            "postgres://u:p/w@rd@h:5432/db",
            "postgres://u:***@h:5432/db",
        ),
        (
            "postgresql://h/db?user=u&password=pw&sslmode=require",
            "postgresql://h/db?user=u&password=***&sslmode=require",
        ),
        ("redis://:pw@h:6379", "redis://:***@h:6379"),
        ("redis://user@h:6379", "redis://user@h:6379"),
        ("postgres://h/db", "postgres://h/db"),
        ("not a url with pw", "***"),
    ];
    for (url, masked) in cases {
        assert_eq!(mask_url(url), masked, "{url}");
        assert_eq!(format!("{:?}", SecretUrl::new(url)), format!("{masked:?}"));
    }
}
