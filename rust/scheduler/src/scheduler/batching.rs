//! The building blocks the policies fill a batch with: which running request may run again,
//! a decode slot (preempting if memory is short), and the entries themselves.
//!
//! A request in a batch still awaiting `update` is "in flight". With pipeline stages
//! (`max_batches_in_flight > 1`, synchronous) a request runs in one batch at a time, so
//! in-flight requests are skipped. With `async_scheduling` the next batch is scheduled while the
//! current one runs: an in-flight request is scheduled as if its batches in flight had
//! produced their tokens (the caller's workers know them by the time they run the next batch),
//! and may be preempted while in flight (what its in-flight entries compute is then dropped).

use crate::batch::{Batch, Preempted, ScheduledRequest};
use crate::request::Request;
use crate::scheduler::Scheduler;

impl Scheduler {
    pub(crate) fn watermark_blocks(&self) -> u32 {
        self.watermark_blocks
    }

    pub(crate) fn max_tokens_of(&self, request: &Request) -> u32 {
        (request.num_prompt_tokens + request.max_new_tokens).min(self.max_request_tokens)
    }

    /// Whether a running request may get an entry in the batch being built.
    #[inline]
    pub(crate) fn may_run_again(&self, request: &Request) -> bool {
        if !request.is_in_flight() {
            return true;
        }
        // It finishes when its batches in flight are updated: nothing more to run.
        let done = request.projected_output_tokens() >= request.max_new_tokens
            || request.projected_tokens() >= self.max_request_tokens;
        self.config.async_scheduling && !done
    }

    /// Whether the running request may lose its blocks now.
    #[inline]
    fn may_preempt(&self, request: &Request) -> bool {
        self.config.async_scheduling || !request.is_in_flight()
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

    /// Makes sure the running request at `index` has a block for its next decode token,
    /// preempting from the back of the running list if memory is short. Returns false if the
    /// request itself had to be preempted.
    pub(crate) fn reserve_decode_slot(&mut self, index: usize, batch: &mut Batch) -> bool {
        let slot = self.running[index];
        let block_size = self.config.block_size;
        let num_tokens = self.request(slot).projected_tokens();
        while (self.request(slot).block_ids.len() as u32) * block_size < num_tokens {
            if let Some(block) = self.blocks.allocate() {
                self.request_mut(slot).block_ids.push(block);
                batch.add_new_block(block);
                continue;
            }
            let victim = (index + 1..self.running.len())
                .rev()
                .find(|&i| self.may_preempt(self.request(self.running[i])));
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
        request.in_flight_tokens = 0;
        request.in_flight_outputs = 0;
        request.is_running = false;
        request.num_preemptions += 1;
        if request.was_scheduled {
            batch.preempted.push(Preempted {
                id: request.id,
                num_tokens: request.num_tokens(),
            });
        }
        self.waiting.insert(request.key, slot);
    }

    /// Adds one decode token of the request in `slot` to the batch and marks it in flight.
    #[inline(always)]
    pub(crate) fn push_decode(&mut self, batch: &mut Batch, slot: u32) {
        self.push_entry(batch, slot, 1);
    }

    /// Adds `num_tokens` of the request in `slot` to the batch and marks it in flight.
    #[inline(always)]
    pub(crate) fn push_entry(&mut self, batch: &mut Batch, slot: u32, num_tokens: u32) {
        let request = self.request_mut(slot);
        let num_computed_tokens = request.projected_computed_tokens();
        let produces_token = num_computed_tokens + num_tokens == request.projected_tokens();
        let entry = ScheduledRequest {
            id: request.id,
            num_tokens,
            num_computed_tokens,
            is_prefill: request.is_prefill(),
            produces_token,
            is_new: !request.was_scheduled,
            slot,
            new_blocks_end: 0,
            seq: request.seq,
            epoch: request.num_preemptions,
        };
        request.was_scheduled = true;
        request.in_flight_tokens += num_tokens;
        request.in_flight_outputs += u32::from(produces_token);
        batch.push(entry);
    }
}
