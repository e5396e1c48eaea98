"""The decode miss rates behind the fluidity curve and the minimum TBT deadline, counted per run of
long gaps (`metron.gap_buckets`), equal the closed-form count of `count_deadlines_flat` exactly:
the decode tokens of a stream are a request sent at its first token, due `d` after it."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from metron.fluidity import (
    count_deadlines_flat,
    decode_miss_rate_table,
    decode_miss_rate_table_flat,
    min_tbt_deadlines,
    min_tbt_deadlines_flat,
)

# Gaps from a few values (ms) so that ties, zero gaps and gaps exactly at a deadline all occur.
gaps_ms = st.lists(st.sampled_from([0, 1, 5, 10, 12, 20, 25, 50, 100, 400, 3000]), max_size=60)
streams = st.lists(st.tuples(st.integers(0, 10_000), gaps_ms), max_size=25)
deadlines = st.lists(st.sampled_from([0.001, 0.005, 0.01, 0.0105, 0.012, 0.02, 0.05, 0.3, 2.0]), min_size=1, max_size=6)


def token_times(stream: tuple[int, list[int]]) -> np.ndarray:
    start_ms, gaps = stream
    return (start_ms + np.cumsum([0, *gaps])) / 1000


def closed_form_rate(times: np.ndarray, deadline_s: float) -> float:
    missed, total = count_deadlines_flat([times[0]], times[1:], [len(times) - 1], [deadline_s], [deadline_s])
    return float(missed[0] / total[0])


def closed_form_min_deadline(times: np.ndarray, max_miss_rate: float) -> float | None:
    """metron's bisection (to 1 us, from the largest gap down), on the closed-form count."""
    if len(times) < 2:
        return None
    low, high = 0, int(np.diff(np.rint(times * 1e9).astype(np.int64)).max())
    while high - low > 1_000:
        middle = max((low + high) // 2, 1)
        if closed_form_rate(times, middle / 1e9) <= max_miss_rate:
            high = middle
        else:
            low = middle
    return high / 1e9


@settings(max_examples=300, deadline=None)
@given(streams, deadlines)
def test_the_miss_rate_table_is_the_closed_form_count(streams: list[tuple[int, list[int]]], tbt: list[float]) -> None:
    times = [token_times(stream) for stream in streams]
    table = decode_miss_rate_table(times, tbt)
    expected = [[closed_form_rate(t, d) if len(t) > 1 else 0.0 for d in tbt] for t in times]
    assert table.tolist() == expected
    flat = np.concatenate(times) if times else np.zeros(0)
    assert np.array_equal(decode_miss_rate_table_flat(flat, [len(t) for t in times], tbt), table)


@settings(max_examples=150, deadline=None)
@given(streams, st.sampled_from([0.0, 0.05, 0.1, 0.5]))
def test_the_min_tbt_deadline_is_the_closed_form_bisection(
    streams: list[tuple[int, list[int]]], max_miss_rate: float
) -> None:
    times = [token_times(stream) for stream in streams]
    found = min_tbt_deadlines(times, max_miss_rate)
    assert found == [closed_form_min_deadline(t, max_miss_rate) for t in times]
    flat = np.concatenate(times) if times else np.zeros(0)
    assert min_tbt_deadlines_flat(flat, [len(t) for t in times], max_miss_rate) == found


def test_long_streams_of_long_runs_and_huge_gaps() -> None:
    """Buckets over 32-bit gaps (an hour's stall), runs hundreds of gaps long, and a deadline
    below every gap, above every gap and between."""
    rng = np.random.default_rng(3)
    times = [
        np.cumsum(np.concatenate(([1.0], rng.choice([0.011, 0.013, 0.04], size=900)))),
        np.cumsum([0.0, 0.02, 3600.0, 0.02, 0.02]),
        np.cumsum(np.concatenate(([5.0], np.full(400, 0.012), [2.5], np.full(50, 0.001)))),
    ]
    tbt = [0.0005, 0.011, 0.012, 0.0125, 0.04, 0.1, 4000.0]
    assert decode_miss_rate_table(times, tbt).tolist() == [[closed_form_rate(t, d) for d in tbt] for t in times]
    assert min_tbt_deadlines(times, 0.1) == [closed_form_min_deadline(t, 0.1) for t in times]
