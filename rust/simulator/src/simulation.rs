//! The event loop: arrivals go through the global router to a replica's scheduler; each
//! replica's engine takes turns as the real engine's loop does (see `Replica`): schedule a batch
//! while an in-flight slot is open, else apply the oldest batch's outputs once its predicted time
//! has passed, which is when its tokens come out.

use std::path::PathBuf;

use scheduler::{NewRequest, SchedulerConfig};

use crate::cost_model::CostModel;
use crate::error::{Result, SimulatorError};
use crate::event_queue::{EventKind, EventQueue};
use crate::iteration_spill::{
    create_spill_directory, RecordedIterations, SpillConfig, SpilledIterations, TOKEN_TIMES_FILE,
};
use crate::prefix_workload::{prompt_token_ids, Sessions};
use crate::records::{IterationRecords, RequestRecords};
use crate::replica::{EngineStep, Replica};
use crate::router::{Router, RouterKind};
use crate::token_spill::TokenTimesSpill;
use crate::workload::Workload;

/// The deployment around the replicas: how many, how requests are routed, what to record.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationConfig {
    pub num_replicas: u32,
    pub router: RouterKind,
    /// Seeds the random router; nothing else in a simulation is random.
    pub seed: u64,
    /// Per-iteration records cost memory on long runs; request records are always kept.
    pub record_iterations: bool,
    /// Stops the run at this simulated time: nothing after it happens or is recorded.
    pub max_simulated_s: Option<f64>,
    /// Streams the iteration records and the token times to disk as the run goes (then
    /// `SimulationOutput::iterations` and `requests.token_times` are empty, and
    /// `spilled_iterations` and `spilled_token_times` say where they are).
    pub spill: Option<SpillConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimulationOutput {
    pub requests: RequestRecords,
    pub iterations: IterationRecords,
    pub spilled_iterations: Option<SpilledIterations>,
    /// The file of `requests.token_times`, when streamed.
    pub spilled_token_times: Option<PathBuf>,
    pub num_iterations: u64,
    /// When the last event happened (at most `max_simulated_s`).
    pub end_s: f64,
    /// Requests that reached the router: the first `num_arrived` of the workload.
    pub num_arrived: u32,
    /// Whether `max_simulated_s` stopped the run with events still to happen.
    pub is_cut: bool,
}

/// Runs the workload on `num_replicas` identical replicas, each scheduling with
/// `scheduler_config` (its `max_batches_in_flight` batches out at once over the cost model's
/// stages: one per stage, or two on one stage with async scheduling).
pub fn simulate(
    config: &SimulationConfig,
    scheduler_config: &SchedulerConfig,
    cost: &CostModel,
    workload: &Workload,
) -> Result<SimulationOutput> {
    if config.num_replicas == 0 {
        return Err(SimulatorError::InvalidDeployment(
            "a deployment needs at least one replica".into(),
        ));
    }
    if config.router == RouterKind::PrefixAffinity && !scheduler_config.enable_prefix_caching {
        return Err(SimulatorError::InvalidDeployment(
            "the prefix_affinity router needs the scheduler's enable_prefix_caching".into(),
        ));
    }
    if let Some(limit) = config.max_simulated_s {
        if !(limit.is_finite() && limit >= 0.0) {
            return Err(SimulatorError::InvalidDeployment(format!(
                "max_simulated_s must be a finite, non-negative number of seconds, got {limit}"
            )));
        }
        // A cut run keeps the workload's first requests, which a session's later turns (sent
        // when the turn before ends) need not be.
        if !workload.follows.is_empty() {
            return Err(SimulatorError::InvalidWorkload(
                "max_simulated_s cannot cut a workload with multi-turn sessions".into(),
            ));
        }
    }
    if let Some(spill) = &config.spill {
        create_spill_directory(spill)?;
    }
    let token_spill = config
        .spill
        .as_ref()
        .map(|spill| {
            let path = spill.directory.join(TOKEN_TIMES_FILE);
            TokenTimesSpill::create(path, workload.len(), spill.block_rows as u64)
        })
        .transpose()?;
    let requests = if token_spill.is_some() {
        RequestRecords::new_windowed(workload)
    } else {
        RequestRecords::new(workload)
    };
    let replicas = (0..config.num_replicas)
        .map(|id| Replica::new(id, scheduler_config, cost.num_stages()))
        .collect::<Result<Vec<_>>>()?;
    let simulation = Simulation {
        cost,
        workload,
        replicas,
        router: Router::new(config.router, config.seed),
        events: EventQueue::default(),
        requests,
        token_spill,
        iterations: RecordedIterations::new(
            config.spill.as_ref().filter(|_| config.record_iterations),
        )?,
        record_iterations: config.record_iterations,
        limit_s: config.max_simulated_s.unwrap_or(f64::INFINITY),
        outstanding: vec![0; config.num_replicas as usize],
        num_iterations: 0,
        sessions: Sessions::new(workload),
        caching: scheduler_config.enable_prefix_caching,
        num_arrived: 0,
        is_cut: false,
    };
    simulation.run()
}

