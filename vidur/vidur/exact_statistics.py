"""Exact statistics of a float64 column read in slices: numpy's mean, min, max and linear-method
percentiles of all its values, bit for bit, with memory bounded by the slice size.

A column is anything with a length and `read(start, stop)` (`Column`): an array in memory, raw
little-endian float64 files back to back, or one column of a row-major [rows, k] float64 file.
Values are never NaN: a NaN raises ValueError.

Signed zeros: numpy compares -0.0 and 0.0 as equal, so where both are in a column the zero that
np.partition or np.max leaves at a position, and so the sign of a zero result, depends on how the
values are arranged. Here zeros follow the total order in which -0.0 precedes 0.0: `minimum` is
-0.0 and `maximum` 0.0 when both are the extreme, and percentiles interpolate between the order
statistics of that order. Every result numpy determines from the values alone is numpy's.
"""

import bisect
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from metron.summary import STATS, Metrics, percentile_key

DEFAULT_CHUNK = 1 << 20
_FLOAT64_LE = np.dtype("<f8")
_PAIRWISE_LEAF = 128  # numpy's PW_BLOCKSIZE: a node this small is summed without splitting
_DIGIT_BITS = 16
_NUM_DIGITS = 64 // _DIGIT_BITS
_SIGN_BIT = np.uint64(1 << 63)


class Column(Protocol):
    """A logical float64 column of known length."""

    def __len__(self) -> int: ...

    def read(self, start: int, stop: int) -> np.ndarray:
        """Values [start, stop) as a 1-D float64 array (may be a view: never written to)."""
        ...


class ArrayColumn:
    """A 1-D array in memory."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = np.asarray(values, dtype=np.float64).reshape(-1)

    def __len__(self) -> int:
        return len(self.values)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.values[start:stop]


def _read_float64(path: str | os.PathLike[str], first: int, count: int) -> np.ndarray:
    """`count` raw float64 values of a file, from value index `first`."""
    values = np.fromfile(path, dtype=_FLOAT64_LE, count=count, offset=first * 8)
    if len(values) != count:
        raise ValueError(f"{path}: {len(values)} values at {first}, not {count}: the file shrank")
    return values.astype(np.float64, copy=False)


def _num_values(path: str | os.PathLike[str], values_per_row: int = 1) -> int:
    size = os.path.getsize(path)
    if size % (8 * values_per_row):
        raise ValueError(f"{path}: {size} bytes is not a whole number of {values_per_row}-value float64 rows")
    return size // (8 * values_per_row)


class FilesColumn:
    """Raw little-endian float64 files read back to back as one column."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        self.paths = list(paths)
        self.starts = [0]
        for path in self.paths:
            self.starts.append(self.starts[-1] + _num_values(path))

    def __len__(self) -> int:
        return self.starts[-1]

    def read(self, start: int, stop: int) -> np.ndarray:
        first_file = bisect.bisect_right(self.starts, start) - 1
        parts = []
        position = start
        for index in range(max(first_file, 0), len(self.paths)):
            if position >= stop:
                break
            end = min(stop, self.starts[index + 1])
            if end > position:
                parts.append(_read_float64(self.paths[index], position - self.starts[index], end - position))
                position = end
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.empty(0)


class RowsFileColumn:
    """Column `column` of a raw little-endian float64 file of rows of `num_columns` values, read
    `block_values` values (whole rows) at a time."""

    def __init__(
        self, path: str | os.PathLike[str], num_columns: int, column: int, *, block_values: int = DEFAULT_CHUNK
    ) -> None:
        if not 0 <= column < num_columns:
            raise ValueError(f"column {column} of rows of {num_columns} values")
        self.path = path
        self.num_columns = num_columns
        self.column = column
        self.rows_per_block = max(1, block_values // num_columns)
        self.num_rows = _num_values(path, num_columns)

    def __len__(self) -> int:
        return self.num_rows

    def read(self, start: int, stop: int) -> np.ndarray:
        values = np.empty(stop - start)
        for row in range(start, stop, self.rows_per_block):
            rows = min(self.rows_per_block, stop - row)
            block = _read_float64(self.path, row * self.num_columns, rows * self.num_columns)
            values[row - start : row - start + rows] = block.reshape(rows, self.num_columns)[:, self.column]
        return values


class DerivedColumn:
    """A column computed a slice at a time, `compute(start, stop)` (from other columns, say)."""

    def __init__(self, length: int, compute: Callable[[int, int], np.ndarray]) -> None:
        self.length = length
        self.compute = compute

    def __len__(self) -> int:
        return self.length

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.compute(start, stop), dtype=np.float64)


