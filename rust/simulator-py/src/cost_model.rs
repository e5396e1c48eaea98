use pyo3::prelude::*;
use simulator::{
    AttentionModel, AttentionShape, BatchEntry, CostModel, CpuOverheads, IterationTime, KernelCost,
    KernelWork, LinearCost, OperatorInput, OperatorKind, OperatorTerm, PiecewiseLinear, Placement,
};

use crate::errors::{invalid_cost_model, to_py, to_u32, with_context};

/// Linear between knots, flat below the first, a line of `tail_slope` beyond the last.
#[pyclass(frozen, module = "vidur._simulator", name = "Curve")]
#[derive(Clone)]
pub struct PyCurve {
    pub(crate) inner: PiecewiseLinear,
}

#[pymethods]
impl PyCurve {
    #[new]
    fn new(xs: Vec<f64>, ys: Vec<f64>, tail_slope: f64) -> PyResult<Self> {
        let inner = PiecewiseLinear::new(xs, ys, tail_slope).map_err(to_py)?;
        Ok(PyCurve { inner })
    }

    fn __call__(&self, x: f64) -> f64 {
        self.inner.eval(x)
    }

    #[getter]
    fn xs(&self) -> Vec<f64> {
        self.inner.xs().to_vec()
    }

    #[getter]
    fn ys(&self) -> Vec<f64> {
        self.inner.ys().to_vec()
    }

    #[getter]
    fn tail_slope(&self) -> f64 {
        self.inner.tail_slope()
    }
}

/// What one kernel launch does, in the quantities its time is linear in.
#[pyclass(frozen, module = "vidur._simulator", name = "KernelWork")]
#[derive(Clone)]
pub struct PyKernelWork {
    pub(crate) inner: KernelWork,
}

#[pymethods]
impl PyKernelWork {
    #[getter]
    fn num_tokens(&self) -> f64 {
        self.inner.num_tokens
    }

    #[getter]
    fn num_items(&self) -> f64 {
        self.inner.num_items
    }

    #[getter]
    fn max_context(&self) -> f64 {
        self.inner.max_context
    }

    #[getter]
    fn context_flops(&self) -> f64 {
        self.inner.context_flops
    }

    #[getter]
    fn causal_flops(&self) -> f64 {
        self.inner.causal_flops
    }

    #[getter]
    fn flops(&self) -> f64 {
        self.inner.flops()
    }

    #[getter]
    fn bytes(&self) -> f64 {
        self.inner.bytes
    }
}

/// A kernel's time: `launch_s` plus each coefficient times its kind of work.
#[pyclass(frozen, module = "vidur._simulator", name = "KernelCost")]
#[derive(Clone)]
pub struct PyKernelCost {
    pub(crate) inner: KernelCost,
}

#[pymethods]
impl PyKernelCost {
    #[new]
    #[pyo3(signature = (*, launch_s = 0.0, per_token_s = 0.0, per_item_s = 0.0, per_context_token_s = 0.0, per_context_flop_s = 0.0, per_causal_flop_s = 0.0, per_byte_s = 0.0))]
    fn new(
        launch_s: f64,
        per_token_s: f64,
        per_item_s: f64,
        per_context_token_s: f64,
        per_context_flop_s: f64,
        per_causal_flop_s: f64,
        per_byte_s: f64,
    ) -> PyResult<Self> {
        let inner = KernelCost {
            launch_s,
            per_token_s,
            per_item_s,
            per_context_token_s,
            per_context_flop_s,
            per_causal_flop_s,
            per_byte_s,
        }
        .validated()
        .map_err(to_py)?;
        Ok(PyKernelCost { inner })
    }

    fn time(&self, work: &PyKernelWork) -> f64 {
        self.inner.time(&work.inner)
    }

    #[getter]
    fn launch_s(&self) -> f64 {
        self.inner.launch_s
    }

    #[getter]
    fn per_token_s(&self) -> f64 {
        self.inner.per_token_s
    }

    #[getter]
    fn per_item_s(&self) -> f64 {
        self.inner.per_item_s
    }

    #[getter]
    fn per_context_token_s(&self) -> f64 {
        self.inner.per_context_token_s
    }

    #[getter]
    fn per_context_flop_s(&self) -> f64 {
        self.inner.per_context_flop_s
    }

    #[getter]
    fn per_causal_flop_s(&self) -> f64 {
        self.inner.per_causal_flop_s
    }

    #[getter]
    fn per_byte_s(&self) -> f64 {
        self.inner.per_byte_s
    }
}

