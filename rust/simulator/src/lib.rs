//! Vidur's simulation core: replicas that run the same scheduler as the serving engine, with
//! the model forward replaced by a predicted iteration time.
//!
//! [`CostModel`] turns a batch into a predicted time (operator curves, attention kernel costs,
//! CPU overheads, pipeline stages); [`simulate`] runs a [`Workload`] through a router and
//! replicas and returns per-request token times and per-iteration records.

mod attention;
mod cost_model;
mod cpu_overheads;
mod curve;
mod error;
mod event_queue;
mod iteration_csv;
mod iteration_spill;
mod kernel_cost;
mod operator;
pub mod prefix_workload;
mod python_float;
mod records;
mod replica;
pub mod request_files;
mod router;
mod simulation;
pub mod stream_deadlines;
mod token_spill;
mod workload;

pub use attention::{AttentionModel, AttentionShape, AttentionWork};
pub use cost_model::{BatchEntry, CostModel, IterationTime};
pub use cpu_overheads::{CpuOverheads, LinearCost};
pub use curve::PiecewiseLinear;
pub use error::{Result, SimulatorError};
pub use iteration_csv::write_columns_csv;
pub use iteration_spill::{SpillConfig, SpilledIterations, TOKEN_TIMES_FILE};
pub use kernel_cost::{KernelCost, KernelWork};
pub use operator::{OperatorInput, OperatorKind, OperatorTerm, Placement};
pub use records::{ColumnValues, IterationRecords, ReplicaSnapshot, RequestRecords};
pub use router::{RouterKind, SplitMix64};
pub use simulation::{simulate, SimulationConfig, SimulationOutput};
pub use workload::{Workload, NO_PREDECESSOR};
