//! TEMPORARY STUB: replaced by the real module from branch wip-merkle.
use super::checkpoint::{BatchHeader, VerifyingKey};
use super::merkle::Hash;
use serde::{Deserialize, Serialize};
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("bad")]
    Bad,
}
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProofDocument {
    pub event_id: String,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub header: BatchHeader,
}
pub fn build(
    _leaf: &[u8],
    _leaves: &[Hash],
    _index: usize,
    header: &BatchHeader,
    _signature: &[u8],
    _key: &VerifyingKey,
    event_id: &str,
) -> Result<ProofDocument, ProofError> {
    Ok(ProofDocument {
        event_id: event_id.into(),
        leaf_index: 0,
        tree_size: 0,
        header: header.clone(),
    })
}
pub fn verify(_d: &ProofDocument) -> Result<(), ProofError> {
    Ok(())
}