Values = Column | np.ndarray


def as_column(values: Values) -> Column:
    """An array as an `ArrayColumn`; a column as it is."""
    return ArrayColumn(values) if isinstance(values, np.ndarray) else values


def _slices(length: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, length, chunk_size):
        yield start, min(start + chunk_size, length)


def _reject_nan(values: np.ndarray) -> None:
    if np.isnan(values).any():
        raise ValueError("a NaN in the column: its statistics are undefined here")


def _pairwise_sum(column: Column, start: int, count: int, chunk_size: int) -> float:
    """numpy's pairwise sum of `count` values from `start`: its recursion down to nodes that fit
    in a chunk, each summed by np.add.reduce (whose tree over the node is numpy's subtree)."""
    if count <= max(chunk_size, _PAIRWISE_LEAF):
        values = column.read(start, start + count)
        total = np.add.reduce(values)
        if np.isnan(total):
            _reject_nan(values)
        return float(total)
    half = count // 2
    half -= half % 8
    return _pairwise_sum(column, start, half, chunk_size) + _pairwise_sum(
        column, start + half, count - half, chunk_size
    )


def total(values: Values, *, chunk_size: int = DEFAULT_CHUNK) -> np.float64:
    """`values.sum()` of all the values, reading at most max(chunk_size, 128) at a time."""
    column = as_column(values)
    if len(column) == 0:
        return np.float64(0.0)
    # np.add.reduce adds its pairwise sum to an initial 0.0 (a sum of -0.0s is 0.0); so does this.
    return np.float64(0.0) + np.float64(_pairwise_sum(column, 0, len(column), chunk_size))


def mean(values: Values, *, chunk_size: int = DEFAULT_CHUNK) -> np.float64:
    """`values.mean()` of all the values, reading at most max(chunk_size, 128) at a time (NaN if
    there are none)."""
    column = as_column(values)
    if len(column) == 0:
        return np.float64(np.nan)
    return np.float64(total(column, chunk_size=chunk_size) / len(column))


def _keys(values: np.ndarray) -> np.ndarray:
    """uint64 keys whose order is the values' (-0.0 before 0.0): a sign bit flipped, or all bits
    of a negative value."""
    bits = values.view(np.uint64)
    flip = bits >> np.uint64(63)
    np.negative(flip, out=flip)
    flip |= _SIGN_BIT
    return np.bitwise_xor(bits, flip, out=flip)


def _value_of_key(key: int) -> np.float64:
    bits = key ^ (1 << 63) if key >> 63 else key ^ ((1 << 64) - 1)
    return np.array([bits], dtype=np.uint64).view(np.float64)[0]


def value_range(values: Values, *, chunk_size: int = DEFAULT_CHUNK) -> tuple[np.float64, np.float64]:
    """The smallest and the largest value, in one pass (ValueError if there are none)."""
    column = as_column(values)
    if len(column) == 0:
        raise ValueError("the range of an empty column")
    low, high = (1 << 64) - 1, 0
    for start, stop in _slices(len(column), chunk_size):
        chunk = column.read(start, stop)
        _reject_nan(chunk)
        keys = _keys(chunk)
        low, high = min(low, int(keys.min())), max(high, int(keys.max()))
    return _value_of_key(low), _value_of_key(high)


def minimum(values: Values, *, chunk_size: int = DEFAULT_CHUNK) -> np.float64:
    """The smallest value (ValueError if there are none)."""
    return value_range(values, chunk_size=chunk_size)[0]