/// Per-layer attention on one GPU: prefill, decode and KV-write kernels, each a kernel cost.
#[pyclass(frozen, module = "vidur._simulator", name = "AttentionModel")]
#[derive(Clone)]
pub struct PyAttentionModel {
    pub(crate) inner: AttentionModel,
}

#[pymethods]
impl PyAttentionModel {
    #[new]
    #[pyo3(signature = (*, num_q_heads, num_kv_heads, head_dim, dtype_bytes, prefill, decode, kv_save))]
    fn new(
        num_q_heads: i64,
        num_kv_heads: i64,
        head_dim: i64,
        dtype_bytes: i64,
        prefill: &PyKernelCost,
        decode: &PyKernelCost,
        kv_save: &PyKernelCost,
    ) -> PyResult<Self> {
        let shape = AttentionShape {
            num_q_heads: to_u32("num_q_heads", num_q_heads)?,
            num_kv_heads: to_u32("num_kv_heads", num_kv_heads)?,
            head_dim: to_u32("head_dim", head_dim)?,
            dtype_bytes: to_u32("dtype_bytes", dtype_bytes)?,
        };
        let inner = AttentionModel::new(shape, prefill.inner, decode.inner, kv_save.inner)
            .map_err(to_py)?;
        Ok(PyAttentionModel { inner })
    }

    /// The work of a causal prefill chunk after `num_context` cached tokens.
    fn prefill_work(&self, num_tokens: i64, num_context: i64) -> PyResult<PyKernelWork> {
        let inner = self.inner.prefill_work(
            to_u32("num_tokens", num_tokens)?,
            to_u32("num_context", num_context)?,
        );
        Ok(PyKernelWork { inner })
    }

    /// The work of `num_decodes` decodes reading `total_context` cached tokens in all, the
    /// longest `max_context` (contexts include the new tokens).
    fn decode_work(
        &self,
        num_decodes: i64,
        total_context: u64,
        max_context: u64,
    ) -> PyResult<PyKernelWork> {
        let inner = self.inner.decode_work(
            to_u32("num_decodes", num_decodes)?,
            total_context,
            max_context,
        );
        Ok(PyKernelWork { inner })
    }

    /// The work of writing `num_tokens` new keys and values into the cache.
    fn kv_save_work(&self, num_tokens: i64) -> PyResult<PyKernelWork> {
        let inner = self
            .inner
            .kv_save_work(u64::from(to_u32("num_tokens", num_tokens)?));
        Ok(PyKernelWork { inner })
    }

    #[getter]
    fn prefill(&self) -> PyKernelCost {
        PyKernelCost {
            inner: self.inner.prefill,
        }
    }

    #[getter]
    fn decode(&self) -> PyKernelCost {
        PyKernelCost {
            inner: self.inner.decode,
        }
    }

    #[getter]
    fn kv_save(&self) -> PyKernelCost {
        PyKernelCost {
            inner: self.inner.kv_save,
        }
    }
}

fn parse_input(name: &str) -> PyResult<OperatorInput> {
    match name {
        "tokens" => Ok(OperatorInput::Tokens),
        "sampled_tokens" => Ok(OperatorInput::SampledTokens),
        other => Err(invalid_cost_model(format!(
            "unknown operator input {other:?}; expected tokens or sampled_tokens"
        ))),
    }
}

fn parse_placement(name: &str) -> PyResult<Placement> {
    match name {
        "every_stage" => Ok(Placement::EveryStage),
        "first_stage" => Ok(Placement::FirstStage),
        "last_stage" => Ok(Placement::LastStage),
        "between_stages" => Ok(Placement::BetweenStages),
        other => Err(invalid_cost_model(format!(
            "unknown operator placement {other:?}; expected every_stage, first_stage, last_stage or between_stages"
        ))),
    }
}

fn parse_kind(name: &str) -> PyResult<OperatorKind> {
    match name {
        "compute" => Ok(OperatorKind::Compute),
        "communication" => Ok(OperatorKind::Communication),
        other => Err(invalid_cost_model(format!(
            "unknown operator kind {other:?}; expected compute or communication"
        ))),
    }
}

/// One operator of an iteration: `repeat * curve(input)` seconds on each stage that runs it.
#[pyclass(
    frozen,
    from_py_object,
    module = "vidur._simulator",
    name = "OperatorTerm"
)]
#[derive(Clone)]
pub struct PyOperatorTerm {
    pub(crate) inner: OperatorTerm,
    input: String,
    placement: String,
    kind: String,
}

