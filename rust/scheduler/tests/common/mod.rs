#![allow(dead_code)]

use scheduler::{
    Batch, BatchOutputs, FinishReason, FinishedRequest, NewRequest, Policy, Scheduler,
    SchedulerConfig,
};

/// A small config whose batches can be worked out by hand: no watermark, 4-token blocks.
pub fn config(policy: Policy, token_budget: u32, num_blocks: u32) -> SchedulerConfig {
    SchedulerConfig {
        policy,
        token_budget,
        max_num_seqs: 4,
        max_model_len: 16,
        block_size: 4,
        num_blocks,
        watermark: 0.0,
        ..SchedulerConfig::default()
    }
}

pub fn add(scheduler: &mut Scheduler, id: u64, prompt: u32, max_new: u32, arrival: f64) {
    scheduler
        .add(NewRequest {
            arrival_time: arrival,
            ..NewRequest::with_lengths(id, prompt, max_new)
        })
        .unwrap();
}

/// A batch as (id, tokens, computed-before, kind): `P` a prefill chunk that samples nothing,
/// `p` a prefill's last chunk, `D` a decode.
pub fn entries(batch: &Batch) -> Vec<(u64, u32, u32, char)> {
    batch
        .requests
        .iter()
        .map(|r| {
            let kind = match (r.is_prefill, r.produces_token) {
                (true, false) => 'P',
                (true, true) => 'p',
                (false, _) => 'D',
            };
            (r.id, r.num_tokens, r.num_computed_tokens, kind)
        })
        .collect()
}

/// Runs one batch, sampling token `1000 + id` for each producing request.
pub fn complete(scheduler: &mut Scheduler, batch: &Batch) -> Vec<FinishedRequest> {
    let tokens: Vec<u32> = batch
        .requests
        .iter()
        .filter(|r| r.produces_token)
        .map(|r| 1000 + r.id as u32)
        .collect();
    scheduler
        .update(
            batch,
            BatchOutputs {
                sampled_token_ids: &tokens,
                ..BatchOutputs::default()
            },
        )
        .unwrap()
}

/// Schedules at `now`, checks the batch against `expected`, completes it, checks invariants,
/// and returns the ids that finished.
pub fn step(
    scheduler: &mut Scheduler,
    now: f64,
    expected: &[(u64, u32, u32, char)],
) -> Vec<(u64, FinishReason)> {
    let batch = scheduler.schedule(now).unwrap();
    assert_eq!(entries(&batch), expected, "batch at t={now}");
    let finished = complete(scheduler, &batch);
    scheduler.check_invariants().unwrap();
    finished.iter().map(|f| (f.id, f.reason)).collect()
}
