//! The engine core's per-request bookkeeping of sampled tokens, indexed by the scheduler's
//! slot: which of a batch's tokens still belong to a live request, first-token latencies and
//! gaps, EOS, stop token ids and `min_tokens`. One call per step reads the batch in place,
//! updates the scheduler and answers with columns, so the engine core runs no per-token Python
//! and few Python calls: the numpy version of this took 110-135 µs a step on a machine whose
//! caches are cold at each step's outputs.

use std::collections::HashSet;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use scheduler::BatchOutputs;
use scheduler_types_py::to_py;

use crate::batch::{column, PyBatch, PyFinishedRequest};
use crate::scheduler::PyScheduler;

const FREE: u64 = u64::MAX;

/// A sampled token that still belongs to the request its entry was scheduled for.
struct LiveToken {
    /// Index among the batch's producing entries.
    position: u32,
    slot: usize,
    request_id: u64,
    token: u32,
}

#[derive(Clone)]
struct SlotState {
    request_id: u64,
    arrival_time: f64,
    first_token_time: f64,
    last_token_time: f64,
    num_output_tokens: u32,
    min_tokens: u32,
    stops_at_eos: bool,
    stop_token_ids: Vec<u32>,
}

impl SlotState {
    const FREE: SlotState = SlotState {
        request_id: FREE,
        arrival_time: 0.0,
        first_token_time: f64::NAN,
        last_token_time: f64::NAN,
        num_output_tokens: 0,
        min_tokens: 0,
        stops_at_eos: false,
        stop_token_ids: Vec::new(),
    };
}

/// Per-slot state of the requests a batch has held: `take` a slot when a batch first holds a
/// request (the slot the scheduler chose), `release` it when the request leaves the engine.
#[pyclass(module = "engine._scheduler", name = "TokenLedger")]
pub struct PyTokenLedger {
    is_eos: Vec<bool>,
    slots: Vec<SlotState>,
}

/// One batch's sampled tokens of requests still live, in batch order, as `bytes` columns.
#[pyclass(frozen, module = "engine._scheduler", name = "RecordedTokens")]
pub struct PyRecordedTokens {
    /// Request ids, `<u8`.
    #[pyo3(get)]
    ids: Py<PyBytes>,
    /// Their tokens, `<u4`.
    #[pyo3(get)]
    token_ids: Py<PyBytes>,
    /// Index of each among the batch's producing entries (where its logprobs are), `<u4`.
    #[pyo3(get)]
    positions: Py<PyBytes>,
    /// Time to the first token of each request whose first token this is, `<f8`.
    #[pyo3(get)]
    ttfts: Py<PyBytes>,
    /// Gap since the previous token of each of the others, `<f8`.
    #[pyo3(get)]
    tbts: Py<PyBytes>,
    /// Requests this step's token ends (EOS or a stop token id, at or past `min_tokens`).
    #[pyo3(get)]
    stopped_ids: Vec<u64>,
    /// The requests that left the scheduler with this step (stopped, or at their length).
    #[pyo3(get)]
    finished: Py<PyList>,
    #[pyo3(get)]
    num_tokens: usize,
}

