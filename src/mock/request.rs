//! What one mock call will answer: the `x-mock-*` header controls and the deterministic token
//! counts derived from the request body. Pure functions over headers and JSON; no I/O.
//! The counting rules here are the contract tests compute exact costs from.

use std::time::Duration;

use hyper::{HeaderMap, StatusCode};
use serde_json::Value;

use super::MockConfig;

/// Cap on output tokens per call (streams hold one pre-built event per token).
pub const OUTPUT_TOKENS_MAX: u64 = 100_000;
/// Cap on every `x-mock-*` delay, in milliseconds (10 minutes).
pub const DELAY_MS_MAX: u64 = 600_000;
/// Cap on embedding dimensions answered.
pub const EMBEDDING_DIMENSIONS_MAX: u64 = 4096;
/// Embedding dimensions when the request names none.
pub const EMBEDDING_DIMENSIONS_DEFAULT: u64 = 8;

/// Per-request behaviour, from the `x-mock-*` headers over the server's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controls {
    /// `x-mock-latency-ms`: wait before answering headers.
    pub latency: Duration,
    /// `x-mock-chunk-delay-ms`: wait between body chunks (SSE events).
    pub chunk_delay: Duration,
    /// `x-mock-status`: answer this 4xx/5xx status with a provider-style error body.
    pub status: Option<StatusCode>,
    /// `x-mock-error-after-chunks`: drop the connection after this many body chunks (SSE
    /// events; a JSON body is sent in two halves when this is set). No effect past the end.
    pub error_after_chunks: Option<usize>,
    /// `x-mock-output-tokens`: output tokens before the request's own cap applies.
    pub output_tokens: u64,
    /// `x-mock-cached-tokens`: prompt tokens reported as cache reads (at most the prompt).
    pub cached_tokens: u64,
    /// `x-mock-cache-write-tokens`: Anthropic only, prompt tokens reported as cache writes
    /// (at most what is left of the prompt after cache reads).
    pub cache_write_tokens: u64,
}

impl Controls {
    /// Reads the controls; an unparsable or out-of-range header is an error naming it.
    pub fn from_headers(headers: &HeaderMap, config: &MockConfig) -> Result<Controls, String> {
        let ms = |name: &str, default: u64| -> Result<Duration, String> {
            let value = number(headers, name, DELAY_MS_MAX)?.unwrap_or(default);
            Ok(Duration::from_millis(value.min(DELAY_MS_MAX)))
        };
        let status = match number(headers, "x-mock-status", 599)? {
            None => None,
            Some(code) if code >= 400 => {
                let code = u16::try_from(code).map_err(|e| e.to_string())?;
                Some(StatusCode::from_u16(code).map_err(|e| e.to_string())?)
            }
            Some(_) => return Err("header x-mock-status must be within 400..=599".into()),
        };
        let error_after = number(headers, "x-mock-error-after-chunks", u64::MAX)?;
        Ok(Controls {
            latency: ms("x-mock-latency-ms", config.latency_ms)?,
            chunk_delay: ms("x-mock-chunk-delay-ms", config.chunk_delay_ms)?,
            status,
            error_after_chunks: error_after.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            output_tokens: number(headers, "x-mock-output-tokens", OUTPUT_TOKENS_MAX)?
                .unwrap_or(config.output_tokens.min(OUTPUT_TOKENS_MAX)),
            cached_tokens: number(headers, "x-mock-cached-tokens", u64::MAX)?.unwrap_or(0),
            cache_write_tokens: number(headers, "x-mock-cache-write-tokens", u64::MAX)?
                .unwrap_or(0),
        })
    }
}

/// A header holding a non-negative integer no larger than `max`; `None` when absent.
fn number(headers: &HeaderMap, name: &str, max: u64) -> Result<Option<u64>, String> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let parsed = value
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match parsed {
        Some(n) if n <= max => Ok(Some(n)),
        _ => Err(format!("header {name} must be an integer within 0..={max}")),
    }
}

/// The API a path names, matched by suffix as the gateway's estimator does, so an upstream
/// base URL with a path prefix still reaches the right handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Messages,
}

impl Endpoint {
    pub fn of(path: &str) -> Option<Endpoint> {
        let path = path.trim_end_matches('/');
        const SUFFIXES: &[(&str, Endpoint)] = &[
            ("/chat/completions", Endpoint::ChatCompletions),
            ("/completions", Endpoint::Completions),
            ("/embeddings", Endpoint::Embeddings),
            ("/responses", Endpoint::Responses),
            ("/messages", Endpoint::Messages),
        ];
        SUFFIXES
            .iter()
            .find(|(suffix, _)| path.ends_with(suffix))
            .map(|(_, endpoint)| *endpoint)
    }

