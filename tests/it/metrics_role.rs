//! The metrics role against a real Redis and the real binary: its aggregates equal the ledger's
//! totals exactly (through `spend show` and the `/metrics` policy gauges), also after it was
//! killed -9 in the middle of the traffic and restarted; a redelivered event counts once; and
//! it refuses to start without Redis.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::events::{metering, Log};
use crate::harness::gateway::{gateway_env, tree, Gateway, Mock};
use crate::harness::redis::RedisServer;
use crate::harness::{request, wait_for, Env};
use caracal::core::agent::AgentId;

const REQUESTS: usize = 300;
const SENDERS: usize = 4;

fn redis_env(redis: &RedisServer, mock: &Mock) -> Env {
    let settings = redis.settings();
    let mut pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    pairs.extend([
        // A killed replica's partitions move after 2 s; small batches, so a kill lands mid-run.
        ("CARACAL_CONSUMERS__LEASETTLSECONDS", "2"),
        ("CARACAL_CONSUMERS__METRICSAGGREGATOR__BATCHEVENTSMAX", "7"),
        (
            "CARACAL_CONSUMERS__METRICSAGGREGATOR__GAUGEREFRESHSECONDS",
            "1",
        ),
    ]);
    gateway_env(mock, &pairs)
}

/// `caracal spend show` as JSON.
fn spend_show(env: &Env, agent: &str, children: bool) -> Value {
    let mut args = vec!["spend", "show", "--agent-id", agent, "--output", "json"];
    if children {
        args.push("--include-children");
    }
    env.cli(&args).json()
}

/// Today's ledger totals of `agent` (micro-units, events).
fn ledger_today(env: &Env, agent: &str, children: bool) -> (i64, i64) {
    let today = chrono::Utc::now().date_naive().to_string();
    let mut args = vec![
        "ledger",
        "query",
        "--agent-id",
        agent,
        "--start-date",
        &today,
        "--end-date",
        &today,
        "--output",
        "json",
    ];
    if children {
        args.push("--include-children");
    }
    let q = env.cli(&args).json();
    let totals = &q["totals"][0];
    (
        totals["total_micros"].as_i64().unwrap_or(0),
        totals["events"].as_i64().unwrap_or(0),
    )
}

/// The value of the `/metrics` series `name` whose labels include `agent_id="<agent>"`.
fn gauge(metrics_url: &str, name: &str, agent: &str) -> Option<i64> {
    let body = request("GET", metrics_url, &[], None).body;
    let needle = format!("agent_id=\"{agent}\"");
    body.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as i64)
}

