"""Attention kernel costs: each kernel's time is a launch cost plus a non-negative cost per unit
of each kind of work it does, the work counted by the simulator's own formulas
(`rust/simulator/src/attention.rs`), the coefficients fitted to attention profiles.

What each kernel's time is made of (the terms `KERNEL_TERMS` fits), as profiled kernels behave:
- prefill: the launch; per query token (the causal tail: a chunk's last query block visits up to
  a chunk more keys than its first, and the launch waits for it whatever the head count); per
  query row of each query head (loading queries, normalising and writing outputs); per FLOP
  against the cached context and, at a lower rate, per FLOP of the causal triangle within the
  chunk (its uneven blocks leave multiprocessors idle). No byte term: the keys and values a
  chunk reads hide under its FLOPs (fitted, the term came out at rates above the datasheet
  bandwidth, standing in for the other terms). A launch covers every chunk of the batch at
  once, so there is no cost per chunk beyond its work (single-chunk profiles could not tell one
  from the launch anyway).
- decode: the launch; per sequence; per (sequence, KV head) pair, the unit the decode kernels
  schedule (short contexts cost about this alone); per token of the longest context (with few
  pairs the GPU cannot keep its memory busy, and the longest stream sets the time); per byte of
  keys and values read (long contexts are bandwidth-bound). There is no FLOP term: a decode's
  FLOPs grow with its bytes, so a fit cannot tell them apart.
- KV save: the launch and per byte copied.

Fits minimise the squared relative error (non-negative least squares on rows weighted by 1/time):
the held-out error is reported as a mean relative error, so every row counts by its relative
error, short kernels as much as long ones.

One backend per GPU: a GPU's rows may come from several attention backends, which differ in
shape, not just speed (FlashInfer's prefill runs its causal part faster, its cached context
slower, than FlashAttention's), so a fit across them fits neither. Its rows of this project's
own profiler (they name no backend) come first, then FlashAttention's (the default backend of
vLLM and Sarathi-Serve on these GPUs, and the one profiled on every GPU here), then any other
in name order. FlashAttention writes the new keys and values inside its attention kernels
(its rows time no separate KV save), so a backend whose rows time no KV save costs nothing more
for it.
"""

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from vidur import _simulator
from vidur.gpus import GpuSpec
from vidur.profiles import AttentionSample

# The columns of a work matrix; each term's cost is the FittedKernelCost field of the same position.
TERMS = ("launch", "token", "item", "context_token", "context_flop", "causal_flop", "byte")
KERNEL_TERMS: dict[str, tuple[str, ...]] = {
    "attn_prefill": ("launch", "token", "item", "context_flop", "causal_flop"),
    "attn_decode": ("launch", "token", "item", "context_token", "byte"),
    "attn_kv_cache_save": ("launch", "byte"),
}
BACKEND_PREFERENCE = ("", "FLASH_ATTENTION")
# Where no attention profile calibrates a kernel: (launch seconds, fraction of peak FLOP/s, fraction
# of memory bandwidth). FlashAttention-2 forward reaches 50-70% of peak FLOP/s on long prefills;
# paged decode kernels stream the KV cache at 60-80% of HBM bandwidth.
DEFAULT_ATTENTION = {
    "attn_prefill": (15e-6, 0.55, 0.0),
    "attn_decode": (10e-6, 0.0, 0.70),
    "attn_kv_cache_save": (5e-6, 0.0, 0.50),
}


@dataclass(frozen=True, slots=True)
class FittedKernelCost:
    """Seconds per launch and per unit of each kind of work (`kernel_cost.rs`'s `KernelCost`)."""

    launch_s: float = 0.0
    per_token_s: float = 0.0
    per_item_s: float = 0.0
    per_context_token_s: float = 0.0
    per_context_flop_s: float = 0.0
    per_causal_flop_s: float = 0.0
    per_byte_s: float = 0.0

    @property
    def coefficients(self) -> np.ndarray:
        return np.array([getattr(self, f.name) for f in fields(self)])

    def times(self, work: np.ndarray) -> np.ndarray:
        """Seconds for each row of a work matrix."""
        return np.asarray(work) @ self.coefficients

    def rescaled(self, flops_factor: float, bytes_factor: float) -> "FittedKernelCost":
        """The same kernel on hardware with `flops_factor` x the compute and `bytes_factor` x the
        memory bandwidth: FLOPs and bytes go faster; launches, per-item and latency costs stay."""
        return FittedKernelCost(
            self.launch_s,
            self.per_token_s,
            self.per_item_s,
            self.per_context_token_s,
            self.per_context_flop_s / flops_factor,
            self.per_causal_flop_s / flops_factor,
            self.per_byte_s / bytes_factor,
        )

    def to_rust(self) -> _simulator.KernelCost:
        return _simulator.KernelCost(**{f.name: getattr(self, f.name) for f in fields(self)})


