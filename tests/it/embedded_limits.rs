//! The embedded adapters' limits are configuration: a spend cache allowed one live hold
//! refuses a second call while the first is in flight (503, nothing forwarded), then serves again.

use std::time::Duration;

use serde_json::json;

use crate::harness::gateway::{gateway_env, tree, Gateway, Mock};
use crate::harness::{request, wait_for};

#[test]
fn a_spend_cache_at_its_configured_hold_limit_refuses_and_forwards_nothing() {
    let mock = Mock::start(&[]);
    let env = gateway_env(&mock, &[("CARACAL_EMBEDDED__SPENDCACHE__HOLDSMAX", "1")]);
    let t = tree(&env, "10.00", "5.00");
    let gw = Gateway::start(env);
    let body = json!({"model": "mock-gpt", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "hold"}]})
    .to_string();
    let auth = format!("Bearer {}", t.key);
    std::thread::scope(|s| {
        let slow = s.spawn(|| {
            let headers = [
                ("Authorization", auth.as_str()),
                ("x-mock-latency-ms", "3000"),
            ];
            request(
                "POST",
                &gw.url("/openai/v1/chat/completions"),
                &headers,
                Some(&body),
            )
        });
        wait_for("the slow call upstream", Duration::from_secs(10), || {
            (mock.requests() == 1).then_some(())
        });
        let refused = gw.post("/openai/v1/chat/completions", &t.key, &body);
        assert_eq!(refused.status, 503, "{}", refused.body);
        assert_eq!(refused.json()["error"]["code"], "dependency_unavailable");
        assert_eq!(mock.requests(), 1, "a refused call reached the upstream");
        assert_eq!(slow.join().unwrap().status, 200);
    });
    wait_for(
        "the slow call's hold to be settled",
        Duration::from_secs(10),
        || (gw.reservations_open() == Some(0.0)).then_some(()),
    );
    let again = gw.post("/openai/v1/chat/completions", &t.key, &body);
    assert_eq!(again.status, 200, "{}", again.body);
}
