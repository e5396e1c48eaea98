//! A simulated run's `requests.jsonl` and `requests.csv`, written from its columns with the GIL
//! released (`simulator::request_files`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use simulator::request_files::RequestColumns;

fn column<T>(
    columns: &HashMap<String, Vec<u8>>,
    name: &str,
    size: usize,
    decode: impl Fn(&[u8]) -> T,
) -> PyResult<Vec<T>> {
    let bytes = columns
        .get(name)
        .ok_or_else(|| PyValueError::new_err(format!("the request columns lack {name}")))?;
    if bytes.len() % size != 0 {
        return Err(PyValueError::new_err(format!(
            "{name} is not a column of {size}-byte values"
        )));
    }
    Ok(bytes.chunks_exact(size).map(decode).collect())
}

fn ints(columns: &HashMap<String, Vec<u8>>, name: &str) -> PyResult<Vec<i64>> {
    column(columns, name, 8, |b| {
        i64::from_le_bytes(b.try_into().expect("8 bytes"))
    })
}

fn floats(columns: &HashMap<String, Vec<u8>>, name: &str) -> PyResult<Vec<f64>> {
    column(columns, name, 8, |b| {
        f64::from_le_bytes(b.try_into().expect("8 bytes"))
    })
}

fn bytes(columns: &HashMap<String, Vec<u8>>, name: &str) -> PyResult<Vec<u8>> {
    column(columns, name, 1, |b| b[0])
}

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

/// Writes `jsonl_path` and `csv_path` from `columns` ({name: little-endian bytes}: int64 ids,
/// prompt_tokens, requested_output_tokens, num_tokens, missed_deadlines, total_deadlines;
/// float64 arrival_s, token_times_s, ttft_s, tpot_s, e2e_s, normalized_latency_s,
/// scheduling_delay_s, fluidity_index, ttft_deadline_s, min_tbt_deadline_s (NaN for None);
/// uint8 warmup, outcome), `errors` as (request index, message).
#[pyfunction]
pub fn write_request_files(
    py: Python<'_>,
    jsonl_path: PathBuf,
    csv_path: PathBuf,
    columns: HashMap<String, Vec<u8>>,
    errors: Vec<(usize, String)>,
    tbt_deadline_s: f64,
) -> PyResult<()> {
    let ids = ints(&columns, "ids")?;
    let (prompt, requested) = (
        ints(&columns, "prompt_tokens")?,
        ints(&columns, "requested_output_tokens")?,
    );
    let (num_tokens, missed) = (
        ints(&columns, "num_tokens")?,
        ints(&columns, "missed_deadlines")?,
    );
    let total = ints(&columns, "total_deadlines")?;
    let (arrival, times) = (
        floats(&columns, "arrival_s")?,
        floats(&columns, "token_times_s")?,
    );
    let (ttft, tpot, e2e) = (
        floats(&columns, "ttft_s")?,
        floats(&columns, "tpot_s")?,
        floats(&columns, "e2e_s")?,
    );
    let normalized = floats(&columns, "normalized_latency_s")?;
    let delay = floats(&columns, "scheduling_delay_s")?;
    let fluidity = floats(&columns, "fluidity_index")?;
    let ttft_deadline = floats(&columns, "ttft_deadline_s")?;
    let min_deadline = floats(&columns, "min_tbt_deadline_s")?;
    let warmup: Vec<bool> = bytes(&columns, "warmup")?
        .into_iter()
        .map(|b| b != 0)
        .collect();
    let outcome = bytes(&columns, "outcome")?;
    let mut error = vec![None; ids.len()];
    for (index, message) in &errors {
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
    };
    requests.check().map_err(PyValueError::new_err)?;
    py.detach(|| {
        // One core is left to the caller, which scores the run meanwhile.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        write_atomically(&jsonl_path, |out| {
            requests.write_jsonl(out, cores.saturating_sub(1))
        })?;
        write_atomically(&csv_path, |out| requests.write_csv(out))
    })
}
