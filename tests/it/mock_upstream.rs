//! `caracal-mock-upstream` as the gateway tests will run it: it announces its address, answers
//! with usage that is a documented function of the request, records credentials, stops on TERM.

use crate::harness::mock::MockProcess;
use crate::harness::request;

#[test]
fn the_mock_binary_announces_its_address_and_answers_with_deterministic_usage() {
    let mock = MockProcess::start(&["--output-tokens", "3"]);
    let body =
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"four words of prompt"}]}"#;
    let answer = request(
        "POST",
        &mock.url("/v1/chat/completions"),
        &[
            ("Authorization", "Bearer sk-upstream"),
            ("Content-Type", "application/json"),
            ("x-mock-cached-tokens", "1"),
        ],
        Some(body),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let usage = &answer.json()["usage"];
    assert_eq!(usage["prompt_tokens"], 4);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 1);
    assert_eq!(usage["completion_tokens"], 3);
    let stats = mock.stats();
    assert_eq!(stats["requests"], 1);
    assert_eq!(stats["by_path"]["/v1/chat/completions"], 1);
    assert_eq!(stats["last_headers"]["authorization"], "Bearer sk-upstream");
    mock.reset();
    assert_eq!(mock.stats()["requests"], 0);
    assert_eq!(mock.terminate(), Some(0));
}

#[test]
fn the_mock_binary_answers_anthropic_errors_on_request() {
    let mock = MockProcess::start(&[]);
    let answer = request(
        "POST",
        &mock.url("/v1/messages"),
        &[("x-api-key", "ak-upstream"), ("x-mock-status", "529")],
        Some("{}"),
    );
    assert_eq!(answer.status, 529);
    assert_eq!(answer.json()["error"]["type"], "overloaded_error");
    assert_eq!(mock.stats()["last_headers"]["x-api-key"], "ak-upstream");
}

/// The official `openai` and `anthropic` Python SDKs (from `CARACAL_PYTHON`, as
/// scripts/test.sh sets it) call every endpoint, streamed and not, and get the documented usage.
#[test]
fn the_official_sdks_accept_every_mock_answer() {
    let python = std::env::var_os("CARACAL_PYTHON").unwrap_or_else(|| {
        panic!(
            "CARACAL_PYTHON is not set. This test needs a Python 3 with the packages of \
             tests/python/requirements.txt (scripts/test.sh prepares one in .venv)"
        )
    });
    let mock = MockProcess::start(&[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/sdk_mock_check.py"
    );
    let output = std::process::Command::new(&python)
        .args(["-W", "ignore", script, &mock.url("")])
        .output()
        .unwrap_or_else(|e| panic!("cannot run CARACAL_PYTHON={python:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim() == "ok",
        "sdk_mock_check.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
