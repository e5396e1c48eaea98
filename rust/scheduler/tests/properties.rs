//! Random sequences of add / schedule / update / abort for every policy, synchronous, with
//! pipeline stages or with async scheduling. After every step the blocks are conserved and every
//! batch respects the budgets; a caller that rebuilds block tables only from batch deltas agrees
//! with the scheduler; a worker that learns of requests only from the batches (new entries,
//! preemptions, finished ids, running each batch in order and sampling its own tokens) always has
//! the tokens each entry runs; in the end every request finishes.

use std::collections::{HashMap, HashSet, VecDeque};

use proptest::prelude::*;
use scheduler::{
    Batch, BatchOutputs, BlockId, DynamicChunking, NewRequest, Order, Policy, Scheduler,
    SchedulerConfig, SchedulerError,
};

#[derive(Debug, Clone)]
enum Op {
    Add {
        prompt: u32,
        max_new: u32,
        shared_prefix: u32,
        priority: i64,
    },
    /// Schedule a batch, or when batches are in flight maybe complete the oldest first.
    Step {
        complete_first: bool,
        stop_mask: u8,
    },
    Abort {
        pick: usize,
    },
}

fn config_strategy() -> impl Strategy<Value = SchedulerConfig> {
    (
        0..Policy::ALL.len(),
        prop::sample::select(vec![1u32, 2, 4, 16]),
        4u32..64,
        1u32..8,
        8u32..64,
        0u32..40,
        (
            0.0f64..0.1,
            any::<bool>(),
            any::<bool>(),
            1u32..3,
            1u32..4,
            any::<bool>(),
        ),
        prop::option::of((1u32..64, 1u32..128, 1u32..5)),
    )
        .prop_map(
            |(
                policy,
                block_size,
                num_blocks,
                max_num_seqs,
                max_model_len,
                extra,
                knobs,
                dynamic,
            )| {
                let (watermark, caching, by_priority, in_flight, decode_iters, async_scheduling) =
                    knobs;
                let policy = Policy::ALL[policy];
                let token_budget = if policy.chunks_prefills() {
                    max_num_seqs + extra
                } else {
                    max_model_len + extra
                };
                let dynamic_chunking = dynamic.filter(|_| policy == Policy::Sarathi).map(
                    |(min_chunk_size, max_context, num_stages)| DynamicChunking {
                        min_chunk_size: min_chunk_size.min(token_budget),
                        max_context,
                        num_stages,
                    },
                );
                SchedulerConfig {
                    policy,
                    token_budget,
                    max_num_seqs,
                    max_model_len,
                    block_size,
                    num_blocks,
                    watermark,
                    enable_prefix_caching: caching,
                    order: if by_priority {
                        Order::Priority
                    } else {
                        Order::Fcfs
                    },
                    dynamic_chunking,
                    max_batches_in_flight: in_flight,
                    async_scheduling: async_scheduling && in_flight > 1,
                    max_decode_iters_between_prefills: decode_iters,
                }
            },
        )
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u32..80, 1u32..24, 0u32..40, -2i64..3).prop_map(|(prompt, max_new, shared_prefix, priority)| Op::Add {
            prompt,
            max_new,
            shared_prefix,
            priority
        }),
        6 => (any::<bool>(), any::<u8>()).prop_map(|(complete_first, stop_mask)| Op::Step { complete_first, stop_mask }),
        1 => any::<usize>().prop_map(|pick| Op::Abort { pick }),
    ]
}

/// Plays the caller's part: keeps block tables from batch deltas and checks every property.
struct Harness {
    scheduler: Scheduler,
    config: SchedulerConfig,
    in_flight: VecDeque<Batch>,
    tables: HashMap<u64, Vec<BlockId>>,
    live: Vec<u64>,
    next_id: u64,
    now: f64,
    prompts: HashMap<u64, u32>,
    /// What a worker knows: per request, how many tokens it holds (prompt, then its samples).
    worker_tokens: HashMap<u64, u32>,
    /// Requests the worker knows that left the scheduler since the last non-empty batch.
    unreported: HashSet<u64>,
}

