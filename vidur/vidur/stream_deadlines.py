"""metron's deadline counts, decode miss rates and minimum TBT deadlines of a simulated run's
token streams, computed by the simulator extension on every core: the same values as
`metron.fluidity.count_deadlines_flat`, `decode_miss_rate_table_flat` and
`min_tbt_deadlines_flat` (times rounded to integer nanoseconds as metron's `to_ns` rounds them,
then counted exactly), in a fraction of the time. The extension reads the times in seconds where
they are and rounds them itself, so a run's times are held once."""

from collections.abc import Sequence

import numpy as np
from metron.fluidity import to_ns

from vidur import _simulator

_NS = 1e9


def _int64_bytes(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<i8").tobytes()


class TokenStreams:
    """Token streams end to end (stream i's times, in seconds, are the `num_tokens[i]` after the
    previous streams'), as the extension reads them: float64 times, int64 counts."""

    def __init__(self, times_s: np.ndarray, num_tokens: np.ndarray) -> None:
        self.times_s = np.ascontiguousarray(times_s, dtype=np.float64)  # not copied if it is one
        self.counts_bytes = _int64_bytes(num_tokens)
        self.num_tokens = np.frombuffer(self.counts_bytes, dtype="<i8")

    def __len__(self) -> int:
        return len(self.num_tokens)

    def subset(self, streams: np.ndarray) -> "TokenStreams":
        """Streams `streams` (increasing indices), end to end."""
        if len(streams) == len(self):
            return self
        chosen = np.zeros(len(self), dtype=bool)
        chosen[streams] = True
        return TokenStreams(self.times_s[np.repeat(chosen, self.num_tokens)], self.num_tokens[streams])


def count_deadlines(
    streams: TokenStreams, arrivals_s: np.ndarray, ttft_deadlines_s: np.ndarray, tbt_deadlines_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(missed, total) deadlines per stream (stream i sent at `arrivals_s[i]`)."""
    missed, total = _simulator.count_deadlines_ns(
        streams.times_s,
        streams.counts_bytes,
        _int64_bytes(to_ns(arrivals_s)),
        _int64_bytes(to_ns(ttft_deadlines_s)),
        _int64_bytes(to_ns(tbt_deadlines_s)),
    )
    return np.frombuffer(missed, dtype="<i8"), np.frombuffer(total, dtype="<i8")


def min_tbt_deadlines_s(streams: TokenStreams, max_miss_rate: float) -> np.ndarray:
    """Per stream, the smallest TBT deadline (s) at which its tokens after the first miss at
    most `max_miss_rate` of their deadlines; NaN for fewer than two tokens."""
    found = _simulator.min_tbt_deadlines_ns(streams.times_s, streams.counts_bytes, max_miss_rate)
    return np.frombuffer(found, dtype="<f8") / _NS


def decode_miss_rate_table(streams: TokenStreams, tbt_deadlines_s: Sequence[float]) -> np.ndarray:
    """Per stream, its decode miss rate at each deadline: [stream, deadline]."""
    table = _simulator.decode_miss_rate_table_ns(
        streams.times_s, streams.counts_bytes, _int64_bytes(to_ns(tbt_deadlines_s))
    )
    return np.frombuffer(table, dtype="<f8").reshape(len(streams), len(tbt_deadlines_s))