#[pymethods]
impl PyOperatorTerm {
    #[new]
    #[pyo3(signature = (name, curve, *, repeat = 1.0, input = "tokens", placement = "every_stage", kind = "compute"))]
    fn new(
        name: String,
        curve: &PyCurve,
        repeat: f64,
        input: &str,
        placement: &str,
        kind: &str,
    ) -> PyResult<Self> {
        let inner = OperatorTerm::new(
            name,
            curve.inner.clone(),
            repeat,
            parse_input(input)?,
            parse_placement(placement)?,
            parse_kind(kind)?,
        )
        .map_err(to_py)?;
        Ok(PyOperatorTerm {
            inner,
            input: input.into(),
            placement: placement.into(),
            kind: kind.into(),
        })
    }

    /// Seconds the operator adds to a stage that runs it, for `input` tokens.
    fn time(&self, input: i64) -> PyResult<f64> {
        Ok(self.inner.time(u64::from(to_u32("input", input)?)))
    }

    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    #[getter]
    fn curve(&self) -> PyCurve {
        PyCurve {
            inner: self.inner.curve.clone(),
        }
    }

    #[getter]
    fn repeat(&self) -> f64 {
        self.inner.repeat
    }

    #[getter]
    fn input(&self) -> &str {
        &self.input
    }

    #[getter]
    fn placement(&self) -> &str {
        &self.placement
    }

    #[getter]
    fn kind(&self) -> &str {
        &self.kind
    }
}

fn linear_cost(name: &str, (base_s, per_seq_s): (f64, f64)) -> PyResult<LinearCost> {
    LinearCost::new(base_s, per_seq_s).map_err(|error| with_context(name, error))
}

/// Host work around the forward pass, each `(base_s, per_seq_s)`.
#[pyclass(frozen, module = "vidur._simulator", name = "CpuOverheads")]
#[derive(Clone)]
pub struct PyCpuOverheads {
    pub(crate) inner: CpuOverheads,
}

#[pymethods]
impl PyCpuOverheads {
    #[new]
    #[pyo3(signature = (*, schedule = (0.0, 0.0), prepare_inputs = (0.0, 0.0), sample = (0.0, 0.0), process_outputs = (0.0, 0.0)))]
    fn new(
        schedule: (f64, f64),
        prepare_inputs: (f64, f64),
        sample: (f64, f64),
        process_outputs: (f64, f64),
    ) -> PyResult<Self> {
        Ok(PyCpuOverheads {
            inner: CpuOverheads {
                schedule: linear_cost("schedule", schedule)?,
                prepare_inputs: linear_cost("prepare_inputs", prepare_inputs)?,
                sample: linear_cost("sample", sample)?,
                process_outputs: linear_cost("process_outputs", process_outputs)?,
            },
        })
    }

    /// Seconds before the first stage starts (schedule + prepare inputs).
    fn before_forward(&self, num_seqs: i64) -> PyResult<f64> {
        Ok(self.inner.before_forward(to_u32("num_seqs", num_seqs)?))
    }

    /// Seconds after the last stage: sampling `num_sampled` sequences, processing the outputs
    /// of `num_seqs`.
    fn after_forward(&self, num_seqs: i64, num_sampled: i64) -> PyResult<f64> {
        Ok(self.inner.after_forward(
            to_u32("num_seqs", num_seqs)?,
            to_u32("num_sampled", num_sampled)?,
        ))
    }
}

/// The predicted time of one iteration, split by where it goes.
#[pyclass(frozen, module = "vidur._simulator", name = "IterationPrediction")]
pub struct PyIterationPrediction {
    inner: IterationTime,
}

