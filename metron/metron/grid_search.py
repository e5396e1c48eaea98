"""Capacity on a geometric grid of rates, one probe at a time, driven from outside.

The rates are `initial_qps * 2 ** (k / steps_per_doubling)` for integer k. The search probes
k = 0, then doubles (or halves) the rate until a pass and a failure bracket the capacity, then
bisects the bracket in grid steps until the two are neighbours: the capacity is the highest
rate that passed, known to within one grid step. `next_qps` says which rate to probe and
`record` takes the verdict, so a caller can take turns between several searches (probing two
servers alternately, so a change in the machine's load meets both) and share a probe between
searches that ask for the same rate. `max_probes` and `min_qps` bound the search; where it
stops early it still reports its bracket, marked not converged.
"""

import math

import msgspec


class GridSearchConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    initial_qps: float
    min_qps: float
    steps_per_doubling: int = 4
    max_probes: int = 6

    def __post_init__(self) -> None:
        if not (self.initial_qps > 0 and math.isfinite(self.initial_qps)):
            raise ValueError(f"initial_qps must be a positive rate, got {self.initial_qps}")
        if not 0 < self.min_qps <= self.initial_qps:
            raise ValueError(f"min_qps must be in (0, initial_qps], got {self.min_qps}")
        if self.steps_per_doubling < 1:
            raise ValueError(f"steps_per_doubling must be at least 1, got {self.steps_per_doubling}")
        if self.max_probes < 1:
            raise ValueError(f"max_probes must be at least 1, got {self.max_probes}")


class GridSearch:
    def __init__(self, config: GridSearchConfig) -> None:
        self.config = config
        self.passed_k: int | None = None
        self.failed_k: int | None = None
        self.num_probes = 0
        self._lowest_k = math.floor(config.steps_per_doubling * math.log2(config.min_qps / config.initial_qps))

    def qps(self, k: int) -> float:
        return float(f"{self.config.initial_qps * 2 ** (k / self.config.steps_per_doubling):.6g}")

    @property
    def converged(self) -> bool:
        """The capacity is bracketed to one grid step, or even the lowest rate failed."""
        if self.failed_k is None:
            return False
        return self.failed_k <= self._lowest_k if self.passed_k is None else self.failed_k - self.passed_k <= 1

    def _next_k(self) -> int | None:
        if self.converged or self.num_probes >= self.config.max_probes:
            return None
        doubling = self.config.steps_per_doubling
        match self.passed_k, self.failed_k:
            case None, None:
                return 0
            case int(passed), None:
                return passed + doubling
            case None, int(failed):
                return max(self._lowest_k, failed - doubling)
            case int(passed), int(failed):
                return (passed + failed) // 2
        return None

    def next_qps(self) -> float | None:
        """The rate to probe next; None once the search is done."""
        k = self._next_k()
        return None if k is None else self.qps(k)

    def record(self, qps: float, passed: bool) -> None:
        """The verdict of a probe at `qps`, the rate `next_qps` gave."""
        k = self._next_k()
        if k is None or self.qps(k) != qps:
            raise ValueError(f"the search asked for {self.next_qps()} QPS, not {qps}")
        self.num_probes += 1
        if passed:
            self.passed_k = k
        else:
            self.failed_k = k

    @property
    def capacity_qps(self) -> float:
        """The highest rate that passed (0 where none did)."""
        return 0.0 if self.passed_k is None else self.qps(self.passed_k)

    @property
    def failed_qps(self) -> float | None:
        """The lowest rate that failed above the capacity (None where none did)."""
        return None if self.failed_k is None else self.qps(self.failed_k)
