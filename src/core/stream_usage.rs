//! Usage of a streamed response, read incrementally from its SSE events as they pass through:
//! OpenAI chat/completions chunks, OpenAI Responses events, Anthropic message events.
//! Observes only; it never alters or holds back the bytes the client receives.

use serde::Deserialize;
use serde_json::Value;

use crate::core::pricing::Usage;
use crate::core::sse::{SseEvent, SseParser};
use crate::core::usage::{count, usage_from_object, Malformed, UsageShape};

/// The fields of an event's JSON data that tell what it is; everything else is skipped.
#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "type")]
    kind: Option<Value>,
    usage: Option<Value>,
    /// Anthropic `message_start` carries `message.usage`.
    message: Option<Value>,
    /// OpenAI Responses terminal events carry `response.usage`.
    response: Option<Value>,
    /// OpenAI chat/completions chunks; the final usage chunk has none.
    choices: Option<Vec<serde::de::IgnoredAny>>,
}

/// What the events seen so far say about usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Tally {
    usage: Option<Usage>,
    completed: bool,
    output_deltas: u64,
    events: u64,
    undecodable_events: u64,
}

/// Reads one response stream. Every dialect's events name themselves (`type` on Anthropic and
/// Responses events, `choices`/`usage` on chat chunks), and each fixes what `input_tokens`
/// means, so no provider needs to be given. Counts are merged by maximum: providers report
/// cumulative counts, and a repeated or reordered report must never lower a charge.
#[derive(Debug, Clone, Default)]
pub struct StreamUsage {
    parser: SseParser,
    tally: Tally,
}

impl StreamUsage {
    /// A reader whose SSE parser drops events over `event_bytes_max` bytes.
    pub fn new(event_bytes_max: usize) -> StreamUsage {
        StreamUsage {
            parser: SseParser::new(event_bytes_max),
            tally: Tally::default(),
        }
    }

    /// Reads the next chunk of response bytes, exactly as received.
    pub fn push(&mut self, chunk: &[u8]) {
        let tally = &mut self.tally;
        self.parser.push(chunk, &mut |event| tally.observe(&event));
    }

    /// Reads one already-framed event (for callers that run their own `SseParser`).
    pub fn observe(&mut self, event: &SseEvent) {
        self.tally.observe(event);
    }

    /// Marks the end of the bytes (response finished or connection lost); a trailing event
    /// without its blank line is discarded.
    pub fn finish(&mut self) {
        self.parser.finish();
    }

    /// Usage reported so far, with `calls = 1`. Final only when `completed()`; before that it
    /// may be partial (Anthropic reports input at the start) or `None` (OpenAI reports at the
    /// end).
    pub fn usage(&self) -> Option<Usage> {
        self.tally.usage
    }

    /// The stream's terminal event was seen: `data: [DONE]` (OpenAI chat/completions),
    /// `response.completed` / `response.incomplete` / `response.failed` (Responses),
    /// `message_stop` (Anthropic).
    pub fn completed(&self) -> bool {
        self.tally.completed
    }

    /// Output deltas seen: chat chunks with choices, Responses `*.delta` events, Anthropic
    /// `content_block_delta` events. Roughly one token each; a floor when usage is missing.
    pub fn output_deltas(&self) -> u64 {
        self.tally.output_deltas
    }

    /// Events framed so far.
    pub fn events(&self) -> u64 {
        self.tally.events
    }

    /// Events whose data was neither JSON nor `[DONE]`.
    pub fn undecodable_events(&self) -> u64 {
        self.tally.undecodable_events
    }

    /// Events dropped for outgrowing the byte cap.
    pub fn events_dropped(&self) -> u64 {
        self.parser.events_dropped()
    }
}

