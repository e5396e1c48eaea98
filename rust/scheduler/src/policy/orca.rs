//! Orca: iteration-level batching of whole prefills beside the running decodes, each request
//! reserving blocks for its maximum length at admission (so it is never preempted).

use crate::batch::Batch;
use crate::policy::{admit_whole_prompts, always, schedule_decodes};
use crate::scheduler::Scheduler;

pub(crate) fn schedule(scheduler: &mut Scheduler, now: f64, batch: &mut Batch) {
    schedule_decodes(scheduler, batch);
    let num_decodes = batch.len() as u32;
    admit_whole_prompts(scheduler, now, batch, num_decodes, true, always);
}
