//! The client side of SCRAM (RFC 5802) with SHA-256 and SHA-512 (RFC 7677), as Kafka's
//! SCRAM-SHA-256/512 use it: no channel binding, no SASLprep (Kafka user names and passwords
//! are used as given). Pure: the nonce comes from the caller, no I/O.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};

/// Fewest PBKDF2 iterations accepted from a server (RFC 7677 asks for at least 4096).
pub const ITERATIONS_MIN: u32 = 4096;
/// Most PBKDF2 iterations accepted from a server (a hostile server could ask for any number).
pub const ITERATIONS_MAX: u32 = 1_000_000;

/// The hash of a SCRAM mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScramHash {
    Sha256,
    Sha512,
    /// RFC 5802's own test vector uses SHA-1; Kafka has no SCRAM-SHA-1.
    #[cfg(test)]
    Sha1,
}

impl ScramHash {
    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramHash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramHash::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
            #[cfg(test)]
            ScramHash::Sha1 => pbkdf2::PBKDF2_HMAC_SHA1,
        }
    }
    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramHash::Sha256 => hmac::HMAC_SHA256,
            ScramHash::Sha512 => hmac::HMAC_SHA512,
            #[cfg(test)]
            ScramHash::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        }
    }
    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramHash::Sha256 => &digest::SHA256,
            ScramHash::Sha512 => &digest::SHA512,
            #[cfg(test)]
            ScramHash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        }
    }
    fn len(self) -> usize {
        self.digest().output_len()
    }
}

/// Why an exchange failed. Never holds the password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("the server's first SCRAM message is malformed: {0}")]
    Malformed(&'static str),
    #[error("the server's nonce does not extend ours")]
    Nonce,
    #[error("the server asks for {0} PBKDF2 iterations (accepted: {ITERATIONS_MIN} to {ITERATIONS_MAX})")]
    Iterations(u32),
    #[error("the server rejected the credentials: {0}")]
    Rejected(String),
    #[error("the server's signature is wrong: it does not know this user's password")]
    ServerSignature,
}

/// A SCRAM exchange after the client's first message.
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    nonce: String,
    first_bare: String,
}

/// The exchange after the client's final message: checks the server's signature.
pub struct ScramFinal {
    server_signature: Vec<u8>,
}

impl ScramClient {
    /// Starts an exchange; `nonce` is printable ASCII without `,` (the caller makes it random).
    pub fn new(hash: ScramHash, username: &str, password: &str, nonce: &str) -> Self {
        let user = username.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            hash,
            password: password.to_owned(),
            nonce: nonce.to_owned(),
            first_bare: format!("n={user},r={nonce}"),
        }
    }

    /// The client's first message.
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    /// Answers the server's first message with the client's final message (the proof).
    pub fn client_final(self, server_first: &str) -> Result<(String, ScramFinal), ScramError> {
        let (nonce, salt, iterations) = parse_server_first(server_first)?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Nonce);
        }
        let rounds = NonZeroU32::new(iterations)
            .filter(|_| (ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations))
            .ok_or(ScramError::Iterations(iterations))?;
        let h = self.hash;
        let mut salted = vec![0u8; h.len()];
        pbkdf2::derive(
            h.pbkdf2(),
            rounds,
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let salted = hmac::Key::new(h.hmac(), &salted);
        let client_key = hmac::sign(&salted, b"Client Key");
        let stored_key = digest::digest(h.digest(), client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let stored_key = hmac::Key::new(h.hmac(), stored_key.as_ref());
        let client_signature = hmac::sign(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac::Key::new(h.hmac(), hmac::sign(&salted, b"Server Key").as_ref());
        let server_signature = hmac::sign(&server_key, auth_message.as_bytes());
        let message = format!("{without_proof},p={}", B64.encode(proof));
        Ok((
            message,
            ScramFinal {
                server_signature: server_signature.as_ref().to_vec(),
            },
        ))
    }
}

impl ScramFinal {
    /// Checks the server's final message: `v=` with the expected signature, or `e=` (refused).
    pub fn verify(&self, server_final: &str) -> Result<(), ScramError> {
        let first = server_final.split(',').next().unwrap_or_default();
        if let Some(error) = first.strip_prefix("e=") {
            return Err(ScramError::Rejected(error.to_owned()));
        }
        let signature = first
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v).ok())
            .ok_or(ScramError::ServerSignature)?;
        // Compared in constant time: every byte is looked at whatever the first difference.
        let differs = signature.len() != self.server_signature.len()
            || signature
                .iter()
                .zip(&self.server_signature)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                != 0;
        if differs {
            return Err(ScramError::ServerSignature);
        }
        Ok(())
    }
}

