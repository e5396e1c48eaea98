//! One module per batching policy; each fills a batch from the scheduler's state.

mod faster_transformer;
mod lightllm;
mod orca;
pub(crate) mod sarathi;
mod vllm;

use crate::batch::Batch;
use crate::config::Policy;
use crate::scheduler::Scheduler;

pub(crate) fn schedule(scheduler: &mut Scheduler, now: f64, batch: &mut Batch) {
    match scheduler.config.policy {
        Policy::Sarathi => sarathi::schedule(scheduler, now, batch),
        Policy::Vllm => vllm::schedule(scheduler, now, batch),
        Policy::Orca => orca::schedule(scheduler, now, batch),
        Policy::FasterTransformer => faster_transformer::schedule(scheduler, now, batch),
        Policy::LightLlm => lightllm::schedule(scheduler, now, batch),
    }
}

/// One decode token for every running decode that may run again (see `scheduler::batching`), oldest first,
/// preempting from the back of the running list when a new block is needed and none is free.
/// Notes the running prefills it passes in `scheduler.running_prefills`.
pub(crate) fn schedule_decodes(scheduler: &mut Scheduler, batch: &mut Batch) {
    scheduler.running_prefills.clear();
    let block_size = scheduler.config.block_size;
    let mut index = 0;
    while index < scheduler.running.len() {
        let slot = scheduler.running[index];
        let request = scheduler.request(slot);
        if !scheduler.may_run_again(request) {
            index += 1;
            continue;
        }
        if request.is_prefill() {
            // Never a preemption victim later in this pass: victims come from behind `index`.
            scheduler.running_prefills.push(slot);
            index += 1;
            continue;
        }
        let needs_block = request.block_ids.len() as u32 * block_size < request.projected_tokens();
        if needs_block && !scheduler.reserve_decode_slot(index, batch) {
            continue; // preempted itself; the next request moved into `index`
        }
        scheduler.push_decode(batch, slot);
        index += 1;
    }
}

/// Admits waiting requests in queue order, each prefilled whole in this iteration, while the
/// token budget, the sequence limit, memory and `may_admit` allow. Stops at the first request
/// that does not fit, so no later request overtakes it. Returns the tokens now batched.
pub(crate) fn admit_whole_prompts(
    scheduler: &mut Scheduler,
    now: f64,
    batch: &mut Batch,
    mut num_batched: u32,
    reserve_max_length: bool,
    may_admit: fn(&mut Scheduler, u32) -> bool,
) -> u32 {
    let config = &scheduler.config;
    let (max_num_seqs, token_budget, block_size) =
        (config.max_num_seqs, config.token_budget, config.block_size);
    while (scheduler.running.len() as u32) < max_num_seqs {
        let Some(slot) = scheduler.next_waiting(now) else {
            break;
        };
        let request = scheduler.request(slot);
        let num_tokens = request.num_tokens();
        let reserve = if reserve_max_length {
            scheduler.max_tokens_of(request)
        } else {
            num_tokens
        };
        if !may_admit(scheduler, slot) {
            break;
        }
        let Some(admission) = scheduler.plan_admission(slot, reserve) else {
            break;
        };
        let chunk = num_tokens - admission.num_cached_tokens(block_size);
        if num_batched + chunk > token_budget {
            break;
        }
        scheduler.admit(slot, admission, now, batch);
        scheduler.push_entry(batch, slot, chunk);
        num_batched += chunk;
    }
    num_batched
}

pub(crate) fn always(_: &mut Scheduler, _: u32) -> bool {
    true
}
