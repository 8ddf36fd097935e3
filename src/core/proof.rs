//! The exported inclusion proof (`caracal.merkle.proof.v1`): one event's leaf, its RFC 6962
//! audit path and the signed batch header, as a self-contained JSON document, and its offline
//! verification. Reads no ledger: whoever exports a proof passes the batch in.
//!
//! ```json
//! { "format": "caracal.merkle.proof.v1", "event_id": "<uuid>", "leaf": "<hex of leaf data>",
//!   "leaf_index": 3, "tree_size": 37, "audit_path": ["<hex>", ...],
//!   "header": { BatchHeader, hashes in hex }, "header_bytes": "<hex of canonical bytes>",
//!   "signature": "<hex of the DER ECDSA signature>", "public_key": "<SPKI PEM>" }
//! ```

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::checkpoint::{BatchHeader, SignatureError, VerifyingKey};
use crate::core::hex;
use crate::core::merkle::{self, Hash};

/// The value of `format` in every proof document of this version.
pub const PROOF_FORMAT: &str = "caracal.merkle.proof.v1";

/// An inclusion proof of one event in one signed batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofDocument {
    pub format: String,
    pub event_id: Uuid,
    /// The leaf data (the event's canonical bytes); its leaf hash is SHA-256(0x00 ‖ leaf).
    #[serde(with = "hex::bytes")]
    pub leaf: Vec<u8>,
    pub leaf_index: u64,
    pub tree_size: u64,
    /// RFC 6962 audit path, from the leaf's sibling upwards.
    #[serde(with = "hex::hashes")]
    pub audit_path: Vec<Hash>,
    pub header: BatchHeader,
    /// `header.canonical_bytes()`, the bytes the signature covers.
    #[serde(with = "hex::bytes")]
    pub header_bytes: Vec<u8>,
    /// DER ECDSA P-256 SHA-256 signature over `header_bytes`.
    #[serde(with = "hex::bytes")]
    pub signature: Vec<u8>,
    /// The signing key as a SubjectPublicKeyInfo `PUBLIC KEY` PEM.
    pub public_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("malformed proof document: {0}")]
    Malformed(String),
    #[error("unknown proof format {0:?}, expected {PROOF_FORMAT:?}")]
    UnknownFormat(String),
    #[error("header_bytes are not the canonical bytes of header")]
    HeaderBytesMismatch,
    #[error("header names key {header:?} but the public key's id is {key:?}")]
    KeyIdMismatch { header: String, key: String },
    #[error("the signature does not verify for the header and public key")]
    BadSignature,
    #[error("tree_size {tree_size} is not the header's count {count}")]
    TreeSizeMismatch { tree_size: u64, count: i64 },
    #[error("leaf_index {leaf_index} is outside a tree of {tree_size} leaves")]
    IndexOutOfRange { leaf_index: u64, tree_size: u64 },
    #[error("the audit path does not lead from the leaf to the header's root")]
    NotIncluded,
}

impl ProofDocument {
    pub fn from_json(json: &str) -> Result<Self, ProofError> {
        serde_json::from_str(json).map_err(|e| ProofError::Malformed(e.to_string()))
    }

