"""Run aggregates and SLO verdicts against a small run worked out by hand."""

import numpy as np
import pytest

from metron.deadlines import DeadlineConfig
from metron.metrics import RequestTimes, request_records
from metron.slo import SloConfig, evaluate_slo, request_meets_slo
from metron.summary import MISS_RATE_CURVE_DEADLINES_S, summarize

DEADLINES = DeadlineConfig(ttft_s=1.0, tbt_s=0.1)


def small_run() -> list:  # type: ignore[type-arg]
    return request_records(
        [
            RequestTimes(id=0, arrival_s=-5.0, prompt_tokens=99, token_times_s=[-4.0, -3.0], warmup=True),
            RequestTimes(
                id=1, arrival_s=0.0, prompt_tokens=10, token_times_s=[0.5, 0.6, 0.7], requested_output_tokens=3
            ),
            RequestTimes(id=2, arrival_s=1.0, prompt_tokens=20, token_times_s=[1.2, 1.5], scheduled_arrival_s=0.99),
            RequestTimes(id=3, arrival_s=2.0, prompt_tokens=30, token_times_s=[], error="HTTP 500: overloaded"),
        ],
        DEADLINES,
    )


def test_aggregates_of_a_small_run() -> None:
    metrics = summarize(small_run(), SloConfig(kind="tbt_ttft", p99_tbt_s=0.25, p90_ttft_s=2.0))
    assert metrics["num_requests"] == 3 and metrics["num_warmup_requests"] == 1
    assert (metrics["num_finished"], metrics["num_errors"], metrics["num_ended_early"]) == (2, 1, 0)
    assert metrics["error_rate"] == pytest.approx(1 / 3)
    # From the first measured send (0.0) to the last token (1.5).
    assert metrics["duration_s"] == pytest.approx(1.5)
    assert metrics["request_throughput_per_s"] == pytest.approx(2 / 1.5)
    assert metrics["output_token_throughput_per_s"] == pytest.approx(5 / 1.5)
    assert metrics["total_token_throughput_per_s"] == pytest.approx(35 / 1.5)
    assert metrics["ttft_s.mean"] == pytest.approx(0.35) and metrics["ttft_s.max"] == pytest.approx(0.5)
    # Pooled TBTs 0.1, 0.1, 0.3: P99 = 0.1 + 0.98 * 0.2 (linear interpolation).
    assert metrics["tbt_s.p50"] == pytest.approx(0.1)
    assert metrics["tbt_s.p99"] == pytest.approx(0.296)
    assert metrics["tpot_s.mean"] == pytest.approx(0.2)
    assert metrics["e2e_s.mean"] == pytest.approx(0.6)
    assert metrics["normalized_latency_s.mean"] == pytest.approx((0.7 / 3 + 0.5 / 2) / 2)
    assert metrics["fluidity_index.min"] == 1.0
    assert metrics["scheduling_delay_s.p50"] is None
    assert metrics["send_lag_s.max"] == pytest.approx(0.01)
    # Minimum TBT deadlines 0.1 and 0.3: P99 0.298; TPOT-based and TBT-based rates beside it.
    assert metrics["min_tbt_deadline_s.p99"] == pytest.approx(0.298, abs=2e-6)
    assert metrics["fluid_token_rate_per_s"] == pytest.approx(1 / 0.298, rel=1e-4)
    assert metrics["tpot_token_rate_per_s"] == pytest.approx(5.0)
    assert metrics["p99_tbt_token_rate_per_s"] == pytest.approx(1 / 0.296)
    # Request 1 meets TTFT <= 2 s and its own P99 TBT <= 0.25 s; request 2 (a 0.3 s gap) does not.
    assert metrics["goodput_per_s"] == pytest.approx(1 / 1.5)
    assert metrics["slo_attainment"] == pytest.approx(1 / 3)


def test_miss_rate_curve_falls_as_the_deadline_grows() -> None:
    rng = np.random.default_rng(2)
    records = request_records(
        [
            RequestTimes(
                id=i,
                arrival_s=0.0,
                prompt_tokens=1,
                token_times_s=(0.1 + np.cumsum(rng.exponential(0.03, 50))).tolist(),
            )
            for i in range(100)
        ],
        DEADLINES,
    )
    metrics = summarize(records)
    curve = metrics["miss_rate_curve.p99_miss_rate"]
    assert isinstance(curve, list) and len(curve) == len(MISS_RATE_CURVE_DEADLINES_S)
    assert all(later <= earlier for earlier, later in zip(curve, curve[1:], strict=False))
    assert curve[0] > 0.5 and curve[-1] == 0.0
    # TPOT-based rates overstate what users feel: the fluid rate is the lowest of the three.
    assert metrics["fluid_token_rate_per_s"] < metrics["tpot_token_rate_per_s"]  # type: ignore[operator]