struct Simulation<'a> {
    cost: &'a CostModel,
    workload: &'a Workload,
    replicas: Vec<Replica>,
    router: Router,
    events: EventQueue,
    requests: RequestRecords,
    token_spill: Option<TokenTimesSpill>,
    iterations: RecordedIterations,
    record_iterations: bool,
    /// Events after this time do not happen; tokens and finishes after it are not recorded.
    limit_s: f64,
    /// Unfinished requests per replica, as the router sees them.
    outstanding: Vec<u32>,
    num_iterations: u64,
    sessions: Sessions,
    /// Whether requests carry token ids (their prompts' sharing structure).
    caching: bool,
    num_arrived: u32,
    is_cut: bool,
}

impl Simulation<'_> {
    fn run(mut self) -> Result<SimulationOutput> {
        if let Some(first) = Sessions::next_first_turn(self.workload, 0) {
            self.events.push(
                self.workload.arrival_times[first],
                EventKind::Arrival {
                    request: first as u32,
                },
            );
        }
        let mut end_s = 0.0;
        while let Some((now, event)) = self.events.pop() {
            if now > self.limit_s {
                (end_s, self.is_cut) = (self.limit_s, true);
                break;
            }
            end_s = now;
            match event {
                EventKind::Arrival { request } => self.arrive(request, now)?,
                EventKind::Completion { replica } => self.complete(replica, now),
                EventKind::EngineTurn { replica } => self.engine_turn(replica, now)?,
            }
        }
        let (iterations, spilled_iterations) = self.iterations.finish()?;
        let spilled_token_times = match self.token_spill {
            Some(spill) => Some(spill.finish(&mut self.requests)?),
            None => None,
        };
        Ok(SimulationOutput {
            requests: self.requests,
            iterations,
            spilled_iterations,
            spilled_token_times,
            num_iterations: self.num_iterations,
            end_s,
            num_arrived: self.num_arrived,
            is_cut: self.is_cut,
        })
    }

    fn arrive(&mut self, request: u32, now: f64) -> Result<()> {
        self.num_arrived += 1;
        let index = request as usize;
        let is_first_turn = self.workload.predecessor(index).is_none();
        if let Some(next) =
            Sessions::next_first_turn(self.workload, index + 1).filter(|_| is_first_turn)
        {
            self.events.push(
                self.workload.arrival_times[next],
                EventKind::Arrival {
                    request: next as u32,
                },
            );
        }
        let prompt_token_ids = self.caching.then(|| prompt_token_ids(self.workload, index));
        let replicas = &self.replicas;
        let replica = self.router.pick(&self.outstanding, |r| {
            let tokens = prompt_token_ids.as_deref().unwrap_or_default();
            replicas[r].scheduler().num_cached_prefix_tokens(tokens)
        });
        self.requests.replica[index] = replica;
        self.requests.arrival_s[index] = now;
        let new = NewRequest {
            arrival_time: now,
            prompt_token_ids,
            ..NewRequest::with_lengths(
                u64::from(request),
                self.workload.num_prompt_tokens[index],
                self.workload.num_output_tokens[index],
            )
        };
        let target = &mut self.replicas[replica as usize];
        match target.scheduler_mut().add(new) {
            Ok(()) => {
                self.outstanding[replica as usize] += 1;
                if target.is_idle() {
                    self.request_turn(replica, now);
                }
            }
            Err(error) => {
                self.requests.rejections.push((request, error.to_string()));
                if let Some(spill) = &mut self.token_spill {
                    spill.end(&mut self.requests, index)?;
                }
                self.send_follower(index, now);
            }
        }
        Ok(())
    }

    /// A session's next turn goes its think time after `request` ended.
    fn send_follower(&mut self, request: usize, ended_s: f64) {
        if let Some(follower) = self.sessions.follower(request) {
            let at = ended_s + self.workload.think_time_s[follower as usize];
            self.events
                .push(at, EventKind::Arrival { request: follower });
        }
    }

    /// The workers handed back a batch's outputs: an engine waiting for them takes its turn.
    fn complete(&mut self, replica: u32, now: f64) {
        self.request_turn(replica, now);
    }

    fn engine_turn(&mut self, replica: u32, now: f64) -> Result<()> {
        let target = &mut self.replicas[replica as usize];
        target.is_turn_pending = false;
        let record = self.record_iterations.then(|| self.iterations.num_rows());
        let (requests, limit_s) = (&mut self.requests, self.limit_s);
        let step = target.engine_step(now, self.cost, record, |id, at| {
            if at <= limit_s {
                requests.record_token(id as usize, at);
            }
        })?;
        let next_turn_s = match step {
            EngineStep::Scheduled(started) => {
                self.num_iterations += 1;
                self.events
                    .push(started.outputs_ready_s, EventKind::Completion { replica });
                if self.record_iterations {
                    let nominal_end_s = started.outputs_ready_s + started.time.engine_after_s;
                    self.iterations.records.push(
                        started.snapshot,
                        now,
                        nominal_end_s,
                        &started.time,
                    );
                    if self.iterations.is_block_due() {
                        let first_open = self
                            .replicas
                            .iter()
                            .filter_map(Replica::oldest_record_in_flight)
                            .min()
                            .unwrap_or(usize::MAX);
                        self.iterations.spill_before(first_open)?;
                    }
                }
                started.sent_s
            }
            EngineStep::Applied(applied) if applied.applied_s > self.limit_s => {
                // Its outputs come after the cut: its requests are still running then.
                self.is_cut = true;
                if let Some(index) = applied.record {
                    self.iterations.set_end_s(index, applied.applied_s);
                }
                return Ok(());
            }
            EngineStep::Applied(applied) => {
                for request in &applied.finished {
                    requests.record_finish(request, applied.applied_s);
                }
                if let Some(spill) = &mut self.token_spill {
                    for request in &applied.finished {
                        spill.end(&mut self.requests, request.id as usize)?;
                    }
                }
                for request in &applied.finished {
                    self.send_follower(request.id as usize, applied.applied_s);
                }
                self.outstanding[replica as usize] -= applied.finished.len() as u32;
                if let Some(index) = applied.record {
                    self.iterations.set_end_s(index, applied.applied_s);
                }
                applied.applied_s
            }
            EngineStep::AwaitingOutputs | EngineStep::Idle => return Ok(()),
        };
        self.request_turn(replica, next_turn_s);
        Ok(())
    }

    fn request_turn(&mut self, replica: u32, at: f64) {
        let target = &mut self.replicas[replica as usize];
        if !target.is_turn_pending {
            target.is_turn_pending = true;
            self.events.push(at, EventKind::EngineTurn { replica });
        }
    }
}
