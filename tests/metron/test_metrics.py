"""Per-request metrics against cases computed by hand from DESIGN.md's definitions.

Deadlines in these cases: D_p = 1.0 s for the first token, D_d = 0.1 s for every later one.
"""

import itertools

import numpy as np
import pytest

from metron.deadlines import DeadlineConfig
from metron.fluidity import count_deadlines, count_deadlines_flat, decode_miss_rates, min_tbt_deadline
from metron.metrics import RequestTimes, request_record, request_records, rescore
from metron.prefill_model import PrefillModel

DEADLINES = DeadlineConfig(ttft_s=1.0, tbt_s=0.1)


def record_of(deadlines: DeadlineConfig = DEADLINES, **measured: object):  # type: ignore[no-untyped-def]
    return request_record(RequestTimes(**measured), deadlines)  # type: ignore[arg-type]


def times_from(arrival: float, ttft: float, gaps: list[float]) -> list[float]:
    return list(itertools.accumulate([arrival + ttft, *gaps]))



def test_streams_end_to_end_in_one_array_count_as_they_do_one_by_one() -> None:
    streams = [
        times_from(10.0, 0.5, [0.05, 0.05, 0.6, 0.25, 0.1]),
        [],
        times_from(0.0, 1.3, [0.1, 0.35, 0.0, 0.1]),
        [12.4],
    ]
    arrivals, ttft, tbt = [10.0, 3.0, 0.0, 11.0], [1.0, 1.0, 0.8, 2.0], [0.1, 0.1, 0.2, 0.1]
    missed, total = count_deadlines_flat(
        arrivals, np.concatenate([np.array(s, dtype=np.float64) for s in streams]), [len(s) for s in streams], ttft, tbt
    )
    expected = [count_deadlines(*request) for request in zip(arrivals, streams, ttft, tbt, strict=True)]
    assert list(zip(missed.tolist(), total.tolist(), strict=True)) == expected
    assert expected[1] == (0, 0) and expected[0] == (1, 6)

def test_early_tokens_bank_slack_that_later_tokens_spend() -> None:
    # ttft 0.5: banks 0.5. Gaps 0.05, 0.05: bank 0.05 each (slack 0.6). Gap 0.6 <= 0.1 + 0.6:
    # on time, slack 0.1. Gap 0.25 > 0.1 + 0.1: late, floor((0.25 - 0.1) / 0.1) = 1 miss, slack 0.
    # Gap 0.1: on time. 5 deadlines met + 1 missed: fluidity 5/6.
    times = times_from(10.0, 0.5, [0.05, 0.05, 0.6, 0.25, 0.1])
    assert count_deadlines(10.0, times, 1.0, 0.1) == (1, 6)
    record = record_of(id=0, arrival_s=10.0, prompt_tokens=5, token_times_s=times)
    assert record.fluidity_index == pytest.approx(5 / 6)
    # Without the banked slack the 0.6 gap alone would have missed 6 deadlines.
    assert count_deadlines(10.0, times_from(10.0, 1.0, [0.1, 0.1, 0.6]), 1.0, 0.1) == (6, 9)


def test_one_long_stall_counts_as_several_misses() -> None:
    # ttft 0.2: slack 0.8. Three gaps of 0.1: on time, slack stays 0.8. A 1.35 s stall:
    # floor((1.35 - 0.8) / 0.1) = 5 misses, slack 0. Two more gaps of 0.1: on time.
    # 6 met + 5 missed = 11 deadlines: fluidity 6/11.
    times = times_from(0.0, 0.2, [0.1, 0.1, 0.1, 1.35, 0.1, 0.1])
    assert count_deadlines(0.0, times, 1.0, 0.1) == (5, 11)
    record = record_of(id=1, arrival_s=0.0, prompt_tokens=5, token_times_s=times)
    assert record.fluidity_index == pytest.approx(6 / 11)
    assert record.missed_deadlines == 5 and record.total_deadlines == 11


