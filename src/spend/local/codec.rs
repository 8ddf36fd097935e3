//! The byte format of the spend journal file: an 8-byte magic, then records. A record is one
//! commit: a 12-byte header — `u32` payload length, CRC-32 of those 4 length bytes, CRC-32 of the
//! payload (all little-endian) — then the payload, a sequence of operations. The length has its
//! own checksum so that a damaged length is seen as damage, never mistaken for a record cut short
//! at the end of the file. Owns encoding and decoding only; no file I/O, no state.
//!
//! An operation is a tag byte and its fields: ids as 16 raw bytes, integers as `i64`
//! little-endian (instants in unix microseconds), strings and lists as a `u32` count then the
//! items. Decoding checks every length against the bytes present, so a torn or corrupt record is
//! an error, never a panic or a huge allocation.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::journal::Op;
use crate::core::agent::AgentId;
use crate::core::events::Source;
use crate::core::money::{Currency, Micros};
use crate::core::policy::{PolicyId, TimeWindow, WindowType};
use crate::spend::{HoldId, HoldInfo};

/// The first bytes of every journal file (format version 1).
pub(super) const MAGIC: &[u8; 8] = b"CSPJRNL1";
/// Length, its CRC and the payload's CRC in front of every record.
pub(super) const RECORD_HEADER_BYTES: usize = 12;
/// The longest payload a record may have: the writer refuses a longer one (a failed commit),
/// the reader calls a longer length damage.
pub(super) const RECORD_BYTES_MAX: usize = 256 << 20;

/// A hold as the first journal version wrote it (no source, no operation): read, never written.
const PUT_HOLD: u8 = 1;
const DELETE_HOLD: u8 = 2;
const SET_EXPIRY: u8 = 3;
const SET_SETTLED: u8 = 4;
const DELETE_SETTLED: u8 = 5;
const SET_WINDOW: u8 = 6;
const DELETE_WINDOW: u8 = 7;
/// A hold with its source and operation after the fields of `PUT_HOLD`.
const PUT_HOLD_SOURCED: u8 = 8;

