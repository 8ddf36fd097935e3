//! The signed Merkle batch header: its canonical bytes (a sealed format), ECDSA P-256 signing
//! and verifying keys, and key ids. Owns no storage and no clock: the ledger fills the header,
//! this module only encodes, signs and checks it.
//!
//! # Canonical bytes, `caracal.merkle.batch.v1` (sealed ledgers depend on it: never change it)
//!
//! All integers are big-endian two's complement; hashes are raw 32 bytes.
//!
//! | bytes        | field                                                    |
//! |--------------|----------------------------------------------------------|
//! | 23           | ASCII `caracal.merkle.batch.v1`                          |
//! | 1            | `0x00`                                                   |
//! | 4            | `partition` (i32)                                        |
//! | 8            | `batch_number` (i64)                                     |
//! | 8            | `first_seq` (i64)                                        |
//! | 8            | `last_seq` (i64)                                         |
//! | 8            | `count` (i64)                                            |
//! | 32           | `root` (RFC 6962 MTH of the batch's leaves)              |
//! | 32           | `prev_root` (previous batch's root; zeros for batch 0)   |
//! | 8            | `first_time_micros` (i64)                                |
//! | 8            | `last_time_micros` (i64)                                 |
//! | 2            | length of `key_id` in bytes (u16)                        |
//! | len          | `key_id` (UTF-8)                                         |
//!
//! The signature is ECDSA P-256 over SHA-256 of these bytes, DER-encoded (ASN.1), so
//! `openssl dgst -sha256 -verify pub.pem -signature sig bytes.bin` checks it unchanged. A key id
//! is the lowercase hex of the first 16 bytes of SHA-256 of the 65-byte uncompressed point.

use std::fmt;

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use serde::{Deserialize, Serialize};

use crate::core::hex;
use crate::core::merkle::Hash;

/// Domain separator at the start of [`BatchHeader::canonical_bytes`], followed by one 0x00.
pub const HEADER_FORMAT: &str = "caracal.merkle.batch.v1";
/// Longest `key_id` the length prefix can carry, in bytes.
pub const KEY_ID_BYTES_MAX: usize = u16::MAX as usize;
/// Length of an uncompressed P-256 point (0x04 ‖ X ‖ Y).
pub const POINT_BYTES: usize = 65;

/// DER of SubjectPublicKeyInfo for an uncompressed P-256 point, up to the point itself:
/// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) ...
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// PKCS#8 version 0 followed by AlgorithmIdentifier { id-ecPublicKey, prime256v1 }.
const PKCS8_VERSION_AND_ALGORITHM: [u8; 24] = [
    0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
    0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
];

/// The header of one sealed batch of one partition; what the ledger signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchHeader {
    pub partition: i32,
    pub batch_number: i64,
    pub first_seq: i64,
    pub last_seq: i64,
    /// Leaves in the batch; the Merkle tree size.
    pub count: i64,
    #[serde(with = "hex::hash")]
    pub root: Hash,
    /// The previous batch's root; all zeros for batch 0.
    #[serde(with = "hex::hash")]
    pub prev_root: Hash,
    pub first_time_micros: i64,
    pub last_time_micros: i64,
    /// Key id of the signing key ([`VerifyingKey::key_id`]).
    pub key_id: String,
}

impl BatchHeader {
    /// The bytes that are signed, laid out as the module documentation says. A `key_id` longer
    /// than [`KEY_ID_BYTES_MAX`] cannot be encoded: `sign` and `verify` refuse such a header,
    /// and here its length prefix saturates (so the bytes never match a signed header's).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let key_id = self.key_id.as_bytes();
        let mut out =
            Vec::with_capacity(HEADER_FORMAT.len() + 1 + 4 + 8 * 6 + 64 + 2 + key_id.len());
        out.extend_from_slice(HEADER_FORMAT.as_bytes());
        out.push(0x00);
        out.extend_from_slice(&self.partition.to_be_bytes());
        for value in [self.batch_number, self.first_seq, self.last_seq, self.count] {
            out.extend_from_slice(&value.to_be_bytes());
        }
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&self.prev_root);
        out.extend_from_slice(&self.first_time_micros.to_be_bytes());
        out.extend_from_slice(&self.last_time_micros.to_be_bytes());
        let len = u16::try_from(key_id.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(key_id);
        out
    }

    fn key_id_fits(&self) -> bool {
        self.key_id.len() <= KEY_ID_BYTES_MAX
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the PEM: {0}")]
    Pem(String),
    #[error("no `EC PRIVATE KEY` (SEC1) or `PRIVATE KEY` (PKCS#8) section in the PEM")]
    NoPrivateKey,
    #[error("no `PUBLIC KEY` section in the PEM")]
    NoPublicKey,
    #[error("the private key is not an ECDSA P-256 key: {0}")]
    Rejected(String),
    #[error("the public key is not an uncompressed P-256 point or its SubjectPublicKeyInfo")]
    BadPublicKey,
    #[error("the system random number generator failed")]
    Random,
    #[error("header key id {header:?} is not the signing key's id {key:?}")]
    KeyIdMismatch { header: String, key: String },
    #[error("signing failed")]
    Signing,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature does not verify for this header and key")]
    Invalid,
    #[error("the header's key id is {0} bytes, longer than the format allows")]
    KeyIdTooLong(usize),
}

/// An ECDSA P-256 private key that signs batch headers (DER signatures).
pub struct SigningKey {
    pair: EcdsaKeyPair,
    verifying: VerifyingKey,
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.verifying.key_id())
            .finish_non_exhaustive()
    }
}

