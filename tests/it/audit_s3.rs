//! The audit role ships to an `s3://` destination on a real S3-compatible server (moto's
//! server, from the venv of `CARACAL_PYTHON`); boto3 reads the objects back: every admin event
//! is in exactly one object, whole, also across a SIGKILL and a restart; the credentials never
//! reach the log or `config show`.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{free_port, python, wait_for, Env};

const DEADLINE: Duration = Duration::from_secs(60);
const BUCKET: &str = "caracal-audit";
const SECRET: &str = "s3-secret-that-must-never-be-logged";
const ACCESS_KEY: &str = "AKIACARACALTESTKEY";

/// `moto_server` on a free port, stopped on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start(dir: &Path) -> Moto {
        let python = PathBuf::from(python());
        let bin = python.with_file_name("moto_server");
        assert!(
            bin.exists(),
            "{} is missing: pip install moto[server]",
            bin.display()
        );
        let port = free_port();
        let log = std::fs::File::create(dir.join("moto.log")).unwrap();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        wait_for("moto_server to listen", DEADLINE, || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Runs tests/python/s3_objects.py (boto3) against this server.
    fn boto3(&self, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/s3_objects.py");
        let out = Command::new(python())
            .arg(script)
            .arg(&self.endpoint)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "boto3 {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Every object under `caracal/`: key → (body, content type).
    fn objects(&self) -> BTreeMap<String, Value> {
        let text = self.boto3(&["dump", BUCKET, "caracal/"]);
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn create_agent(env: &Env, name: &str) -> String {
    let args = [
        "agent", "create", "--name", name, "--type", "worker", "--output", "json",
    ];
    env.cli(&args).json()["id"].as_str().unwrap().to_owned()
}

/// The records of every object, checked to be whole JSON lines in an object named by its
/// first and last ids, with each object's lines in id order.
fn records(objects: &BTreeMap<String, Value>) -> Vec<Value> {
    let mut out = Vec::new();
    for (key, object) in objects {
        assert_eq!(object["content_type"], "application/x-ndjson", "{key}");
        let body = object["body"].as_str().unwrap();
        assert!(body.ends_with('\n'), "{key}: {body}");
        let name = key.rsplit('/').next().unwrap();
        let (first, last) = name.trim_end_matches(".jsonl").split_once('-').unwrap();
        let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
        let lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!lines.is_empty() && first <= last && (lines.len() as u64) <= last - first + 1);
        out.extend(lines);
    }
    out
}

/// How many records carry each agent id of an `AgentLifecycle` event.
fn created_agents(records: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        assert_eq!(r["event"]["event_id"], r["event_id"], "{r}");
        if r["event_type"] == "AgentLifecycle" {
            *counts
                .entry(r["agent_id"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
    }
    counts
}

/// Waits until every agent of `agents` is in the bucket, then checks each is there once.
fn wait_for_agents(moto: &Moto, agents: &[String]) -> Vec<Value> {
    let records = wait_for("every agent's event in the bucket", DEADLINE, || {
        let records = records(&moto.objects());
        let seen = created_agents(&records);
        agents
            .iter()
            .all(|a| seen.contains_key(a))
            .then_some(records)
    });
    let seen = created_agents(&records);
    assert_eq!(seen.len(), agents.len(), "{seen:?}");
    assert!(seen.values().all(|n| *n == 1), "shipped twice: {seen:?}");
    let mut ids: Vec<&str> = records
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "an event_id in two objects");
    records
}

/// Writes `caracal.yaml`: the seeds' formats, one `s3://` destination on `moto`, the secret
/// key from a file (the access key id comes from `AWS_ACCESS_KEY_ID`).
fn write_config(env: &Env, moto: &Moto, records_max: usize) {
    let secret_file = env.dir.path().join("s3-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let yaml = format!(
        "auditLogger:\n  exportFormats: [json, syslog]\n  destinations: [\"s3://{BUCKET}/caracal/\"]\n  \
         s3:\n    region: us-east-1\n    endpoint: {}\n    secretAccessKeyFile: {}\n    \
         objectRecordsMax: {records_max}\n    flushIntervalSeconds: 1\n",
        moto.endpoint,
        secret_file.display()
    );
    std::fs::write(env.dir.path().join("caracal.yaml"), yaml).unwrap();
}

#[test]
fn audit_records_land_in_s3_objects_exactly_once_across_a_kill_and_a_restart() {
    let env = Env::new().with("AWS_ACCESS_KEY_ID", ACCESS_KEY);
    let moto = Moto::start(env.dir.path());
    moto.boto3(&["create", BUCKET]);
    write_config(&env, &moto, 2);
    let shown = env.cli(&["config", "show"]).ok().to_owned();
    assert!(
        shown.contains(&moto.endpoint) && !shown.contains(SECRET),
        "{shown}"
    );

    let server = env.serve(&["--role", "admin", "--role", "audit"]);
    let mut agents: Vec<String> = (0..3)
        .map(|i| create_agent(&env, &format!("s3-{i}")))
        .collect();
    let records = wait_for_agents(&moto, &agents);
    let r = records
        .iter()
        .find(|r| r["agent_id"] == agents[0].as_str())
        .unwrap();
    assert_eq!(r["topic"], "caracal.agent.lifecycle");
    assert!(r["occurred_at"].as_str().unwrap().ends_with('Z'), "{r}");

    // Killed with events not yet shipped (or mid-PUT): after the restart each is there once.
    agents.extend((3..5).map(|i| create_agent(&env, &format!("s3-{i}"))));
    let log = server.log();
    server.kill9();
    let server = env.serve(&["--role", "admin", "--role", "audit"]);
    agents.push(create_agent(&env, "s3-5"));
    wait_for_agents(&moto, &agents);

    // A clean restart writes nothing again.
    assert_eq!(server.terminate(), 0);
    let before = moto.objects();
    let server = env.serve(&["--role", "admin", "--role", "audit"]);
    agents.push(create_agent(&env, "s3-6"));
    let records = wait_for_agents(&moto, &agents);
    let after = moto.objects();
    for (key, object) in &before {
        assert_eq!(after.get(key), Some(object), "{key} changed");
    }
    let count = records.len();
    let logs = format!("{log}{}", server.log());
    assert_eq!(server.terminate(), 0);
    assert!(!logs.contains(SECRET), "the secret key is in the log");
    assert!(count >= agents.len());
}

#[test]
fn a_failed_put_is_retried_with_the_same_key_and_records_after_a_kill_with_larger_limits() {
    let env = Env::new().with("AWS_ACCESS_KEY_ID", ACCESS_KEY);
    let moto = Moto::start(env.dir.path());
    write_config(&env, &moto, 2);
    // No bucket yet: every PUT fails after its range was planned.
    let server = env.serve(&["--role", "admin", "--role", "audit"]);
    let mut agents: Vec<String> = (0..3)
        .map(|i| create_agent(&env, &format!("r-{i}")))
        .collect();
    let failed = wait_for("a failed PUT in the log", DEADLINE, || {
        let log = server.log();
        let at = log.find("Error performing PUT ")?;
        let url = log[at..].split_whitespace().nth(3)?.to_owned();
        Some(url.split_once("/caracal-audit/")?.1.to_owned())
    });
    assert!(server.log().contains("audit export failed; retrying"));
    server.kill9();

    // The bucket exists now and objects may hold 1000 records; the planned range still goes
    // out first, under the key the failed PUT used, holding exactly the records it named.
    moto.boto3(&["create", BUCKET]);
    write_config(&env, &moto, 1000);
    let server = env.serve(&["--role", "admin", "--role", "audit"]);
    agents.push(create_agent(&env, "r-3"));
    let records = wait_for_agents(&moto, &agents);
    let objects = moto.objects();
    let planned = &objects
        .get(&failed)
        .unwrap_or_else(|| panic!("{failed} not in {objects:?}"));
    let name = failed
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".jsonl");
    let (first, last) = name.split_once('-').unwrap();
    let span = last.parse::<usize>().unwrap() - first.parse::<usize>().unwrap() + 1;
    assert!(
        span <= 2,
        "the plan was cut with objectRecordsMax 2: {failed}"
    );
    assert_eq!(planned["body"].as_str().unwrap().lines().count(), span);
    assert!(
        objects.len() >= 2,
        "later records in later objects: {objects:?}"
    );
    assert!(records.len() >= agents.len());
    assert_eq!(server.terminate(), 0);
}