    /// Body fields capping output, first present wins.
    fn cap_fields(self) -> &'static [&'static str] {
        match self {
            Endpoint::ChatCompletions => &["max_completion_tokens", "max_tokens"],
            Endpoint::Completions | Endpoint::Messages => &["max_tokens"],
            Endpoint::Responses => &["max_output_tokens"],
            Endpoint::Embeddings => &[],
        }
    }
}

/// Everything an answer needs, decided once from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage` (OpenAI chat and completions streams).
    pub include_usage: bool,
    /// All prompt tokens, cache reads and writes included: `prompt_words` of the body.
    pub prompt_tokens: u64,
    /// Of `prompt_tokens`, reported as cache reads.
    pub cached_tokens: u64,
    /// Of `prompt_tokens`, reported as cache writes (Anthropic only).
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
    /// Output stopped at the request's cap (finish reason `length` / `max_tokens`).
    pub truncated: bool,
    /// Embeddings: one vector per input.
    pub embedding_inputs: usize,
    pub embedding_dimensions: usize,
    pub embedding_base64: bool,
}

impl Call {
    /// Decides the answer to `request` (a JSON object) on `endpoint` under `controls`.
    pub fn read(endpoint: Endpoint, request: &Value, controls: &Controls) -> Call {
        let model = request
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("mock-model")
            .to_owned();
        let prompt_tokens = prompt_words(request);
        let cached_tokens = controls.cached_tokens.min(prompt_tokens);
        let cache_write_tokens = if endpoint == Endpoint::Messages {
            controls
                .cache_write_tokens
                .min(prompt_tokens - cached_tokens)
        } else {
            0
        };
        let cap = endpoint
            .cap_fields()
            .iter()
            .find_map(|field| request.get(*field).and_then(Value::as_u64));
        let (output_tokens, truncated) = match (endpoint, cap) {
            (Endpoint::Embeddings, _) => (0, false),
            (_, Some(cap)) if cap < controls.output_tokens => (cap, true),
            _ => (controls.output_tokens, false),
        };
        let input = request.get("input");
        Call {
            model,
            stream: endpoint != Endpoint::Embeddings
                && request.get("stream").and_then(Value::as_bool) == Some(true),
            include_usage: request
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                == Some(true),
            prompt_tokens,
            cached_tokens,
            cache_write_tokens,
            output_tokens,
            truncated,
            embedding_inputs: embedding_inputs(input),
            embedding_dimensions: usize::try_from(
                request
                    .get("dimensions")
                    .and_then(Value::as_u64)
                    .unwrap_or(EMBEDDING_DIMENSIONS_DEFAULT)
                    .clamp(1, EMBEDDING_DIMENSIONS_MAX),
            )
            .unwrap_or(1),
            embedding_base64: request.get("encoding_format").and_then(Value::as_str)
                == Some("base64"),
        }
    }

    /// Prompt tokens not read from or written to the cache.
    pub fn uncached_tokens(&self) -> u64 {
        self.prompt_tokens - self.cached_tokens - self.cache_write_tokens
    }
}

/// The documented input-token rule: whitespace-separated words in the top-level fields
/// `messages`, `system`, `prompt`, `input` and `instructions`, at least 1. Inside them a
/// string counts its words, an array the sum of its items, an object the words of its
/// `content` and `text` members (so roles, types and ids never count), and a number 1
/// (a pre-tokenized prompt such as `"input": [101, 2023]`).
pub fn prompt_words(request: &Value) -> u64 {
    let total: u64 = ["messages", "system", "prompt", "input", "instructions"]
        .iter()
        .filter_map(|field| request.get(*field))
        .map(words)
        .sum();
    total.max(1)
}

fn words(value: &Value) -> u64 {
    match value {
        Value::String(text) => text.split_whitespace().count() as u64,
        Value::Array(items) => items.iter().map(words).sum(),
        Value::Object(map) => ["content", "text"]
            .iter()
            .filter_map(|key| map.get(*key))
            .map(words)
            .sum(),
        Value::Number(_) => 1,
        Value::Null | Value::Bool(_) => 0,
    }
}

/// Embedding inputs: an array of strings or of token arrays gives one vector each; a string
/// or one token array gives one.
fn embedding_inputs(input: Option<&Value>) -> usize {
    match input {
        Some(Value::Array(items)) if items.iter().all(|i| i.is_string() || i.is_array()) => {
            items.len().max(1)
        }
        _ => 1,
    }
}
