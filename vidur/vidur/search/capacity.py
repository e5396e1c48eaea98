"""The highest request rate a deployment sustains under an SLO: an expanding binary search."""

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Probe:
    qps: float
    passed: bool
    detail: str


@dataclass(slots=True)
class CapacityResult:
    capacity_qps: float
    probes: list[Probe] = field(default_factory=list)
    capped: bool = False


def find_capacity(
    probe: Callable[[float], Probe], initial_qps: float, max_qps: float, precision: float
) -> CapacityResult:
    """Doubles the rate from `initial_qps` while runs pass, then bisects between the last pass and
    the first failure until they are within `precision` of each other (relative to the failure).
    A deployment that fails even at `initial_qps / 1024` has capacity 0; one that passes at
    `max_qps` is reported as `max_qps`, capped. Assumes passing is monotone in the rate."""
    result = CapacityResult(0.0)
    passed_at, failed_at = 0.0, None
    qps = initial_qps
    while failed_at is None:
        outcome = probe(qps)
        result.probes.append(outcome)
        if not outcome.passed:
            failed_at = qps
        elif qps >= max_qps:
            result.capacity_qps, result.capped = qps, True
            return result
        else:
            passed_at, qps = qps, min(2 * qps, max_qps)
    floor = initial_qps / 1024
    while failed_at - passed_at > precision * failed_at:
        if passed_at == 0.0 and failed_at <= floor:
            break
        middle = failed_at / 2 if passed_at == 0.0 else (passed_at + failed_at) / 2
        outcome = probe(middle)
        result.probes.append(outcome)
        if outcome.passed:
            passed_at = middle
        else:
            failed_at = middle
    result.capacity_qps = passed_at
    return result