def maximum(values: Values, *, chunk_size: int = DEFAULT_CHUNK) -> np.float64:
    """The largest value (ValueError if there are none)."""
    return value_range(values, chunk_size=chunk_size)[1]


@dataclass
class _Bucket:
    """The values whose keys start with `prefix`: `size` of them, `below` values with smaller
    keys; `ranks` are the wanted order statistics among them."""

    prefix: int
    below: int
    size: int
    ranks: list[int] = field(default_factory=list)
    lowest_key: int = (1 << 64) - 1
    highest_key: int = 0


def _split(bucket: _Bucket, counts: np.ndarray) -> list[_Bucket]:
    """The buckets one digit deeper that hold `bucket`'s ranks, from the counts of that digit."""
    ends = np.cumsum(counts)
    deeper: dict[int, _Bucket] = {}
    for rank in bucket.ranks:
        digit = int(np.searchsorted(ends, rank - bucket.below, side="right"))
        if digit not in deeper:
            below = bucket.below + (int(ends[digit - 1]) if digit else 0)
            deeper[digit] = _Bucket((bucket.prefix << _DIGIT_BITS) | digit, below, int(counts[digit]))
        deeper[digit].ranks.append(rank)
    return list(deeper.values())


def _count_digits(
    keys: np.ndarray, heads: np.ndarray | None, buckets: Sequence[_Bucket], depth: int, counts: np.ndarray
) -> None:
    """Adds to counts[i] the counts of the next digit of the keys in buckets[i] (all `depth`
    digits deep; `heads` are the keys' first `depth` digits, None at depth 0), and widens each
    bucket's key range to those keys."""
    digit_shift = np.uint64(64 - _DIGIT_BITS * (depth + 1))
    for index, bucket in enumerate(buckets):
        inside = keys if heads is None else keys[heads == np.uint64(bucket.prefix)]
        if not len(inside):
            continue
        bucket.lowest_key = min(bucket.lowest_key, int(inside.min()))
        bucket.highest_key = max(bucket.highest_key, int(inside.max()))
        digits = (inside >> digit_shift) & np.uint64((1 << _DIGIT_BITS) - 1)
        counts[index] += np.bincount(digits.view(np.int64), minlength=1 << _DIGIT_BITS)


def _smallest_within(buckets: list[_Bucket], limit: int) -> tuple[list[_Bucket], list[_Bucket]]:
    """The smallest buckets holding at most `limit` values together, and the others."""
    small: list[_Bucket] = []
    total = 0
    for bucket in sorted(buckets, key=lambda b: b.size):
        if total + bucket.size > limit:
            break
        small.append(bucket)
        total += bucket.size
    return small, [b for b in buckets if all(b is not s for s in small)]


def _read_pass(
    column: Column, depth: int, gather: list[_Bucket], count: list[_Bucket], chunk_size: int, check_nan: bool
) -> tuple[list[np.ndarray], np.ndarray]:
    """One pass over the column: the keys of each bucket in `gather`, and the counts [bucket,
    next digit] of the buckets in `count`; all buckets `depth` digits deep."""
    gathered = [np.empty(b.size, dtype=np.uint64) for b in gather]
    filled = [0] * len(gather)
    counts = np.zeros((len(count), 1 << _DIGIT_BITS), dtype=np.int64)
    for start, stop in _slices(len(column), chunk_size):
        chunk = column.read(start, stop)
        if check_nan:
            _reject_nan(chunk)
        keys = _keys(chunk)
        heads = keys >> np.uint64(64 - _DIGIT_BITS * depth) if depth else None
        _count_digits(keys, heads, count, depth, counts)
        for index, bucket in enumerate(gather):
            taken = keys if heads is None else keys[heads == np.uint64(bucket.prefix)]
            if filled[index] + len(taken) > bucket.size:
                raise ValueError("the column changed while it was read")
            gathered[index][filled[index] : filled[index] + len(taken)] = taken
            filled[index] += len(taken)
    if filled != [b.size for b in gather]:
        raise ValueError("the column changed while it was read")
    return gathered, counts


