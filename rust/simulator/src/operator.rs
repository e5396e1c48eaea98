use crate::curve::PiecewiseLinear;
use crate::error::{Result, SimulatorError};

/// What an operator's time depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperatorInput {
    /// Every token of the iteration (projections, MLP, norms, all-reduce, send/recv).
    Tokens,
    /// The tokens sampled this iteration, one per sequence that produces one (the LM head).
    SampledTokens,
}

/// Which pipeline stages run an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    EveryStage,
    /// The embedding lookup.
    FirstStage,
    /// The LM head.
    LastStage,
    /// Activations sent from each stage to the next (every stage but the last).
    BetweenStages,
}

/// Whether an operator is computation or communication between GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperatorKind {
    Compute,
    Communication,
}

/// One predicted operator of an iteration: its time as a function of its input, and how many
/// times a stage runs it (for instance once per layer the stage holds).
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorTerm {
    pub name: String,
    pub curve: PiecewiseLinear,
    pub repeat: f64,
    pub input: OperatorInput,
    pub placement: Placement,
    pub kind: OperatorKind,
}

impl OperatorTerm {
    pub fn new(
        name: String,
        curve: PiecewiseLinear,
        repeat: f64,
        input: OperatorInput,
        placement: Placement,
        kind: OperatorKind,
    ) -> Result<Self> {
        if !(repeat.is_finite() && repeat >= 0.0) {
            return Err(SimulatorError::InvalidCostModel(format!(
                "operator {name}: repeat must be finite and non-negative, got {repeat}"
            )));
        }
        Ok(OperatorTerm {
            name,
            curve,
            repeat,
            input,
            placement,
            kind,
        })
    }

    /// Seconds this operator adds to one stage that runs it.
    #[inline]
    pub fn time(&self, input: u64) -> f64 {
        self.repeat * self.curve.eval(input as f64)
    }
}
