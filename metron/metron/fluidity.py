"""Deadline accounting for token streams: Metron's fluidity-index (DESIGN.md).

Token 0 is due `D_p` after the send, every later token `D_d` after the previous one. A token that
arrives early banks the time it saved as slack, which later tokens may spend. A token later than
its deadline plus the slack misses `1 + floor(lateness / D_d)` deadlines, where lateness is how
far past deadline-plus-slack it came (for token 0 that is `1 + floor((t0 - D_p) / D_d)`; for a
later token with gap g it equals `floor((g - slack) / D_d)`); the slack then resets to zero and
the next deadline counts from that token's real arrival. A token on time meets one deadline.
fluidity-index = 1 - missed / total, where total = deadlines met + deadlines missed.

Tokens that arrive together (several tokens in one streamed event) have gaps of 0: each meets its
deadline and banks a full `D_d`.

How it is computed: the slack follows a Lindley recursion, slack_k = max(0, slack_{k-1} + budget_k)
with budget_k = deadline_k - delay_k, whose closed form (cumulative sum minus its running minimum)
lets numpy score many requests in a few array operations. Streams of similar length are padded
into one 2-D array (padding is budgets of 0, always on time, and subtracted from the totals). The
decode miss rates behind the fluidity curve and the minimum TBT deadline, evaluated at many
deadlines per stream, count per run of long gaps instead (`metron.gap_buckets`), with the same
result. Times are rounded to integer nanoseconds first, so on-time/late decisions at a deadline's
exact boundary are exact rather than at the mercy of float rounding.
"""

from collections.abc import Sequence

import numpy as np

from metron.gap_buckets import gap_buckets
from metron.padded_streams import pad_rows, similar_length_buckets

_NS = 1_000_000_000
_SEARCH_RESOLUTION_NS = 1_000
# Times in ns stay within int64 with room for their differences: about 146 years.
MAX_ABS_TIME_S = 2**62 / _NS

TokenTimes = Sequence[float] | np.ndarray


def to_ns(seconds: float | TokenTimes) -> np.ndarray:
    """Integer nanoseconds; a ValueError for a NaN, an infinity or a time beyond `MAX_ABS_TIME_S`
    (in ns they would wrap around, and a bisection over them would never end)."""
    array = np.asarray(seconds, dtype=np.float64)
    bad = ~(np.abs(array) <= MAX_ABS_TIME_S)
    if np.any(bad):
        raise ValueError(f"times must be finite seconds within +-{MAX_ABS_TIME_S:.3g}, got {array[bad].flat[0]}")
    return np.rint(array * _NS).astype(np.int64)