def test_tokens_that_arrive_in_one_event_each_meet_a_deadline_and_bank_slack() -> None:
    times = [0.3, 0.3, 0.3, 0.65, 0.65]
    # D_p = 1: ttft 0.3 banks 0.7, the two simultaneous tokens bank 0.1 each, the 0.35 gap spends.
    assert count_deadlines(0.0, times, 1.0, 0.1) == (0, 5)
    # D_p = 0.2: ttft 0.3 misses 1 + floor(0.1 / 0.1) = 2; gaps of 0 bank 0.2; the 0.35 gap is
    # past 0.1 + 0.2 and misses floor((0.35 - 0.2) / 0.1) = 1; the last token is on time.
    # 3 met + 3 missed: fluidity 0.5.
    assert count_deadlines(0.0, times, 0.2, 0.1) == (3, 6)
    # A gap of exactly deadline + slack (0.3 = 0.1 + 0.2) is on time.
    assert count_deadlines(0.0, [0.3, 0.3, 0.3, 0.6, 0.6], 0.2, 0.1) == (2, 6)
    record = record_of(
        id=2, arrival_s=0.0, prompt_tokens=5, token_times_s=times, deadlines=DeadlineConfig(ttft_s=0.2, tbt_s=0.1)
    )
    assert record.fluidity_index == 0.5
    assert record.tbt_s == pytest.approx([0.0, 0.0, 0.35, 0.0])
    assert record.tpot_s == pytest.approx(0.35 / 4)


def test_a_late_first_token_misses_one_plus_its_lateness_in_tbt_deadlines() -> None:
    # ttft 2.35 against D_p = 1: 1 + floor(1.35 / 0.1) = 14 misses; then one on-time token.
    times = times_from(5.0, 2.35, [0.1])
    assert count_deadlines(5.0, times, 1.0, 0.1) == (14, 15)
    # Slightly late still counts one miss.
    assert count_deadlines(0.0, [1.05], 1.0, 0.1) == (1, 1)
    # Exactly on the deadline is on time.
    assert count_deadlines(0.0, [1.0, 1.1, 1.2], 1.0, 0.1) == (0, 3)


def test_a_request_with_one_output_token() -> None:
    record = record_of(id=3, arrival_s=1.0, prompt_tokens=100, token_times_s=[1.4], requested_output_tokens=1)
    assert record.ttft_s == pytest.approx(0.4)
    assert record.tbt_s == [] and record.tpot_s is None and record.min_tbt_deadline_s is None
    assert record.e2e_s == pytest.approx(0.4) and record.normalized_latency_s == pytest.approx(0.4)
    assert record.fluidity_index == 1.0 and (record.missed_deadlines, record.total_deadlines) == (0, 1)
    assert record.finished and record.outcome == "finished"
    late = record_of(id=4, arrival_s=0.0, prompt_tokens=100, token_times_s=[1.05])
    assert late.fluidity_index == 0.0


def test_latency_fields() -> None:
    times = times_from(2.0, 0.5, [0.1, 0.2, 0.3])
    record = record_of(
        id=5,
        arrival_s=2.0,
        prompt_tokens=64,
        token_times_s=times,
        requested_output_tokens=4,
        scheduling_delay_s=0.25,
        scheduled_arrival_s=1.999,
    )
    assert record.ttft_s == pytest.approx(0.5)
    assert record.tbt_s == pytest.approx([0.1, 0.2, 0.3])
    assert record.tpot_s == pytest.approx(0.2)
    assert record.e2e_s == pytest.approx(1.1)
    assert record.normalized_latency_s == pytest.approx(1.1 / 4)
    assert record.scheduling_delay_s == 0.25 and record.scheduled_arrival_s == 1.999
    assert record.output_tokens == 4 and record.requested_output_tokens == 4


def test_outcomes() -> None:
    def outcome(**kwargs: object) -> tuple[str, bool]:
        record = record_of(id=0, arrival_s=0.0, prompt_tokens=1, **kwargs)
        return record.outcome, record.finished

    assert outcome(token_times_s=[0.1, 0.2], requested_output_tokens=2) == ("finished", True)
    assert outcome(token_times_s=[0.1], requested_output_tokens=2) == ("ended_early", False)
    assert outcome(token_times_s=[0.1], requested_output_tokens=2, error="HTTP 500") == ("error", False)
    assert outcome(token_times_s=[0.1], requested_output_tokens=2, interrupted=True) == ("interrupted", False)
    no_tokens = record_of(id=0, arrival_s=0.0, prompt_tokens=1, token_times_s=[], error="x")
    assert no_tokens.ttft_s is None and no_tokens.fluidity_index is None and no_tokens.e2e_s is None


