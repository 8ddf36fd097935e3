//! A mock OpenAI/Anthropic upstream for integration tests and benchmarks: deterministic usage,
//! `x-mock-*` header controls (latency, chunk delay, status, dropped streams) and `/_mock/stats`.
//! Test infrastructure only: nothing in the gateway depends on it.

mod anthropic;
mod body;
mod openai;
mod request;
mod stats;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use body::MockBody;
pub use request::{prompt_words, Call, Controls, Endpoint};
pub use stats::Stats;

/// Cap on a request body the mock reads.
pub const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Server-wide defaults; every one can be overridden per request by its `x-mock-*` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockConfig {
    /// Output tokens of a call whose request sets no lower cap (`x-mock-output-tokens`).
    pub output_tokens: u64,
    /// Delay before the response headers (`x-mock-latency-ms`).
    pub latency_ms: u64,
    /// Delay between streamed chunks (`x-mock-chunk-delay-ms`).
    pub chunk_delay_ms: u64,
}

impl Default for MockConfig {
    fn default() -> MockConfig {
        MockConfig {
            output_tokens: 16,
            latency_ms: 0,
            chunk_delay_ms: 0,
        }
    }
}

/// A body to answer: one JSON document or a list of SSE events.
#[derive(Debug)]
pub enum Reply {
    Json(Value),
    Sse(Vec<Bytes>),
}

/// A running mock upstream. Dropping it (or `stop`) closes the listener and every connection.
pub struct MockUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    config: MockConfig,
    stats: Stats,
}

impl MockUpstream {
    /// Binds `listen` (port 0 picks a free one) and serves HTTP/1.1 and h2c on the current
    /// tokio runtime.
    pub async fn start(listen: SocketAddr, config: MockConfig) -> std::io::Result<MockUpstream> {
        let listener = crate::http::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            config,
            stats: Stats::default(),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), stopped));
        Ok(MockUpstream {
            addr,
            state,
            stop,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the base URL to put in front of `/v1/...`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The same JSON as `GET /_mock/stats`.
    pub fn stats(&self) -> Value {
        self.state.stats.snapshot()
    }

    /// The same as `POST /_mock/reset`.
    pub fn reset(&self) {
        self.state.stats.reset();
    }

    /// Stops accepting and closes every open connection.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Accepts until `stopped`; dropping the connection set on the way out aborts every connection.
async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        let Ok((stream, _peer)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, std::convert::Infallible>(handle(req, &state).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn handle(req: Request<Incoming>, state: &State) -> Response<MockBody> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/_mock/stats") => json(StatusCode::OK, &state.stats.snapshot()),
        (&Method::POST, "/_mock/reset") => {
            state.stats.reset();
            json(StatusCode::OK, &json!({"reset": true}))
        }
        (_, path) if path.starts_with("/_mock/") => json(
            StatusCode::NOT_FOUND,
            &openai::error(
                StatusCode::NOT_FOUND,
                "mock controls: GET /_mock/stats, POST /_mock/reset",
            ),
        ),
        _ => api(req, state).await,
    }
}

/// One provider call: record it, apply the controls, answer.
async fn api(req: Request<Incoming>, state: &State) -> Response<MockBody> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let endpoint = Endpoint::of(&path);
    let error = |status: StatusCode, message: &str| {
        let body = match endpoint {
            Some(Endpoint::Messages) => anthropic::error(status, message),
            _ => openai::error(status, message),
        };
        json(status, &body)
    };
    let body = match crate::http::read_body(body, BODY_BYTES_MAX).await {
        Ok(body) => body,
        Err(e @ crate::http::BodyError::TooLarge(_)) => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string())
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    state.stats.record(&parts, &body);
    let controls = match Controls::from_headers(&parts.headers, &state.config) {
        Ok(controls) => controls,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    if !controls.latency.is_zero() {
        tokio::time::sleep(controls.latency).await;
    }
    if let Some(status) = controls.status {
        return error(status, "mock error requested by x-mock-status");
    }
    let Some(endpoint) = endpoint.filter(|_| parts.method == Method::POST) else {
        return error(StatusCode::NOT_FOUND, &format!("no mock route for {path}"));
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request @ Value::Object(_)) => request,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "request body must be a JSON object",
            )
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    let call = Call::read(endpoint, &request, &controls);
    let reply = match endpoint {
        Endpoint::ChatCompletions => openai::chat(&call),
        Endpoint::Completions => openai::completions(&call),
        Endpoint::Embeddings => openai::embeddings(&call),
        Endpoint::Responses => openai::responses(&call),
        Endpoint::Messages => anthropic::messages(&call),
    };
    match reply {
        Reply::Json(value) => {
            let bytes = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
            respond(
                StatusCode::OK,
                "application/json",
                MockBody::json(bytes, controls.error_after_chunks),
            )
        }
        Reply::Sse(events) => {
            let body = MockBody::stream(events, controls.chunk_delay, controls.error_after_chunks);
            let mut response = respond(StatusCode::OK, "text/event-stream; charset=utf-8", body);
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
    }
}

fn json(status: StatusCode, value: &Value) -> Response<MockBody> {
    let bytes = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
    respond(status, "application/json", MockBody::json(bytes, None))
}

fn respond(status: StatusCode, content_type: &'static str, body: MockBody) -> Response<MockBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(request_id) = HeaderValue::from_str(&id("req_")) {
        headers.insert("x-request-id", request_id.clone());
        headers.insert("request-id", request_id);
    }
    response
}

/// `prefix` + 32 random hex digits, the shape of provider ids.
fn id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Text of output token `i`: `mock` then ` mock` …, so the reply has one word per token.
fn token_text(i: u64) -> &'static str {
    if i == 0 {
        "mock"
    } else {
        " mock"
    }
}

fn output_text(tokens: u64) -> String {
    (0..tokens).map(token_text).collect()
}

/// `data: JSON` + blank line (OpenAI chat and completions streams).
fn sse_data(value: &Value) -> Bytes {
    let mut out = b"data: ".to_vec();
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// `event: NAME` + `data: JSON` + blank line (Responses and Anthropic streams).
fn sse_event(name: &str, value: &Value) -> Bytes {
    let mut out = format!("event: {name}\ndata: ").into_bytes();
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}
