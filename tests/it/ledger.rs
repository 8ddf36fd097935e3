//! The ledger role against the real binary: metering events from the embedded log into the
//! ledger exactly once, sealed in signed batches that `merkle verify-range` checks; queries,
//! proofs, consumer status, the DLQ, kill -9 under load, and tampering found by the running
//! role.

use std::collections::HashMap;
use std::time::Duration;

use caracal::core::agent::AgentId;

use crate::harness::events::{metering, Log};
use crate::harness::{request, wait_for, Env};

/// Small batches and short timers so tests see sealing, takeover and re-verification quickly.
pub fn ledger_env() -> Env {
    let env = Env::new();
    std::fs::write(
        env.dir.path().join("caracal.yaml"),
        "consumers:\n  leaseTtlSeconds: 2\n  ledgerWriter:\n    merkle:\n      batchSizeLimit: 10\n      batchTimeoutSeconds: 1\n      reverifyIntervalSeconds: 1\n",
    )
    .unwrap();
    env
}

/// Rows covered by sealed batches, from `merkle list-batches`.
pub fn sealed_rows(env: &Env) -> i64 {
    env.cli(&[
        "merkle",
        "list-batches",
        "--limit",
        "10000",
        "--output",
        "json",
    ])
    .json()
    .as_array()
    .unwrap()
    .iter()
    .map(|b| b["header"]["count"].as_i64().unwrap())
    .sum()
}

pub fn wait_sealed(env: &Env, rows: i64) {
    wait_for(
        &format!("{rows} rows sealed"),
        Duration::from_secs(60),
        || (sealed_rows(env) == rows).then_some(()),
    );
}

/// A day range around now, as `verify-range` and `ledger query` take it.
pub fn today_range() -> (String, String) {
    let today = chrono::Utc::now().date_naive();
    let from = today.pred_opt().unwrap().to_string();
    let to = today.succ_opt().unwrap().to_string();
    (from, to)
}

pub fn verify_range(env: &Env) -> crate::harness::CliRun {
    let (from, to) = today_range();
    env.cli(&["merkle", "verify-range", "--start", &from, "--end", &to])
}

/// `caracal ledger query` over today's range for `agent`, with `extra` arguments, as JSON.
pub fn query(env: &Env, agent: &str, extra: &[&str]) -> serde_json::Value {
    let (from, to) = today_range();
    let mut args = vec![
        "ledger",
        "query",
        "--agent-id",
        agent,
        "--start-date",
        &from,
        "--end-date",
        &to,
    ];
    args.extend_from_slice(extra);
    if !extra.contains(&"--output") {
        args.extend_from_slice(&["--output", "json"]);
        return env.cli(&args).json();
    }
    serde_json::Value::String(env.cli(&args).ok().to_owned())
}

/// Three trees (a root and a child each), `per_tree` events each, costs 1..; returns the
/// roots and each tree's total cost.
fn publish_trees(log: &Log, per_tree: usize) -> Vec<(AgentId, AgentId, i64, i64)> {
    let mut trees = Vec::new();
    for t in 0..3 {
        let (root, child) = (AgentId::new(), AgentId::new());
        let mut events = Vec::new();
        let (mut root_cost, mut child_cost) = (0, 0);
        for i in 0..per_tree {
            let cost = 1_000 * (t as i64 + 1) + i as i64;
            if i % 3 == 0 {
                root_cost += cost;
                events.push(metering(root, root, cost));
            } else {
                child_cost += cost;
                events.push(metering(root, child, cost));
            }
        }
        log.publish(&events);
        trees.push((root, child, root_cost, child_cost));
    }
    trees
}