def default_kernel_cost(gpu: GpuSpec, kernel: str) -> FittedKernelCost:
    launch_s, flops_fraction, bytes_fraction = DEFAULT_ATTENTION[kernel]
    per_flop_s = 1 / (flops_fraction * gpu.peak_flops) if flops_fraction else 0.0
    return FittedKernelCost(
        launch_s,
        per_context_flop_s=per_flop_s,
        per_causal_flop_s=per_flop_s,
        per_byte_s=1 / (bytes_fraction * gpu.peak_bytes_per_s) if bytes_fraction else 0.0,
    )


def attention_work(sample: AttentionSample, model: _simulator.AttentionModel | None = None) -> _simulator.KernelWork:
    """The work of a profiled kernel, by the simulator's own formulas (`model`: one of the
    sample's shape, to reuse)."""
    if model is None:
        model = _free_model(sample)
    batch = sample.batch_size
    match sample.kernel:
        case "attn_prefill":
            if batch != 1:
                raise ValueError(f"a prefill sample times one sequence's chunk, not {batch}")
            return model.prefill_work(sample.num_tokens, sample.num_context)
        case "attn_decode":
            context = sample.num_context + 1
            return model.decode_work(batch, batch * context, context)
        case _:
            return model.kv_save_work(batch * sample.num_tokens)


def _free_model(sample: AttentionSample) -> _simulator.AttentionModel:
    free = _simulator.KernelCost()
    return _simulator.AttentionModel(
        num_q_heads=sample.n_q_head,
        num_kv_heads=sample.n_kv_head,
        head_dim=sample.head_dim,
        dtype_bytes=2,
        prefill=free,
        decode=free,
        kv_save=free,
    )


def work_matrix(samples: Sequence[AttentionSample]) -> np.ndarray:
    """One row per sample, one column per term of `TERMS`."""
    models: dict[tuple[int, int, int], _simulator.AttentionModel] = {}
    rows = []
    for sample in samples:
        shape = (sample.n_q_head, sample.n_kv_head, sample.head_dim)
        if shape not in models:
            models[shape] = _free_model(sample)
        w = attention_work(sample, models[shape])
        rows.append((1.0, w.num_tokens, w.num_items, w.max_context, w.context_flops, w.causal_flops, w.bytes))
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(TERMS))


def fit_kernel_cost(work: np.ndarray, time_s: np.ndarray, terms: Sequence[str]) -> FittedKernelCost:
    """Non-negative coefficients of `terms` minimising the squared relative error of the
    predicted times; the other terms cost nothing."""
    from scipy.optimize import nnls  # imported here: 0.8 s, paid only by a training, not a cached run

    columns = [TERMS.index(term) for term in terms]
    picked = work[:, columns]
    scale = picked.max(axis=0)
    scale[scale <= 0] = 1.0
    coefficients, _ = nnls(picked / scale / time_s[:, None], np.ones(len(time_s)))
    full = np.zeros(len(TERMS))
    full[columns] = coefficients / scale
    return FittedKernelCost(*(float(c) for c in full))


def preferred_backend(backends: set[str]) -> str:
    def rank(backend: str) -> tuple[int, str]:
        order = BACKEND_PREFERENCE.index(backend) if backend in BACKEND_PREFERENCE else len(BACKEND_PREFERENCE)
        return order, backend

    return min(backends, key=rank)


@dataclass(frozen=True, slots=True)
class AttentionFit:
    """One GPU's calibrated kernels (those with enough rows), fitted on `backend`'s rows."""

    backend: str
    kernels: dict[str, FittedKernelCost]


def fit_attention(samples: Sequence[AttentionSample]) -> AttentionFit:
    backend = preferred_backend({s.backend for s in samples})
    chosen = [s for s in samples if s.backend == backend]
    kernels = {}
    for kernel, terms in KERNEL_TERMS.items():
        rows = [s for s in chosen if s.kernel == kernel]
        if len(rows) >= len(terms):
            kernels[kernel] = fit_kernel_cost(work_matrix(rows), np.array([s.time_s for s in rows]), terms)
    times_its_kv_save = any(s.kernel == "attn_kv_cache_save" for s in chosen)
    if not times_its_kv_save and kernels:
        kernels["attn_kv_cache_save"] = FittedKernelCost()
    return AttentionFit(backend, kernels)
