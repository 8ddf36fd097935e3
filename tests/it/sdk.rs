//! The official OpenAI and Anthropic Python SDKs, unmodified, pointed at the gateway: plain and
//! streamed calls work, each is charged exactly what the SDK was told it used, and a budget
//! denial surfaces as the SDK's own error carrying the reason.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::gateway::{gateway_env, tree, Gateway, Mock};
use crate::harness::{request, wait_for};

#[test]
fn the_official_sdks_work_through_the_gateway_and_are_charged_exactly() {
    let mock = Mock::start(&[]);
    let env = gateway_env(&mock, &[]);
    env.cli(&[
        "pricebook",
        "set",
        "--provider",
        "openai",
        "--model",
        "mock-embed",
        "--input",
        "1.00",
    ])
    .ok();
    env.cli(&[
        "pricebook",
        "set",
        "--provider",
        "openai",
        "--model",
        "mock-pricey",
        "--input",
        "1000000.00",
        "--output-price",
        "1000000.00",
    ])
    .ok();
    let t = tree(&env, "10.00", "5.00");
    let gw = Gateway::start(env);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sdk_calls.py");
    let output = Command::new(crate::harness::python())
        .args([script, &gw.url(""), &t.key])
        .output()
        .unwrap_or_else(|e| panic!("cannot run the SDK script: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK script failed:\n{stderr}\nlog:\n{}",
        gw.server.log()
    );
    let calls: Value = serde_json::from_slice(&output.stdout).unwrap();

    let denied = &calls["denied"];
    assert_eq!(denied["raised"], "PermissionDeniedError", "{denied}");
    assert_eq!(denied["status"], 403);
    assert_eq!(denied["code"], "budget_exceeded");

    let events = wait_for("six metering events", Duration::from_secs(20), || {
        let r = request(
            "GET",
            &gw.server
                .admin_url("/v1/events/caracal.metering.events?limit=100"),
            &[("Authorization", "Bearer gateway-test-admin-token")],
            None,
        );
        let events = r.json().as_array().cloned().unwrap_or_default();
        (events.len() >= 6).then_some(events)
    });
    assert_eq!(events.len(), 6, "{events:#?}");
    let expect = [
        ("chat", "mock-gpt", "chat.completions", 2),
        ("chat_stream", "mock-gpt", "chat.completions", 2),
        ("embeddings", "mock-embed", "embeddings", 0),
        ("messages", "mock-claude", "messages", 2),
        ("messages_stream", "mock-claude", "messages", 2),
    ];
    for (call, model, operation, output_price) in expect {
        let seen = &calls[call];
        let (input, output) = (
            seen["input"].as_i64().unwrap(),
            seen["output"].as_i64().unwrap(),
        );
        let matching: Vec<&Value> = events
            .iter()
            .filter(|e| {
                e["resource"] == model
                    && e["operation"] == operation
                    && e["input_tokens"].as_i64() == Some(input)
                    && e["output_tokens"].as_i64() == Some(output)
            })
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{call}: {seen} not found exactly once in {events:#?}"
        );
        let event = matching[0];
        assert_eq!(
            event["cost_micros"].as_i64(),
            Some(input + output_price * output),
            "{call}"
        );
        assert_eq!(event["estimated"], false, "{call}");
        assert_eq!(event["outcome"], "COMPLETED", "{call}");
    }
    assert!(!calls["chat_stream"]["text"].as_str().unwrap().is_empty());

    // The stream that did not ask for usage got none, and was still metered from it.
    let plain = &calls["chat_stream_plain"];
    assert_eq!(plain["chunks_with_usage"], 0, "{plain}");
    let text = plain["text"].as_str().unwrap();
    assert!(!text.is_empty(), "{plain}");
    let metered: Vec<&Value> = events
        .iter()
        .filter(|e| e["output_tokens"] == 7 && e["operation"] == "chat.completions")
        .collect();
    assert_eq!(metered.len(), 1, "{events:#?}");
    assert_eq!(metered[0]["estimated"], false);
    assert!(!calls["messages_stream"]["text"]
        .as_str()
        .unwrap()
        .is_empty());
}
