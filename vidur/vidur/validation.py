"""How well the predictor does on profiled points it was not trained on.

- Interpolation: for every profiled series, every `holdout_every`-th token count (never the
  first or last) is held out, the curve is fitted to the rest, and the held-out points are
  predicted. This is the predictor the simulator uses for profiled (GPU, model, TP).
- Roofline transfer: for every profiled GPU and model, the rooflines are fitted on the GPU's
  other models and predict all of this model's points. This is the predictor for shapes that
  were never profiled.

- Attention: for every GPU with attention profiles, every `holdout_every`-th row of each kernel
  (in file order, of the backend the GPU's fit uses) is held out, the kernel's cost is fitted to
  the rest, and the held-out rows are predicted.

Errors are reported per operator and for a whole layer (the sum of a layer's operators at one
token count, the quantity an iteration's time is built from), as mean absolute percentage error.
"""

from dataclasses import dataclass

import numpy as np

from vidur.attention_costs import KERNEL_TERMS, fit_kernel_cost, preferred_backend, work_matrix
from vidur.curves import fit_profile_curve
from vidur.layer import LAYER_OPERATORS
from vidur.operator_work import roofline_work
from vidur.predictor import fit_operator_rooflines
from vidur.profiles import ComputeProfile, ProfileSet


def mape(predicted: np.ndarray, actual: np.ndarray) -> float:
    predicted, actual = np.asarray(predicted), np.asarray(actual)
    if len(actual) == 0:
        return float("nan")
    return float(np.mean(np.abs(predicted - actual) / actual))


@dataclass(frozen=True, slots=True)
class ErrorReport:
    layer_mape: float
    operator_mape: dict[str, float]
    num_layer_points: int

    def as_dict(self) -> dict[str, object]:
        return {
            "layer_mape": self.layer_mape,
            "operator_mape": self.operator_mape,
            "num_layer_points": self.num_layer_points,
        }


class _Collector:
    def __init__(self) -> None:
        self.by_operator: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self.layer_predicted: list[np.ndarray] = []
        self.layer_actual: list[np.ndarray] = []

    def add(self, operator: str, predicted: np.ndarray, actual: np.ndarray) -> None:
        predicted_list, actual_list = self.by_operator.setdefault(operator, ([], []))
        predicted_list.append(predicted)
        actual_list.append(actual)

    def add_layer(self, predicted: np.ndarray, actual: np.ndarray) -> None:
        self.layer_predicted.append(predicted)
        self.layer_actual.append(actual)

    def report(self) -> ErrorReport:
        per_operator = {
            operator: mape(np.concatenate(p), np.concatenate(a)) for operator, (p, a) in self.by_operator.items()
        }
        actual = np.concatenate(self.layer_actual) if self.layer_actual else np.zeros(0)
        predicted = np.concatenate(self.layer_predicted) if self.layer_predicted else np.zeros(0)
        return ErrorReport(mape(predicted, actual), per_operator, len(actual))


def _layer_points(profile: ComputeProfile, tp: int, xs: np.ndarray) -> np.ndarray | None:
    """The measured per-layer time at `xs`, or None unless every layer operator was measured."""
    total = np.zeros(len(xs))
    for operator, repeat in LAYER_OPERATORS:
        series = profile.series.get((operator, tp))
        if series is None:
            return None
        index = np.searchsorted(series.x, xs)
        if np.any(index >= len(series.x)) or np.any(series.x[np.minimum(index, len(series.x) - 1)] != xs):
            return None
        total += repeat * series.time_s[index]
    return total


