//! `caracal kafka create-topics|list-topics|describe-topic` against a real tansu broker, judged
//! by Confluent's own Python client (`confluent_kafka.admin.AdminClient`): the five topics with
//! the seeds' partition counts and configs, idempotent re-runs, dry runs, drift, SCRAM logins,
//! TLS with client certificates (stunnel in front of tansu).
//!
//! What tansu 0.6 does with topic configs (measured): it stores exactly the configs sent with
//! CreateTopics and DescribeConfigs returns those and nothing else (no broker defaults), so the
//! checks below see what Caracal sent. It accepts any replication factor on one broker and lists
//! that broker N times as replicas and ISR; the tests use RF 1 / min ISR 1 (a single broker), and
//! `min.insync.replicas` is checked to be the configured value, not a default.

use std::process::Command;

use serde_json::Value;

use crate::harness::certs::make_certificates;
use crate::harness::tansu::Tansu;
use crate::harness::{python, Env, TempDir};

/// What Confluent's AdminClient sees: partition counts and topic configs of `caracal.*`
/// (argv: bootstrap servers, then optional client settings as JSON, e.g. SASL).
const JUDGE: &str = r#"
import json, sys
from confluent_kafka.admin import AdminClient, ConfigResource
settings = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
admin = AdminClient({"bootstrap.servers": sys.argv[1], **settings})
topics = admin.list_topics(timeout=20).topics
ours = sorted(n for n in topics if n.startswith("caracal."))
out = {"partitions": {n: len(topics[n].partitions) for n in ours}, "configs": {}}
if ours:
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, n) for n in ours])
    for resource, future in futures.items():
        out["configs"][resource.name] = {k: v.value for k, v in future.result(timeout=20).items()}
print(json.dumps(out))
"#;

/// Produces `count` records into `topic` partition `partition` with Confluent's producer.
const PRODUCE: &str = r#"
import sys
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": sys.argv[1]})
for i in range(int(sys.argv[4])):
    p.produce(sys.argv[2], value=b"v%d" % i, partition=int(sys.argv[3]))
assert p.flush(20) == 0
"#;

/// Creates `topic` with `partitions` through Confluent's AdminClient (a topic made by someone else).
const CREATE_OTHER: &str = r#"
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in admin.create_topics([NewTopic(sys.argv[2], int(sys.argv[3]), 1)]).values():
    f.result(timeout=20)
"#;

fn python_run(script: &str, args: &[&str]) -> String {
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("python: {e}"));
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn judge(broker: &Tansu) -> Value {
    serde_json::from_str(&python_run(JUDGE, &[&broker.address()])).unwrap()
}

/// A Caracal environment whose config points at `broker`, lz4 topics, RF 1 / min ISR 1.
fn env_for(broker: &Tansu) -> Env {
    let env = Env::new();
    let yaml = format!(
        "kafka:\n  brokers: ['{}']\n  compression: lz4\n  config: {{defaultReplicationFactor: 1, minInsyncReplicas: 1}}\n",
        broker.address()
    );
    std::fs::write(env.dir.path().join("caracal.yaml"), yaml).unwrap();
    env
}

