"""Service-level objectives: what a run must achieve to pass (capacity search) and what each
request must achieve to count toward goodput.

Kinds (`SloConfig.kind`), with the default percentiles:
- `deadline` (Metron): the P99 over requests of the deadline miss rate (1 - fluidity-index, at the
  run's `DeadlineConfig`) is at most `max_miss_rate`. A request meets it with a miss rate at most
  `max_miss_rate`.
- `tbt_ttft`: P99 TBT (every gap of every request) at most `p99_tbt_s` and P90 TTFT at most
  `p90_ttft_s`. A request meets it with TTFT <= `p90_ttft_s` and its own P99 TBT <= `p99_tbt_s`.
- `ttft_tpot`: P90 TTFT at most `p90_ttft_s` and P90 TPOT at most `p90_tpot_s`. A request meets it
  with TTFT <= `p90_ttft_s` and TPOT <= `p90_tpot_s`.
Every kind also requires an error rate of at most `max_error_rate`, and, when
`p50_scheduling_delay_s` is set (Sarathi-Serve's capacity uses 2 s), a P50 scheduling delay at most
that (a run whose target does not report scheduling delay fails this check).

Each percentile is a field (`miss_rate_percentile`, `tbt_percentile`, `ttft_percentile`,
`tpot_percentile`, `scheduling_delay_percentile`); a limit's name keeps its default percentile
(`p99_tbt_s` bounds the `tbt_percentile`-th percentile of TBT, and a request's own TBT at it).
The summary of a run scored against an SLO also holds the percentiles it checks
(`percentile_key`), so `evaluate_slo` reads every checked value from it.
"""

import math
from collections.abc import Mapping

import msgspec
import numpy as np

from metron.metrics import RequestRecord

SLO_KINDS = ("deadline", "tbt_ttft", "ttft_tpot")


def percentile_key(distribution: str, percentile: float) -> str:
    """The summary key of a distribution's percentile: `tbt_s.p99`, `ttft_s.p99.9`."""
    return f"{distribution}.p{percentile:g}"


class SloConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: str = "deadline"
    max_miss_rate: float = 0.1
    p99_tbt_s: float = 0.1
    p90_ttft_s: float = 2.0
    p90_tpot_s: float = 0.1
    p50_scheduling_delay_s: float | None = None
    max_error_rate: float = 0.01
    miss_rate_percentile: float = 99.0
    tbt_percentile: float = 99.0
    ttft_percentile: float = 90.0
    tpot_percentile: float = 90.0
    scheduling_delay_percentile: float = 50.0

    def __post_init__(self) -> None:
        if self.kind not in SLO_KINDS:
            raise ValueError(f"unknown SLO kind {self.kind!r}; choose one of {', '.join(SLO_KINDS)}")
        for name in ("p99_tbt_s", "p90_ttft_s", "p90_tpot_s", "p50_scheduling_delay_s"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"SLO limit {name} must be a positive number of seconds, got {value}")
        for name in ("max_miss_rate", "max_error_rate"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"SLO limit {name} must be in [0, 1), got {getattr(self, name)}")
        for name in (
            "miss_rate_percentile",
            "tbt_percentile",
            "ttft_percentile",
            "tpot_percentile",
            "scheduling_delay_percentile",
        ):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"SLO {name} must be in [0, 100], got {getattr(self, name)}")

    def bounds(self) -> list[tuple[str, float, float]]:
        """(distribution, percentile, the largest value that passes) of each checked percentile."""
        match self.kind:
            case "deadline":
                bounds = [("miss_rate", self.miss_rate_percentile, self.max_miss_rate)]
            case "tbt_ttft":
                bounds = [
                    ("tbt_s", self.tbt_percentile, self.p99_tbt_s),
                    ("ttft_s", self.ttft_percentile, self.p90_ttft_s),
                ]
            case _:
                bounds = [
                    ("ttft_s", self.ttft_percentile, self.p90_ttft_s),
                    ("tpot_s", self.tpot_percentile, self.p90_tpot_s),
                ]
        if self.p50_scheduling_delay_s is not None:
            bounds.append(("scheduling_delay_s", self.scheduling_delay_percentile, self.p50_scheduling_delay_s))
        return bounds

    def percentiles_of(self, distribution: str) -> list[float]:
        """The percentiles of `distribution` this SLO checks."""
        return [percentile for name, percentile, _ in self.bounds() if name == distribution]

    def limits(self) -> dict[str, float]:
        """Summary key -> the largest value that passes."""
        limits = {percentile_key(name, percentile): limit for name, percentile, limit in self.bounds()}
        limits["error_rate"] = self.max_error_rate
        return limits

    def describe(self) -> str:
        """For people: `P99 miss rate <= 0.1, error rate <= 0.01`."""
        parts = [
            f"P{percentile:g} {name.removesuffix('_s').replace('_', ' ')} <= {limit:g}"
            for name, percentile, limit in self.bounds()
        ]
        return ", ".join([*parts, f"error rate <= {self.max_error_rate:g}"])


class SloCheck(msgspec.Struct, frozen=True):
    key: str
    value: float | None
    limit: float
    passed: bool


class SloVerdict(msgspec.Struct, frozen=True):
    passed: bool
    checks: list[SloCheck]

    def describe(self) -> str:
        parts = []
        for check in self.checks:
            value = "unknown" if check.value is None else f"{check.value:.4g}"
            parts.append(f"{check.key} {value} {'<=' if check.passed else '>'} {check.limit:.4g}")
        return ("PASS: " if self.passed else "FAIL: ") + ", ".join(parts)


def evaluate_slo(metrics: Mapping[str, object], slo: SloConfig, num_planned: int | None = None) -> SloVerdict:
    """Checks a run's summary metrics (`metron.summary.summarize`) against the SLO. A run with no
    completed request fails (its percentiles are unknown). With `num_planned`, the measured
    requests the run was to send, a run that did not complete or fail each of them (it was
    interrupted) fails too: what it measured cannot speak for the load it did not apply."""
    checks = []
    for key, limit in slo.limits().items():
        value = metrics.get(key)
        number = float(value) if isinstance(value, int | float) else None
        passed = number is not None and number <= limit
        checks.append(SloCheck(key=key, value=number, limit=limit, passed=passed))
    if num_planned is not None:
        outcomes = (metrics.get(key) for key in ("num_finished", "num_ended_early", "num_errors"))
        unmeasured = num_planned - sum(n for n in outcomes if isinstance(n, int))
        if unmeasured > 0:
            checks.append(SloCheck(key="num_unmeasured_requests", value=float(unmeasured), limit=0.0, passed=False))
    return SloVerdict(passed=all(check.passed for check in checks), checks=checks)


def request_meets_slo(record: RequestRecord, slo: SloConfig) -> bool:
    """Whether one request counts toward goodput: it completed and met its share of the SLO."""
    if not record.completed or record.ttft_s is None:
        return False
    if slo.p50_scheduling_delay_s is not None and (
        record.scheduling_delay_s is None or record.scheduling_delay_s > slo.p50_scheduling_delay_s
    ):
        return False
    match slo.kind:
        case "deadline":
            return record.miss_rate is not None and record.miss_rate <= slo.max_miss_rate
        case "tbt_ttft":
            own_tbt = float(np.percentile(record.tbt_s, slo.tbt_percentile)) if record.tbt_s else 0.0
            return record.ttft_s <= slo.p90_ttft_s and own_tbt <= slo.p99_tbt_s
        case _:
            tpot = record.tpot_s if record.tpot_s is not None else 0.0
            return record.ttft_s <= slo.p90_ttft_s and tpot <= slo.p90_tpot_s
