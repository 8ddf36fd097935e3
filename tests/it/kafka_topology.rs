//! The distributed topology on one machine, each role its own `caracal serve` process, joined
//! by a real Kafka-protocol broker (tansu) with Postgres as the system of record: calls made
//! with the official `openai` SDK through two gateways are metered once into the ledger and the
//! audit log; an admin change reaches both gateways; a ledger replica killed -9 and a broker
//! restart under load lose and duplicate nothing; a corrupt message produced by another Kafka
//! client (confluent-kafka) lands in `caracal.dlq` with its headers; the bus logs in with
//! SASL SCRAM-SHA-512, and a wrong password stops `serve` with one line.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::gateway::{flat_price, tree, Gateway, Mock, Tree};
use crate::harness::postgres::PgServer;
use crate::harness::tansu::Tansu;
use crate::harness::{python, request, wait_for, Env};
use crate::ledger::{query, sealed_rows, today_range, verify_range, wait_sealed};

const TOKEN: &str = "kafka-test-admin-token";
pub(crate) const CALL_MICROS: i64 = 10_000;
const PATH: &str = "/openai/v1/chat/completions";

/// One environment for every process: Postgres (migrated, a signing key made), the broker,
/// a route to the mock, small ledger batches, and `mock-flat` at 0.01 per call.
pub(crate) fn topology_env(pg: &PgServer, tansu: &Tansu, mock: &Mock) -> Env {
    let database = pg.create_database(None);
    let mut env = Env::new()
        .with("CARACAL_ADMIN__TOKEN", TOKEN)
        .with("MOCK_OPENAI_KEY", "sk-provider-openai");
    for (key, value) in pg.env_vars(&database) {
        env = env.with(&key, &value);
    }
    for (key, value) in tansu.settings() {
        env = env.with(key, &value);
    }
    let config = format!(
        "gateway:\n  routes:\n    - {{prefix: /openai, upstream: \"http://{}\", provider: openai, credentialEnv: MOCK_OPENAI_KEY}}\nconsumers:\n  leaseTtlSeconds: 2\n  ledgerWriter:\n    merkle: {{batchSizeLimit: 50, batchTimeoutSeconds: 1, reverifyIntervalSeconds: 1}}\n",
        mock.addr
    );
    std::fs::write(env.dir.path().join("caracal.yaml"), config).unwrap();
    env.cli(&["db", "migrate", "up"]).ok();
    let key = env.dir.path().join("merkle_signing_key.pem");
    let key = key.to_str().unwrap();
    env.cli(&["merkle", "keygen", "--out", key]).ok();
    let env = env.with(
        "CARACAL_CONSUMERS__LEDGERWRITER__MERKLE__SIGNINGKEYFILE",
        key,
    );
    flat_price(&env, "mock-flat", "0.01");
    env
}

/// The same configuration in a process of its own, with its own data dir (a gateway's
/// in-process spend journal is one per data dir).
pub(crate) fn own(env: &Env) -> Env {
    let sibling = env.sibling();
    let data = sibling.dir.path().join("data");
    sibling.with("CARACAL_DATADIR", data.to_str().unwrap())
}

/// `calls` SDK calls spread over `urls`, 16 at a time; every one must succeed.
pub(crate) fn sdk_calls(urls: &[String], key: &str, calls: u64) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sdk_race.py");
    let output = Command::new(python())
        .args([script, &urls.join(","), key, &calls.to_string(), "16"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outcome: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(outcome["ok"], calls, "{outcome}");
}

/// Waits until exactly `rows` rows are sealed; says how many were when it gives up.
fn wait_all_sealed(env: &Env, rows: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let sealed = sealed_rows(env);
        if sealed == rows {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sealed} rows sealed, not {rows}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Each child's ledger rows: exactly `calls` events and `calls` × 0.01.
pub(crate) fn assert_ledger_totals(env: &Env, expected: &[(&Tree, i64)]) {
    for (t, calls) in expected {
        let q = query(env, &t.child, &[]);
        assert_eq!(q["totals"][0]["events"], *calls, "{q}");
        assert_eq!(q["totals"][0]["total_micros"], calls * CALL_MICROS, "{q}");
    }
}

/// The metering records of the audit log, by event id (duplicates kept, to be counted).
fn audited_metering_ids(env: &Env) -> Vec<String> {
    let (from, to) = today_range();
    env.cli(&["audit", "export", "--start", &from, "--end", &to])
        .ok()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["event_type"] == "MeteringEvent")
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The one `error: ` line of a failed run's stderr (rskafka's own log lines around it aside).
pub(crate) fn one_error_line(run: &crate::harness::CliRun) -> String {
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    errors[0].to_owned()
}

fn admin(server: &crate::harness::Server, method: &str, path: &str, body: Option<&str>) -> Value {
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("X-Caracal-Reason", "test"),
    ];
    let response = request(method, &server.admin_url(path), &headers, body);
    assert!(response.status < 300, "{}", response.body);
    response.json()
}

