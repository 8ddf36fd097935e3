//! The gateway role end to end: a real `caracal` in front of the mock upstream, agents, keys and
//! policies made with the real CLI, charges read back from the event log through the admin API.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::gateway::{flat_price, gateway_env, tree, Gateway, Mock};
use crate::harness::{request, wait_for};

fn chat(model: &str, max_tokens: u64) -> String {
    json!({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hello there caracal"}]})
        .to_string()
}

fn wait_for_metering(gw: &Gateway, count: usize) -> Vec<Value> {
    wait_for("metering events", Duration::from_secs(20), || {
        let events = gw.metering_events();
        (events.len() >= count).then_some(events)
    })
}

/// `threads` threads each send `per_thread` flat-priced chat calls, thread `i` with key
/// `keys[i % keys.len()]`, all at once; returns every status.
fn race(gw: &Gateway, keys: &[&str], threads: usize, per_thread: usize) -> Vec<u16> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let key = keys[i % keys.len()];
                s.spawn(move || {
                    (0..per_thread)
                        .map(|_| {
                            gw.post("/openai/v1/chat/completions", key, &chat("mock-flat", 8))
                                .status
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

#[test]
fn a_chat_completion_goes_upstream_with_the_providers_credential_and_is_metered_exactly() {
    let mock = Mock::start(&[]);
    let env = gateway_env(&mock, &[]);
    let t = tree(&env, "10.00", "5.00");
    let gw = Gateway::start(env);

    let response = gw.post("/openai/v1/chat/completions", &t.key, &chat("mock-gpt", 32));
    assert_eq!(response.status, 200, "{}", response.body);
    let body = response.json();
    let usage = &body["usage"];
    let (input, output) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert!(response
        .headers
        .to_lowercase()
        .contains("x-caracal-request-id"));

    let stats = request("GET", &mock.url("/_mock/stats"), &[], None).json();
    let seen = stats["last_headers"].to_string();
    assert!(
        seen.contains("sk-provider-openai"),
        "provider credential not sent: {seen}"
    );
    assert!(
        !seen.contains(&t.key),
        "the agent's key reached the upstream: {seen}"
    );

    let events = wait_for_metering(&gw, 1);
    let event = &events[0];
    assert_eq!(event["agent_id"].as_str(), Some(t.child.as_str()));
    assert_eq!(event["root_agent_id"].as_str(), Some(t.parent.as_str()));
    assert_eq!(event["input_tokens"].as_u64(), Some(input));
    assert_eq!(event["output_tokens"].as_u64(), Some(output));
    assert_eq!(
        event["cost_micros"].as_i64(),
        Some((input + 2 * output) as i64)
    );
    assert_eq!(event["estimated"], false);
    assert_eq!(event["outcome"], "COMPLETED");
}

#[test]
fn exactly_the_affordable_requests_succeed_under_a_thousand_way_race() {
    let mock = Mock::start(&[]);
    let env = gateway_env(&mock, &[]);
    flat_price(&env, "mock-flat", "0.01");
    // The child may spend 1.00 (100 calls); a second child is capped by the parent at 0.50.
    let t = tree(&env, "10.00", "1.00");
    let gw = Gateway::start(env);

    let results = race(&gw, &[t.key.as_str()], 100, 10);
    let ok = results.iter().filter(|s| **s == 200).count();
    let denied = results.iter().filter(|s| **s == 403).count();
    assert_eq!((ok, denied), (100, 900), "statuses: {results:?}");

    let events = wait_for_metering(&gw, 100);
    let spent: i64 = events
        .iter()
        .map(|e| e["cost_micros"].as_i64().unwrap())
        .sum();
    assert_eq!(events.len(), 100);
    assert_eq!(
        spent, 1_000_000,
        "the child's recorded spend must equal its limit exactly"
    );
}

#[test]
fn a_parent_budget_caps_its_children_together() {
    let mock = Mock::start(&[]);
    let env = gateway_env(&mock, &[]);
    flat_price(&env, "mock-flat", "0.01");
    let t = tree(&env, "0.50", "10.00");
    let sibling = env
        .cli(&[
            "agent", "create", "--name", "bot-2", "--parent", &t.parent, "--output", "json",
        ])
        .json();
    let sibling_key = env
        .cli(&[
            "key",
            "create",
            "--agent-id",
            sibling["id"].as_str().unwrap(),
            "--output",
            "json",
        ])
        .json()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let gw = Gateway::start(env);
    let statuses = race(&gw, &[t.key.as_str(), sibling_key.as_str()], 50, 4);
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 50);
    let denied = gw.post("/openai/v1/chat/completions", &t.key, &chat("mock-flat", 8));
    assert_eq!(denied.status, 403);
    assert_eq!(denied.json()["error"]["code"], "budget_exceeded");
}

#[test]
fn a_client_that_disconnects_mid_stream_is_still_charged() {
    let mock = Mock::start(&[]);
    let env = gateway_env(&mock, &[]);
    let t = tree(&env, "10.00", "5.00");
    let gw = Gateway::start(env);
    let body = json!({"model": "mock-gpt", "max_tokens": 40, "stream": true,
                      "messages": [{"role": "user", "content": "stream please"}]})
    .to_string();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    write!(
        stream,
        "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nx-mock-output-tokens: 40\r\nx-mock-chunk-delay-ms: 100\r\n\
         Content-Length: {}\r\n\r\n{}",
        t.key,
        body.len(),
        body
    )
    .unwrap();
    let mut first = [0u8; 512];
    let n = stream.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    drop(stream);

    let events = wait_for_metering(&gw, 1);
    let event = &events[0];
    assert_eq!(event["outcome"], "CLIENT_DISCONNECTED");
    assert!(event["cost_micros"].as_i64().unwrap() > 0, "{event}");
    assert_eq!(event["cost_micros"], event["reserved_micros"]);
    assert_eq!(event["estimated"], true);
}

#[test]
fn budgets_survive_kill_9_and_restart() {
    let mock = Mock::start(&[]);
    let env = gateway_env(&mock, &[]);
    flat_price(&env, "mock-flat", "0.01");
    let t = tree(&env, "10.00", "0.05");
    let gw = Gateway::start(env);
    for _ in 0..5 {
        assert_eq!(
            gw.post("/openai/v1/chat/completions", &t.key, &chat("mock-flat", 8))
                .status,
            200
        );
    }
    wait_for_metering(&gw, 5);
    let Gateway { env, server, .. } = gw;
    server.kill9();
    let gw = Gateway::start(env);
    let denied = gw.post("/openai/v1/chat/completions", &t.key, &chat("mock-flat", 8));
    assert_eq!(
        denied.status, 403,
        "a restart must not reset the budget: {}",
        denied.body
    );
    assert_eq!(mock.requests(), 5);
}

#[test]
fn a_stream_longer_than_the_hold_expiry_keeps_its_hold_and_is_charged_once() {
    let mock = Mock::start(&[]);
    let env = gateway_env(
        &mock,
        &[
            ("CARACAL_GATEWAY__CONFIG__PROVISIONALCHARGEEXPIRATION", "2"),
            (
                "CARACAL_GATEWAY__CONFIG__PROVISIONALCHARGECLEANUPINTERVAL",
                "1",
            ),
        ],
    );
    flat_price(&env, "mock-flat", "0.01");
    let t = tree(&env, "10.00", "0.01");
    let gw = Gateway::start(env);
    let body = json!({"model": "mock-flat", "max_tokens": 30, "stream": true,
                      "messages": [{"role": "user", "content": "long"}]})
    .to_string();
    let auth = format!("Bearer {}", t.key);
    std::thread::scope(|s| {
        let long = s.spawn(|| {
            request(
                "POST",
                &gw.url("/openai/v1/chat/completions"),
                &[
                    ("Authorization", &auth),
                    ("x-mock-output-tokens", "30"),
                    ("x-mock-chunk-delay-ms", "150"),
                ],
                Some(&body),
            )
        });
        wait_for(
            "the long stream to reach the upstream",
            Duration::from_secs(10),
            || (mock.requests() == 1).then_some(()),
        );
        // While the stream flows past its original expiry, the budget stays held.
        let mut refused = 0;
        while !long.is_finished() {
            let second = gw.post("/openai/v1/chat/completions", &t.key, &chat("mock-flat", 8));
            assert_eq!(
                second.status, 403,
                "the hold of a live stream was freed: {}",
                second.body
            );
            refused += 1;
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(
            refused >= 4,
            "the stream ended too early to test expiry ({refused} probes)"
        );
        let done = long.join().unwrap();
        assert_eq!(done.status, 200);
        assert!(done.body.contains("[DONE]"));
    });
    let events = wait_for_metering(&gw, 1);
    assert_eq!(events.len(), 1, "charged more than once: {events:#?}");
    assert_eq!(events[0]["cost_micros"], 10_000);
    assert_eq!(events[0]["outcome"], "COMPLETED");
}

#[test]
fn unknown_revoked_and_missing_keys_are_refused_and_never_reach_the_upstream() {
    let mock = Mock::start(&[]);
    let env = gateway_env(&mock, &[]);
    let t = tree(&env, "10.00", "5.00");
    let second = env
        .cli(&["key", "create", "--agent-id", &t.child, "--output", "json"])
        .json();
    env.cli(&["key", "revoke", second["id"].as_str().unwrap()])
        .ok();
    let gw = Gateway::start(env);
    for key in [
        "cak_0000000000000000000000000000000000000000000000000000000000000000",
        second["secret"].as_str().unwrap(),
    ] {
        let response = gw.post("/openai/v1/chat/completions", key, &chat("mock-gpt", 8));
        assert_eq!(response.status, 401, "{}", response.body);
        assert_eq!(response.json()["error"]["code"], "unauthenticated");
    }
    let anonymous = request(
        "POST",
        &gw.url("/openai/v1/chat/completions"),
        &[],
        Some(&chat("mock-gpt", 8)),
    );
    assert_eq!(anonymous.status, 401);
    assert_eq!(mock.requests(), 0);
}

#[test]
fn limits_answer_before_anything_is_forwarded() {
    let mock = Mock::start(&[]);
    let env = gateway_env(
        &mock,
        &[
            ("CARACAL_GATEWAY__BODYBYTESMAX", "2000"),
            ("CARACAL_GATEWAY__CONFIG__MAXCONCURRENTREQUESTS", "1"),
        ],
    );
    let t = tree(&env, "10.00", "5.00");
    let gw = Gateway::start(env);
    let big =
        json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "x".repeat(5000)}]})
            .to_string();
    let too_large = gw.post("/openai/v1/chat/completions", &t.key, &big);
    assert_eq!(too_large.status, 413);
    assert_eq!(too_large.json()["error"]["code"], "payload_too_large");
    let unknown = gw.post("/nowhere/v1/chat/completions", &t.key, &chat("mock-gpt", 8));
    assert_eq!(unknown.status, 404);
    let unpriced = gw.post(
        "/openai/v1/chat/completions",
        &t.key,
        &chat("no-such-model", 8),
    );
    assert_eq!(unpriced.status, 403);
    assert_eq!(unpriced.json()["error"]["code"], "unknown_price");
    assert_eq!(mock.requests(), 0);

    let auth = format!("Bearer {}", t.key);
    std::thread::scope(|s| {
        let slow = s.spawn(|| {
            request(
                "POST",
                &gw.url("/openai/v1/chat/completions"),
                &[("Authorization", &auth), ("x-mock-latency-ms", "3000")],
                Some(&chat("mock-gpt", 8)),
            )
        });
        wait_for(
            "the slow request to reach the upstream",
            Duration::from_secs(10),
            || (mock.requests() == 1).then_some(()),
        );
        let over = gw.post("/openai/v1/chat/completions", &t.key, &chat("mock-gpt", 8));
        assert_eq!(over.status, 503);
        assert_eq!(over.json()["error"]["code"], "overloaded");
        assert!(over.headers.to_lowercase().contains("retry-after"));
        assert_eq!(slow.join().unwrap().status, 200);
    });
    assert_eq!(mock.requests(), 1);
}

#[test]
fn revoking_a_key_or_suspending_an_agent_takes_effect_at_once() {
    let mock = Mock::start(&[]);
    let env = gateway_env(&mock, &[]);
    let t = tree(&env, "10.00", "5.00");
    let second = env
        .cli(&["key", "create", "--agent-id", &t.child, "--output", "json"])
        .json();
    let second_key = second["secret"].as_str().unwrap().to_owned();
    let gw = Gateway::start(env);
    // Warm the caches, then change the agent behind them.
    assert_eq!(
        gw.post(
            "/openai/v1/chat/completions",
            &second_key,
            &chat("mock-gpt", 8)
        )
        .status,
        200
    );
    assert_eq!(
        gw.post("/openai/v1/chat/completions", &t.key, &chat("mock-gpt", 8))
            .status,
        200
    );
    gw.env
        .cli(&["key", "revoke", second["id"].as_str().unwrap()])
        .ok();
    wait_for(
        "the revoked key to be refused",
        Duration::from_secs(5),
        || {
            (gw.post(
                "/openai/v1/chat/completions",
                &second_key,
                &chat("mock-gpt", 8),
            )
            .status
                == 401)
                .then_some(())
        },
    );
    gw.env
        .cli(&["agent", "suspend", &t.parent, "--reason", "runaway team"])
        .ok();
    let suspended = wait_for("the suspension to apply", Duration::from_secs(5), || {
        let r = gw.post("/openai/v1/chat/completions", &t.key, &chat("mock-gpt", 8));
        (r.status == 403).then_some(r)
    });
    assert_eq!(suspended.json()["error"]["code"], "agent_suspended");
}

#[test]
fn request_metrics_use_the_names_the_alert_rules_expect() {
    let mock = Mock::start(&[]);
    let env = gateway_env(&mock, &[]);
    let t = tree(&env, "10.00", "5.00");
    let gw = Gateway::start(env);
    assert_eq!(
        gw.post("/openai/v1/chat/completions", &t.key, &chat("mock-gpt", 8))
            .status,
        200
    );
    assert_eq!(
        gw.post(
            "/openai/v1/chat/completions",
            "cak_wrong",
            &chat("mock-gpt", 8)
        )
        .status,
        401
    );
    let metrics = request("GET", &gw.server.telemetry_url("/metrics"), &[], None).body;
    for expected in [
        r#"caracal_requests_total{status="ok",route="/openai",decision="allow"} 1"#,
        r#"caracal_gateway_errors_total{code="unauthenticated"} 1"#,
        "caracal_policy_evaluation_seconds_bucket",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }
}

#[test]
fn with_replay_protection_a_nonce_is_accepted_once_and_stale_timestamps_are_refused() {
    let mock = Mock::start(&[]);
    let env = gateway_env(
        &mock,
        &[("CARACAL_GATEWAY__REPLAYPROTECTION__ENABLED", "true")],
    );
    let t = tree(&env, "10.00", "5.00");
    let gw = Gateway::start(env);
    let auth = format!("Bearer {}", t.key);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let call = |nonce: Option<&str>, timestamp: Option<u64>| {
        let ts = timestamp.map(|t| t.to_string());
        let mut headers = vec![("Authorization", auth.as_str())];
        if let Some(n) = nonce {
            headers.push(("X-Caracal-Nonce", n));
        }
        if let Some(t) = &ts {
            headers.push(("X-Caracal-Timestamp", t.as_str()));
        }
        request(
            "POST",
            &gw.url("/openai/v1/chat/completions"),
            &headers,
            Some(&chat("mock-gpt", 8)),
        )
    };
    let nonce = "3f9c2a7e-0b1d-4c55-9e2f-replay-test";
    assert_eq!(call(Some(nonce), Some(now)).status, 200);
    let replayed = call(Some(nonce), Some(now));
    assert_eq!(replayed.status, 401);
    assert!(replayed.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nonce"));
    assert_eq!(call(None, Some(now)).status, 401);
    assert_eq!(call(Some("another-fresh-nonce-0001"), None).status, 401);
    assert_eq!(
        call(Some("another-fresh-nonce-0002"), Some(now - 3600)).status,
        401
    );
    assert_eq!(mock.requests(), 1);
}
