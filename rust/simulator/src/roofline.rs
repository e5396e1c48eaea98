use crate::error::{Result, SimulatorError};

/// What a kernel has to do: floating-point operations and bytes moved to or from memory.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Work {
    pub flops: f64,
    pub bytes: f64,
}

impl std::ops::AddAssign for Work {
    fn add_assign(&mut self, other: Work) {
        self.flops += other.flops;
        self.bytes += other.bytes;
    }
}

/// A kernel's time as the roofline model gives it: a fixed launch overhead plus the slower of
/// its compute and its memory traffic at the rates the kernel actually reaches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roofline {
    pub flops_per_s: f64,
    pub bytes_per_s: f64,
    pub overhead_s: f64,
}

impl Roofline {
    pub fn new(flops_per_s: f64, bytes_per_s: f64, overhead_s: f64) -> Result<Self> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !(positive(flops_per_s) && positive(bytes_per_s)) {
            return Err(SimulatorError::InvalidCostModel(format!(
                "a roofline needs positive finite rates, got {flops_per_s} FLOP/s and {bytes_per_s} B/s"
            )));
        }
        if !(overhead_s.is_finite() && overhead_s >= 0.0) {
            return Err(SimulatorError::InvalidCostModel(format!(
                "a roofline's overhead must be finite and non-negative, got {overhead_s}"
            )));
        }
        Ok(Roofline {
            flops_per_s,
            bytes_per_s,
            overhead_s,
        })
    }

    #[inline]
    pub fn time(&self, work: Work) -> f64 {
        self.overhead_s + (work.flops / self.flops_per_s).max(work.bytes / self.bytes_per_s)
    }
}