def test_slo_verdicts_name_each_check() -> None:
    metrics = summarize(small_run())
    verdict = evaluate_slo(metrics, SloConfig(kind="tbt_ttft", p99_tbt_s=0.25, p90_ttft_s=2.0, max_error_rate=0.5))
    assert not verdict.passed
    assert {c.key: c.passed for c in verdict.checks} == {"tbt_s.p99": False, "ttft_s.p90": True, "error_rate": True}
    assert "tbt_s.p99 0.296 > 0.25" in verdict.describe()
    assert evaluate_slo(metrics, SloConfig(kind="deadline", max_error_rate=0.5)).passed
    # The error rate (1 of 3) fails the default 1% limit.
    assert not evaluate_slo(metrics, SloConfig(kind="deadline")).passed
    with_delay = evaluate_slo(metrics, SloConfig(kind="ttft_tpot", p50_scheduling_delay_s=2.0, max_error_rate=0.5))
    assert not with_delay.passed and "scheduling_delay_s.p50 unknown" in with_delay.describe()


def test_request_level_slo_kinds() -> None:
    _, fast, slow, failed = small_run()
    assert request_meets_slo(fast, SloConfig(kind="ttft_tpot", p90_ttft_s=0.6, p90_tpot_s=0.1))
    assert not request_meets_slo(slow, SloConfig(kind="ttft_tpot", p90_ttft_s=0.6, p90_tpot_s=0.1))
    assert request_meets_slo(slow, SloConfig(kind="deadline"))
    assert not request_meets_slo(failed, SloConfig(kind="deadline"))


def test_bad_slo_configs() -> None:
    with pytest.raises(ValueError, match="unknown SLO kind 'p99'"):
        SloConfig(kind="p99")
    with pytest.raises(ValueError, match="p99_tbt_s must be a positive"):
        SloConfig(p99_tbt_s=-1.0)


def test_an_empty_or_all_failed_run_summarizes_without_crashing() -> None:
    metrics = summarize([])
    assert metrics["num_requests"] == 0 and metrics["ttft_s.p99"] is None and metrics["duration_s"] is None
    assert not evaluate_slo(metrics, SloConfig()).passed


def test_service_miss_rate_pools_every_deadline_of_the_measured_requests() -> None:
    records = request_records(
        [
            # Warm-up: its first token is 0.9 s late, 10 missed of 10; left out.
            RequestTimes(id=0, arrival_s=-5.0, prompt_tokens=1, token_times_s=[-4.0], warmup=True),
            # On time, on time, then a 0.3 s gap with no slack: 3 missed; 2 met + 3 missed = 5.
            RequestTimes(id=1, arrival_s=0.0, prompt_tokens=1, token_times_s=[0.1, 0.2, 0.5]),
            # Both on time: 0 of 2.
            RequestTimes(id=2, arrival_s=1.0, prompt_tokens=1, token_times_s=[1.05, 1.1]),
        ],
        DeadlineConfig(ttft_s=0.1, tbt_s=0.1),
    )
    assert [(r.missed_deadlines, r.total_deadlines) for r in records] == [(10, 10), (3, 5), (0, 2)]
    metrics = summarize(records)
    assert metrics["service_miss_rate"] == pytest.approx(3 / 7)
    # Not the mean of the requests' miss rates (3/5 and 0): long requests weigh more.
    assert metrics["miss_rate.mean"] == pytest.approx(0.3)
    assert summarize([])["service_miss_rate"] is None


def test_slo_percentiles_are_summarized_and_checked() -> None:
    slo = SloConfig(kind="tbt_ttft", p99_tbt_s=0.25, p90_ttft_s=2.0, tbt_percentile=50, ttft_percentile=99.9)
    metrics = summarize(small_run(), slo)
    # Pooled TBTs 0.1, 0.1, 0.3 and TTFTs 0.5, 0.2.
    assert metrics["tbt_s.p50"] == pytest.approx(0.1) and metrics["ttft_s.p99.9"] == pytest.approx(0.4997)
    assert list(slo.limits()) == ["tbt_s.p50", "ttft_s.p99.9", "error_rate"]
    checks = {c.key: c.passed for c in evaluate_slo(metrics, slo).checks}
    assert checks == {"tbt_s.p50": True, "ttft_s.p99.9": True, "error_rate": False}
    assert slo.describe() == "P50 tbt <= 0.25, P99.9 ttft <= 2, error rate <= 0.01"
    with pytest.raises(ValueError, match="tbt_percentile must be in \\[0, 100\\], got 101"):
        SloConfig(tbt_percentile=101)