/// The operation of a hold recorded before holds carried one.
pub(super) const UNKNOWN_OPERATION: &str = "unknown";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum DecodeError {
    #[error("record ends early")]
    Truncated,
    #[error("unknown operation tag {0}")]
    UnknownTag(u8),
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

/// Appends one framed record holding `ops` to `out`. A payload over `RECORD_BYTES_MAX` is not
/// appended: `Err` with its length. (The journal's limits keep records far below it: a batch of
/// at most `journal_batch_max` entries; a snapshot is written `SNAPSHOT_OPS_PER_RECORD`
/// operations at a time.)
pub(super) fn put_record<'a>(
    out: &mut Vec<u8>,
    ops: impl Iterator<Item = &'a Op>,
) -> Result<(), usize> {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    for op in ops {
        put_op(out, op);
    }
    let payload_len = out.len() - start - RECORD_HEADER_BYTES;
    let Some(len) = u32::try_from(payload_len)
        .ok()
        .filter(|_| payload_len <= RECORD_BYTES_MAX)
    else {
        out.truncate(start);
        return Err(payload_len);
    };
    let len = len.to_le_bytes();
    let payload_crc = crc32fast::hash(&out[start + RECORD_HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc32fast::hash(&len).to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&payload_crc.to_le_bytes());
    Ok(())
}

/// What one record at the head of `bytes` holds.
#[derive(Debug, PartialEq)]
pub(super) enum Record {
    /// A whole record with valid checksums: its operations and its framed length.
    Ops(Vec<Op>, usize),
    /// The bytes end inside the header, or inside the payload of a record whose header is
    /// valid: a write cut short.
    Torn,
    /// The header is valid but the payload's checksum is not; `framed` is the record's length
    /// (a cut-short write only if the record ends exactly where the file does).
    BadPayload { framed: usize },
    /// The header's checksum is wrong, or a checksummed payload does not decode.
    Corrupt(String),
}

/// Reads the record at the head of `bytes` (which must not be empty).
pub(super) fn take_record(bytes: &[u8]) -> Record {
    let Some((header, rest)) = bytes.split_first_chunk::<RECORD_HEADER_BYTES>() else {
        return Record::Torn;
    };
    let [l0, l1, l2, l3, h0, h1, h2, h3, p0, p1, p2, p3] = *header;
    if crc32fast::hash(&[l0, l1, l2, l3]) != u32::from_le_bytes([h0, h1, h2, h3]) {
        return Record::Corrupt("record header checksum mismatch".into());
    }
    let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    if len > RECORD_BYTES_MAX {
        return Record::Corrupt(format!("record length {len} over {RECORD_BYTES_MAX}"));
    }
    let Some(payload) = rest.get(..len) else {
        return Record::Torn;
    };
    if crc32fast::hash(payload) != u32::from_le_bytes([p0, p1, p2, p3]) {
        return Record::BadPayload {
            framed: RECORD_HEADER_BYTES + len,
        };
    }
    let mut reader = Reader(payload);
    let mut ops = Vec::new();
    while !reader.0.is_empty() {
        match reader.op() {
            Ok(op) => ops.push(op),
            Err(e) => return Record::Corrupt(e.to_string()),
        }
    }
    Record::Ops(ops, RECORD_HEADER_BYTES + len)
}

fn put_op(out: &mut Vec<u8>, op: &Op) {
    match op {
        Op::PutHold(info) => {
            out.push(PUT_HOLD_SOURCED);
            put_hold(out, info);
            put_str(out, info.source.as_str());
            put_str(out, &info.operation);
        }
        Op::DeleteHold(id) => {
            out.push(DELETE_HOLD);
            put_uuid(out, id.0);
        }
        Op::SetExpiry(id, at) => {
            out.push(SET_EXPIRY);
            put_uuid(out, id.0);
            put_i64(out, at.timestamp_micros());
        }
        Op::SetSettled {
            policy,
            bucket,
            micros,
        } => {
            out.push(SET_SETTLED);
            put_uuid(out, policy.0);
            put_i64(out, bucket.timestamp_micros());
            put_i64(out, micros.get());
        }
        Op::DeleteSettled { policy, bucket } => {
            out.push(DELETE_SETTLED);
            put_uuid(out, policy.0);
            put_i64(out, bucket.timestamp_micros());
        }
        Op::SetWindow {
            policy,
            window,
            kind,
        } => {
            out.push(SET_WINDOW);
            put_uuid(out, policy.0);
            put_str(out, window.as_str());
            put_str(out, kind.as_str());
        }
        Op::DeleteWindow(policy) => {
            out.push(DELETE_WINDOW);
            put_uuid(out, policy.0);
        }
    }
}

fn put_hold(out: &mut Vec<u8>, info: &HoldInfo) {
    put_uuid(out, info.hold_id.0);
    put_uuid(out, info.agent_id.0);
    put_len(out, info.ancestor_ids.len());
    for ancestor in &info.ancestor_ids {
        put_uuid(out, ancestor.0);
    }
    put_uuid(out, info.root_agent_id.0);
    put_str(out, &info.resource);
    put_i64(out, info.amount.get());
    put_str(out, info.currency.as_str());
    put_len(out, info.charged.len());
    for (policy, bucket) in &info.charged {
        put_uuid(out, policy.0);
        put_i64(out, bucket.timestamp_micros());
    }
    put_i64(out, info.reserved_at.timestamp_micros());
    put_i64(out, info.expires_at.timestamp_micros());
}

fn put_uuid(out: &mut Vec<u8>, id: Uuid) {
    out.extend_from_slice(id.as_bytes());
}

fn put_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_len(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

/// Reads fields off the front of a payload.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    fn uuid(&mut self) -> Result<Uuid, DecodeError> {
        Ok(Uuid::from_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn instant(&mut self) -> Result<DateTime<Utc>, DecodeError> {
        let micros = self.i64()?;
        DateTime::from_timestamp_micros(micros).ok_or_else(|| DecodeError::Invalid {
            what: "instant",
            detail: micros.to_string(),
        })
    }

    /// A count of items of at least `item_bytes` each: never more than the bytes left allow.
    fn count(&mut self, item_bytes: usize) -> Result<usize, DecodeError> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        if n.saturating_mul(item_bytes) > self.0.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.count(1)?;
        std::str::from_utf8(self.bytes(n)?).map_err(|e| DecodeError::Invalid {
            what: "text",
            detail: e.to_string(),
        })
    }

    fn parsed<T: std::str::FromStr>(&mut self, what: &'static str) -> Result<T, DecodeError>
    where
        T::Err: std::fmt::Display,
    {
        self.str()?
            .parse()
            .map_err(|e: T::Err| DecodeError::Invalid {
                what,
                detail: e.to_string(),
            })
    }

    fn op(&mut self) -> Result<Op, DecodeError> {
        let [tag] = self.array()?;
        Ok(match tag {
            PUT_HOLD => Op::PutHold(self.hold()?),
            PUT_HOLD_SOURCED => {
                let mut hold = self.hold()?;
                let source = self.str()?;
                hold.source = Source::from_symbol(source).ok_or(DecodeError::Invalid {
                    what: "source",
                    detail: source.to_owned(),
                })?;
                hold.operation = self.str()?.to_owned();
                Op::PutHold(hold)
            }
            DELETE_HOLD => Op::DeleteHold(HoldId(self.uuid()?)),
            SET_EXPIRY => Op::SetExpiry(HoldId(self.uuid()?), self.instant()?),
            SET_SETTLED => Op::SetSettled {
                policy: PolicyId(self.uuid()?),
                bucket: self.instant()?,
                micros: Micros(self.i64()?),
            },
            DELETE_SETTLED => Op::DeleteSettled {
                policy: PolicyId(self.uuid()?),
                bucket: self.instant()?,
            },
            SET_WINDOW => Op::SetWindow {
                policy: PolicyId(self.uuid()?),
                window: self.parsed::<TimeWindow>("time window")?,
                kind: self.parsed::<WindowType>("window type")?,
            },
            DELETE_WINDOW => Op::DeleteWindow(PolicyId(self.uuid()?)),
            other => return Err(DecodeError::UnknownTag(other)),
        })
    }

    fn hold(&mut self) -> Result<HoldInfo, DecodeError> {
        let hold_id = HoldId(self.uuid()?);
        let agent_id = AgentId(self.uuid()?);
        let ancestors = self.count(16)?;
        let ancestor_ids = (0..ancestors)
            .map(|_| self.uuid().map(AgentId))
            .collect::<Result<_, _>>()?;
        let root_agent_id = AgentId(self.uuid()?);
        let resource = self.str()?.to_owned();
        let amount = Micros(self.i64()?);
        let currency = Currency::parse(self.str()?).map_err(|e| DecodeError::Invalid {
            what: "currency",
            detail: e.to_string(),
        })?;
        let charged_len = self.count(24)?;
        let charged = (0..charged_len)
            .map(|_| Ok((PolicyId(self.uuid()?), self.instant()?)))
            .collect::<Result<_, DecodeError>>()?;
        Ok(HoldInfo {
            hold_id,
            agent_id,
            ancestor_ids,
            root_agent_id,
            resource,
            source: Source::Gateway,
            operation: UNKNOWN_OPERATION.to_owned(),
            amount,
            currency,
            charged,
            reserved_at: self.instant()?,
            expires_at: self.instant()?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn every_op() -> Vec<Op> {
        let policy = PolicyId(Uuid::from_u128(7));
        vec![
            Op::PutHold(HoldInfo {
                hold_id: HoldId(Uuid::from_u128(1)),
                agent_id: AgentId(Uuid::from_u128(2)),
                ancestor_ids: vec![AgentId(Uuid::from_u128(3)), AgentId(Uuid::from_u128(4))],
                root_agent_id: AgentId(Uuid::from_u128(4)),
                resource: "mcp:search/web".into(),
                source: Source::Mcp,
                operation: "tools/call".into(),
                amount: Micros(1_234_567),
                currency: Currency::parse("USD").unwrap(),
                charged: vec![(policy, at("2026-03-10T00:00:00Z"))],
                reserved_at: at("2026-03-10T12:00:00.123456Z"),
                expires_at: at("2026-03-10T12:05:00.123456Z"),
            }),
            Op::DeleteHold(HoldId(Uuid::from_u128(1))),
            Op::SetExpiry(HoldId(Uuid::from_u128(9)), at("2026-03-10T12:10:00Z")),
            Op::SetSettled {
                policy,
                bucket: at("2026-03-10T00:00:00Z"),
                micros: Micros(99),
            },
            Op::DeleteSettled {
                policy,
                bucket: at("2026-03-09T00:00:00Z"),
            },
            Op::SetWindow {
                policy,
                window: TimeWindow::Daily,
                kind: WindowType::Rolling,
            },
            Op::DeleteWindow(policy),
        ]
    }

    #[test]
    fn every_operation_reads_back_as_written() {
        let ops = every_op();
        let mut bytes = Vec::new();
        put_record(&mut bytes, ops.iter()).unwrap();
        assert_eq!(take_record(&bytes), Record::Ops(ops, bytes.len()));
    }

    #[test]
    fn an_empty_record_is_a_record() {
        let mut bytes = Vec::new();
        put_record(&mut bytes, [].iter()).unwrap();
        assert_eq!(bytes.len(), RECORD_HEADER_BYTES);
        assert_eq!(
            take_record(&bytes),
            Record::Ops(vec![], RECORD_HEADER_BYTES)
        );
    }

    #[test]
    fn a_record_cut_anywhere_is_torn_and_every_flipped_bit_is_seen() {
        let mut bytes = Vec::new();
        put_record(&mut bytes, every_op().iter()).unwrap();
        for cut in 1..bytes.len() {
            assert_eq!(take_record(&bytes[..cut]), Record::Torn, "cut at {cut}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                let seen = take_record(&flipped);
                match i {
                    // The length or its checksum: the header is damaged, never "torn".
                    0..8 => assert!(matches!(seen, Record::Corrupt(_)), "flip at {i}: {seen:?}"),
                    _ => assert_eq!(
                        seen,
                        Record::BadPayload {
                            framed: bytes.len()
                        },
                        "flip at {i}"
                    ),
                }
            }
        }
    }

    #[test]
    fn a_hold_of_the_first_format_reads_as_a_gateway_hold_of_unknown_operation() {
        let Op::PutHold(info) = every_op().remove(0) else {
            unreachable!()
        };
        let mut payload = vec![PUT_HOLD];
        put_hold(&mut payload, &info);
        let read = Reader(&payload).op().unwrap();
        let expected = HoldInfo {
            source: Source::Gateway,
            operation: UNKNOWN_OPERATION.into(),
            ..info
        };
        assert_eq!(read, Op::PutHold(expected));
    }

    #[test]
    fn a_payload_over_the_cap_is_not_written() {
        let huge = Op::PutHold(HoldInfo {
            resource: "x".repeat(RECORD_BYTES_MAX),
            ..match every_op().remove(0) {
                Op::PutHold(info) => info,
                _ => unreachable!(),
            }
        });
        let mut bytes = vec![7];
        assert!(put_record(&mut bytes, [huge].iter()).is_err());
        assert_eq!(bytes, vec![7]);
    }

    #[test]
    fn a_checksummed_payload_with_lying_counts_is_corrupt_not_a_panic() {
        // A payload whose list count claims more items than there are bytes.
        let mut payload = vec![PUT_HOLD];
        payload.extend_from_slice(&[0; 32]);
        payload.extend_from_slice(&u32::MAX.to_le_bytes());
        let len = (payload.len() as u32).to_le_bytes();
        let mut bytes = len.to_vec();
        bytes.extend_from_slice(&crc32fast::hash(&len).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        assert_eq!(
            take_record(&bytes),
            Record::Corrupt("record ends early".into())
        );
    }
}
