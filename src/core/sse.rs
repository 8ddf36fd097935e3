//! An incremental Server-Sent-Events parser (WHATWG "event stream" rules) over byte chunks cut
//! anywhere, with a hard cap on the bytes one event may hold. It only frames events: it never
//! interprets their data, and never holds more than `event_bytes_max` bytes of one event.

/// Default cap on the bytes of one event (its field lines, names included): 1 MiB.
pub const EVENT_BYTES_MAX_DEFAULT: usize = 1024 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched event. `event` is the `event:` field, or `message` when the event had none;
/// `data` is its `data:` lines joined with `\n`. Invalid UTF-8 is replaced with U+FFFD.
/// `id:` and `retry:` are reconnection hints for browsers and are not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Parser state between chunks. Feed every chunk to `push` in order; call `finish` at the end
/// of the stream.
#[derive(Debug, Clone)]
pub struct SseParser {
    event_bytes_max: usize,
    /// Bytes of the line being read (without its terminator).
    line: Vec<u8>,
    /// Whether the line being read has any byte, even ones discarded while skipping.
    line_started: bool,
    /// `data:` values of the current event, each followed by `\n`.
    data: Vec<u8>,
    /// `event:` value of the current event.
    event: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` opening this one belongs to that terminator.
    after_cr: bool,
    /// The current event outgrew the cap: drop its lines until the blank line that ends it.
    skipping: bool,
    /// No line has ended yet (a leading UTF-8 BOM is dropped from the first line).
    first_line: bool,
    events_dropped: u64,
}

impl Default for SseParser {
    fn default() -> SseParser {
        SseParser::new(EVENT_BYTES_MAX_DEFAULT)
    }
}

impl SseParser {
    /// A parser that drops (and counts) any event whose lines add up to more than
    /// `event_bytes_max` bytes.
    pub fn new(event_bytes_max: usize) -> SseParser {
        SseParser {
            event_bytes_max,
            line: Vec::new(),
            line_started: false,
            data: Vec::new(),
            event: Vec::new(),
            after_cr: false,
            skipping: false,
            first_line: true,
            events_dropped: 0,
        }
    }

    /// Events dropped so far for outgrowing `event_bytes_max`.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// Reads `chunk`, calling `out` for every event it completes, in order. A chunk may end
    /// anywhere: inside a line, a UTF-8 character, or between the `\r` and `\n` of a CRLF.
    pub fn push(&mut self, chunk: &[u8], out: &mut impl FnMut(SseEvent)) {
        let mut rest = chunk;
        if self.after_cr {
            let Some((&first, tail)) = rest.split_first() else {
                return;
            };
            self.after_cr = false;
            if first == b'\n' {
                rest = tail;
            }
        }
        while !rest.is_empty() {
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.extend_line(rest);
                break;
            };
            let Some((head, tail)) = rest.split_at_checked(end) else {
                break;
            };
            self.extend_line(head);
            let Some((&terminator, mut after)) = tail.split_first() else {
                break;
            };
            if terminator == b'\r' {
                match after.split_first() {
                    Some((&b'\n', lf_tail)) => after = lf_tail,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            rest = after;
            self.end_line(out);
        }
    }

    /// Ends the stream. An event not closed by a blank line is discarded, as the standard
    /// says; returns whether there was one. The parser is then ready for a new stream.
    pub fn finish(&mut self) -> bool {
        let partial = self.line_started || !self.data.is_empty() || !self.event.is_empty();
        let dropped = self.events_dropped;
        *self = SseParser::new(self.event_bytes_max);
        self.events_dropped = dropped;
        partial
    }

    fn extend_line(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.line_started = true;
        if self.skipping {
            return;
        }
        let held = self.line.len() + self.data.len() + self.event.len();
        if held.saturating_add(bytes.len()) > self.event_bytes_max {
            self.skipping = true;
            self.events_dropped += 1;
            self.line = Vec::new();
            self.data = Vec::new();
            self.event = Vec::new();
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn end_line(&mut self, out: &mut impl FnMut(SseEvent)) {
        let blank = !self.line_started;
        self.line_started = false;
        let first_line = std::mem::replace(&mut self.first_line, false);
        if self.skipping {
            // Only a blank line ends the oversized event; nothing of it was kept.
            self.skipping = !blank;
            return;
        }
        let mut line = std::mem::take(&mut self.line);
        if first_line && line.starts_with(BOM) {
            line.drain(..BOM.len());
        }
        if line.is_empty() {
            self.dispatch(out);
        } else {
            self.field(&line);
        }
        line.clear();
        self.line = line;
    }

    fn field(&mut self, line: &[u8]) {
        let colon = line.iter().position(|&b| b == b':');
        if colon == Some(0) {
            return; // a comment
        }
        let (name, value) = match colon.and_then(|at| line.split_at_checked(at)) {
            Some((name, colon_value)) => {
                let value = colon_value.get(1..).unwrap_or_default();
                (name, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            _ => {} // id, retry, and unknown fields
        }
    }

    fn dispatch(&mut self, out: &mut impl FnMut(SseEvent)) {
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the `\n` after the last data line
        let event = if event.is_empty() {
            "message".to_owned()
        } else {
            utf8(event)
        };
        out(SseEvent {
            event,
            data: utf8(data),
        });
    }
}

fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn parse_chunks(parser: &mut SseParser, chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for chunk in chunks {
            parser.push(chunk, &mut |e| events.push(e));
        }
        events
    }

    fn parse(bytes: &[u8]) -> Vec<SseEvent> {
        parse_chunks(&mut SseParser::default(), &[bytes])
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn frames_events_with_names_multiline_data_and_comments() {
        let stream = b": keep-alive\n\nevent: ping\ndata: {}\n\ndata: a\ndata:b\ndata:  c\n\n";
        assert_eq!(
            parse(stream),
            vec![ev("ping", "{}"), ev("message", "a\nb\n c")]
        );
    }

    #[test]
    fn accepts_lf_crlf_and_cr_line_endings_alike() {
        let lf = b"event: x\ndata: 1\n\ndata: 2\n\n".to_vec();
        let expected = parse(&lf);
        assert_eq!(expected.len(), 2);
        let crlf: Vec<u8> = String::from_utf8(lf.clone())
            .unwrap()
            .replace('\n', "\r\n")
            .into();
        let cr: Vec<u8> = String::from_utf8(lf).unwrap().replace('\n', "\r").into();
        assert_eq!(parse(&crlf), expected);
        assert_eq!(parse(&cr), expected);
    }

    #[test]
    fn a_crlf_split_between_chunks_is_one_terminator() {
        let mut parser = SseParser::default();
        let events = parse_chunks(
            &mut parser,
            &[b"data: 1\r", b"\n\r", b"", b"\ndata: 2\r\n\r\n"],
        );
        assert_eq!(events, vec![ev("message", "1"), ev("message", "2")]);
    }

    #[test]
    fn a_utf8_character_split_between_chunks_survives() {
        let bytes = "data: caf\u{e9} \u{1f600}\n\n".as_bytes();
        for cut in 0..bytes.len() {
            let mut parser = SseParser::default();
            let (a, b) = bytes.split_at(cut);
            assert_eq!(
                parse_chunks(&mut parser, &[a, b]),
                vec![ev("message", "caf\u{e9} \u{1f600}")]
            );
        }
    }

    #[test]
    fn follows_the_standards_edge_cases() {
        // No space after the colon, a field with no colon, empty data, unknown fields, event
        // with no data (not dispatched, and its name does not leak into the next event).
        let stream =
            b"data\n\ndata:\ndata:\n\nid: 7\nretry: 10\nfoo: bar\nevent: lost\n\ndata:x\n\n";
        assert_eq!(
            parse(stream),
            vec![ev("message", ""), ev("message", "\n"), ev("message", "x")]
        );
    }

    #[test]
    fn a_leading_bom_is_ignored_once() {
        let stream = b"\xEF\xBB\xBFdata: 1\n\n\xEF\xBB\xBFdata: 2\n\n";
        // Only the first line loses its BOM; the second becomes an unknown field.
        assert_eq!(parse(stream), vec![ev("message", "1")]);
    }

    #[test]
    fn an_unterminated_event_is_discarded_at_the_end() {
        let mut parser = SseParser::default();
        assert!(parse_chunks(&mut parser, &[b"data: 1\n\ndata: 2\n"]).len() == 1);
        assert!(parser.finish());
        assert!(parse_chunks(&mut parser, &[b"data: 3\n\n"]) == vec![ev("message", "3")]);
        assert!(!parser.finish());
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        assert_eq!(
            parse(b"data: a\xFFb\n\n"),
            vec![ev("message", "a\u{fffd}b")]
        );
    }

    #[test]
    fn an_event_over_the_cap_is_dropped_counted_and_not_buffered() {
        let mut parser = SseParser::new(16);
        let big = [b'x'; 1000];
        let mut events = Vec::new();
        let mut collect = |e| events.push(e);
        parser.push(b"data: ok\n\ndata: ", &mut collect);
        for _ in 0..100 {
            parser.push(&big, &mut collect);
            assert!(parser.line.capacity() <= 32 && parser.data.capacity() <= 32);
        }
        parser.push(
            b"\ndata: more of the same event\n\ndata: fine\n\n",
            &mut collect,
        );
        assert_eq!(events, vec![ev("message", "ok"), ev("message", "fine")]);
        assert_eq!(parser.events_dropped(), 1);
    }

    #[test]
    fn the_cap_is_inclusive_at_the_boundary() {
        // "data: 0123456789" is 16 bytes: exactly at a 16-byte cap it is kept.
        let mut at_cap = SseParser::new(16);
        assert_eq!(
            parse_chunks(&mut at_cap, &[b"data: 0123456789\n\n"]).len(),
            1
        );
        let mut below = SseParser::new(15);
        assert_eq!(
            parse_chunks(&mut below, &[b"data: 0123456789\n\n"]).len(),
            0
        );
        assert_eq!(below.events_dropped(), 1);
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(
            lines in proptest::collection::vec(
                "(data: ?[a-z\u{e9}\u{1f600}]{0,6}|event: [a-z]{1,4}|: c|retry: 1|)(\r\n|\n|\r)",
                0..40,
            ),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let bytes = lines.concat().into_bytes();
            let whole = parse(&bytes);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut start = 0;
            for p in points {
                chunks.push(&bytes[start..p]);
                start = p;
            }
            chunks.push(&bytes[start..]);
            prop_assert_eq!(parse_chunks(&mut SseParser::default(), &chunks), whole);
        }
    }
}