    pub fn to_json_pretty(&self) -> String {
        // Plain strings, integers and a derived struct: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// The proof that `leaf` (the data of leaf `index` of `batch_leaves`, leaf hashes) is in the
/// batch `header` describes. Checked with [`verify`] before it is returned, so an exported proof
/// always verifies.
pub fn build(
    event_id: Uuid,
    leaf: &[u8],
    batch_leaves: &[Hash],
    index: usize,
    header: &BatchHeader,
    signature: &[u8],
    key: &VerifyingKey,
) -> Result<ProofDocument, ProofError> {
    let tree_size = batch_leaves.len() as u64;
    let audit_path =
        merkle::inclusion_path(batch_leaves, index).ok_or(ProofError::IndexOutOfRange {
            leaf_index: index as u64,
            tree_size,
        })?;
    let doc = ProofDocument {
        format: PROOF_FORMAT.to_owned(),
        event_id,
        leaf: leaf.to_vec(),
        leaf_index: index as u64,
        tree_size,
        audit_path,
        header: header.clone(),
        header_bytes: header.canonical_bytes(),
        signature: signature.to_vec(),
        public_key: key.to_spki_pem(),
    };
    verify(&doc)?;
    Ok(doc)
}

/// Checks a proof offline, in order: format, header bytes, key id, signature, tree size, leaf
/// index, and the inclusion of SHA-256(0x00 ‖ leaf) under `header.root` (RFC 9162 §2.1.3.2).
pub fn verify(doc: &ProofDocument) -> Result<(), ProofError> {
    if doc.format != PROOF_FORMAT {
        return Err(ProofError::UnknownFormat(doc.format.clone()));
    }
    if doc.header_bytes != doc.header.canonical_bytes() {
        return Err(ProofError::HeaderBytesMismatch);
    }
    let key = VerifyingKey::from_spki_pem(doc.public_key.as_bytes())
        .map_err(|e| ProofError::Malformed(format!("public_key: {e}")))?;
    let key_id = key.key_id();
    if key_id != doc.header.key_id {
        return Err(ProofError::KeyIdMismatch {
            header: doc.header.key_id.clone(),
            key: key_id,
        });
    }
    key.verify(&doc.header, &doc.signature)
        .map_err(|e| match e {
            SignatureError::Invalid => ProofError::BadSignature,
            SignatureError::KeyIdTooLong(_) => ProofError::Malformed(e.to_string()),
        })?;
    if i64::try_from(doc.tree_size) != Ok(doc.header.count) {
        return Err(ProofError::TreeSizeMismatch {
            tree_size: doc.tree_size,
            count: doc.header.count,
        });
    }
    if doc.leaf_index >= doc.tree_size {
        return Err(ProofError::IndexOutOfRange {
            leaf_index: doc.leaf_index,
            tree_size: doc.tree_size,
        });
    }
    let leaf = merkle::leaf_hash(&doc.leaf);
    if !merkle::verify_inclusion(
        &leaf,
        doc.leaf_index,
        doc.tree_size,
        &doc.audit_path,
        &doc.header.root,
    ) {
        return Err(ProofError::NotIncluded);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::core::checkpoint::SigningKey;

    struct Batch {
        data: Vec<Vec<u8>>,
        leaves: Vec<Hash>,
        header: BatchHeader,
        signature: Vec<u8>,
        key: VerifyingKey,
    }

    fn batch(n: usize) -> Batch {
        let (signing, _) = SigningKey::generate().unwrap();
        let key = signing.verifying_key();
        let data: Vec<Vec<u8>> = (0..n).map(|i| format!("event {i}").into_bytes()).collect();
        let leaves: Vec<Hash> = data.iter().map(|d| merkle::leaf_hash(d)).collect();
        let header = BatchHeader {
            partition: 3,
            batch_number: 9,
            first_seq: 900,
            last_seq: 900 + n as i64 - 1,
            count: n as i64,
            root: merkle::root(&leaves).unwrap(),
            prev_root: [7; 32],
            first_time_micros: 1_714_000_000_000_000,
            last_time_micros: 1_714_000_001_000_000,
            key_id: key.key_id(),
        };
        let signature = signing.sign(&header).unwrap();
        Batch {
            data,
            leaves,
            header,
            signature,
            key,
        }
    }

    fn proof(b: &Batch, index: usize) -> ProofDocument {
        let (h, s, k) = (&b.header, &b.signature, &b.key);
        build(Uuid::now_v7(), &b.data[index], &b.leaves, index, h, s, k).unwrap()
    }

    fn flip(bytes: &mut [u8], bit: usize) {
        bytes[bit / 8] ^= 1 << (bit % 8);
    }

    #[test]
    fn every_leaf_of_a_batch_gets_a_proof_that_verifies_after_a_json_round_trip() {
        for n in [1, 2, 5, 37] {
            let b = batch(n);
            for index in 0..n {
                let doc = proof(&b, index);
                let parsed = ProofDocument::from_json(&doc.to_json_pretty()).unwrap();
                assert_eq!(parsed, doc);
                assert_eq!(verify(&parsed), Ok(()));
            }
        }
    }

    #[test]
    fn the_json_has_exactly_the_documented_fields() {
        let b = batch(5);
        let doc = proof(&b, 2);
        let json: serde_json::Value = serde_json::from_str(&doc.to_json_pretty()).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        let expected = [
            "audit_path",
            "event_id",
            "format",
            "header",
            "header_bytes",
            "leaf",
            "leaf_index",
            "public_key",
            "signature",
            "tree_size",
        ];
        assert_eq!(keys, expected);
        assert_eq!(json["format"], PROOF_FORMAT);
        assert_eq!(json["event_id"], doc.event_id.to_string());
        assert_eq!(json["leaf"], hex::encode(b"event 2"));
        assert_eq!(json["header"]["root"], hex::encode(&b.header.root));
        assert!(json["public_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
    }

    #[test]
    fn a_flipped_bit_anywhere_is_named_precisely() {
        let b = batch(37);
        let doc = proof(&b, 11);
        for bit in [0, 5, 31] {
            let mut bad = doc.clone();
            flip(&mut bad.leaf, bit);
            assert_eq!(verify(&bad), Err(ProofError::NotIncluded));
            for p in 0..doc.audit_path.len() {
                let mut bad = doc.clone();
                flip(&mut bad.audit_path[p], bit);
                assert_eq!(verify(&bad), Err(ProofError::NotIncluded));
            }
            let mut bad = doc.clone();
            flip(&mut bad.header.root, bit);
            assert_eq!(verify(&bad), Err(ProofError::HeaderBytesMismatch));
            bad.header_bytes = bad.header.canonical_bytes();
            assert_eq!(verify(&bad), Err(ProofError::BadSignature));
            let mut bad = doc.clone();
            flip(&mut bad.signature, bit + 40);
            assert_eq!(verify(&bad), Err(ProofError::BadSignature));
        }
    }

    #[test]
    fn a_wrong_position_size_key_or_format_is_named_precisely() {
        let b = batch(37);
        let doc = proof(&b, 11);
        let bad = ProofDocument {
            leaf_index: 12,
            ..doc.clone()
        };
        assert_eq!(verify(&bad), Err(ProofError::NotIncluded));
        let bad = ProofDocument {
            leaf_index: 37,
            ..doc.clone()
        };
        let out_of_range = ProofError::IndexOutOfRange {
            leaf_index: 37,
            tree_size: 37,
        };
        assert_eq!(verify(&bad), Err(out_of_range));
        let bad = ProofDocument {
            tree_size: 38,
            ..doc.clone()
        };
        let size = ProofError::TreeSizeMismatch {
            tree_size: 38,
            count: 37,
        };
        assert_eq!(verify(&bad), Err(size));
        let other = batch(1);
        let bad = ProofDocument {
            public_key: other.key.to_spki_pem(),
            ..doc.clone()
        };
        assert!(matches!(
            verify(&bad),
            Err(ProofError::KeyIdMismatch { .. })
        ));
        let bad = ProofDocument {
            public_key: "nope".into(),
            ..doc.clone()
        };
        assert!(matches!(verify(&bad), Err(ProofError::Malformed(_))));
        let bad = ProofDocument {
            format: "caracal.merkle.proof.v2".into(),
            ..doc.clone()
        };
        assert!(matches!(verify(&bad), Err(ProofError::UnknownFormat(_))));
    }

    #[test]
    fn refuses_to_build_a_proof_that_would_not_verify() {
        let b = batch(8);
        let (h, s, k) = (&b.header, &b.signature, &b.key);
        let id = Uuid::nil();
        assert!(matches!(
            build(id, &b.data[3], &b.leaves, 8, h, s, k),
            Err(ProofError::IndexOutOfRange { .. })
        ));
        assert_eq!(
            build(id, &b.data[3], &b.leaves, 4, h, s, k),
            Err(ProofError::NotIncluded)
        );
        assert_eq!(
            build(id, &b.data[3], &b.leaves[..7], 3, h, s, k),
            Err(ProofError::TreeSizeMismatch {
                tree_size: 7,
                count: 8
            })
        );
    }

    #[test]
    fn malformed_json_is_malformed() {
        for bad in ["", "{}", "[1]", r#"{"format": 1}"#] {
            assert!(matches!(
                ProofDocument::from_json(bad),
                Err(ProofError::Malformed(_))
            ));
        }
        let b = batch(2);
        let mut json: serde_json::Value = serde_json::to_value(proof(&b, 0)).unwrap();
        json["audit_path"] = serde_json::json!(["00"]);
        let text = json.to_string();
        assert!(matches!(
            ProofDocument::from_json(&text),
            Err(ProofError::Malformed(_))
        ));
    }
}