#[test]
fn aggregates_equal_the_ledger_exactly_across_a_kill_9_of_the_metrics_role() {
    let redis = RedisServer::start();
    let mock = Mock::start(&[]);
    let env = redis_env(&redis, &mock);
    let t = tree(&env, "1000.00", "500.00");
    let gw = Gateway::start_roles(env.sibling(), &["gateway", "ledger"]);
    let mut metrics = Some(env.sibling().serve(&["--role", "metrics"]));
    let sent = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for sender in 0..SENDERS {
            let (gw, key, sent) = (&gw, &t.key, &sent);
            s.spawn(move || {
                for i in 0..REQUESTS / SENDERS {
                    let words = "word ".repeat(1 + (sender * 7 + i) % 13);
                    let body = json!({"model": "mock-gpt", "max_tokens": 8,
                                      "messages": [{"role": "user", "content": words}]});
                    let r = gw.post("/openai/v1/chat/completions", key, &body.to_string());
                    assert_eq!(r.status, 200, "{}", r.body);
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        wait_for("a third of the calls", Duration::from_secs(30), || {
            (sent.load(Ordering::SeqCst) >= REQUESTS / 3).then_some(())
        });
        // Killed while it is applying: some events in, more arriving.
        wait_for("the first aggregates", Duration::from_secs(30), || {
            let events = spend_show(&env, &t.child, false)["today"]["events"].as_i64();
            events.filter(|n| *n > 0).map(drop)
        });
        if let Some(running) = metrics.take() {
            running.kill9();
        }
        wait_for("two thirds of the calls", Duration::from_secs(30), || {
            (sent.load(Ordering::SeqCst) >= 2 * REQUESTS / 3).then_some(())
        });
        metrics = Some(env.sibling().serve(&["--role", "metrics"]));
    });
    let metrics = metrics.unwrap();

    let (ledger_micros, ledger_events) =
        wait_for("every call in the ledger", Duration::from_secs(30), || {
            let (micros, events) = ledger_today(&env, &t.child, false);
            (events == REQUESTS as i64).then_some((micros, events))
        });
    assert!(ledger_micros > 0);
    let shown = wait_for(
        "every call in the aggregates",
        Duration::from_secs(30),
        || {
            let shown = spend_show(&env, &t.child, false);
            (shown["today"]["events"] == ledger_events).then_some(shown)
        },
    );
    assert_eq!(
        shown["today"]["spend_micros"]["USD"], ledger_micros,
        "{shown}"
    );
    assert_eq!(
        shown["today"]["models"]["openai/mock-gpt"]["spend_micros"]["USD"],
        ledger_micros
    );
    assert_eq!(
        shown["policies"][0]["spent_micros"], ledger_micros,
        "{shown}"
    );
    assert_eq!(shown["policies"][0]["limit_micros"], 500_000_000);

    // The team: its own spend is none, its tree's is the child's; the ledger agrees.
    let (team_ledger, _) = ledger_today(&env, &t.parent, true);
    assert_eq!(team_ledger, ledger_micros);
    let team = spend_show(&env, &t.parent, true);
    assert_eq!(
        team["today"]["spend_micros"]["USD"], ledger_micros,
        "{team}"
    );
    assert_eq!(team["today"]["events"], REQUESTS as i64);
    let own = spend_show(&env, &t.parent, false);
    assert_eq!(own["today"]["events"], 0, "{own}");
    assert_eq!(team["policies"][0]["spent_micros"], ledger_micros);

    // The gauges on the metrics role's own /metrics.
    let url = metrics.telemetry_url("/metrics");
    for agent in [&t.child, &t.parent] {
        let spent = wait_for("the policy gauge", Duration::from_secs(10), || {
            gauge(&url, "caracal_policy_spend_micros", agent).filter(|v| *v == ledger_micros)
        });
        assert_eq!(spent, ledger_micros);
    }
    assert_eq!(
        gauge(&url, "caracal_policy_limit_micros", &t.parent),
        Some(1_000_000_000)
    );
    // `consumers status` shows the metrics role's partitions from Redis: all caught up, the
    // committed offsets covering every message exactly.
    let status = env
        .cli(&[
            "consumers",
            "status",
            "--consumer",
            "metrics",
            "--output",
            "json",
        ])
        .json();
    let rows = status.as_array().unwrap();
    assert_eq!(rows.len(), 10, "{status}");
    let committed: i64 = rows
        .iter()
        .map(|r| r["committed_offset"].as_i64().unwrap())
        .sum();
    assert_eq!(committed, REQUESTS as i64, "{status}");
    // Epoch 2 everywhere: the restarted role took every partition over from the killed one.
    assert!(
        rows.iter().all(|r| r["lag"] == 0 && r["epoch"] == 2),
        "{status}"
    );
    drop(gw);
}

#[test]
fn a_redelivered_event_counts_once() {
    let redis = RedisServer::start();
    let mock = Mock::start(&[]);
    let env = redis_env(&redis, &mock);
    let (root, child) = (AgentId::new(), AgentId::new());
    let once = metering(root, child, 1_250);
    let other = metering(root, child, 3);
    // The first write before the role is up, the copy and another event while it runs.
    let log = Log::open(&env.data_dir());
    log.publish(std::slice::from_ref(&once));
    let _metrics = env.sibling().serve(&["--role", "metrics"]);
    log.publish(&[once.clone(), other]);
    let child_id = child.to_string();
    let shown = wait_for("both events", Duration::from_secs(20), || {
        let shown = spend_show(&env, &child_id, false);
        (shown["today"]["events"] == 2).then_some(shown)
    });
    assert_eq!(shown["today"]["spend_micros"]["USD"], 1_253, "{shown}");
    assert_eq!(shown["today"]["input_tokens"], 240);
    let team = spend_show(&env, &root.to_string(), true);
    assert_eq!(team["today"]["spend_micros"]["USD"], 1_253, "{team}");
    let table = env.cli(&["spend", "show", "--agent-id", &child_id]);
    let lines: Vec<&str> = table.ok().lines().collect();
    assert!(lines[0].starts_with("WINDOW"), "{}", table.stdout);
    assert!(
        lines[1].starts_with("today ") && lines[1].contains("0.001253 USD"),
        "{}",
        table.stdout
    );
    assert!(
        lines[2].contains("openai/gpt-4o-mini") && lines[2].contains("240"),
        "{}",
        table.stdout
    );
}

#[test]
fn the_metrics_role_needs_redis_and_all_runs_without_it() {
    let env = Env::new();
    let refused = env.cli_within(&["serve", "--role", "metrics"], Duration::from_secs(30));
    assert_ne!(refused.status, 0);
    assert!(
        refused.stderr.contains("metrics role") && refused.stderr.contains("redis.host"),
        "{}",
        refused.stderr
    );
    let spend = env.cli(&["spend", "show", "--agent-id", &AgentId::new().to_string()]);
    assert_ne!(spend.status, 0);
    assert!(spend.stderr.contains("Redis"), "{}", spend.stderr);
    // `all` (the default) without Redis runs every other role.
    let all = env.serve(&[]);
    let log = all.log();
    let starting = log
        .lines()
        .find(|l| l.contains("caracal starting"))
        .unwrap();
    assert!(
        starting.contains("ledger") && !starting.contains("metrics"),
        "{starting}"
    );
}
