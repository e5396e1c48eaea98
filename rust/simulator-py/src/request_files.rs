//! A simulated run's `requests.jsonl` and `requests.csv`, written from its columns with the GIL
//! released (`simulator::request_files`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use simulator::request_files::{write_csv_header, RequestColumns};

use crate::byte_columns::{read_buffer, Column};

fn column<'a, T: Column>(
    columns: &'a HashMap<String, PyUntypedBuffer>,
    name: &str,
) -> PyResult<Cow<'a, [T]>> {
    let buffer = columns
        .get(name)
        .ok_or_else(|| PyValueError::new_err(format!("the request columns lack {name}")))?;
    read_buffer(name, buffer)
}

fn optional_column<'a, T: Column>(
    columns: &'a HashMap<String, PyUntypedBuffer>,
    name: &str,
) -> PyResult<Option<Cow<'a, [T]>>> {
    columns
        .contains_key(name)
        .then(|| column(columns, name))
        .transpose()
}

/// Tokens and requests per part of `requests.jsonl` formatted at once (about 20 MB of text).
const JSONL_PART_WEIGHT: usize = 1 << 19;

/// Writes through a temporary name and renames, so a reader never sees half a file.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> PyResult<()> {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let temporary = path.with_file_name(format!(".{name}.partial"));
    let written = (|| {
        let mut out = BufWriter::new(File::create(&temporary)?);
        write(&mut out)?;
        out.flush()?;
        drop(out);
        fs::rename(&temporary, path)
    })();
    written.map_err(|error| PyOSError::new_err(format!("cannot write {}: {error}", path.display())))
}

/// The request columns given as `{name: a contiguous buffer of little-endian values, read in
/// place: a numpy array or bytes}`, handed to `use_columns` (see `write_request_files`).
fn with_request_columns<R>(
    columns: HashMap<String, Bound<'_, PyAny>>,
    errors: &[(usize, String)],
    tbt_deadline_s: f64,
    use_columns: impl FnOnce(&RequestColumns<'_>) -> PyResult<R>,
) -> PyResult<R> {
    let columns = columns
        .into_iter()
        .map(|(name, values)| Ok((name, PyUntypedBuffer::get(&values)?)))
        .collect::<PyResult<HashMap<_, _>>>()?;
    let ids = column::<i64>(&columns, "ids")?;
    let (prompt, requested) = (
        column::<i64>(&columns, "prompt_tokens")?,
        column::<i64>(&columns, "requested_output_tokens")?,
    );
    let (num_tokens, missed) = (
        column::<i64>(&columns, "num_tokens")?,
        column::<i64>(&columns, "missed_deadlines")?,
    );
    let total = column::<i64>(&columns, "total_deadlines")?;
    let (arrival, times) = (
        column::<f64>(&columns, "arrival_s")?,
        column::<f64>(&columns, "token_times_s")?,
    );
    let (ttft, tpot, e2e) = (
        column::<f64>(&columns, "ttft_s")?,
        column::<f64>(&columns, "tpot_s")?,
        column::<f64>(&columns, "e2e_s")?,
    );
    let normalized = column::<f64>(&columns, "normalized_latency_s")?;
    let delay = column::<f64>(&columns, "scheduling_delay_s")?;
    let fluidity = column::<f64>(&columns, "fluidity_index")?;
    let ttft_deadline = column::<f64>(&columns, "ttft_deadline_s")?;
    let min_deadline = column::<f64>(&columns, "min_tbt_deadline_s")?;
    let warmup: Vec<bool> = column::<u8>(&columns, "warmup")?
        .iter()
        .map(|&b| b != 0)
        .collect();
    let outcome = column::<u8>(&columns, "outcome")?;
    let scheduled = optional_column::<f64>(&columns, "scheduled_arrival_s")?;
    let cached = optional_column::<i64>(&columns, "cached_prompt_tokens")?;
    let mut error = vec![None; ids.len()];
    for (index, message) in errors {
        *error.get_mut(*index).ok_or_else(|| {
            PyValueError::new_err(format!("an error for request {index} of {}", ids.len()))
        })? = Some(message.as_str());
    }
    let requests = RequestColumns {
        ids: &ids,
        arrival_s: &arrival,
        prompt_tokens: &prompt,
        requested_output_tokens: &requested,
        warmup: &warmup,
        num_tokens: &num_tokens,
        token_times_s: &times,
        outcome: &outcome,
        error,
        ttft_s: &ttft,
        tpot_s: &tpot,
        e2e_s: &e2e,
        normalized_latency_s: &normalized,
        scheduling_delay_s: &delay,
        fluidity_index: &fluidity,
        missed_deadlines: &missed,
        total_deadlines: &total,
        ttft_deadline_s: &ttft_deadline,
        tbt_deadline_s,
        min_tbt_deadline_s: &min_deadline,
        scheduled_arrival_s: scheduled.as_deref(),
        cached_prompt_tokens: cached.as_deref(),
    };
    requests.check().map_err(PyValueError::new_err)?;
    use_columns(&requests)
}

/// Threads formatting `requests.jsonl`: one core is left to the caller, which scores the run
/// meanwhile.
fn jsonl_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(1)
}

