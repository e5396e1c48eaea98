"""The operator-time predictor, trained from profiling tables.

For a (GPU, model shape, tensor-parallel degree) that was profiled, an operator's time is the
interpolating curve through its profiled points (made non-decreasing), extended past the
largest profiled token count by the slope of the upper half. Everything else comes from a
roofline per (GPU, operator), `overhead + max(FLOPs / F, bytes / B)`, fitted across every
profiled model on that GPU. Profiles are looked up by the GPU's own name first; only where a GPU
has none of its own for an operator does it borrow its reference GPU's fitted efficiencies,
scaled by the ratio of datasheet peaks. Attention is a cost model per kernel
(`vidur.attention_costs`), calibrated from `attention.csv` profiles (the GPU's own, else its
reference GPU's, scaled) where they exist.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidur.attention_costs import (
    DEFAULT_ATTENTION,
    AttentionFit,
    FittedKernelCost,
    default_kernel_cost,
    fit_attention,
)
from vidur.curves import CurveData, FittedRoofline, fit_profile_curve, fit_roofline, sample_roofline
from vidur.errors import MissingProfileError
from vidur.gpus import CATALOGUE as GPUS
from vidur.gpus import GpuSpec
from vidur.models import ModelSpec
from vidur.operator_work import layer_shape, roofline_work
from vidur.profiles import (
    MLP_OPERATORS,
    ComputeProfile,
    NetworkKey,
    ProfileSet,
    load_profiles,
)

# Collectives without a profile: a ring over the interconnect at this fraction of its bandwidth,
# plus a fixed latency per call.
RING_EFFICIENCY = 0.7
COLLECTIVE_LATENCY_S = 20e-6
INTER_NODE_GB_S = 25.0


@dataclass(frozen=True, slots=True)
class OperatorCurve:
    """A predicted time curve and where it came from (shown in reports)."""

    curve: CurveData
    source: str


@dataclass(frozen=True, slots=True)
class AttentionCosts:
    prefill: FittedKernelCost
    decode: FittedKernelCost
    kv_save: FittedKernelCost
    source: str


def _roofline_points(profiles: list[ComputeProfile], operator: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flops, bytes_moved, times = [], [], []
    for profile in profiles:
        for (name, tp), series in profile.series.items():
            if name != operator:
                continue
            f, b = roofline_work(operator, profile.shape, tp, series.x)
            flops.append(f)
            bytes_moved.append(b)
            times.append(series.time_s)
    if not times:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    return np.concatenate(flops), np.concatenate(bytes_moved), np.concatenate(times)


def fit_operator_rooflines(profiles: list[ComputeProfile]) -> dict[str, FittedRoofline]:
    """One roofline per operator, fitted across every profiled shape and degree on one GPU."""
    rooflines = {}
    for operator in MLP_OPERATORS:
        flops, bytes_moved, times = _roofline_points(profiles, operator)
        if len(times) >= 3:
            rooflines[operator] = fit_roofline(flops, bytes_moved, times)
    return rooflines


@dataclass(slots=True)
class OperatorPredictor:
    """Trained state: curves through every profiled series, rooflines per profiled GPU."""

    profiles: ProfileSet
    profile_curves: dict[tuple[str, str, str, int], CurveData] = field(default_factory=dict)
    rooflines: dict[str, dict[str, FittedRoofline]] = field(default_factory=dict)
    attention: dict[str, AttentionFit] = field(default_factory=dict)
    network_curves: dict[NetworkKey, CurveData] = field(default_factory=dict)
    train_s: float = 0.0

    @classmethod
    def train(cls, roots: list[Path]) -> "OperatorPredictor":
        started = time.perf_counter()
        predictor = cls(load_profiles(roots))
        predictor._fit()
        predictor.train_s = time.perf_counter() - started
        return predictor

    def _fit(self) -> None:
        by_gpu: dict[str, list[ComputeProfile]] = {}
        for (gpu, model_folder), profile in self.profiles.compute.items():
            by_gpu.setdefault(gpu, []).append(profile)
            for (operator, tp), series in profile.series.items():
                self.profile_curves[(gpu, model_folder, operator, tp)] = fit_profile_curve(series.x, series.time_s)
        for gpu, profiles in by_gpu.items():
            self.rooflines[gpu] = fit_operator_rooflines(profiles)
        for gpu, samples in self.profiles.attention.items():
            self.attention[gpu] = fit_attention(samples)
        for key, series in self.profiles.network.items():
            self.network_curves[key] = fit_profile_curve(series.x, series.time_s)

    @property
    def profiled_gpus(self) -> list[str]:
        return sorted(self.rooflines)

    def _calibrated_roofline(self, gpu: GpuSpec, operator: str) -> tuple[FittedRoofline, str]:
        """The roofline for `operator` fitted on `gpu`'s own profiles, else on its reference
        GPU's, rescaled to `gpu`'s peaks."""
        roofline_operator = "mlp_up_proj" if operator == "lm_head" else operator
        own = self.rooflines.get(gpu.name, {})
        if roofline_operator in own:
            return own[roofline_operator], f"roofline fitted on {gpu.name} profiles"
        reference = gpu.reference_gpu
        fitted = self.rooflines.get(reference, {}) if reference is not None else {}
        if reference is None or roofline_operator not in fitted:
            looked_for = gpu.name if reference is None else f"{gpu.name} or its reference GPU {reference}"
            raise MissingProfileError(
                f"no profiles calibrate {operator} on {looked_for}; "
                f"profiled GPUs: {', '.join(self.profiled_gpus) or 'none'}"
            )
        reference_spec = GPUS.get(reference)
        if reference_spec is None:
            raise MissingProfileError(
                f"GPU {gpu.name} names reference GPU {reference!r}, which is not in the catalogue"
            )
        scaled = fitted[roofline_operator].rescaled(
            gpu.peak_flops / reference_spec.peak_flops, gpu.peak_bytes_per_s / reference_spec.peak_bytes_per_s
        )
        return scaled, f"roofline fitted on {reference} profiles, scaled to {gpu.name}'s peaks"

    def operator_curve(self, gpu: GpuSpec, model: ModelSpec, operator: str, tp: int, max_tokens: int) -> OperatorCurve:
        """Seconds of one `operator` on one GPU of a `tp`-way layer, by the iteration's tokens."""
        shape = layer_shape(model)
        profile = self.profiles.compute_profile(gpu.name, shape, model.profile_path)
        curve = self.profile_curves.get((gpu.name, profile.model, operator, tp)) if profile is not None else None
        # The LM head's time depends on the vocabulary too, which the layer shape leaves out.
        if curve is not None and profile is not None and (operator != "lm_head" or profile.vocab_size == model.vocab_size):
            return OperatorCurve(curve, f"profile {profile.gpu}/{profile.model} tp={tp}")
        roofline, source = self._calibrated_roofline(gpu, operator)

        def work(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return roofline_work(operator, shape, tp, tokens, model.dtype_bytes, model.vocab_size)

        return OperatorCurve(sample_roofline(roofline, work, max(max_tokens, 2)), source)

    def attention_costs(self, gpu: GpuSpec) -> AttentionCosts:
        """Each kernel's cost fitted on `gpu`'s own attention profiles, else on its reference
        GPU's (FLOPs and bytes rescaled to `gpu`'s peaks), else default efficiencies of `gpu`'s
        peaks."""
        own = self.attention.get(gpu.name)
        reference = GPUS.get(gpu.reference_gpu) if gpu.reference_gpu is not None else None
        borrowed = self.attention.get(reference.name) if reference is not None else None
        kernels = {}
        sources = set()
        for kernel in DEFAULT_ATTENTION:
            if own is not None and kernel in own.kernels:
                kernels[kernel] = own.kernels[kernel]
                sources.add(f"calibrated on {gpu.name} attention profiles{_backend_note(own)}")
            elif reference is not None and borrowed is not None and kernel in borrowed.kernels:
                kernels[kernel] = borrowed.kernels[kernel].rescaled(
                    gpu.peak_flops / reference.peak_flops, gpu.peak_bytes_per_s / reference.peak_bytes_per_s
                )
                sources.add(
                    f"calibrated on {reference.name} attention profiles{_backend_note(borrowed)}, "
                    f"scaled to {gpu.name}'s peaks"
                )
            else:
                kernels[kernel] = default_kernel_cost(gpu, kernel)
                sources.add("default efficiencies of datasheet peaks")
        return AttentionCosts(
            kernels["attn_prefill"], kernels["attn_decode"], kernels["attn_kv_cache_save"], "; ".join(sorted(sources))
        )

    def collective_curve(
        self, gpu: GpuSpec, collective: str, num_workers: int, bytes_per_token: float, max_tokens: int
    ) -> OperatorCurve:
        """Seconds of one `all_reduce` over `num_workers` GPUs, or one `send_recv` between two
        pipeline stages, by the iteration's tokens."""
        num_workers = max(num_workers, 2)
        if gpu.interconnect_gb_s == 0:
            raise MissingProfileError(
                f"device {gpu.name} was profiled alone (no interconnect measured): it runs one device per replica"
            )
        if collective == "all_reduce":
            devices_per_node = min(num_workers, gpu.gpus_per_node)
        else:
            devices_per_node = 2 if num_workers <= gpu.gpus_per_node else 1
        key = NetworkKey(gpu.topology, collective, 2 if collective == "send_recv" else num_workers, devices_per_node)
        curve = self.network_curves.get(key)
        if curve is not None:
            source = f"profile {gpu.topology}/{collective} workers={key.num_workers} per_node={devices_per_node}"
            return OperatorCurve(curve.scaled_x(bytes_per_token), source)
        inter_node = num_workers > gpu.gpus_per_node if collective == "all_reduce" else devices_per_node == 1
        link_bytes_per_s = (INTER_NODE_GB_S if inter_node else gpu.interconnect_gb_s / 2) * 1e9 * RING_EFFICIENCY
        # A ring all-reduce moves 2 (p - 1) / p of the message through every link.
        traffic = 2 * (num_workers - 1) / num_workers if collective == "all_reduce" else 1.0
        seconds_per_token = traffic * bytes_per_token / link_bytes_per_s
        xs = (1.0, float(max(max_tokens, 2)))
        ys = tuple(COLLECTIVE_LATENCY_S + seconds_per_token * x for x in xs)
        source = f"ring model over {'inter-node' if inter_node else gpu.topology} links (no profile)"
        return OperatorCurve(CurveData(xs, ys, seconds_per_token), source)


def _backend_note(fit: AttentionFit) -> str:
    return f" ({fit.backend})" if fit.backend else ""
