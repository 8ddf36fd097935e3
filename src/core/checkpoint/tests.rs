//! Tests of the batch header format and the keys: golden canonical bytes, keys that openssl
//! made (SEC1 and PKCS#8) with key ids openssl's output gives, and every tampering failing.
#![allow(clippy::unwrap_used)]

use super::*;

/// `openssl ecparam -name prime256v1 -genkey -noout` (SEC1).
const SEC1_PEM: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIHfbAhbbgBcvOHP19xPEXSLCpqoA/t6u5xLOSlk4kHX4oAoGCCqGSM49
AwEHoUQDQgAE9pXF22QNziFWQOQsXjr/wjC9eEhpyIz5WR299JZJA5rKF9zwTu7w
IDO4U0ZNEtPlOyfAaJCpmKXKTILmwi3K3Q==
-----END EC PRIVATE KEY-----
";
/// `openssl ec -in sec1.pem -pubout`.
const SEC1_PUB_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9pXF22QNziFWQOQsXjr/wjC9eEhp
yIz5WR299JZJA5rKF9zwTu7wIDO4U0ZNEtPlOyfAaJCpmKXKTILmwi3K3Q==
-----END PUBLIC KEY-----
";
/// `openssl pkey -pubin -in sec1_pub.pem -outform DER | tail -c 65 | sha256sum | cut -c1-32`.
const SEC1_KEY_ID: &str = "034efb86d0e9d43098a5dfb0c5968d67";

/// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` (PKCS#8).
const PKCS8_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgmqeupeoqC+M3Ntlg
ChLraUKiiH9MZXI7gGs+GJgGp/WhRANCAARjq7WQzhE+/GJakQWaHtynajrRiHgQ
tH9K3Dp4Hwb4Gi43Vmx3p+QAprGj4A70BVTZOdD0O4bHR0Vy8XiVf4yW
-----END PRIVATE KEY-----
";
const PKCS8_PUB_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEY6u1kM4RPvxiWpEFmh7cp2o60Yh4
ELR/Stw6eB8G+BouN1Zsd6fkAKaxo+AO9AVU2TnQ9DuGx0dFcvF4lX+Mlg==
-----END PUBLIC KEY-----
";
const PKCS8_KEY_ID: &str = "c31a7443a2474c823d75671ad94fba2b";

fn header(key_id: &str) -> BatchHeader {
    let mut root = [0u8; 32];
    for (i, b) in root.iter_mut().enumerate() {
        *b = i as u8;
    }
    BatchHeader {
        partition: 7,
        batch_number: 42,
        first_seq: 41_000,
        last_seq: 41_999,
        count: 1000,
        root,
        prev_root: [0xaa; 32],
        first_time_micros: 1_714_000_000_000_000,
        last_time_micros: 1_714_000_300_000_000,
        key_id: key_id.to_owned(),
    }
}

#[test]
fn canonical_bytes_are_the_sealed_layout() {
    let expected = concat!(
        "6361726163616c2e6d65726b6c652e62617463682e7631", // "caracal.merkle.batch.v1"
        "00",                                             // separator
        "00000007",                                       // partition 7
        "000000000000002a",                               // batch_number 42
        "000000000000a028",                               // first_seq 41000
        "000000000000a40f",                               // last_seq 41999
        "00000000000003e8",                               // count 1000
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", // root
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", // prev_root
        "000616dfb9252000",                               // first_time_micros
        "000616dfcb06c300",                               // last_time_micros
        "0020",                                           // key_id length 32
        "3031323334353637383961626364656630313233343536373839616263646566", // key_id
    );
    let bytes = header("0123456789abcdef0123456789abcdef").canonical_bytes();
    assert_eq!(hex::encode(&bytes), expected);
    assert_eq!(bytes.len(), 174);
}

#[test]
fn canonical_bytes_encode_negatives_as_twos_complement() {
    let h = BatchHeader {
        partition: -1,
        first_time_micros: -2,
        key_id: String::new(),
        ..header("")
    };
    let bytes = h.canonical_bytes();
    assert_eq!(&bytes[24..28], &[0xff; 4]);
    assert_eq!(
        &bytes[124..132],
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]
    );
    assert_eq!(&bytes[140..], &[0, 0]);
}

