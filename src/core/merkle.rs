//! RFC 6962 / RFC 9162 Merkle trees over already-hashed leaves: leaf and node hashing, roots
//! (computed bottom-up here), audit paths (from rs_merkle's tree with a hasher that gives RFC
//! 6962's shape), consistency proofs, and our own verifiers for both. Pure functions: no I/O, no storage, no signing.
//!
//! Leaf = SHA-256(0x00 ‖ data), node = SHA-256(0x01 ‖ left ‖ right). A tree of n > 1 leaves
//! splits at the largest power of two k < n (RFC 6962 §2.1); rs_merkle builds the same tree
//! bottom-up because it promotes a lone right-most node instead of duplicating it.

use ring::digest;

/// A SHA-256 digest: a leaf hash, a node hash or a root.
pub type Hash = [u8; 32];

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The RFC 6962 leaf hash: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256(&[&[LEAF_PREFIX], data])
}

/// The RFC 6962 interior node hash: SHA-256(0x01 ‖ left ‖ right), from one buffer (one update
/// of the digest, not three).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut input = [0u8; 65];
    input[0] = NODE_PREFIX;
    input[1..33].copy_from_slice(left);
    input[33..].copy_from_slice(right);
    sha256(&[&input])
}

/// rs_merkle hasher for RFC 6962 trees. Leaves are hashed by us ([`leaf_hash`]) before they
/// reach rs_merkle; `concat_and_hash` is [`node_hash`] and promotes a node without a right
/// sibling unchanged, which is what makes rs_merkle's bottom-up tree RFC 6962's tree.
#[derive(Debug, Clone, Copy)]
pub struct Rfc6962Hasher;

impl rs_merkle::Hasher for Rfc6962Hasher {
    type Hash = Hash;

    /// Plain SHA-256; rs_merkle only reaches it through `concat_and_hash`, which we override.
    fn hash(data: &[u8]) -> Hash {
        sha256(&[data])
    }

    fn concat_and_hash(left: &Hash, right: Option<&Hash>) -> Hash {
        match right {
            Some(right) => node_hash(left, right),
            None => *left,
        }
    }
}

fn tree(leaves: &[Hash]) -> rs_merkle::MerkleTree<Rfc6962Hasher> {
    rs_merkle::MerkleTree::<Rfc6962Hasher>::from_leaves(leaves)
}

/// MTH(D[n]) of RFC 6962 over leaf hashes; `None` for an empty tree. Built bottom-up in one
/// buffer, a lone right-most node promoted unchanged (the shape rs_merkle builds, see above):
/// one node hash per inner node and no other work (the tree rs_merkle keeps is only needed for
/// proofs).
pub fn root(leaves: &[Hash]) -> Option<Hash> {
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        let pairs = level.len() / 2;
        for i in 0..pairs {
            level[i] = node_hash(&level[2 * i], &level[2 * i + 1]);
        }
        if level.len() % 2 == 1 {
            level[pairs] = level[level.len() - 1];
            level.truncate(pairs + 1);
        } else {
            level.truncate(pairs);
        }
    }
    level.first().copied()
}

/// The RFC 6962 audit path PATH(index, D[n]) for the leaf at `index`, ordered from the leaf's
/// sibling upwards to the root's child; `None` when `index` is out of range.
pub fn inclusion_path(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    // rs_merkle lists one sibling per layer, bottom-up, skipping layers where the node is
    // promoted: exactly RFC 6962's PATH (checked against the recursive definition in tests).
    Some(tree(leaves).proof(&[index]).proof_hashes().to_vec())
}

/// Right-shifts `first` and `second` together until `first`'s lowest bit is set or it is 0.
fn shift_while_even(first: &mut u64, second: &mut u64) {
    while *first != 0 && *first & 1 == 0 {
        *first >>= 1;
        *second >>= 1;
    }
}

/// RFC 9162 §2.1.3.2: the root that `path` proves for `leaf` (a leaf hash) at `index` in a tree
/// of `tree_size` leaves, or `None` when the path cannot be an audit path for that position.
pub fn root_from_inclusion(leaf: &Hash, index: u64, tree_size: u64, path: &[Hash]) -> Option<Hash> {
    if index >= tree_size {
        return None;
    }
    let (mut fn_, mut sn) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in path {
        if sn == 0 {
            return None;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                shift_while_even(&mut fn_, &mut sn);
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    (sn == 0).then_some(r)
}

/// RFC 9162 §2.1.3.2: true when `path` proves `leaf` (a leaf hash, not the data) at `index` in
/// the tree of `tree_size` leaves whose root is `root`. Our own code, not rs_merkle's.
///
/// `tree_size` is taken on trust, as in the RFC: trees of several sizes can share a path's
/// shape (leaf 0 of 3 leaves and of 4), so the caller takes the size from a signed header.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    path: &[Hash],
    root: &Hash,
) -> bool {
    root_from_inclusion(leaf, index, tree_size, path).is_some_and(|r| r == *root)
}

/// Largest power of two strictly less than `n` (n > 1).
fn split_point(n: usize) -> usize {
    debug_assert!(n > 1, "a split needs at least two leaves");
    let k = n.next_power_of_two() / 2;
    if k == n {
        n / 2
    } else {
        k
    }
}

/// RFC 6962 §2.1.2 SUBPROOF(m, D[n], b).
fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.extend(root(leaves));
        }
        return;
    }
    let k = split_point(n);
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.extend(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.extend(root(&leaves[..k]));
    }
}

/// RFC 6962 §2.1.2 PROOF(m, D[n]): proves the tree of the first `old_size` leaves is a prefix of
/// the tree of all `leaves`. Empty when `old_size == n`; `None` when `old_size` is 0 or > n.
pub fn consistency_proof(leaves: &[Hash], old_size: usize) -> Option<Vec<Hash>> {
    if old_size == 0 || old_size > leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    subproof(old_size, leaves, true, &mut out);
    Some(out)
}

/// RFC 9162 §2.1.4.2: true when `proof` shows the tree of `old_size` leaves with root `old_root`
/// is a prefix of the tree of `new_size` leaves with root `new_root`. Equal sizes need an empty
/// proof and equal roots; an empty old tree is rejected (it has no root to compare).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> bool {
    if old_size == 0 || old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                shift_while_even(&mut fn_, &mut sn);
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *old_root && sr == *new_root && sn == 0
}

#[cfg(test)]
mod tests;
