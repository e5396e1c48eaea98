//! The scheduler's Python types that both extension modules expose (`engine._scheduler` and
//! `vidur._simulator`): the config, built from knobs whose defaults live in the core, and the
//! scheduler's exceptions. Each module registers them with `register`, so a simulated and a
//! real run are configured by the same code.

mod config;
mod errors;

use pyo3::prelude::*;

pub use config::PySchedulerConfig;
pub use errors::{
    invalid_config, invalid_outputs, invalid_request, to_py, to_u32, DuplicateRequestError,
    InvalidConfigError, InvalidOutputsError, InvalidRequestError, SchedulerError,
    TooManyBatchesInFlightError, UnknownRequestError,
};

/// Adds the config class and the exception hierarchy to `module`, under its name.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let name = module.name()?;
    module.add_class::<PySchedulerConfig>()?;
    let exceptions = [
        ("SchedulerError", py.get_type::<SchedulerError>()),
        ("InvalidConfigError", py.get_type::<InvalidConfigError>()),
        ("InvalidRequestError", py.get_type::<InvalidRequestError>()),
        (
            "DuplicateRequestError",
            py.get_type::<DuplicateRequestError>(),
        ),
        ("UnknownRequestError", py.get_type::<UnknownRequestError>()),
        ("InvalidOutputsError", py.get_type::<InvalidOutputsError>()),
        (
            "TooManyBatchesInFlightError",
            py.get_type::<TooManyBatchesInFlightError>(),
        ),
    ];
    for (exception_name, exception) in exceptions {
        exception.setattr("__module__", &name)?;
        module.add(exception_name, exception)?;
    }
    module
        .getattr("SchedulerConfig")?
        .setattr("__module__", name)?;
    Ok(())
}
