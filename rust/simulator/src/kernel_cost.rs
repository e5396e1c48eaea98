use crate::error::{Result, SimulatorError};

/// What one kernel launch does, in the quantities its time is linear in. Each kernel fills the
/// fields that describe it (the attention work functions say which).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KernelWork {
    /// Query tokens (one per decode; the tokens written, for the KV save).
    pub num_tokens: f64,
    /// The independent units the kernel spreads over the GPU's multiprocessors: a prefill's
    /// query rows of every query head, a decode's (sequence, KV head) pairs.
    pub num_items: f64,
    /// The most keys any one query attends to.
    pub max_context: f64,
    /// FLOPs of queries against keys cached before their chunk (all of a decode's FLOPs).
    pub context_flops: f64,
    /// FLOPs of queries against the keys of their own chunk, up to themselves.
    pub causal_flops: f64,
    /// Bytes read from or written to memory.
    pub bytes: f64,
}

impl KernelWork {
    pub fn flops(&self) -> f64 {
        self.context_flops + self.causal_flops
    }
}

/// Work of one launch that covers both operands (their sums; the longer of their contexts).
impl std::ops::AddAssign for KernelWork {
    fn add_assign(&mut self, other: KernelWork) {
        self.num_tokens += other.num_tokens;
        self.num_items += other.num_items;
        self.max_context = self.max_context.max(other.max_context);
        self.context_flops += other.context_flops;
        self.causal_flops += other.causal_flops;
        self.bytes += other.bytes;
    }
}

/// A kernel's time: a launch cost plus a cost per unit of each kind of work, every term
/// non-negative and added to the others. A zero coefficient leaves its term out; a kernel that
/// costs nothing at all (work another kernel already does) is [`KernelCost::FREE`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelCost {
    pub launch_s: f64,
    pub per_token_s: f64,
    pub per_item_s: f64,
    /// Per token of the longest context: the floor set by streaming one query's keys when there
    /// are too few items to keep the GPU's memory system busy.
    pub per_context_token_s: f64,
    pub per_context_flop_s: f64,
    pub per_causal_flop_s: f64,
    pub per_byte_s: f64,
}

impl KernelCost {
    pub const FREE: KernelCost = KernelCost {
        launch_s: 0.0,
        per_token_s: 0.0,
        per_item_s: 0.0,
        per_context_token_s: 0.0,
        per_context_flop_s: 0.0,
        per_causal_flop_s: 0.0,
        per_byte_s: 0.0,
    };

    /// The cost itself, if every coefficient is finite and non-negative.
    pub fn validated(self) -> Result<Self> {
        let coefficients = [
            ("launch_s", self.launch_s),
            ("per_token_s", self.per_token_s),
            ("per_item_s", self.per_item_s),
            ("per_context_token_s", self.per_context_token_s),
            ("per_context_flop_s", self.per_context_flop_s),
            ("per_causal_flop_s", self.per_causal_flop_s),
            ("per_byte_s", self.per_byte_s),
        ];
        for (name, value) in coefficients {
            if !(value.is_finite() && value >= 0.0) {
                return Err(SimulatorError::InvalidCostModel(format!(
                    "a kernel cost's {name} must be finite and non-negative, got {value}"
                )));
            }
        }
        Ok(self)
    }

    #[inline]
    pub fn time(&self, work: &KernelWork) -> f64 {
        self.launch_s
            + self.per_token_s * work.num_tokens
            + self.per_item_s * work.num_items
            + self.per_context_token_s * work.max_context
            + self.per_context_flop_s * work.context_flops
            + self.per_causal_flop_s * work.causal_flops
            + self.per_byte_s * work.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_adds_every_term_to_the_launch() {
        let cost = KernelCost {
            launch_s: 1.0,
            per_token_s: 2.0,
            per_item_s: 3.0,
            per_context_token_s: 4.0,
            per_context_flop_s: 5.0,
            per_causal_flop_s: 6.0,
            per_byte_s: 7.0,
        };
        let work = KernelWork {
            num_tokens: 10.0,
            num_items: 100.0,
            max_context: 1000.0,
            context_flops: 1e4,
            causal_flops: 1e5,
            bytes: 1e6,
        };
        // 1 + 20 + 300 + 4000 + 50000 + 600000 + 7000000
        assert_eq!(cost.time(&work), 7_654_321.0);
        assert_eq!(KernelCost::FREE.time(&work), 0.0);
    }

    #[test]
    fn combined_work_sums_everything_but_the_longest_context() {
        let mut work = KernelWork {
            num_tokens: 1.0,
            max_context: 50.0,
            bytes: 8.0,
            ..KernelWork::default()
        };
        work += KernelWork {
            num_tokens: 2.0,
            max_context: 30.0,
            bytes: 4.0,
            ..KernelWork::default()
        };
        assert_eq!(
            (work.num_tokens, work.max_context, work.bytes),
            (3.0, 50.0, 12.0)
        );
    }

    #[test]
    fn negative_or_infinite_coefficients_are_refused() {
        let negative = KernelCost {
            per_byte_s: -1.0,
            ..KernelCost::FREE
        };
        let error = negative.validated().unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid cost model: a kernel cost's per_byte_s must be finite and non-negative, got -1"
        );
        let infinite = KernelCost {
            launch_s: f64::INFINITY,
            ..KernelCost::FREE
        };
        assert!(infinite.validated().is_err());
    }
}
