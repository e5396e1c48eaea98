//! Stall-free batching (Sarathi-Serve): every running decode first, then unfinished prefill
//! chunks, then FCFS admissions, all under one token budget, so decodes never wait for a prefill.

use crate::batch::Batch;
use crate::config::SchedulerConfig;
use crate::policy::schedule_decodes;
use crate::scheduler::Scheduler;

pub(crate) fn schedule(scheduler: &mut Scheduler, now: f64, batch: &mut Batch) {
    schedule_decodes(scheduler, batch);
    let mut num_batched = batch.len() as u32;

    let prefills = std::mem::take(&mut scheduler.running_prefills);
    for &slot in &prefills {
        let request = scheduler.request(slot);
        let cap = scheduler.chunk_size_for(request.num_computed_tokens);
        let chunk = request
            .num_uncomputed_tokens()
            .min(cap.saturating_sub(num_batched));
        if chunk > 0 {
            scheduler.push_entry(batch, slot, chunk);
            num_batched += chunk;
        }
    }
    scheduler.running_prefills = prefills;

    let config = &scheduler.config;
    let (max_num_seqs, token_budget, block_size) =
        (config.max_num_seqs, config.token_budget, config.block_size);
    while (scheduler.running.len() as u32) < max_num_seqs && num_batched < token_budget {
        let Some(slot) = scheduler.next_waiting(now) else {
            break;
        };
        let num_tokens = scheduler.request(slot).num_tokens();
        let Some(admission) = scheduler.plan_admission(slot, num_tokens) else {
            break;
        };
        let num_cached = admission.num_cached_tokens(block_size);
        let cap = scheduler.chunk_size_for(num_cached);
        let chunk = (num_tokens - num_cached).min(cap.saturating_sub(num_batched));
        if chunk == 0 {
            break;
        }
        scheduler.admit(slot, admission, now, batch);
        scheduler.push_entry(batch, slot, chunk);
        num_batched += chunk;
    }
}

/// Chunk size per stage: the token budget for a fresh prompt, shrinking linearly to the
/// minimum over the stages, each rounded to a multiple of the kernel tile (32) where possible.
pub(crate) fn chunk_size_stages(config: &SchedulerConfig) -> Vec<u32> {
    let Some(dynamic) = &config.dynamic_chunking else {
        return vec![config.token_budget];
    };
    let (high, low) = (
        f64::from(config.token_budget),
        f64::from(dynamic.min_chunk_size),
    );
    let tile = f64::from(dynamic.min_chunk_size.min(32));
    let stages = dynamic.num_stages;
    (0..stages)
        .map(|stage| {
            let fraction = if stages == 1 {
                0.0
            } else {
                f64::from(stage) / f64::from(stages - 1)
            };
            let size = high - (high - low) * fraction;
            ((size / tile).round() * tile).clamp(low, high) as u32
        })
        .collect()
}
