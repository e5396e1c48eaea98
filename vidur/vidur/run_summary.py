"""metron's `summarize(records, slo)` of a simulated run, from its columns (`RunColumns`): the
same keys in the same order, the same values in the same order into metron's own `describe` (so
means and percentiles are bit for bit metron's), metron's miss-rate curve. Latencies pool the
completed requests; TTFT and TBT also those a run cut at `max_simulated_s` interrupted, after
them, as metron's do.
"""

from dataclasses import dataclass

import numpy as np
from metron.slo import SloConfig
from metron.summary import DISTRIBUTIONS, MISS_RATE_CURVE_DEADLINES_S, Metrics, describe, per_second

from vidur.run_columns import ENDED_EARLY, ERROR, FINISHED, INTERRUPTED, RunColumns
from vidur.stream_deadlines import decode_miss_rate_table


@dataclass(frozen=True, slots=True)
class TokenFigures:
    """What the summary reads of the token times, for columns that do not hold them (a run
    scored a part at a time, `vidur.run_in_parts`): metron's `describe` of every TBT
    (`tbt_s.*`), the P99 decode miss rate at each of metron's curve deadlines (None without a
    stream of two tokens), and under a `tbt_ttft` SLO each completed request's own TBT percentile
    (`own_tbt`, in the order of `completed_requests`)."""

    tbt: Metrics
    miss_rate_curve: list[float] | None
    own_tbt: np.ndarray | None = None


def completed_requests(columns: RunColumns) -> np.ndarray:
    """Indices of the measured requests that completed (finished or ended early)."""
    return np.flatnonzero(~columns.warmup & np.isin(columns.outcome, (FINISHED, ENDED_EARLY)))


def interrupted_requests(columns: RunColumns) -> np.ndarray:
    """Indices of the measured requests a cut run interrupted."""
    return np.flatnonzero(~columns.warmup & (columns.outcome == INTERRUPTED))


def curve_streams(columns: RunColumns, completed: np.ndarray) -> np.ndarray:
    """The completed requests the miss-rate curve counts: those with a gap between tokens."""
    return completed[columns.num_tokens[completed] > 1]


def own_tbt(columns: RunColumns, requests: np.ndarray, percentile: float) -> np.ndarray:
    """Each request's own TBT percentile (0 without gaps), as `np.percentile` of its gaps: requests
    with as many gaps are stacked, so numpy computes every row as it would the row alone."""
    gaps = np.diff(columns.times)
    num_gaps = np.maximum(columns.num_tokens[requests] - 1, 0)
    starts = columns.first_token[requests]
    own = np.zeros(len(requests))
    for count in np.unique(num_gaps[num_gaps > 0]).tolist():
        rows = np.flatnonzero(num_gaps == count)
        own[rows] = np.percentile(gaps[starts[rows, None] + np.arange(count)], percentile, axis=1)
    return own


def _meets_slo(
    columns: RunColumns, completed: np.ndarray, slo: SloConfig, token_figures: TokenFigures | None
) -> np.ndarray:
    """metron's `request_meets_slo` of each completed request."""
    ttft = columns.ttft_s[completed]
    meets = ~np.isnan(ttft)
    if slo.p50_scheduling_delay_s is not None:
        meets &= columns.scheduling_delay_s[completed] <= slo.p50_scheduling_delay_s  # NaN fails
    match slo.kind:
        case "deadline":
            meets &= 1.0 - columns.fluidity_index[completed] <= slo.max_miss_rate
        case "tbt_ttft":
            if token_figures is None:
                own = own_tbt(columns, completed, slo.tbt_percentile)
            elif token_figures.own_tbt is None:
                raise ValueError("a tbt_ttft SLO needs each completed request's own TBT percentile")
            else:
                own = token_figures.own_tbt
            meets &= (ttft <= slo.p90_ttft_s) & (own <= slo.p99_tbt_s)
        case _:
            tpot = np.nan_to_num(columns.tpot_s[completed], nan=0.0)
            meets &= (ttft <= slo.p90_ttft_s) & (tpot <= slo.p90_tpot_s)
    return meets


_GAP_CHUNK = 1 << 20  # token times differenced at once: a long run's every difference is never held


def gaps_of(columns: RunColumns, requests: np.ndarray) -> np.ndarray:
    """The TBTs of `requests` (indices in workload order), in order."""
    is_gap = columns.is_gap
    if len(requests) < len(columns.num_tokens):
        chosen = np.zeros(len(columns.num_tokens), dtype=bool)
        chosen[requests] = True
        is_gap &= np.repeat(chosen, columns.num_tokens)[1:]
    times = columns.times
    gaps = np.empty(int(np.count_nonzero(is_gap)))
    written = 0
    for start in range(0, len(is_gap), _GAP_CHUNK):
        end = min(start + _GAP_CHUNK, len(is_gap))
        chunk = np.diff(times[start : end + 1])[is_gap[start:end]]
        gaps[written : written + len(chunk)] = chunk
        written += len(chunk)
    return gaps


