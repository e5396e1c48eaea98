//! Admitting a waiting request: its cached prefix, the memory check, its first blocks.

use crate::batch::Batch;
use crate::block_manager::BlockManager;
use crate::prefix_hash::{chain_block_hash, ROOT_HASH};
use crate::request::{BlockId, Request, TokenId};
use crate::scheduler::Scheduler;

/// A planned admission: cached prefix blocks found and fresh blocks still to take.
pub(crate) struct Admission {
    hit_blocks: Vec<BlockId>,
    hit_hashes: Vec<u64>,
    num_new_blocks: u32,
}

impl Admission {
    pub fn num_cached_tokens(&self, block_size: u32) -> u32 {
        self.hit_blocks.len() as u32 * block_size
    }
}

impl Scheduler {
    /// Finds the cached prefix and checks memory for admitting a waiting request with blocks for
    /// `reserve_tokens`; `None` if it would dip below the free-block watermark.
    pub(crate) fn plan_admission(&self, slot: u32, reserve_tokens: u32) -> Option<Admission> {
        let request = self.request(slot);
        let (hit_blocks, hit_hashes) = self.find_cached_prefix(request);
        let num_revived = hit_blocks
            .iter()
            .filter(|&&b| self.blocks.is_evictable(b))
            .count() as u32;
        let num_new_blocks = self
            .blocks
            .blocks_for(reserve_tokens)
            .saturating_sub(hit_blocks.len() as u32);
        let taken = num_new_blocks + num_revived;
        let fits = self.blocks.num_allocatable() >= taken + self.watermark_blocks;
        fits.then_some(Admission {
            hit_blocks,
            hit_hashes,
            num_new_blocks,
        })
    }

    /// Moves a waiting request to running with the planned blocks, staged on `batch`.
    pub(crate) fn admit(&mut self, slot: u32, admission: Admission, now: f64, batch: &mut Batch) {
        for &block in &admission.hit_blocks {
            self.blocks.acquire_cached(block);
            batch.add_new_block(block);
        }
        let mut block_ids = admission.hit_blocks;
        for _ in 0..admission.num_new_blocks {
            let block = self
                .blocks
                .allocate()
                .expect("admission planned free blocks");
            block_ids.push(block);
            batch.add_new_block(block);
        }
        let block_size = self.config.block_size;
        let caching = self.config.enable_prefix_caching;
        let request = self.request_mut(slot);
        let num_cached_tokens = admission.hit_hashes.len() as u32 * block_size;
        let num_queried_tokens = if caching && request.has_token_ids() {
            request.num_tokens()
        } else {
            0
        };
        request.num_computed_tokens = num_cached_tokens;
        if request.first_scheduled_at.is_none() {
            request.num_cached_tokens = num_cached_tokens;
        }
        request.block_hashes = admission.hit_hashes;
        request.block_ids = block_ids;
        request.is_running = true;
        request.first_scheduled_at.get_or_insert(now);
        let key = request.key;
        self.prefix_cache.num_queried_tokens += u64::from(num_queried_tokens);
        self.prefix_cache.num_hit_tokens += u64::from(num_cached_tokens);
        self.waiting.remove(&key);
        let position = self.running.partition_point(|&s| self.request(s).key < key);
        self.running.insert(position, slot);
    }

    fn find_cached_prefix(&self, request: &Request) -> (Vec<BlockId>, Vec<u64>) {
        let mut blocks = Vec::new();
        let mut hashes = Vec::new();
        if request.has_token_ids() {
            self.walk_cached_prefix(&request.token_ids, |block, hash| {
                blocks.push(block);
                hashes.push(hash);
            });
        }
        (blocks, hashes)
    }

    /// Calls `on_hit(block, hash)` for each leading full block of `token_ids` the prefix cache
    /// holds, in order, stopping at the first it lacks (never the block of the last token, which
    /// must be computed again to produce logits).
    pub(crate) fn walk_cached_prefix(
        &self,
        token_ids: &[TokenId],
        mut on_hit: impl FnMut(BlockId, u64),
    ) {
        if !self.config.enable_prefix_caching || token_ids.is_empty() {
            return;
        }
        let size = self.config.block_size as usize;
        let cacheable = (token_ids.len() - 1) / size;
        let mut parent = ROOT_HASH;
        for chunk in token_ids.chunks_exact(size).take(cacheable) {
            let hash = chain_block_hash(parent, chunk);
            let Some(block) = self.blocks.lookup(hash, parent, chunk) else {
                break;
            };
            on_hit(block, hash);
            parent = hash;
        }
    }
}

/// Hashes and registers the request's blocks that became full of computed tokens.
pub(crate) fn register_computed_blocks(
    blocks: &mut BlockManager,
    request: &mut Request,
    block_size: u32,
) {
    let size = block_size as usize;
    let num_full = (request.num_computed_tokens / block_size) as usize;
    while request.block_hashes.len() < num_full {
        let index = request.block_hashes.len();
        let parent = request.block_hashes.last().copied().unwrap_or(ROOT_HASH);
        let tokens = &request.token_ids[index * size..(index + 1) * size];
        let hash = chain_block_hash(parent, tokens);
        blocks.register(request.block_ids[index], hash, parent, tokens);
        request.block_hashes.push(hash);
    }
}
