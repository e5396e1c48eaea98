//! An iteration's predicted time: the sum of its operators' predicted times per pipeline stage,
//! attention over the KV cache, and the host-side overheads around the forward pass.

use crate::attention::{AttentionModel, AttentionWork};
use crate::cpu_overheads::CpuOverheads;
use crate::error::{Result, SimulatorError};
use crate::operator::{OperatorInput, OperatorKind, OperatorTerm, Placement};

/// One request's share of an iteration, as the cost model needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchEntry {
    pub num_tokens: u32,
    /// Tokens already in the KV cache before this iteration.
    pub num_computed_tokens: u32,
    pub is_prefill: bool,
    pub produces_token: bool,
}

impl From<&scheduler::ScheduledRequest> for BatchEntry {
    #[inline]
    fn from(r: &scheduler::ScheduledRequest) -> Self {
        BatchEntry {
            num_tokens: r.num_tokens,
            num_computed_tokens: r.num_computed_tokens,
            is_prefill: r.is_prefill,
            produces_token: r.produces_token,
        }
    }
}

/// The predicted time of one iteration, split the way records and traces report it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IterationTime {
    pub num_stages: u32,
    /// Host time before the first stage: the engine's (`engine_before_s`) and the workers'.
    pub cpu_before_s: f64,
    /// Host time after the last stage: the workers' and the engine's (`engine_after_s`).
    pub cpu_after_s: f64,
    pub engine_before_s: f64,
    pub engine_after_s: f64,
    /// What every stage runs: its layers' operators and attention.
    pub every_stage_s: f64,
    /// Added to the first stage (the embedding).
    pub first_stage_extra_s: f64,
    /// Added to the last stage (the LM head).
    pub last_stage_extra_s: f64,
    /// Added to every stage but the last (sending activations on).
    pub between_stages_s: f64,
    /// Attention over all stages.
    pub attention_s: f64,
    /// Communication between GPUs over all stages.
    pub communication_s: f64,
    /// One layer's attention work on one GPU.
    pub attention_work: AttentionWork,
    /// Tokens over the batch (a sum of u32 counts, so u64: it cannot wrap).
    pub num_tokens: u64,
    pub num_sampled: u32,
    pub num_seqs: u32,
    /// Sum over the batch's decodes of their context length, the new token included.
    pub decode_context_tokens: u64,
}

impl IterationTime {
    #[inline]
    pub fn stage_s(&self, stage: u32) -> f64 {
        let last = self.num_stages - 1;
        let mut time = self.every_stage_s;
        if stage == 0 {
            time += self.first_stage_extra_s;
        }
        if stage == last {
            time += self.last_stage_extra_s;
        } else {
            time += self.between_stages_s;
        }
        time
    }

    /// All stages' GPU time back to back.
    pub fn forward_s(&self) -> f64 {
        (0..self.num_stages).map(|stage| self.stage_s(stage)).sum()
    }

    /// The iteration's latency when nothing else is in the pipeline.
    pub fn latency_s(&self) -> f64 {
        self.cpu_before_s + self.forward_s() + self.cpu_after_s
    }

    pub fn cpu_s(&self) -> f64 {
        self.cpu_before_s + self.cpu_after_s
    }

    /// The workers' host time before the first stage (building the model inputs).
    pub fn worker_before_s(&self) -> f64 {
        self.cpu_before_s - self.engine_before_s
    }

    /// The workers' host time after the last stage (sampling).
    pub fn worker_after_s(&self) -> f64 {
        self.cpu_after_s - self.engine_after_s
    }
}

/// The summed operator times of one (placement, input, kind) group, tabulated by input size.
#[derive(Debug, Clone)]
struct OperatorTable {
    placement: Placement,
    input: OperatorInput,
    kind: OperatorKind,
    term_indices: Vec<usize>,
    by_input: Vec<f64>,
}

/// Predicts an iteration's time for one replica (all its pipeline stages).
#[derive(Debug, Clone)]
pub struct CostModel {
    num_stages: u32,
    layers_per_stage: u32,
    operators: Vec<OperatorTerm>,
    attention: AttentionModel,
    cpu: CpuOverheads,
    tables: Vec<OperatorTable>,
}

