//! The lines an audit record is shipped as: JSON lines, RFC 5424 syslog messages (facility
//! local0, severity info), the size cap of one UDP datagram and RFC 6587 octet counting.
//! Pure string work: no sockets, no files, no clock.

use serde_json::Value;

use super::record::rfc3339;
use crate::config::ExportFormat;
use crate::store::audit::AuditEntry;

/// Facility local0 (16) × 8 + severity informational (6).
pub const PRI: u8 = 16 * 8 + 6;
/// RFC 5424's APP-NAME.
pub const APP_NAME: &str = "caracal";
/// RFC 5424's NILVALUE.
const NIL: &str = "-";
/// Longest HOSTNAME and MSGID RFC 5424 allows.
const HOSTNAME_CHARS_MAX: usize = 255;
const MSGID_CHARS_MAX: usize = 32;

/// `text` as an RFC 5424 header field: printable US-ASCII only, at most `max` characters,
/// NILVALUE when nothing is left.
fn header_field(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if clean.is_empty() {
        NIL.to_owned()
    } else {
        clean
    }
}

/// `hostname` as RFC 5424's HOSTNAME field.
pub fn hostname_field(hostname: &str) -> String {
    header_field(hostname, HOSTNAME_CHARS_MAX)
}

/// `<134>1 TIMESTAMP HOSTNAME caracal - EVENT_TYPE - MSG` with `msg` as MSG (no BOM).
/// TIMESTAMP is when the event occurred. `hostname` must come from `hostname_field`.
fn message_with(entry: &AuditEntry, hostname: &str, msg: &str) -> String {
    let timestamp = rfc3339(entry.occurred_at_micros).unwrap_or_else(|| NIL.to_owned());
    let msgid = header_field(&entry.event_type, MSGID_CHARS_MAX);
    format!("<{PRI}>1 {timestamp} {hostname} {APP_NAME} {NIL} {msgid} {NIL} {msg}")
}

/// The RFC 5424 message of a record, its JSON whole.
pub fn message(entry: &AuditEntry, hostname: &str) -> String {
    message_with(entry, hostname, &entry.record)
}

/// The RFC 5424 message of a record in at most `bytes_max` bytes. A record too long is sent
/// without its `event` body, with `"truncated": true` and the body's size, so the JSON stays
/// whole and its `event_id` names the full record (in the store and in the file exports). If
/// even that does not fit, the message is cut on a character boundary.
pub fn message_capped(entry: &AuditEntry, hostname: &str, bytes_max: usize) -> String {
    let full = message(entry, hostname);
    if full.len() <= bytes_max {
        return full;
    }
    let mut shortened = match serde_json::from_str::<Value>(&entry.record) {
        Ok(Value::Object(mut record)) => {
            let body = record.remove("event").map_or(0, |e| e.to_string().len());
            record.insert("truncated".to_owned(), Value::Bool(true));
            record.insert("event_bytes".to_owned(), Value::from(body));
            message_with(entry, hostname, &Value::Object(record).to_string())
        }
        _ => full,
    };
    if shortened.len() > bytes_max {
        let mut cut = bytes_max;
        while !shortened.is_char_boundary(cut) {
            cut -= 1;
        }
        shortened.truncate(cut);
    }
    shortened
}

/// RFC 6587 octet counting: `MSG-LEN SP SYSLOG-MSG`.
pub fn octet_counted(message: &str) -> Vec<u8> {
    let mut frame = format!("{} ", message.len()).into_bytes();
    frame.extend_from_slice(message.as_bytes());
    frame
}

/// One line of a file export or of `caracal audit export`, newline included.
pub fn line(format: ExportFormat, entry: &AuditEntry, hostname: &str) -> String {
    let mut line = match format {
        ExportFormat::Json => entry.record.clone(),
        ExportFormat::Syslog => message(entry, hostname),
    };
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(record: &str) -> AuditEntry {
        AuditEntry {
            topic: "caracal.policy.changes".into(),
            partition: 1,
            offset: 9,
            event_id: Some("0190b2a4-0000-7000-8000-000000000009".into()),
            event_type: "PolicyChange".into(),
            occurred_at_micros: 1_700_000_000_000_001,
            agent_id: None,
            root_agent_id: None,
            record: record.into(),
        }
    }

    #[test]
    fn a_record_becomes_an_rfc5424_message_at_local0_info() {
        let e = entry(r#"{"event_id":"x","event":{"a":1}}"#);
        assert_eq!(
            message(&e, &hostname_field("gw-1")),
            r#"<134>1 2023-11-14T22:13:20.000001Z gw-1 caracal - PolicyChange - {"event_id":"x","event":{"a":1}}"#
        );
    }

    #[test]
    fn header_fields_are_printable_ascii_or_nil() {
        assert_eq!(hostname_field("host name\u{e9}"), "hostname");
        assert_eq!(hostname_field(""), "-");
        assert_eq!(hostname_field(&"h".repeat(300)).len(), 255);
        let mut e = entry("{}");
        e.event_type = "A Very Long Event Type Name That Goes On".into();
        let msg = message(&e, "h");
        let msgid = msg.split(' ').nth(5).unwrap();
        assert_eq!(msgid.len(), 32);
        e.occurred_at_micros = i64::MAX;
        assert!(message(&e, "h").starts_with("<134>1 - h caracal - "));
    }

    #[test]
    fn a_record_too_long_for_a_datagram_drops_its_body_but_keeps_valid_json() {
        let body = "x".repeat(10_000);
        let e = entry(&format!(
            r#"{{"event_id":"0190b2a4-0000-7000-8000-000000000009","event":{{"blob":"{body}"}}}}"#
        ));
        let capped = message_capped(&e, "h", 8192);
        assert!(capped.len() <= 8192);
        let json: Value = serde_json::from_str(capped.split(" - ").nth(2).unwrap()).unwrap();
        assert_eq!(json["truncated"], true);
        assert_eq!(json["event_id"], "0190b2a4-0000-7000-8000-000000000009");
        assert!(json["event_bytes"].as_u64().unwrap() > 10_000);
        assert!(json.get("event").is_none());
        let short = entry(r#"{"event":{}}"#);
        assert_eq!(message_capped(&short, "h", 8192), message(&short, "h"));
    }

    #[test]
    fn a_message_that_cannot_fit_is_cut_on_a_character_boundary() {
        let e = entry(&format!(r#""{}""#, "é".repeat(1_000)));
        let capped = message_capped(&e, "h", 481);
        assert!(
            capped.len() <= 481 && capped.len() >= 479,
            "{}",
            capped.len()
        );
    }

    #[test]
    fn octet_counting_prefixes_the_byte_length() {
        assert_eq!(octet_counted("<134>1 é"), b"9 <134>1 \xc3\xa9".to_vec());
        let frame = octet_counted(&message(&entry("{}"), "h"));
        let text = String::from_utf8(frame).unwrap();
        let (len, rest) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len());
    }

    #[test]
    fn lines_end_with_one_newline_in_either_format() {
        let e = entry(r#"{"a":1}"#);
        assert_eq!(line(ExportFormat::Json, &e, "h"), "{\"a\":1}\n");
        let syslog = line(ExportFormat::Syslog, &e, "h");
        assert!(syslog.starts_with("<134>1 ") && syslog.ends_with("{\"a\":1}\n"));
    }
}
