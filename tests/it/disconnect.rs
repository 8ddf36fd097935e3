//! A client that hangs up before the first response byte: the call was forwarded (a provider
//! bills it), so it is charged exactly once (its reservation, `estimated`, `CLIENT_DISCONNECTED`),
//! nothing stays held, and the ledger has it. A call refused before forwarding leaves nothing.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::gateway::{flat_price, gateway_env, tree, Gateway, Mock};
use crate::harness::wait_for;

/// The price of one call of `mock-flat`, in micros (0.01).
const PER_CALL: i64 = 10_000;

/// Sends a chat call whose upstream waits 4 s before its first byte, waits until the upstream
/// has it, gives the gateway 100 ms more without an answer, and hangs up.
fn hang_up_before_first_byte(gw: &Gateway, mock: &Mock, key: &str, seen_before: u64) {
    let body = json!({"model": "mock-flat", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "slow"}]})
    .to_string();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    write!(
        stream,
        "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nx-mock-latency-ms: 4000\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    wait_for(
        "the upstream to receive the call",
        Duration::from_secs(10),
        || (mock.requests() > seen_before).then_some(()),
    );
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut first = [0u8; 64];
    assert!(
        stream.read(&mut first).is_err(),
        "the upstream answered within 100 ms; the test needs it slower"
    );
    drop(stream);
}

#[test]
fn a_client_that_hangs_up_before_the_first_byte_is_charged_once_and_nothing_stays_held() {
    let mock = Mock::start(&[]);
    let env = gateway_env(&mock, &[]);
    flat_price(&env, "mock-flat", "0.01");
    let t = tree(&env, "10.00", "0.05");
    let gw = Gateway::start_roles(env, &["gateway", "admin", "ledger"]);

    for i in 0..3 {
        hang_up_before_first_byte(&gw, &mock, &t.key, i);
    }
    let events = wait_for("three charges", Duration::from_secs(20), || {
        let events = gw.metering_events();
        (events.len() >= 3).then_some(events)
    });
    assert_eq!(events.len(), 3, "{events:#?}");
    for event in &events {
        assert_eq!(event["outcome"], "CLIENT_DISCONNECTED", "{event}");
        assert_eq!(event["estimated"], true, "{event}");
        assert_eq!(event["cost_micros"], PER_CALL, "{event}");
    }
    wait_for("every hold to be released", Duration::from_secs(20), || {
        (gw.reservations_open() == Some(0.0)).then_some(())
    });

    // The budget holds exactly those three charges: 0.05 leaves room for two more calls.
    let chat = json!({"model": "mock-flat", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "quick"}]})
    .to_string();
    for _ in 0..2 {
        let ok = gw.post("/openai/v1/chat/completions", &t.key, &chat);
        assert_eq!(ok.status, 200, "{}", ok.body);
    }
    let denied = gw.post("/openai/v1/chat/completions", &t.key, &chat);
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert_eq!(mock.requests(), 5, "the refused call reached the upstream");

    // The refused call left no charge and no hold; the ledger has the five charges.
    let events = wait_for("five charges", Duration::from_secs(20), || {
        let events = gw.metering_events();
        (events.len() >= 5).then_some(events)
    });
    assert_eq!(events.len(), 5, "{events:#?}");
    wait_for(
        "the ledger to hold all five",
        Duration::from_secs(60),
        || {
            let rows = crate::ledger::query(&gw.env, &t.child, &[]);
            let total: i64 = ledger_costs(&rows).iter().sum();
            (total == 5 * PER_CALL).then_some(())
        },
    );
    assert_eq!(gw.reservations_open(), Some(0.0));
}

/// The cost of every row of a `ledger query --output json` answer.
fn ledger_costs(rows: &Value) -> Vec<i64> {
    let rows = rows
        .get("rows")
        .or(rows.get("events"))
        .unwrap_or(rows)
        .as_array()
        .cloned()
        .unwrap_or_default();
    rows.iter()
        .filter_map(|r| r["cost_micros"].as_i64())
        .collect()
}
