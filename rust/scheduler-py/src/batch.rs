use pyo3::prelude::*;
use scheduler::{Batch, FinishedRequest, RequestView};

/// One request's share of an iteration.
#[pyclass(frozen, module = "engine._scheduler", name = "ScheduledRequest")]
pub struct PyScheduledRequest {
    #[pyo3(get)]
    id: u64,
    #[pyo3(get)]
    num_tokens: u32,
    #[pyo3(get)]
    num_computed_tokens: u32,
    #[pyo3(get)]
    is_prefill: bool,
    #[pyo3(get)]
    produces_token: bool,
    #[pyo3(get)]
    new_block_ids: Vec<u32>,
}

#[pymethods]
impl PyScheduledRequest {
    fn __repr__(&self) -> String {
        format!(
            "ScheduledRequest(id={}, num_tokens={}, num_computed_tokens={}, is_prefill={}, \
             produces_token={}, new_block_ids={:?})",
            self.id,
            self.num_tokens,
            self.num_computed_tokens,
            py_bool(self.is_prefill),
            py_bool(self.produces_token),
            self.new_block_ids
        )
    }
}

fn py_bool(value: bool) -> &'static str {
    if value {
        "True"
    } else {
        "False"
    }
}

/// What runs in one iteration; hand it back to `Scheduler.update` exactly once.
#[pyclass(frozen, module = "engine._scheduler", name = "Batch")]
pub struct PyBatch {
    pub(crate) inner: Batch,
}

#[pymethods]
impl PyBatch {
    #[getter]
    fn id(&self) -> u64 {
        self.inner.id
    }

    /// The scheduled requests in batch order (decodes first under `sarathi`).
    #[getter]
    fn requests(&self) -> Vec<PyScheduledRequest> {
        (self.inner.requests.iter().enumerate())
            .map(|(index, r)| PyScheduledRequest {
                id: r.id,
                num_tokens: r.num_tokens,
                num_computed_tokens: r.num_computed_tokens,
                is_prefill: r.is_prefill,
                produces_token: r.produces_token,
                new_block_ids: self.inner.new_block_ids(index).to_vec(),
            })
            .collect()
    }

    #[getter]
    fn request_ids(&self) -> Vec<u64> {
        self.inner.requests.iter().map(|r| r.id).collect()
    }

    #[getter]
    fn preempted_ids(&self) -> Vec<u64> {
        self.inner.preempted_ids.clone()
    }

    #[getter]
    fn num_tokens(&self) -> u32 {
        self.inner.num_tokens()
    }

    #[getter]
    fn num_prefill_tokens(&self) -> u32 {
        self.inner.num_prefill_tokens()
    }

    #[getter]
    fn num_decodes(&self) -> usize {
        self.inner.num_decodes()
    }

    /// How many sampled tokens `update` expects.
    #[getter]
    fn num_producing(&self) -> u32 {
        self.inner.num_producing()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "Batch(id={}, requests={}, num_tokens={}, preempted_ids={:?})",
            self.inner.id,
            self.inner.len(),
            self.inner.num_tokens(),
            self.inner.preempted_ids
        )
    }
}

/// A request that left the scheduler.
#[pyclass(frozen, module = "engine._scheduler", name = "FinishedRequest")]
pub struct PyFinishedRequest {
    #[pyo3(get)]
    id: u64,
    /// "length", "stop" or "aborted".
    #[pyo3(get)]
    reason: &'static str,
    #[pyo3(get)]
    num_prompt_tokens: u32,
    #[pyo3(get)]
    num_output_tokens: u32,
    #[pyo3(get)]
    first_scheduled_at: Option<f64>,
    #[pyo3(get)]
    num_preemptions: u32,
    /// Prompt tokens found in the prefix cache when the request was first admitted.
    #[pyo3(get)]
    num_cached_tokens: u32,
}

impl From<FinishedRequest> for PyFinishedRequest {
    fn from(f: FinishedRequest) -> Self {
        PyFinishedRequest {
            id: f.id,
            reason: f.reason.name(),
            num_prompt_tokens: f.num_prompt_tokens,
            num_output_tokens: f.num_output_tokens,
            first_scheduled_at: f.first_scheduled_at,
            num_preemptions: f.num_preemptions,
            num_cached_tokens: f.num_cached_tokens,
        }
    }
}

#[pymethods]
impl PyFinishedRequest {
    fn __repr__(&self) -> String {
        format!(
            "FinishedRequest(id={}, reason='{}', num_output_tokens={})",
            self.id, self.reason, self.num_output_tokens
        )
    }
}

/// A snapshot of one request's progress.
#[pyclass(frozen, module = "engine._scheduler", name = "RequestState")]
pub struct PyRequestState {
    #[pyo3(get)]
    id: u64,
    #[pyo3(get)]
    is_running: bool,
    #[pyo3(get)]
    is_prefill: bool,
    #[pyo3(get)]
    num_prompt_tokens: u32,
    #[pyo3(get)]
    num_output_tokens: u32,
    #[pyo3(get)]
    num_computed_tokens: u32,
    #[pyo3(get)]
    num_blocks: u32,
    #[pyo3(get)]
    num_preemptions: u32,
}

impl From<RequestView> for PyRequestState {
    fn from(v: RequestView) -> Self {
        PyRequestState {
            id: v.id,
            is_running: v.is_running,
            is_prefill: v.is_prefill,
            num_prompt_tokens: v.num_prompt_tokens,
            num_output_tokens: v.num_output_tokens,
            num_computed_tokens: v.num_computed_tokens,
            num_blocks: v.num_blocks,
            num_preemptions: v.num_preemptions,
        }
    }
}

#[pymethods]
impl PyRequestState {
    fn __repr__(&self) -> String {
        format!(
            "RequestState(id={}, is_running={}, num_output_tokens={}, num_computed_tokens={})",
            self.id,
            py_bool(self.is_running),
            self.num_output_tokens,
            self.num_computed_tokens
        )
    }
}
