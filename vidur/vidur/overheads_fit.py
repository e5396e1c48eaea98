"""`[cpu_overheads]` fitted from an engine's iteration log (`python -m engine --iteration-log`).

Each overhead is what the log measured of it, per iteration, as a line in the sequences it
handles (`base + per_seq x n`):

    schedule         the engine scheduling, building and sending a step (`schedule_s`)
    process_outputs  the outputs reaching the engine and the engine applying them
                     (`delivery_s + apply_s`: until then no token of the step is out)
    prepare_inputs   the workers receiving a step and building its inputs (`prepare_s`, plus the
                     wait for a step that was already sent: its transfer)
    sample           the workers' time after the forward pass (`execute_s - prepare_s - forward_s`),
                     per sampled sequence

The line goes through the median at each sequence count (so a stray slow iteration, a garbage
collection or a descheduled process, moves nothing), least squares weighted by how many
iterations each median stands for, and never below zero.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidur.cost_model import CpuOverheadConfig

OVERHEADS = ("schedule", "prepare_inputs", "sample", "process_outputs")


@dataclass(frozen=True, slots=True)
class LineFit:
    base_s: float
    per_seq_s: float
    num_iterations: int
    """Median relative error of the line over the iterations it was fitted on."""
    median_error: float

    def as_pair(self) -> tuple[float, float]:
        return (self.base_s, self.per_seq_s)


@dataclass(frozen=True, slots=True)
class OverheadFit:
    fits: dict[str, LineFit]

    @property
    def config(self) -> CpuOverheadConfig:
        return CpuOverheadConfig(**{name: fit.as_pair() for name, fit in self.fits.items()})

    def toml(self) -> str:
        lines = ["[cpu_overheads]"]
        for name in OVERHEADS:
            fit = self.fits[name]
            lines.append(
                f"{name} = [{fit.base_s:.4g}, {fit.per_seq_s:.4g}]  "
                f"# {fit.num_iterations} iterations, median error {fit.median_error:.1%}"
            )
        return "\n".join(lines) + "\n"


def fit_line(x: Sequence[float], y: Sequence[float]) -> LineFit:
    """`y ~ base + per_seq * x` through the medians of `y` at each `x`, never negative."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(ys) & (ys >= 0)
    xs, ys = xs[keep], ys[keep]
    if not len(xs):
        return LineFit(0.0, 0.0, 0, math.nan)
    levels, inverse, counts = np.unique(xs, return_inverse=True, return_counts=True)
    medians = np.array([np.median(ys[inverse == i]) for i in range(len(levels))])
    if len(levels) == 1:
        base, slope = float(medians[0]), 0.0
    else:
        weights = counts.astype(np.float64)
        mean_x, mean_y = np.average(levels, weights=weights), np.average(medians, weights=weights)
        spread = np.average((levels - mean_x) ** 2, weights=weights)
        slope = float(np.average((levels - mean_x) * (medians - mean_y), weights=weights) / spread)
        base = float(mean_y - slope * mean_x)
        if slope < 0:
            slope, base = 0.0, float(np.median(ys))
        elif base < 0:
            base, slope = 0.0, float(np.sum(weights * levels * medians) / np.sum(weights * levels**2))
    predicted = base + slope * xs
    errors = np.abs(predicted - ys) / np.maximum(ys, 1e-9)
    return LineFit(base, slope, int(len(xs)), float(np.median(errors)))


def _transfer_s(records: Sequence[Any]) -> np.ndarray:
    """The workers' wait before each step that was theirs alone to wait for: a step sent while
    the one before ran (async scheduling) waited only for its own transfer; a step sent after
    the engine applied the previous one also waited for the engine (its apply and schedule
    times), which is taken out. Other steps (the first after the engine idled): NaN."""
    waits = np.full(len(records), np.nan)
    for i, record in enumerate(records):
        if record.queued:
            waits[i] = record.idle_s
        elif i > 0:
            previous = records[i - 1]
            engine_s = previous.apply_s + record.schedule_s
            if record.scheduled_at - previous.completed_at <= previous.apply_s + 1e-3:
                waits[i] = max(record.idle_s - engine_s, 0.0)
    return waits


def fit_overheads(records: Sequence[Any]) -> OverheadFit:
    """Fits every overhead on the log's records (`engine.core.iteration_log.IterationRecord`)."""
    if len(records) < 2:
        raise ValueError(f"the iteration log holds {len(records)} iterations; fitting needs at least 2")
    num_seqs = np.array([len(r.request_ids) for r in records], dtype=np.float64)
    num_sampled = np.array([sum(r.produces_token) for r in records], dtype=np.float64)
    transfer = _transfer_s(records)
    if np.all(np.isnan(transfer)):
        transfer = np.zeros(len(records))
    transfer = np.where(np.isnan(transfer), np.nanmedian(transfer), transfer)

    def column(name: str) -> np.ndarray:
        return np.array([getattr(r, name) for r in records], dtype=np.float64)

    after_forward = column("execute_s") - column("prepare_s") - column("forward_s")
    sampled = num_sampled > 0
    fits = {
        "schedule": fit_line(num_seqs, column("schedule_s")),
        "prepare_inputs": fit_line(num_seqs, column("prepare_s") + transfer),
        "sample": fit_line(num_sampled[sampled], after_forward[sampled]),
        "process_outputs": fit_line(num_seqs, column("delivery_s") + column("apply_s")),
    }
    return OverheadFit(fits)


def fit_overheads_from_log(path: Path) -> OverheadFit:
    from engine.core.iteration_log import read_iteration_log

    _, records = read_iteration_log(path)
    return fit_overheads(records)