#[test]
fn every_event_is_sealed_once_queries_add_up_and_the_range_verifies() {
    let env = ledger_env();
    let _server = env.serve(&["--role", "ledger"]);
    let log = Log::open(&env.data_dir());
    let trees = publish_trees(&log, 19);
    wait_sealed(&env, 57);

    let verified = verify_range(&env);
    let out = verified.ok();
    assert!(out.contains("OK:") && out.contains("57 rows"), "{out}");

    for (root, child, root_cost, child_cost) in &trees {
        let root = root.to_string();
        let tree = query(&env, &root, &["--include-children"]);
        assert_eq!(tree["totals"][0]["currency"], "USD");
        assert_eq!(tree["totals"][0]["total_micros"], root_cost + child_cost);
        assert_eq!(tree["totals"][0]["events"], 19);
        assert_eq!(tree["rows"].as_array().unwrap().len(), 19);
        let own = query(&env, &root, &[]);
        assert_eq!(own["totals"][0]["total_micros"], *root_cost);
        let child = child.to_string();
        let csv = query(&env, &child, &["--output", "csv"]);
        let csv = csv.as_str().unwrap();
        assert_eq!(
            csv.lines().count(),
            1 + 12,
            "header + the child's rows: {csv}"
        );
        assert!(csv.lines().skip(1).all(|l| l.contains(&child)));
    }

    let status = env
        .cli(&[
            "consumers",
            "status",
            "--consumer",
            "ledger",
            "--output",
            "json",
        ])
        .json();
    let rows = status.as_array().unwrap();
    assert_eq!(rows.len(), 10, "one lease per metering partition: {status}");
    for row in rows {
        assert_eq!(row["lease_live"], true, "{row}");
        assert!(row["epoch"].as_i64().unwrap() >= 1);
        assert_eq!(row["lag"], 0, "{row}");
        assert_eq!(row["committed_offset"], row["high_watermark"]);
    }
    let committed: i64 = rows
        .iter()
        .map(|r| r["committed_offset"].as_i64().unwrap())
        .sum();
    assert_eq!(committed, 57);
}

#[test]
fn an_exported_proof_verifies_offline_and_a_flipped_bit_does_not() {
    let env = ledger_env();
    let server = env.serve(&["--role", "ledger"]);
    let log = Log::open(&env.data_dir());
    let root = AgentId::new();
    let events: Vec<_> = (0..23).map(|i| metering(root, root, 500 + i)).collect();
    log.publish(&events);
    wait_sealed(&env, 23);
    drop(server);

    let proof = env.dir.path().join("proof.json");
    let id = events[13].event_id.to_string();
    env.cli(&["merkle", "proof", &id, "--out", proof.to_str().unwrap()])
        .ok();
    let public = env.dir.path().join("public.pem");
    env.cli(&[
        "merkle",
        "export-public-key",
        "--out",
        public.to_str().unwrap(),
    ])
    .ok();
    let checked = env.cli(&[
        "merkle",
        "verify-proof",
        proof.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
    ]);
    assert!(checked.ok().contains(&format!("OK: event {id}")));
    let outside = crate::merkle_proof_python::python_verify(&proof);
    assert!(
        outside.status.success() && String::from_utf8_lossy(&outside.stdout).contains("OK"),
        "the independent verifier refused our proof: {outside:?}"
    );

    let document: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&proof).unwrap()).unwrap();
    assert_eq!(document["event_id"], id.as_str());
    let mut tampered = document.clone();
    let leaf = tampered["leaf"].as_str().unwrap().to_owned();
    let flipped = flip_hex_bit(&leaf, 40);
    tampered["leaf"] = serde_json::Value::String(flipped);
    let bad = env.dir.path().join("bad-proof.json");
    std::fs::write(&bad, tampered.to_string()).unwrap();
    let refused = env.cli(&["merkle", "verify-proof", bad.to_str().unwrap()]);
    assert_ne!(
        refused.status, 0,
        "a flipped leaf bit must fail: {}",
        refused.stdout
    );
    assert!(
        !crate::merkle_proof_python::python_verify(&bad)
            .status
            .success(),
        "the independent verifier accepted a flipped leaf bit"
    );

    let other = env.dir.path().join("other.pem");
    env.cli(&["merkle", "keygen", "--out", other.to_str().unwrap()])
        .ok();
    let other_public = env.dir.path().join("other-public.pem");
    let _ = std::fs::remove_file(&other_public);
    let other_env = Env::new().with(
        "CARACAL_CONSUMERS__LEDGERWRITER__MERKLE__SIGNINGKEYFILE",
        other.to_str().unwrap(),
    );
    let exported = other_env.cli(&[
        "merkle",
        "export-public-key",
        "--out",
        other_public.to_str().unwrap(),
    ]);
    exported.ok();
    let wrong_key = env.cli(&[
        "merkle",
        "verify-proof",
        proof.to_str().unwrap(),
        "--public-key",
        other_public.to_str().unwrap(),
    ]);
    assert_ne!(
        wrong_key.status, 0,
        "a proof signed by another key must fail"
    );
}

