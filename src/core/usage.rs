//! Measured usage from complete provider response bodies (OpenAI chat, completions, embeddings,
//! Responses; Anthropic messages), detected by the body's shape, into one `Usage`.
//! Never guesses: a body whose usage is missing, negative or not an integer gives `None`.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::core::pricing::Usage;

/// Which API family an upstream speaks. Needed for one ambiguity only: a bare
/// `usage.input_tokens` means *all* input on OpenAI's Responses API (cache reads included) but
/// *uncached* input on Anthropic. An enum rather than the pricebook's provider string, so an
/// unknown name cannot silently pick a dialect; `from_name` maps the string once, at routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    OpenAi,
    Anthropic,
    /// An OpenAI- or Anthropic-compatible upstream (vLLM, Azure, a proxy): the shape decides.
    Generic,
}

impl Provider {
    /// `openai` and `anthropic` (any case) name their dialects; every other name is `Generic`.
    pub fn from_name(name: &str) -> Provider {
        if name.eq_ignore_ascii_case("openai") {
            Provider::OpenAi
        } else if name.eq_ignore_ascii_case("anthropic") {
            Provider::Anthropic
        } else {
            Provider::Generic
        }
    }
}

/// The three ways providers spell usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UsageShape {
    /// `prompt_tokens` (cache reads included) and `completion_tokens`: OpenAI chat,
    /// completions and embeddings.
    Prompt,
    /// `input_tokens` (cache reads included) and `output_tokens`: OpenAI Responses.
    Responses,
    /// `input_tokens` (cache reads and writes excluded), `cache_read_input_tokens`,
    /// `cache_creation_input_tokens`, `output_tokens`: Anthropic messages.
    Anthropic,
}

/// The few top-level fields that tell a body's dialect; everything else is skipped unparsed.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<Value>,
    object: Option<Value>,
    usage: Option<Value>,
}

/// Usage of one complete (non-streaming) JSON response body, or `None` when the body carries
/// no well-formed usage. A measured response is one call (`calls = 1`), so a flat per-call fee
/// in the pricebook applies once.
pub fn usage_from_json(provider: Provider, body: &[u8]) -> Option<Usage> {
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    let usage = envelope.usage?;
    let usage = usage.as_object()?;
    let str_of = |v: &Option<Value>| v.as_ref().and_then(Value::as_str).map(str::to_owned);
    let shape = shape_of(
        provider,
        str_of(&envelope.kind),
        str_of(&envelope.object),
        usage,
    )?;
    usage_from_object(shape, usage)
}

/// Picks the dialect: the body's own markers first, then the usage keys, then the provider.
fn shape_of(
    provider: Provider,
    kind: Option<String>,
    object: Option<String>,
    usage: &Map<String, Value>,
) -> Option<UsageShape> {
    if usage.contains_key("prompt_tokens") {
        return Some(UsageShape::Prompt);
    }
    if !usage.contains_key("input_tokens") {
        return None;
    }
    if kind.as_deref() == Some("message")
        || usage.contains_key("cache_read_input_tokens")
        || usage.contains_key("cache_creation_input_tokens")
    {
        return Some(UsageShape::Anthropic);
    }
    if object.as_deref() == Some("response") || usage.contains_key("input_tokens_details") {
        return Some(UsageShape::Responses);
    }
    Some(match provider {
        Provider::OpenAi => UsageShape::Responses,
        // With no cache information both readings agree; Anthropic's subtracts nothing.
        Provider::Anthropic | Provider::Generic => UsageShape::Anthropic,
    })
}

/// Reads a usage object of a known shape. Required counts: `prompt_tokens` or `input_tokens`;
/// the rest default to 0 when absent or null.
pub(crate) fn usage_from_object(shape: UsageShape, usage: &Map<String, Value>) -> Option<Usage> {
    let read = |key: &str| count(usage, key);
    let usage = match shape {
        UsageShape::Prompt => {
            let prompt = read("prompt_tokens").ok()??;
            let cached = nested_count(usage, "prompt_tokens_details", "cached_tokens").ok()?;
            Usage {
                input_tokens: prompt.saturating_sub(cached),
                cached_input_tokens: cached,
                output_tokens: read("completion_tokens").ok()?.unwrap_or(0),
                ..Usage::default()
            }
        }
        UsageShape::Responses => {
            let input = read("input_tokens").ok()??;
            let cached = nested_count(usage, "input_tokens_details", "cached_tokens").ok()?;
            Usage {
                input_tokens: input.saturating_sub(cached),
                cached_input_tokens: cached,
                output_tokens: read("output_tokens").ok()?.unwrap_or(0),
                ..Usage::default()
            }
        }
        UsageShape::Anthropic => Usage {
            input_tokens: read("input_tokens").ok()??,
            cached_input_tokens: read("cache_read_input_tokens").ok()?.unwrap_or(0),
            cache_write_input_tokens: read("cache_creation_input_tokens").ok()?.unwrap_or(0),
            output_tokens: read("output_tokens").ok()?.unwrap_or(0),
            calls: 0,
        },
    };
    Some(Usage { calls: 1, ..usage })
}

/// A count that is present but not a non-negative integer (`-1`, `1.5`, `"3"`, `1e30`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// `Ok(None)` when `key` is absent or null; `Ok(Some(n))` for a non-negative integer that
/// fits u64; `Err` for anything else.
pub(crate) fn count(map: &Map<String, Value>, key: &str) -> Result<Option<u64>, Malformed> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or(Malformed),
    }
}

