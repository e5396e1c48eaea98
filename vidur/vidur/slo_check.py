"""An SLO verdict straight from a simulation's columns, for capacity search.

metron's `evaluate_slo(summarize(result.records(deadlines)))` builds a record per request and
every figure of the run (fluid token rates, miss-rate curves, per-request SLO checks) to read the
two or three the SLO checks. Here only those are computed, with numpy over the columns and with
metron's own definitions: the same requests (warm-up left out; latencies of the completed ones,
TTFT and TBT also of those a cut run interrupted), the same float operations (TTFT = first token
- arrival, TBT = consecutive differences, TPOT = (last - first) / (tokens - 1), miss rate = 1 -
fluidity-index), metron's deadline counting, and the same percentiles. The verdict equals
metron's, value for value (tests/vidur/test_slo_check.py), a cut run's included: like metron's
verdict on an interrupted run, it fails when requests were left unfinished or unsent.
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
    """The measured requests' token times, end to end: the completed ones first, then those a
    run cut at `max_simulated_s` interrupted (metron observes their first tokens and gaps, and
    counts them neither completed nor failed)."""

    def __init__(self, result: SimulationResult) -> None:
        n = result.num_arrived  # a cut run's later requests were never sent
        workload, requests = result.workload, result.requests
        measured = ~workload.warmup[:n]
        rejected = np.zeros(n, dtype=bool)
        rejected[[i for i in result.rejections if i < n]] = True
        unfinished = (requests["finish_reason"][:n] == 0) & ~rejected
        interrupted = unfinished & measured if result.is_cut else np.zeros(n, dtype=bool)
        completed = np.flatnonzero(measured & ~rejected & ~unfinished)
        self.num_planned = int(np.count_nonzero(~workload.warmup))
        self.num_errors = int(np.count_nonzero(measured & (rejected | unfinished) & ~interrupted))
        self.num_interrupted = int(np.count_nonzero(interrupted))
        self.num_attempted = int(np.count_nonzero(measured)) - self.num_interrupted
        num_tokens = requests["num_tokens"][completed].astype(np.int64)
        self.num_ended_early = int(np.count_nonzero(num_tokens < workload.output_tokens[completed]))
        self.num_completed = len(completed)
        observed = np.concatenate([completed, np.flatnonzero(interrupted)])
        self.arrival_s = workload.arrival_s[observed]
        self.prompt_tokens = workload.prompt_tokens[completed]
        self.num_tokens = requests["num_tokens"][observed].astype(np.int64)
        self.scheduling_delay_s = requests["first_scheduled_s"][completed] - workload.arrival_s[completed]
        starts = requests["token_offsets"][observed].astype(np.int64)
        ends = np.cumsum(self.num_tokens)
        self.first = ends - self.num_tokens  # each request's first token in `token_times`
        self.num_completed_tokens = int(ends[self.num_completed - 1]) if self.num_completed else 0
        within = np.arange(ends[-1] if len(ends) else 0) - np.repeat(self.first, self.num_tokens)
        self.token_times = requests["token_times"][np.repeat(starts, self.num_tokens) + within]
        self.is_gap = within > 0  # a token that follows another of its request

    def values(self, name: str, deadlines: DeadlineConfig) -> np.ndarray:
        streaming = self.num_tokens > 0
        # TTFT and TBT pool the interrupted requests too; the other figures only the completed.
        k = self.num_completed
        first, num_tokens, times = self.first[:k], self.num_tokens[:k], self.token_times[: self.num_completed_tokens]
        match name:
            case "ttft_s":
                return self.token_times[self.first[streaming]] - self.arrival_s[streaming]
            case "tbt_s":
                return (self.token_times[1:] - self.token_times[:-1])[self.is_gap[1:]]
            case "tpot_s":
                several = num_tokens > 1
                last = times[first[several] + num_tokens[several] - 1]
                return (last - times[first[several]]) / (num_tokens[several] - 1)
            case "miss_rate":
                ttft_deadlines = [deadlines.ttft_deadline_s(int(prompt)) for prompt in self.prompt_tokens]
                missed, total = count_deadlines_flat(
                    self.arrival_s[:k], times, num_tokens, ttft_deadlines, np.full(k, deadlines.tbt_s)
                )
                scored = total > 0
                return 1.0 - (1.0 - missed[scored] / total[scored])
            case "scheduling_delay_s":
                return self.scheduling_delay_s[~np.isnan(self.scheduling_delay_s)]
        raise ValueError(f"no fast path for the SLO metric {name!r}")


def _slo_metrics(columns: _Columns, deadlines: DeadlineConfig, slo: SloConfig) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    for key in slo.limits():
        if key == "error_rate":
            metrics[key] = columns.num_errors / columns.num_attempted if columns.num_attempted else None
            continue
        name, stat = key.rsplit(".", 1)
        metrics[key] = _percentile(columns.values(name, deadlines), stat)
    return metrics


def slo_metrics(result: SimulationResult, deadlines: DeadlineConfig, slo: SloConfig) -> dict[str, float | None]:
    """The summary figures (metron's `summarize` keys) that `slo` checks, and nothing else."""
    return _slo_metrics(_Columns(result), deadlines, slo)


def slo_verdict(result: SimulationResult, deadlines: DeadlineConfig, slo: SloConfig) -> SloVerdict:
    """metron's verdict on the run (its runner's: every planned measured request must have
    completed or failed), without building its records."""
    columns = _Columns(result)
    outcomes = {
        "num_finished": columns.num_completed - columns.num_ended_early,
        "num_ended_early": columns.num_ended_early,
        "num_errors": columns.num_errors,
    }
    metrics = _slo_metrics(columns, deadlines, slo) | outcomes
    return evaluate_slo(metrics, slo, num_planned=columns.num_planned)