/// `hex` with one bit flipped in its `bit`-th bit.
pub fn flip_hex_bit(hex: &str, bit: usize) -> String {
    let mut bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    bytes[bit / 8] ^= 1 << (bit % 8);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_corrupt_message_goes_to_the_dlq_and_the_ledger_moves_on() {
    let env = ledger_env();
    let server = env.serve(&["--role", "ledger"]);
    let log = Log::open(&env.data_dir());
    let root = AgentId::new();
    log.publish(&[metering(root, root, 10), metering(root, root, 20)]);
    log.publish_corrupt(&root.to_string(), b"\xc3\x01not avro at all");
    log.publish(&[metering(root, root, 30)]);
    wait_sealed(&env, 3);

    let entries = env.cli(&["dlq", "list", "--output", "json"]).json();
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["source_topic"], "caracal.metering.events");
    assert_eq!(
        entry["source_offset"], 2,
        "the third message of its partition"
    );
    assert_eq!(entry["consumer"], "ledger");
    assert!(!entry["error"].as_str().unwrap().is_empty());
    assert_eq!(
        env.cli(&["dlq", "count", "--output", "json"]).json()["total"],
        1
    );
    let metrics_url = server.telemetry_url("/metrics");
    wait_for("caracal_dlq_size 1", Duration::from_secs(15), || {
        request("GET", &metrics_url, &[], None)
            .body
            .lines()
            .any(|l| l == "caracal_dlq_size 1")
            .then_some(())
    });

    // Replaying puts it back on its topic; it fails again and is dead-lettered again, once.
    let entry_ref = format!("{}:{}", entry["partition"], entry["offset"]);
    env.cli(&["dlq", "replay", &entry_ref]).ok();
    assert_ne!(
        env.cli(&["dlq", "replay", &entry_ref]).status,
        0,
        "replayed once only"
    );
    wait_for(
        "the replayed message dead-lettered again",
        Duration::from_secs(30),
        || (env.cli(&["dlq", "count", "--output", "json"]).json()["total"] == 2).then_some(()),
    );
    assert_eq!(
        env.cli(&["dlq", "count", "--output", "json"]).json()["pending"],
        1
    );
    // The alert's gauge is the backlog: the replayed entry no longer counts, its new dead
    // letter does; every entry ever written stays in the counter.
    wait_for(
        "caracal_dlq_size 1 and caracal_dlq_entries_total 2",
        Duration::from_secs(15),
        || {
            let metrics = request("GET", &metrics_url, &[], None).body;
            let lines: Vec<&str> = metrics.lines().collect();
            (lines.contains(&"caracal_dlq_size 1")
                && lines.contains(&"caracal_dlq_entries_total 2"))
            .then_some(())
        },
    );
    let verified = verify_range(&env);
    assert!(verified.ok().contains("3 rows"));
}

/// Publishes `per_root` events for each root into `data_dir`'s log in rounds of 10 per root,
/// paced so the load is steady across whatever the test does meanwhile; returns each root's
/// total cost.
pub fn steady_publisher(
    data_dir: std::path::PathBuf,
    roots: Vec<AgentId>,
    per_root: usize,
) -> std::thread::JoinHandle<HashMap<AgentId, i64>> {
    std::thread::spawn(move || {
        let log = Log::open(&data_dir);
        let mut costs: HashMap<AgentId, i64> = HashMap::new();
        for round in 0..per_root / 10 {
            for root in &roots {
                let events: Vec<_> = (0..10)
                    .map(|i| metering(*root, *root, 100 + round as i64 * 10 + i))
                    .collect();
                *costs.entry(*root).or_default() +=
                    events.iter().map(|e| e.cost_micros.0).sum::<i64>();
                log.publish(&events);
            }
            // Pacing, not synchronisation: keep the load steady across a kill or a restart.
            std::thread::sleep(Duration::from_millis(20));
        }
        costs
    })
}

/// Waits until every event the publishers sent (`per_root` for each root of `costs`, the
/// publishers' merged totals) is sealed, then checks that each root has exactly its events and
/// cost in the ledger and that `verify-range` passes over all of them.
pub fn assert_each_event_sealed_once(env: &Env, costs: HashMap<AgentId, i64>, per_root: usize) {
    let expected = (costs.len() * per_root) as i64;
    wait_sealed(env, expected);
    for (root, cost) in &costs {
        let id = root.to_string();
        let q = query(env, &id, &[]);
        assert_eq!(q["totals"][0]["events"], per_root as i64, "{id}");
        assert_eq!(q["totals"][0]["total_micros"], *cost, "{id}");
    }
    let verified = verify_range(env);
    assert!(
        verified.ok().contains(&format!("{expected} rows")),
        "{}",
        verified.ok()
    );
}

#[test]
fn kill_9_mid_batch_under_load_loses_and_duplicates_nothing() {
    let env = ledger_env();
    let server = env.serve(&["--role", "ledger"]);
    let roots: Vec<AgentId> = (0..7).map(|_| AgentId::new()).collect();
    let publisher = steady_publisher(env.data_dir(), roots, 300);
    wait_for("some rows sealed", Duration::from_secs(60), || {
        (sealed_rows(&env) >= 300).then_some(())
    });
    server.kill9();
    let _restarted = env.serve(&["--role", "ledger"]);
    assert_each_event_sealed_once(&env, publisher.join().unwrap(), 300);
}

