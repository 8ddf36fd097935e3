//! In-process tests of the mock upstream: every body it answers is read by the gateway's own
//! usage parsers (`core::usage`, `core::stream_usage`) to exactly the tokens it advertises.
//! Also the header controls and `/_mock/stats`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

use super::openai::base64;
use super::*;
use crate::core::pricing::Usage;
use crate::core::sse::SseParser;
use crate::core::stream_usage::StreamUsage;
use crate::core::usage::{usage_from_json, Provider};

async fn mock() -> MockUpstream {
    MockUpstream::start(([127, 0, 0, 1], 0).into(), MockConfig::default())
        .await
        .unwrap()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// The body ended in an error (the connection was dropped) instead of its end.
    cut: bool,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

async fn call(mock: &MockUpstream, path: &str, headers: &[(&str, &str)], body: Value) -> Answer {
    send(mock, Method::POST, path, headers, body.to_string()).await
}

async fn send(
    mock: &MockUpstream,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Answer {
    let stream = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "mock")
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let (parts, mut incoming) = response.into_parts();
    let (mut body, mut cut) = (Vec::new(), false);
    while let Some(frame) = incoming.frame().await {
        match frame {
            Ok(frame) => body.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d)),
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.into(),
        cut,
    }
}

fn usage(input: u64, cached: u64, write: u64, output: u64) -> Option<Usage> {
    Some(Usage {
        input_tokens: input,
        cached_input_tokens: cached,
        cache_write_input_tokens: write,
        output_tokens: output,
        calls: 1,
    })
}

fn read_stream(body: &[u8]) -> StreamUsage {
    let mut stream = StreamUsage::default();
    stream.push(body);
    stream.finish();
    assert_eq!(stream.undecodable_events(), 0);
    stream
}

fn event_names(body: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    SseParser::default().push(body, &mut |e| names.push(e.event));
    names
}

/// Five words of prompt in a chat body.
fn chat_body(extra: Value) -> Value {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "one two"},
                     {"role": "user", "content": [{"type": "text", "text": "three four five"}]}],
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

#[test]
fn prompt_words_count_text_fields_only() {
    let cases = [
        (chat_body(json!({})), 5),
        (
            json!({"system": "a b", "messages": [{"role": "user", "content": "c"}]}),
            3,
        ),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_text", "text": "x y"}]}],
                "instructions": "z"}),
            3,
        ),
        (json!({"input": ["a b", "c"]}), 3),
        (json!({"input": [101, 2023, 7]}), 3),
        (json!({"prompt": "  spaced\tout\nwords  "}), 3),
        (json!({"model": "m", "max_tokens": 5}), 1),
        (json!({"messages": []}), 1),
    ];
    for (body, words) in cases {
        assert_eq!(prompt_words(&body), words, "{body}");
    }
}

#[test]
fn base64_matches_rfc_4648_vectors() {
    for (raw, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(raw.as_bytes()), encoded);
    }
}

