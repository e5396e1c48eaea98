use pyo3::prelude::*;
use scheduler::{DynamicChunking, Order, Policy, SchedulerConfig as CoreConfig};

use crate::errors::{invalid_config, to_py, to_u32};

/// The scheduler's knobs. Validated on construction; immutable afterwards.
#[pyclass(frozen, module = "engine._scheduler", name = "SchedulerConfig")]
#[derive(Clone)]
pub struct PySchedulerConfig {
    pub(crate) inner: CoreConfig,
}

#[pymethods]
impl PySchedulerConfig {
    #[new]
    #[pyo3(signature = (
        *,
        policy = "sarathi",
        token_budget = None,
        max_num_seqs = 128,
        max_model_len = 4096,
        block_size = 16,
        num_blocks = 4096,
        watermark = 0.01,
        enable_prefix_caching = false,
        order = "fcfs",
        dynamic_chunking = None,
        max_batches_in_flight = 1,
        max_decode_iters_between_prefills = 10,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        policy: &str,
        token_budget: Option<i64>,
        max_num_seqs: i64,
        max_model_len: i64,
        block_size: i64,
        num_blocks: i64,
        watermark: f64,
        enable_prefix_caching: bool,
        order: &str,
        dynamic_chunking: Option<(i64, i64, i64)>,
        max_batches_in_flight: i64,
        max_decode_iters_between_prefills: i64,
    ) -> PyResult<Self> {
        let knob = |name: &str, value: i64| to_u32(name, value, invalid_config);
        let policy = Policy::from_name(policy).map_err(to_py)?;
        let max_num_seqs = knob("max_num_seqs", max_num_seqs)?;
        let max_model_len = knob("max_model_len", max_model_len)?;
        let token_budget = match token_budget {
            Some(value) => knob("token_budget", value)?,
            None if policy.chunks_prefills() => 512.max(max_num_seqs),
            None => max_model_len.max(max_num_seqs),
        };
        let dynamic_chunking = match dynamic_chunking {
            None => None,
            Some((min_chunk_size, max_context, num_stages)) => Some(DynamicChunking {
                min_chunk_size: knob("dynamic_chunking.min_chunk_size", min_chunk_size)?,
                max_context: knob("dynamic_chunking.max_context", max_context)?,
                num_stages: knob("dynamic_chunking.num_stages", num_stages)?,
            }),
        };
        let inner = CoreConfig {
            policy,
            token_budget,
            max_num_seqs,
            max_model_len,
            block_size: knob("block_size", block_size)?,
            num_blocks: knob("num_blocks", num_blocks)?,
            watermark,
            enable_prefix_caching,
            order: Order::from_name(order).map_err(to_py)?,
            dynamic_chunking,
            max_batches_in_flight: knob("max_batches_in_flight", max_batches_in_flight)?,
            max_decode_iters_between_prefills: knob(
                "max_decode_iters_between_prefills",
                max_decode_iters_between_prefills,
            )?,
        };
        inner.validate().map_err(to_py)?;
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
    fn enable_prefix_caching(&self) -> bool {
        self.inner.enable_prefix_caching
    }
    #[getter]
    fn order(&self) -> &'static str {
        self.inner.order.name()
    }
    #[getter]
    fn dynamic_chunking(&self) -> Option<(u32, u32, u32)> {
        self.inner
            .dynamic_chunking
            .as_ref()
            .map(|d| (d.min_chunk_size, d.max_context, d.num_stages))
    }
    #[getter]
    fn max_batches_in_flight(&self) -> u32 {
        self.inner.max_batches_in_flight
    }
    #[getter]
    fn max_decode_iters_between_prefills(&self) -> u32 {
        self.inner.max_decode_iters_between_prefills
    }

    fn __repr__(&self) -> String {
        let c = &self.inner;
        format!(
            "SchedulerConfig(policy='{}', token_budget={}, max_num_seqs={}, max_model_len={}, \
             block_size={}, num_blocks={}, watermark={:?}, enable_prefix_caching={}, order='{}')",
            c.policy.name(),
            c.token_budget,
            c.max_num_seqs,
            c.max_model_len,
            c.block_size,
            c.num_blocks,
            c.watermark,
            if c.enable_prefix_caching {
                "True"
            } else {
                "False"
            },
            c.order.name()
        )
    }
}
