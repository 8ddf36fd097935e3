//! `caracal kafka register-schemas` against a stand-in Schema Registry
//! (`tests/python/schema_registry_standin.py`: none can be installed here), judged by Confluent's
//! own `confluent_kafka.schema_registry` client: the four value schemas under `<topic>-value`,
//! byte for byte the `.avsc` files, compatibility BACKWARD, basic auth, idempotent re-runs, and an
//! incompatible registered version refused with the subject named; `serve` with the registry
//! configured frames every event with the registered ids (judged by `AvroDeserializer`), and a
//! registry out of reach or an incompatible schema stops its start.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{python, Env};

const SUBJECTS: [(&str, &str); 4] = [
    ("caracal.metering.events-value", "metering-event.avsc"),
    ("caracal.policy.decisions-value", "policy-decision.avsc"),
    ("caracal.agent.lifecycle-value", "agent-lifecycle.avsc"),
    ("caracal.policy.changes-value", "policy-change.avsc"),
];

/// What Confluent's client sees: per subject, the latest schema (parsed), its id and the
/// subject's compatibility.
const JUDGE: &str = r#"
import json, sys
from confluent_kafka.schema_registry import SchemaRegistryClient
client = SchemaRegistryClient({"url": sys.argv[1], "basic.auth.user.info": sys.argv[2]})
out = {}
for subject in sys.argv[3:]:
    latest = client.get_latest_version(subject)
    out[subject] = {"id": latest.schema_id, "schema": json.loads(latest.schema.schema_str),
                    "compatibility": client.get_compatibility(subject)}
print(json.dumps(out))
"#;

/// Registers an old, incompatible PolicyChange (no field Caracal's has) before Caracal does.
const OLD_SCHEMA: &str = r#"
import sys
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
client = SchemaRegistryClient({"url": sys.argv[1], "basic.auth.user.info": sys.argv[2]})
old = '{"type": "record", "name": "PolicyChange", "namespace": "caracal.v1", "fields": [{"name": "legacy", "type": "string"}]}'
client.register_schema("caracal.policy.changes-value", Schema(old, "AVRO"))
"#;

struct StandIn {
    child: Child,
    url: String,
}

