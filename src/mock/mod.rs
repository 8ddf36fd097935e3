//! A mock OpenAI / Anthropic upstream for tests and benchmarks: deterministic usage, JSON and
//! SSE responses shaped like the real APIs, latency and error injection by request header, and
//! `/_mock/stats` so a test can see what reached it. Never used by `caracal serve`.

mod bodies;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming};
use hyper::{HeaderMap, Request, Response, StatusCode};
use tokio::sync::mpsc;

use crate::http::{self, Shutdown};

/// Largest request body the mock reads.
const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;
/// SSE chunks buffered between the producer task and the connection.
const STREAM_CHANNEL_CHUNKS: usize = 64;

/// Defaults applied when a request carries no control header.
#[derive(Debug, Clone, Copy)]
pub struct MockSettings {
    pub latency: Duration,
    pub chunk_delay: Duration,
    pub output_tokens: u64,
}

impl Default for MockSettings {
    fn default() -> Self {
        MockSettings {
            latency: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            output_tokens: 16,
        }
    }
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    by_path: Mutex<BTreeMap<String, u64>>,
    last_headers: Mutex<BTreeMap<String, String>>,
}

struct Mock {
    settings: MockSettings,
    stats: Stats,
}

/// Serves the mock on `listener` until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, settings: MockSettings, shutdown: Shutdown) {
    let mock = Arc::new(Mock {
        settings,
        stats: Stats::default(),
    });
    http::serve(
        listener,
        None,
        move |req, _conn| {
            let mock = Arc::clone(&mock);
            async move { mock.handle(req).await }
        },
        shutdown,
    )
    .await;
}

/// Per-request controls, from `x-mock-*` headers.
struct Controls {
    latency: Duration,
    chunk_delay: Duration,
    output_tokens: u64,
    cached_tokens: u64,
    status: Option<u16>,
    error_after_chunks: Option<usize>,
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

impl Mock {
    fn controls(&self, headers: &HeaderMap) -> Controls {
        Controls {
            latency: header_u64(headers, "x-mock-latency-ms")
                .map_or(self.settings.latency, Duration::from_millis),
            chunk_delay: header_u64(headers, "x-mock-chunk-delay-ms")
                .map_or(self.settings.chunk_delay, Duration::from_millis),
            output_tokens: header_u64(headers, "x-mock-output-tokens")
                .unwrap_or(self.settings.output_tokens),
            cached_tokens: header_u64(headers, "x-mock-cached-tokens").unwrap_or(0),
            status: header_u64(headers, "x-mock-status").and_then(|s| u16::try_from(s).ok()),
            error_after_chunks: header_u64(headers, "x-mock-error-after-chunks")
                .and_then(|n| usize::try_from(n).ok()),
        }
    }

    fn record(&self, path: &str, headers: &HeaderMap) {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut by_path) = self.stats.by_path.lock() {
            *by_path.entry(path.to_owned()).or_default() += 1;
        }
        if let Ok(mut last) = self.stats.last_headers.lock() {
            *last = headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        v.to_str().unwrap_or("<binary>").to_owned(),
                    )
                })
                .collect();
        }
    }

    fn stats_json(&self) -> serde_json::Value {
        let by_path = self
            .stats
            .by_path
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let last = self
            .stats
            .last_headers
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        serde_json::json!({
            "requests": self.stats.requests.load(Ordering::Relaxed),
            "by_path": by_path,
            "last_headers": last,
        })
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<MockBody> {
        let path = req.uri().path().to_owned();
        match path.as_str() {
            "/_mock/stats" => return MockBody::json(StatusCode::OK, &self.stats_json()),
            "/_mock/reset" => {
                self.stats.requests.store(0, Ordering::Relaxed);
                if let Ok(mut m) = self.stats.by_path.lock() {
                    m.clear();
                }
                return MockBody::json(StatusCode::OK, &serde_json::json!({ "reset": true }));
            }
            _ => {}
        }
        self.record(&path, req.headers());
        let controls = self.controls(req.headers());
        let body = match http::read_body(req.into_body(), BODY_BYTES_MAX).await {
            Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
                .unwrap_or(serde_json::Value::Null),
            Err(e) => {
                return MockBody::json(
                    StatusCode::BAD_REQUEST,
                    &bodies::error_body(&path, &e.to_string()),
                )
            }
        };
        if !controls.latency.is_zero() {
            tokio::time::sleep(controls.latency).await;
        }
        if let Some(status) = controls.status {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return MockBody::json(
                status,
                &bodies::error_body(&path, "injected by x-mock-status"),
            );
        }
        let Some(call) =
            bodies::Call::parse(&path, &body, controls.output_tokens, controls.cached_tokens)
        else {
            return MockBody::json(
                StatusCode::NOT_FOUND,
                &bodies::error_body(&path, "unknown endpoint"),
            );
        };
        if call.stream {
            let chunks = call.sse_chunks();
            MockBody::stream(chunks, controls.chunk_delay, controls.error_after_chunks)
        } else {
            MockBody::json(StatusCode::OK, &call.json())
        }
    }
}

/// The mock's response body: a whole JSON document, or SSE chunks fed by a task.
pub enum MockBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Result<Bytes, std::io::Error>>),
}

impl MockBody {
    fn json(status: StatusCode, value: &serde_json::Value) -> Response<MockBody> {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        let mut response = Response::new(MockBody::Full(Some(Bytes::from(bytes))));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        response
    }

    fn stream(
        chunks: Vec<String>,
        delay: Duration,
        error_after: Option<usize>,
    ) -> Response<MockBody> {
        let (tx, rx) = mpsc::channel(STREAM_CHANNEL_CHUNKS);
        tokio::spawn(async move {
            for (i, chunk) in chunks.into_iter().enumerate() {
                if error_after == Some(i) {
                    let _ = tx
                        .send(Err(std::io::Error::other("injected mid-stream failure")))
                        .await;
                    return;
                }
                if i > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                    return;
                }
            }
        });
        let mut response = Response::new(MockBody::Stream(rx));
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        response
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut *self {
            MockBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Stream(rx) => rx
                .poll_recv(cx)
                .map(|item| item.map(|r| r.map(Frame::data))),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            MockBody::Full(Some(bytes)) => hyper::body::SizeHint::with_exact(bytes.len() as u64),
            MockBody::Full(None) => hyper::body::SizeHint::with_exact(0),
            MockBody::Stream(_) => hyper::body::SizeHint::default(),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, MockBody::Full(None))
    }
}

/// Binds and serves the mock in the background; returns its address and the stop switch.
pub async fn spawn(
    addr: SocketAddr,
    settings: MockSettings,
) -> std::io::Result<(SocketAddr, tokio::sync::watch::Sender<bool>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let (stop, shutdown) = Shutdown::new();
    tokio::spawn(serve(listener, settings, shutdown));
    Ok((local, stop))
}
