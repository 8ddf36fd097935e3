//! Facts read from a request body before it is forwarded (model, max output, stream, an input
//! token over-estimate), the worst-case cost they imply, and the one body rewrite the gateway
//! makes (asking OpenAI streams for usage). Reads only named fields; never tokenizes.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::core::money::{Micros, MoneyError};
use crate::core::pricing::{Price, Usage};

/// Body bytes per estimated input token. Real tokenizers average about four bytes of English
/// or code per token, and the JSON around the text (keys, quotes, roles) is not tokenized at
/// all, so `ceil(body_bytes / 3)` over-estimates ordinary prompts by roughly 1.3x to 2x. It can
/// under-estimate what the body only points to (an image by URL, a file id) and what the
/// provider injects (tool-use system prompts); settlement charges the measured usage anyway.
pub const BODY_BYTES_PER_TOKEN: u64 = 3;

/// Output tokens assumed when neither the request nor the pricebook bounds the output.
pub const OUTPUT_TOKENS_DEFAULT: u64 = 4096;

/// What a request body says about its cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts {
    /// `model`, when the body names one (Azure-style routes carry it in the path instead).
    pub model: Option<String>,
    /// Output cap per choice the request sets (`max_completion_tokens`, `max_tokens`,
    /// `max_output_tokens`, `max_tokens_to_sample`); `Some(0)` for embeddings.
    pub max_output_tokens: Option<u64>,
    pub stream: bool,
    /// `ceil(body_bytes / BODY_BYTES_PER_TOKEN)`.
    pub input_tokens_estimate: u64,
    /// Completions generated per request (`n`, or `best_of` on legacy completions), at least 1;
    /// the output estimate is multiplied by it.
    pub choices: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EstimateError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("request body is not a JSON object of the expected shape: {0}")]
    UnexpectedShape(String),
    #[error("request field `{field}` {expected}")]
    InvalidField {
        field: &'static str,
        expected: &'static str,
    },
}

/// The API a request path names; it decides how the body is read. The path, not the
/// provider, decides, because providers serve each other's dialects (Anthropic answers
/// OpenAI-shaped `/v1/chat/completions`; vLLM and Azure serve OpenAI paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    AnthropicMessages,
    AnthropicComplete,
    /// Anything else: every known cap is read and the largest wins.
    Other,
}

impl Endpoint {
    fn of(path: &str) -> Endpoint {
        let path = path
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .trim_end_matches('/');
        const SUFFIXES: &[(&str, Endpoint)] = &[
            ("/chat/completions", Endpoint::ChatCompletions),
            ("/completions", Endpoint::Completions),
            ("/embeddings", Endpoint::Embeddings),
            ("/responses", Endpoint::Responses),
            ("/messages", Endpoint::AnthropicMessages),
            ("/complete", Endpoint::AnthropicComplete),
        ];
        SUFFIXES
            .iter()
            .find(|(suffix, _)| path.ends_with(suffix))
            .map_or(Endpoint::Other, |(_, endpoint)| *endpoint)
    }

    /// Body fields that cap output per choice, by endpoint.
    fn cap_fields(self) -> &'static [&'static str] {
        match self {
            Endpoint::ChatCompletions => &["max_completion_tokens", "max_tokens"],
            Endpoint::Completions | Endpoint::AnthropicMessages => &["max_tokens"],
            Endpoint::Responses => &["max_output_tokens"],
            Endpoint::AnthropicComplete => &["max_tokens_to_sample"],
            Endpoint::Embeddings => &[],
            Endpoint::Other => &[
                "max_completion_tokens",
                "max_tokens",
                "max_output_tokens",
                "max_tokens_to_sample",
            ],
        }
    }
}

/// The top-level fields read; the rest of the body is skipped without being built. Duplicate
/// keys among these are rejected, so the gateway and the upstream cannot read different caps.
#[derive(Deserialize)]
struct RequestProbe {
    model: Option<Value>,
    stream: Option<Value>,
    max_completion_tokens: Option<Value>,
    max_tokens: Option<Value>,
    max_output_tokens: Option<Value>,
    max_tokens_to_sample: Option<Value>,
    n: Option<Value>,
    best_of: Option<Value>,
}

impl RequestProbe {
    fn field(&self, name: &str) -> Option<&Value> {
        let value = match name {
            "model" => &self.model,
            "stream" => &self.stream,
            "max_completion_tokens" => &self.max_completion_tokens,
            "max_tokens" => &self.max_tokens,
            "max_output_tokens" => &self.max_output_tokens,
            "max_tokens_to_sample" => &self.max_tokens_to_sample,
            "n" => &self.n,
            "best_of" => &self.best_of,
            _ => &None,
        };
        value.as_ref().filter(|v| !v.is_null())
    }
}

