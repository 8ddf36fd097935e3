//! Undoing the gateway's own `stream_options.include_usage` on an OpenAI stream, so a client
//! that did not ask for usage receives the stream it asked for: the usage-only chunk
//! (`"choices":[]` with a `usage` object) is dropped and the `"usage":null` member the option
//! adds to every other chunk is removed. The usage parser reads the upstream's bytes before this
//! filter. Pure: bytes in, bytes out; a partial event is held until its blank line arrives, and
//! an event longer than the bound is passed through untouched from then on (never dropped).

use bytes::{Bytes, BytesMut};

/// What the option adds to every chunk that is not the usage chunk.
const NULL_USAGE_MEMBERS: [&[u8]; 2] = [br#","usage":null"#, br#""usage":null,"#];

pub struct InjectedUsageFilter {
    /// Bytes of an event whose end has not arrived yet.
    pending: BytesMut,
    pending_bytes_max: usize,
    /// Set once an event outgrew the bound: everything passes as it came.
    passthrough: bool,
}

impl InjectedUsageFilter {
    pub fn new(pending_bytes_max: usize) -> InjectedUsageFilter {
        InjectedUsageFilter {
            pending: BytesMut::new(),
            pending_bytes_max,
            passthrough: false,
        }
    }

    /// The bytes of `chunk` the client gets now (possibly none).
    pub fn push(&mut self, chunk: Bytes) -> Bytes {
        if self.passthrough {
            return chunk;
        }
        self.pending.extend_from_slice(&chunk);
        let Some(end) = last_event_end(&self.pending) else {
            if self.pending.len() > self.pending_bytes_max {
                self.passthrough = true;
                return self.pending.split().freeze();
            }
            return Bytes::new();
        };
        let complete = self.pending.split_to(end);
        let mut out = BytesMut::with_capacity(complete.len());
        for event in split_events(&complete) {
            rewrite_event(event, &mut out);
        }
        out.freeze()
    }

    /// What is still held when the stream ends: passed on as it came.
    pub fn finish(&mut self) -> Bytes {
        self.pending.split().freeze()
    }
}

/// The index just past the last event terminator (`\n\n` or `\r\n\r\n`) in `bytes`.
fn last_event_end(bytes: &[u8]) -> Option<usize> {
    let lf = bytes.windows(2).rposition(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = bytes
        .windows(4)
        .rposition(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    lf.max(crlf)
}

/// Complete events, each with its terminator.
fn split_events(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
        let crlf = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4);
        let end = match (lf, crlf) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(bytes.len()),
        };
        let (event, rest) = bytes.split_at(end);
        bytes = rest;
        Some(event)
    })
}

/// Appends `event` as the client should see it: nothing for the usage-only chunk, else the
/// event without the `"usage":null` member.
fn rewrite_event(event: &[u8], out: &mut BytesMut) {
    if contains(event, br#""choices":[]"#) && contains(event, br#""usage":{"#) {
        return;
    }
    for member in NULL_USAGE_MEMBERS {
        if let Some(at) = find(event, member) {
            out.extend_from_slice(&event[..at]);
            out.extend_from_slice(&event[at + member.len()..]);
            return;
        }
    }
    out.extend_from_slice(event);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: &str = "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n";
    const USAGE: &str = "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    fn run(filter: &mut InjectedUsageFilter, pieces: &[&[u8]]) -> String {
        let mut out = Vec::new();
        for piece in pieces {
            out.extend_from_slice(&filter.push(Bytes::copy_from_slice(piece)));
        }
        out.extend_from_slice(&filter.finish());
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn the_usage_chunk_and_null_usage_members_are_removed_however_the_bytes_are_cut() {
        let stream = format!("{CHUNK}{CHUNK}{USAGE}{DONE}");
        let expected = CHUNK.replace(",\"usage\":null", "").repeat(2) + DONE;
        let bytes = stream.as_bytes();
        for cut in 0..bytes.len() {
            let mut filter = InjectedUsageFilter::new(1 << 20);
            let (a, b) = bytes.split_at(cut);
            assert_eq!(run(&mut filter, &[a, b]), expected, "cut at {cut}");
        }
        let mut filter = InjectedUsageFilter::new(1 << 20);
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(&mut filter, &singles), expected);
    }

    #[test]
    fn a_stream_without_the_option_and_an_unterminated_tail_pass_untouched() {
        let plain = "data: {\"choices\":[{\"delta\":{}}]}\r\n\r\ndata: tail-without-end";
        let mut filter = InjectedUsageFilter::new(1 << 20);
        assert_eq!(run(&mut filter, &[plain.as_bytes()]), plain);
    }

    #[test]
    fn an_event_over_the_bound_switches_to_passthrough_and_loses_no_byte() {
        let mut filter = InjectedUsageFilter::new(8);
        let long = "data: {\"choices\":[],\"usage\":{\"x\":1}";
        let rest = "}\n\ndata: [DONE]\n\n";
        assert_eq!(
            run(&mut filter, &[long.as_bytes(), rest.as_bytes()]),
            format!("{long}{rest}")
        );
    }
}
