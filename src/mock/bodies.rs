//! The mock's response bodies, shaped like OpenAI's and Anthropic's: chat completions,
//! completions, embeddings, responses and messages, as JSON and as SSE chunks. Usage is a pure
//! function of the request: input = words in the prompt, output = min(max tokens, N).

use serde_json::{json, Value};

/// Dimensions of a mock embedding.
const EMBEDDING_DIMS: usize = 8;
/// `created` timestamp of every mock object (fixed: responses are deterministic).
const CREATED: u64 = 1_700_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    Responses,
    Messages,
}

/// One parsed call and the usage the mock will report for it.
pub struct Call {
    endpoint: Endpoint,
    model: String,
    pub stream: bool,
    include_usage: bool,
    base64: bool,
    /// Input tokens not served from cache.
    input: u64,
    cached: u64,
    output: u64,
}

fn words(value: &Value) -> u64 {
    match value {
        Value::String(s) => s.split_whitespace().count() as u64,
        Value::Array(items) => items.iter().map(words).sum(),
        Value::Object(map) => ["content", "text", "input", "prompt"]
            .iter()
            .filter_map(|k| map.get(*k))
            .map(words)
            .sum(),
        _ => 0,
    }
}

impl Call {
    pub fn parse(path: &str, body: &Value, output_tokens: u64, cached_tokens: u64) -> Option<Call> {
        let endpoint = match path.trim_end_matches('/') {
            p if p.ends_with("/chat/completions") => Endpoint::Chat,
            p if p.ends_with("/completions") => Endpoint::Completions,
            p if p.ends_with("/embeddings") => Endpoint::Embeddings,
            p if p.ends_with("/responses") => Endpoint::Responses,
            p if p.ends_with("/messages") => Endpoint::Messages,
            _ => return None,
        };
        let prompt_words = match endpoint {
            Endpoint::Chat | Endpoint::Messages => {
                words(&body["messages"]) + words(&body["system"])
            }
            Endpoint::Completions => words(&body["prompt"]),
            Endpoint::Embeddings | Endpoint::Responses => {
                words(&body["input"]) + words(&body["instructions"])
            }
        }
        .max(1);
        let cap = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
            .iter()
            .find_map(|k| body[*k].as_u64())
            .unwrap_or(u64::MAX);
        let output = if endpoint == Endpoint::Embeddings {
            0
        } else {
            output_tokens.min(cap).max(1)
        };
        let cached = cached_tokens.min(prompt_words);
        Some(Call {
            endpoint,
            model: body["model"].as_str().unwrap_or("mock").to_owned(),
            stream: body["stream"].as_bool().unwrap_or(false),
            include_usage: body["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false),
            base64: body["encoding_format"].as_str() == Some("base64"),
            input: prompt_words - cached,
            cached,
            output,
        })
    }

    fn text(&self) -> String {
        (0..self.output).map(|i| format!("w{i} ")).collect()
    }

    fn openai_usage(&self) -> Value {
        let prompt = self.input + self.cached;
        json!({"prompt_tokens": prompt, "completion_tokens": self.output, "total_tokens": prompt + self.output,
               "prompt_tokens_details": {"cached_tokens": self.cached}})
    }

    fn responses_usage(&self) -> Value {
        let input = self.input + self.cached;
        json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": self.cached},
               "output_tokens": self.output, "output_tokens_details": {"reasoning_tokens": 0},
               "total_tokens": input + self.output})
    }

    fn anthropic_usage(&self, output: u64) -> Value {
        json!({"input_tokens": self.input, "output_tokens": output,
               "cache_read_input_tokens": self.cached, "cache_creation_input_tokens": 0})
    }

    fn response_object(&self) -> Value {
        json!({"id": "resp_mock", "object": "response", "created_at": CREATED, "status": "completed",
               "model": self.model, "output": [{"type": "message", "id": "msg_mock", "status": "completed",
               "role": "assistant", "content": [{"type": "output_text", "text": self.text(), "annotations": []}]}],
               "usage": self.responses_usage()})
    }

    /// The whole response of a non-streamed call.
    pub fn json(&self) -> Value {
        match self.endpoint {
            Endpoint::Chat => {
                json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": CREATED,
                "model": self.model, "choices": [{"index": 0, "message": {"role": "assistant", "content": self.text()},
                "finish_reason": "stop", "logprobs": null}], "usage": self.openai_usage()})
            }
            Endpoint::Completions => {
                json!({"id": "cmpl-mock", "object": "text_completion", "created": CREATED,
                "model": self.model, "choices": [{"index": 0, "text": self.text(), "finish_reason": "stop",
                "logprobs": null}], "usage": self.openai_usage()})
            }
            Endpoint::Embeddings => {
                let vector: Vec<f32> = (0..EMBEDDING_DIMS).map(|i| i as f32 / 10.0).collect();
                let embedding = if self.base64 {
                    let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                    json!(base64(&bytes))
                } else {
                    json!(vector)
                };
                let prompt = self.input + self.cached;
                json!({"object": "list", "model": self.model, "data": [{"object": "embedding", "index": 0,
                    "embedding": embedding}], "usage": {"prompt_tokens": prompt, "total_tokens": prompt}})
            }
            Endpoint::Responses => self.response_object(),
            Endpoint::Messages => {
                json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": self.model,
                "content": [{"type": "text", "text": self.text()}], "stop_reason": "end_turn",
                "stop_sequence": null, "usage": self.anthropic_usage(self.output)})
            }
        }
    }

    /// The SSE chunks of a streamed call, one per output token plus framing events.
    pub fn sse_chunks(&self) -> Vec<String> {
        let data = |v: Value| format!("data: {v}\n\n");
        let event = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
        let tokens: Vec<String> = (0..self.output).map(|i| format!("w{i} ")).collect();
        let mut out = Vec::new();
        match self.endpoint {
            Endpoint::Chat | Endpoint::Completions | Endpoint::Embeddings => {
                let chat = self.endpoint == Endpoint::Chat;
                let object = if chat {
                    "chat.completion.chunk"
                } else {
                    "text_completion"
                };
                let choice = |content: Value, finish: Value| {
                    if chat {
                        json!({"index": 0, "delta": content, "finish_reason": finish, "logprobs": null})
                    } else {
                        json!({"index": 0, "text": content["content"].as_str().unwrap_or(""), "finish_reason": finish, "logprobs": null})
                    }
                };
                let chunk = |choices: Value| {
                    json!({"id": "chatcmpl-mock", "object": object, "created": CREATED,
                    "model": self.model, "choices": choices})
                };
                for (i, t) in tokens.iter().enumerate() {
                    let delta = if i == 0 {
                        json!({"role": "assistant", "content": t})
                    } else {
                        json!({"content": t})
                    };
                    out.push(data(chunk(json!([choice(delta, Value::Null)]))));
                }
                out.push(data(chunk(json!([choice(json!({}), json!("stop"))]))));
                if self.include_usage {
                    let mut last = chunk(json!([]));
                    last["usage"] = self.openai_usage();
                    out.push(data(last));
                }
                out.push("data: [DONE]\n\n".to_owned());
            }
            Endpoint::Responses => {
                out.push(event("response.created", json!({"type": "response.created",
                    "response": {"id": "resp_mock", "object": "response", "status": "in_progress", "model": self.model}})));
                for t in &tokens {
                    out.push(event(
                        "response.output_text.delta",
                        json!({"type": "response.output_text.delta",
                        "item_id": "msg_mock", "output_index": 0, "content_index": 0, "delta": t}),
                    ));
                }
                out.push(event(
                    "response.completed",
                    json!({"type": "response.completed", "response": self.response_object()}),
                ));
            }
            Endpoint::Messages => {
                out.push(event("message_start", json!({"type": "message_start", "message": {"id": "msg_mock",
                    "type": "message", "role": "assistant", "model": self.model, "content": [], "stop_reason": null,
                    "stop_sequence": null, "usage": self.anthropic_usage(1)}})));
                out.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
                ));
                out.push(event("ping", json!({"type": "ping"})));
                for t in &tokens {
                    out.push(event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": t}}),
                    ));
                }
                out.push(event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ));
                out.push(event("message_delta", json!({"type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": self.output}})));
                out.push(event("message_stop", json!({"type": "message_stop"})));
            }
        }
        out
    }
}

