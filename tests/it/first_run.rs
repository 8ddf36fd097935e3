//! What a new user meets in the first ten minutes, README in hand: `--version`, admin commands
//! that need no upstream credential, global options after the command, a quiet consumer start,
//! security settings that would be ignored refused, and a test command that checks style.

use std::time::Duration;

use crate::harness::{request, wait_for, Env};

/// The README's gateway routes, whose credentials come from variables this shell has not set.
const README_ROUTES: &str = "gateway:
  routes:
    - {prefix: /openai, upstream: https://api.openai.com, provider: openai, credentialEnv: OPENAI_API_KEY}
    - {prefix: /anthropic, upstream: https://api.anthropic.com, provider: anthropic, credentialEnv: ANTHROPIC_API_KEY}
";

/// How long a command that refuses to start may take.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(20);

fn with_config(yaml: &str) -> Env {
    let env = Env::new();
    std::fs::write(env.dir.path().join("caracal.yaml"), yaml).unwrap();
    env
}

#[test]
fn version_is_printed_and_shown_in_health_and_the_startup_line() {
    let version = env!("CARGO_PKG_VERSION");
    let env = Env::new();
    for flag in ["--version", "-V"] {
        let run = env.cli(&[flag]);
        assert!(
            run.ok().starts_with(&format!("caracal {version}")),
            "{}",
            run.stdout
        );
    }
    let server = env.serve(&["--role", "admin"]);
    for url in [server.telemetry_url("/health"), server.admin_url("/health")] {
        let health = request("GET", &url, &[], None).json();
        assert_eq!(health["status"], "ok");
        assert_eq!(health["version"], version, "{url}");
    }
    let log = server.log();
    let starting = log
        .lines()
        .find(|l| l.contains("caracal starting"))
        .unwrap();
    assert!(
        starting.contains(&format!("caracal {version}")),
        "{starting}"
    );
}

#[test]
fn admin_commands_need_no_upstream_credential_but_the_gateway_refuses_without_it() {
    let env = with_config(README_ROUTES);
    let created = env
        .cli(&["agent", "create", "--name", "team", "--output", "json"])
        .json();
    assert_eq!(created["name"], "team");
    assert!(env.cli(&["config", "show"]).ok().contains("OPENAI_API_KEY"));
    let server = env.serve(&["--role", "admin", "--role", "ledger"]);
    assert_eq!(
        request("GET", &server.telemetry_url("/ready"), &[], None).status,
        200
    );
    drop(server);
    let refused = env.cli_within(&["serve", "--role", "gateway"], REFUSAL_DEADLINE);
    let line = refused.user_error();
    assert!(
        line.contains(
            "gateway.routes[0].credentialEnv: environment variable OPENAI_API_KEY is not set"
        ),
        "{line}"
    );
}

#[test]
fn global_options_are_accepted_after_the_command() {
    let env = Env::new();
    let file = env.dir.path().join("elsewhere.yaml");
    std::fs::write(&file, "gateway:\n  config:\n    requestTimeout: 45\n").unwrap();
    let path = file.to_str().unwrap();
    for args in [
        vec!["config", "show", "--config", path],
        vec!["--config", path, "config", "show"],
    ] {
        let shown = env.cli(&args);
        assert!(shown.ok().contains("requestTimeout: 45"), "{args:?}");
    }
    let equals = format!("--config={path}");
    assert!(env
        .cli(&["config", "show", &equals])
        .ok()
        .contains("requestTimeout: 45"));
    env.cli(&["agent", "list", "--config", path, "--output", "json"])
        .json();
}

#[test]
fn consumers_log_one_line_each_with_their_partitions_not_one_per_partition() {
    let env = Env::new();
    let server = env.serve(&["--role", "ledger", "--role", "audit"]);
    let owned = |log: &str, consumer: &str| -> usize {
        log.lines()
            .filter(|l| l.contains("consumer owns partitions"))
            .filter(|l| l.contains(&format!("consumer={consumer}")))
            .count()
    };
    let log = wait_for(
        "both consumers to report their partitions",
        Duration::from_secs(20),
        || {
            let log = server.log();
            let ledger_all = log.lines().any(|l| {
                l.contains("consumer=ledger") && l.contains("caracal.metering.events 0-9")
            });
            (ledger_all && owned(&log, "audit") > 0).then_some(log)
        },
    );
    assert_eq!(owned(&log, "ledger"), 1, "{log}");
    assert_eq!(owned(&log, "audit"), 1, "{log}");
    assert!(!log.contains("partition acquired"), "{log}");
    let info_lines = log.lines().filter(|l| l.contains(" INFO ")).count();
    assert!(info_lines <= 10, "{info_lines} INFO lines on start:\n{log}");
}

#[test]
fn security_settings_for_a_backend_without_a_host_are_refused_by_serve() {
    let cases = [
        ("postgresql:\n  ssl: {enabled: true, mode: require}\n", "postgresql.ssl is set but postgresql has no host"),
        ("redis:\n  tls: {enabled: true}\n", "redis.tls is set but redis has no host"),
        (
            "kafka:\n  security: {protocol: SASL_SSL, saslMechanism: SCRAM-SHA-512, saslUsername: u, saslPassword: p}\n",
            "kafka.security set but kafka.brokers is empty",
        ),
    ];
    for (yaml, expected) in cases {
        let env = with_config(yaml);
        let refused = env.cli_within(&["serve"], REFUSAL_DEADLINE);
        let line = refused.user_error();
        assert!(line.contains(expected), "{line}");
        assert!(
            !env.data_dir().join("events.db").exists(),
            "{yaml} opened the embedded log"
        );
    }
}

#[test]
fn the_test_command_checks_formatting_and_lints_before_the_tests() {
    let script =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test.sh")).unwrap();
    let at = |needle: &str| {
        script
            .lines()
            .position(|l| l.trim_start().starts_with(needle))
            .unwrap_or_else(|| panic!("scripts/test.sh does not run `{needle}`"))
    };
    let fmt = at("cargo fmt --all --check");
    let clippy = at("cargo clippy --all-targets -- -D warnings");
    let test = at("cargo test --all-targets");
    assert!(
        fmt < test && clippy < test,
        "style checks run after the tests"
    );
}