/// `r=nonce,s=salt,i=iterations` (a leading `m=` extension is refused, as RFC 5802 asks).
fn parse_server_first(message: &str) -> Result<(String, Vec<u8>, u32), ScramError> {
    if let Some(error) = message.strip_prefix("e=") {
        return Err(ScramError::Rejected(error.to_owned()));
    }
    let mut parts = message.split(',');
    let mut field = |name: &'static str| {
        parts
            .next()
            .and_then(|p| p.strip_prefix(name))
            .ok_or(ScramError::Malformed(name))
    };
    let nonce = field("r=")?.to_owned();
    let salt = B64
        .decode(field("s=")?)
        .map_err(|_| ScramError::Malformed("s="))?;
    let iterations = field("i=")?
        .parse::<u32>()
        .map_err(|_| ScramError::Malformed("i="))?;
    Ok((nonce, salt, iterations))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Runs one exchange and returns the client's final message.
    fn exchange(hash: ScramHash, nonce: &str, server_first: &str, server_final: &str) -> String {
        let client = ScramClient::new(hash, "user", "pencil", nonce);
        assert_eq!(client.client_first(), format!("n,,n=user,r={nonce}"));
        let (message, last) = client.client_final(server_first).unwrap();
        last.verify(server_final).unwrap();
        message
    }

    #[test]
    fn rfc_5802_sha1_test_vector() {
        let message = exchange(
            ScramHash::Sha1,
            "fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        );
        assert_eq!(
            message,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
    }

    #[test]
    fn rfc_7677_sha256_test_vector() {
        let message = exchange(
            ScramHash::Sha256,
            "rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        );
        assert_eq!(
            message,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
    }

    /// SHA-512 has no RFC vector: this one was computed with Python's hashlib/hmac from the
    /// RFC 5802 formulas, independently of this code.
    #[test]
    fn sha512_matches_an_independent_computation() {
        let message = exchange(
            ScramHash::Sha512,
            "rOprNGfwEbeRWgbNEkqO",
            SHA512_SERVER_FIRST,
            SHA512_SERVER_FINAL,
        );
        assert_eq!(message, SHA512_CLIENT_FINAL);
    }

    const SHA512_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const SHA512_CLIENT_FINAL: &str =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
        p=gMGXRcevScNtxZ6/8lQYpGtnsNAc3mGcmNomv+xnoOMw+3R2xNJdMNnzMlTN8PPC6wdp6dybEmDYXYTxwnYPJQ==";
    const SHA512_SERVER_FINAL: &str =
        "v=ZQnYEgWQMFmmsM8aQMF0nDDCy/AgCzkwk8CmMZYcMg0vSVlKDanekLtifDSeVGT4+5ZxXnJq199RVG2rR7N7Zw==";

    #[test]
    fn a_wrong_server_signature_a_foreign_nonce_and_a_refusal_are_errors() {
        let client = ScramClient::new(ScramHash::Sha256, "user", "pencil", "abc");
        let (_, last) = client
            .client_final("r=abcdef,s=QSXCR+Q6sek8bf92,i=4096")
            .unwrap();
        assert_eq!(last.verify("v=AAAA"), Err(ScramError::ServerSignature));
        assert_eq!(
            last.verify("e=invalid-proof"),
            Err(ScramError::Rejected("invalid-proof".into()))
        );
        let client = ScramClient::new(ScramHash::Sha256, "user", "pencil", "abc");
        let foreign = client.client_final("r=xyzdef,s=QSXCR+Q6sek8bf92,i=4096");
        assert_eq!(foreign.err(), Some(ScramError::Nonce));
        let client = ScramClient::new(ScramHash::Sha256, "user", "pencil", "abc");
        let few = client.client_final("r=abcdef,s=QSXCR+Q6sek8bf92,i=1");
        assert_eq!(few.err(), Some(ScramError::Iterations(1)));
    }

    #[test]
    fn user_names_with_comma_and_equals_are_escaped() {
        let client = ScramClient::new(ScramHash::Sha512, "a=b,c", "p", "n0");
        assert_eq!(client.client_first(), "n,,n=a=3Db=2Cc,r=n0");
    }
}