/// Reads the facts of a request to `path` (its query string is ignored). An empty body (a GET)
/// has no facts but its size; anything else must be a JSON object whose read fields have their
/// documented types.
pub fn request_facts(path: &str, body: &[u8]) -> Result<RequestFacts, EstimateError> {
    let body_bytes = u64::try_from(body.len()).unwrap_or(u64::MAX);
    let mut facts = RequestFacts {
        model: None,
        max_output_tokens: None,
        stream: false,
        input_tokens_estimate: body_bytes.div_ceil(BODY_BYTES_PER_TOKEN),
        choices: 1,
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(facts);
    }
    let probe: RequestProbe = serde_json::from_slice(body).map_err(|err| {
        if err.is_data() {
            EstimateError::UnexpectedShape(err.to_string())
        } else {
            EstimateError::MalformedJson(err.to_string())
        }
    })?;
    let endpoint = Endpoint::of(path);
    facts.model = match probe.field("model") {
        None => None,
        Some(Value::String(model)) => Some(model.clone()),
        Some(_) => return Err(invalid("model", "must be a string")),
    };
    facts.stream = match probe.field("stream") {
        None => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => return Err(invalid("stream", "must be true or false")),
    };
    let mut cap: Option<u64> = None;
    for &name in endpoint.cap_fields() {
        if let Some(value) = probe.field(name) {
            let tokens = value
                .as_u64()
                .ok_or(invalid(name, "must be a non-negative integer"))?;
            cap = Some(cap.map_or(tokens, |c| c.max(tokens)));
        }
    }
    facts.max_output_tokens = if endpoint == Endpoint::Embeddings {
        Some(0)
    } else {
        cap
    };
    for name in ["n", "best_of"] {
        if let Some(value) = probe.field(name) {
            let n = value.as_u64().filter(|n| *n >= 1);
            let n = n.ok_or(invalid(name, "must be a positive integer"))?;
            facts.choices = facts.choices.max(n);
        }
    }
    Ok(facts)
}

fn invalid(field: &'static str, expected: &'static str) -> EstimateError {
    EstimateError::InvalidField { field, expected }
}

/// The usage a request may reach at most: the estimated input, all of it uncached (cache reads
/// would only make it cheaper), one call, and output per choice = the request's cap, bounded
/// by the model's `max_output_tokens` (the provider rejects larger caps); else the model's
/// cap; else `OUTPUT_TOKENS_DEFAULT`; times `choices`.
pub fn estimate_usage(price: &Price, facts: &RequestFacts) -> Usage {
    let per_choice = match (facts.max_output_tokens, price.max_output_tokens) {
        (Some(requested), Some(model_cap)) => requested.min(model_cap),
        (Some(requested), None) => requested,
        (None, Some(model_cap)) => model_cap,
        (None, None) => OUTPUT_TOKENS_DEFAULT,
    };
    Usage {
        input_tokens: facts.input_tokens_estimate,
        output_tokens: per_choice.saturating_mul(facts.choices.max(1)),
        calls: 1,
        ..Usage::default()
    }
}

/// The reservation for a request: the cost of `estimate_usage`, rounded up.
pub fn estimate_cost(price: &Price, facts: &RequestFacts) -> Result<Micros, MoneyError> {
    price.cost(&estimate_usage(price, facts))
}

