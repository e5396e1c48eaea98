//! LightLLM: token-granular memory. A prompt is admitted only if the projected peak KV use of
//! every running request plus it, each run to its maximum length, still fits. Prefill-only
//! batches interrupt decoding at most every `max_decode_iters_between_prefills` iterations.

use crate::batch::Batch;
use crate::policy::{admit_whole_prompts, schedule_decodes};
use crate::scheduler::Scheduler;

pub(crate) fn schedule(scheduler: &mut Scheduler, now: f64, batch: &mut Batch) {
    let may_prefill = scheduler.running.is_empty()
        || scheduler.decode_iters_since_prefill
            >= scheduler.config.max_decode_iters_between_prefills;
    if may_prefill {
        admit_whole_prompts(scheduler, now, batch, 0, false, projected_peak_fits);
        if !batch.is_empty() {
            scheduler.decode_iters_since_prefill = 0;
            return;
        }
    }
    schedule_decodes(scheduler, batch);
    if !batch.is_empty() {
        scheduler.decode_iters_since_prefill += 1;
    }
}

/// Whether the running requests and `candidate`, each run to its maximum length, always fit.
/// A request with `remaining` tokens to go holds blocks for `current + t` tokens at decode step
/// `t < remaining`; the total only rises between finishes, so the peak is just before one.
/// Sorted by remaining tokens (most first), the k-th request's last step is such a moment.
fn projected_peak_fits(scheduler: &mut Scheduler, candidate: u32) -> bool {
    let mut projection = std::mem::take(&mut scheduler.projection);
    projection.clear();
    for &slot in scheduler.running.iter().chain([&candidate]) {
        let request = scheduler.request(slot);
        let current = request.num_tokens();
        let remaining = scheduler.max_tokens_of(request).saturating_sub(current);
        projection.push((remaining, current));
    }
    projection.sort_unstable_by_key(|&(remaining, _)| std::cmp::Reverse(remaining));
    let block_size = scheduler.config.block_size;
    let limit = u64::from(scheduler.config.num_blocks - scheduler.watermark_blocks());
    let fits = (0..projection.len()).all(|k| {
        let step = projection[k].0.saturating_sub(1);
        let blocks: u64 = projection[..=k]
            .iter()
            .map(|&(_, current)| u64::from((current + step).div_ceil(block_size)))
            .sum();
        blocks <= limit
    });
    scheduler.projection = projection;
    fits
}
