use std::collections::VecDeque;

use scheduler::{Batch, BatchOutputs, FinishedRequest, Scheduler, SchedulerConfig};

use crate::cost_model::{BatchEntry, CostModel, IterationTime};
use crate::error::Result;
use crate::records::ReplicaSnapshot;

/// A batch the replica just started: when its tokens come out and when the first stage can
/// take the next one.
#[derive(Debug, Clone, Copy)]
pub struct StartedBatch {
    pub completion_s: f64,
    pub first_stage_free_s: f64,
    pub time: IterationTime,
    pub snapshot: ReplicaSnapshot,
}

/// One model replica: its own scheduler and a pipeline of stages, each busy with one batch at a
/// time. Up to `num_stages` batches are in flight, one per stage, as on real pipelines.
#[derive(Debug)]
pub struct Replica {
    id: u32,
    scheduler: Scheduler,
    /// When each stage finishes the last batch given to it.
    stage_free_at: Vec<f64>,
    /// When the host finished processing the outputs of the last batch (it does so in order).
    last_completion_s: f64,
    in_flight: VecDeque<Batch>,
    zero_tokens: Vec<u32>,
    pub(crate) is_schedule_pending: bool,
}

impl Replica {
    /// The scheduler may keep one batch in flight per pipeline stage.
    pub fn new(id: u32, config: &SchedulerConfig, num_stages: u32) -> Result<Self> {
        let config = SchedulerConfig {
            max_batches_in_flight: num_stages,
            ..config.clone()
        };
        let zero_tokens = vec![0; config.token_budget.max(config.max_num_seqs) as usize];
        Ok(Replica {
            id,
            scheduler: Scheduler::new(config)?,
            stage_free_at: vec![0.0; num_stages as usize],
            last_completion_s: 0.0,
            in_flight: VecDeque::with_capacity(num_stages as usize),
            zero_tokens,
            is_schedule_pending: false,
        })
    }

    pub fn scheduler_mut(&mut self) -> &mut Scheduler {
        &mut self.scheduler
    }

    /// Schedules and starts a batch if the first stage is free, a pipeline slot is open and
    /// there is something to run.
    pub fn try_start(&mut self, now: f64, cost: &CostModel) -> Result<Option<StartedBatch>> {
        let num_stages = self.stage_free_at.len();
        if self.in_flight.len() >= num_stages || now < self.stage_free_at[0] {
            return Ok(None);
        }
        if self.scheduler.num_waiting() + self.scheduler.num_running() == 0 {
            return Ok(None);
        }
        let batch = self.scheduler.schedule(now)?;
        if batch.is_empty() {
            self.scheduler.update(&batch, BatchOutputs::default())?;
            return Ok(None);
        }
        let time = cost.predict(batch.requests.iter().map(BatchEntry::from));
        let mut t = now + time.cpu_before_s;
        for (stage, free_at) in self.stage_free_at.iter_mut().enumerate() {
            t = t.max(*free_at) + time.stage_s(stage as u32);
            *free_at = t;
        }
        let completion_s = t.max(self.last_completion_s) + time.cpu_after_s;
        self.last_completion_s = completion_s;
        let snapshot = ReplicaSnapshot {
            replica: self.id,
            num_blocks_used: self.scheduler.block_manager().num_used(),
            num_waiting: self.scheduler.num_waiting() as u32,
            num_running: self.scheduler.num_running() as u32,
            num_preempted: batch.preempted_ids().len() as u32,
        };
        self.in_flight.push_back(batch);
        Ok(Some(StartedBatch {
            completion_s,
            first_stage_free_s: self.stage_free_at[0],
            time,
            snapshot,
        }))
    }

    /// Finishes the oldest batch in flight: every request that produces a token gets one
    /// (`on_token(request id)`), then the scheduler learns the outcome. Returns who finished.
    pub fn complete_oldest(
        &mut self,
        mut on_token: impl FnMut(u64),
    ) -> Result<Vec<FinishedRequest>> {
        let batch = self
            .in_flight
            .pop_front()
            .expect("a completion event follows every started batch");
        for request in batch.requests.iter().filter(|r| r.produces_token) {
            on_token(request.id);
        }
        let num_producing = batch.num_producing() as usize;
        if self.zero_tokens.len() < num_producing {
            self.zero_tokens.resize(num_producing, 0);
        }
        let outputs = BatchOutputs {
            sampled_token_ids: &self.zero_tokens[..num_producing],
            ..BatchOutputs::default()
        };
        Ok(self.scheduler.update(&batch, outputs)?)
    }
}
