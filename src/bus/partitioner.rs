//! Kafka's default partitioner for keyed messages: `toPositive(murmur2(key)) % partitions`, bit
//! for bit as the Java client computes it, so the embedded log and Kafka place a tree alike.
//! Pure arithmetic; no topic metadata here.

/// Kafka's `Utils.murmur2` (seed `0x9747b28c`), as a Java `int`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java's `int length` wraps the same way for the lengths a message can have.
    let length = data.len() as u32;
    let mut h = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives a keyed message:
/// `(murmur2(key) & 0x7fffffff) % partitions`. `partitions` must be positive.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    debug_assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    /// The vectors of Apache Kafka's `UtilsTest.testMurmur2`.
    const KAFKA_VECTORS: [(&[u8], i32); 6] = [
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        (b"abc", 479_470_107),
    ];

    #[test]
    fn murmur2_gives_the_values_kafkas_own_tests_pin() {
        for (key, expected) in KAFKA_VECTORS {
            assert_eq!(murmur2(key), expected, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn partition_is_the_positive_hash_modulo_the_partition_count() {
        // "21": -973932308 & 0x7fffffff = 1173551340.
        assert_eq!(partition_for_key(b"21", 3), 0);
        assert_eq!(partition_for_key(b"21", 10), 0);
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
        // "abc" hashes positive: 479470107 % 10 = 7, % 3 = 0.
        assert_eq!(partition_for_key(b"abc", 10), 7);
        assert_eq!(partition_for_key(b"abc", 3), 0);
        for (key, hash) in KAFKA_VECTORS {
            for partitions in 1..=12 {
                let p = partition_for_key(key, partitions);
                assert_eq!(p, (hash & 0x7fff_ffff) % partitions);
                assert!((0..partitions).contains(&p));
            }
        }
    }

    #[test]
    fn the_empty_key_has_a_partition_too() {
        assert!((0..5).contains(&partition_for_key(b"", 5)));
    }
}