fn chat(content: &str) -> String {
    json!({"model": "mock-flat", "max_tokens": 8,
           "messages": [{"role": "user", "content": content}]})
    .to_string()
}

#[test]
fn two_gateways_two_ledgers_an_audit_and_an_admin_meter_every_call_once() {
    let (pg, tansu, mock) = (PgServer::start(), Tansu::start(), Mock::start(&[]));
    let env = topology_env(&pg, &tansu, &mock);
    let trees: Vec<Tree> = (0..3).map(|_| tree(&env, "100.00", "100.00")).collect();
    let admin_role = env.serve(&["--role", "admin"]);
    let _ledgers = [
        own(&env).serve(&["--role", "ledger"]),
        own(&env).serve(&["--role", "ledger"]),
    ];
    let _audit = own(&env).serve(&["--role", "audit"]);
    let gateways = [
        Gateway::start_roles(own(&env), &["gateway"]),
        Gateway::start_roles(own(&env), &["gateway"]),
    ];
    let urls: Vec<String> = gateways.iter().map(|g| g.url("/openai/v1")).collect();

    let calls = [120_i64, 90, 60];
    for (t, n) in trees.iter().zip(calls) {
        sdk_calls(&urls, &t.key, n as u64);
    }
    let total: i64 = calls.iter().sum();
    assert_eq!(mock.requests() as i64, total);

    wait_sealed(&env, total);
    let expected: Vec<(&Tree, i64)> = trees.iter().zip(calls).collect();
    assert_ledger_totals(&env, &expected);
    let verified = verify_range(&env);
    assert!(
        verified.ok().contains(&format!("{total} rows")),
        "{}",
        verified.ok()
    );
    let ids = wait_for(
        "every call in the audit log",
        Duration::from_secs(60),
        || {
            let ids = audited_metering_ids(&env);
            (ids.len() as i64 >= total).then_some(ids)
        },
    );
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (total as usize, total as usize));
    assert_another_group_decodes_every_event(&tansu, total);

    // A policy change made through the admin role reaches both gateways' warm caches: the
    // smallest tree's child (about 0.30 spent on each gateway) drops to a 0.01 limit.
    let small = &trees[2];
    let policies = admin(
        &admin_role,
        "GET",
        &format!("/v1/policies?agent_id={}", small.child),
        None,
    );
    let policy = policies[0]["id"].as_str().unwrap();
    admin(
        &admin_role,
        "PATCH",
        &format!("/v1/policies/{policy}"),
        Some(r#"{"limit":"0.01"}"#),
    );
    // Calls answered 200 while the change is on its way are forwarded; nothing refused is.
    let mut served = 0;
    for gw in &gateways {
        let refused = wait_for(
            "the new limit on every gateway",
            Duration::from_secs(10),
            || {
                let r = gw.post(PATH, &small.key, &chat("after the change"));
                served += i64::from(r.status == 200);
                (r.status == 403).then_some(r)
            },
        );
        assert_eq!(
            refused.json()["error"]["code"],
            "budget_exceeded",
            "{}",
            refused.body
        );
    }
    assert_eq!(mock.requests() as i64, total + served);
}

/// confluent-kafka reads all five topics as a consumer group and fastavro decodes every
/// message: each call's metering event is there (a retried produce may repeat one; readers
/// dedupe on `event_id`), and nothing went to the DLQ.
fn assert_another_group_decodes_every_event(tansu: &Tansu, calls: i64) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/kafka_client.py");
    let schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");
    let topics: Vec<&str> = caracal::core::events::TOPICS
        .iter()
        .map(|t| t.name)
        .collect();
    let out = Command::new(python())
        .args([script, "group", &tansu.address(), schemas])
        .args(&topics)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    let metering = seen["records"]["caracal.metering.events"]
        .as_array()
        .unwrap();
    let ids: BTreeSet<&str> = metering
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len() as i64, calls, "{}", seen["messages"]);
    assert_eq!(seen["messages"]["caracal.dlq"], 0);
}

