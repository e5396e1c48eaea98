use crate::error::{Result, SchedulerError};

/// How a replica forms its batches. See DESIGN.md for the behaviour of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Stall-free: decodes first, then unfinished prefill chunks, then FCFS admissions.
    Sarathi,
    /// Prefill-first: a prefill-only batch whenever a waiting prompt fits, else decodes.
    Vllm,
    /// Iteration-level batching of whole prefills with decodes; reserves max length.
    Orca,
    /// Request-level batching: new requests join only when the batch has drained.
    FasterTransformer,
    /// Token-granular memory; admits only if the projected peak KV use still fits.
    LightLlm,
}

impl Policy {
    pub const ALL: [Policy; 5] = [
        Policy::Sarathi,
        Policy::Vllm,
        Policy::Orca,
        Policy::FasterTransformer,
        Policy::LightLlm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::Sarathi => "sarathi",
            Policy::Vllm => "vllm",
            Policy::Orca => "orca",
            Policy::FasterTransformer => "faster_transformer",
            Policy::LightLlm => "lightllm",
        }
    }

    pub fn from_name(name: &str) -> Result<Policy> {
        Policy::ALL
            .into_iter()
            .find(|policy| policy.name() == name)
            .ok_or_else(|| {
                let known: Vec<_> = Policy::ALL.iter().map(|p| p.name()).collect();
                SchedulerError::InvalidConfig(format!(
                    "unknown policy {name:?}; expected one of {}",
                    known.join(", ")
                ))
            })
    }

    /// Whether a prompt may be split across iterations.
    pub fn chunks_prefills(self) -> bool {
        matches!(self, Policy::Sarathi)
    }

    /// Whether admission reserves blocks for the request's maximum length.
    pub fn reserves_max_length(self) -> bool {
        matches!(self, Policy::Orca | Policy::FasterTransformer)
    }

    /// The token budget when none is given: Sarathi-Serve's chunk of 512 for the chunking policy
    /// (the others run whole prompts, so a max-length one must fit), never below a full decode
    /// batch of `max_num_seqs`.
    pub fn default_token_budget(self, max_num_seqs: u32, max_model_len: u32) -> u32 {
        let budget = if self.chunks_prefills() {
            DEFAULT_CHUNK_SIZE
        } else {
            max_model_len
        };
        budget.max(max_num_seqs)
    }
}

/// Sarathi-Serve's default chunk size (its paper's setting for 7B-class models).
pub const DEFAULT_CHUNK_SIZE: u32 = 512;

/// Which waiting request is admitted first and which running one is preempted first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// First come, first served; the newest running request is preempted first.
    Fcfs,
    /// Lower priority value first (ties by arrival); the highest value is preempted first.
    Priority,
}

impl Order {
    pub fn from_name(name: &str) -> Result<Order> {
        match name {
            "fcfs" => Ok(Order::Fcfs),
            "priority" => Ok(Order::Priority),
            other => Err(SchedulerError::InvalidConfig(format!(
                "unknown order {other:?}; expected fcfs or priority"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Order::Fcfs => "fcfs",
            Order::Priority => "priority",
        }
    }
}

/// Sarathi-Serve's dynamic chunking: prefill chunks shrink in stages as a prompt's
/// processed context grows, because attention makes later chunks costlier.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicChunking {
    /// Smallest chunk, used for the last stage.
    pub min_chunk_size: u32,
    /// Processed-context length over which the stages are spread.
    pub max_context: u32,
    pub num_stages: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    pub policy: Policy,
    /// Maximum tokens in one iteration (the chunk size under `sarathi`).
    pub token_budget: u32,
    pub max_num_seqs: u32,
    pub max_model_len: u32,
    pub block_size: u32,
    pub num_blocks: u32,
    /// Fraction of blocks that admission keeps free, e.g. 0.01.
    pub watermark: f64,
    pub enable_prefix_caching: bool,
    pub order: Order,
    pub dynamic_chunking: Option<DynamicChunking>,
    /// How many scheduled batches may await `update` at once (pipeline stages, or 2 with
    /// `async_scheduling`).
    pub max_batches_in_flight: u32,
    /// Schedule the next batch while the current one runs: requests in flight run again in it,
    /// as if their batches in flight had produced their tokens (see `scheduler::batching`).
    pub async_scheduling: bool,
    /// `lightllm`: decode iterations before waiting prompts may interrupt decoding.
    pub max_decode_iters_between_prefills: u32,
}

/// The knobs a caller (the engine's CLI, a simulator config) may set; `None` takes the
/// default. This is the one place every default lives: both the engine and the simulator build
/// their scheduler through `SchedulerConfig::from_knobs`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedulerKnobs {
    pub policy: Option<Policy>,
    pub token_budget: Option<u32>,
    pub max_num_seqs: Option<u32>,
    pub max_model_len: Option<u32>,
    pub block_size: Option<u32>,
    pub num_blocks: Option<u32>,
    pub watermark: Option<f64>,
    pub enable_prefix_caching: Option<bool>,
    pub order: Option<Order>,
    pub dynamic_chunking: Option<DynamicChunking>,
    pub max_batches_in_flight: Option<u32>,
    pub async_scheduling: Option<bool>,
    pub max_decode_iters_between_prefills: Option<u32>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            policy: Policy::Sarathi,
            token_budget: DEFAULT_CHUNK_SIZE,
            max_num_seqs: 128,
            max_model_len: 4096,
            block_size: 16,
            num_blocks: 4096,
            watermark: 0.01,
            enable_prefix_caching: false,
            order: Order::Fcfs,
            dynamic_chunking: None,
            max_batches_in_flight: 1,
            async_scheduling: false,
            max_decode_iters_between_prefills: 10,
        }
    }
}

