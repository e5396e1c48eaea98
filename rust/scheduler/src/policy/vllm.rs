//! Prefill-first (vLLM without chunked prefill): a prefill-only batch whenever a waiting prompt
//! fits; otherwise a decode-only batch. Running decodes stall while prompts are prefilled.

use crate::batch::Batch;
use crate::policy::{admit_whole_prompts, always, schedule_decodes};
use crate::scheduler::Scheduler;

pub(crate) fn schedule(scheduler: &mut Scheduler, now: f64, batch: &mut Batch) {
    admit_whole_prompts(scheduler, now, batch, 0, false, always);
    if batch.is_empty() {
        schedule_decodes(scheduler, batch);
    }
}
