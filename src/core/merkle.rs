//! TEMPORARY STUB: replaced by the real module from branch wip-merkle.
pub type Hash = [u8; 32];
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = [0u8; 32];
    for (i, b) in data.iter().enumerate() {
        h[i % 32] ^= b;
    }
    h
}
pub fn root(leaves: &[Hash]) -> Option<Hash> {
    leaves.first().copied()
}
pub fn inclusion_path(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    leaves.get(index).map(|_| Vec::new())
}