/// Writes `jsonl_path` and `csv_path` from `columns` ({name: a contiguous buffer of
/// little-endian values, read in place: a numpy array or bytes}: int64 ids,
/// prompt_tokens, requested_output_tokens, num_tokens, missed_deadlines, total_deadlines;
/// float64 arrival_s, token_times_s, ttft_s, tpot_s, e2e_s, normalized_latency_s,
/// scheduling_delay_s, fluidity_index, ttft_deadline_s, min_tbt_deadline_s (NaN for None);
/// uint8 warmup, outcome; optional: float64 scheduled_arrival_s where not arrival_s, int64
/// cached_prompt_tokens, -1 for None), `errors` as (request index, message).
#[pyfunction]
pub fn write_request_files(
    py: Python<'_>,
    jsonl_path: PathBuf,
    csv_path: PathBuf,
    columns: HashMap<String, Bound<'_, PyAny>>,
    errors: Vec<(usize, String)>,
    tbt_deadline_s: f64,
) -> PyResult<()> {
    with_request_columns(columns, &errors, tbt_deadline_s, |requests| {
        py.detach(|| {
            write_atomically(&jsonl_path, |out| {
                requests.write_jsonl(out, jsonl_threads(), JSONL_PART_WEIGHT)
            })?;
            write_atomically(&csv_path, |out| requests.write_csv(out))
        })
    })
}

struct OpenFile {
    path: PathBuf,
    temporary: PathBuf,
    out: BufWriter<File>,
}

impl OpenFile {
    fn create(path: PathBuf) -> std::io::Result<Self> {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let temporary = path.with_file_name(format!(".{name}.partial"));
        let out = BufWriter::new(File::create(&temporary)?);
        Ok(OpenFile {
            path,
            temporary,
            out,
        })
    }

    fn error(&self, error: std::io::Error) -> PyErr {
        PyOSError::new_err(format!("cannot write {}: {error}", self.path.display()))
    }

    fn close(mut self) -> PyResult<()> {
        let closed = self
            .out
            .flush()
            .and_then(|()| fs::rename(&self.temporary, &self.path));
        closed.map_err(|error| self.error(error))
    }
}

/// `requests.jsonl` and `requests.csv` written a part of the requests at a time (`write`, in
/// workload order), under temporary names until `close` renames them, so a reader never sees
/// half a file. The same bytes as `write_request_files` of all the parts' columns at once.
#[pyclass(module = "vidur._simulator", name = "RequestFilesWriter")]
pub struct PyRequestFilesWriter {
    files: Option<(OpenFile, OpenFile)>,
}

#[pymethods]
impl PyRequestFilesWriter {
    #[new]
    fn new(jsonl_path: PathBuf, csv_path: PathBuf) -> PyResult<Self> {
        let jsonl = OpenFile::create(jsonl_path.clone()).map_err(|error| {
            PyOSError::new_err(format!("cannot write {}: {error}", jsonl_path.display()))
        })?;
        let mut csv = OpenFile::create(csv_path.clone()).map_err(|error| {
            PyOSError::new_err(format!("cannot write {}: {error}", csv_path.display()))
        })?;
        write_csv_header(&mut csv.out).map_err(|error| csv.error(error))?;
        Ok(PyRequestFilesWriter {
            files: Some((jsonl, csv)),
        })
    }

    /// Appends the records of `columns` (as `write_request_files` takes them; `errors` index
    /// these columns). The GIL is released while it formats and writes.
    fn write(
        &mut self,
        py: Python<'_>,
        columns: HashMap<String, Bound<'_, PyAny>>,
        errors: Vec<(usize, String)>,
        tbt_deadline_s: f64,
    ) -> PyResult<()> {
        let (jsonl, csv) = self
            .files
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("the request files are closed"))?;
        with_request_columns(columns, &errors, tbt_deadline_s, |requests| {
            py.detach(|| {
                requests
                    .write_jsonl(&mut jsonl.out, jsonl_threads(), JSONL_PART_WEIGHT)
                    .map_err(|error| jsonl.error(error))?;
                requests
                    .write_csv_rows(&mut csv.out)
                    .map_err(|error| csv.error(error))
            })
        })
    }

    /// Finishes both files under their names.
    fn close(&mut self) -> PyResult<()> {
        let (jsonl, csv) = self
            .files
            .take()
            .ok_or_else(|| PyValueError::new_err("the request files are closed"))?;
        jsonl.close()?;
        csv.close()
    }
}