def test_bad_token_times_are_rejected() -> None:
    with pytest.raises(ValueError, match="token times must not decrease"):
        record_of(id=9, arrival_s=0.0, prompt_tokens=1, token_times_s=[0.2, 0.1])
    with pytest.raises(ValueError, match="request 9: its first token"):
        record_of(id=9, arrival_s=1.0, prompt_tokens=1, token_times_s=[0.5])
    with pytest.raises(ValueError, match="TBT deadline \\(tbt_s\\) must be a positive"):
        DeadlineConfig(tbt_s=0.0)


def test_min_tbt_deadline_found_by_hand() -> None:
    # Nine gaps of 0.1 then one of 1.0, at most 10% missed. For D in [0.1, 0.19) the nine bank
    # 9(D - 0.1) and the 1.0 gap misses floor((1.9 - 9D) / D) = floor(1.9/D - 9) deadlines; one
    # miss in ten is allowed, so 1.9/D - 9 < 2, i.e. D > 1.9/11 = 0.172727...
    times = times_from(0.0, 0.3, [0.1] * 9 + [1.0])
    found = min_tbt_deadline(times, 0.1)
    assert found is not None
    assert 1.9 / 11 < found <= 1.9 / 11 + 2e-6
    assert decode_miss_rates(times, [found])[0] <= 0.1
    assert decode_miss_rates(times, [found - 2e-6])[0] > 0.1
    # Every gap equal: the deadline is that gap.
    assert min_tbt_deadline([0.0, 0.05, 0.1, 0.15], 0.1) == pytest.approx(0.05, abs=1e-6)
    # Zero allowed misses: the largest gap (no slack builds up when every gap is the same).
    assert min_tbt_deadline([0.0, 0.2, 0.4, 0.6], 0.0) == pytest.approx(0.2, abs=1e-6)


def test_decode_miss_rates_against_a_direct_loop() -> None:
    # An independent, plain-loop reading of DESIGN.md, run on random streams.
    def direct(gaps: list[float], deadline: float) -> float:
        slack, missed, total = 0.0, 0, 0
        for gap in gaps:
            if gap <= deadline + slack + 1e-12:
                slack += deadline - gap
                total += 1
            else:
                misses = int((gap - slack) / deadline + 1e-9)
                missed += misses
                total += misses
                slack = 0.0
        return missed / total if total else 0.0

    rng = np.random.default_rng(0)
    for _ in range(50):
        gaps = np.round(rng.exponential(0.05, rng.integers(1, 60)), 4)
        times = np.concatenate(([1.0], 1.0 + np.cumsum(gaps)))
        deadlines = [0.01, 0.03, 0.05, 0.08, 0.2]
        expected = [direct(gaps.tolist(), d) for d in deadlines]
        np.testing.assert_allclose(decode_miss_rates(times, deadlines), expected)


def test_prefill_model_sets_the_ttft_deadline_and_rescoring_keeps_the_times() -> None:
    deadlines = DeadlineConfig(
        tbt_s=0.1,
        prefill=PrefillModel(intercept_s=0.02, per_token_s=1e-4, per_token_squared_s=0.0),
        ttft_slack_s=0.3,
    )
    record = record_of(deadlines, id=1, arrival_s=0.0, prompt_tokens=1000, token_times_s=[0.5, 0.6])
    assert record.ttft_deadline_s == pytest.approx(0.02 + 0.1 + 0.3)
    assert record.missed_deadlines == 1 + int((0.5 - 0.42) / 0.1)
    (again,) = rescore([record], DEADLINES)
    assert again.token_times_s == record.token_times_s and again.fluidity_index == 1.0


def test_many_requests_at_once_match_one_at_a_time() -> None:
    rng = np.random.default_rng(4)
    measured = [
        RequestTimes(
            id=i,
            arrival_s=float(i),
            prompt_tokens=10,
            token_times_s=(i + 0.2 + np.cumsum(rng.exponential(0.08, rng.integers(0, 300)))).tolist(),
        )
        for i in range(200)
    ]
    together = request_records(measured, DEADLINES)
    assert together == [request_record(m, DEADLINES) for m in measured]
