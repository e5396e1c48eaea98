"""metron's `summarize(records, slo)` of a simulated run, from its columns (`RunColumns`): the
same keys in the same order, the same values in the same order into metron's own `describe` (so
means and percentiles are bit for bit metron's), metron's miss-rate curve. Latencies pool the
completed requests; TTFT and TBT also those a run cut at `max_simulated_s` interrupted, after
them, as metron's do.
"""

import numpy as np
from metron.slo import SloConfig
from metron.summary import DISTRIBUTIONS, MISS_RATE_CURVE_DEADLINES_S, Metrics, describe, per_second

from vidur.run_columns import ENDED_EARLY, ERROR, FINISHED, INTERRUPTED, RunColumns
from vidur.stream_deadlines import decode_miss_rate_table


def _own_tbt(columns: RunColumns, requests: np.ndarray, percentile: float) -> np.ndarray:
    """Each request's own TBT percentile (0 without gaps), as `np.percentile` of its gaps: requests
    with as many gaps are stacked, so numpy computes every row as it would the row alone."""
    gaps = np.diff(columns.token_times_s)
    num_gaps = np.maximum(columns.num_tokens[requests] - 1, 0)
    starts = columns.first_token[requests]
    own = np.zeros(len(requests))
    for count in np.unique(num_gaps[num_gaps > 0]).tolist():
        rows = np.flatnonzero(num_gaps == count)
        own[rows] = np.percentile(gaps[starts[rows, None] + np.arange(count)], percentile, axis=1)
    return own


def _meets_slo(columns: RunColumns, completed: np.ndarray, slo: SloConfig) -> np.ndarray:
    """metron's `request_meets_slo` of each completed request."""
    ttft = columns.ttft_s[completed]
    meets = ~np.isnan(ttft)
    if slo.p50_scheduling_delay_s is not None:
        meets &= columns.scheduling_delay_s[completed] <= slo.p50_scheduling_delay_s  # NaN fails
    match slo.kind:
        case "deadline":
            meets &= 1.0 - columns.fluidity_index[completed] <= slo.max_miss_rate
        case "tbt_ttft":
            meets &= (ttft <= slo.p90_ttft_s) & (_own_tbt(columns, completed, slo.tbt_percentile) <= slo.p99_tbt_s)
        case _:
            tpot = np.nan_to_num(columns.tpot_s[completed], nan=0.0)
            meets &= (ttft <= slo.p90_ttft_s) & (tpot <= slo.p90_tpot_s)
    return meets


_GAP_CHUNK = 1 << 20  # token times differenced at once: a long run's every difference is never held


def _gaps(columns: RunColumns, requests: np.ndarray) -> np.ndarray:
    """The TBTs of `requests` (indices in workload order), in order."""
    is_gap = columns.is_gap
    if len(requests) < len(columns.num_tokens):
        chosen = np.zeros(len(columns.num_tokens), dtype=bool)
        chosen[requests] = True
        is_gap &= np.repeat(chosen, columns.num_tokens)[1:]
    times = columns.token_times_s
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
                return _gaps(columns, completed)
            return np.concatenate([_gaps(columns, completed), _gaps(columns, interrupted)])
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


def summarize_columns(columns: RunColumns, slo: SloConfig | None = None) -> Metrics:
    """Every aggregate figure of the run, equal to `metron.summary.summarize(columns.records(), slo)`."""
    is_measured = ~columns.warmup
    measured = np.flatnonzero(is_measured)
    completed = np.flatnonzero(is_measured & np.isin(columns.outcome, (FINISHED, ENDED_EARLY)))
    interrupted = np.flatnonzero(is_measured & (columns.outcome == INTERRUPTED))
    num_errors = int(np.count_nonzero(is_measured & (columns.outcome == ERROR)))
    attempted = len(measured) - len(interrupted)

    streaming = measured[columns.num_tokens[measured] > 0]
    last_tokens = columns.token_times_s[columns.first_token[streaming] + columns.num_tokens[streaming] - 1]
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
        num_good = int(np.count_nonzero(_meets_slo(columns, completed, slo)))
        metrics["goodput_per_s"] = num_good * rate if rate else None
        metrics["slo_attainment"] = num_good / attempted if attempted else None
    else:
        metrics["goodput_per_s"] = None
        metrics["slo_attainment"] = None

    for name in DISTRIBUTIONS:
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

    streams = completed[columns.num_tokens[completed] > 1]
    curve = None
    if len(streams):
        table = decode_miss_rate_table(columns.streams.subset(streams), MISS_RATE_CURVE_DEADLINES_S)
        # A deadline at a time: the table is not copied whole.
        curve = [float(np.percentile(table[:, j], 99)) for j in range(table.shape[1])]
    metrics["miss_rate_curve.tbt_deadline_s"] = list(MISS_RATE_CURVE_DEADLINES_S)
    metrics["miss_rate_curve.p99_miss_rate"] = curve
    return metrics
