//! Deadline misses of many token streams at once (`simulator::stream_deadlines`), on
//! every core with the GIL released. Columns come and go as little-endian bytes; the token
//! times come as float64 seconds, read in place (a numpy array) and made nanoseconds a stream at
//! a time as metron's `to_ns` makes them, so a run's times are never held twice.

use std::thread;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use simulator::stream_deadlines::Streams;

use crate::byte_columns::{decode, encode, read_buffer};

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

/// Each stream's (missed, total) deadlines, as two int64 byte columns. `token_times_s` are
/// float64 seconds, streams end to end; `num_tokens` and the per-stream `arrivals_ns`,
/// `ttft_deadlines_ns` (>= 0) and `tbt_deadlines_ns` (> 0) are int64 bytes.
#[pyfunction]
pub fn count_deadlines_ns<'py>(
    py: Python<'py>,
    token_times_s: Bound<'py, PyAny>,
    num_tokens: &[u8],
    arrivals_ns: &[u8],
    ttft_deadlines_ns: &[u8],
    tbt_deadlines_ns: &[u8],
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let times_buffer = PyUntypedBuffer::get(&token_times_s)?;
    let times_s = read_buffer::<f64>("token_times_s", &times_buffer)?;
    let counts = decode::<i64>("num_tokens", num_tokens)?;
    let arrivals = decode::<i64>("arrivals_ns", arrivals_ns)?;
    let ttft = decode::<i64>("ttft_deadlines_ns", ttft_deadlines_ns)?;
    let tbt = decode::<i64>("tbt_deadlines_ns", tbt_deadlines_ns)?;
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
        let streams = Streams::new(&times_s, &counts)?;
        Ok(on_every_core(&streams, |part| {
            part.count_deadlines(&arrivals, &ttft, &tbt)
        }))
    });
    let counted = counted.map_err(PyValueError::new_err)?;
    Ok((
        encode(py, counted.iter().map(|&(missed, _)| missed)),
        encode(py, counted.iter().map(|&(_, total)| total)),
    ))
}

/// Each stream's minimum TBT deadline (ns, as float64 bytes; NaN for a stream of fewer than
/// two tokens). `token_times_s` are float64 seconds and `num_tokens` int64 bytes, streams end
/// to end.
#[pyfunction]
pub fn min_tbt_deadlines_ns<'py>(
    py: Python<'py>,
    token_times_s: Bound<'py, PyAny>,
    num_tokens: &[u8],
    max_miss_rate: f64,
) -> PyResult<Bound<'py, PyBytes>> {
    if !(0.0..1.0).contains(&max_miss_rate) {
        return Err(PyValueError::new_err(format!(
            "max_miss_rate must be in [0, 1), got {max_miss_rate}"
        )));
    }
    let times_buffer = PyUntypedBuffer::get(&token_times_s)?;
    let times_s = read_buffer::<f64>("token_times_s", &times_buffer)?;
    let counts = decode::<i64>("num_tokens", num_tokens)?;
    let found = py.detach(|| -> Result<Vec<f64>, String> {
        let streams = Streams::new(&times_s, &counts)?;
        Ok(on_every_core(&streams, |part| {
            part.min_tbt_deadlines(max_miss_rate)
                .into_iter()
                .map(|deadline| deadline.map_or(f64::NAN, |ns| ns as f64))
                .collect()
        }))
    });
    Ok(encode(
        py,
        found.map_err(PyValueError::new_err)?.into_iter(),
    ))
}

/// Each stream's decode miss rate at each of `deadlines_ns` (int64 bytes, each > 0), as
/// float64 bytes of a row-major [stream, deadline] table (`token_times_s` float64 seconds).
#[pyfunction]
pub fn decode_miss_rate_table_ns<'py>(
    py: Python<'py>,
    token_times_s: Bound<'py, PyAny>,
    num_tokens: &[u8],
    deadlines_ns: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let times_buffer = PyUntypedBuffer::get(&token_times_s)?;
    let times_s = read_buffer::<f64>("token_times_s", &times_buffer)?;
    let counts = decode::<i64>("num_tokens", num_tokens)?;
    let deadlines = decode::<i64>("deadlines_ns", deadlines_ns)?;
    if let Some(deadline) = deadlines.iter().find(|&&deadline| deadline <= 0) {
        return Err(PyValueError::new_err(format!(
            "TBT deadlines must be positive, got {deadline} ns"
        )));
    }
    let table = py.detach(|| -> Result<Vec<f64>, String> {
        let streams = Streams::new(&times_s, &counts)?;
        Ok(on_every_core(&streams, |part| {
            part.miss_rate_table(&deadlines)
        }))
    });
    Ok(encode(
        py,
        table.map_err(PyValueError::new_err)?.into_iter(),
    ))
}
