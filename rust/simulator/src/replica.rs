use std::collections::VecDeque;

use scheduler::{Batch, BatchOutputs, FinishedRequest, Scheduler, SchedulerConfig};

use crate::cost_model::{BatchEntry, CostModel, IterationTime};
use crate::error::Result;
use crate::records::ReplicaSnapshot;

/// A batch the engine just sent to the workers.
#[derive(Debug, Clone, Copy)]
pub struct StartedBatch {
    /// When the workers hand back its outputs (in batch order: never before an earlier batch's).
    pub outputs_ready_s: f64,
    /// When the engine has scheduled and sent it, free for its next step.
    pub sent_s: f64,
    pub time: IterationTime,
    pub snapshot: ReplicaSnapshot,
}

/// A batch whose outputs the engine applied: its tokens came out at `applied_s`.
#[derive(Debug)]
pub struct AppliedBatch {
    pub finished: Vec<FinishedRequest>,
    pub applied_s: f64,
    /// Its index among the simulation's iteration records (None when none are kept).
    pub record: Option<usize>,
}

/// What the engine did with its turn.
// A short-lived return value, matched at once: boxing the large variant would only add an
// allocation per iteration.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum EngineStep {
    Scheduled(StartedBatch),
    Applied(AppliedBatch),
    /// Waiting for the oldest batch's outputs.
    AwaitingOutputs,
    /// Nothing in flight and nothing to schedule: waiting for a request.
    Idle,
}

/// One model replica, as the engine runs it: an engine process with its own scheduler, and a
/// pipeline of stages on the workers, each busy with one batch at a time.
///
/// The engine loop, as `engine.core.engine_core` runs it: while fewer than
/// `max_batches_in_flight` batches are out (one per pipeline stage, or two with async
/// scheduling) and the scheduler has work, schedule and send a batch (`engine_before_s`); then
/// wait for the oldest batch's outputs and apply them (`engine_after_s`): that is when its tokens
/// come out. Requests arriving while batches are out wait for the engine's next turn. On the
/// workers each stage runs a batch in turn (the first stage builds the inputs first, the last
/// samples after). With two batches in flight on one stage, the engine's own time hides behind
/// the workers' as long as it is the shorter.
#[derive(Debug)]
pub struct Replica {
    id: u32,
    scheduler: Scheduler,
    /// When each stage finishes the last batch given to it.
    stage_free_at: Vec<f64>,
    /// When the workers hand back the outputs of the last batch started (they do so in order).
    last_outputs_ready_s: f64,
    max_in_flight: usize,
    /// Each batch out: the batch, when its outputs are ready, the engine's time to apply them,
    /// its iteration record.
    in_flight: VecDeque<InFlight>,
    zero_tokens: Vec<u32>,
    /// An engine turn is due (an event is queued for it).
    pub(crate) is_turn_pending: bool,
}

#[derive(Debug)]
struct InFlight {
    batch: Batch,
    outputs_ready_s: f64,
    apply_s: f64,
    record: Option<usize>,
}