#[pymethods]
impl PyIterationPrediction {
    #[getter]
    fn num_stages(&self) -> u32 {
        self.inner.num_stages
    }
    #[getter]
    fn cpu_before_s(&self) -> f64 {
        self.inner.cpu_before_s
    }
    #[getter]
    fn cpu_after_s(&self) -> f64 {
        self.inner.cpu_after_s
    }
    /// The engine's share of `cpu_before_s` (scheduling and sending the batch).
    #[getter]
    fn engine_before_s(&self) -> f64 {
        self.inner.engine_before_s
    }
    /// The engine's share of `cpu_after_s` (applying the batch's outputs).
    #[getter]
    fn engine_after_s(&self) -> f64 {
        self.inner.engine_after_s
    }
    /// The workers' time: their host time before and after the forward pass, and the forward pass.
    #[getter]
    fn worker_s(&self) -> f64 {
        self.inner.worker_before_s() + self.inner.forward_s() + self.inner.worker_after_s()
    }
    #[getter]
    fn every_stage_s(&self) -> f64 {
        self.inner.every_stage_s
    }
    #[getter]
    fn first_stage_extra_s(&self) -> f64 {
        self.inner.first_stage_extra_s
    }
    #[getter]
    fn last_stage_extra_s(&self) -> f64 {
        self.inner.last_stage_extra_s
    }
    #[getter]
    fn between_stages_s(&self) -> f64 {
        self.inner.between_stages_s
    }
    #[getter]
    fn attention_s(&self) -> f64 {
        self.inner.attention_s
    }
    #[getter]
    fn communication_s(&self) -> f64 {
        self.inner.communication_s
    }
    #[getter]
    fn forward_s(&self) -> f64 {
        self.inner.forward_s()
    }
    #[getter]
    fn latency_s(&self) -> f64 {
        self.inner.latency_s()
    }
    #[getter]
    fn num_tokens(&self) -> u64 {
        self.inner.num_tokens
    }
    #[getter]
    fn num_sampled(&self) -> u32 {
        self.inner.num_sampled
    }
    #[getter]
    fn num_seqs(&self) -> u32 {
        self.inner.num_seqs
    }
    /// One layer's attention FLOPs on one GPU.
    #[getter]
    fn attention_flops(&self) -> f64 {
        self.inner.attention_work.flops()
    }
    /// One layer's attention bytes on one GPU.
    #[getter]
    fn attention_bytes(&self) -> f64 {
        self.inner.attention_work.bytes()
    }

    fn stage_s(&self, stage: i64) -> PyResult<f64> {
        let stage = to_u32("stage", stage)?;
        if stage >= self.inner.num_stages {
            return Err(invalid_cost_model(format!(
                "stage {stage} is out of range for {} stages",
                self.inner.num_stages
            )));
        }
        Ok(self.inner.stage_s(stage))
    }

    fn __repr__(&self) -> String {
        format!(
            "IterationPrediction(latency_s={:.6}, forward_s={:.6}, attention_s={:.6}, communication_s={:.6}, cpu_s={:.6})",
            self.inner.latency_s(),
            self.inner.forward_s(),
            self.inner.attention_s,
            self.inner.communication_s,
            self.inner.cpu_s()
        )
    }
}

/// Predicts one replica's iteration time from its batch.
#[pyclass(frozen, module = "vidur._simulator", name = "CostModel")]
pub struct PyCostModel {
    pub(crate) inner: CostModel,
    operators: Vec<PyOperatorTerm>,
}

#[pymethods]
impl PyCostModel {
    #[new]
    #[pyo3(signature = (*, num_stages, layers_per_stage, operators, attention, cpu_overheads, max_tokens))]
    fn new(
        num_stages: i64,
        layers_per_stage: i64,
        operators: Vec<PyOperatorTerm>,
        attention: &PyAttentionModel,
        cpu_overheads: &PyCpuOverheads,
        max_tokens: i64,
    ) -> PyResult<Self> {
        let inner = CostModel::new(
            to_u32("num_stages", num_stages)?,
            to_u32("layers_per_stage", layers_per_stage)?,
            operators.iter().map(|op| op.inner.clone()).collect(),
            attention.inner,
            cpu_overheads.inner,
            to_u32("max_tokens", max_tokens)?,
        )
        .map_err(to_py)?;
        Ok(PyCostModel { inner, operators })
    }

    /// Predicts a batch given as `(num_tokens, num_computed_tokens, is_prefill, produces_token)`
    /// per request.
    fn predict(&self, entries: Vec<(i64, i64, bool, bool)>) -> PyResult<PyIterationPrediction> {
        let entries = entries
            .into_iter()
            .map(
                |(num_tokens, num_computed_tokens, is_prefill, produces_token)| {
                    Ok(BatchEntry {
                        num_tokens: to_u32("num_tokens", num_tokens)?,
                        num_computed_tokens: to_u32("num_computed_tokens", num_computed_tokens)?,
                        is_prefill,
                        produces_token,
                    })
                },
            )
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyIterationPrediction {
            inner: self.inner.predict(entries),
        })
    }

    #[getter]
    fn num_stages(&self) -> u32 {
        self.inner.num_stages()
    }

    #[getter]
    fn layers_per_stage(&self) -> u32 {
        self.inner.layers_per_stage()
    }

    #[getter]
    fn operators(&self) -> Vec<PyOperatorTerm> {
        self.operators.clone()
    }

    #[getter]
    fn attention(&self) -> PyAttentionModel {
        PyAttentionModel {
            inner: *self.inner.attention(),
        }
    }

    #[getter]
    fn cpu_overheads(&self) -> PyCpuOverheads {
        PyCpuOverheads {
            inner: *self.inner.cpu_overheads(),
        }
    }
}