#[tokio::test]
async fn chat_json_reports_exactly_the_advertised_tokens() {
    let mock = mock().await;
    let answer = call(
        &mock,
        "/v1/chat/completions",
        &[("x-mock-cached-tokens", "2")],
        chat_body(json!({})),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let usage_seen = usage_from_json(Provider::OpenAi, &answer.body);
    assert_eq!(usage_seen, usage(3, 2, 0, 16));
    let body = answer.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(content.split_whitespace().count(), 16);
    assert_eq!(body["usage"]["total_tokens"], 21);
}

#[tokio::test]
async fn the_request_cap_and_the_header_both_bound_output() {
    let mock = mock().await;
    let capped = call(
        &mock,
        "/v1/chat/completions",
        &[],
        chat_body(json!({"max_completion_tokens": 4, "max_tokens": 9})),
    )
    .await;
    assert_eq!(capped.json()["choices"][0]["finish_reason"], "length");
    assert_eq!(
        usage_from_json(Provider::OpenAi, &capped.body),
        usage(5, 0, 0, 4)
    );
    let header = call(
        &mock,
        "/v1/chat/completions",
        &[("x-mock-output-tokens", "3")],
        chat_body(json!({"max_tokens": 10})),
    )
    .await;
    assert_eq!(header.json()["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        usage_from_json(Provider::OpenAi, &header.body),
        usage(5, 0, 0, 3)
    );
}

#[tokio::test]
async fn chat_stream_sends_one_delta_per_token_then_usage_then_done() {
    let mock = mock().await;
    let body = chat_body(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let answer = call(
        &mock,
        "/v1/chat/completions",
        &[("x-mock-output-tokens", "7"), ("x-mock-cached-tokens", "9")],
        body,
    )
    .await;
    assert!(answer.headers[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let stream = read_stream(&answer.body);
    assert!(stream.completed());
    // Cached tokens never exceed the prompt.
    assert_eq!(stream.usage(), usage(0, 5, 0, 7));
    // Role chunk + 7 tokens + finish chunk carry choices; then usage and [DONE].
    assert_eq!(stream.output_deltas(), 9);
    assert_eq!(stream.events(), 11);
    assert!(answer.body.ends_with(b"data: [DONE]\n\n"));
}

#[tokio::test]
async fn chat_stream_without_include_usage_reports_no_usage() {
    let mock = mock().await;
    let answer = call(
        &mock,
        "/v1/chat/completions",
        &[],
        chat_body(json!({"stream": true})),
    )
    .await;
    let stream = read_stream(&answer.body);
    assert!(stream.completed());
    assert_eq!(stream.usage(), None);
    assert_eq!(stream.events(), 16 + 3);
    assert!(!String::from_utf8_lossy(&answer.body).contains("\"usage\""));
}

#[tokio::test]
async fn legacy_completions_answer_json_and_stream() {
    let mock = mock().await;
    let prompt = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "say this", "max_tokens": 5});
    let answer = call(&mock, "/v1/completions", &[], prompt.clone()).await;
    assert_eq!(answer.json()["object"], "text_completion");
    assert_eq!(
        usage_from_json(Provider::OpenAi, &answer.body),
        usage(2, 0, 0, 5)
    );
    let mut streamed = prompt;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let answer = call(&mock, "/v1/completions", &[], streamed).await;
    let stream = read_stream(&answer.body);
    assert!(stream.completed());
    assert_eq!(stream.usage(), usage(2, 0, 0, 5));
}

#[tokio::test]
async fn embeddings_report_prompt_tokens_and_one_vector_per_input() {
    let mock = mock().await;
    let body = json!({"model": "text-embedding-3-small", "input": ["a b c", "d"],
                      "encoding_format": "base64", "dimensions": 3});
    let answer = call(&mock, "/v1/embeddings", &[], body).await;
    assert_eq!(
        usage_from_json(Provider::OpenAi, &answer.body),
        usage(4, 0, 0, 0)
    );
    let json = answer.json();
    assert_eq!(json["data"].as_array().unwrap().len(), 2);
    // 3 little-endian f32 = 12 bytes = 16 base64 characters.
    assert_eq!(json["data"][1]["embedding"].as_str().unwrap().len(), 16);
    let floats = call(&mock, "/v1/embeddings", &[], json!({"input": "x"})).await;
    assert_eq!(
        floats.json()["data"][0]["embedding"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
}

#[tokio::test]
async fn responses_answer_json_and_a_stream_ending_in_completed() {
    let mock = mock().await;
    let body = json!({"model": "gpt-4.1", "input": "one two three four", "max_output_tokens": 6});
    let headers = [
        ("x-mock-cached-tokens", "1"),
        ("x-mock-output-tokens", "20"),
    ];
    let answer = call(&mock, "/v1/responses", &headers, body.clone()).await;
    assert_eq!(answer.json()["object"], "response");
    assert_eq!(
        usage_from_json(Provider::OpenAi, &answer.body),
        usage(3, 1, 0, 6)
    );
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let answer = call(&mock, "/v1/responses", &headers, streamed).await;
    let stream = read_stream(&answer.body);
    assert!(stream.completed());
    assert_eq!(stream.usage(), usage(3, 1, 0, 6));
    assert_eq!(stream.output_deltas(), 6);
    let names = event_names(&answer.body);
    assert_eq!(names.first().unwrap(), "response.created");
    assert_eq!(names.last().unwrap(), "response.completed");
}

#[tokio::test]
async fn anthropic_messages_split_cache_reads_and_writes_out_of_the_prompt() {
    let mock = mock().await;
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
                      "system": [{"type": "text", "text": "a b c d"}],
                      "messages": [{"role": "user", "content": "e f g h i j"}]});
    let headers = [
        ("x-mock-cached-tokens", "3"),
        ("x-mock-cache-write-tokens", "4"),
        ("x-mock-output-tokens", "5"),
    ];
    let answer = call(&mock, "/v1/messages", &headers, body.clone()).await;
    let json = answer.json();
    assert_eq!(json["type"], "message");
    assert_eq!(json["stop_reason"], "end_turn");
    assert_eq!(
        usage_from_json(Provider::Anthropic, &answer.body),
        usage(3, 3, 4, 5)
    );
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let answer = call(&mock, "/v1/messages", &headers, streamed).await;
    let stream = read_stream(&answer.body);
    assert!(stream.completed());
    assert_eq!(stream.usage(), usage(3, 3, 4, 5));
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(["content_block_delta"; 5]);
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(event_names(&answer.body), expected);
}

#[tokio::test]
async fn x_mock_status_answers_a_provider_shaped_error() {
    let mock = mock().await;
    let openai = call(
        &mock,
        "/v1/chat/completions",
        &[("x-mock-status", "429")],
        chat_body(json!({})),
    )
    .await;
    assert_eq!(openai.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(openai.json()["error"]["code"], "rate_limit_exceeded");
    let anthropic = call(
        &mock,
        "/v1/messages",
        &[("x-mock-status", "529")],
        json!({}),
    )
    .await;
    assert_eq!(anthropic.status.as_u16(), 529);
    assert_eq!(anthropic.json()["type"], "error");
    assert_eq!(anthropic.json()["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn error_after_chunks_drops_a_stream_midway() {
    let mock = mock().await;
    let answer = call(
        &mock,
        "/v1/messages",
        &[("x-mock-error-after-chunks", "4")],
        json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}),
    )
    .await;
    assert!(answer.cut);
    let stream = read_stream(&answer.body);
    assert_eq!(stream.events(), 4);
    assert!(!stream.completed());
    assert_eq!(stream.usage(), usage(1, 0, 0, 1));
    let json = call(
        &mock,
        "/v1/chat/completions",
        &[("x-mock-error-after-chunks", "1")],
        chat_body(json!({})),
    )
    .await;
    assert!(json.cut);
    assert!(serde_json::from_slice::<Value>(&json.body).is_err());
}

#[tokio::test]
async fn latency_and_chunk_delay_are_honoured() {
    let mock = mock().await;
    let started = Instant::now();
    call(
        &mock,
        "/v1/chat/completions",
        &[("x-mock-latency-ms", "60")],
        chat_body(json!({})),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(60));
    let started = Instant::now();
    let answer = call(
        &mock,
        "/v1/chat/completions",
        &[
            ("x-mock-chunk-delay-ms", "20"),
            ("x-mock-output-tokens", "3"),
        ],
        chat_body(json!({"stream": true})),
    )
    .await;
    // 6 events, 5 gaps.
    assert_eq!(read_stream(&answer.body).events(), 6);
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn stats_keep_counts_and_the_last_credential_until_reset() {
    let mock = mock().await;
    let headers = [
        ("authorization", "Bearer sk-provider"),
        ("x-api-key", "ak-1"),
    ];
    call(&mock, "/v1/messages", &headers, json!({})).await;
    call(
        &mock,
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-last")],
        chat_body(json!({})),
    )
    .await;
    let stats = send(&mock, Method::GET, "/_mock/stats", &[], String::new()).await;
    let stats = stats.json();
    assert_eq!(stats["requests"], 2);
    assert_eq!(
        stats["by_path"],
        json!({"/v1/messages": 1, "/v1/chat/completions": 1})
    );
    assert_eq!(stats["last_headers"]["authorization"], "Bearer sk-last");
    assert_eq!(stats["last_headers"].get("x-api-key"), None);
    assert_eq!(stats["last_body"]["model"], "gpt-4o-mini");
    assert_eq!(mock.stats(), stats);
    let reset = send(&mock, Method::POST, "/_mock/reset", &[], String::new()).await;
    assert_eq!(reset.status, StatusCode::OK);
    assert_eq!(mock.stats()["requests"], 0);
    assert_eq!(mock.stats()["last_headers"], json!({}));
}

#[tokio::test]
async fn bad_controls_bodies_and_paths_are_answered_with_errors() {
    let mock = mock().await;
    let bad_header = call(
        &mock,
        "/v1/chat/completions",
        &[("x-mock-output-tokens", "lots")],
        chat_body(json!({})),
    )
    .await;
    assert_eq!(bad_header.status, StatusCode::BAD_REQUEST);
    let msg = bad_header.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("x-mock-output-tokens"), "{msg}");
    let headers: &[(&str, &str)] = &[];
    let bad_json = send(&mock, Method::POST, "/v1/messages", headers, "{".into()).await;
    assert_eq!(bad_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_json.json()["type"], "error");
    let unknown = call(&mock, "/v1/unknown", &[], json!({})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn serves_h2_with_prior_knowledge() {
    let mock = mock().await;
    let stream = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::post(format!("{}/v1/chat/completions", mock.url()))
        .body(Full::new(Bytes::from(chat_body(json!({})).to_string())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(usage_from_json(Provider::OpenAi, &body), usage(5, 0, 0, 16));
}
