use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch::{Batch, ScheduledRequest};
use crate::block_manager::BlockManager;
use crate::config::{Order, SchedulerConfig};
use crate::error::{Result, SchedulerError};
use crate::policy;
use crate::prefix_hash::{chain_block_hash, ROOT_HASH};
use crate::request::{
    BlockId, FinishReason, FinishedRequest, NewRequest, QueueKey, Request, RequestId, RequestView,
    TokenId,
};

static NEXT_SCHEDULER_ID: AtomicU64 = AtomicU64::new(1);

/// What the caller learned from running a batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchOutputs<'a> {
    /// One sampled token per request that `produces_token`, in batch order.
    pub sampled_token_ids: &'a [TokenId],
    /// Requests the caller stopped (EOS, a stop string), applied after the sampled tokens.
    pub finished_ids: &'a [RequestId],
    pub aborted_ids: &'a [RequestId],
}

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

/// The iteration-level scheduler. `schedule` decides a batch, the caller runs it, `update`
/// applies what it produced. All state changes happen inside these calls and `add`/`abort`.
#[derive(Debug, Clone)]
pub struct Scheduler {
    pub(crate) config: SchedulerConfig,
    pub(crate) blocks: BlockManager,
    slots: Vec<Option<Request>>,
    free_slots: Vec<u32>,
    slot_by_id: HashMap<RequestId, u32>,
    pub(crate) waiting: BTreeMap<QueueKey, u32>,
    /// Running requests' slots, in queue order: the first is served first, the last preempted first.
    pub(crate) running: Vec<u32>,
    next_seq: u64,
    next_batch_id: u64,
    batches_in_flight: Vec<u64>,
    scheduler_id: u64,
    watermark_blocks: u32,
    max_request_tokens: u32,
    /// Prefill chunk size per dynamic-chunking stage (one stage when chunking is static).
    chunk_sizes: Vec<u32>,
    pub(crate) decode_iters_since_prefill: u32,
    /// Scratch space for the lightllm peak projection.
    pub(crate) projection: Vec<(u32, u32)>,
    /// Running prefills met by the last decode pass, in running order.
    pub(crate) running_prefills: Vec<u32>,
    prefix_cache: PrefixCacheStats,
}