impl Tally {
    fn observe(&mut self, event: &SseEvent) {
        self.events += 1;
        if event.data == "[DONE]" {
            self.completed = true;
            return;
        }
        let Ok(probe) = serde_json::from_str::<Probe>(&event.data) else {
            self.undecodable_events += 1;
            return;
        };
        let kind = probe
            .kind
            .as_ref()
            .and_then(Value::as_str)
            .unwrap_or(&event.event);
        match kind {
            "message_start" => {
                let usage = probe.message.as_ref().and_then(|m| m.get("usage"));
                self.merge(
                    usage
                        .and_then(Value::as_object)
                        .and_then(|u| usage_from_object(UsageShape::Anthropic, u)),
                );
            }
            "message_delta" => self.merge_anthropic_delta(probe.usage.as_ref()),
            "content_block_delta" => self.output_deltas += 1,
            "message_stop" => self.completed = true,
            "response.completed" | "response.incomplete" | "response.failed" => {
                let usage = probe.response.as_ref().and_then(|r| r.get("usage"));
                self.merge(
                    usage
                        .and_then(Value::as_object)
                        .and_then(|u| usage_from_object(UsageShape::Responses, u)),
                );
                self.completed = true;
            }
            kind if kind.starts_with("response.") && kind.ends_with(".delta") => {
                self.output_deltas += 1;
            }
            _ => self.observe_chunk(&probe),
        }
    }

    /// An OpenAI chat or legacy completions chunk.
    fn observe_chunk(&mut self, probe: &Probe) {
        if probe.choices.as_ref().is_some_and(|c| !c.is_empty()) {
            self.output_deltas += 1;
        }
        let usage = probe.usage.as_ref().and_then(Value::as_object);
        self.merge(usage.and_then(|u| usage_from_object(UsageShape::Prompt, u)));
    }

    /// Anthropic `message_delta.usage`: cumulative counts, output always, input and cache
    /// counts on newer API versions. A malformed count voids the whole report.
    fn merge_anthropic_delta(&mut self, usage: Option<&Value>) {
        let Some(usage) = usage.and_then(Value::as_object) else {
            return;
        };
        let read = || -> Result<Usage, Malformed> {
            Ok(Usage {
                input_tokens: count(usage, "input_tokens")?.unwrap_or(0),
                cached_input_tokens: count(usage, "cache_read_input_tokens")?.unwrap_or(0),
                cache_write_input_tokens: count(usage, "cache_creation_input_tokens")?.unwrap_or(0),
                output_tokens: count(usage, "output_tokens")?.unwrap_or(0),
                calls: 1,
            })
        };
        self.merge(read().ok());
    }