#[test]
fn header_json_uses_snake_case_and_hex_hashes() {
    let h = header(SEC1_KEY_ID);
    let json = serde_json::to_value(&h).unwrap();
    assert_eq!(json["batch_number"], 42);
    assert_eq!(json["prev_root"], "aa".repeat(32));
    assert_eq!(json["root"], hex::encode(&h.root));
    assert_eq!(serde_json::from_value::<BatchHeader>(json).unwrap(), h);
    let mut upper = serde_json::to_value(&h).unwrap();
    upper["prev_root"] = "AA".repeat(32).into();
    assert!(serde_json::from_value::<BatchHeader>(upper).is_err());
    let mut extra = serde_json::to_value(&h).unwrap();
    extra["signature"] = "00".into();
    assert!(serde_json::from_value::<BatchHeader>(extra).is_err());
}

#[test]
fn loads_openssl_sec1_and_pkcs8_keys_with_the_ids_openssl_gives() {
    for (pem, public, id) in [
        (SEC1_PEM, SEC1_PUB_PEM, SEC1_KEY_ID),
        (PKCS8_PEM, PKCS8_PUB_PEM, PKCS8_KEY_ID),
    ] {
        let key = SigningKey::from_pem(pem.as_bytes()).unwrap();
        let verifying = key.verifying_key();
        assert_eq!(verifying.key_id(), id);
        assert_eq!(
            verifying.to_spki_pem(),
            public,
            "byte for byte what openssl writes"
        );
        let parsed = VerifyingKey::from_spki_pem(public.as_bytes()).unwrap();
        assert_eq!(parsed, verifying);
        assert_eq!(parsed.point().len(), POINT_BYTES);
        let h = header(id);
        let signature = key.sign(&h).unwrap();
        assert_eq!(parsed.verify(&h, &signature), Ok(()));
    }
}

#[test]
fn a_sec1_pem_with_an_ec_parameters_section_first_still_loads() {
    let pem = format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{SEC1_PEM}"
    );
    let key = SigningKey::from_pem(pem.as_bytes()).unwrap();
    assert_eq!(key.verifying_key().key_id(), SEC1_KEY_ID);
}

#[test]
fn rejects_what_is_not_a_p256_private_key() {
    assert_eq!(
        SigningKey::from_pem(b"").unwrap_err(),
        KeyError::NoPrivateKey
    );
    assert_eq!(
        SigningKey::from_pem(SEC1_PUB_PEM.as_bytes()).unwrap_err(),
        KeyError::NoPrivateKey
    );
    let broken = SEC1_PEM.replace("MHcCAQEEIHfb", "MHcCAQEEIHfc");
    assert!(matches!(
        SigningKey::from_pem(broken.as_bytes()),
        Err(KeyError::Rejected(_))
    ));
    assert_eq!(
        VerifyingKey::from_spki_pem(SEC1_PEM.as_bytes()).unwrap_err(),
        KeyError::NoPublicKey
    );
    assert_eq!(
        VerifyingKey::from_point(&[4; 64]).unwrap_err(),
        KeyError::BadPublicKey
    );
    assert_eq!(
        VerifyingKey::from_point(&[2; 65]).unwrap_err(),
        KeyError::BadPublicKey
    );
}

#[test]
fn debug_never_prints_the_private_key() {
    let key = SigningKey::from_pem(SEC1_PEM.as_bytes()).unwrap();
    let debug = format!("{key:?}");
    assert_eq!(
        debug,
        format!("SigningKey {{ key_id: {SEC1_KEY_ID:?}, .. }}")
    );
}

#[test]
fn a_generated_key_round_trips_through_its_pem_and_signs() {
    let (key, pem) = SigningKey::generate().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let reloaded = SigningKey::from_pem(pem.as_bytes()).unwrap();
    let verifying = key.verifying_key();
    assert_eq!(reloaded.verifying_key(), verifying);
    assert_eq!(verifying.key_id().len(), 32);
    assert_eq!(verifying.key_id(), reloaded.verifying_key().key_id());
    let pem_public = verifying.to_spki_pem();
    assert_eq!(
        VerifyingKey::from_spki_pem(pem_public.as_bytes()).unwrap(),
        verifying
    );
    let h = header(&verifying.key_id());
    let signature = reloaded.sign(&h).unwrap();
    assert_eq!(verifying.verify(&h, &signature), Ok(()));
    let (other, _) = SigningKey::generate().unwrap();
    assert_ne!(other.verifying_key().key_id(), verifying.key_id());
}

#[test]
fn refuses_to_sign_a_header_that_names_another_key() {
    let key = SigningKey::from_pem(SEC1_PEM.as_bytes()).unwrap();
    assert_eq!(
        key.sign(&header(PKCS8_KEY_ID)).unwrap_err(),
        KeyError::KeyIdMismatch {
            header: PKCS8_KEY_ID.to_owned(),
            key: SEC1_KEY_ID.to_owned()
        }
    );
}

