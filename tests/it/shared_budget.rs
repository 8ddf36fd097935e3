//! One budget across gateway replicas: three `caracal serve --role gateway` processes on one
//! host share one Redis (and the data dir's store and log). The official `openai` SDK races 1000
//! calls across them against a budget with room for exactly N; exactly N reach the upstream.
//! A replica killed with a call in flight has that hold charged once by a surviving replica.
//! The same race again with Postgres as the store, and on a three-primary Redis Cluster.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::gateway::{flat_price, gateway_env, tree, Gateway, Mock, Tree};
use crate::harness::postgres::PgServer;
use crate::harness::redis::{RedisCluster, RedisServer};
use crate::harness::{request, wait_for, Env};
use crate::postgres_roles::on_postgres;

/// 0.01 per call; the parent's 0.30 binds before the child's 0.50: N = 30.
pub const ROOM: u64 = 30;

pub fn replicas(env: &Env) -> [Gateway; 3] {
    let (b, c) = (env.sibling(), env.sibling());
    let first = Gateway::start_roles(env.sibling(), &["gateway", "admin"]);
    [
        first,
        Gateway::start_roles(b, &["gateway"]),
        Gateway::start_roles(c, &["gateway"]),
    ]
}

/// The settings of a shared-budget run on `redis`: holds expire after 2 s, swept every second.
pub fn shared_settings(redis: &RedisServer) -> Vec<(&'static str, String)> {
    with_short_holds(redis.settings().into_iter().collect())
}

fn with_short_holds(mut pairs: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    pairs.extend([
        (
            "CARACAL_GATEWAY__CONFIG__PROVISIONALCHARGEEXPIRATION",
            "2".to_owned(),
        ),
        (
            "CARACAL_GATEWAY__CONFIG__PROVISIONALCHARGECLEANUPINTERVAL",
            "1".to_owned(),
        ),
    ]);
    pairs
}

/// Races 1000 official-SDK calls across `gateways` (the first runs the admin role) for `t`,
/// whose parent's 0.30 allows exactly `ROOM` calls at 0.01: exactly `ROOM` reach the upstream,
/// the rest are denied, and the recorded spend is exactly the parent's limit (so neither the
/// agent's 0.50 nor the parent's 0.30 is exceeded).
pub fn race_for_exactly_the_room(mock: &Mock, gateways: &[Gateway], t: &Tree) {
    let urls: Vec<String> = gateways.iter().map(|g| g.url("/openai/v1")).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sdk_race.py");
    let output = Command::new(crate::harness::python())
        .args([script, &urls.join(","), &t.key, "1000", "200"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outcome: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(outcome["ok"], ROOM, "{outcome}");
    assert_eq!(outcome["denied"], 1000 - ROOM, "{outcome}");
    assert_eq!(outcome["other"], json!([]), "{outcome}");
    assert_eq!(mock.requests(), ROOM);

    let events = wait_for("every charge", Duration::from_secs(30), || {
        let events = gateways[0].metering_events();
        (events.len() as u64 >= ROOM).then_some(events)
    });
    let total: i64 = events
        .iter()
        .map(|e| e["cost_micros"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 300_000, "the parent's 0.30 exactly");
}

#[test]
fn three_gateways_on_one_redis_let_exactly_the_affordable_calls_through() {
    let redis = RedisServer::start();
    let mock = Mock::start(&[]);
    let settings = shared_settings(&redis);
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let env = gateway_env(&mock, &pairs);
    flat_price(&env, "mock-flat", "0.01");
    let t = tree(&env, "0.30", "0.50");
    let gateways = replicas(&env);
    race_for_exactly_the_room(&mock, &gateways, &t);

    // A replica killed -9 with a call in flight: a surviving replica charges its hold once.
    let [first, second, third] = gateways;
    let other = tree(&env, "10.00", "5.00");
    let auth = format!("Bearer {}", other.key);
    let body = json!({"model": "mock-flat", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "doomed"}]})
    .to_string();
    let url = third.url("/openai/v1/chat/completions");
    let in_flight = std::thread::spawn(move || {
        let headers = [
            ("Authorization", auth.as_str()),
            ("x-mock-latency-ms", "30000"),
        ];
        std::panic::catch_unwind(|| request("POST", &url, &headers, Some(&body))).ok()
    });
    wait_for("the doomed call upstream", Duration::from_secs(10), || {
        (mock.requests() == ROOM + 1).then_some(())
    });
    third.server.kill9();
    let charged = wait_for(
        "the dead replica's hold charged",
        Duration::from_secs(30),
        || {
            let events = first.metering_events();
            (events.len() as u64 > ROOM).then_some(events)
        },
    );
    assert_eq!(charged.len() as u64, ROOM + 1, "{charged:#?}");
    let last = charged.iter().find(|e| e["estimated"] == true).unwrap();
    assert_eq!(last["cost_micros"], 10_000);
    assert_eq!(last["metadata"]["settled_by"], "expiry");
    drop(in_flight);

    // An admin change reaches every replica within a second or two, caches warm or not.
    let quick = json!({"model": "mock-flat", "max_tokens": 8,
                       "messages": [{"role": "user", "content": "warm"}]})
    .to_string();
    for gw in [&first, &second] {
        let warm = gw.post("/openai/v1/chat/completions", &other.key, &quick);
        assert_eq!(warm.status, 200, "{}", warm.body);
    }
    env.cli(&["agent", "suspend", &other.parent, "--reason", "runaway"])
        .ok();
    for gw in [&first, &second] {
        let refused = wait_for(
            "the suspension on every replica",
            Duration::from_secs(3),
            || {
                let r = gw.post("/openai/v1/chat/completions", &other.key, &quick);
                (r.status == 403).then_some(r)
            },
        );
        assert_eq!(refused.json()["error"]["code"], "agent_suspended");
    }
}

#[test]
fn a_tls_redis_with_a_password_serves_and_an_unknown_ca_is_a_clear_error() {
    use crate::harness::certs::make_certificates;
    let (certs, other) = (
        crate::harness::TempDir::new(),
        crate::harness::TempDir::new(),
    );
    make_certificates(certs.path(), "caracal");
    make_certificates(other.path(), "caracal");
    let password = "p/w+d=Zm9vYmFy"; // as `openssl rand -base64` makes them
    let redis = RedisServer::start_tls(certs.path(), password);
    let mock = Mock::start(&[]);
    let port = redis.port.to_string();
    let ca = certs.path().join("ca.crt").display().to_string();
    let settings = [
        ("CARACAL_REDIS__HOST", "127.0.0.1"),
        ("CARACAL_REDIS__PORT", port.as_str()),
        ("CARACAL_REDIS__TLS__ENABLED", "true"),
        ("CARACAL_REDIS__TLS__CACERTFILE", ca.as_str()),
        ("REDIS_PASSWORD", password),
    ];
    let env = gateway_env(&mock, &settings);
    let t = tree(&env, "10.00", "5.00");
    let stranger = env.sibling().with(
        "CARACAL_REDIS__TLS__CACERTFILE",
        &other.path().join("ca.crt").display().to_string(),
    );
    let gw = Gateway::start(env);
    let body = json!({"model": "mock-gpt", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "over tls"}]})
    .to_string();
    let ok = gw.post("/openai/v1/chat/completions", &t.key, &body);
    assert_eq!(ok.status, 200, "{}", ok.body);

    let refused = stranger.cli_within(&["serve", "--role", "gateway"], Duration::from_secs(30));
    assert_ne!(refused.status, 0);
    let said = refused.stderr.to_lowercase();
    assert!(said.contains("redis"), "{}", refused.stderr);
    assert!(
        said.contains("certificate") || said.contains("unknownissuer"),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stderr.contains(password),
        "the password reached the error"
    );
}

