use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::PyErr;
use scheduler::SchedulerError;
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
    "A cost-model or deployment parameter is out of range."
);
create_exception!(
    _simulator,
    InvalidWorkloadError,
    SimulatorError,
    "The workload is malformed: mismatched columns, unsorted or negative arrivals, empty requests."
);
create_exception!(
    _simulator,
    SchedulerConfigError,
    SimulatorError,
    "The replica scheduler's config was rejected."
);

pub fn to_py(error: CoreError) -> PyErr {
    let message = error.to_string();
    match error {
        CoreError::InvalidCostModel(_) => InvalidCostModelError::new_err(message),
        CoreError::InvalidWorkload(_) => InvalidWorkloadError::new_err(message),
        CoreError::Scheduler(SchedulerError::InvalidConfig(_)) => {
            SchedulerConfigError::new_err(message)
        }
        CoreError::Scheduler(_) => SimulatorError::new_err(message),
    }
}

pub fn scheduler_config_error(error: SchedulerError) -> PyErr {
    to_py(CoreError::Scheduler(error))
}

/// Converts a Python integer argument, naming it when it is out of range.
pub fn to_u32(name: &str, value: i64) -> Result<u32, PyErr> {
    u32::try_from(value).map_err(|_| {
        InvalidCostModelError::new_err(format!("{name} must be in 0..=4294967295, got {value}"))
    })
}

pub fn invalid_cost_model(message: String) -> PyErr {
    InvalidCostModelError::new_err(format!("invalid cost model: {message}"))
}

pub fn invalid_workload(message: String) -> PyErr {
    InvalidWorkloadError::new_err(format!("invalid workload: {message}"))
}