impl Harness {
    fn new(config: SchedulerConfig) -> Harness {
        Harness {
            scheduler: Scheduler::new(config.clone()).unwrap(),
            config,
            in_flight: VecDeque::new(),
            tables: HashMap::new(),
            live: Vec::new(),
            next_id: 0,
            now: 0.0,
            prompts: HashMap::new(),
            worker_tokens: HashMap::new(),
            unreported: HashSet::new(),
        }
    }

    fn left(&mut self, id: u64) {
        if self.worker_tokens.contains_key(&id) {
            self.unreported.insert(id);
        }
    }

    /// Runs `batch` as a worker would, before any later batch: it learns of new requests from
    /// the batch alone and must hold every token an entry runs.
    fn run_on_worker(&mut self, batch: &Batch) {
        let reported: HashSet<u64> = batch.finished_ids.iter().copied().collect();
        if batch.is_empty() {
            assert!(
                reported.is_empty(),
                "an empty batch reports finished requests"
            );
        } else {
            assert_eq!(
                reported,
                std::mem::take(&mut self.unreported),
                "finished ids"
            );
        }
        for id in &batch.finished_ids {
            assert!(
                self.worker_tokens.remove(id).is_some(),
                "finished {id} was never sent"
            );
            assert!(
                !self.scheduler.contains(*id),
                "{id} reported finished while live"
            );
        }
        for preempted in &batch.preempted {
            let held = self
                .worker_tokens
                .get_mut(&preempted.id)
                .expect("preempted unknown");
            assert!(preempted.num_tokens <= *held);
            *held = preempted.num_tokens;
        }
        for entry in &batch.requests {
            if entry.is_new {
                let prompt = self.prompts[&entry.id];
                assert!(
                    self.worker_tokens.insert(entry.id, prompt).is_none(),
                    "{} new twice",
                    entry.id
                );
            }
            let held = self
                .worker_tokens
                .get_mut(&entry.id)
                .expect("entry of an unknown request");
            let end = entry.num_computed_tokens + entry.num_tokens;
            assert!(
                end <= *held,
                "request {} runs to {end} but the worker holds {held}",
                entry.id
            );
            if entry.produces_token {
                assert_eq!(
                    end, *held,
                    "request {} samples after token {end} of {held}",
                    entry.id
                );
                *held += 1;
            }
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Add {
                prompt,
                max_new,
                shared_prefix,
                priority,
            } => self.add(prompt, max_new, shared_prefix, priority),
            Op::Step {
                complete_first,
                stop_mask,
            } => {
                let full = self.in_flight.len() as u32 >= self.config.max_batches_in_flight;
                if !self.in_flight.is_empty() && (complete_first || full) {
                    self.complete_oldest(stop_mask);
                } else {
                    self.schedule();
                }
            }
            Op::Abort { pick } => {
                if !self.live.is_empty() {
                    let id = self.live.swap_remove(pick % self.live.len());
                    self.scheduler.abort(id).unwrap();
                    self.tables.remove(&id);
                    self.left(id);
                }
            }
        }
        self.scheduler.check_invariants().unwrap();
    }

