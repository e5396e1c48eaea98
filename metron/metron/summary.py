"""A run's aggregate figures, from its per-request records.

`summarize` returns one flat dict whose keys are stable (they are `summary.json`'s `metrics`):
distributions as `<metric>.<stat>` with stat in mean, min, p50, p90, p99, max (numpy's linear
interpolation between order statistics), None where nothing was measured, plus each percentile an
SLO checks; `service_miss_rate` is all missed deadlines over all deadlines of the measured
requests. See README.md for the list.

Warm-up requests are left out of every figure. Latency figures pool the requests that completed
(finished or ended early); failed and interrupted requests only count in the outcome counts and
the error rate.
"""

from collections.abc import Iterable, Sequence

import numpy as np

from metron.fluidity import decode_miss_rate_table
from metron.metrics import RequestRecord
from metron.slo import SloConfig, percentile_key, request_meets_slo

STATS = ("mean", "min", "p50", "p90", "p99", "max")
DISTRIBUTIONS = (
    "ttft_s",
    "tbt_s",
    "tpot_s",
    "e2e_s",
    "normalized_latency_s",
    "scheduling_delay_s",
    "fluidity_index",
    "miss_rate",
    "min_tbt_deadline_s",
    "prompt_tokens",
    "output_tokens",
    "send_lag_s",
)
# The TBT deadlines of the miss-rate curve: 2 ms to 2 s, ten per decade, the same for every run.
MISS_RATE_CURVE_DEADLINES_S = tuple(round(float(d), 6) for d in np.geomspace(0.002, 2.0, 31))

Metrics = dict[str, float | int | list[float] | None]


def describe(
    name: str,
    values: Iterable[float | None] | np.ndarray,
    percentiles: Iterable[float] = (),
    *,
    may_reorder: bool = False,
) -> Metrics:
    """`name.mean`, `name.min`, `name.p50`, `name.p90`, `name.p99`, `name.max` of the values that
    are not None (an array is taken as it is: no None in it), then `percentile_key(name, q)` of
    each other percentile q in `percentiles` (an SLO's). `may_reorder`: a float64 array of values
    the caller no longer needs is partitioned in place, not copied (the same figures)."""
    if isinstance(values, np.ndarray):
        array = np.asarray(values, dtype=np.float64)  # no copy of a float64 array
    else:
        array = np.array([v for v in values if v is not None], dtype=np.float64)
        may_reorder = True
    extra = sorted({float(q) for q in percentiles} - {50.0, 90.0, 99.0})
    keys = [f"{name}.{stat}" for stat in STATS] + [percentile_key(name, q) for q in extra]
    if len(array) == 0:
        return dict.fromkeys(keys)
    mean, low, high = array.mean(), array.min(), array.max()  # before any partition reorders it
    p50, p90, p99, *others = np.percentile(array, [50, 90, 99, *extra], overwrite_input=may_reorder)
    figures = [mean, low, p50, p90, p99, high, *others]
    return {key: float(value) for key, value in zip(keys, figures, strict=True)}


def per_second(value: float | int | list[float] | None) -> float | None:
    """The rate of a positive duration (1 / value); None for anything else."""
    return 1.0 / value if isinstance(value, float | int) and value > 0 else None


def cached_prompt_figures(completed: Sequence[RequestRecord]) -> Metrics:
    """The prompt tokens the server's prefix cache held, in all and as a fraction of the prompt
    tokens of the requests whose server said (both None where none did)."""
    reported = [r for r in completed if r.cached_prompt_tokens is not None]
    num_prompt = sum(r.prompt_tokens for r in reported)
    num_cached = sum(r.cached_prompt_tokens or 0 for r in reported)
    return {
        "cached_prompt_tokens_total": num_cached if reported else None,
        "cached_prompt_fraction": num_cached / num_prompt if num_prompt else None,
    }


def summarize(records: Sequence[RequestRecord], slo: SloConfig | None = None) -> Metrics:
    """Every aggregate figure of a run. With an `slo`, goodput counts the requests that meet it."""
    measured = [r for r in records if not r.warmup]
    completed = [r for r in measured if r.completed]
    # A run stopped early still observed first tokens and gaps of the requests it cut off.
    observed = completed + [r for r in measured if r.outcome == "interrupted"]
    outcomes = {outcome: sum(r.outcome == outcome for r in measured) for outcome in ("finished", "ended_early")}
    num_errors = sum(r.outcome == "error" for r in measured)
    num_interrupted = sum(r.outcome == "interrupted" for r in measured)
    attempted = len(measured) - num_interrupted

    token_ends = [r.token_times_s[-1] for r in measured if r.token_times_s]
    start = min((r.arrival_s for r in measured), default=None)
    duration = max(token_ends) - start if token_ends and start is not None else None
    rate = 1.0 / duration if duration else None

    metrics: Metrics = {
        "num_requests": len(measured),
        "num_warmup_requests": len(records) - len(measured),
        "num_finished": outcomes["finished"],
        "num_ended_early": outcomes["ended_early"],
        "num_errors": num_errors,
        "num_interrupted": num_interrupted,
        "error_rate": num_errors / attempted if attempted else None,
        "ended_early_rate": outcomes["ended_early"] / attempted if attempted else None,
        "duration_s": duration,
    }
    num_output = sum(r.output_tokens for r in completed)
    num_prompt = sum(r.prompt_tokens for r in completed)
    metrics["request_throughput_per_s"] = len(completed) * rate if rate else None
    metrics["output_token_throughput_per_s"] = num_output * rate if rate else None
    metrics["total_token_throughput_per_s"] = (num_output + num_prompt) * rate if rate else None
    if slo is not None:
        num_good = sum(request_meets_slo(r, slo) for r in completed)
        metrics["goodput_per_s"] = num_good * rate if rate else None
        metrics["slo_attainment"] = num_good / attempted if attempted else None
    else:
        metrics["goodput_per_s"] = None
        metrics["slo_attainment"] = None

    for name in DISTRIBUTIONS:
        match name:
            case "tbt_s":
                values: Iterable[float | None] = (gap for r in observed for gap in r.tbt_s)
            case "ttft_s":
                values = (r.ttft_s for r in observed)
            case "miss_rate":
                values = (r.miss_rate for r in completed)
            case "send_lag_s":
                values = (r.arrival_s - r.scheduled_arrival_s for r in measured if r.scheduled_arrival_s is not None)
            case _:
                values = (getattr(r, name) for r in completed)
        metrics.update(describe(name, values, slo.percentiles_of(name) if slo is not None else ()))

    metrics["fluid_token_rate_per_s"] = per_second(metrics["min_tbt_deadline_s.p99"])
    metrics["tpot_token_rate_per_s"] = per_second(metrics["tpot_s.mean"])
    metrics["p99_tbt_token_rate_per_s"] = per_second(metrics["tbt_s.p99"])
    num_total = sum(r.total_deadlines for r in measured)
    metrics["service_miss_rate"] = sum(r.missed_deadlines for r in measured) / num_total if num_total else None
    metrics.update(cached_prompt_figures(completed))

    streams = [r.token_times_s for r in completed if r.output_tokens > 1]
    curve = (
        np.percentile(decode_miss_rate_table(streams, MISS_RATE_CURVE_DEADLINES_S), 99, axis=0).tolist()
        if streams
        else None
    )
    metrics["miss_rate_curve.tbt_deadline_s"] = list(MISS_RATE_CURVE_DEADLINES_S)
    metrics["miss_rate_curve.p99_miss_rate"] = curve
    return metrics
