//! The CRC-64-AVRO (Rabin) fingerprint of a schema's Parsing Canonical Form, as single-object
//! encoding puts it in front of a datum. The datum bytes themselves are `writers.rs`'s.

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