/// Prefix-cache lookups since the scheduler started, in tokens: every admission of a request
/// with token ids (re-admissions after preemption too) queries its whole sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixCacheStats {
    pub num_queried_tokens: u64,
    pub num_hit_tokens: u64,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Result<Scheduler> {
        config.validate()?;
        let chunk_sizes = policy::sarathi::chunk_size_stages(&config);
        Ok(Scheduler {
            blocks: BlockManager::new(
                config.num_blocks,
                config.block_size,
                config.enable_prefix_caching,
            ),
            slots: Vec::new(),
            free_slots: Vec::new(),
            slot_by_id: HashMap::new(),
            waiting: BTreeMap::new(),
            running: Vec::with_capacity(config.max_num_seqs as usize),
            next_seq: 0,
            next_batch_id: 0,
            batches_in_flight: Vec::new(),
            scheduler_id: NEXT_SCHEDULER_ID.fetch_add(1, Ordering::Relaxed),
            watermark_blocks: config.watermark_blocks(),
            max_request_tokens: config.max_request_tokens(),
            chunk_sizes,
            decode_iters_since_prefill: 0,
            projection: Vec::new(),
            running_prefills: Vec::new(),
            prefix_cache: PrefixCacheStats::default(),
            config,
        })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn add(&mut self, new: NewRequest) -> Result<()> {
        new.validate_shape()?;
        if self.slot_by_id.contains_key(&new.id) {
            return Err(SchedulerError::DuplicateRequest(new.id));
        }
        if new.num_prompt_tokens > self.config.max_model_len {
            return Err(new.reject(format!(
                "the prompt has {} tokens, more than max_model_len ({})",
                new.num_prompt_tokens, self.config.max_model_len
            )));
        }
        let admissible_blocks = self.config.num_blocks - self.watermark_blocks;
        let prompt_blocks = self.blocks.blocks_for(new.num_prompt_tokens);
        if prompt_blocks > admissible_blocks {
            return Err(new.reject(format!(
                "the prompt needs {prompt_blocks} KV blocks but the cache admits at most {admissible_blocks}"
            )));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let request = Request::new(new, seq, self.config.order == Order::Priority);
        let (id, key) = (request.id, request.key);
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(request);
                slot
            }
            None => {
                self.slots.push(Some(request));
                (self.slots.len() - 1) as u32
            }
        };
        self.slot_by_id.insert(id, slot);
        self.waiting.insert(key, slot);
        Ok(())
    }

    /// Removes a request wherever it is; a batch holding it still updates cleanly.
    pub fn abort(&mut self, id: RequestId) -> Result<FinishedRequest> {
        let slot = *self
            .slot_by_id
            .get(&id)
            .ok_or(SchedulerError::UnknownRequest(id))?;
        Ok(self.finish(slot, FinishReason::Aborted, true))
    }

    pub fn schedule(&mut self, now: f64) -> Result<Batch> {
        if self.batches_in_flight.len() as u32 >= self.config.max_batches_in_flight {
            return Err(SchedulerError::TooManyBatchesInFlight {
                limit: self.config.max_batches_in_flight,
            });
        }
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        let mut batch = Batch::new(id, self.scheduler_id, self.running.len() + 4);
        policy::schedule(self, now, &mut batch);
        self.batches_in_flight.push(id);
        Ok(batch)
    }

    /// Applies a batch's outputs. Everything is validated before anything changes, so a
    /// rejected call leaves the scheduler as it was. Returns the requests that finished.
    pub fn update(
        &mut self,
        batch: &Batch,
        outputs: BatchOutputs<'_>,
    ) -> Result<Vec<FinishedRequest>> {
        let position = self
            .batches_in_flight
            .iter()
            .position(|&id| id == batch.id)
            .filter(|_| batch.scheduler_id == self.scheduler_id)
            .ok_or_else(|| {
                SchedulerError::InvalidOutputs(format!(
                    "batch {} is not awaiting outputs (already updated, or from another scheduler)",
                    batch.id
                ))
            })?;
        if outputs.sampled_token_ids.len() != batch.num_producing() as usize {
            return Err(SchedulerError::InvalidOutputs(format!(
                "batch {} expects {} sampled tokens (one per request that produces a token), got {}",
                batch.id,
                batch.num_producing(),
                outputs.sampled_token_ids.len()
            )));
        }
        for &id in outputs.finished_ids.iter().chain(outputs.aborted_ids) {
            if !self.slot_by_id.contains_key(&id) {
                return Err(SchedulerError::UnknownRequest(id));
            }
        }
        self.batches_in_flight.swap_remove(position);

        let mut finished = Vec::new();
        let mut sampled = outputs.sampled_token_ids.iter();
        let block_size = self.config.block_size;
        let caching = self.config.enable_prefix_caching;
        for scheduled in &batch.requests {
            let token = if scheduled.produces_token {
                sampled.next().copied()
            } else {
                None
            };
            let Some(Some(request)) = self.slots.get_mut(scheduled.slot as usize) else {
                continue;
            };
            if request.seq != scheduled.seq {
                continue; // aborted after scheduling; its slot may hold someone else now
            }
            request.is_in_flight = false;
            request.num_computed_tokens += scheduled.num_tokens;
            if caching && request.has_token_ids() {
                register_computed_blocks(&mut self.blocks, request, block_size);
            }
            let Some(token) = token else { continue };
            if request.has_token_ids() {
                request.token_ids.push(token);
            }
            request.num_output_tokens += 1;
            if request.num_output_tokens >= request.max_new_tokens
                || request.num_tokens() >= self.max_request_tokens
            {
                finished.push(self.finish(scheduled.slot, FinishReason::Length, false));
            }
        }
        for (ids, reason) in [
            (outputs.finished_ids, FinishReason::Stop),
            (outputs.aborted_ids, FinishReason::Aborted),
        ] {
            for id in ids {
                if let Some(&slot) = self.slot_by_id.get(id) {
                    finished.push(self.finish(slot, reason, false));
                }
            }
        }
        if !finished.is_empty() {
            let slots = &self.slots;
            self.running.retain(|&slot| slots[slot as usize].is_some());
        }
        Ok(finished)
    }

    // ----- queries -----

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

    // ----- building blocks for the policies -----

    #[inline]
    pub(crate) fn request(&self, slot: u32) -> &Request {
        self.slots[slot as usize]
            .as_ref()
            .expect("slot in a queue holds a request")
    }

    #[inline]
    pub(crate) fn request_mut(&mut self, slot: u32) -> &mut Request {
        self.slots[slot as usize]
            .as_mut()
            .expect("slot in a queue holds a request")
    }

    pub(crate) fn watermark_blocks(&self) -> u32 {
        self.watermark_blocks
    }

    pub(crate) fn max_tokens_of(&self, request: &Request) -> u32 {
        (request.num_prompt_tokens + request.max_new_tokens).min(self.max_request_tokens)
    }

    /// The prefill chunk cap for a request at its current progress.
    #[inline]
    pub(crate) fn chunk_size_for(&self, num_computed_tokens: u32) -> u32 {
        match &self.config.dynamic_chunking {
            None => self.config.token_budget,
            Some(dynamic) => {
                let stages = self.chunk_sizes.len() as u64;
                let stage =
                    u64::from(num_computed_tokens) * stages / u64::from(dynamic.max_context);
                self.chunk_sizes[stage.min(stages - 1) as usize]
            }
        }
    }

    /// The first waiting request that has arrived by `now`, in queue order.
    pub(crate) fn next_waiting(&self, now: f64) -> Option<u32> {
        let (_, &slot) = self.waiting.first_key_value()?;
        (self.request(slot).arrival_time <= now).then_some(slot)
    }

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

    /// Makes sure the running request at `index` has a block for its next decode token,
    /// preempting from the back of the running list if memory is short. Returns false if the
    /// request itself had to be preempted.
    pub(crate) fn reserve_decode_slot(&mut self, index: usize, batch: &mut Batch) -> bool {
        let slot = self.running[index];
        let block_size = self.config.block_size;
        let num_tokens = self.request(slot).num_tokens();
        while (self.request(slot).block_ids.len() as u32) * block_size < num_tokens {
            if let Some(block) = self.blocks.allocate() {
                self.request_mut(slot).block_ids.push(block);
                batch.add_new_block(block);
                continue;
            }
            let victim = (index + 1..self.running.len())
                .rev()
                .find(|&i| !self.request(self.running[i]).is_in_flight);
            if victim.is_none() {
                batch.discard_staged_blocks();
            }
            self.preempt(victim.unwrap_or(index), batch);
            if victim.is_none() {
                return false;
            }
        }
        true
    }

    /// Frees a running request's blocks and queues it again for recompute.
    pub(crate) fn preempt(&mut self, index: usize, batch: &mut Batch) {
        let slot = self.running.remove(index);
        let request = self.slots[slot as usize]
            .as_mut()
            .expect("running slot holds a request");
        self.blocks.release_all(&request.block_ids);
        request.block_ids.clear();
        request.block_hashes.clear();
        request.num_computed_tokens = 0;
        request.is_running = false;
        request.num_preemptions += 1;
        batch.preempted_ids.push(request.id);
        self.waiting.insert(request.key, slot);
    }

    /// Adds one decode token of the request in `slot` to the batch and marks it in flight.
    #[inline(always)]
    pub(crate) fn push_decode(&mut self, batch: &mut Batch, slot: u32) {
        let request = self.request_mut(slot);
        request.is_in_flight = true;
        batch.push(ScheduledRequest {
            id: request.id,
            num_tokens: 1,
            num_computed_tokens: request.num_computed_tokens,
            is_prefill: false,
            produces_token: true,
            slot,
            new_blocks_end: 0,
            seq: request.seq,
        });
    }

    /// Adds `num_tokens` of the request in `slot` to the batch and marks it in flight.
    #[inline(always)]
    pub(crate) fn push_entry(&mut self, batch: &mut Batch, slot: u32, num_tokens: u32) {
        let request = self.request_mut(slot);
        request.is_in_flight = true;
        batch.push(ScheduledRequest {
            id: request.id,
            num_tokens,
            num_computed_tokens: request.num_computed_tokens,
            is_prefill: request.is_prefill(),
            produces_token: request.num_computed_tokens + num_tokens == request.num_tokens(),
            slot,
            new_blocks_end: 0,
            seq: request.seq,
        });
    }

    /// Leaves the running list untouched when `unlist_running` is false (the caller compacts it).
    fn finish(&mut self, slot: u32, reason: FinishReason, unlist_running: bool) -> FinishedRequest {
        let key = self.request(slot).key;
        if self.request(slot).is_running {
            if unlist_running {
                let position = self.running.partition_point(|&s| self.request(s).key < key);
                self.running.remove(position);
            }
        } else {
            self.waiting.remove(&key);
        }
        let request = self.slots[slot as usize]
            .take()
            .expect("finishing a live request");
        self.blocks.release_all(&request.block_ids);
        self.slot_by_id.remove(&request.id);
        self.free_slots.push(slot);
        request.finished(reason)
    }

    fn find_cached_prefix(&self, request: &Request) -> (Vec<BlockId>, Vec<u64>) {
        let mut blocks = Vec::new();
        let mut hashes = Vec::new();
        if !self.config.enable_prefix_caching || !request.has_token_ids() {
            return (blocks, hashes);
        }
        let size = self.config.block_size as usize;
        // At least the last token must be computed again to produce logits.
        let cacheable = (request.num_tokens() as usize - 1) / size;
        let mut parent = ROOT_HASH;
        for chunk in request.token_ids.chunks_exact(size).take(cacheable) {
            let hash = chain_block_hash(parent, chunk);
            let Some(block) = self.blocks.lookup(hash, parent, chunk) else {
                break;
            };
            blocks.push(block);
            hashes.push(hash);
            parent = hash;
        }
        (blocks, hashes)
    }
}

/// Hashes and registers the request's blocks that became full of computed tokens.
fn register_computed_blocks(blocks: &mut BlockManager, request: &mut Request, block_size: u32) {
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
