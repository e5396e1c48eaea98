use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use scheduler::{BatchOutputs, NewRequest, Scheduler};

use scheduler_types_py::{invalid_outputs, invalid_request, to_py, to_u32, PySchedulerConfig};

use crate::batch::{PyBatch, PyFinishedRequest, PyRequestState};

/// The iteration-level scheduler: `schedule(now)` decides a batch, `update(batch, ...)` applies
/// what running it produced.
#[pyclass(module = "engine._scheduler", name = "Scheduler")]
pub struct PyScheduler {
    pub(crate) inner: Scheduler,
    config: Py<PySchedulerConfig>,
}

fn request_id(value: i64) -> PyResult<u64> {
    u64::try_from(value).map_err(|_| {
        invalid_request(format!(
            "request ids are non-negative integers, got {value}"
        ))
    })
}

fn request_ids(values: Vec<i64>) -> PyResult<Vec<u64>> {
    values.into_iter().map(request_id).collect()
}

fn sampled_tokens(values: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
    if let Ok(bytes) = values.cast::<PyBytes>() {
        let raw = bytes.as_bytes();
        if raw.len() % 4 != 0 {
            return Err(invalid_outputs(format!(
                "sampled_token_ids as bytes holds little-endian u32s, got {} bytes",
                raw.len()
            )));
        }
        return Ok(raw
            .chunks_exact(4)
            .map(|chunk| u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            .collect());
    }
    let values: Vec<i64> = values.extract()?;
    values
        .into_iter()
        .map(|token| to_u32("a sampled token id", token, invalid_outputs))
        .collect()
}

#[pymethods]
impl PyScheduler {
    #[new]
    fn new(config: &Bound<'_, PySchedulerConfig>) -> PyResult<Self> {
        let inner = Scheduler::new(config.get().inner.clone()).map_err(to_py)?;
        Ok(PyScheduler {
            inner,
            config: config.clone().unbind(),
        })
    }

    #[getter]
    fn config(&self, py: Python<'_>) -> Py<PySchedulerConfig> {
        self.config.clone_ref(py)
    }

    /// Queues a request. Give `prompt_token_ids` for prefix caching, else `prompt_len`.
    #[pyo3(signature = (request_id, *, max_new_tokens, prompt_len = None, prompt_token_ids = None, arrival_time = 0.0, priority = 0))]
    fn add_request(
        &mut self,
        request_id: i64,
        max_new_tokens: i64,
        prompt_len: Option<i64>,
        prompt_token_ids: Option<Vec<i64>>,
        arrival_time: f64,
        priority: i64,
    ) -> PyResult<()> {
        let id = self::request_id(request_id)?;
        let reject = |reason: String| invalid_request(format!("request {id} rejected: {reason}"));
        let prompt_token_ids = match prompt_token_ids {
            None => None,
            Some(ids) => Some(
                ids.into_iter()
                    .map(|token| to_u32("a prompt token id", token, reject))
                    .collect::<PyResult<Vec<u32>>>()?,
            ),
        };
        let num_prompt_tokens = match (prompt_len, &prompt_token_ids) {
            (Some(len), _) => to_u32("prompt_len", len, reject)?,
            (None, Some(ids)) => u32::try_from(ids.len())
                .map_err(|_| reject("the prompt is longer than 2**32 tokens".into()))?,
            (None, None) => return Err(reject("give prompt_len or prompt_token_ids".into())),
        };
        self.inner
            .add(NewRequest {
                id,
                num_prompt_tokens,
                prompt_token_ids,
                max_new_tokens: to_u32("max_new_tokens", max_new_tokens, reject)?,
                arrival_time,
                priority,
            })
            .map_err(to_py)
    }

    /// Removes a request wherever it is; a batch that holds it still updates cleanly.
    fn abort(&mut self, request_id: i64) -> PyResult<PyFinishedRequest> {
        let id = self::request_id(request_id)?;
        Ok(self.inner.abort(id).map_err(to_py)?.into())
    }

    /// Decides the next iteration. Requests that arrive after `now` are not admitted yet.
    fn schedule(&mut self, now: f64) -> PyResult<PyBatch> {
        Ok(PyBatch {
            inner: self.inner.schedule(now).map_err(to_py)?,
        })
    }

    /// Applies a batch's outputs: one sampled token per request that `produces_token`, in
    /// batch order (a sequence of ints, or `bytes` of little-endian u32); then the requests the
    /// caller stopped and those it aborted.
    #[pyo3(signature = (batch, sampled_token_ids, finished_ids = Vec::new(), aborted_ids = Vec::new()))]
    fn update(
        &mut self,
        batch: &Bound<'_, PyBatch>,
        sampled_token_ids: &Bound<'_, PyAny>,
        finished_ids: Vec<i64>,
        aborted_ids: Vec<i64>,
    ) -> PyResult<Vec<PyFinishedRequest>> {
        let tokens = sampled_tokens(sampled_token_ids)?;
        let finished_ids = request_ids(finished_ids)?;
        let aborted_ids = request_ids(aborted_ids)?;
        let finished = self
            .inner
            .update(
                &batch.get().inner,
                BatchOutputs {
                    sampled_token_ids: &tokens,
                    finished_ids: &finished_ids,
                    aborted_ids: &aborted_ids,
                },
            )
            .map_err(to_py)?;
        Ok(finished.into_iter().map(Into::into).collect())
    }

    #[getter]
    fn num_waiting(&self) -> usize {
        self.inner.num_waiting()
    }

    #[getter]
    fn num_running(&self) -> usize {
        self.inner.num_running()
    }

    #[getter]
    fn num_batches_in_flight(&self) -> usize {
        self.inner.num_batches_in_flight()
    }

    /// Blocks nobody holds and no prefix is cached in.
    #[getter]
    fn num_free_blocks(&self) -> u32 {
        self.inner.block_manager().num_free()
    }

    /// Blocks nobody holds that still cache a prefix (reclaimed on demand).
    #[getter]
    fn num_cached_blocks(&self) -> u32 {
        self.inner.block_manager().num_cached()
    }

    #[getter]
    fn num_used_blocks(&self) -> u32 {
        self.inner.block_manager().num_used()
    }

    /// Tokens looked up in the prefix cache, over every admission so far (0 without caching).
    #[getter]
    fn num_prefix_cache_queried_tokens(&self) -> u64 {
        self.inner.prefix_cache_stats().num_queried_tokens
    }

    /// Tokens the prefix cache held, over every admission so far.
    #[getter]
    fn num_prefix_cache_hit_tokens(&self) -> u64 {
        self.inner.prefix_cache_stats().num_hit_tokens
    }

    /// The longest sequence (prompt + outputs) a request may reach.
    #[getter]
    fn max_request_tokens(&self) -> u32 {
        self.inner.max_request_tokens()
    }

    fn block_table(&self, request_id: i64) -> PyResult<Vec<u32>> {
        let id = self::request_id(request_id)?;
        self.inner
            .block_table(id)
            .map(<[u32]>::to_vec)
            .ok_or_else(|| to_py(scheduler::SchedulerError::UnknownRequest(id)))
    }

    fn request_state(&self, request_id: i64) -> PyResult<PyRequestState> {
        let id = self::request_id(request_id)?;
        self.inner
            .request_view(id)
            .map(Into::into)
            .ok_or_else(|| to_py(scheduler::SchedulerError::UnknownRequest(id)))
    }

    fn running_ids(&self) -> Vec<u64> {
        self.inner.running_ids()
    }

    fn waiting_ids(&self) -> Vec<u64> {
        self.inner.waiting_ids()
    }

    /// Raises RuntimeError if block accounting or queue bookkeeping is inconsistent.
    fn check_invariants(&self) -> PyResult<()> {
        self.inner
            .check_invariants()
            .map_err(PyRuntimeError::new_err)
    }

    fn __contains__(&self, request_id: i64) -> bool {
        u64::try_from(request_id).is_ok_and(|id| self.inner.contains(id))
    }

    fn __len__(&self) -> usize {
        self.inner.num_waiting() + self.inner.num_running()
    }

    /// `num_waiting`, `num_running`, `num_used_blocks`, `num_prefix_cache_queried_tokens` and
    /// `num_prefix_cache_hit_tokens` in one call (the engine core reports them every step).
    fn load(&self) -> (usize, usize, u32, u64, u64) {
        let cache = self.inner.prefix_cache_stats();
        (
            self.inner.num_waiting(),
            self.inner.num_running(),
            self.inner.block_manager().num_used(),
            cache.num_queried_tokens,
            cache.num_hit_tokens,
        )
    }
}