    fn merge(&mut self, report: Option<Usage>) {
        let Some(new) = report else {
            return;
        };
        let old = self.usage.unwrap_or_default();
        self.usage = Some(Usage {
            input_tokens: old.input_tokens.max(new.input_tokens),
            cached_input_tokens: old.cached_input_tokens.max(new.cached_input_tokens),
            cache_write_input_tokens: old
                .cache_write_input_tokens
                .max(new.cache_write_input_tokens),
            output_tokens: old.output_tokens.max(new.output_tokens),
            calls: 1,
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::core::sse::EVENT_BYTES_MAX_DEFAULT;
    use crate::core::stream_fixtures::{self, ALL};
    use proptest::prelude::*;

    /// Everything a caller can observe after feeding `chunks`.
    #[derive(Debug, PartialEq)]
    struct Seen {
        events: Vec<SseEvent>,
        usage: Option<Usage>,
        completed: bool,
        output_deltas: u64,
    }

    fn feed(chunks: &[&[u8]]) -> Seen {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        let mut stream = StreamUsage::new(EVENT_BYTES_MAX_DEFAULT);
        for chunk in chunks {
            parser.push(chunk, &mut |e| events.push(e));
            stream.push(chunk);
        }
        stream.finish();
        assert_eq!(stream.events(), events.len() as u64);
        assert_eq!(stream.undecodable_events(), 0);
        Seen {
            events,
            usage: stream.usage(),
            completed: stream.completed(),
            output_deltas: stream.output_deltas(),
        }
    }

    fn usage(counts: [u64; 4]) -> Option<Usage> {
        let [input, cached, write, output] = counts;
        Some(Usage {
            input_tokens: input,
            cached_input_tokens: cached,
            cache_write_input_tokens: write,
            output_tokens: output,
            calls: 1,
        })
    }

    #[test]
    fn every_fixture_gives_its_recorded_usage() {
        for (name, bytes, counts, deltas, events) in ALL {
            let seen = feed(&[bytes.as_bytes()]);
            assert_eq!(seen.usage, usage(*counts), "{name}");
            assert!(seen.completed, "{name}");
            assert_eq!(seen.output_deltas, *deltas, "{name}");
            assert_eq!(seen.events.len(), *events, "{name}");
        }
    }

    #[test]
    fn crlf_and_cr_line_endings_change_nothing() {
        for (name, bytes, ..) in ALL {
            let whole = feed(&[bytes.as_bytes()]);
            for ending in ["\r\n", "\r"] {
                let converted = bytes.replace('\n', ending);
                assert_eq!(
                    feed(&[converted.as_bytes()]),
                    whole,
                    "{name} with {ending:?}"
                );
            }
        }
    }

    #[test]
    fn one_byte_at_a_time_changes_nothing() {
        for (name, bytes, ..) in ALL {
            let singles: Vec<&[u8]> = bytes.as_bytes().chunks(1).collect();
            assert_eq!(feed(&singles), feed(&[bytes.as_bytes()]), "{name}");
        }
    }

    #[test]
    fn a_stream_cut_before_its_usage_chunk_is_incomplete_with_deltas() {
        let text = stream_fixtures::OPENAI_CHAT;
        let cut = text.find("\"choices\":[],").unwrap();
        let seen = feed(&[&text.as_bytes()[..cut]]);
        assert_eq!(seen.usage, None);
        assert!(!seen.completed);
        assert_eq!(seen.output_deltas, 5);
    }

    #[test]
    fn an_anthropic_stream_cut_midway_keeps_its_input_counts() {
        let text = stream_fixtures::ANTHROPIC;
        let cut = text.find("event: message_delta").unwrap();
        let seen = feed(&[&text.as_bytes()[..cut]]);
        assert_eq!(seen.usage, usage([14, 10240, 2051, 1]));
        assert!(!seen.completed);
        assert_eq!(seen.output_deltas, 2);
    }

    #[test]
    fn counts_never_go_down_when_a_report_repeats_smaller() {
        let text = format!(
            "{}event: message_delta\ndata: {}\n\n",
            stream_fixtures::ANTHROPIC,
            r#"{"type":"message_delta","delta":{},"usage":{"output_tokens":3}}"#
        );
        assert_eq!(feed(&[text.as_bytes()]).usage, usage([14, 10240, 2051, 12]));
    }

    #[test]
    fn malformed_counts_are_ignored_not_trusted() {
        let text = concat!(
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":-5,\"completion_tokens\":1}}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":1.5}}\n\n",
            "data: [DONE]\n\n",
        );
        let seen = feed(&[text.as_bytes()]);
        assert_eq!(seen.usage, None);
        assert!(seen.completed);
    }

    #[test]
    fn non_json_data_is_counted_and_skipped() {
        let mut stream = StreamUsage::default();
        stream.push(b"data: hello\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
        assert_eq!(stream.events(), 2);
        assert_eq!(stream.undecodable_events(), 1);
        assert_eq!(stream.usage(), None);
        assert!(!stream.completed());
    }

    #[test]
    fn an_oversized_event_is_dropped_and_the_rest_still_counts() {
        let mut stream = StreamUsage::new(4096);
        let big = format!(
            "data: {{\"choices\":[{{\"text\":\"{}\"}}]}}\n\n",
            "x".repeat(10_000)
        );
        stream.push(big.as_bytes());
        stream.push(stream_fixtures::OPENAI_COMPLETIONS.as_bytes());
        assert_eq!(stream.events_dropped(), 1);
        assert_eq!(stream.usage(), usage([5, 0, 0, 7]));
    }

    fn split_at_points<'a>(bytes: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points {
            chunks.push(&bytes[start..p]);
            start = p;
        }
        chunks.push(&bytes[start..]);
        chunks
    }

    proptest! {
        #[test]
        fn any_split_of_a_recorded_stream_gives_the_same_events_and_usage(
            which in 0..ALL.len(),
            ending in prop::sample::select(vec!["\n", "\r\n", "\r"]),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
        ) {
            let (_, text, counts, deltas, events) = ALL[which];
            let text = text.replace('\n', ending);
            let whole = feed(&[text.as_bytes()]);
            prop_assert_eq!(&whole.usage, &usage(counts));
            prop_assert_eq!(whole.output_deltas, deltas);
            prop_assert_eq!(whole.events.len(), events);
            let split = feed(&split_at_points(text.as_bytes(), &cuts));
            prop_assert_eq!(split, whole);
        }
    }
}