impl CostModel {
    /// `max_tokens` sizes the lookup tables (the scheduler's token budget); larger batches are
    /// still predicted, from the curves directly.
    pub fn new(
        num_stages: u32,
        layers_per_stage: u32,
        operators: Vec<OperatorTerm>,
        attention: AttentionModel,
        cpu: CpuOverheads,
        max_tokens: u32,
    ) -> Result<Self> {
        if num_stages == 0 || layers_per_stage == 0 {
            return Err(SimulatorError::InvalidCostModel(format!(
                "a replica needs at least one stage and one layer per stage, got {num_stages} and {layers_per_stage}"
            )));
        }
        if max_tokens > 1 << 22 {
            return Err(SimulatorError::InvalidCostModel(format!(
                "max_tokens {max_tokens} is beyond any batch a replica can run"
            )));
        }
        let mut tables: Vec<OperatorTable> = Vec::new();
        for (index, term) in operators.iter().enumerate() {
            let table = match tables
                .iter_mut()
                .find(|t| (t.placement, t.input, t.kind) == (term.placement, term.input, term.kind))
            {
                Some(table) => table,
                None => {
                    tables.push(OperatorTable {
                        placement: term.placement,
                        input: term.input,
                        kind: term.kind,
                        term_indices: Vec::new(),
                        by_input: vec![0.0; max_tokens as usize + 1],
                    });
                    tables.last_mut().expect("just pushed")
                }
            };
            table.term_indices.push(index);
            for (input, value) in table.by_input.iter_mut().enumerate() {
                *value += term.time(input as u64);
            }
        }
        Ok(CostModel {
            num_stages,
            layers_per_stage,
            operators,
            attention,
            cpu,
            tables,
        })
    }

    pub fn num_stages(&self) -> u32 {
        self.num_stages
    }

    pub fn layers_per_stage(&self) -> u32 {
        self.layers_per_stage
    }

    pub fn operators(&self) -> &[OperatorTerm] {
        &self.operators
    }

    pub fn attention(&self) -> &AttentionModel {
        &self.attention
    }

    pub fn cpu_overheads(&self) -> &CpuOverheads {
        &self.cpu
    }

    pub fn predict<I>(&self, entries: I) -> IterationTime
    where
        I: IntoIterator<Item = BatchEntry>,
    {
        let mut work = AttentionWork::default();
        let (mut num_sampled, mut num_seqs) = (0u32, 0u32);
        let (mut num_tokens, mut decode_context, mut max_decode_context) = (0u64, 0u64, 0u64);
        for entry in entries {
            num_seqs += 1;
            num_tokens += u64::from(entry.num_tokens);
            num_sampled += u32::from(entry.produces_token);
            if entry.is_prefill {
                work.num_prefills += 1;
                work.prefill += self
                    .attention
                    .prefill_work(entry.num_tokens, entry.num_computed_tokens);
            } else {
                work.num_decodes += 1;
                let context = u64::from(entry.num_computed_tokens) + u64::from(entry.num_tokens);
                decode_context += context;
                max_decode_context = max_decode_context.max(context);
            }
        }
        if work.num_decodes > 0 {
            work.decode =
                self.attention
                    .decode_work(work.num_decodes, decode_context, max_decode_context);
        }
        work.kv_save = self.attention.kv_save_work(num_tokens);

        let stages = f64::from(self.num_stages);
        let attention_per_stage =
            f64::from(self.layers_per_stage) * self.attention.layer_time(&work);
        let mut time = IterationTime {
            num_stages: self.num_stages,
            cpu_before_s: self.cpu.before_forward(num_seqs),
            cpu_after_s: self.cpu.after_forward(num_seqs, num_sampled),
            engine_before_s: self.cpu.engine_before(num_seqs),
            engine_after_s: self.cpu.engine_after(num_seqs),
            every_stage_s: attention_per_stage,
            attention_s: attention_per_stage * stages,
            attention_work: work,
            num_tokens,
            num_sampled,
            num_seqs,
            decode_context_tokens: decode_context,
            ..IterationTime::default()
        };
        if num_seqs == 0 {
            return time;
        }
        for table in &self.tables {
            let input = match table.input {
                OperatorInput::Tokens => num_tokens,
                OperatorInput::SampledTokens => u64::from(num_sampled),
            };
            if input == 0 {
                continue; // no sampled token: the LM head and its gather do not run
            }
            let value = match usize::try_from(input)
                .ok()
                .and_then(|i| table.by_input.get(i))
            {
                Some(&value) => value,
                None => table
                    .term_indices
                    .iter()
                    .map(|&i| self.operators[i].time(input))
                    .sum(),
            };
            let (slot, num_running_stages) = match table.placement {
                Placement::EveryStage => (&mut time.every_stage_s, stages),
                Placement::FirstStage => (&mut time.first_stage_extra_s, 1.0),
                Placement::LastStage => (&mut time.last_stage_extra_s, 1.0),
                Placement::BetweenStages => (&mut time.between_stages_s, stages - 1.0),
            };
            *slot += value;
            if table.kind == OperatorKind::Communication {
                time.communication_s += value * num_running_stages;
            }
        }
        time
    }
}
