use std::fmt;

use crate::request::RequestId;

/// Everything the scheduler can refuse. Each kind maps to its own Python exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchedulerError {
    InvalidConfig(String),
    InvalidRequest { id: RequestId, reason: String },
    DuplicateRequest(RequestId),
    UnknownRequest(RequestId),
    InvalidOutputs(String),
    TooManyBatchesInFlight { limit: u32 },
}

impl fmt::Display for SchedulerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidConfig(reason) => write!(f, "invalid scheduler config: {reason}"),
            Self::InvalidRequest { id, reason } => write!(f, "request {id} rejected: {reason}"),
            Self::DuplicateRequest(id) => write!(f, "request id {id} is already in the scheduler"),
            Self::UnknownRequest(id) => write!(f, "request id {id} is not in the scheduler"),
            Self::InvalidOutputs(reason) => write!(f, "invalid batch outputs: {reason}"),
            Self::TooManyBatchesInFlight { limit } => write!(
                f,
                "{limit} batch(es) already await update(); call update() before scheduling another"
            ),
        }
    }
}

impl std::error::Error for SchedulerError {}

pub type Result<T> = std::result::Result<T, SchedulerError>;
