//! Read-only views of the scheduler's state, and its invariant check.

use crate::block_manager::BlockManager;
use crate::request::{BlockId, RequestId, RequestView, TokenId};
use crate::scheduler::{PrefixCacheStats, Scheduler};

impl Scheduler {
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    pub fn num_batches_in_flight(&self) -> usize {
        self.batches_in_flight.len()
    }

    pub fn block_manager(&self) -> &BlockManager {
        &self.blocks
    }

    pub fn prefix_cache_stats(&self) -> PrefixCacheStats {
        self.prefix_cache
    }

    /// The leading tokens of a prompt `token_ids` that the prefix cache holds now, in whole
    /// blocks: what admitting it would find cached if nothing were evicted first (0 without
    /// prefix caching).
    pub fn num_cached_prefix_tokens(&self, token_ids: &[TokenId]) -> u32 {
        let mut num_blocks = 0;
        self.walk_cached_prefix(token_ids, |_, _| num_blocks += 1);
        num_blocks * self.config.block_size
    }

    pub fn contains(&self, id: RequestId) -> bool {
        self.slot_by_id.contains_key(&id)
    }

    /// The request's KV block table, or `None` for an unknown id.
    pub fn block_table(&self, id: RequestId) -> Option<&[BlockId]> {
        let slot = *self.slot_by_id.get(&id)?;
        Some(&self.request(slot).block_ids)
    }

    pub fn request_view(&self, id: RequestId) -> Option<RequestView> {
        let slot = *self.slot_by_id.get(&id)?;
        Some(self.request(slot).view())
    }

    pub fn running_ids(&self) -> Vec<RequestId> {
        self.running.iter().map(|&s| self.request(s).id).collect()
    }

    pub fn waiting_ids(&self) -> Vec<RequestId> {
        self.waiting.values().map(|&s| self.request(s).id).collect()
    }

    /// The longest sequence a request may reach before it finishes with `Length`.
    pub fn max_request_tokens(&self) -> u32 {
        self.max_request_tokens
    }

    /// Verifies block conservation and bookkeeping; for tests and debugging.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let mut held = vec![0u32; self.config.num_blocks as usize];
        for request in self.slots.iter().flatten() {
            for &block in &request.block_ids {
                held[block as usize] += 1;
            }
            if !request.is_running && !request.block_ids.is_empty() {
                return Err(format!("waiting request {} holds blocks", request.id));
            }
            if request.num_computed_tokens > request.block_ids.len() as u32 * self.config.block_size
            {
                return Err(format!("request {} computed beyond its blocks", request.id));
            }
        }
        self.blocks.check_invariants(&held)?;
        if self.running.len() > self.config.max_num_seqs as usize {
            return Err(format!("{} running > max_num_seqs", self.running.len()));
        }
        let keys: Vec<_> = self.running.iter().map(|&s| self.request(s).key).collect();
        if keys.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err("running list is out of queue order".into());
        }
        if self.running.len() + self.waiting.len() != self.slot_by_id.len() {
            return Err("a request is neither waiting nor running".into());
        }
        Ok(())
    }
}
