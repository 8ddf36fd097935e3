//! Lowercase hex for the Merkle formats: encode, strict decode, and serde helpers for 32-byte
//! hashes. Owns no format of its own; it never accepts uppercase, odd lengths or separators,
//! so one value has exactly one spelling in a proof document.

use serde::{Deserialize, Deserializer, Serializer};

const DIGITS: &[u8; 16] = b"0123456789abcdef";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("hex string has odd length {0}")]
    OddLength(usize),
    #[error("invalid hex character {0:?}: expected 0-9 or a-f")]
    BadChar(char),
    #[error("expected {expected} bytes of hex, got {actual}")]
    WrongLength { expected: usize, actual: usize },
}

/// Lowercase hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

fn nibble(c: u8) -> Result<u8, HexError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(HexError::BadChar(char::from(c))),
    }
}

/// Decodes lowercase hex; rejects uppercase, odd lengths and anything that is not a hex digit.
pub fn decode(s: &str) -> Result<Vec<u8>, HexError> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(HexError::OddLength(bytes.len()));
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Ok((nibble(pair[0])? << 4) | nibble(pair[1])?))
        .collect()
}

/// Decodes exactly `N` bytes of lowercase hex.
pub fn decode_array<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let bytes = decode(s)?;
    let actual = bytes.len();
    bytes.try_into().map_err(|_| HexError::WrongLength {
        expected: N,
        actual,
    })
}

/// `#[serde(with = "hex::hash")]` for a `[u8; 32]` written as 64 lowercase hex characters.
pub mod hash {
    use super::*;

    pub fn serialize<S: Serializer>(value: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encode(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(deserializer)?;
        decode_array(&s).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "hex::bytes")]` for a `Vec<u8>` written as lowercase hex.
pub mod bytes {
    use super::*;

    pub fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encode(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(deserializer)?;
        decode(&s).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "hex::hashes")]` for a `Vec<[u8; 32]>` written as a list of hex strings.
pub mod hashes {
    use super::*;
    use serde::ser::SerializeSeq;

    pub fn serialize<S: Serializer>(value: &[[u8; 32]], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(value.len()))?;
        for h in value {
            seq.serialize_element(&encode(h))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<[u8; 32]>, D::Error> {
        let strings = Vec::<String>::deserialize(deserializer)?;
        strings
            .iter()
            .map(|s| decode_array(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_every_other_spelling() {
        assert_eq!(decode("abc"), Err(HexError::OddLength(3)));
        assert_eq!(decode("AB"), Err(HexError::BadChar('A')));
        assert_eq!(decode("0g"), Err(HexError::BadChar('g')));
        assert_eq!(decode(" 0"), Err(HexError::BadChar(' ')));
        assert_eq!(
            decode_array::<2>("00"),
            Err(HexError::WrongLength {
                expected: 2,
                actual: 1
            })
        );
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let s = encode(&bytes);
            prop_assert_eq!(s.len(), bytes.len() * 2);
            prop_assert_eq!(decode(&s).unwrap(), bytes);
        }
    }
}