impl SchedulerConfig {
    /// The config the knobs describe, defaults filled in, validated.
    pub fn from_knobs(knobs: SchedulerKnobs) -> Result<SchedulerConfig> {
        let defaults = SchedulerConfig::default();
        let policy = knobs.policy.unwrap_or(defaults.policy);
        let max_num_seqs = knobs.max_num_seqs.unwrap_or(defaults.max_num_seqs);
        let max_model_len = knobs.max_model_len.unwrap_or(defaults.max_model_len);
        let config = SchedulerConfig {
            policy,
            token_budget: knobs
                .token_budget
                .unwrap_or_else(|| policy.default_token_budget(max_num_seqs, max_model_len)),
            max_num_seqs,
            max_model_len,
            block_size: knobs.block_size.unwrap_or(defaults.block_size),
            num_blocks: knobs.num_blocks.unwrap_or(defaults.num_blocks),
            watermark: knobs.watermark.unwrap_or(defaults.watermark),
            enable_prefix_caching: knobs
                .enable_prefix_caching
                .unwrap_or(defaults.enable_prefix_caching),
            order: knobs.order.unwrap_or(defaults.order),
            dynamic_chunking: knobs.dynamic_chunking.or(defaults.dynamic_chunking),
            max_batches_in_flight: knobs
                .max_batches_in_flight
                .unwrap_or(defaults.max_batches_in_flight),
            async_scheduling: knobs.async_scheduling.unwrap_or(defaults.async_scheduling),
            max_decode_iters_between_prefills: knobs
                .max_decode_iters_between_prefills
                .unwrap_or(defaults.max_decode_iters_between_prefills),
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |reason: String| Err(SchedulerError::InvalidConfig(reason));
        for (name, value) in [
            ("token_budget", self.token_budget),
            ("max_num_seqs", self.max_num_seqs),
            ("max_model_len", self.max_model_len),
            ("block_size", self.block_size),
            ("num_blocks", self.num_blocks),
            ("max_batches_in_flight", self.max_batches_in_flight),
            (
                "max_decode_iters_between_prefills",
                self.max_decode_iters_between_prefills,
            ),
        ] {
            if value == 0 {
                return fail(format!("{name} must be at least 1"));
            }
        }
        if self.token_budget < self.max_num_seqs {
            return fail(format!(
                "token_budget ({}) must be at least max_num_seqs ({}), or a full decode batch leaves no room",
                self.token_budget, self.max_num_seqs
            ));
        }
        if !(0.0..1.0).contains(&self.watermark) {
            return fail(format!(
                "watermark must be in [0, 1), got {}",
                self.watermark
            ));
        }
        if !self.policy.chunks_prefills() && self.token_budget < self.max_model_len {
            return fail(format!(
                "policy {} does not chunk prefills, so token_budget ({}) must be at least max_model_len ({})",
                self.policy.name(),
                self.token_budget,
                self.max_model_len
            ));
        }
        if let Some(dynamic) = &self.dynamic_chunking {
            if self.policy != Policy::Sarathi {
                return fail("dynamic_chunking applies only to the sarathi policy".into());
            }
            if dynamic.min_chunk_size == 0 || dynamic.min_chunk_size > self.token_budget {
                return fail(format!(
                    "dynamic_chunking.min_chunk_size must be in 1..=token_budget ({}), got {}",
                    self.token_budget, dynamic.min_chunk_size
                ));
            }
            if dynamic.num_stages == 0 || dynamic.max_context == 0 {
                return fail("dynamic_chunking needs num_stages >= 1 and max_context >= 1".into());
            }
        }
        Ok(())
    }

    pub fn watermark_blocks(&self) -> u32 {
        (self.watermark * f64::from(self.num_blocks)).floor() as u32
    }

    /// Why a prompt of `num_prompt_tokens` can never be admitted under this config (longer than
    /// the model's context, or more blocks than the cache admits beside the watermark); None if
    /// it can. `Scheduler::add` refuses exactly these, so a caller can check a request first.
    pub fn prompt_refusal(&self, num_prompt_tokens: u32) -> Option<String> {
        if num_prompt_tokens > self.max_model_len {
            return Some(format!(
                "the prompt has {num_prompt_tokens} tokens, more than max_model_len ({})",
                self.max_model_len
            ));
        }
        let admissible_blocks = self.num_blocks - self.watermark_blocks();
        let prompt_blocks = num_prompt_tokens.div_ceil(self.block_size);
        (prompt_blocks > admissible_blocks).then(|| {
            format!("the prompt needs {prompt_blocks} KV blocks but the cache admits at most {admissible_blocks}")
        })
    }

    /// Longest sequence (prompt + outputs) a request may reach: bounded by the model and by
    /// what the KV cache can admit beside the watermark, so no request can livelock on memory.
    pub fn max_request_tokens(&self) -> u32 {
        let admissible_blocks = u64::from(self.num_blocks - self.watermark_blocks());
        let cache_tokens = admissible_blocks * u64::from(self.block_size);
        cache_tokens.min(u64::from(self.max_model_len)) as u32
    }
}