/// DER definite length.
fn der_length(len: usize, out: &mut Vec<u8>) {
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let significant = &bytes[skip..];
    match significant {
        [] => out.push(0),
        [b] if *b < 0x80 => out.push(*b),
        _ => {
            // At most size_of::<usize>() bytes, so the count fits the low 7 bits.
            out.push(0x80 | significant.len() as u8);
            out.extend_from_slice(significant);
        }
    }
}

/// Wraps a SEC1 `ECPrivateKey` in a PKCS#8 `PrivateKeyInfo` for P-256, the only form ring loads.
fn sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    let mut octets = vec![0x04];
    der_length(sec1.len(), &mut octets);
    octets.extend_from_slice(sec1);
    let body_len = PKCS8_VERSION_AND_ALGORITHM.len() + octets.len();
    let mut out = vec![0x30];
    der_length(body_len, &mut out);
    out.extend_from_slice(&PKCS8_VERSION_AND_ALGORITHM);
    out.extend_from_slice(&octets);
    out
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

impl SigningKey {
    fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8, &rng)
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        let verifying = VerifyingKey::from_point(pair.public_key().as_ref())?;
        Ok(Self {
            pair,
            verifying,
            rng,
        })
    }

    /// Loads the first private key of a PEM: SEC1 `EC PRIVATE KEY` (as written by
    /// `openssl ecparam -name prime256v1 -genkey -noout`) or PKCS#8 `PRIVATE KEY`. The key must
    /// be P-256 and carry its public key (openssl's always do).
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let der = match PrivateKeyDer::from_pem_slice(pem) {
            Ok(der) => der,
            Err(rustls_pki_types::pem::Error::NoItemsFound) => return Err(KeyError::NoPrivateKey),
            Err(e) => return Err(KeyError::Pem(e.to_string())),
        };
        match der {
            PrivateKeyDer::Sec1(sec1) => Self::from_pkcs8(&sec1_to_pkcs8(sec1.secret_sec1_der())),
            PrivateKeyDer::Pkcs8(pkcs8) => Self::from_pkcs8(pkcs8.secret_pkcs8_der()),
            _ => Err(KeyError::Rejected("an RSA (PKCS#1) key".to_owned())),
        }
    }

    /// A fresh key from the system RNG, with its PKCS#8 `PRIVATE KEY` PEM for storing.
    pub fn generate() -> Result<(Self, String), KeyError> {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|_| KeyError::Random)?;
        let key = Self::from_pkcs8(doc.as_ref())?;
        Ok((key, pem_encode("PRIVATE KEY", doc.as_ref())))
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.verifying.clone()
    }

    /// Signs `header.canonical_bytes()`: a DER ECDSA signature. The header must name this key.
    pub fn sign(&self, header: &BatchHeader) -> Result<Vec<u8>, KeyError> {
        let key = self.verifying.key_id();
        if header.key_id != key {
            return Err(KeyError::KeyIdMismatch {
                header: header.key_id.clone(),
                key,
            });
        }
        let signature = self
            .pair
            .sign(&self.rng, &header.canonical_bytes())
            .map_err(|_| KeyError::Signing)?;
        Ok(signature.as_ref().to_vec())
    }
}

/// An ECDSA P-256 public key, held as its 65-byte uncompressed point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    point: [u8; POINT_BYTES],
}

impl VerifyingKey {
    /// From an uncompressed point (0x04 ‖ X ‖ Y). Whether it lies on the curve is checked by
    /// `verify` (an off-curve point verifies nothing).
    pub fn from_point(point: &[u8]) -> Result<Self, KeyError> {
        let point: [u8; POINT_BYTES] = point.try_into().map_err(|_| KeyError::BadPublicKey)?;
        if point[0] != 0x04 {
            return Err(KeyError::BadPublicKey);
        }
        Ok(Self { point })
    }

    /// From a `PUBLIC KEY` PEM holding exactly the SubjectPublicKeyInfo of an uncompressed
    /// P-256 point (what `openssl ec -pubout` and [`Self::to_spki_pem`] write).
    pub fn from_spki_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let spki = match SubjectPublicKeyInfoDer::from_pem_slice(pem) {
            Ok(spki) => spki,
            Err(rustls_pki_types::pem::Error::NoItemsFound) => return Err(KeyError::NoPublicKey),
            Err(e) => return Err(KeyError::Pem(e.to_string())),
        };
        let point = spki
            .as_ref()
            .strip_prefix(SPKI_PREFIX.as_slice())
            .ok_or(KeyError::BadPublicKey)?;
        Self::from_point(point)
    }

    pub fn point(&self) -> &[u8] {
        &self.point
    }

    /// Lowercase hex of the first 16 bytes of SHA-256(point): 32 characters.
    pub fn key_id(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.point);
        hex::encode(&digest.as_ref()[..16])
    }

    /// The SubjectPublicKeyInfo as a `PUBLIC KEY` PEM, 64-character lines (as openssl writes).
    pub fn to_spki_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.point);
        pem_encode("PUBLIC KEY", &der)
    }

    /// Checks a DER ECDSA P-256 SHA-256 signature over `header.canonical_bytes()`.
    pub fn verify(&self, header: &BatchHeader, signature: &[u8]) -> Result<(), SignatureError> {
        if !header.key_id_fits() {
            return Err(SignatureError::KeyIdTooLong(header.key_id.len()));
        }
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(&header.canonical_bytes(), signature)
            .map_err(|_| SignatureError::Invalid)
    }
}

#[cfg(test)]
mod tests;
