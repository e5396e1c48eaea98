use crate::error::{Result, SchedulerError};

pub type RequestId = u64;
pub type TokenId = u32;
pub type BlockId = u32;

/// What a caller submits.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRequest {
    pub id: RequestId,
    pub num_prompt_tokens: u32,
    /// The prompt's token ids; needed for prefix caching, optional otherwise.
    pub prompt_token_ids: Option<Vec<TokenId>>,
    pub max_new_tokens: u32,
    pub arrival_time: f64,
    /// Used when the scheduler's order is `priority`: lower values are served first.
    pub priority: i64,
}

impl NewRequest {
    /// A request known only by its lengths, as simulators and benchmarks use.
    pub fn with_lengths(id: RequestId, num_prompt_tokens: u32, max_new_tokens: u32) -> Self {
        NewRequest {
            id,
            num_prompt_tokens,
            prompt_token_ids: None,
            max_new_tokens,
            arrival_time: 0.0,
            priority: 0,
        }
    }

    pub(crate) fn reject(&self, reason: String) -> SchedulerError {
        SchedulerError::InvalidRequest {
            id: self.id,
            reason,
        }
    }

    pub(crate) fn validate_shape(&self) -> Result<()> {
        if let Some(ids) = &self.prompt_token_ids {
            if ids.len() != self.num_prompt_tokens as usize {
                return Err(self.reject(format!(
                    "prompt_token_ids has {} tokens but the prompt length is {}",
                    ids.len(),
                    self.num_prompt_tokens
                )));
            }
        }
        if self.num_prompt_tokens == 0 {
            return Err(self.reject("the prompt is empty".into()));
        }
        if self.max_new_tokens == 0 {
            return Err(self.reject("max_new_tokens must be at least 1".into()));
        }
        if !self.arrival_time.is_finite() {
            return Err(self.reject(format!(
                "arrival_time must be finite, got {}",
                self.arrival_time
            )));
        }
        Ok(())
    }
}

/// Why a request left the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// Reached max_new_tokens, the max model length, or the KV cache's capacity.
    Length,
    /// The caller reported a stop (EOS, a stop string).
    Stop,
    Aborted,
}

impl FinishReason {
    pub fn name(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::Stop => "stop",
            FinishReason::Aborted => "aborted",
        }
    }
}

/// A request that left the scheduler, reported by `update` (and by `abort`).
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedRequest {
    pub id: RequestId,
    pub reason: FinishReason,
    pub num_prompt_tokens: u32,
    pub num_output_tokens: u32,
    /// When the request was first scheduled; `None` if it never ran.
    pub first_scheduled_at: Option<f64>,
    pub num_preemptions: u32,
    /// Prompt tokens found in the prefix cache at the request's first admission (0 without caching).
    pub num_cached_tokens: u32,
    /// The slot it held (free again now).
    pub slot: u32,
}

/// A read-only snapshot of one request's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestView {
    pub id: RequestId,
    pub is_running: bool,
    pub is_prefill: bool,
    pub num_prompt_tokens: u32,
    pub num_output_tokens: u32,
    pub num_computed_tokens: u32,
    pub num_blocks: u32,
    pub num_preemptions: u32,
}

/// Ordering key of the waiting queue and the running list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct QueueKey {
    pub priority: i64,
    /// `arrival_time` as a totally ordered integer.
    pub arrival: i64,
    pub seq: u64,
}

fn ordered_bits(value: f64) -> i64 {
    let bits = value.to_bits() as i64;
    bits ^ (((bits >> 63) as u64) >> 1) as i64
}

