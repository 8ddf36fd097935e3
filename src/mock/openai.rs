//! OpenAI-shaped answers: chat completions, legacy completions, embeddings and Responses, as
//! JSON or as the SSE events OpenAI streams, with the field names the official SDK reads.
//! Builds bodies only; the counts come from `Call`, the transport from `mod.rs`.

use bytes::Bytes;
use serde_json::{json, Value};

use super::request::Call;
use super::{id, now_s, output_text, sse_data, sse_event, token_text, Reply};

/// `POST /v1/chat/completions`.
pub fn chat(call: &Call) -> Reply {
    let id = id("chatcmpl-");
    let created = now_s();
    let finish = if call.truncated { "length" } else { "stop" };
    if !call.stream {
        return Reply::Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": call.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": output_text(call.output_tokens),
                            "refusal": null, "annotations": []},
                "logprobs": null, "finish_reason": finish,
            }],
            "usage": prompt_usage(call),
            "service_tier": "default", "system_fingerprint": "fp_mock",
        }));
    }
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut chunk = json!({
            "id": id, "object": "chat.completion.chunk", "created": created,
            "model": call.model, "service_tier": "default", "system_fingerprint": "fp_mock",
            "choices": choices,
        });
        if call.include_usage {
            chunk["usage"] = usage.unwrap_or(Value::Null);
        }
        sse_data(&chunk)
    };
    let choice = |delta: Value, finish: Option<&str>| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    let mut events = Vec::with_capacity(call_events(call));
    events.push(chunk(
        choice(
            json!({"role": "assistant", "content": "", "refusal": null}),
            None,
        ),
        None,
    ));
    for i in 0..call.output_tokens {
        events.push(chunk(choice(json!({"content": token_text(i)}), None), None));
    }
    events.push(chunk(choice(json!({}), Some(finish)), None));
    finish_stream(call, events, |usage| chunk(json!([]), Some(usage)))
}

/// `POST /v1/completions` (legacy).
pub fn completions(call: &Call) -> Reply {
    let id = id("cmpl-");
    let created = now_s();
    let finish = if call.truncated { "length" } else { "stop" };
    if !call.stream {
        return Reply::Json(json!({
            "id": id, "object": "text_completion", "created": created, "model": call.model,
            "choices": [{"text": output_text(call.output_tokens), "index": 0,
                         "logprobs": null, "finish_reason": finish}],
            "usage": prompt_usage(call),
        }));
    }
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut chunk = json!({
            "id": id, "object": "text_completion", "created": created, "model": call.model,
            "choices": choices,
        });
        if call.include_usage {
            chunk["usage"] = usage.unwrap_or(Value::Null);
        }
        sse_data(&chunk)
    };
    let choice = |text: &str, finish: Option<&str>| json!([{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]);
    let mut events = Vec::with_capacity(call_events(call));
    for i in 0..call.output_tokens {
        events.push(chunk(choice(token_text(i), None), None));
    }
    events.push(chunk(choice("", Some(finish)), None));
    finish_stream(call, events, |usage| chunk(json!([]), Some(usage)))
}

