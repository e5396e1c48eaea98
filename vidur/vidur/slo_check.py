"""An SLO verdict straight from a simulation's columns, for capacity search.

metron's `evaluate_slo(summarize(result.records(deadlines)))` builds a record per request and
every figure of the run (fluid token rates, miss-rate curves, per-request SLO checks) to read the
two or three the SLO checks. Here only those are computed, with numpy over the columns and with
metron's own definitions: the same requests (warm-up left out; latencies of the completed ones),
the same float operations (TTFT = first token - arrival, TBT = consecutive differences, TPOT =
(last - first) / (tokens - 1), miss rate = 1 - fluidity-index), metron's deadline counting, and
the same percentiles. The verdict equals metron's, value for value (tests/vidur/test_slo_check.py).
"""

import numpy as np
from metron.deadlines import DeadlineConfig
from metron.fluidity import count_deadlines_flat
from metron.slo import SloConfig, SloVerdict, evaluate_slo

from vidur.simulation import SimulationResult

_PERCENTILES = {"p50": 0, "p90": 1, "p99": 2}


def _percentile(values: np.ndarray, stat: str) -> float | None:
    """`metron.summary.describe`'s figure: numpy's linear interpolation, None when empty."""
    if len(values) == 0:
        return None
    return float(np.percentile(values, [50, 90, 99])[_PERCENTILES[stat]])


class _Columns:
    """The completed, measured requests' token times, end to end."""

    def __init__(self, result: SimulationResult) -> None:
        workload, requests = result.workload, result.requests
        self.num_measured = int((~workload.warmup).sum())
        failed = requests["finish_reason"] == 0
        failed[list(result.rejections)] = True
        self.num_errors = int((failed & ~workload.warmup).sum())
        self.completed = np.flatnonzero(~failed & ~workload.warmup)
        self.arrival_s = workload.arrival_s[self.completed]
        self.prompt_tokens = workload.prompt_tokens[self.completed]
        self.num_tokens = requests["num_tokens"][self.completed].astype(np.int64)
        self.scheduling_delay_s = requests["first_scheduled_s"][self.completed] - self.arrival_s
        starts = requests["token_offsets"][self.completed].astype(np.int64)
        ends = np.cumsum(self.num_tokens)
        self.first = ends - self.num_tokens  # each request's first token in `token_times`
        within = np.arange(ends[-1] if len(ends) else 0) - np.repeat(self.first, self.num_tokens)
        self.token_times = requests["token_times"][np.repeat(starts, self.num_tokens) + within]
        self.is_gap = within > 0  # a token that follows another of its request

    def values(self, name: str, deadlines: DeadlineConfig) -> np.ndarray:
        streaming = self.num_tokens > 0
        match name:
            case "ttft_s":
                return self.token_times[self.first[streaming]] - self.arrival_s[streaming]
            case "tbt_s":
                return (self.token_times[1:] - self.token_times[:-1])[self.is_gap[1:]]
            case "tpot_s":
                several = self.num_tokens > 1
                first = self.token_times[self.first[several]]
                last = self.token_times[self.first[several] + self.num_tokens[several] - 1]
                return (last - first) / (self.num_tokens[several] - 1)
            case "miss_rate":
                ttft_deadlines = [deadlines.ttft_deadline_s(int(prompt)) for prompt in self.prompt_tokens]
                missed, total = count_deadlines_flat(
                    self.arrival_s,
                    self.token_times,
                    self.num_tokens,
                    ttft_deadlines,
                    np.full(len(self.num_tokens), deadlines.tbt_s),
                )
                scored = total > 0
                return 1.0 - (1.0 - missed[scored] / total[scored])
            case "scheduling_delay_s":
                return self.scheduling_delay_s[~np.isnan(self.scheduling_delay_s)]
        raise ValueError(f"no fast path for the SLO metric {name!r}")


def slo_metrics(result: SimulationResult, deadlines: DeadlineConfig, slo: SloConfig) -> dict[str, float | None]:
    """The summary figures (metron's `summarize` keys) that `slo` checks, and nothing else."""
    columns = _Columns(result)
    metrics: dict[str, float | None] = {}
    for key in slo.limits():
        if key == "error_rate":
            measured = columns.num_measured
            metrics[key] = columns.num_errors / measured if measured else None
            continue
        name, stat = key.rsplit(".", 1)
        metrics[key] = _percentile(columns.values(name, deadlines), stat)
    return metrics


def slo_verdict(result: SimulationResult, deadlines: DeadlineConfig, slo: SloConfig) -> SloVerdict:
    """metron's verdict on the run, without building its records."""
    return evaluate_slo(slo_metrics(result, deadlines, slo), slo)
