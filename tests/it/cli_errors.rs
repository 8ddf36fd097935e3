//! Bad input on the command line: one clear line on stderr, a non-zero exit, and nothing
//! written (checked by reading the store back).

use crate::cli_admin::outbox;
use crate::harness::Env;

fn agent(env: &Env) -> String {
    env.cli(&["agent", "create", "--name", "a", "--output", "json"])
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn policy_args<'a>(
    agent: &'a str,
    limit: &'a str,
    currency: &'a str,
    window: &'a str,
) -> Vec<&'a str> {
    vec![
        "policy",
        "create",
        "--agent-id",
        agent,
        "--limit",
        limit,
        "--currency",
        currency,
        "--time-window",
        window,
    ]
}

#[test]
fn refused_policies_write_nothing_and_say_why() {
    let env = Env::new();
    let agent = agent(&env);
    let before = outbox(&env).len();
    let unknown_agent = "018f0000-0000-7000-8000-000000000000";
    let cases: [(Vec<&str>, &str); 6] = [
        (
            policy_args(&agent, "1.2.3", "USD", "daily"),
            "malformed amount",
        ),
        (
            policy_args(&agent, "0.0000001", "USD", "daily"),
            "more than 6 decimal",
        ),
        (
            policy_args(&agent, "1.00", "XYZ", "daily"),
            "unknown currency",
        ),
        (
            policy_args(&agent, "1.00", "USD", "fortnightly"),
            "unknown time window",
        ),
        (policy_args(&agent, "-1.00", "USD", "daily"), "negative"),
        (
            policy_args(unknown_agent, "1.00", "USD", "daily"),
            "unknown agent",
        ),
    ];
    for (args, expected) in cases {
        let run = env.cli(&args);
        let line = run.user_error();
        assert!(
            line.contains(expected),
            "{args:?}: {line:?} should mention {expected:?}"
        );
    }
    let listed = env.cli(&["policy", "list", "--output", "json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 0);
    assert_eq!(
        outbox(&env).len(),
        before,
        "a refused change left an outbox event"
    );
}

#[test]
fn malformed_ids_and_metadata_are_user_errors() {
    let env = Env::new();
    assert!(env
        .cli(&["agent", "get", "not-a-uuid"])
        .user_error()
        .contains("malformed agent id"));
    let missing = env.cli(&["agent", "get", "018f0000-0000-7000-8000-000000000000"]);
    assert!(missing.user_error().contains("not found"));
    let bad_meta = env.cli(&["agent", "create", "--name", "x", "--metadata", "[1,2]"]);
    assert!(bad_meta.user_error().contains("metadata"));
    let bad_parent = env.cli(&[
        "agent",
        "create",
        "--name",
        "x",
        "--parent",
        "018f0000-0000-7000-8000-000000000000",
    ]);
    assert!(bad_parent.user_error().contains("unknown parent"));
    let listed = env.cli(&["agent", "list", "--output", "json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 0);
    assert!(outbox(&env).is_empty());
}

#[test]
fn a_broken_config_is_one_line_naming_the_problem() {
    let env = Env::new();
    let bad_yaml = env.dir.path().join("bad.yaml");
    std::fs::write(&bad_yaml, "gateway:\n  authMode: [jwt\n").unwrap();
    let run = env.cli(&["--config", bad_yaml.to_str().unwrap(), "agent", "list"]);
    assert!(run.user_error().contains("bad.yaml"), "{}", run.stderr);

    let unknown = env.dir.path().join("unknown.yaml");
    std::fs::write(&unknown, "gateway:\n  authMod: jwt\n").unwrap();
    let run = env.cli(&["--config", unknown.to_str().unwrap(), "agent", "list"]);
    assert!(run.user_error().contains("authMod"), "{}", run.stderr);

    let wrong_type = env.dir.path().join("type.yaml");
    std::fs::write(
        &wrong_type,
        "gateway:\n  config:\n    maxConcurrentRequests: many\n",
    )
    .unwrap();
    let run = env.cli(&["--config", wrong_type.to_str().unwrap(), "agent", "list"]);
    assert!(
        run.user_error().contains("maxConcurrentRequests"),
        "{}",
        run.stderr
    );
    assert!(
        !env.data_dir().exists(),
        "a refused config still created the data dir"
    );
}