/// A request's live state inside the scheduler.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub id: RequestId,
    /// Unique per `add`, so a stale batch entry never matches a reused slot or id.
    pub seq: u64,
    pub key: QueueKey,
    pub arrival_time: f64,
    pub num_prompt_tokens: u32,
    pub max_new_tokens: u32,
    pub num_output_tokens: u32,
    /// Tokens whose KV is in the cache.
    pub num_computed_tokens: u32,
    /// Prompt then outputs; empty when the caller gave no token ids.
    pub token_ids: Vec<TokenId>,
    pub block_ids: Vec<BlockId>,
    /// Chained hashes of the leading full blocks, as far as they have been computed.
    pub block_hashes: Vec<u64>,
    pub is_running: bool,
    /// Tokens of this request in batches that await `update`.
    pub in_flight_tokens: u32,
    /// Entries of this request in batches that await `update` that sample a token.
    pub in_flight_outputs: u32,
    /// Whether any batch has held it (so the caller knows it and must be told when it leaves).
    pub was_scheduled: bool,
    pub first_scheduled_at: Option<f64>,
    /// Also the request's epoch: a batch entry from before its last preemption is stale.
    pub num_preemptions: u32,
    pub num_cached_tokens: u32,
}

impl Request {
    pub fn new(new: NewRequest, seq: u64, order_by_priority: bool) -> Request {
        let key = QueueKey {
            priority: if order_by_priority { new.priority } else { 0 },
            arrival: ordered_bits(new.arrival_time),
            seq,
        };
        Request {
            id: new.id,
            seq,
            key,
            arrival_time: new.arrival_time,
            num_prompt_tokens: new.num_prompt_tokens,
            max_new_tokens: new.max_new_tokens,
            num_output_tokens: 0,
            num_computed_tokens: 0,
            token_ids: new.prompt_token_ids.unwrap_or_default(),
            block_ids: Vec::new(),
            block_hashes: Vec::new(),
            is_running: false,
            in_flight_tokens: 0,
            in_flight_outputs: 0,
            was_scheduled: false,
            first_scheduled_at: None,
            num_preemptions: 0,
            num_cached_tokens: 0,
        }
    }

    #[inline]
    pub fn num_tokens(&self) -> u32 {
        self.num_prompt_tokens + self.num_output_tokens
    }

    #[inline]
    pub fn is_in_flight(&self) -> bool {
        self.in_flight_tokens > 0
    }

    /// The tokens whose KV will be in the cache once every batch in flight has been updated.
    #[inline]
    pub fn projected_computed_tokens(&self) -> u32 {
        self.num_computed_tokens + self.in_flight_tokens
    }

    /// Prompt and outputs once every batch in flight has been updated (each sampling one).
    #[inline]
    pub fn projected_tokens(&self) -> u32 {
        self.num_tokens() + self.in_flight_outputs
    }

    #[inline]
    pub fn projected_output_tokens(&self) -> u32 {
        self.num_output_tokens + self.in_flight_outputs
    }

    #[inline]
    pub fn num_uncomputed_tokens(&self) -> u32 {
        self.projected_tokens() - self.projected_computed_tokens()
    }

    /// A prefill (first pass or recompute after preemption) has more than the one pending
    /// token of a decode, or has produced nothing yet (counting batches in flight as done).
    #[inline]
    pub fn is_prefill(&self) -> bool {
        self.projected_output_tokens() == 0 || self.num_uncomputed_tokens() > 1
    }

    pub fn has_token_ids(&self) -> bool {
        !self.token_ids.is_empty()
    }

    pub fn view(&self) -> RequestView {
        RequestView {
            id: self.id,
            is_running: self.is_running,
            is_prefill: self.is_prefill(),
            num_prompt_tokens: self.num_prompt_tokens,
            num_output_tokens: self.num_output_tokens,
            num_computed_tokens: self.num_computed_tokens,
            num_blocks: self.block_ids.len() as u32,
            num_preemptions: self.num_preemptions,
        }
    }

    pub fn finished(&self, reason: FinishReason, slot: u32) -> FinishedRequest {
        FinishedRequest {
            slot,
            id: self.id,
            reason,
            num_prompt_tokens: self.num_prompt_tokens,
            num_output_tokens: self.num_output_tokens,
            first_scheduled_at: self.first_scheduled_at,
            num_preemptions: self.num_preemptions,
            num_cached_tokens: self.num_cached_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ordered_bits;

    #[test]
    fn ordered_bits_preserve_float_order() {
        let values = [-1e9, -2.5, -0.0, 0.0, 1e-9, 3.0, 7e12];
        for pair in values.windows(2) {
            assert!(ordered_bits(pair[0]) <= ordered_bits(pair[1]), "{pair:?}");
        }
    }
}
