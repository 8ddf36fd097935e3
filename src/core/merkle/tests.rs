//! Tests of the Merkle module against the recursive definitions of RFC 6962 §2.1 (MTH, PATH,
//! SUBPROOF) written out naively here, the RFC's own 7-leaf example, and the Certificate
//! Transparency test vectors. Every tampered proof must fail.
#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(format!("event-{i}").as_bytes()))
        .collect()
}

/// RFC 6962 MTH(D[n]), literally (over leaf hashes).
fn naive_mth(d: &[Hash]) -> Hash {
    match d.len() {
        1 => d[0],
        n => {
            let k = naive_k(n);
            node_hash(&naive_mth(&d[..k]), &naive_mth(&d[k..]))
        }
    }
}

/// The largest power of two smaller than n, by counting up.
fn naive_k(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 6962 PATH(m, D[n]), literally.
fn naive_path(m: usize, d: &[Hash]) -> Vec<Hash> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = naive_k(n);
    if m < k {
        let mut p = naive_path(m, &d[..k]);
        p.push(naive_mth(&d[k..]));
        p
    } else {
        let mut p = naive_path(m - k, &d[k..]);
        p.push(naive_mth(&d[..k]));
        p
    }
}

/// RFC 6962 SUBPROOF(m, D[n], b), literally.
fn naive_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![naive_mth(d)] };
    }
    let k = naive_k(n);
    if m <= k {
        let mut p = naive_subproof(m, &d[..k], b);
        p.push(naive_mth(&d[k..]));
        p
    } else {
        let mut p = naive_subproof(m - k, &d[k..], false);
        p.push(naive_mth(&d[..k]));
        p
    }
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

fn hex32(s: &str) -> Hash {
    crate::core::hex::decode_array(s).unwrap()
}