def _distribution(
    columns: RunColumns, name: str, measured: np.ndarray, completed: np.ndarray, interrupted: np.ndarray
) -> np.ndarray:
    """The values metron's `summarize` describes under `name`, in its order, None left out."""
    match name:
        case "tbt_s":
            if not len(interrupted):
                return gaps_of(columns, completed)
            return np.concatenate([gaps_of(columns, completed), gaps_of(columns, interrupted)])
        case "ttft_s":
            values = columns.ttft_s[np.concatenate([completed, interrupted])]
        case "miss_rate":
            values = 1.0 - columns.fluidity_index[completed]
        case "send_lag_s":  # sent when scheduled, but a session's later turn when the turn before ended
            if columns.scheduled_arrival_s is None:
                return np.zeros(len(measured))
            return columns.arrival_s[measured] - columns.scheduled_arrival_s[measured]
        case "prompt_tokens" | "output_tokens":
            source = columns.prompt_tokens if name == "prompt_tokens" else columns.num_tokens
            return source[completed]
        case _:
            values = getattr(columns, name)[completed]
    return values[~np.isnan(values)]


def _cached_prompt_figures(columns: RunColumns, completed: np.ndarray) -> Metrics:
    """metron's `cached_prompt_figures` of the completed requests (None without prefix caching)."""
    if columns.cached_prompt_tokens is None:
        return dict.fromkeys(("cached_prompt_tokens_total", "cached_prompt_fraction"))
    reported = completed[columns.cached_prompt_tokens[completed] >= 0]
    num_prompt = int(columns.prompt_tokens[reported].sum())
    num_cached = int(columns.cached_prompt_tokens[reported].sum())
    return {
        "cached_prompt_tokens_total": num_cached if len(reported) else None,
        "cached_prompt_fraction": num_cached / num_prompt if num_prompt else None,
    }


def summarize_columns(
    columns: RunColumns, slo: SloConfig | None = None, token_figures: TokenFigures | None = None
) -> Metrics:
    """Every aggregate figure of the run, equal to `metron.summary.summarize(columns.records(), slo)`;
    what it reads of the token times from `token_figures` where given."""
    is_measured = ~columns.warmup
    measured = np.flatnonzero(is_measured)
    completed = completed_requests(columns)
    interrupted = interrupted_requests(columns)
    num_errors = int(np.count_nonzero(is_measured & (columns.outcome == ERROR)))
    attempted = len(measured) - len(interrupted)

    streaming = measured[columns.num_tokens[measured] > 0]
    last_tokens = columns.last_token_s[streaming]
    start = float(columns.arrival_s[measured].min()) if len(measured) else None
    duration = float(last_tokens.max()) - start if len(last_tokens) and start is not None else None
    rate = 1.0 / duration if duration else None

    num_finished = int(np.count_nonzero(is_measured & (columns.outcome == FINISHED)))
    num_ended_early = int(np.count_nonzero(is_measured & (columns.outcome == ENDED_EARLY)))
    metrics: Metrics = {
        "num_requests": len(measured),
        "num_warmup_requests": len(columns.warmup) - len(measured),
        "num_finished": num_finished,
        "num_ended_early": num_ended_early,
        "num_errors": num_errors,
        "num_interrupted": len(interrupted),
        "error_rate": num_errors / attempted if attempted else None,
        "ended_early_rate": num_ended_early / attempted if attempted else None,
        "duration_s": duration,
    }
    num_output = int(columns.num_tokens[completed].sum())
    num_prompt = int(columns.prompt_tokens[completed].sum())
    metrics["request_throughput_per_s"] = len(completed) * rate if rate else None
    metrics["output_token_throughput_per_s"] = num_output * rate if rate else None
    metrics["total_token_throughput_per_s"] = (num_output + num_prompt) * rate if rate else None
    if slo is not None:
        num_good = int(np.count_nonzero(_meets_slo(columns, completed, slo, token_figures)))
        metrics["goodput_per_s"] = num_good * rate if rate else None
        metrics["slo_attainment"] = num_good / attempted if attempted else None
    else:
        metrics["goodput_per_s"] = None
        metrics["slo_attainment"] = None

    for name in DISTRIBUTIONS:
        if name == "tbt_s" and token_figures is not None:
            metrics.update(token_figures.tbt)
            continue
        percentiles = slo.percentiles_of(name) if slo is not None else ()
        values = _distribution(columns, name, measured, completed, interrupted)  # a new array, used once
        metrics.update(describe(name, values, percentiles, may_reorder=True))

    metrics["fluid_token_rate_per_s"] = per_second(metrics["min_tbt_deadline_s.p99"])
    metrics["tpot_token_rate_per_s"] = per_second(metrics["tpot_s.mean"])
    metrics["p99_tbt_token_rate_per_s"] = per_second(metrics["tbt_s.p99"])
    num_total = int(columns.total_deadlines[measured].sum())
    num_missed = int(columns.missed_deadlines[measured].sum())
    metrics["service_miss_rate"] = num_missed / num_total if num_total else None
    metrics.update(_cached_prompt_figures(columns, completed))

    streams = curve_streams(columns, completed)
    curve = None
    if token_figures is not None:
        curve = token_figures.miss_rate_curve
    elif len(streams):
        assert columns.streams is not None  # the columns hold their token times
        table = decode_miss_rate_table(columns.streams.subset(streams), MISS_RATE_CURVE_DEADLINES_S)
        # A deadline at a time: the table is not copied whole.
        curve = [float(np.percentile(table[:, j], 99)) for j in range(table.shape[1])]
    metrics["miss_rate_curve.tbt_deadline_s"] = list(MISS_RATE_CURVE_DEADLINES_S)
    metrics["miss_rate_curve.p99_miss_rate"] = curve
    return metrics
