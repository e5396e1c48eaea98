"""vidur.exact_statistics against numpy and metron on the whole array: bit for bit."""

import math
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from metron.summary import describe as metron_describe

from vidur.exact_statistics import (
    ArrayColumn,
    Column,
    FilesColumn,
    RowsFileColumn,
    describe,
    maximum,
    mean,
    minimum,
    percentiles,
    total,
    value_range,
)

QS = [0, 50, 90, 99, 99.9, 100, 95, 99.5, 12.345]
LENGTHS = [1, 2, 7, 8, 127, 128, 129, 1000, 8191, 8192, 8193, 100_000]
CHUNKS = [7, 64, 1 << 20]


def _spread(rng: np.random.Generator, n: int) -> np.ndarray:
    """Signed values over 24 orders of magnitude: a sum in another order differs in its last bits."""
    return rng.standard_normal(n) * 10.0 ** rng.integers(-12, 13, n)


DISTRIBUTIONS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "spread": _spread,
    "few_tbts": lambda rng, n: rng.choice([0.0211, 0.0213, 0.0219, 0.024, 0.25], n, p=[0.4, 0.3, 0.2, 0.09, 0.01]),
    "exponential": lambda rng, n: rng.exponential(0.03, n),
    "negative": lambda rng, n: -rng.exponential(5.0, n) + rng.choice([0.0, 1e-300, 7.0], n),
    "identical": lambda rng, n: np.full(n, 0.0213),
    "only_negative_zeros_and_values": lambda rng, n: rng.choice([-1.5, -0.0, 2.0], n),
    "only_positive_zeros_and_values": lambda rng, n: rng.choice([-1.5, 0.0, 2.0], n),
}


def _bits(values: npt.ArrayLike) -> bytes:
    return np.asarray(values, dtype=np.float64).tobytes()


def _cases() -> list[tuple[str, int, int]]:
    cases = []
    for name in DISTRIBUTIONS:
        for n in LENGTHS:
            for chunk in CHUNKS:
                if chunk == 7 and n > 8193:
                    continue  # thousands of Python-level reads: the boundaries are covered below it
                cases.append((name, n, chunk))
    return cases


@pytest.mark.parametrize(("name", "n", "chunk"), _cases())
def test_mean_range_and_percentiles_of_an_array_are_numpys(name: str, n: int, chunk: int) -> None:
    values = DISTRIBUTIONS[name](np.random.default_rng(n), n)
    assert _bits(mean(values, chunk_size=chunk)) == _bits(values.mean())
    assert _bits(total(values, chunk_size=chunk)) == _bits(values.sum())
    assert _bits(percentiles(values, QS, chunk_size=chunk)) == _bits(np.percentile(values, QS))
    low, high = value_range(values, chunk_size=chunk)
    assert (_bits(low), _bits(high)) == (_bits(values.min()), _bits(values.max()))
    assert _bits(minimum(values, chunk_size=chunk)) == _bits(low)
    assert _bits(maximum(values, chunk_size=chunk)) == _bits(high)


def _pairwise_leaf(values: np.ndarray) -> float:
    """numpy's pairwise_sum of at most 128 values (loops_utils.h.src), in Python floats."""
    n = len(values)
    if n < 8:
        total = 0.0
        for value in values.tolist():
            total += value
        return total
    accumulators = values[:8].tolist()
    i = 8
    while i < n - n % 8:
        for j in range(8):
            accumulators[j] += float(values[i + j])
        i += 8
    r = accumulators
    total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    for value in values[i:].tolist():
        total += value
    return total


def _pairwise_tree_in_python(values: np.ndarray) -> float:
    """numpy's pairwise_sum of the whole array, one float addition at a time."""
    if len(values) <= 128:
        return _pairwise_leaf(values)
    half = len(values) // 2 - (len(values) // 2) % 8
    return _pairwise_tree_in_python(values[:half]) + _pairwise_tree_in_python(values[half:])


