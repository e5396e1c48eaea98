"""Piecewise-linear time curves fitted to profiled points, and rooflines fitted across shapes."""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vidur import _simulator

# (FLOPs, bytes) of an operator as a function of its input size.
WorkFunction = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True, slots=True)
class CurveData:
    """Seconds as a function of one input: linear between knots, flat below the first knot, a
    line of `tail_slope` beyond the last. Plain data (picklable); `to_rust` builds the curve the
    simulator evaluates, with the same semantics."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]
    tail_slope: float

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.interp(x, self.xs, self.ys) + self.tail_slope * np.maximum(x - self.xs[-1], 0.0)

    def scaled_x(self, factor: float) -> "CurveData":
        """The same curve over an input `factor` times smaller (bytes to tokens, say)."""
        return CurveData(tuple(x / factor for x in self.xs), self.ys, self.tail_slope * factor)

    def to_rust(self) -> _simulator.Curve:
        return _simulator.Curve(list(self.xs), list(self.ys), self.tail_slope)


def non_decreasing(values: np.ndarray) -> np.ndarray:
    """The least-squares non-decreasing fit (pool adjacent violators): more work never takes
    less time, so dips in a noisy profile are measurement noise."""
    blocks: list[list[float]] = []  # [mean, weight]
    for value in values:
        blocks.append([float(value), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, weight = blocks.pop()
            blocks[-1][0] = (blocks[-1][0] * blocks[-1][1] + mean * weight) / (blocks[-1][1] + weight)
            blocks[-1][1] += weight
    return np.concatenate([np.full(int(weight), mean) for mean, weight in blocks])


def tail_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope over the upper half of the range: the time per unit of input once the
    hardware is saturated, for extrapolating past the largest profiled size."""
    upper = x >= x[-1] / 2
    if upper.sum() < 2:
        upper = np.arange(len(x)) >= max(len(x) - 2, 0)
    if upper.sum() < 2:
        return 0.0
    slope = np.polyfit(x[upper], y[upper], 1)[0]
    return float(max(slope, 0.0))


def fit_profile_curve(x: np.ndarray, time_s: np.ndarray) -> CurveData:
    """The interpolating curve through a profiled series (x ascending, distinct)."""
    smoothed = non_decreasing(time_s)
    return CurveData(tuple(float(v) for v in x), tuple(float(v) for v in smoothed), tail_slope(x, smoothed))


@dataclass(frozen=True, slots=True)
class FittedRoofline:
    """`overhead_s + max(flops / flops_per_s, bytes / bytes_per_s)`: a launch cost, then the
    slower of compute and memory traffic at the rates the kernel reaches. A kernel fitted on
    bytes alone has `flops_per_s` infinite."""

    overhead_s: float
    flops_per_s: float
    bytes_per_s: float

    def time(self, flops: np.ndarray | float, bytes_moved: np.ndarray | float) -> np.ndarray:
        return self.overhead_s + np.maximum(
            np.asarray(flops) / self.flops_per_s, np.asarray(bytes_moved) / self.bytes_per_s
        )

    def rescaled(self, flops_factor: float, bytes_factor: float) -> "FittedRoofline":
        """The same efficiencies on hardware with `flops_factor` x the compute and
        `bytes_factor` x the memory bandwidth."""
        return FittedRoofline(self.overhead_s, self.flops_per_s * flops_factor, self.bytes_per_s * bytes_factor)


def fit_roofline(flops: np.ndarray, bytes_moved: np.ndarray, time_s: np.ndarray) -> FittedRoofline:
    """Fits the three roofline parameters to measured times, minimising squared log error (every
    point counts by its relative error, small kernels as much as large ones). The search starts
    from rates that would explain a typical point on their own, so neither term starts out
    negligible (a flat start would leave the fit stuck at a constant). Work with no FLOPs at all
    (memory-bound kernels) fits the overhead and the byte rate only; its FLOP rate is infinite."""
    from scipy.optimize import least_squares  # only training fits; a cached predictor never imports scipy

    flops = np.asarray(flops, dtype=np.float64)
    bytes_moved = np.asarray(bytes_moved, dtype=np.float64)
    time_s = np.asarray(time_s, dtype=np.float64)
    log_time = np.log(time_s)
    has_flops = bool(np.any(flops > 0))

    def rates(params: np.ndarray) -> tuple[float, float, float]:
        overhead, *rest = np.exp(params)
        return (overhead, rest[0], rest[1]) if has_flops else (overhead, math.inf, rest[0])

    def residuals(params: np.ndarray) -> np.ndarray:
        overhead, flops_rate, bytes_rate = rates(params)
        predicted = overhead + np.maximum(flops / flops_rate, bytes_moved / bytes_rate)
        return np.log(predicted) - log_time

    def typical_rate(work: np.ndarray) -> float:
        busy = work > 0
        return float(np.median(work[busy] / time_s[busy])) if busy.any() else 1.0

    start = [0.5 * float(time_s.min())] + ([typical_rate(flops)] if has_flops else []) + [typical_rate(bytes_moved)]
    result = least_squares(residuals, np.log(start), method="trf")
    overhead, flops_rate, bytes_rate = rates(result.x)
    return FittedRoofline(float(overhead), float(flops_rate), float(bytes_rate))


def sample_roofline(roofline: FittedRoofline, work: WorkFunction, max_x: float) -> CurveData:
    """A piecewise-linear curve through the roofline at log-spaced points up to `max_x`, with
    the roofline's own slope beyond."""
    xs = np.unique(np.round(np.geomspace(1, max_x, 96)))
    flops, bytes_moved = work(xs)
    ys = roofline.time(flops, bytes_moved)
    beyond = np.array([xs[-1], 2 * xs[-1]])
    flops_b, bytes_b = work(beyond)
    slope = float(np.diff(roofline.time(flops_b, bytes_b))[0] / xs[-1])
    return CurveData(tuple(float(v) for v in xs), tuple(float(v) for v in ys), max(slope, 0.0))
