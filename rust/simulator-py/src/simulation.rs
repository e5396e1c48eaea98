use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use simulator::{
    simulate as core_simulate, write_columns_csv, ColumnValues, RouterKind, SimulationConfig,
    SimulationOutput, SpillConfig, SpilledIterations, Workload,
};

use crate::byte_columns::{decode, encode, read_buffer, Column};
use crate::cost_model::PyCostModel;
use crate::errors::{invalid_deployment, invalid_workload, to_py};
use crate::prefix_workload::with_prefix_sharing;
use scheduler_types_py::PySchedulerConfig;

fn add_column<T: Column>(
    columns: &Bound<'_, PyDict>,
    name: &str,
    values: impl AsRef<[T]>,
) -> PyResult<()> {
    let bytes = encode(columns.py(), values.as_ref().iter().copied());
    columns.set_item(name, (T::DTYPE, bytes))
}

/// A column held as bytes, read back as the values it holds.
enum HeldColumn<'a> {
    U32(Cow<'a, [u32]>),
    U64(Cow<'a, [u64]>),
    F32(Cow<'a, [f32]>),
    F64(Cow<'a, [f64]>),
}

impl<'a> HeldColumn<'a> {
    fn read(name: &str, dtype: &str, bytes: &'a [u8]) -> PyResult<Self> {
        Ok(match dtype {
            u32::DTYPE => HeldColumn::U32(decode(name, bytes)?),
            u64::DTYPE => HeldColumn::U64(decode(name, bytes)?),
            f32::DTYPE => HeldColumn::F32(decode(name, bytes)?),
            f64::DTYPE => HeldColumn::F64(decode(name, bytes)?),
            other => {
                return Err(PyValueError::new_err(format!(
                    "iteration column {name} has dtype {other}, which no column has"
                )))
            }
        })
    }

    fn values(&self) -> ColumnValues<'_> {
        match self {
            HeldColumn::U32(values) => ColumnValues::U32(values),
            HeldColumn::U64(values) => ColumnValues::U64(values),
            HeldColumn::F32(values) => ColumnValues::F32(values),
            HeldColumn::F64(values) => ColumnValues::F64(values),
        }
    }
}

/// A spilled column: its name, numpy dtype, and the file of its raw little-endian values.
type SpilledColumn = (String, String, PathBuf);

/// Rows of spilled iteration records read back at once to write them as CSV.
const CSV_BLOCK_ROWS: usize = 1 << 16;

/// What a simulation recorded. Columns come as `{name: (numpy dtype, bytes)}`, ready for
/// `numpy.frombuffer`; those bytes are the only copy of the records (the simulator's own are
/// dropped once handed over), and the iteration CSV is written from them. Records streamed to
/// disk (`spill_directory`) stay there: `spilled_iteration_columns` and `spilled_token_times`
/// say where.
#[pyclass(frozen, module = "vidur._simulator", name = "SimulationOutput")]
pub struct PySimulationOutput {
    request_columns: Py<PyDict>,
    iteration_columns: Py<PyDict>,
    spilled_iterations: Option<SpilledIterations>,
    /// The file of the token times (raw little-endian float64), when streamed to disk.
    #[pyo3(get)]
    spilled_token_times: Option<PathBuf>,
    rejections: Vec<(u32, String)>,
    #[pyo3(get)]
    num_iterations: u64,
    #[pyo3(get)]
    end_s: f64,
    /// Requests that reached the router: the workload's first `num_arrived`.
    #[pyo3(get)]
    num_arrived: u32,
    /// Whether `max_simulated_s` stopped the run before everything happened.
    #[pyo3(get)]
    is_cut: bool,
}

impl PySimulationOutput {
    /// Each column is freed as soon as it is copied into Python, so the run's records are never
    /// held twice.
    fn new(py: Python<'_>, output: SimulationOutput) -> PyResult<Self> {
        let SimulationOutput {
            requests: r,
            iterations: records,
            spilled_iterations,
            spilled_token_times,
            num_iterations,
            end_s,
            num_arrived,
            is_cut,
        } = output;
        let requests = PyDict::new(py);
        add_column(&requests, "replica", r.replica)?;
        add_column(&requests, "token_offsets", r.token_offsets)?;
        add_column(&requests, "num_tokens", r.num_tokens)?;
        if spilled_token_times.is_none() {
            add_column(&requests, "token_times", r.token_times)?;
        }
        add_column(&requests, "first_scheduled_s", r.first_scheduled_s)?;
        add_column(&requests, "finished_s", r.finished_s)?;
        add_column(&requests, "finish_reason", r.finish_reason)?;
        add_column(&requests, "num_preemptions", r.num_preemptions)?;
        add_column(&requests, "arrival_s", r.arrival_s)?;
        add_column(&requests, "cached_prompt_tokens", r.num_cached_tokens)?;
        let iterations = PyDict::new(py);
        records.into_each_column(|name, column| match column {
            ColumnValues::U32(values) => add_column(&iterations, name, values),
            ColumnValues::U64(values) => add_column(&iterations, name, values),
            ColumnValues::F32(values) => add_column(&iterations, name, values),
            ColumnValues::F64(values) => add_column(&iterations, name, values),
        })?;
        Ok(PySimulationOutput {
            request_columns: requests.unbind(),
            iteration_columns: iterations.unbind(),
            spilled_iterations,
            spilled_token_times,
            rejections: r.rejections,
            num_iterations,
            end_s,
            num_arrived,
            is_cut,
        })
    }
}

#[pymethods]
impl PySimulationOutput {
    /// Per request (workload order): replica, token_offsets (one more than requests),
    /// num_tokens, token_times (unless streamed to disk), first_scheduled_s, finished_s, finish_reason, num_preemptions,
    /// arrival_s (when it was sent), cached_prompt_tokens.
    fn request_columns<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.request_columns.bind(py).copy()
    }

    /// Per iteration, in the order batches were scheduled (empty unless recorded in memory).
    fn iteration_columns<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.iteration_columns.bind(py).copy()
    }

    /// Where the iteration records went when streamed to disk: (number of rows, [(column
    /// name, numpy dtype, path of its raw little-endian values)]); None when kept in memory.
    fn spilled_iteration_columns(&self) -> Option<(usize, Vec<SpilledColumn>)> {
        self.spilled_iterations.as_ref().map(|spilled| {
            let columns = spilled
                .columns
                .iter()
                .map(|(name, dtype)| (name.to_string(), dtype.to_string(), spilled.path(name)))
                .collect();
            (spilled.num_rows, columns)
        })
    }

    /// Writes the per-iteration records to `path` as CSV, numbers as Python writes them. The GIL
    /// is released while it writes.
    fn write_iteration_csv(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let cannot_write = |error: std::io::Error| {
            PyOSError::new_err(format!("cannot write {}: {error}", path.display()))
        };
        if let Some(spilled) = &self.spilled_iterations {
            return py
                .detach(|| -> std::io::Result<()> {
                    let mut out = BufWriter::new(File::create(&path)?);
                    spilled.write_csv(CSV_BLOCK_ROWS, &mut out)?;
                    out.flush()
                })
                .map_err(cannot_write);
        }
        let items: Vec<(String, (String, Bound<'_, PyBytes>))> =
            self.iteration_columns.bind(py).items().extract()?;
        let held = items
            .iter()
            .map(|(name, (dtype, bytes))| {
                Ok((
                    name.as_str(),
                    HeldColumn::read(name, dtype, bytes.as_bytes())?,
                ))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let columns: Vec<(&str, ColumnValues<'_>)> = held
            .iter()
            .map(|(name, column)| (*name, column.values()))
            .collect();
        py.detach(|| -> std::io::Result<()> {
            let mut out = BufWriter::new(File::create(&path)?);
            write_columns_csv(&columns, &mut out)?;
            out.flush()
        })
        .map_err(cannot_write)
    }

    /// Requests a replica refused, as (workload index, reason).
    #[getter]
    fn rejections(&self) -> Vec<(u32, String)> {
        self.rejections.clone()
    }
}

fn to_u32_column(name: &str, values: Vec<i64>) -> PyResult<Vec<u32>> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            u32::try_from(value).map_err(|_| {
                invalid_workload(format!(
                    "{name}[{i}] must be in 0..=4294967295, got {value}"
                ))
            })
        })
        .collect()
}

/// A workload column given as a sequence of numbers, or as a contiguous buffer of them (a numpy
/// array of float64 or int64 values, read without a Python object per value).
fn numbers<T>(name: &str, values: &Bound<'_, PyAny>) -> PyResult<Vec<T>>
where
    T: Column + for<'a, 'py> FromPyObject<'a, 'py>,
{
    let Ok(buffer) = PyUntypedBuffer::get(values) else {
        return values.extract::<Vec<T>>().map_err(|_| {
            invalid_workload(format!("{name} must be a sequence of {} numbers", T::NAME))
        });
    };
    let format = buffer.format().to_string_lossy();
    let code = format.trim_start_matches(['<', '=', '@']);
    let matches = match T::DTYPE {
        "<f8" => code == "d",
        "<i8" => code == "q" || code == "l",
        _ => false,
    };
    if !matches {
        return Err(invalid_workload(format!(
            "{name} must be {} values, got a buffer of format {format:?}",
            T::NAME
        )));
    }
    Ok(read_buffer::<T>(name, &buffer)?.into_owned())
}

/// Runs a workload on `num_replicas` identical replicas behind a router. The GIL is released
/// while the simulation runs. With `spill_directory`, the iteration records and the token times
/// are streamed to files there, `spill_block_rows` rows (or times) at a time, instead of held.
#[pyfunction]
#[pyo3(signature = (
    *,
    cost_model,
    scheduler,
    arrival_times,
    num_prompt_tokens,
    num_output_tokens,
    num_replicas = 1,
    router = "round_robin",
    seed = 0,
    record_iterations = true,
    shared_prefix_tokens = 0,
    follows = None,
    think_time_s = None,
    max_simulated_s = None,
    spill_directory = None,
    spill_block_rows = 65536,
))]
#[allow(clippy::too_many_arguments)]
pub fn simulate(
    py: Python<'_>,
    cost_model: &Bound<'_, PyCostModel>,
    scheduler: &PySchedulerConfig,
    arrival_times: &Bound<'_, PyAny>,
    num_prompt_tokens: &Bound<'_, PyAny>,
    num_output_tokens: &Bound<'_, PyAny>,
    num_replicas: i64,
    router: &str,
    seed: u64,
    record_iterations: bool,
    shared_prefix_tokens: i64,
    follows: Option<Vec<i64>>,
    think_time_s: Option<Vec<f64>>,
    max_simulated_s: Option<f64>,
    spill_directory: Option<PathBuf>,
    spill_block_rows: usize,
) -> PyResult<PySimulationOutput> {
    let workload = Workload::new(
        numbers("arrival_times", arrival_times)?,
        to_u32_column(
            "num_prompt_tokens",
            numbers("num_prompt_tokens", num_prompt_tokens)?,
        )?,
        to_u32_column(
            "num_output_tokens",
            numbers("num_output_tokens", num_output_tokens)?,
        )?,
    )
    .map_err(to_py)?;
    let workload = with_prefix_sharing(workload, shared_prefix_tokens, follows, think_time_s)?;
    let num_replicas = u32::try_from(num_replicas).map_err(|_| {
        invalid_deployment(format!(
            "num_replicas must be in 0..=4294967295, got {num_replicas}"
        ))
    })?;
    let config = SimulationConfig {
        num_replicas,
        router: RouterKind::from_name(router).map_err(to_py)?,
        seed,
        record_iterations,
        max_simulated_s,
        spill: spill_directory.map(|directory| SpillConfig {
            directory,
            block_rows: spill_block_rows,
        }),
    };
    let cost = &cost_model.get().inner;
    let scheduler = &scheduler.inner;
    let output = py
        .detach(|| core_simulate(&config, scheduler, cost, &workload))
        .map_err(to_py)?;
    PySimulationOutput::new(py, output)
}
