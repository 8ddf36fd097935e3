//! Redis is a cache, the ledger is the truth: two gateways (one also running the ledger) share a
//! Redis that is restarted empty under load. They answer 503 `dependency_unavailable` until
//! spend is rebuilt from the ledger and the events it has not applied yet (both gateways
//! rebuilding at once), then the budget continues where it was: over the whole run exactly the
//! affordable calls reach the upstream and the ledger never exceeds either policy.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::gateway::{flat_price, gateway_env, tree, Gateway, Mock};
use crate::harness::redis::RedisServer;
use crate::harness::{request, wait_for};
use crate::shared_budget::{shared_settings, ROOM};

/// Client threads sending calls in a loop, alternating between the gateways.
const CLIENTS: usize = 4;

/// How each call ended: `200`, or the status and error code; with when it ended.
type Outcomes = Arc<Mutex<Vec<(Instant, String)>>>;

fn load(urls: Vec<String>, key: String, stop: Arc<AtomicBool>, outcomes: Outcomes) {
    let body = json!({"model": "mock-flat", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "steady"}]})
    .to_string();
    let auth = format!("Bearer {key}");
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let url = &urls[i % urls.len()];
        i += 1;
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        let r = request("POST", url, &headers, Some(&body));
        let ended = match r.status {
            200 => "200".to_owned(),
            status => format!(
                "{status} {}",
                r.json()["error"]["code"].as_str().unwrap_or("?")
            ),
        };
        outcomes.lock().unwrap().push((Instant::now(), ended));
    }
}

fn count(outcomes: &Outcomes, after: Instant, what: &str) -> usize {
    outcomes
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, ended)| *at > after && ended == what)
        .count()
}

/// The ledger's total cost for `agent` and its descendants today.
fn ledger_total(gw: &Gateway, agent: &str) -> i64 {
    let rows = crate::ledger::query(&gw.env, agent, &["--include-children", "--limit", "10000"]);
    rows.get("rows")
        .or(rows.get("events"))
        .unwrap_or(&rows)
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["cost_micros"].as_i64())
        .sum()
}

#[test]
fn a_redis_restarted_empty_under_load_is_rebuilt_from_the_ledger_and_no_budget_is_exceeded() {
    let mut redis = RedisServer::start();
    let mock = Mock::start(&[]);
    let settings = shared_settings(&redis);
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let env = gateway_env(&mock, &pairs);
    flat_price(&env, "mock-flat", "0.01");
    let t = tree(&env, "0.30", "0.50");
    let second = env.sibling();
    let first = Gateway::start_roles(env, &["gateway", "admin", "ledger"]);
    let second = Gateway::start_roles(second, &["gateway"]);
    let urls = vec![
        first.url("/openai/v1/chat/completions"),
        second.url("/openai/v1/chat/completions"),
    ];

    let (stop, outcomes): (_, Outcomes) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (urls, key) = (urls.clone(), t.key.clone());
            let (stop, outcomes) = (Arc::clone(&stop), Arc::clone(&outcomes));
            std::thread::spawn(move || load(urls, key, stop, outcomes))
        })
        .collect();
    wait_for(
        "a third of the budget spent",
        Duration::from_secs(20),
        || (mock.requests() >= ROOM / 3).then_some(()),
    );
    redis.start_again();
    let restarted = Instant::now();
    wait_for(
        "the rest of the budget spent, then refused",
        Duration::from_secs(40),
        || (count(&outcomes, restarted, "403 budget_exceeded") >= 50).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }

    let mut endings: BTreeMap<String, usize> = BTreeMap::new();
    for (_, ended) in outcomes.lock().unwrap().iter() {
        *endings.entry(ended.clone()).or_default() += 1;
    }
    let unavailable = count(&outcomes, restarted, "503 dependency_unavailable");
    assert!(
        unavailable > 0,
        "no 503 while spend was rebuilt: {endings:?}"
    );
    let expected = ["200", "403 budget_exceeded", "503 dependency_unavailable"];
    assert!(
        endings.keys().all(|k| expected.contains(&k.as_str())),
        "{endings:?}"
    );
    // The budget continued from the ledger: not reset by the empty Redis (more calls), not
    // counted twice by two gateways rebuilding at once (fewer).
    assert_eq!(mock.requests(), ROOM, "{endings:?}");
    assert_eq!(
        endings.get("200").copied(),
        Some(ROOM as usize),
        "{endings:?}"
    );
    let parent = wait_for(
        "every charge in the ledger",
        Duration::from_secs(30),
        || {
            let total = ledger_total(&first, &t.parent);
            (total >= 300_000).then_some(total)
        },
    );
    assert_eq!(parent, 300_000, "the parent's 0.30, never more");
    assert!(ledger_total(&first, &t.child) <= 500_000);
    let log = first.server.log() + &second.server.log();
    assert!(
        log.contains("policy spend rebuilt from the record"),
        "{log}"
    );
}
