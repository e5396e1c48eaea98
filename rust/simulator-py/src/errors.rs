use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::PyErr;
use simulator::SimulatorError as CoreError;

create_exception!(
    _simulator,
    SimulatorError,
    PyValueError,
    "Base class of every error the simulator raises."
);
create_exception!(
    _simulator,
    InvalidCostModelError,
    SimulatorError,
    "A cost-model parameter is out of range."
);
create_exception!(
    _simulator,
    InvalidDeploymentError,
    SimulatorError,
    "The deployment around the replicas is malformed: no replicas, an unknown router."
);
create_exception!(
    _simulator,
    InvalidWorkloadError,
    SimulatorError,
    "The workload is malformed: mismatched columns, unsorted or negative arrivals, empty requests."
);

pub fn to_py(error: CoreError) -> PyErr {
    let message = error.to_string();
    match error {
        CoreError::InvalidCostModel(_) => InvalidCostModelError::new_err(message),
        CoreError::InvalidDeployment(_) => InvalidDeploymentError::new_err(message),
        CoreError::InvalidWorkload(_) => InvalidWorkloadError::new_err(message),
        // The replicas' scheduler raises the scheduler's own exceptions, as in the engine.
        CoreError::Scheduler(error) => scheduler_types_py::to_py(error),
        CoreError::Output(_) => PyOSError::new_err(message),
    }
}

/// Converts a Python integer argument, naming it when it is out of range.
pub fn to_u32(name: &str, value: i64) -> Result<u32, PyErr> {
    u32::try_from(value).map_err(|_| {
        InvalidCostModelError::new_err(format!("{name} must be in 0..=4294967295, got {value}"))
    })
}

pub fn invalid_deployment(message: String) -> PyErr {
    to_py(CoreError::InvalidDeployment(message))
}

/// The same error with `context` put before its reason (one prefix, not two).
pub fn with_context(context: &str, error: CoreError) -> PyErr {
    to_py(match error {
        CoreError::InvalidCostModel(reason) => {
            CoreError::InvalidCostModel(format!("{context}: {reason}"))
        }
        CoreError::InvalidDeployment(reason) => {
            CoreError::InvalidDeployment(format!("{context}: {reason}"))
        }
        CoreError::InvalidWorkload(reason) => {
            CoreError::InvalidWorkload(format!("{context}: {reason}"))
        }
        other => other,
    })
}

pub fn invalid_cost_model(message: String) -> PyErr {
    to_py(CoreError::InvalidCostModel(message))
}

pub fn invalid_workload(message: String) -> PyErr {
    to_py(CoreError::InvalidWorkload(message))
}
