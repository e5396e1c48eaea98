use crate::error::{Result, SimulatorError};

/// A cost of `base_s` plus `per_seq_s` for each sequence it handles.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinearCost {
    pub base_s: f64,
    pub per_seq_s: f64,
}

impl LinearCost {
    pub fn new(base_s: f64, per_seq_s: f64) -> Result<Self> {
        let valid = |v: f64| v.is_finite() && v >= 0.0;
        if !(valid(base_s) && valid(per_seq_s)) {
            return Err(SimulatorError::InvalidCostModel(format!(
                "CPU overheads must be finite and non-negative, got base {base_s} s, {per_seq_s} s per sequence"
            )));
        }
        Ok(LinearCost { base_s, per_seq_s })
    }

    #[inline]
    pub fn time(&self, num_seqs: u32) -> f64 {
        self.base_s + self.per_seq_s * f64::from(num_seqs)
    }
}

/// The host-side work of an iteration around the GPU forward pass. `schedule` and
/// `process_outputs` run in the engine's process (which, with async scheduling, does them while
/// the workers run the previous batch); `prepare_inputs` and `sample` run in the workers, in
/// series with the forward pass.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuOverheads {
    pub schedule: LinearCost,
    pub prepare_inputs: LinearCost,
    pub sample: LinearCost,
    pub process_outputs: LinearCost,
}

impl CpuOverheads {
    /// Before the first stage starts: scheduling and building the model inputs.
    #[inline]
    pub fn before_forward(&self, num_seqs: u32) -> f64 {
        self.schedule.time(num_seqs) + self.prepare_inputs.time(num_seqs)
    }

    /// After the last stage: sampling the `num_sampled` sequences that produce a token (a
    /// prefill chunk that does not finish its prompt samples nothing) and handing every
    /// sequence's outcome back.
    #[inline]
    pub fn after_forward(&self, num_seqs: u32, num_sampled: u32) -> f64 {
        self.sample.time(num_sampled) + self.process_outputs.time(num_seqs)
    }

    /// The engine's share of `before_forward`: scheduling and sending the batch.
    #[inline]
    pub fn engine_before(&self, num_seqs: u32) -> f64 {
        self.schedule.time(num_seqs)
    }

    /// The engine's share of `after_forward`: applying the batch's outputs.
    #[inline]
    pub fn engine_after(&self, num_seqs: u32) -> f64 {
        self.process_outputs.time(num_seqs)
    }
}
