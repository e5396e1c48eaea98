"""metron's deadline counts, decode miss rates and minimum TBT deadlines of a simulated run's
token streams, computed by the simulator extension on every core: the same values as
`metron.fluidity.count_deadlines_flat`, `decode_miss_rate_table_flat` and
`min_tbt_deadlines_flat` (times rounded to integer nanoseconds by metron's `to_ns`, then
counted exactly), in a fraction of the time."""

from collections.abc import Sequence

import numpy as np
from metron.fluidity import to_ns

from vidur import _simulator

_NS = 1e9


def _int64_bytes(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<i8").tobytes()


def count_deadlines(
    arrivals_s: np.ndarray,
    token_times_s: np.ndarray,
    num_tokens: np.ndarray,
    ttft_deadlines_s: np.ndarray,
    tbt_deadlines_s: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(missed, total) deadlines per stream (given end to end; stream i sent at `arrivals_s[i]`)."""
    missed, total = _simulator.count_deadlines_ns(
        _int64_bytes(to_ns(token_times_s)),
        _int64_bytes(np.asarray(num_tokens)),
        _int64_bytes(to_ns(arrivals_s)),
        _int64_bytes(to_ns(ttft_deadlines_s)),
        _int64_bytes(to_ns(tbt_deadlines_s)),
    )
    return np.frombuffer(missed, dtype="<i8"), np.frombuffer(total, dtype="<i8")


def min_tbt_deadlines_s(token_times_s: np.ndarray, num_tokens: np.ndarray, max_miss_rate: float) -> np.ndarray:
    """Per stream (given end to end), the smallest TBT deadline (s) at which its tokens after the
    first miss at most `max_miss_rate` of their deadlines; NaN for fewer than two tokens."""
    found = _simulator.min_tbt_deadlines_ns(
        _int64_bytes(to_ns(token_times_s)), _int64_bytes(np.asarray(num_tokens)), max_miss_rate
    )
    return np.frombuffer(found, dtype="<f8") / _NS


def decode_miss_rate_table(
    token_times_s: np.ndarray, num_tokens: np.ndarray, tbt_deadlines_s: Sequence[float]
) -> np.ndarray:
    """Per stream (given end to end), its decode miss rate at each deadline: [stream, deadline]."""
    table = _simulator.decode_miss_rate_table_ns(
        _int64_bytes(to_ns(token_times_s)), _int64_bytes(np.asarray(num_tokens)), _int64_bytes(to_ns(tbt_deadlines_s))
    )
    return np.frombuffer(table, dtype="<f8").reshape(len(num_tokens), len(tbt_deadlines_s))
