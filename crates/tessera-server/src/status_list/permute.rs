//! Which index a list hands out next: a keyed permutation of `0..CAPACITY`, so that indices
//! are not in issuance order and a relying party cannot count or correlate other credentials
//! from the index it sees (draft-ietf-oauth-status-list, privacy considerations). A four-round
//! Feistel network over two 10-bit halves: a bijection whatever the keys, so no index is ever
//! handed out twice within a list. This is obfuscation, not encryption.

/// Bits of an index: a list holds `1 << INDEX_BITS` entries.
pub(super) const INDEX_BITS: u32 = 20;
const HALF: u32 = INDEX_BITS / 2;
const MASK: u32 = (1 << HALF) - 1;

/// A permutation of `0..1 << INDEX_BITS` chosen by four random round keys.
#[derive(Debug, Clone)]
pub(super) struct Permutation {
    keys: [u64; 4],
}

impl Permutation {
    /// Returns the permutation of `keys`.
    pub(super) fn new(keys: [u64; 4]) -> Self {
        Permutation { keys }
    }

    /// Returns the image of `n` (its low [`INDEX_BITS`] bits), below `1 << INDEX_BITS`.
    pub(super) fn apply(&self, n: u32) -> u32 {
        let (mut left, mut right) = ((n >> HALF) & MASK, n & MASK);
        for key in self.keys {
            let f = (mix(u64::from(right) ^ key) as u32) & MASK;
            (left, right) = (right, left ^ f);
        }
        (left << HALF) | right
    }
}

/// The SplitMix64 finalizer: every input bit affects every output bit.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_is_handed_out_exactly_once_and_not_in_order() {
        let p = Permutation::new([1, 2, 3, 4]);
        let size = 1usize << INDEX_BITS;
        let mut seen = vec![false; size];
        for n in 0..size as u32 {
            let idx = p.apply(n) as usize;
            assert!(idx < size);
            assert!(!seen[idx], "{idx} twice");
            seen[idx] = true;
        }
        let first: Vec<u32> = (0..8).map(|n| p.apply(n)).collect();
        assert!(first.windows(2).any(|w| w[1] != w[0] + 1), "{first:?}");
        let other = Permutation::new([5, 6, 7, 8]);
        assert_ne!(first, (0..8).map(|n| other.apply(n)).collect::<Vec<_>>());
    }
}