fn actions(report: &Value) -> Vec<(String, String)> {
    report
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["topic"].as_str().unwrap().to_owned(),
                o["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

const FIVE: [(&str, u64); 5] = [
    ("caracal.agent.lifecycle", 3),
    ("caracal.dlq", 3),
    ("caracal.metering.events", 10),
    ("caracal.policy.changes", 3),
    ("caracal.policy.decisions", 5),
];

#[test]
fn create_topics_makes_the_five_topics_once_and_a_dry_run_makes_none() {
    let broker = Tansu::empty();
    let env = env_for(&broker);

    let dry = env
        .cli(&["kafka", "create-topics", "--dry-run", "--output", "json"])
        .json();
    assert!(
        actions(&dry).iter().all(|(_, a)| a == "would_create"),
        "{dry}"
    );
    assert_eq!(
        judge(&broker)["partitions"],
        serde_json::json!({}),
        "a dry run created topics"
    );

    let first = env
        .cli(&["kafka", "create-topics", "--output", "json"])
        .json();
    assert_eq!(actions(&first).len(), 5);
    assert!(
        actions(&first).iter().all(|(_, a)| a == "created"),
        "{first}"
    );

    let seen = judge(&broker);
    for (topic, partitions) in FIVE {
        assert_eq!(seen["partitions"][topic], partitions, "{topic}: {seen}");
        let configs = &seen["configs"][topic];
        assert_eq!(configs["retention.ms"], "2592000000", "{topic}: {configs}");
        assert_eq!(configs["compression.type"], "lz4", "{topic}: {configs}");
        assert_eq!(configs["min.insync.replicas"], "1", "{topic}: {configs}");
    }

    let second = env
        .cli(&["kafka", "create-topics", "--output", "json"])
        .json();
    assert!(
        actions(&second).iter().all(|(_, a)| a == "exists"),
        "{second}"
    );
    assert_eq!(judge(&broker), seen, "a second run changed the topics");

    let table = env.cli(&["kafka", "create-topics", "--dry-run"]);
    let row = table
        .ok()
        .lines()
        .find(|l| l.starts_with("caracal.metering.events"))
        .unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        ["caracal.metering.events", "10", "1", "exists"],
        "{row}"
    );
}

#[test]
fn an_existing_topic_with_other_settings_is_reported_and_left_alone() {
    let broker = Tansu::empty();
    let env = env_for(&broker);
    python_run(CREATE_OTHER, &[&broker.address(), "caracal.dlq", "1"]);

    let run = env.cli(&["kafka", "create-topics"]);
    let error = run.user_error();
    assert!(error.contains("1 existing topic(s) differ"), "{error}");
    let dlq = run
        .stdout
        .lines()
        .find(|l| l.starts_with("caracal.dlq"))
        .unwrap();
    assert!(dlq.contains("exists, differs"), "{dlq}");
    assert!(dlq.contains("partitions 1 (expected 3)"), "{dlq}");

    let seen = judge(&broker);
    assert_eq!(
        seen["partitions"]["caracal.dlq"], 1,
        "the existing topic was altered"
    );
    assert_eq!(seen["partitions"]["caracal.metering.events"], 10, "{seen}");
}

#[test]
fn list_and_describe_show_partitions_leaders_and_high_watermarks() {
    let broker = Tansu::empty();
    let env = env_for(&broker);
    env.cli(&["kafka", "create-topics"]).ok();
    python_run(CREATE_OTHER, &[&broker.address(), "other.topic", "2"]);
    python_run(
        PRODUCE,
        &[&broker.address(), "caracal.metering.events", "7", "4"],
    );

    let listed = env
        .cli(&[
            "kafka",
            "list-topics",
            "--filter",
            "caracal.",
            "--output",
            "json",
        ])
        .json();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, FIVE.map(|(n, _)| n), "{listed}");

    let described = env
        .cli(&[
            "kafka",
            "describe-topic",
            "caracal.metering.events",
            "--output",
            "json",
        ])
        .json();
    let partitions = described["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 10);
    let watermarks: Vec<i64> = partitions
        .iter()
        .map(|p| p["high_watermark"].as_i64().unwrap())
        .collect();
    assert_eq!(watermarks, [0, 0, 0, 0, 0, 0, 0, 4, 0, 0]);
    assert!(partitions
        .iter()
        .all(|p| p["leader"].as_i64().unwrap() >= 0));
    assert_eq!(described["configs"]["retention.ms"], "2592000000");

    let missing = env.cli(&["kafka", "describe-topic", "no.such.topic"]);
    assert!(missing
        .user_error()
        .contains("no.such.topic does not exist"));
}

#[test]
fn an_unreachable_broker_is_one_line_naming_it() {
    let port = crate::harness::free_port();
    let env = Env::new();
    let yaml = format!("kafka:\n  brokers: ['127.0.0.1:{port}']\n");
    std::fs::write(env.dir.path().join("caracal.yaml"), yaml).unwrap();
    let run = env.cli(&["kafka", "list-topics", "--timeout-ms", "3000"]);
    let error = run.user_error();
    assert!(
        error.contains(&format!("cannot reach broker 127.0.0.1:{port}")),
        "{error}"
    );
}

/// The seeds' client.properties shape (SASL over plaintext: tansu has no TLS listener).
fn scram_properties(broker: &Tansu, mechanism: &str, password: &str) -> String {
    format!(
        "# written like the seeds' kafka-certs/client.properties\n\
         bootstrap.servers={}\n\
         security.protocol=SASL_PLAINTEXT\n\
         sasl.mechanism={mechanism}\n\
         sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n    \
         username=\"admin\" \\\n    password=\"{password}\";\n",
        broker.address()
    )
}

#[test]
fn the_seeds_properties_file_logs_in_with_scram_and_a_wrong_password_is_one_clear_line() {
    let broker = Tansu::start_with_scram(&[("admin", "admin-secret")], false);
    let env = Env::new();
    let file = env.dir.path().join("client.properties");
    std::fs::write(
        &file,
        scram_properties(&broker, "SCRAM-SHA-512", "admin-secret"),
    )
    .unwrap();
    let file = file.display().to_string();

    let created = env
        .cli(&[
            "kafka",
            "create-topics",
            "--config-file",
            &file,
            "--output",
            "json",
        ])
        .json();
    assert!(
        actions(&created).iter().all(|(_, a)| a == "created"),
        "{created}"
    );
    let sasl = r#"{"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                   "sasl.username": "admin", "sasl.password": "admin-secret"}"#;
    let seen: Value = serde_json::from_str(&python_run(JUDGE, &[&broker.address(), sasl])).unwrap();
    assert_eq!(seen["partitions"]["caracal.metering.events"], 10, "{seen}");
    assert_eq!(
        seen["configs"]["caracal.dlq"]["retention.ms"], "2592000000",
        "{seen}"
    );

    let sha256 = env.dir.path().join("sha256.properties");
    std::fs::write(
        &sha256,
        scram_properties(&broker, "SCRAM-SHA-256", "admin-secret"),
    )
    .unwrap();
    let listed = env.cli(&[
        "kafka",
        "list-topics",
        "--config-file",
        &sha256.display().to_string(),
    ]);
    assert_eq!(
        listed
            .ok()
            .lines()
            .filter(|l| l.starts_with("caracal."))
            .count(),
        5
    );

    let wrong = env.dir.path().join("wrong.properties");
    std::fs::write(
        &wrong,
        scram_properties(&broker, "SCRAM-SHA-512", "not-the-secret"),
    )
    .unwrap();
    let run = env.cli(&[
        "kafka",
        "list-topics",
        "--config-file",
        &wrong.display().to_string(),
        "--timeout-ms",
        "20000",
    ]);
    let error = run.user_error();
    assert!(error.contains(&broker.address()), "{error}");
    assert!(
        error.contains("SCRAM-SHA-512") && error.contains("\"admin\""),
        "{error}"
    );
    assert!(
        !error.contains("did not answer"),
        "a wrong password must not wait for the deadline: {error}"
    );
    assert!(!error.contains("not-the-secret"), "{error}");

    let open = Env::new();
    let yaml = format!("kafka:\n  brokers: ['{}']\n", broker.address());
    std::fs::write(open.dir.path().join("caracal.yaml"), yaml).unwrap();
    let refused = open.cli(&["kafka", "list-topics", "--timeout-ms", "20000"]);
    let error = refused.user_error();
    assert!(error.contains("does it require TLS or SASL"), "{error}");
}

#[test]
fn tls_with_a_client_certificate_from_the_config_or_a_properties_file_in_pem_or_pkcs12() {
    let certs = TempDir::new();
    make_certificates(certs.path(), "caracal");
    let broker = Tansu::start_tls(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let env = Env::new();
    let yaml = format!(
        "kafka:\n  brokers: ['{}']\n  compression: zstd\n  security: {{protocol: SSL}}\n  \
         ssl: {{caFile: {}, certFile: {}, keyFile: {}}}\n  \
         config: {{defaultReplicationFactor: 1, minInsyncReplicas: 1}}\n",
        broker.address(),
        file("ca.crt"),
        file("client.crt"),
        file("client.key")
    );
    std::fs::write(env.dir.path().join("caracal.yaml"), yaml).unwrap();
    let created = env
        .cli(&["kafka", "create-topics", "--output", "json"])
        .json();
    assert!(
        actions(&created).iter().all(|(_, a)| a == "created"),
        "{created}"
    );
    let described = env
        .cli(&[
            "kafka",
            "describe-topic",
            "caracal.policy.decisions",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(described["partitions"].as_array().unwrap().len(), 5);
    let tls = serde_json::json!({
        "security.protocol": "SSL",
        "ssl.ca.location": file("ca.crt"),
        "ssl.certificate.location": file("client.crt"),
        "ssl.key.location": file("client.key"),
    });
    let seen: Value =
        serde_json::from_str(&python_run(JUDGE, &[&broker.address(), &tls.to_string()])).unwrap();
    assert_eq!(seen["partitions"]["caracal.metering.events"], 10, "{seen}");
    assert_eq!(
        seen["configs"]["caracal.dlq"]["compression.type"], "zstd",
        "{seen}"
    );

    // The seeds' keys: a truststore (the CA) and a keystore (certificate and key in one PEM).
    let identity = certs.path().join("client.pem");
    let pem = std::fs::read_to_string(file("client.crt")).unwrap()
        + &std::fs::read_to_string(file("client.key")).unwrap();
    std::fs::write(&identity, pem).unwrap();
    let properties = |lines: &str| {
        let path = env.dir.path().join("client.properties");
        let text = format!(
            "bootstrap.servers={}\nsecurity.protocol=SSL\n{lines}",
            broker.address()
        );
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let pem_files = format!(
        "ssl.truststore.location={}\nssl.keystore.location={}\n",
        file("ca.crt"),
        identity.display()
    );
    let listed = env.cli(&[
        "kafka",
        "list-topics",
        "--config-file",
        &properties(&pem_files),
    ]);
    assert_eq!(
        listed
            .ok()
            .lines()
            .filter(|l| l.starts_with("caracal."))
            .count(),
        5
    );

    // The same CA and identity as PKCS#12 archives (what `keytool -importkeystore` makes).
    let p12 = |args: &[&str]| {
        let status = Command::new("openssl")
            .current_dir(certs.path())
            .args(["pkcs12", "-export", "-passout", "pass:changeit"])
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "openssl pkcs12 {args:?}");
    };
    p12(&["-nokeys", "-in", "ca.crt", "-out", "truststore.p12"]);
    p12(&[
        "-in",
        "client.crt",
        "-inkey",
        "client.key",
        "-out",
        "keystore.p12",
    ]);
    let p12_files = format!(
        "ssl.truststore.location={}\nssl.truststore.password=changeit\n\
         ssl.truststore.type=PKCS12\nssl.keystore.location={}\nssl.keystore.password=changeit\n",
        file("truststore.p12"),
        file("keystore.p12")
    );
    let listed = env.cli(&[
        "kafka",
        "list-topics",
        "--config-file",
        &properties(&p12_files),
    ]);
    assert_eq!(
        listed
            .ok()
            .lines()
            .filter(|l| l.starts_with("caracal."))
            .count(),
        5
    );
    let wrong = p12_files.replace("keystore.password=changeit", "keystore.password=nope");
    let refused = env.cli(&["kafka", "list-topics", "--config-file", &properties(&wrong)]);
    let error = refused.user_error();
    assert!(
        error.contains("keystore.p12") && error.contains("password"),
        "{error}"
    );

    let anonymous = properties(&format!("ssl.truststore.location={}\n", file("ca.crt")));
    let refused = env.cli(&["kafka", "list-topics", "--config-file", &anonymous]);
    let error = refused.user_error();
    assert!(error.contains(&broker.address()), "{error}");

    let other = TempDir::new();
    make_certificates(other.path(), "caracal");
    let foreign_ca = other.path().join("ca.crt").display().to_string();
    let unknown = properties(&pem_files.replace(&file("ca.crt"), &foreign_ca));
    let refused = env.cli(&["kafka", "list-topics", "--config-file", &unknown]);
    let error = refused.user_error();
    assert!(
        error.contains(&format!("TLS to broker {}", broker.address())),
        "{error}"
    );
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}
