use crate::request::TokenId;

/// Hash of one full block, chained to the hash of the block before it, so equal hashes mean
/// an equal prefix up to and including this block (verified against tokens on a hit).
pub(crate) fn chain_block_hash(parent: u64, tokens: &[TokenId]) -> u64 {
    let mut hash = mix(parent ^ 0x9e37_79b9_7f4a_7c15);
    for &token in tokens {
        hash = mix(hash ^ u64::from(token));
    }
    // Zero marks an unhashed block in the block manager.
    mix(hash ^ tokens.len() as u64).max(1)
}

/// The first block's parent.
pub(crate) const ROOT_HASH: u64 = 0x243f_6a88_85a3_08d3;

fn mix(mut x: u64) -> u64 {
    // splitmix64's finalizer: every input bit affects every output bit.
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_parent_and_every_token() {
        let base = chain_block_hash(ROOT_HASH, &[1, 2, 3, 4]);
        assert_eq!(base, chain_block_hash(ROOT_HASH, &[1, 2, 3, 4]));
        assert_ne!(base, chain_block_hash(ROOT_HASH, &[1, 2, 4, 3]));
        assert_ne!(base, chain_block_hash(base, &[1, 2, 3, 4]));
    }
}
