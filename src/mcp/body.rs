//! Relaying a server's response to the client while it streams: the bytes pass untouched,
//! bounded (`streamBytesMax`, and the idle timeout between chunks), and for a `tools/call` the
//! watcher reads the JSON-RPC answer to the call (a plain JSON body, or the message of an SSE
//! stream that answers the request's id). The call's `PendingCharge` is finished exactly once:
//! at that answer's end of body, on an upstream error, on a timeout, or when the client goes
//! away (the body's `Drop`: closing a response stream is how a 2026-07-28 client cancels).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

use crate::admission::{Finished, PendingCharge};
use crate::core::events::Outcome;
use crate::core::sse::SseParser;

/// How the JSON-RPC answer to a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A `result` (a tool result, `isError` or not: the tool ran).
    Result,
    /// A JSON-RPC `error`: the call did not run.
    Error,
    /// The server's acknowledgement of the client's cancellation (the official SDK answers a
    /// cancelled request with an error saying so): the call was abandoned after it was sent,
    /// not refused, so it is charged as abandoned.
    Cancelled,
}

/// Reads a response for the answer to one request id.
pub struct AnswerWatch {
    id: Value,
    mode: WatchMode,
    answer: Option<Answer>,
}

enum WatchMode {
    Sse(Box<SseParser>),
    Json { buffer: Vec<u8>, bytes_max: usize },
}

impl AnswerWatch {
    pub fn new(
        id: Value,
        content_type: &str,
        event_bytes_max: usize,
        json_bytes_max: usize,
    ) -> Self {
        let mode = if content_type.starts_with("text/event-stream") {
            WatchMode::Sse(Box::new(SseParser::new(event_bytes_max)))
        } else {
            WatchMode::Json {
                buffer: Vec::new(),
                bytes_max: json_bytes_max,
            }
        };
        AnswerWatch {
            id,
            mode,
            answer: None,
        }
    }

    pub fn observe(&mut self, chunk: &[u8]) {
        if self.answer.is_some() {
            return;
        }
        let (id, answer) = (&self.id, &mut self.answer);
        match &mut self.mode {
            WatchMode::Sse(parser) => parser.push(chunk, &mut |event| {
                if answer.is_none() {
                    *answer = answer_of(id, event.data.as_bytes());
                }
            }),
            WatchMode::Json { buffer, bytes_max } => {
                if buffer.len().saturating_add(chunk.len()) <= *bytes_max {
                    buffer.extend_from_slice(chunk);
                }
            }
        }
    }

    /// The answer, once the body has ended.
    pub fn answer(&mut self) -> Option<Answer> {
        if let WatchMode::Json { buffer, .. } = &self.mode {
            if self.answer.is_none() {
                self.answer = answer_of(&self.id, buffer);
            }
        }
        self.answer
    }
}

/// The verdict of one JSON-RPC message if it answers `id`.
fn answer_of(id: &Value, data: &[u8]) -> Option<Answer> {
    let message: Value = serde_json::from_slice(data).ok()?;
    if message.get("id") != Some(id) {
        return None;
    }
    if message.get("result").is_some() {
        Some(Answer::Result)
    } else if let Some(error) = message.get("error") {
        let said = error.get("message").and_then(Value::as_str).unwrap_or("");
        match said.to_ascii_lowercase().contains("cancelled") {
            true => Some(Answer::Cancelled),
            false => Some(Answer::Error),
        }
    } else {
        None
    }
}

/// A metered call riding a response.
pub struct Metered {
    pub pending: PendingCharge,
    pub watch: AnswerWatch,
    /// The upstream's HTTP status.
    pub status: u16,
}

/// The response body the client reads.
pub struct RelayBody {
    inner: Incoming,
    /// `None`: no idle limit (a session's GET stream may be quiet for long).
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    bytes: u64,
    bytes_max: u64,
    metered: Option<Metered>,
    _permit: Option<OwnedSemaphorePermit>,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("upstream body failed: {0}")]
    Upstream(#[from] hyper::Error),
    #[error("upstream sent nothing for {0:?}")]
    IdleTimeout(Duration),
    #[error("response stream exceeded {0} bytes")]
    TooLong(u64),
}

