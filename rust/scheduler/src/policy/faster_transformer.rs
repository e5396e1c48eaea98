//! FasterTransformer: request-level batching. A batch of requests is prefilled together and
//! decoded until every one of them has finished; only then are new requests admitted.

use crate::batch::Batch;
use crate::policy::{admit_whole_prompts, always, schedule_decodes};
use crate::scheduler::Scheduler;

pub(crate) fn schedule(scheduler: &mut Scheduler, now: f64, batch: &mut Batch) {
    if scheduler.running.is_empty() {
        admit_whole_prompts(scheduler, now, batch, 0, true, always);
    } else {
        schedule_decodes(scheduler, batch);
    }
}