/// Every header with one field changed (one bit where the field is bytes or a number).
fn tampered(h: &BatchHeader) -> Vec<(&'static str, BatchHeader)> {
    let mut root = h.root;
    root[31] ^= 0x01;
    let mut prev_root = h.prev_root;
    prev_root[0] ^= 0x80;
    let mut key_id = h.key_id.clone().into_bytes();
    key_id[0] ^= 0x01;
    vec![
        (
            "partition",
            BatchHeader {
                partition: h.partition ^ 1,
                ..h.clone()
            },
        ),
        (
            "batch_number",
            BatchHeader {
                batch_number: h.batch_number ^ 1,
                ..h.clone()
            },
        ),
        (
            "first_seq",
            BatchHeader {
                first_seq: h.first_seq ^ 1,
                ..h.clone()
            },
        ),
        (
            "last_seq",
            BatchHeader {
                last_seq: h.last_seq ^ 1,
                ..h.clone()
            },
        ),
        (
            "count",
            BatchHeader {
                count: h.count ^ 1,
                ..h.clone()
            },
        ),
        ("root", BatchHeader { root, ..h.clone() }),
        (
            "prev_root",
            BatchHeader {
                prev_root,
                ..h.clone()
            },
        ),
        (
            "first_time",
            BatchHeader {
                first_time_micros: h.first_time_micros ^ 1,
                ..h.clone()
            },
        ),
        (
            "last_time",
            BatchHeader {
                last_time_micros: h.last_time_micros ^ 1,
                ..h.clone()
            },
        ),
        (
            "key_id",
            BatchHeader {
                key_id: String::from_utf8(key_id).unwrap(),
                ..h.clone()
            },
        ),
    ]
}

#[test]
fn any_changed_header_field_or_signature_bit_fails_verification() {
    let key = SigningKey::from_pem(SEC1_PEM.as_bytes()).unwrap();
    let verifying = key.verifying_key();
    let h = header(SEC1_KEY_ID);
    let signature = key.sign(&h).unwrap();
    assert_eq!(verifying.verify(&h, &signature), Ok(()));
    for (field, bad) in tampered(&h) {
        assert_ne!(bad.canonical_bytes(), h.canonical_bytes(), "{field}");
        assert_eq!(
            verifying.verify(&bad, &signature),
            Err(SignatureError::Invalid),
            "{field}"
        );
    }
    for bit in 0..signature.len() * 8 {
        let mut bad = signature.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            verifying.verify(&h, &bad),
            Err(SignatureError::Invalid),
            "bit {bit}"
        );
    }
    let other = SigningKey::from_pem(PKCS8_PEM.as_bytes())
        .unwrap()
        .verifying_key();
    assert_eq!(other.verify(&h, &signature), Err(SignatureError::Invalid));
}

#[test]
fn a_key_id_too_long_for_the_format_never_verifies() {
    let key = SigningKey::from_pem(SEC1_PEM.as_bytes()).unwrap();
    let h = BatchHeader {
        key_id: "a".repeat(KEY_ID_BYTES_MAX + 1),
        ..header(SEC1_KEY_ID)
    };
    assert_eq!(
        key.verifying_key().verify(&h, &[0x30, 0x00]),
        Err(SignatureError::KeyIdTooLong(KEY_ID_BYTES_MAX + 1))
    );
}

#[test]
fn wraps_sec1_in_pkcs8_with_long_form_lengths() {
    let mut out = Vec::new();
    der_length(0x79, &mut out);
    der_length(0x93, &mut out);
    der_length(0x1234, &mut out);
    assert_eq!(out, [0x79, 0x81, 0x93, 0x82, 0x12, 0x34]);
}

/// `openssl dgst -sha256 -sign sec1.pem -out sig canonical.bin` over the canonical bytes of
/// `header(SEC1_KEY_ID)`; our signatures were checked the other way with `openssl dgst -verify`.
const OPENSSL_SIGNATURE: &str = "3046022100a53f396a4209dcbcba97ecc767aba0f5a1b773e7b32d587d803e23\
2665ec66c7022100c0c3ce5be65d0707dec48b1d87bf7af2c01f64f03d21a98fe07bc76f8a507893";

#[test]
fn verifies_a_signature_that_openssl_made() {
    let key = VerifyingKey::from_spki_pem(SEC1_PUB_PEM.as_bytes()).unwrap();
    let signature = hex::decode(OPENSSL_SIGNATURE).unwrap();
    assert_eq!(key.verify(&header(SEC1_KEY_ID), &signature), Ok(()));
    let other = header(PKCS8_KEY_ID);
    assert_eq!(key.verify(&other, &signature), Err(SignatureError::Invalid));
}