impl RelayBody {
    pub fn new(
        inner: Incoming,
        idle_timeout: Option<Duration>,
        bytes_max: u64,
        metered: Option<Metered>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> RelayBody {
        RelayBody {
            inner,
            idle: idle_timeout.map(|t| (t, Box::pin(tokio::time::sleep(t)))),
            bytes: 0,
            bytes_max,
            metered,
            _permit: permit,
        }
    }

    /// Settles the call (once): a result of a 2xx answer is a completed call (even when the
    /// client closes the stream right after reading it); a JSON-RPC error
    /// or an error status charges nothing; a stream that ended unanswered (the client
    /// cancelled, or the server gave up) is charged as abandoned.
    fn finish(&mut self, outcome: Outcome) {
        let Some(mut metered) = self.metered.take() else {
            return;
        };
        let answer = metered.watch.answer();
        let success = (200..300).contains(&metered.status);
        // A client that closes the stream once it has the answer (the SDK does) completed it.
        let outcome = match (outcome, answer) {
            (_, Some(Answer::Cancelled)) => Outcome::ClientDisconnected,
            (Outcome::ClientDisconnected, Some(_)) => Outcome::Completed,
            (other, _) => other,
        };
        let outcome = match (outcome, answer) {
            (Outcome::Completed, Some(Answer::Result)) if success => {
                metered.pending.answered(metered.status);
                Outcome::Completed
            }
            (Outcome::Completed, Some(_)) => Outcome::UpstreamError,
            (Outcome::Completed, None) if !success => {
                metered.pending.answered(metered.status);
                Outcome::UpstreamError
            }
            (Outcome::Completed, None) => Outcome::ClientDisconnected,
            (other, _) => other,
        };
        metered.pending.finish(Finished {
            outcome,
            usage: None,
            bytes: self.bytes,
        });
    }

    fn pass(&mut self, data: &Bytes) -> Result<(), RelayError> {
        self.bytes = self.bytes.saturating_add(data.len() as u64);
        if self.bytes > self.bytes_max {
            return Err(RelayError::TooLong(self.bytes_max));
        }
        if let Some(metered) = &mut self.metered {
            metered.watch.observe(data);
        }
        Ok(())
    }
}

impl Body for RelayBody {
    type Data = Bytes;
    type Error = RelayError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some((timeout, sleep)) = &mut this.idle {
                    sleep.as_mut().reset(tokio::time::Instant::now() + *timeout);
                }
                if let Some(data) = frame.data_ref() {
                    if let Err(e) = this.pass(data) {
                        this.finish(Outcome::UpstreamError);
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish(Outcome::Completed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(Outcome::UpstreamError);
                Poll::Ready(Some(Err(RelayError::Upstream(e))))
            }
            Poll::Ready(None) => {
                this.finish(Outcome::Completed);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let expired = match &mut this.idle {
                    Some((timeout, sleep)) => {
                        sleep.as_mut().poll(cx).is_ready().then_some(*timeout)
                    }
                    None => None,
                };
                match expired {
                    Some(timeout) => {
                        this.finish(Outcome::Timeout);
                        Poll::Ready(Some(Err(RelayError::IdleTimeout(timeout))))
                    }
                    None => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RelayBody {
    fn drop(&mut self) {
        // Still unsettled: the client closed the stream before the answer's end.
        self.finish(Outcome::ClientDisconnected);
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_answer_is_the_message_with_the_calls_id_in_an_sse_stream_cut_anywhere() {
        let stream = concat!(
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n",
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"content\":[]}}\n\n",
        );
        for cut in [1, 7, 60, stream.len() - 3] {
            let mut watch = AnswerWatch::new(json!(9), "text/event-stream", 1 << 20, 1 << 20);
            let (a, b) = stream.as_bytes().split_at(cut);
            watch.observe(a);
            watch.observe(b);
            assert_eq!(watch.answer(), Some(Answer::Result), "cut at {cut}");
        }
        let mut other = AnswerWatch::new(json!(8), "text/event-stream", 1 << 20, 1 << 20);
        other.observe(stream.as_bytes());
        assert_eq!(other.answer(), None);
    }

    #[test]
    fn a_json_error_answer_is_an_error_and_an_oversized_body_is_no_answer() {
        let body = br#"{"jsonrpc":"2.0","id":"a","error":{"code":-32602,"message":"no"}}"#;
        let mut watch = AnswerWatch::new(json!("a"), "application/json", 1 << 20, 1 << 20);
        watch.observe(body);
        assert_eq!(watch.answer(), Some(Answer::Error));
        let cancelled =
            br#"{"jsonrpc":"2.0","id":"a","error":{"code":0,"message":"Request cancelled"}}"#;
        let mut ack = AnswerWatch::new(json!("a"), "application/json", 1 << 20, 1 << 20);
        ack.observe(cancelled);
        assert_eq!(ack.answer(), Some(Answer::Cancelled));
        let mut small = AnswerWatch::new(json!("a"), "application/json", 1 << 20, 10);
        small.observe(body);
        assert_eq!(small.answer(), None);
    }
}
