use std::fmt;

use scheduler::SchedulerError;

/// Everything the simulator can refuse. Each kind maps to its own Python exception.
#[derive(Debug, Clone, PartialEq)]
pub enum SimulatorError {
    /// A cost-model parameter is out of range.
    InvalidCostModel(String),
    /// The deployment around the replicas is malformed (no replicas, an unknown router).
    InvalidDeployment(String),
    /// The workload is malformed (mismatched lengths, negative or unordered arrivals, ...).
    InvalidWorkload(String),
    /// The replica scheduler's config was rejected.
    Scheduler(SchedulerError),
    /// Records could not be written where the run was told to stream them.
    Output(String),
}

impl fmt::Display for SimulatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidCostModel(reason) => write!(f, "invalid cost model: {reason}"),
            Self::InvalidDeployment(reason) => write!(f, "invalid deployment: {reason}"),
            Self::InvalidWorkload(reason) => write!(f, "invalid workload: {reason}"),
            Self::Scheduler(error) => write!(f, "{error}"),
            Self::Output(reason) => write!(f, "{reason}"),
        }
    }
}

impl std::error::Error for SimulatorError {}

impl From<SchedulerError> for SimulatorError {
    fn from(error: SchedulerError) -> Self {
        SimulatorError::Scheduler(error)
    }
}

pub type Result<T> = std::result::Result<T, SimulatorError>;
