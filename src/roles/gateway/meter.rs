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
use crate::core::usage_chunks::InjectedUsageFilter;

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
    /// Set when the gateway asked an OpenAI stream for usage that the client did not ask for:
    /// the client gets the stream it asked for.
    restore: Option<InjectedUsageFilter>,
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
        usage_injected: bool,
    ) -> MeteredBody {
        MeteredBody {
            inner,
            tap,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            bytes: 0,
            pending: Some(pending),
            restore: usage_injected.then(|| InjectedUsageFilter::new(SSE_EVENT_BYTES_MAX)),
            _permit: permit,
        }
    }

    /// The bytes of an upstream chunk the client gets, after the usage tap has read them.
    fn pass(&mut self, data: Bytes) -> Bytes {
        self.tap.observe(&data);
        let data = match &mut self.restore {
            Some(filter) => filter.push(data),
            None => data,
        };
        self.bytes += data.len() as u64;
        data
    }

    /// What the filter still holds at the end of the upstream's body.
    fn tail(&mut self) -> Bytes {
        let tail = self
            .restore
            .as_mut()
            .map(|f| f.finish())
            .unwrap_or_default();
        self.bytes += tail.len() as u64;
        tail
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
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let deadline = tokio::time::Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(deadline);
                    let end = this.inner.is_end_stream();
                    let frame = match frame.into_data() {
                        Ok(data) => {
                            let mut data = this.pass(data);
                            if end {
                                data = [data, this.tail()].concat().into();
                            } else if data.is_empty() {
                                continue; // held by the filter until its event ends
                            }
                            Frame::data(data)
                        }
                        Err(other) => other,
                    };
                    if end {
                        // A body of known length may never be polled to its end: settle now.
                        this.finish(Outcome::Completed);
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.finish(Outcome::UpstreamError);
                    return Poll::Ready(Some(Err(MeteredBodyError::Upstream(e))));
                }
                Poll::Ready(None) => {
                    let tail = this.tail();
                    this.finish(Outcome::Completed);
                    return Poll::Ready((!tail.is_empty()).then(|| Ok(Frame::data(tail))));
                }
                Poll::Pending => {
                    return match this.idle.as_mut().poll(cx) {
                        Poll::Ready(()) => {
                            this.finish(Outcome::Timeout);
                            let error = MeteredBodyError::IdleTimeout(this.idle_timeout);
                            Poll::Ready(Some(Err(error)))
                        }
                        Poll::Pending => Poll::Pending,
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.restore {
            Some(_) => SizeHint::default(), // the filter changes the length
            None => self.inner.size_hint(),
        }
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
