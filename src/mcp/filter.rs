//! `tools/list` as the agent may see it: the server's answer with every tool outside the
//! agent's allow list removed, whether it came as one JSON body or as an SSE stream. Pure
//! functions over bytes; which tools are allowed is the caller's predicate.

use serde_json::Value;

use crate::core::sse::SseParser;

/// Removes the tools `allowed` rejects from a JSON-RPC `tools/list` result message.
/// Anything that is not such a result is returned unchanged. Returns how many were removed.
fn filter_message(message: &mut Value, allowed: &dyn Fn(&str) -> bool) -> usize {
    let Some(tools) = message
        .get_mut("result")
        .and_then(|r| r.get_mut("tools"))
        .and_then(Value::as_array_mut)
    else {
        return 0;
    };
    let before = tools.len();
    tools.retain(|tool| {
        tool.get("name")
            .and_then(Value::as_str)
            .is_some_and(allowed)
    });
    before - tools.len()
}

/// The filtered body, and how many tools were removed. `None` when the body is not readable
/// as the declared content type (the caller refuses it rather than pass an unfiltered list).
pub fn filter_tools_list(
    body: &[u8],
    content_type: &str,
    event_bytes_max: usize,
    allowed: &dyn Fn(&str) -> bool,
) -> Option<(Vec<u8>, usize)> {
    if content_type.starts_with("text/event-stream") {
        return filter_sse(body, event_bytes_max, allowed);
    }
    let mut message: Value = serde_json::from_slice(body).ok()?;
    let removed = filter_message(&mut message, allowed);
    Some((serde_json::to_vec(&message).ok()?, removed))
}

/// Re-frames every event (`event:` and `data:` only: a listing is not resumed), filtering each
/// message that carries a listing. An event too large to read refuses the whole body.
fn filter_sse(
    body: &[u8],
    event_bytes_max: usize,
    allowed: &dyn Fn(&str) -> bool,
) -> Option<(Vec<u8>, usize)> {
    let mut parser = SseParser::new(event_bytes_max);
    let mut out = Vec::with_capacity(body.len());
    let mut removed = 0;
    let mut unreadable = false;
    parser.push(body, &mut |event| {
        let data = match serde_json::from_str::<Value>(&event.data) {
            Ok(mut message) => {
                removed += filter_message(&mut message, allowed);
                serde_json::to_string(&message).unwrap_or_default()
            }
            Err(_) if event.data.is_empty() => String::new(),
            Err(_) => {
                unreadable = true;
                String::new()
            }
        };
        out.extend_from_slice(format!("event: {}\n", event.event).as_bytes());
        for line in data.split('\n') {
            out.extend_from_slice(format!("data: {line}\n").as_bytes());
        }
        out.push(b'\n');
    });
    parser.finish();
    if unreadable || parser.events_dropped() > 0 {
        return None;
    }
    Some((out, removed))
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn only_search(name: &str) -> bool {
        name.starts_with("search")
    }

    #[test]
    fn a_json_listing_keeps_only_allowed_tools() {
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search_web"},{"name":"delete_all"}]}}"#;
        let (out, removed) = filter_tools_list(body, "application/json", 1024, &only_search)
            .unwrap_or_else(|| panic!("unreadable"));
        assert_eq!(removed, 1);
        let v: Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(v["result"]["tools"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["result"]["tools"][0]["name"], "search_web");
    }

    #[test]
    fn an_sse_listing_is_filtered_and_an_oversized_event_refuses_it() {
        let body = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"x\"},{\"name\":\"search\"}]}}\n\n";
        let (out, removed) = filter_tools_list(body, "text/event-stream", 1024, &only_search)
            .unwrap_or_else(|| panic!("unreadable"));
        assert_eq!(removed, 1);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("\"search\"") && !text.contains("\"x\""),
            "{text}"
        );
        assert!(filter_tools_list(body, "text/event-stream", 16, &only_search).is_none());
    }
}
