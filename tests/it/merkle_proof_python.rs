//! Interop: an independent Python verifier (tests/python/verify_proof.py, hashlib + cryptography,
//! written from RFC 6962/9162 and the header layout) accepts our inclusion proofs and rejects
//! each one-bit tampering. Needs `CARACAL_PYTHON` with `cryptography`; fails, never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use uuid::Uuid;

use caracal::core::checkpoint::{BatchHeader, SigningKey};
use caracal::core::merkle::{self, Hash};
use caracal::core::proof::{self, ProofDocument};

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Runs tests/python/verify_proof.py on `proof` with `CARACAL_PYTHON`.
fn run_verifier(dir: &Path, name: &str, proof: &ProofDocument) -> Output {
    let file = dir.join(name);
    std::fs::write(&file, proof.to_json_pretty()).unwrap();
    python_verify(&file)
}

/// Runs tests/python/verify_proof.py on the proof file `file` with `CARACAL_PYTHON`.
pub fn python_verify(file: &Path) -> Output {
    let python = std::env::var_os("CARACAL_PYTHON").unwrap_or_else(|| {
        panic!(
            "CARACAL_PYTHON is not set. The Merkle proof interop test needs a Python 3 with \
             cryptography: `python3 -m venv /tmp/venv && /tmp/venv/bin/pip install -r \
             tests/python/requirements.txt` then `CARACAL_PYTHON=/tmp/venv/bin/python cargo test`"
        )
    });
    Command::new(&python)
        .arg(repo_path("tests/python/verify_proof.py"))
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run CARACAL_PYTHON={python:?}: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "status {}, stdout {:?}, stderr {:?}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A signed batch of 37 distinct leaves and the proof of leaf 22.
fn proof_of_a_37_leaf_batch() -> ProofDocument {
    let (key, _pem) = SigningKey::generate().unwrap();
    let verifying = key.verifying_key();
    let data: Vec<Vec<u8>> = (0..37u8)
        .map(|i| [b"caracal event ".as_slice(), &[i, 0x00, 0xff]].concat())
        .collect();
    let leaves: Vec<Hash> = data.iter().map(|d| merkle::leaf_hash(d)).collect();
    let header = BatchHeader {
        partition: 4,
        batch_number: 12,
        first_seq: 12_000,
        last_seq: 12_036,
        count: 37,
        root: merkle::root(&leaves).unwrap(),
        prev_root: merkle::leaf_hash(b"the previous batch"),
        first_time_micros: 1_714_000_000_000_000,
        last_time_micros: 1_714_000_299_999_999,
        key_id: verifying.key_id(),
    };
    let signature = key.sign(&header).unwrap();
    let index = 22;
    let event = Uuid::now_v7();
    proof::build(
        event,
        &data[index],
        &leaves,
        index,
        &header,
        &signature,
        &verifying,
    )
    .unwrap()
}

#[test]
fn python_verifies_a_merkle_proof_and_rejects_each_flipped_bit() {
    let dir = tempfile::tempdir().unwrap();
    let good = proof_of_a_37_leaf_batch();
    assert_eq!(good.audit_path.len(), 6);

    let output = run_verifier(dir.path(), "good.json", &good);
    assert!(output.status.success(), "a valid proof: {}", text(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "OK");

    let mut leaf = good.clone();
    leaf.leaf[3] ^= 0x10;
    let mut path = good.clone();
    path.audit_path[2][17] ^= 0x01;
    let mut signature = good.clone();
    let last = signature.signature.len() - 1;
    signature.signature[last] ^= 0x80;
    let cases = [
        ("leaf", leaf, "FAIL: audit_path leads to"),
        ("path", path, "FAIL: audit_path leads to"),
        ("signature", signature, "FAIL: signature does not verify"),
    ];
    for (name, bad, reason) in cases {
        assert!(
            proof::verify(&bad).is_err(),
            "{name}: our verifier must reject it too"
        );
        let output = run_verifier(dir.path(), &format!("{name}.json"), &bad);
        assert!(
            !output.status.success(),
            "{name} flipped: {}",
            text(&output)
        );
        assert_eq!(output.status.code(), Some(1), "{name}: {}", text(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.starts_with(reason), "{name}: {}", text(&output));
    }
}