/// Calls through `gw` from 4 threads until `stop`; returns how many were answered 200.
fn load(gw: &Gateway, key: &str, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<i64>> {
    (0..4)
        .map(|i| {
            let (url, auth, stop) = (gw.url(PATH), format!("Bearer {key}"), Arc::clone(stop));
            std::thread::spawn(move || {
                let mut ok = 0;
                let headers = [
                    ("Authorization", auth.as_str()),
                    ("Content-Type", "application/json"),
                ];
                while !stop.load(Ordering::Relaxed) {
                    let r = request("POST", &url, &headers, Some(&chat(&format!("load {i}"))));
                    match r.status {
                        200 => {
                            ok += 1;
                            // Pacing, not synchronisation: a steady load of about 150 calls/s.
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        503 => std::thread::sleep(Duration::from_millis(20)),
                        other => panic!("unexpected {other}: {}", r.body),
                    }
                }
                ok
            })
        })
        .collect()
}

/// The distinct live owners of the ledger's partitions, from `consumers status`.
fn ledger_owners(env: &Env) -> usize {
    let rows = env.cli(&["consumers", "status", "--output", "json"]).json();
    let owners: BTreeSet<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["consumer"] == "ledger" && row["lease_live"] == true)
        .filter_map(|row| row["owner"].as_str().map(str::to_owned))
        .collect();
    owners.len()
}

#[test]
fn a_killed_ledger_and_a_broker_restart_under_load_lose_and_duplicate_nothing() {
    let (pg, mut tansu, mock) = (PgServer::start(), Tansu::start(), Mock::start(&[]));
    let env = topology_env(&pg, &tansu, &mock);
    let t = tree(&env, "1000.00", "1000.00");
    let first = own(&env).serve(&["--role", "ledger"]);
    let _second = own(&env).serve(&["--role", "ledger"]);
    let gw = Gateway::start_roles(own(&env), &["gateway"]);
    wait_for(
        "both ledgers to own partitions",
        Duration::from_secs(30),
        || (ledger_owners(&env) == 2).then_some(()),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&gw, &t.key, &stop);

    wait_for("rows sealed under load", Duration::from_secs(60), || {
        (sealed_rows(&env) >= 100).then_some(())
    });
    first.kill9();
    wait_for(
        "the survivor to own every partition",
        Duration::from_secs(30),
        || (ledger_owners(&env) == 1).then_some(()),
    );

    tansu.stop();
    // The test's own calls: the ones answered 200 count with the load's.
    let mut own_ok = 0;
    wait_for(
        "the gateway to refuse while the broker is down",
        Duration::from_secs(10),
        || match gw.post(PATH, &t.key, &chat("down")).status {
            503 => Some(()),
            200 => {
                own_ok += 1;
                None
            }
            other => panic!("unexpected {other}"),
        },
    );
    let forwarded = mock.requests();
    for _ in 0..10 {
        let r = gw.post(PATH, &t.key, &chat("still down"));
        assert_eq!(r.status, 503, "{}", r.body);
    }
    assert_eq!(
        mock.requests(),
        forwarded,
        "nothing forwarded while the broker is down"
    );
    tansu.start_again();
    wait_for(
        "the gateway to recover by itself",
        Duration::from_secs(30),
        || (gw.post(PATH, &t.key, &chat("back")).status == 200).then_some(()),
    );
    own_ok += 1;
    let recovered_at = sealed_rows(&env);
    wait_for(
        "more rows sealed after the restart",
        Duration::from_secs(60),
        || (sealed_rows(&env) > recovered_at).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    let ok: i64 = workers.into_iter().map(|w| w.join().unwrap()).sum::<i64>() + own_ok;
    assert_eq!(
        mock.requests() as i64,
        ok,
        "every forwarded call was answered 200"
    );
    wait_all_sealed(&env, ok);
    assert_ledger_totals(&env, &[(&t, ok)]);
    let verified = verify_range(&env);
    assert!(
        verified.ok().contains(&format!("{ok} rows")),
        "{}",
        verified.ok()
    );
}

#[test]
fn a_corrupt_message_from_another_client_lands_in_the_dlq_with_its_headers() {
    let (pg, tansu, mock) = (PgServer::start(), Tansu::start(), Mock::start(&[]));
    let env = topology_env(&pg, &tansu, &mock);
    let t = tree(&env, "10.00", "10.00");
    let _ledger = own(&env).serve(&["--role", "ledger"]);
    let gw = Gateway::start_roles(own(&env), &["gateway"]);
    assert_eq!(gw.post(PATH, &t.key, &chat("before")).status, 200);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/kafka_client.py");
    let produced = Command::new(python())
        .args([
            script,
            "produce",
            &tansu.address(),
            "caracal.metering.events",
            &t.parent,
        ])
        .args([
            "c3016e6f74206176726f",
            "origin=another-client",
            "trace=abc123",
        ])
        .output()
        .unwrap();
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let at: Value = serde_json::from_slice(&produced.stdout).unwrap();
    assert_eq!(gw.post(PATH, &t.key, &chat("after")).status, 200);
    wait_sealed(&env, 2);

    let entries = env.cli(&["dlq", "list", "--output", "json"]).json();
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["source_topic"], "caracal.metering.events");
    assert_eq!(entries[0]["source_partition"], at["partition"]);
    assert_eq!(entries[0]["source_offset"], at["offset"]);
    assert_eq!(
        env.cli(&["dlq", "count", "--output", "json"]).json()["total"],
        1
    );

    let read = Command::new(python())
        .args([script, "read", &tansu.address(), "caracal.dlq"])
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let dead: Vec<Value> = String::from_utf8_lossy(&read.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        dead[0]["value_hex"], "c3016e6f74206176726f",
        "the value unchanged"
    );
    assert_eq!(dead[0]["key"], t.parent.as_str());
    let headers = &dead[0]["headers"];
    for expected in [
        json!(["origin", "another-client"]),
        json!(["trace", "abc123"]),
        json!(["dlq_source_topic", "caracal.metering.events"]),
        json!(["dlq_consumer", "ledger"]),
    ] {
        assert!(headers.as_array().unwrap().contains(&expected), "{headers}");
    }
    assert_ledger_totals(&env, &[(&t, 2)]);
}

#[test]
fn the_bus_logs_in_with_scram_and_a_wrong_password_stops_serve_with_one_line() {
    let (pg, mock) = (PgServer::start(), Mock::start(&[]));
    let tansu = Tansu::start_with_scram(&[("caracal", "bus-secret")], true);
    let scram = |env: Env, password: &str| {
        env.with("CARACAL_KAFKA__SECURITY__PROTOCOL", "SASL_PLAINTEXT")
            .with("CARACAL_KAFKA__SECURITY__SASLMECHANISM", "SCRAM-SHA-512")
            .with("CARACAL_KAFKA__SECURITY__SASLUSERNAME", "caracal")
            .with("CARACAL_KAFKA__SECURITY__SASLPASSWORD", password)
    };
    let env = scram(topology_env(&pg, &tansu, &mock), "bus-secret");
    let t = tree(&env, "10.00", "10.00");
    let _ledger = own(&env).serve(&["--role", "ledger"]);
    let gw = Gateway::start_roles(own(&env), &["gateway"]);
    for i in 0..3 {
        assert_eq!(
            gw.post(PATH, &t.key, &chat(&format!("scram {i}"))).status,
            200
        );
    }
    wait_sealed(&env, 3);
    assert_ledger_totals(&env, &[(&t, 3)]);

    let wrong = scram(own(&env), "not-the-password");
    let refused = wrong.cli_within(&["serve", "--role", "gateway"], Duration::from_secs(60));
    // rskafka logs each failed attempt (a log line may even follow it); the error is one line.
    assert_ne!(refused.status, 0);
    let line = &one_error_line(&refused);
    assert!(
        line.starts_with("error: ") && line.contains("invalid proof"),
        "{line}"
    );
    assert_eq!(
        line.matches("invalid proof").count(),
        1,
        "said once: {line}"
    );
    assert!(line.contains(&tansu.address()), "{line}");
    assert!(!line.contains("not-the-password"), "{line}");
    assert_eq!(mock.requests(), 3);
}

/// A ledger started after 3 000 calls of one agent tree (one partition of
/// `caracal.metering.events`, its whole backlog behind the reader) catches up within 30 s,
/// on a broker (tansu) that needs about a millisecond per record to serve a fetch.
#[test]
fn a_ledger_started_behind_a_one_partition_backlog_catches_up() {
    let (pg, tansu, mock) = (PgServer::start(), Tansu::start(), Mock::start(&[]));
    let env =
        topology_env(&pg, &tansu, &mock).with("CARACAL_KAFKA__CONSUMER__FETCHMAXWAITMS", "500");
    let t = tree(&env, "1000.00", "1000.00");
    let gw = Gateway::start_roles(own(&env), &["gateway"]);
    let calls = 3_000;
    sdk_calls(&[gw.url("/openai/v1")], &t.key, calls);

    let ledger_env = own(&env);
    let ledger = ledger_env.serve(&["--role", "ledger"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let sealed = sealed_rows(&env);
        if sealed == calls as i64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sealed} of {calls} rows sealed 30 s after the ledger started; its log:\n{}",
            ledger.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_ledger_totals(&env, &[(&t, calls as i64)]);
}