/// Appends the usage chunk (when asked for) and `[DONE]`.
fn finish_stream(call: &Call, mut events: Vec<Bytes>, usage: impl Fn(Value) -> Bytes) -> Reply {
    if call.include_usage {
        events.push(usage(prompt_usage(call)));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Reply::Sse(events)
}

fn call_events(call: &Call) -> usize {
    usize::try_from(call.output_tokens)
        .unwrap_or(0)
        .saturating_add(4)
}

/// `usage` of chat and completions: `prompt_tokens` includes the cached ones.
fn prompt_usage(call: &Call) -> Value {
    json!({
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.output_tokens,
        "total_tokens": call.prompt_tokens + call.output_tokens,
        "prompt_tokens_details": {"cached_tokens": call.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    })
}

/// `POST /v1/embeddings`: `embedding_inputs` vectors, as float arrays or (when
/// `encoding_format` is `base64`) little-endian f32 bytes in base64, as the SDK asks by default.
pub fn embeddings(call: &Call) -> Reply {
    let data: Vec<Value> = (0..call.embedding_inputs)
        .map(|index| {
            let vector: Vec<f32> = (0..call.embedding_dimensions)
                .map(|d| ((index + d) % 10) as f32 / 10.0 - 0.45)
                .collect();
            let embedding = if call.embedding_base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64(&bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Reply::Json(json!({
        "object": "list", "data": data, "model": call.model,
        "usage": {"prompt_tokens": call.prompt_tokens, "total_tokens": call.prompt_tokens},
    }))
}

/// Standard base64 with padding (RFC 4648 §4).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group.first().copied().unwrap_or(0),
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].iter().enumerate() {
            if i <= group.len() {
                let sextet = usize::try_from((n >> shift) & 63).unwrap_or(0);
                out.push(char::from(ALPHABET.get(sextet).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `POST /v1/responses`: a `response` object, or its event stream ending in
/// `response.completed` (which alone carries usage).
pub fn responses(call: &Call) -> Reply {
    let response_id = id("resp_");
    let item_id = id("msg_");
    let created = now_s();
    let text = output_text(call.output_tokens);
    let response = |status: &str, output: Value, usage: Value| {
        json!({
            "id": response_id, "object": "response", "created_at": created, "status": status,
            "background": false, "error": null, "incomplete_details": null,
            "instructions": null, "max_output_tokens": null, "model": call.model,
            "output": output, "parallel_tool_calls": true, "previous_response_id": null,
            "reasoning": {"effort": null, "summary": null}, "service_tier": "default",
            "store": true, "temperature": 1.0, "text": {"format": {"type": "text"}},
            "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
            "usage": usage, "user": null, "metadata": {},
        })
    };
    let part = json!({"type": "output_text", "annotations": [], "text": text});
    let item = |status: &str, content: Value| {
        json!({"id": item_id, "type": "message", "status": status, "role": "assistant",
               "content": content})
    };
    let usage = json!({
        "input_tokens": call.prompt_tokens,
        "input_tokens_details": {"cached_tokens": call.cached_tokens},
        "output_tokens": call.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": call.prompt_tokens + call.output_tokens,
    });
    let done_item = item("completed", json!([part]));
    if !call.stream {
        return Reply::Json(response("completed", json!([done_item]), usage));
    }
    let mut events = Vec::with_capacity(call_events(call).saturating_add(6));
    let mut push = |kind: &str, mut body: Value| {
        body["type"] = json!(kind);
        body["sequence_number"] = json!(events.len());
        events.push(sse_event(kind, &body));
    };
    let in_progress = response("in_progress", json!([]), Value::Null);
    push("response.created", json!({"response": in_progress}));
    push("response.in_progress", json!({"response": in_progress}));
    let empty_item = item("in_progress", json!([]));
    push(
        "response.output_item.added",
        json!({"output_index": 0, "item": empty_item}),
    );
    let at = json!({"item_id": item_id, "output_index": 0, "content_index": 0});
    let with = |extra: Value| {
        let mut body = at.clone();
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        body
    };
    let empty_part = json!({"type": "output_text", "annotations": [], "text": ""});
    push(
        "response.content_part.added",
        with(json!({"part": empty_part})),
    );
    for i in 0..call.output_tokens {
        push(
            "response.output_text.delta",
            with(json!({"delta": token_text(i), "logprobs": []})),
        );
    }
    push(
        "response.output_text.done",
        with(json!({"text": text, "logprobs": []})),
    );
    push("response.content_part.done", with(json!({"part": part})));
    push(
        "response.output_item.done",
        json!({"output_index": 0, "item": done_item}),
    );
    let completed = response("completed", json!([done_item]), usage);
    push("response.completed", json!({"response": completed}));
    Reply::Sse(events)
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
pub fn error(status: hyper::StatusCode, message: &str) -> Value {
    let (kind, code) = match status.as_u16() {
        401 => ("invalid_request_error", json!("invalid_api_key")),
        403 => ("permission_error", Value::Null),
        404 => ("invalid_request_error", json!("not_found")),
        429 => ("requests", json!("rate_limit_exceeded")),
        code if code >= 500 => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}
