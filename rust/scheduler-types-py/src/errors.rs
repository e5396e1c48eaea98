use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::PyErr;
use scheduler::SchedulerError as CoreError;

create_exception!(
    _scheduler,
    SchedulerError,
    PyValueError,
    "Base class of every error the scheduler raises."
);
create_exception!(
    _scheduler,
    InvalidConfigError,
    SchedulerError,
    "A scheduler config knob is out of range or inconsistent with another."
);
create_exception!(
    _scheduler,
    InvalidRequestError,
    SchedulerError,
    "A request cannot be served: empty, too long for the model, or bigger than the KV cache."
);
create_exception!(
    _scheduler,
    DuplicateRequestError,
    InvalidRequestError,
    "A request id that is already in the scheduler."
);
create_exception!(
    _scheduler,
    UnknownRequestError,
    SchedulerError,
    "A request id that is not in the scheduler."
);
create_exception!(
    _scheduler,
    InvalidOutputsError,
    SchedulerError,
    "Outputs that do not match a batch awaiting update()."
);
create_exception!(
    _scheduler,
    TooManyBatchesInFlightError,
    SchedulerError,
    "schedule() was called while the allowed number of batches still await update()."
);

pub fn to_py(error: CoreError) -> PyErr {
    let message = error.to_string();
    match error {
        CoreError::InvalidConfig(_) => InvalidConfigError::new_err(message),
        CoreError::InvalidRequest { .. } => InvalidRequestError::new_err(message),
        CoreError::DuplicateRequest(_) => DuplicateRequestError::new_err(message),
        CoreError::UnknownRequest(_) => UnknownRequestError::new_err(message),
        CoreError::InvalidOutputs(_) => InvalidOutputsError::new_err(message),
        CoreError::TooManyBatchesInFlight { .. } => TooManyBatchesInFlightError::new_err(message),
    }
}

/// Converts a Python integer argument, naming it when it is out of range.
pub fn to_u32(name: &str, value: i64, error: impl Fn(String) -> PyErr) -> Result<u32, PyErr> {
    u32::try_from(value)
        .map_err(|_| error(format!("{name} must be in 0..=4294967295, got {value}")))
}

pub fn invalid_config(message: String) -> PyErr {
    InvalidConfigError::new_err(format!("invalid scheduler config: {message}"))
}

pub fn invalid_request(message: String) -> PyErr {
    InvalidRequestError::new_err(message)
}

pub fn invalid_outputs(message: String) -> PyErr {
    InvalidOutputsError::new_err(format!("invalid batch outputs: {message}"))
}