/// `map[outer][inner]` as a count, 0 when either level is absent or null.
fn nested_count(map: &Map<String, Value>, outer: &str, inner: &str) -> Result<u64, Malformed> {
    match map.get(outer) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Object(details)) => Ok(count(details, inner)?.unwrap_or(0)),
        Some(_) => Err(Malformed),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn usage(input: u64, cached: u64, write: u64, output: u64) -> Option<Usage> {
        Some(Usage {
            input_tokens: input,
            cached_input_tokens: cached,
            cache_write_input_tokens: write,
            output_tokens: output,
            calls: 1,
        })
    }

    const CHAT: &str = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}"#;

    #[test]
    fn reads_openai_chat_with_cached_prompt_tokens_split_out() {
        for provider in [Provider::OpenAi, Provider::Anthropic, Provider::Generic] {
            assert_eq!(
                usage_from_json(provider, CHAT.as_bytes()),
                usage(93, 1024, 0, 46)
            );
        }
    }

    #[test]
    fn reads_legacy_completions_and_embeddings() {
        let completion = r#"{"id":"cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7","object":"text_completion","created":1589478378,"model":"gpt-3.5-turbo-instruct","choices":[{"text":"\n\nThis is indeed a test","index":0,"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
        assert_eq!(
            usage_from_json(Provider::OpenAi, completion.as_bytes()),
            usage(5, 0, 0, 7)
        );
        let embedding = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[-0.006929283,-0.005336422]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_eq!(
            usage_from_json(Provider::OpenAi, embedding.as_bytes()),
            usage(8, 0, 0, 0)
        );
    }

    #[test]
    fn reads_the_responses_api_with_cached_input_split_out() {
        let body = r#"{"id":"resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41","object":"response","created_at":1741476777,"status":"completed","model":"gpt-4.1-2025-04-14","output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi","annotations":[]}]}],"usage":{"input_tokens":328,"input_tokens_details":{"cached_tokens":128},"output_tokens":52,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":380}}"#;
        for provider in [Provider::OpenAi, Provider::Anthropic, Provider::Generic] {
            assert_eq!(
                usage_from_json(provider, body.as_bytes()),
                usage(200, 128, 0, 52)
            );
        }
    }

    #[test]
    fn reads_anthropic_messages_with_cache_reads_and_writes() {
        let body = r#"{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi! My name is Claude."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":21,"cache_creation_input_tokens":188086,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":188086,"ephemeral_1h_input_tokens":0},"output_tokens":393,"service_tier":"standard"}}"#;
        for provider in [Provider::OpenAi, Provider::Anthropic, Provider::Generic] {
            assert_eq!(
                usage_from_json(provider, body.as_bytes()),
                usage(21, 0, 188_086, 393)
            );
        }
    }

    #[test]
    fn a_bare_input_tokens_body_is_read_in_the_providers_dialect() {
        let body = br#"{"usage":{"input_tokens":10,"output_tokens":3}}"#;
        assert_eq!(usage_from_json(Provider::OpenAi, body), usage(10, 0, 0, 3));
        assert_eq!(
            usage_from_json(Provider::Anthropic, body),
            usage(10, 0, 0, 3)
        );
        assert_eq!(usage_from_json(Provider::Generic, body), usage(10, 0, 0, 3));
    }

    #[test]
    fn cached_beyond_prompt_saturates_instead_of_wrapping() {
        let body = br#"{"usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":9}}}"#;
        assert_eq!(usage_from_json(Provider::OpenAi, body), usage(0, 9, 0, 1));
    }

    #[test]
    fn null_details_count_as_zero() {
        let body = br#"{"usage":{"prompt_tokens":5,"completion_tokens":null,"prompt_tokens_details":null}}"#;
        assert_eq!(usage_from_json(Provider::OpenAi, body), usage(5, 0, 0, 0));
    }

    #[test]
    fn malformed_or_missing_usage_is_none() {
        let bad: &[&[u8]] = &[
            b"",
            b"not json",
            b"[1,2]",
            br#"{"id":"x"}"#,
            br#"{"usage":null}"#,
            br#"{"usage":{}}"#,
            br#"{"usage":{"total_tokens":3}}"#,
            br#"{"usage":{"prompt_tokens":-1,"completion_tokens":2}}"#,
            br#"{"usage":{"prompt_tokens":1.5,"completion_tokens":2}}"#,
            br#"{"usage":{"prompt_tokens":"3","completion_tokens":2}}"#,
            br#"{"usage":{"prompt_tokens":1e3,"completion_tokens":2}}"#,
            br#"{"usage":{"prompt_tokens":3,"completion_tokens":-2}}"#,
            br#"{"usage":{"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":-1}}}"#,
            br#"{"usage":{"prompt_tokens":3,"prompt_tokens_details":7}}"#,
            br#"{"usage":{"prompt_tokens":18446744073709551616}}"#,
            br#"{"type":"message","usage":{"input_tokens":3,"cache_read_input_tokens":0.5}}"#,
            br#"{"type":"message","usage":{"output_tokens":3}}"#,
        ];
        for body in bad {
            let text = String::from_utf8_lossy(body);
            assert_eq!(usage_from_json(Provider::Generic, body), None, "{text}");
        }
    }

    #[test]
    fn the_largest_counts_are_kept_exactly() {
        let body = br#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":18446744073709551615}}"#;
        assert_eq!(
            usage_from_json(Provider::OpenAi, body),
            usage(u64::MAX, 0, 0, u64::MAX)
        );
    }

    #[test]
    fn provider_names_map_to_dialects() {
        assert_eq!(Provider::from_name("openai"), Provider::OpenAi);
        assert_eq!(Provider::from_name("Anthropic"), Provider::Anthropic);
        assert_eq!(Provider::from_name("vllm"), Provider::Generic);
    }
}
