use pyo3::prelude::*;
use scheduler::{DynamicChunking, Order, Policy, SchedulerConfig as CoreConfig, SchedulerKnobs};

use crate::errors::{invalid_config, to_py, to_u32};

/// The scheduler's knobs. A knob left at None takes the core's default (the token budget's
/// depends on the policy). Validated on construction; immutable afterwards.
#[pyclass(frozen, eq, module = "engine._scheduler", name = "SchedulerConfig")]
#[derive(Clone, PartialEq)]
pub struct PySchedulerConfig {
    pub inner: CoreConfig,
}

fn knob(name: &str, value: Option<i64>) -> PyResult<Option<u32>> {
    value
        .map(|value| to_u32(name, value, invalid_config))
        .transpose()
}

#[pymethods]
impl PySchedulerConfig {
    #[new]
    #[pyo3(signature = (
        *,
        policy = None,
        token_budget = None,
        max_num_seqs = None,
        max_model_len = None,
        block_size = None,
        num_blocks = None,
        watermark = None,
        enable_prefix_caching = None,
        order = None,
        dynamic_chunking = None,
        max_batches_in_flight = None,
        async_scheduling = None,
        max_decode_iters_between_prefills = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        policy: Option<&str>,
        token_budget: Option<i64>,
        max_num_seqs: Option<i64>,
        max_model_len: Option<i64>,
        block_size: Option<i64>,
        num_blocks: Option<i64>,
        watermark: Option<f64>,
        enable_prefix_caching: Option<bool>,
        order: Option<&str>,
        dynamic_chunking: Option<(i64, i64, i64)>,
        max_batches_in_flight: Option<i64>,
        async_scheduling: Option<bool>,
        max_decode_iters_between_prefills: Option<i64>,
    ) -> PyResult<Self> {
        let dynamic_chunking = match dynamic_chunking {
            None => None,
            Some((min_chunk_size, max_context, num_stages)) => Some(DynamicChunking {
                min_chunk_size: to_u32(
                    "dynamic_chunking.min_chunk_size",
                    min_chunk_size,
                    invalid_config,
                )?,
                max_context: to_u32("dynamic_chunking.max_context", max_context, invalid_config)?,
                num_stages: to_u32("dynamic_chunking.num_stages", num_stages, invalid_config)?,
            }),
        };
        let knobs = SchedulerKnobs {
            policy: policy.map(Policy::from_name).transpose().map_err(to_py)?,
            token_budget: knob("token_budget", token_budget)?,
            max_num_seqs: knob("max_num_seqs", max_num_seqs)?,
            max_model_len: knob("max_model_len", max_model_len)?,
            block_size: knob("block_size", block_size)?,
            num_blocks: knob("num_blocks", num_blocks)?,
            watermark,
            enable_prefix_caching,
            order: order.map(Order::from_name).transpose().map_err(to_py)?,
            dynamic_chunking,
            max_batches_in_flight: knob("max_batches_in_flight", max_batches_in_flight)?,
            async_scheduling,
            max_decode_iters_between_prefills: knob(
                "max_decode_iters_between_prefills",
                max_decode_iters_between_prefills,
            )?,
        };
        Ok(PySchedulerConfig {
            inner: CoreConfig::from_knobs(knobs).map_err(to_py)?,
        })
    }

    /// Why a prompt of `num_prompt_tokens` tokens can never be admitted (the reason the
    /// scheduler's `add_request` would give), or None if it can.
    fn prompt_refusal(&self, num_prompt_tokens: i64) -> PyResult<Option<String>> {
        let num_prompt_tokens = to_u32("num_prompt_tokens", num_prompt_tokens, invalid_config)?;
        Ok(self.inner.prompt_refusal(num_prompt_tokens))
    }

    /// This config with another number of KV blocks (known once the workers sized the cache).
    fn with_num_blocks(&self, num_blocks: i64) -> PyResult<Self> {
        let inner = CoreConfig {
            num_blocks: to_u32("num_blocks", num_blocks, invalid_config)?,
            ..self.inner.clone()
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
    fn async_scheduling(&self) -> bool {
        self.inner.async_scheduling
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

    fn __repr__(&self) -> String {
        let c = &self.inner;
        format!(
            "SchedulerConfig(policy='{}', token_budget={}, max_num_seqs={}, max_model_len={}, \
             block_size={}, num_blocks={}, watermark={:?}, enable_prefix_caching={}, order='{}', \
             max_batches_in_flight={}, async_scheduling={})",
            c.policy.name(),
            c.token_budget,
            c.max_num_seqs,
            c.max_model_len,
            c.block_size,
            c.num_blocks,
            c.watermark,
            py_bool(c.enable_prefix_caching),
            c.order.name(),
            c.max_batches_in_flight,
            py_bool(c.async_scheduling)
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
