"""The simulator extension's deadline counts, decode miss rates and minimum TBT deadlines are
metron's, exactly:
against `metron.fluidity` (its definition) on streams built to hit every case (bursts of
simultaneous tokens, gaps at a deadline's exact boundary, single tokens, very long stalls), and
a clear error for bad input."""

import numpy as np
import pytest
from metron.fluidity import count_deadlines_flat, decode_miss_rate_table_flat, min_tbt_deadlines_flat

from vidur import _simulator
from vidur.stream_deadlines import TokenStreams, count_deadlines, decode_miss_rate_table, min_tbt_deadlines_s

DEADLINES_S = [0.001, 0.01, 0.0205, 0.05, 0.1, 1.0]


def streams(seed: int, num_streams: int) -> tuple[np.ndarray, np.ndarray]:
    """Token times end to end, and each stream's count."""
    rng = np.random.default_rng(seed)
    counts = rng.choice([0, 1, 2, 3, 17, 64, 300], size=num_streams)
    pieces = []
    for count in counts.tolist():
        gaps = rng.choice([0.0, 0.01, 0.02, 0.0205, 0.05], size=count) * rng.choice([1, 1, 1, 3, 40], size=count)
        gaps += rng.exponential(0.004, size=count) * (rng.random(count) < 0.5)
        pieces.append(rng.uniform(0, 100) + np.cumsum(gaps))
    return np.concatenate(pieces), counts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deadline_counts_equal_metrons(seed: int) -> None:
    times, counts = streams(seed, 300)
    rng = np.random.default_rng(seed)
    first = np.cumsum(counts) - counts
    starts = np.where(counts > 0, times[np.minimum(first, len(times) - 1)], 50.0)
    arrivals = starts - rng.choice([0.0, 0.1, 0.5, 2.0], size=len(counts))  # some first tokens late
    ttft = rng.choice([0.0, 0.2, 0.5, 1.0], size=len(counts))
    tbt = rng.choice([0.01, 0.0205, 0.05], size=len(counts))
    missed, total = count_deadlines(TokenStreams(times, counts), arrivals, ttft, tbt)
    expected_missed, expected_total = count_deadlines_flat(arrivals, times, counts, ttft, tbt)
    np.testing.assert_array_equal(missed, expected_missed)
    np.testing.assert_array_equal(total, expected_total)
    assert (total[counts == 0] == 0).all() and 0 < missed.sum() < total.sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_miss_rates_equal_metrons(seed: int) -> None:
    times, counts = streams(seed, 300)
    ours = decode_miss_rate_table(TokenStreams(times, counts), DEADLINES_S)
    assert ours.shape == (300, len(DEADLINES_S))
    np.testing.assert_array_equal(ours, decode_miss_rate_table_flat(times, counts, DEADLINES_S))
    assert 0 < ours.mean() < 1  # the streams mix on-time and late tokens
    some = np.flatnonzero(counts % 2 == 1)
    np.testing.assert_array_equal(decode_miss_rate_table(TokenStreams(times, counts).subset(some), DEADLINES_S), ours[some])


@pytest.mark.parametrize(("seed", "max_miss_rate"), [(0, 0.1), (1, 0.0), (2, 0.5)])
def test_min_tbt_deadlines_equal_metrons(seed: int, max_miss_rate: float) -> None:
    times, counts = streams(seed, 300)
    ours = min_tbt_deadlines_s(TokenStreams(times, counts), max_miss_rate)
    metrons = min_tbt_deadlines_flat(times, counts, max_miss_rate)
    np.testing.assert_array_equal(ours, np.array([np.nan if d is None else d for d in metrons]))
    assert np.isnan(ours[counts < 2]).all() and (ours[counts >= 2] >= 0).all() and ours[counts >= 2].max() > 0.01


def test_a_hand_worked_stream() -> None:
    # d = 10 ms: gaps 5 and 25 ms; the 5 ms gap banks 5 ms, the 25 ms gap misses (25 - 5) / 10 = 2.
    stream = TokenStreams(np.array([0.0, 0.005, 0.030]), np.array([3]))
    table = decode_miss_rate_table(stream, [0.01])
    assert table.tolist() == [[2 / 3]]
    # With no misses allowed the deadline must reach 15 ms (5 <= d, then 25 <= 2d - 5).
    (found,) = min_tbt_deadlines_s(stream, 0.0)
    assert 0.015 <= found <= 0.015 + 1e-6


def test_bad_input_is_named() -> None:
    times = np.zeros(4)
    with pytest.raises(ValueError, match="4 token times for 5 tokens"):
        _simulator.min_tbt_deadlines_ns(times, np.array([5], dtype="<i8").tobytes(), 0.1)
    with pytest.raises(ValueError, match="cannot have -1 tokens"):
        _simulator.min_tbt_deadlines_ns(times, np.array([5, -1], dtype="<i8").tobytes(), 0.1)
    with pytest.raises(ValueError, match="max_miss_rate"):
        _simulator.min_tbt_deadlines_ns(times, np.array([4], dtype="<i8").tobytes(), 1.0)
    with pytest.raises(ValueError, match="must be positive"):
        _simulator.decode_miss_rate_table_ns(times, np.array([4], dtype="<i8").tobytes(), np.zeros(1, "<i8").tobytes())
    one = np.zeros(1, "<i8").tobytes()
    with pytest.raises(ValueError, match="TBT deadlines must be positive"):
        _simulator.count_deadlines_ns(times, np.array([4], dtype="<i8").tobytes(), one, one, one)
    with pytest.raises(ValueError, match="arrivals_ns has 0 values for 1 streams"):
        _simulator.count_deadlines_ns(times, np.array([4], dtype="<i8").tobytes(), b"", one, one)
    with pytest.raises(ValueError, match="token_times_s must be float64 values, got 3 bytes"):
        _simulator.decode_miss_rate_table_ns(b"abc", b"", b"")
    with pytest.raises(ValueError, match="token_times_s must be float64 values, got items of 4 bytes"):
        _simulator.min_tbt_deadlines_ns(times.astype(np.float32), np.array([4], dtype="<i8").tobytes(), 0.1)
    with pytest.raises(ValueError, match="times must be finite seconds within .*, got NaN"):
        _simulator.min_tbt_deadlines_ns(np.array([0.0, np.nan]), np.array([2], dtype="<i8").tobytes(), 0.1)
    with pytest.raises(ValueError, match="int64 values"):
        _simulator.decode_miss_rate_table_ns(times, b"abc", b"")