/// For an OpenAI chat/completions (or legacy completions) request with `"stream": true`, the
/// body with `"stream_options": {"include_usage": true}`, so the stream ends with a usage
/// chunk; `None` when the body needs no change (not streaming, usage already asked for, or
/// not a JSON object, which the upstream will reject as it is). When `stream_options` is absent
/// the bytes are kept as sent and the option is spliced in before the closing brace;
/// otherwise the object is re-serialized (same members, key order may change).
pub fn ensure_stream_usage(body: &[u8]) -> Option<Vec<u8>> {
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    if object.get("stream") != Some(&Value::Bool(true)) {
        return None;
    }
    match object.get_mut("stream_options") {
        None => splice_before_closing_brace(body, br#","stream_options":{"include_usage":true}"#),
        Some(Value::Object(options)) => {
            if options.get("include_usage") == Some(&Value::Bool(true)) {
                return None;
            }
            options.insert("include_usage".to_owned(), Value::Bool(true));
            serde_json::to_vec(&object).ok()
        }
        Some(Value::Null) => {
            let mut options = Map::new();
            options.insert("include_usage".to_owned(), Value::Bool(true));
            object.insert("stream_options".to_owned(), Value::Object(options));
            serde_json::to_vec(&object).ok()
        }
        Some(_) => None,
    }
}

/// `body` with `member` inserted before its final `}` (the body is a non-empty JSON object).
fn splice_before_closing_brace(body: &[u8], member: &[u8]) -> Option<Vec<u8>> {
    let close = body.iter().rposition(|b| !b.is_ascii_whitespace())?;
    let (head, tail) = body.split_at_checked(close)?;
    if tail.first() != Some(&b'}') {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + member.len());
    out.extend_from_slice(head);
    out.extend_from_slice(member);
    out.extend_from_slice(tail);
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::core::money::Currency;
    use proptest::prelude::*;

    fn facts(path: &str, body: &str) -> RequestFacts {
        request_facts(path, body.as_bytes()).unwrap()
    }

    fn price(max_output_tokens: Option<u64>) -> Price {
        Price {
            currency: Currency::USD,
            input_per_mtok: Micros(2_500_000),
            cached_input_per_mtok: Micros(1_250_000),
            output_per_mtok: Micros(10_000_000),
            cache_write_per_mtok: Micros(2_500_000),
            per_call: Micros(0),
            max_output_tokens,
        }
    }

    #[test]
    fn reads_openai_chat_preferring_the_larger_cap() {
        let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":300,"max_tokens":200,"stream":true}"#;
        let f = facts("/openai/v1/chat/completions?x=1", body);
        assert_eq!(f.model.as_deref(), Some("gpt-4o"));
        assert_eq!(f.max_output_tokens, Some(300));
        assert!(f.stream);
        assert_eq!(f.input_tokens_estimate, (body.len() as u64).div_ceil(3));
        assert_eq!(f.choices, 1);
    }

    #[test]
    fn reads_each_endpoints_own_cap_field() {
        let cases = [
            (
                "/v1/completions",
                r#"{"model":"m","prompt":"x","max_tokens":7,"best_of":3,"n":2}"#,
                Some(7),
                3,
            ),
            (
                "/v1/embeddings",
                r#"{"model":"text-embedding-3-small","input":"x","max_tokens":9}"#,
                Some(0),
                1,
            ),
            (
                "/v1/responses",
                r#"{"model":"gpt-5","input":"x","max_output_tokens":50,"max_tokens":9000}"#,
                Some(50),
                1,
            ),
            (
                "/anthropic/v1/messages",
                r#"{"model":"claude-haiku-4-5","max_tokens":1024,"messages":[]}"#,
                Some(1024),
                1,
            ),
            (
                "/v1/complete",
                r#"{"model":"claude-2.1","max_tokens_to_sample":64,"prompt":"x"}"#,
                Some(64),
                1,
            ),
            (
                "/v1/chat/completions",
                r#"{"model":"gpt-4o","messages":[],"n":4}"#,
                None,
                4,
            ),
            (
                "/somewhere/else",
                r#"{"model":"m","max_tokens":5,"max_output_tokens":8}"#,
                Some(8),
                1,
            ),
        ];
        for (path, body, cap, choices) in cases {
            let f = facts(path, body);
            assert_eq!((f.max_output_tokens, f.choices), (cap, choices), "{path}");
            assert!(!f.stream);
        }
    }

    #[test]
    fn null_fields_count_as_absent() {
        let f = facts(
            "/v1/chat/completions",
            r#"{"model":null,"max_tokens":null,"stream":null,"n":null}"#,
        );
        assert_eq!(
            (f.model, f.max_output_tokens, f.stream, f.choices),
            (None, None, false, 1)
        );
    }

    #[test]
    fn an_empty_body_has_no_facts_but_is_not_an_error() {
        let f = facts("/v1/models", "");
        assert_eq!((f.model, f.input_tokens_estimate), (None, 0));
        assert_eq!(facts("/v1/models", "  \n").input_tokens_estimate, 1);
    }

    #[test]
    fn bad_bodies_are_typed_errors() {
        let err = |body: &str| request_facts("/v1/chat/completions", body.as_bytes()).unwrap_err();
        assert!(matches!(
            err("{\"model\":"),
            EstimateError::MalformedJson(_)
        ));
        assert!(matches!(err("not json"), EstimateError::MalformedJson(_)));
        assert!(matches!(err("[1,2]"), EstimateError::UnexpectedShape(_)));
        assert!(matches!(
            err(r#"{"max_tokens":1,"max_tokens":99999}"#),
            EstimateError::UnexpectedShape(_)
        ));
        let field = |body: &str| match err(body) {
            EstimateError::InvalidField { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(r#"{"model":7}"#), "model");
        assert_eq!(field(r#"{"stream":"yes"}"#), "stream");
        assert_eq!(field(r#"{"max_tokens":-1}"#), "max_tokens");
        assert_eq!(
            field(r#"{"max_completion_tokens":1.5}"#),
            "max_completion_tokens"
        );
        assert_eq!(field(r#"{"n":0}"#), "n");
    }

    #[test]
    fn estimates_output_from_request_then_model_then_default() {
        let mut f = facts("/v1/chat/completions", r#"{"model":"gpt-4o"}"#);
        f.input_tokens_estimate = 1_000_000;
        // No caps anywhere: 4096 output tokens.
        assert_eq!(
            estimate_cost(&price(None), &f).unwrap(),
            Micros(2_500_000 + 40_960)
        );
        // The model's cap.
        assert_eq!(
            estimate_cost(&price(Some(100)), &f).unwrap(),
            Micros(2_500_000 + 1_000)
        );
        // The request's cap, bounded by the model's.
        f.max_output_tokens = Some(50);
        assert_eq!(
            estimate_cost(&price(Some(100)), &f).unwrap(),
            Micros(2_500_000 + 500)
        );
        f.max_output_tokens = Some(1_000_000);
        assert_eq!(
            estimate_cost(&price(Some(100)), &f).unwrap(),
            Micros(2_500_000 + 1_000)
        );
        assert_eq!(
            estimate_cost(&price(None), &f).unwrap(),
            Micros(2_500_000 + 10_000_000)
        );
        // Times the number of choices.
        f.choices = 3;
        assert_eq!(estimate_usage(&price(Some(100)), &f).output_tokens, 300);
    }

    #[test]
    fn embeddings_are_estimated_without_output() {
        let f = facts(
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":"hello"}"#,
        );
        let usage = estimate_usage(&price(Some(8192)), &f);
        assert_eq!((usage.output_tokens, usage.calls), (0, 1));
    }

    #[test]
    fn an_absurd_estimate_is_an_overflow_error() {
        let mut f = facts("/v1/chat/completions", "{}");
        f.max_output_tokens = Some(u64::MAX);
        let dear = Price {
            output_per_mtok: Micros(i64::MAX),
            ..price(None)
        };
        assert_eq!(
            estimate_cost(&dear, &f),
            Err(MoneyError::ArithmeticOverflow)
        );
    }

    #[test]
    fn asks_a_stream_for_usage_keeping_the_original_bytes() {
        let body = "{\"model\": \"gpt-4o\", \"temperature\": 1.0e0, \"stream\": true}\n";
        let out = ensure_stream_usage(body.as_bytes()).unwrap();
        let expected = "{\"model\": \"gpt-4o\", \"temperature\": 1.0e0, \"stream\": true,\"stream_options\":{\"include_usage\":true}}\n";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn completes_existing_stream_options() {
        let body =
            br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":false,"x":1}}"#;
        let out: Value = serde_json::from_slice(&ensure_stream_usage(body).unwrap()).unwrap();
        assert_eq!(
            out["stream_options"],
            serde_json::json!({"include_usage": true, "x": 1})
        );
        assert_eq!(out["model"], "gpt-4o");
        let null = br#"{"stream":true,"stream_options":null}"#;
        let out: Value = serde_json::from_slice(&ensure_stream_usage(null).unwrap()).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"stream": true, "stream_options": {"include_usage": true}})
        );
    }

    #[test]
    fn leaves_bodies_that_need_no_change() {
        for body in [
            r#"{"model":"gpt-4o"}"#,
            r#"{"stream":false}"#,
            r#"{"stream":"true"}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"stream":true,"stream_options":"odd"}"#,
            r#"[{"stream":true}]"#,
            "not json",
            "",
        ] {
            assert_eq!(ensure_stream_usage(body.as_bytes()), None, "{body}");
        }
    }

    proptest! {
        #[test]
        fn the_input_estimate_never_falls_below_a_third_of_the_body(text in ".{0,400}") {
            let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": text}]});
            let bytes = serde_json::to_vec(&body).unwrap();
            let f = request_facts("/v1/chat/completions", &bytes).unwrap();
            prop_assert!(f.input_tokens_estimate * 3 >= bytes.len() as u64);
            prop_assert!((f.input_tokens_estimate.saturating_sub(1)) * 3 < bytes.len() as u64);
        }

        #[test]
        fn the_rewrite_only_adds_include_usage(
            model in "[a-z0-9-]{1,12}",
            temperature in 0u32..20,
            spaces in "[ \n\t]{0,3}",
        ) {
            let body = format!(r#"{{"model":"{model}","temperature":{temperature},"stream":true}}{spaces}"#);
            let out = ensure_stream_usage(body.as_bytes()).unwrap();
            let mut parsed: Value = serde_json::from_slice(&out).unwrap();
            let options = parsed.as_object_mut().unwrap().remove("stream_options").unwrap();
            prop_assert_eq!(options, serde_json::json!({"include_usage": true}));
            prop_assert_eq!(parsed, serde_json::from_str::<Value>(&body).unwrap());
            prop_assert!(ensure_stream_usage(&out).is_none());
        }
    }
}