def _order_statistics(column: Column, ranks: Iterable[int], chunk_size: int) -> dict[int, np.float64]:
    """The values of the given ranks (0-based) in the sorted column, by radix selection on keys:
    a pass per 16-bit digit at most, each counting the next digit of the keys in the buckets that
    hold a rank; the smallest buckets, up to a chunk's worth of values, are gathered instead and
    partitioned, and a bucket that holds a single value is done."""
    found: dict[int, np.float64] = {}
    buckets = [_Bucket(0, 0, len(column), sorted(set(ranks)))]
    for depth in range(_NUM_DIGITS):
        if not buckets:
            break
        gather, count = _smallest_within(buckets, chunk_size)
        gathered, counts = _read_pass(column, depth, gather, count, chunk_size, check_nan=depth == 0)
        for bucket, keys in zip(gather, gathered, strict=True):
            local = [rank - bucket.below for rank in bucket.ranks]
            keys.partition(local)
            found.update((rank, _value_of_key(int(keys[at]))) for rank, at in zip(bucket.ranks, local, strict=True))
        buckets = []
        for bucket, bucket_counts in zip(count, counts, strict=True):
            if bucket.lowest_key == bucket.highest_key:  # one value, many times
                found.update(dict.fromkeys(bucket.ranks, _value_of_key(bucket.lowest_key)))
                continue
            for deeper in _split(bucket, bucket_counts):
                if depth + 1 == _NUM_DIGITS:  # every bit of its key is known
                    found.update(dict.fromkeys(deeper.ranks, _value_of_key(deeper.prefix)))
                else:
                    buckets.append(deeper)
    return found


def _percentiles_of(column: Column, qs: Sequence[float], chunk_size: int) -> np.ndarray:
    n = len(column)
    if n == 0:
        raise ValueError("percentiles of an empty column")
    quantiles = np.true_divide(np.asarray(qs, dtype=np.float64), 100)
    if not ((quantiles >= 0) & (quantiles <= 1)).all():
        raise ValueError("Percentiles must be in the range [0, 100]")
    # numpy's _quantile, linear method: its index arithmetic and its _lerp, operation for operation.
    virtual = (n - 1) * quantiles
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= n - 1
    previous[above] = -1
    following[above] = -1
    previous_index = previous.astype(np.intp)
    following_index = following.astype(np.intp)
    gamma = np.asarray(virtual - previous_index, dtype=np.float64)
    previous_rank, following_rank = previous_index % n, following_index % n
    found = _order_statistics(column, [*previous_rank.tolist(), *following_rank.tolist()], chunk_size)
    low = np.array([found[r] for r in previous_rank.tolist()], dtype=np.float64)
    high = np.array([found[r] for r in following_rank.tolist()], dtype=np.float64)
    difference = high - low
    result = np.add(low, difference * gamma)
    np.subtract(high, difference * (1 - gamma), out=result, where=gamma >= 0.5)
    return result


def percentiles(values: Values, qs: Sequence[float], *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """`np.percentile(values, qs)` (linear method) of all the values, reading them in chunks of
    `chunk_size`, holding at most a chunk's worth of them (ValueError if there are none)."""
    return _percentiles_of(as_column(values), qs, chunk_size)


def describe(
    name: str, values: Values, percentiles: Iterable[float] = (), *, chunk_size: int = DEFAULT_CHUNK
) -> Metrics:
    """metron's `describe(name, values, percentiles)` of all the values: the same keys in the
    same order, the same figures, read in chunks."""
    column = as_column(values)
    extra = sorted({float(q) for q in percentiles} - {50.0, 90.0, 99.0})
    keys = [f"{name}.{stat}" for stat in STATS] + [percentile_key(name, q) for q in extra]
    if len(column) == 0:
        return dict.fromkeys(keys)
    average = mean(column, chunk_size=chunk_size)
    low, high = value_range(column, chunk_size=chunk_size)
    p50, p90, p99, *others = _percentiles_of(column, [50, 90, 99, *extra], chunk_size)
    figures = [average, low, p50, p90, p99, high, *others]
    return {key: float(value) for key, value in zip(keys, figures, strict=True)}
