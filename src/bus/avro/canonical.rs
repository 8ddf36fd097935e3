//! The deterministic Avro binary writer (one block per array or map, map keys in ascending byte
//! order) and the CRC-64-AVRO fingerprint. These bytes are Merkle leaves: any change here must
//! be deliberate and caught by the golden test. Values are validated before they reach here.

use apache_avro::types::Value;

use super::AvroError;

/// Encodes a value that was validated against its schema. Our schemas carry uuids as strings
/// and timestamps as longs, so the value alone determines the bytes. apache-avro's own writer
/// walks `Value::Map` (a HashMap) in random order; this one sorts, so equal events always
/// produce equal bytes.
pub(super) fn encode(record: &'static str, value: &Value) -> Result<Vec<u8>, AvroError> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out).map_err(|detail| AvroError::Mismatch {
        record,
        field: "(encoding)",
        detail,
    })?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match value {
        Value::Null => {}
        Value::Boolean(b) => out.push(u8::from(*b)),
        Value::Int(n) => write_long(i64::from(*n), out),
        Value::Long(n) | Value::TimestampMicros(n) => write_long(*n, out),
        Value::String(s) => write_bytes(s.as_bytes(), out)?,
        Value::Uuid(u) => write_bytes(u.hyphenated().to_string().as_bytes(), out)?,
        Value::Enum(index, _) => write_long(i64::from(*index), out),
        Value::Union(index, inner) => {
            write_long(i64::from(*index), out);
            write(inner, out)?;
        }
        Value::Array(items) => {
            if !items.is_empty() {
                write_long(length(items.len())?, out);
                for item in items {
                    write(item, out)?;
                }
            }
            out.push(0);
        }
        Value::Map(entries) => {
            let mut sorted: Vec<(&String, &Value)> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            if !sorted.is_empty() {
                write_long(length(sorted.len())?, out);
                for (key, item) in sorted {
                    write_bytes(key.as_bytes(), out)?;
                    write(item, out)?;
                }
            }
            out.push(0);
        }
        Value::Record(fields) => {
            for (_, field) in fields {
                write(field, out)?;
            }
        }
        other => return Err(format!("no canonical encoding for {other:?}")),
    }
    Ok(())
}

fn length(len: usize) -> Result<i64, String> {
    i64::try_from(len).map_err(|_| format!("length {len} does not fit an Avro long"))
}

fn write_bytes(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    write_long(length(bytes.len())?, out);
    out.extend_from_slice(bytes);
    Ok(())
}

/// Zig-zag, then base-128 varint, least significant group first.
fn write_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z & 0x7f) as u8 | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// The CRC-64-AVRO polynomial's "empty" value (Avro specification, schema fingerprints).
const EMPTY64: u64 = 0xc15d_213a_a4d7_a795;

const fn fingerprint_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (EMPTY64 & (0u64.wrapping_sub(fp & 1)));
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
}

static FINGERPRINT_TABLE: [u64; 256] = fingerprint_table();

/// CRC-64-AVRO (Rabin) fingerprint of `bytes`, as the 8 little-endian bytes that follow the
/// single-object marker.
pub fn rabin_fingerprint(bytes: &[u8]) -> [u8; 8] {
    let mut fp = EMPTY64;
    for byte in bytes {
        let index = ((fp ^ u64::from(*byte)) & 0xff) as u8;
        fp = (fp >> 8) ^ FINGERPRINT_TABLE[usize::from(index)];
    }
    fp.to_le_bytes()
}
