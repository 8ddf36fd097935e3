//! Metering a response while it streams: the body wrapper that feeds every chunk to the usage
//! parser untouched, enforces the idle timeout between chunks, and finishes the call's
//! `PendingCharge` exactly once — at the end of the body, on an upstream error, or when the
//! client goes away (the wrapper's `Drop`), with whatever usage the tap has read by then.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

use crate::admission::{Finished, PendingCharge};
use crate::core::events::Outcome;
use crate::core::pricing::Usage;
use crate::core::stream_usage::StreamUsage;
use crate::core::usage::{usage_from_json, Provider};

/// Largest non-streamed response body kept to read its usage; beyond it, usage is unknown and
/// the reservation is charged (`estimated`).
pub const JSON_USAGE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Largest single SSE event the usage parser buffers.
pub const SSE_EVENT_BYTES_MAX: usize = 1024 * 1024;

/// Reads usage from a response as it passes.
pub enum UsageTap {
    Json {
        provider: Provider,
        buffer: Vec<u8>,
        overflowed: bool,
    },
    Sse(Box<StreamUsage>),
    None,
}

impl UsageTap {
    pub fn for_response(provider: Provider, content_type: &str, metered: bool) -> UsageTap {
        if !metered {
            UsageTap::None
        } else if content_type.starts_with("text/event-stream") {
            UsageTap::Sse(Box::new(StreamUsage::new(SSE_EVENT_BYTES_MAX)))
        } else {
            UsageTap::Json {
                provider,
                buffer: Vec::new(),
                overflowed: false,
            }
        }
    }

    fn observe(&mut self, chunk: &[u8]) {
        match self {
            UsageTap::Json {
                buffer, overflowed, ..
            } => {
                if buffer.len() + chunk.len() > JSON_USAGE_BYTES_MAX {
                    *overflowed = true;
                    buffer.clear();
                } else if !*overflowed {
                    buffer.extend_from_slice(chunk);
                }
            }
            UsageTap::Sse(stream) => stream.push(chunk),
            UsageTap::None => {}
        }
    }

    /// The usage the response reported, if it reported any.
    pub fn usage(&mut self) -> Option<Usage> {
        match self {
            UsageTap::Json {
                provider,
                buffer,
                overflowed,
            } => {
                if *overflowed {
                    None
                } else {
                    usage_from_json(*provider, buffer)
                }
            }
            UsageTap::Sse(stream) => {
                stream.finish();
                stream.usage()
            }
            UsageTap::None => None,
        }
    }
}

/// The response body as the client sees it: the upstream's bytes, untouched.
pub struct MeteredBody {
    inner: Incoming,
    tap: UsageTap,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    bytes: u64,
    pending: Option<PendingCharge>,
    /// The request's in-flight slot, held until the body is gone.
    _permit: OwnedSemaphorePermit,
}

impl MeteredBody {
    pub fn new(
        inner: Incoming,
        tap: UsageTap,
        idle_timeout: Duration,
        pending: PendingCharge,
        permit: OwnedSemaphorePermit,
    ) -> MeteredBody {
        MeteredBody {
            inner,
            tap,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            bytes: 0,
            pending: Some(pending),
            _permit: permit,
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(pending) = self.pending.take() {
            let usage = self.tap.usage();
            pending.finish(Finished {
                outcome,
                usage,
                bytes: self.bytes,
            });
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MeteredBodyError {
    #[error("upstream body failed: {0}")]
    Upstream(#[from] hyper::Error),
    #[error("upstream sent nothing for {0:?}")]
    IdleTimeout(Duration),
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = MeteredBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.tap.observe(data);
                    this.bytes += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    // A body of known length may never be polled to its end: settle now.
                    this.finish(Outcome::Completed);
                }
                let deadline = tokio::time::Instant::now() + this.idle_timeout;
                this.idle.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(Outcome::UpstreamError);
                Poll::Ready(Some(Err(MeteredBodyError::Upstream(e))))
            }
            Poll::Ready(None) => {
                this.finish(Outcome::Completed);
                Poll::Ready(None)
            }
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.finish(Outcome::Timeout);
                    Poll::Ready(Some(Err(MeteredBodyError::IdleTimeout(this.idle_timeout))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        // Still unsettled: the client went away before the end of the body.
        self.finish(Outcome::ClientDisconnected);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_json_body_reports_no_usage() {
        let mut tap = UsageTap::for_response(Provider::OpenAi, "application/json", true);
        tap.observe(&vec![b' '; JSON_USAGE_BYTES_MAX]);
        tap.observe(br#"{"usage":{"prompt_tokens":1,"completion_tokens":1}}"#);
        assert!(tap.usage().is_none());
        let mut small = UsageTap::for_response(Provider::OpenAi, "application/json", true);
        small.observe(br#"{"object":"chat.completion","usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#);
        let usage = small.usage();
        assert_eq!(
            usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((3, 2))
        );
    }
}