/// A provider-style error body.
pub fn error_body(path: &str, message: &str) -> Value {
    if path.ends_with("/messages") {
        json!({"type": "error", "error": {"type": "api_error", "message": message}})
    } else {
        json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::core::stream_usage::StreamUsage;
    use crate::core::usage::{usage_from_json, Provider};

    fn call(path: &str, body: Value) -> Call {
        Call::parse(path, &body, 16, 2).unwrap()
    }

    #[test]
    fn json_bodies_report_the_advertised_usage() {
        let body = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "a b c d"}]});
        for (path, provider) in [
            ("/v1/chat/completions", Provider::OpenAi),
            ("/v1/messages", Provider::Anthropic),
        ] {
            let c = call(path, body.clone());
            let usage = usage_from_json(provider, &serde_json::to_vec(&c.json()).unwrap()).unwrap();
            assert_eq!(
                (
                    usage.input_tokens,
                    usage.cached_input_tokens,
                    usage.output_tokens
                ),
                (2, 2, 5),
                "{path}"
            );
        }
    }

    #[test]
    fn streams_report_the_advertised_usage() {
        let body = json!({"model": "m", "max_tokens": 7, "stream": true, "stream_options": {"include_usage": true},
                          "messages": [{"role": "user", "content": "one two three"}]});
        for path in ["/v1/chat/completions", "/v1/messages", "/v1/responses"] {
            let c = call(path, body.clone());
            let mut parser = StreamUsage::default();
            for chunk in c.sse_chunks() {
                parser.push(chunk.as_bytes());
            }
            parser.finish();
            let usage = parser.usage().unwrap();
            assert_eq!(usage.output_tokens, 7, "{path}");
            assert!(parser.completed(), "{path}");
        }
    }

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"f"), "Zg==");
    }
}