def interpolation_error(profiles: ProfileSet, holdout_every: int = 4) -> ErrorReport:
    collector = _Collector()
    for profile in profiles.compute.values():
        for tp in profile.tensor_parallel_degrees:
            reference = profile.series.get(("mlp_up_proj", tp))
            if reference is None or len(reference.x) < 2 * holdout_every:
                continue
            held = np.arange(len(reference.x))
            held = held[(held % holdout_every == holdout_every // 2) & (held > 0) & (held < len(held) - 1)]
            test_x = reference.x[held]
            layer_predicted = np.zeros(len(test_x))
            for operator, repeat in LAYER_OPERATORS:
                series = profile.series.get((operator, tp))
                if series is None:
                    continue
                is_test = np.isin(series.x, test_x)
                curve = fit_profile_curve(series.x[~is_test], series.time_s[~is_test])
                collector.add(operator, curve(series.x[is_test]), series.time_s[is_test])
                layer_predicted += repeat * curve(test_x)
            actual = _layer_points(profile, tp, test_x)
            if actual is not None:
                collector.add_layer(layer_predicted, actual)
    return collector.report()


def roofline_transfer_error(profiles: ProfileSet) -> dict[str, ErrorReport]:
    """Per profiled GPU: leave-one-model-out error of the fitted rooflines."""
    reports = {}
    gpus = sorted({gpu for gpu, _ in profiles.compute})
    for gpu in gpus:
        models = profiles.compute_for_gpu(gpu)
        if len(models) < 2:
            continue
        collector = _Collector()
        for left_out in models:
            rooflines = fit_operator_rooflines([m for m in models if m is not left_out])
            for tp in left_out.tensor_parallel_degrees:
                reference = left_out.series.get(("mlp_up_proj", tp))
                if reference is None:
                    continue
                layer_predicted = np.zeros(len(reference.x))
                for operator, repeat in LAYER_OPERATORS:
                    series = left_out.series.get((operator, tp))
                    if series is None or operator not in rooflines:
                        continue
                    flops, bytes_moved = roofline_work(operator, left_out.shape, tp, series.x)
                    collector.add(operator, rooflines[operator].time(flops, bytes_moved), series.time_s)
                    flops, bytes_moved = roofline_work(operator, left_out.shape, tp, reference.x)
                    layer_predicted += repeat * rooflines[operator].time(flops, bytes_moved)
                actual = _layer_points(left_out, tp, reference.x)
                if actual is not None:
                    collector.add_layer(layer_predicted, actual)
        reports[gpu] = collector.report()
    return reports


@dataclass(frozen=True, slots=True)
class KernelError:
    mape: float
    num_points: int


@dataclass(frozen=True, slots=True)
class AttentionErrorReport:
    """Held-out error per GPU (with the backend its fit uses) and kernel, and over all of them."""

    holdout_every: int
    backends: dict[str, str]
    kernels: dict[str, dict[str, KernelError]]

    @property
    def num_points(self) -> int:
        return sum(e.num_points for by_kernel in self.kernels.values() for e in by_kernel.values())

    @property
    def mape(self) -> float | None:
        """Over every held-out row; None without any."""
        points = self.num_points
        if points == 0:
            return None
        total = sum(e.mape * e.num_points for by_kernel in self.kernels.values() for e in by_kernel.values())
        return total / points

    def as_dict(self) -> dict[str, object]:
        return {
            "holdout_every": self.holdout_every,
            "mape": self.mape,
            "num_points": self.num_points,
            "gpus": {
                gpu: {
                    "backend": self.backends[gpu],
                    "kernels": {k: {"mape": e.mape, "num_points": e.num_points} for k, e in by_kernel.items()},
                }
                for gpu, by_kernel in self.kernels.items()
            },
        }


def attention_error(profiles: ProfileSet, holdout_every: int = 4) -> AttentionErrorReport:
    backends, kernels = {}, {}
    for gpu, samples in sorted(profiles.attention.items()):
        backend = preferred_backend({s.backend for s in samples})
        by_kernel = {}
        for kernel, terms in KERNEL_TERMS.items():
            rows = [s for s in samples if s.backend == backend and s.kernel == kernel]
            held = np.arange(len(rows)) % holdout_every == holdout_every // 2
            if not held.any() or (~held).sum() < len(terms):
                continue
            work, times = work_matrix(rows), np.array([s.time_s for s in rows])
            cost = fit_kernel_cost(work[~held], times[~held], terms)
            by_kernel[kernel] = KernelError(mape(cost.times(work[held]), times[held]), int(held.sum()))
        if by_kernel:
            backends[gpu], kernels[gpu] = backend, by_kernel
    return AttentionErrorReport(holdout_every, backends, kernels)
