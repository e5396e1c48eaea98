//! Python face of the scheduler crate: type conversion and error mapping only. The config and
//! the exceptions come from `scheduler-types-py`, which the simulator's binding shares. Beside
//! it, the engine core's `TokenLedger`, which reads the scheduler's batches in place.

mod batch;
mod scheduler;
mod token_ledger;

use pyo3::prelude::*;

#[pymodule]
fn _scheduler(module: &Bound<'_, PyModule>) -> PyResult<()> {
    scheduler_types_py::register(module)?;
    module.add_class::<scheduler::PyScheduler>()?;
    module.add_class::<batch::PyBatch>()?;
    module.add_class::<batch::PyScheduledRequest>()?;
    module.add_class::<batch::PyFinishedRequest>()?;
    module.add_class::<batch::PyRequestState>()?;
    module.add_class::<token_ledger::PyTokenLedger>()?;
    module.add_class::<token_ledger::PyRecordedTokens>()?;
    module.add("PRODUCES_TOKEN", batch::PRODUCES_TOKEN)?;
    module.add("IS_PREFILL", batch::IS_PREFILL)?;
    module.add("IS_NEW", batch::IS_NEW)?;
    Ok(())
}