#[pymethods]
impl PyTokenLedger {
    #[new]
    fn new(eos_token_ids: Vec<u32>, vocab_size: usize) -> PyResult<Self> {
        let mut is_eos = vec![false; vocab_size];
        for &token in &eos_token_ids {
            *is_eos.get_mut(token as usize).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "EOS token {token} is outside the vocabulary of {vocab_size}"
                ))
            })? = true;
        }
        Ok(PyTokenLedger {
            is_eos,
            slots: Vec::new(),
        })
    }

    /// `request_id` holds `slot` from now on (its first batch, or its first after a preemption):
    /// no tokens yet.
    #[pyo3(signature = (slot, request_id, arrival_time, *, min_tokens = 0, ignore_eos = false, stop_token_ids = Vec::new()))]
    fn take(
        &mut self,
        slot: u32,
        request_id: u64,
        arrival_time: f64,
        min_tokens: u32,
        ignore_eos: bool,
        stop_token_ids: Vec<u32>,
    ) -> PyResult<()> {
        if request_id == FREE {
            return Err(PyValueError::new_err(format!(
                "request id {FREE} is reserved"
            )));
        }
        let index = slot as usize;
        if index >= self.slots.len() {
            let capacity = (index + 1).max(2 * self.slots.len()).max(64);
            self.slots.resize(capacity, SlotState::FREE);
        }
        self.slots[index] = SlotState {
            request_id,
            arrival_time,
            min_tokens,
            stops_at_eos: !ignore_eos,
            stop_token_ids,
            ..SlotState::FREE
        };
        Ok(())
    }

    /// Frees `slot` if `request_id` holds it; False if it does not (already freed or reused).
    fn release(&mut self, slot: u32, request_id: u64) -> bool {
        match self.slots.get_mut(slot as usize) {
            Some(state) if state.request_id == request_id => {
                *state = SlotState::FREE;
                true
            }
            _ => false,
        }
    }

    /// (tokens sampled, first token time, last token time) of the request holding `slot`; NaN
    /// times before its first token. None if `request_id` does not hold it.
    fn token_times(&self, slot: u32, request_id: u64) -> Option<(u32, f64, f64)> {
        let state = self
            .slots
            .get(slot as usize)
            .filter(|s| s.request_id == request_id)?;
        Some((
            state.num_output_tokens,
            state.first_token_time,
            state.last_token_time,
        ))
    }

    /// Applies a step's outputs: records `batch`'s sampled tokens (`<u4`, one per producing
    /// entry, in batch order) at wall-clock time `now`, then updates `scheduler` with them and
    /// with the requests they stopped, in the same call. Tokens of requests gone since the batch
    /// was scheduled (their slot freed or reused), or in `dropped` (preempted while it ran), are
    /// left out of the record; the scheduler drops them itself.
    fn apply(
        &mut self,
        py: Python<'_>,
        scheduler: &Bound<'_, PyScheduler>,
        batch: &PyBatch,
        sampled_token_ids: &[u8],
        now: f64,
        dropped: HashSet<u64>,
    ) -> PyResult<PyRecordedTokens> {
        let num_producing = batch.inner.num_producing() as usize;
        if sampled_token_ids.len() != 4 * num_producing {
            return Err(PyValueError::new_err(format!(
                "{} bytes of sampled tokens for a batch of {num_producing} producing entries (4 bytes each)",
                sampled_token_ids.len()
            )));
        }
        let tokens: Vec<u32> = sampled_token_ids
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        // First read only: check the tokens and find the live entries and the requests they
        // stop, so that a refused step changes neither the ledger nor the scheduler.
        let producing = batch.inner.requests.iter().filter(|r| r.produces_token);
        let mut live = Vec::with_capacity(num_producing);
        let mut stopped_ids = Vec::new();
        for (position, (entry, &token)) in producing.zip(&tokens).enumerate() {
            let is_eos = *self.is_eos.get(token as usize).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "sampled token {token} of request {} is outside the vocabulary of {}",
                    entry.id,
                    self.is_eos.len()
                ))
            })?;
            let slot = entry.slot as usize;
            let Some(state) = self.slots.get(slot) else {
                continue;
            };
            if state.request_id != entry.id || dropped.contains(&entry.id) {
                continue;
            }
            let may_stop = state.num_output_tokens + 1 >= state.min_tokens;
            if may_stop && ((is_eos && state.stops_at_eos) || state.stop_token_ids.contains(&token))
            {
                stopped_ids.push(entry.id);
            }
            live.push(LiveToken {
                position: position as u32,
                slot,
                request_id: entry.id,
                token,
            });
        }
        let finished = scheduler
            .borrow_mut()
            .inner
            .update(
                &batch.inner,
                BatchOutputs {
                    sampled_token_ids: &tokens,
                    finished_ids: &stopped_ids,
                    aborted_ids: &[],
                },
            )
            .map_err(to_py)?;
        let mut ttfts = Vec::new();
        let mut tbts = Vec::with_capacity(live.len());
        for live_token in &live {
            let state = &mut self.slots[live_token.slot];
            if state.last_token_time.is_nan() {
                state.first_token_time = now;
                ttfts.push(now - state.arrival_time);
            } else {
                tbts.push(now - state.last_token_time);
            }
            state.last_token_time = now;
            state.num_output_tokens += 1;
        }
        let finished = finished.into_iter().map(PyFinishedRequest::from);
        Ok(PyRecordedTokens {
            num_tokens: live.len(),
            ids: column(py, live.iter().map(|l| l.request_id), u64::to_le_bytes)?.unbind(),
            token_ids: column(py, live.iter().map(|l| l.token), u32::to_le_bytes)?.unbind(),
            positions: column(py, live.iter().map(|l| l.position), u32::to_le_bytes)?.unbind(),
            ttfts: column(py, ttfts.iter().copied(), f64::to_le_bytes)?.unbind(),
            tbts: column(py, tbts.iter().copied(), f64::to_le_bytes)?.unbind(),
            stopped_ids,
            finished: PyList::new(py, finished)?.unbind(),
        })
    }
}
