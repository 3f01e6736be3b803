//! The RFC 9162 §2.1 Merkle tree: leaf and node hashes, a compact range (the roots of
//! the perfect subtrees that make up a tree of any size, enough to extend it and compute
//! its root), and inclusion and consistency proofs with their verification.

use crate::record::Hash;

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    for (o, b) in out.iter_mut().zip(ctx.finish().as_ref()) {
        *o = *b;
    }
    out
}

/// MTH of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256(&[&[0u8], data])
}

/// SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // One-shot over a stack buffer: no digest context per node.
    let mut b = [1u8; 65];
    if let Some(l) = b.get_mut(1..33) {
        l.copy_from_slice(left);
    }
    if let Some(r) = b.get_mut(33..) {
        r.copy_from_slice(right);
    }
    crate::record::sha256(&b)
}

/// The roots of the perfect subtrees of a tree of `size` leaves, largest (leftmost)
/// first: one per set bit of `size`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    hashes: Vec<Hash>,
}

impl CompactRange {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a range from stored hashes (a prune statement); `None` when the number
    /// of hashes does not fit `size`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Option<Self> {
        (hashes.len() == size.count_ones() as usize).then_some(Self { size, hashes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut n = self.size;
        while n & 1 == 1 {
            let Some(left) = self.hashes.pop() else { break };
            h = node_hash(&left, &h);
            n >>= 1;
        }
        self.hashes.push(h);
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// Largest power of two smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH(D[n]) over leaf hashes.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let k = split(leaves.len());
            let (l, r) = leaves.split_at(k);
            node_hash(&root_of(l), &root_of(r))
        }
    }
}

/// PATH(m, D[n]) of RFC 9162 §2.1.3.1: the inclusion proof of leaf `m`.
pub fn inclusion_proof(leaves: &[Hash], m: usize) -> Option<Vec<Hash>> {
    if m >= leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    path(leaves, m, &mut out);
    Some(out)
}

fn path(d: &[Hash], m: usize, out: &mut Vec<Hash>) {
    if d.len() <= 1 {
        return;
    }
    let k = split(d.len());
    let (l, r) = d.split_at(k);
    if m < k {
        path(l, m, out);
        out.push(root_of(r));
    } else {
        path(r, m - k, out);
        out.push(root_of(l));
    }
}

/// PROOF(m, D[n]) of RFC 9162 §2.1.4.1: consistency of the first `m` leaves with all.
pub fn consistency_proof(leaves: &[Hash], m: usize) -> Option<Vec<Hash>> {
    if m == 0 || m > leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    subproof(m, leaves, true, &mut out);
    Some(out)
}

fn subproof(m: usize, d: &[Hash], b: bool, out: &mut Vec<Hash>) {
    let n = d.len();
    if m == n {
        if !b {
            out.push(root_of(d));
        }
        return;
    }
    let k = split(n);
    let (l, r) = d.split_at(k);
    if m <= k {
        subproof(m, l, b, out);
        out.push(root_of(r));
    } else {
        subproof(m - k, r, false, out);
        out.push(root_of(l));
    }
}

/// RFC 9162 §2.1.3.2.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && &r == root
}

/// RFC 9162 §2.1.4.2.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first == 0 || first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, *first_root);
    }
    let (mut f_n, mut s_n) = (first - 1, second - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let Some((first_hash, rest)) = path.split_first() else {
        return false;
    };
    let (mut fr, mut sr) = (*first_hash, *first_hash);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    &fr == first_root && &sr == second_root && s_n == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn rfc6962_reference_roots() {
        // Test vectors of the reference implementation (certificate-transparency-go,
        // merkle/testonly): leaves are these byte strings.
        let data: [&[u8]; 8] = [
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
        let mut cr = CompactRange::new();
        let mut ls = Vec::new();
        for (d, want) in data.iter().zip(roots) {
            let l = leaf_hash(d);
            cr.push(l);
            ls.push(l);
            assert_eq!(crate::record::hex(&cr.root()), want);
            assert_eq!(crate::record::hex(&root_of(&ls)), want);
        }
        assert_eq!(
            crate::record::hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    proptest! {
        #[test]
        fn proofs_verify_and_tampering_fails(n in 1usize..70, a in 0usize..70, b in 1usize..70) {
            let ls = leaves(n);
            let root = root_of(&ls);
            let mut cr = CompactRange::new();
            for l in &ls { cr.push(*l); }
            prop_assert_eq!(cr.root(), root);
            let m = a % n;
            let p = inclusion_proof(&ls, m).unwrap();
            prop_assert!(verify_inclusion(m as u64, n as u64, &ls[m], &p, &root));
            prop_assert!(!verify_inclusion(m as u64, n as u64, &leaf_hash(b"x"), &p, &root));
            if n > 1 {
                prop_assert!(!verify_inclusion(((m + 1) % n) as u64, n as u64, &ls[m], &p, &root));
            }
            let old = 1 + (b - 1) % n;
            let old_root = root_of(&ls[..old]);
            let c = consistency_proof(&ls, old).unwrap();
            prop_assert!(verify_consistency(old as u64, n as u64, &old_root, &root, &c));
            prop_assert!(!verify_consistency(old as u64, n as u64, &leaf_hash(b"y"), &root, &c));
        }
    }
}