impl Replica {
    /// `config.max_batches_in_flight` bounds the batches out at once; a pipeline keeps at least
    /// one per stage.
    pub fn new(id: u32, config: &SchedulerConfig, num_stages: u32) -> Result<Self> {
        let config = SchedulerConfig {
            max_batches_in_flight: config.max_batches_in_flight.max(num_stages),
            ..config.clone()
        };
        let zero_tokens = vec![0; config.token_budget.max(config.max_num_seqs) as usize];
        Ok(Replica {
            id,
            max_in_flight: config.max_batches_in_flight as usize,
            in_flight: VecDeque::with_capacity(config.max_batches_in_flight as usize),
            scheduler: Scheduler::new(config)?,
            stage_free_at: vec![0.0; num_stages as usize],
            last_outputs_ready_s: 0.0,
            zero_tokens,
            is_turn_pending: false,
        })
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    pub fn scheduler_mut(&mut self) -> &mut Scheduler {
        &mut self.scheduler
    }

    /// Whether an arrival gets the engine's attention at once (it waits for work only when no
    /// batch is out; otherwise it is waiting for outputs and sees the request afterwards).
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// The iteration record of its oldest batch in flight (batches come back in order, so no
    /// record of its is older).
    pub fn oldest_record_in_flight(&self) -> Option<usize> {
        self.in_flight.front().and_then(|batch| batch.record)
    }

    /// The engine's turn at `now` (it is free): schedule a batch if a slot is open and there is
    /// work, else apply the oldest batch's outputs if they are ready. `on_token(request id,
    /// time)` gets every token an applied batch produced. `record` is the index the iteration
    /// record of a batch scheduled now will have.
    pub fn engine_step(
        &mut self,
        now: f64,
        cost: &CostModel,
        record: Option<usize>,
        on_token: impl FnMut(u64, f64),
    ) -> Result<EngineStep> {
        if self.in_flight.len() < self.max_in_flight
            && self.scheduler.num_waiting() + self.scheduler.num_running() > 0
        {
            if let Some(started) = self.start(now, cost, record)? {
                return Ok(EngineStep::Scheduled(started));
            }
        }
        match self.in_flight.front() {
            None => Ok(EngineStep::Idle),
            Some(oldest) if oldest.outputs_ready_s > now => Ok(EngineStep::AwaitingOutputs),
            Some(_) => Ok(EngineStep::Applied(self.apply_oldest(now, on_token)?)),
        }
    }

    fn start(
        &mut self,
        now: f64,
        cost: &CostModel,
        record: Option<usize>,
    ) -> Result<Option<StartedBatch>> {
        let batch = self.scheduler.schedule(now)?;
        if batch.is_empty() {
            self.scheduler.update(&batch, BatchOutputs::default())?;
            return Ok(None);
        }
        let time = cost.predict(batch.requests.iter().map(BatchEntry::from));
        let sent_s = now + time.engine_before_s;
        let last = self.stage_free_at.len() - 1;
        let mut t = sent_s;
        for (stage, free_at) in self.stage_free_at.iter_mut().enumerate() {
            t = t.max(*free_at) + time.stage_s(stage as u32);
            if stage == 0 {
                t += time.worker_before_s();
            }
            if stage == last {
                t += time.worker_after_s();
            }
            *free_at = t;
        }
        let outputs_ready_s = t.max(self.last_outputs_ready_s);
        self.last_outputs_ready_s = outputs_ready_s;
        let snapshot = ReplicaSnapshot {
            replica: self.id,
            num_blocks_used: self.scheduler.block_manager().num_used(),
            num_waiting: self.scheduler.num_waiting() as u32,
            num_running: self.scheduler.num_running() as u32,
            num_preempted: batch.preempted_ids().len() as u32,
        };
        self.in_flight.push_back(InFlight {
            batch,
            outputs_ready_s,
            apply_s: time.engine_after_s,
            record,
        });
        Ok(Some(StartedBatch {
            outputs_ready_s,
            sent_s,
            time,
            snapshot,
        }))
    }

    /// Applies the oldest batch's outputs, starting at `now`: every request that produces a
    /// token gets one, then the scheduler learns the outcome.
    fn apply_oldest(
        &mut self,
        now: f64,
        mut on_token: impl FnMut(u64, f64),
    ) -> Result<AppliedBatch> {
        let InFlight {
            batch,
            apply_s,
            record,
            ..
        } = self
            .in_flight
            .pop_front()
            .expect("only a batch in flight is applied");
        let applied_s = now + apply_s;
        for request in batch.requests.iter().filter(|r| r.produces_token) {
            on_token(request.id, applied_s);
        }
        let num_producing = batch.num_producing() as usize;
        if self.zero_tokens.len() < num_producing {
            self.zero_tokens.resize(num_producing, 0);
        }
        let outputs = BatchOutputs {
            sampled_token_ids: &self.zero_tokens[..num_producing],
            ..BatchOutputs::default()
        };
        let finished = self.scheduler.update(&batch, outputs)?;
        Ok(AppliedBatch {
            finished,
            applied_s,
            record,
        })
    }
}