impl StandIn {
    fn start() -> StandIn {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/schema_registry_standin.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg("caracal:registry-secret")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().unwrap();
        StandIn {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python_run(script: &str, args: &[&str]) -> String {
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn env_for(registry: &StandIn, password: &str) -> Env {
    let env = Env::new();
    let yaml = format!(
        "kafka:\n  schemaRegistry: {{url: '{}', username: caracal, password: {password}}}\n",
        registry.url
    );
    std::fs::write(env.dir.path().join("caracal.yaml"), yaml).unwrap();
    env
}

#[test]
fn register_schemas_puts_the_four_value_schemas_under_their_subjects_with_backward() {
    let registry = StandIn::start();
    let env = env_for(&registry, "registry-secret");
    let first = env
        .cli(&["kafka", "register-schemas", "--output", "json"])
        .json();
    let again = env
        .cli(&["kafka", "register-schemas", "--output", "json"])
        .json();
    assert_eq!(first, again, "a second run registered new versions");

    let mut args = vec![registry.url.as_str(), "caracal:registry-secret"];
    args.extend(SUBJECTS.map(|(s, _)| s));
    let seen: Value = serde_json::from_str(&python_run(JUDGE, &args)).unwrap();
    for (i, (subject, file)) in SUBJECTS.iter().enumerate() {
        let avsc = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("schemas")
                .join(file),
        )
        .unwrap();
        let avsc: Value = serde_json::from_str(&avsc).unwrap();
        assert_eq!(seen[subject]["schema"], avsc, "{subject}");
        assert_eq!(seen[subject]["compatibility"], "BACKWARD", "{subject}");
        assert_eq!(seen[subject]["id"], first[i]["id"], "{subject}");
        assert_eq!(first[i]["subject"], *subject);
    }

    let wrong = env_for(&registry, "not-the-secret");
    let run = wrong.cli(&["kafka", "register-schemas"]);
    let error = run.user_error();
    assert!(
        error.contains("401") && error.contains("caracal.metering.events-value"),
        "{error}"
    );
    assert!(!error.contains("not-the-secret"), "{error}");
}

#[test]
fn an_incompatible_registered_version_is_refused_naming_the_subject() {
    let registry = StandIn::start();
    python_run(OLD_SCHEMA, &[&registry.url, "caracal:registry-secret"]);
    let env = env_for(&registry, "registry-secret");
    let run = env.cli(&["kafka", "register-schemas"]);
    let error = run.user_error();
    assert!(error.contains("caracal.policy.changes-value"), "{error}");
    assert!(error.contains("not BACKWARD compatible"), "{error}");
}

/// The gateway, admin and ledger roles with the stand-in configured: every event value on the
/// embedded log is in the Confluent wire format with the registered ids, decoded by Confluent's
/// `AvroDeserializer` (which fetches the schema by id); the ledger holds each charge once.
#[test]
fn serve_frames_every_event_with_the_registered_ids_and_the_ledger_reads_them() {
    use crate::harness::gateway::{gateway_env, tree, Gateway, Mock};
    use crate::ledger::{query, wait_sealed};

    let registry = StandIn::start();
    let mock = Mock::start(&[]);
    let settings = [
        ("CARACAL_KAFKA__SCHEMAREGISTRY__URL", registry.url.as_str()),
        ("CARACAL_KAFKA__SCHEMAREGISTRY__USERNAME", "caracal"),
        ("CARACAL_KAFKA__SCHEMAREGISTRY__PASSWORD", "registry-secret"),
        (
            "CARACAL_CONSUMERS__LEDGERWRITER__MERKLE__BATCHTIMEOUTSECONDS",
            "1",
        ),
    ];
    let env = gateway_env(&mock, &settings);
    let t = tree(&env, "10.00", "5.00");
    let gw = Gateway::start_roles(env, &["gateway", "admin", "ledger"]);
    let mut expected = 0;
    for max_tokens in [5, 9, 13] {
        let body = serde_json::json!({"model": "mock-gpt", "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "frame me"}]})
        .to_string();
        let response = gw.post("/openai/v1/chat/completions", &t.key, &body);
        assert_eq!(response.status, 200, "{}", response.body);
        let usage = &response.json()["usage"];
        expected += usage["prompt_tokens"].as_i64().unwrap()
            + 2 * usage["completion_tokens"].as_i64().unwrap();
    }
    wait_sealed(&gw.env, 3);
    let team = query(&gw.env, &t.parent, &["--include-children"]);
    assert_eq!(team["totals"][0]["events"], 3);
    assert_eq!(team["totals"][0]["total_micros"], expected);

    let ids: Value = {
        let mut args = vec![registry.url.as_str(), "caracal:registry-secret"];
        args.extend(SUBJECTS.map(|(s, _)| s));
        serde_json::from_str(&python_run(JUDGE, &args)).unwrap()
    };
    // The relay publishes the tree's admin events within its poll interval.
    let decoded = crate::harness::wait_for("the admin events", Duration::from_secs(20), || {
        let decoded = judge_log(&gw.env, &registry);
        let admin = decoded
            .iter()
            .filter(|m| m["topic"] == "caracal.policy.changes")
            .count();
        (admin >= 2).then_some(decoded)
    });
    let mut charged = 0;
    let mut metering_ids = std::collections::HashSet::new();
    for message in &decoded {
        let topic = message["topic"].as_str().unwrap();
        assert_eq!(message["magic"], 0, "{message}");
        assert_eq!(message["schema_id"], ids[format!("{topic}-value")]["id"]);
        if topic == "caracal.metering.events" {
            charged += message["record"]["cost_micros"].as_i64().unwrap();
            assert!(metering_ids.insert(message["record"]["event_id"].to_string()));
        }
    }
    assert_eq!(metering_ids.len(), 3, "{decoded:#?}");
    assert_eq!(charged, expected);
    for topic in ["caracal.policy.decisions", "caracal.agent.lifecycle"] {
        assert!(decoded.iter().any(|m| m["topic"] == topic), "{topic}");
    }
}

/// Every event message of `env`'s embedded log, decoded by `registry_decode.py`.
fn judge_log(env: &Env, registry: &StandIn) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/registry_decode.py");
    let output = Command::new(python())
        .arg(script)
        .arg(env.data_dir().join("events.db"))
        .arg(&registry.url)
        .arg("caracal:registry-secret")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "registry_decode.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Value>(&output.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn serve_refuses_to_start_when_the_registry_is_out_of_reach() {
    let url = format!("http://127.0.0.1:{}", crate::harness::free_port());
    let env = Env::new().with("CARACAL_KAFKA__SCHEMAREGISTRY__URL", &url);
    let run = env.cli_within(
        &["serve", "--role", "gateway", "--role", "ledger"],
        Duration::from_secs(30),
    );
    let error = run.user_error();
    assert!(
        error.contains("Schema Registry") && error.contains(&url),
        "{error}"
    );
}

#[test]
fn serve_refuses_to_start_when_a_schema_is_incompatible_naming_the_subject() {
    let registry = StandIn::start();
    python_run(OLD_SCHEMA, &[&registry.url, "caracal:registry-secret"]);
    let env = env_for(&registry, "registry-secret");
    let run = env.cli_within(&["serve", "--role", "gateway"], Duration::from_secs(30));
    let error = run.user_error();
    assert!(error.contains("caracal.policy.changes-value"), "{error}");
    assert!(error.contains("not BACKWARD compatible"), "{error}");
}
