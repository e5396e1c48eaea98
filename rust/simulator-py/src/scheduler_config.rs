use pyo3::prelude::*;
use scheduler::{DynamicChunking, Order, Policy, SchedulerConfig};

use crate::errors::{scheduler_config_error, to_u32};

/// The knobs of every replica's scheduler (the same Rust scheduler the engine runs).
/// `max_batches_in_flight` is not a knob here: it is the number of pipeline stages.
#[pyclass(frozen, module = "vidur._simulator", name = "SchedulerConfig")]
#[derive(Clone)]
pub struct PySchedulerConfig {
    pub(crate) inner: SchedulerConfig,
}

#[pymethods]
impl PySchedulerConfig {
    #[new]
    #[pyo3(signature = (
        *,
        policy = "sarathi",
        token_budget = 512,
        max_num_seqs = 128,
        max_model_len = 4096,
        block_size = 16,
        num_blocks = 4096,
        watermark = 0.01,
        dynamic_chunking = None,
        max_decode_iters_between_prefills = 10,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        policy: &str,
        token_budget: i64,
        max_num_seqs: i64,
        max_model_len: i64,
        block_size: i64,
        num_blocks: i64,
        watermark: f64,
        dynamic_chunking: Option<(i64, i64, i64)>,
        max_decode_iters_between_prefills: i64,
    ) -> PyResult<Self> {
        let dynamic_chunking = match dynamic_chunking {
            None => None,
            Some((min_chunk_size, max_context, num_stages)) => Some(DynamicChunking {
                min_chunk_size: to_u32("dynamic_chunking.min_chunk_size", min_chunk_size)?,
                max_context: to_u32("dynamic_chunking.max_context", max_context)?,
                num_stages: to_u32("dynamic_chunking.num_stages", num_stages)?,
            }),
        };
        let inner = SchedulerConfig {
            policy: Policy::from_name(policy).map_err(scheduler_config_error)?,
            token_budget: to_u32("token_budget", token_budget)?,
            max_num_seqs: to_u32("max_num_seqs", max_num_seqs)?,
            max_model_len: to_u32("max_model_len", max_model_len)?,
            block_size: to_u32("block_size", block_size)?,
            num_blocks: to_u32("num_blocks", num_blocks)?,
            watermark,
            enable_prefix_caching: false,
            order: Order::Fcfs,
            dynamic_chunking,
            max_batches_in_flight: 1,
            max_decode_iters_between_prefills: to_u32(
                "max_decode_iters_between_prefills",
                max_decode_iters_between_prefills,
            )?,
        };
        inner.validate().map_err(scheduler_config_error)?;
        Ok(PySchedulerConfig { inner })
    }

    #[getter]
    fn policy(&self) -> &'static str {
        self.inner.policy.name()
    }
    #[getter]
    fn token_budget(&self) -> u32 {
        self.inner.token_budget
    }
    #[getter]
    fn max_num_seqs(&self) -> u32 {
        self.inner.max_num_seqs
    }
    #[getter]
    fn max_model_len(&self) -> u32 {
        self.inner.max_model_len
    }
    #[getter]
    fn block_size(&self) -> u32 {
        self.inner.block_size
    }
    #[getter]
    fn num_blocks(&self) -> u32 {
        self.inner.num_blocks
    }
    #[getter]
    fn watermark(&self) -> f64 {
        self.inner.watermark
    }
    #[getter]
    fn dynamic_chunking(&self) -> Option<(u32, u32, u32)> {
        self.inner
            .dynamic_chunking
            .as_ref()
            .map(|d| (d.min_chunk_size, d.max_context, d.num_stages))
    }
    #[getter]
    fn max_decode_iters_between_prefills(&self) -> u32 {
        self.inner.max_decode_iters_between_prefills
    }
    /// The longest sequence a request may reach before the scheduler ends it.
    #[getter]
    fn max_request_tokens(&self) -> u32 {
        self.inner.max_request_tokens()
    }
}