#[test]
fn a_row_altered_behind_the_running_ledger_raises_the_failure_metric() {
    let env = ledger_env();
    let server = env.serve(&["--role", "ledger"]);
    let log = Log::open(&env.data_dir());
    let root = AgentId::new();
    let events: Vec<_> = (0..20).map(|i| metering(root, root, 1_000 + i)).collect();
    log.publish(&events);
    wait_sealed(&env, 20);
    let metrics_url = server.telemetry_url("/metrics");
    let failures = || {
        request("GET", &metrics_url, &[], None)
            .body
            .lines()
            .find_map(|l| l.strip_prefix("caracal_merkle_verification_failures_total "))
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
    };
    assert_eq!(failures(), 0.0, "a clean ledger has no failures");

    let db = rusqlite::Connection::open(env.data_dir().join("caracal.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let changed = db
        .execute(
            "UPDATE ledger_events SET cost_micros = cost_micros + 1 WHERE event_id = ?1",
            [events[7].event_id.to_string()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    wait_for(
        "the failure metric to rise",
        Duration::from_secs(15),
        || (failures() >= 1.0).then_some(()),
    );
    assert!(server.log().contains("merkle verification failed"));
}

#[test]
fn gateway_charges_land_in_the_ledger_sealed_and_provable() {
    use crate::harness::gateway::{gateway_env, tree, Gateway, Mock};
    let mock = Mock::start(&[]);
    let env = gateway_env(
        &mock,
        &[(
            "CARACAL_CONSUMERS__LEDGERWRITER__MERKLE__BATCHTIMEOUTSECONDS",
            "1",
        )],
    );
    let t = tree(&env, "10.00", "5.00");
    let gw = Gateway::start_roles(env, &["gateway", "admin", "ledger"]);
    let mut expected = 0;
    for max_tokens in [5, 9, 13] {
        let body = serde_json::json!({"model": "mock-gpt", "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "charge me exactly"}]})
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
    assert!(team["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["agent_id"] == t.child.as_str()));
    verify_range(&gw.env).ok();

    let event_id = team["rows"][1]["event_id"].as_str().unwrap().to_owned();
    let proof = gw.env.dir.path().join("gateway-proof.json");
    gw.env
        .cli(&[
            "merkle",
            "proof",
            &event_id,
            "--out",
            proof.to_str().unwrap(),
        ])
        .ok();
    gw.env
        .cli(&["merkle", "verify-proof", proof.to_str().unwrap()])
        .ok();
}

#[test]
fn backfill_seals_what_no_batch_covers_and_verify_range_says_what_is_unsealed() {
    let env = Env::new();
    std::fs::write(
        env.dir.path().join("caracal.yaml"),
        "consumers:\n  ledgerWriter:\n    merkle:\n      batchSizeLimit: 10\n      batchTimeoutSeconds: 3600\n",
    )
    .unwrap();
    let server = env.serve(&["--role", "ledger"]);
    let log = Log::open(&env.data_dir());
    let root = AgentId::new();
    log.publish(
        &(0..25)
            .map(|i| metering(root, root, 7 + i))
            .collect::<Vec<_>>(),
    );
    wait_sealed(&env, 20);
    assert_eq!(server.terminate(), 0);

    let before = verify_range(&env);
    assert!(
        before.ok().contains("5 newest rows are not sealed yet"),
        "{}",
        before.stdout
    );
    // Importing another release's rows is refused, saying what backfill does; nothing sealed.
    let refused = env.cli(&["merkle", "backfill", "--source-version", "v0.2"]);
    let line = refused.user_error();
    assert!(line.contains("--source-version v0.2"), "{line}");
    assert!(line.contains("not supported"), "{line}");
    assert!(line.contains("seals the unsealed rows"), "{line}");
    assert_eq!(sealed_rows(&env), 20);
    let sealed = env.cli(&["merkle", "backfill"]);
    assert!(
        sealed.ok().contains("sealed 5 rows into 1 batches"),
        "{}",
        sealed.stdout
    );
    assert_eq!(sealed_rows(&env), 25);
    let after = verify_range(&env);
    assert!(after.ok().contains("25 rows"), "{}", after.stdout);
    assert!(!after.stdout.contains("not sealed yet"));
    let again = env.cli(&["merkle", "backfill"]);
    assert!(again.ok().contains("sealed 0 rows"), "{}", again.stdout);
}
