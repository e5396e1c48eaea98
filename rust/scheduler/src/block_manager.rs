use std::collections::HashMap;

use crate::evictable_blocks::EvictableBlocks;
use crate::request::{BlockId, TokenId};

const NO_HASH: u64 = 0;

/// Paged KV blocks: reference counts, a free list, and (with prefix caching) a table of
/// full blocks by chained hash. A cached block whose count drops to zero stays findable in
/// least-recently-freed order until a new allocation needs it.
///
/// Every block is in exactly one state: used (count > 0), cached (count 0, hashed, in the
/// eviction list) or free (count 0, unhashed, on the free list).
#[derive(Debug, Clone)]
pub struct BlockManager {
    block_size: u32,
    num_blocks: u32,
    ref_counts: Vec<u32>,
    free_ids: Vec<BlockId>,
    num_used: u32,
    hashes: Vec<u64>,
    parent_hashes: Vec<u64>,
    tokens: Vec<TokenId>,
    block_by_hash: HashMap<u64, BlockId>,
    evictable: EvictableBlocks,
}

impl BlockManager {
    pub fn new(num_blocks: u32, block_size: u32, enable_prefix_caching: bool) -> Self {
        let n = num_blocks as usize;
        let caching_len = |len: usize| if enable_prefix_caching { len } else { 0 };
        BlockManager {
            block_size,
            num_blocks,
            ref_counts: vec![0; n],
            // Reversed so that blocks are handed out in increasing id order.
            free_ids: (0..num_blocks).rev().collect(),
            num_used: 0,
            hashes: vec![NO_HASH; caching_len(n)],
            parent_hashes: vec![NO_HASH; caching_len(n)],
            tokens: vec![0; caching_len(n * block_size as usize)],
            block_by_hash: HashMap::new(),
            evictable: EvictableBlocks::new(if enable_prefix_caching { num_blocks } else { 0 }),
        }
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    pub fn num_blocks(&self) -> u32 {
        self.num_blocks
    }

    /// Blocks an allocation can take: never-hashed free blocks plus evictable cached ones.
    #[inline]
    pub fn num_allocatable(&self) -> u32 {
        self.free_ids.len() as u32 + self.evictable.len()
    }

    pub fn num_free(&self) -> u32 {
        self.free_ids.len() as u32
    }

    pub fn num_cached(&self) -> u32 {
        self.evictable.len()
    }

    pub fn num_used(&self) -> u32 {
        self.num_used
    }

    pub fn blocks_for(&self, num_tokens: u32) -> u32 {
        num_tokens.div_ceil(self.block_size)
    }

    /// Takes a block, evicting the least recently freed cached block when no plain free one is left.
    pub fn allocate(&mut self) -> Option<BlockId> {
        let block = match self.free_ids.pop() {
            Some(block) => block,
            None => {
                let block = self.evictable.pop_oldest()?;
                self.forget_hash(block);
                block
            }
        };
        self.ref_counts[block as usize] = 1;
        self.num_used += 1;
        Some(block)
    }

    /// Drops one reference. Returns false (and changes nothing) for a block nobody holds.
    pub fn release(&mut self, block: BlockId) -> bool {
        let Some(count) = self.ref_counts.get_mut(block as usize) else {
            return false;
        };
        if *count == 0 {
            return false;
        }
        *count -= 1;
        if *count == 0 {
            self.num_used -= 1;
            if self.is_hashed(block) {
                self.evictable.push(block);
            } else {
                self.free_ids.push(block);
            }
        }
        true
    }

    pub fn release_all(&mut self, blocks: &[BlockId]) {
        // Last block first, so a request's tail is evicted before the prefix others may share.
        for &block in blocks.iter().rev() {
            let released = self.release(block);
            debug_assert!(released, "block {block} released twice");
        }
    }

    /// The cached block holding exactly `tokens` after the prefix hashed `parent_hash`.
    pub fn lookup(&self, hash: u64, parent_hash: u64, tokens: &[TokenId]) -> Option<BlockId> {
        let &block = self.block_by_hash.get(&hash)?;
        let b = block as usize;
        let size = self.block_size as usize;
        let verified = self.parent_hashes[b] == parent_hash
            && self.tokens[b * size..(b + 1) * size] == *tokens;
        verified.then_some(block)
    }

    /// Whether taking a reference to `block` removes it from the allocatable pool.
    pub fn is_evictable(&self, block: BlockId) -> bool {
        self.evictable.contains(block)
    }

    /// Takes a reference to a cached block found by `lookup`.
    pub fn acquire_cached(&mut self, block: BlockId) {
        if self.is_evictable(block) {
            self.evictable.remove(block);
        }
        let count = &mut self.ref_counts[block as usize];
        if *count == 0 {
            self.num_used += 1;
        }
        *count += 1;
    }

    /// Makes a computed full block findable. A block whose content is already cached elsewhere
    /// stays unregistered and is freed normally.
    pub fn register(&mut self, block: BlockId, hash: u64, parent_hash: u64, tokens: &[TokenId]) {
        if self.is_hashed(block) || self.block_by_hash.contains_key(&hash) {
            return;
        }
        let b = block as usize;
        let size = self.block_size as usize;
        self.hashes[b] = hash;
        self.parent_hashes[b] = parent_hash;
        self.tokens[b * size..(b + 1) * size].copy_from_slice(tokens);
        self.block_by_hash.insert(hash, block);
    }

    pub fn ref_count(&self, block: BlockId) -> u32 {
        self.ref_counts[block as usize]
    }

    fn is_hashed(&self, block: BlockId) -> bool {
        !self.hashes.is_empty() && self.hashes[block as usize] != NO_HASH
    }

    fn forget_hash(&mut self, block: BlockId) {
        let hash = std::mem::replace(&mut self.hashes[block as usize], NO_HASH);
        self.block_by_hash.remove(&hash);
    }

    /// Checks the block states against the reference counts that requests should hold.
    pub fn check_invariants(&self, expected_ref_counts: &[u32]) -> Result<(), String> {
        if expected_ref_counts != self.ref_counts.as_slice() {
            let block = (0..self.num_blocks as usize)
                .find(|&b| expected_ref_counts[b] != self.ref_counts[b])
                .unwrap_or(0);
            return Err(format!(
                "block {block} has ref count {} but requests hold {}",
                self.ref_counts[block], expected_ref_counts[block]
            ));
        }
        let used = self.ref_counts.iter().filter(|&&c| c > 0).count() as u32;
        if used != self.num_used {
            return Err(format!(
                "{used} blocks referenced but num_used is {}",
                self.num_used
            ));
        }
        let mut seen = vec![false; self.num_blocks as usize];
        for &block in &self.free_ids {
            let b = block as usize;
            if seen[b] || self.ref_counts[b] != 0 || self.is_hashed(block) {
                return Err(format!(
                    "free block {block} is listed twice, referenced or hashed"
                ));
            }
            seen[b] = true;
        }
        for block in 0..self.num_blocks {
            let b = block as usize;
            let cached = self.is_hashed(block) && self.ref_counts[b] == 0;
            if cached != (self.is_evictable(block)) {
                return Err(format!(
                    "block {block}: cached={cached} but eviction list disagrees"
                ));
            }
            if cached && seen[b] {
                return Err(format!("block {block} is both free and cached"));
            }
        }
        let total = self.num_free() + self.num_used + self.num_cached();
        if total != self.num_blocks {
            return Err(format!(
                "free {} + used {} + cached {} = {total}, not {} blocks",
                self.num_free(),
                self.num_used,
                self.num_cached(),
                self.num_blocks
            ));
        }
        for (&hash, &block) in &self.block_by_hash {
            if self.hashes[block as usize] != hash {
                return Err(format!(
                    "hash table points at block {block}, which holds another hash"
                ));
            }
        }
        Ok(())
    }
}
