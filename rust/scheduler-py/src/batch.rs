use pyo3::prelude::*;
use pyo3::types::PyBytes;
use scheduler::{Batch, FinishedRequest, RequestView};

/// Bits of `Batch.flags`: the entry samples a token / is a prefill / is the request's first.
pub const PRODUCES_TOKEN: u8 = 1;
pub const IS_PREFILL: u8 = 2;
pub const IS_NEW: u8 = 4;

/// A column of little-endian numbers as `bytes` (read with `numpy.frombuffer`).
pub(crate) fn column<'py, T: Copy, const N: usize>(
    py: Python<'py>,
    values: impl ExactSizeIterator<Item = T>,
    to_bytes: fn(T) -> [u8; N],
) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, values.len() * N, |out| {
        for (value, chunk) in values.zip(out.chunks_exact_mut(N)) {
            chunk.copy_from_slice(&to_bytes(value));
        }
        Ok(())
    })
}

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
    is_new: bool,
    #[pyo3(get)]
    slot: u32,
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
                is_new: r.is_new,
                slot: r.slot,
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
        self.inner.preempted_ids()
    }

    /// Per preempted request (in `preempted_ids` order): the tokens it keeps; tokens a batch
    /// in flight sampled for it are dropped (only with async scheduling).
    #[getter]
    fn preempted_num_tokens(&self) -> Vec<u32> {
        self.inner.preempted.iter().map(|p| p.num_tokens).collect()
    }

    /// Requests an earlier batch held that have left the scheduler since the previous batch
    /// that held any request.
    #[getter]
    fn finished_ids(&self) -> Vec<u64> {
        self.inner.finished_ids.clone()
    }

    /// The requests this batch holds for the first time, in batch order.
    #[getter]
    fn new_request_ids(&self) -> Vec<u64> {
        (self.inner.requests.iter())
            .filter(|r| r.is_new)
            .map(|r| r.id)
            .collect()
    }

    /// The slots of `new_request_ids`, in the same order.
    #[getter]
    fn new_request_slots(&self) -> Vec<u32> {
        (self.inner.requests.iter())
            .filter(|r| r.is_new)
            .map(|r| r.slot)
            .collect()
    }

    /// `new_request_ids`, `preempted_ids`, `preempted_num_tokens` and `finished_ids` in one
    /// call: the requests this batch admits, takes back and drops (the step the workers run
    /// carries them beside the columns).
    #[allow(clippy::type_complexity)]
    fn membership(&self) -> (Vec<u64>, Vec<u64>, Vec<u32>, Vec<u64>) {
        (
            self.new_request_ids(),
            self.preempted_ids(),
            self.preempted_num_tokens(),
            self.finished_ids(),
        )
    }

    // ----- columns: one entry per scheduled request, in batch order -----

    /// Request ids, `<u8`.
    #[getter]
    fn ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        column(
            py,
            self.inner.requests.iter().map(|r| r.id),
            u64::to_le_bytes,
        )
    }

    /// Slots, `<u4`: small integers unique among live requests (reused after one leaves).
    #[getter]
    fn slots<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        column(
            py,
            self.inner.requests.iter().map(|r| r.slot),
            u32::to_le_bytes,
        )
    }

    /// Tokens each runs, `<u4`.
    #[getter]
    fn num_tokens_per_request<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        column(
            py,
            self.inner.requests.iter().map(|r| r.num_tokens),
            u32::to_le_bytes,
        )
    }

    /// Where each starts (tokens already in its KV cache), `<u4`.
    #[getter]
    fn num_computed_tokens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        column(
            py,
            self.inner.requests.iter().map(|r| r.num_computed_tokens),
            u32::to_le_bytes,
        )
    }

    /// `PRODUCES_TOKEN | IS_PREFILL | IS_NEW` bits, `u1`.
    #[getter]
    fn flags<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let flag = |r: &scheduler::ScheduledRequest| {
            u8::from(r.produces_token) * PRODUCES_TOKEN
                + u8::from(r.is_prefill) * IS_PREFILL
                + u8::from(r.is_new) * IS_NEW
        };
        column(py, self.inner.requests.iter().map(flag), |f: u8| [f])
    }

    /// `<u4`, one more than requests: request `i`'s new blocks are
    /// `new_block_ids[offsets[i]:offsets[i + 1]]`.
    #[getter]
    fn new_block_offsets<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let ends = self.inner.requests.iter().map(|r| r.new_blocks_end());
        column(
            py,
            std::iter::once(0)
                .chain(ends)
                .collect::<Vec<_>>()
                .into_iter(),
            u32::to_le_bytes,
        )
    }

    /// Every request's new blocks, one after another, `<u4`.
    #[getter]
    fn new_block_ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        column(
            py,
            self.inner.all_new_block_ids().iter().copied(),
            u32::to_le_bytes,
        )
    }

    /// Every column above in one call, in this order: `ids`, `slots`, `num_tokens_per_request`,
    /// `num_computed_tokens`, `flags`, `new_block_offsets`, `new_block_ids` (the engine reads
    /// them so once a step; each getter alone costs a call).
    #[allow(clippy::type_complexity)]
    fn columns<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(
        Bound<'py, PyBytes>,
        Bound<'py, PyBytes>,
        Bound<'py, PyBytes>,
        Bound<'py, PyBytes>,
        Bound<'py, PyBytes>,
        Bound<'py, PyBytes>,
        Bound<'py, PyBytes>,
    )> {
        Ok((
            self.ids(py)?,
            self.slots(py)?,
            self.num_tokens_per_request(py)?,
            self.num_computed_tokens(py)?,
            self.flags(py)?,
            self.new_block_offsets(py)?,
            self.new_block_ids(py)?,
        ))
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
            "Batch(id={}, requests={}, num_tokens={}, preempted_ids={:?}, finished_ids={:?})",
            self.inner.id,
            self.inner.len(),
            self.inner.num_tokens(),
            self.inner.preempted_ids(),
            self.inner.finished_ids
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
    #[pyo3(get)]
    slot: u32,
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
            slot: f.slot,
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
