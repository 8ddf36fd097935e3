//! The MCP adapter against the real binary, judged by the official `mcp` Python SDK on both
//! sides (an upstream server written with it, its client driving Caracal) at both protocol
//! versions: discovery filtered by the allow list, plain and streamed calls charged their exact
//! price, refusals the SDK raises that never reach the server, exactly N of 1000 racing calls
//! through a budget for N, a cancelled slow call charged once with its hold released, a session
//! continuing through another replica, and a spoofed `Mcp-Name` refused before forwarding.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::mcp::{
    agent, mcp_env, metering_events, price_tools, reservations_open, sdk, Upstream, FETCH_PAGE,
    SEARCH, SLOW_REPORT, UPSTREAM_TOKEN,
};
use crate::harness::postgres::PgServer;
use crate::harness::{request, wait_for, Env, HttpResponse};

const MODES: [&str; 2] = ["legacy", "2026-07-28"];

fn endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}/mcp/tools")
}

/// A stateless (2026-07-28) `tools/call` as raw HTTP, with `mcp_name` as its `Mcp-Name`.
fn modern_call(port: u16, key: &str, tool: &str, mcp_name: &str, arguments: Value) -> HttpResponse {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    let auth = format!("Bearer {key}");
    request(
        "POST",
        &endpoint(port),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", mcp_name),
        ],
        Some(&body),
    )
}

/// One stateless `tools/call` of `echo` on an open connection; returns (status, body).
fn raw_echo(mut stream: std::net::TcpStream, key: &str, i: usize) -> HttpResponse {
    use std::io::{Read, Write};
    let body = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": format!("call {i}")}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    let head = format!(
        "POST /mcp/tools HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: echo\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (headers, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    HttpResponse {
        status,
        headers: headers.to_owned(),
        body: body.to_owned(),
    }
}

fn wait_events(server: &crate::harness::Server, count: usize) -> Vec<Value> {
    wait_for(
        &format!("{count} metering events"),
        Duration::from_secs(30),
        || {
            let events = metering_events(server);
            (events.len() >= count).then_some(events)
        },
    )
}

#[test]
fn the_sdk_discovers_calls_streams_and_is_charged_exactly_through_the_adapter_at_both_versions() {
    let upstream = Upstream::start();
    let (env, port) = mcp_env(&upstream, Env::new());
    price_tools(&env);
    let allow = [
        "mcp:tools/search",
        "mcp:tools/fetch_page",
        "mcp:tools/slow_*",
    ];
    let (_, key) = agent(&env, "bot", "10.00", &allow);
    let (_, poor) = agent(&env, "poor", "0.005", &[]);
    let server = env.serve(&["--role", "mcp", "--role", "admin"]);

    for (mode, version) in MODES.iter().zip(["2025-11-25", "2026-07-28"]) {
        let out = sdk(&["calls", &endpoint(port), &key, &poor, mode], &server);
        assert_eq!(out["protocol_version"], version, "{out}");
        assert_eq!(
            out["tools"],
            json!(["fetch_page", "search", "slow_report"]),
            "{mode}"
        );
        assert_eq!(out["search"], "results for lynx", "{mode}");
        assert_eq!(
            out["slow_report"]["text"], "report done in 3 steps",
            "{mode}"
        );
        assert_eq!(
            out["slow_report"]["progress"],
            json!([1.0, 2.0, 3.0]),
            "{mode}"
        );
        assert_eq!(out["resource"], "caracal test readme", "{mode}");
        assert_eq!(out["prompt"], "Say hello to Ada.", "{mode}");
        assert_eq!(out["not_allowed"]["raised"], "MCPError", "{mode}: {out}");
        assert_eq!(out["not_allowed"]["code"], -32003, "{mode}");
        assert_eq!(
            out["not_allowed"]["data"]["code"], "resource_not_allowed",
            "{mode}"
        );
        assert_eq!(out["over_budget"]["raised"], "MCPError", "{mode}: {out}");
        assert_eq!(
            out["over_budget"]["data"]["code"], "budget_exceeded",
            "{mode}"
        );
    }

    // The refused calls never reached the server; the agent's key never did either.
    let stats = upstream.stats();
    assert_eq!(
        stats["calls"]["delete_all"].as_i64().unwrap_or(0),
        0,
        "{stats}"
    );
    assert_eq!(
        stats["calls"]["search"], 2,
        "the over-budget search reached the server: {stats}"
    );
    assert_eq!(
        stats["credentials"],
        json!([format!("Bearer {UPSTREAM_TOKEN}")]),
        "{stats}"
    );
    assert_eq!(stats["unauthorized"], 0);

    let events = wait_events(&server, 6);
    assert_eq!(events.len(), 6, "{events:#?}");
    let mut charged: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for event in &events {
        assert_eq!(event["source"], "MCP", "{event}");
        assert_eq!(event["provider"], "mcp");
        assert_eq!(event["operation"], "tools/call");
        assert_eq!(event["outcome"], "COMPLETED");
        assert_eq!(event["estimated"], false);
        let resource = event["resource"].as_str().unwrap().to_owned();
        charged
            .entry(resource)
            .or_default()
            .push(event["cost_micros"].as_i64().unwrap());
    }
    let expect = BTreeMap::from([
        ("tools/fetch_page".to_owned(), vec![FETCH_PAGE; 2]),
        ("tools/search".to_owned(), vec![SEARCH; 2]),
        ("tools/slow_report".to_owned(), vec![SLOW_REPORT; 2]),
    ]);
    assert_eq!(charged, expect);
    assert_eq!(reservations_open(port), 0.0);
}

