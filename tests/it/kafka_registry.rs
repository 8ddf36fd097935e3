//! `caracal kafka register-schemas` against a stand-in Schema Registry
//! (`tests/python/schema_registry_standin.py`: none can be installed here), judged by Confluent's
//! own `confluent_kafka.schema_registry` client: the four value schemas under `<topic>-value`,
//! byte for byte the `.avsc` files, compatibility BACKWARD, basic auth, idempotent re-runs, and an
//! incompatible registered version refused with the subject named.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

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
