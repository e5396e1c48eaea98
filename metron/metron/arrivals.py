"""When requests arrive: open-loop arrival processes.

Every process puts the first request at t = 0 s; times are seconds from the start of the run.
"""

import msgspec
import numpy as np

from metron.traces import read_trace_column

ARRIVAL_KINDS = ("poisson", "constant", "gamma", "static", "trace")


class ArrivalConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`poisson`: exponential gaps at `rate` requests/s. `constant`: even gaps of 1 / `rate`.
    `gamma`: gamma-distributed gaps at `rate` with coefficient of variation `cv` (cv = 1 is
    Poisson; larger is burstier). `static`: every request at t = 0. `trace`: the `trace_column` of the CSV at `trace_path` (seconds), shifted to
    start at 0 and replayed `rate_scale` times faster than recorded."""

    kind: str = "poisson"
    rate: float = 1.0
    cv: float = 1.0
    trace_path: str | None = None
    trace_column: str = "arrived_at"
    rate_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ARRIVAL_KINDS:
            raise ValueError(f"unknown arrival kind {self.kind!r}; choose one of {', '.join(ARRIVAL_KINDS)}")
        if self.kind in ("poisson", "constant", "gamma") and not (self.rate > 0 and np.isfinite(self.rate)):
            raise ValueError(f"arrival rate must be a positive number of requests/s, got {self.rate}")
        if self.kind == "gamma" and not (self.cv > 0 and np.isfinite(self.cv)):
            raise ValueError(f"gamma arrivals need a positive coefficient of variation (cv), got {self.cv}")
        if self.kind == "trace":
            if not self.trace_path:
                raise ValueError("trace arrivals need trace_path (a CSV with an arrival-time column)")
            if not (self.rate_scale > 0 and np.isfinite(self.rate_scale)):
                raise ValueError(f"rate_scale must be positive, got {self.rate_scale}")

    def with_rate(self, rate: float, num_requests: int) -> "ArrivalConfig":
        """The same process at `rate` requests/s. A trace is scaled so that the `num_requests`
        arrivals actually replayed (its first rows) come at that mean rate: a trace's local rate
        can be far from its whole-file rate."""
        if self.kind == "static":
            raise ValueError("static arrivals have no rate to change")
        if self.kind == "trace":
            times = read_trace_column(self.trace_path or "", self.trace_column)[:num_requests]
            span = float(times[-1] - times[0]) if len(times) >= 2 else 0.0
            if span <= 0:
                raise ValueError(f"the first {num_requests} arrivals of {self.trace_path} span no time to scale")
            recorded_rate = (len(times) - 1) / span
            return msgspec.structs.replace(self, rate_scale=rate / recorded_rate)
        return msgspec.structs.replace(self, rate=rate)


def arrival_times(config: ArrivalConfig, num_requests: int, rng: np.random.Generator) -> np.ndarray:
    """`num_requests` non-decreasing arrival times in seconds, the first at 0."""
    if num_requests < 0:
        raise ValueError(f"num_requests must not be negative, got {num_requests}")
    if num_requests == 0:
        return np.zeros(0)
    match config.kind:
        case "poisson":
            gaps = rng.exponential(1.0 / config.rate, num_requests - 1)
        case "constant":
            gaps = np.full(num_requests - 1, 1.0 / config.rate)
        case "gamma":
            shape = 1.0 / config.cv**2
            gaps = rng.gamma(shape, 1.0 / (config.rate * shape), num_requests - 1)
        case "static":
            gaps = np.zeros(num_requests - 1)
        case _:
            recorded = read_trace_column(config.trace_path or "", config.trace_column)
            if len(recorded) < num_requests:
                raise ValueError(
                    f"trace {config.trace_path} has {len(recorded)} arrivals, fewer than the {num_requests} requested"
                )
            recorded = recorded[:num_requests]
            if np.any(np.diff(recorded) < 0):
                raise ValueError(f"column {config.trace_column!r} of {config.trace_path} is not sorted by time")
            return (recorded - recorded[0]) / config.rate_scale
    return np.concatenate(([0.0], np.cumsum(gaps)))