#[test]
fn a_spoofed_mcp_name_is_refused_with_400_and_never_forwarded() {
    let upstream = Upstream::start();
    let (env, port) = mcp_env(&upstream, Env::new());
    price_tools(&env);
    let (_, key) = agent(&env, "bot", "10.00", &[]);
    let server = env.serve(&["--role", "mcp", "--role", "admin"]);

    let args = json!({"url": "https://example.com"});
    let spoofed = modern_call(port, &key, "fetch_page", "search", args.clone());
    assert_eq!(spoofed.status, 400, "{}", spoofed.body);
    assert_eq!(spoofed.json()["error"]["code"], -32020, "{}", spoofed.body);
    assert_eq!(upstream.calls("fetch_page") + upstream.calls("search"), 0);

    // The same call with an honest header goes through and is charged the body's tool.
    let honest = modern_call(port, &key, "fetch_page", "fetch_page", args);
    assert_eq!(honest.status, 200, "{}", honest.body);
    assert!(
        honest.body.contains("<html>https://example.com</html>"),
        "{}",
        honest.body
    );
    assert_eq!(upstream.calls("fetch_page"), 1);
    let events = wait_events(&server, 1);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["resource"], "tools/fetch_page");
    assert_eq!(events[0]["cost_micros"], FETCH_PAGE);
}

#[test]
fn a_thousand_concurrent_calls_against_a_budget_for_exactly_n_reach_the_server_n_times() {
    const CALLS: usize = 1000;
    const AFFORDABLE: i64 = 25;
    let upstream = Upstream::start();
    let (env, port) = mcp_env(&upstream, Env::new());
    price_tools(&env);
    let (_, key) = agent(&env, "bot", "0.025", &[]); // 25 calls of echo at 0.001
    let server = env.serve(&["--role", "mcp", "--role", "admin"]);

    let barrier = std::sync::Arc::new(std::sync::Barrier::new(CALLS));
    let threads: Vec<_> = (0..CALLS)
        .map(|i| {
            let (key, barrier) = (key.clone(), std::sync::Arc::clone(&barrier));
            std::thread::spawn(move || {
                // Connected first, then all sent at once: the race is for the budget, not for
                // the listen queue.
                let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                barrier.wait();
                raw_echo(stream, &key, i)
            })
        })
        .collect();
    let responses: Vec<HttpResponse> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let answered = responses.iter().filter(|r| r.status == 200).count() as i64;
    let denied = responses
        .iter()
        .filter(|r| r.status == 403 && r.json()["error"]["data"]["code"] == "budget_exceeded")
        .count() as i64;
    assert_eq!((answered, denied), (AFFORDABLE, CALLS as i64 - AFFORDABLE));
    assert_eq!(
        upstream.calls("echo"),
        AFFORDABLE,
        "calls that reached the server"
    );
    let events = wait_events(&server, AFFORDABLE as usize);
    let total: i64 = events
        .iter()
        .map(|e| e["cost_micros"].as_i64().unwrap())
        .sum();
    assert_eq!((events.len() as i64, total), (AFFORDABLE, 25_000));
}