def _count(budgets: np.ndarray, tbt_deadlines: np.ndarray, padding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Missed and total deadlines per row of `budgets` (ns, one row per stream); row k's TBT
    deadline is `tbt_deadlines[k]` and its last `padding[k]` entries are padding (budget >= 0).

    With S the cumulative budget and m_k = min(0, S_0..S_k), the slack after token k is S_k - m_k,
    so token k is late exactly when S_k < m_{k-1}, by m_{k-1} - S_k."""
    cumulative = np.cumsum(budgets, axis=1)
    previous_minimum = np.zeros_like(cumulative)
    np.minimum(np.minimum.accumulate(cumulative[:, :-1], axis=1), 0, out=previous_minimum[:, 1:])
    late_rows, late_columns = np.nonzero(cumulative < previous_minimum)
    lateness = previous_minimum[late_rows, late_columns] - cumulative[late_rows, late_columns]
    missed_each = 1 + lateness // tbt_deadlines[late_rows]
    num_rows = budgets.shape[0]
    missed = np.bincount(late_rows, weights=missed_each, minlength=num_rows).astype(np.int64)
    num_late = np.bincount(late_rows, minlength=num_rows)
    total = budgets.shape[1] - padding - num_late + missed
    return missed, total


def _flat(token_times_s: Sequence[TokenTimes]) -> tuple[np.ndarray, np.ndarray]:
    """Streams end to end in one array, and each one's length."""
    streams = [np.asarray(times, dtype=np.float64) for times in token_times_s]
    flat = np.concatenate(streams) if streams else np.zeros(0)
    return flat, np.array([len(times) for times in streams], dtype=np.int64)


def count_deadlines(
    arrival_s: float, token_times_s: TokenTimes, ttft_deadline_s: float, tbt_deadline_s: float
) -> tuple[int, int]:
    """(missed, total) deadlines of a request sent at `arrival_s` whose output tokens arrived at
    `token_times_s` (absolute, the first token included). (0, 0) for a request with no tokens."""
    missed, total = count_deadlines_many([arrival_s], [token_times_s], [ttft_deadline_s], [tbt_deadline_s])
    return int(missed[0]), int(total[0])


def count_deadlines_many(
    arrivals_s: Sequence[float],
    token_times_s: Sequence[TokenTimes],
    ttft_deadlines_s: Sequence[float],
    tbt_deadlines_s: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """`count_deadlines` for many requests at once: (missed, total) arrays."""
    flat, lengths = _flat(token_times_s)
    return count_deadlines_flat(arrivals_s, flat, lengths, ttft_deadlines_s, tbt_deadlines_s)


def count_deadlines_flat(
    arrivals_s: Sequence[float] | np.ndarray,
    token_times_s: np.ndarray,
    num_tokens: Sequence[int] | np.ndarray,
    ttft_deadlines_s: Sequence[float] | np.ndarray,
    tbt_deadlines_s: Sequence[float] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """`count_deadlines_many` of streams given end to end in one array: request i's tokens are
    the `num_tokens[i]` entries after the previous requests'. For columnar data (a simulator's
    output), with no Python loop over requests."""
    tbt = to_ns(tbt_deadlines_s)
    ttft = to_ns(ttft_deadlines_s)
    if np.any(tbt <= 0):
        raise ValueError("TBT deadlines must be positive")
    if np.any(ttft < 0):
        raise ValueError("TTFT deadlines must not be negative")
    arrivals = to_ns(arrivals_s)
    lengths = np.asarray(num_tokens, dtype=np.int64)
    times = to_ns(token_times_s)
    if len(times) != lengths.sum():
        raise ValueError(f"{len(times)} token times for {lengths.sum()} tokens")
    starts = np.cumsum(lengths) - lengths
    streaming = lengths > 0
    # Each token's budget: its deadline minus its delay after the previous token (the send, for
    # the first), and the first token's deadline is the TTFT one.
    previous = np.empty_like(times)
    previous[1:] = times[:-1]
    previous[starts[streaming]] = arrivals[streaming]
    budgets = np.repeat(tbt, lengths) - (times - previous)
    budgets[starts[streaming]] += ttft[streaming] - tbt[streaming]
    missed = np.zeros(len(lengths), dtype=np.int64)
    total = np.zeros(len(lengths), dtype=np.int64)
    for bucket in similar_length_buckets(lengths):
        bucket = bucket[lengths[bucket] > 0]
        if len(bucket) == 0:
            continue
        padded, padding = pad_rows(budgets, starts[bucket], lengths[bucket])  # a budget of 0 is on time
        missed[bucket], total[bucket] = _count(padded, tbt[bucket], padding)
    return missed, total


def decode_miss_rates(token_times_s: TokenTimes, tbt_deadlines_s: Sequence[float]) -> np.ndarray:
    """The deadline miss rate of the tokens after the first, counted from the first token with no
    slack, at each TBT deadline in `tbt_deadlines_s` (the first token's own deadline is ignored, as
    in Metron's fluidity curve). Zeros for a stream of fewer than two tokens."""
    return decode_miss_rate_table([token_times_s], tbt_deadlines_s)[0]


def decode_miss_rate_table(token_times_s: Sequence[TokenTimes], tbt_deadlines_s: Sequence[float]) -> np.ndarray:
    """`decode_miss_rates` of many streams: an array [stream, deadline]."""
    return decode_miss_rate_table_flat(*_flat(token_times_s), tbt_deadlines_s)


def decode_miss_rate_table_flat(
    token_times_s: np.ndarray, num_tokens: Sequence[int] | np.ndarray, tbt_deadlines_s: Sequence[float]
) -> np.ndarray:
    """`decode_miss_rate_table` of streams given end to end in one array (as `count_deadlines_flat`)."""
    deadlines = to_ns(tbt_deadlines_s)
    if np.any(deadlines <= 0):
        raise ValueError("TBT deadlines must be positive")
    table = np.zeros((len(num_tokens), len(deadlines)))
    for bucket in gap_buckets(to_ns(token_times_s), np.asarray(num_tokens)):
        for column, deadline in enumerate(deadlines.tolist()):
            table[bucket.streams, column] = bucket.miss_rates(np.full(len(bucket.streams), deadline))
    return table


def min_tbt_deadline(token_times_s: TokenTimes, max_miss_rate: float = 0.1) -> float | None:
    """The smallest TBT deadline (s) at which the tokens after the first miss at most
    `max_miss_rate` of their deadlines (first token ignored, as in `decode_miss_rates`), to 1
    microsecond and never below the true minimum. None for a stream of fewer than two tokens."""
    return min_tbt_deadlines([token_times_s], max_miss_rate)[0]


def min_tbt_deadlines(token_times_s: Sequence[TokenTimes], max_miss_rate: float = 0.1) -> list[float | None]:
    """`min_tbt_deadline` of many streams at once."""
    return min_tbt_deadlines_flat(*_flat(token_times_s), max_miss_rate)


def min_tbt_deadlines_flat(
    token_times_s: np.ndarray, num_tokens: Sequence[int] | np.ndarray, max_miss_rate: float = 0.1
) -> list[float | None]:
    """`min_tbt_deadlines` of streams given end to end in one array (as `count_deadlines_flat`).
    The miss rate never rises as the deadline grows (the slack only grows, lateness only
    shrinks), so a bisection per stream finds it; all streams of a bucket bisect together."""
    if not 0 <= max_miss_rate < 1:
        raise ValueError(f"max_miss_rate must be in [0, 1), got {max_miss_rate}")
    found: list[float | None] = [None] * len(num_tokens)
    for bucket in gap_buckets(to_ns(token_times_s), np.asarray(num_tokens)):
        high = bucket.max_gap.copy()  # at the largest gap every token is on time
        low = np.zeros_like(high)  # never passes: a deadline must be positive
        while np.any(searching := high - low > _SEARCH_RESOLUTION_NS):
            middle = np.maximum((low + high) // 2, 1)
            rows = np.flatnonzero(searching)
            passes = np.zeros(len(high), dtype=bool)
            passes[rows] = bucket.miss_rates(middle[rows], rows) <= max_miss_rate
            high = np.where(searching & passes, middle, high)
            low = np.where(searching & ~passes, middle, low)
        for index, deadline_ns in zip(bucket.streams.tolist(), high.tolist(), strict=True):
            found[index] = float(deadline_ns) / _NS
    return found
