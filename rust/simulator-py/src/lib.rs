//! Python face of the simulator crate: type conversion and error mapping only.

mod byte_columns;
mod cost_model;
mod errors;
mod prefix_workload;
mod request_files;
mod simulation;
mod stream_deadlines;

use pyo3::prelude::*;

#[pymodule]
fn _simulator(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add_class::<cost_model::PyCurve>()?;
    module.add_class::<cost_model::PyKernelWork>()?;
    module.add_class::<cost_model::PyKernelCost>()?;
    module.add_class::<cost_model::PyAttentionModel>()?;
    module.add_class::<cost_model::PyOperatorTerm>()?;
    module.add_class::<cost_model::PyCpuOverheads>()?;
    module.add_class::<cost_model::PyIterationPrediction>()?;
    module.add_class::<cost_model::PyCostModel>()?;
    scheduler_types_py::register(module)?;
    module.add_class::<simulation::PySimulationOutput>()?;
    module.add_function(wrap_pyfunction!(simulation::simulate, module)?)?;
    module.add_function(wrap_pyfunction!(prefix_workload::prompt_token_ids, module)?)?;
    module.add_function(wrap_pyfunction!(
        stream_deadlines::count_deadlines_ns,
        module
    )?)?;
    module.add_function(wrap_pyfunction!(
        request_files::write_request_files,
        module
    )?)?;
    module.add_class::<request_files::PyRequestFilesWriter>()?;
    module.add_function(wrap_pyfunction!(
        stream_deadlines::min_tbt_deadlines_ns,
        module
    )?)?;
    module.add_function(wrap_pyfunction!(
        stream_deadlines::decode_miss_rate_table_ns,
        module
    )?)?;
    module.add("SimulatorError", py.get_type::<errors::SimulatorError>())?;
    module.add(
        "InvalidCostModelError",
        py.get_type::<errors::InvalidCostModelError>(),
    )?;
    module.add(
        "InvalidDeploymentError",
        py.get_type::<errors::InvalidDeploymentError>(),
    )?;
    module.add(
        "InvalidWorkloadError",
        py.get_type::<errors::InvalidWorkloadError>(),
    )?;
    // vidur's name for the scheduler's InvalidConfigError.
    module.add(
        "SchedulerConfigError",
        module.getattr("InvalidConfigError")?,
    )?;
    Ok(())
}