#[test]
fn a_client_that_cancels_a_slow_call_is_charged_once_and_its_hold_released() {
    let upstream = Upstream::start();
    let (env, port) = mcp_env(&upstream, Env::new());
    price_tools(&env);
    let (_, key) = agent(&env, "bot", "10.00", &[]);
    let server = env.serve(&["--role", "mcp", "--role", "admin"]);

    for (round, mode) in MODES.iter().enumerate() {
        let out = sdk(&["cancel", &endpoint(port), &key, mode], &server);
        assert_eq!(out["cancelled"], true);
        let events = wait_events(&server, round + 1);
        assert_eq!(events.len(), round + 1, "{mode}: {events:#?}");
        let event = &events[round];
        assert_eq!(event["resource"], "tools/slow_report", "{mode}");
        assert_eq!(
            event["cost_micros"], SLOW_REPORT,
            "{mode}: charged once, its price"
        );
        assert_eq!(event["outcome"], "CLIENT_DISCONNECTED", "{mode}");
        wait_for("the hold to be released", Duration::from_secs(10), || {
            (reservations_open(port) == 0.0).then_some(())
        });
        // The server stops the report: closing the stream (or the cancel notice) reached it.
        wait_for(
            "the upstream to cancel the report",
            Duration::from_secs(10),
            || (upstream.stats()["slow"]["cancelled"] == json!(round + 1)).then_some(()),
        );
    }
    assert_eq!(upstream.stats()["slow"]["completed"], 0);
}

#[test]
fn a_2025_11_25_session_opened_through_one_replica_continues_through_another() {
    let upstream = Upstream::start();
    let pg = PgServer::start();
    let database = pg.create_database(None);
    let shared = crate::harness::TempDir::new();
    let key_file = shared.path().join("session-key");
    std::fs::write(
        &key_file,
        "a shared session key of at least thirty-two bytes",
    )
    .unwrap();
    let replica = |env: Env| {
        let mut env = env.with(
            "CARACAL_MCPADAPTER__SESSIONKEYFILE",
            &key_file.display().to_string(),
        );
        for (k, v) in pg.env_vars(&database) {
            env = env.with(&k, &v);
        }
        mcp_env(&upstream, env)
    };
    let (env_a, port_a) = replica(Env::new());
    let (env_b, port_b) = replica(Env::new());
    env_a.cli(&["db", "migrate", "up"]).ok();
    price_tools(&env_a);
    let (_, key) = agent(&env_a, "bot", "10.00", &["mcp:tools/search"]);
    let a = env_a.serve(&["--role", "mcp", "--role", "admin"]);
    let b = env_b.serve(&["--role", "mcp"]);

    let out = sdk(&["session", &endpoint(port_a), &endpoint(port_b), &key], &a);
    assert_eq!(out["protocol_version"], "2025-11-25");
    assert_eq!(out["first"], "results for on A");
    assert_eq!(out["tools_on_b"], json!(["search"]));
    assert_eq!(out["second"], "results for on B");
    let mut both = [port_a, port_b];
    both.sort_unstable();
    assert_eq!(out["replicas_used"], json!(both));
    assert_eq!(upstream.calls("search"), 2);
    drop(b);
}
