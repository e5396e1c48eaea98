//! Python face of the scheduler crate: type conversion and error mapping only.

mod batch;
mod config;
mod errors;
mod scheduler;

use pyo3::prelude::*;

#[pymodule]
fn _scheduler(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add_class::<config::PySchedulerConfig>()?;
    module.add_class::<scheduler::PyScheduler>()?;
    module.add_class::<batch::PyBatch>()?;
    module.add_class::<batch::PyScheduledRequest>()?;
    module.add_class::<batch::PyFinishedRequest>()?;
    module.add_class::<batch::PyRequestState>()?;
    module.add("SchedulerError", py.get_type::<errors::SchedulerError>())?;
    module.add(
        "InvalidConfigError",
        py.get_type::<errors::InvalidConfigError>(),
    )?;
    module.add(
        "InvalidRequestError",
        py.get_type::<errors::InvalidRequestError>(),
    )?;
    module.add(
        "DuplicateRequestError",
        py.get_type::<errors::DuplicateRequestError>(),
    )?;
    module.add(
        "UnknownRequestError",
        py.get_type::<errors::UnknownRequestError>(),
    )?;
    module.add(
        "InvalidOutputsError",
        py.get_type::<errors::InvalidOutputsError>(),
    )?;
    module.add(
        "TooManyBatchesInFlightError",
        py.get_type::<errors::TooManyBatchesInFlightError>(),
    )?;
    Ok(())
}