    fn add(&mut self, prompt: u32, max_new: u32, shared_prefix: u32, priority: i64) {
        let id = self.next_id;
        self.next_id += 1;
        let tokens: Vec<u32> = (0..prompt)
            .map(|i| {
                if i < shared_prefix {
                    i
                } else {
                    1000 + id as u32 * 100 + i
                }
            })
            .collect();
        self.now += 0.5;
        let result = self.scheduler.add(NewRequest {
            id,
            num_prompt_tokens: prompt,
            prompt_token_ids: Some(tokens),
            max_new_tokens: max_new,
            arrival_time: self.now,
            priority,
        });
        match result {
            Ok(()) => {
                self.live.push(id);
                self.prompts.insert(id, prompt);
            }
            Err(SchedulerError::InvalidRequest { .. }) => {
                let admissible = self.config.num_blocks - self.config.watermark_blocks();
                let too_big = prompt > self.config.max_model_len
                    || prompt.div_ceil(self.config.block_size) > admissible;
                assert!(too_big, "request {id} of {prompt} tokens wrongly rejected");
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    fn schedule(&mut self) {
        let s = &self.scheduler;
        let decodes_before: Vec<u64> = s
            .running_ids()
            .into_iter()
            .filter(|&id| {
                let view = s.request_view(id).unwrap();
                !view.is_prefill
            })
            .collect();
        let batch = self.scheduler.schedule(self.now).unwrap();
        assert!(
            batch.num_tokens() <= self.config.token_budget,
            "token budget exceeded"
        );
        assert!(batch.len() <= self.config.max_num_seqs as usize);
        let scheduled: HashSet<u64> = batch.requests.iter().map(|r| r.id).collect();
        assert_eq!(
            scheduled.len(),
            batch.len(),
            "a request appears twice in a batch"
        );

        for &id in &batch.preempted_ids() {
            self.tables.get_mut(&id).unwrap().clear();
        }
        for (index, entry) in batch.requests.iter().enumerate() {
            assert!(entry.num_tokens >= 1);
            assert!(entry.is_prefill || entry.num_tokens == 1);
            let table = self.tables.entry(entry.id).or_default();
            table.extend_from_slice(batch.new_block_ids(index));
            assert_eq!(
                table.as_slice(),
                self.scheduler.block_table(entry.id).unwrap(),
                "block table rebuilt from deltas disagrees for request {}",
                entry.id
            );
            let written = entry.num_computed_tokens + entry.num_tokens;
            assert!(written <= table.len() as u32 * self.config.block_size);
        }
        self.run_on_worker(&batch);
        let stall_free =
            self.config.policy == Policy::Sarathi && self.config.max_batches_in_flight == 1;
        if stall_free {
            for id in decodes_before {
                assert!(
                    scheduled.contains(&id) || batch.preempted_ids().contains(&id),
                    "running decode {id} was left out of a sarathi batch"
                );
            }
        }
        self.in_flight.push_back(batch);
    }

    fn complete_oldest(&mut self, stop_mask: u8) {
        let batch = self.in_flight.pop_front().unwrap();
        let mut tokens = Vec::new();
        let mut stopped = Vec::new();
        for (index, entry) in batch.requests.iter().enumerate() {
            if entry.produces_token {
                tokens.push(7 + (entry.id % 5) as u32);
                let alive = self.scheduler.contains(entry.id);
                if alive && stop_mask & (1 << (index % 8)) != 0 && index % 3 == 0 {
                    stopped.push(entry.id);
                }
            }
        }
        let finished = self
            .scheduler
            .update(
                &batch,
                BatchOutputs {
                    sampled_token_ids: &tokens,
                    finished_ids: &stopped,
                    aborted_ids: &[],
                },
            )
            .unwrap();
        for f in finished {
            assert!(f.num_output_tokens >= 1 || f.reason != scheduler::FinishReason::Length);
            self.tables.remove(&f.id);
            self.live.retain(|&id| id != f.id);
            self.left(f.id);
        }
    }

    /// Runs until every request has finished; FCFS must starve nobody.
    fn drain(&mut self) {
        for _ in 0..200_000 {
            if self.live.is_empty() {
                assert!(self.in_flight.is_empty() || self.scheduler.num_running() == 0);
                return;
            }
            if self.in_flight.len() as u32 >= self.config.max_batches_in_flight {
                self.complete_oldest(0);
            } else {
                self.schedule();
            }
            self.scheduler.check_invariants().unwrap();
        }
        panic!(
            "requests never finished: {} waiting, {} running",
            self.scheduler.num_waiting(),
            self.scheduler.num_running()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_policy_keeps_its_invariants(
        config in config_strategy(),
        ops in prop::collection::vec(op_strategy(), 1..120),
    ) {
        let mut harness = Harness::new(config);
        for op in &ops {
            harness.apply(op);
        }
        harness.drain();
        let blocks = harness.scheduler.block_manager();
        prop_assert_eq!(blocks.num_used(), 0);
        prop_assert_eq!(blocks.num_free() + blocks.num_cached(), blocks.num_blocks());
    }
}
