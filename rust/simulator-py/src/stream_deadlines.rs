//! Deadline misses of many token streams at once (`simulator::stream_deadlines`), on
//! every core with the GIL released. Columns come and go as little-endian bytes.

use std::thread;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use simulator::stream_deadlines::Streams;

fn int64_column(name: &str, bytes: &[u8]) -> PyResult<Vec<i64>> {
    if bytes.len() % 8 != 0 {
        return Err(PyValueError::new_err(format!(
            "{name} must be int64 values, got {} bytes",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|chunk| i64::from_le_bytes(chunk.try_into().expect("chunks of 8 bytes")))
        .collect())
}

fn float64_bytes<'py>(py: Python<'py>, values: &[f64]) -> Bound<'py, PyBytes> {
    PyBytes::new_with(py, values.len() * 8, |out| {
        for (value, chunk) in values.iter().zip(out.chunks_exact_mut(8)) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        Ok(())
    })
    .expect("filling a new bytes object cannot fail")
}

/// Each part of `streams` through `work`, one thread per part, results in stream order.
fn on_every_core<T: Send>(
    streams: &Streams<'_>,
    work: impl Fn(&Streams<'_>) -> Vec<T> + Sync,
) -> Vec<T> {
    let cores = thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(16);
    let parts = streams.parts(cores);
    thread::scope(|scope| {
        let running: Vec<_> = parts
            .iter()
            .map(|part| scope.spawn(|| work(part)))
            .collect();
        running
            .into_iter()
            .flat_map(|handle| handle.join().expect("a decode deadline thread panicked"))
            .collect()
    })
}

fn int64_bytes<'py>(
    py: Python<'py>,
    values: impl ExactSizeIterator<Item = i64>,
) -> Bound<'py, PyBytes> {
    PyBytes::new_with(py, values.len() * 8, |out| {
        for (value, chunk) in values.zip(out.chunks_exact_mut(8)) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        Ok(())
    })
    .expect("filling a new bytes object cannot fail")
}

/// Each stream's (missed, total) deadlines, as two int64 byte columns. `token_times_ns`,
/// `num_tokens` and the per-stream `arrivals_ns`, `ttft_deadlines_ns` (>= 0) and
/// `tbt_deadlines_ns` (> 0) are int64 bytes, streams end to end.
#[pyfunction]
pub fn count_deadlines_ns<'py>(
    py: Python<'py>,
    token_times_ns: &[u8],
    num_tokens: &[u8],
    arrivals_ns: &[u8],
    ttft_deadlines_ns: &[u8],
    tbt_deadlines_ns: &[u8],
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let times = int64_column("token_times_ns", token_times_ns)?;
    let counts = int64_column("num_tokens", num_tokens)?;
    let arrivals = int64_column("arrivals_ns", arrivals_ns)?;
    let ttft = int64_column("ttft_deadlines_ns", ttft_deadlines_ns)?;
    let tbt = int64_column("tbt_deadlines_ns", tbt_deadlines_ns)?;
    for (name, column) in [
        ("arrivals_ns", &arrivals),
        ("ttft_deadlines_ns", &ttft),
        ("tbt_deadlines_ns", &tbt),
    ] {
        if column.len() != counts.len() {
            return Err(PyValueError::new_err(format!(
                "{name} has {} values for {} streams",
                column.len(),
                counts.len()
            )));
        }
    }
    if tbt.iter().any(|&deadline| deadline <= 0) {
        return Err(PyValueError::new_err("TBT deadlines must be positive"));
    }
    if ttft.iter().any(|&deadline| deadline < 0) {
        return Err(PyValueError::new_err("TTFT deadlines must not be negative"));
    }
    let counted = py.detach(|| -> Result<Vec<(i64, i64)>, String> {
        let streams = Streams::new(&times, &counts)?;
        Ok(on_every_core(&streams, |part| {
            part.count_deadlines(&arrivals, &ttft, &tbt)
        }))
    });
    let counted = counted.map_err(PyValueError::new_err)?;
    Ok((
        int64_bytes(py, counted.iter().map(|&(missed, _)| missed)),
        int64_bytes(py, counted.iter().map(|&(_, total)| total)),
    ))
}

/// Each stream's minimum TBT deadline (ns, as float64 bytes; NaN for a stream of fewer than
/// two tokens). `token_times_ns` and `num_tokens` are int64 bytes, streams end to end.
#[pyfunction]
pub fn min_tbt_deadlines_ns<'py>(
    py: Python<'py>,
    token_times_ns: &[u8],
    num_tokens: &[u8],
    max_miss_rate: f64,
) -> PyResult<Bound<'py, PyBytes>> {
    if !(0.0..1.0).contains(&max_miss_rate) {
        return Err(PyValueError::new_err(format!(
            "max_miss_rate must be in [0, 1), got {max_miss_rate}"
        )));
    }
    let times = int64_column("token_times_ns", token_times_ns)?;
    let counts = int64_column("num_tokens", num_tokens)?;
    let found = py.detach(|| -> Result<Vec<f64>, String> {
        let streams = Streams::new(&times, &counts)?;
        Ok(on_every_core(&streams, |part| {
            part.min_tbt_deadlines(max_miss_rate)
                .into_iter()
                .map(|deadline| deadline.map_or(f64::NAN, |ns| ns as f64))
                .collect()
        }))
    });
    Ok(float64_bytes(py, &found.map_err(PyValueError::new_err)?))
}

/// Each stream's decode miss rate at each of `deadlines_ns` (int64 bytes, each > 0), as
/// float64 bytes of a row-major [stream, deadline] table.
#[pyfunction]
pub fn decode_miss_rate_table_ns<'py>(
    py: Python<'py>,
    token_times_ns: &[u8],
    num_tokens: &[u8],
    deadlines_ns: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let times = int64_column("token_times_ns", token_times_ns)?;
    let counts = int64_column("num_tokens", num_tokens)?;
    let deadlines = int64_column("deadlines_ns", deadlines_ns)?;
    if let Some(deadline) = deadlines.iter().find(|&&deadline| deadline <= 0) {
        return Err(PyValueError::new_err(format!(
            "TBT deadlines must be positive, got {deadline} ns"
        )));
    }
    let table = py.detach(|| -> Result<Vec<f64>, String> {
        let streams = Streams::new(&times, &counts)?;
        Ok(on_every_core(&streams, |part| {
            part.miss_rate_table(&deadlines)
        }))
    });
    Ok(float64_bytes(py, &table.map_err(PyValueError::new_err)?))
}
