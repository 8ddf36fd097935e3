//! Anthropic-shaped answers for `POST /v1/messages`: the message object, or the event stream
//! (`message_start` … `message_stop`, `event:` lines included) exactly as Anthropic sends it.
//! Builds bodies only; the counts come from `Call`.

use serde_json::{json, Value};

use super::request::Call;
use super::{id, output_text, sse_event, token_text, Reply};

/// `POST /v1/messages`.
pub fn messages(call: &Call) -> Reply {
    let id = id("msg_");
    let stop_reason = if call.truncated {
        "max_tokens"
    } else {
        "end_turn"
    };
    let usage = |output_tokens: u64| {
        json!({
            "input_tokens": call.uncached_tokens(),
            "cache_creation_input_tokens": call.cache_write_tokens,
            "cache_read_input_tokens": call.cached_tokens,
            "cache_creation": {"ephemeral_5m_input_tokens": call.cache_write_tokens,
                               "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        })
    };
    let message = |content: Value, stop: Value, output_tokens: u64| {
        json!({
            "id": id, "type": "message", "role": "assistant", "model": call.model,
            "content": content, "stop_reason": stop, "stop_sequence": null,
            "usage": usage(output_tokens),
        })
    };
    if !call.stream {
        let content = json!([{"type": "text", "text": output_text(call.output_tokens)}]);
        return Reply::Json(message(content, json!(stop_reason), call.output_tokens));
    }
    let tokens = usize::try_from(call.output_tokens).unwrap_or(0);
    let mut events = Vec::with_capacity(tokens.saturating_add(6));
    let mut push = |kind: &str, mut body: Value| {
        body["type"] = json!(kind);
        events.push(sse_event(kind, &body));
    };
    // Anthropic reports a provisional output count of 1 at the start; never above the final.
    let start = message(json!([]), Value::Null, call.output_tokens.min(1));
    push("message_start", json!({"message": start}));
    push(
        "content_block_start",
        json!({"index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    push("ping", json!({}));
    for i in 0..call.output_tokens {
        push(
            "content_block_delta",
            json!({"index": 0, "delta": {"type": "text_delta", "text": token_text(i)}}),
        );
    }
    push("content_block_stop", json!({"index": 0}));
    push(
        "message_delta",
        json!({
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {
                "input_tokens": call.uncached_tokens(),
                "cache_creation_input_tokens": call.cache_write_tokens,
                "cache_read_input_tokens": call.cached_tokens,
                "output_tokens": call.output_tokens,
            },
        }),
    );
    push("message_stop", json!({}));
    Reply::Sse(events)
}

/// Anthropic's error body: `{"type": "error", "error": {"type", "message"}}`.
pub fn error(status: hyper::StatusCode, message: &str) -> Value {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        code if code >= 500 => "api_error",
        _ => "invalid_request_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}
