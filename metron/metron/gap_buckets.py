"""Decode miss rates of many token streams at once, each at its own TBT deadline: the counting
behind Metron's fluidity curve and minimum TBT deadline (`metron.fluidity`), done per run of
long gaps instead of per token.

Counting from the first token with no slack, every later token is due `d` after the previous one.
With S the cumulative budget (sum of `d - gap`) and m the running minimum of S and 0, a token is
late exactly when S drops below m, missing `1 + (m - S) // d` deadlines. A gap of at most `d`
raises S and is never late, so only long gaps (more than `d`) matter: S falls throughout a run of
consecutive long gaps, m before a run is the least S at the end of an earlier run (or 0), and a
run's tokens are on time until S first drops below that m; from then on every token of the run
is late with no slack left, missing `gap // d` deadlines. The work is a scan for long gaps, then
per run, not per token. Times are integer nanoseconds, so the counts equal the closed form's.
"""

from collections.abc import Iterator

import numpy as np

from metron.padded_streams import pad_rows, similar_length_buckets

# A bucket whose gaps all fit in 32 bits is scanned for long gaps in half the memory traffic.
_INT32_LIMIT = 2**31


class GapBucket:
    """Streams of similar length: `streams` (their indices), `gaps` (ns, one row per stream,
    zero-padded to the longest) and `lengths` (gaps per stream, at least one)."""

    def __init__(self, streams: np.ndarray, gaps: np.ndarray, lengths: np.ndarray) -> None:
        self.streams = streams
        self.gaps = gaps
        self.lengths = lengths
        self.max_gap = gaps.max(axis=1)
        is_gap = np.arange(gaps.shape[1]) < lengths[:, None]
        self.min_gap = np.where(is_gap, gaps, np.iinfo(np.int64).max).min(axis=1)
        self._cumulative = np.cumsum(gaps, axis=1).ravel()
        self._scanned = gaps.astype(np.int32) if int(self.max_gap.max()) < _INT32_LIMIT else gaps

    def miss_rates(self, deadlines_ns: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Missed / total deadlines of each of the `rows` (default: all) at its deadline (ns)."""
        rows = np.arange(len(self.lengths)) if rows is None else rows
        min_gap, max_gap = self.min_gap[rows], self.max_gap[rows]
        rates = np.zeros(len(rows))
        rates[deadlines_ns < min_gap] = 1.0  # every gap is long: every token late, nothing banked
        mixed = np.flatnonzero((deadlines_ns >= min_gap) & (deadlines_ns < max_gap))
        if len(mixed) > 0:
            rates[mixed] = self._mixed_rates(rows[mixed], deadlines_ns[mixed])
        return rates

    def _mixed_rates(self, rows: np.ndarray, deadlines_ns: np.ndarray) -> np.ndarray:
        """`miss_rates` of rows that have both long gaps and others."""
        width = self.gaps.shape[1]
        scanned = self._scanned if len(rows) == len(self.lengths) else self._scanned[rows]
        long_gaps = scanned > deadlines_ns.astype(scanned.dtype)[:, None]
        edges = np.flatnonzero(np.diff(long_gaps, axis=1, prepend=False, append=False))
        # Edges alternate run start and stop within each row's `width + 1` edge slots.
        run_row = edges[0::2] // (width + 1)
        first = rows[run_row] * width + edges[0::2] - run_row * (width + 1)  # flat index of the run's first gap
        last = first + (edges[1::2] - edges[0::2]) - 1
        deadline = deadlines_ns[run_row]
        end_sum = self._budget_sum(last, deadline)
        before = _running_min_before(end_sum, run_row)
        late_runs = np.flatnonzero(end_sum < before)
        run_row, first, last, deadline, before = (a[late_runs] for a in (run_row, first, last, deadline, before))
        first_late = self._first_late(first, last, deadline, before)
        first_misses = 1 + (before - self._budget_sum(first_late, deadline)) // deadline
        missed = first_misses + self._tail_misses(first_late, last, deadline)
        total_missed = _sum_by_row(missed, run_row, len(rows))
        total = self.lengths[rows] - _sum_by_row(last - first_late + 1, run_row, len(rows)) + total_missed
        return total_missed / total

    def _budget_sum(self, flat: np.ndarray, deadline: np.ndarray) -> np.ndarray:
        """S after the gap at `flat` (an index into the flattened gaps): deadlines minus time."""
        column = flat % self.gaps.shape[1]
        return (column + 1) * deadline - self._cumulative[flat]

    def _first_late(self, first: np.ndarray, last: np.ndarray, deadline: np.ndarray, before: np.ndarray) -> np.ndarray:
        """Each run's first late gap: S falls within a run and is below `before` at its `last`,
        so a bisection finds it (runs whose first gap is late need none)."""
        late = last.copy()
        on_time = first - 1
        at_once = self._budget_sum(first, deadline) < before
        late[at_once] = first[at_once]
        open_runs = np.flatnonzero(late - on_time > 1)
        while len(open_runs) > 0:
            low, high = on_time[open_runs], late[open_runs]
            middle = (low + high) // 2
            is_late = self._budget_sum(middle, deadline[open_runs]) < before[open_runs]
            late[open_runs] = np.where(is_late, middle, high)
            on_time[open_runs] = np.where(is_late, low, middle)
            open_runs = open_runs[late[open_runs] - on_time[open_runs] > 1]
        return late

    def _tail_misses(self, first_late: np.ndarray, last: np.ndarray, deadline: np.ndarray) -> np.ndarray:
        """Sum of `gap // d` over each run's gaps after its first late one, up to `last`."""
        num_tail = last - first_late
        offsets = np.cumsum(num_tail) - num_tail
        run = np.repeat(np.arange(len(num_tail)), num_tail)
        flat = first_late[run] + 1 + np.arange(int(num_tail.sum())) - offsets[run]
        running = np.concatenate(([0], np.cumsum(self.gaps.ravel()[flat] // deadline[run])))
        return running[offsets + num_tail] - running[offsets]


def _sum_by_row(values: np.ndarray, row: np.ndarray, num_rows: int) -> np.ndarray:
    """Integer sums of `values` per row (`row` non-decreasing), exact in int64."""
    sums = np.zeros(num_rows, dtype=np.int64)
    if len(row) > 0:
        starts = np.flatnonzero(np.concatenate(([True], row[1:] != row[:-1])))
        sums[row[starts]] = np.add.reduceat(values.astype(np.int64), starts)
    return sums


def _running_min_before(values: np.ndarray, row: np.ndarray) -> np.ndarray:
    """For each entry, the least of 0 and the earlier entries of its row (`row` non-decreasing)."""
    result = np.zeros_like(values)
    if len(values) == 0:
        return result
    # Each later row is shifted down by `span`, so an earlier row never holds the minimum; rows
    # go in groups small enough that the shift stays within int64.
    span = max(int(values.max()), 0) - min(int(values.min()), 0) + 1
    group = row // max(1, (1 << 62) // span)
    bounds = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1], [True])))
    for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        local = row[start:stop] - row[start]
        running = np.minimum.accumulate(values[start:stop] - local * span)
        result[start + 1 : stop] = running[:-1] + local[1:] * span
    result[np.concatenate(([True], row[1:] != row[:-1]))] = 0
    return np.minimum(result, 0, out=result)


def gap_buckets(token_times_ns: np.ndarray, num_tokens: np.ndarray) -> Iterator[GapBucket]:
    """The gaps of streams given end to end (request i's tokens are the `num_tokens[i]` entries
    after the previous requests'), in buckets of similar length. Streams of fewer than two tokens
    have no gaps and are left out."""
    num_tokens = np.asarray(num_tokens, dtype=np.int64)
    gaps = np.diff(token_times_ns)
    starts = np.cumsum(num_tokens) - num_tokens
    lengths = np.maximum(num_tokens - 1, 0)
    for bucket in similar_length_buckets(lengths):
        bucket = bucket[lengths[bucket] > 0]
        if len(bucket) > 0:
            padded, _ = pad_rows(gaps, starts[bucket], lengths[bucket])
            yield GapBucket(bucket, padded, lengths[bucket])