#[test]
fn hashes_leaves_and_nodes_with_the_rfc_prefixes() {
    // SHA-256 of the single byte 0x00: the CT leaf hash of the empty entry.
    assert_eq!(
        leaf_hash(b""),
        hex32("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    );
    let (l, r) = (leaf_hash(b"l"), leaf_hash(b"r"));
    assert_eq!(node_hash(&l, &r), sha256(&[&[1], &l, &r]));
    assert_ne!(node_hash(&l, &r), node_hash(&r, &l));
}

#[test]
fn roots_match_the_certificate_transparency_vectors() {
    let inputs: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];
    let roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let hashed: Vec<Hash> = inputs.iter().map(|d| leaf_hash(d)).collect();
    for (n, expected) in (1..=8).zip(roots) {
        assert_eq!(root(&hashed[..n]), Some(hex32(expected)), "n = {n}");
    }
}

#[test]
fn root_equals_the_recursive_mth_for_1_to_200_leaves() {
    let all = leaves(200);
    for n in 1..=200 {
        assert_eq!(root(&all[..n]), Some(naive_mth(&all[..n])), "n = {n}");
    }
}

#[test]
fn an_empty_tree_has_no_root_path_or_consistency_proof() {
    assert_eq!(root(&[]), None);
    assert_eq!(inclusion_path(&[], 0), None);
    assert_eq!(inclusion_path(&leaves(3), 3), None);
    assert_eq!(consistency_proof(&leaves(3), 0), None);
    assert_eq!(consistency_proof(&leaves(3), 4), None);
}

/// RFC 6962 §2.1.3, the tree of seven leaves d0..d6 with nodes a..l.
#[test]
fn proofs_match_the_rfcs_seven_leaf_example() {
    let d = leaves(7);
    let [a, b, c, dd, e, f, j] = [d[0], d[1], d[2], d[3], d[4], d[5], d[6]];
    let (g, h, i) = (node_hash(&a, &b), node_hash(&c, &dd), node_hash(&e, &f));
    let (k, l) = (node_hash(&g, &h), node_hash(&i, &j));
    assert_eq!(root(&d), Some(node_hash(&k, &l)));
    assert_eq!(inclusion_path(&d, 0), Some(vec![b, h, l]));
    assert_eq!(inclusion_path(&d, 3), Some(vec![c, g, l]));
    assert_eq!(inclusion_path(&d, 4), Some(vec![f, j, k]));
    assert_eq!(inclusion_path(&d, 6), Some(vec![i, k]));
    assert_eq!(consistency_proof(&d, 3), Some(vec![c, dd, g, l]));
    assert_eq!(consistency_proof(&d, 4), Some(vec![l]));
    assert_eq!(consistency_proof(&d, 6), Some(vec![i, j, k]));
    assert_eq!(consistency_proof(&d, 7), Some(vec![]));
}

#[test]
fn every_audit_path_is_the_recursive_path_and_verifies() {
    let all = leaves(130);
    for n in 1..=130 {
        let d = &all[..n];
        let r = root(d).unwrap();
        for m in 0..n {
            let path = inclusion_path(d, m).unwrap();
            assert_eq!(path, naive_path(m, d), "n = {n}, m = {m}");
            assert!(verify_inclusion(&d[m], m as u64, n as u64, &path, &r));
        }
    }
}

#[test]
fn audit_paths_verify_in_larger_trees() {
    for n in [255, 256, 257, 1000, 1023, 1024, 1025] {
        let d = leaves(n);
        let r = root(&d).unwrap();
        for m in [0, 1, n / 2, n - 2, n - 1] {
            let path = inclusion_path(&d, m).unwrap();
            assert!(
                verify_inclusion(&d[m], m as u64, n as u64, &path, &r),
                "n {n} m {m}"
            );
        }
    }
}

#[test]
fn a_tampered_inclusion_proof_fails() {
    for n in [1usize, 2, 3, 5, 8, 13, 37, 64, 100] {
        let d = leaves(n);
        let r = root(&d).unwrap();
        for m in 0..n {
            let path = inclusion_path(&d, m).unwrap();
            let (idx, size) = (m as u64, n as u64);
            for bit in [0, 7, 100, 255] {
                assert!(!verify_inclusion(&flip(&d[m], bit), idx, size, &path, &r));
                assert!(!verify_inclusion(&d[m], idx, size, &path, &flip(&r, bit)));
                for p in 0..path.len() {
                    let mut bad = path.clone();
                    bad[p] = flip(&bad[p], bit);
                    assert!(!verify_inclusion(&d[m], idx, size, &bad, &r));
                }
            }
            for other in (0..n + 2).filter(|&o| o != m) {
                assert!(!verify_inclusion(&d[m], other as u64, size, &path, &r));
            }
            // A size whose audit path for `m` has another length never verifies; sizes whose
            // path has the same shape may (see the next test), so sizes come from a signature.
            let wide = leaves(n + 3);
            for other_size in (1..n + 3).filter(|&s| s != n) {
                let accepted = verify_inclusion(&d[m], idx, other_size as u64, &path, &r);
                if m >= other_size || naive_path(m, &wide[..other_size]).len() != path.len() {
                    assert!(!accepted, "n {n} m {m} size {other_size}");
                }
            }
            assert!(!verify_inclusion(&d[m], idx, 0, &path, &r));
            let mut longer = path.clone();
            longer.push(r);
            assert!(!verify_inclusion(&d[m], idx, size, &longer, &r));
            if let Some((_, shorter)) = path.split_last() {
                assert!(!verify_inclusion(&d[m], idx, size, shorter, &r));
            }
        }
    }
}

/// RFC 9162's verifier takes the tree size on trust: leaf 0 of a 3-leaf tree has the path
/// [b, c], which is also a well-shaped path for leaf 0 of a 4-leaf tree. This is why a proof's
/// `tree_size` must equal the signed header's `count`.
#[test]
fn an_audit_path_alone_does_not_pin_the_tree_size() {
    let d = leaves(3);
    let (r, path) = (root(&d).unwrap(), inclusion_path(&d, 0).unwrap());
    assert!(verify_inclusion(&d[0], 0, 3, &path, &r));
    assert!(verify_inclusion(&d[0], 0, 4, &path, &r));
    assert!(!verify_inclusion(&d[0], 0, 2, &path, &r));
    assert!(!verify_inclusion(&d[0], 0, 5, &path, &r));
}

#[test]
fn every_consistency_proof_is_the_recursive_one_and_verifies() {
    let all = leaves(70);
    for n in 1..=70 {
        let d = &all[..n];
        let new_root = root(d).unwrap();
        for m in 1..=n {
            let proof = consistency_proof(d, m).unwrap();
            assert_eq!(proof, naive_subproof(m, d, true), "m {m} n {n}");
            let old_root = root(&d[..m]).unwrap();
            let (old, new) = (m as u64, n as u64);
            assert!(verify_consistency(old, new, &proof, &old_root, &new_root));
        }
    }
}

#[test]
fn a_tampered_consistency_proof_fails() {
    for n in [2usize, 3, 7, 8, 9, 37, 64] {
        let d = leaves(n);
        let new_root = root(&d).unwrap();
        for m in 1..n {
            let proof = consistency_proof(&d, m).unwrap();
            let old_root = root(&d[..m]).unwrap();
            let (old, new) = (m as u64, n as u64);
            let ok = |o: u64, nw: u64, p: &[Hash], or: &Hash, nr: &Hash| {
                verify_consistency(o, nw, p, or, nr)
            };
            assert!(!ok(old, new, &proof, &flip(&old_root, 3), &new_root));
            assert!(!ok(old, new, &proof, &old_root, &flip(&new_root, 3)));
            for p in 0..proof.len() {
                let mut bad = proof.clone();
                bad[p] = flip(&bad[p], 200);
                assert!(
                    !ok(old, new, &bad, &old_root, &new_root),
                    "m {m} n {n} p {p}"
                );
            }
            assert!(!ok(0, new, &proof, &old_root, &new_root));
            assert!(!ok(new + 1, new, &proof, &old_root, &new_root));
            assert!(!ok(old, new, &[], &old_root, &new_root));
            // A different old tree (one more or one fewer leaf) has a different root.
            if m + 1 < n {
                assert!(!ok(old + 1, new, &proof, &old_root, &new_root));
            }
        }
        assert!(verify_consistency(
            n as u64,
            n as u64,
            &[],
            &new_root,
            &new_root
        ));
        assert!(!verify_consistency(
            n as u64,
            n as u64,
            &[new_root],
            &new_root,
            &new_root
        ));
    }
}

proptest! {
    #[test]
    fn any_leaf_of_any_tree_is_proven_and_a_flipped_bit_is_not(
        n in 1usize..600,
        pick in any::<prop::sample::Index>(),
        bit in 0usize..256,
    ) {
        let d = leaves(n);
        let m = pick.index(n);
        let r = root(&d).unwrap();
        let path = inclusion_path(&d, m).unwrap();
        prop_assert!(verify_inclusion(&d[m], m as u64, n as u64, &path, &r));
        prop_assert!(!verify_inclusion(&flip(&d[m], bit), m as u64, n as u64, &path, &r));
        if !path.is_empty() {
            let mut bad = path.clone();
            let p = bit % bad.len();
            bad[p] = flip(&bad[p], bit);
            prop_assert!(!verify_inclusion(&d[m], m as u64, n as u64, &bad, &r));
        }
    }

    #[test]
    fn any_prefix_is_consistent_with_its_extension(n in 1usize..300, m_pick in any::<prop::sample::Index>()) {
        let d = leaves(n);
        let m = m_pick.index(n) + 1;
        let proof = consistency_proof(&d, m).unwrap();
        let (old_root, new_root) = (root(&d[..m]).unwrap(), root(&d).unwrap());
        prop_assert!(verify_consistency(m as u64, n as u64, &proof, &old_root, &new_root));
    }
}