def _pairwise_leaves(start: int, n: int, into: list[tuple[int, int]]) -> None:
    if n <= 128:
        into.append((start, n))
        return
    half = n // 2 - (n // 2) % 8
    _pairwise_leaves(start, half, into)
    _pairwise_leaves(start + half, n - half, into)


def _vectorised_leaf_sums(values: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    """`_pairwise_leaf` of values[s : s + n] for every s in `starts` at once (the same additions)."""
    rows = values[starts[:, None] + np.arange(n)]
    if n < 8:
        total = np.zeros(len(starts))
        for k in range(n):
            total = total + rows[:, k]
        return total
    r = [rows[:, j].copy() for j in range(8)]
    i = 8
    while i < n - n % 8:
        for j in range(8):
            r[j] = r[j] + rows[:, i + j]
        i += 8
    total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    for k in range(i, n):
        total = total + rows[:, k]
    return total


def _one_pairwise_tree(values: np.ndarray) -> float:
    """0.0 plus numpy's pairwise sum of the whole array as one tree."""
    leaves: list[tuple[int, int]] = []
    _pairwise_leaves(0, len(values), leaves)
    table = np.array(leaves, dtype=np.int64).reshape(-1, 2)
    leaf_sum: dict[int, float] = {}
    for n in np.unique(table[:, 1]).tolist():
        starts = table[table[:, 1] == n, 0]
        leaf_sum.update(zip(starts.tolist(), _vectorised_leaf_sums(values, starts, n).tolist(), strict=True))

    def node(start: int, n: int) -> float:
        if n <= 128:
            return leaf_sum[start]
        half = n // 2 - (n // 2) % 8
        return node(start, half) + node(start + half, n - half)

    return 0.0 + node(0, len(values)) if len(values) else 0.0


def test_numpy_sums_a_contiguous_float64_array_as_one_pairwise_tree() -> None:
    """What `mean` relies on: np.add.reduce of a contiguous float64 array is one pairwise tree
    over its whole length (no 8192-value buffer blocks), added to 0.0; np.mean divides it by n."""
    rng = np.random.default_rng(0)
    for n in range(3001):
        values = _spread(rng, n)
        assert _bits(np.add.reduce(values)) == _bits(0.0 + _pairwise_tree_in_python(values)), n
    for n in (8193, 100_003, 3_000_000, 10_000_000):
        values = _spread(rng, n)
        total = np.add.reduce(values)
        assert _bits(total) == _bits(_one_pairwise_tree(values)), n
        assert _bits(values.mean()) == _bits(total / n), n
    values = _spread(rng, 100_003)
    blocks = 0.0
    for start in range(0, len(values), 8192):
        blocks += _one_pairwise_tree(values[start : start + 8192])
    assert blocks != np.add.reduce(values)  # the data tells the two apart
    assert _bits(np.add.reduce(np.full(200, -0.0))) == _bits(0.0)  # the 0.0 it starts from


def _write(path: Path, values: np.ndarray) -> Path:
    values.astype("<f8").tofile(path)
    return path


def _three_files(tmp_path: Path, values: np.ndarray) -> FilesColumn:
    """The values split unevenly over three files, the middle one empty."""
    cut = len(values) // 3
    return FilesColumn(
        [
            _write(tmp_path / "a.f64", values[:cut]),
            _write(tmp_path / "empty.f64", values[:0]),
            _write(tmp_path / "b.f64", values[cut:]),
        ]
    )


def _readers(tmp_path: Path, values: np.ndarray) -> dict[str, Column]:
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((len(values), 31))
    rows[:, 17] = values
    return {
        "array": ArrayColumn(values),
        "one_file": FilesColumn([_write(tmp_path / "one.f64", values)]),
        "three_files": _three_files(tmp_path, values),
        "rows_file": RowsFileColumn(_write(tmp_path / "rows.f64", rows), 31, 17, block_values=1000),
    }


@pytest.mark.parametrize(
    ("n", "chunk"), [(n, chunk) for n in (0, 1, 2, 129, 8193, 50_000) for chunk in CHUNKS if chunk > 7 or n <= 8193]
)
def test_every_reader_gives_numpys_figures(tmp_path: Path, n: int, chunk: int) -> None:
    values = np.concatenate([_spread(np.random.default_rng(n), n - n // 2), np.repeat([0.02, 0.03], n // 4)])
    values = np.concatenate([values, np.full(n - len(values), 0.5)])
    for name, column in _readers(tmp_path, values).items():
        assert len(column) == n, name
        assert _bits(column.read(0, n)) == _bits(values), name
        end = max(n // 3, n - 1)
        assert _bits(column.read(n // 3, end)) == _bits(values[n // 3 : end]), name
        if n == 0:
            assert describe("x", column, [95], chunk_size=chunk) == metron_describe("x", values, [95])
            continue
        assert _bits(mean(column, chunk_size=chunk)) == _bits(values.mean()), name
        assert _bits(percentiles(column, QS, chunk_size=chunk)) == _bits(np.percentile(values, QS)), name
        assert value_range(column, chunk_size=chunk) == (values.min(), values.max()), name


def test_three_million_values_from_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate([_spread(rng, 1_000_000), DISTRIBUTIONS["few_tbts"](rng, 2_000_000)])
    column = _three_files(tmp_path, values)
    for chunk in (1 << 16, 1 << 20):
        assert _bits(mean(column, chunk_size=chunk)) == _bits(values.mean())
        assert _bits(percentiles(column, QS, chunk_size=chunk)) == _bits(np.percentile(values, QS))
    expected = metron_describe("tbt_s", values, [95, 99.5, 99.9])
    assert describe("tbt_s", column, [95, 99.5, 99.9]) == expected


def test_memory_stays_bounded_by_the_chunk(tmp_path: Path) -> None:
    """3 million values (24 MB) read 65536 at a time: a few MB at most, numpy's buffers included."""
    values = np.random.default_rng(3).exponential(0.03, 3_000_000)
    column = FilesColumn([_write(tmp_path / "big.f64", values)])
    expected = np.percentile(values, [50, 90, 99])
    expected_mean = values.mean()
    del values
    tracemalloc.start()
    try:
        found = percentiles(column, [50, 90, 99], chunk_size=1 << 16)
        found_mean = mean(column, chunk_size=1 << 16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _bits(found) == _bits(expected)
    assert _bits(found_mean) == _bits(expected_mean)
    assert peak < 6 * 2**20, peak


def _total_order_percentiles(values: np.ndarray, qs: list[float]) -> np.ndarray:
    """numpy's linear percentiles, its own index arithmetic and _lerp, between the order
    statistics of the total order in which -0.0 precedes 0.0."""
    from numpy.lib._function_base_impl import _get_gamma, _get_indexes, _lerp  # type: ignore[attr-defined]

    ordered = values[np.lexsort((~np.signbit(values), values))]
    virtual = (len(values) - 1) * np.true_divide(qs, 100)
    previous, following = _get_indexes(ordered, virtual, len(values))
    gamma = _get_gamma(virtual, previous, {"fix_gamma": lambda gamma, _: gamma})
    return np.asarray(_lerp(ordered[previous], ordered[following], gamma))


def test_signed_zeros_follow_the_total_order_where_numpy_leaves_them_to_the_arrangement() -> None:
    """With both zeros in a column the sign of some of numpy's zero results depends on the
    values' order (so no chunked reading can match them); here the sorted order has -0.0 first.
    With one kind of zero (the distributions above) numpy's results are matched bit for bit."""
    rng = np.random.default_rng(11)
    qs = [0, 10, 25, 50, 51.3, 75, 90, 99, 99.9, 100]
    numpy_left_signs_open = False
    for trial in range(150):
        n = int(rng.integers(1, 300))
        values = rng.choice([-2.0, -0.0, 0.0, 1.5], n, p=rng.dirichlet([1, 1, 1, 1]))
        found = percentiles(values, qs, chunk_size=int(rng.choice([7, 64, 1 << 20])))
        assert _bits(found) == _bits(_total_order_percentiles(values, qs)), trial
        arrangements = np.array([np.percentile(rng.permutation(values), qs) for _ in range(12)])
        assert (found == arrangements).all(), trial  # equal as numbers, always
        numpy_left_signs_open |= bool((np.signbit(arrangements) != np.signbit(arrangements[0])).any())
        zeros = values[values == 0]
        low, high = value_range(values)
        assert (low, high) == (values.min(), values.max())
        if low == 0:
            assert np.signbit(low) == np.signbit(zeros).any()
        if high == 0:
            assert np.signbit(high) == np.signbit(zeros).all()
        assert _bits(mean(values, chunk_size=7)) == _bits(values.mean())
    assert numpy_left_signs_open
    both = np.array([-0.0, 0.0, 0.0, -0.0])
    assert _bits(value_range(both)) == _bits([-0.0, 0.0])
    assert _bits(percentiles(both, [0, 100, 10])) == _bits(np.percentile(both, [0, 100, 10]))  # 0.0 in any order
    only_negative = np.full(5, -0.0)
    assert _bits(percentiles(only_negative, QS)) == _bits(np.percentile(only_negative, QS))


def test_small_columns_and_the_ends() -> None:
    for values in (np.array([3.5]), np.array([-1.0, 4.0]), np.array([-0.0]), np.array([2.0, 2.0])):
        assert _bits(percentiles(values, [0, 100, 50, 37.5])) == _bits(np.percentile(values, [0, 100, 50, 37.5]))
        assert _bits(mean(values)) == _bits(values.mean())
    assert math.isnan(mean(np.empty(0)))
    with pytest.raises(ValueError, match="empty"):
        percentiles(np.empty(0), [50])
    with pytest.raises(ValueError, match="empty"):
        value_range(np.empty(0))
    with pytest.raises(ValueError, match="range"):
        percentiles(np.array([1.0]), [101])


def test_a_nan_is_refused(tmp_path: Path) -> None:
    values = np.arange(1000.0)
    values[777] = np.nan
    column = FilesColumn([_write(tmp_path / "nan.f64", values)])
    for statistic in (mean, minimum, maximum, lambda c, chunk_size: percentiles(c, [50], chunk_size=chunk_size)):
        for chunk in (64, 1 << 20):
            with pytest.raises(ValueError, match="NaN"):
                statistic(column, chunk_size=chunk)


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_describe_is_metrons(name: str) -> None:
    values = DISTRIBUTIONS[name](np.random.default_rng(5), 20_000)
    for slo_percentiles in ((), (95, 99.5), (99.9, 50, 90.0), (99.5, 95)):
        expected = metron_describe(name, values, slo_percentiles)
        found = describe(name, values, slo_percentiles, chunk_size=4096)
        assert list(found) == list(expected)
        assert _bits(np.array(list(found.values()), dtype=np.float64)) == _bits(np.array(list(expected.values())))
    assert describe(name, np.empty(0), (95,)) == metron_describe(name, np.empty(0), (95,))


def test_a_column_of_a_rows_file_reads_whole_rows_in_blocks(tmp_path: Path) -> None:
    rows = np.random.default_rng(2).standard_normal((1001, 31))
    path = _write(tmp_path / "rows.f64", rows)
    for column_index in (0, 30):
        for block_values in (1, 31, 100, 1 << 20):
            column = RowsFileColumn(path, 31, column_index, block_values=block_values)
            assert _bits(column.read(0, 1001)) == _bits(rows[:, column_index])
            assert _bits(column.read(500, 503)) == _bits(rows[500:503, column_index])
    with pytest.raises(ValueError, match="whole number"):
        RowsFileColumn(path, 30, 0)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
