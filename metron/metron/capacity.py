"""Capacity: the highest request rate (QPS) whose run still meets the SLO.

Expanding binary search (DESIGN.md): run at `initial_qps` first and double the rate while runs
pass; after the first failure, halve the interval between the highest pass and the lowest failure;
stop when it is within `granularity` (relative) of the upper bound. Each rate's run is
kept in its own directory and reused when the search meets that rate again with the same workload
and target (a change of deadlines or SLO rescores the stored records instead of running again).
"""

import json
from collections.abc import Callable
from pathlib import Path

import msgspec

from metron.metrics import rescore
from metron.run_format import read_run
from metron.runner import RunConfig
from metron.slo import SloVerdict, evaluate_slo
from metron.summary import summarize


class CapacityConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    initial_qps: float = 1.0
    granularity: float = 0.05
    min_qps: float = 0.01
    max_runs: int = 16

    def __post_init__(self) -> None:
        if not self.initial_qps > 0:
            raise ValueError(f"initial_qps must be positive, got {self.initial_qps}")
        if not 0 < self.granularity < 1:
            raise ValueError(f"granularity must be in (0, 1), got {self.granularity}")
        if not 0 < self.min_qps <= self.initial_qps:
            raise ValueError(f"min_qps must be in (0, initial_qps], got {self.min_qps}")
        if self.max_runs < 1:
            raise ValueError(f"max_runs must be at least 1, got {self.max_runs}")


class CapacityStep(msgspec.Struct, frozen=True):
    qps: float
    passed: bool
    verdict: str
    directory: str | None = None
    cached: bool = False


class CapacityResult(msgspec.Struct, frozen=True):
    capacity_qps: float
    steps: list[CapacityStep]
    converged: bool


def search_capacity(evaluate: Callable[[float], CapacityStep], config: CapacityConfig) -> CapacityResult:
    """Runs `evaluate(qps)` along the expanding binary search; capacity 0 means even `min_qps` failed."""
    low, high, expanding = 0.0, config.initial_qps, True
    steps: list[CapacityStep] = []
    seen: dict[float, CapacityStep] = {}
    while (expanding or high - low > config.granularity * high) and high >= config.min_qps:
        if len(steps) >= config.max_runs:
            return CapacityResult(capacity_qps=low, steps=steps, converged=False)
        qps = float(f"{high if expanding else (low + high) / 2:.6g}")
        step = seen.get(qps) or evaluate(qps)
        seen[qps] = step
        steps.append(step)
        if step.passed:
            low = qps
            if expanding:
                high = 2 * qps
        else:
            high = qps
            expanding = False
    return CapacityResult(capacity_qps=low, steps=steps, converged=True)


def _comparable(config: dict[str, object]) -> str:
    run = dict(config.get("run") or {})  # type: ignore[call-overload]
    run.pop("deadlines", None)
    run.pop("slo", None)
    return json.dumps({"run": run, "target": config.get("target")}, sort_keys=True)


def cached_verdict(directory: Path, recorded_config: dict[str, object], run_config: RunConfig) -> SloVerdict | None:
    """The verdict of a finished run already in `directory` with this workload and target, scored
    against `run_config`'s deadlines and SLO; None when there is no such run."""
    if not (directory / "summary.json").is_file():
        return None
    try:
        run = read_run(directory)
    except ValueError:
        return None
    if run.config.get("interrupted") or _comparable(run.config) != _comparable(recorded_config):
        return None
    records = rescore(run.records, run_config.deadlines)
    return evaluate_slo(summarize(records, run_config.slo), run_config.slo)


def rate_directory(root: Path, qps: float) -> Path:
    return root / f"qps_{qps:.6g}"


def is_capacity_search_file(name: str) -> bool:
    """Whether an entry of an output directory is one a capacity search writes (a later search
    reuses them)."""
    return name in ("capacity.json", "capacity.png", "report.md") or name.startswith("qps_")
