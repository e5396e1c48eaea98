//! The scheduler's state and its four calls: `add`, `abort`, `schedule` and `update`. The
//! building blocks the policies use live beside this file (`admission`, `batching`), the
//! read-only views in `queries`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

mod admission;
mod batching;
mod queries;

use crate::batch::Batch;
use crate::block_manager::BlockManager;
use crate::config::{Order, SchedulerConfig};
use crate::error::{Result, SchedulerError};
use crate::policy;
use crate::request::{
    FinishReason, FinishedRequest, NewRequest, QueueKey, Request, RequestId, TokenId,
};

use admission::register_computed_blocks;

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
    /// Requests a batch held that left since the last batch that held any (`Batch::finished_ids`).
    finished_unreported: Vec<RequestId>,
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
            finished_unreported: Vec::new(),
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
        if let Some(reason) = self.config.prompt_refusal(new.num_prompt_tokens) {
            return Err(new.reject(reason));
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
        if !batch.is_empty() {
            batch.finished_ids = std::mem::take(&mut self.finished_unreported);
        }
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
            if request.seq != scheduled.seq || request.num_preemptions != scheduled.epoch {
                // Aborted after scheduling (its slot may hold someone else now), or preempted
                // while in flight (its KV is gone and what this entry computed is dropped).
                continue;
            }
            request.in_flight_tokens -= scheduled.num_tokens;
            request.in_flight_outputs -= u32::from(scheduled.produces_token);
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
        if request.was_scheduled {
            self.finished_unreported.push(request.id);
        }
        request.finished(reason, slot)
    }

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
}
