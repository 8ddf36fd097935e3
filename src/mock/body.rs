//! The mock's response body: pre-built chunks sent with an optional delay between them, and an
//! optional deliberate failure after some chunks, on which hyper drops the connection mid-body.
//! Holds no task and no channel: the delay is a timer polled by the body itself.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// Pause between the last chunk sent and a deliberate failure.
const FLUSH_BEFORE_FAILURE: Duration = Duration::from_millis(20);

/// Body of every mock response.
#[derive(Debug)]
pub struct MockBody {
    chunks: VecDeque<Bytes>,
    delay: Duration,
    fail_after: Option<usize>,
    sent: usize,
    sleep: Option<Pin<Box<Sleep>>>,
    /// The failure point was reached and the flush pause has begun.
    failing: bool,
    /// Announce the full length (`content-length`), as JSON answers do; SSE is chunked.
    exact_len: Option<u64>,
}

impl MockBody {
    /// One JSON document. With `fail_after` set it is sent in two halves, so a failure after
    /// one chunk cuts it mid-document (the announced length is the whole).
    pub fn json(bytes: Bytes, fail_after: Option<usize>) -> MockBody {
        let exact_len = Some(bytes.len() as u64);
        let chunks = if fail_after.is_some() && bytes.len() > 1 {
            let half = bytes.len() / 2;
            VecDeque::from([bytes.slice(..half), bytes.slice(half..)])
        } else {
            VecDeque::from([bytes])
        };
        MockBody {
            chunks,
            delay: Duration::ZERO,
            fail_after,
            sent: 0,
            sleep: None,
            failing: false,
            exact_len,
        }
    }

    /// A stream of chunks (SSE events), `delay` apart, failing after `fail_after` of them.
    pub fn stream(chunks: Vec<Bytes>, delay: Duration, fail_after: Option<usize>) -> MockBody {
        MockBody {
            chunks: chunks.into(),
            delay,
            fail_after,
            sent: 0,
            sleep: None,
            failing: false,
            exact_len: None,
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(sleep) = this.sleep.as_mut() {
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
        }
        if this.fail_after == Some(this.sent) && !this.chunks.is_empty() {
            if !this.failing {
                // Return Pending once first, so hyper flushes the headers and the chunks so
                // far: the client must see a response cut short, not a refused one.
                this.failing = true;
                this.sleep = Some(Box::pin(tokio::time::sleep(FLUSH_BEFORE_FAILURE)));
                return Pin::new(this).poll_frame(cx);
            }
            this.chunks.clear();
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection dropped as x-mock-error-after-chunks asked",
            ))));
        }
        let Some(chunk) = this.chunks.pop_front() else {
            return Poll::Ready(None);
        };
        this.sent += 1;
        if !this.delay.is_zero() && !this.chunks.is_empty() {
            this.sleep = Some(Box::pin(tokio::time::sleep(this.delay)));
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(len) if self.sent == 0 => SizeHint::with_exact(len),
            _ => SizeHint::default(),
        }
    }
}
