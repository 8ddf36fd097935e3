//! TEMPORARY STUB: replaced by the real module from branch wip-merkle.
use serde::{Deserialize, Serialize};
pub type Hash = [u8; 32];
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchHeader {
    pub partition: i32,
    pub batch_number: i64,
    pub first_seq: i64,
    pub last_seq: i64,
    pub count: i64,
    pub root: Hash,
    pub prev_root: Hash,
    pub first_time_micros: i64,
    pub last_time_micros: i64,
    pub key_id: String,
}
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("bad key")]
    Bad,
}
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("bad signature")]
    Bad,
}
pub struct SigningKey(Vec<u8>);
#[derive(Debug, Clone)]
pub struct VerifyingKey(Vec<u8>);
impl SigningKey {
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        Ok(SigningKey(pem.to_vec()))
    }
    pub fn generate() -> Result<(Self, String), KeyError> {
        Ok((SigningKey(vec![1]), String::new()))
    }
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.clone())
    }
    pub fn sign(&self, _header: &BatchHeader) -> Result<Vec<u8>, KeyError> {
        Ok(vec![0])
    }
}
impl VerifyingKey {
    pub fn key_id(&self) -> String {
        String::new()
    }
    pub fn to_spki_pem(&self) -> String {
        String::new()
    }
    pub fn from_point(p: &[u8]) -> Result<Self, KeyError> {
        Ok(VerifyingKey(p.to_vec()))
    }
    pub fn from_spki_pem(p: &[u8]) -> Result<Self, KeyError> {
        Ok(VerifyingKey(p.to_vec()))
    }
    pub fn point(&self) -> &[u8] {
        &self.0
    }
    pub fn verify(&self, _h: &BatchHeader, _s: &[u8]) -> Result<(), SignatureError> {
        Ok(())
    }
}