#[test]
fn with_redis_down_the_gateway_refuses_at_once_and_forwards_nothing_then_recovers() {
    let mut redis = RedisServer::start();
    let mock = Mock::start(&[]);
    let port = redis.port.to_string();
    let settings = [
        ("CARACAL_REDIS__HOST", "127.0.0.1"),
        ("CARACAL_REDIS__PORT", port.as_str()),
        ("CARACAL_REDIS__COMMANDTIMEOUTMS", "300"),
    ];
    let env = gateway_env(&mock, &settings);
    let t = tree(&env, "10.00", "5.00");
    let gw = Gateway::start(env);
    let body = json!({"model": "mock-gpt", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "hello"}]})
    .to_string();
    let call = || gw.post("/openai/v1/chat/completions", &t.key, &body);
    assert_eq!(call().status, 200);

    redis.stop();
    let started = std::time::Instant::now();
    let refused = call();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "dependency_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(mock.requests(), 1, "a refused call reached the upstream");

    redis.start_again();
    wait_for("traffic to resume", Duration::from_secs(30), || {
        (call().status == 200).then_some(())
    });
}

#[test]
fn three_gateways_on_one_redis_and_one_postgres_let_exactly_the_affordable_calls_through() {
    let (redis, postgres) = (RedisServer::start(), PgServer::start());
    let mock = Mock::start(&[]);
    let mut settings = shared_settings(&redis);
    // Three replicas' pools within the test server's 60 connections, as a deployment sizes them.
    settings.extend([
        ("CARACAL_GATEWAY__CONFIG__DBPOOLSIZE", "10".to_owned()),
        ("CARACAL_GATEWAY__CONFIG__DBMAXOVERFLOW", "5".to_owned()),
    ]);
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let env = on_postgres(gateway_env(&mock, &pairs), &postgres);
    flat_price(&env, "mock-flat", "0.01");
    let t = tree(&env, "0.30", "0.50");
    let gateways = replicas(&env);
    // The key and the policies exist only in Postgres: a replica on any other store would
    // refuse every call.
    race_for_exactly_the_room(&mock, &gateways, &t);
}

#[test]
fn three_gateways_on_one_redis_cluster_let_exactly_the_affordable_calls_through() {
    let cluster = RedisCluster::start();
    let mock = Mock::start(&[]);
    let settings = with_short_holds(cluster.settings());
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let env = gateway_env(&mock, &pairs);
    flat_price(&env, "mock-flat", "0.01");
    let t = tree(&env, "0.30", "0.50");
    let gateways = replicas(&env);
    race_for_exactly_the_room(&mock, &gateways, &t);
}
